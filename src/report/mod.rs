//! The report model every phase produces, and its renderers.
//!
//! Phases build values of these types and nothing else prints them: the
//! Markdown job summary ([`markdown`]), the JSON report ([`json`]), the terminal
//! text ([`text`]) and the GitHub workflow commands and outputs ([`actions`])
//! are all derived from one [`RunReport`].

pub mod actions;
pub mod json;
pub mod markdown;
pub mod text;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The state of one checklist item or phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Checked and fine.
    Pass,
    /// Checked and blocking.
    Fail,
    /// Checked; worth a look, not blocking.
    Warn,
    /// Not checked (not applicable, or an earlier step failed).
    Skip,
}

impl Status {
    /// The icon shown in tables.
    pub fn icon(self) -> &'static str {
        match self {
            Status::Pass => "✅",
            Status::Fail => "❌",
            Status::Warn => "⚠️",
            Status::Skip => "⏭️",
        }
    }

    /// The lower-case word.
    pub fn word(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Warn => "warn",
            Status::Skip => "skip",
        }
    }
}

/// How a phase (or the whole run) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Everything it had to do is done (or, with dry-run, planned).
    Success,
    /// Something failed; see the checklist and errors.
    Failed,
    /// A gate refused to let it proceed.
    Blocked,
    /// Not run because an earlier phase did not succeed.
    Skipped,
}

impl Outcome {
    /// The word used in the `status` output.
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failed => "failed",
            Outcome::Blocked => "blocked",
            Outcome::Skipped => "skipped",
        }
    }

    /// The icon shown in headings.
    pub fn icon(self) -> &'static str {
        match self {
            Outcome::Success => "✅",
            Outcome::Failed => "❌",
            Outcome::Blocked => "⛔",
            Outcome::Skipped => "⏭️",
        }
    }
}

/// One row of a checklist: what was checked, how it came out, and why we believe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckItem {
    /// Stable identifier, e.g. `source-readable`.
    pub id: String,
    /// What a runbook would say, e.g. "Source database readable".
    pub title: String,
    /// The result.
    pub status: Status,
    /// What was seen, e.g. "PostgreSQL 15.4, SELECT on 12 tables".
    pub evidence: String,
    /// How to fix it, for failures and warnings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl CheckItem {
    /// A new item.
    pub fn new(id: &str, title: &str, status: Status, evidence: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            title: title.into(),
            status,
            evidence: evidence.into(),
            hint: None,
        }
    }

    /// Adds a fix hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// A titled table, e.g. row counts per table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportTable {
    /// Heading above the table.
    pub title: String,
    /// Column headings.
    pub columns: Vec<String>,
    /// Cells, one `Vec` per row, as many as `columns`.
    pub rows: Vec<Vec<Cell>>,
    /// A sentence under the table (e.g. how counts were taken).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The title of the one summary table this table joins (e.g. `Row
    /// counts`): tables of several phases with the same value are shown once,
    /// rows joined on the first column, the later phase's cell winning where
    /// two phases name the same column. `None`: shown on its own.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub merge_as: Option<String>,
}

impl ReportTable {
    /// A new empty table.
    pub fn new(title: &str, columns: &[&str]) -> Self {
        Self {
            title: title.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
            note: None,
            merge_as: None,
        }
    }

    /// Appends a row of cells of one kind (all text, or all counts); a
    /// mixed row is a `Vec<Cell>` built with [`Cell::from`] or [`cells!`](crate::cells).
    pub fn push<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<Cell>,
    {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// Sets the note under the table.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// Joins this table into the summary table titled `title` (see [`ReportTable::merge_as`]).
    pub fn merged_as(mut self, title: &str) -> Self {
        self.merge_as = Some(title.into());
        self
    }
}

/// One cell of a [`ReportTable`]. Phases say what a cell is (a count, a
/// verdict, text); only the renderers decide how it looks, so the JSON report
/// keeps a count as a number and a verdict as a status word, where the summary
/// shows `1,234` and `❌ missing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Cell {
    /// A whole number (rows, objects, bytes): a JSON number; shown with
    /// thousands separators.
    Count(i64),
    /// A signed change (target minus source): a JSON number; shown with its
    /// sign, `+0`, `-3`.
    Delta(i64),
    /// A verdict on the row, with an optional reason: a JSON object
    /// `{"status": "fail", "note": "missing"}`; shown as `❌ missing`.
    Verdict {
        /// How the row came out.
        status: Status,
        /// Why, when there is more to say than the status.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        note: Option<String>,
    },
    /// Anything else, as written (an [`emphasis`] marks it for the eye).
    Text(String),
}

impl Cell {
    /// A verdict with no reason: `✅`, `❌`.
    pub fn verdict(status: Status) -> Self {
        Cell::Verdict { status, note: None }
    }

    /// A verdict with its reason: `❌ table missing on target`.
    pub fn verdict_because(status: Status, note: impl Into<String>) -> Self {
        Cell::Verdict {
            status,
            note: Some(note.into()),
        }
    }

    /// Pass when `ok`, fail otherwise.
    pub fn pass_if(ok: bool) -> Self {
        Cell::verdict(if ok { Status::Pass } else { Status::Fail })
    }

    /// Whether the cell says nothing (an empty text).
    pub fn is_empty(&self) -> bool {
        matches!(self, Cell::Text(t) if t.is_empty())
    }

    /// The number, when the cell is a count or a change.
    pub fn as_count(&self) -> Option<i64> {
        match self {
            Cell::Count(n) | Cell::Delta(n) => Some(*n),
            _ => None,
        }
    }
}

impl std::fmt::Display for Cell {
    /// The cell as shown to a reader: counts with separators, verdicts
    /// with their icon.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Count(n) => f.write_str(&thousands(*n)),
            Cell::Delta(n) if *n >= 0 => write!(f, "+{}", thousands(*n)),
            Cell::Delta(n) => f.write_str(&thousands(*n)),
            Cell::Verdict { status, note: None } => f.write_str(status.icon()),
            Cell::Verdict {
                status,
                note: Some(note),
            } => write!(f, "{} {note}", status.icon()),
            Cell::Text(text) => f.write_str(text),
        }
    }
}

/// A cell equals a text when it shows that text (`Count(1204) == "1,204"`).
impl PartialEq<&str> for Cell {
    fn eq(&self, other: &&str) -> bool {
        match self {
            Cell::Text(text) => text == other,
            shown => shown.to_string().as_str() == *other,
        }
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Cell::Text(text)
    }
}

impl From<&String> for Cell {
    fn from(text: &String) -> Self {
        Cell::Text(text.clone())
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Cell::Text(text.to_string())
    }
}

impl From<Status> for Cell {
    fn from(status: Status) -> Self {
        Cell::verdict(status)
    }
}

macro_rules! count_cell_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Cell {
            fn from(n: $t) -> Self {
                Cell::Count(i64::try_from(n).unwrap_or(i64::MAX))
            }
        }
    )*};
}
count_cell_from!(i32, i64, u32, u64, usize);

/// A row of mixed cells: `cells![name, rows, Cell::pass_if(ok)]`, each
/// value through [`Cell::from`].
#[macro_export]
macro_rules! cells {
    ($($value:expr),* $(,)?) => {
        vec![$($crate::report::Cell::from($value)),*]
    };
}

/// The summary table every phase's per-table row counts join.
pub const ROW_COUNTS: &str = "Row counts";
/// The summary table the plan's and the schema phase's migration lists join.
pub const MIGRATIONS: &str = "Migrations";

/// Marks a whole table cell as one that needs the reader's eye (e.g.
/// `differs`): bold in the summary, bold on a colour terminal.
pub fn emphasis(text: impl AsRef<str>) -> String {
    format!("**{}**", text.as_ref())
}

/// The text of a cell made with [`emphasis`] and whether it was, so renderers
/// can show the emphasis their own way.
pub fn split_emphasis(cell: &str) -> (&str, bool) {
    match cell.strip_prefix("**").and_then(|c| c.strip_suffix("**")) {
        Some(inner) if !inner.is_empty() => (inner, true),
        _ => (cell, false),
    }
}

/// `n` and the noun in the right number: `1 file`, `2 files`, `1,204 rows`.
pub fn count(n: impl TryInto<i64>, one: &str, many: &str) -> String {
    let n: i64 = n.try_into().unwrap_or(i64::MAX);
    format!("{} {}", thousands(n), if n == 1 { one } else { many })
}

/// The noun alone in the number `n` asks for: `noun(1, "secret", "secrets")`.
pub fn noun<'a>(n: impl TryInto<i64>, one: &'a str, many: &'a str) -> &'a str {
    if n.try_into().ok() == Some(1) {
        one
    } else {
        many
    }
}

/// A before → after text comparison, rendered as a unified diff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextDiff {
    /// What is compared.
    pub title: String,
    /// Label of the old side, e.g. `source`.
    pub before_label: String,
    /// Label of the new side, e.g. `target`.
    pub after_label: String,
    /// Old text.
    pub before: String,
    /// New text.
    pub after: String,
}

impl TextDiff {
    /// The comparison as a unified diff with 3 lines of context, headed by
    /// the two labels: what the summary and the terminal both show.
    pub fn unified(&self) -> String {
        similar::TextDiff::from_lines(&self.before, &self.after)
            .unified_diff()
            .context_radius(3)
            .header(&self.before_label, &self.after_label)
            .to_string()
    }
}

/// A failure with a fix, shown in the errors section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReport {
    /// What went wrong.
    pub message: String,
    /// How to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// Everything one phase did or would do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseReport {
    /// The phase name, e.g. `preflight`.
    pub phase: String,
    /// How it ended.
    pub outcome: Outcome,
    /// One sentence on what it did.
    pub summary: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// Checklist rows.
    pub checks: Vec<CheckItem>,
    /// Tables of evidence.
    pub tables: Vec<ReportTable>,
    /// Before → after comparisons.
    pub diffs: Vec<TextDiff>,
    /// Errors that ended or marred the phase.
    pub errors: Vec<ErrorReport>,
    /// Number of tables whose source and target row counts differ (validate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row_count_mismatches: Option<u64>,
    /// Files the phase wrote (backups), relative to the workspace.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub artifacts: Vec<String>,
    /// Step outputs the phase sets (name, value), e.g. the target's keys:
    /// never in the JSON report (they are masked in the log instead).
    #[serde(skip)]
    pub outputs: Vec<(String, String)>,
    /// Who approved this run for the release environment (`cutover`'s
    /// gate), GitHub logins: the sign-off's "verified by".
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub approvers: Vec<String>,
    /// Figures over time (`monitor`), drawn where the output can show a
    /// chart; the same figures are always in a table too.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub charts: Vec<LineChart>,
}

/// A small line chart: one value per x label for each series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineChart {
    /// Heading of the chart.
    pub title: String,
    /// The label of each point on the x axis (e.g. poll times).
    pub x_labels: Vec<String>,
    /// What the y axis measures, with its unit.
    pub y_label: String,
    /// The lines: a name and one value per x label.
    pub series: Vec<(String, Vec<f64>)>,
    /// A horizontal line drawn at this value (a threshold), when set.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub limit: Option<f64>,
}

impl PhaseReport {
    /// A report for `phase`, started now, with no content yet.
    pub fn new(phase: &str) -> Self {
        Self {
            phase: phase.into(),
            outcome: Outcome::Success,
            summary: String::new(),
            started_at: Utc::now(),
            duration_ms: 0,
            checks: Vec::new(),
            tables: Vec::new(),
            diffs: Vec::new(),
            errors: Vec::new(),
            row_count_mismatches: None,
            artifacts: Vec::new(),
            outputs: Vec::new(),
            approvers: Vec::new(),
            charts: Vec::new(),
        }
    }

    /// Adds a checklist row.
    pub fn check(&mut self, item: CheckItem) {
        self.checks.push(item);
    }

    /// How many checklist rows have `status`.
    pub fn count_of(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// Whether any checklist row failed.
    pub fn has_failures(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Fail)
    }

    /// Sets the outcome from the checklist: failed when any row failed.
    pub fn conclude_from_checks(&mut self) {
        if self.outcome == Outcome::Success && self.has_failures() {
            self.outcome = Outcome::Failed;
        }
    }
}

/// Where the run happened: shown at the top of the summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunContext {
    /// Project name from the manifest.
    pub project: String,
    /// Source, as `host:port/database` (never with credentials).
    pub source: Option<String>,
    /// Target, as `host:port/database` (never with credentials).
    pub target: Option<String>,
    /// The GitHub environment gating `cutover`.
    pub environment: String,
    /// Nothing was written.
    pub dry_run: bool,
    /// The commit, from `GITHUB_SHA`.
    pub git_sha: Option<String>,
    /// Who started the run, from `GITHUB_ACTOR`.
    pub actor: Option<String>,
    /// Link to the workflow run.
    pub run_url: Option<String>,
    /// The manifest path as given.
    pub manifest: String,
}

/// The whole run: every phase report plus where and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// The cutover version that ran.
    pub tool_version: String,
    /// Unique id of this run, also the ledger's `runs.id`.
    pub run_id: String,
    /// Phases asked for, in order.
    pub phases_requested: Vec<String>,
    /// Where it ran.
    pub context: RunContext,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// End time.
    pub finished_at: DateTime<Utc>,
    /// Overall outcome.
    pub outcome: Outcome,
    /// Per phase, in order.
    pub phases: Vec<PhaseReport>,
    /// Errors outside any phase (bad manifest, unreachable ledger).
    pub errors: Vec<ErrorReport>,
    /// The command that re-runs the same phases.
    pub rerun_command: String,
}

/// One line of the release sign-off: a runbook step and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignOffStep {
    /// The runbook's name for it, e.g. `Database migration`.
    pub step: String,
    /// The phases that do it in this run (empty: not part of this run).
    pub phases: Vec<String>,
    /// `done`, `failed`, `not run` (asked for, stopped before) or
    /// `not in this run`.
    pub status: String,
    /// Who ran it (the run's actor), when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// When it finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
}

/// The runbook's closing table, filled from what ran: each release step, by
/// whom and when, the overall status, who deployed and who verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignOff {
    /// The steps, in the runbook's order.
    pub steps: Vec<SignOffStep>,
    /// `Success` (every step of this run done), `Partial` (some done, some
    /// failed or not run) or `Failed` (none done).
    pub status: String,
    /// Who started the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployed_by: Option<String>,
    /// Who approved it for the environment.
    pub verified_by: Vec<String>,
    /// When the run ended.
    pub at: DateTime<Utc>,
}

/// The runbook's release steps and the phases that carry each out.
const SIGN_OFF_STEPS: [(&str, &[&str]); 5] = [
    ("Database migration", &["schema", "data", "config"]),
    ("Edge functions deployed", &["functions", "secrets"]),
    ("Frontend deployed", &["cutover"]),
    ("Smoke tests passed", &["smoke"]),
    ("Monitoring confirmed", &["monitor"]),
];

impl RunReport {
    /// The release sign-off, for a run that releases (one that includes
    /// `cutover`); `None` for the phases before it.
    pub fn sign_off(&self) -> Option<SignOff> {
        if !self.phases_requested.iter().any(|p| p == "cutover") {
            return None;
        }
        let by = self.context.actor.as_ref().map(|a| format!("@{a}"));
        let steps: Vec<SignOffStep> = SIGN_OFF_STEPS
            .iter()
            .map(|(step, names)| {
                let ran: Vec<&PhaseReport> = self
                    .phases
                    .iter()
                    .filter(|p| names.contains(&p.phase.as_str()))
                    .collect();
                let status = if ran.is_empty() {
                    "not in this run"
                } else if ran
                    .iter()
                    .any(|p| matches!(p.outcome, Outcome::Failed | Outcome::Blocked))
                {
                    "failed"
                } else if ran.iter().any(|p| p.outcome == Outcome::Skipped) {
                    "not run"
                } else {
                    "done"
                };
                let at = ran
                    .iter()
                    .filter(|p| p.outcome != Outcome::Skipped)
                    .map(|p| p.started_at + chrono::Duration::milliseconds(p.duration_ms as i64))
                    .max();
                SignOffStep {
                    step: step.to_string(),
                    phases: ran.iter().map(|p| p.phase.clone()).collect(),
                    status: status.into(),
                    by: at.and(by.clone()),
                    at,
                }
            })
            .collect();
        let part_of_run: Vec<&SignOffStep> = steps
            .iter()
            .filter(|s| s.status != "not in this run")
            .collect();
        let done = part_of_run.iter().filter(|s| s.status == "done").count();
        let status = if done == part_of_run.len() && self.outcome == Outcome::Success {
            "Success"
        } else if done == 0 {
            "Failed"
        } else {
            "Partial"
        };
        let mut verified_by: Vec<String> = self
            .phases
            .iter()
            .flat_map(|p| p.approvers.iter().map(|a| format!("@{a}")))
            .collect();
        verified_by.dedup();
        Some(SignOff {
            steps,
            status: status.into(),
            deployed_by: by,
            verified_by,
            at: self.finished_at,
        })
    }

    /// Overall outcome from the phase outcomes: blocked beats failed beats success.
    pub fn compute_outcome(&self) -> Outcome {
        if self.phases.iter().any(|p| p.outcome == Outcome::Blocked) {
            Outcome::Blocked
        } else if !self.errors.is_empty()
            || self.phases.iter().any(|p| p.outcome == Outcome::Failed)
        {
            Outcome::Failed
        } else {
            Outcome::Success
        }
    }

    /// Sum of the row-count mismatches reported by the phases.
    pub fn row_count_mismatches(&self) -> u64 {
        self.phases
            .iter()
            .filter_map(|p| p.row_count_mismatches)
            .sum()
    }

    /// Every checklist row of every phase, with its phase name.
    pub fn all_checks(&self) -> impl Iterator<Item = (&str, &CheckItem)> {
        self.phases
            .iter()
            .flat_map(|p| p.checks.iter().map(move |c| (p.phase.as_str(), c)))
    }

    /// The checklist as shown: every phase's rows, plus a failed row for each
    /// error (of the run or of a phase that stopped) and for a failed or
    /// blocked phase none of whose rows failed, so the checklist never says
    /// "0 failed" under a failed run.
    pub fn checklist(&self) -> Vec<(String, CheckItem)> {
        let mut rows: Vec<(String, CheckItem)> = self
            .errors
            .iter()
            .map(|e| {
                (
                    "run".to_string(),
                    error_row("run-error", "Run completed", e),
                )
            })
            .collect();
        for phase in &self.phases {
            rows.extend(
                phase
                    .checks
                    .iter()
                    .map(|c| (phase.phase.clone(), c.clone())),
            );
            for error in &phase.errors {
                rows.push((
                    phase.phase.clone(),
                    error_row("phase-error", "Phase ran to the end", error),
                ));
            }
            let failed = matches!(phase.outcome, Outcome::Failed | Outcome::Blocked);
            if failed && !phase.has_failures() && phase.errors.is_empty() {
                rows.push((
                    phase.phase.clone(),
                    CheckItem::new(
                        "phase-outcome",
                        "Phase ran to the end",
                        Status::Fail,
                        format!("{}: {}", phase.outcome.word(), phase.summary),
                    ),
                ));
            }
        }
        rows
    }
}

fn error_row(id: &str, title: &str, error: &ErrorReport) -> CheckItem {
    CheckItem {
        id: id.into(),
        title: title.into(),
        status: Status::Fail,
        evidence: error.message.clone(),
        hint: error.hint.clone(),
    }
}

/// Formats a duration in milliseconds as `1.2 s`, `3 min 04 s` or `850 ms`.
pub fn human_duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min {:02} s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// `n` with the noun in the right number: `1 file`, `2 files`, `1,234 rows`.
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!(
        "{} {}",
        thousands(n as i64),
        if n == 1 { one } else { many }
    )
}

/// Formats an integer with thousands separators: `1 234 567` (thin spaces read
/// badly in terminals, so plain commas).
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(850), "850 ms");
        assert_eq!(human_duration(1234), "1.2 s");
        assert_eq!(human_duration(184_000), "3 min 04 s");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(-1234567), "-1,234,567");
    }

    #[test]
    fn blocked_beats_failed() {
        let mut run = RunReport {
            tool_version: "0".into(),
            run_id: "r".into(),
            phases_requested: vec![],
            context: RunContext::default(),
            started_at: Utc::now(),
            finished_at: Utc::now(),
            outcome: Outcome::Success,
            phases: vec![PhaseReport::new("a"), PhaseReport::new("b")],
            errors: vec![],
            rerun_command: String::new(),
        };
        assert_eq!(run.compute_outcome(), Outcome::Success);
        run.phases[0].outcome = Outcome::Failed;
        assert_eq!(run.compute_outcome(), Outcome::Failed);
        run.phases[1].outcome = Outcome::Blocked;
        assert_eq!(run.compute_outcome(), Outcome::Blocked);
    }

    #[test]
    fn counts_say_one_or_many() {
        assert_eq!(count(1, "secret", "secrets"), "1 secret");
        assert_eq!(count(0, "file", "files"), "0 files");
        assert_eq!(count(1204, "row", "rows"), "1,204 rows");
        assert_eq!(noun(1u64, "is", "are"), "is");
        assert_eq!(noun(2usize, "is", "are"), "are");
    }

    #[test]
    fn cells_are_typed_in_json_and_formatted_for_people() {
        let row = crate::cells![
            "public.orders",
            1234u64,
            Cell::Delta(0),
            Cell::Delta(-3),
            Cell::verdict_because(Status::Fail, "missing"),
            Cell::pass_if(true),
        ];
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                "public.orders",
                1234,
                0,
                -3,
                {"status": "fail", "note": "missing"},
                {"status": "pass"}
            ])
        );
        let shown: Vec<String> = row.iter().map(Cell::to_string).collect();
        assert_eq!(
            shown,
            ["public.orders", "1,234", "+0", "-3", "❌ missing", "✅"]
        );
        let back: Vec<Cell> = serde_json::from_value(json).unwrap();
        assert_eq!(back[1], Cell::Count(1234));
        assert_eq!(back[4], row[4]);
    }

    #[test]
    fn emphasis_round_trips() {
        assert_eq!(split_emphasis(&emphasis("differs")), ("differs", true));
        assert_eq!(split_emphasis("plain"), ("plain", false));
        assert_eq!(split_emphasis("****"), ("****", false));
    }
}
