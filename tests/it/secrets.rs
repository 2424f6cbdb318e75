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

/// A server that answers every request with `307` to `location`; returns its URL.
async fn redirecting_server(location: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let location = location.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 4096];
                while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {
                    let reply = format!(
                        "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
                    );
                    if stream.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_is_never_followed_and_the_token_never_leaves_for_another_host() {
    let env = env_with(fast()).await;
    env.write("in.csv", phones_csv(3).as_bytes());
    // The other host counts every connection it gets.
    let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_addr = other.local_addr().unwrap();
    let reached = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = reached.clone();
    tokio::spawn(async move {
        while other.accept().await.is_ok() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let api = redirecting_server(format!("http://{other_addr}/moved")).await;
    for extra in [&[][..], &["--no-preflight"][..]] {
        let run = env
            .enrich_with_env(
                "in.csv",
                "out.db",
                extra,
                &[
                    ("GREEN_API_URL", &api),
                    ("GREEN_API_INSTANCES", &format!("1101000001:{TOKEN}")),
                ],
            )
            .await;
        assert_eq!(run.code, 4, "{}", run.stderr);
        assert!(
            run.stderr
                .contains(&format!("redirects to {}", other_addr.ip()))
                && run.stderr.contains("set GREEN_API_URL to the apiUrl"),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains(TOKEN), "{}", run.stderr);
    }
    assert_eq!(
        reached.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing reached the other host"
    );
    assert_eq!(
        count(&env.path("out.db"), "SELECT COUNT(*) FROM failures").await,
        0,
        "no key is failed for a wrong URL"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_password_in_a_refused_flag_value_is_never_shown() {
    // clap repeats a refused value in its message ("invalid value '…' for '--output'"): the
    // password in it must be masked there too, whether the URL parses or not.
    let env = process_env_with(fast()).await;
    env.write("in.csv", phones_csv(2).as_bytes());
    for (output, password) in [
        ("mysql://crm:secret-pass-123@db/crm", "secret-pass-123"),
        ("postgres://crm:secret-pass-456@d b/crm", "secret-pass-456"),
        (
            "mysql://crm@db/crm?password=secret-pass-789",
            "secret-pass-789",
        ),
    ] {
        let run = env
            .run(&["enrich", "--input", "in.csv", "--output", output])
            .await;
        assert_eq!(run.code, 1, "{output}: {}", run.stderr);
        assert!(run.stderr.contains("--output"), "{}", run.stderr);
        assert!(!run.stderr.contains(password), "{}", run.stderr);
    }
}
