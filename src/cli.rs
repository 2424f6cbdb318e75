//! Command-line flags (clap), turned once into validated configurations.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::api::pacer::DEFAULT_MARGIN;
use crate::api::Instance;
use crate::chat_id::{DefaultCountry, Messenger};
use crate::fetch::Settings;
use crate::job::{EnrichConfig, Output};
use crate::sandbox::{self, Fault, SandboxInstance};
use crate::source::Source;

#[derive(Parser, Debug)]
#[command(
    name = "greenrich",
    version,
    about = "Enrich CRM contacts through GREEN-API getContactInfo"
)]
pub struct Cli {
    /// Log more (debug); RUST_LOG overrides.
    #[arg(long, short, global = true)]
    pub verbose: bool,
    /// Print only warnings and the final summary.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Plain, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Enrich the contacts of a CSV file or SQLite table.
    #[command(args_override_self = true)]
    Enrich(Box<EnrichArgs>),
    /// Run a local GREEN-API simulator.
    Sandbox(SandboxArgs),
    /// Enrich the bundled samples against an in-process sandbox (no account needed).
    Demo(DemoArgs),
    /// Show the store at a glance: contacts, freshness, failures, last runs.
    Status(DbArgs),
    /// List failed keys grouped by reason.
    Failures(DbArgs),
}

#[derive(Args, Debug)]
pub struct EnrichArgs {
    /// A CSV file, or `sqlite:PATH` for a table in a SQLite database.
    #[arg(long)]
    pub input: String,
    /// The table to read when the input is `sqlite:PATH`.
    #[arg(long)]
    pub table: Option<String>,
    /// The column holding phone numbers or chat ids (default: one named like phone/chatId, else the first).
    #[arg(long)]
    pub column: Option<String>,
    /// whatsapp or max.
    #[arg(long, default_value = "whatsapp")]
    pub messenger: Messenger,
    /// The country of national phone formats, such as RU for `8 900 123-45-67`.
    #[arg(long)]
    pub default_country: Option<DefaultCountry>,
    /// The SQLite file to write (created when missing), or the directory for `--format csv`.
    #[arg(long)]
    pub output: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Sqlite)]
    pub format: Format,
    /// Write CSV cells as they are, without neutralising spreadsheet formulas.
    #[arg(long)]
    pub csv_raw: bool,
    /// getContactInfo calls per second per instance (the API allows 1).
    #[arg(long, default_value_t = 1.0)]
    pub rps_per_instance: f64,
    /// Extra spacing between calls, as a fraction of the interval, so that jitter causes no 429.
    #[arg(long, default_value_t = DEFAULT_MARGIN)]
    pub pacing_margin: f64,
    /// Attempts per key before it is recorded as failed.
    #[arg(long, default_value_t = 5)]
    pub max_attempts: u32,
    /// The first retry's backoff; it doubles with each attempt (with jitter), up to 60s.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub backoff_base: Duration,
    /// Per-request timeout.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How long to wait for an instance that answers "starting" before leaving it out.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub starting_wait: Duration,
    /// Skip keys fetched successfully within this age (such as 7d; units s, m, h, d).
    #[arg(long, value_parser = parse_duration)]
    pub max_age: Option<Duration>,
    /// When keys that failed permanently (invalid id, rejected by the API) are tried again.
    #[arg(long, default_value = "30d", value_parser = parse_duration)]
    pub retry_failed_after: Duration,
    /// When keys that failed for a transient reason (timeouts, 5xx) are due again.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub retry_transient_after: Duration,
    /// Fetch only keys that have a failure row.
    #[arg(long)]
    pub only_failed: bool,
    /// Stop after this many calls (retries count).
    #[arg(long)]
    pub max_calls: Option<u64>,
    /// Stop issuing calls after this long (6h, 90m) or at this local time (06:30).
    #[arg(long, value_parser = parse_deadline)]
    pub deadline: Option<Duration>,
    /// Read the input and the store, print the plan, make no call.
    #[arg(long)]
    pub dry_run: bool,
    /// Skip the getStateInstance check of every instance before the run.
    #[arg(long)]
    pub no_preflight: bool,
    /// Seconds between status lines when stderr is not a terminal.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub status_interval: Duration,
    /// How long a write waits for an output database locked by another program.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub lock_timeout: Duration,
    /// Write the final summary as JSON to this file.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Sqlite,
    Csv,
}

#[derive(Args, Debug)]
pub struct SandboxArgs {
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Instances as id:token[:state], comma-separated (default: --instance-count sandbox instances).
    #[arg(long)]
    pub instances: Option<String>,
    /// How many authorized instances to simulate when --instances is not given: ids 1101000001..
    /// with tokens sandbox-token-<id>.
    #[arg(long, default_value_t = 4)]
    pub instance_count: usize,
    /// getContactInfo calls per second per instance; 0 is unlimited.
    #[arg(long, default_value_t = 1.0)]
    pub rps: f64,
    /// Latency range in milliseconds, such as 100-200.
    #[arg(long, default_value = "0-0")]
    pub latency_ms: String,
    /// Latency jitter as a fraction (0.1 is ±10%).
    #[arg(long, default_value_t = 0.0)]
    pub jitter: f64,
    /// A fault to inject: timeout, reset, truncate, html, wrong-types, huge, server-error, mixed.
    #[arg(long)]
    pub fault: Option<Fault>,
    /// The share of chat ids that get the fault.
    #[arg(long, default_value_t = 0.1)]
    pub fault_rate: f64,
    /// A faulty key fails only its first N attempts (0: always).
    #[arg(long, default_value_t = 0)]
    pub fault_attempts: u32,
    /// Answer 466 after this many successful getContactInfo answers.
    #[arg(long)]
    pub quota: Option<u64>,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// The SQLite file the demo writes.
    #[arg(long, default_value = "demo.db")]
    pub output: PathBuf,
}

#[derive(Args, Debug)]
pub struct DbArgs {
    /// The store to read.
    #[arg(long)]
    pub db: PathBuf,
    /// Contacts fetched longer ago than this count as stale.
    #[arg(long, default_value = "7d", value_parser = parse_duration)]
    pub max_age: Duration,
}

/// Parses `500ms`, `30s`, `15m`, `6h`, `7d` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        format!("'{text}' is not a duration: use a number and s, m, h or d, like 7d")
    })?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        other => {
            return Err(format!(
                "unknown duration unit '{other}' in '{text}': use s, m, h or d"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("'{text}' is out of range"))
}

/// Parses a deadline: a duration from now, or a local time of day `HH:MM` (the next one).
pub fn parse_deadline(text: &str) -> Result<Duration, String> {
    if let Ok(time) = chrono::NaiveTime::parse_from_str(text.trim(), "%H:%M") {
        let now = chrono::Local::now().naive_local();
        let mut end = now.date().and_time(time);
        if end <= now {
            end += chrono::Duration::days(1);
        }
        return (end - now).to_std().map_err(|e| e.to_string());
    }
    parse_duration(text).map_err(|_| {
        format!("'{text}' is not a deadline: use a duration like 6h or a time like 06:30")
    })
}

/// Credentials from the environment: `GREEN_API_INSTANCES=id:token,...` or
/// `GREEN_API_ID_INSTANCE` + `GREEN_API_TOKEN_INSTANCE`.
pub fn instances_from_env(get: impl Fn(&str) -> Option<String>) -> Result<Vec<Instance>, String> {
    if let Some(pool) = get("GREEN_API_INSTANCES").filter(|v| !v.trim().is_empty()) {
        let instances = pool
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Instance::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("GREEN_API_INSTANCES: {e}"))?;
        if instances.is_empty() {
            return Err("GREEN_API_INSTANCES lists no instance".into());
        }
        return Ok(instances);
    }
    match (get("GREEN_API_ID_INSTANCE"), get("GREEN_API_TOKEN_INSTANCE")) {
        (Some(id), Some(token)) => Ok(vec![Instance::parse(&format!("{id}:{token}"))?]),
        _ => Err("no credentials: set GREEN_API_ID_INSTANCE and GREEN_API_TOKEN_INSTANCE, or GREEN_API_INSTANCES=id:token,id:token (see the README)".into()),
    }
}

/// The default API URL.
pub const DEFAULT_API_URL: &str = "https://api.green-api.com";

impl EnrichArgs {
    /// Validates the flags into a configuration; credentials come from `env`.
    pub fn into_config(
        self,
        quiet: bool,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<EnrichConfig, String> {
        let source = match self.input.strip_prefix("sqlite:") {
            Some(path) => Source::Sqlite {
                path: PathBuf::from(path),
                table: self
                    .table
                    .ok_or("--table is needed when the input is sqlite:PATH")?,
                column: self.column,
            },
            None => {
                if self.table.is_some() {
                    return Err("--table only applies to a sqlite:PATH input".into());
                }
                Source::Csv {
                    path: PathBuf::from(&self.input),
                    column: self.column,
                }
            }
        };
        let output = match self.format {
            Format::Sqlite => Output::Sqlite(self.output),
            Format::Csv => Output::Csv {
                dir: self.output,
                raw: self.csv_raw,
            },
        };
        if !(self.rps_per_instance.is_finite() && self.rps_per_instance >= 0.0) {
            return Err("--rps-per-instance must be 0 (unlimited) or more".into());
        }
        if !(0.0..=1.0).contains(&self.pacing_margin) {
            return Err("--pacing-margin must be between 0 and 1".into());
        }
        if self.max_attempts == 0 {
            return Err("--max-attempts must be at least 1".into());
        }
        let instances = if self.dry_run {
            instances_from_env(&env).unwrap_or_default()
        } else {
            instances_from_env(&env)?
        };
        let api_url = env("GREEN_API_URL")
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_API_URL.to_string());
        if !(api_url.starts_with("http://") || api_url.starts_with("https://")) {
            return Err(format!(
                "GREEN_API_URL must start with http:// or https:// (got '{api_url}')"
            ));
        }
        Ok(EnrichConfig {
            source,
            messenger: self.messenger,
            default_country: self.default_country,
            output,
            api_url,
            instances,
            fetch: Settings {
                messenger: self.messenger,
                rps_per_instance: self.rps_per_instance,
                pacing_margin: self.pacing_margin,
                max_attempts: self.max_attempts,
                backoff_base: self.backoff_base,
                backoff_cap: Duration::from_secs(60),
                retry_after_cap: Duration::from_secs(120),
                starting_wait: self.starting_wait,
                transient_retry_after: self.retry_transient_after,
                max_calls: self.max_calls,
            },
            timeout: self.timeout,
            max_age: self.max_age,
            retry_failed_after: self.retry_failed_after,
            only_failed: self.only_failed,
            deadline: self.deadline,
            dry_run: self.dry_run,
            preflight: !self.no_preflight,
            status_interval: self.status_interval,
            quiet,
            lock_timeout: self.lock_timeout,
        })
    }
}

impl SandboxArgs {
    pub fn into_config(self) -> Result<sandbox::Config, String> {
        let (min, max) = self
            .latency_ms
            .split_once('-')
            .and_then(|(a, b)| Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?)))
            .ok_or("--latency-ms must look like 100-200")?;
        let instances = match self.instances {
            None => sandbox::default_instances(self.instance_count),
            Some(list) => list
                .split(',')
                .map(|spec| {
                    let mut parts = spec.trim().splitn(3, ':');
                    match (parts.next(), parts.next(), parts.next()) {
                        (Some(id), Some(token), state) if !id.is_empty() && !token.is_empty() => {
                            Ok(SandboxInstance {
                                id: id.into(),
                                token: token.into(),
                                state: state.unwrap_or("authorized").into(),
                            })
                        }
                        _ => Err(format!("'{spec}' is not id:token[:state]")),
                    }
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(sandbox::Config {
            instances,
            rps: self.rps,
            latency_min: Duration::from_millis(min),
            latency_max: Duration::from_millis(max),
            jitter: self.jitter,
            fault: self.fault,
            fault_rate: self.fault_rate,
            fault_attempts: self.fault_attempts,
            quota: self.quota,
            ..sandbox::Config::default()
        })
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
    fn deadlines_take_times_of_day() {
        let d = parse_deadline("06:30").unwrap();
        assert!(d <= Duration::from_secs(86_400));
        assert_eq!(parse_deadline("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_deadline("25:00").is_err());
    }

    #[test]
    fn credentials_come_from_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let pool = instances_from_env(env(&[(
            "GREEN_API_INSTANCES",
            "1:token-aaaaaa, 2:token-bbbbbb",
        )]))
        .unwrap();
        assert_eq!(pool.len(), 2);
        assert_eq!(pool[1].id, "2");
        let one = instances_from_env(env(&[
            ("GREEN_API_ID_INSTANCE", "7"),
            ("GREEN_API_TOKEN_INSTANCE", "token-cccccc"),
        ]))
        .unwrap();
        assert_eq!(one[0].id, "7");
        assert!(instances_from_env(env(&[]))
            .unwrap_err()
            .contains("GREEN_API_ID_INSTANCE"));
        assert!(instances_from_env(env(&[("GREEN_API_INSTANCES", "bad")])).is_err());
    }
}
