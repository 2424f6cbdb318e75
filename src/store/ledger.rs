//! The run ledger: one `runs` row per run, opened at the start and closed with its outcome.

use super::{Store, StoreError};

/// The counts a run ends with.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunCounts {
    pub input_rows: u64,
    pub invalid: u64,
    pub duplicates: u64,
    pub skipped_fresh: u64,
    pub planned: u64,
    pub enriched: u64,
    pub failed: u64,
    pub requests: u64,
    pub http_429: u64,
    pub retries: u64,
}

impl Store {
    /// The start of the earliest run in the unbroken chain of runs that did not complete (crashed,
    /// interrupted or stopped early), if the last run did not complete: contacts fetched since
    /// then are not fetched again when the job resumes.
    pub async fn resume_from(&self) -> Result<Option<String>, StoreError> {
        let mut conn = self.connect().await?;
        let started: Option<String> = sqlx::query_scalar(
            "SELECT MIN(started_at) FROM runs
             WHERE id > (SELECT COALESCE(MAX(id), 0) FROM runs WHERE outcome = 'completed')",
        )
        .fetch_one(&mut conn)
        .await?;
        Ok(started)
    }

    pub async fn begin_run(&self, started_at: &str, options: &str) -> Result<i64, StoreError> {
        let mut conn = self.connect().await?;
        let id = sqlx::query("INSERT INTO runs (started_at, options) VALUES (?, ?)")
            .bind(started_at)
            .bind(options)
            .execute(&mut conn)
            .await?
            .last_insert_rowid();
        Ok(id)
    }

    pub async fn finish_run(
        &self,
        id: i64,
        finished_at: &str,
        outcome: &str,
        counts: &RunCounts,
        summary: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.connect().await?;
        sqlx::query(
            "UPDATE runs SET finished_at = ?, outcome = ?, input_rows = ?, invalid = ?,
               duplicates = ?, skipped_fresh = ?, planned = ?, enriched = ?, failed = ?,
               requests = ?, http_429 = ?, retries = ?, summary = ?
             WHERE id = ?",
        )
        .bind(finished_at)
        .bind(outcome)
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
        .bind(summary)
        .bind(id)
        .execute(&mut conn)
        .await?;
        Ok(())
    }
}
