//! Refresh policies under a budget, simulated night by night through the real job and store.
//!
//! The sandbox's contacts change at seeded per-contact rates (`--change-rates`), on a clock this
//! benchmark moves one day a night; each night runs `greenrich enrich` in-process on that clock
//! (`--now`) with a budget of a share of the contacts (`--max-calls`) and a refresh policy. After
//! a warm-up (every contact fetched on night 0, then nights under the policy so that the
//! adaptive estimates have checks to learn from), it measures each following day's
//! time-averaged freshness: the share of store rows equal to the simulator's truth, which a row
//! stays from its fetch until the contact's next change. It prints the average over the measured
//! nights beside what the mix's freshness is computed to be when refreshed evenly (oldest first)
//! and at the Lagrangian optimum of Cho and Garcia-Molina.
//!
//! `cargo bench --bench refresh -- [CONTACTS] [WARM-UP NIGHTS] [MEASURED NIGHTS]`
//! (defaults 2000, 240, 60); `bench/run.sh refresh` runs it.

#![allow(
    unused_crate_dependencies,
    reason = "the benchmark sees every dependency of the package as its own"
)]
#![allow(
    clippy::expect_used,
    reason = "a benchmark that cannot set up stops with the reason"
)]

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use greenrich::sandbox::{self, ChangeRates};
use greenrich::{computed_freshness, Stop};
use sqlx::{ConnectOptions, Row};

/// The mixes: the issue's, and one where every contact changes at the same rate.
const MIXES: [(&str, &str); 2] = [
    ("5%:7d,25%:30d,70%:365d", "mixed rates"),
    ("100%:30d", "one rate"),
];
const BUDGETS: [f64; 3] = [0.02, 0.05, 0.10];
const POLICIES: [&str; 2] = ["age", "adaptive"];

struct Setup {
    contacts: usize,
    warm_up: u32,
    measured: u32,
}

#[tokio::main]
async fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let setup = Setup {
        contacts: args.first().copied().unwrap_or(2000) as usize,
        warm_up: args.get(1).copied().unwrap_or(240),
        measured: args.get(2).copied().unwrap_or(60),
    };
    println!(
        "refresh: {} contacts, night 0 fetches all, then {} warm-up and {} measured nights per row; random-order input",
        setup.contacts, setup.warm_up, setup.measured
    );
    println!("| mix | budget per night | oldest-first (computed) | optimum (computed) | age (simulated) | adaptive (simulated) |");
    println!("|---|---|---|---|---|---|");
    for (rates, name) in MIXES {
        let mix = mix_of(rates);
        for budget in BUDGETS {
            let (even, best) = computed_freshness(&mix, budget);
            let mut simulated = Vec::new();
            for policy in POLICIES {
                simulated.push(simulate(&setup, rates, budget, policy).await);
            }
            println!(
                "| {name} | {:.0}% | {even:.3} | {best:.3} | {:.3} | {:.3} |",
                budget * 100.0,
                simulated[0],
                simulated[1]
            );
        }
    }
}

/// `(share, changes a day)` of each class of `rates`.
fn mix_of(rates: &str) -> Vec<(f64, f64)> {
    let parsed: ChangeRates = rates.parse().expect("rates");
    parsed
        .0
        .iter()
        .map(|r| (r.share, 86_400.0 / r.every.as_secs_f64()))
        .collect()
}

/// The average freshness of the measured nights under `policy`.
async fn simulate(setup: &Setup, rates: &str, budget: f64, policy: &str) -> f64 {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = sandbox::Config {
        rate: greenrich::Rate::Unlimited,
        instances: sandbox::default_instances(1),
        change_rates: rates.parse().expect("rates"),
        seed: 20261202,
        ..sandbox::Config::default()
    };
    let server = sandbox::start(config, 0).await.expect("the sandbox");
    let world = server.world.clone();
    let ids = write_input(&dir.path().join("in.csv"), setup.contacts);
    let start = world.start();
    let horizon = start + Duration::days(i64::from(setup.warm_up + setup.measured + 2));
    let changes: HashMap<String, Vec<DateTime<Utc>>> = ids
        .iter()
        .map(|id| (id.clone(), world.changes(id, horizon)))
        .collect();
    let calls = ((budget * setup.contacts as f64).round() as u64).to_string();
    let mut total = 0.0;
    for night in 0..=(setup.warm_up + setup.measured) {
        let at = start + Duration::days(i64::from(night));
        world.set_now(at);
        let mut extra = vec!["--refresh", policy];
        if night > 0 {
            extra.extend(["--max-calls", calls.as_str()]);
        }
        enrich(dir.path(), &server, at, &extra).await;
        if night > setup.warm_up {
            total += freshness(&dir.path().join("out.db"), &changes, at).await;
        }
    }
    if std::env::var_os("GREENRICH_BENCH_CLASSES").is_some() {
        classes(&dir.path().join("out.db"), &world).await;
    }
    total / f64::from(setup.measured)
}

/// The store at `db`, read-only.
async fn open(db: &Path) -> sqlx::SqliteConnection {
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true)
        .connect()
        .await
        .expect("the store")
}

/// Per change class: contacts, checks per contact, and the share of checks that found a change
/// (`GREENRICH_BENCH_CLASSES=1`, to see where a policy spends its calls).
async fn classes(db: &Path, world: &sandbox::World) {
    let mut conn = open(db).await;
    let rows = sqlx::query("SELECT chat_id, fetches_changed, fetches_unchanged FROM contacts")
        .fetch_all(&mut conn)
        .await
        .expect("the contacts");
    let mut by: std::collections::BTreeMap<u64, (u64, i64, i64)> = Default::default();
    for row in &rows {
        let chat_id: String = row.get(0);
        let days = world.every(&chat_id).map_or(0, |d| d.as_secs() / 86_400);
        let entry = by.entry(days).or_default();
        entry.0 += 1;
        entry.1 += row.get::<i64, _>(1);
        entry.2 += row.get::<i64, _>(2);
    }
    for (days, (n, changed, unchanged)) in by {
        let checks = (changed + unchanged) as f64;
        println!(
            "    class {days}d: {n} contacts, {:.1} checks each, {:.0}% found a change",
            checks / n as f64,
            100.0 * changed as f64 / checks.max(1.0)
        );
    }
}

/// A CSV of `n` phone numbers in random order; their chat ids.
fn write_input(path: &Path, n: usize) -> Vec<String> {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut numbers: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut numbers);
    let mut file = std::fs::File::create(path).expect("the input");
    writeln!(file, "phone").expect("the input");
    for i in &numbers {
        writeln!(file, "+7 901 {:07}", 1_000_000 + i).expect("the input");
    }
    numbers
        .iter()
        .map(|i| format!("7901{:07}@c.us", 1_000_000 + i))
        .collect()
}

/// One night's `greenrich enrich`, in-process, at `at`.
async fn enrich(dir: &Path, server: &sandbox::Sandbox, at: DateTime<Utc>, extra: &[&str]) {
    let (input, output) = (dir.join("in.csv"), dir.join("out.db"));
    let now = at.to_rfc3339();
    let mut args = vec![
        "greenrich",
        "--quiet",
        "enrich",
        "--input",
        input.to_str().expect("a path"),
        "--output",
        output.to_str().expect("a path"),
        "--rps-per-instance",
        "0",
        "--no-preflight",
        "--now",
        &now,
    ];
    args.extend_from_slice(extra);
    let cli = greenrich::parse(args.into_iter().map(Into::into).collect()).expect("flags");
    let (url, credentials) = (server.url(), server.credentials());
    let env = move |key: &str| match key {
        "GREEN_API_URL" => Some(url.clone()),
        "GREEN_API_INSTANCES" => Some(credentials.clone()),
        _ => None,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let result = greenrich::run(cli, &env, Stop::default(), &mut out, &mut err).await;
    let code = greenrich::finish(result, greenrich::LogFormat::Plain, &mut out, &mut err);
    // 2: the sandbox rejects a few chat ids, as the API does; they stay out of the store.
    assert!(
        code <= 3,
        "night at {at}: exit {code}: {}",
        String::from_utf8_lossy(&err)
    );
}

/// The share of store rows equal to the simulator's truth, averaged over the day from `at`: a
/// row stays true from its fetch until its contact's next change.
async fn freshness(
    db: &Path,
    changes: &HashMap<String, Vec<DateTime<Utc>>>,
    at: DateTime<Utc>,
) -> f64 {
    let mut conn = open(db).await;
    let rows = sqlx::query("SELECT chat_id, fetched_at FROM contacts")
        .fetch_all(&mut conn)
        .await
        .expect("the contacts");
    let day = 86_400.0;
    let fresh: f64 = rows
        .iter()
        .map(|row| {
            let chat_id: String = row.get(0);
            let fetched: String = row.get(1);
            let fetched = DateTime::parse_from_rfc3339(&fetched)
                .expect("a time")
                .with_timezone(&Utc);
            let next = changes
                .get(&chat_id)
                .and_then(|moments| moments.iter().find(|m| **m > fetched));
            match next {
                None => 1.0,
                Some(next) => ((*next - at).as_seconds_f64() / day).clamp(0.0, 1.0),
            }
        })
        .sum();
    fresh / rows.len().max(1) as f64
}
