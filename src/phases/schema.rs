//! `schema`: applies pending migration files to the target in version order,
//! one transaction each, recorded in `supabase_migrations.schema_migrations`
//! exactly as `supabase db push` records them, plus our sha-256 in the ledger.
//!
//! Refuses before changing anything when the history and the files disagree:
//! a remote version with no file (the CLI's `ErrMissingLocal`), an applied
//! file that changed since (drift), or a never-applied file older than the
//! newest applied one (out of order).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::context::Context;
use crate::repo::migrations::{MigrationFile, compare_versions};
use crate::repo::sql_split;
use crate::report::{
    CheckItem, MIGRATIONS, PhaseReport, ReportTable, Status, count, human_duration,
};

use super::PhaseError;

/// Runs `schema`.
pub async fn run(ctx: &mut Context) -> Result<PhaseReport, PhaseError> {
    let mut report = PhaseReport::new("schema");
    let dir = ctx.migration_dir()?;
    if !dir.duplicates.is_empty() {
        let list: Vec<String> = dir
            .duplicates
            .iter()
            .map(|(v, files)| format!("{v} ({})", files.join(", ")))
            .collect();
        return Err(PhaseError::new(format!(
            "several migration files share a version: {}; nothing was applied",
            list.join("; ")
        ))
        .hint("give each file a unique <version>_<name>.sql"));
    }
    if !dir.badly_named.is_empty() {
        report.check(
            CheckItem::new(
                "migration-names",
                "Migration files named <version>_<name>.sql",
                Status::Warn,
                format!(
                    "ignored, as the Supabase CLI ignores them: {}",
                    dir.badly_named.join(", ")
                ),
            )
            .with_hint("rename them if they are migrations"),
        );
    }

    let dry_run = ctx.settings.dry_run;
    let target = ctx.target("schema", !dry_run).await?;
    let ledger = ctx.ledger("schema").await?;
    let ledger_schema = ctx.manifest.ledger.schema.clone();
    let mut session = if dry_run {
        None
    } else {
        let wait = Duration::from_secs(ctx.manifest.schema.lock_timeout_seconds);
        let mut session = target.lock_for_run(wait).await?;
        session.ensure_history().await?;
        Some(session)
    };

    let applied: BTreeSet<String> = target
        .applied_migrations()
        .await?
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.version)
        .collect();
    let checksums: BTreeMap<String, String> = match (&mut session, &ledger) {
        (Some(s), Some(_)) => s.ledger_checksums(&ledger_schema).await?,
        _ => BTreeMap::new(),
    };
    let newest_applied = applied
        .iter()
        .max_by(|a, b| compare_versions(a, b))
        .cloned();

    let local: BTreeSet<&str> = dir.files.iter().map(|f| f.version.as_str()).collect();
    let missing_local: Vec<&String> = applied
        .iter()
        .filter(|v| !local.contains(v.as_str()))
        .collect();
    let mut drifted = Vec::new();
    let mut out_of_order = Vec::new();
    let mut pending: Vec<&MigrationFile> = Vec::new();
    let mut unrecorded: Vec<&MigrationFile> = Vec::new();
    for file in &dir.files {
        if applied.contains(&file.version) {
            match checksums.get(&file.version) {
                Some(sum) if *sum != file.checksum => drifted.push(file),
                Some(_) => {}
                None => unrecorded.push(file),
            }
        } else {
            if let Some(newest) = &newest_applied {
                if compare_versions(&file.version, newest).is_lt() {
                    out_of_order.push(file);
                }
            }
            pending.push(file);
        }
    }

    let schema_cfg = &ctx.manifest.schema;
    let mut blocking = false;
    let history_title = "Target's migration history agrees with the files";
    let mut problems = Vec::new();
    if !missing_local.is_empty() {
        blocking = true;
        problems.push(CheckItem::new(
            "missing-local",
            history_title,
            Status::Fail,
            format!(
                "applied on the target but no local file: {}",
                missing_local.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            ),
        )
        .with_hint("add the missing files to the migrations folder (git pull, supabase migration fetch), or repair the target's history with `supabase migration repair --status reverted <version>`"));
    }
    if !drifted.is_empty() {
        let status = if schema_cfg.allow_drift {
            Status::Warn
        } else {
            Status::Fail
        };
        blocking |= status == Status::Fail;
        problems.push(
            CheckItem::new(
                "drift",
                "Applied migration files unchanged",
                status,
                format!(
                    "changed since they were applied: {}",
                    drifted.iter().map(|f| format!("{}_{}", f.version, f.name)).collect::<Vec<_>>().join(", ")
                ),
            )
            .with_hint("never edit an applied migration: restore the file from git and add a new migration, or set [schema] allow_drift = true"),
        );
    }
    if !out_of_order.is_empty() {
        let status = if schema_cfg.allow_out_of_order {
            Status::Warn
        } else {
            Status::Fail
        };
        blocking |= status == Status::Fail;
        problems.push(
            CheckItem::new(
                "out-of-order",
                "Pending migrations newer than the applied ones",
                status,
                format!(
                    "older than the newest applied version {}: {}",
                    newest_applied.clone().unwrap_or_default(),
                    out_of_order.iter().map(|f| f.version.as_str()).collect::<Vec<_>>().join(", ")
                ),
            )
            .with_hint("rename the file to a version after the newest applied one, or set [schema] allow_out_of_order = true"),
        );
    }
    if problems.is_empty() {
        report.check(CheckItem::new(
            "history",
            history_title,
            Status::Pass,
            format!(
                "{} applied, {} pending, every applied version has its file{}",
                applied.len(),
                pending.len(),
                if checksums.is_empty() {
                    ""
                } else {
                    " and checksum"
                }
            ),
        ));
    }
    for item in problems {
        report.check(item);
    }

    let mut table = ReportTable::new(
        MIGRATIONS,
        &["Version", "Name", "Status", "Statements", "Took"],
    )
    .merged_as(MIGRATIONS);
    let mut status_of: BTreeMap<&str, [String; 3]> = BTreeMap::new();
    for file in &dir.files {
        if applied.contains(&file.version) {
            status_of.insert(
                &file.version,
                ["already applied".into(), "—".into(), "—".into()],
            );
        }
    }
    let mut applied_now = 0;
    let mut failed = false;
    if !blocking {
        for file in &pending {
            let text = std::fs::read_to_string(&file.path).map_err(|e| {
                PhaseError::new(format!("cannot read {}: {e}", file.path.display()))
            })?;
            let statements = sql_split::split(&text);
            let shown = file.path.display().to_string();
            let Some(session) = session.as_mut() else {
                status_of.insert(
                    &file.version,
                    [
                        "would apply (dry-run)".into(),
                        statements.len().to_string(),
                        "—".into(),
                    ],
                );
                continue;
            };
            if failed {
                status_of.insert(
                    &file.version,
                    ["pending".into(), statements.len().to_string(), "—".into()],
                );
                continue;
            }
            ctx.console.progress(&format!(
                "applying {shown} ({})",
                count(statements.len(), "statement", "statements")
            ));
            let ledger_arg = ledger
                .as_ref()
                .map(|_| (ledger_schema.as_str(), ctx.run_id));
            match session.apply(file, &statements, ledger_arg).await {
                Ok(done) => {
                    applied_now += 1;
                    let mut status = "applied".to_string();
                    if done.outside_transaction > 0 {
                        status.push_str(&format!(
                            " ({} outside a transaction)",
                            done.outside_transaction
                        ));
                    }
                    status_of.insert(
                        &file.version,
                        [
                            status,
                            done.statements.to_string(),
                            human_duration(done.duration.as_millis() as u64),
                        ],
                    );
                }
                Err(failure) => {
                    failed = true;
                    status_of.insert(
                        &file.version,
                        [
                            "**failed**".into(),
                            statements.len().to_string(),
                            "—".into(),
                        ],
                    );
                    let mut message = format!(
                        "{shown}: statement {} (line {}) failed: {}; the file's transaction was rolled back and nothing of it was recorded",
                        failure.statement, failure.line, failure.message
                    );
                    if failure.committed_outside_transaction > 0 {
                        message.push_str(&format!(
                            " except {} statement(s) that ran outside a transaction (e.g. CREATE INDEX CONCURRENTLY) and stay applied",
                            failure.committed_outside_transaction
                        ));
                    }
                    report.errors.push(crate::report::ErrorReport {
                        message,
                        hint: Some(format!(
                            "fix {shown} at line {} and re-run `schema`: it resumes from this file",
                            failure.line
                        )),
                    });
                }
            }
        }
        // Files applied before cutover tracked them: adopt their checksums so
        // a later edit is caught as drift.
        if let (Some(session), Some(_)) = (session.as_mut(), &ledger) {
            for file in &unrecorded {
                session
                    .adopt_checksum(&ledger_schema, file, ctx.run_id)
                    .await?;
            }
        }
    } else {
        for file in &pending {
            status_of.insert(
                &file.version,
                ["pending (blocked)".into(), "—".into(), "—".into()],
            );
        }
    }
    if let Some(session) = session {
        session.release().await;
    }
    for file in &dir.files {
        let [status, statements, took] = status_of
            .remove(file.version.as_str())
            .unwrap_or_else(|| ["pending".into(), "—".into(), "—".into()]);
        table.push([
            file.version.clone(),
            file.name.clone(),
            status,
            statements,
            took,
        ]);
    }
    report.tables.push(table);

    if failed {
        report.outcome = crate::report::Outcome::Failed;
    }
    report.summary = if blocking {
        "Refused: the target's history and the migration files disagree; nothing was applied."
            .into()
    } else if dry_run {
        format!(
            "Dry-run: {} migrations would be applied; nothing was written.",
            pending.len()
        )
    } else {
        format!(
            "{applied_now} of {} pending migrations applied; {} were already applied.",
            pending.len(),
            applied.len()
        )
    };
    Ok(report)
}
