//! Plain terminal text, for laptops and the Actions log: checklist rows,
//! tables and diffs of each phase, then the closing lines of a run.

use std::fmt::Write;

use similar::TextDiff as SimilarDiff;

use super::{Outcome, PhaseReport, RunReport, Status, TextDiff, human_duration};

/// Lines of a diff shown on the terminal before the rest is left to the
/// JSON report and the job summary.
pub const MAX_TERMINAL_DIFF_LINES: usize = 120;

/// Renders one phase for the terminal: checklist rows, then tables.
pub fn render_phase(phase: &PhaseReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} ({}) — {}",
        phase.outcome.word().to_uppercase(),
        phase.phase,
        human_duration(phase.duration_ms),
        phase.summary
    );
    for check in &phase.checks {
        let _ = writeln!(
            out,
            "  [{}] {}: {}",
            check.status.word(),
            check.title,
            check.evidence
        );
        if let Some(hint) = check.hint.as_ref().filter(|_| check.status != Status::Pass) {
            let _ = writeln!(out, "         fix: {hint}");
        }
    }
    for table in &phase.tables {
        let _ = writeln!(out, "  {}:", table.title);
        let widths: Vec<usize> = (0..table.columns.len())
            .map(|i| {
                table
                    .rows
                    .iter()
                    .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                    .chain([table.columns[i].chars().count()])
                    .max()
                    .unwrap_or(0)
                    .min(60)
            })
            .collect();
        let line = |cells: &[String]| {
            let mut s = String::from("   ");
            for (i, w) in widths.iter().enumerate() {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                let _ = write!(s, " {cell:<w$}");
            }
            s.trim_end().to_string()
        };
        let _ = writeln!(out, "{}", line(&table.columns));
        for row in table.rows.iter().take(50) {
            let _ = writeln!(out, "{}", line(row));
        }
        if table.rows.len() > 50 {
            let _ = writeln!(
                out,
                "    … {} more rows in the JSON report",
                table.rows.len() - 50
            );
        }
    }
    for diff in &phase.diffs {
        write_diff(&mut out, diff);
    }
    for error in &phase.errors {
        let _ = writeln!(out, "  error: {}", error.message);
        if let Some(hint) = &error.hint {
            let _ = writeln!(out, "    fix: {hint}");
        }
    }
    out
}

/// A before → after comparison as a unified diff (3 lines of context),
/// indented under its title, cut at [`MAX_TERMINAL_DIFF_LINES`].
fn write_diff(out: &mut String, diff: &TextDiff) {
    let _ = writeln!(out, "  {}:", diff.title);
    let text = SimilarDiff::from_lines(&diff.before, &diff.after)
        .unified_diff()
        .context_radius(3)
        .header(&diff.before_label, &diff.after_label)
        .to_string();
    let lines: Vec<&str> = text.lines().collect();
    for line in lines.iter().take(MAX_TERMINAL_DIFF_LINES) {
        let _ = writeln!(out, "    {line}");
    }
    if lines.len() > MAX_TERMINAL_DIFF_LINES {
        let _ = writeln!(
            out,
            "    … {} more diff lines in the JSON report",
            lines.len() - MAX_TERMINAL_DIFF_LINES
        );
    }
}

/// Renders the closing lines of a run.
pub fn render_footer(run: &RunReport, report_path: &str, summary_path: Option<&str>) -> String {
    let mut out = String::new();
    for error in &run.errors {
        let _ = writeln!(out, "error: {}", error.message);
        if let Some(hint) = &error.hint {
            let _ = writeln!(out, "  fix: {hint}");
        }
    }
    let phases: Vec<String> = run
        .phases
        .iter()
        .map(|p| format!("{} {}", p.phase, p.outcome.word()))
        .collect();
    let _ = writeln!(
        out,
        "cutover {}: {} ({})",
        run.phases_requested.join(","),
        run.outcome.word(),
        phases.join(", ")
    );
    let _ = writeln!(out, "report: {report_path}");
    if let Some(summary) = summary_path {
        let _ = writeln!(out, "summary: {summary}");
    }
    if run.outcome != Outcome::Success {
        let _ = writeln!(out, "re-run: {}", run.rerun_command);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::PhaseReport;

    #[test]
    fn diffs_are_shown_on_the_terminal() {
        let mut phase = PhaseReport::new("validate");
        phase.diffs.push(TextDiff {
            title: "Schema: source → target".into(),
            before_label: "source".into(),
            after_label: "target".into(),
            before: "table public.a\nindex public.a a_idx\n".into(),
            after: "table public.a\n".into(),
        });
        let text = render_phase(&phase);
        assert!(text.contains("  Schema: source → target:"), "{text}");
        assert!(text.contains("    --- source"), "{text}");
        assert!(text.contains("    -index public.a a_idx"), "{text}");

        let long: String = (0..300).map(|i| format!("line {i}\n")).collect();
        phase.diffs[0].before = long;
        phase.diffs[0].after = String::new();
        let text = render_phase(&phase);
        assert!(
            text.contains("more diff lines in the JSON report"),
            "{text}"
        );
    }
}
