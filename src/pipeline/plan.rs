//! Planning policy and the plan line: which keys are due under the run's options (the store does
//! the set work), and the one line that opens every run and is all `--dry-run` prints.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::PlanPolicy;
use crate::normalise::format_time;
use crate::progress::format_duration;
use crate::store::ledger::RunCounts;
use crate::store::plan::{PlanCounts, Policy};

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// The store's policy at `now`. Fresh: younger than `--max-age`, or fetched since an unfinished
/// run began (`resume_from`), so a resumed run fetches nothing twice.
pub(crate) fn policy(plan: &PlanPolicy, resume_from: Option<String>, now: DateTime<Utc>) -> Policy {
    let by_age = plan
        .max_age
        .map(|age| format_time(now - chrono_duration(age)));
    let fresh_from = match (by_age, resume_from) {
        (Some(a), Some(r)) => Some(a.min(r)),
        (a, r) => a.or(r),
    };
    Policy {
        now: format_time(now),
        fresh_from,
        permanent_retry_before: format_time(now - chrono_duration(plan.retry_failed_after)),
        only_failed: plan.only_failed,
    }
}

/// The plan line. `pool_rate` is calls per second over the pool, `None` when unlimited.
pub(crate) fn plan_line(
    counts: &RunCounts,
    plan: &PlanCounts,
    pool_rate: Option<f64>,
    max_calls: Option<u64>,
) -> String {
    let calls = max_calls.map_or(plan.due(), |m| m.min(plan.due()));
    let pace = match pool_rate {
        None => "an unlimited rate".to_string(),
        Some(rate) if rate > 0.0 => format!(
            "{rate:.1}/s ≈ {}",
            format_duration(Duration::from_secs_f64(calls as f64 / rate))
        ),
        Some(rate) => format!("{rate:.1}/s ≈ -"),
    };
    format!(
        "plan: {} input rows, {} invalid, {} duplicates, {} due ({} never fetched, {} retry, {} stale), {} skipped as fresh, {} failed and not yet due; {} calls at {}",
        counts.input_rows,
        counts.invalid,
        counts.duplicates,
        plan.due(),
        plan.never_fetched,
        plan.retry,
        plan.stale,
        plan.skipped_fresh,
        plan.failed_not_due,
        calls,
        pace,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn freshness_comes_from_max_age_or_resume() {
        let none = policy(&PlanPolicy::default(), None, now());
        assert_eq!(none.fresh_from, None, "without --max-age nothing is fresh");
        let resumed = policy(
            &PlanPolicy::default(),
            Some("2027-01-01T00:00:00.000Z".into()),
            now(),
        );
        assert_eq!(
            resumed.fresh_from.as_deref(),
            Some("2027-01-01T00:00:00.000Z")
        );
        let aged = PlanPolicy {
            max_age: Some(Duration::from_secs(86_400)),
            ..PlanPolicy::default()
        };
        let both = policy(&aged, Some("2020-01-01T00:00:00.000Z".into()), now());
        assert_eq!(both.fresh_from.as_deref(), Some("2020-01-01T00:00:00.000Z"));
    }

    #[test]
    fn the_plan_line_names_the_pace() {
        let plan = PlanCounts {
            never_fetched: 10,
            ..PlanCounts::default()
        };
        let counts = RunCounts::default();
        let line = plan_line(&counts, &plan, Some(2.0), None);
        assert!(line.ends_with("10 calls at 2.0/s ≈ 5s"), "{line}");
        let line = plan_line(&counts, &plan, None, Some(4));
        assert!(line.ends_with("4 calls at an unlimited rate"), "{line}");
    }
}
