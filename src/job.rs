//! The enrichment job, end to end: it reads as the pipeline it runs, stage by stage
//! (see [`crate::pipeline`]).

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::domain::Clock;
use tokio::sync::mpsc;

use crate::api::{Client, Instance};
use crate::chat_id::{self, Messenger};
use crate::config::{Config, HumanDuration, Output, Refresh};
use crate::domain::Rate;
use crate::error::JobError;
use crate::export::{self, CsvOut, EnrichedCsv};
use crate::metrics::{self, Live};
use crate::normalise::time_before;
use crate::pipeline::fetch::{self, queue::Queue, Settings};
use crate::pipeline::output;
use crate::pipeline::share::{self, Claims, Feed};
use crate::pipeline::stage::{self, ColumnGuard, Recording};
use crate::pipeline::stop::{Stop, StopReason};
use crate::pipeline::task;
use crate::pipeline::{plan, write};
use crate::progress::Progress;
use crate::report::{Outcome, Report};
use crate::source;
use crate::stats::Stats;
use crate::store::ledger::{RunCounts, RunOptions, RunOutcome, RunSummary};
use crate::store::links::LinkOwner;
use crate::store::plan::{Adaptive, DuePlan, PlanCounts, StagedKeys};
use crate::store::shared::{SharedStore, WorkQueue};
use crate::store::staging::Stager;
use crate::store::writer::{RetryDelays, Writer};
use crate::store::{Store, Work, WorkerId};

/// Runs the job. `stop` lets the caller end it early (signals); the run then commits what it
/// fetched and reports a partial outcome. A `--deadline` counts from the start of this call.
pub(crate) async fn enrich(config: Config, stop: Stop) -> Result<Report, JobError> {
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
    let started_at = config.clock.now();
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
    if config.input.messenger != Messenger::Max {
        // About 0.1 s of a worker's start: done while the store opens.
        tokio::task::spawn_blocking(chat_id::load_phone_metadata);
    }
    let opened = source::open(&config.input.source).await?;
    let store = Store::open(&config.output.target.store(), config.output.lock_timeout).await?;
    let Some(client) = client else {
        return dry_run(config, live, &store, opened, &stop).await;
    };
    let run_id = store.begin_run(started_at, &run_options(config)).await?;
    let begun = Begun {
        id: run_id,
        started_at,
    };
    let result = run_begun(config, stop, live, &store, opened, client, begun).await;
    if let Err(e) = &result {
        // The run is over: the ledger says how, so that neither `status` nor the next run's
        // resume take it for one that is still going or crashed.
        let summary = failed_summary(config, live, e);
        if let Err(ledger) = store.finish_run(run_id, config.clock.now(), &summary).await {
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
        outcome: RunOutcome::Failed,
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
    started_at: DateTime<Utc>,
}

/// `--dry-run`: the input staged and the plan made, on a run that has no row in the ledger.
async fn dry_run(
    config: &Config,
    live: &Live,
    store: &Store,
    opened: source::Opened,
    stop: &Stop,
) -> Result<Report, JobError> {
    let delays = config.plan.retry_delays();
    let planned = plan_run(config, store, opened, &delays, None, stop).await?;
    *live.counts.lock().unwrap_or_else(|p| p.into_inner()) = planned.summary.counts.clone();
    let outcome = match (planned.due, stop.reason()) {
        (None, Some(reason)) => Outcome::Stopped(reason),
        _ => Outcome::DryRun,
    };
    let report = report(config, live, outcome, planned.summary);
    write_summary_json(config, &report);
    Ok(report)
}

/// The run once its row is in the ledger.
async fn run_begun(
    config: &Config,
    stop: Stop,
    live: &Live,
    store: &Store,
    opened: source::Opened,
    client: Client,
    begun: Begun,
) -> Result<Report, JobError> {
    let delays = config.plan.retry_delays();
    let planned = plan_run(config, store, opened, &delays, Some(&begun), &stop).await?;
    *live.counts.lock().unwrap_or_else(|p| p.into_inner()) = planned.summary.counts.clone();
    let input_read_whole = planned.due.is_some();
    let outcome = match planned.due {
        Some(due) => {
            tracing::info!("{}", planned.summary.plan_line);
            let work = store.hand_out(due).await?;
            let run = Run {
                config,
                store,
                run_id: begun.id,
                delays: &delays,
                stats: &live.stats,
                stop: &stop,
            };
            fetch_and_store(run, client, work, &planned.summary.plan).await?
        }
        // Stopped while reading the input: no plan, no call.
        None => Outcome::Stopped(stop.reason().unwrap_or(StopReason::Interrupted)),
    };
    let mut report = report(config, live, outcome, planned.summary);
    report.summary.counts.purged =
        erase_after_calls(config, store, &begun, input_read_whole).await?;
    store
        .finish_run(begun.id, config.clock.now(), &report.summary)
        .await?;
    let past_deadline = stop.reason() == Some(StopReason::Deadline);
    if let (Output::Csv { .. }, true) = (&config.output.target, past_deadline) {
        // The deadline is a wall: the files come with the next run (or `greenrich export`).
        tracing::warn!("the --deadline has passed: the CSV files are not written by this run");
    } else if let Output::Csv { dir, raw } = &config.output.target {
        let enriched = EnrichedCsv::new(
            &config.input.source,
            Some(config.input.source_name()),
            config.output.prefix.clone(),
            config.input.messenger,
        );
        let store = config.output.target.store();
        let out = CsvOut {
            dir: dir.clone(),
            raw: *raw,
            changed_since: None,
        };
        for (file, rows) in export::export_csv(&store, out, Some(enriched)).await? {
            tracing::info!("wrote {rows} rows to {}", dir.join(file).display());
        }
    }
    report.summary.elapsed_seconds = live.started.elapsed().as_secs_f64();
    write_summary_json(config, &report);
    write_report_page(config).await;
    Ok(report)
}

/// Once the calls are over: erases what this run stored of people on the do-not-process list
/// ([`Store::erase_listed_since`]), and with `--purge-after` (after a whole read of the input), what no input
/// has mentioned for that long. Returns how many contacts retention erased.
async fn erase_after_calls(
    config: &Config,
    store: &Store,
    begun: &Begun,
    input_read_whole: bool,
) -> Result<u64, JobError> {
    let late = store
        .erase_listed_since(begun.started_at, config.clock.now())
        .await?;
    if late > 0 {
        tracing::warn!("{late} contacts this run stored are of people on the do-not-process list (listed while it went, or found by a new Telegram username of theirs): erased, and the keys that led to them listed");
    }
    let (Some(older_than), true) = (config.output.purge_after, input_read_whole) else {
        return Ok(0);
    };
    let erased = crate::forget::purge(store, older_than, config.clock.now()).await?;
    tracing::info!(
        "--purge-after {}: erased what no input has mentioned for that long: {}",
        HumanDuration(older_than),
        erased.describe()
    );
    Ok(erased.contacts)
}

/// The report of a run that ended with `outcome`, its counts and times as they are now.
fn report(config: &Config, live: &Live, outcome: Outcome, mut summary: RunSummary) -> Report {
    let stats = &live.stats;
    stats.fill(&mut summary.counts);
    Report::new(
        outcome,
        RunSummary {
            failed_by_reason: stats.failed_by_reason(),
            calls_per_instance: stats.calls_per_instance(),
            spacing_ms_per_instance: stats.spacing_ms(),
            elapsed_seconds: live.started.elapsed().as_secs_f64(),
            output: config.output.target.describe(),
            ..summary
        },
    )
}

/// `--report`: the store's report page, with this run as its last; a page that cannot be written
/// is a warning (`greenrich report` writes it again from the store).
async fn write_report_page(config: &Config) {
    let Some(path) = &config.output.report else {
        return;
    };
    let max_age = config
        .plan
        .max_age
        .unwrap_or(crate::config::defaults::STATUS_MAX_AGE);
    let store = config.output.target.store();
    match crate::page::write(&store, path, config.clock.now(), max_age).await {
        Ok(()) => tracing::info!("wrote the run report {}", path.display()),
        Err(e) => tracing::warn!("{e}"),
    }
}

fn write_summary_json(config: &Config, report: &Report) {
    if let Some(path) = &config.output.summary_json {
        export::write_summary_json(path, &report.summary);
    }
}

/// A run's plan: its due keys (none when the run stopped while reading the input), and the
/// summary's plan line and counts so far.
struct Planned {
    due: Option<DuePlan>,
    summary: RunSummary,
}

/// Reads the whole input and plans; a real run (`begun`) records invalid values and every row's
/// link as it reads.
async fn plan_run(
    config: &Config,
    store: &Store,
    opened: source::Opened,
    delays: &RetryDelays,
    begun: Option<&Begun>,
    stop: &Stop,
) -> Result<Planned, JobError> {
    let (staged, mut counts) = stage_input(config, opened, store, delays, begun, stop).await?;
    let Some(mut staged) = staged else {
        let summary = RunSummary {
            plan_line: format!(
                "no plan: the run stopped while reading the input ({} rows read)",
                counts.input_rows
            ),
            counts,
            ..RunSummary::default()
        };
        return Ok(Planned { due: None, summary });
    };
    if config.input.messenger == Messenger::Telegram {
        let (known, left) = staged.follow_handles().await?;
        tracing::info!(
            "Telegram: {known} phone numbers and usernames have a known chat id; {left} have none yet (checked with checkAccount when due: one call more each)"
        );
    }
    let adaptive = adaptive_budget(config, store).await?;
    let policy = plan::policy(
        &config.plan,
        begun.map(|b| b.started_at),
        config.clock.now(),
        adaptive,
    );
    let (due, plan) = staged.plan(&policy).await?;
    counts.skipped_fresh = plan.skipped_fresh;
    counts.planned = plan.due();
    let plan_line = plan::plan_line(&counts, &plan, config.pool_rate(), config.limits.max_calls);
    let summary = RunSummary {
        plan_line,
        plan,
        counts,
        ..RunSummary::default()
    };
    Ok(Planned {
        due: Some(due),
        summary,
    })
}

/// The budget `--refresh adaptive` spreads over the stale contacts: the calls `--max-calls` and
/// `--deadline` allow (the deadline at the pool's rate), and how often runs come; `None` with
/// `--refresh age` or without a budget (every due key is called anyway).
async fn adaptive_budget(config: &Config, store: &Store) -> Result<Option<Adaptive>, JobError> {
    if config.plan.refresh != Refresh::Adaptive {
        return Ok(None);
    }
    let by_deadline = config
        .limits
        .deadline
        .zip(config.pool_rate())
        .map(|(at, rate)| {
            (at.saturating_duration_since(Instant::now()).as_secs_f64() * rate) as u64
        });
    let calls = match (config.limits.max_calls, by_deadline) {
        (Some(max), Some(deadline)) => Some(max.min(deadline)),
        (max, deadline) => max.or(deadline),
    };
    let Some(calls) = calls else {
        return Ok(None);
    };
    let starts = store.recent_run_starts(10).await?;
    Ok(Some(Adaptive {
        calls,
        run_interval_days: crate::refresh::run_interval_days(&starts),
    }))
}

/// Reads the whole input into the store's staging; returns the staged keys with the input's
/// counts. A real run (`begun`) records invalid values and every row's link as it reads.
async fn stage_input(
    config: &Config,
    opened: source::Opened,
    store: &Store,
    delays: &RetryDelays,
    begun: Option<&Begun>,
    stop: &Stop,
) -> Result<(Option<StagedKeys>, RunCounts), JobError> {
    let described = config.input.source.describe();
    tracing::info!(
        "reading {described} (column '{}'{})",
        opened.column(),
        opened.format()
    );
    let stager = Stager::new(store).await?;
    let suppressed = store.suppression_list().await?;
    if let Some(list) = &suppressed {
        tracing::info!(
            "the do-not-process list holds {} keys: rows of those people are skipped with no call",
            list.len()
        );
    }
    let messenger = config.input.messenger;
    let notation = config.input.notation();
    let source_name = config.input.source_name();
    let recording = begun.map(|run| Recording {
        messenger,
        delays,
        links: LinkOwner {
            source: &source_name,
            run_id: run.id,
            seen_at: config.clock.now(),
        },
        ids_from_data: config.input.source.ids_from_data(),
    });
    let guard = (!config.input.allow_mostly_invalid).then(|| ColumnGuard {
        column: opened.column().to_string(),
        columns: opened.columns().to_vec(),
        format: opened.format(),
    });
    let staged = stage::stage_input(
        opened,
        move |records| stage::normalise_batch(records, notation, suppressed.as_ref()),
        stager,
        recording,
        guard,
        &described,
        stop,
    );
    Ok(staged.await?)
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

/// The fetch and write stages side by side (each instance checked before its own first call)
/// until the plan is done or the run stops. A run stopped before this point (deadline passed while planning, a signal) makes no
/// call.
async fn fetch_and_store(
    run: Run<'_>,
    client: Client,
    work: Work<'_>,
    plan: &PlanCounts,
) -> Result<Outcome, JobError> {
    if let Some(reason) = run.stop.reason() {
        return Ok(Outcome::Stopped(reason));
    }
    if plan.due() == 0 {
        return Ok(Outcome::Completed);
    }
    let instances = run.config.api.instances.clone();
    match work {
        Work::Plan(due) => {
            let stages = stages(&run, client, instances, Feed::Plan(due), None, plan);
            stages.await
        }
        Work::Shared(shared, queue) => as_worker(run, client, instances, shared, queue, plan).await,
    }
}

/// The fetch and write stages as a worker of a shared store: with the instances no other worker
/// uses, on keys claimed from the store's queue, its claims kept alive while it runs and given
/// back when it ends.
async fn as_worker(
    run: Run<'_>,
    client: Client,
    instances: Vec<Instance>,
    shared: &SharedStore,
    queue: WorkQueue,
    plan: &PlanCounts,
) -> Result<Outcome, JobError> {
    let (config, stop) = (run.config, run.stop);
    let Some(instances) = share::lease_instances(config, shared, instances, stop).await? else {
        return Ok(Outcome::Stopped(
            stop.reason().unwrap_or(StopReason::Interrupted),
        ));
    };
    let worker = shared.join(run.run_id, &instances).await?;
    let claims = Claims {
        worker,
        lease: config.output.claim_lease,
        // A worker claims only what it will call soon, so others get their share.
        batch: share::claim_batch(config.fetch.rate, instances.len()) as i64,
    };
    let feed = Feed::Queue(queue, claims);
    let stages = stages(&run, client, instances, feed, Some(worker), plan);
    tokio::pin!(stages);
    let outcome = tokio::select! {
        outcome = &mut stages => outcome,
        () = share::keep_alive(shared, worker, claims.lease, run.stats, stop) => stages.await,
    };
    if let Err(e) = shared.leave(worker).await {
        tracing::warn!(
            "cannot give back this worker's unfinished keys ({e}); they return when its claims end"
        );
    }
    outcome
}

/// The fetch and write stages on `instances`, with keys from `feed`, until it is empty or the
/// run stops; `fence`: the worker whose claims fence the writes (a shared store).
async fn stages(
    run: &Run<'_>,
    client: Client,
    instances: Vec<Instance>,
    feed: Feed,
    fence: Option<WorkerId>,
    plan: &PlanCounts,
) -> Result<Outcome, JobError> {
    let Run {
        config,
        store,
        delays,
        stats,
        stop,
        ..
    } = *run;
    let writer = Writer::new(store, config.input.messenger, *delays, run.run_id)
        .await?
        .fenced_by(fence);
    let progress = Progress::start(stats.clone(), plan.due(), &config.ui);
    let look_ahead = match &feed {
        Feed::Plan(_) => 256,
        Feed::Queue(_, claims) => claims.batch as usize,
    };
    let (queue, feeder) = Queue::new(look_ahead);
    let feeding = AbortOnDrop(tokio::spawn(share::feed(feed, feeder, stop.clone())));
    let (outcome_tx, outcome_rx) = mpsc::channel(512);
    let writing = tokio::spawn(write::write_outcomes(
        writer,
        outcome_rx,
        stats.clone(),
        stop.clone(),
        config.clock,
    ));
    let settings = Settings {
        messenger: config.input.messenger,
        fetch: config.fetch.clone(),
        max_calls: config.limits.max_calls,
        preflight: config.api.preflight,
        learnt_margin: learnt_margin(store, &instances, config.fetch.rate, config.clock).await?,
        clock: config.clock,
    };
    let (stats_, stop_) = (stats.clone(), stop.clone());
    let fetched = fetch::run(
        client, instances, settings, queue, outcome_tx, stats_, stop_,
    )
    .await;
    drop(feeding);
    let written = task::join("the writer", writing).await;
    progress.finish(stats);
    fetched?;
    if let Err(e) = written? {
        stop.trigger(StopReason::Store(e.to_string()));
    }
    Ok(ended(stop, stats))
}

/// How the fetch and write stages ended: stopped, or completed unless Telegram's checkAccount
/// quota left phone numbers and usernames unchecked (the ids went on; they wait for the next
/// run).
fn ended(stop: &Stop, stats: &Stats) -> Outcome {
    match (stop.reason(), stats.checks_over()) {
        (Some(reason), _) => Outcome::Stopped(reason),
        (None, Some(why)) => Outcome::Stopped(StopReason::Quota(format!(
            "Telegram's checkAccount quota is used up on every instance ({why}); the phone numbers and usernames not checked yet wait for the next run, every known id was asked"
        ))),
        (None, None) => Outcome::Completed,
    }
}

/// The pacing margin the latest run of the last two days that paced any of `instances` at
/// `rate` had: as its worker last said (a shared store), or as it ended.
async fn learnt_margin(
    store: &Store,
    instances: &[Instance],
    rate: Rate,
    clock: Clock,
) -> Result<Option<f64>, JobError> {
    let Some(interval) = rate.interval().filter(|t| !t.is_zero()) else {
        return Ok(None);
    };
    // A network changes: a spacing learnt long ago (a bad night) is not worth keeping to.
    const LEARNT_WITHIN: std::time::Duration = std::time::Duration::from_secs(2 * 86_400);
    let ids: Vec<&str> = instances.iter().map(|i| i.id.as_str()).collect();
    let since = time_before(clock.now(), LEARNT_WITHIN);
    let from_workers = match store.shared() {
        Some(shared) => shared.workers_spacing(&ids, rate, LEARNT_WITHIN).await?,
        None => None,
    };
    let learnt = match from_workers {
        Some(found) => Some(found),
        None => store.last_spacing(&ids, rate, since).await?,
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
