//! Erasure, the do-not-process list and retention: `forget` removes one person of a thousand from
//! every table (and from a SQLite file's bytes), `--suppress` keeps them out of later runs with
//! no call, `purge` removes what no input has mentioned for a while. The same on a SQLite and a
//! PostgreSQL store.

use std::collections::BTreeMap;

use greenrich::sandbox;

use crate::helpers::*;
use crate::servers::{At, Engine, ServerDb};

const CONTACTS: usize = 1000;
/// The person who asks to be forgotten: row 500 of `phones_csv`.
const PERSON: usize = 500;
const PERSON_PHONE: &str = "+7 900 100 1500";
const PERSON_DIGITS: &str = "9001001500";

/// Every stored row that names the person, by table (none once forgotten).
const ROWS_OF_PERSON: &str =
    "SELECT 'contacts', chat_id FROM contacts WHERE chat_id = '79001001500@c.us'
     UNION ALL SELECT 'products', chat_id FROM products WHERE chat_id = '79001001500@c.us'
     UNION ALL SELECT 'changes', chat_id FROM changes WHERE chat_id = '79001001500@c.us'
     UNION ALL SELECT 'failures', key FROM failures WHERE key = '79001001500@c.us'
     UNION ALL SELECT 'input_rows', chat_id FROM input_rows WHERE chat_id = '79001001500@c.us'
     UNION ALL SELECT 'input_rows', input_value FROM input_rows WHERE input_value LIKE '%1500'";

/// Everyone else's contacts, as stored.
const OTHERS: &str = "SELECT chat_id, name, raw_json, fetched_at FROM contacts
     WHERE chat_id <> '79001001500@c.us' ORDER BY chat_id";

/// The test's store flags, then `extra`.
fn with_store(at: &At<'_>, command: &[&str], extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = command.iter().map(|a| a.to_string()).collect();
    let store = at.store_flags();
    args.push(
        if command[0] == "enrich" {
            "--output"
        } else {
            "--db"
        }
        .into(),
    );
    args.extend(store);
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

async fn run(env: &TestEnv, args: Vec<String>) -> Run {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = env.run(&args).await;
    assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
    run
}

/// `enrich` of in.csv into the test's store, every contact due.
async fn enrich_all(env: &TestEnv, at: &At<'_>) -> Run {
    let fast = [
        "--input",
        "in.csv",
        "--backoff-base",
        "10ms",
        "--rps-per-instance",
        "0",
        "--max-age",
        "0s",
    ];
    run(env, with_store(at, &["enrich"], &fast)).await
}

/// What the store holds about the person, for their access request.
async fn person_json(env: &TestEnv, at: &At<'_>) -> serde_json::Value {
    let args = with_store(
        at,
        &["export"],
        &["--chat-id", PERSON_PHONE, "--format", "json"],
    );
    serde_json::from_str(&run(env, args).await.stdout).unwrap()
}

/// Enriches a thousand people (the person's contact renamed twice, so older copies of their row
/// were written), forgets and suppresses the person, and checks: no row names them, the others
/// are as they were, and a rerun skips them with no call.
async fn forget_one_of_a_thousand(at: At<'_>) {
    let env = env_with(fast()).await;
    env.write("in.csv", phones_csv(CONTACTS).as_bytes());
    let person = phone_chat_id(PERSON);
    enrich_all(&env, &at).await;
    for _ in 0..2 {
        env.sandbox.world.edit(&person);
        enrich_all(&env, &at).await;
    }
    let stored: Vec<Option<String>> = at
        .rows(&env, ROWS_OF_PERSON)
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    for table in ["contacts", "changes", "input_rows"] {
        assert!(
            stored.contains(&Some(table.into())),
            "stored first: {stored:?}"
        );
    }
    let others = at.rows(&env, OTHERS).await;
    assert_eq!(others.len(), CONTACTS - 1);

    // What the store holds about them, for their access request.
    // What the store holds about them, for their access request.
    let held = person_json(&env, &at).await;
    assert_eq!(held["contacts"][0]["chat_id"], person.as_str(), "{held}");
    assert_eq!(held["contacts"][0]["raw_json"]["chatId"], person.as_str());
    assert!(held["contacts"][0]["name"]
        .as_str()
        .unwrap()
        .ends_with("(edition 2)"));
    assert_eq!(held["changes"].as_array().unwrap().len(), 2);
    assert_eq!(held["input_rows"][0]["row_ref"], "501");
    assert_eq!(held["do_not_process"], false);

    let said = run(
        &env,
        with_store(&at, &["forget"], &["--phone", PERSON_PHONE, "--suppress"]),
    )
    .await;
    let held = person_json(&env, &at).await;
    assert_eq!(held["contacts"], serde_json::json!([]), "{held}");
    assert_eq!(held["input_rows"], serde_json::json!([]));
    assert_eq!(held["do_not_process"], true);
    assert!(
        said.stdout.contains("forgot 1 person: removed 1 contacts")
            && said.stdout.contains("2 changes")
            && said.stdout.contains("1 row links")
            && said
                .stdout
                .contains("1 keys added to the do-not-process list"),
        "{}",
        said.stdout
    );
    assert_eq!(at.rows(&env, ROWS_OF_PERSON).await, Vec::<Vec<_>>::new());
    assert_eq!(at.rows(&env, OTHERS).await, others, "the others are intact");

    // A rerun of the same input: no call for the person, the row marked, nothing of them kept.
    let answers = |env: &TestEnv| env.sandbox.stats.answers_per_chat();
    let before: BTreeMap<String, u32> = answers(&env).into_iter().collect();
    let rerun = enrich_all(&env, &at).await;
    let after: BTreeMap<String, u32> = answers(&env).into_iter().collect();
    assert_eq!(after.get(&person), before.get(&person), "no call for them");
    assert!(
        rerun.stderr.contains("1 suppressed") && rerun.stderr.contains("999 enriched"),
        "{}",
        rerun.stderr
    );
    assert_eq!(at.rows(&env, ROWS_OF_PERSON).await, Vec::<Vec<_>>::new());
    let row = at
        .rows(
            &env,
            "SELECT status, input_value, chat_id FROM enriched WHERE row_ref = '501'",
        )
        .await;
    assert_eq!(row, vec![vec![Some("suppressed".into()), None, None]]);
    let export = with_store(
        &at,
        &["export"],
        &["--input", "in.csv", "--output", "exported"],
    );
    run(&env, export).await;
    let enriched = std::fs::read_to_string(env.path("exported/enriched.csv")).unwrap();
    let person_row = enriched
        .lines()
        .find(|l| l.contains("Person 500,"))
        .unwrap();
    assert!(person_row.contains(",suppressed,"), "{person_row}");
    run(
        &env,
        with_store(&at, &["report"], &["--output", "report.html"]),
    )
    .await;
    let page = std::fs::read_to_string(env.path("report.html")).unwrap();
    assert!(
        page.contains("<dd data-figure=\"suppressed\">1</dd>"),
        "the report counts them"
    );

    // Taken off the list, they are enriched again.
    run(
        &env,
        with_store(&at, &["forget"], &["--phone", PERSON_PHONE, "--unsuppress"]),
    )
    .await;
    let again = enrich_all(&env, &at).await;
    assert!(again.stderr.contains("1000 enriched"), "{}", again.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn forgetting_one_of_a_thousand_leaves_no_trace_and_a_rerun_skips_them() {
    forget_one_of_a_thousand(At::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs GREENRICH_TEST_POSTGRES_URL"]
async fn a_postgres_store_forgets_and_suppresses_the_same() {
    let db = ServerDb::create(Engine::Postgres, "forget").await;
    forget_one_of_a_thousand(At::Postgres(&db)).await;
}

/// The person's digits and every name they had, searched in every file of the SQLite store.
#[tokio::test(flavor = "multi_thread")]
async fn a_forgotten_person_is_nowhere_in_the_sqlite_files() {
    let env = env_with(fast()).await;
    env.write("in.csv", phones_csv(CONTACTS).as_bytes());
    let person = phone_chat_id(PERSON);
    enrich_all(&env, &At::Sqlite).await;
    // Renamed twice ("… (edition 1)", "… (edition 2)": no one else is renamed), so that older
    // versions of their row were written to the file and its WAL.
    for _ in 0..2 {
        env.sandbox.world.edit(&person);
        enrich_all(&env, &At::Sqlite).await;
    }
    std::fs::remove_file(env.path("in.csv")).unwrap();
    let found = |needle: &str| -> Vec<String> {
        all_bytes(env.dir.path())
            .into_iter()
            .filter(|(_, bytes)| contains(bytes, needle))
            .map(|(path, _)| path.display().to_string())
            .collect()
    };
    assert!(!found(PERSON_DIGITS).is_empty() && !found("(edition").is_empty());

    run(
        &env,
        with_store(&At::Sqlite, &["forget"], &["--chat-id", &person]),
    )
    .await;
    assert_eq!(found(PERSON_DIGITS), Vec::<String>::new(), "their number");
    assert_eq!(found("(edition"), Vec::<String>::new(), "their names");
    assert_eq!(
        count(&env.path("out.db"), "SELECT COUNT(*) FROM contacts").await,
        999
    );
}

/// Two lists enriched on 1 January; on 2 December only list A is read again (fresh, so no call).
/// Retention then erases list B's people and links, and keeps A's.
async fn retention_keeps_only_what_an_input_still_mentions(at: At<'_>, by_enrich: bool) {
    let env = env_with(fast()).await;
    let phones = phones_csv(20);
    let (header, rows) = phones.split_once('\n').unwrap();
    let rows: Vec<&str> = rows.lines().collect();
    env.write(
        "a.csv",
        format!("{header}\n{}\n", rows[..10].join("\n")).as_bytes(),
    );
    env.write(
        "b.csv",
        format!("{header}\n{}\n", rows[10..].join("\n")).as_bytes(),
    );
    let enrich = |input: &str, extra: &[&str]| {
        let mut args = vec![
            "--input",
            input,
            "--rps-per-instance",
            "0",
            "--max-age",
            "400d",
        ];
        args.extend_from_slice(extra);
        with_store(&at, &["enrich"], &args)
    };
    for input in ["a.csv", "b.csv"] {
        run(&env, enrich(input, &["--now", "2026-01-01T00:00:00Z"])).await;
    }
    let purge = ["--purge-after", "180d"];
    let last = run(&env, enrich("a.csv", if by_enrich { &purge } else { &[] })).await;
    assert!(last.stderr.contains("0 requests"), "{}", last.stderr);
    if by_enrich {
        assert!(
            last.stderr.contains("purged 10 contacts"),
            "{}",
            last.stderr
        );
    } else {
        let said = run(&env, with_store(&at, &["purge"], &["--older-than", "180d"])).await;
        assert!(said.stdout.contains("10 contacts"), "{}", said.stdout);
        assert!(said.stdout.contains("10 row links"), "{}", said.stdout);
    }
    let kept = at
        .rows(&env, "SELECT chat_id FROM contacts ORDER BY chat_id")
        .await;
    let expected: Vec<Vec<Option<String>>> =
        (0..10).map(|i| vec![Some(phone_chat_id(i))]).collect();
    assert_eq!(kept, expected);
    let links = at
        .rows(&env, "SELECT DISTINCT source FROM input_rows")
        .await;
    assert_eq!(links, vec![vec![Some("a.csv".to_string())]]);
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_erases_what_no_input_has_mentioned_for_that_long() {
    retention_keeps_only_what_an_input_still_mentions(At::Sqlite, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn enrich_purge_after_erases_the_same_at_the_end_of_the_run() {
    retention_keeps_only_what_an_input_still_mentions(At::Sqlite, true).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs GREENRICH_TEST_POSTGRES_URL"]
async fn a_postgres_store_keeps_the_same_retention() {
    let db = ServerDb::create(Engine::Postgres, "retention").await;
    retention_keeps_only_what_an_input_still_mentions(At::Postgres(&db), true).await;
    let db = ServerDb::create(Engine::Postgres, "retention").await;
    retention_keeps_only_what_an_input_still_mentions(At::Postgres(&db), false).await;
}

/// `forget --suppress` while a worker of a shared store is calling: of ten people around the
/// worker's frontier (some fetched, some claimed or in flight, some still queued), nothing is
/// left once the run ends, and a rerun calls none of them.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs GREENRICH_TEST_POSTGRES_URL"]
async fn forgetting_people_while_a_worker_calls_them_leaves_nothing_of_them() {
    let db = ServerDb::create(Engine::Postgres, "forget_race").await;
    let at = At::Postgres(&db);
    let env = env_with(sandbox::Config {
        rate: greenrich::Rate::PerSecond(25.0),
        ..sandbox::Config::default()
    })
    .await;
    env.write("in.csv", phones_csv(300).as_bytes());
    let people: Vec<String> = (40..140).step_by(10).map(phone_chat_id).collect();
    let args = with_store(
        &at,
        &["enrich"],
        &[
            "--input",
            "in.csv",
            "--rps-per-instance",
            "25",
            "--max-age",
            "0s",
        ],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let worker = env.start_with_env(&args, &[]);
    // Until the worker's frontier is among them.
    let has_contacts = format!(
        "SELECT tablename FROM pg_tables WHERE schemaname = '{}' AND tablename = 'contacts'",
        db.name
    );
    while at.rows(&env, &has_contacts).await.is_empty() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    loop {
        let stored = at
            .rows(&env, "SELECT CAST(COUNT(*) AS TEXT) FROM contacts")
            .await;
        if stored[0][0].as_deref().unwrap().parse::<u32>().unwrap() >= 75 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut forget = vec!["--suppress"];
    for person in &people {
        forget.extend(["--chat-id", person]);
    }
    run(&env, with_store(&at, &["forget"], &forget)).await;
    let ran = worker.finish().await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);

    let named = |table: &str, column: &str| {
        let list: Vec<String> = people.iter().map(|p| format!("'{p}'")).collect();
        format!(
            "SELECT {column} FROM {table} WHERE {column} IN ({})",
            list.join(",")
        )
    };
    for (table, column) in [
        ("contacts", "chat_id"),
        ("products", "chat_id"),
        ("changes", "chat_id"),
        ("failures", "key"),
        ("input_rows", "chat_id"),
        ("work_queue", "key"),
    ] {
        let left = at.rows(&env, &named(table, column)).await;
        assert_eq!(left, Vec::<Vec<_>>::new(), "{table}");
    }
    let before = env.sandbox.stats.answers_per_chat();
    let rerun = env.run(&args).await;
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert!(rerun.stderr.contains("10 suppressed"), "{}", rerun.stderr);
    let after = env.sandbox.stats.answers_per_chat();
    for person in &people {
        assert_eq!(
            after.get(person),
            before.get(person),
            "{person} called again"
        );
    }
}

/// While a run holds a SQLite store, `forget` changes nothing and exits 5, as a second run does.
#[tokio::test(flavor = "multi_thread")]
async fn forget_waits_for_no_run_and_changes_nothing_while_one_holds_the_store() {
    let env = env_with(fast()).await;
    env.write("in.csv", phones_csv(3).as_bytes());
    enrich_all(&env, &At::Sqlite).await;
    let lock = std::fs::File::open(env.path("out.db.lock")).unwrap();
    lock.try_lock().unwrap();
    let args = ["forget", "--db", "out.db", "--chat-id", &phone_chat_id(1)];
    let refused = env.run(&args).await;
    assert_eq!(refused.code, 5, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("another greenrich run"),
        "{}",
        refused.stderr
    );
    drop(lock);
    assert_eq!(
        count(&env.path("out.db"), "SELECT COUNT(*) FROM contacts").await,
        3
    );
    let done = env.run(&args).await;
    assert_eq!(done.code, 0, "{}", done.stderr);
    assert_eq!(
        count(&env.path("out.db"), "SELECT COUNT(*) FROM contacts").await,
        2
    );
}

/// `enrich` of in.csv (a Telegram input with an `id` column) into out.db.
async fn enrich_telegram(env: &TestEnv) -> Run {
    let url = env.sandbox.telegram_url();
    let args = enrich_args(
        "in.csv",
        "out.db",
        &["--messenger", "telegram", "--id-column", "id"],
    );
    env.run_with_env(&args, &[("GREEN_API_URL", &url)]).await
}

/// Telegram: a person named by their phone number is erased with the user id it resolved to,
/// and the next run neither resolves nor asks them again.
#[tokio::test(flavor = "multi_thread")]
async fn a_telegram_person_named_by_phone_goes_with_their_id_and_stays_out() {
    let env = env_with(fast()).await;
    env.write(
        "in.csv",
        "id,telegram\na,+7 901 000 0001\nb,+7 901 000 0002\n".as_bytes(),
    );
    enrich_telegram(&env).await;
    let db = env.path("out.db");
    let stored = rows(
        &db,
        "SELECT handle, chat_id FROM handles WHERE handle = '+79010000001'",
    )
    .await;
    let Some(user_id) = stored.first().and_then(|r| r[1].clone()) else {
        // The sandbox gives some numbers no account; this one has one.
        panic!("+79010000001 was not resolved: {stored:?}");
    };
    assert_eq!(
        count(
            &db,
            &format!("SELECT COUNT(*) FROM contacts WHERE chat_id = '{user_id}'")
        )
        .await,
        1
    );

    let args = [
        "forget",
        "--db",
        "out.db",
        "--messenger",
        "telegram",
        "--phone",
        "+7 901 000 0001",
        "--suppress",
    ];
    let said = env.run(&args).await;
    assert_eq!(said.code, 0, "{}", said.stderr);
    assert!(
        said.stdout.contains("removed 1 contacts") && said.stdout.contains("1 Telegram handles"),
        "{}",
        said.stdout
    );
    for sql in [
        format!("SELECT COUNT(*) FROM contacts WHERE chat_id = '{user_id}'"),
        "SELECT COUNT(*) FROM handles WHERE handle = '+79010000001'".to_string(),
        "SELECT COUNT(*) FROM input_rows WHERE chat_id = '+79010000001'".to_string(),
    ] {
        assert_eq!(count(&db, &sql).await, 0, "{sql}");
    }

    let checks = env.sandbox.stats.checks_per_handle();
    let answers = env.sandbox.stats.answers_per_chat();
    let again = enrich_telegram(&env).await;
    assert!(again.stderr.contains("1 suppressed"), "{}", again.stderr);
    assert_eq!(
        env.sandbox.stats.checks_per_handle().get("+79010000001"),
        checks.get("+79010000001")
    );
    assert_eq!(
        env.sandbox.stats.answers_per_chat().get(&user_id),
        answers.get(&user_id)
    );
}
