//! `cutover`: the gated switch from the source environment to the target.
//!
//! First the gate ([`gate`]): nothing changes unless every row passes. Then,
//! in order, each step timed and recorded: a GitHub deployment marked
//! `in_progress`; guards off in the source (the `[[guards.switches]]` of the
//! `[config]` table and the `[guards] cron_jobs`, their previous state saved
//! in `<ledger>.guard_states`) so no message goes out twice; the frontend's
//! production variables pointed at the target and published (previous values
//! saved in `<ledger>.frontend_states`); guards on in the target; the smoke
//! checks; the deployment marked `success` or `failure`.
//!
//! When a step after the source's guards fails, what this run changed is
//! undone in reverse order (target guards, frontend, source guards) and the
//! summary says so. This phase and `rollback` are the only ones that write to
//! the source, through [`Context::source_writable`], and only the guards.

mod apply;
pub mod database;
mod deployment;
mod frontend;
pub mod gate;
mod guards;
pub(crate) mod steps;

use std::time::Duration;

use crate::context::Context;
use crate::manifest::QualifiedName;
use crate::pg::guards::{GuardKind, GuardLedger, GuardValue, SwitchTable};
use crate::pg::ledger::{Ledger, StepRecord};
use crate::pg::release::FrontendLedger;
use crate::pg::{Database, Side};
use crate::report::{CheckItem, Outcome, PhaseReport, Status, human_duration};

use super::{PhaseError, smoke};
use deployment::Deployment;
use gate::Gate;

pub use frontend::save_frontend;
pub(crate) use frontend::{FrontendPlan, frontend_plan, provider_token, variable_names};
pub use guards::restore_guards;

/// Per-request timeout of provider API calls.
pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(30);

/// The `[config]` table the switches live in, when there are switches.
pub fn switch_table(ctx: &Context) -> Result<Option<SwitchTable>, PhaseError> {
    if ctx.manifest.guards.switches.is_empty() {
        return Ok(None);
    }
    let c = &ctx.manifest.config;
    Ok(Some(SwitchTable {
        table: QualifiedName::parse(&c.table)
            .map_err(|m| PhaseError::new(format!("[config] table: {m}")))?,
        key_column: c.key_column.clone(),
        value_column: c.value_column.clone(),
    }))
}

/// The value a guard takes when switched off or on.
pub fn guard_value(ctx: &Context, kind: GuardKind, name: &str, on: bool) -> String {
    match kind {
        GuardKind::Cron | GuardKind::CronHold => on.to_string(),
        GuardKind::Switch => ctx
            .manifest
            .guards
            .switches
            .iter()
            .find(|s| s.key == name)
            .map(|s| if on { s.on.clone() } else { s.off.clone() })
            .unwrap_or_else(|| on.to_string()),
    }
}

/// Reads the guards of one side.
pub async fn read_guards(
    ctx: &Context,
    db: &Database,
    table: Option<&SwitchTable>,
) -> Result<Vec<GuardValue>, PhaseError> {
    let switches: Vec<String> = ctx
        .manifest
        .guards
        .switches
        .iter()
        .map(|s| s.key.clone())
        .collect();
    Ok(db
        .read_guards(table, &switches, &ctx.manifest.guards.cron_jobs)
        .await?)
}

/// `key = value` list for evidence; secret-looking keys never show values.
pub fn describe_guards(guards: &[GuardValue]) -> String {
    if guards.is_empty() {
        return "none configured".into();
    }
    guards
        .iter()
        .map(|g| {
            let what = match g.kind {
                GuardKind::Switch => g.name.clone(),
                GuardKind::Cron | GuardKind::CronHold => format!("cron job {}", g.name),
            };
            match &g.value {
                None => format!("{what} (absent)"),
                Some(v) if g.kind.is_cron() => {
                    format!("{what} {}", if v == "true" { "active" } else { "paused" })
                }
                Some(v) => format!("{what} = {v}"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `a, b`, or `none` for an empty list.
pub(crate) fn list_or_none<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items
        .iter()
        .map(|s| s.as_ref())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `cutover`.
pub async fn run(ctx: &mut Context) -> Result<PhaseReport, PhaseError> {
    let mut report = PhaseReport::new("cutover");
    let gate = gate::check(ctx, &mut report).await?;
    report.approvers = gate.approvers.iter().map(|a| a.login.clone()).collect();
    if !gate.open {
        report.outcome = Outcome::Blocked;
        report.summary = "Blocked by the gate: nothing was changed. See the failed rows.".into();
        return Ok(report);
    }
    let approvers = gate
        .approvers
        .iter()
        .map(|a| format!("@{}", a.login))
        .collect::<Vec<_>>()
        .join(", ");

    // Everything that can be refused is refused before the first change.
    let table = switch_table(ctx)?;
    if super::project_keys::referenced(ctx) {
        super::project_keys::load(ctx, &mut report).await?;
    }
    let frontend = frontend_plan(ctx)?;
    let smoke_checks = smoke_plan(ctx)?;
    if ctx.settings.dry_run {
        dry_run(
            ctx,
            &mut report,
            table.as_ref(),
            frontend.as_ref(),
            smoke_checks,
        )
        .await?;
        report.summary =
            format!("Dry run: the gate is open (approved by {approvers}); nothing was changed.");
        return Ok(report);
    }

    let target = ctx.target("cutover", true).await?;
    let ledger = ctx
        .ledger("cutover")
        .await?
        .ok_or_else(|| PhaseError::new("the ledger is not open"))?;
    let schema = ctx.manifest.ledger.schema.clone();
    let guard_ledger = GuardLedger::new(&target, &schema);
    guard_ledger.create(&schema).await?;
    let frontend_ledger = FrontendLedger::new(&target, &schema);
    frontend_ledger.create(&schema).await?;
    record_approval(ctx, &ledger, &gate).await?;
    let deployment = Deployment::start(ctx, &gate).await?;
    // A `monitor` later in this run compares with figures from before the
    // switch.
    ctx.monitor_baseline = super::monitor::take_baseline(ctx).await;

    let source = ctx.source_writable("cutover").await?;
    let selection = super::select_tables(ctx, &source).await?;
    let copied: Vec<QualifiedName> = selection.copy.iter().map(|t| t.name.clone()).collect();
    let plan = steps::plan(database::replicating(ctx));
    let opened = apply::Opened {
        ledger,
        source,
        target,
        guard_ledger,
        frontend_ledger,
    };
    let mut cutover = apply::Cutover::new(ctx, &mut report, opened, table, frontend, copied);
    let run = steps::apply_all(&mut cutover, &plan).await?;
    cutover.record_freeze(run.failure.is_none()).await;
    // Undo in reverse when a step failed.
    let undone = match &run.failure {
        Some(_) => steps::unwind(&mut cutover, run.applied).await,
        None => Vec::new(),
    };
    let (steps_table, switched, blocked) = (cutover.steps.table, cutover.switched, cutover.blocked);

    deployment
        .finish(&mut report, run.failure.as_deref(), &approvers)
        .await;
    report.tables.push(steps_table);
    let freeze = switched
        .as_ref()
        .map(|d| (d.tables, d.freeze_started.elapsed()));
    let target_name = ctx.display(Side::Target).unwrap_or_default();
    report.summary = summary(
        &target_name,
        &approvers,
        freeze,
        run.failure.as_deref(),
        &undone,
    );
    if blocked {
        report.outcome = Outcome::Blocked;
    } else if run.failure.is_some() {
        report.outcome = Outcome::Failed;
    }
    Ok(report)
}

/// How many smoke checks will run; an error, before anything changed, when
/// one cannot be built.
fn smoke_plan(ctx: &Context) -> Result<usize, PhaseError> {
    let (checks, problems) = smoke::plan(ctx);
    match problems.first() {
        None => Ok(checks.len()),
        Some(p) => Err(PhaseError::new(format!(
            "the smoke checks cannot be built: {}; nothing was changed",
            p.evidence
        ))
        .hint(p.hint.clone().unwrap_or_default())),
    }
}

/// Records who approved, as the `approval` step of the ledger.
async fn record_approval(ctx: &Context, ledger: &Ledger, gate: &Gate) -> Result<(), PhaseError> {
    let now = chrono::Utc::now();
    let approvers: Vec<serde_json::Value> = gate
        .approvers
        .iter()
        .map(|a| serde_json::json!({"login": a.login, "comment": a.comment, "seen_at": a.seen_at}))
        .collect();
    let record = StepRecord {
        phase: "cutover",
        step: "approval",
        started_at: now,
        finished_at: now,
        outcome: "pass",
        detail: serde_json::json!({"environment": gate.environment, "approvers": approvers}),
    };
    ledger.record_step(ctx.run_id, &record).await?;
    Ok(())
}

/// The summary of a cutover run; `freeze` is the tables frozen and for how
/// long, when the database part was done.
fn summary(
    target: &str,
    approvers: &str,
    freeze: Option<(usize, Duration)>,
    failure: Option<&str>,
    undone: &[String],
) -> String {
    match failure {
        None => format!(
            "Cut over to {target}: approved by {approvers}; every acknowledged write on the target and the source frozen ({}; writes refused for {} during the switch), source guards off, frontend switched, target guards on, smoke passed.",
            freeze
                .map(|(n, _)| format!("{n} tables"))
                .unwrap_or_else(|| "no tables".into()),
            freeze
                .map(|(_, took)| human_duration(took.as_millis() as u64))
                .unwrap_or_else(|| "0 ms".into())
        ),
        Some(why) if undone.is_empty() => {
            format!("Cutover failed before changing anything: {why}.")
        }
        Some(why) => format!(
            "Cutover failed ({why}) and was undone in reverse order: {}.",
            undone.join(", then ")
        ),
    }
}

/// What a dry run reads to say what the switch would do.
struct DryRunFacts {
    copied: usize,
    replicating: bool,
    source_guards: String,
    target_guards: String,
    holds: Vec<String>,
    /// `would set ...`, or `None` without `[frontend]`.
    frontend: Option<String>,
    smoke_checks: usize,
}

/// Dry run: the rows of the steps, each saying what it would do.
async fn dry_run(
    ctx: &mut Context,
    report: &mut PhaseReport,
    table: Option<&SwitchTable>,
    frontend: Option<&FrontendPlan>,
    smoke_checks: usize,
) -> Result<(), PhaseError> {
    let source = ctx.source("cutover").await?;
    let target = ctx.target("cutover", false).await?;
    let s = read_guards(ctx, &source, table).await?;
    let t = read_guards(ctx, &target, table).await?;
    let holds: Vec<String> = GuardLedger::new(&target, &ctx.manifest.ledger.schema)
        .open_holds()
        .await?
        .into_iter()
        .map(|h| h.name)
        .collect();
    let facts = DryRunFacts {
        copied: super::select_tables(ctx, &source).await?.copy.len(),
        replicating: database::replicating(ctx),
        source_guards: describe_guards(&s),
        target_guards: describe_guards(&t),
        holds,
        frontend: frontend.map(|f| {
            format!(
                "would set {} on {} project {} and publish",
                f.names(),
                f.client.provider(),
                f.project
            )
        }),
        smoke_checks,
    };
    for item in dry_run_rows(&facts) {
        report.check(item);
    }
    Ok(())
}

fn dry_run_rows(f: &DryRunFacts) -> Vec<CheckItem> {
    let holds = if f.holds.is_empty() {
        String::new()
    } else {
        format!(
            "; would resume the pg_cron jobs held since schema: {}",
            f.holds.join(", ")
        )
    };
    let verify = if f.replicating {
        "wait for a fence on the target and compare exact counts"
    } else {
        "prove them unchanged since the copy (counts and checksums)"
    };
    [
        (
            "write-freeze",
            "Writes to the source frozen",
            format!(
                "would freeze writes on {} copied tables, then {verify}, then set the sequences",
                f.copied
            ),
        ),
        (
            "guards-source-off",
            "Guards off in the source",
            format!("would switch off in the source; now: {}", f.source_guards),
        ),
        (
            "frontend-switch",
            "Frontend switched to the target",
            f.frontend
                .clone()
                .unwrap_or_else(|| "no [frontend] in the manifest".into()),
        ),
        (
            "guards-target-on",
            "Guards on in the target",
            format!(
                "would switch on in the target; now: {}{holds}",
                f.target_guards
            ),
        ),
        (
            "smoke",
            "Smoke checks",
            format!("would run {} check(s)", f.smoke_checks),
        ),
    ]
    .into_iter()
    .map(|(id, title, evidence)| {
        CheckItem::new(id, title, Status::Skip, format!("dry run: {evidence}"))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_what_was_undone_in_order() {
        let undone = [
            "Undo: frontend restored".to_string(),
            "Undo: write freeze lifted".to_string(),
        ];
        assert_eq!(
            summary("t", "@a", None, Some("boom"), &undone),
            "Cutover failed (boom) and was undone in reverse order: Undo: frontend restored, then Undo: write freeze lifted."
        );
        assert_eq!(
            summary("t", "@a", None, Some("boom"), &[]),
            "Cutover failed before changing anything: boom."
        );
        assert!(
            summary("t", "@a", Some((3, Duration::from_millis(1500))), None, &[])
                .starts_with("Cut over to t: approved by @a; every acknowledged write on the target and the source frozen (3 tables; writes refused for ")
        );
    }

    #[test]
    fn a_dry_run_says_what_each_step_would_do() {
        let facts = DryRunFacts {
            copied: 2,
            replicating: true,
            source_guards: "none configured".into(),
            target_guards: "none configured".into(),
            holds: vec!["nightly".into()],
            frontend: None,
            smoke_checks: 1,
        };
        let rows = dry_run_rows(&facts);
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "write-freeze",
                "guards-source-off",
                "frontend-switch",
                "guards-target-on",
                "smoke"
            ]
        );
        assert!(rows.iter().all(|r| r.status == Status::Skip));
        assert_eq!(
            rows[0].evidence,
            "dry run: would freeze writes on 2 copied tables, then wait for a fence on the target and compare exact counts, then set the sequences"
        );
        assert_eq!(
            rows[3].evidence,
            "dry run: would switch on in the target; now: none configured; would resume the pg_cron jobs held since schema: nightly"
        );
        assert_eq!(rows[2].evidence, "dry run: no [frontend] in the manifest");
    }
}
