//! Change tracking: a rerun says which contacts changed, `changes` names the fields, and
//! `export --changed-since` writes only the delta. The same on a SQLite and a PostgreSQL store.

use std::collections::BTreeSet;

use crate::helpers::*;
use crate::servers::{At, Engine, ServerDb};

const CONTACTS: usize = 1000;
/// The rows whose contacts the sandbox changes between the two runs.
const EDITED: [usize; 3] = [7, 500, 998];

/// Enriches `CONTACTS` contacts, changes three in the sandbox, enriches again, and checks what
/// the second run found, what the store recorded, and the delta export.
async fn three_changes_among_a_thousand(at: At<'_>) {
    let env = env_with(fast()).await;
    env.write("in.csv", phones_csv(CONTACTS).as_bytes());
    let store = at.store_flags();
    let store: Vec<&str> = store.iter().map(String::as_str).collect();
    let enrich = |extra: &[&str]| {
        let mut args = enrich_args("in.csv", store[0], &store[1..]);
        args.extend_from_slice(extra);
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    let first = env.run(&as_strs(&enrich(&[]))).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(
        first
            .stderr
            .contains("1000 enriched (1000 new, 0 changed, 0 unchanged)"),
        "{}",
        first.stderr
    );
    let edited: BTreeSet<String> = EDITED.iter().map(|i| phone_chat_id(*i)).collect();
    for chat_id in &edited {
        env.sandbox.world.edit(chat_id);
    }
    let second = env.run(&as_strs(&enrich(&[]))).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        second
            .stderr
            .contains("1000 enriched (0 new, 3 changed, 997 unchanged)"),
        "{}",
        second.stderr
    );
    let run = &at
        .rows(&env, "SELECT CAST(MAX(id) AS TEXT) FROM runs")
        .await[0][0];
    let run = run.clone().unwrap();

    // The store: the change records, and each contact's history.
    let changes = at
        .rows(
            &env,
            "SELECT chat_id, 'changed', fields, CAST(run_id AS TEXT) FROM changes ORDER BY chat_id",
        )
        .await;
    let changed: Vec<&Vec<Option<String>>> = changes
        .iter()
        .filter(|r| r[1].as_deref() == Some("changed"))
        .collect();
    assert_eq!(changes.len(), 3, "each change (a new contact is none)");
    assert_eq!(
        changed
            .iter()
            .map(|r| r[0].clone().unwrap())
            .collect::<BTreeSet<_>>(),
        edited
    );
    // Each change renames the contact (and its phone-book name, when it has one).
    let renamed = |fields: Option<&str>| matches!(fields, Some("name" | "name,contact_name"));
    assert!(
        changed
            .iter()
            .all(|r| renamed(r[2].as_deref()) && r[3].as_deref() == Some(run.as_str())),
        "{changed:?}"
    );
    let counts = at
        .rows(&env, "SELECT CAST(SUM(fetches_changed) AS TEXT), CAST(SUM(fetches_unchanged) AS TEXT), CAST(COUNT(DISTINCT fingerprint) AS TEXT) FROM contacts")
        .await;
    assert_eq!(counts[0][0].as_deref(), Some("3"));
    assert_eq!(counts[0][1].as_deref(), Some("997"));

    // The delta: exactly the three contacts, their products and their input rows.
    let mut export = vec!["export", "--db", store[0]];
    export.extend_from_slice(&store[1..]);
    export.extend_from_slice(&[
        "--input",
        "in.csv",
        "--output",
        "delta",
        "--changed-since",
        &run,
    ]);
    let exported = env.run(&export).await;
    assert_eq!(exported.code, 0, "{}", exported.stderr);
    let contacts = read(&env, "delta/contacts.csv");
    let chat_id = contacts[0].iter().position(|c| c == "chat_id").unwrap();
    let exported_ids: BTreeSet<String> = contacts[1..].iter().map(|r| r[chat_id].clone()).collect();
    assert_eq!(exported_ids, edited);
    let products = read(&env, "delta/products.csv");
    assert!(
        products[1..].iter().all(|r| edited.contains(&r[0])),
        "only their products"
    );
    let stored_products = at
        .rows(&env, "SELECT chat_id FROM products")
        .await
        .into_iter()
        .filter(|r| edited.contains(r[0].as_deref().unwrap()))
        .count();
    assert_eq!(products.len() - 1, stored_products);
    let enriched = read(&env, "delta/enriched.csv");
    assert_eq!(enriched.len(), 1 + 3, "{enriched:?}");
    let change = enriched[0]
        .iter()
        .position(|c| c == "whatsapp_change")
        .unwrap();
    assert!(enriched[1..].iter().all(|r| r[change] == "changed"));
    assert!(
        !env.path("delta/failures.csv").exists(),
        "a delta has no failures.csv"
    );
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// A CSV file the test wrote, as rows of cells (a BOM taken off).
fn read(env: &TestEnv, name: &str) -> Vec<Vec<String>> {
    let bytes = std::fs::read(env.path(name)).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.trim_start_matches('\u{feff}').as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_reports_three_changes_and_exports_only_them() {
    three_changes_among_a_thousand(At::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs GREENRICH_TEST_POSTGRES_URL"]
async fn a_postgres_store_keeps_the_same_change_records() {
    let db = ServerDb::create(Engine::Postgres, "changes").await;
    three_changes_among_a_thousand(At::Postgres(&db)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn changed_since_a_time_takes_the_changes_after_it() {
    let env = env_with(fast()).await;
    env.write("in.csv", phones_csv(50).as_bytes());
    let run = env.enrich("in.csv", "out.db", &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let between = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    std::thread::sleep(std::time::Duration::from_millis(20));
    env.sandbox.world.edit(&phone_chat_id(3));
    let run = env.enrich("in.csv", "out.db", &[]).await;
    assert!(
        run.stderr.contains("(0 new, 1 changed, 49 unchanged)"),
        "{}",
        run.stderr
    );
    let args = [
        "export",
        "--db",
        "out.db",
        "--output",
        "delta",
        "--changed-since",
        &between,
    ];
    let exported = env.run(&args).await;
    assert_eq!(exported.code, 0, "{}", exported.stderr);
    assert_eq!(read(&env, "delta/contacts.csv").len(), 1 + 1);
    for bad in ["yesterday", "99999999999999999999999"] {
        let refused = env
            .run(&[
                "export",
                "--db",
                "out.db",
                "--output",
                "d2",
                "--changed-since",
                bad,
            ])
            .await;
        assert_eq!(refused.code, 1, "{bad}");
        assert!(
            refused.stderr.contains("--changed-since"),
            "{}",
            refused.stderr
        );
    }
    let missing = env
        .run(&[
            "export",
            "--db",
            "out.db",
            "--output",
            "d3",
            "--changed-since",
            "77",
        ])
        .await;
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("no run #77"), "{}", missing.stderr);
}

/// Runs `nights` nightly refreshes of `contacts` contacts on the sandbox's clock, each with a
/// budget of `calls` and `--refresh policy`; returns how many checks the contacts of each mean
/// time between changes (days) had.
async fn nights(policy: &str, contacts: usize, nights: i64, calls: &str) -> Vec<(u64, f64)> {
    let env = env_with(greenrich::sandbox::Config {
        change_rates: "50%:2d,50%:1000d".parse().unwrap(),
        seed: 3,
        ..fast()
    })
    .await;
    env.write("in.csv", phones_csv(contacts).as_bytes());
    let start = env.sandbox.world.start();
    for night in 0..=nights {
        let at = start + chrono::Duration::days(night);
        env.sandbox.world.set_now(at);
        let now = at.to_rfc3339();
        let mut extra = vec!["--now", now.as_str(), "--refresh", policy];
        if night > 0 {
            extra.extend(["--max-calls", calls]);
        }
        let run = env.enrich("in.csv", "out.db", &extra).await;
        assert!(run.code == 0 || run.code == 3, "{}", run.stderr);
    }
    let rows = rows(
        &env.path("out.db"),
        "SELECT chat_id, CAST(fetches_changed + fetches_unchanged AS TEXT) FROM contacts",
    )
    .await;
    let mut by: std::collections::BTreeMap<u64, (f64, f64)> = Default::default();
    for row in rows {
        let every = env.sandbox.world.every(row[0].as_deref().unwrap());
        let days = every.map_or(0, |d| d.as_secs() / 86_400);
        let checks: f64 = row[1].as_deref().unwrap().parse().unwrap();
        let entry = by.entry(days).or_default();
        *entry = (entry.0 + checks, entry.1 + 1.0);
    }
    by.into_iter()
        .map(|(days, (checks, n))| (days, checks / n))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn adaptive_refresh_spends_the_budget_where_contacts_change() {
    // Half the contacts change every two days, half every thousand; a tenth is refreshed a
    // night. Oldest-first spreads the calls evenly; the adaptive order learns which contacts
    // change and spends more on them (a two-day contact is worth a refresh every few days, a
    // thousand-day one hardly ever).
    let age = nights("age", 60, 50, "6").await;
    let adaptive = nights("adaptive", 60, 50, "6").await;
    let (age_fast, age_slow) = (age[0].1, age[1].1);
    let (fast, slow) = (adaptive[0].1, adaptive[1].1);
    assert!((age_fast - age_slow).abs() < 0.5, "age: {age:?}");
    // A thousand-day contact takes long to tell from a slow one; the shift shows in weeks.
    assert!(
        fast > age_fast + 0.75 && slow < age_slow - 0.75,
        "age: {age:?}, adaptive: {adaptive:?}"
    );
}
