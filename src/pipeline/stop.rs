//! The run's stop switch: signals, budgets, the deadline, quota and store errors all stop a run
//! through it, and the first reason given wins.

use std::sync::Arc;

use tokio::sync::watch;

/// Why a run stopped before every due key had an outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The plan's quota is used up (466).
    Quota(String),
    /// No usable instance is left.
    NoInstances(String),
    /// SIGINT or SIGTERM (or the caller's [`Stop`] handle).
    Interrupted,
    /// `--max-calls` reached.
    Budget,
    /// `--deadline` reached.
    Deadline,
    /// The store cannot take more writes.
    Store(String),
    /// The connection to a shared store ended, and this worker's instance leases with it.
    StoreLost(String),
}

/// A shared stop switch: the first reason given wins.
#[derive(Clone)]
pub struct Stop(Arc<watch::Sender<Option<StopReason>>>);

impl Default for Stop {
    fn default() -> Self {
        Stop(Arc::new(watch::channel(None).0))
    }
}

impl Stop {
    /// Stops the run for `reason`, unless it was already stopped.
    pub fn trigger(&self, reason: StopReason) {
        self.0.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// Why the run stopped, if it did.
    pub fn reason(&self) -> Option<StopReason> {
        self.0.borrow().clone()
    }

    /// Waits until the run is stopped.
    pub async fn stopped(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(Option::is_some).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_wins() {
        let stop = Stop::default();
        assert_eq!(stop.reason(), None);
        stop.trigger(StopReason::Budget);
        stop.trigger(StopReason::Interrupted);
        assert_eq!(stop.reason(), Some(StopReason::Budget));
    }
}
