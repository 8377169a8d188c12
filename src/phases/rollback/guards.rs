//! Rollback Level 1, the guards: the target's off first (and its pg_cron
//! jobs held), then the source's back to the state `cutover` saved, with
//! the same guard writes as `cutover`'s undo.

use crate::context::Context;
use crate::pg::Database;
use crate::pg::Side;
use crate::pg::guards::{GuardLedger, GuardValue, SavedGuard, SwitchTable};
use crate::report::{CheckItem, ReportTable, Status};

use super::super::PhaseError;
use super::super::cutover::steps::set_guards;
use super::super::cutover::{describe_guards, guard_value, list_or_none, read_guards};

/// Switches the target's guards off (before the source's come back: never
/// both on), and closes the target states `cutover` saved.
pub(super) async fn target_off(
    ctx: &Context,
    target: &Database,
    table: Option<&SwitchTable>,
    ledger: &GuardLedger,
    saved: &[SavedGuard],
    restored: &mut ReportTable,
) -> Result<CheckItem, PhaseError> {
    let (id, title) = ("rollback-guards-target", "Guards off in the target");
    let now = read_guards(ctx, target, table).await?;
    let present: Vec<&GuardValue> = now.iter().filter(|g| g.value.is_some()).collect();
    let off: Vec<GuardValue> = present
        .iter()
        .map(|g| GuardValue {
            kind: g.kind,
            name: g.name.clone(),
            value: Some(guard_value(ctx, g.kind, &g.name, false)),
        })
        .collect();
    let result = set_guards(target, table, &off).await;
    let done = match &result {
        Ok(()) => off.len(),
        Err((n, _)) => *n,
    };
    for (g, o) in present.iter().zip(&off).take(done) {
        restored.push([
            format!("target {} {}", g.kind.word(), g.name),
            g.value.clone().unwrap_or_default(),
            o.value.clone().unwrap_or_default(),
        ]);
    }
    if let Err((_, e)) = result {
        return Ok(
            CheckItem::new(id, title, Status::Fail, PhaseError::from(e).message).with_hint(
                "switch them off by hand before the source's guards come back, then re-run rollback",
            ),
        );
    }
    let ids: Vec<i64> = saved
        .iter()
        .filter(|g| g.side == Side::Target)
        .map(|g| g.id)
        .collect();
    ledger.mark_restored(&ids, ctx.run_id).await?;
    Ok(if now.is_empty() {
        CheckItem::new(id, title, Status::Skip, "no [guards] in the manifest")
    } else {
        CheckItem::new(
            id,
            title,
            Status::Pass,
            format!("{} → {}", describe_guards(&now), describe_guards(&off)),
        )
    })
}

/// Pauses the target's active pg_cron jobs and holds them for the next
/// `cutover`: the target is not live after a rollback.
pub(super) async fn hold_target_jobs(
    ctx: &Context,
    target: &Database,
    ledger: &GuardLedger,
    schema: &str,
    restored: &mut ReportTable,
) -> CheckItem {
    let (id, title) = ("rollback-cron-hold", "pg_cron jobs paused in the target");
    let outcome = match ledger.create(schema).await {
        Ok(()) => target.hold_active_cron_jobs(ledger, ctx.run_id, None).await,
        Err(e) => Err(e),
    };
    let outcome = match outcome {
        Ok(Some(o)) => o,
        Ok(None) => {
            return CheckItem::new(
                id,
                title,
                Status::Skip,
                "pg_cron is not installed in the target database",
            );
        }
        Err(e) => {
            return CheckItem::new(id, title, Status::Fail, e.to_string()).with_hint(
                "pause the target's jobs by hand (`select cron.alter_job(jobid, active := false) from cron.job`) before the source's guards come back, then re-run rollback",
            );
        }
    };
    if outcome.held.is_empty() && outcome.unheld.is_empty() {
        return CheckItem::new(
            id,
            title,
            Status::Skip,
            "no active pg_cron job on the target",
        );
    }
    for job in &outcome.held {
        restored.push(held_row(&job.label()));
    }
    let held: Vec<String> = outcome.held.iter().map(|j| j.label()).collect();
    let mut evidence = format!("paused until the next cutover: {}", list_or_none(&held));
    if outcome.unheld.is_empty() {
        return CheckItem::new(id, title, Status::Pass, evidence);
    }
    evidence.push_str(&format!("; still active: {}", outcome.unheld_list()));
    CheckItem::new(id, title, Status::Warn, evidence)
        .with_hint(format!("pause each by hand {}", outcome.pause_by_hand()))
}

/// The Restored table's row of a target job paused and held.
pub(super) fn held_row(label: &str) -> [String; 3] {
    [
        format!("target cron job {label}"),
        "active".into(),
        "paused (held until the next cutover)".into(),
    ]
}

/// Puts the source's guards back exactly as `cutover` saved them, unless
/// the target's could not be switched off (`target_failed`).
pub(super) async fn source_back(
    ctx: &mut Context,
    target_failed: bool,
    table: Option<&SwitchTable>,
    ledger: &GuardLedger,
    saved: &[SavedGuard],
    restored: &mut ReportTable,
) -> Result<CheckItem, PhaseError> {
    let (id, title) = ("rollback-guards-source", "Source guards restored");
    let source_saved: Vec<&SavedGuard> = saved.iter().filter(|g| g.side == Side::Source).collect();
    if target_failed {
        return Ok(CheckItem::new(
            id,
            title,
            Status::Skip,
            "not restored: the target's guards are still on, and both on would send every message twice",
        ));
    }
    if source_saved.is_empty() {
        return Ok(CheckItem::new(
            id,
            title,
            Status::Skip,
            "cutover saved no source guard state",
        ));
    }
    let source = ctx.source_writable("rollback").await?;
    let previous: Vec<GuardValue> = source_saved
        .iter()
        .map(|g| GuardValue {
            kind: g.kind,
            name: g.name.clone(),
            value: g.previous.clone(),
        })
        .collect();
    let result = set_guards(&source, table, &previous).await;
    let done = match &result {
        Ok(()) => source_saved.len(),
        Err((n, _)) => *n,
    };
    for g in &source_saved[..done] {
        if let Some(value) = &g.previous {
            restored.push([
                format!("source {} {}", g.kind.word(), g.name),
                g.applied.clone(),
                value.clone(),
            ]);
        }
    }
    let ids: Vec<i64> = source_saved[..done].iter().map(|g| g.id).collect();
    ledger.mark_restored(&ids, ctx.run_id).await?;
    Ok(match result {
        Ok(()) => CheckItem::new(
            id,
            title,
            Status::Pass,
            format!(
                "back to the state saved before cutover: {}",
                describe_guards(&previous)
            ),
        ),
        Err((_, e)) => CheckItem::new(id, title, Status::Fail, e.to_string())
            .with_hint("re-run rollback: the states not yet restored are still in the ledger"),
    })
}
