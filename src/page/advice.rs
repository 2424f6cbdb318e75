//! What to do next: plain sentences about what looks wrong in the figures (pure).

use std::collections::BTreeMap;

use super::text::{days_or_duration, shorten};
use super::PageData;
use crate::reason::Reason;
use crate::store::ledger::{MinuteRow, RunOutcome};

/// A share of 429s above this on one instance is worth a look (the pacer aims well below it),
/// once there are this many of them (one 429 of a short run's 20 calls is no pattern).
const HTTP_429_SHARE: f64 = 0.01;
const HTTP_429_AT_LEAST: u64 = 3;
/// A share of invalid input rows above this usually means the wrong column or country.
const INVALID_SHARE: f64 = 0.10;

/// The advice for `data`, the most pressing first; empty when all looks well.
pub(crate) fn advise(data: &PageData) -> Vec<String> {
    let mut advice = Vec::new();
    let Some(last) = data.last_run() else {
        return vec!["No run has been recorded in this store yet: run `greenrich enrich`.".into()];
    };
    let summary = last.summary.clone().unwrap_or_default();
    match last.outcome {
        None => advice.push(format!(
            "Run #{} has no end recorded: it is still going, or it crashed (the next run resumes it).",
            last.id
        )),
        Some(RunOutcome::Failed) => advice.push(format!(
            "Run #{} failed: {}.",
            last.id,
            summary.stopped_because.as_deref().unwrap_or("see its log")
        )),
        Some(RunOutcome::Partial | RunOutcome::Stopped) => advice.push(format!(
            "Run #{} did not finish its plan: {} Raise --max-calls or --deadline, or add instances, if that happens every night.",
            last.id,
            summary.stopped_because.as_deref().unwrap_or("it stopped early.")
        )),
        Some(RunOutcome::Completed | RunOutcome::DryRun) => {}
    }
    advice.extend(http_429_advice(&data.minutes));
    advice.extend(failure_advice(&summary.failed_by_reason));
    let rows: i64 = data.row_statuses.iter().map(|(_, n)| n).sum();
    let invalid = data.rows_with("invalid");
    if rows > 0 && invalid as f64 / rows as f64 > INVALID_SHARE {
        advice.push(format!(
            "{:.0}% of the input rows ({invalid} of {rows}) are not valid numbers or ids: check the column, and --default-country for national formats (`greenrich failures` lists them).",
            100.0 * invalid as f64 / rows as f64
        ));
    }
    let stale = data.contacts - data.fresh;
    if stale > 0 {
        advice.push(format!(
            "{stale} of {} contacts were last fetched more than {} ago: more calls a night (instances, --max-calls) or a longer --max-age.",
            data.contacts,
            days_or_duration(data.max_age)
        ));
    }
    let idle = data.generated_at - last.started_at;
    if idle > chrono::TimeDelta::days(2) {
        advice.push(format!(
            "The last run began {} days ago: check that cron still starts it.",
            idle.num_days()
        ));
    }
    advice
}

/// Instances whose share of 429s was high in the last run.
fn http_429_advice(minutes: &[MinuteRow]) -> Vec<String> {
    super::calls_per_instance(minutes)
        .into_iter()
        .filter(|(_, (calls, limited))| {
            *limited >= HTTP_429_AT_LEAST && *limited as f64 / *calls as f64 > HTTP_429_SHARE
        })
        .map(|(instance, (calls, limited))| {
            format!(
                "Instance {} answered {:.1}% 429s ({limited} of {calls} calls): another client may share it, or the network jitters; raise --pacing-margin a little.",
                shorten(instance),
                100.0 * limited as f64 / calls as f64
            )
        })
        .collect()
}

/// Failures of the last run that a person can act on.
fn failure_advice(failed: &BTreeMap<Reason, u64>) -> Vec<String> {
    failed
        .iter()
        .filter_map(|(reason, n)| {
            let what = match reason {
                Reason::Timeout | Reason::ServerError | Reason::NetworkError | Reason::ConnectError => {
                    "the API or the network had trouble; they are tried again after --retry-transient-after"
                }
                Reason::RateLimited => "they met 429s until their attempts ran out: lower --rps-per-instance",
                Reason::QuotaExhausted => "the plan's monthly quota is used up: it resets next month, or upgrade the plan",
                _ => return None,
            };
            Some(format!("{n} keys failed with {reason}: {what}."))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_of_429s_names_the_instance() {
        let minute = |instance: &str, calls, http_429| MinuteRow {
            instance: instance.into(),
            minute: 0,
            calls,
            http_429,
            spacing_ms: None,
        };
        let advice = http_429_advice(&[
            minute("7105123402", 60, 2),
            minute("7105123402", 40, 1),
            minute("7105999901", 100, 1),
            minute("7105555501", 20, 2),
        ]);
        assert_eq!(advice.len(), 1, "{advice:?}");
        assert!(
            advice[0].starts_with("Instance 7105…02 answered 3.0% 429s"),
            "{}",
            advice[0]
        );
        assert_eq!(shorten("12"), "12");
    }
}
