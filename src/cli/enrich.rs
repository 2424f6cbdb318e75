//! `enrich`'s flags turned into a validated [`Config`]: where to read and write, the limits each
//! flag must keep, and the credentials from the environment.

use std::time::Duration;

use super::{flag_error, ConfigError, EnrichArgs, Format, InputLocation, Location};
use crate::config::{
    ApiConfig, Config, Deadline, FetchConfig, HumanDuration, InputConfig, Limits, LogFormat,
    Output, OutputConfig, PlanPolicy, UiConfig,
};
use crate::credentials;
use crate::domain::Clock;
use crate::source::Source;
use crate::store::StoreLocation;

/// The shortest `--lock-timeout`.
const MIN_LOCK_TIMEOUT: Duration = Duration::from_millis(100);

/// The shortest and longest `--claim-lease`.
const MIN_CLAIM_LEASE: Duration = Duration::from_secs(1);
const MAX_CLAIM_LEASE: Duration = Duration::from_secs(86_400);

impl EnrichArgs {
    /// Validates the flags into a configuration; credentials come from `env`. A `--deadline` is
    /// fixed here, at the start of the run.
    pub fn into_config(
        self,
        quiet: bool,
        log_format: LogFormat,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        self.check_limits()?;
        let source = self.source()?;
        let target = self.target()?;
        let instances = match credentials::instances(&env) {
            Ok(instances) => instances,
            // A dry run makes no call: it needs no credentials.
            Err(_) if self.dry_run => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let api = ApiConfig {
            url: credentials::api_url(&env)?,
            instances,
            timeout: self.timeout.0,
            preflight: !self.no_preflight,
        };
        let ui = UiConfig {
            quiet,
            status_interval: self.status_interval.0,
            log_format,
        };
        Ok(self.config(source, target, api, ui))
    }

    /// The input's source.
    fn source(&self) -> Result<Source, ConfigError> {
        let (column, id_column) = (self.column.clone(), self.id_column.clone());
        Ok(match &self.input {
            InputLocation::Server(url) => Source::Server {
                table: self.table("a database URL")?,
                url: url.clone(),
                column,
                id_column,
            },
            InputLocation::Sqlite(path) => Source::Sqlite {
                path: path.clone(),
                table: self.table("sqlite:PATH")?,
                column,
                id_column,
            },
            InputLocation::File(_) if self.table.is_some() => {
                return Err(flag_error(
                    "--table only applies to a sqlite:PATH or database URL input",
                ))
            }
            InputLocation::File(path) => self.file.source(path, column, id_column)?,
        })
    }

    /// `--table`, for an input that is a database (`kind`), where file flags do not apply.
    fn table(&self, kind: &str) -> Result<String, ConfigError> {
        let file = &self.file;
        if file.sheet.is_some() || file.delimiter.is_some() || file.encoding.is_some() {
            return Err(flag_error(format!(
                "--sheet, --delimiter and --encoding apply to files, not to {kind}"
            )));
        }
        self.table
            .clone()
            .ok_or_else(|| flag_error(format!("--table is needed when the input is {kind}")))
    }

    /// Where the results go.
    fn target(&self) -> Result<Output, ConfigError> {
        match (self.format, &self.output) {
            (Format::Sqlite, location) => {
                Ok(match super::store_location(location, self.schema.as_deref())? {
                    StoreLocation::Sqlite(path) => Output::Sqlite(path),
                    StoreLocation::Postgres { url, schema } => Output::Postgres { url, schema },
                })
            }
            (Format::Csv, Location::Path(dir)) if self.schema.is_none() => Ok(Output::Csv {
                dir: dir.clone(),
                raw: self.csv_out.csv_raw,
            }),
            (Format::Csv, _) => Err(flag_error(
                "--format csv writes files: --output must be a directory (and --schema does not apply)",
            )),
        }
    }

    /// The bounds of the numeric and duration flags.
    fn check_limits(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.pacing_margin) {
            return Err(flag_error("--pacing-margin must be between 0 and 1"));
        }
        if self.max_attempts == 0 {
            return Err(flag_error("--max-attempts must be at least 1"));
        }
        for (flag, value) in [
            ("--timeout", self.timeout),
            ("--status-interval", self.status_interval),
        ] {
            if value.0.is_zero() {
                return Err(flag_error(format!("{flag} must be more than 0")));
            }
        }
        if self.lock_timeout.0 < MIN_LOCK_TIMEOUT {
            return Err(flag_error(format!(
                "--lock-timeout must be at least {}: greenrich's own connections to the store wait for each other too",
                HumanDuration(MIN_LOCK_TIMEOUT)
            )));
        }
        if !(MIN_CLAIM_LEASE..=MAX_CLAIM_LEASE).contains(&self.claim_lease.0) {
            return Err(flag_error(format!(
                "--claim-lease must be between {} and {}: a worker's heartbeat renews it every third of it, and a dead worker's keys wait that long",
                HumanDuration(MIN_CLAIM_LEASE),
                HumanDuration(MAX_CLAIM_LEASE)
            )));
        }
        Ok(())
    }

    /// The configuration, from flags already checked.
    fn config(self, source: Source, target: Output, api: ApiConfig, ui: UiConfig) -> Config {
        Config {
            input: InputConfig {
                source,
                messenger: self.messenger,
                default_country: self.default_country,
                telegram_ids: self.telegram_ids,
                source_name: self.file.source_name,
                allow_mostly_invalid: self.allow_mostly_invalid,
            },
            output: OutputConfig {
                target,
                lock_timeout: self.lock_timeout.0,
                no_wait: self.no_wait,
                claim_lease: self.claim_lease.0,
                metrics_file: self.metrics_file,
                summary_json: self.summary_json,
                report: self.report,
                purge_after: self.purge_after.map(|d| d.0),
                prefix: self.csv_out.prefix,
            },
            api,
            plan: PlanPolicy {
                max_age: self.max_age.map(|d| d.0),
                retry_failed_after: self.retry_failed_after.0,
                retry_transient_after: self.retry_transient_after.0,
                only_failed: self.only_failed,
                refresh: self.refresh,
            },
            fetch: FetchConfig {
                rate: self.rps_per_instance,
                check_rate: self.check_rps_per_instance.unwrap_or(self.rps_per_instance),
                pacing_margin: self.pacing_margin,
                max_attempts: self.max_attempts,
                backoff_base: self.backoff_base.0,
                starting_wait: self.starting_wait.0,
                ..FetchConfig::default()
            },
            limits: Limits {
                max_calls: self.max_calls,
                deadline: self.deadline.map(Deadline::resolve),
            },
            ui,
            dry_run: self.dry_run,
            clock: self.now.map_or_else(Clock::default, Clock::starting_at),
        }
    }
}
