//! The outcome of a run: its exit code, the summary printed on stderr, and the JSON summary for
//! monitoring.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::fetch::StopReason;
use crate::progress::format_duration;
use crate::store::ledger::RunCounts;
use crate::store::plan::PlanCounts;

/// Exit codes (documented in the README).
pub mod exit {
    /// Every due key was enriched.
    pub const OK: i32 = 0;
    /// A fatal error: bad arguments, unreadable input, the store cannot be written.
    pub const FATAL: i32 = 1;
    /// The run finished, but some keys failed (see the `failures` table).
    pub const SOME_FAILED: i32 = 2;
    /// Stopped early (budget, deadline, Ctrl-C/SIGTERM, monthly quota): what was fetched is
    /// stored, and the next run resumes with the keys that remain.
    pub const PARTIAL: i32 = 3;
    /// Stopped because no instance can be used (bad token or id, not authorized, wrong URL):
    /// a person must fix the credentials.
    pub const NO_INSTANCE: i32 = 4;
    /// Another greenrich run holds the output store; nothing was done.
    pub const BUSY: i32 = 5;
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Partial(StopReason),
    Stopped(String),
    DryRun,
}

impl Outcome {
    pub fn from_stop(reason: Option<StopReason>) -> Outcome {
        match reason {
            None => Outcome::Completed,
            Some(StopReason::NoInstances(message)) => Outcome::Stopped(message),
            Some(other) => Outcome::Partial(other),
        }
    }

    /// The `runs.outcome` value.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Partial(StopReason::Store(_)) => "failed",
            Outcome::Partial(_) => "partial",
            Outcome::Stopped(_) => "stopped",
            Outcome::DryRun => "dry_run",
        }
    }

    /// Why the run stopped early, in one plain sentence.
    pub fn explanation(&self) -> Option<String> {
        Some(match self {
            Outcome::Completed | Outcome::DryRun => return None,
            Outcome::Stopped(message) => format!("stopped: {message}"),
            Outcome::Partial(reason) => match reason {
                StopReason::Quota(message) => format!("stopped: {message}"),
                StopReason::Interrupted => "stopped on request (signal); the next run resumes where this one stopped".into(),
                StopReason::Budget => "stopped: the --max-calls budget is spent; the next run resumes with the remaining due keys".into(),
                StopReason::Deadline => "stopped: the --deadline was reached; the next run resumes with the remaining due keys".into(),
                StopReason::NoInstances(message) => format!("stopped: {message}"),
                StopReason::Store(message) => format!("stopped: the store cannot be written ({message}); what was committed is kept"),
            },
        })
    }
}

/// Everything the run reports at the end.
#[derive(Debug, Clone)]
pub struct Report {
    pub outcome: Outcome,
    /// The plan line that opened the run.
    pub plan_line: String,
    pub plan: PlanCounts,
    pub counts: RunCounts,
    pub failed_by_reason: BTreeMap<String, u64>,
    pub calls_per_instance: BTreeMap<String, u64>,
    pub elapsed: Duration,
    pub output: String,
}

impl Report {
    pub fn exit_code(&self) -> i32 {
        match &self.outcome {
            Outcome::Completed if self.counts.failed > 0 => exit::SOME_FAILED,
            Outcome::Completed | Outcome::DryRun => exit::OK,
            Outcome::Partial(StopReason::Store(_)) => exit::FATAL,
            Outcome::Partial(_) => exit::PARTIAL,
            Outcome::Stopped(_) => exit::NO_INSTANCE,
        }
    }

    /// The summary printed on stderr at the end (for a dry run: the plan).
    pub fn summary(&self) -> String {
        if self.outcome == Outcome::DryRun {
            return format!("{}\ndry run: no call was made", self.plan_line);
        }
        let c = &self.counts;
        let mut out = format!(
            "summary: {} enriched, {} failed{}, {} invalid, {} duplicates skipped, {} skipped as fresh, {} requests, {} 429s, {} retries, elapsed {}",
            c.enriched,
            c.failed,
            by_reason(&self.failed_by_reason),
            c.invalid,
            c.duplicates,
            c.skipped_fresh,
            c.requests,
            c.http_429,
            c.retries,
            format_duration(self.elapsed),
        );
        if let Some(why) = self.outcome.explanation() {
            out.push('\n');
            out.push_str(&why);
        }
        out.push_str(&format!("\noutput: {}", self.output));
        out
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "outcome": self.outcome.label(),
            "plan_line": self.plan_line,
            "exit_code": self.exit_code(),
            "stopped_because": self.outcome.explanation(),
            "plan": self.plan,
            "counts": self.counts,
            "failed_by_reason": self.failed_by_reason,
            "calls_per_instance": self.calls_per_instance,
            "elapsed_seconds": self.elapsed.as_secs_f64(),
            "output": self.output,
        })
    }
}

fn by_reason(reasons: &BTreeMap<String, u64>) -> String {
    if reasons.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{r}: {n}")).collect();
    format!(" ({})", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(outcome: Outcome, failed: u64) -> Report {
        Report {
            outcome,
            plan_line: String::new(),
            plan: PlanCounts::default(),
            counts: RunCounts {
                failed,
                ..RunCounts::default()
            },
            failed_by_reason: BTreeMap::from([("timeout".to_string(), failed)]),
            calls_per_instance: BTreeMap::new(),
            elapsed: Duration::from_secs(3),
            output: "out.db".into(),
        }
    }

    #[test]
    fn exit_codes_follow_the_outcome() {
        assert_eq!(report(Outcome::Completed, 0).exit_code(), exit::OK);
        assert_eq!(report(Outcome::Completed, 2).exit_code(), exit::SOME_FAILED);
        assert_eq!(
            report(Outcome::Partial(StopReason::Budget), 0).exit_code(),
            exit::PARTIAL
        );
        assert_eq!(
            report(Outcome::Partial(StopReason::Quota("q".into())), 0).exit_code(),
            exit::PARTIAL
        );
        assert_eq!(
            report(Outcome::Stopped("x".into()), 0).exit_code(),
            exit::NO_INSTANCE
        );
        assert_eq!(
            report(Outcome::Partial(StopReason::Store("disk".into())), 0).exit_code(),
            exit::FATAL
        );
    }

    #[test]
    fn summary_names_reasons() {
        let s = report(Outcome::Completed, 2).summary();
        assert!(s.contains("2 failed (timeout: 2)"), "{s}");
        assert!(s.contains("elapsed 3s"), "{s}");
    }
}
