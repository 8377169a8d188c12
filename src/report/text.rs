//! Plain terminal text, for laptops and the Actions log.

use std::fmt::Write;

use super::{Outcome, PhaseReport, RunReport, Status, human_duration};

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
    for error in &phase.errors {
        let _ = writeln!(out, "  error: {}", error.message);
        if let Some(hint) = &error.hint {
            let _ = writeln!(out, "    fix: {hint}");
        }
    }
    out
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
