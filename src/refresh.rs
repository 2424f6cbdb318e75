//! Which stale contacts a budget refreshes first under `--refresh adaptive` (pure).
//!
//! After Cho and Garcia-Molina, *Estimating frequency of change* (ACM TOIT, 2003) and *Effective
//! page refresh policies for Web crawlers* (ACM TODS, 2003):
//! - **Each contact's change rate** is estimated from what its checks found (a check: a fetch
//!   after an earlier one, which found the contact changed or not), with Cho and
//!   Garcia-Molina's estimator `-ln((n - X + 0.5) / (n + 0.5)) / I` for `X` changes in `n`
//!   checks `I` days apart. A **pooled prior** steadies it: two checks of the store's pooled
//!   record are added to each contact's own, so a contact checked once or twice leans on the
//!   store, one checked often on itself.
//! - **The budget is spread by the Lagrangian optimum** of time-averaged freshness: a contact
//!   changing `λ` times a day and refreshed `f` times a day at even intervals is fresh
//!   `F(λ, f) = (1 - e^(-λ/f)) / (λ/f)` of the time, and the freshest store for a budget of `B`
//!   refreshes a day gives every contact the `f` where `∂F/∂f` equals one multiplier `μ`, with
//!   `Σ f = B`. Contacts that change much faster than they can be refreshed (`1/λ < μ`) get no
//!   refresh at all: their freshness would not last.
//! - **Each night** the stale contacts are ordered by how overdue they are against their own
//!   interval, `age × f`, so over the nights each is refreshed about every `1/f` days.

use chrono::{DateTime, Utc};

/// What the checks of one contact found (a check: a fetch after an earlier one).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Checks {
    pub(crate) changed: u32,
    /// The days before the checks that found a change, summed.
    pub(crate) changed_days: f64,
    pub(crate) unchanged: u32,
    /// The days before the checks that found none, summed.
    pub(crate) unchanged_days: f64,
}

/// The pooled record's checks each contact's estimate starts from: a contact checked once or
/// twice leans on the store's record, one checked often on its own.
const PRIOR_CHECKS: f64 = 2.0;

/// The shortest interval an estimate divides by (two fetches in the same minute say little).
const MIN_INTERVAL_DAYS: f64 = 1.0 / 1440.0;

/// The slowest and fastest rates (changes a day) an estimate gives: once in ten years, four
/// times a day.
const RATES: (f64, f64) = (1.0 / 3650.0, 4.0);

impl Checks {
    fn count(&self) -> f64 {
        f64::from(self.changed) + f64::from(self.unchanged)
    }

    /// The mean interval of the checks, in days.
    fn interval(&self) -> f64 {
        ((self.changed_days + self.unchanged_days) / self.count()).max(MIN_INTERVAL_DAYS)
    }
}

/// Cho and Garcia-Molina's estimator of the rate from `n` checks `interval` days apart of which
/// `changed` found a change: `-ln((n - X + 0.5) / (n + 0.5)) / I`, which stays finite when
/// every check found a change (the plain estimate `X / (n I)` would undercount, and the
/// maximum-likelihood one would be infinite).
fn estimate(n: f64, changed: f64, interval: f64) -> f64 {
    let rate = -((n - changed + 0.5) / (n + 0.5)).ln() / interval;
    rate.clamp(RATES.0, RATES.1)
}

/// The store's pooled record: the rate the contacts' checks show taken together.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pooled {
    rate: f64,
}

/// The store's checks summed, contact by contact (the first of the three passes).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Record(Checks);

impl Record {
    pub(crate) fn add(&mut self, c: &Checks) {
        let sum = &mut self.0;
        sum.changed = sum.changed.saturating_add(c.changed);
        sum.changed_days += c.changed_days;
        sum.unchanged = sum.unchanged.saturating_add(c.unchanged);
        sum.unchanged_days += c.unchanged_days;
    }

    /// The pooled record's rate.
    pub(crate) fn pooled(&self) -> Pooled {
        let all = &self.0;
        let rate = match all.count() > 0.0 {
            true => estimate(all.count(), f64::from(all.changed), all.interval()),
            // Nothing checked yet: a change a month, until the checks say otherwise.
            false => 1.0 / 30.0,
        };
        Pooled { rate }
    }
}

impl Pooled {
    /// The pooled rate of `contacts`' checks.
    #[cfg(test)]
    fn fit(contacts: &[Checks]) -> Pooled {
        let mut record = Record::default();
        contacts.iter().for_each(|c| record.add(c));
        record.pooled()
    }

    /// The estimated rate of a contact whose checks found `checks`: its own record with
    /// [`PRIOR_CHECKS`] checks of the pooled record's added, at its own interval.
    pub(crate) fn rate(&self, checks: &Checks) -> f64 {
        if checks.count() == 0.0 {
            return self.rate;
        }
        let interval = checks.interval();
        let pooled_change = 1.0 - (-self.rate * interval).exp();
        let n = checks.count() + PRIOR_CHECKS;
        let changed = f64::from(checks.changed) + PRIOR_CHECKS * pooled_change;
        estimate(n, changed, interval)
    }
}

/// The time-averaged freshness of a contact changing `rate` times a day and refreshed
/// `f` times a day at even intervals.
pub fn freshness(rate: f64, f: f64) -> f64 {
    if f <= 0.0 {
        return 0.0;
    }
    let x = rate / f;
    if x < 1e-9 {
        1.0 - x / 2.0
    } else {
        (1.0 - (-x).exp()) / x
    }
}

/// `∂F/∂f`: what one more refresh a day buys this contact.
fn marginal(rate: f64, f: f64) -> f64 {
    let x = rate / f;
    ((1.0 - (-x).exp()) - x * (-x).exp()) / rate
}

/// The refreshes a day that bring a contact's marginal gain down to `mu` (0 when even the first
/// is worth less: `1/rate <= mu`).
fn frequency(rate: f64, mu: f64) -> f64 {
    if mu >= 1.0 / rate {
        return 0.0;
    }
    // The marginal gain falls as f grows: bisect in log space.
    let (mut low, mut high) = (1e-9f64, 1e4f64);
    for _ in 0..80 {
        let mid = (low * high).sqrt();
        if marginal(rate, mid) > mu {
            low = mid;
        } else {
            high = mid;
        }
    }
    (low * high).sqrt()
}

/// The refreshes a day each of `rates` gets when `budget` refreshes a day are spread for the
/// freshest store.
#[cfg(test)]
fn allocate(rates: &[f64], budget: f64) -> Vec<f64> {
    let counted: Vec<(f64, usize)> = rates.iter().map(|r| (*r, 1)).collect();
    allocate_counted(&counted, budget)
}

/// [`allocate`] for `count` contacts of each rate: the refreshes a day one contact of each gets.
fn allocate_counted(rates: &[(f64, usize)], budget: f64) -> Vec<f64> {
    if rates.is_empty() || budget <= 0.0 {
        return vec![0.0; rates.len()];
    }
    let total = |mu: f64| {
        rates
            .iter()
            .map(|(r, n)| *n as f64 * frequency(*r, mu))
            .sum::<f64>()
    };
    // The total falls as mu grows: bisect in log space.
    let (mut low, mut high) = (1e-12f64, 1e6f64);
    for _ in 0..100 {
        let mid = (low * high).sqrt();
        if total(mid) > budget {
            low = mid;
        } else {
            high = mid;
        }
    }
    rates.iter().map(|(r, _)| frequency(*r, high)).collect()
}

/// The freshness computed for a mix of contacts (`(share, changes a day)`) when a `budget`
/// share of them is refreshed a day: refreshed evenly (oldest first) and at the Lagrangian
/// optimum. What the simulation's figures are held against.
pub fn computed_freshness(mix: &[(f64, f64)], budget: f64) -> (f64, f64) {
    let even = mix
        .iter()
        .map(|(share, rate)| share * freshness(*rate, budget))
        .sum();
    // A thousand contacts per unit of share: the optimum's frequencies do not depend on scale.
    let counted: Vec<(f64, usize)> = mix
        .iter()
        .map(|(share, rate)| (*rate, (share * 1000.0).round() as usize))
        .collect();
    let total: usize = counted.iter().map(|(_, n)| n).sum();
    let f = allocate_counted(&counted, budget * total as f64);
    let best = counted
        .iter()
        .zip(&f)
        .map(|((rate, n), f)| *n as f64 * freshness(*rate, *f))
        .sum::<f64>()
        / total as f64;
    (even, best)
}

/// A stale contact the plan may refresh.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate {
    pub(crate) fetched_at: DateTime<Utc>,
    pub(crate) checks: Checks,
}

/// Buckets of rates the allocation is solved for (contacts of one bucket share a frequency).
const BUCKETS: usize = 200;

/// How the contacts' estimated rates spread over [`BUCKETS`] log buckets (the second pass).
#[derive(Debug, Clone)]
pub(crate) struct Spread {
    pooled: Pooled,
    counts: Vec<usize>,
}

impl Spread {
    pub(crate) fn new(pooled: Pooled) -> Spread {
        Spread {
            pooled,
            counts: vec![0; BUCKETS],
        }
    }

    pub(crate) fn add(&mut self, c: &Checks) {
        self.counts[bucket(self.pooled.rate(c))] += 1;
    }

    /// Each bucket's refreshes a day when `budget` refreshes a day are spread for the freshest
    /// store, and the priorities they give at `now`.
    pub(crate) fn priorities(&self, budget: f64, now: DateTime<Utc>) -> Priorities {
        let buckets: Vec<(f64, usize)> =
            (0..BUCKETS).map(|b| (centre(b), self.counts[b])).collect();
        Priorities {
            pooled: self.pooled,
            per_bucket: allocate_counted(&buckets, budget),
            now,
        }
    }
}

/// A rate's bucket, and a bucket's rate.
fn bucket(rate: f64) -> usize {
    let (low, high) = RATES;
    let at = (rate / low).ln() / (high / low).ln() * (BUCKETS - 1) as f64;
    (at.round().max(0.0) as usize).min(BUCKETS - 1)
}

fn centre(b: usize) -> f64 {
    let (low, high) = RATES;
    low * (high / low).powf(b as f64 / (BUCKETS - 1) as f64)
}

/// How overdue each contact is against its own optimal interval (the third pass).
#[derive(Debug, Clone)]
pub(crate) struct Priorities {
    pooled: Pooled,
    per_bucket: Vec<f64>,
    now: DateTime<Utc>,
}

impl Priorities {
    /// `c`'s priority (`age × f`; 0 when the optimum gives it no refresh) and its age in days.
    pub(crate) fn of(&self, c: &Candidate) -> (f64, f64) {
        let age = (self.now - c.fetched_at).as_seconds_f64().max(0.0) / 86_400.0;
        let f = self.per_bucket[bucket(self.pooled.rate(&c.checks))];
        (age * f, age)
    }
}

/// The `k` items of the highest priority seen (ties: the older first), in memory of `k`.
pub(crate) struct Top<T> {
    k: usize,
    heap: std::collections::BinaryHeap<std::cmp::Reverse<Ranked<T>>>,
}

/// An item with its priority and age, ordered by both.
struct Ranked<T>(f64, f64, T);

impl<T> PartialEq for Ranked<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl<T> Eq for Ranked<T> {}
impl<T> PartialOrd for Ranked<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Ranked<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0).then(self.1.total_cmp(&other.1))
    }
}

impl<T> Top<T> {
    pub(crate) fn new(k: usize) -> Top<T> {
        Top {
            k,
            heap: std::collections::BinaryHeap::with_capacity(k.min(1 << 20) + 1),
        }
    }

    pub(crate) fn push(&mut self, (priority, age): (f64, f64), item: T) {
        if self.k == 0 {
            return;
        }
        self.heap
            .push(std::cmp::Reverse(Ranked(priority, age, item)));
        if self.heap.len() > self.k {
            self.heap.pop();
        }
    }

    /// The items, the highest priority first.
    pub(crate) fn into_sorted(self) -> Vec<T> {
        let mut ranked: Vec<Ranked<T>> = self.heap.into_iter().map(|r| r.0).collect();
        ranked.sort_by(|a, b| b.cmp(a));
        ranked.into_iter().map(|r| r.2).collect()
    }
}

/// The order to refresh `candidates` in at `now`, with `budget` refreshes a day: most overdue
/// against their own optimal interval first; those the optimum gives no refresh last, stalest
/// first. Returns indexes into `candidates`. (The plan makes the same three passes over the
/// store, keeping only the calls it can make.)
#[cfg(test)]
fn order(candidates: &[Candidate], budget: f64, now: DateTime<Utc>) -> Vec<usize> {
    let mut record = Record::default();
    candidates.iter().for_each(|c| record.add(&c.checks));
    let mut spread = Spread::new(record.pooled());
    candidates.iter().for_each(|c| spread.add(&c.checks));
    let priorities = spread.priorities(budget, now);
    let mut top = Top::new(candidates.len());
    for (i, c) in candidates.iter().enumerate() {
        top.push(priorities.of(c), i);
    }
    top.into_sorted()
}

/// The days between runs, as the ledger's recent run starts (`starts`, any order) show: their
/// median gap, within an hour and thirty days; one day when there are too few.
pub(crate) fn run_interval_days(starts: &[DateTime<Utc>]) -> f64 {
    let mut sorted = starts.to_vec();
    sorted.sort();
    let mut gaps: Vec<f64> = sorted
        .windows(2)
        .map(|w| (w[1] - w[0]).as_seconds_f64() / 86_400.0)
        .filter(|g| *g > 0.0)
        .collect();
    if gaps.is_empty() {
        return 1.0;
    }
    gaps.sort_by(f64::total_cmp);
    gaps[gaps.len() / 2].clamp(1.0 / 24.0, 30.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mix of the issue: 5% change every 7 days, 25% every 30, 70% every 365.
    const MIX: [(f64, f64); 3] = [(0.05, 1.0 / 7.0), (0.25, 1.0 / 30.0), (0.70, 1.0 / 365.0)];

    fn mix_contacts(n: usize) -> Vec<f64> {
        MIX.iter()
            .flat_map(|(share, rate)| std::iter::repeat_n(*rate, (share * n as f64) as usize))
            .collect()
    }

    #[test]
    fn the_optimum_of_the_mix_is_the_lagrangian_s() {
        for (share, uniform, optimum) in [
            (0.02, 0.783, 0.807),
            (0.05, 0.880, 0.909),
            (0.10, 0.930, 0.952),
        ] {
            let rates = mix_contacts(1000);
            let budget = share * rates.len() as f64;
            let even: f64 = rates.iter().map(|r| freshness(*r, share)).sum::<f64>() / 1000.0;
            let f = allocate(&rates, budget);
            let spent: f64 = f.iter().sum();
            let best: f64 = rates
                .iter()
                .zip(&f)
                .map(|(r, f)| freshness(*r, *f))
                .sum::<f64>()
                / 1000.0;
            assert!(
                (spent - budget).abs() < 1e-6 * budget,
                "{spent} of {budget}"
            );
            assert!((even - uniform).abs() < 0.0006, "{share}: uniform {even}");
            assert!((best - optimum).abs() < 0.0006, "{share}: optimum {best}");
        }
    }

    #[test]
    fn a_contact_changing_faster_than_it_can_be_kept_gets_nothing() {
        // Budget for a tenth of a refresh a day per contact; one contact changes hourly.
        let f = allocate(&[24.0, 0.01, 0.01], 0.3);
        assert_eq!(f[0], 0.0);
        assert!((f[1] + f[2] - 0.3).abs() < 1e-6);
    }

    #[test]
    fn the_estimate_follows_the_checks_and_leans_on_the_prior_when_they_are_few() {
        let quiet = Checks {
            unchanged: 6,
            unchanged_days: 300.0,
            ..Checks::default()
        };
        let busy = Checks {
            changed: 6,
            changed_days: 60.0,
            ..Checks::default()
        };
        let new = Checks::default();
        let mut contacts = vec![quiet; 70];
        contacts.extend(vec![busy; 30]);
        let pooled = Pooled::fit(&contacts);
        let (q, b, n) = (pooled.rate(&quiet), pooled.rate(&busy), pooled.rate(&new));
        assert!(q < 1.0 / 150.0, "quiet {q}");
        assert!(b > 1.0 / 10.0, "busy {b}");
        assert!(
            q < n && n < b,
            "unchecked {n} sits between, as the population does"
        );
    }

    #[test]
    fn the_most_overdue_against_their_own_interval_come_first() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let days_ago = |d: i64| now - chrono::Duration::days(d);
        let quiet = Checks {
            unchanged: 8,
            unchanged_days: 400.0,
            ..Checks::default()
        };
        let monthly = Checks {
            changed: 4,
            changed_days: 120.0,
            unchanged: 4,
            unchanged_days: 40.0,
        };
        let mut candidates = vec![
            Candidate {
                fetched_at: days_ago(60),
                checks: quiet
            };
            50
        ];
        candidates.extend(vec![
            Candidate {
                fetched_at: days_ago(40),
                checks: monthly
            };
            50
        ]);
        let order = order(&candidates, 3.0, now);
        assert_eq!(order.len(), 100);
        // Oldest-first would take the quiet ones (60 days old); the optimum takes the monthly
        // ones, which lose their freshness much sooner.
        assert!(order[..10].iter().all(|i| *i >= 50), "{order:?}");
    }

    #[test]
    fn the_run_interval_is_the_median_gap() {
        let t = |h: i64| DateTime::from_timestamp(1_800_000_000 + h * 3600, 0).unwrap();
        assert_eq!(run_interval_days(&[]), 1.0);
        assert_eq!(run_interval_days(&[t(0), t(24), t(48), t(49)]), 1.0);
        assert_eq!(run_interval_days(&[t(0), t(12), t(24)]), 0.5);
    }
}
