//! Types every layer shares, at the bottom of the house: nothing here imports from the rest of
//! the crate.

use std::fmt;

use chrono::{DateTime, Utc};
use std::str::FromStr;
use std::time::Duration;

/// The time a run goes by: the real one, or the real one shifted so that the run starts at a
/// chosen moment (a simulation of many nights runs the job night after night on it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    offset_ms: i64,
}

impl Clock {
    /// A clock that reads `at` now, and goes on from there at the real pace.
    pub fn starting_at(at: DateTime<Utc>) -> Clock {
        Clock {
            offset_ms: (at - Utc::now()).num_milliseconds(),
        }
    }

    /// The time now, on this clock.
    pub fn now(&self) -> DateTime<Utc> {
        let now = Utc::now();
        now.checked_add_signed(chrono::Duration::milliseconds(self.offset_ms))
            .unwrap_or(now)
    }
}

/// A value that cannot be parsed; the message says what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

/// A call rate per instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// No pacing at all (for the sandbox and benchmarks).
    Unlimited,
    /// At most this many calls per second (always above zero).
    PerSecond(f64),
}

impl Rate {
    /// The shortest time between two calls; `None` when unlimited.
    pub fn interval(self) -> Option<Duration> {
        match self {
            Rate::Unlimited => None,
            Rate::PerSecond(rps) => Some(Duration::from_secs_f64(1.0 / rps)),
        }
    }

    /// Calls per second, `None` when unlimited.
    pub fn per_second(self) -> Option<f64> {
        match self {
            Rate::Unlimited => None,
            Rate::PerSecond(rps) => Some(rps),
        }
    }
}

/// The slowest rate taken: one call every 10,000 seconds.
const MIN_RATE: f64 = 0.0001;

impl FromStr for Rate {
    type Err = InvalidValue;
    /// A positive number of calls per second, or `0` / `unlimited` for no pacing.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("unlimited") {
            return Ok(Rate::Unlimited);
        }
        match s.parse::<f64>() {
            Ok(0.0) => Ok(Rate::Unlimited),
            Ok(rps) if rps.is_finite() && rps >= MIN_RATE => Ok(Rate::PerSecond(rps)),
            Ok(rps) if rps.is_finite() && rps > 0.0 => Err(InvalidValue(format!(
                "'{s}' is too slow a rate: the least is {MIN_RATE} calls per second (one every 2.8 hours)"
            ))),
            _ => Err(InvalidValue(format!(
                "'{s}' is not a rate: use calls per second such as 1, or 0 (unlimited)"
            ))),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Unlimited => f.write_str("unlimited"),
            Rate::PerSecond(rps) => write!(f, "{rps}"),
        }
    }
}

/// Stored as calls per second, or null when unlimited; older ledgers wrote 0 for unlimited.
impl serde::Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.per_second().serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<f64>::deserialize(d)? {
            Some(rps) if rps > 0.0 && rps.is_finite() => Rate::PerSecond(rps),
            _ => Rate::Unlimited,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_have_no_sentinel() {
        assert_eq!("0".parse::<Rate>(), Ok(Rate::Unlimited));
        assert_eq!("unlimited".parse::<Rate>(), Ok(Rate::Unlimited));
        assert_eq!("2.5".parse::<Rate>(), Ok(Rate::PerSecond(2.5)));
        assert!("-1".parse::<Rate>().is_err());
        assert_eq!(
            Rate::PerSecond(4.0).interval(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(serde_json::to_string(&Rate::Unlimited).unwrap(), "null");
        let old: Rate = serde_json::from_str("0.0").unwrap();
        assert_eq!(old, Rate::Unlimited);
    }
}
