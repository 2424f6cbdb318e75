//! Cron-grade refresh: due keys, priority, budgets, dry runs, the ledger, status and logs.

use std::sync::atomic::Ordering::Relaxed;

use greenrich::sandbox;

use greenrich::Rate;

use crate::helpers::*;

fn requests(env: &TestEnv) -> u64 {
    env.sandbox.stats.contact_requests.load(Relaxed)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_budgeted_run_stops_at_exactly_the_budget_and_the_next_completes() {
    let env = env_with(fast()).await;
    env.write("in.csv", phones_csv(30).as_bytes());
    let run = env
        .enrich(
            "in.csv",
            "out.db",
            &["--max-calls", "12", "--max-age", "7d"],
        )
        .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("--max-calls budget is spent"),
        "{}",
        run.stderr
    );
    assert_eq!(requests(&env), 12);
    let db = env.path("out.db");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM contacts").await, 12);

    let run = env.enrich("in.csv", "out.db", &["--max-age", "7d"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("18 due (18 never fetched"),
        "{}",
        run.stderr
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM contacts").await, 30);
    assert!(
        env.sandbox
            .stats
            .answers_per_chat()
            .values()
            .all(|n| *n == 1),
        "nothing was fetched twice"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_run_with_everything_fresh_makes_no_call() {
    let env = env_with(fast()).await;
    env.write("in.csv", phones_csv(25).as_bytes());
    let run = env.enrich("in.csv", "out.db", &["--max-age", "7d"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let before = requests(&env);
    let run = env.enrich("in.csv", "out.db", &["--max-age", "7d"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(requests(&env), before, "no call");
    assert!(
        run.stderr.contains("0 due") && run.stderr.contains("25 skipped as fresh"),
        "{}",
        run.stderr
    );
    let last = rows(
        &env.path("out.db"),
        "SELECT skipped_fresh, requests, outcome FROM runs ORDER BY id DESC LIMIT 1",
    )
    .await;
    assert_eq!(
        last[0],
        vec![
            Some("25".into()),
            Some("0".into()),
            Some("completed".into())
        ]
    );
}

/// A store with stale contacts (fetched at known times), failed keys and never-fetched keys.
async fn prepared_store(env: &TestEnv) -> std::path::PathBuf {
    // Rows 0-5 get fetched now and are then made stale, newest first in the input.
    env.write("first.csv", phones_csv(6).as_bytes());
    let run = env.enrich("first.csv", "out.db", &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let db = env.path("out.db");
    let mut sql = String::new();
    for i in 0..6 {
        sql.push_str(&format!(
            "UPDATE contacts SET fetched_at = '2020-01-{:02}T00:00:00.000Z' WHERE chat_id = '{}';",
            10 - i,
            phone_chat_id(i)
        ));
    }
    // Row 6 failed for a transient reason and is due; row 7 was rejected (permanent) just now.
    sql.push_str(&format!(
        "INSERT INTO failures VALUES ('{}', 'whatsapp', NULL, 'timeout', 'timed out', NULL, 5, 0,
           '2020-01-01T00:00:00.000Z', '2020-01-01T00:00:00.000Z', '2020-01-01T01:00:00.000Z');
         INSERT INTO failures VALUES ('{}', 'whatsapp', NULL, 'rejected', 'Validation failed', 400, 1, 1,
           '2099-01-01T00:00:00.000Z', '2099-01-01T00:00:00.000Z', '2099-01-31T00:00:00.000Z');",
        phone_chat_id(6),
        phone_chat_id(7)
    ));
    execute(&db, &sql).await;
    // Rows 8-10 were never fetched; the input lists them after the others.
    env.write("in.csv", phones_csv(11).as_bytes());
    db
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_fetched_in_priority_order() {
    let env = env_with(sandbox::Config {
        instances: sandbox::default_instances(1),
        ..fast()
    })
    .await;
    prepared_store(&env).await;
    let first_run = env.sandbox.stats.arrivals().len();
    let run = env
        .enrich(
            "in.csv",
            "out.db",
            &["--max-age", "1d", "--rps-per-instance", "50"],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("10 due (3 never fetched, 1 retry, 6 stale)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("1 failed and not yet due"),
        "{}",
        run.stderr
    );
    let order: Vec<String> = env.sandbox.stats.arrivals()[first_run..].to_vec();
    // Never fetched in input order, then the due retry, then the stalest first (row 5 is oldest).
    let expected: Vec<String> = [8, 9, 10, 6, 5, 4, 3, 2, 1, 0]
        .into_iter()
        .map(phone_chat_id)
        .collect();
    assert_eq!(order, expected);

    // The permanently failed key waits for --retry-failed-after, or --only-failed.
    let before = requests(&env);
    let run = env.enrich("in.csv", "out.db", &["--only-failed"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        env.sandbox.stats.arrivals()[before as usize..],
        [phone_chat_id(7)]
    );
    assert_eq!(
        count(&env.path("out.db"), "SELECT COUNT(*) FROM failures").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn permanent_failures_wait_for_retry_failed_after() {
    let env = env_with(fast()).await;
    env.write("in.csv", b"phone\n79001230000\n");
    assert_eq!(env.enrich("in.csv", "out.db", &[]).await.code, 2);
    let run = env.enrich("in.csv", "out.db", &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("0 due") && run.stderr.contains("1 failed and not yet due"),
        "{}",
        run.stderr
    );
    assert_eq!(requests(&env), 1);
    let run = env
        .enrich("in.csv", "out.db", &["--retry-failed-after", "0s"])
        .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(requests(&env), 2);
    assert_eq!(
        count(&env.path("out.db"), "SELECT attempts FROM failures").await,
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dry_run_plan_matches_what_the_real_run_does() {
    let env = env_with(fast()).await;
    prepared_store(&env).await;
    let before = requests(&env);
    let runs_before = count(&env.path("out.db"), "SELECT COUNT(*) FROM runs").await;
    let dry = env
        .enrich("in.csv", "out.db", &["--max-age", "1d", "--dry-run"])
        .await;
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(requests(&env), before, "a dry run makes no call");
    assert_eq!(
        count(&env.path("out.db"), "SELECT COUNT(*) FROM runs").await,
        runs_before
    );
    let plan = dry
        .stderr
        .lines()
        .find(|l| l.starts_with("plan:"))
        .expect("plan line")
        .to_string();
    // Unpaced (--rps-per-instance 0): the plan says so instead of the old sentinel "0.0/s".
    assert!(plan.contains("10 calls at an unlimited rate"), "{plan}");

    let run = env.enrich("in.csv", "out.db", &["--max-age", "1d"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(&plan),
        "the real run opens with the same plan:\n{plan}\n{}",
        run.stderr
    );
    assert_eq!(requests(&env) - before, 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deadline_stops_the_run_as_partial() {
    let env = env_with(sandbox::Config {
        instances: sandbox::default_instances(1),
        rate: Rate::PerSecond(10.0),
        ..fast()
    })
    .await;
    env.write("in.csv", phones_csv(100).as_bytes());
    let run = env
        .enrich(
            "in.csv",
            "out.db",
            &["--rps-per-instance", "10", "--deadline", "1s"],
        )
        .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("--deadline was reached"),
        "{}",
        run.stderr
    );
    let stored = count(&env.path("out.db"), "SELECT COUNT(*) FROM contacts").await;
    assert!(stored > 0 && stored < 100, "{stored}");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_and_failures_show_the_store_at_a_glance() {
    // One instance, so the budget of two calls goes to the first two keys in input order.
    let env = env_with(sandbox::Config {
        instances: sandbox::default_instances(1),
        ..fast()
    })
    .await;
    env.write(
        "in.csv",
        b"phone\n79001230000\n79001231111\n79001232222\nnot a phone\n",
    );
    assert_eq!(
        env.enrich("in.csv", "out.db", &["--max-calls", "2"])
            .await
            .code,
        3
    );
    let status = env.run(&["status", "--db", "out.db"]).await;
    assert_eq!(status.code, 0, "{}", status.stderr);
    let text = status.stdout;
    assert!(text.contains("contacts: 1 (1 fresh, 0 stale"), "{text}");
    assert!(
        text.contains("1 invalid_id (permanent)") && text.contains("1 rejected (permanent)"),
        "{text}"
    );
    assert!(
        text.contains("partial: 3 due, 1 enriched (1 new, 0 changed), 1 failed, 2 requests"),
        "{text}"
    );
    assert!(
        text.contains("remaining: 1 due keys were not reached"),
        "{text}"
    );

    let failures = env.run(&["failures", "--db", "out.db"]).await;
    assert_eq!(failures.code, 0, "{}", failures.stderr);
    assert!(
        failures.stdout.contains("invalid_id:\n  not a phone"),
        "{}",
        failures.stdout
    );
    assert!(
        failures
            .stdout
            .contains("rejected:\n  79001230000@c.us — HTTP 400, 1 attempts"),
        "{}",
        failures.stdout
    );

    let missing = env.run(&["status", "--db", "nothing.db"]).await;
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("no such file"),
        "{}",
        missing.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn quiet_json_logs_and_the_summary_file_are_for_monitoring() {
    let env = env_with(fast()).await;
    env.write("in.csv", b"phone\n79001231111\nbad\n");
    let run = env
        .enrich(
            "in.csv",
            "out.db",
            &["--quiet", "--summary-json", "summary.json"],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        !run.stderr.contains("plan:") && !run.stderr.contains("INFO"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.starts_with("summary: 1 enriched"),
        "{}",
        run.stderr
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.path("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["outcome"], "completed");
    assert_eq!(summary["exit_code"], 0);
    assert_eq!(summary["counts"]["enriched"], 1);
    assert_eq!(summary["counts"]["invalid"], 1);

    let run = env
        .enrich("in.csv", "out2.db", &["--log-format", "json"])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(lines.len() >= 3);
    for line in lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(
            value.get("message").is_some() || value.get("summary").is_some(),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deadline_counts_from_the_start_and_may_pass_while_planning() {
    // Staging and planning 20,000 rows takes longer than 50 ms: the deadline passes before the
    // first call could be made. Before: it was counted from the end of planning, and calls
    // went out for another 50 ms.
    let env = env_with(fast()).await;
    env.write("in.csv", phones_csv(20_000).as_bytes());
    let run = env
        .enrich("in.csv", "out.db", &["--deadline", "50ms"])
        .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("--deadline was reached"),
        "{}",
        run.stderr
    );
    assert_eq!(requests(&env), 0, "no call after the deadline");
    assert_eq!(
        count(
            &env.path("out.db"),
            "SELECT COUNT(*) FROM runs WHERE outcome = 'partial'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deadline_is_a_wall_even_while_the_input_is_read() {
    // Reading a million rows takes far longer than the deadline. Before: the calls stopped at
    // the deadline but reading and planning ran on (14.5 s in a release build).
    let env = env_with(fast()).await;
    env.write("in.csv", phones_csv(1_000_000).as_bytes());
    let began = std::time::Instant::now();
    let run = env.enrich("in.csv", "out.db", &["--deadline", "1s"]).await;
    let took = began.elapsed();
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(took.as_secs_f64() <= 2.5, "the run took {took:?}");
    assert!(
        run.stderr.contains("--deadline was reached"),
        "{}",
        run.stderr
    );
    assert_eq!(requests(&env), 0, "no call after the deadline");
    // What was read is kept: its rows are linked, and the run is recorded as partial.
    let db = env.path("out.db");
    let linked = count(&db, "SELECT COUNT(*) FROM input_rows").await;
    assert!(linked > 0 && linked < 1_000_000, "{linked} rows linked");
    let partial = count(&db, "SELECT COUNT(*) FROM runs WHERE outcome = 'partial'").await;
    assert_eq!(partial, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_learnt_spacing_is_in_the_summary_and_in_status() {
    let env = env_with(sandbox::Config {
        rate: Rate::PerSecond(50.0),
        ..sandbox::Config::default()
    })
    .await;
    env.write("in.csv", phones_csv(40).as_bytes());
    let run = env
        .enrich(
            "in.csv",
            "out.db",
            &["--rps-per-instance", "50", "--summary-json", "summary.json"],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.path("summary.json")).unwrap()).unwrap();
    let spacing = summary["spacing_ms_per_instance"].as_object().unwrap();
    assert_eq!(spacing.len(), 4);
    for ms in spacing.values() {
        // 20 ms at 50 calls per second, plus a margin of at most the interval.
        let ms = ms.as_f64().unwrap();
        assert!((20.0..=40.0).contains(&ms), "{ms}");
    }
    let status = env.run(&["status", "--db", "out.db"]).await;
    assert!(
        status
            .stdout
            .contains("pacing: the last run ended with calls spaced 1101000001 "),
        "{}",
        status.stdout
    );
}
