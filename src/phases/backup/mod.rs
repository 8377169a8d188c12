//! `backup`: `pg_dump -Fc` of the source (and of the target when it already
//! holds rows), the configuration tables as CSV, a sha-256 of every file, and
//! optionally a proof that each dump restores.
//!
//! Files go to `[backup] dir`/`<UTC time>-<environment>-<run>`/ in the
//! workspace and are listed in the `backup-path` output for
//! `actions/upload-artifact`. Each dump, its row counts and the CSV exports
//! come from one snapshot of their database (`pg_export_snapshot` +
//! `pg_dump --snapshot`), so the counts describe exactly what the dump holds.
//!
//! [`restore_target_from_backup`] is the way back `rollback` uses: it checks
//! the file's sha-256 against the ledger (or the `.sha256` sidecar) before
//! pg_restore touches anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::Utc;

use crate::context::Context;
use crate::manifest::QualifiedName;
use crate::pg::dump::{
    ToolConnection, ToolError, WrittenFile, pg_dump, server_major, sidecar_path, sidecar_text,
    tool_version, version_problem,
};
use crate::pg::ledger::BackupRecord;
use crate::pg::restore::{LeftOut, ReplicaRole};
use crate::pg::{Database, Side};
use crate::report::{CheckItem, PhaseReport, ReportTable, Status, human_duration, thousands};

use super::PhaseError;
use super::data::bytes_text;

/// The environment variable holding the age identity (`AGE-SECRET-KEY-1...`)
/// that decrypts encrypted backups for a restore or a `--verify`.
pub const AGE_IDENTITY_VAR: &str = "CUTOVER_AGE_IDENTITY";

impl From<ToolError> for PhaseError {
    fn from(e: ToolError) -> Self {
        PhaseError {
            message: e.message,
            hint: e.hint,
            blocked: false,
        }
    }
}

mod restore;
mod verify;

pub use restore::{TargetRestore, restore_target_from_backup};

/// One dump taken by this run, with what is needed to check it.
struct TakenDump {
    side: Side,
    file: WrittenFile,
    counts: BTreeMap<QualifiedName, i64>,
}

/// One file written by this run: a dump or a CSV export.
struct BackupFile {
    side: Side,
    /// `dump` or `csv`.
    kind: &'static str,
    file: WrittenFile,
    /// A dump's row counts, as JSON for the ledger (`{}` for a CSV).
    counts: serde_json::Value,
}

/// What `backup` will write, decided before anything is.
struct BackupPlan {
    /// The databases dumped: the source, and the target when it holds rows.
    sides: Vec<(Side, Database)>,
    /// The `pg_dump` client and each server's version, checked.
    versions: String,
    /// The configuration tables `[config]` names, to export as CSV.
    exports: Vec<QualifiedName>,
    /// Those the source has.
    present: Vec<QualifiedName>,
    /// The folder the files go to.
    dir: PathBuf,
    /// Encrypt for these age recipients (none: plain files).
    recipients: Vec<age::x25519::Recipient>,
    /// Restore each dump into a scratch database afterwards.
    verify: bool,
}

impl BackupPlan {
    /// `.age` when the files are encrypted.
    fn suffix(&self) -> &'static str {
        if self.recipients.is_empty() {
            ""
        } else {
            ".age"
        }
    }
}

/// Runs `backup`: plan (which databases, which tables, where), then the
/// dumps and exports, then each dump proven to restore when asked.
pub async fn run(ctx: &mut Context) -> Result<PhaseReport, PhaseError> {
    let mut report = PhaseReport::new("backup");
    let recipients = crate::manifest::parse_recipients(&ctx.manifest.backup.age_recipients)
        .map_err(|m| PhaseError::new(m).hint("fix [backup] age_recipients in the manifest"))?;
    let verify = ctx.settings.verify || ctx.manifest.backup.verify;
    let source = ctx.source("backup").await?;
    let target = ctx.target("backup", false).await?;
    // A restore check loads rows with triggers off: refuse before anything
    // is written when the target's role may not.
    if verify {
        let allowed = target.replica_role().await?;
        if allowed.refusal.is_some() {
            return Err(replica_role_error(
                &allowed,
                "backup --verify restores each dump into a scratch database on the target's server",
                "nothing was dumped or restored",
            ));
        }
        report.check(replica_role_item(&allowed));
    }
    let (plan, target_check) = plan(ctx, &source, &target, recipients, verify).await?;
    report.check(target_check);
    report.check(CheckItem::new(
        "pg-dump-version",
        "pg_dump at least as new as the servers",
        Status::Pass,
        plan.versions.clone(),
    ));
    if ctx.settings.dry_run {
        report.tables.push(dry_run_table(ctx, &plan));
        report.summary = dry_run_summary(&plan);
        return Ok(report);
    }
    let (files, dumps) = take_dumps(ctx, &plan).await?;
    report.tables.push(files_table(ctx, &files, &plan));
    for dump in &dumps {
        report.check(dump_check(ctx, dump));
    }
    let written = files.iter().filter(|f| f.kind == "csv").count();
    report.checks.extend(export_check(&plan, written));
    if verify {
        let (items, left_out) = verify_dumps(ctx, &dumps).await?;
        report.checks.extend(items);
        report.tables.extend(left_out);
    }
    if let Some(ledger) = ctx.ledger("backup").await? {
        let records: Vec<BackupRecord> = files.iter().map(|f| backup_record(ctx, f)).collect();
        ledger.record_backups(ctx.run_id, &records).await?;
    }
    for f in &files {
        report.artifacts.push(shown(ctx, &f.file.path));
        report
            .artifacts
            .push(shown(ctx, &sidecar_path(&f.file.path)));
    }
    report.summary = summary(ctx, &files, &plan);
    Ok(report)
}

/// Decides what `backup` writes: the target too when it holds rows (with
/// the row saying so), pg_dump checked against every server, the
/// configuration tables to export, the folder.
async fn plan(
    ctx: &Context,
    source: &Database,
    target: &Database,
    recipients: Vec<age::x25519::Recipient>,
    verify: bool,
) -> Result<(BackupPlan, CheckItem), PhaseError> {
    let target_tables: Vec<QualifiedName> = target
        .user_tables(true, true)
        .await?
        .into_iter()
        .map(|t| t.name)
        .filter(|n| n.schema != ctx.manifest.ledger.schema)
        .collect();
    let non_empty = target.non_empty_tables(&target_tables).await?;
    let mut sides = vec![(Side::Source, source.clone())];
    if !non_empty.is_empty() {
        sides.push((Side::Target, target.clone()));
    }
    let target_check = target_has_data_check(target_tables.len(), &non_empty);
    let versions = check_versions(&sides).await?;
    let exports = config_exports(ctx)?;
    let present = source.existing_tables(&exports).await?;
    let folder = format!(
        "{}-{}-{}",
        Utc::now().format("%Y%m%dT%H%M%SZ"),
        file_safe(&ctx.settings.environment),
        &ctx.run_id.simple().to_string()[..8]
    );
    let plan = BackupPlan {
        sides,
        versions,
        exports,
        present,
        dir: backup_root(ctx).join(folder),
        recipients,
        verify,
    };
    Ok((plan, target_check))
}

/// Whether the target is dumped too, and why.
fn target_has_data_check(user_tables: usize, non_empty: &[QualifiedName]) -> CheckItem {
    CheckItem::new(
        "target-has-data",
        "Target backed up when it holds data",
        Status::Pass,
        match non_empty.first() {
            None => format!(
                "the target's {user_tables} user tables are empty: only the source is dumped"
            ),
            Some(first) => format!(
                "{} of the target's tables hold rows (e.g. {first}): the target is dumped too",
                non_empty.len(),
            ),
        },
    )
}

/// pg_dump must be at least as new as every server it dumps; the versions,
/// for the evidence.
async fn check_versions(sides: &[(Side, Database)]) -> Result<String, PhaseError> {
    let (client_major, client_text) = tool_version("pg_dump").await?;
    let mut servers = Vec::new();
    for (side, db) in sides {
        let info = db.server_info().await?;
        let major = server_major(info.version_num);
        if let Some(why) = version_problem("pg_dump", client_major, major, side.name()) {
            return Err(PhaseError::new(why).hint(format!(
                "put a pg_dump of version {major} or newer first on PATH (the runner's `apt-get install postgresql-client-{major}`), or use the cutover container image"
            )));
        }
        servers.push(format!("{} {}", side.name(), info.version));
    }
    Ok(format!("{client_text}; servers: {}", servers.join(", ")))
}

/// The configuration tables exported as CSV (runbook: invoice_configurations,
/// ...): `[config] table` and `[config] export_tables`, each once.
fn config_exports(ctx: &Context) -> Result<Vec<QualifiedName>, PhaseError> {
    let config = &ctx.manifest.config;
    let mut exports: Vec<QualifiedName> = Vec::new();
    for name in std::iter::once(&config.table)
        .filter(|t| !t.is_empty())
        .chain(&config.export_tables)
    {
        let q = QualifiedName::parse(name).map_err(|m| PhaseError::new(format!("[config] {m}")))?;
        if !exports.contains(&q) {
            exports.push(q);
        }
    }
    Ok(exports)
}

/// The files a dry-run would write.
fn dry_run_table(ctx: &Context, plan: &BackupPlan) -> ReportTable {
    let (dir, suffix) = (shown(ctx, &plan.dir), plan.suffix());
    let mut table = ReportTable::new("Backup files (dry-run)", &["File", "What"]);
    for (side, _) in &plan.sides {
        table.push([
            format!("{dir}/{}.dump{suffix}", side.name()),
            format!("pg_dump -Fc of the {}", side.name()),
        ]);
    }
    for t in &plan.present {
        table.push([
            format!("{dir}/source-{t}.csv{suffix}"),
            format!("{t} as CSV"),
        ]);
    }
    table
}

fn dry_run_summary(plan: &BackupPlan) -> String {
    format!(
        "Dry-run: {} dumps and {} CSV exports would be written{}; nothing was written.",
        plan.sides.len(),
        plan.present.len(),
        if plan.verify {
            ", each dump restored into a scratch database"
        } else {
            ""
        }
    )
}

/// Dumps each side (and exports the CSVs from the source's snapshot), then
/// writes a `.sha256` sidecar next to every file.
async fn take_dumps(
    ctx: &Context,
    plan: &BackupPlan,
) -> Result<(Vec<BackupFile>, Vec<TakenDump>), PhaseError> {
    std::fs::create_dir_all(&plan.dir).map_err(|e| {
        PhaseError::new(format!(
            "cannot create the backup folder {}: {e}",
            plan.dir.display()
        ))
        .hint("set [backup] dir to a writable folder (relative to the workspace)")
    })?;
    let mut files = Vec::new();
    let mut dumps = Vec::new();
    for (side, db) in &plan.sides {
        let (dump, csvs) = dump_side(ctx, plan, *side, db).await?;
        files.push(BackupFile {
            side: *side,
            kind: "dump",
            file: dump.file.clone(),
            counts: counts_json(&dump.counts),
        });
        files.extend(csvs.into_iter().map(|file| BackupFile {
            side: *side,
            kind: "csv",
            file,
            counts: serde_json::json!({}),
        }));
        dumps.push(dump);
    }
    for f in &files {
        let sidecar = sidecar_path(&f.file.path);
        std::fs::write(&sidecar, sidecar_text(&f.file))
            .map_err(|e| PhaseError::new(format!("cannot write {}: {e}", sidecar.display())))?;
    }
    Ok((files, dumps))
}

/// One side's dump, its row counts and (for the source) the CSV exports,
/// all from one snapshot of its database.
async fn dump_side(
    ctx: &Context,
    plan: &BackupPlan,
    side: Side,
    db: &Database,
) -> Result<(TakenDump, Vec<WrittenFile>), PhaseError> {
    let url = ctx.url(side).unwrap_or_default().to_string();
    let tool = ToolConnection::from_url(&url)?;
    let data = &ctx.manifest.data;
    let mut tables: Vec<QualifiedName> = db
        .user_tables(data.include_auth, data.include_storage)
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    tables.retain(|t| t.schema != ctx.manifest.ledger.schema);
    let (dir, suffix, recipients) = (&plan.dir, plan.suffix(), &plan.recipients);
    let mut snapshot = db.dump_snapshot().await?;
    let result = async {
        let counts = snapshot.row_counts(&tables).await?;
        let dest = dir.join(format!("{}.dump{suffix}", side.name()));
        let file = pg_dump(&tool, Some(&snapshot.id), &dest, recipients, &ctx.redactor).await?;
        let mut csvs = Vec::new();
        if side == Side::Source {
            for table in &plan.present {
                let dest = dir.join(format!("source-{table}.csv{suffix}"));
                csvs.push(snapshot.export_csv(table, &dest, recipients).await?);
            }
        }
        Ok::<_, PhaseError>((TakenDump { side, file, counts }, csvs))
    }
    .await;
    snapshot.close().await;
    result
}

/// Every file written: where, size, sha-256, time, encrypted.
fn files_table(ctx: &Context, files: &[BackupFile], plan: &BackupPlan) -> ReportTable {
    let mut table = ReportTable::new(
        "Backup files",
        &["File", "Side", "Size", "sha-256", "Took", "Encrypted"],
    );
    for f in files {
        table.push([
            shown(ctx, &f.file.path),
            f.side.name().to_string(),
            bytes_text(f.file.bytes),
            f.file.sha256.clone(),
            human_duration(f.file.duration.as_millis() as u64),
            if f.file.encrypted { "age" } else { "no" }.to_string(),
        ]);
    }
    table.with_note(format!(
        "Each dump, its row counts and the CSV exports come from one snapshot of their database. A `<file>.sha256` sidecar (sha256sum format) sits next to each file. {}",
        if plan.recipients.is_empty() {
            "Not encrypted: these files hold business data and personal data; keep the artifact private and its retention short (set [backup] age_recipients to encrypt)."
        } else {
            "Encrypted with age for the [backup] age_recipients; the plaintext never touched the disk."
        }
    ))
}

/// One dump's row: file, size, sha-256, tables and rows.
fn dump_check(ctx: &Context, dump: &TakenDump) -> CheckItem {
    let rows: i64 = dump.counts.values().sum();
    CheckItem::new(
        &format!("{}-dump", dump.side.name()),
        &format!("{} database dumped", capitalise(dump.side.name())),
        Status::Pass,
        format!(
            "{} ({}, sha-256 {}) with {} tables, {} rows",
            shown(ctx, &dump.file.path),
            bytes_text(dump.file.bytes),
            &dump.file.sha256[..16],
            dump.counts.len(),
            thousands(rows)
        ),
    )
}

/// The configuration export's row; `None` when `[config]` names no table.
fn export_check(plan: &BackupPlan, written: usize) -> Option<CheckItem> {
    if plan.exports.is_empty() {
        return None;
    }
    let missing: Vec<String> = plan
        .exports
        .iter()
        .filter(|t| !plan.present.contains(t))
        .map(|t| t.to_string())
        .collect();
    if missing.is_empty() {
        let present: Vec<String> = plan.present.iter().map(|t| t.to_string()).collect();
        return Some(CheckItem::new(
            "config-export",
            "Configuration tables exported as CSV",
            Status::Pass,
            format!("{written} tables: {}", present.join(", ")),
        ));
    }
    Some(
        CheckItem::new(
            "config-export",
            "Configuration tables exported as CSV",
            Status::Fail,
            format!(
                "not on the source: {} ({written} others exported)",
                missing.join(", ")
            ),
        )
        .with_hint("fix [config] table / [config] export_tables (schema.table) in the manifest"),
    )
}

/// Proves each dump restores: a row each, and the table of what the
/// target's role could not create.
async fn verify_dumps(
    ctx: &mut Context,
    dumps: &[TakenDump],
) -> Result<(Vec<CheckItem>, Option<ReportTable>), PhaseError> {
    let writable = ctx.target("backup", true).await?;
    let identity = age_identity(ctx)?;
    let mut items = Vec::new();
    let mut left_out = ReportTable::new(LEFT_OUT_TITLE, &["Dump", "Object", "Owner", "Why"]);
    for dump in dumps {
        let (item, out) = verify::verify_dump(ctx, &writable, dump, identity.as_ref()).await;
        items.push(item);
        for l in out.iter().filter(|l| l.worth_reporting()) {
            left_out
                .push(std::iter::once(format!("{}.dump", dump.side.name())).chain(left_out_row(l)));
        }
    }
    let table = (!left_out.rows.is_empty()).then(|| left_out.with_note(LEFT_OUT_NOTE));
    Ok((items, table))
}

/// The ledger's record of one file.
fn backup_record(ctx: &Context, f: &BackupFile) -> BackupRecord {
    BackupRecord {
        side: f.side,
        kind: f.kind,
        path: shown(ctx, &f.file.path),
        file_name: f
            .file
            .path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
        sha256: f.file.sha256.clone(),
        bytes: f.file.bytes as i64,
        encrypted: f.file.encrypted,
        duration_ms: f.file.duration.as_millis() as i64,
        row_counts: f.counts.clone(),
    }
}

fn summary(ctx: &Context, files: &[BackupFile], plan: &BackupPlan) -> String {
    let total: u64 = files.iter().map(|f| f.file.bytes).sum();
    format!(
        "{} ({}) in {}{}.",
        crate::report::count(files.len(), "file", "files"),
        bytes_text(total),
        shown(ctx, &plan.dir),
        if plan.verify {
            "; each dump restored into a scratch database and its row counts compared"
        } else {
            ""
        }
    )
}

/// Title of the table naming what a restore left out.
const LEFT_OUT_TITLE: &str = "Left out of the restore";

/// The note under that table.
const LEFT_OUT_NOTE: &str = "The role the restore runs as cannot create these (judged from the server's catalogs: superuser-only kinds, extensions it may not create, objects on the target owned by roles it cannot act as), so they were skipped by name instead of failing the restore. Everything else was restored.";

/// "1 object", "3 objects".
fn objects(n: usize) -> String {
    if n == 1 {
        "1 object".to_string()
    } else {
        format!("{n} objects")
    }
}

/// One row of the left-out table: object, owner in the backup, why.
fn left_out_row(l: &LeftOut) -> [String; 3] {
    [
        l.entry.describe(),
        if l.entry.owner.is_empty() {
            "—".to_string()
        } else {
            l.entry.owner.clone()
        },
        l.reason.clone(),
    ]
}

/// The error when the role may not `SET session_replication_role`.
fn replica_role_error(allowed: &ReplicaRole, what: &str, nothing: &str) -> PhaseError {
    let role = &allowed.role;
    PhaseError::new(format!(
        "the target's role {role} may not set session_replication_role ({}), which {what} needs to load rows with triggers off; {nothing}",
        allowed.refusal.clone().unwrap_or_default()
    ))
    .hint(format!(
        "as a superuser run `GRANT SET ON PARAMETER session_replication_role TO {role};` (PostgreSQL 15+; on Supabase the postgres role may set it), or connect as a role that may set it"
    ))
}

/// The checklist row saying the role may set it.
fn replica_role_item(allowed: &ReplicaRole) -> CheckItem {
    CheckItem::new(
        "restore-role",
        "Target's role may load rows with triggers off",
        Status::Pass,
        format!(
            "{} may SET session_replication_role = replica, which the restore sets first in its session",
            allowed.role
        ),
    )
}

/// The age identity from [`AGE_IDENTITY_VAR`], when set.
fn age_identity(ctx: &Context) -> Result<Option<age::x25519::Identity>, PhaseError> {
    let Some(text) = ctx.env_var(AGE_IDENTITY_VAR) else {
        return Ok(None);
    };
    ctx.redactor.add(text.trim());
    ctx.console.add_mask(text.trim());
    text.trim()
        .parse::<age::x25519::Identity>()
        .map(Some)
        .map_err(|_| {
            PhaseError::new(format!("{AGE_IDENTITY_VAR} does not hold an age identity"))
                .hint("it must be the whole AGE-SECRET-KEY-1... line written by `age-keygen`")
        })
}

/// `[backup] dir` resolved against the workspace (`GITHUB_WORKSPACE`, else
/// the current folder).
pub(crate) fn backup_root(ctx: &Context) -> PathBuf {
    resolve_input_path(ctx, &ctx.manifest.backup.dir)
}

fn resolve_input_path(ctx: &Context, path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let base = ctx
        .settings
        .github
        .workspace
        .clone()
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default();
    base.join(path)
}

/// A path as outputs show it: relative to the workspace (or the current
/// folder) when inside it, because the action's container sees another
/// absolute path than the runner's upload step.
pub(crate) fn shown(ctx: &Context, path: &Path) -> String {
    let base = ctx
        .settings
        .github
        .workspace
        .clone()
        .or_else(|| std::env::current_dir().ok());
    if let Some(base) = base {
        if let Ok(rel) = path.strip_prefix(&base) {
            return rel.display().to_string();
        }
    }
    path.display().to_string()
}

fn counts_json(counts: &BTreeMap<QualifiedName, i64>) -> serde_json::Value {
    serde_json::Value::Object(
        counts
            .iter()
            .map(|(t, n)| (t.to_string(), serde_json::Value::from(*n)))
            .collect(),
    )
}

/// Keeps letters, digits, `-`, `_` and `.`, so an environment name is a safe
/// folder name.
fn file_safe(text: &str) -> String {
    let s: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "env".into() } else { s }
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_names_become_folder_names() {
        assert_eq!(file_safe("production"), "production");
        assert_eq!(file_safe("prod eu/1"), "prod_eu_1");
        assert_eq!(file_safe(""), "env");
    }

    fn name(s: &str) -> QualifiedName {
        QualifiedName::parse(s).unwrap()
    }

    fn plan(exports: &[&str], present: &[&str]) -> BackupPlan {
        BackupPlan {
            sides: Vec::new(),
            versions: String::new(),
            exports: exports.iter().map(|t| name(t)).collect(),
            present: present.iter().map(|t| name(t)).collect(),
            dir: PathBuf::from("backups/x"),
            recipients: Vec::new(),
            verify: true,
        }
    }

    #[test]
    fn the_target_is_dumped_when_it_holds_rows() {
        let empty = target_has_data_check(4, &[]);
        assert_eq!(
            empty.evidence,
            "the target's 4 user tables are empty: only the source is dumped"
        );
        let held = target_has_data_check(4, &[name("public.a"), name("public.b")]);
        assert_eq!(
            held.evidence,
            "2 of the target's tables hold rows (e.g. public.a): the target is dumped too"
        );
    }

    #[test]
    fn configuration_tables_missing_on_the_source_fail_the_export() {
        assert!(export_check(&plan(&[], &[]), 0).is_none());
        let all = export_check(&plan(&["public.config"], &["public.config"]), 1).unwrap();
        assert_eq!(
            (all.status, all.evidence.as_str()),
            (Status::Pass, "1 tables: public.config")
        );
        let some = export_check(
            &plan(&["public.config", "public.prices"], &["public.config"]),
            1,
        )
        .unwrap();
        assert_eq!(some.status, Status::Fail);
        assert_eq!(
            some.evidence,
            "not on the source: public.prices (1 others exported)"
        );
    }

    #[test]
    fn a_dry_run_says_what_it_would_write() {
        let plan = plan(&["public.config"], &["public.config"]);
        assert_eq!(plan.suffix(), "");
        assert_eq!(
            dry_run_summary(&plan),
            "Dry-run: 0 dumps and 1 CSV exports would be written, each dump restored into a scratch database; nothing was written."
        );
    }

    #[test]
    fn words_are_capitalised_and_objects_counted() {
        assert_eq!(capitalise("source"), "Source");
        assert_eq!(capitalise(""), "");
        assert_eq!(objects(1), "1 object");
        assert_eq!(objects(3), "3 objects");
    }
}
