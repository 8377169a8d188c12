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

use crate::cells;
use crate::context::Context;
use crate::manifest::QualifiedName;
use crate::pg::Database;
use crate::pg::cron::{CronJob, HoldOutcome};
use crate::pg::guards::GuardLedger;
use crate::pg::ledger::Ledger;
use crate::pg::migrate::{Applied as MigrationApplied, ApplyFailure, LockedSession};
use crate::pg::release::live_since;
use crate::repo::cron_jobs::scheduled_jobs;
use crate::repo::migrations::{MigrationDir, MigrationFile, compare_versions};
use crate::repo::sql_split;
use crate::report::{
    CheckItem, ErrorReport, MIGRATIONS, PhaseReport, ReportTable, Status, count, human_duration,
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

/// Runs `schema`: refuses unusable files, then plans (the target's history
/// set against the files), applies the pending files unless the history
/// disagrees, records the rows they wrote, and holds the pg_cron jobs.
pub async fn run(ctx: &mut Context) -> Result<PhaseReport, PhaseError> {
    let dir = ctx.migration_dir()?;
    refuse_unusable(&dir)?;
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
    let plan = SchemaPlan::new(&dir.files, applied, &checksums);

    let mut report = PhaseReport::new("schema");
    report.checks.extend(names_check(&dir));
    let (history, blocking) = history_checks(&plan, &ctx.manifest.schema);
    report.checks.extend(history);
    report
        .checks
        .extend(outside_transaction_item(ctx, &plan.pending)?);
    let outcome = if blocking {
        blocked(&plan.pending)
    } else {
        let ledger_arg = ledger
            .as_ref()
            .map(|_| (ledger_schema.as_str(), ctx.run_id));
        apply(ctx, &target, session.as_mut(), ledger_arg, &plan).await?
    };
    if let (Some(session), Some(_)) = (session.as_mut(), &ledger) {
        if !blocking {
            // Files applied before cutover tracked them: adopt their
            // checksums so a later edit is caught as drift.
            for file in &plan.unrecorded {
                session
                    .adopt_checksum(&ledger_schema, file, ctx.run_id)
                    .await?;
            }
        }
    }
    if let (Some(before), Some(ledger), true) =
        (&outcome.tables_before, &ledger, outcome.applied_now > 0)
    {
        let seeded = seeded_tables(&target, &ledger_schema, before).await?;
        ledger.record_seeded(ctx.run_id, &seeded).await?;
        report.tables.extend(seeded_table(&seeded));
    }
    if let Some(session) = session {
        session.release().await;
    }
    report
        .tables
        .push(migrations_table(&dir.files, &plan.applied, &outcome.rows));
    if !blocking {
        hold_cron_jobs(ctx, &target, ledger.as_ref(), &plan.pending, &mut report).await?;
    }
    if outcome.failed {
        report.outcome = crate::report::Outcome::Failed;
    }
    report.summary = summary(&plan, &outcome, blocking, dry_run);
    report.errors.extend(outcome.errors);
    Ok(report)
}

/// Refuses, before anything is applied, several files sharing a version and
/// files the server could not read: either would stop the run after the
/// files before them were applied.
fn refuse_unusable(dir: &MigrationDir) -> Result<(), PhaseError> {
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
    let unreadable = crate::repo::migrations::unreadable(&dir.files.iter().collect::<Vec<_>>());
    if !unreadable.is_empty() {
        return Err(PhaseError::new(format!(
            "migration files cannot be applied as they are: {}; nothing was applied",
            unreadable.join("; ")
        ))
        .hint("re-save each named file as UTF-8 text, then re-run"));
    }
    Ok(())
}

/// A warning for `.sql` files the Supabase CLI ignores for their names.
fn names_check(dir: &MigrationDir) -> Option<CheckItem> {
    if dir.badly_named.is_empty() {
        return None;
    }
    Some(
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
    )
}

/// The target's migration history set against the files.
#[derive(Debug)]
struct SchemaPlan<'a> {
    /// Versions the target's history records.
    applied: BTreeSet<String>,
    /// The ledger holds the checksums of applied files.
    checksummed: bool,
    /// The newest applied version.
    newest_applied: Option<String>,
    /// Applied versions with no file.
    missing_local: Vec<String>,
    /// Applied files whose checksum changed since.
    drifted: Vec<&'a MigrationFile>,
    /// Pending files older than the newest applied version.
    out_of_order: Vec<&'a MigrationFile>,
    /// Files not applied yet, in version order.
    pending: Vec<&'a MigrationFile>,
    /// Applied files the ledger has no checksum of.
    unrecorded: Vec<&'a MigrationFile>,
}

impl<'a> SchemaPlan<'a> {
    /// Sorts the files by what the history and the ledger's checksums say.
    fn new(
        files: &'a [MigrationFile],
        applied: BTreeSet<String>,
        checksums: &BTreeMap<String, String>,
    ) -> Self {
        let newest_applied = applied
            .iter()
            .max_by(|a, b| compare_versions(a, b))
            .cloned();
        let local: BTreeSet<&str> = files.iter().map(|f| f.version.as_str()).collect();
        let missing_local = applied
            .iter()
            .filter(|v| !local.contains(v.as_str()))
            .cloned()
            .collect();
        let mut plan = SchemaPlan {
            applied,
            checksummed: !checksums.is_empty(),
            newest_applied,
            missing_local,
            drifted: Vec::new(),
            out_of_order: Vec::new(),
            pending: Vec::new(),
            unrecorded: Vec::new(),
        };
        for file in files {
            if plan.applied.contains(&file.version) {
                match checksums.get(&file.version) {
                    Some(sum) if *sum != file.checksum => plan.drifted.push(file),
                    Some(_) => {}
                    None => plan.unrecorded.push(file),
                }
                continue;
            }
            let older = plan
                .newest_applied
                .as_ref()
                .is_some_and(|newest| compare_versions(&file.version, newest).is_lt());
            if older {
                plan.out_of_order.push(file);
            }
            plan.pending.push(file);
        }
        plan
    }
}

/// The history rows: a pass when the history and the files agree, else a
/// row for each disagreement; and whether one blocks applying anything.
fn history_checks(
    plan: &SchemaPlan,
    cfg: &crate::manifest::SchemaSection,
) -> (Vec<CheckItem>, bool) {
    let history_title = "Target's migration history agrees with the files";
    let mut problems = Vec::new();
    if !plan.missing_local.is_empty() {
        problems.push(CheckItem::new(
            "missing-local",
            history_title,
            Status::Fail,
            format!(
                "applied on the target but no local file: {}",
                plan.missing_local.join(", ")
            ),
        )
        .with_hint("add the missing files to the migrations folder (git pull, supabase migration fetch), or repair the target's history with `supabase migration repair --status reverted <version>`"));
    }
    if !plan.drifted.is_empty() {
        problems.push(
            allowed_problem(
                CheckItem::new(
                    "drift",
                    "Applied migration files unchanged",
                    Status::Fail,
                    format!(
                        "changed since they were applied: {}",
                        plan.drifted.iter().map(|f| format!("{}_{}", f.version, f.name)).collect::<Vec<_>>().join(", ")
                    ),
                ),
                cfg.allow_drift,
            )
            .with_hint("never edit an applied migration: restore the file from git and add a new migration, or set [schema] allow_drift = true"),
        );
    }
    if !plan.out_of_order.is_empty() {
        problems.push(
            allowed_problem(
                CheckItem::new(
                    "out-of-order",
                    "Pending migrations newer than the applied ones",
                    Status::Fail,
                    format!(
                        "older than the newest applied version {}: {}",
                        plan.newest_applied.clone().unwrap_or_default(),
                        plan.out_of_order.iter().map(|f| f.version.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                ),
                cfg.allow_out_of_order,
            )
            .with_hint("rename the file to a version after the newest applied one, or set [schema] allow_out_of_order = true"),
        );
    }
    let blocking = problems.iter().any(|c| c.status == Status::Fail);
    if problems.is_empty() {
        problems.push(CheckItem::new(
            "history",
            history_title,
            Status::Pass,
            format!(
                "{} applied, {} pending, every applied version has its file{}",
                plan.applied.len(),
                plan.pending.len(),
                if plan.checksummed {
                    " and checksum"
                } else {
                    ""
                }
            ),
        ));
    }
    (problems, blocking)
}

/// A failing row the manifest allows: a warning instead.
fn allowed_problem(item: CheckItem, allowed: bool) -> CheckItem {
    CheckItem {
        status: if allowed { Status::Warn } else { item.status },
        ..item
    }
}

/// What applying the pending files did.
#[derive(Debug, Default)]
struct SchemaOutcome {
    /// Status, statements and time of each file not left plainly pending,
    /// by version.
    rows: BTreeMap<String, [String; 3]>,
    /// Files applied by this run.
    applied_now: usize,
    /// A file failed: the files after it were not tried.
    failed: bool,
    /// Why the file failed, and how to go on.
    errors: Vec<ErrorReport>,
    /// The target's tables before the first file ran, when the ledger
    /// records what the files seed.
    tables_before: Option<BTreeSet<QualifiedName>>,
}

/// The outcome of a refused run: every pending file blocked.
fn blocked(pending: &[&MigrationFile]) -> SchemaOutcome {
    let rows = pending
        .iter()
        .map(|f| (f.version.clone(), cells("pending (blocked)", "—", "—")))
        .collect();
    SchemaOutcome {
        rows,
        ..SchemaOutcome::default()
    }
}

fn cells(status: &str, statements: impl ToString, took: &str) -> [String; 3] {
    [status.to_string(), statements.to_string(), took.to_string()]
}

/// Applies the pending files in order, each in its own transaction, until
/// one fails; without a session (dry-run) only counts their statements.
async fn apply(
    ctx: &Context,
    target: &Database,
    mut session: Option<&mut LockedSession>,
    ledger: Option<(&str, uuid::Uuid)>,
    plan: &SchemaPlan<'_>,
) -> Result<SchemaOutcome, PhaseError> {
    let mut outcome = SchemaOutcome::default();
    // The tables there before: a table the files create and fill is seeded,
    // and `data` may replace its rows (see `pg::seeded`).
    if let (Some(_), Some((schema, _)), false) = (&session, ledger, plan.pending.is_empty()) {
        outcome.tables_before = Some(target.app_tables(schema).await?.into_iter().collect());
    }
    for file in &plan.pending {
        let text = crate::repo::migrations::read_text(&file.path)
            .map_err(|why| PhaseError::new(format!("{}: {why}", file.path.display())))?;
        let statements = sql_split::split(&text);
        let version = file.version.clone();
        let Some(session) = session.as_deref_mut() else {
            let row = cells("would apply (dry-run)", statements.len(), "—");
            outcome.rows.insert(version, row);
            continue;
        };
        if outcome.failed {
            let row = cells("pending", statements.len(), "—");
            outcome.rows.insert(version, row);
            continue;
        }
        ctx.console.progress(&format!(
            "applying {} ({})",
            file.path.display(),
            count(statements.len(), "statement", "statements")
        ));
        match session.apply(file, &statements, ledger).await {
            Ok(done) => {
                outcome.applied_now += 1;
                outcome.rows.insert(version, applied_row(&done));
            }
            Err(failure) => {
                outcome.failed = true;
                let row = cells("**failed**", statements.len(), "—");
                outcome.rows.insert(version, row);
                outcome.errors.push(failure_error(file, &failure));
            }
        }
    }
    Ok(outcome)
}

/// A file's row once applied: statements, time, and how many ran outside
/// a transaction.
fn applied_row(done: &MigrationApplied) -> [String; 3] {
    let mut status = "applied".to_string();
    if done.outside_transaction > 0 {
        status.push_str(&format!(
            " ({} outside a transaction)",
            done.outside_transaction
        ));
    }
    cells(
        &status,
        done.statements,
        &human_duration(done.duration.as_millis() as u64),
    )
}

/// Where a file failed, what stays applied of it, and how to go on.
fn failure_error(file: &MigrationFile, failure: &ApplyFailure) -> ErrorReport {
    let shown = file.path.display();
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
    ErrorReport {
        message,
        hint: Some(format!(
            "fix {shown} at line {} and re-run `schema`: it resumes from this file",
            failure.line
        )),
    }
}

/// The tables the files created that hold rows, with their counts.
async fn seeded_tables(
    target: &Database,
    ledger_schema: &str,
    before: &BTreeSet<QualifiedName>,
) -> Result<BTreeMap<QualifiedName, i64>, PhaseError> {
    let created: Vec<QualifiedName> = target
        .app_tables(ledger_schema)
        .await?
        .into_iter()
        .filter(|t| !before.contains(t))
        .collect();
    Ok(target
        .exact_row_counts(&created)
        .await?
        .into_iter()
        .filter(|(_, rows)| *rows > 0)
        .collect())
}

/// The rows the migrations wrote, by table; `None` when they wrote none.
fn seeded_table(seeded: &BTreeMap<QualifiedName, i64>) -> Option<ReportTable> {
    if seeded.is_empty() {
        return None;
    }
    let mut table = ReportTable::new("Rows the migrations wrote", &["Table", "Rows"]);
    for (name, rows) in seeded {
        table.push(cells![name.to_string(), *rows]);
    }
    Some(table.with_note(
        "Tables these files created and filled. Recorded in the ledger: `data` replaces exactly these rows with the source's, without --overwrite.",
    ))
}

/// Every file with its status: already applied, applied now, failed,
/// pending.
fn migrations_table(
    files: &[MigrationFile],
    applied: &BTreeSet<String>,
    rows: &BTreeMap<String, [String; 3]>,
) -> ReportTable {
    let mut table = ReportTable::new(
        MIGRATIONS,
        &["Version", "Name", "Status", "Statements", "Took"],
    )
    .merged_as(MIGRATIONS);
    for file in files {
        let [status, statements, took] = match rows.get(&file.version) {
            Some(row) => row.clone(),
            None if applied.contains(&file.version) => cells("already applied", "—", "—"),
            None => cells("pending", "—", "—"),
        };
        table.push([
            file.version.clone(),
            file.name.clone(),
            status,
            statements,
            took,
        ]);
    }
    table
}

/// One line: refused, would apply, or applied of pending.
fn summary(plan: &SchemaPlan, outcome: &SchemaOutcome, blocking: bool, dry_run: bool) -> String {
    if blocking {
        "Refused: the target's history and the migration files disagree; nothing was applied."
            .into()
    } else if dry_run {
        format!(
            "Dry-run: {} migrations would be applied; nothing was written.",
            plan.pending.len()
        )
    } else {
        format!(
            "{} of {} pending migrations applied; {} were already applied.",
            outcome.applied_now,
            plan.pending.len(),
            plan.applied.len()
        )
    }
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
        let texts: Vec<String> = pending
            .iter()
            .filter_map(|f| std::fs::read_to_string(&f.path).ok())
            .collect();
        report.check(skip(would_hold_evidence(&jobs, &texts)));
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
    report.tables.push(held_table(&outcome));
    report.check(held_check(&outcome));
    Ok(())
}

/// What a dry run would pause: the active jobs, and those the pending
/// files schedule active.
fn would_hold_evidence(jobs: &[CronJob], pending_texts: &[String]) -> String {
    let active: Vec<String> = jobs
        .iter()
        .filter(|j| j.active)
        .map(|j| j.label())
        .collect();
    let scheduled: Vec<String> = pending_texts
        .iter()
        .flat_map(|text| scheduled_jobs(text))
        .filter(|j| j.active)
        .map(|j| j.name.unwrap_or_else(|| "(unnamed)".into()))
        .collect();
    format!(
        "dry run: would pause the active jobs ({}) and those the pending migrations schedule ({}) until cutover",
        list_or_none(&active),
        list_or_none(&scheduled)
    )
}

/// Each job paused, and each left active with why.
fn held_table(outcome: &HoldOutcome) -> ReportTable {
    let mut table = ReportTable::new(
        "pg_cron jobs held until cutover",
        &["Job", "Schedule", "Owner", "Now", "Why"],
    );
    let held = outcome
        .held
        .iter()
        .map(|job| (job, "paused until cutover".to_string(), String::new()));
    let unheld = outcome.unheld.iter().map(|u| {
        (
            &u.job,
            crate::report::emphasis("still active"),
            u.reason.clone(),
        )
    });
    for (job, now, why) in held.chain(unheld) {
        table.push([
            job.label(),
            format!("`{}`", job.schedule),
            job.owner.clone().unwrap_or_default(),
            now,
            why,
        ]);
    }
    table
}

/// The hold's row: a pass when every active job is paused, else a warning
/// naming those left running and how to pause them by hand.
fn held_check(outcome: &HoldOutcome) -> CheckItem {
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
        return CheckItem::new(CRON_HOLD_ID, CRON_HOLD_TITLE, Status::Pass, evidence);
    }
    evidence.push_str(&format!(
        "; still active, and running before cutover: {}",
        outcome.unheld_list()
    ));
    CheckItem::new(CRON_HOLD_ID, CRON_HOLD_TITLE, Status::Warn, evidence).with_hint(format!(
        "schedule jobs in migrations as the role of target-db-url, so that cutover can hold them; or pause each until cutover {} (and resume it after cutover with active := true)",
        outcome.pause_by_hand()
    ))
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::SchemaSection;
    use crate::pg::cron::UnheldJob;

    fn file(version: &str, checksum: &str) -> MigrationFile {
        MigrationFile {
            version: version.into(),
            name: format!("m{version}"),
            path: format!("supabase/migrations/{version}_m{version}.sql").into(),
            checksum: checksum.into(),
        }
    }

    fn versions(files: &[&MigrationFile]) -> Vec<String> {
        files.iter().map(|f| f.version.clone()).collect()
    }

    fn applied(versions: &[&str]) -> BTreeSet<String> {
        versions.iter().map(|v| v.to_string()).collect()
    }

    fn job(name: &str, active: bool) -> CronJob {
        CronJob {
            id: 7,
            name: Some(name.into()),
            schedule: "* * * * *".into(),
            owner: Some("postgres".into()),
            active,
            alterable: true,
        }
    }

    #[test]
    fn the_plan_sorts_files_by_what_the_history_says() {
        let files = [
            file("1", "a"),
            file("2", "b"),
            file("3", "c"),
            file("5", "e"),
        ];
        let checksums = BTreeMap::from([
            ("1".to_string(), "a".to_string()),
            ("4".to_string(), "x".to_string()),
            ("2".to_string(), "changed".to_string()),
        ]);
        let plan = SchemaPlan::new(&files, applied(&["1", "2", "4"]), &checksums);
        assert_eq!(plan.newest_applied.as_deref(), Some("4"));
        assert_eq!(plan.missing_local, ["4"]);
        assert_eq!(versions(&plan.drifted), ["2"]);
        assert_eq!(versions(&plan.out_of_order), ["3"]);
        assert_eq!(versions(&plan.pending), ["3", "5"]);
        assert!(plan.unrecorded.is_empty());
        assert!(plan.checksummed);
    }

    #[test]
    fn applied_files_without_a_checksum_are_adopted_not_drift() {
        let files = [file("1", "a"), file("2", "b")];
        let plan = SchemaPlan::new(&files, applied(&["1"]), &BTreeMap::new());
        assert_eq!(versions(&plan.unrecorded), ["1"]);
        assert!(plan.drifted.is_empty());
        let (checks, blocking) = history_checks(&plan, &SchemaSection::default());
        assert!(!blocking);
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].id, "history");
        assert_eq!(
            checks[0].evidence,
            "1 applied, 1 pending, every applied version has its file"
        );
    }

    #[test]
    fn drift_and_out_of_order_block_unless_allowed() {
        let files = [file("1", "changed"), file("2", "b"), file("3", "c")];
        let checksums = BTreeMap::from([("1".to_string(), "a".to_string())]);
        let plan = SchemaPlan::new(&files, applied(&["1", "3"]), &checksums);
        let (checks, blocking) = history_checks(&plan, &SchemaSection::default());
        assert!(blocking);
        let rows: Vec<(&str, Status)> = checks.iter().map(|c| (c.id.as_str(), c.status)).collect();
        assert_eq!(
            rows,
            [("drift", Status::Fail), ("out-of-order", Status::Fail)]
        );
        let lenient = SchemaSection {
            allow_drift: true,
            allow_out_of_order: true,
            ..SchemaSection::default()
        };
        let (checks, blocking) = history_checks(&plan, &lenient);
        assert!(!blocking);
        assert!(checks.iter().all(|c| c.status == Status::Warn));
        assert_eq!(
            checks[1].evidence,
            "older than the newest applied version 3: 2"
        );
    }

    #[test]
    fn a_version_without_its_file_always_blocks() {
        let files = [file("2", "b")];
        let plan = SchemaPlan::new(&files, applied(&["1"]), &BTreeMap::new());
        let lenient = SchemaSection {
            allow_drift: true,
            allow_out_of_order: true,
            ..SchemaSection::default()
        };
        let (checks, blocking) = history_checks(&plan, &lenient);
        assert!(blocking);
        assert_eq!(checks[0].id, "missing-local");
        assert_eq!(
            checks[0].evidence,
            "applied on the target but no local file: 1"
        );
    }

    #[test]
    fn the_migrations_table_shows_each_file_once() {
        let files = [file("1", "a"), file("2", "b"), file("3", "c")];
        let plan = SchemaPlan::new(&files, applied(&["1"]), &BTreeMap::new());
        let mut outcome = blocked(&plan.pending);
        outcome.rows.insert("3".into(), cells("pending", 4, "—"));
        let table = migrations_table(&files, &plan.applied, &outcome.rows);
        let statuses: Vec<String> = table.rows.iter().map(|r| r[2].to_string()).collect();
        assert_eq!(
            statuses,
            ["already applied", "pending (blocked)", "pending"]
        );
        assert_eq!(
            summary(&plan, &outcome, true, false),
            "Refused: the target's history and the migration files disagree; nothing was applied."
        );
        assert_eq!(
            summary(&plan, &outcome, false, true),
            "Dry-run: 2 migrations would be applied; nothing was written."
        );
        assert_eq!(
            summary(&plan, &outcome, false, false),
            "0 of 2 pending migrations applied; 1 were already applied."
        );
    }

    #[test]
    fn applied_and_failed_files_say_what_ran_outside_a_transaction() {
        let row = applied_row(&MigrationApplied {
            statements: 3,
            outside_transaction: 1,
            duration: Duration::from_millis(20),
        });
        assert_eq!(row[0], "applied (1 outside a transaction)");
        assert_eq!(row[1], "3");
        let error = failure_error(
            &file("2", "b"),
            &ApplyFailure {
                statement: 2,
                line: 9,
                message: "boom".into(),
                committed_outside_transaction: 1,
            },
        );
        assert!(error.message.starts_with(
            "supabase/migrations/2_m2.sql: statement 2 (line 9) failed: boom; the file's transaction was rolled back"
        ));
        assert!(error.message.ends_with("and stay applied"));
        assert_eq!(
            error.hint.as_deref(),
            Some(
                "fix supabase/migrations/2_m2.sql at line 9 and re-run `schema`: it resumes from this file"
            )
        );
    }

    #[test]
    fn a_dry_run_names_the_active_and_scheduled_jobs() {
        let jobs = [job("nightly", true), job("paused", false)];
        let texts = ["select cron.schedule('purge', '0 3 * * *', 'delete from t');".to_string()];
        assert_eq!(
            would_hold_evidence(&jobs, &texts),
            "dry run: would pause the active jobs (nightly) and those the pending migrations schedule (purge) until cutover"
        );
        assert!(would_hold_evidence(&[], &[]).contains("active jobs (none)"));
    }

    #[test]
    fn jobs_left_running_make_the_hold_a_warning() {
        let all_held = HoldOutcome {
            held: vec![job("nightly", true)],
            unheld: Vec::new(),
        };
        let check = held_check(&all_held);
        assert_eq!(check.status, Status::Pass);
        assert_eq!(
            check.evidence,
            "paused nightly (recorded in the ledger; cutover resumes them)"
        );
        let some_left = HoldOutcome {
            held: Vec::new(),
            unheld: vec![UnheldJob {
                job: job("purge", true),
                reason: "owned by supabase_admin".into(),
            }],
        };
        let check = held_check(&some_left);
        assert_eq!(check.status, Status::Warn);
        assert_eq!(
            check.evidence,
            "no job paused; still active, and running before cutover: purge (owned by supabase_admin)"
        );
        let table = held_table(&some_left);
        assert_eq!(
            table.rows[0][3].to_string(),
            crate::report::emphasis("still active")
        );
    }
}
