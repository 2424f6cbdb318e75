//! The run ledger: one `runs` row per run, opened at the start and closed with its outcome. The
//! options and summary kept there are the serde types below, written by the job and read back by
//! `status`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::conn::on_conn;
use super::plan::PlanCounts;
use super::{Store, StoreError};
use crate::chat_id::Messenger;
use crate::domain::Rate;
use crate::normalise::format_time;
use crate::reason::Reason;

/// The counts a run ends with.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RunCounts {
    /// Rows read from the input.
    pub input_rows: u64,
    /// Values that cannot be a chat id.
    pub invalid: u64,
    /// Valid values that repeat another row's chat id.
    pub duplicates: u64,
    /// Keys skipped because they are fresh.
    pub skipped_fresh: u64,
    /// Rows skipped because their person is on the do-not-process list.
    pub suppressed: u64,
    /// Keys due.
    pub planned: u64,
    /// Keys enriched.
    pub enriched: u64,
    /// Enriched contacts stored for the first time.
    pub new: u64,
    /// Enriched contacts that changed since their last fetch.
    pub changed: u64,
    /// Enriched contacts as they were at their last fetch.
    pub unchanged: u64,
    /// Keys failed (after their retries).
    pub failed: u64,
    /// API calls made (getContactInfo, and checkAccount for Telegram).
    pub requests: u64,
    /// Calls answered 429.
    pub http_429: u64,
    /// Attempts after the first.
    pub retries: u64,
    /// Telegram: checkAccount calls made (counted in `requests` too).
    pub checks: u64,
    /// Telegram: phone numbers and usernames resolved to a chat id.
    pub resolved: u64,
    /// Contacts erased at the end by `--purge-after` (no input mentioned them for that long).
    pub purged: u64,
}

/// The options of a run that matter later (`runs.options`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunOptions {
    /// The input, described.
    pub input: String,
    /// WhatsApp or MAX.
    pub messenger: Messenger,
    /// The ids of the pool's instances.
    pub instances: Vec<String>,
    /// Calls per second per instance; null when unlimited.
    pub rps_per_instance: Rate,
    /// `--max-age` in seconds.
    pub max_age_seconds: Option<u64>,
    /// `--retry-failed-after` in seconds.
    pub retry_failed_after_seconds: u64,
    /// `--only-failed`.
    pub only_failed: bool,
    /// `--max-calls`.
    pub max_calls: Option<u64>,
    /// Seconds from the start of the run to `--deadline`.
    pub deadline_seconds: Option<u64>,
}

impl RunOptions {
    /// Calls per second the run's pool could make; `None` when unlimited.
    pub fn pool_rate(&self) -> Option<f64> {
        self.rps_per_instance
            .per_second()
            .map(|rps| rps * self.instances.len() as f64)
    }
}

/// How a run ended, as `runs.outcome` keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Every due key has an outcome (some may have failed).
    Completed,
    /// Stopped early (budget, deadline, signal, quota); the next run resumes.
    Partial,
    /// Stopped because no instance can be used.
    Stopped,
    /// Stopped by an error.
    #[default]
    Failed,
    /// Planned, and no call made.
    DryRun,
}

impl RunOutcome {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Completed => "completed",
            RunOutcome::Partial => "partial",
            RunOutcome::Stopped => "stopped",
            RunOutcome::Failed => "failed",
            RunOutcome::DryRun => "dry_run",
        }
    }

    /// The outcome stored as `text`, if it is one.
    pub fn parse(text: &str) -> Option<RunOutcome> {
        [
            RunOutcome::Completed,
            RunOutcome::Partial,
            RunOutcome::Stopped,
            RunOutcome::Failed,
            RunOutcome::DryRun,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
    }
}

/// One instance's calls in one minute of a run (`run_minutes`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MinuteRow {
    pub(crate) instance: String,
    /// Minutes since the run's first call.
    pub(crate) minute: u32,
    pub(crate) calls: u64,
    pub(crate) http_429: u64,
    /// The pool's pacing spacing when the row was taken.
    pub(crate) spacing_ms: Option<f64>,
}

/// The final summary of a run (`runs.summary`, and `--summary-json`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RunSummary {
    /// How it ended.
    pub outcome: RunOutcome,
    /// The plan line that opened the run.
    pub plan_line: String,
    /// The exit code of the run.
    pub exit_code: i32,
    /// Why it stopped early, in one sentence.
    pub stopped_because: Option<String>,
    /// What the planner found.
    pub plan: PlanCounts,
    /// The counts it ended with.
    pub counts: RunCounts,
    /// Failed keys by reason.
    pub failed_by_reason: BTreeMap<Reason, u64>,
    /// Calls per instance id.
    pub calls_per_instance: BTreeMap<String, u64>,
    /// The pacer's spacing per instance id at the end of the run, in milliseconds (the limit's
    /// interval plus the learnt margin).
    pub spacing_ms_per_instance: BTreeMap<String, f64>,
    /// Wall time.
    pub elapsed_seconds: f64,
    /// The output file or directory.
    pub output: String,
}

/// One row of the ledger, as `status` reads it.
#[derive(Debug, Clone)]
pub(crate) struct RunRecord {
    /// The run's id.
    pub id: i64,
    /// When it began.
    pub started_at: DateTime<Utc>,
    /// When it ended; `None` while running or after a crash.
    pub finished_at: Option<DateTime<Utc>>,
    /// `None` while running or after a crash.
    pub outcome: Option<RunOutcome>,
    /// The counts recorded when it finished.
    pub counts: RunCounts,
    /// Its options, when they can be read.
    pub options: Option<RunOptions>,
    /// Its summary, when it finished.
    pub summary: Option<RunSummary>,
}

impl Store {
    /// The widest spacing (ms) the latest run that paced any of `instances` at `rate` and ended
    /// at or after `since` ended with, and that run's id.
    pub(crate) async fn last_spacing(
        &self,
        instances: &[&str],
        rate: Rate,
        since: DateTime<Utc>,
    ) -> Result<Option<(i64, f64)>, StoreError> {
        // Runs record their spacing in their summary; a few recent ones are enough to look at.
        const SQL: &str = "SELECT id, options, summary FROM runs
             WHERE summary IS NOT NULL AND finished_at >= $1 ORDER BY id DESC LIMIT 20";
        let mut conn = self.connect().await?;
        let rows: Vec<(i64, String, String)> = on_conn!(&mut conn, c => sqlx::query_as(SQL).bind(format_time(since)).fetch_all(c).await?);
        Ok(rows.into_iter().find_map(|(id, options, summary)| {
            let options: RunOptions = serde_json::from_str(&options).ok()?;
            let summary: RunSummary = serde_json::from_str(&summary).ok()?;
            let widest = instances
                .iter()
                .filter_map(|i| summary.spacing_ms_per_instance.get(*i).copied())
                .filter(|ms| ms.is_finite() && *ms > 0.0)
                .reduce(f64::max)?;
            (options.rps_per_instance == rate).then_some((id, widest))
        }))
    }

    /// When the last `n` runs began (the newest first).
    pub(crate) async fn recent_run_starts(&self, n: i64) -> Result<Vec<DateTime<Utc>>, StoreError> {
        const SQL: &str = "SELECT started_at FROM runs ORDER BY id DESC LIMIT $1";
        let mut conn = self.connect().await?;
        let starts: Vec<String> =
            on_conn!(&mut conn, c => sqlx::query_scalar(SQL).bind(n).fetch_all(c).await?);
        Ok(starts
            .iter()
            .filter_map(|t| crate::normalise::parse_time(t))
            .collect())
    }

    /// Opens the run's row.
    pub async fn begin_run(
        &self,
        started_at: DateTime<Utc>,
        options: &RunOptions,
    ) -> Result<i64, StoreError> {
        const SQL: &str = "INSERT INTO runs (started_at, options) VALUES ($1, $2) RETURNING id";
        let mut conn = self.connect().await?;
        let options = to_json(options);
        let id: i64 = on_conn!(&mut conn, c => sqlx::query_scalar(SQL)
            .bind(format_time(started_at))
            .bind(&options)
            .fetch_one(c)
            .await?);
        Ok(id)
    }

    /// Closes the run's row with its summary.
    pub async fn finish_run(
        &self,
        id: i64,
        finished_at: DateTime<Utc>,
        summary: &RunSummary,
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE runs SET finished_at = $1, outcome = $2, input_rows = $3,
               invalid = $4, duplicates = $5, skipped_fresh = $6, planned = $7, enriched = $8,
               failed = $9, requests = $10, http_429 = $11, retries = $12, summary = $13
             WHERE id = $14";
        let mut conn = self.connect().await?;
        let counts = &summary.counts;
        let summary_json = to_json(summary);
        on_conn!(&mut conn, c => {
            sqlx::query(SQL)
            .bind(format_time(finished_at))
            .bind(summary.outcome.as_str())
            .bind(counts.input_rows as i64)
            .bind(counts.invalid as i64)
            .bind(counts.duplicates as i64)
            .bind(counts.skipped_fresh as i64)
            .bind(counts.planned as i64)
            .bind(counts.enriched as i64)
            .bind(counts.failed as i64)
            .bind(counts.requests as i64)
            .bind(counts.http_429 as i64)
            .bind(counts.retries as i64)
            .bind(&summary_json)
            .bind(id)
            .execute(c)
            .await?;
        });
        Ok(())
    }
}

/// Serialising these plain structs cannot fail; an empty object stands in if it ever did.
fn to_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".into())
}
