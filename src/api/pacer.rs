//! Per-instance pacing: one governor limiter per instance, burst 1, with a safety margin, that
//! slows down for a while after a 429 (the limit is per instance, so a 429 means our spacing was
//! too tight for this instance).

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// How much longer than the limit's interval the pacer waits between calls.
pub const DEFAULT_MARGIN: f64 = 0.03;
/// How long a 429 slows the instance down.
const SLOW_FOR: Duration = Duration::from_secs(10);
/// The interval is multiplied by this while slowed.
const SLOW_FACTOR: f64 = 1.25;

pub struct Pacer {
    normal: Option<DefaultDirectRateLimiter>,
    slowed: Option<DefaultDirectRateLimiter>,
    slow_until: Mutex<Option<Instant>>,
}

impl Pacer {
    /// A pacer for `rps` calls per second (0 means unlimited).
    pub fn new(rps: f64, margin: f64) -> Self {
        let limiter = |factor: f64| -> Option<DefaultDirectRateLimiter> {
            if rps <= 0.0 {
                return None;
            }
            let interval = Duration::from_secs_f64((1.0 / rps) * (1.0 + margin.max(0.0)));
            let quota = Quota::with_period(interval.mul_f64(factor))?.allow_burst(NonZeroU32::MIN);
            Some(RateLimiter::direct(quota))
        };
        Pacer {
            normal: limiter(1.0),
            slowed: limiter(SLOW_FACTOR),
            slow_until: Mutex::new(None),
        }
    }

    /// Waits for this instance's next slot.
    pub async fn ready(&self) {
        if let Some(normal) = &self.normal {
            normal.until_ready().await;
        }
        if self.is_slowed() {
            if let Some(slowed) = &self.slowed {
                slowed.until_ready().await;
            }
        }
    }

    /// Called after a 429 from this instance.
    pub fn slow_down(&self) {
        let mut until = self.slow_until.lock().unwrap_or_else(|p| p.into_inner());
        *until = Some(Instant::now() + SLOW_FOR);
    }

    fn is_slowed(&self) -> bool {
        let until = self.slow_until.lock().unwrap_or_else(|p| p.into_inner());
        until.is_some_and(|t| Instant::now() < t)
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
    async fn a_429_slows_the_pace() {
        let pacer = Pacer::new(50.0, 0.0);
        pacer.slow_down();
        let start = Instant::now();
        for _ in 0..4 {
            pacer.ready().await;
        }
        // Three slowed intervals of 25 ms (unslowed: 20 ms).
        assert!(
            start.elapsed() >= Duration::from_millis(72),
            "{:?}",
            start.elapsed()
        );
    }
}
