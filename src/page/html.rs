//! The report's page (pure): the figures laid out as one self-contained HTML document, styles
//! inline, charts as SVG, no script and nothing fetched from the network.

use std::fmt::Write;
use std::time::Duration;

use super::svg::{self, colour, outcome_of};
use super::text::{days_or_duration, escape, shorten};
use super::PageData;
use crate::progress::format_duration;
use crate::store::ledger::RunRecord;

const STYLE: &str = "
body { font: 15px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; color: #111827;
       margin: 0 auto; max-width: 920px; padding: 24px; background: #f9fafb; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 0 0 12px; }
section { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 16px 20px;
          margin: 16px 0; }
.muted { color: #6b7280; font-size: 13px; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px;
           margin: 0; }
.figures div { background: #f3f4f6; border-radius: 6px; padding: 8px 10px; }
.figures dt { font-size: 12px; color: #6b7280; } .figures dd { margin: 0; font-size: 20px; }
.outcome { display: inline-block; border-radius: 12px; padding: 2px 10px; color: #fff; }
.completed { background: #059669; fill: #059669; } .partial { background: #d97706; fill: #d97706; }
.stopped { background: #b45309; fill: #b45309; } .failed { background: #dc2626; fill: #dc2626; }
.running, .dry_run { background: #6b7280; fill: #6b7280; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
td, th { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e5e7eb; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }
li { margin: 4px 0; }
";

/// The whole page for `data`, with `advice` under "What to do next".
pub(super) fn render(data: &PageData, advice: &[String]) -> String {
    let mut page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>greenrich report</title><style>{STYLE}</style></head><body>\n<h1>greenrich report</h1><p class=\"muted\">store {} · made {} UTC</p>\n",
        escape(&data.store),
        data.generated_at.format("%Y-%m-%d %H:%M")
    );
    page.push_str(&advice_section(advice));
    match data.last_run() {
        Some(last) => {
            page.push_str(&last_run_section(data, last));
            page.push_str(&minutes_section(data, last));
        }
        None => page.push_str("<section><h2>The last run</h2><p>No run yet.</p></section>"),
    }
    let _ = writeln!(
        page,
        "<section><h2>Runs (the last {})</h2><p class=\"muted\">Each bar is a run, oldest on the left: its height is how long it ran, its colour how it ended (<span class=\"outcome completed\">completed</span> <span class=\"outcome partial\">partial</span> <span class=\"outcome stopped\">stopped</span> <span class=\"outcome failed\">failed</span>). Hover for its calls.</p>{}</section>",
        data.runs.len(),
        svg::timeline_chart(&data.runs)
    );
    let _ = writeln!(
        page,
        "<section><h2>Freshness</h2><p class=\"muted\"><span data-figure=\"contacts\">{}</span> contacts, by the age of their last fetch (stale after --max-age {}).</p>{}</section>",
        data.contacts,
        days_or_duration(data.max_age),
        svg::freshness_chart(&data.freshness)
    );
    page.push_str("</body></html>\n");
    page
}

fn advice_section(advice: &[String]) -> String {
    if advice.is_empty() {
        return "<section><h2>What to do next</h2><p data-advice=\"none\">Nothing: all looks well.</p></section>\n".into();
    }
    let items: String = advice
        .iter()
        .map(|a| format!("<li data-advice>{}</li>", escape(a)))
        .collect();
    format!("<section><h2>What to do next</h2><ul>{items}</ul></section>\n")
}

/// The last run's outcome in words and its figures.
fn last_run_section(data: &PageData, last: &RunRecord) -> String {
    let summary = last.summary.clone().unwrap_or_default();
    let c = &last.counts;
    let outcome = outcome_of(last);
    let words = match outcome {
        "completed" => "completed: every due contact has an answer",
        "partial" => "partial: it stopped before its plan was done; the next run goes on",
        "stopped" => "stopped: no instance could be used",
        "failed" => "failed",
        "dry_run" => "a dry run: planned, no call made",
        _ => "running, or crashed: no end is recorded",
    };
    let duration = Duration::from_secs_f64(svg::duration_seconds(last));
    let mut figures = vec![
        ("enriched", c.enriched.to_string()),
        ("new", c.new.to_string()),
        ("changed", c.changed.to_string()),
        ("unchanged", c.unchanged.to_string()),
        ("failed", c.failed.to_string()),
        ("invalid", c.invalid.to_string()),
        ("pending", data.rows_with("pending").to_string()),
        ("calls", c.requests.to_string()),
        ("429s", c.http_429.to_string()),
        ("duration", format_duration(duration)),
    ];
    if c.checks > 0 {
        figures.push(("checkAccount calls", c.checks.to_string()));
    }
    for (name, count) in [("suppressed", c.suppressed), ("purged", c.purged)] {
        if count > 0 {
            figures.push((name, count.to_string()));
        }
    }
    let figures: String = figures
        .iter()
        .map(|(name, value)| {
            format!(
                "<div><dt>{name}</dt><dd data-figure=\"{name}\">{}</dd></div>",
                escape(value)
            )
        })
        .collect();
    let reasons: String = summary
        .failed_by_reason
        .iter()
        .map(|(reason, n)| format!("<li data-failed=\"{reason}\">{reason}: {n}</li>"))
        .collect();
    let why = summary
        .stopped_because
        .as_deref()
        .map(|w| format!("<p>{}</p>", escape(w)))
        .unwrap_or_default();
    format!(
        "<section><h2>The last run: #{} <span class=\"outcome {outcome}\" data-outcome=\"{outcome}\">{outcome}</span></h2><p>Began {} UTC; {words}.</p>{why}<dl class=\"figures\">{figures}</dl>{}</section>\n",
        last.id,
        last.started_at.format("%Y-%m-%d %H:%M"),
        if reasons.is_empty() { String::new() } else { format!("<p>Failed by reason:</p><ul>{reasons}</ul>") }
    )
}

/// The last run's calls per minute per instance, and each instance's calls, 429s and spacing.
fn minutes_section(data: &PageData, last: &RunRecord) -> String {
    let per_instance = super::calls_per_instance(&data.minutes);
    let spacing = last
        .summary
        .as_ref()
        .map(|s| s.spacing_ms_per_instance.clone())
        .unwrap_or_default();
    let rows: String = per_instance
        .iter()
        .enumerate()
        .map(|(i, (instance, (calls, limited)))| {
            let spaced = spacing
                .get(*instance)
                .map_or("–".to_string(), |ms| format!("{ms:.1} ms"));
            format!(
                "<tr data-instance=\"{}\"><td><span class=\"swatch\" style=\"background:{}\"></span>{}</td><td class=\"n\">{calls}</td><td class=\"n\">{limited}</td><td class=\"n\">{spaced}</td></tr>",
                escape(instance),
                colour(i),
                escape(&shorten(instance))
            )
        })
        .collect();
    format!(
        "<section><h2>Calls per minute</h2><p class=\"muted\">Each bar is a minute of the run, in the colours of its instances; red tops are calls answered 429 (wasted). The spacing is the pace each instance learnt: the limit's interval plus its margin.</p>{}<table><thead><tr><th>instance</th><th class=\"n\">calls</th><th class=\"n\">429s</th><th class=\"n\">spacing</th></tr></thead><tbody>{rows}</tbody></table></section>\n",
        svg::minutes_chart(&data.minutes)
    )
}
