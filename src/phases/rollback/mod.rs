//! `rollback`: the way back, at the levels the runbooks name.
//!
//! 1. Frontend back to the source: the production variables `cutover` saved
//!    in `<ledger>.frontend_states` put back, and production returned to the
//!    deployment that was live before (Vercel: promote, Cloudflare: rollback).
//! 2. Target guards off, so the target stops sending before the source
//!    starts again (never both at once), and every active pg_cron job of the
//!    target paused and held again (see [`crate::pg::cron`]): the next
//!    `cutover` resumes them.
//! 3. Source guards restored to exactly the state saved in
//!    `<ledger>.guard_states`.
//! 4. Only when asked (`rollback-functions`), Edge Functions back to the
//!    version served before `functions` replaced them (runbook Level 2): the
//!    bundles saved in the ledger redeployed byte for byte, or a git ref's
//!    folders (`rollback-functions-ref`); see [`functions`]. Alone, without a
//!    cutover to undo, this is all a rollback does.
//! 5. Only when asked (`backup-file`), the target database restored from a
//!    backup: [`super::backup::restore_target_from_backup`], after its sha-256
//!    is confirmed.
//!
//! Everything else is left as it is for forensics (the target's data,
//! functions, secrets and the ledger itself), and the summary says so.
//! "Nothing to roll back to" (no cutover in the ledger) is a failure.
//!
//! The writes are `cutover`'s own undo operations
//! ([`super::cutover::steps`]), run from the states the ledger saved.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::context::{Context, name_looks_secret};
use crate::manifest::QualifiedName;
use crate::pg::guards::{GuardLedger, SavedGuard};
use crate::pg::ledger::{ReplicationRecord, active_replication};
use crate::pg::release::{FrontendItem, FrontendLedger, SavedFrontend, last_cutover, live_since};
use crate::pg::{Database, Side};
use crate::report::{CheckItem, Outcome, PhaseReport, ReportTable, Status};

use super::PhaseError;
use super::cutover::steps::{lift_freeze, retire_replication};
use super::cutover::{guard_value, switch_table};

mod frontend;
mod functions;
mod guards;

use functions::FunctionChoice;

/// What `cutover` left open: the states it saved, the source's freeze, a
/// replication still running, and when the target went live.
struct Saved {
    guards: Vec<SavedGuard>,
    fronts: Vec<SavedFrontend>,
    frozen: Vec<QualifiedName>,
    replication: Option<ReplicationRecord>,
    live: Option<(Uuid, DateTime<Utc>)>,
}

impl Saved {
    /// Reads what is open; secret-looking previous values are masked in
    /// every output from here on.
    async fn read(
        ctx: &mut Context,
        target: &Database,
        guard_ledger: &GuardLedger,
        frontend_ledger: &FrontendLedger,
    ) -> Result<Saved, PhaseError> {
        let schema = ctx.manifest.ledger.schema.clone();
        let guards = guard_ledger.open_states().await?;
        let fronts = frontend_ledger.open_states().await?;
        for f in &fronts {
            if let (FrontendItem::Env, Some(v)) = (f.item, &f.previous) {
                if name_looks_secret(&f.name) {
                    ctx.redactor.add(v);
                    ctx.console.add_mask(v);
                }
            }
        }
        let frozen = if ctx.has_url(Side::Source) {
            ctx.source("rollback").await?.frozen_tables().await?
        } else {
            Vec::new()
        };
        Ok(Saved {
            guards,
            fronts,
            frozen,
            replication: active_replication(target, &schema).await?,
            live: live_since(target, &schema).await?,
        })
    }

    /// Nothing open: no cutover to undo.
    fn is_empty(&self) -> bool {
        self.guards.is_empty()
            && self.fronts.is_empty()
            && self.frozen.is_empty()
            && self.replication.is_none()
            && self.live.is_none()
    }

    /// The cutover runs whose states are open (else the one live).
    fn cutover_runs(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .guards
            .iter()
            .map(|g| g.run_id.to_string())
            .chain(self.fronts.iter().map(|f| f.run_id.to_string()))
            .collect();
        if let (true, Some((run, _))) = (ids.is_empty(), &self.live) {
            ids.push(run.to_string());
        }
        ids.sort();
        ids.dedup();
        ids
    }

    /// The row naming what is saved, by which runs.
    fn state_row(&self, runs: &[String]) -> CheckItem {
        CheckItem::new(
            "rollback-state",
            "Saved cutover state to restore",
            Status::Pass,
            format!(
                "{} guard state(s) and {} frontend setting(s) saved by cutover run {}",
                self.guards.len(),
                self.fronts
                    .iter()
                    .filter(|f| f.item == FrontendItem::Env)
                    .count(),
                runs.join(", ")
            ),
        )
    }
}

/// The table of what rollback leaves as it is.
fn forensics_table(backup: bool) -> ReportTable {
    let mut forensics = ReportTable::new("Left as it is, for forensics", &["What", "Why"])
        .with_note("rollback never writes the target's data back to the source; the ledger keeps every step of cutover and rollback");
    for (what, why) in [
        (
            "target database rows",
            if backup {
                "restored only by the backup step below"
            } else {
                "kept: compare with the source, or restore with backup-file"
            },
        ),
        (
            "target Edge Functions and secrets",
            "kept for the next attempt (runbook 5.2: target secrets can remain)",
        ),
        (
            "the ledger",
            "the audit trail of the cutover and this rollback",
        ),
    ] {
        forensics.push([what.to_string(), why.to_string()]);
    }
    forensics
}

/// Runs `rollback`.
pub async fn run(ctx: &mut Context) -> Result<PhaseReport, PhaseError> {
    let mut report = PhaseReport::new("rollback");
    let dry = ctx.settings.dry_run;
    // Every input is read before anything changes.
    let mut function_choice = functions::choice(ctx)?;
    if let Some(choice) = &function_choice {
        functions::check_inputs(ctx, choice).await?;
    }
    let target = ctx.target("rollback", !dry).await?;
    let schema = ctx.manifest.ledger.schema.clone();
    let guard_ledger = GuardLedger::new(&target, &schema);
    let frontend_ledger = FrontendLedger::new(&target, &schema);
    let saved = Saved::read(ctx, &target, &guard_ledger, &frontend_ledger).await?;
    let backup = ctx.settings.backup_file.clone();
    let mut forensics = forensics_table(backup.is_some());
    if saved.is_empty() {
        let functions = function_choice.take();
        let alone = nothing_open(
            ctx,
            &mut report,
            functions,
            &target,
            &guard_ledger,
            &forensics,
        );
        if alone.await? {
            return Ok(report);
        }
    }
    let cutover_runs = saved.cutover_runs();
    if !cutover_runs.is_empty() {
        report.check(saved.state_row(&cutover_runs));
    }
    let mut restored = ReportTable::new("Restored", &["What", "Before rollback", "After rollback"]);
    if dry {
        if let Some(choice) = function_choice.take() {
            functions::roll_back(ctx, &choice, &mut report).await?;
        }
        plan(ctx, &saved, &target, &mut restored).await?;
        dry_run_rows(&mut report, backup.as_ref(), restored, forensics);
        return Ok(report);
    }
    if let Some(row) = restore_point_row(ctx).await? {
        forensics.push(row);
    }
    let level1 = Level1 {
        saved: &saved,
        guard_ledger: &guard_ledger,
        frontend_ledger: &frontend_ledger,
        schema: &schema,
    };
    level1
        .run(ctx, &mut report, function_choice.take(), &mut restored)
        .await?;

    // 5. The target database, only when asked.
    if let Some(path) = &backup {
        let restore = super::backup::restore_target_from_backup(ctx, path).await?;
        report.check(restore.item);
        report.tables.extend(restore.left_out);
    }

    report.tables.push(restored);
    report.tables.push(forensics);
    let failed = report.has_failures();
    report.summary = if failed {
        "Rollback incomplete: see the failed rows; re-running it restores what is left.".into()
    } else {
        format!(
            "Rolled back cutover run {}: frontend back to the source, target guards off, source guards restored.",
            cutover_runs.join(", ")
        )
    };
    if failed {
        report.outcome = Outcome::Failed;
    }
    Ok(report)
}

/// No cutover state is open: Level 2 alone when asked, or nothing to roll
/// back. `true` when the rollback is done (a backup still to restore goes
/// on); an error when there never was a cutover and no backup to restore.
async fn nothing_open(
    ctx: &mut Context,
    report: &mut PhaseReport,
    functions: Option<FunctionChoice>,
    target: &Database,
    guard_ledger: &GuardLedger,
    forensics: &ReportTable,
) -> Result<bool, PhaseError> {
    let schema = ctx.manifest.ledger.schema.clone();
    let backup = ctx.settings.backup_file.is_some();
    let last = last_cutover(target, &schema).await?;
    if let Some(choice) = functions {
        // Level 2 alone: functions back, nothing else to undo.
        functions::roll_back(ctx, &choice, report).await?;
        if !backup {
            report.conclude_from_checks();
            report.summary = functions_alone_summary(report.has_failures(), ctx.settings.dry_run);
            return Ok(true);
        }
    }
    if backup {
        return Ok(false);
    }
    let Some((run, at)) = last else {
        let target_name = ctx.display(Side::Target).unwrap_or_default();
        return Err(PhaseError::new(format!(
            "nothing to roll back to: the ledger (schema {schema}) of {target_name} records no cutover"
        ))
        .hint("rollback undoes a `cutover` of this target; to restore the target's database from a backup instead, pass backup-file"));
    };
    let restored_at = guard_ledger.last_restored().await?;
    report.check(CheckItem::new(
        "rollback-state",
        "Saved cutover state to restore",
        Status::Skip,
        format!(
            "nothing left to restore: cutover run {run} ({}) left no open state{}",
            at.format("%Y-%m-%d %H:%M UTC"),
            restored_at
                .map(|(t, by)| format!(
                    "; already restored at {}{}",
                    t.format("%Y-%m-%d %H:%M UTC"),
                    by.map(|b| format!(" by run {b}")).unwrap_or_default()
                ))
                .unwrap_or_default()
        ),
    ));
    report.summary =
        "Nothing left to roll back: the last cutover's state was already restored.".into();
    report.tables.push(forensics.clone());
    Ok(true)
}

/// The summary of a rollback of Edge Functions alone.
fn functions_alone_summary(failed: bool, dry: bool) -> String {
    if failed {
        "Edge Function rollback incomplete: see the failed rows; re-running it is safe.".into()
    } else if dry {
        "Dry run: the Edge Function rollback is planned; nothing was changed.".into()
    } else {
        "Edge Functions rolled back; no cutover state was open, so nothing else changed.".into()
    }
}

/// Dry run: the rows of the Restored table rollback would write.
async fn plan(
    ctx: &Context,
    saved: &Saved,
    target: &Database,
    restored: &mut ReportTable,
) -> Result<(), PhaseError> {
    for f in saved.fronts.iter().filter(|f| f.item == FrontendItem::Env) {
        restored.push(frontend::variable_row(
            &f.name,
            f.readable,
            f.previous.as_deref(),
            "unreadable: not restorable by value",
        ));
    }
    for g in &saved.guards {
        restored.push([
            format!("{} {} {}", g.side.name(), g.kind.word(), g.name),
            g.applied.clone(),
            match g.side {
                Side::Source => g.previous.clone().unwrap_or_else(|| "(absent)".into()),
                Side::Target => guard_value(ctx, g.kind, &g.name, false),
            },
        ]);
    }
    for job in target.list_cron_jobs().await?.unwrap_or_default() {
        if !job.active {
            continue;
        }
        restored.push(if job.alterable {
            guards::held_row(&job.label())
        } else {
            [
                format!("target cron job {}", job.label()),
                "active".into(),
                format!(
                    "left active: owned by {}",
                    job.owner.as_deref().unwrap_or("another role")
                ),
            ]
        });
    }
    Ok(())
}

/// Dry run: the plan's rows, its tables and summary.
fn dry_run_rows(
    report: &mut PhaseReport,
    backup: Option<&PathBuf>,
    restored: ReportTable,
    forensics: ReportTable,
) {
    report.check(CheckItem::new(
        "rollback-plan",
        "Rollback planned",
        Status::Skip,
        "dry run: would restore the rows of the Restored table; nothing was changed",
    ));
    if let Some(path) = backup {
        report.check(CheckItem::new(
            "restore-target-db",
            "Target database restored from the backup",
            Status::Skip,
            format!("dry run: would restore from {}", path.display()),
        ));
    }
    report
        .tables
        .push(restored.with_note("planned, not done (dry run)"));
    report.tables.push(forensics);
    report.summary = "Dry run: the rollback is planned; nothing was changed.".into();
}

/// The break-glass row of the forensics table: the point-in-time restore
/// point cutover recorded, if any.
async fn restore_point_row(ctx: &mut Context) -> Result<Option<[String; 2]>, PhaseError> {
    let Some(ledger) = ctx.ledger("rollback").await? else {
        return Ok(None);
    };
    Ok(ledger.latest_restore_point().await?.map(|(run, at)| {
        [
            "the target's data, if it must go back too".to_string(),
            format!(
                "break-glass: a point-in-time restore of the target to {at}, recorded when cutover run {run} froze the source; manual (dashboard → Database → Backups), in place, with downtime, and the app's writes after it are lost"
            ),
        ]
    }))
}

/// Level 1 (and Level 2 when asked), in the runbook's order.
struct Level1<'a> {
    saved: &'a Saved,
    guard_ledger: &'a GuardLedger,
    frontend_ledger: &'a FrontendLedger,
    schema: &'a str,
}

impl Level1<'_> {
    async fn run(
        &self,
        ctx: &mut Context,
        report: &mut PhaseReport,
        functions: Option<FunctionChoice>,
        restored: &mut ReportTable,
    ) -> Result<(), PhaseError> {
        let table = switch_table(ctx)?;
        // 1. Frontend back to the source.
        let fronts: Vec<&SavedFrontend> = self.saved.fronts.iter().collect();
        report.check(if fronts.is_empty() {
            CheckItem::new(
                "rollback-frontend",
                "Frontend back to the source",
                Status::Skip,
                "cutover saved no frontend settings",
            )
        } else {
            frontend::rollback_frontend(ctx, self.frontend_ledger, &fronts, restored).await
        });

        // Level 2: Edge Functions, when asked.
        if let Some(choice) = functions {
            functions::roll_back(ctx, &choice, report).await?;
        }

        // 2. Target guards off (before the source's come back: never both on).
        let target = ctx.target("rollback", true).await?;
        let (ledger, saved) = (self.guard_ledger, &self.saved.guards);
        let off = guards::target_off(ctx, &target, table.as_ref(), ledger, saved, restored);
        let off = off.await?;
        let cron = guards::hold_target_jobs(ctx, &target, ledger, self.schema, restored).await;
        let target_failed = off.status == Status::Fail || cron.status == Status::Fail;
        report.check(off);
        report.check(cron);

        // 3. The source takes writes again; a replication still running is
        // removed (the target no longer follows the source after a rollback).
        self.source_writes(ctx, report, &target, restored).await?;

        // 4. Source guards restored exactly as saved.
        let back = guards::source_back(ctx, target_failed, table.as_ref(), ledger, saved, restored);
        report.check(back.await?);
        Ok(())
    }

    /// The source's freeze lifted and a replication still running removed.
    async fn source_writes(
        &self,
        ctx: &mut Context,
        report: &mut PhaseReport,
        target: &Database,
        restored: &mut ReportTable,
    ) -> Result<(), PhaseError> {
        let (frozen, replication) = (&self.saved.frozen, &self.saved.replication);
        if frozen.is_empty() && replication.is_none() {
            return Ok(());
        }
        let source = ctx.source_writable("rollback").await?;
        if !frozen.is_empty() {
            report.check(lift(ctx, &source, restored).await?);
        }
        let Some(record) = replication else {
            return Ok(());
        };
        let (id, title) = ("rollback-replication", "Replication removed");
        let ledger = ctx
            .ledger("rollback")
            .await?
            .ok_or_else(|| PhaseError::new("the ledger is not open"))?;
        report.check(
            match retire_replication(ctx, &ledger, &source, target, record).await {
                Ok(removed) => CheckItem::new(id, title, Status::Pass, removed),
                Err(e) => CheckItem::new(id, title, Status::Fail, e.message)
                    .with_hint("re-run rollback: the ledger still names what is left"),
            },
        );
        Ok(())
    }
}

/// Lifts the source's write freeze, as `cutover`'s undo does.
async fn lift(
    ctx: &Context,
    source: &Database,
    restored: &mut ReportTable,
) -> Result<CheckItem, PhaseError> {
    let (id, title) = ("rollback-freeze", "Write freeze on the source lifted");
    let (lifted, marked) = match lift_freeze(ctx, source).await {
        Ok(done) => done,
        Err(e) => {
            return Ok(CheckItem::new(id, title, Status::Fail, e.to_string()).with_hint(
                "re-run rollback; by hand: drop trigger cutover_write_freeze on each frozen table",
            ));
        }
    };
    marked?;
    restored.push([
        "source write freeze".into(),
        format!("{} tables refuse writes", lifted.len()),
        "lifted: the source takes writes again".into(),
    ]);
    Ok(CheckItem::new(
        id,
        title,
        Status::Pass,
        format!(
            "{} tables take writes again: {}",
            lifted.len(),
            lifted
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::guards::GuardKind;

    fn guard(run: u128) -> SavedGuard {
        SavedGuard {
            id: 1,
            run_id: Uuid::from_u128(run),
            side: Side::Source,
            kind: GuardKind::Switch,
            name: "sms".into(),
            previous: Some("on".into()),
            applied: "off".into(),
        }
    }

    fn saved(guards: Vec<SavedGuard>, live: Option<u128>) -> Saved {
        Saved {
            guards,
            fronts: Vec::new(),
            frozen: Vec::new(),
            replication: None,
            live: live.map(|r| (Uuid::from_u128(r), Utc::now())),
        }
    }

    #[test]
    fn the_runs_to_roll_back_are_those_of_the_open_states_else_the_live_one() {
        let open = saved(vec![guard(2), guard(1), guard(2)], Some(9));
        assert_eq!(
            open.cutover_runs(),
            [
                Uuid::from_u128(1).to_string(),
                Uuid::from_u128(2).to_string()
            ]
        );
        assert!(!open.is_empty());
        let live = saved(Vec::new(), Some(9));
        assert_eq!(live.cutover_runs(), [Uuid::from_u128(9).to_string()]);
        assert!(!live.is_empty());
        assert!(saved(Vec::new(), None).is_empty());
    }

    #[test]
    fn a_functions_only_rollback_says_what_it_did() {
        assert!(
            functions_alone_summary(true, true).starts_with("Edge Function rollback incomplete")
        );
        assert!(functions_alone_summary(false, true).starts_with("Dry run"));
        assert!(functions_alone_summary(false, false).starts_with("Edge Functions rolled back"));
    }
}
