//! How the simulated contacts change over time: each contact's answer has an edition, raised by
//! a test's edits and by a seeded change process per contact (`--change-rates`), on a clock the
//! caller may set (a simulation of many nights runs on it).
//!
//! A contact's class (its mean time between changes) is drawn from the rates by a hash of its
//! chat id and the seed; its changes are a Poisson process from the world's start, with
//! exponential gaps drawn from a generator seeded by the same hash, so the same seed and chat id
//! always change at the same moments.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::{parse_duration, InvalidValue};

/// A share of the contacts and how often they change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChangeRate {
    /// The share of contacts, 0 to 1.
    pub share: f64,
    /// Their mean time between two changes.
    pub every: Duration,
}

/// `--change-rates`: shares of the contacts and their mean time between changes, such as
/// `5%:7d,25%:30d,70%:365d`; contacts the shares leave over never change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangeRates(pub Vec<ChangeRate>);

impl FromStr for ChangeRates {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidValue(format!("'{text}' must look like 5%:7d,25%:30d,70%:365d"));
        let mut rates = Vec::new();
        for part in text.split(',').filter(|p| !p.trim().is_empty()) {
            let (share, every) = part.trim().split_once(':').ok_or_else(bad)?;
            let share: f64 = share
                .trim()
                .trim_end_matches('%')
                .parse()
                .map_err(|_| bad())?;
            let every = parse_duration(every.trim())?;
            if !(0.0..=100.0).contains(&share) || every.is_zero() {
                return Err(bad());
            }
            rates.push(ChangeRate {
                share: share / 100.0,
                every,
            });
        }
        if rates.iter().map(|r| r.share).sum::<f64>() > 1.0 + 1e-9 {
            return Err(InvalidValue(format!(
                "the shares of '{text}' add up to over 100%"
            )));
        }
        Ok(ChangeRates(rates))
    }
}

/// The contacts' editions over time.
pub struct World {
    rates: ChangeRates,
    seed: u64,
    start: DateTime<Utc>,
    /// The simulated time; `None`: the real one.
    now: Mutex<Option<DateTime<Utc>>>,
    edits: Mutex<HashMap<String, u32>>,
}

impl World {
    pub(super) fn new(rates: ChangeRates, seed: u64, start: DateTime<Utc>) -> World {
        World {
            rates,
            seed,
            start,
            now: Mutex::new(None),
            edits: Mutex::new(HashMap::new()),
        }
    }

    /// When the world began: change processes count from here.
    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    /// Sets the world's clock (a simulation moves it on night by night).
    pub fn set_now(&self, at: DateTime<Utc>) {
        *lock(&self.now) = Some(at);
    }

    /// The world's time now.
    pub fn now(&self) -> DateTime<Utc> {
        lock(&self.now).unwrap_or_else(Utc::now)
    }

    /// Changes `chat_id`'s answer once, now (a test's edit).
    pub fn edit(&self, chat_id: &str) {
        *lock(&self.edits).entry(chat_id.to_string()).or_default() += 1;
    }

    /// The edition of `chat_id`'s answer at `at`: 0 until its first change.
    pub fn edition(&self, chat_id: &str, at: DateTime<Utc>) -> u32 {
        let edits = lock(&self.edits).get(chat_id).copied().unwrap_or(0);
        edits + self.changes(chat_id, at).len() as u32
    }

    /// The moments `chat_id` changed, from the world's start up to `until`.
    pub fn changes(&self, chat_id: &str, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let Some(every) = self.every(chat_id) else {
            return Vec::new();
        };
        let horizon = (until - self.start).as_seconds_f64();
        let mut rng = fastrand::Rng::with_seed(self.hash(chat_id) ^ 0x9e37_79b9_7f4a_7c15);
        let (mut t, mut moments) = (0.0, Vec::new());
        loop {
            // An exponential gap: -ln(1 - u) times the mean.
            t += -(1.0 - rng.f64()).ln() * every.as_secs_f64();
            if t > horizon {
                return moments;
            }
            moments.push(self.start + chrono::Duration::milliseconds((t * 1000.0) as i64));
        }
    }

    /// `chat_id`'s mean time between changes; `None`: it never changes.
    pub fn every(&self, chat_id: &str) -> Option<Duration> {
        let u = (self.hash(chat_id) >> 11) as f64 / (1u64 << 53) as f64;
        let mut below = 0.0;
        for rate in &self.rates.0 {
            below += rate.share;
            if u < below {
                return Some(rate.every);
            }
        }
        None
    }

    fn hash(&self, chat_id: &str) -> u64 {
        // FNV-1a over the seed and the chat id: stable across runs and machines.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.seed.to_le_bytes().iter().chain(chat_id.as_bytes()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(rates: &str) -> World {
        let start = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        World::new(rates.parse().unwrap(), 7, start)
    }

    #[test]
    fn rates_parse_and_bad_ones_are_refused() {
        let rates: ChangeRates = "5%:7d, 25%:30d,70%:365d".parse().unwrap();
        assert_eq!(rates.0.len(), 3);
        assert_eq!(rates.0[0].every, Duration::from_secs(7 * 86_400));
        for bad in ["5%", "60%:1d,50%:2d", "x:1d", "5%:0s"] {
            assert!(bad.parse::<ChangeRates>().is_err(), "{bad}");
        }
    }

    #[test]
    fn classes_follow_the_shares_and_changes_their_rate() {
        let w = world("25%:1d,75%:100d");
        let ids: Vec<String> = (0..4000).map(|i| format!("7900{i:07}@c.us")).collect();
        let fast = ids
            .iter()
            .filter(|id| w.every(id) == Some(Duration::from_secs(86_400)));
        let share = fast.count() as f64 / ids.len() as f64;
        assert!((share - 0.25).abs() < 0.03, "{share}");
        let year = w.start() + chrono::Duration::days(365);
        let per_year: usize = ids
            .iter()
            .filter(|id| w.every(id) == Some(Duration::from_secs(86_400)))
            .map(|id| w.changes(id, year).len())
            .sum();
        let mean = per_year as f64 / (share * ids.len() as f64);
        assert!(
            (mean - 365.0).abs() < 15.0,
            "{mean} changes a year at one a day"
        );
        // The same world, asked again, changes at the same moments.
        assert_eq!(
            w.changes(&ids[0], year),
            world("25%:1d,75%:100d").changes(&ids[0], year)
        );
    }

    #[test]
    fn edits_raise_the_edition() {
        let w = world("");
        assert_eq!(w.edition("1@c.us", w.now()), 0);
        w.edit("1@c.us");
        assert_eq!(w.edition("1@c.us", w.now()), 1);
        assert_eq!(w.edition("2@c.us", w.now()), 0);
    }
}
