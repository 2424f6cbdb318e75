//! The token is in the URL path: it must never reach a log line, an error, a row or a file.

use greenrich::sandbox::{self, Fault, SandboxInstance};

use crate::helpers::*;

const TOKEN: &str = "d75b3a66374942c5b3c019c698abc2067e151558acbd412b";

fn assert_no_token(run: &Run, env: &TestEnv) {
    assert!(
        !run.stderr.contains(TOKEN),
        "token in stderr: {}",
        run.stderr
    );
    assert!(
        !run.stdout.contains(TOKEN),
        "token in stdout: {}",
        run.stdout
    );
    for (path, bytes) in all_bytes(env.dir.path()) {
        assert!(!contains(&bytes, TOKEN), "token in {}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn token_never_appears_in_logs_errors_rows_or_files() {
    let config = sandbox::Config {
        instances: vec![SandboxInstance::authorized("1101000001", TOKEN)],
        fault: Some(Fault::Mixed),
        fault_rate: 0.5,
        fault_attempts: 1,
        ..fast()
    };
    let env = process_env_with(config).await;
    env.write("in.csv", phones_csv(20).as_bytes());
    for (extra, log) in [
        (
            &[
                "--format",
                "csv",
                "--verbose",
                "--summary-json",
                "summary.json",
            ][..],
            "debug",
        ),
        (&["--format", "csv", "--log-format", "json"][..], "trace"),
    ] {
        let run = env
            .enrich_with_env("in.csv", "out", extra, &[("RUST_LOG", log)])
            .await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(
            run.stderr.contains("1101000001"),
            "logs name the instance id"
        );
        assert_no_token(&run, &env);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn token_is_masked_in_network_errors_and_auth_failures() {
    let env = process_env_with(fast()).await;
    env.write("in.csv", phones_csv(3).as_bytes());
    // A wrong token: the API answers 401; nothing may echo the URL.
    let wrong = format!("1101000001:{TOKEN}");
    let run = env
        .enrich_with_env(
            "in.csv",
            "out.db",
            &["--verbose"],
            &[("GREEN_API_INSTANCES", &wrong), ("RUST_LOG", "trace")],
        )
        .await;
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stderr.contains("401"), "{}", run.stderr);
    assert_no_token(&run, &env);
    // Nothing listens here: connection errors carry the URL in reqwest's text.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let run = env
        .enrich_with_env(
            "in.csv",
            "out2.db",
            &[
                "--no-preflight",
                "--max-attempts",
                "2",
                "--backoff-base",
                "10ms",
            ],
            &[
                ("GREEN_API_INSTANCES", &wrong),
                ("GREEN_API_URL", &url),
                ("RUST_LOG", "trace"),
            ],
        )
        .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("connect"), "{}", run.stderr);
    assert_no_token(&run, &env);
}
