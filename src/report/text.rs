//! Terminal text, for laptops and the Actions log.
//!
//! On a terminal: status symbols and colours (`NO_COLOR` turns the colours
//! off, `CLICOLOR_FORCE` turns them on anywhere, as `anstream` reads them),
//! tables fitted to the terminal's width. Elsewhere (a pipe, the Actions log):
//! plain words (`[pass]`), no escape codes, tables at their natural width.
//! Neither shows Markdown: a cell made with [`super::emphasis`] is bold on a
//! colour terminal and plain text otherwise.

use std::fmt::Write;
use std::io::IsTerminal;

use anstyle::{AnsiColor, Style};

use super::{
    Cell, Outcome, PhaseReport, ReportTable, RunReport, Status, TextDiff, human_duration,
    split_emphasis,
};

/// Lines of a diff shown on the terminal before the rest is left to the
/// JSON report and the job summary.
pub const MAX_TERMINAL_DIFF_LINES: usize = 120;

/// Rows shown per table before the rest is left to the JSON report.
pub const MAX_TERMINAL_ROWS: usize = 50;
/// The narrowest a column is squeezed to when fitting a table.
const MIN_COLUMN: usize = 8;
/// The widest a column grows without a terminal width to fit (a log).
const MAX_COLUMN: usize = 60;

/// How the terminal text looks where it is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalStyle {
    /// Colours and bold (escape codes).
    pub colour: bool,
    /// Status symbols (✓ ✗ ! -) instead of words (`[pass]`).
    pub symbols: bool,
    /// Columns to fit into; `None` leaves lines at their natural length.
    pub width: Option<usize>,
}

impl TerminalStyle {
    /// Plain text: words, no escape codes, no fitting (logs and tests).
    pub fn plain() -> Self {
        Self {
            colour: false,
            symbols: false,
            width: None,
        }
    }

    /// The style for this process's stdout: colours as `anstream` decides
    /// (terminal, `NO_COLOR`, `CLICOLOR_FORCE`, `TERM=dumb`), symbols on a
    /// terminal or when colours are forced, the terminal's width (or
    /// `COLUMNS`) to fit.
    pub fn for_stdout() -> Self {
        let stdout = std::io::stdout();
        let colour = anstream::AutoStream::choice(&stdout) != anstream::ColorChoice::Never;
        let terminal = stdout.is_terminal();
        let width = terminal_size::terminal_size_of(&stdout)
            .map(|(w, _)| w.0 as usize)
            .filter(|_| terminal)
            .or_else(|| std::env::var("COLUMNS").ok()?.trim().parse().ok())
            .filter(|w| *w >= 40);
        Self {
            colour,
            symbols: terminal || colour,
            width,
        }
    }

    fn paint(&self, style: Style, text: &str) -> String {
        if self.colour && !text.is_empty() {
            format!("{}{text}{}", style.render(), style.render_reset())
        } else {
            text.to_string()
        }
    }

    fn status(&self, status: Status) -> String {
        let (symbol, colour) = match status {
            Status::Pass => ("✓", AnsiColor::Green),
            Status::Fail => ("✗", AnsiColor::Red),
            Status::Warn => ("!", AnsiColor::Yellow),
            Status::Skip => ("-", AnsiColor::BrightBlack),
        };
        if self.symbols {
            self.paint(Style::new().fg_color(Some(colour.into())).bold(), symbol)
        } else {
            format!("[{}]", status.word())
        }
    }

    fn outcome(&self, outcome: Outcome) -> String {
        let colour = match outcome {
            Outcome::Success => AnsiColor::Green,
            Outcome::Failed => AnsiColor::Red,
            Outcome::Blocked => AnsiColor::Magenta,
            Outcome::Skipped => AnsiColor::BrightBlack,
        };
        let style = Style::new().fg_color(Some(colour.into())).bold();
        if self.symbols {
            let symbol = match outcome {
                Outcome::Success => "✓",
                Outcome::Failed => "✗",
                Outcome::Blocked => "⛔",
                Outcome::Skipped => "-",
            };
            self.paint(style, &format!("{symbol} {}", outcome.word()))
        } else {
            self.paint(style, &outcome.word().to_uppercase())
        }
    }

    fn dim(&self, text: &str) -> String {
        self.paint(Style::new().dimmed(), text)
    }

    fn bold(&self, text: &str) -> String {
        self.paint(Style::new().bold(), text)
    }

    /// A progress line: what the phase is waiting on, dimmed behind a `…`
    /// on a terminal.
    pub fn progress(&self, line: &str) -> String {
        if self.symbols {
            let trimmed = line.trim_start();
            let indent = &line[..line.len() - trimmed.len()];
            format!("{indent}{} {}", self.dim("…"), self.dim(trimmed))
        } else {
            line.to_string()
        }
    }
}

/// Renders one phase for the terminal: a heading line, checklist rows,
/// tables, errors.
pub fn render_phase(phase: &PhaseReport, style: &TerminalStyle) -> String {
    let mut out = String::new();
    let heading = format!(
        "{} {} {} {}",
        style.outcome(phase.outcome),
        style.bold(&phase.phase),
        style.dim(&format!("({})", human_duration(phase.duration_ms))),
        if style.symbols { "·" } else { "—" },
    );
    push_wrapped(&mut out, &heading, &phase.summary, "", style);
    for check in &phase.checks {
        let lead = format!("  {} {}:", style.status(check.status), check.title);
        push_wrapped(&mut out, &lead, &check.evidence, "      ", style);
        if let Some(hint) = check.hint.as_ref().filter(|_| check.status != Status::Pass) {
            let lead = format!("      {}", style.paint(fix_style(), "fix:"));
            push_wrapped(&mut out, &lead, hint, "           ", style);
        }
    }
    for table in &phase.tables {
        let _ = writeln!(out, "  {}:", style.bold(&table.title));
        write_table(&mut out, table, style);
        if let Some(note) = &table.note {
            push_wrapped(&mut out, "   ", note, "    ", style);
        }
    }
    for diff in &phase.diffs {
        write_diff(&mut out, diff, style);
    }
    for error in &phase.errors {
        let lead = format!("  {}", style.paint(error_style(), "error:"));
        push_wrapped(&mut out, &lead, &error.message, "    ", style);
        if let Some(hint) = &error.hint {
            let lead = format!("    {}", style.paint(fix_style(), "fix:"));
            push_wrapped(&mut out, &lead, hint, "         ", style);
        }
    }
    out
}

/// A before → after comparison as a unified diff (3 lines of context),
/// indented under its title, cut at [`MAX_TERMINAL_DIFF_LINES`].
fn write_diff(out: &mut String, diff: &TextDiff, style: &TerminalStyle) {
    let _ = writeln!(out, "  {}:", style.bold(&diff.title));
    let text = diff.unified();
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

fn fix_style() -> Style {
    Style::new().fg_color(Some(AnsiColor::Cyan.into()))
}

fn error_style() -> Style {
    Style::new().fg_color(Some(AnsiColor::Red.into())).bold()
}

/// Renders the closing lines of a run.
pub fn render_footer(
    run: &RunReport,
    report_path: &str,
    summary_path: Option<&str>,
    style: &TerminalStyle,
) -> String {
    let mut out = String::new();
    for error in &run.errors {
        push_wrapped(
            &mut out,
            &style.paint(error_style(), "error:"),
            &error.message,
            "  ",
            style,
        );
        if let Some(hint) = &error.hint {
            push_wrapped(
                &mut out,
                &format!("  {}", style.paint(fix_style(), "fix:")),
                hint,
                "       ",
                style,
            );
        }
    }
    let phases: Vec<String> = run
        .phases
        .iter()
        .map(|p| format!("{} {}", p.phase, p.outcome.word()))
        .collect();
    // No phase ran (a manifest that does not parse): say so, not "()".
    let ran = if phases.is_empty() {
        "no phase ran".to_string()
    } else {
        phases.join(", ")
    };
    let _ = writeln!(
        out,
        "cutover {}: {} ({ran})",
        run.phases_requested.join(","),
        style.outcome(run.outcome),
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

/// Writes `lead` and `text` as one line, or, when the style has a width,
/// as many as it takes, the later ones indented by `indent`.
fn push_wrapped(out: &mut String, lead: &str, text: &str, indent: &str, style: &TerminalStyle) {
    let text = text.replace('\n', " ");
    let Some(width) = style.width else {
        let _ = writeln!(out, "{lead} {text}");
        return;
    };
    let first = width
        .saturating_sub(visible_width(lead) + 1)
        .max(MIN_COLUMN);
    let rest = width.saturating_sub(indent.chars().count()).max(MIN_COLUMN);
    let mut lines = wrap_hanging(&text, first, rest).into_iter();
    let _ = writeln!(out, "{lead} {}", lines.next().unwrap_or_default());
    for line in lines {
        let _ = writeln!(out, "{indent}{line}");
    }
}

/// Writes a table: columns padded, fitted to the style's width by
/// narrowing the widest columns and wrapping their cells.
fn write_table(out: &mut String, table: &ReportTable, style: &TerminalStyle) {
    const INDENT: &str = "    ";
    let cells = |row: &[Cell]| -> Vec<(String, bool)> {
        (0..table.columns.len())
            .map(|i| {
                let shown = row.get(i).map(Cell::to_string).unwrap_or_default();
                let (text, bold) = split_emphasis(&shown);
                (text.replace('\n', " "), bold)
            })
            .collect()
    };
    let header: Vec<(String, bool)> = table.columns.iter().map(|c| (c.clone(), true)).collect();
    let rows: Vec<Vec<(String, bool)>> = table
        .rows
        .iter()
        .take(MAX_TERMINAL_ROWS)
        .map(|r| cells(r))
        .collect();
    let mut widths: Vec<usize> = (0..table.columns.len())
        .map(|i| {
            rows.iter()
                .chain([&header])
                .map(|r| r[i].0.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    match style.width {
        Some(width) => {
            let available = width.saturating_sub(INDENT.len() + widths.len().saturating_sub(1));
            while widths.iter().sum::<usize>() > available {
                let (widest, &w) = widths
                    .iter()
                    .enumerate()
                    .max_by_key(|(_, w)| **w)
                    .expect("a table has columns");
                if w <= MIN_COLUMN {
                    break;
                }
                widths[widest] = w - 1;
            }
        }
        None => widths.iter_mut().for_each(|w| *w = (*w).min(MAX_COLUMN)),
    }
    let fits = style.width.is_some();
    let mut line = |row: &[(String, bool)], header: bool| {
        let wrapped: Vec<Vec<String>> = row
            .iter()
            .zip(&widths)
            .map(|((text, _), &w)| {
                if fits {
                    wrap(text, w)
                } else {
                    vec![text.clone()]
                }
            })
            .collect();
        let height = wrapped.iter().map(Vec::len).max().unwrap_or(1).max(1);
        for n in 0..height {
            let mut s = String::from(INDENT);
            for (i, ((part, (_, bold)), &w)) in wrapped.iter().zip(row).zip(&widths).enumerate() {
                let text = part.get(n).map(String::as_str).unwrap_or("");
                let pad = w.saturating_sub(text.chars().count());
                let shown = if header {
                    style.dim(text)
                } else if *bold {
                    style.bold(text)
                } else {
                    text.to_string()
                };
                let _ = write!(
                    s,
                    "{}{shown}{}",
                    if i > 0 { " " } else { "" },
                    " ".repeat(pad)
                );
            }
            let _ = writeln!(out, "{}", s.trim_end());
        }
    };
    line(&header, true);
    for row in &rows {
        line(row, false);
    }
    if table.rows.len() > MAX_TERMINAL_ROWS {
        let _ = writeln!(
            out,
            "{INDENT}… {} more rows in the JSON report",
            table.rows.len() - MAX_TERMINAL_ROWS
        );
    }
}

/// Splits `text` into lines of at most `width` characters, at spaces where
/// it can and inside a word that is longer than a line.
fn wrap(text: &str, width: usize) -> Vec<String> {
    wrap_hanging(text, width, width)
}

/// [`wrap`] with a first line of its own width (the rest of a line that
/// starts with a label).
fn wrap_hanging(text: &str, first: usize, rest: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let width = if lines.is_empty() { first } else { rest }.max(1);
            let used = current.chars().count();
            let gap = usize::from(used > 0);
            if used + gap + word.len() <= width {
                if gap == 1 {
                    current.push(' ');
                }
                current.extend(word.iter());
                break;
            }
            if used > 0 {
                lines.push(std::mem::take(&mut current));
                continue;
            }
            let rest = word.split_off(width);
            lines.push(word.iter().collect());
            word = rest;
            if word.is_empty() {
                break;
            }
        }
    }
    if !current.is_empty() || lines.is_empty() {
        lines.push(current);
    }
    lines
}

/// Characters a terminal shows for `text`, escape codes left out.
fn visible_width(text: &str) -> usize {
    let mut width = 0;
    let mut in_escape = false;
    for ch in text.chars() {
        match (in_escape, ch) {
            (false, '\u{1b}') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => width += 1,
        }
    }
    width
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{CheckItem, emphasis};

    fn phase() -> PhaseReport {
        let mut phase = PhaseReport::new("schema");
        phase.outcome = Outcome::Failed;
        phase.duration_ms = 1200;
        phase.summary = "1 of 2 migrations failed.".into();
        phase.check(
            CheckItem::new(
                "apply",
                "Migrations applied",
                Status::Fail,
                "20250113000000_initial_setup failed at line 4: relation \"customers\" already exists",
            )
            .with_hint("fix the file and re-run schema"),
        );
        let mut table = ReportTable::new("Migrations", &["Version", "Name", "Status"]);
        table.push(["20250113000000", "initial_setup", &emphasis("failed")]);
        table.push([
            "20250114000000",
            "a_rather_long_migration_name_that_needs_room",
            "pending",
        ]);
        phase.tables.push(table);
        phase
    }

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
        let text = render_phase(&phase, &TerminalStyle::plain());
        assert!(text.contains("  Schema: source → target:"), "{text}");
        assert!(text.contains("    --- source"), "{text}");
        assert!(text.contains("    -index public.a a_idx"), "{text}");

        let long: String = (0..300).map(|i| format!("line {i}\n")).collect();
        phase.diffs[0].before = long;
        phase.diffs[0].after = String::new();
        let text = render_phase(&phase, &TerminalStyle::plain());
        assert!(
            text.contains("more diff lines in the JSON report"),
            "{text}"
        );
    }

    #[test]
    fn plain_text_has_words_and_no_markdown_or_escapes() {
        let text = render_phase(&phase(), &TerminalStyle::plain());
        assert!(
            text.starts_with("FAILED schema (1.2 s) — 1 of 2 migrations failed."),
            "{text}"
        );
        assert!(
            text.contains("  [fail] Migrations applied: 20250113000000_initial_setup"),
            "{text}"
        );
        assert!(
            text.contains("      fix: fix the file and re-run schema"),
            "{text}"
        );
        assert!(text.contains("    20250113000000 initial_setup"), "{text}");
        assert!(!text.contains("**"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
    }

    #[test]
    fn a_colour_terminal_gets_symbols_colours_and_bold_cells() {
        let style = TerminalStyle {
            colour: true,
            symbols: true,
            width: Some(100),
        };
        let text = render_phase(&phase(), &style);
        assert!(text.contains('✗'), "{text}");
        assert!(text.contains('\u{1b}'), "{text}");
        assert!(!text.contains("**"), "{text}");
        let bold = Style::new().bold();
        assert!(
            text.contains(&format!("{}failed{}", bold.render(), bold.render_reset())),
            "{text}"
        );
    }

    #[test]
    fn tables_and_lines_fit_the_terminal_width() {
        let style = TerminalStyle {
            colour: false,
            symbols: true,
            width: Some(48),
        };
        let text = render_phase(&phase(), &style);
        for line in text.lines() {
            assert!(
                line.chars().count() <= 48,
                "{line:?} is wider than 48:\n{text}"
            );
        }
        assert!(text.contains("a_rather_long"), "{text}");
    }

    #[test]
    fn wrapping_breaks_at_spaces_and_inside_long_words() {
        assert_eq!(wrap("one two three", 7), ["one two", "three"]);
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 4), [""]);
        assert_eq!(
            wrap_hanging("a 127.0.0.1:5432/cutover_demo_source b", 10, 40),
            ["a", "127.0.0.1:5432/cutover_demo_source b"]
        );
    }

    #[test]
    fn progress_says_what_it_waits_on() {
        let plain = TerminalStyle::plain();
        assert_eq!(
            plain.progress("  copying public.invoices"),
            "  copying public.invoices"
        );
        let tty = TerminalStyle {
            colour: false,
            symbols: true,
            width: None,
        };
        assert_eq!(
            tty.progress("  copying public.invoices"),
            "  … copying public.invoices"
        );
    }
}
