//! The shared PostgreSQL store under real CRM data and faults: workers racing on one input, a
//! worker killed with SIGKILL, every store session cut with `pg_terminate_backend`, and tables
//! full of what CRM tables hold. Against the sandbox with a strict per-instance limit.
//!
//! Bounded: the whole module runs in well under a minute.

use std::time::{Duration, Instant};

use sqlx::{Connection, Executor};

use crate::helpers::*;
use crate::servers::{Engine, ServerDb};

/// 3 instances, each refusing (429) any call sooner than 1/30 s after its last accepted one,
/// 10–40 ms of latency and up to 1 ms of arrival jitter.
fn strict() -> greenrich::sandbox::Config {
    greenrich::sandbox::Config {
        instances: greenrich::sandbox::default_instances(3),
        rate: greenrich::Rate::PerSecond(30.0),
        latency_min: Duration::from_millis(10),
        latency_max: Duration::from_millis(40),
        arrival_jitter: Duration::from_millis(1),
        ..greenrich::sandbox::Config::default()
    }
}

/// `n` distinct phones, each in `copies` rows, in a random order (a fixed seed), as CRM exports
/// are.
fn shuffled_phones_csv(n: usize, copies: usize) -> String {
    let mut rows: Vec<usize> = (0..n * copies).map(|i| i % n).collect();
    fastrand::Rng::with_seed(16).shuffle(&mut rows);
    let mut csv = String::from("phone,name\n");
    for i in rows {
        csv.push_str(&format!(
            "+7 900 {:03} {:04},Person {i}\n",
            100 + i / 9000,
            1000 + i % 9000
        ));
    }
    csv
}

/// `enrich` flags for a worker of the store at `url` (schema `schema`), at the sandbox's pace.
fn worker_args<'a>(url: &'a str, schema: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = enrich_args("in.csv", url, &["--schema", schema]);
    args.extend_from_slice(&["--rps-per-instance", "30", "--claim-lease", "2s"]);
    args.extend_from_slice(extra);
    args
}

/// The sandbox's credentials for instance `i` alone.
fn instance(env: &TestEnv, i: usize) -> String {
    env.instances.split(',').nth(i).unwrap().to_string()
}

/// One SQL answer as text.
async fn one(url: &str, sql: &str) -> String {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let value: String = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    value
}

/// The `enriched` view holds each of the `rows` input rows exactly once, every one enriched.
async fn assert_view_complete(url: &str, schema: &str, rows: usize) {
    let got = one(
        url,
        &format!(
            "SELECT COUNT(*) || ' ' || COUNT(DISTINCT row_ref) || ' ' \
             || COUNT(*) FILTER (WHERE status = 'enriched') FROM {schema}.enriched"
        ),
    )
    .await;
    assert_eq!(
        got,
        format!("{rows} {rows} {rows}"),
        "rows, distinct rows, enriched"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs GREENRICH_TEST_POSTGRES_URL"]
async fn three_workers_started_together_answer_each_key_once_per_round() {
    let db = ServerDb::create(Engine::Postgres, "rounds").await;
    const KEYS: usize = 240;
    // Each key in 10 rows: staging overlaps between workers as it does on a big CRM table.
    const ROWS: usize = KEYS * 10;
    let env = process_env_with(strict()).await;
    env.write("in.csv", shuffled_phones_csv(KEYS, 10).as_bytes());
    for round in 1..=3u32 {
        let extra: &[&str] = if round == 1 {
            &[]
        } else {
            &["--max-age", "0s"]
        };
        let workers: Vec<tokio::process::Child> = (0..3)
            .map(|i| {
                let credentials = instance(&env, i);
                env.spawn_with_env(
                    &worker_args(&db.url, &db.name, extra),
                    "",
                    &[("GREEN_API_INSTANCES", credentials.as_str())],
                )
            })
            .collect();
        for worker in workers {
            let run = finish(worker).await;
            assert_eq!(run.code, 0, "round {round}: {}", run.stderr);
        }
        let answers = env.sandbox.stats.answers_per_chat();
        assert_eq!(answers.len(), KEYS, "round {round}");
        let off: Vec<_> = answers.iter().filter(|(_, n)| **n != round).collect();
        assert!(
            off.is_empty(),
            "round {round}: answered other than once this round: {off:?}"
        );
        assert_view_complete(&db.url, &db.name, ROWS).await;
    }
}

/// A database of its own on the test server, so that its sessions can be cut without touching
/// other tests'; dropped (with its sessions) on drop.
struct OwnDatabase {
    admin: String,
    url: String,
    name: String,
}

impl OwnDatabase {
    async fn create(test: &str) -> OwnDatabase {
        let server = ServerDb::create(Engine::Postgres, test).await;
        let name = format!(
            "greenrich_fault_{}_{}",
            std::process::id(),
            fastrand::u32(..)
        );
        let mut conn = sqlx::PgConnection::connect(&server.url).await.unwrap();
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        conn.close().await.unwrap();
        let mut url = reqwest::Url::parse(&server.url).unwrap();
        url.set_path(&name);
        OwnDatabase {
            admin: server.url.clone(),
            url: url.to_string(),
            name,
        }
    }

    /// Ends every session of this database but the caller's: what a server restart does.
    async fn cut_every_session(&self) -> i64 {
        let mut conn = sqlx::PgConnection::connect(&self.admin).await.unwrap();
        let cut: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()) t",
        )
        .bind(&self.name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
        cut
    }

    async fn contacts(&self) -> i64 {
        let Ok(mut conn) = sqlx::PgConnection::connect(&self.url).await else {
            return 0;
        };
        let n = sqlx::query_scalar("SELECT COUNT(*) FROM greenrich.contacts")
            .fetch_one(&mut conn)
            .await
            .unwrap_or(0);
        let _ = conn.close().await;
        n
    }
}

impl Drop for OwnDatabase {
    fn drop(&mut self) {
        let (admin, drop) = (
            self.admin.clone(),
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = conn.execute(drop.as_str()).await;
                }
            });
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs GREENRICH_TEST_POSTGRES_URL"]
async fn workers_killed_and_cut_off_lose_nothing_and_never_share_an_instance() {
    let db = OwnDatabase::create("kill_and_cut").await;
    // Enough keys that the pacer's finding of the edge (one 429 or two per instance for the first
    // worker, which starts without a spacing learnt before) stays well under 1% of the calls.
    const KEYS: usize = 1500;
    let env = process_env_with(strict()).await;
    env.write("in.csv", shuffled_phones_csv(KEYS, 1).as_bytes());
    let args = worker_args(&db.url, "greenrich", &[]);
    // Three workers that may all use the same three instances.
    let mut workers: Vec<tokio::process::Child> = (0..3).map(|_| env.spawn(&args, "")).collect();
    let started = Instant::now();
    let db = &db;
    let wait_for = |n: i64| async move {
        while db.contacts().await < n {
            assert!(
                started.elapsed() < Duration::from_secs(40),
                "no progress to {n}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    wait_for(300).await;
    // The worker that holds instances and calls with them.
    let calling: i64 = sqlx::query_scalar(
        "SELECT pid FROM greenrich.workers WHERE finished_at IS NULL AND instances <> '' ORDER BY id LIMIT 1",
    )
    .fetch_one(&mut sqlx::PgConnection::connect(&db.url).await.unwrap())
    .await
    .unwrap();
    let victim = workers
        .iter_mut()
        .find(|w| w.id().map(i64::from) == Some(calling))
        .expect("the calling worker is one of ours");
    victim.kill().await.unwrap();
    let _ = victim.wait().await;
    wait_for(750).await;
    assert!(
        db.cut_every_session().await >= 2,
        "the live workers' sessions were cut"
    );
    // Whatever exits is started again until every key is done.
    let mut workers: Vec<Option<tokio::process::Child>> = workers.into_iter().map(Some).collect();
    let (mut codes, mut logs) = (Vec::new(), Vec::new());
    while workers.iter().any(Option::is_some) {
        assert!(
            started.elapsed() < Duration::from_secs(50),
            "not done: {codes:?}"
        );
        let done = db.contacts().await == KEYS as i64;
        for slot in workers.iter_mut() {
            let Some(worker) = slot else { continue };
            if let Some(status) = worker.try_wait().unwrap() {
                codes.push(status.code());
                logs.push(worker.wait_with_output_ref().await);
                *slot = (!done).then(|| env.spawn(&args, ""));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for log in &logs {
        assert!(!log.contains("panicked"), "{log}");
    }
    let summaries: Vec<&str> = logs
        .iter()
        .flat_map(|log| {
            log.lines()
                .filter(|l| l.contains("summary:") || l.contains("stopped"))
        })
        .collect();
    assert!(
        codes.contains(&Some(6)),
        "a worker whose store connection was cut exits 6: {codes:?}"
    );
    assert_view_complete(&db.url, "greenrich", KEYS).await;
    let answers = env.sandbox.stats.answers_per_chat();
    assert_eq!(answers.len(), KEYS);
    let again: u32 = answers.values().map(|n| n - 1).sum();
    // Only what was in flight (sent, or answered and not committed) at the kill is asked again:
    // at 3 × 30 calls a second with answers within 40 ms about 4 calls are out at a time, and
    // the writer commits what has arrived every few milliseconds; 12 leaves room for a commit.
    assert!(again <= 12, "{again} keys answered twice");
    let stats = &env.sandbox.stats;
    let (refused, calls) = (
        stats.http_429.load(std::sync::atomic::Ordering::Relaxed),
        stats
            .contact_requests
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    let per_worker: Vec<&str> = summaries
        .iter()
        .filter_map(|l| l.split(", ").find(|part| part.ends_with(" 429s")))
        .collect();
    eprintln!(
        "kill and cut: {refused} of {calls} calls refused with 429 (by the workers that exited: {per_worker:?}), {again} keys answered twice, exit codes {codes:?}, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        refused * 100 < calls,
        "{refused} of {calls} calls refused with 429:\n{}",
        summaries.join("\n")
    );
}

/// Waits for a child that is known to have exited, and returns its stderr.
trait Finished {
    async fn wait_with_output_ref(&mut self) -> String;
}

impl Finished for tokio::process::Child {
    async fn wait_with_output_ref(&mut self) -> String {
        let _ = self.wait().await;
        let mut text = String::new();
        if let Some(mut stderr) = self.stderr.take() {
            use tokio::io::AsyncReadExt;
            let _ = stderr.read_to_string(&mut text).await;
        }
        text
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs GREENRICH_TEST_POSTGRES_URL"]
async fn a_crm_table_of_junk_enriches_into_a_postgres_store_once_per_row() {
    let db = ServerDb::create(Engine::Postgres, "junk").await;
    let s = &db.name;
    let long = "7".repeat(5000);
    let long_text = "телефон ".repeat(700);
    // Repeated junk, blanks, NULLs, one number in three notations, Cyrillic, very long values.
    let phones = [
        "'n/a'",
        "'n/a'",
        "''",
        "''",
        "NULL",
        "NULL",
        "'нет'",
        "'нет'",
        "'   '",
        "'+7 (900) 123-45-67'",
        "'8 900 123 45 67'",
        "'79001234567'",
        "'79001234567@c.us'",
        &format!("'{long}'"),
        &format!("'{long}'"),
        &format!("'{long_text}'"),
        "'Иван Петров'",
        "'+7 900 765-43-21'",
        "'0'",
        "'-'",
        "'-'",
    ];
    let values: Vec<String> = phones.iter().map(|p| format!("({p})")).collect();
    db.execute(&format!(
        "CREATE TABLE {s}.customers (id serial PRIMARY KEY, phone text);
         INSERT INTO {s}.customers (phone) VALUES {};
         CREATE TABLE {s}.leads (id bigint PRIMARY KEY, phone numeric);
         INSERT INTO {s}.leads VALUES (1, 79001234567), (2, NULL), (3, 0), (4, -5),
           (5, 79007654321), (6, 79007654321), (7, 79001234567.0);",
        values.join(", ")
    ))
    .await;
    let env = env_with(fast()).await;
    for (table, rows) in [("customers", phones.len()), ("leads", 7)] {
        let qualified = format!("{s}.{table}");
        let run = env
            .enrich(
                &db.url,
                &db.url,
                &[
                    "--table",
                    &qualified,
                    "--schema",
                    s,
                    "--default-country",
                    "RU",
                    "--allow-mostly-invalid",
                ],
            )
            .await;
        assert!([0, 2].contains(&run.code), "{table}: {}", run.stderr);
        let got = db
            .rows(&format!(
                "SELECT COUNT(*)::text, COUNT(DISTINCT row_ref)::text FROM {s}.enriched WHERE source = '{qualified}'"
            ))
            .await;
        assert_eq!(
            got,
            vec![vec![Some(rows.to_string()), Some(rows.to_string())]],
            "{table}"
        );
        if table == "customers" {
            // The one number in four notations is one contact, fetched once.
            let answers = env.sandbox.stats.answers_per_chat();
            assert_eq!(answers.get("79001234567@c.us"), Some(&1), "{answers:?}");
        }
    }
    assert_eq!(
        db.rows(&format!(
            "SELECT COUNT(*)::text FROM {s}.enriched WHERE chat_id = '79001234567@c.us' AND status = 'enriched'"
        ))
        .await,
        vec![vec![Some("6".into())]],
        "four rows of customers and two of leads"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs GREENRICH_TEST_POSTGRES_URL"]
async fn repeated_and_empty_row_ids_keep_one_row_each_on_postgres() {
    let db = ServerDb::create(Engine::Postgres, "dup_ids").await;
    let env = env_with(fast()).await;
    env.write(
        "in.csv",
        "id,phone\n1,+79001234567\n1,+79001234568\n,+79001234569\n,n/a\n2,n/a\n 2 ,n/a\n"
            .as_bytes(),
    );
    let run = env
        .enrich(
            "in.csv",
            &db.url,
            &["--schema", &db.name, "--id-column", "id"],
        )
        .await;
    assert!([0, 2].contains(&run.code), "{}", run.stderr);
    assert!(
        run.stderr.contains("repeat"),
        "the repeated ids are named: {}",
        run.stderr
    );
    let got = db
        .rows(&format!(
            "SELECT row_ref, input_value FROM {}.enriched ORDER BY position",
            db.name
        ))
        .await;
    let values: Vec<Option<String>> = got.iter().map(|r| r[1].clone()).collect();
    assert_eq!(
        values,
        [
            "+79001234567",
            "+79001234568",
            "+79001234569",
            "n/a",
            "n/a",
            "n/a"
        ]
        .map(|v| Some(v.to_string()))
        .to_vec(),
        "every row once, in input order: {got:?}"
    );
    assert_eq!(
        got[0][0].as_deref(),
        Some("1"),
        "the first row keeps its id: {got:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs GREENRICH_TEST_POSTGRES_URL"]
async fn a_password_given_as_a_url_parameter_is_never_shown_or_stored() {
    let db = ServerDb::create(Engine::Postgres, "password_param").await;
    let env = env_with(fast()).await;
    env.write("in.csv", phones_csv(3).as_bytes());
    let secret = "Param-Secret-4711";
    let mut url = reqwest::Url::parse(&db.url).unwrap();
    url.query_pairs_mut().append_pair("password", secret);
    let url = url.to_string();
    let s = &db.name;
    db.execute(&format!(
        "CREATE TABLE {s}.customers (id int PRIMARY KEY, phone text);
         INSERT INTO {s}.customers VALUES (1, '+79001234567')"
    ))
    .await;
    let table = format!("{s}.customers");
    for (input, extra) in [
        ("in.csv", vec![]),
        (url.as_str(), vec!["--table", table.as_str()]),
    ] {
        let mut args = vec!["--schema", s.as_str()];
        args.extend(extra);
        let run = env.enrich(input, &url, &args).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(!run.stderr.contains(secret), "{}", run.stderr);
        assert!(run.stderr.contains("password=***"), "{}", run.stderr);
    }
    let status = env.run(&["status", "--db", &url, "--schema", s]).await;
    assert!(
        !status.stdout.contains(secret) && !status.stderr.contains(secret),
        "{}",
        status.stdout
    );
    let stored = db
        .rows(&format!(
            "SELECT COUNT(*)::text FROM {s}.runs WHERE options LIKE '%{secret}%' OR summary LIKE '%{secret}%'"
        ))
        .await;
    assert_eq!(
        stored,
        vec![vec![Some("0".into())]],
        "no secret in the ledger"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs GREENRICH_TEST_POSTGRES_URL"]
async fn a_result_is_written_only_while_its_worker_holds_the_claim() {
    let db = ServerDb::create(Engine::Postgres, "fence").await;
    const KEYS: usize = 12;
    // Slow answers: the claims can pass to another worker while the calls are out.
    let env = env_with(greenrich::sandbox::Config {
        rate: greenrich::Rate::Unlimited,
        latency_min: Duration::from_millis(700),
        latency_max: Duration::from_millis(700),
        ..greenrich::sandbox::Config::default()
    })
    .await;
    env.write("in.csv", phones_csv(KEYS).as_bytes());
    let s = &db.name;
    let worker = env.start_with_env(&worker_args(&db.url, s, &["--rps-per-instance", "0"]), &[]);
    // Once every key is claimed and called, another worker (id -1 here) takes the claims over.
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let started = Instant::now();
    let taken = loop {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the keys were never claimed"
        );
        let taken = sqlx::query(&format!(
            "UPDATE {s}.work_queue SET claimed_by = -1, claimed_until = now() + interval '1 second'
             WHERE done_at IS NULL AND claimed_by IS NOT NULL"
        ))
        .execute(&mut conn)
        .await
        .map(|r| r.rows_affected())
        .unwrap_or(0);
        if taken > 0 {
            break taken;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The stolen claims run out a second from now: no answer to a call sent before then may be
    // written by this worker.
    let claims_end: String = sqlx::query_scalar(
        "SELECT to_char((now() + interval '1 second') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let run = worker.finish().await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("answers were not written: their keys are no longer this worker's"),
        "{}",
        run.stderr
    );
    let count = |sql: String| {
        let url = db.url.clone();
        async move { one(&url, &sql).await.parse::<i64>().unwrap() }
    };
    // Every answer that came back while the claims were another worker's was left out: a key
    // taken over is written only from a call made after it came back (this worker may have
    // claimed it again, or the next one does).
    let early =
        format!("SELECT COUNT(*)::text FROM {s}.contacts WHERE fetched_at <= '{claims_end}'");
    assert_eq!(count(early.clone()).await, KEYS as i64 - taken as i64);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let run = env
        .start_with_env(&worker_args(&db.url, s, &["--rps-per-instance", "0"]), &[])
        .finish()
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(count(early).await, KEYS as i64 - taken as i64);
    assert_eq!(
        count(format!("SELECT COUNT(*)::text FROM {s}.contacts")).await,
        KEYS as i64
    );
    assert_view_complete(&db.url, s, KEYS).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs GREENRICH_TEST_POSTGRES_URL and GREENRICH_TEST_MYSQL_URL"]
async fn a_mysql_crm_table_of_junk_enriches_into_a_postgres_store_once_per_row() {
    let store = ServerDb::create(Engine::Postgres, "mysql_junk_store").await;
    let crm = ServerDb::create(Engine::Mysql, "mysql_junk").await;
    let m = &crm.name;
    let long = "7".repeat(3000);
    crm.execute(&format!(
        "CREATE TABLE {m}.wp_customers (customer_id INT UNSIGNED PRIMARY KEY, phone TEXT) CHARACTER SET utf8mb4;
         INSERT INTO {m}.wp_customers VALUES (1, 'n/a'), (2, 'n/a'), (3, ''), (4, ''), (5, NULL),
           (6, NULL), (7, 'нет'), (8, 'нет'), (9, '+7 (900) 123-45-67'), (10, '8 900 123 45 67'),
           (11, '79001234567'), (12, '79001234567.0'), (13, '{long}'), (14, '{long}'),
           (15, 'Иван Петров'), (16, '+7 900 765-43-21')"
    ))
    .await;
    let env = env_with(fast()).await;
    let table = format!("{m}.wp_customers");
    let run = env
        .enrich(
            &crm.url,
            &store.url,
            &[
                "--table",
                &table,
                "--schema",
                &store.name,
                "--default-country",
                "RU",
                "--allow-mostly-invalid",
            ],
        )
        .await;
    assert!([0, 2].contains(&run.code), "{}", run.stderr);
    let s = &store.name;
    assert_eq!(
        store
            .rows(&format!(
                "SELECT COUNT(*)::text, COUNT(DISTINCT row_ref)::text,
                        (COUNT(*) FILTER (WHERE status = 'enriched'))::text FROM {s}.enriched"
            ))
            .await,
        vec![vec![Some("16".into()), Some("16".into()), Some("5".into())]],
        "every row once; the four notations of one number and the other number enriched: {:?}\n{}",
        store
            .rows(&format!(
                "SELECT row_ref, status, error FROM {s}.enriched ORDER BY position"
            ))
            .await,
        run.stderr
    );
}
