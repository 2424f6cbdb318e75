//! Telegram instances: phone numbers and usernames are resolved once with checkAccount (the
//! mapping is kept in the store), the ids are asked with getContactInfo, and a 466 on
//! checkAccount lets the known ids go on. The same on a SQLite and a PostgreSQL store.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;

use crate::helpers::*;
use crate::servers::{At, Engine, ServerDb};

/// 120 phone numbers, 30 usernames, 20 Telegram ids, a phone number written twice and a group.
fn telegram_csv() -> String {
    let mut csv = String::from("id,telegram\n");
    for i in 0..120 {
        csv.push_str(&format!("p{i},+7 901 000 {i:04}\n"));
    }
    for i in 0..30 {
        csv.push_str(&format!("u{i},@Client_{i:03}\n"));
    }
    for i in 0..20 {
        csv.push_str(&format!("i{i},{}\n", 700_000_001 + i));
    }
    csv.push_str("again,+7 (901) 000-00-07\ngroup,-1001234567\n");
    csv
}

/// The handles `telegram_csv` holds, as the store keys them.
fn handles() -> BTreeSet<String> {
    let phones = (0..120).map(|i| format!("+7901000{i:04}"));
    let names = (0..30).map(|i| format!("@client_{i:03}"));
    phones.chain(names).collect()
}

fn enrich_telegram<'a>(store: &'a [&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = enrich_args("in.csv", store[0], &store[1..]);
    args.extend_from_slice(&[
        "--messenger",
        "telegram",
        "--telegram-ids",
        "--id-column",
        "id",
    ]);
    args.extend_from_slice(extra);
    args
}

async fn resolved_once_then_asked_by_id(at: At<'_>) {
    let env = env_with(fast()).await;
    env.write("in.csv", telegram_csv().as_bytes());
    let url = env.sandbox.telegram_url();
    let flags = at.store_flags();
    let store: Vec<&str> = flags.iter().map(String::as_str).collect();
    let first = env
        .run_with_env(&enrich_telegram(&store, &[]), &[("GREEN_API_URL", &url)])
        .await;
    // Some numbers have no Telegram account: failures of their handles (exit 2).
    assert_eq!(first.code, 2, "{}", first.stderr);
    let checked = env.sandbox.stats.checks_per_handle();
    assert_eq!(
        checked.keys().cloned().collect::<BTreeSet<_>>(),
        handles(),
        "every phone number and username is checked"
    );
    assert!(checked.values().all(|n| *n == 1), "each once: {checked:?}");

    // Every row lands on its own contact through its handle, or says why not.
    let rows = at
        .rows(
            &env,
            "SELECT row_ref, chat_id, status, error FROM enriched ORDER BY position",
        )
        .await;
    assert_eq!(rows.len(), 172);
    let known = at.rows(&env, "SELECT handle, chat_id FROM handles").await;
    let no_account = handles().len() - known.len();
    assert!(
        no_account > 10 && no_account < 60,
        "{no_account} without an account"
    );
    let by_status = |status: &str| {
        rows.iter()
            .filter(|r| r[2].as_deref() == Some(status))
            .count()
    };
    assert_eq!(by_status("invalid"), 1, "the group");
    assert_eq!(by_status("enriched") + by_status("failed"), 171, "{rows:?}");
    let failed_keys: BTreeSet<_> = rows
        .iter()
        .filter(|r| r[2].as_deref() == Some("failed"))
        .map(|r| r[1].clone())
        .collect();
    assert_eq!(failed_keys.len(), no_account);
    for row in &rows {
        match row[2].as_deref() {
            Some("enriched") => assert!(row[1]
                .as_deref()
                .unwrap()
                .bytes()
                .all(|b| b.is_ascii_digit())),
            Some("failed") => assert!(row[3].as_deref().unwrap().contains("no Telegram account")),
            _ => {}
        }
    }
    let again: Vec<_> = rows
        .iter()
        .filter(|r| r[0].as_deref() == Some("again"))
        .collect();
    let seven: Vec<_> = rows
        .iter()
        .filter(|r| r[0].as_deref() == Some("p7"))
        .collect();
    assert_eq!(
        again[0][1], seven[0][1],
        "one number written twice is one contact"
    );

    // A second run with everything stale asks every id again and checks nothing.
    let checks_before = env.sandbox.stats.check_requests.load(Relaxed);
    let contacts_before = env.sandbox.stats.contact_requests.load(Relaxed);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let second = env
        .run_with_env(
            &enrich_telegram(&store, &["--max-age", "1s"]),
            &[("GREEN_API_URL", &url)],
        )
        .await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(
        env.sandbox.stats.check_requests.load(Relaxed),
        checks_before
    );
    let asked = env.sandbox.stats.contact_requests.load(Relaxed) - contacts_before;
    assert_eq!(asked as usize, known.len() + 20, "{}", second.stderr);
}

#[tokio::test]
async fn phone_numbers_and_usernames_are_resolved_once() {
    resolved_once_then_asked_by_id(At::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs GREENRICH_TEST_POSTGRES_URL"]
async fn a_postgres_store_resolves_them_once_too() {
    let db = ServerDb::create(Engine::Postgres, "telegram").await;
    resolved_once_then_asked_by_id(At::Postgres(&db)).await;
}

#[tokio::test]
async fn a_466_on_check_account_leaves_the_run_going_for_known_ids() {
    let env = env_with(greenrich::sandbox::Config {
        check_quota: Some(5),
        ..fast()
    })
    .await;
    env.write("in.csv", telegram_csv().as_bytes());
    let url = env.sandbox.telegram_url();
    let run = env
        .run_with_env(
            &enrich_telegram(&["out.db"], &[]),
            &[("GREEN_API_URL", &url)],
        )
        .await;
    // A partial run: the numbers not checked wait for the next one.
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("checkAccount quota is used up"),
        "{}",
        run.stderr
    );
    let answered = env.sandbox.stats.answers_per_chat();
    for i in 0..20 {
        assert!(
            answered.contains_key(&format!("{}", 700_000_001 + i)),
            "id {i}"
        );
    }
    let db = env.path("out.db");
    let pending = count(
        &db,
        "SELECT COUNT(*) FROM enriched WHERE status = 'pending'",
    )
    .await;
    let resolved = count(&db, "SELECT COUNT(*) FROM handles").await;
    assert!(pending > 100, "{pending} pending");
    assert!(resolved <= 4 * 5, "{resolved} resolved within the quota");
    // Each phone number with an account is asked for its contact once it is resolved.
    let enriched = count(&db, "SELECT COUNT(*) FROM contacts").await;
    assert_eq!(enriched, 20 + resolved);
}
