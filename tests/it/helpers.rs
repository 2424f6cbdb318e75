//! Test helpers: a sandbox on port 0 and a temporary directory per test, and greenrich run either
//! in-process (the default: `app::run` on its own thread and runtime, with captured output and a
//! `Stop` handle) or as the real binary where the process is the point (signals, kill -9, exit
//! codes of the binary, secrets in its output).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use greenrich::sandbox::{self, Sandbox};
use greenrich::MaskingWriter;
use greenrich::Stop;
use greenrich::{LogFormat, Rate};
use sqlx::{ConnectOptions, Row};

pub const BIN: &str = env!("CARGO_BIN_EXE_greenrich");

/// How a test runs greenrich.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `app::run` in this process.
    InProcess,
    /// The real binary as a child process.
    Binary,
}

/// A temporary directory and a sandbox, with credentials for all its instances.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub sandbox: Sandbox,
    pub instances: String,
    mode: Mode,
}

/// A fast sandbox: 4 instances, no rate limit, no latency.
pub fn fast() -> sandbox::Config {
    sandbox::Config {
        rate: Rate::Unlimited,
        ..sandbox::Config::default()
    }
}

/// A test environment whose runs are in-process.
pub async fn env_with(config: sandbox::Config) -> TestEnv {
    env_in(config, Mode::InProcess).await
}

/// A test environment whose runs spawn the real binary.
pub async fn process_env_with(config: sandbox::Config) -> TestEnv {
    env_in(config, Mode::Binary).await
}

async fn env_in(config: sandbox::Config, mode: Mode) -> TestEnv {
    let sandbox = sandbox::start(config, 0).await.unwrap();
    TestEnv {
        dir: tempfile::tempdir().unwrap(),
        instances: sandbox.credentials(),
        sandbox,
        mode,
    }
}

/// What one run did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A buffer shared by the log subscriber and the command's stderr, so their order is kept.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// An in-process run under way.
pub struct Started {
    pub stop: Stop,
    done: tokio::sync::oneshot::Receiver<Run>,
}

impl Started {
    /// Waits for the run to end.
    pub async fn finish(self) -> Run {
        tokio::time::timeout(Duration::from_secs(120), self.done)
            .await
            .expect("greenrich did not finish within 120 s")
            .expect("the run's thread died")
    }
}

impl TestEnv {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, content: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    /// Runs `greenrich` with the sandbox's URL and instances in the environment.
    pub async fn run(&self, args: &[&str]) -> Run {
        self.run_with_env(args, &[]).await
    }

    pub async fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        match self.mode {
            Mode::InProcess => self.start_with_env(args, env).finish().await,
            Mode::Binary => self.run_binary(args, env).await,
        }
    }

    /// The environment a run sees: the sandbox's credentials, then `overrides`.
    fn environment(&self, overrides: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = vec![
            ("GREEN_API_URL".to_string(), self.sandbox.url()),
            ("GREEN_API_INSTANCES".to_string(), self.instances.clone()),
        ];
        for (k, v) in overrides {
            env.retain(|(name, _)| name != k);
            env.push((k.to_string(), v.to_string()));
        }
        env
    }

    /// Starts `greenrich` in-process on its own thread and runtime; relative paths are taken
    /// from the test's directory, as a child process started there would.
    pub fn start_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Started {
        let mut argv = vec!["greenrich".to_string()];
        argv.extend(self.absolute_paths(args));
        let env = self.environment(env);
        let stop = Stop::default();
        let (tx, done) = tokio::sync::oneshot::channel();
        let run_stop = stop.clone();
        std::thread::spawn(move || {
            let captured = Captured::default();
            let mut out = Vec::new();
            let code = match greenrich::parse(argv.iter().map(Into::into).collect()) {
                Err(e) => greenrich::finish(
                    Err(e),
                    LogFormat::Plain,
                    &mut out,
                    &mut MaskingWriter(captured.clone()),
                ),
                Ok(cli) => {
                    let log_format = cli.log_format;
                    let lookup = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                    let writer = captured.clone();
                    let subscriber = greenrich::log_subscriber(
                        &cli,
                        lookup("RUST_LOG").as_deref(),
                        move || MaskingWriter(writer.clone()),
                        false,
                    );
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    let mut err = MaskingWriter(captured.clone());
                    let result = tracing::subscriber::with_default(subscriber, || {
                        runtime.block_on(greenrich::run(cli, &lookup, run_stop, &mut out, &mut err))
                    });
                    greenrich::finish(result, log_format, &mut out, &mut err)
                }
            };
            let _ = tx.send(Run {
                code,
                stdout: String::from_utf8_lossy(&out).into_owned(),
                stderr: captured.text(),
            });
        });
        Started { stop, done }
    }

    fn absolute_paths(&self, args: &[&str]) -> Vec<String> {
        let mut out = Vec::with_capacity(args.len());
        let mut path_next = false;
        for arg in args {
            let arg = if path_next {
                match arg.strip_prefix("sqlite:") {
                    Some(path) => format!("sqlite:{}", self.in_dir(path)),
                    None => self.in_dir(arg),
                }
            } else {
                arg.to_string()
            };
            path_next = matches!(
                arg.as_str(),
                "--input"
                    | "--output"
                    | "--summary-json"
                    | "--db"
                    | "--metrics-file"
                    | "--config"
                    | "--report"
            );
            out.push(arg);
        }
        out
    }

    fn in_dir(&self, path: &str) -> String {
        if Path::new(path).is_absolute() || path.contains("://") {
            path.to_string()
        } else {
            self.dir.path().join(path).display().to_string()
        }
    }

    async fn run_binary(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .env_remove("GREEN_API_ID_INSTANCE")
            .env_remove("GREEN_API_TOKEN_INSTANCE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in self.environment(env) {
            cmd.env(k, v);
        }
        finish(cmd.spawn().unwrap()).await
    }

    /// Starts the `greenrich` binary without waiting for it; `shell_prefix` (such as
    /// `ulimit -f 256;`) runs in the shell that execs it.
    pub fn spawn(&self, args: &[&str], shell_prefix: &str) -> tokio::process::Child {
        self.spawn_with_env(args, shell_prefix, &[])
    }

    /// [`TestEnv::spawn`] with environment overrides.
    pub fn spawn_with_env(
        &self,
        args: &[&str],
        shell_prefix: &str,
        env: &[(&str, &str)],
    ) -> tokio::process::Child {
        let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        let script = format!("{shell_prefix} exec '{BIN}' {}", quoted.join(" "));
        tokio::process::Command::new("sh")
            .args(["-c", &script])
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .envs(self.environment(env))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    /// `enrich` with fast retries, plus `extra` flags.
    pub async fn enrich(&self, input: &str, output: &str, extra: &[&str]) -> Run {
        self.enrich_with_env(input, output, extra, &[]).await
    }

    /// `enrich` with fast retries, `extra` flags and environment overrides.
    pub async fn enrich_with_env(
        &self,
        input: &str,
        output: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Run {
        self.run_with_env(&enrich_args(input, output, extra), env)
            .await
    }
}

/// `enrich` with fast retries and no pacing, then `extra` (later flags override these).
pub fn enrich_args<'a>(input: &'a str, output: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "enrich",
        "--input",
        input,
        "--output",
        output,
        "--backoff-base",
        "10ms",
        "--timeout",
        "3s",
        "--rps-per-instance",
        "0",
    ];
    args.extend_from_slice(extra);
    args
}

/// A CSV with a `phone` column holding `n` distinct valid Russian mobile numbers.
pub fn phones_csv(n: usize) -> String {
    let mut csv = String::from("phone,name\n");
    for i in 0..n {
        csv.push_str(&format!(
            "+7 900 {:03} {:04},Person {i}\n",
            100 + i / 9000,
            1000 + i % 9000
        ));
    }
    csv
}

/// The chat id `phones_csv` gives for row `i`.
pub fn phone_chat_id(i: usize) -> String {
    format!("7900{:03}{:04}@c.us", 100 + i / 9000, 1000 + i % 9000)
}

pub async fn connect(db: &Path) -> sqlx::SqliteConnection {
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true)
        .connect()
        .await
        .unwrap()
}

pub async fn count(db: &Path, sql: &str) -> i64 {
    let mut conn = connect(db).await;
    sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
}

/// Every row of `sql`, each column as text (NULL as None).
pub async fn rows(db: &Path, sql: &str) -> Vec<Vec<Option<String>>> {
    let mut conn = connect(db).await;
    sqlx::query(sql)
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| (0..r.len()).map(|i| text(r, i)).collect())
        .collect()
}

/// Runs SQL on a (new) SQLite database, such as a test CRM.
pub async fn execute(db: &Path, sql: &str) {
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
}

/// Every file's bytes under `dir`, for leak checks.
pub fn all_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn text(row: &sqlx::sqlite::SqliteRow, i: usize) -> Option<String> {
    row.try_get::<Option<String>, _>(i)
        .or_else(|_| {
            row.try_get::<Option<i64>, _>(i)
                .map(|v| v.map(|v| v.to_string()))
        })
        .or_else(|_| {
            row.try_get::<Option<f64>, _>(i)
                .map(|v| v.map(|v| v.to_string()))
        })
        .unwrap()
}

/// Waits for a spawned binary and collects what it printed.
pub async fn finish(child: tokio::process::Child) -> Run {
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("greenrich did not finish within 120 s")
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
