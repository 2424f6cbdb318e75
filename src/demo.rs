//! `greenrich demo`: the whole job on the bundled samples against an in-process sandbox, so a new
//! user sees it work with no account.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::api::ApiUrl;
use crate::api::Instance;
use crate::chat_id::Messenger;
use crate::config::{ApiConfig, Config, InputConfig, Output};
use crate::domain::Rate;
use crate::error::JobError;
use crate::pipeline::stop::Stop;
use crate::report;
use crate::sandbox;
use crate::source::Source;
use crate::store::read::StoreReader;
use crate::store::StoreError;
use crate::store::StoreLocation;

/// The sample CRM exports shipped in `samples/`, compiled in so the demo runs from anywhere.
const SAMPLE_CSV: &str = include_str!("../samples/customers.csv");
const TELEGRAM_SAMPLE_CSV: &str = include_str!("../samples/telegram.csv");

/// Sandbox instances and pace used by the demo: 4 instances at 10 calls per second each.
const DEMO_INSTANCES: usize = 4;
const DEMO_RPS: f64 = 10.0;

/// The demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The sandbox cannot start.
    #[error("cannot start the sandbox: {0}")]
    Sandbox(std::io::Error),
    /// The sample input cannot be written.
    #[error("cannot write {0}: {1}")]
    Sample(PathBuf, std::io::Error),
    /// The run could not start or had to stop.
    #[error(transparent)]
    Job(#[from] JobError),
    /// The demo's store cannot be read back.
    #[error("cannot read the demo's store: {0}")]
    Read(#[from] StoreError),
    /// The demo has no sample for this messenger.
    #[error("the demo runs whatsapp or telegram, not {0}")]
    Messenger(Messenger),
}

/// Runs the demo into `output`; returns the exit code a real run with this outcome would have.
pub(crate) async fn run(
    output: &Path,
    messenger: Messenger,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> Result<i32, DemoError> {
    let (sample, sample_name) = match messenger {
        Messenger::Whatsapp => (SAMPLE_CSV, "customers.csv"),
        Messenger::Telegram => (TELEGRAM_SAMPLE_CSV, "telegram.csv"),
        Messenger::Max => return Err(DemoError::Messenger(messenger)),
    };
    let sandbox_config = sandbox::Config {
        instances: sandbox::default_instances(DEMO_INSTANCES),
        rate: Rate::PerSecond(DEMO_RPS),
        latency_min: Duration::from_millis(50),
        latency_max: Duration::from_millis(150),
        jitter: 0.1,
        ..sandbox::Config::default()
    };
    let server = sandbox::start(sandbox_config, 0)
        .await
        .map_err(DemoError::Sandbox)?;
    let _ = writeln!(
        err,
        "demo: sandbox GREEN-API on {} with {DEMO_INSTANCES} instances at {DEMO_RPS} calls/s each",
        server.url()
    );
    let input = std::env::temp_dir().join(format!("greenrich-demo-{}.csv", std::process::id()));
    std::fs::write(&input, sample).map_err(|e| DemoError::Sample(input.clone(), e))?;
    let _ = writeln!(
        err,
        "demo: enriching samples/{sample_name} ({messenger}) into {}",
        output.display()
    );
    let url = match messenger {
        Messenger::Telegram => server.telegram_url(),
        _ => server.url(),
    };
    let url = ApiUrl::parse(&url).map_err(|e| DemoError::Sandbox(std::io::Error::other(e)))?;
    let mut config = demo_config(input.clone(), output.to_path_buf(), url, &server);
    let page = output.with_extension("html");
    config.output.report = Some(page.clone());
    config.input.messenger = messenger;
    config.input.source_name = Some(sample_name.into());
    let result = crate::job::enrich(config, Stop::default()).await;
    let _ = std::fs::remove_file(&input);
    let code = report::exit_code(&result);
    let report = result?;
    let _ = writeln!(err, "{}", report.summary_text());
    print_rows(output, out).await?;
    let _ = writeln!(err, "demo: the run report is {}", page.display());
    Ok(code)
}

/// The defaults, with the demo's sandbox, sample and faster pace.
fn demo_config(input: PathBuf, output: PathBuf, url: ApiUrl, server: &sandbox::Sandbox) -> Config {
    let instances = server
        .config_instances()
        .iter()
        .filter_map(|i| Instance::parse(&format!("{}:{}", i.id, i.token)).ok())
        .collect();
    let source = Source::Csv {
        path: input,
        column: None,
        id_column: None,
        options: Default::default(),
    };
    let mut input = InputConfig::new(source, Messenger::Whatsapp);
    input.default_country = "RU".parse().ok();
    let mut api = ApiConfig::new(url, instances);
    api.timeout = Duration::from_secs(10);
    let mut config = Config::new(input, Output::Sqlite(output), api);
    config.fetch.rate = Rate::PerSecond(DEMO_RPS);
    config.fetch.check_rate = Rate::PerSecond(DEMO_RPS);
    config.fetch.backoff_base = Duration::from_millis(200);
    config.fetch.backoff_cap = Duration::from_secs(5);
    config.fetch.retry_after_cap = Duration::from_secs(10);
    config.fetch.starting_wait = Duration::from_secs(10);
    config.ui.status_interval = Duration::from_secs(5);
    config
}

/// Prints a few enriched rows and failures on `out`.
async fn print_rows(db: &Path, out: &mut (dyn Write + Send)) -> Result<(), StoreError> {
    let mut store = StoreReader::open(&StoreLocation::Sqlite(db.to_path_buf())).await?;
    let _ = writeln!(
        out,
        "{:<20} {:<28} {:<26} {:<21} products",
        "chat_id", "name", "category", "last_seen_at"
    );
    for c in store.sample_contacts(8).await? {
        let name: String = c.name.replace('\n', "\\n").chars().take(27).collect();
        let category: String = c.category.chars().take(25).collect();
        let _ = writeln!(
            out,
            "{:<20} {name:<28} {category:<26} {:<21} {}",
            c.chat_id, c.last_seen_at, c.products
        );
    }
    let failures = store.failures().await?;
    if !failures.is_empty() {
        let _ = writeln!(out, "\nsome failures (see the failures table):");
        for f in failures.iter().take(5) {
            let _ = writeln!(out, "  {:<28} {:<12} {}", f.key, f.reason, f.message);
        }
    }
    Ok(())
}
