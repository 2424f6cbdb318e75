//! The write stage: the single writer commits outcomes in batches (whatever has arrived while the
//! last batch was being committed) and counts them once committed.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::pipeline::stop::{Stop, StopReason};
use crate::stats::Stats;
use crate::store::writer::{KeyOutcome, Writer};
use crate::store::StoreError;

/// Outcomes committed in one transaction at most.
const MAX_BATCH: usize = 500;

/// Commits every outcome received until the channel closes. A store error stops the run; the
/// outcomes still arriving are then received and dropped, so no sender waits forever.
pub(crate) async fn write_outcomes(
    mut writer: Writer,
    mut rx: mpsc::Receiver<KeyOutcome>,
    stats: Arc<Stats>,
    stop: Stop,
) -> Result<(), StoreError> {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut error = None;
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if error.is_none() {
            match writer.commit(&batch, chrono::Utc::now()).await {
                Ok(()) => {
                    for outcome in &batch {
                        match outcome {
                            KeyOutcome::Enriched(_) => Stats::add(&stats.enriched, 1),
                            KeyOutcome::Failed(f) => stats.count_failure(f.reason),
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
    error.map_or(Ok(()), Err)
}
