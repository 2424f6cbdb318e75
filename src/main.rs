//! The `greenrich` binary: parses flags, sets up logging and signals, runs a command, and maps
//! its outcome to an exit code (see `report::exit`).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use greenrich::cli::{Cli, Command, LogFormat};
use greenrich::fetch::{Stop, StopReason};
use greenrich::redact::{self, MaskingWriter};
use greenrich::report::exit;
use greenrich::{demo, inspect, job, sandbox};

fn main() -> ExitCode {
    redact::install_panic_hook();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::FATAL as u8 } else { 0 });
        }
    };
    init_logging(&cli);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FATAL as u8);
        }
    };
    let code = runtime.block_on(run(cli));
    // Requests that still hang are not waited for.
    runtime.shutdown_background();
    ExitCode::from(code as u8)
}

fn init_logging(cli: &Cli) {
    let default = if cli.quiet {
        "warn"
    } else if cli.verbose {
        "greenrich=debug,info"
    } else {
        "info"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let writer = || MaskingWriter(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    match cli.log_format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

async fn run(cli: Cli) -> i32 {
    let (quiet, log_format) = (cli.quiet, cli.log_format);
    match cli.command {
        Command::Enrich(args) => {
            let summary_json = args.summary_json.clone();
            let config = match (*args).into_config(quiet, |k| std::env::var(k).ok()) {
                Ok(config) => config,
                Err(message) => return fatal(&message),
            };
            let stop = Stop::default();
            watch_signals(stop.clone());
            ignore_file_size_signal();
            match job::enrich(config, stop).await {
                Ok(report) => {
                    let summary = match log_format {
                        LogFormat::Plain => report.summary(),
                        LogFormat::Json => {
                            serde_json::json!({ "summary": report.to_json() }).to_string()
                        }
                    };
                    eprintln!("{}", redact::mask(&summary));
                    if let Some(path) = summary_json {
                        let text =
                            serde_json::to_string_pretty(&report.to_json()).unwrap_or_default();
                        if let Err(e) = std::fs::write(&path, redact::mask(&text).as_bytes()) {
                            eprintln!("warning: cannot write {}: {e}", path.display());
                        }
                    }
                    report.exit_code()
                }
                Err(e) => {
                    fatal(&e.to_string());
                    e.exit_code()
                }
            }
        }
        Command::Sandbox(args) => {
            let port = args.port;
            let config = match args.into_config() {
                Ok(config) => config,
                Err(message) => return fatal(&message),
            };
            let ids: Vec<String> = config
                .instances
                .iter()
                .map(|i| format!("{}:{}", i.id, i.token))
                .collect();
            match sandbox::start(config, port).await {
                Ok(server) => {
                    eprintln!("sandbox GREEN-API listening on {}", server.url());
                    eprintln!("instances (GREEN_API_INSTANCES): {}", ids.join(","));
                    let _ = tokio::signal::ctrl_c().await;
                    exit::OK
                }
                Err(e) => fatal(&format!("cannot listen on port {port}: {e}")),
            }
        }
        Command::Demo(args) => match demo::run(&args.output).await {
            Ok(report) => {
                eprintln!(
                    "demo finished: a real `greenrich enrich` run with this outcome exits with code {} (see the README)",
                    report.exit_code()
                );
                exit::OK
            }
            Err(message) => fatal(&message),
        },
        Command::Status(args) => print_or_fail(inspect::status(&args.db, args.max_age).await),
        Command::Failures(args) => print_or_fail(inspect::failures(&args.db).await),
    }
}

fn print_or_fail(result: Result<String, greenrich::store::StoreError>) -> i32 {
    match result {
        Ok(text) => {
            print!("{text}");
            exit::OK
        }
        Err(e) => fatal(&e.to_string()),
    }
}

fn fatal(message: &str) -> i32 {
    eprintln!("error: {}", redact::mask(message));
    exit::FATAL
}

/// The first SIGINT/SIGTERM stops issuing calls and lets the run commit and report; a second
/// one exits at once (SQLite keeps the last committed state).
fn watch_signals(stop: Stop) {
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            wait_for_signal().await;
            seen += 1;
            if seen == 1 {
                eprintln!("stopping: finishing the requests in flight and committing (press Ctrl-C again to quit at once)");
                stop.trigger(StopReason::Interrupted);
            } else {
                eprintln!("quitting at once; everything committed so far is kept");
                std::process::exit(exit::PARTIAL);
            }
        }
    });
}

/// With a file size limit (`ulimit -f`), a write past it sends SIGXFSZ, which kills the process by
/// default; handling it turns the write into an error, so the run stops cleanly like on a full disk.
fn ignore_file_size_signal() {
    #[cfg(unix)]
    {
        const SIGXFSZ: i32 = 25;
        if let Ok(mut xfsz) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(SIGXFSZ))
        {
            tokio::spawn(async move { while xfsz.recv().await.is_some() {} });
        }
    }
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
