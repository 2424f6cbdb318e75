//! The write stage: the single writer commits outcomes in batches (whatever has arrived while the
//! last batch was being committed) and counts them once committed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::domain::Clock;
use crate::pipeline::stop::{Stop, StopReason};
use crate::stats::Stats;
use crate::store::writer::{Committed, KeyOutcome, Writer};
use crate::store::StoreError;

/// Outcomes committed in one transaction at most.
const MAX_BATCH: usize = 500;

/// How long the writer tries to reach the store again after its connection was lost.
const RECONNECT_FOR: Duration = Duration::from_secs(30);

/// Commits every outcome received until the channel closes. A lost connection is opened again
/// and the batch committed again (for up to [`RECONNECT_FOR`]): answers already paid for are
/// written once the store is back. Any other store error stops the run; the outcomes still
/// arriving are then received and dropped, so no sender waits forever.
pub(crate) async fn write_outcomes(
    mut writer: Writer,
    mut rx: mpsc::Receiver<KeyOutcome>,
    stats: Arc<Stats>,
    stop: Stop,
    clock: Clock,
) -> Result<(), StoreError> {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut error = None;
    let mut minutes_kept = Instant::now();
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if error.is_none() {
            if minutes_kept.elapsed() >= KEEP_MINUTES_EVERY {
                keep_minutes(&mut writer, &stats).await;
                minutes_kept = Instant::now();
            }
            match commit(&mut writer, &batch, clock).await {
                Ok(committed) => {
                    Stats::add(&stats.new, committed.new);
                    Stats::add(&stats.changed, committed.changed);
                    Stats::add(&stats.unchanged, committed.unchanged);
                    let left_out = committed.left_out;
                    for outcome in batch
                        .iter()
                        .filter(|o| !left_out.iter().any(|k| k == o.key()))
                    {
                        match outcome {
                            KeyOutcome::Enriched(_) => Stats::add(&stats.enriched, 1),
                            KeyOutcome::Failed(f) => stats.count_failure(f.reason),
                            KeyOutcome::Resolved(_) => Stats::add(&stats.resolved, 1),
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(
                        "cannot write to the store: {e}; stopping (what was committed is kept)"
                    );
                    stop.trigger(StopReason::Store(e.to_string()));
                    error = Some(e);
                }
            }
        }
        batch.clear();
    }
    if error.is_none() {
        keep_minutes(&mut writer, &stats).await;
    }
    error.map_or(Ok(()), Err)
}

/// How often the run's calls per minute are kept for its report while it goes.
const KEEP_MINUTES_EVERY: Duration = Duration::from_secs(10);

/// Writes the minutes changed since the last time; the chart is not worth stopping a run for.
async fn keep_minutes(writer: &mut Writer, stats: &Stats) {
    if let Err(e) = writer.record_minutes(&stats.take_minutes()).await {
        tracing::warn!("cannot keep the run's calls per minute for its report: {e}");
    }
}

/// Commits `batch`, reconnecting while the store is unreachable (a commit is safe to repeat).
async fn commit(
    writer: &mut Writer,
    batch: &[KeyOutcome],
    clock: Clock,
) -> Result<Committed, StoreError> {
    let since = Instant::now();
    let mut wait = Duration::from_millis(50);
    loop {
        let result = match writer.commit(batch, clock.now()).await {
            Err(e) if e.is_connection_lost() => Err(e),
            done => return done,
        };
        if since.elapsed() >= RECONNECT_FOR {
            return result;
        }
        tracing::warn!(
            "the store's connection was lost while writing {} answers; connecting again",
            batch.len()
        );
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(2));
        if let Err(e) = writer.reconnect().await {
            tracing::warn!("cannot reach the store yet: {e}");
        }
    }
}
