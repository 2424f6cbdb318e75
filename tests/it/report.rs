//! `greenrich report` in a real browser: the page opens in headless Chromium with no console
//! message, its charts are drawn with data, and its figures are the store's. Chromium is
//! Debian's `chromium` (or `GREENRICH_CHROMIUM`); `.ci/run` installs it. Locally:
//! `apt-get install chromium`, then `cargo test --test it report -- --ignored`.

use std::path::{Path, PathBuf};

use crate::helpers::*;
use crate::servers::{At, Engine, ServerDb};

/// The browser: `GREENRICH_CHROMIUM`, else the first of the usual names on the PATH.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("GREENRICH_CHROMIUM") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            if dir.join(name).is_file() {
                return dir.join(name);
            }
        }
    }
    panic!("no Chromium found: `apt-get install chromium`, or set GREENRICH_CHROMIUM");
}

/// Opens `page` in headless Chromium: the DOM it built, the console messages it logged, and a
/// screenshot at `shot`.
fn browse(page: &Path, shot: &Path) -> (String, Vec<String>) {
    let url = format!("file://{}", page.display());
    let run = |extra: &str| {
        std::process::Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--enable-logging=stderr",
            ])
            .args(["--v=0", "--window-size=1000,1800", extra, &url])
            .output()
            .unwrap()
    };
    let dumped = run("--dump-dom");
    assert!(
        dumped.status.success(),
        "{}",
        String::from_utf8_lossy(&dumped.stderr)
    );
    let console = String::from_utf8_lossy(&dumped.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    let shot_arg = format!("--screenshot={}", shot.display());
    assert!(run(&shot_arg).status.success());
    (String::from_utf8(dumped.stdout).unwrap(), console)
}

/// The text of the element carrying `data-figure="name"`.
fn figure(dom: &str, name: &str) -> String {
    let tag = format!("data-figure=\"{name}\">");
    let start = dom.find(&tag).unwrap_or_else(|| panic!("no figure {name}")) + tag.len();
    dom[start..].split('<').next().unwrap().to_string()
}

/// Every value of `attribute` on the marks of the chart `chart`.
fn values(dom: &str, chart: &str, attribute: &str) -> Vec<u64> {
    let start = dom.find(&format!("data-chart=\"{chart}\"")).unwrap();
    let end = start + dom[start..].find("</svg>").unwrap();
    let pattern = format!(" {attribute}=\"");
    dom[start..end]
        .split(&pattern)
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().parse().unwrap())
        .collect()
}

async fn the_page_shows_the_store(at: At<'_>) {
    // A sandbox stricter than the pace asked of it: some calls meet 429s.
    let env = env_with(greenrich::sandbox::Config {
        instances: greenrich::sandbox::default_instances(2),
        rate: greenrich::Rate::PerSecond(200.0),
        ..fast()
    })
    .await;
    env.write("in.csv", phones_csv(240).as_bytes());
    let flags = at.store_flags();
    let store: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut first = enrich_args("in.csv", store[0], &store[1..]);
    first.extend_from_slice(&["--rps-per-instance", "400", "--max-attempts", "20"]);
    first.extend_from_slice(&["--max-calls", "60"]);
    assert_eq!(env.run(&first).await.code, 3, "a partial first night");
    // Another pace, so that the second night does not start from the spacing the first learnt
    // (a run starts from the last spacing learnt at its rate) and meets 429s of its own.
    let mut second = enrich_args("in.csv", store[0], &store[1..]);
    second.extend_from_slice(&["--rps-per-instance", "399", "--max-attempts", "20"]);
    second.extend_from_slice(&["--report", "night.html"]);
    let night = env.run(&second).await;
    assert_eq!(night.code, 0, "{}", night.stderr);
    let mut report = vec!["report", "--db", store[0]];
    report.extend_from_slice(&store[1..]);
    report.extend_from_slice(&["--output", "page.html"]);
    let made = env.run(&report).await;
    assert_eq!(made.code, 0, "{}", made.stderr);

    for page in ["night.html", "page.html"] {
        let html = std::fs::read_to_string(env.path(page)).unwrap();
        for outside in ["src=", "href=", "url(", "<script", "@import"] {
            assert!(
                !html.contains(outside),
                "{page} must need nothing from outside: {outside}"
            );
        }
        let shot = env.path(&format!("{page}.png"));
        let (dom, console) = browse(&env.path(page), &shot);
        assert!(console.is_empty(), "{page}: {console:?}");
        assert!(
            std::fs::metadata(&shot).unwrap().len() > 10_000,
            "a page was drawn"
        );

        // The figures are the store's.
        let last = at
            .rows(&env, "SELECT CAST(id AS TEXT), CAST(enriched AS TEXT), CAST(requests AS TEXT), CAST(http_429 AS TEXT), outcome FROM runs ORDER BY id DESC")
            .await;
        assert_eq!(last.len(), 2);
        let text = |row: &[Option<String>], i: usize| row[i].clone().unwrap();
        assert_eq!(figure(&dom, "enriched"), text(&last[0], 1));
        assert_eq!(figure(&dom, "calls"), text(&last[0], 2));
        assert_eq!(figure(&dom, "429s"), text(&last[0], 3));
        let contacts = at
            .rows(&env, "SELECT CAST(COUNT(*) AS TEXT) FROM contacts")
            .await;
        assert_eq!(figure(&dom, "contacts"), text(&contacts[0], 0));
        assert_eq!(figure(&dom, "contacts"), "240");
        assert_eq!(figure(&dom, "pending"), "0");

        // The charts are drawn from the same figures.
        let calls: u64 = values(&dom, "minutes", "data-calls").iter().sum();
        assert_eq!(calls.to_string(), text(&last[0], 2));
        let limited = values(&dom, "minutes", "data-http-429");
        // Each minute's 429s are on its bar and on the red mark drawn over it.
        let store_429: u64 = text(&last[0], 3).parse().unwrap();
        assert_eq!(limited.iter().sum::<u64>(), 2 * store_429);
        assert!(store_429 > 0, "the 429s are marked");
        let runs = values(&dom, "timeline", "data-run");
        assert_eq!(runs.len(), 2);
        assert!(
            dom.contains(r#"data-outcome="partial""#)
                && dom.contains(r#"data-outcome="completed""#)
        );
        let ages: u64 = values(&dom, "freshness", "data-count").iter().sum();
        assert_eq!(ages, 240);
    }
}

#[tokio::test]
#[ignore = "needs Chromium (apt-get install chromium)"]
async fn the_report_opens_in_chromium_and_shows_the_store() {
    the_page_shows_the_store(At::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs Chromium and GREENRICH_TEST_POSTGRES_URL"]
async fn the_report_of_a_postgres_store_shows_it_too() {
    let db = ServerDb::create(Engine::Postgres, "report").await;
    the_page_shows_the_store(At::Postgres(&db)).await;
}
