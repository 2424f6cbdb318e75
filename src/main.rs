//! The `greenrich` binary: parses flags, sets up logging and signals, runs a command in the
//! library, and exits with its code.

#![allow(
    unused_crate_dependencies,
    reason = "the binary sees every dependency of the library as its own"
)]

use std::io::IsTerminal;
use std::process::ExitCode;

use greenrich::LogFormat;
use greenrich::{exit, install_panic_hook, MaskingWriter};
use greenrich::{Stop, StopReason};

fn main() -> ExitCode {
    install_panic_hook();
    let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
    let cli = match greenrich::parse(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(e) => {
            return exit(greenrich::finish(
                Err(e),
                LogFormat::Plain,
                &mut stdout,
                &mut stderr,
            ))
        }
    };
    let log_format = cli.log_format;
    let filter = std::env::var("RUST_LOG").ok();
    let subscriber = greenrich::log_subscriber(
        &cli,
        filter.as_deref(),
        || MaskingWriter(std::io::stderr()),
        std::io::stderr().is_terminal(),
    );
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        eprintln!("warning: logging was already set up");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            let result = Err(greenrich::Error::Runtime(e));
            return exit(greenrich::finish(
                result,
                log_format,
                &mut stdout,
                &mut stderr,
            ));
        }
    };
    let result = runtime.block_on(async {
        let stop = Stop::default();
        watch_signals(stop.clone());
        ignore_file_size_signal();
        let env = |key: &str| std::env::var(key).ok();
        greenrich::run(cli, &env, stop, &mut stdout, &mut stderr).await
    });
    // Requests that still hang are not waited for.
    runtime.shutdown_background();
    exit(greenrich::finish(
        result,
        log_format,
        &mut stdout,
        &mut stderr,
    ))
}

/// The process's exit code.
fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
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
