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

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::context::{Context, name_looks_secret};
use crate::frontend::{DeploymentRef, EnvValue, Frontend, Snapshot};
use crate::pg::Side;
use crate::pg::guards::{GuardLedger, GuardValue, SavedGuard};
use crate::pg::ledger::active_replication;
use crate::pg::release::{FrontendItem, FrontendLedger, SavedFrontend, last_cutover, live_since};
use crate::report::{CheckItem, Outcome, PhaseReport, ReportTable, Status};

use super::PhaseError;

mod functions;
use super::cutover::{PROVIDER_TIMEOUT, describe_guards, guard_value, read_guards, switch_table};

/// Puts back the values of secret-looking variables, which the ledger does
/// not keep, from `[frontend.source_env]`, each only if its sha-256 is the one
/// `cutover` recorded. Returns a note per variable left as it is.
fn fill_secret_values(
    ctx: &Context,
    snapshot: &mut Snapshot,
    saved: &[&SavedFrontend],
) -> Vec<String> {
    let mut notes = Vec::new();
    let source_env = ctx
        .manifest
        .frontend
        .as_ref()
        .map(|f| f.source_env.clone())
        .unwrap_or_default();
    for e in snapshot.env.iter_mut() {
        let Some(state) = saved
            .iter()
            .find(|s| s.item == FrontendItem::Env && s.name == e.name)
        else {
            continue;
        };
        if state
            .detail
            .get("secret_not_kept")
            .and_then(serde_json::Value::as_bool)
            != Some(true)
        {
            continue;
        }
        let Some(recorded) = state
            .detail
            .get("sha256")
            .and_then(serde_json::Value::as_str)
        else {
            continue;
        };
        let value = source_env
            .get(&e.name)
            .and_then(|raw| crate::manifest::expand(raw, |n| ctx.env_var(n)).ok());
        match value {
            None => notes.push(format!(
                "{}: its old value is a secret the ledger does not keep; set [frontend.source_env] {} = \"${{VAR}}\" to restore it by value",
                e.name, e.name
            )),
            Some(v) if hex::encode(Sha256::digest(v.as_bytes())) != recorded => notes.push(format!(
                "{}: the value given in [frontend.source_env] is not the one live before cutover (sha-256 differs); left as it is",
                e.name
            )),
            Some(v) => {
                e.value = Some(v);
                e.readable = true;
            }
        }
    }
    notes
}

fn snapshot_from(saved: &[&SavedFrontend]) -> Snapshot {
    let mut snapshot = Snapshot::default();
    for s in saved {
        match s.item {
            FrontendItem::Deployment => {
                snapshot.deployment = Some(DeploymentRef {
                    id: s.name.clone(),
                    url: s.previous.clone(),
                })
            }
            FrontendItem::Env => snapshot.env.push(EnvValue {
                name: s.name.clone(),
                value: s.previous.clone(),
                present: s
                    .detail
                    .get("present")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(s.previous.is_some() || !s.readable),
                readable: s.readable,
                id: s
                    .detail
                    .get("id")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_string),
                kind: s
                    .detail
                    .get("type")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_string),
            }),
        }
    }
    snapshot
}

fn show_value(name: &str, value: Option<&str>) -> String {
    match value {
        None => "(absent)".into(),
        Some(_) if name_looks_secret(name) => crate::redact::MASK.into(),
        Some(v) => v.to_string(),
    }
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
    let target_name = ctx.display(Side::Target).unwrap_or_default();
    let guard_ledger = GuardLedger::new(&target, &schema);
    let frontend_ledger = FrontendLedger::new(&target, &schema);
    let guards = guard_ledger.open_states().await?;
    let fronts = frontend_ledger.open_states().await?;
    // Secret-looking previous values never reach any output.
    for f in &fronts {
        if let (FrontendItem::Env, Some(v)) = (f.item, &f.previous) {
            if name_looks_secret(&f.name) {
                ctx.redactor.add(v);
                ctx.console.add_mask(v);
            }
        }
    }
    let backup = ctx.settings.backup_file.clone();
    let mut restored = ReportTable::new("Restored", &["What", "Before rollback", "After rollback"]);
    let forensics = ReportTable::new("Left as it is, for forensics", &["What", "Why"])
        .with_note("rollback never writes the target's data back to the source; the ledger keeps every step of cutover and rollback");
    let mut forensics = forensics;
    for (what, why) in [
        (
            "target database rows",
            if backup.is_some() {
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

    // The source's write freeze and a replication still running.
    let frozen = if ctx.has_url(Side::Source) {
        ctx.source("rollback").await?.frozen_tables().await?
    } else {
        Vec::new()
    };
    let replication = active_replication(&target, &schema).await?;
    let live = live_since(&target, &schema).await?;
    if guards.is_empty()
        && fronts.is_empty()
        && frozen.is_empty()
        && replication.is_none()
        && live.is_none()
    {
        let last = last_cutover(&target, &schema).await?;
        if let Some(choice) = function_choice.take() {
            // Level 2 alone: functions back, nothing else to undo.
            functions::roll_back(ctx, &choice, &mut report).await?;
            if backup.is_none() {
                report.conclude_from_checks();
                report.summary = if report.has_failures() {
                    "Edge Function rollback incomplete: see the failed rows; re-running it is safe."
                        .into()
                } else if dry {
                    "Dry run: the Edge Function rollback is planned; nothing was changed.".into()
                } else {
                    "Edge Functions rolled back; no cutover state was open, so nothing else changed."
                        .into()
                };
                return Ok(report);
            }
        }
        match (&last, &backup) {
            (None, None) => {
                return Err(PhaseError::new(format!(
                    "nothing to roll back to: the ledger (schema {schema}) of {target_name} records no cutover"
                ))
                .hint("rollback undoes a `cutover` of this target; to restore the target's database from a backup instead, pass backup-file"));
            }
            (Some((run, at)), None) => {
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
                    "Nothing left to roll back: the last cutover's state was already restored."
                        .into();
                report.tables.push(forensics);
                return Ok(report);
            }
            _ => {}
        }
    }

    let cutover_runs: Vec<String> = {
        let mut ids: Vec<String> = guards
            .iter()
            .map(|g| g.run_id.to_string())
            .chain(fronts.iter().map(|f| f.run_id.to_string()))
            .collect();
        if let (true, Some((run, _))) = (ids.is_empty(), &live) {
            ids.push(run.to_string());
        }
        ids.sort();
        ids.dedup();
        ids
    };
    if !cutover_runs.is_empty() {
        report.check(CheckItem::new(
            "rollback-state",
            "Saved cutover state to restore",
            Status::Pass,
            format!(
                "{} guard state(s) and {} frontend setting(s) saved by cutover run {}",
                guards.len(),
                fronts
                    .iter()
                    .filter(|f| f.item == FrontendItem::Env)
                    .count(),
                cutover_runs.join(", ")
            ),
        ));
    }

    if dry {
        if let Some(choice) = function_choice.take() {
            functions::roll_back(ctx, &choice, &mut report).await?;
        }
        for f in fronts.iter().filter(|f| f.item == FrontendItem::Env) {
            restored.push([
                format!("frontend {}", f.name),
                "(target value)".into(),
                if f.readable {
                    show_value(&f.name, f.previous.as_deref())
                } else {
                    "unreadable: not restorable by value".into()
                },
            ]);
        }
        for g in &guards {
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
            if job.active {
                restored.push([
                    format!("target cron job {}", job.label()),
                    "active".into(),
                    if job.alterable {
                        "paused (held until the next cutover)".into()
                    } else {
                        format!(
                            "left active: owned by {}",
                            job.owner.as_deref().unwrap_or("another role")
                        )
                    },
                ]);
            }
        }
        report.check(CheckItem::new(
            "rollback-plan",
            "Rollback planned",
            Status::Skip,
            "dry run: would restore the rows of the Restored table; nothing was changed",
        ));
        if let Some(path) = &backup {
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
        return Ok(report);
    }

    if let Some(ledger) = ctx.ledger("rollback").await? {
        if let Some((run, at)) = ledger.latest_restore_point().await? {
            forensics.push([
                "the target's data, if it must go back too".to_string(),
                format!(
                    "break-glass: a point-in-time restore of the target to {at}, recorded when cutover run {run} froze the source; manual (dashboard → Database → Backups), in place, with downtime, and the app's writes after it are lost"
                ),
            ]);
        }
    }
    let table = switch_table(ctx)?;

    // 1. Frontend back to the source.
    let env_fronts: Vec<&SavedFrontend> = fronts.iter().collect();
    if env_fronts.is_empty() {
        report.check(CheckItem::new(
            "rollback-frontend",
            "Frontend back to the source",
            Status::Skip,
            "cutover saved no frontend settings",
        ));
    } else {
        report.check(rollback_frontend(ctx, &frontend_ledger, &env_fronts, &mut restored).await);
    }

    // Level 2: Edge Functions, when asked.
    if let Some(choice) = function_choice.take() {
        functions::roll_back(ctx, &choice, &mut report).await?;
    }

    // 2. Target guards off (before the source's come back: never both on).
    let target_saved: Vec<&SavedGuard> = guards.iter().filter(|g| g.side == Side::Target).collect();
    let target_db = ctx.target("rollback", true).await?;
    let now = read_guards(ctx, &target_db, table.as_ref()).await?;
    let mut off = Vec::new();
    let mut result: Result<(), PhaseError> = Ok(());
    for g in now.iter().filter(|g| g.value.is_some()) {
        let value = guard_value(ctx, g.kind, &g.name, false);
        if let Err(e) = target_db
            .set_guard(table.as_ref(), g.kind, &g.name, &value)
            .await
        {
            result = Err(e.into());
            break;
        }
        restored.push([
            format!("target {} {}", g.kind.word(), g.name),
            g.value.clone().unwrap_or_default(),
            value.clone(),
        ]);
        off.push(GuardValue {
            kind: g.kind,
            name: g.name.clone(),
            value: Some(value),
        });
    }
    report.check(match result {
        Ok(()) => {
            guard_ledger
                .mark_restored(
                    &target_saved.iter().map(|g| g.id).collect::<Vec<_>>(),
                    ctx.run_id,
                )
                .await?;
            CheckItem::new(
                "rollback-guards-target",
                "Guards off in the target",
                if now.is_empty() {
                    Status::Skip
                } else {
                    Status::Pass
                },
                if now.is_empty() {
                    "no [guards] in the manifest".into()
                } else {
                    format!("{} → {}", describe_guards(&now), describe_guards(&off))
                },
            )
        }
        Err(e) => CheckItem::new(
            "rollback-guards-target",
            "Guards off in the target",
            Status::Fail,
            e.message,
        )
        .with_hint(
            "switch them off by hand before the source's guards come back, then re-run rollback",
        ),
    });
    let guards_failed = report
        .checks
        .last()
        .is_some_and(|c| c.status == Status::Fail);
    let cron = hold_target_jobs(ctx, &target_db, &guard_ledger, &schema, &mut restored).await;
    let target_failed = guards_failed || cron.status == Status::Fail;
    report.check(cron);

    // 3. The source takes writes again; a replication still running is
    // removed (the target no longer follows the source after a rollback).
    if !frozen.is_empty() || replication.is_some() {
        let source = ctx.source_writable("rollback").await?;
        if !frozen.is_empty() {
            report.check(match source.lift_freeze().await {
                Ok(lifted) => {
                    if let Some(ledger) = ctx.open_ledger() {
                        ledger.mark_freezes_lifted(ctx.run_id).await?;
                    }
                    restored.push([
                        "source write freeze".into(),
                        format!("{} tables refuse writes", lifted.len()),
                        "lifted: the source takes writes again".into(),
                    ]);
                    CheckItem::new(
                        "rollback-freeze",
                        "Write freeze on the source lifted",
                        Status::Pass,
                        format!(
                            "{} tables take writes again: {}",
                            lifted.len(),
                            lifted.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
                        ),
                    )
                }
                Err(e) => CheckItem::new(
                    "rollback-freeze",
                    "Write freeze on the source lifted",
                    Status::Fail,
                    e.to_string(),
                )
                .with_hint("re-run rollback; by hand: drop trigger cutover_write_freeze on each frozen table"),
            });
        }
        if let Some(record) = &replication {
            let ledger = ctx
                .ledger("rollback")
                .await?
                .ok_or_else(|| PhaseError::new("the ledger is not open"))?;
            report.check(
                match super::data::replicate::retire(ctx, &ledger, &source, &target_db, record)
                    .await
                {
                    Ok(removed) => CheckItem::new(
                        "rollback-replication",
                        "Replication removed",
                        Status::Pass,
                        format!("removed {}", removed.join(", ")),
                    ),
                    Err(e) => CheckItem::new(
                        "rollback-replication",
                        "Replication removed",
                        Status::Fail,
                        e.message,
                    )
                    .with_hint("re-run rollback: the ledger still names what is left"),
                },
            );
        }
    }

    // 4. Source guards restored exactly as saved.
    let source_saved: Vec<&SavedGuard> = guards.iter().filter(|g| g.side == Side::Source).collect();
    if target_failed {
        report.check(CheckItem::new(
            "rollback-guards-source",
            "Source guards restored",
            Status::Skip,
            "not restored: the target's guards are still on, and both on would send every message twice",
        ));
    } else if source_saved.is_empty() {
        report.check(CheckItem::new(
            "rollback-guards-source",
            "Source guards restored",
            Status::Skip,
            "cutover saved no source guard state",
        ));
    } else {
        let source = ctx.source_writable("rollback").await?;
        let mut done = Vec::new();
        let mut failed = None;
        for g in &source_saved {
            let Some(previous) = &g.previous else {
                done.push(g.id);
                continue;
            };
            match source
                .set_guard(table.as_ref(), g.kind, &g.name, previous)
                .await
            {
                Ok(_) => {
                    restored.push([
                        format!("source {} {}", g.kind.word(), g.name),
                        g.applied.clone(),
                        previous.clone(),
                    ]);
                    done.push(g.id);
                }
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        guard_ledger.mark_restored(&done, ctx.run_id).await?;
        let restored_values: Vec<GuardValue> = source_saved
            .iter()
            .map(|g| GuardValue {
                kind: g.kind,
                name: g.name.clone(),
                value: g.previous.clone(),
            })
            .collect();
        report.check(match failed {
            None => CheckItem::new(
                "rollback-guards-source",
                "Source guards restored",
                Status::Pass,
                format!(
                    "back to the state saved before cutover: {}",
                    describe_guards(&restored_values)
                ),
            ),
            Some(e) => CheckItem::new(
                "rollback-guards-source",
                "Source guards restored",
                Status::Fail,
                e,
            )
            .with_hint("re-run rollback: the states not yet restored are still in the ledger"),
        });
    }

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

/// Pauses the target's active pg_cron jobs and holds them for the next
/// `cutover`: the target is not live after a rollback.
async fn hold_target_jobs(
    ctx: &Context,
    target: &crate::pg::Database,
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
        restored.push([
            format!("target cron job {}", job.label()),
            "active".into(),
            "paused (held until the next cutover)".into(),
        ]);
    }
    let held: Vec<String> = outcome.held.iter().map(|j| j.label()).collect();
    let mut evidence = format!(
        "paused until the next cutover: {}",
        if held.is_empty() {
            "none".to_string()
        } else {
            held.join(", ")
        }
    );
    if outcome.unheld.is_empty() {
        return CheckItem::new(id, title, Status::Pass, evidence);
    }
    evidence.push_str(&format!("; still active: {}", outcome.unheld_list()));
    CheckItem::new(id, title, Status::Warn, evidence)
        .with_hint(format!("pause each by hand {}", outcome.pause_by_hand()))
}

async fn rollback_frontend(
    ctx: &Context,
    ledger: &FrontendLedger,
    saved: &[&SavedFrontend],
    restored: &mut ReportTable,
) -> CheckItem {
    let title = "Frontend back to the source";
    let Some(section) = &ctx.manifest.frontend else {
        return CheckItem::new(
            "rollback-frontend",
            title,
            Status::Fail,
            "the ledger holds frontend settings but the manifest has no [frontend]",
        )
        .with_hint("restore the manifest's [frontend] section as it was at cutover");
    };
    let token = match section.provider {
        crate::manifest::FrontendProvider::Vercel => ctx.settings.vercel_token.as_deref(),
        crate::manifest::FrontendProvider::CloudflarePages => {
            ctx.settings.cloudflare_api_token.as_deref()
        }
    };
    let input = match section.provider {
        crate::manifest::FrontendProvider::Vercel => "vercel-token",
        crate::manifest::FrontendProvider::CloudflarePages => "cloudflare-api-token",
    };
    let Some(token) = token else {
        return CheckItem::new(
            "rollback-frontend",
            title,
            Status::Fail,
            format!("{} is not set", ctx.settings.label(input)),
        )
        .with_hint(format!("pass `{input}` to the rollback run"));
    };
    let client = match Frontend::new(section, token, PROVIDER_TIMEOUT) {
        Ok(c) => c,
        Err(e) => return CheckItem::new("rollback-frontend", title, Status::Fail, e.to_string()),
    };
    let mut by_project: BTreeMap<(String, String), Vec<&SavedFrontend>> = BTreeMap::new();
    for s in saved {
        by_project
            .entry((s.provider.clone(), s.project.clone()))
            .or_default()
            .push(s);
    }
    let mut evidence = Vec::new();
    let mut status = Status::Pass;
    for ((provider, project), states) in by_project {
        if provider != client.provider() || project != section.project {
            status = Status::Fail;
            evidence.push(format!(
                "saved settings are for {provider} project {project}, the manifest names {} project {}",
                client.provider(),
                section.project
            ));
            continue;
        }
        let mut snapshot = snapshot_from(&states);
        let secret_notes = fill_secret_values(ctx, &mut snapshot, &states);
        if !secret_notes.is_empty() {
            if status == Status::Pass {
                status = Status::Warn;
            }
            evidence.extend(secret_notes);
        }
        match client.restore(&snapshot).await {
            Ok(notes) => {
                for e in &snapshot.env {
                    restored.push([
                        format!("frontend {}", e.name),
                        "(target value)".into(),
                        if e.readable {
                            show_value(&e.name, e.value.as_deref())
                        } else {
                            "not restorable (unreadable)".into()
                        },
                    ]);
                }
                if let Some(d) = &snapshot.deployment {
                    restored.push([
                        "frontend production deployment".into(),
                        "(cutover's)".into(),
                        format!(
                            "{}{}",
                            d.id,
                            d.url
                                .as_deref()
                                .map(|u| format!(" ({u})"))
                                .unwrap_or_default()
                        ),
                    ]);
                }
                if let Err(e) = ledger
                    .mark_restored(&states.iter().map(|s| s.id).collect::<Vec<_>>(), ctx.run_id)
                    .await
                {
                    status = Status::Fail;
                    evidence.push(e.to_string());
                }
                evidence.push(format!(
                    "{project}: {} restored{}",
                    snapshot
                        .env
                        .iter()
                        .filter(|e| e.readable)
                        .map(|e| e.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    snapshot
                        .deployment
                        .as_ref()
                        .map(|d| format!(", production back on deployment {}", d.id))
                        .unwrap_or_default()
                ));
                if !notes.is_empty() {
                    if status == Status::Pass {
                        status = Status::Warn;
                    }
                    evidence.extend(notes);
                }
            }
            Err(e) => {
                status = Status::Fail;
                evidence.push(e.to_string());
            }
        }
    }
    let item = CheckItem::new("rollback-frontend", title, status, evidence.join("; "));
    if status == Status::Fail {
        item.with_hint("re-run rollback once the provider answers: the saved settings stay in the ledger until restored")
    } else {
        item
    }
}
