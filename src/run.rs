//! One invocation end to end: inputs → masks → manifest → phases → summary,
//! JSON report, outputs, ledger, exit code.
#![allow(clippy::print_stdout, clippy::print_stderr)] // the one place output is written

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::Utc;
use tracing::Instrument;

use crate::cli::{EnvSource, Settings};
use crate::context::Context;
use crate::manifest::{Manifest, ManifestError};
use crate::pg::Side;
use crate::pg::ledger::StepRecord;
use crate::phases::{self, Phase};
use crate::redact::DbUrl;
use crate::redact::Redactor;
use crate::report::actions::{Console, write_outputs};
use crate::report::{self, Cell, ErrorReport, Outcome, PhaseReport, RunContext, RunReport};

/// Exit code: everything succeeded.
pub const EXIT_SUCCESS: i32 = 0;
/// Exit code: a phase failed.
pub const EXIT_FAILED: i32 = 1;
/// Exit code: bad usage or manifest.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: blocked by a gate.
pub const EXIT_BLOCKED: i32 = 3;

/// Registers every secret input with the redactor and the runner's mask list.
/// Must run before anything else is printed.
pub fn register_input_secrets(settings: &Settings, redactor: &Redactor, console: &Console) {
    for (name, value) in settings.secret_values() {
        if name.ends_with("db-url") {
            for secret in redactor.add_url(value) {
                console.add_mask(&secret);
            }
        } else {
            redactor.add(value);
            console.add_mask(value);
        }
    }
}

/// A usage error (an unknown phase, a bad input value) before any setting
/// could be resolved: prints it and returns [`EXIT_USAGE`]. In GitHub Actions
/// the step still gets what every run gives it: an error annotation, a job
/// summary that says what to fix, and the `status` output (`failed`), so a
/// workflow that reads `status` or the summary never sees nothing.
pub fn usage_failure(message: &str, env: &dyn EnvSource) -> i32 {
    let actions = env.get("GITHUB_ACTIONS").as_deref() == Some("true");
    let console = Console::new(actions);
    // The message never repeats an input's value, but mask the secret inputs
    // anyway: they are what a slip would leak.
    let redactor = Redactor::new();
    for name in crate::cli::SECRET_INPUTS.iter().copied() {
        if let Some(value) = env.get(&crate::cli::input_variable(name, actions)) {
            if name.ends_with("db-url") {
                for secret in redactor.add_url(&value) {
                    console.add_mask(&secret);
                }
            } else if redactor.add(&value) {
                console.add_mask(&value);
            }
        }
    }
    let message = redactor.redact(message);
    console.error(&message, None, None);
    eprintln!("error: {message}");
    if !actions {
        return EXIT_USAGE;
    }
    let file = |name: &str| env.get(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let now = Utc::now();
    let run = RunReport {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        run_id: uuid::Uuid::new_v4().to_string(),
        phases_requested: Vec::new(),
        context: RunContext {
            project: String::new(),
            source: None,
            target: None,
            environment: String::new(),
            dry_run: false,
            git_sha: env.get("GITHUB_SHA"),
            actor: env.get("GITHUB_ACTOR"),
            run_url: None,
            manifest: String::new(),
        },
        started_at: now,
        finished_at: now,
        outcome: Outcome::Failed,
        phases: Vec::new(),
        errors: vec![ErrorReport {
            message,
            hint: Some("fix the step's `with:` inputs; nothing ran".into()),
        }],
        rerun_command: "re-run the workflow job after fixing the step's inputs".into(),
    };
    if let Some(summary) = file("GITHUB_STEP_SUMMARY") {
        let page = redactor.redact(&report::markdown::render(&run, ""));
        if let Err(e) = append(&summary, &page) {
            eprintln!("error: cannot write the summary {}: {e}", summary.display());
        }
    }
    if let Some(output) = file("GITHUB_OUTPUT") {
        if let Err(e) = write_outputs(&output, &[("status", run.outcome.word().to_string())]) {
            eprintln!(
                "error: cannot write step outputs to {}: {e}",
                output.display()
            );
        }
    }
    EXIT_USAGE
}

/// Runs the phases and writes every output. Returns the process exit code.
pub async fn run(settings: Settings, env: Box<dyn EnvSource + Send + Sync>) -> i32 {
    let redactor = Redactor::new();
    let console = Console::new(settings.actions);
    register_input_secrets(&settings, &redactor, &console);
    let started_at = Utc::now();

    let manifest = match Manifest::load(&settings.manifest) {
        Ok(m) => m,
        Err(e) => return manifest_failure(&settings, &redactor, &console, e, started_at),
    };
    let mut settings = settings;
    settings.phases = with_monitor_after_cutover(&settings.phases, &manifest);
    // `migrate` brings `storage` in only for a manifest with `[storage]`.
    let phases_text = settings.phases_text.clone();
    crate::phase::drop_unconfigured(
        &mut settings.phases,
        &phases_text,
        manifest.storage.is_some(),
    );
    let mut ctx = Context::new(settings, manifest, redactor, env);
    let mut reports: Vec<PhaseReport> = Vec::new();
    let mut stop = false;
    // A list that writes is all or nothing up front: every input its phases
    // need is checked before the first of them runs.
    let phases = ctx.settings.phases.clone();
    if phases::readiness::needed(&phases) {
        let started = start_phase(&ctx, phases::readiness::NAME);
        let result = phases::readiness::run(&mut ctx, &phases).await;
        let report = end_phase(&ctx, phases::readiness::NAME, result, started);
        stop = report.outcome != Outcome::Success;
        reports.push(report);
    }
    for phase in phases {
        if stop {
            let mut skipped = PhaseReport::new(phase.name());
            skipped.outcome = Outcome::Skipped;
            skipped.summary =
                "Not run: an earlier phase (or the readiness check) did not succeed.".into();
            reports.push(skipped);
            continue;
        }
        let report = run_phase(&mut ctx, phase).await;
        stop = report.outcome != Outcome::Success;
        reports.push(report);
    }
    let mut run = RunReport {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        run_id: ctx.run_id.to_string(),
        phases_requested: ctx
            .settings
            .phases
            .iter()
            .map(|p| p.name().to_string())
            .collect(),
        context: run_context(&ctx.settings, &ctx.manifest.project.name),
        started_at,
        finished_at: Utc::now(),
        outcome: Outcome::Success,
        phases: reports,
        errors: Vec::new(),
        rerun_command: ctx.settings.rerun_command(),
    };
    run.outcome = run.compute_outcome();
    if let Some(ledger) = ctx.open_ledger() {
        if let Err(e) = ledger.finish_run(ctx.run_id, run.outcome.word()).await {
            run.errors.push(ErrorReport {
                message: e.to_string(),
                hint: Some(
                    "the run's outcome is in the JSON report; check the target's ledger schema"
                        .into(),
                ),
            });
            run.outcome = run.compute_outcome();
        }
    }
    ctx.close().await;
    finish(&ctx.settings, &ctx.redactor, &console, run)
}

/// `[monitor] after_cutover = true`: `monitor` runs right after `cutover`
/// when the list has `cutover` and not `monitor`.
fn with_monitor_after_cutover(phases: &[Phase], manifest: &Manifest) -> Vec<Phase> {
    let mut phases = phases.to_vec();
    if manifest.monitor.after_cutover && !phases.contains(&Phase::Monitor) {
        if let Some(at) = phases.iter().position(|p| *p == Phase::Cutover) {
            phases.insert(at + 1, Phase::Monitor);
        }
    }
    phases
}

async fn run_phase(ctx: &mut Context, phase: Phase) -> PhaseReport {
    let started = start_phase(ctx, phase.name());
    // `CUTOVER_LOG=debug` shows each phase as a span around the database
    // and API calls it makes.
    let result = phases::run(phase, ctx)
        .instrument(tracing::info_span!("phase", name = phase.name()))
        .await;
    let report = end_phase(ctx, phase.name(), result, started);
    tracing::debug!(
        phase = phase.name(),
        outcome = report.outcome.word(),
        duration_ms = report.duration_ms,
        "phase finished"
    );
    record_in_ledger(ctx, &report).await;
    report
}

/// Opens the phase's log group; when and since when it started.
fn start_phase(ctx: &Context, name: &str) -> (chrono::DateTime<Utc>, Instant) {
    ctx.console.group(&format!("cutover {name}"));
    (Utc::now(), Instant::now())
}

/// Turns a phase's result into its report: timed, concluded, redacted,
/// printed, its failures annotated.
fn end_phase(
    ctx: &Context,
    name: &str,
    result: Result<PhaseReport, phases::PhaseError>,
    (started_at, clock): (chrono::DateTime<Utc>, Instant),
) -> PhaseReport {
    let mut report = match result {
        Ok(report) => report,
        Err(e) => {
            let mut report = PhaseReport::new(name);
            report.outcome = if e.blocked {
                Outcome::Blocked
            } else {
                Outcome::Failed
            };
            report.summary = format!("Stopped: {}", e.message);
            report.errors.push(ErrorReport {
                message: e.message,
                hint: e.hint,
            });
            report
        }
    };
    report.started_at = started_at;
    report.duration_ms = clock.elapsed().as_millis() as u64;
    report.conclude_from_checks();
    redact_report(&mut report, &ctx.redactor);
    ctx.console
        .text(&report::text::render_phase(&report, &ctx.console.style));
    for error in &report.errors {
        ctx.console
            .error(&format!("{name}: {}", error.message), None, None);
    }
    for check in report
        .checks
        .iter()
        .filter(|c| c.status == report::Status::Fail)
    {
        ctx.console.error(
            &format!("{name}: {}: {}", check.title, check.evidence),
            None,
            None,
        );
    }
    ctx.console.end_group();
    report
}

/// Records the phase and its checklist rows, when a ledger is open. A ledger
/// failure becomes an error of the phase: an unrecorded step is not audited.
async fn record_in_ledger(ctx: &Context, report: &PhaseReport) {
    let Some(ledger) = ctx.open_ledger() else {
        return;
    };
    let finished = report.started_at + chrono::Duration::milliseconds(report.duration_ms as i64);
    let mut steps: Vec<StepRecord> = report
        .checks
        .iter()
        .map(|c| StepRecord {
            phase: &report.phase,
            step: &c.id,
            started_at: report.started_at,
            finished_at: finished,
            outcome: c.status.word(),
            detail: serde_json::json!({ "title": c.title, "evidence": c.evidence, "hint": c.hint }),
        })
        .collect();
    steps.push(StepRecord {
        phase: &report.phase,
        step: "phase",
        started_at: report.started_at,
        finished_at: finished,
        outcome: report.outcome.word(),
        detail: serde_json::json!({ "summary": report.summary, "errors": report.errors }),
    });
    for step in &steps {
        if let Err(e) = ledger.record_step(ctx.run_id, step).await {
            ctx.console.warning(&format!(
                "could not record {} in the ledger: {e}",
                report.phase
            ));
            break;
        }
    }
}

fn redact_report(report: &mut PhaseReport, redactor: &Redactor) {
    report.summary = redactor.redact(&report.summary);
    for check in &mut report.checks {
        check.evidence = redactor.redact(&check.evidence);
        check.hint = check.hint.as_deref().map(|h| redactor.redact(h));
    }
    for table in &mut report.tables {
        for row in &mut table.rows {
            for cell in row.iter_mut() {
                match cell {
                    Cell::Text(text) => *text = redactor.redact(text),
                    Cell::Verdict {
                        note: Some(note), ..
                    } => *note = redactor.redact(note),
                    _ => {}
                }
            }
        }
    }
    for diff in &mut report.diffs {
        diff.before = redactor.redact(&diff.before);
        diff.after = redactor.redact(&diff.after);
    }
    for error in &mut report.errors {
        error.message = redactor.redact(&error.message);
        error.hint = error.hint.as_deref().map(|h| redactor.redact(h));
    }
}

fn run_context(settings: &Settings, project: &str) -> RunContext {
    RunContext {
        project: project.to_string(),
        source: settings.source_db_url.as_ref().map(DbUrl::to_string),
        target: settings.target_db_url.as_ref().map(DbUrl::to_string),
        environment: settings.environment.clone(),
        dry_run: settings.dry_run,
        git_sha: settings.github.sha.clone(),
        actor: settings.github.actor.clone(),
        run_url: settings.github.run_url.clone(),
        manifest: settings.manifest.display().to_string(),
    }
}

fn manifest_failure(
    settings: &Settings,
    redactor: &Redactor,
    console: &Console,
    error: ManifestError,
    started_at: chrono::DateTime<Utc>,
) -> i32 {
    let message = redactor.redact(&error.to_string());
    console.error(
        &message,
        Some(&settings.manifest.display().to_string()),
        error.position(),
    );
    let run = RunReport {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        run_id: uuid::Uuid::new_v4().to_string(),
        phases_requested: settings
            .phases
            .iter()
            .map(|p| p.name().to_string())
            .collect(),
        context: run_context(settings, ""),
        started_at,
        finished_at: Utc::now(),
        outcome: Outcome::Failed,
        phases: Vec::new(),
        errors: vec![ErrorReport {
            message,
            hint: Some(
                "fix the manifest; every key is documented in the README's manifest reference"
                    .into(),
            ),
        }],
        rerun_command: settings.rerun_command(),
    };
    finish(settings, redactor, console, run);
    EXIT_USAGE
}

/// Writes the summary, the JSON report, the outputs and the closing lines.
fn finish(settings: &Settings, redactor: &Redactor, console: &Console, run: RunReport) -> i32 {
    let report_path = shown_path(settings, &settings.report_file);
    let mut written_summary: Option<String> = None;
    let mut io_errors = Vec::new();
    if let Err(e) = report::json::write(&run, &settings.report_file) {
        io_errors.push(format!(
            "cannot write the JSON report {}: {e}",
            settings.report_file.display()
        ));
    }
    if let Some(summary) = &settings.summary_file {
        let page = redactor.redact(&report::markdown::render(&run, &report_path));
        match append(summary, &page) {
            Ok(()) => written_summary = Some(shown_path(settings, summary)),
            Err(e) => io_errors.push(format!(
                "cannot write the summary {}: {e}",
                summary.display()
            )),
        }
    }
    let backup_paths: Vec<String> = run
        .phases
        .iter()
        .flat_map(|p| p.artifacts.clone())
        .collect();
    if let Some(output) = &settings.github.output_file {
        let outputs = [
            ("status", run.outcome.word().to_string()),
            ("report-path", report_path.clone()),
            ("summary-path", written_summary.clone().unwrap_or_default()),
            (
                "row-count-mismatches",
                run.row_count_mismatches().to_string(),
            ),
            ("backup-path", backup_paths.join("\n")),
        ];
        let mut outputs: Vec<(&str, String)> = outputs
            .into_iter()
            .map(|(k, v)| (k, redactor.redact(&v)))
            .collect();
        // Values phases set (the target's URL and keys): masked in the log
        // by the phase, kept whole here so later steps can use them; the
        // last phase that set one wins.
        for phase in &run.phases {
            for (name, value) in &phase.outputs {
                outputs.retain(|(k, _)| k != name);
                outputs.push((name.as_str(), value.clone()));
            }
        }
        if let Err(e) = write_outputs(output, &outputs) {
            io_errors.push(format!(
                "cannot write step outputs to {}: {e}",
                output.display()
            ));
        }
    }
    // Redacted before wrapping too: a secret broken over two lines would
    // slip past the redaction of the whole text.
    let mut shown = run.clone();
    for error in &mut shown.errors {
        error.message = redactor.redact(&error.message);
        error.hint = error.hint.as_deref().map(|h| redactor.redact(h));
    }
    console.text(&redactor.redact(&report::text::render_footer(
        &shown,
        &report_path,
        written_summary.as_deref(),
        &console.style,
    )));
    for e in &io_errors {
        eprintln!("error: {e}");
        console.error(e, None, None);
    }
    let code = match run.outcome {
        Outcome::Success | Outcome::Skipped => EXIT_SUCCESS,
        Outcome::Failed => EXIT_FAILED,
        Outcome::Blocked => EXIT_BLOCKED,
    };
    if code == EXIT_SUCCESS && !io_errors.is_empty() {
        EXIT_FAILED
    } else {
        code
    }
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(text.as_bytes())
}

/// A path as shown in outputs: relative to the workspace when inside it,
/// because the action runs in a container whose workspace path differs from
/// the runner's, and `actions/upload-artifact` resolves relative paths.
fn shown_path(settings: &Settings, path: &Path) -> String {
    let absolute: PathBuf = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    if let Some(workspace) = &settings.github.workspace {
        if let Ok(relative) = absolute.strip_prefix(workspace) {
            return relative.display().to_string();
        }
    }
    path.display().to_string()
}

/// The display form of a side, for callers outside the run.
pub fn side_display(settings: &Settings, side: Side) -> Option<String> {
    match side {
        Side::Source => settings.source_db_url.as_ref().map(DbUrl::to_string),
        Side::Target => settings.target_db_url.as_ref().map(DbUrl::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_cutover_puts_monitor_right_after_cutover() {
        let manifest = |on: bool| {
            let mut m = Manifest::default();
            m.monitor.after_cutover = on;
            m
        };
        let list = [Phase::Validate, Phase::Cutover, Phase::Smoke];
        assert_eq!(
            with_monitor_after_cutover(&list, &manifest(true)),
            [
                Phase::Validate,
                Phase::Cutover,
                Phase::Monitor,
                Phase::Smoke
            ]
        );
        assert_eq!(with_monitor_after_cutover(&list, &manifest(false)), list);
        let listed = [Phase::Cutover, Phase::Smoke, Phase::Monitor];
        assert_eq!(with_monitor_after_cutover(&listed, &manifest(true)), listed);
        let no_cutover = [Phase::Smoke];
        assert_eq!(
            with_monitor_after_cutover(&no_cutover, &manifest(true)),
            no_cutover
        );
    }
}
