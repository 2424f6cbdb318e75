//! Per-instance pacing: one governor limiter per instance, burst 1, with a safety margin; and a
//! slow-down after a 429 (the limit is per instance, so a 429 means our spacing was too tight
//! for this instance): each 429 adds extra spacing that fades over the following calls.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// How much longer than the limit's interval the pacer waits between calls.
pub const DEFAULT_MARGIN: f64 = 0.03;
/// Extra spacing (a fraction of the interval) each 429 adds, and its ceiling.
const SLOW_STEP: f64 = 0.1;
const SLOW_MAX: f64 = 1.0;
/// How much of the extra spacing each call takes away again.
const SLOW_FADE: f64 = 0.01;

pub struct Pacer {
    limiter: Option<DefaultDirectRateLimiter>,
    interval: Duration,
    slow: Mutex<SlowDown>,
}

#[derive(Default)]
struct SlowDown {
    extra: f64,
    last_call: Option<Instant>,
}

impl Pacer {
    /// A pacer for `rps` calls per second (0 means unlimited).
    pub fn new(rps: f64, margin: f64) -> Self {
        let interval = if rps > 0.0 {
            Duration::from_secs_f64((1.0 / rps) * (1.0 + margin.max(0.0)))
        } else {
            Duration::ZERO
        };
        let limiter = Quota::with_period(interval)
            .map(|quota| RateLimiter::direct(quota.allow_burst(NonZeroU32::MIN)));
        Pacer {
            limiter,
            interval,
            slow: Mutex::new(SlowDown::default()),
        }
    }

    /// Waits for this instance's next slot. Called by one dispatcher per instance.
    pub async fn ready(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
        // Spacing is kept from the previous call's actual start, so a call delayed by a slow-down
        // never leaves the next one too close behind it.
        let wait = {
            let slow = self.lock();
            slow.last_call.map_or(Duration::ZERO, |last| {
                (last + self.interval.mul_f64(1.0 + slow.extra))
                    .saturating_duration_since(Instant::now())
            })
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let mut slow = self.lock();
        slow.last_call = Some(Instant::now());
        slow.extra = (slow.extra - SLOW_FADE).max(0.0);
    }

    /// Called after a 429 from this instance.
    pub fn slow_down(&self) {
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

    #[tokio::test]
    async fn spaces_calls_by_the_interval_plus_margin() {
        let pacer = Pacer::new(50.0, 0.05);
        let start = Instant::now();
        for _ in 0..6 {
            pacer.ready().await;
        }
        // The first call is free; five intervals of 21 ms follow.
        assert!(
            start.elapsed() >= Duration::from_millis(100),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn a_429_slows_the_pace_for_a_while() {
        let pacer = Pacer::new(50.0, 0.0);
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

    #[tokio::test]
    async fn unlimited_means_no_wait() {
        let pacer = Pacer::new(0.0, 0.03);
        let start = Instant::now();
        for _ in 0..100 {
            pacer.ready().await;
        }
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
