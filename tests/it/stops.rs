//! What stops a run, what takes an instance out of the pool, and what waits.

use std::sync::atomic::Ordering::Relaxed;

use greenrich::sandbox::{self, SandboxInstance};

use greenrich::Rate;

use crate::helpers::*;

fn instance(id: &str, state: &str) -> SandboxInstance {
    SandboxInstance {
        id: id.into(),
        token: format!("sandbox-token-{id}"),
        state: state.into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn quota_466_stops_cleanly_and_the_next_run_resumes() {
    let env = env_with(sandbox::Config {
        quota: Some(5),
        ..fast()
    })
    .await;
    env.write("in.csv", phones_csv(20).as_bytes());
    let run = env.enrich("in.csv", "out.db", &[]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("resets with the plan period"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("next run resumes"), "{}", run.stderr);
    let db = env.path("out.db");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM contacts").await, 5);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM failures").await,
        0,
        "keys not reached are not failed"
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM runs WHERE outcome = 'partial'").await,
        1
    );

    // The quota resets: a new period (a new sandbox) and the same command completes the job.
    let renewed = sandbox::start(fast(), 0).await.unwrap();
    let run = env
        .enrich_with_env(
            "in.csv",
            "out.db",
            &["--rps-per-instance", "0"],
            &[("GREEN_API_URL", &renewed.url())],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM contacts").await, 20);
    assert_eq!(
        renewed.stats.contact_answers.load(Relaxed),
        15,
        "the 5 already stored are not fetched again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_stop_the_run_with_code_4() {
    let env = env_with(fast()).await;
    env.write("in.csv", phones_csv(5).as_bytes());
    for (instances, needle) in [
        ("1101000001:wrong-token-123", "401"),
        ("999:sandbox-token-999", "403"),
    ] {
        let run = env
            .enrich_with_env(
                "in.csv",
                "out.db",
                &["--no-preflight"],
                &[("GREEN_API_INSTANCES", instances)],
            )
            .await;
        assert_eq!(run.code, 4, "{}", run.stderr);
        assert!(run.stderr.contains(needle), "{}", run.stderr);
    }
    let wrong_url = format!("{}/nothing", env.sandbox.url());
    let run = env
        .enrich_with_env(
            "in.csv",
            "out.db",
            &["--no-preflight"],
            &[("GREEN_API_URL", &wrong_url)],
        )
        .await;
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stderr.contains("GREEN_API_URL"), "{}", run.stderr);
    assert_eq!(
        count(&env.path("out.db"), "SELECT COUNT(*) FROM failures").await,
        0
    );
    assert_eq!(
        count(
            &env.path("out.db"),
            "SELECT COUNT(*) FROM runs WHERE outcome = 'stopped'"
        )
        .await,
        3
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_pool_member_is_taken_out_and_the_others_carry_on() {
    let env = env_with(sandbox::Config {
        instances: vec![
            instance("1", "authorized"),
            instance("2", "notAuthorized"),
            instance("3", "authorized"),
        ],
        ..fast()
    })
    .await;
    env.write("in.csv", phones_csv(30).as_bytes());
    let bad_token = "1:sandbox-token-1,2:sandbox-token-2,3:wrong-token-3";
    let run = env
        .enrich_with_env(
            "in.csv",
            "out.db",
            &[
                "--no-preflight",
                // Paced, so every instance gets keys before one drains the queue.
                "--rps-per-instance",
                "20",
            ],
            &[("GREEN_API_INSTANCES", bad_token)],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("instance 2 taken out of the pool"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("instance 3 taken out of the pool"),
        "{}",
        run.stderr
    );
    assert_eq!(
        count(&env.path("out.db"), "SELECT COUNT(*) FROM contacts").await,
        30
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn preflight_reports_each_instance_and_leaves_unusable_ones_out() {
    let env = env_with(sandbox::Config {
        instances: vec![
            instance("1", "authorized"),
            instance("2", "notAuthorized"),
            instance("3", "blocked"),
        ],
        ..fast()
    })
    .await;
    env.write("in.csv", phones_csv(10).as_bytes());
    let run = env.enrich("in.csv", "out.db", &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("instance 1: authorized"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("instance 2: state 'notAuthorized', not authorized: scan the QR code"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("instance 3: state 'blocked'"),
        "{}",
        run.stderr
    );
    let summary = rows(&env.path("out.db"), "SELECT summary FROM runs").await;
    assert!(summary[0][0]
        .as_deref()
        .unwrap()
        .contains(r#""calls_per_instance":{"1":10}"#));

    let only_bad = "2:sandbox-token-2,3:sandbox-token-3";
    let run = env
        .run_with_env(
            &["enrich", "--input", "in.csv", "--output", "out2.db"],
            &[("GREEN_API_INSTANCES", only_bad)],
        )
        .await;
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stderr.contains("no usable instance"), "{}", run.stderr);
    assert_eq!(
        env.sandbox.stats.contact_requests.load(Relaxed),
        10,
        "no getContactInfo call without a usable instance"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_starting_instance_is_waited_for_and_keys_are_not_at_fault() {
    let env = env_with(sandbox::Config {
        instances: vec![instance("1", "starting")],
        starting_calls: 3,
        ..fast()
    })
    .await;
    env.write("in.csv", phones_csv(5).as_bytes());
    let run = env
        .enrich("in.csv", "out.db", &["--backoff-base", "20ms"])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("starting"), "{}", run.stderr);
    assert_eq!(
        count(&env.path("out.db"), "SELECT COUNT(*) FROM contacts").await,
        5
    );

    // An instance that stays "starting" past --starting-wait is left out: the run stops.
    let env = env_with(sandbox::Config {
        instances: vec![instance("1", "starting")],
        starting_calls: 1000,
        ..fast()
    })
    .await;
    env.write("in.csv", phones_csv(5).as_bytes());
    let run = env
        .enrich(
            "in.csv",
            "out.db",
            &["--backoff-base", "20ms", "--starting-wait", "300ms"],
        )
        .await;
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert_eq!(
        count(&env.path("out.db"), "SELECT COUNT(*) FROM failures").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_400_about_the_chat_id_fails_the_key_once() {
    let env = env_with(fast()).await;
    // The sandbox refuses ids ending in 0000 with "Validation failed".
    env.write("in.csv", b"phone\n79001230000\n79001231111\n");
    let run = env.enrich("in.csv", "out.db", &[]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    let failed = rows(
        &env.path("out.db"),
        "SELECT key, reason, http_status, attempts, permanent FROM failures",
    )
    .await;
    assert_eq!(
        failed,
        vec![vec![
            Some("79001230000@c.us".into()),
            Some("rejected".into()),
            Some("400".into()),
            Some("1".into()),
            Some("1".into())
        ]]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_with_retry_after_is_retried_after_the_wait() {
    let env = env_with(sandbox::Config {
        instances: sandbox::default_instances(1),
        rate: Rate::PerSecond(5.0),
        retry_after: Some(1),
        ..sandbox::Config::default()
    })
    .await;
    env.write("in.csv", phones_csv(4).as_bytes());
    // Pacing at 50/s against a 5/s limit forces 429s.
    let started = std::time::Instant::now();
    let run = env
        .enrich("in.csv", "out.db", &["--rps-per-instance", "50"])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        count(&env.path("out.db"), "SELECT COUNT(*) FROM contacts").await,
        4
    );
    let limited = count(&env.path("out.db"), "SELECT http_429 FROM runs").await;
    assert!(limited >= 1);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "Retry-After: 1 is a floor for the wait"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_url_the_client_cannot_use_is_a_fatal_error_not_a_bad_instance() {
    // Before: the client failed per request, preflight found "no usable instance" and the run
    // exited 4, telling the user to fix credentials that were fine.
    let env = env_with(fast()).await;
    env.write("in.csv", phones_csv(5).as_bytes());
    let run = env
        .enrich_with_env(
            "in.csv",
            "out.db",
            &[],
            &[("GREEN_API_URL", "http://exa mple.com")],
        )
        .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("is not a valid URL"), "{}", run.stderr);
    assert!(!run.stderr.contains("no usable instance"), "{}", run.stderr);
    assert_eq!(env.sandbox.stats.requests.load(Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_handle_ends_the_run_as_partial_and_the_next_run_completes() {
    let env = env_with(sandbox::Config {
        rate: Rate::PerSecond(25.0),
        ..sandbox::Config::default()
    })
    .await;
    env.write("in.csv", phones_csv(150).as_bytes());
    let args = enrich_args("in.csv", "out.db", &["--rps-per-instance", "25"]);
    let started = env.start_with_env(&args, &[]);
    let db = env.path("out.db");
    while env.sandbox.stats.contact_answers.load(Relaxed) < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    started.stop.trigger(greenrich::StopReason::Interrupted);
    let run = started.finish().await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("stopped on request"), "{}", run.stderr);
    let stored = count(&db, "SELECT COUNT(*) FROM contacts").await;
    assert!((20..150).contains(&stored), "{stored}");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM failures").await, 0);

    let run = env
        .enrich("in.csv", "out.db", &["--rps-per-instance", "25"])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM contacts").await, 150);
    assert!(
        env.sandbox
            .stats
            .answers_per_chat()
            .values()
            .all(|n| *n == 1),
        "nothing committed was fetched again"
    );
}
