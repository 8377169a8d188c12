//! `readiness`: before a list of phases (`migrate`, `schema,data,validate`,
//! ...) writes anything, every input, variable, file and connection the
//! listed phases will need is checked in one go, and reported as checklist
//! rows. When one fails, no phase runs: a run never writes the schema and the
//! rows, then stops at `functions` for want of a token.
//!
//! It runs on its own, whatever the list holds (`preflight` is not required
//! first), reads only, and writes nothing, not even the ledger. Each row asks
//! the owning phase's own check, so the two cannot disagree.

use crate::context::Context;
use crate::manifest::{DataMode, QualifiedName};
use crate::pg::{Database, ServerInfo, Side};
use crate::report::{CheckItem, PhaseReport, Status, count, thousands};

use super::{Phase, PhaseError, select_tables};

/// The name the readiness report carries in the summary and the JSON report.
pub const NAME: &str = "readiness";

/// Whether a list of phases gets a readiness check first: two phases or more,
/// at least one of which writes. One phase checks its own inputs before it
/// writes; `plan` and `preflight` write nothing a later phase relies on.
pub fn needed(phases: &[Phase]) -> bool {
    phases.len() > 1 && phases.iter().any(|p| writes(*p))
}

/// Phases that change a database, a project or the frontend.
fn writes(phase: Phase) -> bool {
    !matches!(
        phase,
        Phase::Plan | Phase::Preflight | Phase::Validate | Phase::Smoke
    )
}

/// Phases that read the source database.
fn needs_source(phase: Phase) -> bool {
    matches!(
        phase,
        Phase::Backup | Phase::Data | Phase::Validate | Phase::Cutover | Phase::Rollback
    )
}

/// Phases that read or write the target database.
fn needs_target(phase: Phase) -> bool {
    matches!(
        phase,
        Phase::Backup
            | Phase::Schema
            | Phase::Data
            | Phase::Config
            | Phase::Validate
            | Phase::Cutover
            | Phase::Rollback
    )
}

/// Checks what `phases` need. The report fails (and the run stops before its
/// first phase) when any row fails.
pub async fn run(ctx: &mut Context, phases: &[Phase]) -> Result<PhaseReport, PhaseError> {
    let mut report = PhaseReport::new(NAME);
    let has = |p: Phase| phases.contains(&p);
    let source = match names(phases, needs_source) {
        Some(users) => database_row(ctx, Side::Source, &users, &mut report).await,
        None => None,
    };
    let target = match names(phases, needs_target) {
        Some(users) => database_row(ctx, Side::Target, &users, &mut report).await,
        None => None,
    };

    // Source ≠ target, as every writing phase checks it again: nothing below
    // (the target's rows) means anything when they are one database.
    let mut one_environment = false;
    if let (Some((_, source_info)), Some((_, target_info))) = (&source, &target) {
        let item = one_environment_row(ctx, source_info, target_info);
        one_environment = item.status == Status::Fail;
        report.check(item);
    }
    if has(Phase::Schema) {
        let (item, _) = super::preflight::migration_files_check(ctx);
        report.check(item);
    }
    for phase in api_phases(ctx, phases) {
        report.check(api_inputs_row(ctx, phase));
    }
    if has(Phase::Storage) {
        let title = "Storage API inputs for `storage`";
        report.check(inputs_row(
            "storage-inputs",
            title,
            super::storage::storage_clients(ctx).map(|_| ()),
            "both projects' Storage URLs and service_role keys set (keys not shown)",
        ));
    }
    if (has(Phase::Cutover) || has(Phase::Rollback)) && ctx.manifest.frontend.is_some() {
        frontend_rows(ctx, &mut report).await;
    }
    // Each phase's own variables: `config` does not wait for the values only
    // `secrets` sets.
    let scope = super::preflight::RequiredValues {
        secrets: has(Phase::Secrets),
        config: has(Phase::Config),
        frontend: has(Phase::Cutover) || has(Phase::Rollback),
    };
    if scope.secrets || scope.config || scope.frontend {
        report.check(super::preflight::required_values(ctx, scope));
    }
    if has(Phase::Data)
        && ctx.manifest.data.mode == DataMode::Copy
        && !ctx.settings.overwrite
        && !one_environment
    {
        if let (Some((source, _)), Some((target, _))) = (&source, &target) {
            report.check(target_tables_row(ctx, source, target).await?);
        }
    }
    report.conclude_from_checks();
    report.summary = summary(phases.len(), report.count_of(Status::Fail));
    Ok(report)
}

/// The phases `pred` picks, joined (`None` when it picks none).
fn names(phases: &[Phase], pred: fn(Phase) -> bool) -> Option<String> {
    let picked: Vec<&str> = phases
        .iter()
        .filter(|p| pred(**p))
        .map(|p| p.name())
        .collect();
    (!picked.is_empty()).then(|| picked.join(", "))
}

/// The distinct-environments row, saying nothing ran when they are one.
fn one_environment_row(ctx: &Context, source: &ServerInfo, target: &ServerInfo) -> CheckItem {
    let mut item = super::preflight::distinct_environments(ctx, Some(source), Some(target));
    if item.status == Status::Fail {
        item.evidence = format!(
            "source and target are one environment: {}; nothing was read or written",
            item.evidence
        );
    }
    item
}

/// The listed phases that call the Management API in this run.
fn api_phases(ctx: &Context, phases: &[Phase]) -> Vec<Phase> {
    // `rollback` calls the Management API only for `rollback-functions`.
    let rolls_back_functions = ctx
        .settings
        .rollback_functions
        .as_deref()
        .is_some_and(|v| !v.trim().is_empty());
    [
        Phase::Functions,
        Phase::Secrets,
        Phase::Monitor,
        Phase::Rollback,
        Phase::Config,
    ]
    .into_iter()
    .filter(|phase| phases.contains(phase))
    .filter(|phase| match phase {
        Phase::Rollback => rolls_back_functions,
        // `config` calls it only for `[project_settings]`.
        Phase::Config => !ctx.manifest.project_settings.is_empty(),
        _ => true,
    })
    .collect()
}

/// Whether `phase`'s Management API inputs are set (`secrets` also needs the
/// source's ref).
fn api_inputs_row(ctx: &Context, phase: Phase) -> CheckItem {
    let id = format!("{}-inputs", phase.name());
    let title = format!("Management API inputs for `{}`", phase.name());
    let needs_source_ref = phase == Phase::Secrets;
    let client = super::functions::management_client(ctx, phase.name(), needs_source_ref);
    inputs_row(
        &id,
        &title,
        client.map(|_| ()),
        "project ref(s) and access token set (values not shown)",
    )
}

/// The target's keys (when `[frontend.env]` uses them) and the frontend
/// provider's inputs.
async fn frontend_rows(ctx: &mut Context, report: &mut PhaseReport) {
    if super::project_keys::referenced(ctx) && ctx.project_values.is_empty() {
        if let Err(e) = super::project_keys::load(ctx, report).await {
            report.check(failed_row(
                "target-keys",
                "Target URL and client keys read",
                e,
            ));
        }
    }
    let title = "Frontend provider token and variables";
    report.check(inputs_row(
        "frontend-inputs",
        title,
        super::cutover::frontend_plan(ctx).map(|_| ()),
        "provider token and every [frontend.env] variable set (values not shown)",
    ));
}

/// The report's summary.
fn summary(phases: usize, failed: usize) -> String {
    if failed == 0 {
        format!(
            "Every input the {} need is there; nothing was written.",
            count(phases, "phase", "phases")
        )
    } else {
        format!(
            "{} not ready: no phase ran and nothing was written. Fix the failed rows, then re-run.",
            count(failed, "input is", "inputs are")
        )
    }
}

/// A passing row when a phase's own check of its inputs succeeded, else a
/// failed row with its error.
fn inputs_row(id: &str, title: &str, checked: Result<(), PhaseError>, evidence: &str) -> CheckItem {
    match checked {
        Ok(()) => CheckItem::new(id, title, Status::Pass, evidence),
        Err(e) => failed_row(id, title, e),
    }
}

/// A failed row from a phase's own error.
fn failed_row(id: &str, title: &str, e: PhaseError) -> CheckItem {
    let mut item = CheckItem::new(id, title, Status::Fail, e.message);
    item.hint = e.hint;
    item
}

/// Connects to one side (writable for the target unless dry-run) and says so;
/// the database and what it is on success.
async fn database_row(
    ctx: &mut Context,
    side: Side,
    needed_by: &str,
    report: &mut PhaseReport,
) -> Option<(Database, ServerInfo)> {
    let id = format!("{}-database", side.name());
    let title = format!("{} database reachable", capitalised(side.name()));
    let db = match side {
        Side::Source => ctx.source(NAME).await,
        Side::Target => ctx.target(NAME, !ctx.settings.dry_run).await,
    };
    let db = match db {
        Ok(db) => db,
        Err(e) => {
            let mut item = failed_row(&id, &title, e);
            item.evidence = format!("needed by {needed_by}: {}", item.evidence);
            report.check(item);
            return None;
        }
    };
    let info = match db.server_info().await {
        Ok(info) => info,
        Err(e) => {
            report.check(failed_row(&id, &title, e.into()));
            return None;
        }
    };
    let evidence = format!(
        "PostgreSQL {} at {} as `{}`, needed by {needed_by}",
        info.version, db.display, info.user
    );
    let problem = (side == Side::Target && !ctx.settings.dry_run)
        .then(|| super::preflight::target_write_problem(&info))
        .flatten();
    report.check(match problem {
        Some(problem) => {
            CheckItem::new(&id, &title, Status::Fail, format!("{evidence}: {problem}"))
                .with_hint("connect to the primary as the `postgres` user of the target project")
        }
        None => CheckItem::new(&id, &title, Status::Pass, evidence),
    });
    Some((db, info))
}

/// `data` refuses target tables that already hold rows (unless overwrite):
/// say so now rather than after `schema` and `backup` ran.
async fn target_tables_row(
    ctx: &Context,
    source: &Database,
    target: &Database,
) -> Result<CheckItem, PhaseError> {
    let title = "Target tables to copy into hold no rows";
    let selection = select_tables(ctx, source).await?;
    let names: Vec<QualifiedName> = selection.copy.iter().map(|t| t.name.clone()).collect();
    let existing = target.existing_tables(&names).await?;
    let non_empty = target.non_empty_tables(&existing).await?;
    let (_, others) =
        super::data::copy::split_seeded(target, &ctx.manifest.ledger.schema, non_empty).await?;
    let counts = target.exact_row_counts(&others).await?;
    let holding: Vec<String> = counts
        .iter()
        .map(|(t, n)| format!("{t} ({})", thousands(*n)))
        .collect();
    Ok(if holding.is_empty() {
        CheckItem::new(
            "target-empty",
            title,
            Status::Pass,
            format!(
                "{} of {} exist on the target, none holds rows of its own",
                existing.len(),
                count(names.len(), "table", "tables")
            ),
        )
    } else {
        CheckItem::new(
            "target-empty",
            title,
            Status::Fail,
            format!("`data` would refuse them: {}", holding.join(", ")),
        )
        .with_hint("back up the target and pass overwrite (--overwrite, input `overwrite`), or empty those tables, or exclude them in [data] exclude")
    })
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_join_the_phases_a_side_serves() {
        let phases = [Phase::Schema, Phase::Data, Phase::Functions];
        assert_eq!(names(&phases, needs_source).as_deref(), Some("data"));
        assert_eq!(
            names(&phases, needs_target).as_deref(),
            Some("schema, data")
        );
        assert_eq!(names(&[Phase::Functions], needs_target), None);
    }

    #[test]
    fn summaries_count_phases_or_failed_inputs() {
        assert_eq!(
            summary(3, 0),
            "Every input the 3 phases need is there; nothing was written."
        );
        assert!(summary(3, 1).starts_with("1 input is not ready"));
    }

    #[test]
    fn a_list_that_writes_gets_a_readiness_check_a_single_phase_checks_itself() {
        use Phase::*;
        assert!(needed(&[Preflight, Backup, Schema, Data]));
        assert!(needed(&[Schema, Data]));
        assert!(!needed(&[Data]), "one phase checks its own inputs");
        assert!(!needed(&[Plan, Preflight, Validate]), "nothing written");
    }

    #[test]
    fn every_phase_that_touches_a_database_asks_for_it() {
        for phase in Phase::ALL {
            if matches!(phase, Phase::Schema | Phase::Config) {
                assert!(needs_target(phase) && !needs_source(phase), "{phase}");
            }
            if matches!(phase, Phase::Data | Phase::Validate | Phase::Cutover) {
                assert!(needs_target(phase) && needs_source(phase), "{phase}");
            }
            if matches!(phase, Phase::Functions | Phase::Secrets | Phase::Smoke) {
                assert!(!needs_target(phase) && !needs_source(phase), "{phase}");
            }
        }
    }
}
