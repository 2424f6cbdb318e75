//! `greenrich demo`: the whole job on the bundled samples against an in-process sandbox, so a new
//! user sees it work with no account.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::Row;

use crate::api::Instance;
use crate::chat_id::{DefaultCountry, Messenger};
use crate::fetch::{Settings, Stop};
use crate::job::{self, EnrichConfig, Output};
use crate::report::Report;
use crate::sandbox;
use crate::source::Source;

/// The sample CRM export shipped in `samples/`, compiled in so the demo runs from anywhere.
const SAMPLE_CSV: &str = include_str!("../samples/customers.csv");

/// Sandbox instances and pace used by the demo: 4 instances at 10 calls per second each.
const DEMO_INSTANCES: usize = 4;
const DEMO_RPS: f64 = 10.0;

pub async fn run(output: &Path) -> Result<Report, String> {
    let sandbox_config = sandbox::Config {
        instances: sandbox::default_instances(DEMO_INSTANCES),
        rps: DEMO_RPS,
        latency_min: Duration::from_millis(50),
        latency_max: Duration::from_millis(150),
        jitter: 0.1,
        ..sandbox::Config::default()
    };
    let instances = sandbox_config
        .instances
        .iter()
        .map(|i| Instance::parse(&format!("{}:{}", i.id, i.token)))
        .collect::<Result<Vec<_>, _>>()?;
    let server = sandbox::start(sandbox_config, 0)
        .await
        .map_err(|e| format!("cannot start the sandbox: {e}"))?;
    eprintln!(
        "demo: sandbox GREEN-API on {} with {DEMO_INSTANCES} instances at {DEMO_RPS} calls/s each",
        server.url()
    );
    let input = std::env::temp_dir().join(format!("greenrich-demo-{}.csv", std::process::id()));
    std::fs::write(&input, SAMPLE_CSV)
        .map_err(|e| format!("cannot write {}: {e}", input.display()))?;
    eprintln!(
        "demo: enriching samples/customers.csv into {}",
        output.display()
    );
    let config = demo_config(input.clone(), output.to_path_buf(), server.url(), instances);
    let result = job::enrich(config, Stop::default()).await;
    let _ = std::fs::remove_file(&input);
    let report = result.map_err(|e| e.to_string())?;
    eprintln!("{}", report.summary());
    print_rows(output)
        .await
        .map_err(|e| format!("cannot read {}: {e}", output.display()))?;
    Ok(report)
}

fn demo_config(
    input: PathBuf,
    output: PathBuf,
    api_url: String,
    instances: Vec<Instance>,
) -> EnrichConfig {
    EnrichConfig {
        source: Source::Csv {
            path: input,
            column: None,
        },
        messenger: Messenger::Whatsapp,
        default_country: "RU".parse::<DefaultCountry>().ok(),
        output: Output::Sqlite(output),
        api_url,
        instances,
        fetch: Settings {
            messenger: Messenger::Whatsapp,
            rps_per_instance: DEMO_RPS,
            pacing_margin: crate::api::pacer::DEFAULT_MARGIN,
            max_attempts: 5,
            backoff_base: Duration::from_millis(200),
            backoff_cap: Duration::from_secs(5),
            retry_after_cap: Duration::from_secs(10),
            starting_wait: Duration::from_secs(10),
            transient_retry_after: Duration::from_secs(3600),
            max_calls: None,
        },
        timeout: Duration::from_secs(10),
        max_age: None,
        retry_failed_after: Duration::from_secs(30 * 86_400),
        only_failed: false,
        deadline: None,
        dry_run: false,
        preflight: true,
        status_interval: Duration::from_secs(5),
        quiet: false,
        lock_timeout: Duration::from_secs(10),
    }
}

/// Prints a few enriched rows on stdout.
async fn print_rows(db: &Path) -> Result<(), crate::store::StoreError> {
    let mut conn = crate::store::open_read_only(db).await?;
    let rows = sqlx::query(
        "SELECT c.chat_id, COALESCE(c.name, ''), COALESCE(c.category, ''), COALESCE(c.last_seen_at, ''),
                (SELECT COUNT(*) FROM products p WHERE p.chat_id = c.chat_id)
         FROM contacts c ORDER BY c.is_business DESC, c.chat_id LIMIT 8",
    )
    .fetch_all(&mut conn)
    .await?;
    println!(
        "{:<20} {:<28} {:<26} {:<21} products",
        "chat_id", "name", "category", "last_seen_at"
    );
    for row in rows {
        let name: String = row.get(1);
        println!(
            "{:<20} {:<28} {:<26} {:<21} {}",
            row.get::<String, _>(0),
            name.replace('\n', "\\n")
                .chars()
                .take(27)
                .collect::<String>(),
            row.get::<String, _>(2).chars().take(25).collect::<String>(),
            row.get::<String, _>(3),
            row.get::<i64, _>(4)
        );
    }
    let failures =
        sqlx::query("SELECT key, reason, message FROM failures ORDER BY reason, key LIMIT 5")
            .fetch_all(&mut conn)
            .await?;
    if !failures.is_empty() {
        println!("\nsome failures (see the failures table):");
        for row in failures {
            println!(
                "  {:<28} {:<12} {}",
                row.get::<String, _>(0),
                row.get::<String, _>(1),
                row.get::<String, _>(2)
            );
        }
    }
    Ok(())
}
