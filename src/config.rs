//! The validated configuration of one `enrich` run, in the parts the pipeline has. Every default
//! is defined here once and shared by the command line, the demo and the tests.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::api::{ApiUrl, Instance};
use crate::chat_id::{DefaultCountry, Messenger, Notation};
use crate::source::server_url::ServerUrl;
use crate::source::Source;
use crate::store::StoreLocation;

pub(crate) use crate::domain::InvalidValue;
use crate::domain::{Clock, Rate};
use crate::store::writer::RetryDelays;

/// The working store's file name in a `--format csv` output directory.
pub(crate) const WORKING_STORE: &str = "greenrich.db";

/// The defaults of every option.
pub(crate) mod defaults {
    use std::time::Duration;

    /// The schema of a PostgreSQL store.
    pub(crate) const SCHEMA: &str = "greenrich";
    /// How long a worker's claims on a PostgreSQL store last without its heartbeat.
    pub(crate) const CLAIM_LEASE: Duration = Duration::from_secs(60);
    /// The API host when `GREEN_API_URL` is not set.
    pub(crate) const API_URL: &str = "https://api.green-api.com";
    /// getContactInfo calls per second per instance: the documented limit.
    pub(crate) const RPS_PER_INSTANCE: f64 = 1.0;
    /// The starting margin of the pacing: extra spacing between calls, as a fraction of the
    /// interval, that the pacer then adapts to the network's jitter.
    pub(crate) const PACING_MARGIN: f64 = 0.06;
    /// Attempts per key before it is recorded as failed.
    pub(crate) const MAX_ATTEMPTS: u32 = 5;
    /// The first retry's backoff.
    pub(crate) const BACKOFF_BASE: Duration = Duration::from_secs(1);
    /// The longest backoff.
    pub(crate) const BACKOFF_CAP: Duration = Duration::from_secs(60);
    /// The longest wait a `Retry-After` header can impose.
    pub(crate) const RETRY_AFTER_CAP: Duration = Duration::from_secs(120);
    /// Per-request timeout.
    pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);
    /// How long an instance answering "starting" is waited for.
    pub(crate) const STARTING_WAIT: Duration = Duration::from_secs(5 * 60);
    /// When permanently failed keys are tried again.
    pub(crate) const RETRY_FAILED_AFTER: Duration = Duration::from_secs(30 * 86_400);
    /// When keys that failed for a transient reason are due again.
    pub(crate) const RETRY_TRANSIENT_AFTER: Duration = Duration::from_secs(3600);
    /// Plain status line period when stderr is not a terminal.
    pub(crate) const STATUS_INTERVAL: Duration = Duration::from_secs(10);
    /// How long a write waits for an output database locked by another program.
    pub(crate) const LOCK_TIMEOUT: Duration = Duration::from_secs(10);
    /// Contacts older than this count as stale in `status`.
    pub(crate) const STATUS_MAX_AGE: Duration = Duration::from_secs(7 * 86_400);
}

/// A validated configuration of one `enrich` run.
#[derive(Debug, Clone)]
pub struct Config {
    /// What to read.
    pub input: InputConfig,
    /// Where results go.
    pub output: OutputConfig,
    /// Which API and instances to call.
    pub api: ApiConfig,
    /// Which keys are due.
    pub plan: PlanPolicy,
    /// How calls are paced and retried.
    pub fetch: FetchConfig,
    /// When the run stops early.
    pub limits: Limits,
    /// How the run shows itself.
    pub ui: UiConfig,
    /// Read the input and the store, print the plan, make no call.
    pub dry_run: bool,
    /// The time the run goes by.
    pub clock: Clock,
}

impl Config {
    /// A configuration with every default, for these input, output and API parts.
    pub fn new(input: InputConfig, output: Output, api: ApiConfig) -> Config {
        Config {
            input,
            output: OutputConfig {
                target: output,
                lock_timeout: defaults::LOCK_TIMEOUT,
                no_wait: false,
                claim_lease: defaults::CLAIM_LEASE,
                metrics_file: None,
                summary_json: None,
                report: None,
                purge_after: None,
                prefix: None,
            },
            api,
            plan: PlanPolicy::default(),
            fetch: FetchConfig::default(),
            limits: Limits::default(),
            ui: UiConfig::default(),
            dry_run: false,
            clock: Clock::default(),
        }
    }

    /// Calls per second over the whole pool; `None` when unpaced.
    pub fn pool_rate(&self) -> Option<f64> {
        self.fetch
            .rate
            .per_second()
            .map(|rps| rps * self.api.instances.len() as f64)
    }
}

/// The input: where keys come from and how they are read.
#[derive(Debug, Clone)]
pub struct InputConfig {
    /// The CSV file or database table.
    pub source: Source,
    /// WhatsApp or MAX: decides the chat id shape and the URL prefix.
    pub messenger: Messenger,
    /// The country of national phone formats.
    pub default_country: Option<DefaultCountry>,
    /// Telegram: values of digits only are user ids, not phone numbers.
    pub telegram_ids: bool,
    /// The name rows are linked under (`--source-name`); default: the file or table name.
    pub source_name: Option<String>,
    /// Go on when nearly every value is invalid (the wrong-column guard is off).
    pub allow_mostly_invalid: bool,
}

impl InputConfig {
    /// Reading `source` with every default.
    pub fn new(source: Source, messenger: Messenger) -> InputConfig {
        InputConfig {
            source,
            messenger,
            default_country: None,
            telegram_ids: false,
            source_name: None,
            allow_mostly_invalid: false,
        }
    }

    /// How the input's values are read.
    pub fn notation(&self) -> Notation {
        Notation {
            messenger: self.messenger,
            default_country: self.default_country,
            telegram_ids: self.telegram_ids,
        }
    }

    /// The name this input's rows are linked under.
    pub fn source_name(&self) -> String {
        self.source_name
            .clone()
            .unwrap_or_else(|| self.source.default_name())
    }
}

/// Where the results go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A SQLite database (created when missing).
    Sqlite(PathBuf),
    /// CSV files in a directory, with the SQLite working store `greenrich.db` beside them.
    Csv {
        /// The directory.
        dir: PathBuf,
        /// Write cells as they are, without neutralising spreadsheet formulas.
        raw: bool,
    },
    /// A schema in a PostgreSQL database (created when missing).
    Postgres {
        /// The database.
        url: ServerUrl,
        /// The schema.
        schema: String,
    },
}

impl Output {
    /// Where the working store is.
    pub fn store(&self) -> StoreLocation {
        match self {
            Output::Sqlite(path) => StoreLocation::Sqlite(path.clone()),
            Output::Csv { dir, .. } => StoreLocation::Sqlite(dir.join(WORKING_STORE)),
            Output::Postgres { url, schema } => StoreLocation::Postgres {
                url: url.clone(),
                schema: schema.clone(),
            },
        }
    }

    /// The file or directory named to the user.
    pub fn describe(&self) -> String {
        match self {
            Output::Sqlite(path) => path.display().to_string(),
            Output::Csv { dir, .. } => dir.display().to_string(),
            Output::Postgres { .. } => self.store().to_string(),
        }
    }
}

/// The output part.
#[derive(Debug, Clone)]
pub struct OutputConfig {
    /// The store or CSV directory.
    pub target: Output,
    /// How long a write waits for a database locked by another program.
    pub lock_timeout: Duration,
    /// A worker of a shared PostgreSQL store exits when every instance is in use elsewhere.
    pub no_wait: bool,
    /// How long a worker's claims last without its heartbeat.
    pub claim_lease: Duration,
    /// Where to keep the run's metrics for Prometheus (node_exporter's textfile collector).
    pub metrics_file: Option<PathBuf>,
    /// Where to write the final summary as JSON.
    pub summary_json: Option<PathBuf>,
    /// Where to write the run report (HTML) at the end.
    pub report: Option<PathBuf>,
    /// At the end, erase what no input has mentioned for this long (`--purge-after`).
    pub purge_after: Option<Duration>,
    /// The prefix of the columns `enriched.csv` adds (default: `whatsapp_` or `max_`).
    pub prefix: Option<String>,
}

/// The API part.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The API host, such as `https://7105.api.greenapi.com`.
    pub url: ApiUrl,
    /// The pool.
    pub instances: Vec<Instance>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Check every instance with `getStateInstance` before the run.
    pub preflight: bool,
}

impl ApiConfig {
    /// The API at `url` with these instances and default settings.
    pub fn new(url: ApiUrl, instances: Vec<Instance>) -> ApiConfig {
        ApiConfig {
            url,
            instances,
            timeout: defaults::TIMEOUT,
            preflight: true,
        }
    }
}

/// Which keys are due.
#[derive(Debug, Clone)]
pub struct PlanPolicy {
    /// Skip keys fetched successfully within this age; `None` fetches every key.
    pub max_age: Option<Duration>,
    /// When keys that failed permanently are tried again.
    pub retry_failed_after: Duration,
    /// When keys that failed for a transient reason are due again.
    pub retry_transient_after: Duration,
    /// Fetch only keys that have a failure row.
    pub only_failed: bool,
    /// Which stale contacts a budget refreshes first.
    pub refresh: Refresh,
}

/// `--refresh`: which stale contacts a budget (`--max-calls`, `--deadline`) refreshes first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Refresh {
    /// The stalest first.
    #[default]
    Age,
    /// Those whose refresh keeps the most rows fresh, by each contact's estimated change rate
    /// (Cho and Garcia-Molina's optimum; see `src/refresh.rs`).
    Adaptive,
}

impl PlanPolicy {
    /// When failed keys are due again.
    pub(crate) fn retry_delays(&self) -> RetryDelays {
        RetryDelays {
            permanent: self.retry_failed_after,
            transient: self.retry_transient_after,
        }
    }
}

impl Default for PlanPolicy {
    fn default() -> Self {
        PlanPolicy {
            max_age: None,
            retry_failed_after: defaults::RETRY_FAILED_AFTER,
            retry_transient_after: defaults::RETRY_TRANSIENT_AFTER,
            only_failed: false,
            refresh: Refresh::Age,
        }
    }
}

/// How calls are paced and retried.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// Calls per second per instance.
    pub rate: Rate,
    /// Telegram `checkAccount` calls per second per instance (a limit of its own).
    pub check_rate: Rate,
    /// Extra spacing, as a fraction of the interval.
    pub pacing_margin: f64,
    /// Attempts per key.
    pub max_attempts: u32,
    /// The first retry's backoff; it doubles with each attempt.
    pub backoff_base: Duration,
    /// The longest backoff.
    pub backoff_cap: Duration,
    /// The longest wait a `Retry-After` can impose.
    pub retry_after_cap: Duration,
    /// How long an instance answering "starting" is waited for before it is left out.
    pub starting_wait: Duration,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            rate: Rate::PerSecond(defaults::RPS_PER_INSTANCE),
            check_rate: Rate::PerSecond(defaults::RPS_PER_INSTANCE),
            pacing_margin: defaults::PACING_MARGIN,
            max_attempts: defaults::MAX_ATTEMPTS,
            backoff_base: defaults::BACKOFF_BASE,
            backoff_cap: defaults::BACKOFF_CAP,
            retry_after_cap: defaults::RETRY_AFTER_CAP,
            starting_wait: defaults::STARTING_WAIT,
        }
    }
}

/// When the run stops early.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// Stop after this many calls (retries count).
    pub max_calls: Option<u64>,
    /// Stop issuing calls at this instant, fixed when the run starts.
    pub deadline: Option<Instant>,
}

/// How the run shows itself.
#[derive(Debug, Clone)]
pub struct UiConfig {
    /// Only warnings and the final summary.
    pub quiet: bool,
    /// Plain status line period when stderr is not a terminal.
    pub status_interval: Duration,
    /// Log line format.
    pub log_format: LogFormat,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            quiet: false,
            status_interval: defaults::STATUS_INTERVAL,
            log_format: LogFormat::Plain,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line.
    Json,
}

/// A duration written the way people type it (`500ms`, `30s`, `15m`, `6h`, `7d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(HumanDuration)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        if !millis.is_multiple_of(1000) {
            return write!(f, "{millis}ms");
        }
        let secs = self.0.as_secs();
        match secs {
            0 => f.write_str("0s"),
            s if s.is_multiple_of(86_400) => write!(f, "{}d", s / 86_400),
            s if s.is_multiple_of(3600) => write!(f, "{}h", s / 3600),
            s if s.is_multiple_of(60) => write!(f, "{}m", s / 60),
            s => write!(f, "{s}s"),
        }
    }
}

/// Parses `500ms`, `30s`, `15m`, `6h`, `7d` (a bare number is seconds).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, InvalidValue> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        InvalidValue(format!(
            "'{text}' is not a duration: use a number and s, m, h or d, like 7d"
        ))
    })?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        other => {
            return Err(InvalidValue(format!(
                "unknown duration unit '{other}' in '{text}': use s, m, h or d"
            )))
        }
    };
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| InvalidValue(format!("'{text}' is out of range")))
}

/// A deadline as written: a duration from the start of the run, or a local time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// This long after the run starts (`6h`).
    After(Duration),
    /// The next time the local clock shows this (`06:30`).
    At(chrono::NaiveTime),
}

impl FromStr for Deadline {
    type Err = InvalidValue;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Ok(time) = chrono::NaiveTime::parse_from_str(text.trim(), "%H:%M") {
            return Ok(Deadline::At(time));
        }
        parse_duration(text).map(Deadline::After).map_err(|_| {
            InvalidValue(format!(
                "'{text}' is not a deadline: use a duration like 6h or a time like 06:30"
            ))
        })
    }
}

impl Deadline {
    /// How long from `now` (local wall-clock time) until the deadline.
    pub fn remaining_from(self, now: chrono::NaiveDateTime) -> Duration {
        match self {
            Deadline::After(after) => after,
            Deadline::At(time) => {
                let mut end = now.date().and_time(time);
                if end <= now {
                    end += chrono::Duration::days(1);
                }
                (end - now).to_std().unwrap_or_default()
            }
        }
    }

    /// The deadline as an instant, counted from now (the start of the run).
    pub fn resolve(self) -> Instant {
        let remaining = self.remaining_from(chrono::Local::now().naive_local());
        // A deadline past what the clock can hold is a century away: no run lasts that long.
        let century = Duration::from_secs(100 * 365 * 86_400);
        Instant::now() + remaining.min(century)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("6h"), Ok(Duration::from_secs(6 * 3600)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("7w").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn durations_print_as_they_are_typed() {
        for text in ["250ms", "30s", "5m", "1h", "30d", "90s", "0s"] {
            assert_eq!(text.parse::<HumanDuration>().unwrap().to_string(), text);
        }
    }

    #[test]
    fn deadlines_take_times_of_day() {
        let at: Deadline = "06:30".parse().unwrap();
        let now = chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
            .unwrap()
            .and_hms_opt(7, 0, 0)
            .unwrap();
        assert_eq!(
            at.remaining_from(now),
            Duration::from_secs(23 * 3600 + 1800)
        );
        assert!(at.resolve() <= Instant::now() + Duration::from_secs(86_400));
        assert_eq!(
            "2h".parse::<Deadline>(),
            Ok(Deadline::After(Duration::from_secs(7200)))
        );
        assert!("25:00".parse::<Deadline>().is_err());
    }
}
