//! Live counters of one run, shared by the fetcher, the writer, the progress display and the
//! final summary.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::api::pacer::Margin;

use crate::reason::Reason;
use crate::store::ledger::{MinuteRow, RunCounts};

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) enriched: AtomicU64,
    pub(crate) new: AtomicU64,
    pub(crate) changed: AtomicU64,
    pub(crate) unchanged: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) http_429: AtomicU64,
    pub(crate) retries: AtomicU64,
    /// Telegram `checkAccount` calls (counted in `requests` too), and the handles resolved.
    pub(crate) checks: AtomicU64,
    pub(crate) resolved: AtomicU64,
    failed_by_reason: Mutex<BTreeMap<Reason, u64>>,
    calls_per_instance: Mutex<BTreeMap<String, u64>>,
    spacing_ms: Mutex<BTreeMap<String, f64>>,
    /// Answers per (instance, class): `200`, `429`, `4xx`, `5xx`, `error` (no answer).
    responses: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Calls and 429s per (instance, minute since the first call), and the buckets changed
    /// since they were last taken (for the run report's chart).
    minutes: Mutex<Minutes>,
    /// Why no instance may call Telegram's checkAccount any more (its quota), once none may.
    checks_over: Mutex<Option<String>>,
    /// The pool's pacing while it runs: its learnt margin and the limit's interval.
    pacing: Mutex<Option<(Arc<Margin>, Duration)>>,
}

impl Stats {
    /// Follows the pool's pacing (the fetch stage's margin, for a limit of `interval`).
    pub(crate) fn follow_pacing(&self, margin: Arc<Margin>, interval: Duration) {
        *lock(&self.pacing) = Some((margin, interval));
    }

    /// The spacing the pool's pacer uses now; `None` before it starts or when unpaced.
    pub(crate) fn pool_spacing(&self) -> Option<Duration> {
        let pacing = lock(&self.pacing);
        let (margin, interval) = pacing.as_ref()?;
        (!interval.is_zero()).then(|| interval.mul_f64(1.0 + margin.current()))
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }

    /// Copies the fetch and write counters into `counts`.
    pub(crate) fn fill(&self, counts: &mut RunCounts) {
        counts.enriched = Self::get(&self.enriched);
        counts.new = Self::get(&self.new);
        counts.changed = Self::get(&self.changed);
        counts.unchanged = Self::get(&self.unchanged);
        counts.failed = Self::get(&self.failed);
        counts.requests = Self::get(&self.requests);
        counts.http_429 = Self::get(&self.http_429);
        counts.retries = Self::get(&self.retries);
        counts.checks = Self::get(&self.checks);
        counts.resolved = Self::get(&self.resolved);
    }

    pub(crate) fn done(&self) -> u64 {
        Self::get(&self.enriched) + Self::get(&self.failed)
    }

    pub(crate) fn count_failure(&self, reason: Reason) {
        Self::add(&self.failed, 1);
        *lock(&self.failed_by_reason).entry(reason).or_default() += 1;
    }

    pub(crate) fn count_call(&self, instance: &str) {
        Self::add(&self.requests, 1);
        *lock(&self.calls_per_instance)
            .entry(instance.to_string())
            .or_default() += 1;
        lock(&self.minutes).add(instance, |m| m.calls += 1);
    }

    /// The per-minute buckets changed since the last call, with the pool's spacing now.
    pub(crate) fn take_minutes(&self) -> Vec<MinuteRow> {
        let spacing_ms = self.pool_spacing().map(|s| s.as_secs_f64() * 1000.0);
        let mut minutes = lock(&self.minutes);
        let changed = std::mem::take(&mut minutes.changed);
        changed
            .into_iter()
            .filter_map(|key| {
                let counts = minutes.counts.get(&key)?;
                Some(MinuteRow {
                    instance: key.0,
                    minute: key.1,
                    calls: counts.calls,
                    http_429: counts.http_429,
                    spacing_ms,
                })
            })
            .collect()
    }

    /// Notes that no instance may call checkAccount any more, and why.
    pub(crate) fn note_checks_over(&self, why: &str) {
        *lock(&self.checks_over) = Some(why.to_string());
    }

    /// Why checkAccount calls ended before the run did, if they did.
    pub(crate) fn checks_over(&self) -> Option<String> {
        lock(&self.checks_over).clone()
    }

    pub(crate) fn failed_by_reason(&self) -> BTreeMap<Reason, u64> {
        lock(&self.failed_by_reason).clone()
    }

    /// Notes the pacer's spacing of `instance` (when its dispatcher ends).
    pub(crate) fn note_spacing(&self, instance: &str, spacing: std::time::Duration) {
        lock(&self.spacing_ms).insert(instance.to_string(), spacing.as_secs_f64() * 1000.0);
    }

    /// The last spacing noted per instance, in milliseconds.
    pub(crate) fn spacing_ms(&self) -> BTreeMap<String, f64> {
        lock(&self.spacing_ms).clone()
    }

    pub(crate) fn calls_per_instance(&self) -> BTreeMap<String, u64> {
        lock(&self.calls_per_instance).clone()
    }

    /// Counts an answer of `instance` with HTTP status `status` (`None`: no answer).
    pub(crate) fn count_response(&self, instance: &str, status: Option<u16>) {
        let class = match status {
            None => "error",
            Some(429) => "429",
            Some(200..=299) => "200",
            Some(400..=499) => "4xx",
            Some(_) => "5xx",
        };
        *lock(&self.responses)
            .entry((instance.to_string(), class))
            .or_default() += 1;
        if class == "429" {
            lock(&self.minutes).add(instance, |m| m.http_429 += 1);
        }
    }

    /// Answers per instance and class.
    pub(crate) fn responses(&self) -> BTreeMap<(String, &'static str), u64> {
        lock(&self.responses).clone()
    }
}

/// Calls per instance and minute of the run (since its first call).
#[derive(Default)]
struct Minutes {
    first_call: Option<std::time::Instant>,
    counts: BTreeMap<(String, u32), MinuteCounts>,
    changed: std::collections::BTreeSet<(String, u32)>,
}

#[derive(Default, Clone, Copy)]
struct MinuteCounts {
    calls: u64,
    http_429: u64,
}

impl Minutes {
    /// Updates `instance`'s bucket of this minute.
    fn add(&mut self, instance: &str, update: impl FnOnce(&mut MinuteCounts)) {
        let first = *self.first_call.get_or_insert_with(std::time::Instant::now);
        let minute = (first.elapsed().as_secs() / 60) as u32;
        let key = (instance.to_string(), minute);
        update(self.counts.entry(key.clone()).or_default());
        self.changed.insert(key);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
