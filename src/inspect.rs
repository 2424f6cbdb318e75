//! `greenrich status` and `greenrich failures`: the store at a glance, for the people who run the
//! job (read-only).

use std::path::Path;
use std::time::Duration;

use sqlx::{Row, SqliteConnection};

use crate::normalise::format_time;
use crate::progress::format_duration;
use crate::store::{open_read_only, StoreError};

/// The status report of the store at `db`; contacts older than `max_age` count as stale.
pub async fn status(db: &Path, max_age: Duration) -> Result<String, StoreError> {
    let mut conn = open_read_only(db).await?;
    let cutoff =
        format_time(chrono::Utc::now() - chrono::Duration::from_std(max_age).unwrap_or_default());
    let row = sqlx::query(
        "SELECT COUNT(*), COALESCE(SUM(fetched_at >= ?), 0), MIN(fetched_at), MAX(fetched_at),
                (SELECT COUNT(*) FROM products)
         FROM contacts",
    )
    .bind(&cutoff)
    .fetch_one(&mut conn)
    .await?;
    let (contacts, fresh): (i64, i64) = (row.get(0), row.get(1));
    let mut out = format!(
        "store {}\ncontacts: {contacts} ({fresh} fresh, {} stale at --max-age {}), {} products; oldest fetch {}, newest {}\n",
        db.display(),
        contacts - fresh,
        format_duration(max_age),
        row.get::<i64, _>(4),
        row.get::<Option<String>, _>(2).unwrap_or_else(|| "-".into()),
        row.get::<Option<String>, _>(3).unwrap_or_else(|| "-".into()),
    );
    out.push_str(&failure_lines(&mut conn).await?);
    out.push_str(&run_lines(&mut conn).await?);
    Ok(out)
}

async fn failure_lines(conn: &mut SqliteConnection) -> Result<String, StoreError> {
    let rows = sqlx::query(
        "SELECT reason, permanent, COUNT(*) FROM failures GROUP BY reason, permanent ORDER BY COUNT(*) DESC",
    )
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Ok("failures: none\n".into());
    }
    let parts: Vec<String> = rows
        .iter()
        .map(|r| {
            let kind = if r.get::<bool, _>(1) {
                "permanent"
            } else {
                "will retry"
            };
            format!("{} {} ({kind})", r.get::<i64, _>(2), r.get::<String, _>(0))
        })
        .collect();
    Ok(format!("failures: {}\n", parts.join(", ")))
}

async fn run_lines(conn: &mut SqliteConnection) -> Result<String, StoreError> {
    let rows = sqlx::query(
        "SELECT id, started_at, COALESCE(finished_at, '-'), COALESCE(outcome, 'crashed or running'),
                planned, enriched, failed, requests, http_429, options, summary
         FROM runs ORDER BY id DESC LIMIT 5",
    )
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Ok("runs: none yet\n".into());
    }
    let mut out = String::from("last runs:\n");
    for r in &rows {
        out.push_str(&format!(
            "  #{} {} → {} {}: {} due, {} enriched, {} failed, {} requests, {} 429s\n",
            r.get::<i64, _>(0),
            r.get::<String, _>(1),
            r.get::<String, _>(2),
            r.get::<String, _>(3),
            r.get::<i64, _>(4),
            r.get::<i64, _>(5),
            r.get::<i64, _>(6),
            r.get::<i64, _>(7),
            r.get::<i64, _>(8),
        ));
    }
    let last = &rows[0];
    let processed = last.get::<i64, _>(5) + last.get::<i64, _>(6);
    let remaining = last.get::<i64, _>(4) - processed;
    let json = |i: usize| {
        last.get::<Option<String>, _>(i)
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .unwrap_or_default()
    };
    let rate = pool_rate(&json(9));
    // Never-fetched keys are fetched first, so those left are the plan's minus what was done.
    let never_fetched = json(10)["plan"]["never_fetched"].as_i64().unwrap_or(0);
    let never_left = (never_fetched - processed).max(0);
    if remaining > 0 {
        let eta = if rate > 0.0 {
            format!(
                "; about {} of calls at the last run's pool rate ({rate:.1}/s)",
                format_duration(Duration::from_secs_f64(remaining as f64 / rate))
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "remaining: {remaining} due keys were not reached by the last run ({never_left} never fetched){eta}\n"
        ));
    } else {
        out.push_str("remaining: the last run reached every due key\n");
    }
    Ok(out)
}

/// Calls per second the last run's pool could make, from its recorded options.
fn pool_rate(options: &serde_json::Value) -> f64 {
    let instances = options["instances"].as_array().map_or(0, Vec::len);
    instances as f64 * options["rps_per_instance"].as_f64().unwrap_or(1.0)
}

/// Failed keys grouped by reason, most common first.
pub async fn failures(db: &Path) -> Result<String, StoreError> {
    let mut conn = open_read_only(db).await?;
    let rows = sqlx::query(
        "SELECT f.reason, f.key, f.message, f.http_status, f.attempts, f.first_failed_at,
                f.last_attempt_at, f.next_due_at, f.permanent
         FROM failures f
         JOIN (SELECT reason, COUNT(*) AS n FROM failures GROUP BY reason) g ON g.reason = f.reason
         ORDER BY g.n DESC, f.reason, f.key",
    )
    .fetch_all(&mut conn)
    .await?;
    if rows.is_empty() {
        return Ok("no failures\n".into());
    }
    let mut out = String::new();
    let mut current = String::new();
    for r in rows {
        let reason: String = r.get(0);
        if reason != current {
            out.push_str(&format!("{reason}:\n"));
            current = reason;
        }
        let status = r
            .get::<Option<i64>, _>(3)
            .map(|s| format!(" HTTP {s},"))
            .unwrap_or_default();
        let next = if r.get::<bool, _>(8) {
            "permanent, retried after"
        } else {
            "next due"
        };
        out.push_str(&format!(
            "  {} —{status} {} attempts, first {}, last {}, {next} {}: {}\n",
            r.get::<String, _>(1).replace('\n', "\\n"),
            r.get::<i64, _>(4),
            r.get::<String, _>(5),
            r.get::<String, _>(6),
            r.get::<String, _>(7),
            r.get::<String, _>(2),
        ));
    }
    Ok(out)
}
