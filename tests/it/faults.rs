//! A misbehaving server: every key ends enriched exactly once, or failed with a reason.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;

use greenrich::sandbox::{self, Fault};

use crate::helpers::*;

async fn run_with_fault(
    fault: Fault,
    rate: f64,
    attempts: u32,
    keys: usize,
    extra: &[&str],
) -> (TestEnv, Run) {
    let env = env_with(sandbox::Config {
        fault: Some(fault),
        fault_rate: rate,
        fault_attempts: attempts,
        ..fast()
    })
    .await;
    env.write("in.csv", phones_csv(keys).as_bytes());
    let run = env.enrich("in.csv", "out.db", extra).await;
    (env, run)
}

/// Every key enriched, each answered by the sandbox exactly once.
async fn assert_all_enriched_once(env: &TestEnv, run: &Run, keys: usize) {
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        count(&env.path("out.db"), "SELECT COUNT(*) FROM contacts").await,
        keys as i64
    );
    assert_eq!(
        count(&env.path("out.db"), "SELECT COUNT(*) FROM failures").await,
        0
    );
    let answers: HashMap<String, u32> = env.sandbox.stats.answers_per_chat();
    assert_eq!(answers.len(), keys);
    assert!(answers.values().all(|n| *n == 1), "{answers:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_that_never_come_time_out_and_are_retried() {
    let (env, run) = run_with_fault(Fault::Timeout, 0.3, 1, 10, &["--timeout", "300ms"]).await;
    assert_all_enriched_once(&env, &run, 10).await;
    assert!(count(&env.path("out.db"), "SELECT retries FROM runs").await >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn resets_truncated_json_and_html_bodies_are_retried() {
    for fault in [Fault::Reset, Fault::Truncate, Fault::Html] {
        let (env, run) = run_with_fault(fault, 0.5, 2, 20, &[]).await;
        assert_all_enriched_once(&env, &run, 20).await;
        assert!(
            count(&env.path("out.db"), "SELECT retries FROM runs").await >= 2,
            "{fault:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_percent_failing_twice_with_mixed_errors_all_end_enriched_once() {
    let (env, run) = run_with_fault(Fault::Mixed, 0.3, 2, 100, &[]).await;
    assert_all_enriched_once(&env, &run, 100).await;
    let retries = count(&env.path("out.db"), "SELECT retries FROM runs").await;
    assert!(retries >= 40, "about 30 keys fail twice: {retries}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_json_types_and_unknown_fields_are_accepted() {
    let (env, run) = run_with_fault(Fault::WrongTypes, 1.0, 0, 20, &[]).await;
    assert_all_enriched_once(&env, &run, 20).await;
    let db = env.path("out.db");
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM contacts WHERE is_business = 1 AND name = '12345'"
        )
        .await,
        20
    );
    // `products: {}` gives none; `[{"id": 7, "price": 12}]` gives one with price "12".
    let priced = rows(&db, "SELECT DISTINCT product_id, price FROM products").await;
    assert!(
        priced
            .iter()
            .all(|p| p[0].as_deref() == Some("7") && p[1].as_deref() == Some("12")),
        "{priced:?}"
    );
    assert!(
        count(
            &db,
            "SELECT COUNT(*) FROM contacts WHERE raw_json LIKE '%someFutureField%'"
        )
        .await
            > 0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_body_is_capped_and_retried_not_failed_for_good() {
    // Once: the next attempt answers normally.
    let (env, run) = run_with_fault(Fault::Huge, 0.2, 1, 20, &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let db = env.path("out.db");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM contacts").await, 20);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM failures").await, 0);
    assert!(count(&db, "SELECT retries FROM runs").await >= 1);
    // Always: the key fails for now (a transient failure, due again later), after its attempts.
    let (env, run) = run_with_fault(Fault::Huge, 1.0, 0, 3, &["--max-attempts", "2"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    let db = env.path("out.db");
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM failures WHERE reason = 'body_too_large' AND permanent = 0"
        )
        .await,
        3
    );
    assert_eq!(env.sandbox.stats.contact_requests.load(Relaxed), 6);
}
