//! Test helpers: a sandbox per test, the binary run as a child process, and store queries.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use greenrich::sandbox::{self, Sandbox};
use sqlx::{ConnectOptions, Row};

pub const BIN: &str = env!("CARGO_BIN_EXE_greenrich");

/// A temporary directory and a sandbox, with credentials for all its instances.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub sandbox: Sandbox,
    pub instances: String,
}

/// A fast sandbox: 4 instances, no rate limit, no latency.
pub fn fast() -> sandbox::Config {
    sandbox::Config {
        rps: 0.0,
        ..sandbox::Config::default()
    }
}

pub async fn env_with(config: sandbox::Config) -> TestEnv {
    let instances = config
        .instances
        .iter()
        .map(|i| format!("{}:{}", i.id, i.token))
        .collect::<Vec<_>>()
        .join(",");
    TestEnv {
        dir: tempfile::tempdir().unwrap(),
        sandbox: sandbox::start(config, 0).await.unwrap(),
        instances,
    }
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
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
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .env_remove("GREEN_API_ID_INSTANCE")
            .env_remove("GREEN_API_TOKEN_INSTANCE")
            .env("GREEN_API_URL", self.sandbox.url())
            .env("GREEN_API_INSTANCES", &self.instances)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        finish(cmd.spawn().unwrap()).await
    }

    /// Starts `greenrich` without waiting for it; `shell_prefix` (such as `ulimit -f 256;`) runs
    /// in the shell that execs it.
    pub fn spawn(&self, args: &[&str], shell_prefix: &str) -> tokio::process::Child {
        let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        let script = format!("{shell_prefix} exec '{BIN}' {}", quoted.join(" "));
        tokio::process::Command::new("sh")
            .args(["-c", &script])
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .env("GREEN_API_URL", self.sandbox.url())
            .env("GREEN_API_INSTANCES", &self.instances)
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
        // Later flags override these.
        args.extend_from_slice(extra);
        self.run_with_env(&args, env).await
    }
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

/// Waits for a spawned run and collects what it printed.
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
