//! The commands, run in-process: `main` calls [`parse`], [`run`] and [`finish`] with the real
//! environment, stdout, stderr and signals; the tests call the same three with their own.

use std::io::Write;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::cli::{
    Cli, Command, ConfigError, DbArgs, ExportArgs, ExportFormat, ForgetArgs, ReportArgs,
};
use crate::config::{LogFormat, Output};
use crate::demo::DemoError;
use crate::error::JobError;
use crate::export::{self, CsvOut, EnrichedCsv, ExportError};
use crate::forget::ForgetError;
use crate::pipeline::output::{self, OutputError};
use crate::pipeline::stop::Stop;
use crate::redact::mask;
use crate::report::{self, exit, Report};
use crate::store::StoreError;
use crate::{demo, inspect, job, sandbox};

/// The log subscriber for these flags: `filter` (`RUST_LOG`) overrides the level the flags set.
pub fn log_subscriber<W>(
    cli: &Cli,
    filter: Option<&str>,
    writer: W,
    ansi: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let default = if cli.quiet {
        "warn"
    } else if cli.verbose {
        "greenrich=debug,info"
    } else {
        "info"
    };
    let filter = filter
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(false);
    match cli.log_format {
        LogFormat::Plain => Box::new(builder.finish()),
        LogFormat::Json => Box::new(builder.json().flatten_event(true).finish()),
    }
}

/// A command that did its work.
#[derive(Debug)]
pub enum Done {
    /// `enrich`: its report, whose outcome decides the exit code.
    Run(Box<Report>),
    /// `demo`: the exit code a real run with the demo's outcome would have.
    Demo(i32),
    /// Any other command.
    Ok,
}

/// A command that could not do its work, or a command line that is not one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line cannot be parsed (or asks for help or the version).
    #[error("{0}")]
    Usage(#[source] clap::Error),
    /// The `--config` file cannot be used.
    #[error("{0}")]
    ConfigFile(String),
    /// A flag, or the credentials, cannot make a configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The run could not start or had to stop.
    #[error(transparent)]
    Job(#[from] JobError),
    /// The store cannot be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The demo could not run.
    #[error(transparent)]
    Demo(#[from] DemoError),
    /// The run report cannot be made.
    #[error(transparent)]
    Report(#[from] crate::page::ReportError),
    /// The CSV files cannot be written.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// The export folder cannot be used.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// People cannot be forgotten.
    #[error(transparent)]
    Forget(#[from] ForgetError),
    /// The sandbox cannot listen on its port.
    #[error("cannot listen on port {port}: {source}")]
    Listen {
        /// The port.
        port: u16,
        /// Why.
        source: std::io::Error,
    },
    /// The man page cannot be written.
    #[error("cannot write the man page: {0}")]
    Man(std::io::Error),
    /// The async runtime cannot start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// The command line `args` (the program's name first), with a `--config` file's options added.
pub fn parse(args: Vec<std::ffi::OsString>) -> Result<Cli, Error> {
    let args = crate::config_file::expand(args).map_err(Error::ConfigFile)?;
    <Cli as clap::Parser>::try_parse_from(args).map_err(Error::Usage)
}

/// Runs one command. Data goes to `out`, progress for people to `err` (and the log); the
/// command's end is for [`finish`] to say.
pub async fn run(
    cli: Cli,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
    stop: Stop,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> Result<Done, Error> {
    let (quiet, log_format) = (cli.quiet, cli.log_format);
    match cli.command {
        Command::Enrich(args) => {
            let config = args.into_config(quiet, log_format, env)?;
            Ok(Done::Run(Box::new(job::enrich(config, stop).await?)))
        }
        Command::Sandbox(args) => serve_sandbox(args, stop, err).await,
        Command::Demo(args) => Ok(Done::Demo(
            demo::run(&args.output, args.messenger, out, err).await?,
        )),
        Command::Status(DbArgs { store, max_age }) => {
            let text = inspect::status(&store.location()?, max_age.0).await?;
            let _ = write!(out, "{text}");
            Ok(Done::Ok)
        }
        Command::Report(args) => write_report(args, err).await,
        Command::Failures(DbArgs { store, .. }) => {
            let text = inspect::failures(&store.location()?).await?;
            let _ = write!(out, "{text}");
            Ok(Done::Ok)
        }
        Command::Forget(args) => {
            let said = forget(args).await?;
            let _ = writeln!(out, "{said}");
            Ok(Done::Ok)
        }
        Command::Purge(args) => {
            let store = crate::store::Store::open(&args.store.location()?, LOCK_WAIT).await?;
            let erased =
                crate::forget::purge(&store, args.older_than.0, chrono::Utc::now()).await?;
            let _ = writeln!(
                out,
                "purged what no input has mentioned for {}: {}",
                args.older_than,
                erased.describe()
            );
            Ok(Done::Ok)
        }
        Command::Completions(args) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(args.shell, &mut command, "greenrich", out);
            Ok(Done::Ok)
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(command)
                .render(out)
                .map_err(Error::Man)?;
            Ok(Done::Ok)
        }
        Command::Export(args) => match (&args.chat_id, args.format, &args.output) {
            (Some(_), Some(ExportFormat::Csv), _) => Err(Error::Config(ConfigError::Flag(
                "--chat-id writes one person's rows as JSON: leave out --format csv".into(),
            ))),
            (Some(person), _, output) => {
                let json = export_person(&args, person).await?;
                match output {
                    Some(path) => {
                        crate::private::write(path, json + "\n").map_err(|source| {
                            ExportError::File {
                                path: path.clone(),
                                source,
                            }
                        })?;
                        let _ = writeln!(err, "wrote {}", path.display());
                    }
                    None => {
                        let _ = writeln!(out, "{json}");
                    }
                }
                Ok(Done::Ok)
            }
            (None, Some(ExportFormat::Json), _) => Err(Error::Config(ConfigError::Flag(
                "--format json writes one person's rows: name them with --chat-id".into(),
            ))),
            (None, _, output) => {
                let dir = output.clone().unwrap_or_default();
                for (file, rows) in export_files(&args, &dir).await? {
                    let _ = writeln!(err, "wrote {rows} rows to {}", dir.join(file).display());
                }
                Ok(Done::Ok)
            }
        },
    }
}

/// `greenrich sandbox`: serves until stopped, saying where and with which instances.
async fn serve_sandbox(
    args: crate::cli::SandboxArgs,
    stop: Stop,
    err: &mut (dyn Write + Send),
) -> Result<Done, Error> {
    let port = args.port;
    let server = sandbox::start(args.into_config(), port)
        .await
        .map_err(|source| Error::Listen { port, source })?;
    let _ = writeln!(
        err,
        "sandbox GREEN-API listening on {} (Telegram instances: {})",
        server.url(),
        server.telegram_url()
    );
    let _ = writeln!(
        err,
        "instances (GREEN_API_INSTANCES): {}",
        server.credentials()
    );
    stop.stopped().await;
    Ok(Done::Ok)
}

/// How long `forget` and `purge` wait for a store another program is writing.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// `greenrich forget`: who, and what to do with them.
async fn forget(args: ForgetArgs) -> Result<String, Error> {
    use crate::forget::{Action, People};
    let input = match &args.input {
        Some(path) => Some(args.file.source(path, args.column.clone(), None)?),
        None => None,
    };
    let people = People {
        chat_ids: args.chat_id,
        phones: args.phone,
        input,
        notation: crate::chat_id::Notation {
            messenger: args.messenger,
            default_country: args.default_country,
            telegram_ids: args.telegram_ids,
        },
    };
    let action = match (args.suppress, args.unsuppress) {
        (_, true) => Action::Unsuppress,
        (true, false) => Action::EraseAndSuppress,
        (false, false) => Action::Erase,
    };
    let location = args.store.location()?;
    Ok(crate::forget::forget(&location, people, action, LOCK_WAIT).await?)
}

/// `greenrich report`: the page, and a line saying where it is.
async fn write_report(args: ReportArgs, err: &mut (dyn Write + Send)) -> Result<Done, Error> {
    let DbArgs { store, max_age } = args.db;
    let now = chrono::Utc::now();
    crate::page::write(&store.location()?, &args.output, now, max_age.0).await?;
    let _ = writeln!(err, "wrote {}", args.output.display());
    Ok(Done::Ok)
}

/// The one place a command's end becomes what people see and its exit code: a run's summary
/// (plain or JSON, as `log_format` says), the demo's closing line, help and usage text, or an
/// error's message (masked). Returns the exit code.
pub fn finish(
    result: Result<Done, Error>,
    log_format: LogFormat,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> i32 {
    match result {
        Ok(Done::Run(report)) => {
            let summary = match log_format {
                LogFormat::Plain => report.summary_text(),
                LogFormat::Json => serde_json::json!({ "summary": report.summary }).to_string(),
            };
            let _ = writeln!(err, "{}", mask(&summary));
            report.summary.exit_code
        }
        Ok(Done::Demo(code)) => {
            let _ = writeln!(
                err,
                "demo finished: a real `greenrich enrich` run with this outcome exits with code {code} (see the README)",
            );
            exit::OK
        }
        Ok(Done::Ok) => exit::OK,
        Err(Error::Usage(usage)) => {
            // Help and the version go to stdout and exit 0; a bad command line is an error.
            let text = usage.render().to_string();
            if usage.use_stderr() {
                let _ = write!(err, "{}", mask(&text));
                return exit::FATAL;
            }
            let _ = write!(out, "{text}");
            exit::OK
        }
        Err(error) => {
            let _ = writeln!(err, "error: {}", mask(&error.to_string()));
            exit_code(&error)
        }
    }
}

/// The exit code of a command that failed with `error`.
fn exit_code(error: &Error) -> i32 {
    match error {
        Error::Job(e) => report::error_exit_code(e),
        Error::Store(StoreError::Locked { .. })
        | Error::Forget(ForgetError::Store(StoreError::Locked { .. })) => exit::BUSY,
        _ => exit::FATAL,
    }
}

/// `greenrich export --chat-id`: what the store holds about one person, as pretty JSON.
async fn export_person(args: &ExportArgs, person: &str) -> Result<String, Error> {
    let location = args.store.location()?;
    let notation = crate::forget::as_chat_ids(crate::chat_id::Notation::of(args.messenger));
    let (key, _) = crate::forget::stored_key(person, notation);
    let mut reader = crate::store::read::StoreReader::open(&location).await?;
    let mut found = reader.person(&[key]).await?;
    if let Some(object) = found.as_object_mut() {
        object.insert("store".into(), location.to_string().into());
        object.insert(
            "exported_at".into(),
            crate::normalise::format_time(chrono::Utc::now()).into(),
        );
    }
    Ok(serde_json::to_string_pretty(&found).unwrap_or_default())
}

/// `greenrich export`: the table CSVs into `dir`, and `enriched.csv` when an input is given.
async fn export_files(
    args: &ExportArgs,
    dir: &std::path::Path,
) -> Result<Vec<(String, u64)>, Error> {
    let raw = args.csv_out.csv_raw;
    output::prepare(&Output::Csv {
        dir: dir.to_path_buf(),
        raw,
    })?;
    let source = match &args.input {
        Some(path) => Some(args.file.source(path, None, None)?),
        None => None,
    };
    let enriched = source.as_ref().map(|source| {
        EnrichedCsv::new(
            source,
            args.file.source_name.clone(),
            args.csv_out.prefix.clone(),
            args.messenger,
        )
    });
    let store = args.store.location()?;
    let out = CsvOut {
        dir: dir.to_path_buf(),
        raw,
        changed_since: args.changed_since,
    };
    Ok(export::export_csv(&store, out, enriched).await?)
}
