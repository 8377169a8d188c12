//! The job summary: GitHub-flavoured Markdown an auditor reads top to bottom.
//!
//! GitHub refuses step summaries over 1 MiB, so tables are cut at
//! [`MAX_TABLE_ROWS`] rows and the whole page at [`MAX_SUMMARY_BYTES`], each
//! time with a note pointing at the JSON report, which always has everything.

use std::fmt::Write;

use similar::TextDiff as SimilarDiff;

use super::{CheckItem, Outcome, PhaseReport, ReportTable, RunReport, Status, human_duration};

/// GitHub's limit for one step summary is 1 MiB; stay below it with room for the note.
pub const MAX_SUMMARY_BYTES: usize = 1024 * 1024 - 4 * 1024;
/// Rows shown per table before the rest is left to the JSON report.
pub const MAX_TABLE_ROWS: usize = 200;
/// Lines shown per diff before the rest is left to the JSON report.
pub const MAX_DIFF_LINES: usize = 400;

/// Renders the whole job summary. `report_path` is named in truncation notes.
pub fn render(run: &RunReport, report_path: &str) -> String {
    let mut out = String::new();
    status_line(&mut out, run);
    checklist(&mut out, run);
    for phase in &run.phases {
        phase_section(&mut out, phase, report_path);
    }
    timings(&mut out, run);
    errors(&mut out, run);
    let _ = writeln!(
        out,
        "\n<sub>cutover {} · run `{}` · full report: `{}`</sub>",
        run.tool_version, run.run_id, report_path
    );
    truncate(out, report_path)
}

fn status_line(out: &mut String, run: &RunReport) {
    let ctx = &run.context;
    let project = if ctx.project.is_empty() {
        String::new()
    } else {
        format!(" · {}", escape(&ctx.project))
    };
    let _ = writeln!(
        out,
        "# {} cutover {}: {}{}\n",
        run.outcome.icon(),
        run.phases_requested.join(", "),
        run.outcome.word(),
        project
    );
    let mut facts = Vec::new();
    if let Some(source) = &ctx.source {
        facts.push(format!("**source** `{}`", source));
    }
    if let Some(target) = &ctx.target {
        facts.push(format!("**target** `{}`", target));
    }
    facts.push(format!("**environment** `{}`", ctx.environment));
    if ctx.dry_run {
        facts.push("**dry-run**: nothing was written".into());
    }
    if let Some(actor) = &ctx.actor {
        facts.push(format!("**started by** @{}", escape(actor)));
    }
    if let Some(sha) = &ctx.git_sha {
        facts.push(format!("**commit** `{}`", &sha[..sha.len().min(12)]));
    }
    if let Some(url) = &ctx.run_url {
        facts.push(format!("[workflow run]({url})"));
    }
    facts.push(format!(
        "**started** {}",
        run.started_at.format("%Y-%m-%d %H:%M:%S UTC")
    ));
    let total = (run.finished_at - run.started_at).num_milliseconds().max(0) as u64;
    facts.push(format!("**took** {}", human_duration(total)));
    let _ = writeln!(out, "{}\n", facts.join(" · "));
}

fn checklist(out: &mut String, run: &RunReport) {
    let items: Vec<(&str, &CheckItem)> = run.all_checks().collect();
    if items.is_empty() {
        return;
    }
    let (pass, fail, warn) = items
        .iter()
        .fold((0, 0, 0), |(p, f, w), (_, c)| match c.status {
            Status::Pass => (p + 1, f, w),
            Status::Fail => (p, f + 1, w),
            Status::Warn => (p, f, w + 1),
            Status::Skip => (p, f, w),
        });
    let _ = writeln!(
        out,
        "## Checklist\n\n{pass} passed, {fail} failed, {warn} warnings, {} skipped.\n",
        items.len() - pass - fail - warn
    );
    let mut table = ReportTable::new("", &["", "Phase", "Item", "Evidence"]);
    for (phase, item) in &items {
        let mut evidence = item.evidence.clone();
        if let Some(hint) = &item.hint {
            if item.status != Status::Pass {
                evidence.push_str(&format!(" — **fix:** {hint}"));
            }
        }
        table.push([
            item.status.icon().to_string(),
            phase.to_string(),
            item.title.clone(),
            evidence,
        ]);
    }
    write_table(out, &table, "the JSON report");
}

fn phase_section(out: &mut String, phase: &PhaseReport, report_path: &str) {
    let took = if phase.outcome == Outcome::Skipped {
        "not run".to_string()
    } else {
        human_duration(phase.duration_ms)
    };
    let _ = writeln!(
        out,
        "## {} {} <sub>{took}</sub>\n",
        phase.outcome.icon(),
        phase.phase,
    );
    if !phase.summary.is_empty() {
        let _ = writeln!(out, "{}\n", escape_text(&phase.summary));
    }
    for table in &phase.tables {
        if !table.title.is_empty() {
            let _ = writeln!(out, "### {}\n", escape_text(&table.title));
        }
        write_table(out, table, report_path);
    }
    for diff in &phase.diffs {
        let _ = writeln!(out, "### {}\n", escape_text(&diff.title));
        let text = SimilarDiff::from_lines(&diff.before, &diff.after)
            .unified_diff()
            .context_radius(3)
            .header(&diff.before_label, &diff.after_label)
            .to_string();
        let lines: Vec<&str> = text.lines().collect();
        let _ = writeln!(out, "```diff");
        for line in lines.iter().take(MAX_DIFF_LINES) {
            let _ = writeln!(out, "{}", line.replace("```", "`\u{200b}``"));
        }
        let _ = writeln!(out, "```");
        if lines.len() > MAX_DIFF_LINES {
            let _ = writeln!(
                out,
                "\n_{} more diff lines are in `{}`._",
                lines.len() - MAX_DIFF_LINES,
                report_path
            );
        }
        let _ = writeln!(out);
    }
}

fn timings(out: &mut String, run: &RunReport) {
    let ran: Vec<&PhaseReport> = run
        .phases
        .iter()
        .filter(|p| p.outcome != Outcome::Skipped)
        .collect();
    if ran.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Timings\n");
    let _ = writeln!(
        out,
        "```mermaid\ngantt\n    title Phase timings\n    dateFormat x\n    axisFormat %H:%M:%S"
    );
    for (i, phase) in ran.iter().enumerate() {
        let start = phase.started_at.timestamp_millis();
        // Mermaid draws nothing for zero-length bars.
        let end = start + phase.duration_ms.max(1) as i64;
        let tag = match phase.outcome {
            Outcome::Success => "done, ",
            Outcome::Failed | Outcome::Blocked => "crit, ",
            Outcome::Skipped => "",
        };
        let _ = writeln!(out, "    {} : {tag}p{i}, {start}, {end}", phase.phase);
    }
    let _ = writeln!(out, "```\n");
    let mut table = ReportTable::new("", &["Phase", "Outcome", "Started (UTC)", "Duration"]);
    for phase in &run.phases {
        table.push([
            phase.phase.clone(),
            format!("{} {}", phase.outcome.icon(), phase.outcome.word()),
            if phase.outcome == Outcome::Skipped {
                "—".to_string()
            } else {
                phase.started_at.format("%H:%M:%S%.3f").to_string()
            },
            if phase.outcome == Outcome::Skipped {
                "—".to_string()
            } else {
                human_duration(phase.duration_ms)
            },
        ]);
    }
    write_table(out, &table, "the JSON report");
}

fn errors(out: &mut String, run: &RunReport) {
    let mut lines = Vec::new();
    for error in &run.errors {
        lines.push(format_error("run", &error.message, error.hint.as_deref()));
    }
    for phase in &run.phases {
        for error in &phase.errors {
            lines.push(format_error(
                &phase.phase,
                &error.message,
                error.hint.as_deref(),
            ));
        }
        for check in phase.checks.iter().filter(|c| c.status == Status::Fail) {
            lines.push(format_error(
                &phase.phase,
                &format!("{}: {}", check.title, check.evidence),
                check.hint.as_deref(),
            ));
        }
    }
    if lines.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Errors\n");
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "\nRe-run after fixing:\n\n```sh\n{}\n```\n",
        run.rerun_command
    );
}

fn format_error(phase: &str, message: &str, hint: Option<&str>) -> String {
    let mut line = format!("- **{phase}**: {}", escape_text(message));
    if let Some(hint) = hint {
        line.push_str(&format!("<br>↳ **fix:** {}", escape_text(hint)));
    }
    line
}

/// Writes a Markdown table, cut at [`MAX_TABLE_ROWS`] rows with a note.
fn write_table(out: &mut String, table: &ReportTable, report_path: &str) {
    if table.rows.is_empty() {
        let _ = writeln!(out, "_(none)_\n");
        return;
    }
    let _ = writeln!(
        out,
        "| {} |",
        table
            .columns
            .iter()
            .map(|c| escape(c))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(out, "|{}", "---|".repeat(table.columns.len()));
    for row in table.rows.iter().take(MAX_TABLE_ROWS) {
        let _ = writeln!(
            out,
            "| {} |",
            row.iter()
                .map(|c| escape(c))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    let _ = writeln!(out);
    if table.rows.len() > MAX_TABLE_ROWS {
        let _ = writeln!(
            out,
            "_{} more rows are in `{}`._\n",
            table.rows.len() - MAX_TABLE_ROWS,
            report_path
        );
    }
    if let Some(note) = &table.note {
        let _ = writeln!(out, "{}\n", escape_text(note));
    }
}

/// Escapes a table cell: pipes and newlines would break the row.
fn escape(cell: &str) -> String {
    cell.replace('|', "\\|")
        .replace("\r\n", "<br>")
        .replace('\n', "<br>")
}

/// Keeps free text from opening HTML tags or code fences by accident.
fn escape_text(text: &str) -> String {
    text.replace('<', "&lt;").replace("```", "`\u{200b}``")
}

/// Cuts the page below GitHub's limit at a line boundary, with a note.
fn truncate(page: String, report_path: &str) -> String {
    if page.len() <= MAX_SUMMARY_BYTES {
        return page;
    }
    let note = format!(
        "\n\n> [!WARNING]\n> The summary was cut to stay under GitHub's 1 MiB limit; `{report_path}` has the full report.\n"
    );
    let mut cut = MAX_SUMMARY_BYTES - note.len();
    while !page.is_char_boundary(cut) {
        cut -= 1;
    }
    let end = page[..cut].rfind('\n').unwrap_or(cut);
    let mut page = page[..end].to_string();
    // An unclosed code fence would swallow the note.
    if page.matches("```").count() % 2 == 1 {
        page.push_str("\n```");
    }
    page.push_str(&note);
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{ErrorReport, RunContext, TextDiff};
    use chrono::{TimeZone, Utc};

    fn sample() -> RunReport {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 22, 8, 0, 0).unwrap();
        let mut preflight = PhaseReport::new("preflight");
        preflight.started_at = t0;
        preflight.duration_ms = 1830;
        preflight.outcome = Outcome::Failed;
        preflight.summary = "Checked 3 items; 1 failed.".into();
        preflight.check(CheckItem::new(
            "source-readable",
            "Source database readable",
            Status::Pass,
            "PostgreSQL 15.4; SELECT on 9 tables",
        ));
        preflight.check(
            CheckItem::new(
                "distinct-environments",
                "Source and target are different",
                Status::Fail,
                "both URLs point at 127.0.0.1:5432/app",
            )
            .with_hint("set target-db-url to the target project's database"),
        );
        preflight.check(CheckItem::new(
            "environment-protection",
            "Environment has required reviewers",
            Status::Skip,
            "no github-token",
        ));
        let mut counts = ReportTable::new("Source row counts", &["Table", "Rows"]);
        counts.push(["public.customers", "1,204"]);
        counts.push(["public.notes|x", "3"]);
        preflight
            .tables
            .push(counts.with_note("Exact counts in one snapshot."));
        preflight.diffs.push(TextDiff {
            title: "invoice_folder_path".into(),
            before_label: "target now".into(),
            after_label: "manifest".into(),
            before: "MyDrive/Dev\n".into(),
            after: "MyDrive/Invoice\n".into(),
        });
        let mut plan = PhaseReport::new("plan");
        plan.started_at = t0 - chrono::Duration::milliseconds(900);
        plan.duration_ms = 900;
        plan.summary = "Read-only.".into();
        let mut schema = PhaseReport::new("schema");
        schema.outcome = Outcome::Skipped;
        RunReport {
            tool_version: "0.1.0".into(),
            run_id: "00000000-0000-0000-0000-000000000001".into(),
            phases_requested: vec!["plan".into(), "preflight".into(), "schema".into()],
            context: RunContext {
                project: "ops-portal".into(),
                source: Some("127.0.0.1:5432/app".into()),
                target: Some("127.0.0.1:5432/app".into()),
                environment: "production".into(),
                dry_run: false,
                git_sha: Some("0123456789abcdef0123".into()),
                actor: Some("octocat".into()),
                run_url: Some("https://github.com/o/r/actions/runs/1".into()),
                manifest: "cutover.toml".into(),
            },
            started_at: t0 - chrono::Duration::milliseconds(900),
            finished_at: t0 + chrono::Duration::milliseconds(1830),
            outcome: Outcome::Failed,
            phases: vec![plan, preflight, schema],
            errors: vec![ErrorReport {
                message: "example error".into(),
                hint: Some("example hint".into()),
            }],
            rerun_command: "cutover plan,preflight,schema --manifest cutover.toml".into(),
        }
    }

    #[test]
    fn summary_snapshot() {
        insta::assert_snapshot!(render(&sample(), "cutover-report.json"));
    }

    #[test]
    fn long_tables_are_cut_with_a_note() {
        let mut run = sample();
        let mut big = ReportTable::new("Big", &["n"]);
        for i in 0..(MAX_TABLE_ROWS + 5) {
            big.push([i.to_string()]);
        }
        run.phases[0].tables.push(big);
        let page = render(&run, "r.json");
        assert!(page.contains("_5 more rows are in `r.json`._"), "{page}");
        assert!(!page.contains(&format!("| {} |", MAX_TABLE_ROWS + 1)));
    }

    #[test]
    fn the_page_stays_under_the_limit() {
        let mut run = sample();
        for t in 0..40 {
            let mut table = ReportTable::new(&format!("T{t}"), &["a", "b"]);
            for i in 0..MAX_TABLE_ROWS {
                table.push([format!("{i}"), "x".repeat(200)]);
            }
            run.phases[0].tables.push(table);
        }
        let page = render(&run, "r.json");
        assert!(page.len() <= MAX_SUMMARY_BYTES, "{}", page.len());
        assert!(page.contains("has the full report"));
        assert_eq!(
            page.matches("```").count() % 2,
            0,
            "code fences stay balanced"
        );
    }
}
