//! Command-line flags (clap types, each parsed by its `value_parser`), turned once into
//! validated configurations ([`enrich`] for the main job). Defaults come from
//! [`crate::config::defaults`]; credentials from [`crate::credentials`].

mod enrich;
mod location;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::chat_id::{DefaultCountry, Messenger};
use crate::config::{defaults, Deadline, HumanDuration, InvalidValue, LogFormat, Refresh};
use crate::credentials::CredentialsError;
use crate::domain::Rate;
use crate::export::ChangedSince;
use crate::sandbox::{self, ChangeRates, Fault, LatencyRange, SandboxInstance};
use crate::source::{workbook, CsvOptions, Source};
use crate::store::StoreLocation;
pub(crate) use location::{InputLocation, Location};

/// The command line.
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
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Enrich the contacts of a CSV file, a workbook, or a SQLite, PostgreSQL or MySQL table.
    #[command(args_override_self = true, after_help = ENRICH_EXAMPLES)]
    Enrich(Box<EnrichArgs>),
    /// Run a local GREEN-API simulator.
    #[command(after_help = SANDBOX_EXAMPLES)]
    Sandbox(SandboxArgs),
    /// Enrich the bundled samples against an in-process sandbox (no account needed).
    #[command(after_help = DEMO_EXAMPLES)]
    Demo(DemoArgs),
    /// Show the store at a glance: contacts, freshness, failures, last runs, live workers.
    #[command(after_help = STATUS_EXAMPLES)]
    Status(DbArgs),
    /// List failed keys grouped by reason.
    #[command(after_help = FAILURES_EXAMPLES)]
    Failures(DbArgs),
    /// Write one self-contained HTML page about the store and its recent runs.
    #[command(after_help = REPORT_EXAMPLES)]
    Report(ReportArgs),
    /// Write CSV files from a store at any time: its tables, and enriched.csv for one input file.
    #[command(after_help = EXPORT_EXAMPLES)]
    Export(ExportArgs),
    /// Erase people from the store (an erasure request), and with --suppress keep them out of
    /// every later run.
    #[command(after_help = FORGET_EXAMPLES)]
    Forget(ForgetArgs),
    /// Erase the contacts, failures and row links no input has mentioned for a while.
    #[command(after_help = PURGE_EXAMPLES)]
    Purge(PurgeArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell) to stdout.
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions(CompletionsArgs),
    /// Print the man page (roff) to stdout.
    #[command(after_help = MAN_EXAMPLES)]
    Man,
}

/// Flags of `completions`.
#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

const ENRICH_EXAMPLES: &str = "Examples:
  greenrich enrich --input customers.csv --default-country RU --output enriched.db
  greenrich enrich --input sqlite:crm.db --table customers --output crm.db --max-age 7d --deadline 6h
  greenrich enrich --input postgres://crm@db/crm --table public.customers --output postgres://greenrich@db/crm

Credentials come from GREEN_API_URL and GREEN_API_INSTANCES (id:token,id:token).";
const SANDBOX_EXAMPLES: &str = "Examples:
  greenrich sandbox --port 8080 --rps 1 --latency-ms 100-200
  greenrich sandbox --port 8080 --instance-count 4 --arrival-jitter-ms 10";
const DEMO_EXAMPLES: &str = "Examples:
  greenrich demo
  greenrich demo --output /tmp/demo.db";
const STATUS_EXAMPLES: &str = "Examples:
  greenrich status --db enriched.db
  greenrich status --db postgres://greenrich@db/crm --max-age 30d";
const REPORT_EXAMPLES: &str = "Examples:
  greenrich report --db enriched.db
  greenrich report --db postgres://greenrich@db/crm --output /var/www/greenrich/report.html";
const FAILURES_EXAMPLES: &str = "Examples:
  greenrich failures --db enriched.db
  greenrich failures --db postgres://greenrich@db/crm --schema greenrich";
const EXPORT_EXAMPLES: &str = "Examples:
  greenrich export --db out/greenrich.db --input customers.csv --output out/
  greenrich export --db out/greenrich.db --input customers.csv --output delta/ --changed-since 42
  greenrich export --db out/greenrich.db --chat-id 79001234567@c.us --format json --output person.json";
const FORGET_EXAMPLES: &str = "Examples:
  greenrich forget --db enriched.db --phone '+7 900 123-45-67'
  greenrich forget --db enriched.db --chat-id 79001234567@c.us --suppress
  greenrich forget --db postgres://greenrich@db/crm --input objections.csv --column phone --suppress";
const PURGE_EXAMPLES: &str = "Examples:
  greenrich purge --db enriched.db --older-than 180d
  greenrich enrich --input customers.csv --output enriched.db --purge-after 180d";
const COMPLETIONS_EXAMPLES: &str = "Examples:
  greenrich completions bash > /etc/bash_completion.d/greenrich
  greenrich completions zsh > \"${fpath[1]}/_greenrich\"
  greenrich completions fish > ~/.config/fish/completions/greenrich.fish";
const MAN_EXAMPLES: &str = "Examples:
  greenrich man > /usr/local/share/man/man1/greenrich.1
  greenrich man | man -l -";

/// Flags of `enrich`.
#[derive(Args, Debug)]
pub struct EnrichArgs {
    /// A TOML file of options: its keys are these long option names (`max-age = "7d"`); flags
    /// given beside it override it. Secrets stay in the environment.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A CSV file, a workbook (.xlsx, .xlsm, .xls, .ods), `sqlite:PATH` for a table in a SQLite
    /// database, or a database URL (`postgres://user@host/db`, `mysql://user@host/db`) for a
    /// table in PostgreSQL or MySQL/MariaDB (a password in the URL is masked in every message).
    #[arg(long, value_parser = location::parse_input)]
    pub input: InputLocation,
    /// The table to read when the input is `sqlite:PATH` or a database URL (`[schema.]table`).
    #[arg(long)]
    pub table: Option<String>,
    /// The column holding phone numbers or chat ids (default: one named like phone/chatId, else the first).
    #[arg(long)]
    pub column: Option<String>,
    /// The column holding each row's own id, for joining results back (default: the table's
    /// primary key, else a SQLite table's rowid; for a file, the data row number). In
    /// PostgreSQL and MySQL it must be unique: rows are read in pages cut by it.
    #[arg(long)]
    pub id_column: Option<String>,
    /// How the input file is read, and the name its rows are linked under.
    #[command(flatten)]
    pub file: FileFlags,
    /// Go on even when nearly every value of the column is not a phone number or chat id.
    #[arg(long)]
    pub allow_mostly_invalid: bool,
    /// whatsapp, max or telegram.
    #[arg(long, default_value_t = Messenger::Whatsapp)]
    pub messenger: Messenger,
    /// The country of national phone formats, such as RU for `8 900 123-45-67`.
    #[arg(long)]
    pub default_country: Option<DefaultCountry>,
    /// Telegram: values of digits only are Telegram user ids, not phone numbers (phone numbers
    /// written with `+` are still phone numbers).
    #[arg(long)]
    pub telegram_ids: bool,
    /// The SQLite file to write (created when missing), the directory for `--format csv`, or a
    /// PostgreSQL URL (`postgres://user@host/db`) for a store in the schema `--schema`.
    #[arg(long, value_parser = location::parse_location)]
    pub output: Location,
    /// The schema of a PostgreSQL store (created when missing; default greenrich).
    #[arg(long)]
    pub schema: Option<String>,
    /// sqlite or csv.
    #[arg(long, value_enum, default_value_t = Format::Sqlite)]
    pub format: Format,
    /// How CSV files are written.
    #[command(flatten)]
    pub csv_out: CsvOutFlags,
    /// getContactInfo calls per second per instance (the API allows 1); 0 is unlimited.
    #[arg(long, default_value_t = Rate::PerSecond(defaults::RPS_PER_INSTANCE))]
    pub rps_per_instance: Rate,
    /// Telegram checkAccount calls per second per instance, a limit of its own (default: as
    /// --rps-per-instance); 0 is unlimited.
    #[arg(long)]
    pub check_rps_per_instance: Option<Rate>,
    /// Extra spacing between calls, as a fraction of the interval, so that jitter causes no 429.
    #[arg(long, default_value_t = defaults::PACING_MARGIN)]
    pub pacing_margin: f64,
    /// Attempts per key before it is recorded as failed.
    #[arg(long, default_value_t = defaults::MAX_ATTEMPTS)]
    pub max_attempts: u32,
    /// The first retry's backoff; it doubles with each attempt (with jitter), up to 60s.
    #[arg(long, default_value_t = HumanDuration(defaults::BACKOFF_BASE))]
    pub backoff_base: HumanDuration,
    /// Per-request timeout.
    #[arg(long, default_value_t = HumanDuration(defaults::TIMEOUT))]
    pub timeout: HumanDuration,
    /// How long to wait for an instance that answers "starting" before leaving it out.
    #[arg(long, default_value_t = HumanDuration(defaults::STARTING_WAIT))]
    pub starting_wait: HumanDuration,
    /// Skip keys fetched successfully within this age (such as 7d; units s, m, h, d).
    #[arg(long)]
    pub max_age: Option<HumanDuration>,
    /// When keys that failed permanently (invalid id, rejected by the API) are tried again.
    #[arg(long, default_value_t = HumanDuration(defaults::RETRY_FAILED_AFTER))]
    pub retry_failed_after: HumanDuration,
    /// When keys that failed for a transient reason (timeouts, 5xx) are due again.
    #[arg(long, default_value_t = HumanDuration(defaults::RETRY_TRANSIENT_AFTER))]
    pub retry_transient_after: HumanDuration,
    /// Fetch only keys that have a failure row.
    #[arg(long)]
    pub only_failed: bool,
    /// With a budget (--max-calls, --deadline), which stale contacts to refresh first: age (the
    /// stalest) or adaptive (those whose refresh keeps the most rows fresh, by how often each
    /// contact has changed).
    #[arg(long, value_enum, default_value_t = Refresh::Age)]
    pub refresh: Refresh,
    /// Stop after this many calls (retries count).
    #[arg(long)]
    pub max_calls: Option<u64>,
    /// Stop issuing calls this long after the start (6h, 90m) or at this local time (06:30).
    #[arg(long)]
    pub deadline: Option<Deadline>,
    /// Read the input and the store, print the plan, make no call.
    #[arg(long)]
    pub dry_run: bool,
    /// Skip the getStateInstance check of every instance before the run.
    #[arg(long)]
    pub no_preflight: bool,
    /// Time between status lines when stderr is not a terminal.
    #[arg(long, default_value_t = HumanDuration(defaults::STATUS_INTERVAL))]
    pub status_interval: HumanDuration,
    /// How long a write waits for an output database locked by another program.
    #[arg(long, default_value_t = HumanDuration(defaults::LOCK_TIMEOUT))]
    pub lock_timeout: HumanDuration,
    /// With a PostgreSQL store shared by several workers: exit at once (code 5) when every
    /// instance is in use by another worker, instead of waiting for one.
    #[arg(long)]
    pub no_wait: bool,
    /// With a PostgreSQL store: how long the keys a worker claimed stay its own without its
    /// heartbeat (a worker that died gives them back after this).
    #[arg(long, default_value_t = HumanDuration(defaults::CLAIM_LEASE))]
    pub claim_lease: HumanDuration,
    /// Write the final summary as JSON to this file.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
    /// Write the run report (`greenrich report`) to this HTML file at the end of the run.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Run as if it were this UTC time (RFC 3339), the clock going on from there: for
    /// simulations of many nights (`bench/run.sh refresh`).
    #[arg(long, hide = true, value_parser = parse_now)]
    pub now: Option<chrono::DateTime<chrono::Utc>>,
    /// At the end of the run, erase the contacts, failures and row links no input has mentioned
    /// for this long (such as 180d), as `greenrich purge` does.
    #[arg(long)]
    pub purge_after: Option<HumanDuration>,
    /// Keep the run's metrics in this file, in the Prometheus text format (for node_exporter's
    /// textfile collector): rewritten at every status interval and at the end.
    #[arg(long)]
    pub metrics_file: Option<PathBuf>,
}

/// The output format of `enrich`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A SQLite database.
    Sqlite,
    /// CSV files in a directory.
    Csv,
}

/// Flags of `sandbox`.
#[derive(Args, Debug)]
pub struct SandboxArgs {
    /// The port on 127.0.0.1.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Instances as id:token[:state], comma-separated (default: --instance-count sandbox instances).
    #[arg(long, value_delimiter = ',')]
    pub instances: Vec<SandboxInstance>,
    /// How many authorized instances to simulate when --instances is not given: ids 1101000001..
    /// with tokens sandbox-token-<id>.
    #[arg(long, default_value_t = 4)]
    pub instance_count: usize,
    /// getContactInfo calls per second per instance; 0 is unlimited.
    #[arg(long, default_value_t = Rate::PerSecond(1.0))]
    pub rps: Rate,
    /// Latency range in milliseconds, such as 100-200.
    #[arg(long, default_value = "0-0")]
    pub latency_ms: LatencyRange,
    /// Latency jitter as a fraction (0.1 is ±10%).
    #[arg(long, default_value_t = 0.0)]
    pub jitter: f64,
    /// Each request waits a random 0..N ms before the rate limiter sees it (network jitter).
    #[arg(long, default_value_t = 0)]
    pub arrival_jitter_ms: u64,
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
    /// Answer Telegram's checkAccount with 466 after this many calls per instance.
    #[arg(long)]
    pub check_quota: Option<u64>,
    /// Contacts change over time: shares and their mean time between changes, such as
    /// 5%:7d,25%:30d,70%:365d (each change renames the contact).
    #[arg(long, default_value = "")]
    pub change_rates: ChangeRates,
    /// The seed of the contacts' changes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Flags of `demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// The SQLite file the demo writes.
    #[arg(long, default_value = "demo.db")]
    pub output: PathBuf,
    /// whatsapp (samples/customers.csv) or telegram (samples/telegram.csv: phone numbers and
    /// usernames, resolved with checkAccount first).
    #[arg(long, default_value_t = Messenger::Whatsapp)]
    pub messenger: Messenger,
}

/// The store a command reads.
#[derive(Args, Debug)]
pub struct StoreFlags {
    /// The store: a SQLite file, or a PostgreSQL URL.
    #[arg(long, value_parser = location::parse_location)]
    pub db: Location,
    /// The schema of a PostgreSQL store (default greenrich).
    #[arg(long)]
    pub schema: Option<String>,
}

impl StoreFlags {
    /// Where the store is.
    pub fn location(&self) -> Result<StoreLocation, ConfigError> {
        store_location(&self.db, self.schema.as_deref())
    }
}

/// `location` as a store: in PostgreSQL (in `schema`, default greenrich), or a SQLite file.
fn store_location(location: &Location, schema: Option<&str>) -> Result<StoreLocation, ConfigError> {
    match location {
        Location::Postgres(url) => Ok(StoreLocation::Postgres {
            url: url.clone(),
            schema: schema.unwrap_or(defaults::SCHEMA).to_string(),
        }),
        Location::Path(_) if schema.is_some() => Err(flag_error(
            "--schema applies to a store in PostgreSQL, not to a SQLite file",
        )),
        Location::Path(path) => Ok(StoreLocation::Sqlite(path.clone())),
    }
}

/// Flags of `status` and `failures`.
#[derive(Args, Debug)]
pub struct DbArgs {
    /// The store to read.
    #[command(flatten)]
    pub store: StoreFlags,
    /// Contacts fetched longer ago than this count as stale.
    #[arg(long, default_value_t = HumanDuration(defaults::STATUS_MAX_AGE))]
    pub max_age: HumanDuration,
}

/// Flags of `report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The store to read, and when contacts count as stale.
    #[command(flatten)]
    pub db: DbArgs,
    /// The HTML file to write (replaced whole).
    #[arg(long, default_value = "report.html")]
    pub output: PathBuf,
}

/// Flags of `export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The store to read.
    #[command(flatten)]
    pub store: StoreFlags,
    /// The directory to write (created when missing); with --chat-id, the JSON file (default:
    /// stdout).
    #[arg(long, required_unless_present = "chat_id")]
    pub output: Option<PathBuf>,
    /// Write everything the store holds about this person instead (chat id, Telegram handle or
    /// phone number), as JSON: for a data subject's access request.
    #[arg(long, conflicts_with_all = ["input", "changed_since"])]
    pub chat_id: Option<String>,
    /// csv (the tables) or json (one person, with --chat-id; the default then).
    #[arg(long, value_enum)]
    pub format: Option<ExportFormat>,
    /// The CSV file or workbook whose rows enriched.csv copies, each followed by its results.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// How the input file is read, and the name its rows are linked under.
    #[command(flatten)]
    pub file: FileFlags,
    /// whatsapp or max: names the added columns (whatsapp_..., max_...).
    #[arg(long, default_value_t = Messenger::Whatsapp)]
    pub messenger: Messenger,
    /// How CSV files are written.
    #[command(flatten)]
    pub csv_out: CsvOutFlags,
    /// Write only what changed since a run began (its number, from `greenrich status`) or since
    /// a UTC time (2026-12-01, 2026-12-01T06:00:00Z): contacts new or changed since then, their
    /// products, and enriched.csv's rows of them; no failures.csv.
    #[arg(long)]
    pub changed_since: Option<ChangedSince>,
}

/// Flags of `forget`.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("people").required(true).multiple(true).args(["chat_id", "phone", "input"])))]
pub struct ForgetArgs {
    /// The store.
    #[command(flatten)]
    pub store: StoreFlags,
    /// Chat ids to forget (79001234567@c.us; Telegram: the user id, @username or +phone).
    #[arg(long, value_delimiter = ',')]
    pub chat_id: Vec<String>,
    /// Phone numbers to forget, in any notation `enrich` reads.
    #[arg(long)]
    pub phone: Vec<String>,
    /// A CSV file or workbook of phone numbers or chat ids to forget.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// The column of --input to read (default: one named like phone/chatId, else the first).
    #[arg(long, requires = "input")]
    pub column: Option<String>,
    /// How the input file is read.
    #[command(flatten)]
    pub file: FileFlags,
    /// whatsapp, max or telegram: the chat ids the phone numbers become.
    #[arg(long, default_value_t = Messenger::Whatsapp)]
    pub messenger: Messenger,
    /// The country of national phone formats, such as RU for `8 900 123-45-67`.
    #[arg(long)]
    pub default_country: Option<DefaultCountry>,
    /// Telegram: the --input file's values of digits only are Telegram user ids, not phone
    /// numbers (as `enrich --telegram-ids`).
    #[arg(long, requires = "input")]
    pub telegram_ids: bool,
    /// Also put them on the do-not-process list: later runs skip them with no call, and keep
    /// nothing of them but a keyed hash.
    #[arg(long, conflicts_with = "unsuppress")]
    pub suppress: bool,
    /// Only take them off the do-not-process list (nothing is erased).
    #[arg(long)]
    pub unsuppress: bool,
}

/// Flags of `purge`.
#[derive(Args, Debug)]
pub struct PurgeArgs {
    /// The store.
    #[command(flatten)]
    pub store: StoreFlags,
    /// Erase what no input has mentioned for this long (such as 180d).
    #[arg(long)]
    pub older_than: HumanDuration,
}

/// What `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// CSV files of the store's tables.
    Csv,
    /// One person's rows, as JSON.
    Json,
}

/// How an input file is read (`enrich` and `export`).
#[derive(Args, Debug, Default)]
pub struct FileFlags {
    /// The sheet to read when the input is a workbook (default: the first).
    #[arg(long)]
    pub sheet: Option<String>,
    /// The CSV delimiter: , ; tab | (default: found from the file).
    #[arg(long, value_parser = parse_delimiter)]
    pub delimiter: Option<u8>,
    /// The CSV encoding: utf-8, utf-16le, utf-16be, windows-1251 (default: found from the file).
    #[arg(long, value_parser = parse_encoding)]
    pub encoding: Option<&'static encoding_rs::Encoding>,
    /// The name this input's rows are linked under in `input_rows` (default: the file name, or
    /// the table name).
    #[arg(long)]
    pub source_name: Option<String>,
}

impl FileFlags {
    /// The file at `path` as a source: a workbook by its extension, else a CSV.
    pub fn source(
        &self,
        path: &Path,
        column: Option<String>,
        id_column: Option<String>,
    ) -> Result<Source, ConfigError> {
        if workbook::is_workbook(path) {
            if self.delimiter.is_some() || self.encoding.is_some() {
                return Err(flag_error(
                    "--delimiter and --encoding do not apply to a workbook",
                ));
            }
            return Ok(Source::Workbook {
                path: path.to_path_buf(),
                sheet: self.sheet.clone(),
                column,
                id_column,
            });
        }
        if self.sheet.is_some() {
            return Err(flag_error("--sheet applies to workbooks only"));
        }
        Ok(Source::Csv {
            path: path.to_path_buf(),
            column,
            id_column,
            options: CsvOptions {
                delimiter: self.delimiter,
                encoding: self.encoding,
            },
        })
    }
}

/// How CSV files are written (`enrich` and `export`).
#[derive(Args, Debug, Default)]
pub struct CsvOutFlags {
    /// Write CSV cells as they are, without neutralising spreadsheet formulas.
    #[arg(long)]
    pub csv_raw: bool,
    /// The prefix of the columns enriched.csv adds (default: whatsapp_ or max_).
    #[arg(long)]
    pub prefix: Option<String>,
}

/// Flags or credentials that cannot make a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag's value, or a combination of flags, is not allowed.
    #[error("{0}")]
    Flag(String),
    /// The credentials in the environment are missing or malformed.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
}

/// Parses `--delimiter`: one ASCII character, or `tab`.
fn parse_delimiter(text: &str) -> Result<u8, InvalidValue> {
    match text {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        one if one.len() == 1 && one.is_ascii() => Ok(one.as_bytes()[0]),
        other => Err(InvalidValue(format!(
            "'{other}' is not a delimiter: use one character such as ; or the word tab"
        ))),
    }
}

/// Parses `--now`.
fn parse_now(text: &str) -> Result<chrono::DateTime<chrono::Utc>, InvalidValue> {
    crate::normalise::parse_time(text)
        .ok_or_else(|| InvalidValue(format!("'{text}' is not an RFC 3339 time")))
}

/// Parses `--encoding`.
fn parse_encoding(text: &str) -> Result<&'static encoding_rs::Encoding, InvalidValue> {
    crate::source::sniff::encoding_by_name(text).ok_or_else(|| {
        InvalidValue(format!(
            "unknown encoding '{text}': use utf-8, utf-16le, utf-16be or windows-1251"
        ))
    })
}

fn flag_error(message: impl Into<String>) -> ConfigError {
    ConfigError::Flag(message.into())
}

impl SandboxArgs {
    /// The sandbox's configuration.
    pub fn into_config(self) -> sandbox::Config {
        let instances = match self.instances.is_empty() {
            true => sandbox::default_instances(self.instance_count),
            false => self.instances,
        };
        sandbox::Config {
            instances,
            rate: self.rps,
            latency_min: self.latency_ms.min,
            latency_max: self.latency_ms.max,
            jitter: self.jitter,
            arrival_jitter: Duration::from_millis(self.arrival_jitter_ms),
            fault: self.fault,
            fault_rate: self.fault_rate,
            fault_attempts: self.fault_attempts,
            quota: self.quota,
            check_quota: self.check_quota,
            change_rates: self.change_rates,
            seed: self.seed,
            ..sandbox::Config::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, FetchConfig, Output, PlanPolicy, UiConfig};

    #[test]
    fn flag_defaults_are_the_config_defaults() {
        let cli = Cli::try_parse_from([
            "greenrich",
            "enrich",
            "--input",
            "a.csv",
            "--output",
            "o.db",
        ])
        .unwrap();
        let Command::Enrich(args) = cli.command else {
            panic!("not enrich")
        };
        let env = |k: &str| (k == "GREEN_API_INSTANCES").then(|| "1:token-aaaaaa".to_string());
        let config = args.into_config(false, LogFormat::Plain, env).unwrap();
        let fetch = FetchConfig::default();
        assert_eq!(config.fetch.rate, fetch.rate);
        assert_eq!(config.fetch.backoff_base, fetch.backoff_base);
        assert_eq!(config.api.timeout, defaults::TIMEOUT);
        assert_eq!(
            config.plan.retry_failed_after,
            PlanPolicy::default().retry_failed_after
        );
        assert_eq!(
            config.ui.status_interval,
            UiConfig::default().status_interval
        );
        assert_eq!(config.api.url.to_string(), defaults::API_URL);
        assert!(config.limits.deadline.is_none());
    }

    /// `enrich --input a.csv` with `extra` flags, as a configuration or the flag error's text.
    fn enrich_config(extra: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["greenrich", "enrich", "--input", "a.csv"];
        argv.extend_from_slice(extra);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        let Command::Enrich(args) = cli.command else {
            panic!("not enrich")
        };
        let env = |k: &str| (k == "GREEN_API_INSTANCES").then(|| "1:token-aaaaaa".to_string());
        args.into_config(false, LogFormat::Plain, env)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn an_output_url_is_a_postgres_store_in_its_schema() {
        let config = enrich_config(&["--output", "postgres://crm:pw-123456@db/crm"]).unwrap();
        let Output::Postgres { url, schema } = &config.output.target else {
            panic!("not postgres")
        };
        assert_eq!(
            (url.to_string().as_str(), schema.as_str()),
            ("postgres://crm:***@db/crm", "greenrich")
        );
        let config =
            enrich_config(&["--output", "postgres://db/crm", "--schema", "whatsapp"]).unwrap();
        assert!(
            matches!(&config.output.target, Output::Postgres { schema, .. } if schema == "whatsapp")
        );
        for (flags, says) in [
            (
                vec!["--output", "mysql://root@db/crm"],
                "cannot be kept in MySQL",
            ),
            (
                vec!["--output", "out.db", "--schema", "x"],
                "--schema applies to a store in PostgreSQL",
            ),
            (
                vec!["--output", "postgres://db/crm", "--format", "csv"],
                "--format csv writes files",
            ),
        ] {
            let err = enrich_config(&flags).unwrap_err();
            assert!(err.contains(says), "{flags:?}: {err}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const DURATION_FLAGS: [&str; 11] = [
            "--max-age",
            "--purge-after",
            "--retry-failed-after",
            "--retry-transient-after",
            "--backoff-base",
            "--timeout",
            "--starting-wait",
            "--status-interval",
            "--lock-timeout",
            "--claim-lease",
            "--deadline",
        ];
        const OTHER_FLAGS: [&str; 4] = [
            "--max-calls",
            "--max-attempts",
            "--rps-per-instance",
            "--pacing-margin",
        ];

        /// Values people type, and the edges: huge, zero, negative, fractions, units, noise.
        fn values() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "-?[0-9]{1,25}(\\.[0-9]{0,6})?(e-?[0-9]{1,3})?(ms|s|m|h|d|w)?",
                "[0-2][0-9]:[0-5][0-9]",
                prop::sample::select(vec![
                    "inf",
                    "NaN",
                    "-0",
                    "0",
                    "1e308",
                    "1e-308",
                    "18446744073709551616"
                ])
                .prop_map(str::to_string),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]

            /// Any value of any duration or count flag: a refusal that names the flag, or a
            /// configuration whose times and paces compute without a panic.
            #[test]
            fn any_flag_value_saturates_or_is_refused_by_name(
                flag in prop::sample::select([DURATION_FLAGS.as_slice(), OTHER_FLAGS.as_slice()].concat()),
                value in values(),
            ) {
                let argv = [
                    "greenrich".to_string(),
                    "enrich".into(),
                    "--input".into(),
                    "a.csv".into(),
                    "--output".into(),
                    "o.db".into(),
                    format!("{flag}={value}"),
                ];
                let cli = match Cli::try_parse_from(&argv) {
                    Ok(cli) => cli,
                    Err(e) => {
                        prop_assert!(e.to_string().contains(flag), "{}", e);
                        return Ok(());
                    }
                };
                let Command::Enrich(args) = cli.command else {
                    panic!("not enrich")
                };
                let env = |k: &str| (k == "GREEN_API_INSTANCES").then(|| "1:token-aaaaaa".to_string());
                let config = match args.into_config(false, LogFormat::Plain, env) {
                    Ok(config) => config,
                    Err(e) => {
                        prop_assert!(e.to_string().contains(flag), "{}", e);
                        return Ok(());
                    }
                };
                // What a run computes from them.
                let now = chrono::Utc::now();
                let policy = crate::pipeline::plan::policy(&config.plan, Some(now), now, None);
                prop_assert!(policy.permanent_retry_before <= policy.now);
                let delays = config.plan.retry_delays();
                prop_assert!(delays.next_due(true, now) >= policy.now);
                prop_assert!(delays.next_due(false, now) >= policy.now);
                if let Some(rps) = config.fetch.rate.per_second() {
                    let _ = crate::progress::format_eta(u64::MAX, rps);
                    let margin = crate::api::pacer::Margin::new(config.fetch.pacing_margin, 1);
                    let _ = crate::api::pacer::Pacer::new(config.fetch.rate, margin).spacing();
                }
                let _ = config.fetch.backoff_base.saturating_mul(5);
                if let Some(older_than) = config.output.purge_after {
                    prop_assert!(crate::forget::purge_cutoff(now, older_than) <= now);
                }
            }
        }
    }
}
