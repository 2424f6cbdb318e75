//! Inputs that live in database servers: a CRM table in PostgreSQL or MySQL/MariaDB.
//!
//! The servers' URLs come from `GREENRICH_TEST_POSTGRES_URL` and `GREENRICH_TEST_MYSQL_URL`
//! (`.ci/run` sets them to the local servers). The tests are `#[ignore]`d with the variable they
//! need, so a plain `cargo test` lists them as ignored; `cargo test -- --ignored` runs them, and
//! a missing or unreachable server then fails them.
//! Each test makes its own schema (PostgreSQL) or database (MySQL) and drops it, even when it
//! fails.

use sqlx::{Connection, Executor};

use crate::helpers::*;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    Mysql,
}

impl Engine {
    fn variable(self) -> &'static str {
        match self {
            Engine::Postgres => "GREENRICH_TEST_POSTGRES_URL",
            Engine::Mysql => "GREENRICH_TEST_MYSQL_URL",
        }
    }
}

/// A schema (PostgreSQL) or database (MySQL) of its own on a test server, dropped on drop.
pub struct ServerDb {
    engine: Engine,
    pub url: String,
    /// The schema's name, to qualify tables with.
    pub name: String,
}

/// Runs `statements` (separated by `;`) on `url`.
async fn execute_on(engine: Engine, url: &str, statements: &str) -> Result<(), sqlx::Error> {
    match engine {
        Engine::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            conn.execute(statements).await?;
            conn.close().await
        }
        Engine::Mysql => {
            let mut conn = sqlx::MySqlConnection::connect(url).await?;
            for statement in statements.split(';').filter(|s| !s.trim().is_empty()) {
                conn.execute(statement).await?;
            }
            conn.close().await
        }
    }
}

impl ServerDb {
    /// A fresh schema on the server named by the engine's variable. These tests are ignored
    /// unless asked for (`cargo test -- --ignored`), and then the server must be there.
    pub async fn create(engine: Engine, test: &str) -> ServerDb {
        let url = std::env::var(engine.variable())
            .ok()
            .filter(|url| !url.is_empty())
            .unwrap_or_else(|| {
                panic!(
                    "{test}: set {} to a server this test may create a schema in (.ci/run uses the local one)",
                    engine.variable()
                )
            });
        let name = format!(
            "greenrich_test_{}_{}",
            std::process::id(),
            fastrand::u32(..)
        );
        let create = match engine {
            Engine::Postgres => format!("CREATE SCHEMA {name}"),
            Engine::Mysql => format!("CREATE DATABASE {name}"),
        };
        if let Err(e) = execute_on(engine, &url, &create).await {
            panic!("{test}: {}: {e}", engine.variable());
        }
        ServerDb { engine, url, name }
    }

    pub async fn execute(&self, statements: &str) {
        execute_on(self.engine, &self.url, statements)
            .await
            .unwrap();
    }

    /// `SELECT` results as text (NULL as `None`).
    pub async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        use sqlx::Row;
        match self.engine {
            Engine::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
                let rows = sqlx::query(sql).fetch_all(&mut conn).await.unwrap();
                rows.iter()
                    .map(|r| (0..r.len()).map(|i| r.get(i)).collect())
                    .collect()
            }
            Engine::Mysql => {
                let mut conn = sqlx::MySqlConnection::connect(&self.url).await.unwrap();
                let rows = sqlx::query(sql).fetch_all(&mut conn).await.unwrap();
                rows.iter()
                    .map(|r| (0..r.len()).map(|i| r.get(i)).collect())
                    .collect()
            }
        }
    }
}

impl Drop for ServerDb {
    fn drop(&mut self) {
        let (engine, url) = (self.engine, self.url.clone());
        let drop = match engine {
            Engine::Postgres => format!("DROP SCHEMA {} CASCADE", self.name),
            Engine::Mysql => format!("DROP DATABASE {}", self.name),
        };
        // A runtime of its own: this may run while a test's runtime unwinds.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            if let Err(e) = runtime.block_on(execute_on(engine, &url, &drop)) {
                eprintln!("could not drop the test schema: {e}");
            }
        })
        .join();
    }
}

/// Messy phones as CRMs hold them, with the chat id each should become (`None`: invalid).
const MESSY: [(&str, Option<&str>); 6] = [
    ("+7 (900) 123-45-67", Some("79001234567@c.us")),
    ("8 900 765-43-21", Some("79007654321@c.us")),
    (" 79001112233 ", Some("79001112233@c.us")),
    ("n/a", None),
    ("", None),
    ("79001234567", Some("79001234567@c.us")),
];

/// Rows of `MESSY` with ids `ids` as SQL values.
fn messy_values(ids: &[&str]) -> String {
    ids.iter()
        .zip(MESSY)
        .map(|(id, (phone, _))| format!("({id}, '{phone}')"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Enriches `table` of `db` into a SQLite store (the run completes) and returns the store's `enriched` rows
/// (row_ref, chat_id, status) in row_ref order.
async fn enrich_table(
    env: &TestEnv,
    db: &ServerDb,
    table: &str,
    extra: &[&str],
) -> Vec<Vec<Option<String>>> {
    let table = format!("{}.{table}", db.name);
    let mut args = vec!["--table", table.as_str(), "--default-country", "RU"];
    args.extend_from_slice(extra);
    let run = env.enrich(&db.url, "out.db", &args).await;
    // 2: completed, with contacts the sandbox does not know.
    assert!([0, 2].contains(&run.code), "{}", run.stderr);
    rows(
        &env.path("out.db"),
        "SELECT row_ref, chat_id, status FROM enriched ORDER BY position",
    )
    .await
}

/// What `enrich_table` should return for `MESSY` under `ids` (in id order).
fn expected(ids: &[&str]) -> Vec<Vec<Option<String>>> {
    ids.iter()
        .zip(MESSY)
        .map(|(id, (_, chat))| {
            vec![
                Some(id.trim_matches('\'').to_string()),
                chat.map(str::to_string),
                Some(
                    if chat.is_some() {
                        "enriched"
                    } else {
                        "invalid"
                    }
                    .to_string(),
                ),
            ]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs GREENRICH_TEST_POSTGRES_URL"]
async fn a_postgres_crm_table_is_read_with_its_own_ids() {
    let db = ServerDb::create(Engine::Postgres, "postgres_table").await;
    let s = &db.name;
    let ids = ["101", "7", "3000000000", "55", "8", "9"];
    db.execute(&format!(
        "CREATE TABLE {s}.customers (id bigint PRIMARY KEY, name text, \"Телефон\" text);
         INSERT INTO {s}.customers (id, \"Телефон\") VALUES {};
         CREATE TABLE {s}.leads (code uuid PRIMARY KEY, mobile text);
         INSERT INTO {s}.leads VALUES
           ('00000000-0000-0000-0000-000000000002', '+79001234567'),
           ('00000000-0000-0000-0000-000000000001', NULL);",
        messy_values(&ids)
    ))
    .await;
    let env = env_with(fast()).await;
    let mut sorted = ids;
    sorted.sort_by_key(|id| id.parse::<i64>().unwrap());
    let by_id: Vec<&str> = sorted.to_vec();
    let got = enrich_table(&env, &db, "customers", &[]).await;
    // Rows come in id order (numeric, not text order), each with its own chat id or status.
    let want: Vec<Vec<Option<String>>> = by_id
        .iter()
        .map(|id| expected(&ids)[ids.iter().position(|i| i == id).unwrap()].clone())
        .collect();
    assert_eq!(got, want);
    // A uuid key and a NULL phone.
    let leads = enrich_table(&env, &db, "leads", &[]).await;
    assert_eq!(leads.len(), 2 + want.len(), "{leads:?}");
    assert!(leads.contains(&vec![
        Some("00000000-0000-0000-0000-000000000002".into()),
        Some("79001234567@c.us".into()),
        Some("enriched".into())
    ]));
    assert!(leads.contains(&vec![
        Some("00000000-0000-0000-0000-000000000001".into()),
        None,
        Some("invalid".into())
    ]));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs GREENRICH_TEST_MYSQL_URL"]
async fn a_mysql_crm_table_is_read_with_its_own_ids() {
    let db = ServerDb::create(Engine::Mysql, "mysql_table").await;
    let s = &db.name;
    let ids = ["'C-10'", "'A-2'", "'B-1'", "'Ж-1'", "'A-10'", "'C-9'"];
    db.execute(&format!(
        "CREATE TABLE {s}.customers (code VARCHAR(20) PRIMARY KEY, phone VARCHAR(40)) CHARACTER SET utf8mb4;
         INSERT INTO {s}.customers (code, phone) VALUES {};
         CREATE TABLE {s}.orders (id INT UNSIGNED PRIMARY KEY, buyer_phone BIGINT);
         INSERT INTO {s}.orders VALUES (4000000000, 79001234567), (2, NULL), (10, 79007654321);",
        messy_values(&ids)
    ))
    .await;
    let env = env_with(fast()).await;
    let got = enrich_table(&env, &db, "customers", &[]).await;
    // In the table's own id order (its collation's).
    let order = db
        .rows(&format!("SELECT code FROM {s}.customers ORDER BY code"))
        .await;
    let want: Vec<Vec<Option<String>>> = order
        .iter()
        .map(|row| {
            let id = row[0].clone().unwrap();
            let i = ids.iter().position(|x| x.trim_matches('\'') == id).unwrap();
            expected(&ids)[i].clone()
        })
        .collect();
    assert_eq!(got, want);
    // Numeric phones and an unsigned id past i32.
    let orders = enrich_table(&env, &db, "orders", &[]).await;
    let order_rows: Vec<_> = orders
        .iter()
        .filter(|r| ["2", "10", "4000000000"].contains(&r[0].as_deref().unwrap()))
        .cloned()
        .collect();
    assert_eq!(
        order_rows,
        vec![
            vec![Some("2".into()), None, Some("invalid".into())],
            vec![
                Some("10".into()),
                Some("79007654321@c.us".into()),
                Some("enriched".into())
            ],
            vec![
                Some("4000000000".into()),
                Some("79001234567@c.us".into()),
                Some("enriched".into())
            ],
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs GREENRICH_TEST_POSTGRES_URL and GREENRICH_TEST_MYSQL_URL"]
async fn a_table_larger_than_a_page_is_read_whole() {
    for engine in [Engine::Postgres, Engine::Mysql] {
        let db = ServerDb::create(engine, "pages").await;
        let s = &db.name;
        // 4,500 rows: two full pages of 2,000 and a part, ids not in insertion order.
        let values: Vec<String> = (0..4500)
            .map(|i| {
                format!(
                    "({}, '+7 900 {:03} {:04}')",
                    (i * 7919) % 4500,
                    i / 10000,
                    i
                )
            })
            .collect();
        db.execute(&format!(
            "CREATE TABLE {s}.people (id INT PRIMARY KEY, phone VARCHAR(40));
             INSERT INTO {s}.people VALUES {};",
            values.join(", ")
        ))
        .await;
        let env = env_with(fast()).await;
        let got = enrich_table(&env, &db, "people", &[]).await;
        assert_eq!(got.len(), 4500);
        let ids: Vec<i64> = got
            .iter()
            .map(|r| r[0].as_deref().unwrap().parse().unwrap())
            .collect();
        assert_eq!(
            ids,
            (0..4500).collect::<Vec<_>>(),
            "every row once, in id order"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs GREENRICH_TEST_POSTGRES_URL and GREENRICH_TEST_MYSQL_URL"]
async fn a_missing_table_or_column_lists_what_exists_and_hides_the_password() {
    for engine in [Engine::Postgres, Engine::Mysql] {
        let db = ServerDb::create(engine, "bad_table").await;
        let s = &db.name;
        db.execute(&format!(
            "CREATE TABLE {s}.clients (id INT PRIMARY KEY, tel VARCHAR(20), owner INT);
             CREATE TABLE {s}.deals (id INT PRIMARY KEY)"
        ))
        .await;
        let env = env_with(fast()).await;
        let run = env
            .enrich(&db.url, "out.db", &["--table", &format!("{s}.customers")])
            .await;
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(
            run.stderr.contains("no table 'customers'"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("clients, deals"), "{}", run.stderr);
        let table = format!("{s}.clients");
        for (extra, says) in [
            (vec!["--column", "phone"], "no column 'phone'"),
            (vec!["--id-column", "owner"], "'owner' is not unique"),
        ] {
            let mut args = vec!["--table", table.as_str()];
            args.extend(extra);
            let run = env.enrich(&db.url, "out.db", &args).await;
            assert_eq!(run.code, 1, "{}", run.stderr);
            assert!(run.stderr.contains(says), "{}", run.stderr);
            assert!(
                run.stderr.contains("'id', 'tel', 'owner'") || run.stderr.contains("(unique: id)"),
                "{}",
                run.stderr
            );
        }
        // A password in the URL never shows, whether the server takes it or refuses it.
        let password = "Sup3r-secret-pw";
        let mut with_password = reqwest::Url::parse(&db.url).unwrap();
        if with_password.username().is_empty() {
            with_password.set_username("root").unwrap();
        }
        with_password.set_password(Some(password)).unwrap();
        let with_password = with_password.to_string();
        let run = env
            .enrich(
                &with_password,
                "out.db",
                &["--table", &format!("{s}.customers")],
            )
            .await;
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(!run.stderr.contains(password), "{}", run.stderr);
        assert!(run.stderr.contains(":***@"), "{}", run.stderr);
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs GREENRICH_TEST_POSTGRES_URL"]
async fn a_postgres_store_keeps_results_across_runs_and_resumes() {
    use std::sync::atomic::Ordering::Relaxed;
    let db = ServerDb::create(Engine::Postgres, "postgres_store").await;
    let env = env_with(fast()).await;
    env.write("in.csv", phones_csv(30).as_bytes());
    let store = ["--schema", db.name.as_str()];
    let with = |extra: &[&'static str]| {
        let mut args = store.to_vec();
        args.extend_from_slice(extra);
        args
    };
    let run = env
        .enrich("in.csv", &db.url, &with(&["--max-calls", "10"]))
        .await;
    assert_eq!(
        run.code, 3,
        "a spent budget is a partial run: {}",
        run.stderr
    );
    let run = env.enrich("in.csv", &db.url, &store).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        env.sandbox.stats.contact_requests.load(Relaxed),
        30,
        "the second run resumed: no key was fetched twice"
    );
    let s = &db.name;
    assert_eq!(
        db.rows(&format!(
            "SELECT status, COUNT(*)::text FROM {s}.enriched GROUP BY status"
        ))
        .await,
        vec![vec![Some("enriched".into()), Some("30".into())]]
    );
    let run = env
        .enrich("in.csv", &db.url, &with(&["--max-age", "1d"]))
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        env.sandbox.stats.contact_requests.load(Relaxed),
        30,
        "all fresh"
    );
    let status = env.run(&["status", "--db", &db.url, "--schema", s]).await;
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        status.stdout.contains("contacts: 30 (30 fresh"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("#3"),
        "three runs in the ledger: {}",
        status.stdout
    );
    let failures = env.run(&["failures", "--db", &db.url, "--schema", s]).await;
    assert_eq!(failures.code, 0, "{}", failures.stderr);
    assert!(
        failures.stdout.contains("no failures"),
        "{}",
        failures.stdout
    );
    let dry = env
        .enrich("in.csv", &db.url, &with(&["--dry-run", "--max-age", "0s"]))
        .await;
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(
        dry.stderr
            .contains("30 due (0 never fetched, 0 retry, 30 stale)"),
        "{}",
        dry.stderr
    );
    assert_eq!(
        env.sandbox.stats.contact_requests.load(Relaxed),
        30,
        "a dry run calls nothing"
    );
    let export = env
        .run(&["export", "--db", &db.url, "--schema", s, "--output", "out"])
        .await;
    assert_eq!(export.code, 0, "{}", export.stderr);
    let contacts = std::fs::read_to_string(env.path("out/contacts.csv")).unwrap();
    assert_eq!(contacts.lines().count(), 31, "a header and 30 contacts");
}

/// A sandbox whose 4 instances allow 40 calls a second each: runs take long enough to overlap.
fn paced() -> greenrich::sandbox::Config {
    greenrich::sandbox::Config {
        rate: greenrich::Rate::PerSecond(40.0),
        ..greenrich::sandbox::Config::default()
    }
}

/// `enrich` flags for a worker of `db`'s store, at the sandbox's pace.
fn worker_args<'a>(db: &'a ServerDb, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = enrich_args("in.csv", &db.url, &["--schema", &db.name]);
    args.extend_from_slice(&["--rps-per-instance", "40"]);
    args.extend_from_slice(extra);
    args
}

/// The sandbox's credentials for the instances at `picks` (0-based).
fn credentials(env: &TestEnv, picks: &[usize]) -> String {
    let all: Vec<&str> = env.instances.split(',').collect();
    picks.iter().map(|&i| all[i]).collect::<Vec<_>>().join(",")
}

/// The number of contacts in `db`'s store (0 before the store exists).
async fn stored(db: &ServerDb) -> i64 {
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {}.contacts", db.name))
        .fetch_one(&mut conn)
        .await
        .unwrap_or(0)
}

/// Every key was answered exactly once.
fn each_once(env: &TestEnv, keys: usize) {
    let answers = env.sandbox.stats.answers_per_chat();
    assert_eq!(answers.len(), keys);
    let twice: Vec<_> = answers.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "fetched more than once: {twice:?}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs GREENRICH_TEST_POSTGRES_URL"]
async fn two_workers_with_their_own_instances_share_one_store() {
    let db = ServerDb::create(Engine::Postgres, "workers_disjoint").await;
    let env = env_with(paced()).await;
    env.write("in.csv", phones_csv(400).as_bytes());
    let (first, second) = (credentials(&env, &[0, 1]), credentials(&env, &[2, 3]));
    let a = env.start_with_env(&worker_args(&db, &[]), &[("GREEN_API_INSTANCES", &first)]);
    let b = env.start_with_env(&worker_args(&db, &[]), &[("GREEN_API_INSTANCES", &second)]);
    let (a, b) = (a.finish().await, b.finish().await);
    assert_eq!((a.code, b.code), (0, 0), "{}\n{}", a.stderr, b.stderr);
    assert_eq!(stored(&db).await, 400);
    each_once(&env, 400);
    let enriched = |stderr: &str| -> usize {
        let at = stderr.find("summary: ").expect("a summary") + "summary: ".len();
        stderr[at..].split(' ').next().unwrap().parse().unwrap()
    };
    let (by_a, by_b) = (enriched(&a.stderr), enriched(&b.stderr));
    assert!(by_a > 0 && by_b > 0, "both worked: {by_a} and {by_b}");
    assert_eq!(by_a + by_b, 400);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs GREENRICH_TEST_POSTGRES_URL"]
async fn two_workers_given_the_same_instances_never_share_one() {
    let db = ServerDb::create(Engine::Postgres, "workers_same").await;
    let env = env_with(paced()).await;
    env.write("in.csv", phones_csv(120).as_bytes());
    // Each worker paces 60% wider than the limit, so that a busy machine's stalls alone do not
    // bring 429s; two workers sharing an instance would still offer it 1.25 times its limit.
    let args = worker_args(&db, &["--pacing-margin", "0.6"]);
    let a = env.start_with_env(&args, &[]);
    let b = env.start_with_env(&args, &[]);
    let (a, b) = (a.finish().await, b.finish().await);
    assert_eq!((a.code, b.code), (0, 0), "{}\n{}", a.stderr, b.stderr);
    assert_eq!(stored(&db).await, 120);
    each_once(&env, 120);
    let refused = env
        .sandbox
        .stats
        .http_429
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        refused <= 4,
        "{refused} calls refused with 429:\n{}\n{}",
        a.stderr,
        b.stderr
    );
    assert!(
        [&a.stderr, &b.stderr]
            .iter()
            .any(|e| e.contains("in use by another greenrich worker")
                || e.contains("the others are in use by other workers")),
        "one of them found the instances leased:\n{}\n{}",
        a.stderr,
        b.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs GREENRICH_TEST_POSTGRES_URL"]
async fn a_worker_whose_instances_are_all_in_use_waits_or_exits_5() {
    let db = ServerDb::create(Engine::Postgres, "workers_busy").await;
    let env = env_with(fast()).await;
    env.write("in.csv", phones_csv(5).as_bytes());
    // Another worker, as far as the store can tell: a session holding every instance's lease.
    let mut other = sqlx::PgConnection::connect(&db.url).await.unwrap();
    for credential in env.instances.split(',') {
        let id = credential.split(':').next().unwrap();
        sqlx::query("SELECT pg_advisory_lock(hashtext('greenrich instance'), hashtext($1))")
            .bind(id)
            .execute(&mut other)
            .await
            .unwrap();
    }
    let store = ["--schema", db.name.as_str()];
    let mut no_wait = store.to_vec();
    no_wait.push("--no-wait");
    let run = env.enrich("in.csv", &db.url, &no_wait).await;
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.stderr.contains("in use by another greenrich worker"),
        "{}",
        run.stderr
    );
    // The run that stopped is closed in the ledger, not left looking like a crash.
    assert_eq!(
        db.rows(&format!(
            "SELECT outcome, (summary LIKE '%\"exit_code\":5%')::text FROM {}.runs",
            db.name
        ))
        .await,
        vec![vec![Some("failed".into()), Some("true".into())]]
    );
    let waiting = env.start_with_env(&enrich_args("in.csv", &db.url, &store), &[]);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    other.close().await.unwrap();
    let run = waiting.finish().await;
    assert_eq!(
        run.code, 0,
        "the leases ended with their session: {}",
        run.stderr
    );
    assert!(run.stderr.contains("waiting for one"), "{}", run.stderr);
    assert_eq!(stored(&db).await, 5);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs GREENRICH_TEST_POSTGRES_URL"]
async fn a_worker_killed_mid_run_loses_nothing_its_claims_come_back() {
    let db = ServerDb::create(Engine::Postgres, "workers_kill").await;
    let env = process_env_with(paced()).await;
    env.write("in.csv", phones_csv(200).as_bytes());
    let args = worker_args(&db, &["--claim-lease", "1s"]);
    let mut child = env.spawn(&args, "");
    let started = std::time::Instant::now();
    while stored(&db).await < 40 {
        assert!(
            started.elapsed().as_secs() < 30,
            "the worker made no progress"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let pid = child.id().unwrap();
    let status = env
        .run(&["status", "--db", &db.url, "--schema", &db.name])
        .await;
    assert!(
        status.stdout.contains("running: host ") && status.stdout.contains(&format!("pid {pid},")),
        "status shows the live worker: {}",
        status.stdout
    );
    child.kill().await.unwrap();
    let _ = child.wait().await;
    let before = stored(&db).await;
    assert!(before < 200, "killed mid-run: {before}");
    let run = env.run(&args).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(stored(&db).await, 200, "nothing lost");
    let answers = env.sandbox.stats.answers_per_chat();
    assert_eq!(answers.len(), 200);
    let again: u32 = answers.values().map(|n| n - 1).sum();
    // Only calls in flight when it was killed (answered, never committed) are made again.
    assert!(again <= 16, "{again} keys fetched twice");
    let status = env
        .run(&["status", "--db", &db.url, "--schema", &db.name])
        .await;
    assert!(
        !status.stdout.contains("running: host"),
        "no live worker is left: {}",
        status.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs GREENRICH_TEST_POSTGRES_URL"]
async fn a_postgres_schema_with_tables_of_our_names_is_left_alone() {
    let db = ServerDb::create(Engine::Postgres, "postgres_store_foreign").await;
    let s = &db.name;
    db.execute(&format!(
        "CREATE TABLE {s}.contacts (id INT PRIMARY KEY, phone TEXT);
         INSERT INTO {s}.contacts VALUES (1, '79001234567')"
    ))
    .await;
    let env = env_with(fast()).await;
    env.write("in.csv", phones_csv(3).as_bytes());
    let run = env.enrich("in.csv", &db.url, &["--schema", s]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("already has a table named contacts"),
        "{}",
        run.stderr
    );
    assert_eq!(
        db.rows(&format!(
            "SELECT COUNT(*)::text FROM information_schema.tables WHERE table_schema = '{s}'"
        ))
        .await,
        vec![vec![Some("1".into())]],
        "nothing was created beside the CRM's table"
    );
}

/// Where a test's store is: a SQLite file in the test's folder, or a PostgreSQL schema.
pub enum At<'a> {
    Sqlite,
    Postgres(&'a ServerDb),
}

impl At<'_> {
    pub fn store_flags(&self) -> Vec<String> {
        match self {
            At::Sqlite => vec!["out.db".into()],
            At::Postgres(db) => vec![db.url.clone(), "--schema".into(), db.name.clone()],
        }
    }

    /// The rows of `sql` (the store's tables unqualified), as text.
    pub async fn rows(&self, env: &TestEnv, sql: &str) -> Vec<Vec<Option<String>>> {
        match self {
            At::Sqlite => rows(&env.path("out.db"), sql).await,
            At::Postgres(db) => {
                let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
                sqlx::query(&format!("SET search_path TO {}", db.name))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                let found = sqlx::query(sql).fetch_all(&mut conn).await.unwrap();
                found
                    .iter()
                    .map(|r| {
                        use sqlx::Row;
                        (0..r.len())
                            .map(|i| r.get::<Option<String>, _>(i))
                            .collect()
                    })
                    .collect()
            }
        }
    }
}
