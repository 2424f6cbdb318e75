//! Sharing a store's work (PostgreSQL): this worker leases the instances no other worker uses,
//! keeps its claims alive, and feeds the fetch stage with keys claimed from the store's queue.
//! On a SQLite store (one run at a time) the run has every instance, and its keys come from its
//! own plan a page at a time.

use std::time::Duration;

use tokio::time::Instant;

use crate::api::Instance;
use crate::config::Config;
use crate::domain::Rate;
use crate::pipeline::fetch;
use crate::pipeline::stop::{Stop, StopReason};
use crate::stats::Stats;
use crate::store::plan::DuePlan;
use crate::store::shared::{SharedStore, WorkQueue};
use crate::store::{StoreError, WorkerId};

/// Leases the instances no other worker of the shared store uses. When every one is in use: exits (`--no-wait`) or waits for one; `None`
/// when the run is stopped while it waits.
pub(crate) async fn lease_instances(
    config: &Config,
    store: &SharedStore,
    instances: Vec<Instance>,
    stop: &Stop,
) -> Result<Option<Vec<Instance>>, StoreError> {
    let mut said = false;
    loop {
        let leased = store.lease_instances(&instances).await?;
        if !leased.is_empty() {
            if said || leased.len() < instances.len() {
                let ids: Vec<&str> = leased.iter().map(|i| i.id.as_str()).collect();
                tracing::info!(
                    "this worker uses instance(s) {} (the others are in use by other workers)",
                    ids.join(", ")
                );
            }
            return Ok(Some(leased));
        }
        let ids: Vec<&str> = instances.iter().map(|i| i.id.as_str()).collect();
        if config.output.no_wait {
            return Err(StoreError::InstancesBusy {
                store: config.output.target.describe(),
                instances: ids.join(", "),
            });
        }
        if !said {
            tracing::warn!("every instance of the pool ({}) is in use by another greenrich worker of this store; waiting for one", ids.join(", "));
            said = true;
        }
        tokio::select! {
            () = tokio::time::sleep(LEASE_RETRY) => {}
            () = stop.stopped() => return Ok(None),
        }
    }
}

/// How often a worker with nothing to claim looks again while other workers hold keys: when
/// the last of them is done, it ends this much later at most.
const CLAIM_RETRY: Duration = Duration::from_millis(50);

/// How often a worker waiting for an instance tries again.
const LEASE_RETRY: Duration = Duration::from_secs(1);

/// How often a worker checks that its session, which holds its instance leases, is open.
const SESSION_CHECK: Duration = Duration::from_millis(100);

/// The worker's heartbeat: its claims last `lease` from each beat (a third of it apart), and the
/// beat records its pacer's spacing for a worker that may take its instances over. Its
/// session is checked every [`SESSION_CHECK`] between beats: when the session is gone (the
/// server restarted, `pg_terminate_backend`, a network cut), so are the instance leases held on
/// it, and the run stops calling at once (another worker may hold those instances now).
pub(crate) async fn keep_alive(
    store: &SharedStore,
    worker: WorkerId,
    lease: Duration,
    stats: &Stats,
    stop: &Stop,
) {
    let mut next_beat = Instant::now() + lease / 3;
    loop {
        tokio::time::sleep(SESSION_CHECK).await;
        let beat = Instant::now() >= next_beat;
        let checked = match beat {
            true => store.heartbeat(worker, lease, stats.pool_spacing()).await,
            false => store.check_session().await,
        };
        match checked {
            Ok(()) if beat => next_beat = Instant::now() + lease / 3,
            Ok(()) => {}
            Err(e) if e.is_connection_lost() => {
                stop.trigger(StopReason::StoreLost(e.to_string()));
                return;
            }
            Err(e) => tracing::warn!("cannot renew this worker's claims: {e}"),
        }
    }
}

/// Keys a worker claims at a time: a quarter of a second of its calls (at least 2, at most
/// 100). It holds at most two batches ahead of its calls, so when the queue runs dry the
/// workers end within about half a second of each other.
pub(crate) fn claim_batch(rate: Rate, instances: usize) -> usize {
    match rate.per_second() {
        None => 100,
        Some(rps) => ((rps * instances as f64 / 4.0).ceil() as usize).clamp(2, 100),
    }
}

/// How a worker of a shared store claims its keys.
#[derive(Clone, Copy)]
pub(crate) struct Claims {
    pub(crate) worker: WorkerId,
    pub(crate) lease: Duration,
    pub(crate) batch: i64,
}

/// Where the fetch stage's keys come from.
pub(crate) enum Feed {
    /// The run's own plan, a page at a time (a SQLite store).
    Plan(DuePlan),
    /// The shared store's queue, claimed a batch at a time by this worker.
    Queue(WorkQueue, Claims),
}

/// Feeds due keys to the fetch stage: from the plan a page at a time, or, for a worker of a
/// shared store, claimed from the store's queue a batch at a time until no key is left to do
/// (keys other workers hold may come back if they die: it waits for those).
pub(crate) async fn feed(mut keys: Feed, feeder: fetch::queue::Feeder, stop: Stop) {
    const PAGE: i64 = 1000;
    let mut after = 0;
    loop {
        let next = match &mut keys {
            Feed::Plan(plan) => plan.page(after, PAGE).await,
            Feed::Queue(queue, c) => queue.claim(c.worker, c.lease, after, c.batch).await,
        };
        let page = match next {
            Ok(page) => page,
            Err(e) => return stop.trigger(store_stop(e)),
        };
        let Some(last) = page.last() else {
            let Feed::Queue(queue, c) = &mut keys else {
                return;
            };
            if after > 0 {
                // Claims of a worker that died may have come back behind the last one.
                after = 0;
                continue;
            }
            match queue.held_by_others(c.worker).await {
                Ok(0) => return,
                Ok(_) => {
                    tokio::time::sleep(CLAIM_RETRY.min(c.lease)).await;
                    continue;
                }
                Err(e) => return stop.trigger(store_stop(e)),
            }
        };
        after = last.seq;
        for key in page {
            if !feeder.push(key.chat_id, key.phone).await {
                return;
            }
        }
    }
}

/// Why a store error stops the run.
fn store_stop(e: StoreError) -> StopReason {
    match e.is_connection_lost() {
        true => StopReason::StoreLost(e.to_string()),
        false => StopReason::Store(e.to_string()),
    }
}
