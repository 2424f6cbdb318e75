//! The enrichment job, end to end: it reads as the pipeline it runs, stage by stage
//! (see [`crate::pipeline`]).

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use tokio::sync::mpsc;

use crate::api::Client;
use crate::config::{Config, Output};
use crate::error::JobError;
use crate::export::{self, EnrichedCsv};
use crate::metrics::{self, Live};
use crate::normalise::format_time;
use crate::pipeline::fetch::{self, queue::Queue, Settings};
use crate::pipeline::output;
use crate::pipeline::share::{self, Claims};
use crate::pipeline::stage::{self, ColumnGuard, Recording};
use crate::pipeline::stop::{Stop, StopReason};
use crate::pipeline::task;
use crate::pipeline::{plan, preflight, write};
use crate::progress::Progress;
use crate::report::{Outcome, Report};
use crate::source;
use crate::stats::Stats;
use crate::store::ledger::{RunCounts, RunOptions, RunSummary};
use crate::store::links::LinkOwner;
use crate::store::plan::{PlanCounts, Planner};
use crate::store::writer::{RetryDelays, Writer};
use crate::store::Store;

/// Runs the job. `stop` lets the caller end it early (signals); the run then commits what it
/// fetched and reports a partial outcome. A `--deadline` counts from the start of this call.
pub async fn enrich(config: Config, stop: Stop) -> Result<Report, JobError> {
    let live = Live {
        started: Instant::now(),
        stats: Arc::new(Stats::default()),
        counts: Arc::default(),
    };
    let Some(path) = config.output.metrics_file.clone() else {
        return run(&config, stop, &live).await;
    };
    let location = config.output.target.store();
    let writing = AbortOnDrop(metrics::keep_writing(
        path.clone(),
        location.clone(),
        live.clone(),
        config.ui.status_interval,
    ));
    let result = run(&config, stop, &live).await;
    drop(writing);
    let code = crate::report::exit_code(&result);
    metrics::write_final(&path, &location, config.plan.max_age, &live, code).await;
    result
}

/// The run itself; `live` follows it for the metrics.
async fn run(config: &Config, stop: Stop, live: &Live) -> Result<Report, JobError> {
    let started_at = format_time(Utc::now());
    let _deadline = config
        .limits
        .deadline
        .map(|at| watch_deadline(at, stop.clone()));
    output::prepare(&config.output.target)?;
    let client = match config.dry_run {
        true => None,
        false => Some(Client::new(
            &config.api.url,
            config.input.messenger,
            config.api.timeout,
        )?),
    };
    let opened = source::open(&config.input.source).await?;
    let store = Store::open(&config.output.target.store(), config.output.lock_timeout).await?;
    if config.dry_run {
        return run_begun(config, stop, live, &store, opened, client, None).await;
    }
    let run_id = store.begin_run(&started_at, &run_options(config)).await?;
    let begun = Begun {
        id: run_id,
        started_at,
    };
    let result = run_begun(config, stop, live, &store, opened, client, Some(begun)).await;
    if let Err(e) = &result {
        // The run is over: the ledger says how, so that neither `status` nor the next run's
        // resume take it for one that is still going or crashed.
        let summary = failed_summary(config, live, e);
        if let Err(ledger) = store
            .finish_run(run_id, &format_time(Utc::now()), &summary)
            .await
        {
            tracing::warn!("cannot record the run's end in the store: {ledger}");
        }
    }
    result
}

/// The summary of a run that stopped with `error`.
fn failed_summary(config: &Config, live: &Live, error: &JobError) -> RunSummary {
    let mut counts = live
        .counts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    live.stats.fill(&mut counts);
    RunSummary {
        outcome: "failed".into(),
        exit_code: crate::report::error_exit_code(error),
        stopped_because: Some(crate::redact::mask(&format!("failed: {error}")).into_owned()),
        counts,
        failed_by_reason: live.stats.failed_by_reason(),
        calls_per_instance: live.stats.calls_per_instance(),
        elapsed_seconds: live.started.elapsed().as_secs_f64(),
        output: config.output.target.describe(),
        ..RunSummary::default()
    }
}

/// A run's row in the ledger.
struct Begun {
    id: i64,
    started_at: String,
}

/// The run once its row is in the ledger (`None` for a dry run, which has none).
async fn run_begun(
    config: &Config,
    stop: Stop,
    live: &Live,
    store: &Store,
    opened: source::Opened,
    client: Option<Client>,
    begun: Option<Begun>,
) -> Result<Report, JobError> {
    let started = live.started;
    let (run_id, started_at) = match begun {
        Some(run) => (Some(run.id), Some(run.started_at)),
        None => (None, None),
    };
    let delays = RetryDelays::from(&config.plan);
    let (mut planner, mut counts) = stage_input(config, opened, store, &delays, run_id).await?;
    let plan = planner
        .plan(&plan::policy(&config.plan, started_at, Utc::now()))
        .await?;
    counts.skipped_fresh = plan.skipped_fresh;
    counts.planned = plan.due();
    let plan_line = plan::plan_line(&counts, &plan, config.pool_rate(), config.limits.max_calls);
    if !config.dry_run {
        tracing::info!("{plan_line}");
        planner.publish().await?;
    }

    *live.counts.lock().unwrap_or_else(|p| p.into_inner()) = counts.clone();
    let stats = live.stats.clone();
    let outcome = match (client, run_id) {
        (Some(client), Some(run_id)) => {
            let run = Run {
                config,
                store,
                run_id,
                delays: &delays,
                stats: &stats,
                stop: &stop,
            };
            fetch_and_store(run, client, planner, &plan).await?
        }
        _ => Outcome::DryRun,
    };
    stats.fill(&mut counts);
    let mut report = Report::new(
        outcome,
        RunSummary {
            plan_line,
            plan,
            counts,
            failed_by_reason: stats.failed_by_reason(),
            calls_per_instance: stats.calls_per_instance(),
            spacing_ms_per_instance: stats.spacing_ms(),
            elapsed_seconds: started.elapsed().as_secs_f64(),
            output: config.output.target.describe(),
            ..RunSummary::default()
        },
    );
    if let Some(run_id) = run_id {
        store
            .finish_run(run_id, &format_time(Utc::now()), &report.summary)
            .await?;
    }
    if let (Output::Csv { dir, raw }, false) = (&config.output.target, config.dry_run) {
        let enriched = EnrichedCsv::new(
            &config.input.source,
            Some(config.input.source_name()),
            config.output.prefix.clone(),
            config.input.messenger,
        );
        let store = config.output.target.store();
        for (file, rows) in export::export_csv(&store, dir, *raw, Some(enriched)).await? {
            tracing::info!("wrote {rows} rows to {}", dir.join(file).display());
        }
    }
    report.summary.elapsed_seconds = started.elapsed().as_secs_f64();
    if let Some(path) = &config.output.summary_json {
        export::write_summary_json(path, &report.summary);
    }
    Ok(report)
}

/// Reads the whole input into a new planner; returns it with the input's counts. A real run
/// (`run_id`) records invalid values and every row's link as it reads.
async fn stage_input(
    config: &Config,
    opened: source::Opened,
    store: &Store,
    delays: &RetryDelays,
    run_id: Option<i64>,
) -> Result<(Planner, RunCounts), JobError> {
    let described = config.input.source.describe();
    tracing::info!(
        "reading {described} (column '{}'{})",
        opened.column(),
        opened.format()
    );
    let mut planner = Planner::new(store).await?;
    let (messenger, country) = (config.input.messenger, config.input.default_country);
    let source_name = config.input.source_name();
    let seen_at = format_time(Utc::now());
    let recording = run_id.map(|run_id| Recording {
        messenger,
        delays,
        links: LinkOwner {
            source: &source_name,
            run_id,
            seen_at: &seen_at,
        },
        ids_from_data: config.input.source.ids_from_data(),
    });
    let guard = (!config.input.allow_mostly_invalid).then(|| ColumnGuard {
        column: opened.column().to_string(),
        columns: opened.columns().to_vec(),
        format: opened.format(),
    });
    let counts = stage::stage_input(
        opened,
        move |records| stage::normalise_batch(records, messenger, country),
        &mut planner,
        recording,
        guard,
        &described,
    )
    .await?;
    Ok((planner, counts))
}

/// Triggers the stop at `at`; the timer ends with the returned guard.
fn watch_deadline(at: Instant, stop: Stop) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        tokio::time::sleep_until(at.into()).await;
        stop.trigger(StopReason::Deadline);
    }))
}

/// A background task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The parts of a real run the fetch and write stages share.
struct Run<'a> {
    config: &'a Config,
    store: &'a Store,
    run_id: i64,
    delays: &'a RetryDelays,
    stats: &'a Arc<Stats>,
    stop: &'a Stop,
}

/// Preflight, then the fetch and write stages side by side until the plan is done or the run
/// stops. A run stopped before this point (deadline passed while planning, a signal) makes no
/// call.
async fn fetch_and_store(
    run: Run<'_>,
    client: Client,
    planner: Planner,
    plan: &PlanCounts,
) -> Result<Outcome, JobError> {
    let Run {
        config,
        store,
        run_id,
        delays,
        stats,
        stop,
    } = run;
    if let Some(reason) = stop.reason() {
        return Ok(Outcome::Stopped(reason));
    }
    if plan.due() == 0 {
        return Ok(Outcome::Completed);
    }
    let instances = if config.api.preflight {
        match preflight::usable_instances(&client, &config.api.instances).await {
            Ok(usable) => usable,
            Err(none) => return Ok(Outcome::Stopped(StopReason::NoInstances(none.0))),
        }
    } else {
        config.api.instances.clone()
    };
    let Some(instances) = share::lease_instances(config, store, instances, stop).await? else {
        return Ok(Outcome::Stopped(
            stop.reason().unwrap_or(StopReason::Interrupted),
        ));
    };
    let worker = store.join(run_id, &instances).await?;
    let claims = worker.map(|worker| (worker, config.output.claim_lease));
    let writer = Writer::new(store, config.input.messenger, *delays)
        .await?
        .fenced_by(worker);
    let progress = Progress::start(stats.clone(), plan.due(), &config.ui);
    // A worker of a shared store claims only what it will call soon, so others get their share.
    let look_ahead = match claims {
        None => 256,
        Some(_) => share::claim_batch(config.fetch.rate, instances.len()),
    };
    let (queue, feeder) = Queue::new(look_ahead);
    let claiming = claims.map(|(worker, lease)| Claims {
        worker,
        lease,
        batch: look_ahead as i64,
    });
    let feeding = AbortOnDrop(tokio::spawn(share::feed(
        planner,
        feeder,
        claiming,
        stop.clone(),
    )));
    let (outcome_tx, outcome_rx) = mpsc::channel(512);
    let writing = tokio::spawn(write::write_outcomes(
        writer,
        outcome_rx,
        stats.clone(),
        stop.clone(),
    ));
    let settings = Settings {
        messenger: config.input.messenger,
        fetch: config.fetch.clone(),
        max_calls: config.limits.max_calls,
        learnt_margin: learnt_margin(store, &instances, config.fetch.rate).await?,
    };
    let fetching = fetch::run(
        client,
        instances,
        settings,
        queue,
        outcome_tx,
        stats.clone(),
        stop.clone(),
    );
    let fetched = match claims {
        None => fetching.await,
        Some((worker, lease)) => {
            tokio::pin!(fetching);
            tokio::select! {
                fetched = &mut fetching => fetched,
                () = share::keep_alive(store, worker, lease, stats, stop) => fetching.await,
            }
        }
    };
    drop(feeding);
    let written = task::join("the writer", writing).await;
    if let Some((worker, _)) = claims {
        if let Err(e) = store.leave(worker).await {
            tracing::warn!("cannot give back this worker's unfinished keys ({e}); they return when its claims end");
        }
    }
    progress.finish(stats);
    fetched?;
    if let Err(e) = written? {
        stop.trigger(StopReason::Store(e.to_string()));
    }
    Ok(match stop.reason() {
        None => Outcome::Completed,
        Some(reason) => Outcome::Stopped(reason),
    })
}

/// The pacing margin the latest run of the last two days that paced any of `instances` at
/// `rate` had: as its worker last said (a shared store), or as it ended.
async fn learnt_margin(
    store: &Store,
    instances: &[crate::api::Instance],
    rate: crate::config::Rate,
) -> Result<Option<f64>, JobError> {
    let Some(interval) = rate.interval().filter(|t| !t.is_zero()) else {
        return Ok(None);
    };
    // A network changes: a spacing learnt long ago (a bad night) is not worth keeping to.
    const LEARNT_WITHIN: std::time::Duration = std::time::Duration::from_secs(2 * 86_400);
    let ids: Vec<&str> = instances.iter().map(|i| i.id.as_str()).collect();
    let since = format_time(crate::normalise::time_before(Utc::now(), LEARNT_WITHIN));
    let learnt = match store.workers_spacing(&ids, rate, LEARNT_WITHIN).await? {
        Some(found) => Some(found),
        None => store.last_spacing(&ids, rate, &since).await?,
    };
    let Some((run, spacing_ms)) = learnt else {
        return Ok(None);
    };
    let margin = spacing_ms / (interval.as_secs_f64() * 1000.0) - 1.0;
    tracing::info!("pacing starts from the spacing run #{run} ended with ({spacing_ms:.1} ms)");
    Ok(Some(margin))
}

fn run_options(config: &Config) -> RunOptions {
    RunOptions {
        input: config.input.source.describe(),
        messenger: config.input.messenger,
        instances: config.api.instances.iter().map(|i| i.id.clone()).collect(),
        rps_per_instance: config.fetch.rate,
        max_age_seconds: config.plan.max_age.map(|d| d.as_secs()),
        retry_failed_after_seconds: config.plan.retry_failed_after.as_secs(),
        only_failed: config.plan.only_failed,
        max_calls: config.limits.max_calls,
        deadline_seconds: config
            .limits
            .deadline
            .map(|at| at.saturating_duration_since(Instant::now()).as_secs()),
    }
}
