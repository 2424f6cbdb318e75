//! The report's charts as inline SVG (pure): calls per minute per instance with the 429s
//! marked, the runs as a timeline, and contacts by age. Each chart is an `<svg data-chart=…>`
//! whose marks carry their figures in `data-*` attributes and a `<title>` people see on hover.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::text::escape;
use crate::store::ledger::MinuteRow;
use crate::store::ledger::RunRecord;

const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 220.0;
/// Room for the axes' labels.
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 12.0;

/// Colours for instances, in turn.
const PALETTE: [&str; 8] = [
    "#2563eb", "#059669", "#d97706", "#7c3aed", "#0891b2", "#be185d", "#4d7c0f", "#475569",
];

/// The colour of the `index`th instance.
pub(super) fn colour(index: usize) -> &'static str {
    PALETTE[index % PALETTE.len()]
}

fn open(chart: &str, label: &str) -> String {
    format!(
        r#"<svg data-chart="{chart}" role="img" aria-label="{}" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" xmlns="http://www.w3.org/2000/svg">"#,
        escape(label)
    )
}

/// The y axis from 0 to `max` with a few labelled lines.
fn y_axis(out: &mut String, max: f64, unit: &str) {
    for step in 0..=4 {
        let value = max * f64::from(step) / 4.0;
        let y = plot_y(value, max);
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{WIDTH}" y1="{y:.1}" y2="{y:.1}" stroke="#e5e7eb"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end" fill="#6b7280">{}{unit}</text>"##,
            LEFT - 4.0,
            y + 3.0,
            round_label(value)
        );
    }
}

fn round_label(value: f64) -> String {
    if value >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn plot_y(value: f64, max: f64) -> f64 {
    let span = HEIGHT - TOP - BOTTOM;
    HEIGHT - BOTTOM - span * (value / max.max(f64::MIN_POSITIVE)).clamp(0.0, 1.0)
}

/// Bars the minutes chart draws at most: a longer run's minutes are summed in wider bins.
const MAX_BARS: u32 = 240;

/// Calls per minute as stacked bars, one segment per instance (its colour), and a red segment
/// on top for the calls that met a 429.
pub(super) fn minutes_chart(minutes: &[MinuteRow]) -> String {
    let instances: Vec<&str> = {
        let mut ids: Vec<&str> = minutes.iter().map(|m| m.instance.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let last_minute = minutes.iter().map(|m| m.minute).max().unwrap_or(0);
    let bin = (last_minute + 1).div_ceil(MAX_BARS).max(1);
    let bins = binned(minutes, &instances, bin);
    let bars = last_minute / bin + 1;
    let mut totals = vec![0u64; bars as usize];
    for ((b, _), (calls, _)) in &bins {
        totals[*b as usize] += calls;
    }
    let max = totals.iter().copied().max().unwrap_or(0).max(1) as f64;
    let per = if bin == 1 {
        "minute".to_string()
    } else {
        format!("{bin} minutes")
    };
    let mut out = open("minutes", &format!("calls per {per}, by instance"));
    y_axis(&mut out, max, "");
    let slot = (WIDTH - LEFT - 8.0) / f64::from(bars);
    let width = (slot * 0.8).min(48.0);
    let mut stacked = vec![0u64; bars as usize];
    for ((b, index), (calls, limited)) in &bins {
        let x = LEFT + slot * f64::from(*b) + (slot - width) / 2.0;
        let below = stacked[*b as usize];
        let instance = escape(instances[*index]);
        let (minute, ok) = (b * bin, calls - limited);
        let _ = write!(
            out,
            r#"<rect data-instance="{instance}" data-minute="{minute}" data-calls="{calls}" data-http-429="{limited}" x="{x:.1}" y="{:.1}" width="{width:.1}" height="{:.1}" fill="{}"><title>instance {instance}, {per} from {minute}: {calls} calls, {limited} answered 429</title></rect>"#,
            plot_y((below + ok) as f64, max),
            plot_y(below as f64, max) - plot_y((below + ok) as f64, max),
            colour(*index),
        );
        if *limited > 0 {
            let _ = write!(
                out,
                r##"<rect class="http-429" data-instance="{instance}" data-minute="{minute}" data-http-429="{limited}" x="{x:.1}" y="{:.1}" width="{width:.1}" height="{:.1}" fill="#dc2626"><title>{limited} calls of instance {instance} answered 429</title></rect>"##,
                plot_y((below + calls) as f64, max),
                (plot_y((below + ok) as f64, max) - plot_y((below + calls) as f64, max)).max(2.0),
            );
        }
        stacked[*b as usize] += calls;
    }
    let _ = write!(
        out,
        r##"<text x="{WIDTH}" y="{:.1}" font-size="10" text-anchor="end" fill="#6b7280">minutes since the first call (0–{last_minute})</text></svg>"##,
        HEIGHT - 6.0
    );
    out
}

/// Calls and 429s per (bin of `bin` minutes, index of the instance in `instances`).
fn binned(
    minutes: &[MinuteRow],
    instances: &[&str],
    bin: u32,
) -> BTreeMap<(u32, usize), (u64, u64)> {
    let mut bins: BTreeMap<(u32, usize), (u64, u64)> = BTreeMap::new();
    for m in minutes {
        let index = instances.binary_search(&m.instance.as_str()).unwrap_or(0);
        let entry = bins.entry((m.minute / bin, index)).or_default();
        entry.0 += m.calls;
        entry.1 += m.http_429;
    }
    bins
}

/// One bar per run, oldest on the left: its height is the run's duration, its colour its
/// outcome.
pub(super) fn timeline_chart(runs: &[RunRecord]) -> String {
    let durations: Vec<f64> = runs.iter().map(duration_seconds).collect();
    let longest = durations.iter().copied().fold(1.0, f64::max);
    let mut out = open("timeline", "the last runs: duration, calls and outcome");
    // The axis in minutes, or in seconds for runs that short.
    let (scale, unit) = if longest >= 120.0 {
        (60.0, " min")
    } else {
        (1.0, " s")
    };
    y_axis(&mut out, longest / scale, unit);
    let max = longest;
    let slot = (WIDTH - LEFT - 8.0) / runs.len().max(1) as f64;
    let width = (slot * 0.7).min(40.0);
    for (i, (run, seconds)) in runs.iter().rev().zip(durations.iter().rev()).enumerate() {
        let outcome = outcome_of(run);
        let y = plot_y(*seconds, max);
        let _ = write!(
            out,
            r#"<rect data-run="{}" data-outcome="{outcome}" data-calls="{}" data-seconds="{seconds:.0}" class="run {outcome}" x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}"><title>run #{}, {}: {outcome}, {} calls, {:.0} s</title></rect>"#,
            run.id,
            run.counts.requests,
            LEFT + slot * i as f64 + (slot - width) / 2.0,
            width,
            (HEIGHT - BOTTOM - y).max(1.0),
            run.id,
            run.started_at.format("%Y-%m-%d %H:%M"),
            run.counts.requests,
            seconds
        );
    }
    out.push_str("</svg>");
    out
}

/// A run's outcome as a word (`running` for one with no end recorded).
pub(super) fn outcome_of(run: &RunRecord) -> &'static str {
    run.outcome.map_or("running", |o| o.as_str())
}

/// A run's wall time in seconds (0 for one with no end recorded).
pub(super) fn duration_seconds(run: &RunRecord) -> f64 {
    run.finished_at
        .map_or(0.0, |end| (end - run.started_at).as_seconds_f64().max(0.0))
}

/// Contacts by the age of their last fetch, one horizontal bar per age.
pub(super) fn freshness_chart(buckets: &[(String, i64)]) -> String {
    let max = buckets.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1) as f64;
    let row = (HEIGHT - TOP - 8.0) / buckets.len().max(1) as f64;
    let mut out = open("freshness", "contacts by the age of their last fetch");
    for (i, (label, n)) in buckets.iter().enumerate() {
        let y = TOP + row * i as f64;
        let width = (WIDTH - 140.0 - 80.0) * (*n as f64 / max);
        let _ = write!(
            out,
            r##"<text x="132" y="{:.1}" font-size="12" text-anchor="end" fill="#374151">{}</text><rect data-age="{}" data-count="{n}" x="140" y="{y:.1}" width="{width:.1}" height="{:.1}" fill="#2563eb"><title>{n} contacts: {}</title></rect><text x="{:.1}" y="{:.1}" font-size="12" fill="#374151">{n}</text>"##,
            y + row * 0.55,
            escape(label),
            escape(label),
            row * 0.7,
            escape(label),
            146.0 + width,
            y + row * 0.55
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_carry_their_figures_and_text_is_escaped() {
        let minute = |minute, calls, http_429| MinuteRow {
            instance: "7105\"<x>".into(),
            minute,
            calls,
            http_429,
            spacing_ms: Some(1030.0),
        };
        let chart = minutes_chart(&[minute(0, 58, 0), minute(1, 60, 2)]);
        assert!(chart.contains(r#"data-minute="1" data-calls="60" data-http-429="2""#));
        assert!(chart.contains("7105&quot;&lt;x&gt;") && !chart.contains("<x>"));
        // A bar per minute, and a red mark on the one with 429s.
        assert_eq!(chart.matches("<rect").count(), 3);
        assert_eq!(chart.matches(r#"class="http-429""#).count(), 1);
        // A long run's minutes are summed into at most MAX_BARS bars.
        let long: Vec<MinuteRow> = (0..1000).map(|m| minute(m, 60, 0)).collect();
        let chart = minutes_chart(&long);
        assert_eq!(chart.matches("<rect").count(), 200);
        assert!(chart.contains(r#"data-minute="995" data-calls="300""#));
        let bars = freshness_chart(&[("under 1 day".into(), 5), ("over a year".into(), 0)]);
        assert!(bars.contains(r#"data-age="under 1 day" data-count="5""#));
        // Empty data draws an empty chart, never a NaN.
        for empty in [
            minutes_chart(&[]),
            timeline_chart(&[]),
            freshness_chart(&[]),
        ] {
            assert!(!empty.contains("NaN") && !empty.contains("inf"), "{empty}");
        }
    }
}
