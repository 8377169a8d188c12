//! `schema`: applies pending migration files to the target in version order,
//! one transaction each, recorded in `supabase_migrations.schema_migrations`
//! exactly as `supabase db push` records them, plus our sha-256 in the ledger.
//!
//! Refuses before changing anything when the history and the files disagree:
//! a remote version with no file (the CLI's `ErrMissingLocal`), an applied
//! file that changed since (drift), or a never-applied file older than the
//! newest applied one (out of order).
//!
//! Afterwards, on a target that is not live yet, every active pg_cron job
//! (one a migration just scheduled or re-activated) is paused and recorded
//! as a cron hold, so that it runs only once `cutover` makes the target
//! live; see [`crate::pg::cron`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::context::Context;
use crate::manifest::QualifiedName;
use crate::pg::Database;
use crate::pg::guards::GuardLedger;
use crate::pg::ledger::Ledger;
use crate::pg::release::live_since;
use crate::repo::cron_jobs::scheduled_jobs;
use crate::repo::migrations::{MigrationFile, compare_versions};
use crate::repo::sql_split;
use crate::report::{
    CheckItem, MIGRATIONS, PhaseReport, ReportTable, Status, count, human_duration, thousands,
};

use super::PhaseError;

/// A warning row naming each statement of `files` that cannot run inside a
/// transaction (e.g. `CREATE INDEX CONCURRENTLY`), by file and line, or
/// `None` when there is none. cutover runs such a statement on its own,
/// between the transactional parts of its file; `supabase db push` runs each
/// file in one transaction and rejects the file, so the same repository
/// would fail there.
pub(crate) fn outside_transaction_item(
    ctx: &Context,
    files: &[&MigrationFile],
) -> Result<Option<CheckItem>, PhaseError> {
    let dir = &ctx.manifest.project.migrations_dir;
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file.path)
            .map_err(|e| PhaseError::new(format!("cannot read {}: {e}", file.path.display())))?;
        for statement in sql_split::split(&text) {
            if let Some(reason) = sql_split::non_transactional_reason(&statement.text) {
                found.push(format!(
                    "{}/{}_{}.sql line {}: {reason}",
                    dir.display(),
                    file.version,
                    file.name,
                    statement.line
                ));
            }
        }
    }
    if found.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        CheckItem::new(
            "outside-transaction",
            "Migration statements that cannot run in a transaction",
            Status::Warn,
            format!(
                "{}; cutover runs each such statement on its own, outside the file's transaction",
                found.join("; ")
            ),
        )
        .with_hint("drop CONCURRENTLY (the index is then built inside the file's transaction and blocks writes to its table while it builds), or expect `supabase db push` to reject the file: it runs each migration file in one transaction"),
    ))
}

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
    // Every file must be applicable as it is before the first one runs: a
    // file the server cannot read would otherwise stop the run after the
    // files before it were applied.
    let unreadable = crate::repo::migrations::unreadable(&dir.files.iter().collect::<Vec<_>>());
    if !unreadable.is_empty() {
        return Err(PhaseError::new(format!(
            "migration files cannot be applied as they are: {}; nothing was applied",
            unreadable.join("; ")
        ))
        .hint("re-save each named file as UTF-8 text, then re-run"));
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
    if let Some(item) = outside_transaction_item(ctx, &pending)? {
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
    // The tables there before: a table the files create and fill is seeded,
    // and `data` may replace its rows (see `pg::seeded`).
    let tables_before: Option<BTreeSet<QualifiedName>> =
        if !blocking && !dry_run && !pending.is_empty() && ledger.is_some() {
            Some(
                target
                    .app_tables(&ledger_schema)
                    .await?
                    .into_iter()
                    .collect(),
            )
        } else {
            None
        };
    if !blocking {
        for file in &pending {
            let text = crate::repo::migrations::read_text(&file.path)
                .map_err(|why| PhaseError::new(format!("{}: {why}", file.path.display())))?;
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
    if let (Some(before), Some(ledger), true) = (&tables_before, &ledger, applied_now > 0) {
        let created: Vec<QualifiedName> = target
            .app_tables(&ledger_schema)
            .await?
            .into_iter()
            .filter(|t| !before.contains(t))
            .collect();
        let seeded: BTreeMap<QualifiedName, i64> = target
            .exact_row_counts(&created)
            .await?
            .into_iter()
            .filter(|(_, rows)| *rows > 0)
            .collect();
        ledger.record_seeded(ctx.run_id, &seeded).await?;
        if !seeded.is_empty() {
            let mut table = ReportTable::new("Rows the migrations wrote", &["Table", "Rows"]);
            for (name, rows) in &seeded {
                table.push([name.to_string(), thousands(*rows)]);
            }
            report.tables.push(table.with_note(
                "Tables these files created and filled. Recorded in the ledger: `data` replaces exactly these rows with the source's, without --overwrite.",
            ));
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
    if !blocking {
        hold_cron_jobs(ctx, &target, ledger.as_ref(), &pending, &mut report).await?;
    }

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

const CRON_HOLD_ID: &str = "cron-hold";
const CRON_HOLD_TITLE: &str = "pg_cron jobs paused until cutover";

/// Pauses the target's active pg_cron jobs until `cutover`, unless the
/// target is live already or has no pg_cron; with `dry-run`, says which it
/// would pause. Runs after a failed file too: the files before it are
/// applied and their jobs would run.
async fn hold_cron_jobs(
    ctx: &Context,
    target: &Database,
    ledger: Option<&Ledger>,
    pending: &[&MigrationFile],
    report: &mut PhaseReport,
) -> Result<(), PhaseError> {
    let skip =
        |evidence: String| CheckItem::new(CRON_HOLD_ID, CRON_HOLD_TITLE, Status::Skip, evidence);
    let Some(jobs) = target.list_cron_jobs().await? else {
        report.check(skip(
            "pg_cron is not installed in the target database: no job to pause".into(),
        ));
        return Ok(());
    };
    if !ctx.manifest.schema.hold_cron_jobs {
        report.check(skip(
            "[schema] hold_cron_jobs = false: the target's jobs keep running".into(),
        ));
        return Ok(());
    }
    let schema = &ctx.manifest.ledger.schema;
    if let Some((run, at)) = live_since(target, schema).await? {
        report.check(skip(format!(
            "the target is live (cutover run {run}, {}): its jobs keep running",
            at.format("%Y-%m-%d %H:%M UTC")
        )));
        return Ok(());
    }
    let Some(_) = ledger else {
        let active: Vec<String> = jobs
            .iter()
            .filter(|j| j.active)
            .map(|j| j.label())
            .collect();
        let mut scheduled = Vec::new();
        for file in pending {
            if let Ok(text) = std::fs::read_to_string(&file.path) {
                scheduled.extend(
                    scheduled_jobs(&text)
                        .into_iter()
                        .filter(|j| j.active)
                        .map(|j| j.name.unwrap_or_else(|| "(unnamed)".into())),
                );
            }
        }
        report.check(skip(format!(
            "dry run: would pause the active jobs ({}) and those the pending migrations schedule ({}) until cutover",
            list_or_none(&active),
            list_or_none(&scheduled)
        )));
        return Ok(());
    };
    let guards = GuardLedger::new(target, schema);
    guards.create(schema).await?;
    let outcome = target
        .hold_active_cron_jobs(&guards, ctx.run_id, None)
        .await?
        .unwrap_or_default();
    if outcome.held.is_empty() && outcome.unheld.is_empty() {
        report.check(skip("no active pg_cron job on the target".into()));
        return Ok(());
    }
    let mut table = ReportTable::new(
        "pg_cron jobs held until cutover",
        &["Job", "Schedule", "Owner", "Now", "Why"],
    );
    for job in &outcome.held {
        table.push([
            job.label(),
            format!("`{}`", job.schedule),
            job.owner.clone().unwrap_or_default(),
            "paused until cutover".into(),
            String::new(),
        ]);
    }
    for u in &outcome.unheld {
        table.push([
            u.job.label(),
            format!("`{}`", u.job.schedule),
            u.job.owner.clone().unwrap_or_default(),
            crate::report::emphasis("still active"),
            u.reason.clone(),
        ]);
    }
    report.tables.push(table);
    let held: Vec<String> = outcome.held.iter().map(|j| j.label()).collect();
    let mut evidence = if held.is_empty() {
        "no job paused".to_string()
    } else {
        format!(
            "paused {} (recorded in the ledger; cutover resumes them)",
            held.join(", ")
        )
    };
    if outcome.unheld.is_empty() {
        report.check(CheckItem::new(
            CRON_HOLD_ID,
            CRON_HOLD_TITLE,
            Status::Pass,
            evidence,
        ));
    } else {
        evidence.push_str(&format!(
            "; still active, and running before cutover: {}",
            outcome.unheld_list()
        ));
        report.check(
            CheckItem::new(CRON_HOLD_ID, CRON_HOLD_TITLE, Status::Warn, evidence).with_hint(format!(
                "schedule jobs in migrations as the role of target-db-url, so that cutover can hold them; or pause each until cutover {} (and resume it after cutover with active := true)",
                outcome.pause_by_hand()
            )),
        );
    }
    Ok(())
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}
