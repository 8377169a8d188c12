//! The job summary: GitHub-flavoured Markdown an auditor reads top to bottom.
//!
//! One screen first: the verdict, what needs a human (failed and blocked
//! checklist rows, warnings such as manual follow-ups after an undo), the rest
//! of the checklist, the phases with their durations. Evidence follows, each
//! fact once (the phases' row counts in one table, the migrations in one
//! table), in `<details>` blocks that are open when short
//! ([`FOLD_ROWS`], as atlas-action folds lists) and closed when long or when
//! they only show that things passed.
//!
//! GitHub refuses step summaries over 1 MiB, so tables are cut at
//! [`MAX_TABLE_ROWS`] rows and the whole page at [`MAX_SUMMARY_BYTES`], each
//! time with a note pointing at the JSON report, which always has everything.

use std::fmt::Write;

use super::{
    Cell, CheckItem, Outcome, PhaseReport, ReportTable, RunReport, Status, count, human_duration,
    noun, split_emphasis,
};
use crate::cells;

/// GitHub's limit for one step summary is 1 MiB; stay below it with room for the note.
pub const MAX_SUMMARY_BYTES: usize = 1024 * 1024 - 4 * 1024;
/// Rows shown per table before the rest is left to the JSON report.
pub const MAX_TABLE_ROWS: usize = 200;
/// Lines shown per diff before the rest is left to the JSON report.
pub const MAX_DIFF_LINES: usize = 400;
/// Lists longer than this are folded (closed `<details>`); shorter ones open.
pub const FOLD_ROWS: usize = 15;
/// Cells of merged tables up to this many characters are kept on one line.
const SHORT_CELL: usize = 24;
/// Runs shorter than this get no gantt chart: its ticks would all read the
/// same second; the phases table has the durations.
pub const GANTT_MIN_MS: u64 = 10_000;

/// Renders the whole job summary. `report_path` is named in truncation notes.
pub fn render(run: &RunReport, report_path: &str) -> String {
    let mut out = String::new();
    status_line(&mut out, run);
    if let Some(sign_off) = run.sign_off() {
        sign_off_section(&mut out, &sign_off);
    }
    let checklist = run.checklist();
    needs_attention(&mut out, run, &checklist);
    checklist_section(&mut out, &checklist);
    phases_table(&mut out, run);
    for table in merged_tables(run) {
        let open = table.rows.len() <= FOLD_ROWS;
        let summary = format!(
            "<b>{}</b> · {}",
            inline(&table.title),
            count(table.rows.len(), "row", "rows")
        );
        folded(&mut out, &summary, open, |out| {
            write_table(out, &table, report_path)
        });
    }
    evidence(&mut out, run, report_path);
    let _ = writeln!(
        out,
        "<sub>cutover {} · run `{}` · full report: `{}`</sub>",
        run.tool_version,
        run.run_id,
        code_text(report_path)
    );
    truncate(out, report_path)
}

/// The runbook's closing table, first in a release's summary.
fn sign_off_section(out: &mut String, sign_off: &super::SignOff) {
    let _ = writeln!(out, "## Release sign-off\n");
    let _ = writeln!(out, "| Step | Completed | By | Time |");
    let _ = writeln!(out, "|---|---|---|---|");
    for step in &sign_off.steps {
        let icon = match step.status.as_str() {
            "done" => "✅",
            "failed" => "❌",
            "not run" => "⏭️",
            _ => "—",
        };
        let _ = writeln!(
            out,
            "| {} | {icon} {} | {} | {} |",
            cell(&step.step),
            cell(&step.status),
            cell(step.by.as_deref().unwrap_or("")),
            step.at
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_default()
        );
    }
    let verified = if sign_off.verified_by.is_empty() {
        "no approval recorded".to_string()
    } else {
        sign_off.verified_by.join(", ")
    };
    let _ = writeln!(
        out,
        "\n**Deployment status:** {} · **Deployed by:** {} · **Verified by:** {} · **Date/Time:** {}\n",
        sign_off.status,
        cell(sign_off.deployed_by.as_deref().unwrap_or("unknown")),
        cell(&verified),
        sign_off.at.format("%Y-%m-%d %H:%M:%S UTC")
    );
}

fn status_line(out: &mut String, run: &RunReport) {
    let ctx = &run.context;
    let project = if ctx.project.is_empty() {
        String::new()
    } else {
        format!(" · {}", inline(&ctx.project))
    };
    let _ = writeln!(
        out,
        "# {} cutover {}: {}{}\n",
        run.outcome.icon(),
        inline(&run.phases_requested.join(", ")),
        run.outcome.word(),
        project
    );
    let mut facts = Vec::new();
    if let Some(source) = &ctx.source {
        facts.push(format!("**source** `{}`", code_text(source)));
    }
    if let Some(target) = &ctx.target {
        facts.push(format!("**target** `{}`", code_text(target)));
    }
    facts.push(format!("**environment** `{}`", code_text(&ctx.environment)));
    if ctx.dry_run {
        facts.push("**dry-run**: nothing was written".into());
    }
    if let Some(actor) = &ctx.actor {
        facts.push(format!("**started by** @{}", inline(actor)));
    }
    if let Some(sha) = &ctx.git_sha {
        facts.push(format!(
            "**commit** `{}`",
            code_text(&sha.chars().take(12).collect::<String>())
        ));
    }
    if let Some(url) = &ctx.run_url {
        facts.push(format!("[workflow run](<{}>)", url.replace(['<', '>'], "")));
    }
    facts.push(format!(
        "**started** {}",
        run.started_at.format("%Y-%m-%d %H:%M:%S UTC")
    ));
    let _ = writeln!(
        out,
        "{} · **took** {}\n",
        facts.join(" · "),
        human_duration(run_ms(run))
    );
}

fn run_ms(run: &RunReport) -> u64 {
    (run.finished_at - run.started_at).num_milliseconds().max(0) as u64
}

/// Failed rows (⛔ when their phase was blocked, so gate refusals read as
/// such) and warnings, with their fixes, then the command that re-runs.
fn needs_attention(out: &mut String, run: &RunReport, checklist: &[(String, CheckItem)]) {
    let blocked = |phase: &str| {
        run.phases
            .iter()
            .any(|p| p.phase == phase && p.outcome == Outcome::Blocked)
    };
    let mut rows: Vec<&(String, CheckItem)> = checklist
        .iter()
        .filter(|(_, c)| matches!(c.status, Status::Fail | Status::Warn))
        .collect();
    rows.sort_by_key(|(_, c)| severity(c.status));
    if rows.is_empty() && run.outcome == Outcome::Success {
        return;
    }
    let _ = writeln!(out, "## Needs attention\n");
    let failed = rows
        .iter()
        .filter(|(_, c)| c.status == Status::Fail)
        .count();
    let warned = rows.len() - failed;
    let mut said = Vec::new();
    if failed > 0 {
        said.push(format!("{failed} failed"));
    }
    if warned > 0 {
        said.push(count(warned, "warning", "warnings"));
    }
    if !said.is_empty() {
        let _ = writeln!(out, "{}.\n", said.join(", "));
    }
    let mut table = ReportTable::new("", &["", "Phase", "Item", "Evidence and fix"]);
    for (phase, item) in &rows {
        let icon = if item.status == Status::Fail && blocked(phase) {
            Outcome::Blocked.icon()
        } else {
            item.status.icon()
        };
        let mut evidence = cell(&item.evidence);
        if let Some(hint) = &item.hint {
            let _ = write!(evidence, "<br>↳ **fix:** {}", cell(hint));
        }
        table.push([icon.to_string(), cell(phase), cell(&item.title), evidence]);
    }
    if !table.rows.is_empty() {
        write_rows(out, &table, "the JSON report");
    }
    if run.outcome != Outcome::Success {
        let _ = writeln!(
            out,
            "Re-run after fixing:\n\n```sh\n{}\n```\n",
            run.rerun_command.replace("```", "` ``")
        );
    }
}

fn severity(status: Status) -> u8 {
    match status {
        Status::Fail => 0,
        Status::Warn => 1,
        Status::Skip => 2,
        Status::Pass => 3,
    }
}

/// The counts, then the rows not already under "Needs attention": skipped
/// ones shown, passing ones folded when the checklist is long.
fn checklist_section(out: &mut String, checklist: &[(String, CheckItem)]) {
    if checklist.is_empty() {
        return;
    }
    let tally = |status: Status| checklist.iter().filter(|(_, c)| c.status == status).count();
    let (pass, fail, warn, skip) = (
        tally(Status::Pass),
        tally(Status::Fail),
        tally(Status::Warn),
        tally(Status::Skip),
    );
    let mut said = vec![format!("{pass} passed")];
    if fail > 0 {
        said.push(format!("{fail} failed"));
    }
    if warn > 0 {
        said.push(count(warn, "warning", "warnings"));
    }
    if skip > 0 {
        said.push(format!("{skip} skipped"));
    }
    let above = if fail + warn > 0 {
        format!(
            " The {} above {} what needs attention.",
            noun(fail + warn, "row", "rows"),
            noun(fail + warn, "is", "are")
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "## Checklist\n\n{}: {}.{above}\n",
        count(checklist.len(), "item", "items"),
        said.join(", ")
    );
    let row = |(phase, item): &(String, CheckItem)| -> Vec<Cell> {
        cells![
            item.status.icon(),
            cell(phase),
            cell(&item.title),
            cell(&item.evidence),
        ]
    };
    let columns = ["", "Phase", "Item", "Evidence"];
    let skipped: Vec<Vec<Cell>> = checklist
        .iter()
        .filter(|(_, c)| c.status == Status::Skip)
        .map(row)
        .collect();
    let passed: Vec<Vec<Cell>> = checklist
        .iter()
        .filter(|(_, c)| c.status == Status::Pass)
        .map(row)
        .collect();
    if skipped.len() + passed.len() <= FOLD_ROWS {
        let mut table = ReportTable::new("", &columns);
        table.rows = skipped.into_iter().chain(passed).collect();
        if !table.rows.is_empty() {
            write_rows(out, &table, "the JSON report");
        }
        return;
    }
    if !skipped.is_empty() {
        let mut table = ReportTable::new("", &columns);
        table.rows = skipped;
        write_rows(out, &table, "the JSON report");
    }
    let mut table = ReportTable::new("", &columns);
    table.rows = passed;
    let summary = format!("{} passed", table.rows.len());
    folded(out, &summary, false, |out| {
        write_rows(out, &table, "the JSON report")
    });
}

/// One row per phase: outcome, duration and what it did; a gantt chart
/// below it only when the run was long enough for one to show something.
fn phases_table(out: &mut String, run: &RunReport) {
    if run.phases.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Phases\n");
    let mut table = ReportTable::new("", &["Phase", "Outcome", "Took", "What it did"]);
    for phase in &run.phases {
        let took = if phase.outcome == Outcome::Skipped {
            "—".to_string()
        } else {
            human_duration(phase.duration_ms).replace(' ', "\u{a0}")
        };
        table.push([
            cell(&phase.phase),
            format!("{} {}", phase.outcome.icon(), phase.outcome.word()),
            took,
            cell(&phase.summary),
        ]);
    }
    write_rows(out, &table, "the JSON report");
    let ran: Vec<&PhaseReport> = run
        .phases
        .iter()
        .filter(|p| p.outcome != Outcome::Skipped)
        .collect();
    if run_ms(run) < GANTT_MIN_MS || ran.is_empty() {
        return;
    }
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
        let name: String = phase
            .phase
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        let _ = writeln!(out, "    {name} : {tag}p{i}, {start}, {end}");
    }
    let _ = writeln!(out, "```\n");
}

/// The tables phases mark with [`ReportTable::merge_as`], one per title, in
/// the order of their first appearance. Rows and columns are taken from the
/// latest table first, so its measurement leads; a cell an earlier phase also
/// filled keeps the later value.
fn merged_tables(run: &RunReport) -> Vec<ReportTable> {
    // Each merged table, the phases it joins, and the phase of each column.
    let mut merged: Vec<(ReportTable, Vec<String>, Vec<String>)> = Vec::new();
    let marked = run
        .phases
        .iter()
        .rev()
        .flat_map(|p| p.tables.iter().rev().map(move |t| (p.phase.as_str(), t)))
        .filter_map(|(phase, t)| t.merge_as.as_deref().map(|title| (phase, title, t)));
    for (phase, title, table) in marked {
        let index = match merged.iter().position(|(m, _, _)| m.title == title) {
            Some(i) => i,
            None => {
                let first = table.columns.first().cloned().unwrap_or_default();
                let mut fresh = ReportTable::new(title, &[]);
                fresh.columns.push(first);
                merged.push((fresh, Vec::new(), vec![phase.to_string()]));
                merged.len() - 1
            }
        };
        let (into, phases, origins) = &mut merged[index];
        if !phases.iter().any(|p| p == phase) {
            phases.insert(0, phase.to_string());
        }
        let positions: Vec<usize> = table
            .columns
            .iter()
            .enumerate()
            .map(|(i, name)| {
                if i == 0 {
                    return 0;
                }
                match into.columns.iter().position(|c| c == name) {
                    Some(p) => p,
                    None => {
                        into.columns.push(name.clone());
                        origins.push(phase.to_string());
                        for row in &mut into.rows {
                            row.push(Cell::from(""));
                        }
                        into.columns.len() - 1
                    }
                }
            })
            .collect();
        for row in &table.rows {
            let Some(key) = row.first() else { continue };
            let at = match into.rows.iter().position(|r| &r[0] == key) {
                Some(at) => at,
                None => {
                    let mut fresh = vec![Cell::from(""); into.columns.len()];
                    fresh[0] = key.clone();
                    into.rows.push(fresh);
                    into.rows.len() - 1
                }
            };
            for (value, &column) in row.iter().zip(&positions).skip(1) {
                if into.rows[at][column].is_empty() {
                    into.rows[at][column] = value.clone();
                }
            }
        }
        if let Some(note) = &table.note {
            let notes = into.note.get_or_insert_with(String::new);
            if !notes.contains(note.as_str()) {
                let joined = if notes.is_empty() {
                    note.clone()
                } else {
                    format!("{note} {notes}")
                };
                *notes = joined;
            }
        }
    }
    merged
        .into_iter()
        .map(|(mut table, phases, origins)| {
            drop_repeated_columns(&mut table, origins);
            for row in &mut table.rows {
                for value in row.iter_mut() {
                    let shown = value.to_string();
                    if value.is_empty() {
                        *value = "—".into();
                    } else if shown.chars().count() <= SHORT_CELL {
                        // A short figure ("481 B in 48 ms") broken over two
                        // lines doubles the row; a wide table scrolls instead.
                        *value = shown.replace(' ', "\u{a0}").into();
                    }
                }
            }
            table.title = format!("{} ({})", table.title, phases.join(", "));
            table
        })
        .collect()
}

/// Drops a column that repeats, in every row, an earlier column another
/// phase gave (the rows the data phase copied, where they equal the source's
/// count): one fact, once. Two columns of one phase (source and target
/// counts) are two facts even when equal.
fn drop_repeated_columns(table: &mut ReportTable, mut origins: Vec<String>) {
    let mut column = 1;
    while column < table.columns.len() {
        let repeats = !table.rows.is_empty()
            && (1..column).any(|earlier| {
                origins[earlier] != origins[column]
                    && table
                        .rows
                        .iter()
                        // Compared as shown: a count equals the same
                        // figure another phase gave as text.
                        .all(|row| {
                            !row[column].is_empty()
                                && row[column].to_string() == row[earlier].to_string()
                        })
            });
        if repeats {
            origins.remove(column);
            table.columns.remove(column);
            for row in &mut table.rows {
                row.remove(column);
            }
        } else {
            column += 1;
        }
    }
}

/// Every phase's own tables and diffs, each folded: open when short and
/// its phase did not succeed, closed otherwise.
fn evidence(out: &mut String, run: &RunReport, report_path: &str) {
    let shown: Vec<&PhaseReport> = run
        .phases
        .iter()
        .filter(|p| {
            p.tables.iter().any(|t| t.merge_as.is_none())
                || !p.diffs.is_empty()
                || !p.charts.is_empty()
        })
        .collect();
    if shown.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Evidence\n");
    for phase in shown {
        let attention = phase.outcome != Outcome::Success;
        for table in phase.tables.iter().filter(|t| t.merge_as.is_none()) {
            let summary = format!(
                "<b>{}</b> · {} · {}",
                cell(&phase.phase),
                inline(&table.title),
                count(table.rows.len(), "row", "rows")
            );
            let open = attention && table.rows.len() <= FOLD_ROWS;
            folded(out, &summary, open, |out| {
                write_table(out, table, report_path)
            });
        }
        for chart in &phase.charts {
            line_chart(out, chart);
        }
        for diff in &phase.diffs {
            let text = diff.unified();
            let lines: Vec<&str> = text.lines().collect();
            let summary = format!(
                "<b>{}</b> · {} · {} → {}",
                cell(&phase.phase),
                inline(&diff.title),
                inline(&diff.before_label),
                inline(&diff.after_label)
            );
            let open = attention && lines.len() <= FOLD_ROWS;
            folded(out, &summary, open, |out| {
                let _ = writeln!(out, "```diff");
                for line in lines.iter().take(MAX_DIFF_LINES) {
                    let _ = writeln!(out, "{}", line.replace("```", "`\u{200b}``"));
                }
                let _ = writeln!(out, "```\n");
                if lines.len() > MAX_DIFF_LINES {
                    let _ = writeln!(
                        out,
                        "_{} more diff lines are in `{}`._\n",
                        lines.len() - MAX_DIFF_LINES,
                        code_text(report_path)
                    );
                }
            });
        }
    }
}

/// Points drawn per chart at most; longer series keep their last points
/// (the table above has every figure).
pub const MAX_CHART_POINTS: usize = 60;

/// A Mermaid `xychart-beta` line chart, which GitHub draws in the summary;
/// the threshold, when set, as a second line.
fn line_chart(out: &mut String, chart: &super::LineChart) {
    let len = chart.x_labels.len();
    if len < 2 || chart.series.is_empty() {
        return;
    }
    let from = len.saturating_sub(MAX_CHART_POINTS);
    let quote = |text: &str| {
        let clean: String = text
            .chars()
            .filter(|c| !matches!(c, '"' | '`' | '\n' | '\r' | '[' | ']'))
            .collect();
        format!("\"{clean}\"")
    };
    let number = |v: f64| {
        if v.is_finite() {
            let text = format!("{v:.3}");
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            "0".to_string()
        }
    };
    let mut top = chart.limit.unwrap_or(0.0);
    for (_, values) in &chart.series {
        for v in values.iter().skip(from).copied().filter(|v| v.is_finite()) {
            top = top.max(v);
        }
    }
    if top <= 0.0 {
        top = 1.0;
    }
    let _ = writeln!(out, "```mermaid\nxychart-beta");
    let _ = writeln!(out, "    title {}", quote(&chart.title));
    let labels: Vec<String> = chart.x_labels[from..].iter().map(|l| quote(l)).collect();
    let _ = writeln!(out, "    x-axis [{}]", labels.join(", "));
    let _ = writeln!(
        out,
        "    y-axis {} 0 --> {}",
        quote(&chart.y_label),
        number(top * 1.1)
    );
    for (_, values) in &chart.series {
        let points: Vec<String> = values
            .iter()
            .skip(from)
            .take(len - from)
            .map(|v| number(*v))
            .collect();
        let _ = writeln!(out, "    line [{}]", points.join(", "));
    }
    if let Some(limit) = chart.limit {
        let points = vec![number(limit); len - from];
        let _ = writeln!(out, "    line [{}]", points.join(", "));
    }
    let _ = writeln!(out, "```\n");
    let mut legend: Vec<String> = chart.series.iter().map(|(name, _)| inline(name)).collect();
    if let Some(limit) = chart.limit {
        legend.push(format!("threshold {}", number(limit)));
    }
    let _ = writeln!(
        out,
        "<sub>{}: {}</sub>\n",
        inline(&chart.title),
        legend.join(" · ")
    );
}

/// A `<details>` block around what `body` writes; `summary` is HTML.
fn folded(out: &mut String, summary: &str, open: bool, body: impl FnOnce(&mut String)) {
    let _ = writeln!(
        out,
        "<details{}><summary>{summary}</summary>\n",
        if open { " open" } else { "" }
    );
    body(out);
    let _ = writeln!(out, "</details>\n");
}

/// Writes a table of plain cells (escaped here), its note and a cut note.
fn write_table(out: &mut String, table: &ReportTable, report_path: &str) {
    if table.rows.is_empty() {
        let _ = writeln!(out, "_(none)_\n");
    } else {
        let mut escaped = table.clone();
        escaped.rows = table
            .rows
            .iter()
            .map(|row| row.iter().map(|c| markdown_cell(c).into()).collect())
            .collect();
        write_rows(out, &escaped, report_path);
    }
    if let Some(note) = &table.note {
        let _ = writeln!(out, "{}\n", inline(note));
    }
}

/// Writes a table whose cells are already Markdown, cut at
/// [`MAX_TABLE_ROWS`] rows with a note.
fn write_rows(out: &mut String, table: &ReportTable, report_path: &str) {
    let _ = writeln!(
        out,
        "| {} |",
        table
            .columns
            .iter()
            .map(|c| cell(c))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(out, "|{}", "---|".repeat(table.columns.len()));
    for row in table.rows.iter().take(MAX_TABLE_ROWS) {
        let shown: Vec<String> = row.iter().map(Cell::to_string).collect();
        let _ = writeln!(out, "| {} |", shown.join(" | "));
    }
    let _ = writeln!(out);
    if table.rows.len() > MAX_TABLE_ROWS {
        let _ = writeln!(
            out,
            "_{} more rows are in `{}`._\n",
            table.rows.len() - MAX_TABLE_ROWS,
            code_text(report_path)
        );
    }
}

/// A report cell as Markdown: text through [`cell`], a verdict's reason too.
fn markdown_cell(value: &Cell) -> String {
    match value {
        Cell::Text(text) => cell(text),
        Cell::Verdict {
            status,
            note: Some(note),
        } => format!("{} {}", status.icon(), cell(note)),
        other => other.to_string(),
    }
}

/// A table cell: [`inline`] text with pipes escaped (even in code spans, as
/// GFM tables need) and line breaks as `<br>`; an [`super::emphasis`] cell
/// stays bold.
pub fn cell(text: &str) -> String {
    let (inner, bold) = split_emphasis(text);
    let escaped = escape(inner, true);
    if bold {
        format!("**{escaped}**")
    } else {
        escaped
    }
}

/// Free text (summaries, notes, titles, messages) as Markdown that shows it
/// as written: HTML-like `<words>`, emphasis and escape characters are
/// escaped, so `<version>_<name>.sql` reads as such; `code spans` the phases
/// write stay code spans, and an unmatched backtick is shown as one.
pub fn inline(text: &str) -> String {
    escape(text, false)
}

fn escape(text: &str, in_table: bool) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '`' {
            let run = chars[i..].iter().take_while(|&&c| c == '`').count();
            match closing_backticks(&chars, i + run, run) {
                Some(end) => {
                    let fence = "`".repeat(run);
                    out.push_str(&fence);
                    for &ch in &chars[i + run..end] {
                        match ch {
                            '|' if in_table => out.push_str("\\|"),
                            '\n' | '\r' => out.push(' '),
                            _ => out.push(ch),
                        }
                    }
                    out.push_str(&fence);
                    i = end + run;
                }
                None => {
                    for _ in 0..run {
                        out.push_str("\\`");
                    }
                    i += run;
                }
            }
            continue;
        }
        let word_char = |at: Option<&char>| at.is_some_and(|c| c.is_alphanumeric());
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '*' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '|' if in_table => out.push_str("\\|"),
            // Intraword underscores (`invoice_folder_path`) never emphasise.
            '_' if !(word_char(i.checked_sub(1).and_then(|p| chars.get(p)))
                && word_char(chars.get(i + 1))) =>
            {
                out.push_str("\\_")
            }
            '\r' => {}
            '\n' => out.push_str("<br>"),
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

/// Where the run of `run` backticks that closes a code span opened before
/// `from` starts, if any.
fn closing_backticks(chars: &[char], from: usize, run: usize) -> Option<usize> {
    let mut i = from;
    while i < chars.len() {
        if chars[i] == '`' {
            let here = chars[i..].iter().take_while(|&&c| c == '`').count();
            if here == run {
                return Some(i);
            }
            i += here;
        } else {
            i += 1;
        }
    }
    None
}

/// Text placed inside a code span we write ourselves: a backtick would end it.
fn code_text(text: &str) -> String {
    text.replace('`', "'")
}

/// Cuts the page below GitHub's limit at a line boundary, with a note.
fn truncate(page: String, report_path: &str) -> String {
    if page.len() <= MAX_SUMMARY_BYTES {
        return page;
    }
    let note = format!(
        "\n\n> [!WARNING]\n> The summary was cut to stay under GitHub's 1 MiB limit; `{}` has the full report.\n",
        code_text(report_path)
    );
    // Room for the closing fence and tags added below.
    let mut cut = MAX_SUMMARY_BYTES - note.len() - 1024;
    while !page.is_char_boundary(cut) {
        cut -= 1;
    }
    let end = page[..cut].rfind('\n').unwrap_or(cut);
    let mut page = page[..end].to_string();
    // An unclosed code fence would swallow the note, a closed <details> hide it.
    if page.matches("```").count() % 2 == 1 {
        page.push_str("\n```\n");
    }
    let open = page.matches("<details").count();
    let closed = page.matches("</details>").count();
    for _ in closed..open {
        page.push_str("\n</details>\n");
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

    /// A release run: schema and data done, functions failed, cutover and
    /// smoke stopped before they ran.
    fn release() -> RunReport {
        let mut run = sample();
        let t0 = run.started_at;
        let phase = |name: &str, outcome: Outcome, minutes: i64| {
            let mut p = PhaseReport::new(name);
            p.outcome = outcome;
            p.started_at = t0 + chrono::Duration::minutes(minutes);
            p.duration_ms = 1000;
            p
        };
        run.phases_requested = ["schema", "data", "functions", "cutover", "smoke"]
            .map(String::from)
            .to_vec();
        run.phases = vec![
            phase("schema", Outcome::Success, 1),
            phase("data", Outcome::Success, 2),
            phase("functions", Outcome::Failed, 3),
            phase("cutover", Outcome::Skipped, 0),
            phase("smoke", Outcome::Skipped, 0),
        ];
        run.phases[3].approvers = vec!["reviewer-a".into()];
        run.outcome = run.compute_outcome();
        run
    }

    #[test]
    fn a_release_starts_with_the_runbooks_sign_off() {
        let run = release();
        let sign_off = run.sign_off().expect("cutover was asked for");
        let status: Vec<(&str, &str)> = sign_off
            .steps
            .iter()
            .map(|s| (s.step.as_str(), s.status.as_str()))
            .collect();
        assert_eq!(
            status,
            [
                ("Database migration", "done"),
                ("Edge functions deployed", "failed"),
                ("Frontend deployed", "not run"),
                ("Smoke tests passed", "not run"),
                ("Monitoring confirmed", "not in this run"),
            ]
        );
        assert_eq!(sign_off.status, "Partial");
        assert_eq!(sign_off.deployed_by.as_deref(), Some("@octocat"));
        assert_eq!(sign_off.verified_by, ["@reviewer-a"]);
        assert_eq!(
            sign_off.steps[0].at,
            Some(run.started_at + chrono::Duration::seconds(121))
        );

        let page = render(&run, "r.json");
        let table_at = page.find("## Release sign-off").expect("sign-off shown");
        assert!(
            table_at < page.find("## Checklist").unwrap(),
            "the first table: {page}"
        );
        assert!(
            page.contains("| Database migration | ✅ done | @octocat |"),
            "{page}"
        );
        assert!(page.contains("**Deployment status:** Partial"), "{page}");
        let json = crate::report::json::render(&run);
        assert!(
            json.contains("\"sign_off\"") && json.contains("\"Partial\""),
            "{json}"
        );

        let mut all_done = release();
        all_done.errors.clear();
        for p in &mut all_done.phases {
            p.outcome = Outcome::Success;
        }
        all_done.outcome = all_done.compute_outcome();
        assert_eq!(all_done.sign_off().unwrap().status, "Success");
        assert!(
            sample().sign_off().is_none(),
            "no cutover asked: no sign-off"
        );
        let mut none_done = release();
        none_done.phases[0].outcome = Outcome::Failed;
        none_done.phases[1].outcome = Outcome::Skipped;
        assert_eq!(none_done.sign_off().unwrap().status, "Failed");
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

    #[test]
    fn user_text_is_escaped_and_code_spans_kept() {
        assert_eq!(
            inline("rename to <version>_<name>.sql"),
            "rename to &lt;version&gt;\\_&lt;name&gt;.sql"
        );
        assert_eq!(inline("invoice_folder_path"), "invoice_folder_path");
        assert_eq!(inline("a *b* c\\d ~e~"), "a \\*b\\* c\\\\d \\~e\\~");
        assert_eq!(inline("one ` stray"), "one \\` stray");
        assert_eq!(inline("run `repair <version>`"), "run `repair <version>`");
        assert_eq!(cell("a|b"), "a\\|b");
        assert_eq!(cell("`x|y`"), "`x\\|y`");
        assert_eq!(cell("line\nnext"), "line<br>next");
        assert_eq!(cell("**differs**"), "**differs**");
        assert_eq!(cell("**<b>**"), "**&lt;b&gt;**");
    }

    #[test]
    fn a_phase_that_stopped_is_a_failed_checklist_row() {
        let mut run = sample();
        run.errors.clear();
        run.phases[1].checks.retain(|c| c.status != Status::Fail);
        run.phases[1].errors.push(ErrorReport {
            message: "connection refused".into(),
            hint: Some("start the server".into()),
        });
        let page = render(&run, "r.json");
        assert!(
            page.contains("3 items: 1 passed, 1 failed, 1 skipped."),
            "{page}"
        );
        assert!(
            page.contains("| ❌ | preflight | Phase ran to the end | connection refused<br>↳ **fix:** start the server |"),
            "{page}"
        );
        // Failed with neither a failed row nor an error: still a failed row.
        run.phases[1].errors.clear();
        let page = render(&run, "r.json");
        assert!(
            page.contains(
                "| ❌ | preflight | Phase ran to the end | failed: Checked 3 items; 1 failed. |"
            ),
            "{page}"
        );
    }

    #[test]
    fn blocked_rows_and_warnings_need_attention() {
        let mut run = sample();
        run.errors.clear();
        run.phases[1].outcome = Outcome::Blocked;
        run.phases[1].check(
            CheckItem::new(
                "undo-frontend",
                "Undo: frontend restored",
                Status::Warn,
                "1 variable was not readable",
            )
            .with_hint("set it by hand"),
        );
        let page = render(&run, "r.json");
        let attention =
            &page[page.find("## Needs attention").unwrap()..page.find("## Checklist").unwrap()];
        assert!(attention.contains("1 failed, 1 warning."), "{attention}");
        assert!(
            attention.contains("| ⛔ | preflight | Source and target are different |"),
            "{attention}"
        );
        assert!(attention.contains("| ⚠️ | preflight | Undo: frontend restored | 1 variable was not readable<br>↳ **fix:** set it by hand |"), "{attention}");
        assert!(
            attention.find("⛔").unwrap() < attention.find("⚠️").unwrap(),
            "failures first"
        );
    }

    #[test]
    fn long_checklists_fold_their_passing_rows() {
        let mut run = sample();
        for i in 0..FOLD_ROWS {
            run.phases[0].check(CheckItem::new(
                &format!("c{i}"),
                &format!("Check {i}"),
                Status::Pass,
                "fine",
            ));
        }
        let page = render(&run, "r.json");
        assert!(
            page.contains("<details><summary>16 passed</summary>"),
            "{page}"
        );
        let before_fold = &page[..page.find("16 passed</summary>").unwrap()];
        assert!(
            before_fold.contains("| ⏭️ | preflight | Environment has required reviewers |"),
            "skips stay visible"
        );
        // Short lists stay open: the sample's checklist is one table.
        let short = render(&sample(), "r.json");
        assert!(!short.contains("passed</summary>"), "{short}");
    }

    #[test]
    fn evidence_folds_when_long_or_passing() {
        let mut run = sample();
        let mut long = ReportTable::new("Long", &["n"]);
        for i in 0..=FOLD_ROWS {
            long.push([i.to_string()]);
        }
        run.phases[1].tables.push(long);
        let mut passing = ReportTable::new("Plan table", &["n"]);
        passing.push(["1"]);
        run.phases[0].tables.push(passing);
        let page = render(&run, "r.json");
        assert!(
            page.contains(
                "<details open><summary><b>preflight</b> · Source row counts · 2 rows</summary>"
            ),
            "{page}"
        );
        assert!(
            page.contains("<details><summary><b>preflight</b> · Long · 16 rows</summary>"),
            "{page}"
        );
        assert!(
            page.contains("<details><summary><b>plan</b> · Plan table · 1 row</summary>"),
            "{page}"
        );
    }

    #[test]
    fn tables_of_several_phases_merge_into_one() {
        let mut run = sample();
        run.phases[1].tables[0].merge_as = Some(crate::report::ROW_COUNTS.into());
        run.phases[1].tables[0].columns[1] = "Source".into();
        let mut copied = ReportTable::new("Tables copied", &["Table", "Copied", "Copy"])
            .merged_as(crate::report::ROW_COUNTS);
        copied.push(["public.customers", "1,204", "1 KiB in 2 ms"]);
        copied.push(["public.notes|x", "2", "1 KiB in 2 ms"]);
        let mut validated =
            ReportTable::new("Row counts and checksums", &["Table", "Source", "Target"])
                .merged_as(crate::report::ROW_COUNTS);
        validated.push(["public.customers", "1,204", "1,204"]);
        let mut schema = run.phases[2].clone();
        schema.outcome = Outcome::Success;
        schema.tables = vec![copied, validated];
        run.phases[2] = schema;
        let page = render(&run, "r.json");
        assert_eq!(page.matches("public.customers").count(), 1, "{page}");
        // The copied count repeats the source's in one row, not in the other: kept.
        assert!(
            page.contains("| Table | Source | Target | Copied | Copy |"),
            "{page}"
        );
        assert!(
            page.contains(
                "| public.customers | 1,204 | 1,204 | 1,204 | 1\u{a0}KiB\u{a0}in\u{a0}2\u{a0}ms |"
            ),
            "{page}"
        );
        assert!(page.contains("| public.notes\\|x | 3 | — | 2 |"), "{page}");
        assert!(
            page.contains("<b>Row counts (preflight, schema)</b> · 2 rows"),
            "{page}"
        );
    }

    #[test]
    fn charts_are_mermaid_xycharts_with_their_threshold() {
        let mut run = sample();
        let mut phase = PhaseReport::new("monitor");
        phase.charts.push(crate::report::LineChart {
            title: "API error rate \"edge\"".into(),
            x_labels: vec!["10:00".into(), "10:01".into(), "10:02".into()],
            y_label: "%".into(),
            series: vec![("error rate".into(), vec![0.0, 0.5, 2.25])],
            limit: Some(1.0),
        });
        run.phases.push(phase);
        let page = render(&run, "r.json");
        assert!(
            page.contains("```mermaid\nxychart-beta\n    title \"API error rate edge\""),
            "{page}"
        );
        assert!(
            page.contains("x-axis [\"10:00\", \"10:01\", \"10:02\"]"),
            "{page}"
        );
        assert!(page.contains("line [0, 0.5, 2.25]"), "{page}");
        assert!(page.contains("line [1, 1, 1]"), "the threshold: {page}");
        assert!(page.contains("y-axis \"%\" 0 --> 2.475"), "{page}");
    }

    #[test]
    fn the_gantt_only_shows_for_long_runs() {
        let mut run = sample();
        assert!(!render(&run, "r.json").contains("```mermaid"));
        run.finished_at = run.started_at + chrono::Duration::milliseconds(GANTT_MIN_MS as i64 + 1);
        let page = render(&run, "r.json");
        assert!(page.contains("```mermaid\ngantt"), "{page}");
        assert!(page.contains("    preflight : crit, p1, "), "{page}");
    }
}
