//! `greenrich status` and `greenrich failures`: the store at a glance, for the people who run the
//! job (read-only; the figures come from [`crate::store::read`]).

use std::time::Duration;

use crate::config::defaults;
use crate::normalise::{format_time, time_before};
use crate::progress::{format_duration, format_eta};
use crate::store::ledger::RunRecord;
use crate::store::read::{FailureCount, StoreReader};
use crate::store::shared::{live_workers, LiveWorker};
use crate::store::{StoreError, StoreLocation};

/// The status report of the store at `db`; contacts older than `max_age` count as stale.
pub(crate) async fn status(db: &StoreLocation, max_age: Duration) -> Result<String, StoreError> {
    let mut store = StoreReader::open(db).await?;
    let o = store
        .overview(time_before(chrono::Utc::now(), max_age))
        .await?;
    let mut out = format!(
        "store {}\ncontacts: {} ({} fresh, {} stale at --max-age {}), {} products; oldest fetch {}, newest {}\n",
        db,
        o.contacts,
        o.fresh,
        o.contacts - o.fresh,
        format_duration(max_age),
        o.products,
        shown_time(o.oldest),
        shown_time(o.newest),
    );
    out.push_str(&failure_line(&store.failure_counts().await?));
    out.push_str(&run_lines(&store.last_runs(5).await?));
    if let Some(conn) = store.postgres() {
        out.push_str(&worker_lines(
            &live_workers(conn, 3 * defaults::CLAIM_LEASE).await?,
        ));
    }
    Ok(out)
}

/// The live workers of a shared PostgreSQL store.
fn worker_lines(workers: &[LiveWorker]) -> String {
    workers
        .iter()
        .map(|w| {
            format!(
                "worker #{} running: host {}, pid {}, instances {}, since {}\n",
                w.id, w.host, w.pid, w.instances, w.since
            )
        })
        .collect()
}

fn failure_line(counts: &[FailureCount]) -> String {
    if counts.is_empty() {
        return "failures: none\n".into();
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|c| {
            let kind = if c.permanent {
                "permanent"
            } else {
                "will retry"
            };
            format!("{} {} ({kind})", c.count, c.reason)
        })
        .collect();
    format!("failures: {}\n", parts.join(", "))
}

/// A time as the store keeps it, or `-`.
fn shown_time(time: Option<chrono::DateTime<chrono::Utc>>) -> String {
    time.map_or_else(|| "-".into(), format_time)
}

fn run_lines(runs: &[RunRecord]) -> String {
    let Some(last) = runs.first() else {
        return "runs: none yet\n".into();
    };
    let mut out = String::from("last runs:\n");
    for r in runs {
        let c = &r.counts;
        out.push_str(&format!(
            "  #{} {} → {} {}: {} due, {} enriched ({} new, {} changed), {} failed, {} requests, {} 429s\n",
            r.id,
            format_time(r.started_at),
            shown_time(r.finished_at),
            r.outcome.map_or("crashed or running", |o| o.as_str()),
            c.planned,
            c.enriched,
            c.new,
            c.changed,
            c.failed,
            c.requests,
            c.http_429,
        ));
    }
    if let Some(spacing) = last
        .summary
        .as_ref()
        .map(|s| &s.spacing_ms_per_instance)
        .filter(|s| s.values().any(|ms| *ms > 0.0))
    {
        let parts: Vec<String> = spacing
            .iter()
            .map(|(id, ms)| format!("{id} {ms:.1} ms"))
            .collect();
        out.push_str(&format!(
            "pacing: the last run ended with calls spaced {} (the limit's interval plus the margin learnt from 429s)\n",
            parts.join(", ")
        ));
    }
    let processed = last.counts.enriched + last.counts.failed;
    let remaining = last.counts.planned.saturating_sub(processed);
    if remaining == 0 {
        out.push_str("remaining: the last run reached every due key\n");
        return out;
    }
    // Never-fetched keys are fetched first, so those left are the plan's minus what was done.
    let never_fetched = last.summary.as_ref().map_or(0, |s| s.plan.never_fetched);
    let never_left = never_fetched.saturating_sub(processed);
    let eta = match last.options.as_ref().and_then(|o| o.pool_rate()) {
        Some(rate) if rate > 0.0 => format!(
            "; about {} of calls at the last run's pool rate ({rate:.1}/s)",
            format_eta(remaining, rate)
        ),
        _ => String::new(),
    };
    out.push_str(&format!(
        "remaining: {remaining} due keys were not reached by the last run ({never_left} never fetched){eta}\n"
    ));
    out
}

/// Failed keys grouped by reason, most common first.
pub(crate) async fn failures(db: &StoreLocation) -> Result<String, StoreError> {
    let rows = StoreReader::open(db).await?.failures().await?;
    if rows.is_empty() {
        return Ok("no failures\n".into());
    }
    let mut out = String::new();
    let mut current = "";
    for r in &rows {
        if r.reason != current {
            out.push_str(&format!("{}:\n", r.reason));
            current = &r.reason;
        }
        let status = r
            .http_status
            .map(|s| format!(" HTTP {s},"))
            .unwrap_or_default();
        let next = if r.permanent {
            "permanent, retried after"
        } else {
            "next due"
        };
        out.push_str(&format!(
            "  {} —{status} {} attempts, first {}, last {}, {next} {}: {}\n",
            r.key.replace('\n', "\\n"),
            r.attempts,
            r.first_failed_at,
            r.last_attempt_at,
            r.next_due_at,
            r.message,
        ));
    }
    Ok(out)
}
