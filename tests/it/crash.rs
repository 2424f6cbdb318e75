//! Crash safety and resume: kill -9 at any moment, SIGTERM, a second run on the same store, a
//! full disk and a database locked by another program.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use greenrich::sandbox;

use greenrich::Rate;

use crate::helpers::*;

/// A sandbox where 150 keys take about 1.5 s: 4 instances at 25 calls per second.
fn paced() -> sandbox::Config {
    sandbox::Config {
        rate: Rate::PerSecond(25.0),
        latency_min: Duration::from_millis(10),
        latency_max: Duration::from_millis(30),
        ..sandbox::Config::default()
    }
}

const PACED_ARGS: [&str; 13] = [
    "enrich",
    "--input",
    "in.csv",
    "--output",
    "out.db",
    "--rps-per-instance",
    "25",
    "--pacing-margin",
    "0.3",
    "--backoff-base",
    "10ms",
    "--status-interval",
    "1h",
];

async fn committed(db: &std::path::Path) -> BTreeSet<String> {
    // The run may not have created the file or its tables yet: that is nothing committed.
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true);
    let Ok(mut conn) = sqlx::ConnectOptions::connect(&options).await else {
        return BTreeSet::new();
    };
    sqlx::query_scalar::<_, String>("SELECT chat_id FROM contacts")
        .fetch_all(&mut conn)
        .await
        .map(|ids| ids.into_iter().collect())
        .unwrap_or_default()
}

/// Polls the store until `child`'s run has stored at least `n` contacts; fails with what the
/// run said if it ends first or never gets there.
async fn wait_for_contacts(db: &std::path::Path, n: usize, child: &mut tokio::process::Child) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while committed(db).await.len() < n {
        let ended = child.try_wait().unwrap();
        if ended.is_some() || tokio::time::Instant::now() >= deadline {
            let _ = child.kill().await;
            let mut said = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut said).await;
            }
            panic!("the run never stored {n} contacts ({ended:?}):\n{said}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn table_dump(db: &std::path::Path) -> (Vec<Vec<Option<String>>>, Vec<Vec<Option<String>>>) {
    let contacts = rows(
        db,
        "SELECT chat_id, messenger, phone, name, contact_name, email, category, description, avatar_url,
                is_business, last_seen_at, is_archived, is_muted, is_disappearing, message_expiration,
                mute_expiration, raw_json FROM contacts ORDER BY chat_id",
    )
    .await;
    let products = rows(db, "SELECT * FROM products ORDER BY chat_id, product_id").await;
    (contacts, products)
}

async fn integrity_ok(db: &std::path::Path) {
    let check = rows(db, "PRAGMA integrity_check").await;
    assert_eq!(check[0][0].as_deref(), Some("ok"));
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_several_points_then_resume_matches_an_uninterrupted_run() {
    let reference = env_with(paced()).await;
    reference.write("in.csv", phones_csv(150).as_bytes());
    let run = reference.run(&PACED_ARGS[..PACED_ARGS.len() - 2]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);

    let env = env_with(paced()).await;
    env.write("in.csv", phones_csv(150).as_bytes());
    let db = env.path("out.db");
    let mut snapshots: Vec<(BTreeSet<String>, HashMap<String, u32>)> = Vec::new();
    // Killed during start-up or planning, then at several points of the fetch.
    for kill_at in [0, 20, 60, 100] {
        let mut child = env.spawn(&PACED_ARGS, "");
        if kill_at == 0 {
            tokio::time::sleep(Duration::from_millis(30)).await;
        } else {
            wait_for_contacts(&db, kill_at, &mut child).await;
        }
        child.kill().await.unwrap();
        let _ = child.wait().await;
        snapshots.push((committed(&db).await, env.sandbox.stats.answers_per_chat()));
    }
    let progress: Vec<usize> = snapshots.iter().map(|(c, _)| c.len()).collect();
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress is monotonic: {progress:?}"
    );
    assert!(
        *progress.last().unwrap() < 150,
        "the kills interrupted the job: {progress:?}"
    );

    let run = env.run(&PACED_ARGS).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    integrity_ok(&db).await;
    assert_eq!(
        table_dump(&db).await,
        table_dump(&reference.path("out.db")).await
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM failures").await, 0);
    // Nothing committed before a kill was fetched again afterwards.
    let answers = env.sandbox.stats.answers_per_chat();
    for (done, answered) in &snapshots {
        for key in done {
            assert_eq!(
                answers.get(key),
                answered.get(key),
                "{key} was fetched again after it was committed"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_cleanly_and_the_next_run_completes() {
    let env = env_with(paced()).await;
    env.write("in.csv", phones_csv(150).as_bytes());
    let mut child = env.spawn(&PACED_ARGS, "");
    wait_for_contacts(&env.path("out.db"), 20, &mut child).await;
    let pid = child.id().unwrap().to_string();
    let status = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let run = finish(child).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("stopped on request"), "{}", run.stderr);
    let db = env.path("out.db");
    let stored = count(&db, "SELECT COUNT(*) FROM contacts").await;
    assert!(
        run.stderr.contains(&format!("summary: {stored} enriched")),
        "{stored}: {}",
        run.stderr
    );
    assert!(stored > 0 && stored < 150, "{stored}");
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM runs WHERE outcome = 'partial'").await,
        1
    );

    let before = env.sandbox.stats.answers_per_chat();
    let run = env.run(&PACED_ARGS).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM contacts").await, 150);
    let after = env.sandbox.stats.answers_per_chat();
    assert_eq!(
        after.values().sum::<u32>() - before.values().sum::<u32>(),
        150 - stored as u32
    );
}

/// A run killed while it created the store (before the store was switched to WAL) leaves a hot
/// rollback journal. The next run must roll it back and go on; a read-only look at the tables
/// cannot, and every later run failed with "attempt to write a readonly database" (code 776).
#[tokio::test(flavor = "multi_thread")]
async fn a_store_whose_creation_was_killed_opens_in_the_next_run() {
    let env = env_with(fast()).await;
    env.write("in.csv", phones_csv(5).as_bytes());
    // A transaction left open, as a killed run leaves it: its files copied mid-way, once it has
    // written to the database file (a small cache spills), so the journal is hot.
    let making = env.path("making.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&making)
        .create_if_missing(true);
    let mut conn = sqlx::ConnectOptions::connect(&options).await.unwrap();
    for sql in [
        "CREATE TABLE seed (x)",
        "PRAGMA cache_size = 2",
        "BEGIN",
        "CREATE TABLE contacts (chat_id TEXT)",
        "INSERT INTO seed SELECT zeroblob(4000) FROM (WITH RECURSIVE n(i) AS
             (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50) SELECT i FROM n)",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    let db = env.path("out.db");
    std::fs::copy(&making, &db).unwrap();
    std::fs::copy(env.path("making.db-journal"), env.path("out.db-journal")).unwrap();
    drop(conn);

    let run = env.enrich("in.csv", "out.db", &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM contacts").await, 5);
    integrity_ok(&db).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_run_on_the_same_store_exits_with_code_5() {
    let env = env_with(paced()).await;
    env.write("in.csv", phones_csv(100).as_bytes());
    let mut first = env.spawn(&PACED_ARGS, "");
    wait_for_contacts(&env.path("out.db"), 1, &mut first).await;
    let second = env.run(&PACED_ARGS).await;
    assert_eq!(second.code, 5, "{}", second.stderr);
    assert!(
        second.stderr.contains("another greenrich run is using"),
        "{}",
        second.stderr
    );
    let first = finish(first).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(
        count(&env.path("out.db"), "SELECT COUNT(*) FROM contacts").await,
        100
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_stops_the_run_and_keeps_what_was_committed() {
    let env = env_with(paced()).await;
    env.write("in.csv", phones_csv(400).as_bytes());
    // A file size limit of 256 KiB (`sh` counts 512-byte blocks): the schema fits, and 400
    // contacts outgrow it after some commits.
    let run = finish(env.spawn(&PACED_ARGS, "ulimit -f 512;")).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("store cannot be written"),
        "{}",
        run.stderr
    );
    let db = env.path("out.db");
    integrity_ok(&db).await;
    let kept = committed(&db).await;
    assert!(!kept.is_empty() && kept.len() < 400, "{}", kept.len());
    let answered = env.sandbox.stats.answers_per_chat();
    let run = env.run(&PACED_ARGS).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM contacts").await, 400);
    let answers = env.sandbox.stats.answers_per_chat();
    assert!(
        kept.iter().all(|k| answers.get(k) == answered.get(k)),
        "committed keys were fetched again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_locked_by_another_program_stops_the_run() {
    let env = env_with(paced()).await;
    env.write("in.csv", phones_csv(150).as_bytes());
    let mut args = PACED_ARGS.to_vec();
    args.extend(["--lock-timeout", "200ms"]);
    let mut child = env.spawn(&args, "");
    let db = env.path("out.db");
    wait_for_contacts(&db, 20, &mut child).await;
    let mut other =
        sqlx::ConnectOptions::connect(&sqlx::sqlite::SqliteConnectOptions::new().filename(&db))
            .await
            .unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE; INSERT INTO greenrich_meta (key, value) VALUES ('held', 'by another program');")
        .execute(&mut other)
        .await
        .unwrap();
    let run = finish(child).await;
    sqlx::raw_sql("ROLLBACK").execute(&mut other).await.unwrap();
    drop(other);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("locked"), "{}", run.stderr);
    let kept = count(&db, "SELECT COUNT(*) FROM contacts").await;
    assert!(kept > 0 && kept < 150, "{kept}");
    let run = env.run(&PACED_ARGS).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM contacts").await, 150);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_ctrl_c_exits_at_once_and_safely() {
    // Half the keys never get an answer, so the first Ctrl-C has requests in flight to wait for.
    let env = env_with(sandbox::Config {
        fault: Some(greenrich::sandbox::Fault::Timeout),
        fault_rate: 0.5,
        ..paced()
    })
    .await;
    env.write("in.csv", phones_csv(150).as_bytes());
    let mut args = PACED_ARGS.to_vec();
    args.extend(["--timeout", "30s"]);
    let mut child = env.spawn(&args, "");
    let db = env.path("out.db");
    wait_for_contacts(&db, 10, &mut child).await;
    let pid = child.id().unwrap().to_string();
    let interrupt = || {
        tokio::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
    };
    assert!(interrupt().await.unwrap().success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = std::time::Instant::now();
    assert!(interrupt().await.unwrap().success());
    let run = finish(child).await;
    assert!(
        second.elapsed() < Duration::from_secs(10),
        "it did not wait for the 30 s timeouts"
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("quitting at once"), "{}", run.stderr);
    integrity_ok(&db).await;
    assert!(count(&db, "SELECT COUNT(*) FROM contacts").await >= 10);
}
