//! `--metrics-file`: the run's figures in the Prometheus text format, for node_exporter's textfile
//! collector. Written whole to a temporary file in the same directory and renamed over the old
//! one, so a scrape never sees half a file. Labels hold instance ids, never tokens.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::stats::Stats;
use crate::store::ledger::RunCounts;
use crate::store::read::StoreReader;
use crate::store::StoreLocation;

/// What one write of the metrics file says.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Snapshot {
    /// When this was taken, in seconds since the epoch.
    pub(crate) timestamp: f64,
    /// The run's wall time so far.
    pub(crate) duration_seconds: f64,
    /// The run's exit code; `None` while it runs.
    pub(crate) exit_code: Option<i32>,
    /// Keys by status: enriched, failed, invalid, pending, skipped_fresh, suppressed.
    pub(crate) keys: [(&'static str, u64); 6],
    /// Enriched contacts by what their fetch found: new, changed, unchanged.
    pub(crate) changes: [(&'static str, u64); 3],
    /// Answers per (instance, class).
    pub(crate) requests: BTreeMap<(String, &'static str), u64>,
    /// The pacer's spacing per instance, in seconds.
    pub(crate) spacing_seconds: BTreeMap<String, f64>,
    /// Stored contacts (fresh, stale) at `--max-age`, when it is given.
    pub(crate) contacts: Option<(u64, u64)>,
    /// The end of the last run that completed (exit 0 or 2), in seconds since the epoch.
    pub(crate) last_success: Option<f64>,
}

/// `snapshot` in the Prometheus text exposition format.
pub(crate) fn render(s: &Snapshot) -> String {
    let mut text = Text::default();
    run_gauges(&mut text, s);
    instance_gauges(&mut text, s);
    store_gauges(&mut text, s);
    text.0
}

/// The text format, gauge by gauge.
#[derive(Default)]
struct Text(String);

impl Text {
    /// A gauge with its help line and its samples (labels, value).
    fn gauge(&mut self, name: &str, help: &str, samples: &[(String, f64)]) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(self.0, "{name}{labels} {value}");
        }
    }

    /// A gauge of one sample without labels.
    fn one(&mut self, name: &str, help: &str, value: f64) {
        self.gauge(name, help, &[(String::new(), value)]);
    }
}

/// The run: when, how long, how it ended, its keys.
fn run_gauges(text: &mut Text, s: &Snapshot) {
    text.one(
        "greenrich_last_run_timestamp_seconds",
        "When the last run wrote these metrics.",
        s.timestamp,
    );
    text.one(
        "greenrich_last_run_duration_seconds",
        "Wall time of the last run (so far, while it runs).",
        s.duration_seconds,
    );
    if let Some(code) = s.exit_code {
        text.one(
            "greenrich_last_run_exit_code",
            "Exit code of the last run: 0 ok, 2 some keys failed, 3 partial, 1/4/5 errors.",
            f64::from(code),
        );
    }
    let keys: Vec<(String, f64)> = s
        .keys
        .iter()
        .map(|(status, n)| (format!("{{status=\"{status}\"}}"), *n as f64))
        .collect();
    text.gauge(
        "greenrich_last_run_keys",
        "Keys of the last run by status.",
        &keys,
    );
    let changes: Vec<(String, f64)> = s
        .changes
        .iter()
        .map(|(change, n)| (format!("{{change=\"{change}\"}}"), *n as f64))
        .collect();
    text.gauge(
        "greenrich_last_run_contacts",
        "Contacts the last run enriched, by what their fetch found: new, changed or unchanged.",
        &changes,
    );
}

/// Each instance's answers and pacing.
fn instance_gauges(text: &mut Text, s: &Snapshot) {
    let requests: Vec<(String, f64)> = s
        .requests
        .iter()
        .map(|((instance, class), n)| {
            let labels = format!("{{instance=\"{}\",status=\"{class}\"}}", label(instance));
            (labels, *n as f64)
        })
        .collect();
    text.gauge(
        "greenrich_last_run_requests",
        "getContactInfo answers of the last run by instance and status class.",
        &requests,
    );
    let spacing: Vec<(String, f64)> = s
        .spacing_seconds
        .iter()
        .map(|(instance, seconds)| (format!("{{instance=\"{}\"}}", label(instance)), *seconds))
        .collect();
    text.gauge(
        "greenrich_last_run_spacing_seconds",
        "The pacer's learnt spacing between calls, by instance.",
        &spacing,
    );
}

/// The store: its contacts by freshness, and its last success.
fn store_gauges(text: &mut Text, s: &Snapshot) {
    if let Some((fresh, stale)) = s.contacts {
        text.gauge(
            "greenrich_store_contacts",
            "Contacts in the store by freshness at --max-age.",
            &[
                ("{freshness=\"fresh\"}".to_string(), fresh as f64),
                ("{freshness=\"stale\"}".to_string(), stale as f64),
            ],
        );
    }
    if let Some(at) = s.last_success {
        text.one(
            "greenrich_last_success_timestamp_seconds",
            "When the last run that completed (exit 0 or 2) ended.",
            at,
        );
    }
}

/// A label value, escaped as the text format wants.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes `text` to `path` through a temporary file in the same directory and a rename.
pub(crate) fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    let temporary = path.with_file_name(name);
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}

/// A run as the metrics see it while it goes.
#[derive(Clone)]
pub(crate) struct Live {
    pub(crate) started: Instant,
    pub(crate) stats: Arc<Stats>,
    /// The input's and the plan's counts, once known.
    pub(crate) counts: Arc<Mutex<RunCounts>>,
}

impl Live {
    fn snapshot(&self, exit_code: Option<i32>) -> Snapshot {
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let enriched = Stats::get(&self.stats.enriched);
        let failed = Stats::get(&self.stats.failed);
        Snapshot {
            timestamp: now_seconds(),
            duration_seconds: self.started.elapsed().as_secs_f64(),
            exit_code,
            keys: [
                ("enriched", enriched),
                ("failed", failed),
                ("invalid", counts.invalid),
                ("pending", counts.planned.saturating_sub(enriched + failed)),
                ("skipped_fresh", counts.skipped_fresh),
                ("suppressed", counts.suppressed),
            ],
            changes: [
                ("new", Stats::get(&self.stats.new)),
                ("changed", Stats::get(&self.stats.changed)),
                ("unchanged", Stats::get(&self.stats.unchanged)),
            ],
            requests: self.stats.responses(),
            spacing_seconds: self
                .stats
                .spacing_ms()
                .into_iter()
                .map(|(instance, ms)| (instance, ms / 1000.0))
                .collect(),
            contacts: None,
            last_success: None,
        }
    }
}

/// Rewrites `path` every `interval` while the run goes (until the handle is dropped).
pub(crate) fn keep_writing(
    path: PathBuf,
    location: StoreLocation,
    live: Live,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let last_success = stored_last_success(&location).await;
        loop {
            tokio::time::sleep(interval).await;
            let snapshot = Snapshot {
                last_success,
                ..live.snapshot(None)
            };
            write_or_warn(&path, &snapshot);
        }
    })
}

/// Writes the run's final metrics: its exit code, the store's contacts by freshness (with
/// `--max-age`), and the end of the last run that completed, as the store's ledger has it (this
/// run's own, if it completed).
pub(crate) async fn write_final(
    path: &Path,
    location: &StoreLocation,
    max_age: Option<Duration>,
    live: &Live,
    exit_code: i32,
) {
    let mut snapshot = live.snapshot(Some(exit_code));
    // The store may not exist (a run that failed before opening it): then neither figure.
    if let Ok(mut store) = StoreReader::open(location).await {
        // A run that completed has recorded its end in the store's ledger by now.
        snapshot.last_success = last_success(&mut store).await;
        if let Some(max_age) = max_age {
            snapshot.contacts = freshness(&mut store, max_age).await;
        }
    }
    write_or_warn(path, &snapshot);
}

async fn stored_last_success(location: &StoreLocation) -> Option<f64> {
    last_success(&mut StoreReader::open(location).await.ok()?).await
}

async fn last_success(store: &mut StoreReader) -> Option<f64> {
    let at = store.last_success().await.ok()??;
    Some(at.timestamp_millis() as f64 / 1000.0)
}

async fn freshness(store: &mut StoreReader, max_age: Duration) -> Option<(u64, u64)> {
    let cutoff = crate::normalise::time_before(chrono::Utc::now(), max_age);
    let o = store.overview(cutoff).await.ok()?;
    Some((o.fresh as u64, (o.contacts - o.fresh) as u64))
}

fn write_or_warn(path: &Path, snapshot: &Snapshot) {
    if let Err(e) = write_atomically(path, &render(snapshot)) {
        tracing::warn!("cannot write the metrics file {}: {e}", path.display());
    }
}

fn now_seconds() -> f64 {
    chrono::Utc::now().timestamp_millis() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format_with_escaped_labels() {
        let snapshot = Snapshot {
            timestamp: 1_790_000_000.5,
            duration_seconds: 12.0,
            exit_code: Some(2),
            keys: [
                ("enriched", 10),
                ("failed", 1),
                ("invalid", 2),
                ("pending", 0),
                ("skipped_fresh", 5),
                ("suppressed", 1),
            ],
            changes: [("new", 4), ("changed", 1), ("unchanged", 5)],
            requests: BTreeMap::from([(("11\"01".to_string(), "200"), 10)]),
            spacing_seconds: BTreeMap::from([("1101".to_string(), 1.03)]),
            contacts: Some((15, 3)),
            last_success: Some(1_790_000_000.5),
        };
        let text = render(&snapshot);
        assert!(text.contains("greenrich_last_run_exit_code 2\n"), "{text}");
        assert!(text.contains("greenrich_last_run_keys{status=\"skipped_fresh\"} 5\n"));
        assert!(
            text.contains("greenrich_last_run_requests{instance=\"11\\\"01\",status=\"200\"} 10\n")
        );
        assert!(text.contains("greenrich_store_contacts{freshness=\"stale\"} 3\n"));
        assert!(text.contains("greenrich_last_run_contacts{change=\"changed\"} 1\n"));
        assert!(text.contains("# TYPE greenrich_last_success_timestamp_seconds gauge\n"));
        let running = render(&Snapshot {
            exit_code: None,
            ..snapshot
        });
        assert!(!running.contains("exit_code"), "no exit code while it runs");
    }
}
