//! Planning policy and the plan line: which keys are due under the run's options (the store does
//! the set work), and the one line that opens every run and is all `--dry-run` prints.

use chrono::{DateTime, Utc};

use crate::config::PlanPolicy;
use crate::normalise::time_before;
use crate::progress::format_eta;
use crate::store::ledger::RunCounts;
use crate::store::plan::{Adaptive, PlanCounts, Policy};

/// The store's policy at `now` for a run that began at `run_started_at` (`None`: a dry run).
/// Fresh: younger than `--max-age` (the store adds what runs that are not over fetched).
pub(crate) fn policy(
    plan: &PlanPolicy,
    run_started_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    adaptive: Option<Adaptive>,
) -> Policy {
    Policy {
        adaptive,
        now,
        fresh_from: plan.max_age.map(|age| time_before(now, age)),
        run_started_at,
        permanent_retry_before: time_before(now, plan.retry_failed_after),
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
        Some(rate) if rate > 0.0 => format!("{rate:.1}/s ≈ {}", format_eta(calls, rate)),
        Some(rate) => format!("{rate:.1}/s ≈ -"),
    };
    format!(
        "plan: {} input rows, {} invalid, {} duplicates, {} suppressed, {} due ({} never fetched, {} retry, {} stale), {} skipped as fresh, {} failed and not yet due; {} calls at {}",
        counts.input_rows,
        counts.invalid,
        counts.duplicates,
        counts.suppressed,
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
    use std::time::Duration;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn freshness_comes_from_max_age_and_saturates() {
        let none = policy(&PlanPolicy::default(), None, now(), None);
        assert_eq!(none.fresh_from, None, "without --max-age nothing is fresh");
        let aged = PlanPolicy {
            max_age: Some(Duration::from_secs(86_400)),
            ..PlanPolicy::default()
        };
        let aged = policy(&aged, Some(now()), now(), None);
        let day_before = DateTime::from_timestamp(1_800_000_000 - 86_400, 0);
        assert_eq!(aged.fresh_from, day_before);
        let forever = PlanPolicy {
            max_age: Some(Duration::MAX),
            retry_failed_after: Duration::from_secs(100_000_000 * 86_400),
            ..PlanPolicy::default()
        };
        let forever = policy(&forever, None, now(), None);
        let year_zero = crate::normalise::parse_time("0000-01-01T00:00:00.000Z");
        assert_eq!(forever.fresh_from, year_zero);
        assert_eq!(Some(forever.permanent_retry_before), year_zero);
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
