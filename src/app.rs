//! The commands, run in-process: `main` calls [`run`] with the real environment, stdout, stderr
//! and signals; the tests call it the same way with their own.

use std::io::Write;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, DbArgs, ExportArgs};
use crate::config::{LogFormat, Output};
use crate::export::{self, EnrichedCsv};
use crate::pipeline::output;
use crate::pipeline::stop::Stop;
use crate::redact::mask;
use crate::report::{self, exit};
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

/// Runs one command. Data goes to `out`; messages for people to `err` (and the log). Returns
/// the exit code.
pub async fn run(
    cli: Cli,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
    stop: Stop,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> i32 {
    let (quiet, log_format) = (cli.quiet, cli.log_format);
    match cli.command {
        Command::Enrich(args) => {
            let config = match args.into_config(quiet, log_format, env) {
                Ok(config) => config,
                Err(e) => return fatal(err, &e.to_string()),
            };
            let result = job::enrich(config, stop).await;
            match &result {
                Ok(report) => {
                    let summary = match log_format {
                        LogFormat::Plain => report.summary_text(),
                        LogFormat::Json => {
                            serde_json::json!({ "summary": report.summary }).to_string()
                        }
                    };
                    let _ = writeln!(err, "{}", mask(&summary));
                }
                Err(e) => {
                    fatal(err, &e.to_string());
                }
            }
            report::exit_code(&result)
        }
        Command::Sandbox(args) => {
            let port = args.port;
            let config = match args.into_config() {
                Ok(config) => config,
                Err(e) => return fatal(err, &e.to_string()),
            };
            match sandbox::start(config, port).await {
                Ok(server) => {
                    let _ = writeln!(err, "sandbox GREEN-API listening on {}", server.url());
                    let _ = writeln!(
                        err,
                        "instances (GREEN_API_INSTANCES): {}",
                        server.credentials()
                    );
                    stop.stopped().await;
                    exit::OK
                }
                Err(e) => fatal(err, &format!("cannot listen on port {port}: {e}")),
            }
        }
        Command::Demo(args) => match demo::run(&args.output, out, err).await {
            Ok(code) => {
                let _ = writeln!(
                    err,
                    "demo finished: a real `greenrich enrich` run with this outcome exits with code {code} (see the README)",
                );
                exit::OK
            }
            Err(e) => fatal(err, &e.to_string()),
        },
        Command::Status(DbArgs { store, max_age }) => match store.location() {
            Ok(db) => print_or_fail(out, err, inspect::status(&db, max_age.0).await),
            Err(e) => fatal(err, &e.to_string()),
        },
        Command::Failures(DbArgs { store, .. }) => match store.location() {
            Ok(db) => print_or_fail(out, err, inspect::failures(&db).await),
            Err(e) => fatal(err, &e.to_string()),
        },
        Command::Completions(args) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(args.shell, &mut command, "greenrich", out);
            exit::OK
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            match clap_mangen::Man::new(command).render(out) {
                Ok(()) => exit::OK,
                Err(e) => fatal(err, &format!("cannot write the man page: {e}")),
            }
        }
        Command::Export(args) => match export_files(&args).await {
            Ok(written) => {
                for (file, rows) in written {
                    let shown = args.output.join(file);
                    let _ = writeln!(err, "wrote {rows} rows to {}", shown.display());
                }
                exit::OK
            }
            Err(e) => fatal(err, &e.to_string()),
        },
    }
}

/// `greenrich export`: the table CSVs, and `enriched.csv` when an input is given.
async fn export_files(
    args: &ExportArgs,
) -> Result<Vec<(String, u64)>, Box<dyn std::error::Error + Send + Sync>> {
    let raw = args.csv_out.csv_raw;
    output::prepare(&Output::Csv {
        dir: args.output.clone(),
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
    Ok(export::export_csv(&args.store.location()?, &args.output, raw, enriched).await?)
}

fn print_or_fail(
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
    result: Result<String, crate::store::StoreError>,
) -> i32 {
    match result {
        Ok(text) => {
            let _ = write!(out, "{text}");
            exit::OK
        }
        Err(e) => fatal(err, &e.to_string()),
    }
}

fn fatal(err: &mut (dyn Write + Send), message: &str) -> i32 {
    let _ = writeln!(err, "error: {}", mask(message));
    exit::FATAL
}
