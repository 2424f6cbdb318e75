//! Progress: an indicatif bar on a terminal, one plain status line every few seconds otherwise
//! (cron, systemd, a log file).

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::UiConfig;
use crate::stats::Stats;

pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts showing progress of `stats` toward `total` keys.
    pub(crate) fn start(stats: Arc<Stats>, total: u64, ui: &UiConfig) -> Progress {
        let interval = ui.status_interval;
        if ui.quiet || total == 0 {
            return Progress {
                bar: None,
                ticker: None,
            };
        }
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            let ticker = {
                let bar = bar.clone();
                tokio::spawn(async move {
                    loop {
                        bar.set_position(stats.done());
                        bar.set_message(format!(
                            "429s {} retries {} failed {}",
                            Stats::get(&stats.http_429),
                            Stats::get(&stats.retries),
                            Stats::get(&stats.failed)
                        ));
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                })
            };
            return Progress {
                bar: Some(bar),
                ticker: Some(ticker),
            };
        }
        let started = Instant::now();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                tracing::info!("{}", status_line(&stats, total, started.elapsed()));
            }
        });
        Progress {
            bar: None,
            ticker: Some(ticker),
        }
    }

    pub(crate) fn finish(self, stats: &Stats) {
        if let Some(ticker) = self.ticker {
            ticker.abort();
        }
        if let Some(bar) = self.bar {
            bar.set_position(stats.done());
            bar.finish_and_clear();
        }
    }
}

/// The periodic status line: done/total, rate, 429s, retries, failures and ETA.
pub(crate) fn status_line(stats: &Stats, total: u64, elapsed: Duration) -> String {
    let done = stats.done();
    let rate = done as f64 / elapsed.as_secs_f64().max(0.001);
    let eta = if rate > 0.0 && total > done {
        format_eta(total - done, rate)
    } else {
        "-".into()
    };
    format!(
        "progress {done}/{total} keys, {rate:.1}/s, {} requests, {} 429s, {} retries, {} failed, ETA {eta}",
        Stats::get(&stats.requests),
        Stats::get(&stats.http_429),
        Stats::get(&stats.retries),
        Stats::get(&stats.failed),
    )
}

/// `1h02m03s`, `4m05s`, `6s`.
/// How long `calls` take at `rate` a second (above zero), as [`format_duration`] writes it.
pub(crate) fn format_eta(calls: u64, rate: f64) -> String {
    format_duration(Duration::try_from_secs_f64(calls as f64 / rate).unwrap_or(Duration::MAX))
}

pub(crate) fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(format_duration(Duration::from_secs(6)), "6s");
        assert_eq!(format_duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(format_duration(Duration::from_secs(3723)), "1h02m03s");
    }

    #[test]
    fn status_line_has_the_numbers() {
        let stats = Stats::default();
        Stats::add(&stats.enriched, 30);
        Stats::add(&stats.http_429, 2);
        let line = status_line(&stats, 90, Duration::from_secs(10));
        assert!(line.contains("30/90"), "{line}");
        assert!(line.contains("3.0/s"), "{line}");
        assert!(line.contains("2 429s"), "{line}");
        assert!(line.contains("ETA 20s"), "{line}");
    }
}
