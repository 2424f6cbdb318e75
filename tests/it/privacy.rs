//! Contacts are personal data: what greenrich writes is readable by its owner only.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::helpers::*;

/// The permission bits of `path`.
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every file in `dir` is 0600.
fn files_are_private(dir: &Path, names: &[&str]) {
    for name in names {
        let path = dir.join(name);
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_file_holding_contacts_is_the_owners_only_under_umask_0() {
    let env = env_with(fast()).await;
    env.write("in.csv", phones_csv(5).as_bytes());
    let under_umask_0 = |args: &[&str]| finish(env.spawn(args, "umask 000;"));

    // A SQLite store, with its report. (SQLite gives the WAL and shared-memory files the store's
    // mode; a run that ends cleanly removes them.)
    let run = under_umask_0(&[
        "enrich",
        "--input",
        "in.csv",
        "--output",
        "out.db",
        "--report",
        "report.html",
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    files_are_private(env.dir.path(), &["out.db", "out.db.lock", "report.html"]);
    for wal in ["out.db-wal", "out.db-shm"] {
        if env.path(wal).exists() {
            assert_eq!(mode(&env.path(wal)), 0o600, "{wal}");
        }
    }

    // CSV output into a folder greenrich creates: the folder, its working store and the files.
    let run = under_umask_0(&[
        "enrich", "--input", "in.csv", "--output", "out/", "--format", "csv",
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(mode(&env.path("out")), 0o700);
    files_are_private(
        &env.path("out"),
        &[
            "greenrich.db",
            "contacts.csv",
            "products.csv",
            "failures.csv",
            "enriched.csv",
        ],
    );

    // `export` into a new folder, and `report`.
    let run = under_umask_0(&[
        "export",
        "--db",
        "out.db",
        "--input",
        "in.csv",
        "--output",
        "exported/",
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(mode(&env.path("exported")), 0o700);
    files_are_private(&env.path("exported"), &["contacts.csv", "enriched.csv"]);
    let run = under_umask_0(&["report", "--db", "out.db", "--output", "again.html"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    files_are_private(env.dir.path(), &["again.html"]);

    // One person's rows, for their access request.
    let args = [
        "export",
        "--db",
        "out.db",
        "--chat-id",
        "+7 900 100 1000",
        "--output",
        "person.json",
    ];
    let run = under_umask_0(&args).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    files_are_private(env.dir.path(), &["person.json"]);
}
