//! The enrichment job, end to end: source → plan → preflight → fetch → store → export.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::mpsc;

use crate::api::{Client, Instance, Verdict};
use crate::chat_id::{self, DefaultCountry, Messenger};
use crate::export;
use crate::fetch::{self, Job, Queue, Settings, Stop, StopReason};
use crate::normalise::format_time;
use crate::progress::{format_duration, Progress};
use crate::report::{Outcome, Report};
use crate::source::{self, Record, Source};
use crate::stats::Stats;
use crate::store::ledger::RunCounts;
use crate::store::plan::{InputKey, PlanCounts, Planner, Policy};
use crate::store::writer::{FailedKey, KeyOutcome, Writer};
use crate::store::{Store, StoreError};

/// Where the results go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Sqlite(PathBuf),
    /// CSV files in a directory, with the SQLite working store `greenrich.db` beside them.
    Csv {
        dir: PathBuf,
        raw: bool,
    },
}

impl Output {
    /// The SQLite file that holds the working store.
    pub fn store_path(&self) -> PathBuf {
        match self {
            Output::Sqlite(path) => path.clone(),
            Output::Csv { dir, .. } => dir.join("greenrich.db"),
        }
    }
}

/// A validated configuration of one `enrich` run.
#[derive(Debug, Clone)]
pub struct EnrichConfig {
    pub source: Source,
    pub messenger: Messenger,
    pub default_country: Option<DefaultCountry>,
    pub output: Output,
    pub api_url: String,
    pub instances: Vec<Instance>,
    pub fetch: Settings,
    pub timeout: Duration,
    pub max_age: Option<Duration>,
    pub retry_failed_after: Duration,
    pub only_failed: bool,
    pub deadline: Option<Duration>,
    pub dry_run: bool,
    pub preflight: bool,
    pub status_interval: Duration,
    pub quiet: bool,
    pub lock_timeout: Duration,
}

/// A run that could not start or had to stop with an error.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0}")]
    Input(#[from] source::SourceError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Output(String),
    #[error(transparent)]
    Export(#[from] export::ExportError),
}

impl JobError {
    pub fn exit_code(&self) -> i32 {
        match self {
            JobError::Store(StoreError::Locked { .. }) => crate::report::exit::BUSY,
            _ => crate::report::exit::FATAL,
        }
    }
}

/// Values longer than this are cut in failure rows (a 1 MB cell must not become a 1 MB key).
const MAX_KEY_CHARS: usize = 200;

/// Runs the job. `stop` lets the caller end it early (signals); the run then commits what it
/// fetched and reports a partial outcome.
pub async fn enrich(config: EnrichConfig, stop: Stop) -> Result<Report, JobError> {
    let started = Instant::now();
    let started_at = format_time(Utc::now());
    prepare_output(&config.output)?;
    let opened = source::open(&config.source).await?;
    tracing::info!(
        "reading {} (column '{}')",
        config.source.describe(),
        opened.column()
    );
    let store = Store::open(&config.output.store_path(), config.lock_timeout).await?;
    let resume_from = store.resume_from().await?;
    let run_id = if config.dry_run {
        None
    } else {
        Some(store.begin_run(&started_at, &options_json(&config)).await?)
    };

    let mut planner = Planner::new(&store).await?;
    let mut counts = stage_input(&config, opened, &mut planner).await?;
    tracing::debug!("input staged in {:?}", started.elapsed());
    let policy = policy(&config, resume_from);
    let plan = planner.plan(&policy).await?;
    tracing::debug!("plan made in {:?}", started.elapsed());
    counts.skipped_fresh = plan.skipped_fresh;
    counts.planned = plan.due();
    let instances_rate = config.instances.len() as f64 * config.fetch.rps_per_instance;
    let plan_line = plan_line(&counts, &plan, instances_rate, config.fetch.max_calls);
    if !config.dry_run {
        tracing::info!("{plan_line}");
    }

    let stats = Arc::new(Stats::default());
    let outcome = if config.dry_run {
        Outcome::DryRun
    } else {
        fetch_and_store(&config, &store, planner, &plan, stats.clone(), stop).await
    };
    counts.enriched = Stats::get(&stats.enriched);
    counts.failed = Stats::get(&stats.failed);
    counts.requests = Stats::get(&stats.requests);
    counts.http_429 = Stats::get(&stats.http_429);
    counts.retries = Stats::get(&stats.retries);
    let mut report = Report {
        outcome,
        plan_line,
        plan,
        counts,
        failed_by_reason: stats.failed_by_reason(),
        calls_per_instance: stats.calls_per_instance(),
        elapsed: started.elapsed(),
        output: match &config.output {
            Output::Sqlite(path) => path.display().to_string(),
            Output::Csv { dir, .. } => dir.display().to_string(),
        },
    };
    if let Some(run_id) = run_id {
        let summary = report.to_json().to_string();
        store
            .finish_run(
                run_id,
                &format_time(Utc::now()),
                report.outcome.label(),
                &report.counts,
                &summary,
            )
            .await?;
    }
    if let (Output::Csv { dir, raw }, false) = (&config.output, config.dry_run) {
        for (file, rows) in export::export_csv(&store, dir, *raw).await? {
            tracing::info!("wrote {rows} rows to {}", dir.join(file).display());
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Checks the output location before any call is made.
fn prepare_output(output: &Output) -> Result<(), JobError> {
    let check_dir = |dir: &std::path::Path| -> Result<(), JobError> {
        let shown = if dir.as_os_str().is_empty() {
            std::path::Path::new(".")
        } else {
            dir
        };
        let meta = std::fs::metadata(shown).map_err(|_| {
            JobError::Output(format!(
                "the output directory {} does not exist",
                shown.display()
            ))
        })?;
        if !meta.is_dir() {
            return Err(JobError::Output(format!(
                "{} is not a directory",
                shown.display()
            )));
        }
        let probe = shown.join(format!(".greenrich-write-test-{}", std::process::id()));
        std::fs::write(&probe, b"").map_err(|e| {
            JobError::Output(format!(
                "cannot write in the output directory {}: {e}",
                shown.display()
            ))
        })?;
        let _ = std::fs::remove_file(probe);
        Ok(())
    };
    match output {
        Output::Sqlite(path) => check_dir(path.parent().unwrap_or(std::path::Path::new("."))),
        Output::Csv { dir, .. } => {
            if !dir.exists() {
                check_dir(dir.parent().unwrap_or(std::path::Path::new(".")))?;
                std::fs::create_dir(dir).map_err(|e| {
                    JobError::Output(format!(
                        "cannot create the output directory {}: {e}",
                        dir.display()
                    ))
                })?;
            }
            check_dir(dir)
        }
    }
}

/// Reads the whole input into the planner: normalises each value, records invalid ones. Three
/// stages overlap: reading, normalising (on a blocking thread: phone parsing is the costly part)
/// and staging in SQLite.
async fn stage_input(
    config: &EnrichConfig,
    opened: source::Opened,
    planner: &mut Planner,
) -> Result<RunCounts, JobError> {
    let (records_tx, mut records_rx) = mpsc::channel(4);
    let reader = tokio::spawn(opened.stream(records_tx));
    let (batches_tx, mut batches_rx) = mpsc::channel::<NormalisedBatch>(4);
    let (messenger, country) = (config.messenger, config.default_country);
    // Invalid values are permanent failures: due again after --retry-failed-after.
    let retry_at = format_time(Utc::now() + chrono_duration(config.retry_failed_after));
    let normaliser = tokio::task::spawn_blocking(move || {
        while let Some(records) = records_rx.blocking_recv() {
            if batches_tx
                .blocking_send(normalise_batch(records, messenger, country, &retry_at))
                .is_err()
            {
                break;
            }
        }
    });
    let mut counts = RunCounts::default();
    let mut valid = 0;
    let now = format_time(Utc::now());
    let source_name = config.source.describe();
    while let Some(batch) = batches_rx.recv().await {
        counts.input_rows += batch.rows;
        counts.invalid += batch.invalid.len() as u64;
        valid += batch.valid.len() as u64;
        planner.stage(&batch.valid).await?;
        if !config.dry_run && !batch.invalid.is_empty() {
            planner
                .record_invalid(&batch.invalid, config.messenger.as_str(), &now)
                .await?;
        }
    }
    let _ = normaliser.await;
    match reader.await {
        Ok(result) => result?,
        Err(e) => return Err(JobError::Output(format!("the input reader stopped: {e}"))),
    }
    if counts.input_rows == 0 {
        tracing::warn!("{source_name} has a header but no rows: nothing to do");
    }
    counts.duplicates = valid - planner.distinct().await?;
    Ok(counts)
}

/// One batch of input rows, normalised.
struct NormalisedBatch {
    rows: u64,
    valid: Vec<InputKey>,
    invalid: Vec<FailedKey>,
}

fn normalise_batch(
    records: Vec<Record>,
    messenger: Messenger,
    country: Option<DefaultCountry>,
    retry_at: &str,
) -> NormalisedBatch {
    let invalid = |key: String, input_value: String, reason, message| FailedKey {
        key,
        input_value: Some(input_value),
        reason,
        message,
        http_status: None,
        attempts: 0,
        permanent: true,
        next_due_at: retry_at.to_string(),
    };
    let mut batch = NormalisedBatch {
        rows: records.len() as u64,
        valid: Vec::with_capacity(records.len()),
        invalid: Vec::new(),
    };
    for record in records {
        match record {
            Record::Value { line, value } => match chat_id::normalise(&value, messenger, country) {
                Ok(id) => batch.valid.push(InputKey {
                    chat_id: id.id,
                    phone: id.phone,
                    line,
                }),
                Err(e) => {
                    let trimmed = value.trim();
                    let key = if trimmed.is_empty() {
                        format!("(empty value, line {line})")
                    } else {
                        cut(trimmed)
                    };
                    let failure = invalid(key, cut(&value), chat_id::Invalid::REASON, e.message);
                    batch.invalid.push(failure);
                }
            },
            Record::Unreadable { line, message } => {
                tracing::warn!("input line {line}: {message}; row skipped");
                let key = format!("(unreadable row, line {line})");
                batch
                    .invalid
                    .push(invalid(key, String::new(), "unreadable_row", message));
            }
        }
    }
    batch
}

fn cut(text: &str) -> String {
    match text.char_indices().nth(MAX_KEY_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn policy(config: &EnrichConfig, resume_from: Option<String>) -> Policy {
    let now = Utc::now();
    let by_age = config
        .max_age
        .map(|age| format_time(now - chrono_duration(age)));
    // Fresh: younger than --max-age, or fetched since an unfinished run began (resume).
    let fresh_from = match (by_age, resume_from) {
        (Some(a), Some(r)) => a.min(r),
        (Some(a), None) => a,
        (None, Some(r)) => r,
        (None, None) => "9999".to_string(),
    };
    Policy {
        now: format_time(now),
        fresh_from,
        permanent_retry_before: format_time(now - chrono_duration(config.retry_failed_after)),
        only_failed: config.only_failed,
    }
}

/// The plan line that opens every run (and is all `--dry-run` prints).
pub fn plan_line(
    counts: &RunCounts,
    plan: &PlanCounts,
    rate: f64,
    max_calls: Option<u64>,
) -> String {
    let calls = max_calls.map_or(plan.due(), |m| m.min(plan.due()));
    let estimate = if rate > 0.0 {
        format_duration(Duration::from_secs_f64(calls as f64 / rate))
    } else {
        "-".into()
    };
    format!(
        "plan: {} input rows, {} invalid, {} duplicates, {} due ({} never fetched, {} retry, {} stale), {} skipped as fresh, {} failed and not yet due; {} calls at {:.1}/s ≈ {}",
        counts.input_rows,
        counts.invalid,
        counts.duplicates,
        plan.due(),
        plan.never_fetched,
        plan.retry,
        plan.stale,
        plan.skipped_fresh,
        plan.failed_not_due,
        calls,
        rate,
        estimate,
    )
}

async fn fetch_and_store(
    config: &EnrichConfig,
    store: &Store,
    planner: Planner,
    plan: &PlanCounts,
    stats: Arc<Stats>,
    stop: Stop,
) -> Outcome {
    if plan.due() == 0 {
        return Outcome::Completed;
    }
    let client = match Client::new(&config.api_url, config.messenger, config.timeout) {
        Ok(client) => client,
        Err(message) => return Outcome::Stopped(message),
    };
    let instances = if config.preflight {
        match preflight(&client, &config.instances).await {
            Ok(usable) => usable,
            Err(message) => return Outcome::Stopped(message),
        }
    } else {
        config.instances.clone()
    };
    let writer = match Writer::new(store, config.messenger.as_str()).await {
        Ok(writer) => writer,
        Err(e) => return Outcome::Partial(StopReason::Store(e.to_string())),
    };
    let progress = Progress::start(
        stats.clone(),
        plan.due(),
        config.status_interval,
        config.quiet,
    );
    let deadline = config.deadline.map(|after| {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            stop.trigger(StopReason::Deadline);
        })
    });
    let queue = Queue::new(256);
    let feeder = tokio::spawn(feed(planner, queue.clone(), stop.clone()));
    let (outcome_tx, outcome_rx) = mpsc::channel(512);
    let writing = tokio::spawn(write_outcomes(
        writer,
        outcome_rx,
        stats.clone(),
        stop.clone(),
    ));
    fetch::run(
        client,
        instances,
        config.fetch.clone(),
        queue,
        outcome_tx,
        stats.clone(),
        stop.clone(),
    )
    .await;
    feeder.abort();
    if let Ok(Err(e)) = writing.await {
        stop.trigger(StopReason::Store(e.to_string()));
    }
    if let Some(deadline) = deadline {
        deadline.abort();
    }
    progress.finish(&stats);
    Outcome::from_stop(stop.reason())
}

/// Feeds due keys from the plan to the fetcher, a page at a time.
async fn feed(mut planner: Planner, queue: Arc<Queue>, stop: Stop) {
    const PAGE: i64 = 1000;
    let mut after = 0;
    loop {
        let page = match planner.page(after, PAGE).await {
            Ok(page) => page,
            Err(e) => {
                stop.trigger(StopReason::Store(e.to_string()));
                break;
            }
        };
        let Some(last) = page.last() else { break };
        after = last.seq;
        for key in page {
            if !queue.push(Job::new(key.chat_id, key.phone)).await {
                return;
            }
        }
    }
    queue.finish_feeding();
}

/// The single writer: commits outcomes in batches (whatever has arrived while the last batch was
/// being committed), and counts them once committed.
async fn write_outcomes(
    mut writer: Writer,
    mut rx: mpsc::Receiver<KeyOutcome>,
    stats: Arc<Stats>,
    stop: Stop,
) -> Result<(), StoreError> {
    const MAX_BATCH: usize = 500;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut error = None;
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if error.is_none() {
            match writer.commit(&batch, &format_time(Utc::now())).await {
                Ok(()) => {
                    for outcome in &batch {
                        match outcome {
                            KeyOutcome::Enriched(_) => Stats::add(&stats.enriched, 1),
                            KeyOutcome::Failed(f) => stats.count_failure(f.reason),
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(
                        "cannot write to the store: {e}; stopping (what was committed is kept)"
                    );
                    stop.trigger(StopReason::Store(e.to_string()));
                    error = Some(e);
                }
            }
        }
        batch.clear();
    }
    error.map_or(Ok(()), Err)
}

/// Checks every instance with `getStateInstance` (all at once); returns the usable ones, or why
/// none is.
async fn preflight(client: &Client, instances: &[Instance]) -> Result<Vec<Instance>, String> {
    let checks =
        futures::future::join_all(instances.iter().map(|i| check_instance(client, i))).await;
    let mut usable = Vec::new();
    let mut problems = Vec::new();
    for (instance, check) in instances.iter().zip(checks) {
        match check {
            Ok(()) => usable.push(instance.clone()),
            Err(problem) => {
                let problem = format!("instance {}: {problem}", instance.id);
                tracing::warn!("{problem}; left out of the pool");
                problems.push(problem);
            }
        }
    }
    if usable.is_empty() {
        return Err(format!("no usable instance: {}", problems.join("; ")));
    }
    Ok(usable)
}

async fn check_instance(client: &Client, instance: &Instance) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            // getStateInstance is limited to one call per second per instance.
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        let answer = client.state(instance).await;
        let problem = match answer.verdict {
            Verdict::Answer => {
                let state = serde_json::from_str::<serde_json::Value>(&answer.body)
                    .ok()
                    .and_then(|v| v.get("stateInstance")?.as_str().map(str::to_string))
                    .unwrap_or_default();
                return match state.as_str() {
                    "authorized" => {
                        tracing::info!("instance {}: authorized", instance.id);
                        Ok(())
                    }
                    "starting" => {
                        tracing::warn!(
                            "instance {}: starting; calls will wait for it",
                            instance.id
                        );
                        Ok(())
                    }
                    other => Err(state_advice(other)),
                };
            }
            Verdict::Transient(p) => p,
            Verdict::KeyRejected(p)
            | Verdict::InstanceStarting(p)
            | Verdict::InstanceUnusable(p)
            | Verdict::QuotaExhausted(p) => return Err(p.message),
        };
        last = problem.message;
    }
    Err(last)
}

fn state_advice(state: &str) -> String {
    let advice = match state {
        "notAuthorized" => {
            "not authorized: scan the QR code in the GREEN-API console to link the phone"
        }
        "blocked" => "blocked: the account is banned; use another instance",
        "sleepMode" => "in sleep mode: open the messenger on the phone to wake it",
        "yellowCard" => "has a yellow card (suspected spam): pause it for a while",
        "suspended" => "suspended: check the account in the console",
        _ => "not usable",
    };
    format!("state '{state}', {advice}")
}

fn options_json(config: &EnrichConfig) -> String {
    serde_json::json!({
        "input": config.source.describe(),
        "messenger": config.messenger,
        "instances": config.instances.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        "rps_per_instance": config.fetch.rps_per_instance,
        "max_age_seconds": config.max_age.map(|d| d.as_secs()),
        "retry_failed_after_seconds": config.retry_failed_after.as_secs(),
        "only_failed": config.only_failed,
        "max_calls": config.fetch.max_calls,
        "deadline_seconds": config.deadline.map(|d| d.as_secs()),
    })
    .to_string()
}
