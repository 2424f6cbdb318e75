//! The job end to end: input formats, normalisation, fetching over a pool, storage and output.

use greenrich::sandbox::{self, Fault};
use greenrich::Messenger;

use greenrich::Rate;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn csv_variants_normalise_to_one_chat_id_fetched_once() {
    let env = env_with(fast()).await;
    // BOM, CRLF, quoted fields with commas and newlines, extra columns, many formats of one number.
    let csv = "\u{feff}id,Name,Phone Number,notes\r\n\
               1,\"Petrov, Ivan\",+7 (900) 123-45-67,\"multi\r\nline\"\r\n\
               2,Anna,79001234567,\r\n\
               3,Olga,\" 79001234567 \",x\r\n\
               4,Oleg,79001234567@c.us,\r\n\
               5,Dima,8 900 765-43-21,\r\n";
    env.write("in.csv", csv.as_bytes());
    let run = env
        .enrich("in.csv", "out.db", &["--default-country", "RU"])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("3 duplicates"), "{}", run.stderr);
    let db = env.path("out.db");
    let ids = rows(&db, "SELECT chat_id, phone FROM contacts ORDER BY chat_id").await;
    assert_eq!(
        ids,
        vec![
            vec![Some("79001234567@c.us".into()), Some("79001234567".into())],
            vec![Some("79007654321@c.us".into()), Some("79007654321".into())],
        ]
    );
    let answers = env.sandbox.stats.answers_per_chat();
    assert_eq!(answers.get("79001234567@c.us"), Some(&1));
    assert_eq!(answers.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn column_is_found_by_name_or_chosen() {
    let env = env_with(fast()).await;
    env.write("chat.csv", b"name,chatId\nA,79001112233@c.us\n");
    let run = env.enrich("chat.csv", "a.db", &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        count(&env.path("a.db"), "SELECT COUNT(*) FROM contacts").await,
        1
    );

    env.write("two.csv", b"home,mobile\n79001112234,79001112235\n");
    let run = env.enrich("two.csv", "b.db", &["--column", "mobile"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let ids = rows(&env.path("b.db"), "SELECT chat_id FROM contacts").await;
    assert_eq!(ids, vec![vec![Some("79001112235@c.us".into())]]);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_values_cost_no_call_and_are_recorded() {
    let env = env_with(fast()).await;
    env.write(
        "in.csv",
        "phone,name\n,Empty\nn/a,A\n12345,B\n120363043968066561@g.us,C\n1234567890123456789,D\n79001234567,E\n".as_bytes(),
    );
    let run = env.enrich("in.csv", "out.db", &[]).await;
    assert_eq!(
        run.code, 0,
        "invalid input alone does not fail the run: {}",
        run.stderr
    );
    assert_eq!(
        env.sandbox
            .stats
            .contact_requests
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let db = env.path("out.db");
    let failures = rows(
        &db,
        "SELECT key, reason, message, attempts FROM failures ORDER BY key",
    )
    .await;
    assert_eq!(failures.len(), 5, "{failures:?}");
    assert!(failures
        .iter()
        .all(|f| f[1].as_deref() == Some("invalid_id") && f[3].as_deref() == Some("0")));
    let group = failures
        .iter()
        .find(|f| f[0].as_deref() == Some("120363043968066561@g.us"))
        .unwrap();
    assert!(group[2].as_deref().unwrap().contains("group"));
}

#[tokio::test(flavor = "multi_thread")]
async fn max_messenger_uses_v3_and_numeric_ids() {
    let env = env_with(fast()).await;
    env.write("max.csv", b"chat_id\n10000001\n 0010000002\n-10000003\n");
    let run = env
        .enrich("max.csv", "max.db", &["--messenger", "max"])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let db = env.path("max.db");
    let contacts = rows(
        &db,
        "SELECT chat_id, messenger, phone FROM contacts ORDER BY chat_id",
    )
    .await;
    assert_eq!(contacts.len(), 2);
    assert_eq!(
        contacts[0],
        vec![Some("10000001".into()), Some("max".into()), None]
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM failures WHERE message LIKE '%group%'"
        )
        .await,
        1
    );
    // The sandbox serves MAX answers (no business fields) only under /v3.
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM contacts WHERE raw_json LIKE '%isBusiness%'"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_table_input_and_writing_back_into_the_crm() {
    let env = env_with(fast()).await;
    let crm = env.path("crm.db");
    execute(&crm, include_str!("../../samples/crm.sql")).await;
    let input = format!("sqlite:{}", crm.display());
    let run = env
        .enrich(
            &input,
            crm.to_str().unwrap(),
            &[
                "--table",
                "customers",
                "--column",
                "phone",
                "--default-country",
                "RU",
            ],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(count(&crm, "SELECT COUNT(*) FROM contacts").await, 30);
    assert_eq!(
        count(&crm, "SELECT COUNT(*) FROM customers").await,
        32,
        "the CRM table is untouched"
    );
    assert_eq!(
        count(&crm, "SELECT COUNT(*) FROM failures").await,
        2,
        "NULL phone and group id"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_table_of_the_same_name_is_never_touched() {
    let env = env_with(fast()).await;
    let crm = env.path("crm.db");
    execute(&crm, "CREATE TABLE contacts (id INTEGER PRIMARY KEY, phone TEXT); INSERT INTO contacts (phone) VALUES ('79001234567');").await;
    let before = std::fs::read(&crm).unwrap();
    let input = format!("sqlite:{}", crm.display());
    let run = env
        .enrich(&input, crm.to_str().unwrap(), &["--table", "contacts"])
        .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("did not create"), "{}", run.stderr);
    assert_eq!(
        std::fs::read(&crm).unwrap(),
        before,
        "the CRM database changed"
    );
    assert_eq!(
        env.sandbox
            .stats
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn table_and_column_names_are_never_spliced_into_sql() {
    let env = env_with(fast()).await;
    let crm = env.path("crm.db");
    execute(
        &crm,
        "CREATE TABLE customers (phone TEXT); CREATE TABLE x (y TEXT);",
    )
    .await;
    let input = format!("sqlite:{}", crm.display());
    for (table, column) in [
        ("customers; DROP TABLE x", "phone"),
        ("customers", "phone FROM x; --"),
    ] {
        let run = env
            .enrich(&input, "out.db", &["--table", table, "--column", column])
            .await;
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(
            run.stderr.contains("no table") || run.stderr.contains("no column"),
            "{}",
            run.stderr
        );
    }
    assert_eq!(
        count(&crm, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'x'").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn contacts_and_products_are_normalised_and_replaced_on_refetch() {
    let env = env_with(fast()).await;
    env.write("in.csv", phones_csv(60).as_bytes());
    let run = env.enrich("in.csv", "out.db", &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let db = env.path("out.db");
    let products = count(&db, "SELECT COUNT(*) FROM products").await;
    assert!(
        products > 0,
        "the sandbox has business contacts with products"
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM contacts WHERE name = ''").await,
        0,
        "empty strings become NULL"
    );
    assert!(count(&db, "SELECT COUNT(*) FROM contacts WHERE name IS NULL").await > 0);
    assert!(count(&db, "SELECT COUNT(*) FROM products WHERE price IS NULL").await > 0);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM contacts WHERE last_seen_at IS NOT NULL AND last_seen_at NOT LIKE '20__-__-__T__:__:__Z'").await,
        0
    );
    // A second full run (no --max-age) fetches everything again and replaces the products.
    let run = env.enrich("in.csv", "out.db", &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM products").await, products);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM contacts").await, 60);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM runs WHERE outcome = 'completed'").await,
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_spread_over_the_pool_without_429s() {
    let env = env_with(sandbox::Config {
        rate: Rate::PerSecond(20.0),
        latency_min: std::time::Duration::from_millis(20),
        latency_max: std::time::Duration::from_millis(60),
        ..sandbox::Config::default()
    })
    .await;
    env.write("in.csv", phones_csv(80).as_bytes());
    let run = env
        .enrich(
            "in.csv",
            "out.db",
            &["--rps-per-instance", "20", "--pacing-margin", "0.3"],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Unpaced, nearly every call would be refused; a rare 429 is a stall of this busy machine.
    let refused = env
        .sandbox
        .stats
        .http_429
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(refused <= 2, "{refused} calls answered 429");
    let summary = rows(&env.path("out.db"), "SELECT summary FROM runs").await;
    let summary: serde_json::Value =
        serde_json::from_str(summary[0][0].as_deref().unwrap()).unwrap();
    let calls = summary["calls_per_instance"].as_object().unwrap();
    assert_eq!(calls.len(), 4);
    for (_, n) in calls {
        assert!(n.as_u64().unwrap() >= 10, "{calls:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_errors_are_retried_until_enriched() {
    let env = env_with(sandbox::Config {
        fault: Some(Fault::ServerError),
        fault_rate: 0.5,
        fault_attempts: 2,
        ..fast()
    })
    .await;
    env.write("in.csv", phones_csv(30).as_bytes());
    let run = env.enrich("in.csv", "out.db", &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        count(&env.path("out.db"), "SELECT COUNT(*) FROM contacts").await,
        30
    );
    assert!(count(&env.path("out.db"), "SELECT retries FROM runs").await > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_that_run_out_become_failure_rows_and_exit_2() {
    let env = env_with(sandbox::Config {
        fault: Some(Fault::ServerError),
        fault_rate: 0.3,
        ..fast()
    })
    .await;
    env.write("in.csv", phones_csv(30).as_bytes());
    let run = env
        .enrich("in.csv", "out.db", &["--max-attempts", "3"])
        .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    let db = env.path("out.db");
    let failed = count(
        &db,
        "SELECT COUNT(*) FROM failures WHERE reason = 'server_error' AND attempts = 3",
    )
    .await;
    assert!(failed > 0);
    assert_eq!(
        failed + count(&db, "SELECT COUNT(*) FROM contacts").await,
        30
    );
    assert!(run.stderr.contains("server_error"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_output_neutralises_formulas_unless_raw() {
    let env = env_with(fast()).await;
    env.write("in.csv", phones_csv(200).as_bytes());
    let run = env.enrich("in.csv", "out", &["--format", "csv"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let contacts = std::fs::read_to_string(env.path("out/contacts.csv")).unwrap();
    assert!(
        contacts.starts_with("chat_id,messenger,phone,name,contact_name"),
        "{contacts}"
    );
    assert!(env.path("out/products.csv").exists() && env.path("out/failures.csv").exists());
    let mut reader = csv::Reader::from_reader(contacts.as_bytes());
    let names: Vec<String> = reader
        .records()
        .map(|r| r.unwrap()[3].to_string())
        .collect();
    assert_eq!(names.len(), 200);
    assert!(
        names.iter().any(|n| n.starts_with("'=HYPERLINK")),
        "formula names are neutralised"
    );
    assert!(!names
        .iter()
        .any(|n| n.starts_with('=') || n.starts_with('@') || n.starts_with('+')));
    assert!(
        names.iter().any(|n| n.contains('\n')),
        "newlines survive quoting"
    );

    let run = env
        .enrich("in.csv", "raw", &["--format", "csv", "--csv-raw"])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let raw = std::fs::read_to_string(env.path("raw/contacts.csv")).unwrap();
    assert!(
        raw.contains("\"=HYPERLINK"),
        "raw output keeps the cell as is"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_status_lines_when_not_on_a_terminal() {
    let env = env_with(sandbox::Config {
        rate: Rate::Unlimited,
        latency_min: std::time::Duration::from_millis(20),
        latency_max: std::time::Duration::from_millis(60),
        ..sandbox::Config::default()
    })
    .await;
    env.write("in.csv", phones_csv(40).as_bytes());
    let run = env
        .enrich(
            "in.csv",
            "out.db",
            &[
                "--rps-per-instance",
                "20",
                "--pacing-margin",
                "0.3",
                "--status-interval",
                "100ms",
            ],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("progress ") && run.stderr.contains("/40 keys"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("summary: 40 enriched (40 new, 0 changed, 0 unchanged), 0 failed"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("40 requests, 0 429s"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_runs_with_no_account() {
    // The binary: the README's first command, as a user runs it.
    let env = process_env_with(fast()).await;
    let run = env.run(&["demo", "--output", "demo.db"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("chat_id"), "{}", run.stdout);
    assert!(run.stderr.contains("summary:"), "{}", run.stderr);
    assert!(count(&env.path("demo.db"), "SELECT COUNT(*) FROM contacts").await > 50);
}

#[test]
fn messenger_names() {
    assert_eq!(
        "whatsapp".parse::<Messenger>().unwrap(),
        Messenger::Whatsapp
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_starts_pacing_from_the_spacing_the_last_one_learnt_at_its_rate() {
    let env = env_with(sandbox::Config {
        instances: sandbox::default_instances(2),
        rate: Rate::PerSecond(50.0),
        ..sandbox::Config::default()
    })
    .await;
    env.write("in.csv", phones_csv(30).as_bytes());
    let run = |rps: &'static str| {
        let env = &env;
        async move {
            let run = env
                .enrich(
                    "in.csv",
                    "out.db",
                    &["--rps-per-instance", rps, "--max-age", "0s"],
                )
                .await;
            assert_eq!(run.code, 0, "{}", run.stderr);
            run.stderr
        }
    };
    assert!(!run("50").await.contains("pacing starts from"));
    let second = run("50").await;
    assert!(
        second.contains("pacing starts from the spacing run #1 ended with"),
        "{second}"
    );
    // Learnt at another rate, a spacing says nothing about this one.
    assert!(!run("25").await.contains("pacing starts from"));
}
