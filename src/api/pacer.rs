//! Per-instance pacing: calls of one instance are spaced by the limit's interval plus a safety
//! margin, counted from the previous call's actual start; and a slow-down after a 429 (the limit
//! is per instance, so a 429 means our spacing was too tight for this instance): each 429 adds
//! extra spacing that fades over the following calls.
//!
//! Time is tokio's, so tests run the pacer on a paused clock. (governor was used here before; with
//! burst 1 its schedule is the same "previous start + interval" this module keeps anyway, and its
//! own clock cannot be paused, so it no longer earned its place.)

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Rate;

/// Extra spacing (a fraction of the interval) each 429 adds, and its ceiling.
const SLOW_STEP: f64 = 0.1;
const SLOW_MAX: f64 = 1.0;
/// How much of the extra spacing each call takes away again.
const SLOW_FADE: f64 = 0.01;

pub(crate) struct Pacer {
    /// The spacing between calls (interval plus margin); zero when unlimited.
    interval: Duration,
    slow: Mutex<SlowDown>,
}

#[derive(Default)]
struct SlowDown {
    extra: f64,
    last_call: Option<Instant>,
}

impl Pacer {
    /// A pacer for `rate` with `margin` extra spacing (a fraction of the interval).
    pub(crate) fn new(rate: Rate, margin: f64) -> Self {
        let interval = rate
            .interval()
            .map_or(Duration::ZERO, |i| i.mul_f64(1.0 + margin.max(0.0)));
        Pacer {
            interval,
            slow: Mutex::new(SlowDown::default()),
        }
    }

    /// Waits for this instance's next slot. Called by one dispatcher per instance.
    pub(crate) async fn ready(&self) {
        if self.interval.is_zero() {
            return;
        }
        let next = {
            let slow = self.lock();
            slow.last_call
                .map(|last| last + self.interval.mul_f64(1.0 + slow.extra))
        };
        if let Some(next) = next {
            tokio::time::sleep_until(next).await;
        }
        let mut slow = self.lock();
        slow.last_call = Some(Instant::now());
        slow.extra = (slow.extra - SLOW_FADE).max(0.0);
    }

    /// Called after a 429 from this instance.
    pub(crate) fn slow_down(&self) {
        let mut slow = self.lock();
        slow.extra = (slow.extra + SLOW_STEP).min(SLOW_MAX);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlowDown> {
        self.slow.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_calls_by_the_interval_plus_margin() {
        let pacer = Pacer::new(Rate::PerSecond(50.0), 0.05);
        let start = Instant::now();
        for _ in 0..6 {
            pacer.ready().await;
        }
        // The first call is free; five intervals of 21 ms follow.
        assert_eq!(start.elapsed(), Duration::from_millis(105));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_slows_the_pace_for_a_while() {
        let pacer = Pacer::new(Rate::PerSecond(50.0), 0.0);
        pacer.ready().await;
        pacer.slow_down();
        pacer.slow_down();
        let start = Instant::now();
        for _ in 0..3 {
            pacer.ready().await;
        }
        // Three intervals of about 24 ms (unslowed: 20 ms).
        assert!(
            start.elapsed() >= Duration::from_millis(68),
            "{:?}",
            start.elapsed()
        );
        assert!(
            pacer.lock().extra < 2.0 * SLOW_STEP,
            "the extra spacing fades"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_means_no_wait() {
        let pacer = Pacer::new(Rate::Unlimited, 0.03);
        let start = Instant::now();
        for _ in 0..100 {
            pacer.ready().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
