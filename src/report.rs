//! The outcome of a run: its exit code, the summary printed on stderr, and the JSON summary for
//! monitoring.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::JobError;
use crate::pipeline::stop::StopReason;
use crate::progress::format_duration;
use crate::reason::Reason;
use crate::store::ledger::{RunOutcome, RunSummary};
use crate::store::StoreError;

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
    /// A worker of a shared PostgreSQL store lost its connection to the store mid-run: its
    /// instance leases ended with it, so it stopped calling at once; what it had received is
    /// written, its other keys go back to the queue. Start it again.
    pub const STORE_LOST: i32 = 6;
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every due key has an outcome (some may have failed).
    Completed,
    /// The plan was made and no call.
    DryRun,
    /// Stopped before every due key had an outcome.
    Stopped(StopReason),
}

impl Outcome {
    /// How the ledger keeps it.
    pub fn stored(&self) -> RunOutcome {
        match self {
            Outcome::Completed => RunOutcome::Completed,
            Outcome::DryRun => RunOutcome::DryRun,
            Outcome::Stopped(StopReason::NoInstances(_)) => RunOutcome::Stopped,
            Outcome::Stopped(StopReason::Store(_) | StopReason::StoreLost(_)) => RunOutcome::Failed,
            Outcome::Stopped(_) => RunOutcome::Partial,
        }
    }

    /// Why the run stopped early, in one plain sentence.
    pub fn explanation(&self) -> Option<String> {
        let Outcome::Stopped(reason) = self else {
            return None;
        };
        Some(match reason {
            StopReason::Quota(message) | StopReason::NoInstances(message) => {
                format!("stopped: {message}")
            }
            StopReason::Interrupted => "stopped on request (signal); the next run resumes where this one stopped".into(),
            StopReason::Budget => "stopped: the --max-calls budget is spent; the next run resumes with the remaining due keys".into(),
            StopReason::Deadline => "stopped: the --deadline was reached; the next run resumes with the remaining due keys".into(),
            StopReason::Store(message) => format!("stopped: the store cannot be written ({message}); what was committed is kept"),
            StopReason::StoreLost(message) => format!("stopped: the connection to the store was lost ({message}); this worker's instance leases ended with it, so it stopped calling at once. What it had received is written and its other keys go back to the queue: start it again"),
        })
    }
}

/// The exit code of a run: the one place where outcomes and errors become exit codes.
pub(crate) fn exit_code(result: &Result<Report, JobError>) -> i32 {
    match result {
        Ok(report) => report.summary.exit_code,
        Err(error) => error_exit_code(error),
    }
}

/// The exit code of a run that stopped with `error`.
pub(crate) fn error_exit_code(error: &JobError) -> i32 {
    match error {
        JobError::Store(StoreError::Locked { .. } | StoreError::InstancesBusy { .. }) => exit::BUSY,
        JobError::Store(e) if e.is_connection_lost() => exit::STORE_LOST,
        _ => exit::FATAL,
    }
}

fn outcome_exit_code(outcome: &Outcome, failed: u64) -> i32 {
    match outcome {
        Outcome::Completed if failed > 0 => exit::SOME_FAILED,
        Outcome::Completed | Outcome::DryRun => exit::OK,
        Outcome::Stopped(StopReason::NoInstances(_)) => exit::NO_INSTANCE,
        Outcome::Stopped(StopReason::Store(_)) => exit::FATAL,
        Outcome::Stopped(StopReason::StoreLost(_)) => exit::STORE_LOST,
        Outcome::Stopped(_) => exit::PARTIAL,
    }
}

/// Everything the run reports at the end: how it ended, and its summary.
#[derive(Debug, Clone)]
pub struct Report {
    /// How it ended.
    pub outcome: Outcome,
    /// The summary kept in the ledger and written by `--summary-json`.
    pub summary: RunSummary,
}

impl Report {
    /// The report of a run that ended with `outcome`; the summary's outcome fields follow it.
    pub(crate) fn new(outcome: Outcome, mut summary: RunSummary) -> Report {
        summary.outcome = outcome.stored();
        summary.exit_code = outcome_exit_code(&outcome, summary.counts.failed);
        summary.stopped_because = outcome.explanation();
        Report { outcome, summary }
    }

    /// The summary printed on stderr at the end (for a dry run: the plan).
    pub fn summary_text(&self) -> String {
        let s = &self.summary;
        if self.outcome == Outcome::DryRun {
            return format!("{}\ndry run: no call was made", s.plan_line);
        }
        let c = &s.counts;
        let mut out = format!(
            "summary: {} enriched ({} new, {} changed, {} unchanged), {} failed{}, {} invalid, {} duplicates skipped, {} suppressed, {} skipped as fresh, {} requests{}, {} 429s, {} retries, elapsed {}",
            c.enriched,
            c.new,
            c.changed,
            c.unchanged,
            c.failed,
            by_reason(&s.failed_by_reason),
            c.invalid,
            c.duplicates,
            c.suppressed,
            c.skipped_fresh,
            c.requests,
            match c.checks {
                0 => String::new(),
                n => format!(
                    " ({n} checkAccount: {} phone numbers and usernames resolved)",
                    c.resolved
                ),
            },
            c.http_429,
            c.retries,
            format_duration(Duration::from_secs_f64(s.elapsed_seconds)),
        );
        if c.purged > 0 {
            out.push_str(&format!(
                "\npurged {} contacts no input has mentioned for --purge-after",
                c.purged
            ));
        }
        if let Some(why) = &s.stopped_because {
            out.push('\n');
            out.push_str(why);
        }
        out.push_str(&format!("\noutput: {}", s.output));
        out
    }
}

fn by_reason(reasons: &BTreeMap<Reason, u64>) -> String {
    if reasons.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{r}: {n}")).collect();
    format!(" ({})", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::ledger::RunCounts;

    fn report(outcome: Outcome, failed: u64) -> Report {
        Report::new(
            outcome,
            RunSummary {
                counts: RunCounts {
                    failed,
                    ..RunCounts::default()
                },
                failed_by_reason: BTreeMap::from([(Reason::Timeout, failed)]),
                elapsed_seconds: 3.0,
                output: "out.db".into(),
                ..RunSummary::default()
            },
        )
    }

    fn code(outcome: Outcome, failed: u64) -> i32 {
        exit_code(&Ok(report(outcome, failed)))
    }

    #[test]
    fn exit_codes_follow_the_outcome() {
        assert_eq!(code(Outcome::Completed, 0), exit::OK);
        assert_eq!(code(Outcome::Completed, 2), exit::SOME_FAILED);
        assert_eq!(code(Outcome::Stopped(StopReason::Budget), 0), exit::PARTIAL);
        assert_eq!(
            code(Outcome::Stopped(StopReason::Quota("q".into())), 0),
            exit::PARTIAL
        );
        assert_eq!(
            code(Outcome::Stopped(StopReason::NoInstances("x".into())), 0),
            exit::NO_INSTANCE
        );
        assert_eq!(
            code(Outcome::Stopped(StopReason::Store("disk".into())), 0),
            exit::FATAL
        );
        let locked = JobError::Store(StoreError::Locked {
            path: "a".into(),
            lock: "b".into(),
        });
        assert_eq!(exit_code(&Err(locked)), exit::BUSY);
        let client = JobError::Client(crate::api::ClientError::Build("no TLS".into()));
        assert_eq!(exit_code(&Err(client)), exit::FATAL);
    }

    #[test]
    fn summary_names_reasons() {
        let s = report(Outcome::Completed, 2).summary_text();
        assert!(s.contains("2 failed (timeout: 2)"), "{s}");
        assert!(s.contains("elapsed 3s"), "{s}");
        assert_eq!(
            report(Outcome::Completed, 2).summary.outcome,
            RunOutcome::Completed
        );
    }
}
