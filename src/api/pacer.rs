//! Per-instance pacing with a margin that learns. Calls of one instance are spaced by the limit's
//! interval T plus a margin, counted from the previous call's actual start. The margin is what
//! the network's arrival jitter needs: a call that reaches the API's strict limiter less than T
//! after the last accepted one gets 429, so with jitter J the margin must be close to J.
//!
//! The margin is learnt from the answers, for the pool as a whole (every instance behind one API
//! URL crosses the same network path, so each 429 teaches every instance):
//! - it starts at `--pacing-margin` and, until the first 429, probes down quickly: by 0.05% of T
//!   per call, and at most 0.2% per round of calls (one call of each instance), so a pool of 50
//!   does not overshoot the edge by 50 calls' worth before the first 429s come back;
//! - a 429 raises it by a step (35% of itself, at least 1% of T), once per episode: 429s of
//!   calls sent before the last raise (or at its instant) were paced with the old margin and do
//!   not raise it again;
//! - every accepted call then lowers it by a thousandth of the last step, so in steady state
//!   about one call in a thousand finds the edge (the 429 share stays near 0.1%);
//! - a run whose instances were paced before at the same rate (the store keeps each run's
//!   spacing) starts from the margin that run ended with, probing down slowly from there.
//!
//! Under the learnt spacing, every call passes governor: one limiter per instance at the
//! configured rate with a burst of 1, the hard floor that no pacing decision can go below (the
//! margin only adds delay on top of it). Time is tokio's for both, governor's through a clock
//! that reads tokio's, so tests run the pacer on a paused clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::Rate;

/// How fast the margin probes down before the first 429: a fraction of T per accepted call…
const FAST_PROBE: f64 = 0.0005;
/// …and at most this fraction per round of calls (one call of every instance), so a large pool
/// does not overshoot the edge before its first 429s come back.
const FAST_PROBE_PER_ROUND: f64 = 0.002;
/// A 429 raises the margin by this share of itself…
const RAISE: f64 = 0.35;
/// …and by at least this fraction of T.
const MIN_RAISE: f64 = 0.01;
/// After a raise, each accepted call lowers the margin by this share of the raise: the share of
/// calls that find the edge in steady state.
const PROBE_SHARE: f64 = 0.001;
/// The margin never exceeds one interval.
const MAX_MARGIN: f64 = 1.0;
/// Intervals shorter than this are below what tokio's 1 ms timer can pace.
const TIMER_TICKS_TO_PACE: Duration = Duration::from_millis(2);

/// The margin a pool has learnt, shared by its instances' pacers.
pub(crate) struct Margin {
    state: Mutex<MarginState>,
}

struct MarginState {
    /// Extra spacing, as a fraction of T.
    margin: f64,
    /// The last raise; `None` until the first 429.
    last_raise: Option<f64>,
    /// The probe before the first 429, per accepted call.
    fast_probe: f64,
    /// Calls sent before this instant were paced with an older, smaller margin.
    raised_at: Option<Instant>,
}

impl Margin {
    /// A margin starting at `initial` (a fraction of the interval), for a pool of `instances`.
    pub(crate) fn new(initial: f64, instances: usize) -> Arc<Margin> {
        Arc::new(Margin {
            state: Mutex::new(MarginState {
                margin: initial.clamp(0.0, MAX_MARGIN),
                last_raise: None,
                fast_probe: FAST_PROBE.min(FAST_PROBE_PER_ROUND / instances.max(1) as f64),
                raised_at: None,
            }),
        })
    }

    /// A margin an earlier run of these instances ended with: it starts there and probes down
    /// slowly, as after a 429, so that a run that starts again (a worker restarted, the next
    /// night) does not pay a 429 per instance to find the edge again.
    pub(crate) fn learnt(margin: f64) -> Arc<Margin> {
        Arc::new(Margin {
            state: Mutex::new(MarginState {
                margin: if margin.is_nan() {
                    0.0
                } else {
                    margin.clamp(0.0, MAX_MARGIN)
                },
                last_raise: Some(MIN_RAISE),
                fast_probe: FAST_PROBE,
                raised_at: None,
            }),
        })
    }

    /// The current margin, as a fraction of the interval.
    pub(crate) fn current(&self) -> f64 {
        self.lock().margin
    }

    /// A call sent at `sent_at` was answered 429.
    pub(crate) fn rate_limited(&self, sent_at: Instant) {
        let mut s = self.lock();
        if s.raised_at.is_some_and(|raised| sent_at <= raised) {
            return;
        }
        let raise = (s.margin * RAISE).max(MIN_RAISE);
        s.margin = (s.margin + raise).min(MAX_MARGIN);
        s.last_raise = Some(raise);
        s.raised_at = Some(Instant::now());
    }

    /// A call got through the limiter (any answer but 429).
    pub(crate) fn accepted(&self) {
        let mut s = self.lock();
        let probe = s
            .last_raise
            .map_or(s.fast_probe, |raise| raise * PROBE_SHARE);
        s.margin = (s.margin - probe).max(0.0);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MarginState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// governor's clock for the floor: tokio's, so that it follows a paused clock in tests.
#[derive(Debug, Clone, Copy, Default)]
struct TokioClock;

impl governor::clock::Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> std::time::Instant {
        Instant::now().into_std()
    }
}

/// The hard floor: one call per interval, burst 1, whatever the margin says.
type Floor = governor::RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    TokioClock,
    governor::middleware::NoOpMiddleware<std::time::Instant>,
>;

/// One instance's pacer.
pub(crate) struct Pacer {
    /// The limit's interval T; zero when unlimited.
    interval: Duration,
    margin: Arc<Margin>,
    last_call: Mutex<Option<Instant>>,
    /// governor's limiter at the configured rate, which every call passes (`None`: unlimited).
    floor: Option<Floor>,
}

impl Pacer {
    /// A pacer for `rate`, spacing calls by T plus the pool's learnt `margin`.
    pub(crate) fn new(rate: Rate, margin: Arc<Margin>) -> Self {
        let interval = rate.interval().unwrap_or(Duration::ZERO);
        Pacer {
            interval,
            margin,
            last_call: Mutex::new(None),
            floor: governor::Quota::with_period(interval)
                .map(|quota| governor::RateLimiter::direct_with_clock(quota, TokioClock)),
        }
    }

    /// The spacing between this instance's calls now (never under T: the margin is added).
    pub(crate) fn spacing(&self) -> Duration {
        self.interval + self.interval.mul_f64(self.margin.current())
    }

    /// Waits for this instance's next slot and returns when the call starts. Called by one
    /// dispatcher per instance.
    pub(crate) async fn ready(&self) -> Instant {
        if self.interval.is_zero() {
            return Instant::now();
        }
        let last = *self.lock();
        if let Some(slot) = last.map(|last| last + self.spacing()) {
            // Tokio's timer ticks every millisecond, so a wait ends on the tick after its slot.
            // An interval that short cannot be paced by it: a slot already due is taken at once
            // (governor's floor still holds). At real paces the tick stays: the margin learnt
            // at those paces includes it (skipping it there cost a fresh pacer more 429s).
            let due = slot <= Instant::now();
            if !(due && self.interval < TIMER_TICKS_TO_PACE) {
                tokio::time::sleep_until(slot).await;
            }
        }
        self.pass_the_floor().await;
        let now = Instant::now();
        *self.lock() = Some(now);
        now
    }

    /// Waits until governor lets a call through at the configured rate. The learnt spacing is
    /// never shorter, so this waits only if pacing ever went wrong.
    async fn pass_the_floor(&self) {
        let Some(floor) = &self.floor else {
            return;
        };
        while let Err(not_until) = floor.check() {
            let now = governor::clock::Clock::now(&TokioClock);
            tokio::time::sleep(not_until.wait_time_from(now)).await;
        }
    }

    /// A call of this instance sent at `sent_at` was answered 429.
    pub(crate) fn rate_limited(&self, sent_at: Instant) {
        self.margin.rate_limited(sent_at);
    }

    /// A call of this instance got through the limiter.
    pub(crate) fn accepted(&self) {
        self.margin.accepted();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.last_call.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacer(rps: f64, margin: f64) -> (Pacer, Arc<Margin>) {
        let margin = Margin::new(margin, 1);
        (Pacer::new(Rate::PerSecond(rps), margin.clone()), margin)
    }

    #[tokio::test(start_paused = true)]
    async fn spaces_calls_by_the_interval_plus_margin() {
        let (pacer, _) = pacer(50.0, 0.05);
        let start = Instant::now();
        for _ in 0..6 {
            pacer.ready().await;
        }
        // The first call is free; five intervals of 21 ms follow.
        assert_eq!(start.elapsed(), Duration::from_millis(105));
    }

    #[tokio::test(start_paused = true)]
    async fn a_margin_of_zero_never_goes_faster_than_the_rate() {
        let (pacer, _) = pacer(3.0, 0.0);
        let interval = Rate::PerSecond(3.0).interval().unwrap();
        let mut last = pacer.ready().await;
        for _ in 0..50 {
            let now = pacer.ready().await;
            assert!(now - last >= interval, "{:?}", now - last);
            last = now;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn governor_holds_the_floor_when_the_spacing_goes_wrong() {
        let (pacer, _) = pacer(10.0, 0.0);
        let first = pacer.ready().await;
        // As if the pacer had lost track of its last call: governor still spaces the next one.
        *pacer.lock() = None;
        let second = pacer.ready().await;
        assert_eq!(second - first, Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_raises_the_margin_once_per_episode() {
        let (pacer, margin) = pacer(10.0, 0.03);
        let before = pacer.ready().await;
        margin.rate_limited(before);
        let raised = margin.current();
        // 0.03 + max(35% of 0.03, 1%).
        assert!((raised - 0.0405).abs() < 1e-9, "{raised}");
        // A second 429 of a call sent before the raise is the same episode.
        margin.rate_limited(before);
        assert_eq!(margin.current(), raised);
        let after = pacer.ready().await;
        margin.rate_limited(after);
        assert!(margin.current() > raised);
    }

    #[tokio::test(start_paused = true)]
    async fn accepted_calls_probe_back_down_slowly_after_a_429() {
        let margin = Margin::new(0.1, 4);
        for _ in 0..100 {
            margin.accepted();
        }
        // 25 rounds of 4 calls, 0.2% of T a round.
        assert!(
            (margin.current() - 0.05).abs() < 1e-9,
            "fast before any 429"
        );
        margin.rate_limited(Instant::now());
        let raised = margin.current();
        for _ in 0..100 {
            margin.accepted();
        }
        // The raise was 35% of 0.05; each call takes a thousandth of it back.
        let probed = raised - margin.current();
        assert!((probed - 100.0 * 0.0175 * 0.001).abs() < 1e-9, "{probed}");
        for _ in 0..1_000_000 {
            margin.accepted();
        }
        assert_eq!(margin.current(), 0.0, "never below the limit itself");
    }

    #[test]
    fn a_learnt_margin_starts_where_it_was_and_probes_slowly() {
        let learnt = Margin::learnt(0.04);
        for _ in 0..100 {
            learnt.accepted();
        }
        let fresh = Margin::new(0.04, 1);
        for _ in 0..100 {
            fresh.accepted();
        }
        assert!(learnt.current() > 0.0389, "{}", learnt.current());
        assert!(fresh.current() < 0.0151, "{}", fresh.current());
        assert_eq!(Margin::learnt(f64::NAN).current(), 0.0);
        assert_eq!(Margin::learnt(7.0).current(), MAX_MARGIN);
    }

    #[test]
    fn a_large_pool_probes_per_round_not_per_call() {
        // 50 instances answer 500 calls while a 429 of the first ones is on its way back: the
        // margin may move by 10 rounds' worth then, not by 500 calls' worth.
        let margin = Margin::new(0.06, 50);
        for _ in 0..500 {
            margin.accepted();
        }
        assert!(
            (margin.current() - 0.04).abs() < 1e-9,
            "{}",
            margin.current()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_means_no_wait() {
        let pacer = Pacer::new(Rate::Unlimited, Margin::new(0.03, 1));
        let start = Instant::now();
        for _ in 0..100 {
            pacer.ready().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
