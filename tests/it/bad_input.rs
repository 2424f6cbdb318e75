//! Bad input gets a clear message, costs no call, loses nothing and never panics.

use std::sync::atomic::Ordering::Relaxed;

use crate::helpers::*;

fn assert_clean_error(run: &Run, needle: &str) {
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(needle),
        "expected '{needle}' in: {}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn unusable_inputs_stop_before_any_call() {
    // The binary: the messages name the paths as the user typed them.
    let env = process_env_with(fast()).await;
    env.write("empty.csv", b"");
    env.write("header.csv", b"phone,name\n");
    env.write("cols.csv", b"a,b\n1,2\n");
    env.write(
        "not-a-db.sqlite",
        b"this is not a database, just text that is long enough to look like a file header",
    );
    let crm = env.path("crm.db");
    execute(&crm, "CREATE TABLE customers (phone TEXT);").await;
    let crm_input = format!("sqlite:{}", crm.display());
    let not_db = format!("sqlite:{}", env.path("not-a-db.sqlite").display());

    assert_clean_error(
        &env.enrich("missing.csv", "out.db", &[]).await,
        "cannot open the input file missing.csv",
    );
    assert_clean_error(&env.enrich("empty.csv", "out.db", &[]).await, "is empty");
    assert_clean_error(
        &env.enrich("cols.csv", "out.db", &["--column", "phone"])
            .await,
        "the columns are 'a', 'b'",
    );
    assert_clean_error(
        &env.enrich(&not_db, "out.db", &["--table", "customers"])
            .await,
        "not a SQLite database",
    );
    assert_clean_error(
        &env.enrich(&crm_input, "out.db", &["--table", "clients"])
            .await,
        "its tables are: customers",
    );
    assert_clean_error(
        &env.enrich(
            &crm_input,
            "out.db",
            &["--table", "customers", "--column", "tel"],
        )
        .await,
        "the columns are 'phone'",
    );
    assert_clean_error(
        &env.enrich("cols.csv", "missing-dir/out.db", &[]).await,
        "does not exist",
    );
    assert_clean_error(
        &env.enrich("cols.csv", "/proc/out.db", &[]).await,
        "cannot write",
    );
    assert_clean_error(
        &env.enrich("cols.csv", "cols.csv/out", &["--format", "csv"])
            .await,
        "not a directory",
    );

    // A header and no rows is not an error: there is nothing to do.
    let run = env.enrich("header.csv", "out.db", &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("no rows"), "{}", run.stderr);
    assert_eq!(
        env.sandbox.stats.requests.load(Relaxed),
        0,
        "no call was made"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_rows_are_reported_by_line_and_the_rest_goes_on() {
    let env = env_with(fast()).await;
    let mut csv = b"phone,name\n79001112201,ok\n79001112202,too,many,fields\n".to_vec();
    csv.extend_from_slice(b"7900111\xff\xfe2203,bad utf8\n79001112204,ok\n");
    let big = format!("{},huge cell\n", "9".repeat(1024 * 1024));
    csv.extend_from_slice(big.as_bytes());
    csv.extend_from_slice(b"79001112205,last\n");
    env.write("broken.csv", &csv);
    let run = env.enrich("broken.csv", "out.db", &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("line 3: the row has 4 fields, the header has 2"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("line 4: the value is not valid UTF-8"),
        "{}",
        run.stderr
    );
    let db = env.path("out.db");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM contacts").await, 3);
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM failures WHERE reason = 'unreadable_row'"
        )
        .await,
        2
    );
    let huge = rows(
        &db,
        "SELECT key, message FROM failures WHERE reason = 'invalid_id'",
    )
    .await;
    assert_eq!(huge.len(), 1);
    assert!(
        huge[0][0].as_deref().unwrap().len() < 1000,
        "a 1 MB cell is cut in the failure row"
    );
    assert!(huge[0][1].as_deref().unwrap().contains("too long"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sqlite_value_that_is_not_utf8_is_reported_and_the_rest_goes_on() {
    let env = env_with(fast()).await;
    let crm = env.path("crm.db");
    execute(
        &crm,
        "CREATE TABLE customers (phone TEXT);
         INSERT INTO customers VALUES ('79001112201'), (CAST(X'37FFFE' AS TEXT)), (NULL), (79001112202);",
    )
    .await;
    let input = format!("sqlite:{}", crm.display());
    let run = env
        .enrich(&input, "out.db", &["--table", "customers"])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("line 2: the value is not valid UTF-8"),
        "{}",
        run.stderr
    );
    let db = env.path("out.db");
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM contacts").await,
        2,
        "text and integer phones"
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM failures WHERE reason = 'unreadable_row'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM failures WHERE key LIKE '(empty value, line 3)'"
        )
        .await,
        1
    );
}

/// Edge values of every duration and count flag of `enrich`: each run ends with an exit code
/// (a refusal naming the flag, or a run), never a panic.
#[tokio::test(flavor = "multi_thread")]
async fn no_flag_value_panics() {
    let env = env_with(fast()).await;
    env.write("in.csv", phones_csv(3).as_bytes());
    let huge = [
        "100000000d",
        "18446744073709551615s",
        "99999999999999999999d",
        "0s",
        "0.0001ms",
    ];
    let mut cases: Vec<(&str, &str)> = Vec::new();
    for flag in [
        "--max-age",
        "--retry-failed-after",
        "--retry-transient-after",
        "--backoff-base",
        "--timeout",
        "--starting-wait",
        "--status-interval",
        "--lock-timeout",
        "--claim-lease",
        "--deadline",
    ] {
        cases.extend(huge.iter().map(|v| (flag, *v)));
    }
    for (flag, values) in [
        (
            "--max-calls",
            &["0", "18446744073709551615", "-1", "1e3"][..],
        ),
        ("--max-attempts", &["0", "4294967295", "-1"][..]),
        (
            "--rps-per-instance",
            &["1e-300", "1e300", "inf", "NaN", "-1"][..],
        ),
        (
            "--pacing-margin",
            &["-1", "-0.5", "1e300", "inf", "NaN"][..],
        ),
    ] {
        cases.extend(values.iter().map(|v| (flag, *v)));
    }
    for (flag, value) in cases {
        let out = format!("out-{}.db", fastrand::u32(..));
        // `--flag=value`, so that a negative value is read as the flag's value.
        let flag_value = format!("{flag}={value}");
        let run = env.enrich("in.csv", &out, &[&flag_value]).await;
        assert!(
            !run.stderr.contains("panicked"),
            "{flag} {value}: {}",
            run.stderr
        );
        // 4: a timeout too short for any instance to answer the preflight.
        assert!(
            [0, 1, 2, 3, 4].contains(&run.code),
            "{flag} {value}: {}",
            run.stderr
        );
        if run.code == 1 {
            assert!(
                run.stderr.contains(flag),
                "{flag} {value}: the refusal names the flag: {}",
                run.stderr
            );
        }
    }
}
