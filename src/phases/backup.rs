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
use crate::manifest::{MANAGED_SCHEMAS, QualifiedName};
use crate::pg::dump::{
    self, ToolConnection, ToolError, WrittenFile, file_sha256, is_age_file, pg_dump, read_sidecar,
    server_major, sidecar_path, sidecar_text, tool_version, version_problem,
};
use crate::pg::ledger::BackupRecord;
use crate::pg::restore::{
    Archive, LeftOut, OnError, ReplicaRole, RestoreInto, TocEntry, archive_list, restore_archive,
    schemas_in_list, toc_entries, write_use_list,
};
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

/// One dump taken by this run, with what is needed to check it.
struct TakenDump {
    side: Side,
    file: WrittenFile,
    counts: BTreeMap<QualifiedName, i64>,
}

/// Runs `backup`.
pub async fn run(ctx: &mut Context) -> Result<PhaseReport, PhaseError> {
    let mut report = PhaseReport::new("backup");
    let recipients = crate::manifest::parse_recipients(&ctx.manifest.backup.age_recipients)
        .map_err(|m| PhaseError::new(m).hint("fix [backup] age_recipients in the manifest"))?;
    let verify = ctx.settings.verify || ctx.manifest.backup.verify;
    let dry_run = ctx.settings.dry_run;
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

    // Does the target hold data worth keeping?
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
    report.check(CheckItem::new(
        "target-has-data",
        "Target backed up when it holds data",
        Status::Pass,
        if non_empty.is_empty() {
            format!(
                "the target's {} user tables are empty: only the source is dumped",
                target_tables.len()
            )
        } else {
            format!(
                "{} of the target's tables hold rows (e.g. {}): the target is dumped too",
                non_empty.len(),
                non_empty[0]
            )
        },
    ));

    // pg_dump must be at least as new as every server it dumps.
    let (client_major, client_text) = tool_version("pg_dump").await?;
    let mut servers = Vec::new();
    for (side, db) in &sides {
        let info = db.server_info().await?;
        let major = server_major(info.version_num);
        if let Some(why) = version_problem("pg_dump", client_major, major, side.name()) {
            return Err(PhaseError::new(why).hint(format!(
                "put a pg_dump of version {major} or newer first on PATH (the runner's `apt-get install postgresql-client-{major}`), or use the cutover container image"
            )));
        }
        servers.push(format!("{} {}", side.name(), info.version));
    }
    report.check(CheckItem::new(
        "pg-dump-version",
        "pg_dump at least as new as the servers",
        Status::Pass,
        format!("{client_text}; servers: {}", servers.join(", ")),
    ));

    // Configuration tables exported as CSV (runbook: invoice_configurations, ...).
    let mut exports: Vec<QualifiedName> = Vec::new();
    let config = &ctx.manifest.config;
    for name in std::iter::once(&config.table)
        .filter(|t| !t.is_empty())
        .chain(&config.export_tables)
    {
        let q = QualifiedName::parse(name).map_err(|m| PhaseError::new(format!("[config] {m}")))?;
        if !exports.contains(&q) {
            exports.push(q);
        }
    }
    let present = source.existing_tables(&exports).await?;
    let missing: Vec<String> = exports
        .iter()
        .filter(|t| !present.contains(t))
        .map(|t| t.to_string())
        .collect();

    let root = backup_root(ctx);
    let folder = format!(
        "{}-{}-{}",
        Utc::now().format("%Y%m%dT%H%M%SZ"),
        file_safe(&ctx.settings.environment),
        &ctx.run_id.simple().to_string()[..8]
    );
    let dir = root.join(&folder);
    let suffix = if recipients.is_empty() { "" } else { ".age" };

    if dry_run {
        let mut table = ReportTable::new("Backup files (dry-run)", &["File", "What"]);
        for (side, _) in &sides {
            table.push([
                format!("{}/{}.dump{suffix}", shown(ctx, &dir), side.name()),
                format!("pg_dump -Fc of the {}", side.name()),
            ]);
        }
        for t in &present {
            table.push([
                format!("{}/source-{t}.csv{suffix}", shown(ctx, &dir)),
                format!("{t} as CSV"),
            ]);
        }
        report.tables.push(table);
        report.summary = format!(
            "Dry-run: {} dumps and {} CSV exports would be written{}; nothing was written.",
            sides.len(),
            present.len(),
            if verify {
                ", each dump restored into a scratch database"
            } else {
                ""
            }
        );
        return Ok(report);
    }

    std::fs::create_dir_all(&dir).map_err(|e| {
        PhaseError::new(format!(
            "cannot create the backup folder {}: {e}",
            dir.display()
        ))
        .hint("set [backup] dir to a writable folder (relative to the workspace)")
    })?;
    let data = &ctx.manifest.data;
    let mut files: Vec<(Side, &'static str, WrittenFile, serde_json::Value)> = Vec::new();
    let mut dumps: Vec<TakenDump> = Vec::new();
    for (side, db) in &sides {
        let url = match side {
            Side::Source => ctx.settings.source_db_url.clone(),
            Side::Target => ctx.settings.target_db_url.clone(),
        }
        .unwrap_or_default();
        let tool = ToolConnection::from_url(&url)?;
        let mut tables: Vec<QualifiedName> = db
            .user_tables(data.include_auth, data.include_storage)
            .await?
            .into_iter()
            .map(|t| t.name)
            .collect();
        tables.retain(|t| t.schema != ctx.manifest.ledger.schema);
        let mut snapshot = db.dump_snapshot().await?;
        let result = async {
            let counts = snapshot.row_counts(&tables).await?;
            let dest = dir.join(format!("{}.dump{suffix}", side.name()));
            let file =
                pg_dump(&tool, Some(&snapshot.id), &dest, &recipients, &ctx.redactor).await?;
            let mut csvs = Vec::new();
            if *side == Side::Source {
                for table in &present {
                    let dest = dir.join(format!("source-{table}.csv{suffix}"));
                    csvs.push(snapshot.export_csv(table, &dest, &recipients).await?);
                }
            }
            Ok::<_, PhaseError>((counts, file, csvs))
        }
        .await;
        snapshot.close().await;
        let (counts, file, csvs) = result?;
        let counts_json = counts_json(&counts);
        files.push((*side, "dump", file.clone(), counts_json));
        for csv in csvs {
            files.push((*side, "csv", csv, serde_json::json!({})));
        }
        dumps.push(TakenDump {
            side: *side,
            file,
            counts,
        });
    }
    for (_, _, file, _) in &files {
        std::fs::write(sidecar_path(&file.path), sidecar_text(file)).map_err(|e| {
            PhaseError::new(format!(
                "cannot write {}: {e}",
                sidecar_path(&file.path).display()
            ))
        })?;
    }

    // Report the files.
    let mut table = ReportTable::new(
        "Backup files",
        &["File", "Side", "Size", "sha-256", "Took", "Encrypted"],
    );
    for (side, _, file, _) in &files {
        table.push([
            shown(ctx, &file.path),
            side.name().to_string(),
            bytes_text(file.bytes),
            file.sha256.clone(),
            human_duration(file.duration.as_millis() as u64),
            if file.encrypted { "age" } else { "no" }.to_string(),
        ]);
    }
    report.tables.push(table.with_note(format!(
        "Each dump, its row counts and the CSV exports come from one snapshot of their database. A `<file>.sha256` sidecar (sha256sum format) sits next to each file. {}",
        if recipients.is_empty() {
            "Not encrypted: these files hold business data and personal data; keep the artifact private and its retention short (set [backup] age_recipients to encrypt)."
        } else {
            "Encrypted with age for the [backup] age_recipients; the plaintext never touched the disk."
        }
    )));
    for dump in &dumps {
        let rows: i64 = dump.counts.values().sum();
        report.check(CheckItem::new(
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
        ));
    }
    if !exports.is_empty() {
        let written = files.iter().filter(|(_, k, _, _)| *k == "csv").count();
        let item = if missing.is_empty() {
            CheckItem::new(
                "config-export",
                "Configuration tables exported as CSV",
                Status::Pass,
                format!(
                    "{written} tables: {}",
                    present
                        .iter()
                        .map(|t| t.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        } else {
            CheckItem::new(
                "config-export",
                "Configuration tables exported as CSV",
                Status::Fail,
                format!(
                    "not on the source: {} ({written} others exported)",
                    missing.join(", ")
                ),
            )
            .with_hint("fix [config] table / [config] export_tables (schema.table) in the manifest")
        };
        report.check(item);
    }

    // Prove each dump restores.
    if verify {
        let writable = ctx.target("backup", true).await?;
        let identity = age_identity(ctx)?;
        let mut left_out = ReportTable::new(LEFT_OUT_TITLE, &["Dump", "Object", "Owner", "Why"]);
        for dump in &dumps {
            let (item, out) = verify_dump(ctx, &writable, dump, identity.as_ref()).await;
            report.check(item);
            for l in out.iter().filter(|l| l.worth_reporting()) {
                left_out.push(
                    std::iter::once(format!("{}.dump", dump.side.name())).chain(left_out_row(l)),
                );
            }
        }
        if !left_out.rows.is_empty() {
            report.tables.push(left_out.with_note(LEFT_OUT_NOTE));
        }
    }

    // The ledger and the outputs.
    if let Some(ledger) = ctx.ledger("backup").await? {
        let records: Vec<BackupRecord> = files
            .iter()
            .map(|(side, kind, file, counts)| BackupRecord {
                side: *side,
                kind,
                path: shown(ctx, &file.path),
                file_name: file
                    .path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                sha256: file.sha256.clone(),
                bytes: file.bytes as i64,
                encrypted: file.encrypted,
                duration_ms: file.duration.as_millis() as i64,
                row_counts: counts.clone(),
            })
            .collect();
        ledger.record_backups(ctx.run_id, &records).await?;
    }
    for (_, _, file, _) in &files {
        report.artifacts.push(shown(ctx, &file.path));
        report.artifacts.push(shown(ctx, &sidecar_path(&file.path)));
    }
    let total: u64 = files.iter().map(|(_, _, f, _)| f.bytes).sum();
    report.summary = format!(
        "{} ({}) in {}{}.",
        crate::report::count(files.len(), "file", "files"),
        bytes_text(total),
        shown(ctx, &dir),
        if verify {
            "; each dump restored into a scratch database and its row counts compared"
        } else {
            ""
        }
    );
    Ok(report)
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

/// Restores a dump into `cutover_verify_<run>` on the target's server (never
/// the source's: cutover does not write to the source), compares row counts
/// with the dump's snapshot, and drops the scratch database again. Entries
/// the target's role cannot create are left out and returned.
async fn verify_dump(
    ctx: &Context,
    target: &Database,
    dump: &TakenDump,
    identity: Option<&age::x25519::Identity>,
) -> (CheckItem, Vec<LeftOut>) {
    let id = format!("{}-restores", dump.side.name());
    let title = format!("{} dump restores", capitalise(dump.side.name()));
    let fail = |evidence: String| {
        (
            CheckItem::new(&id, &title, Status::Fail, evidence),
            Vec::new(),
        )
    };
    let archive = match (dump.file.encrypted, identity) {
        (false, _) => Archive::Plain(&dump.file.path),
        (true, Some(identity)) => Archive::Encrypted(&dump.file.path, identity),
        (true, None) => {
            let (item, out) =
                fail("the dump is encrypted and no identity was given to decrypt it".into());
            return (item.with_hint(format!("set {AGE_IDENTITY_VAR} (from a secret) to the AGE-SECRET-KEY-1... identity of one of the recipients, or turn off verify")), out);
        }
    };
    let scratch = format!("cutover_verify_{}", &ctx.run_id.simple().to_string()[..12]);
    let target_url = ctx.settings.target_db_url.clone().unwrap_or_default();
    let scratch_tool = match ToolConnection::from_url(&target_url) {
        Ok(t) => t.with_database(&scratch),
        Err(e) => return fail(e.message),
    };
    // What the target's role cannot create, decided before anything runs.
    let list = match archive_list(&archive, &ctx.redactor).await {
        Ok(list) => list,
        Err(e) => return fail(e.message),
    };
    let entries = toc_entries(&list);
    let all: Vec<&TocEntry> = entries.iter().collect();
    let left_out = match target
        .restore_left_out(&all, RestoreInto::NewDatabase)
        .await
    {
        Ok(l) => l,
        Err(e) => return fail(e.to_string()),
    };
    let list_file = std::env::temp_dir().join(format!(
        "cutover-verify-{}-{}.list",
        ctx.run_id,
        dump.side.name()
    ));
    if let Err(e) = write_use_list(&list_file, &all, &left_out) {
        return fail(format!("cannot write {}: {e}", list_file.display()));
    }
    if let Err(e) = target.create_database(&scratch).await {
        let _ = std::fs::remove_file(&list_file);
        let (item, out) = fail(e.to_string());
        return (item.with_hint(
            "the target's role needs CREATEDB to verify backups (Supabase's postgres role has it); or turn off [backup] verify",
        ), out);
    }
    // Roles are cluster-wide, so the target server has Supabase's roles; the
    // restore still skips owners and grants, which belong to the environment,
    // not to the backup.
    let args: Vec<String> = vec![
        "--no-owner".into(),
        "--no-privileges".into(),
        format!("--use-list={}", list_file.display()),
    ];
    let restored = restore_archive(
        &scratch_tool,
        &archive,
        &args,
        OnError::Continue,
        &ctx.redactor,
    )
    .await;
    let _ = std::fs::remove_file(&list_file);
    let tables: Vec<QualifiedName> = dump.counts.keys().cloned().collect();
    let counted = match &restored {
        Ok(_) => {
            dump::row_counts_at(&scratch_tool.url_with_password(), &tables, &ctx.redactor).await
        }
        Err(e) => Err(e.clone()),
    };
    let dropped = target.drop_database(&scratch).await;
    let outcome = match restored {
        Ok(r) => r,
        Err(e) => {
            let (item, out) = fail(e.message);
            let keep = "the dump did not restore: keep the previous backup and investigate before migrating";
            let hint = match e.hint {
                Some(tool) => format!("{tool}; {keep}"),
                None => keep.to_string(),
            };
            return (item.with_hint(hint), out);
        }
    };
    let counted = match counted {
        Ok(c) => c,
        Err(e) => return fail(e.message),
    };
    let mut differing = Vec::new();
    for (table, expected) in &dump.counts {
        match counted.get(table).copied().flatten() {
            Some(n) if n == *expected => {}
            Some(n) => differing.push(format!("{table}: {expected} in the snapshot, {n} restored")),
            None => differing.push(format!("{table}: missing after restore")),
        }
    }
    let rows: i64 = dump.counts.values().sum();
    let where_ = format!("scratch database {scratch} on the target's server");
    let reported = left_out.iter().filter(|l| l.worth_reporting()).count();
    let left_out_note = if reported == 0 {
        String::new()
    } else {
        format!(
            "; {} the target's role cannot create left out by name (see \"{LEFT_OUT_TITLE}\")",
            objects(reported)
        )
    };
    let mut item = if !differing.is_empty() {
        CheckItem::new(
            &id,
            &title,
            Status::Fail,
            format!("restored into {where_}, but {}", differing.join("; ")),
        )
        .with_hint("the dump does not restore every row: do not rely on it; check pg_restore's messages in the log")
    } else if outcome.errors_ignored > 0 {
        CheckItem::new(
            &id,
            &title,
            Status::Warn,
            format!(
                "all {} tables and {} rows restored into {where_} in {}{left_out_note}, with {} statements that failed: {}",
                dump.counts.len(),
                thousands(rows),
                human_duration(outcome.duration.as_millis() as u64),
                outcome.errors_ignored,
                outcome.stderr.replace('\n', " / ")
            ),
        )
    } else {
        CheckItem::new(
            &id,
            &title,
            Status::Pass,
            format!(
                "all {} tables and {} rows restored into {where_} in {}, counts equal to the dump's snapshot{left_out_note}",
                dump.counts.len(),
                thousands(rows),
                human_duration(outcome.duration.as_millis() as u64)
            ),
        )
    };
    if let Err(e) = dropped {
        item.evidence
            .push_str(&format!("; the scratch database could not be dropped: {e}"));
        if item.status == Status::Pass {
            item.status = Status::Warn;
        }
        item.hint = Some(format!("drop it by hand: drop database {scratch};"));
    }
    (item, left_out)
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

/// What restoring the target from a backup did.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetRestore {
    /// The checklist row.
    pub item: CheckItem,
    /// What the target's role could not restore, by name, when anything.
    pub left_out: Option<ReportTable>,
}

/// Restores the target database from a backup file taken by `backup`, after
/// checking the file's sha-256 against the ledger's record or its `.sha256`
/// sidecar (a mismatch or a missing record refuses before anything runs).
///
/// The user schemas of the archive (everything but Supabase's managed
/// schemas and the ledger) are restored with `pg_restore --clean --if-exists
/// --no-owner --no-privileges --single-transaction`: all or nothing, objects
/// of the dump replaced, the platform's schemas (auth, storage, ...) left as
/// they are. An encrypted file is decrypted on the fly with the identity in
/// `CUTOVER_AGE_IDENTITY`. pg_restore writes SQL into `psql`, which sets
/// `session_replication_role = replica` first (see [`crate::pg::restore`]);
/// a role that may not set it is refused before anything runs, and what the
/// role can neither create nor replace is left out by name.
pub async fn restore_target_from_backup(
    ctx: &mut Context,
    path: &Path,
) -> Result<TargetRestore, PhaseError> {
    const ID: &str = "restore-target";
    const TITLE: &str = "Target restored from the backup";
    let label = ctx.settings.label("backup-file");
    let file = resolve_input_path(ctx, path);
    if !file.is_file() {
        return Err(PhaseError::new(format!(
            "the backup file {} ({label}) does not exist",
            file.display()
        ))
        .hint("pass the path of a file the `backup` phase wrote (its `backup-path` output), e.g. after actions/download-artifact"));
    }
    let file_name = file
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let (actual, bytes) = file_sha256(&file)
        .map_err(|e| PhaseError::new(format!("cannot read {}: {e}", file.display())))?;

    // What the backup recorded.
    let mut recorded_counts = serde_json::Value::Null;
    let mut expected: Option<(String, &str)> = None;
    if let Some(ledger) = ctx.ledger("rollback").await? {
        let shown_path = shown(ctx, &file);
        if let Some((sha, counts)) = ledger.recorded_backup(&file_name, &shown_path).await? {
            expected = Some((sha, "the ledger"));
            recorded_counts = counts;
        }
    }
    if expected.is_none() {
        expected = read_sidecar(&file).map(|s| (s, "its .sha256 sidecar"));
    }
    let Some((expected, source_of_truth)) = expected else {
        return Err(PhaseError::new(format!(
            "no recorded sha-256 for {file_name}: neither the target's ledger nor {} has one; refusing to restore a file that cannot be checked, nothing was restored",
            sidecar_path(&file).display()
        ))
        .hint("restore a file written by `backup` together with its .sha256 sidecar"));
    };
    if !actual.eq_ignore_ascii_case(&expected) {
        return Err(PhaseError::new(format!(
            "the sha-256 of {file_name} is {actual}, but {source_of_truth} recorded {expected}: the file is corrupted or is not the one backed up; nothing was restored"
        ))
        .hint("download the backup artifact again, or pick another backup"));
    }

    let encrypted = is_age_file(&file)
        .map_err(|e| PhaseError::new(format!("cannot read {}: {e}", file.display())))?;
    let identity = age_identity(ctx)?;
    if encrypted && identity.is_none() {
        return Err(PhaseError::new(format!(
            "{file_name} is encrypted with age and {AGE_IDENTITY_VAR} is not set; nothing was restored"
        ))
        .hint(format!("set {AGE_IDENTITY_VAR} in the step's env from a secret holding the AGE-SECRET-KEY-1... identity")));
    }
    let archive = match &identity {
        Some(id) if encrypted => Archive::Encrypted(&file, id),
        _ => Archive::Plain(&file),
    };
    let checked = format!(
        "{file_name} ({}, sha-256 {} matches {source_of_truth})",
        bytes_text(bytes),
        &actual[..16]
    );
    // Rows load with triggers off: refuse before anything is written when
    // the target's role may not.
    let target = ctx.target("rollback", !ctx.settings.dry_run).await?;
    let allowed = target.replica_role().await?;
    if allowed.refusal.is_some() {
        return Err(replica_role_error(
            &allowed,
            "restoring the target from a backup",
            "nothing was restored",
        ));
    }
    if ctx.settings.dry_run {
        return Ok(TargetRestore {
            item: CheckItem::new(
                ID,
                TITLE,
                Status::Skip,
                format!("dry-run: would restore the target's user schemas from {checked}"),
            ),
            left_out: None,
        });
    }

    let list = archive_list(&archive, &ctx.redactor).await?;
    let ledger_schema = ctx.manifest.ledger.schema.clone();
    let schemas: Vec<String> = schemas_in_list(&list)
        .into_iter()
        .filter(|s| {
            !MANAGED_SCHEMAS.contains(&s.as_str()) && !s.starts_with("pg_") && *s != ledger_schema
        })
        .collect();
    // Rows of auth/storage tables (opted in by [data]) come back only into
    // tables that are empty on the target: those schemas belong to the
    // platform, their rows are never dropped, and a row already there (a
    // user who exists in both) would clash.
    let entries = toc_entries(&list);
    let mut opted = Vec::new();
    if ctx.manifest.data.include_auth {
        opted.push("auth");
    }
    if ctx.manifest.data.include_storage {
        opted.push("storage");
    }
    let platform_tables: Vec<QualifiedName> = entries
        .iter()
        .filter(|e| e.desc == "TABLE DATA" && opted.contains(&e.namespace.as_str()))
        .map(|e| QualifiedName {
            schema: e.namespace.clone(),
            name: e.tag.clone(),
        })
        .collect();
    let occupied = target.non_empty_tables(&platform_tables).await?;
    let refilled: Vec<QualifiedName> = platform_tables
        .iter()
        .filter(|t| !occupied.contains(t))
        .cloned()
        .collect();
    let selected: Vec<&TocEntry> = entries
        .iter()
        .filter(|e| {
            schemas.contains(&e.namespace)
                || (e.desc == "TABLE DATA"
                    && refilled
                        .iter()
                        .any(|t| t.schema == e.namespace && t.name == e.tag))
        })
        .collect();
    // What the target's role can neither create nor replace stays as the
    // target has it, named in the report.
    let left_out = target
        .restore_left_out(&selected, RestoreInto::ExistingDatabase)
        .await?;
    let list_file = std::env::temp_dir().join(format!("cutover-restore-{}.list", ctx.run_id));
    write_use_list(&list_file, &selected, &left_out)
        .map_err(|e| PhaseError::new(format!("cannot write {}: {e}", list_file.display())))?;
    target.ensure_schemas(&schemas).await?;
    let url = ctx.settings.target_db_url.clone().unwrap_or_default();
    let tool = ToolConnection::from_url(&url)?;
    let args: Vec<String> = [
        "--clean",
        "--if-exists",
        "--no-owner",
        "--no-privileges",
        "--single-transaction",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--use-list={}", list_file.display())])
    .collect();
    let restored = restore_archive(&tool, &archive, &args, OnError::Stop, &ctx.redactor).await;
    let _ = std::fs::remove_file(&list_file);
    let outcome = restored.map_err(|e| {
            PhaseError::new(format!(
                "restoring the target from {file_name} failed and was rolled back: {}",
                e.message
            ))
            .hint("the restore ran in one transaction, so the target is as it was; fix the cause (see the message) and re-run")
        })?;

    // Row counts against what the backup recorded, when the ledger has them.
    let mut evidence = format!(
        "schemas {} restored from {checked} in {}",
        schemas.join(", "),
        human_duration(outcome.duration.as_millis() as u64)
    );
    if !refilled.is_empty() {
        evidence.push_str(&format!(
            "; rows of {} refilled (empty on the target)",
            refilled
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !occupied.is_empty() {
        evidence.push_str(&format!(
            "; {} kept as they are (the platform's tables already hold rows)",
            occupied
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let reported: Vec<&LeftOut> = left_out.iter().filter(|l| l.worth_reporting()).collect();
    if !reported.is_empty() {
        evidence.push_str(&format!(
            "; {} the target's role cannot replace left out by name (see \"{LEFT_OUT_TITLE}\")",
            objects(reported.len())
        ));
    }
    // Tables whose rows were left out keep the target's rows: not compared.
    let kept: Vec<QualifiedName> = left_out
        .iter()
        .filter(|l| l.entry.desc == "TABLE DATA")
        .map(|l| QualifiedName {
            schema: l.entry.namespace.clone(),
            name: l.entry.tag.clone(),
        })
        .collect();
    let mut status = Status::Pass;
    if let Some(map) = recorded_counts.as_object().filter(|m| !m.is_empty()) {
        let tables: Vec<QualifiedName> = map
            .keys()
            .filter_map(|k| QualifiedName::parse(k).ok())
            .filter(|q| (schemas.contains(&q.schema) || refilled.contains(q)) && !kept.contains(q))
            .collect();
        let now = target.exact_row_counts(&tables).await?;
        let differing: Vec<String> = tables
            .iter()
            .filter(|t| map.get(&t.to_string()).and_then(|v| v.as_i64()) != now.get(t).copied())
            .map(|t| t.to_string())
            .collect();
        let rows: i64 = now.values().sum();
        if differing.is_empty() {
            evidence.push_str(&format!(
                "; {} tables, {} rows, equal to the counts recorded at backup time",
                tables.len(),
                thousands(rows)
            ));
        } else {
            status = Status::Fail;
            evidence.push_str(&format!(
                "; row counts differ from the backup's for {}",
                differing.join(", ")
            ));
        }
    }
    let left_out = (!reported.is_empty()).then(|| {
        let mut table = ReportTable::new(LEFT_OUT_TITLE, &["Object", "Owner", "Why"]);
        for l in &reported {
            table.push(left_out_row(l));
        }
        table.with_note(LEFT_OUT_NOTE)
    });
    Ok(TargetRestore {
        item: CheckItem::new(ID, TITLE, status, evidence),
        left_out,
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
}
