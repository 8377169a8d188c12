//! The way back `rollback` uses: the target restored from a backup file,
//! its sha-256 checked first.

use std::path::{Path, PathBuf};

use crate::context::Context;
use crate::manifest::{DataSection, MANAGED_SCHEMAS, QualifiedName};
use crate::pg::Database;
use crate::pg::Side;
use crate::pg::dump::{ToolConnection, file_sha256, is_age_file, read_sidecar, sidecar_path};
use crate::pg::restore::{
    Archive, LeftOut, OnError, RestoreInto, TocEntry, archive_list, restore_archive,
    schemas_in_list, toc_entries, write_use_list,
};
use crate::report::{CheckItem, ReportTable, Status, human_duration, thousands};

use super::super::PhaseError;
use super::super::data::{bytes_text, names_text};
use super::{
    AGE_IDENTITY_VAR, LEFT_OUT_NOTE, LEFT_OUT_TITLE, age_identity, left_out_row, objects,
    replica_role_error, resolve_input_path, shown,
};

const ID: &str = "restore-target";
const TITLE: &str = "Target restored from the backup";

/// What restoring the target from a backup did.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetRestore {
    /// The checklist row.
    pub item: CheckItem,
    /// What the target's role could not restore, by name, when anything.
    pub left_out: Option<ReportTable>,
}

/// A backup file whose sha-256 matches its record.
struct CheckedFile {
    path: PathBuf,
    name: String,
    /// `name (size, sha-256 … matches …)`, for the evidence.
    checked: String,
    /// The row counts the ledger recorded at backup time (`Null` when none).
    recorded_counts: serde_json::Value,
}

/// What the restore takes from the archive.
struct Selection<'a> {
    /// The user schemas: restored whole.
    schemas: Vec<String>,
    /// Platform tables (opted in by `[data]`) empty on the target: refilled.
    refilled: Vec<QualifiedName>,
    /// Platform tables already holding rows: kept as they are.
    occupied: Vec<QualifiedName>,
    /// The archive's entries restored.
    entries: Vec<&'a TocEntry>,
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
    let file = check_file(ctx, path).await?;
    let encrypted = is_age_file(&file.path)
        .map_err(|e| PhaseError::new(format!("cannot read {}: {e}", file.path.display())))?;
    let identity = age_identity(ctx)?;
    if encrypted && identity.is_none() {
        return Err(PhaseError::new(format!(
            "{} is encrypted with age and {AGE_IDENTITY_VAR} is not set; nothing was restored",
            file.name
        ))
        .hint(format!("set {AGE_IDENTITY_VAR} in the step's env from a secret holding the AGE-SECRET-KEY-1... identity")));
    }
    let archive = match &identity {
        Some(id) if encrypted => Archive::Encrypted(&file.path, id),
        _ => Archive::Plain(&file.path),
    };
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
                format!(
                    "dry-run: would restore the target's user schemas from {}",
                    file.checked
                ),
            ),
            left_out: None,
        });
    }
    let list = archive_list(&archive, &ctx.redactor).await?;
    let entries = toc_entries(&list);
    let selection = select(ctx, &target, &list, &entries).await?;
    // What the target's role can neither create nor replace stays as the
    // target has it, named in the report.
    let left_out = target
        .restore_left_out(&selection.entries, RestoreInto::ExistingDatabase)
        .await?;
    let took = restore(ctx, &target, &archive, &file, &selection, &left_out).await?;
    let mut evidence = restore_evidence(&file.checked, &selection, &left_out, took);
    let mut status = Status::Pass;
    let tables = compared_tables(&file.recorded_counts, &selection, &left_out);
    if let Some(map) = file.recorded_counts.as_object().filter(|m| !m.is_empty()) {
        let now = target.exact_row_counts(&tables).await?;
        let (passed, text) = counts_evidence(map, &tables, &now);
        evidence.push_str(&text);
        if !passed {
            status = Status::Fail;
        }
    }
    Ok(TargetRestore {
        item: CheckItem::new(ID, TITLE, status, evidence),
        left_out: left_out_table(&left_out),
    })
}

/// The backup file, refused unless it exists and its sha-256 matches what
/// the ledger (else its `.sha256` sidecar) recorded.
async fn check_file(ctx: &mut Context, path: &Path) -> Result<CheckedFile, PhaseError> {
    let label = ctx.settings.label("backup-file");
    let file = resolve_input_path(ctx, path);
    if !file.is_file() {
        return Err(PhaseError::new(format!(
            "the backup file {} ({label}) does not exist",
            file.display()
        ))
        .hint("pass the path of a file the `backup` phase wrote (its `backup-path` output), e.g. after actions/download-artifact"));
    }
    let name = file
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let (actual, bytes) = file_sha256(&file)
        .map_err(|e| PhaseError::new(format!("cannot read {}: {e}", file.display())))?;
    let mut recorded_counts = serde_json::Value::Null;
    let mut expected: Option<(String, &str)> = None;
    if let Some(ledger) = ctx.ledger("rollback").await? {
        let shown_path = shown(ctx, &file);
        if let Some((sha, counts)) = ledger.recorded_backup(&name, &shown_path).await? {
            expected = Some((sha, "the ledger"));
            recorded_counts = counts;
        }
    }
    if expected.is_none() {
        expected = read_sidecar(&file).map(|s| (s, "its .sha256 sidecar"));
    }
    let Some((expected, source_of_truth)) = expected else {
        return Err(PhaseError::new(format!(
            "no recorded sha-256 for {name}: neither the target's ledger nor {} has one; refusing to restore a file that cannot be checked, nothing was restored",
            sidecar_path(&file).display()
        ))
        .hint("restore a file written by `backup` together with its .sha256 sidecar"));
    };
    if !actual.eq_ignore_ascii_case(&expected) {
        return Err(PhaseError::new(format!(
            "the sha-256 of {name} is {actual}, but {source_of_truth} recorded {expected}: the file is corrupted or is not the one backed up; nothing was restored"
        ))
        .hint("download the backup artifact again, or pick another backup"));
    }
    let checked = format!(
        "{name} ({}, sha-256 {} matches {source_of_truth})",
        bytes_text(bytes),
        &actual[..16]
    );
    Ok(CheckedFile {
        path: file,
        name,
        checked,
        recorded_counts,
    })
}

/// Decides what the restore takes: the archive's user schemas whole, and
/// the rows of auth/storage tables (opted in by `[data]`) only into tables
/// that are empty on the target: those schemas belong to the platform, their
/// rows are never dropped, and a row already there (a user who exists in
/// both) would clash.
async fn select<'a>(
    ctx: &Context,
    target: &Database,
    list: &str,
    entries: &'a [TocEntry],
) -> Result<Selection<'a>, PhaseError> {
    let schemas = user_schemas(schemas_in_list(list), &ctx.manifest.ledger.schema);
    let platform_tables = platform_table_data(entries, &opted_schemas(&ctx.manifest.data));
    let occupied = target.non_empty_tables(&platform_tables).await?;
    let refilled: Vec<QualifiedName> = platform_tables
        .into_iter()
        .filter(|t| !occupied.contains(t))
        .collect();
    let entries = entries
        .iter()
        .filter(|e| {
            schemas.contains(&e.namespace)
                || (e.desc == "TABLE DATA"
                    && refilled
                        .iter()
                        .any(|t| t.schema == e.namespace && t.name == e.tag))
        })
        .collect();
    Ok(Selection {
        schemas,
        refilled,
        occupied,
        entries,
    })
}

/// Runs pg_restore into the target in one transaction, the left-out
/// entries passed over; returns how long it took.
async fn restore(
    ctx: &Context,
    target: &Database,
    archive: &Archive<'_>,
    file: &CheckedFile,
    selection: &Selection<'_>,
    left_out: &[LeftOut],
) -> Result<std::time::Duration, PhaseError> {
    let list_file = std::env::temp_dir().join(format!("cutover-restore-{}.list", ctx.run_id));
    write_use_list(&list_file, &selection.entries, left_out)
        .map_err(|e| PhaseError::new(format!("cannot write {}: {e}", list_file.display())))?;
    target.ensure_schemas(&selection.schemas).await?;
    let url = ctx.url(Side::Target).unwrap_or_default().to_string();
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
    let restored = restore_archive(&tool, archive, &args, OnError::Stop, &ctx.redactor).await;
    let _ = std::fs::remove_file(&list_file);
    let outcome = restored.map_err(|e| {
            PhaseError::new(format!(
                "restoring the target from {} failed and was rolled back: {}",
                file.name, e.message
            ))
            .hint("the restore ran in one transaction, so the target is as it was; fix the cause (see the message) and re-run")
        })?;
    Ok(outcome.duration)
}

/// The archive's schemas but Supabase's managed ones, the catalogs and the
/// ledger's.
fn user_schemas(schemas: Vec<String>, ledger_schema: &str) -> Vec<String> {
    schemas
        .into_iter()
        .filter(|s| {
            !MANAGED_SCHEMAS.contains(&s.as_str()) && !s.starts_with("pg_") && *s != ledger_schema
        })
        .collect()
}

/// The platform schemas whose rows `[data]` copies.
fn opted_schemas(data: &DataSection) -> Vec<&'static str> {
    let mut opted = Vec::new();
    if data.include_auth {
        opted.push("auth");
    }
    if data.include_storage {
        opted.push("storage");
    }
    opted
}

/// The tables of `schemas` whose rows the archive holds.
fn platform_table_data(entries: &[TocEntry], schemas: &[&str]) -> Vec<QualifiedName> {
    entries
        .iter()
        .filter(|e| e.desc == "TABLE DATA" && schemas.contains(&e.namespace.as_str()))
        .map(|e| QualifiedName {
            schema: e.namespace.clone(),
            name: e.tag.clone(),
        })
        .collect()
}

/// What was restored, refilled, kept and left out.
fn restore_evidence(
    checked: &str,
    selection: &Selection,
    left_out: &[LeftOut],
    took: std::time::Duration,
) -> String {
    let mut evidence = format!(
        "schemas {} restored from {checked} in {}",
        selection.schemas.join(", "),
        human_duration(took.as_millis() as u64)
    );
    if !selection.refilled.is_empty() {
        evidence.push_str(&format!(
            "; rows of {} refilled (empty on the target)",
            names_text(&selection.refilled)
        ));
    }
    if !selection.occupied.is_empty() {
        evidence.push_str(&format!(
            "; {} kept as they are (the platform's tables already hold rows)",
            names_text(&selection.occupied)
        ));
    }
    let reported = left_out.iter().filter(|l| l.worth_reporting()).count();
    if reported > 0 {
        evidence.push_str(&format!(
            "; {} the target's role cannot replace left out by name (see \"{LEFT_OUT_TITLE}\")",
            objects(reported)
        ));
    }
    evidence
}

/// The tables whose counts the backup recorded and the restore replaced:
/// tables whose rows were left out keep the target's rows, not compared.
fn compared_tables(
    recorded: &serde_json::Value,
    selection: &Selection,
    left_out: &[LeftOut],
) -> Vec<QualifiedName> {
    let Some(map) = recorded.as_object() else {
        return Vec::new();
    };
    let kept: Vec<QualifiedName> = left_out
        .iter()
        .filter(|l| l.entry.desc == "TABLE DATA")
        .map(|l| QualifiedName {
            schema: l.entry.namespace.clone(),
            name: l.entry.tag.clone(),
        })
        .collect();
    map.keys()
        .filter_map(|k| QualifiedName::parse(k).ok())
        .filter(|q| {
            (selection.schemas.contains(&q.schema) || selection.refilled.contains(q))
                && !kept.contains(q)
        })
        .collect()
}

/// Whether the counts now equal those recorded at backup time, and the
/// evidence saying so.
fn counts_evidence(
    recorded: &serde_json::Map<String, serde_json::Value>,
    tables: &[QualifiedName],
    now: &std::collections::BTreeMap<QualifiedName, i64>,
) -> (bool, String) {
    let differing: Vec<String> = tables
        .iter()
        .filter(|t| recorded.get(&t.to_string()).and_then(|v| v.as_i64()) != now.get(t).copied())
        .map(|t| t.to_string())
        .collect();
    if differing.is_empty() {
        let rows: i64 = now.values().sum();
        let text = format!(
            "; {} tables, {} rows, equal to the counts recorded at backup time",
            tables.len(),
            thousands(rows)
        );
        return (true, text);
    }
    let text = format!(
        "; row counts differ from the backup's for {}",
        differing.join(", ")
    );
    (false, text)
}

/// What the target's role could not restore; `None` when nothing worth
/// showing.
fn left_out_table(left_out: &[LeftOut]) -> Option<ReportTable> {
    let reported: Vec<&LeftOut> = left_out.iter().filter(|l| l.worth_reporting()).collect();
    if reported.is_empty() {
        return None;
    }
    let mut table = ReportTable::new(LEFT_OUT_TITLE, &["Object", "Owner", "Why"]);
    for l in reported {
        table.push(left_out_row(l));
    }
    Some(table.with_note(LEFT_OUT_NOTE))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn entry(desc: &str, namespace: &str, tag: &str) -> TocEntry {
        TocEntry {
            line: String::new(),
            desc: desc.into(),
            namespace: namespace.into(),
            tag: tag.into(),
            owner: String::new(),
        }
    }

    fn name(s: &str) -> QualifiedName {
        QualifiedName::parse(s).unwrap()
    }

    #[test]
    fn only_user_schemas_are_restored_whole() {
        let schemas = ["public", "auth", "pg_temp_1", "cutover", "billing"]
            .map(String::from)
            .to_vec();
        assert_eq!(user_schemas(schemas, "cutover"), ["public", "billing"]);
    }

    #[test]
    fn platform_rows_come_back_only_for_the_opted_schemas() {
        let entries = [
            entry("TABLE DATA", "auth", "users"),
            entry("TABLE", "auth", "users"),
            entry("TABLE DATA", "storage", "objects"),
            entry("TABLE DATA", "public", "orders"),
        ];
        let data = DataSection {
            include_auth: true,
            ..DataSection::default()
        };
        assert_eq!(opted_schemas(&data), ["auth"]);
        assert_eq!(
            platform_table_data(&entries, &opted_schemas(&data)),
            [name("auth.users")]
        );
    }

    #[test]
    fn left_out_rows_are_not_compared() {
        let selection = Selection {
            schemas: vec!["public".into()],
            refilled: vec![name("auth.users")],
            occupied: vec![name("storage.objects")],
            entries: Vec::new(),
        };
        let recorded = serde_json::json!({"public.a": 1, "public.b": 2, "auth.users": 3, "storage.objects": 4});
        let left_out = [LeftOut {
            entry: entry("TABLE DATA", "public", "b"),
            reason: "owned by another role".into(),
        }];
        let tables = compared_tables(&recorded, &selection, &left_out);
        assert_eq!(tables, [name("auth.users"), name("public.a")]);
        let now = BTreeMap::from([(name("auth.users"), 3), (name("public.a"), 5)]);
        let map = recorded.as_object().unwrap();
        assert_eq!(
            counts_evidence(map, &tables, &now),
            (
                false,
                "; row counts differ from the backup's for public.a".into()
            )
        );
        let evidence = restore_evidence("f.dump", &selection, &left_out, std::time::Duration::ZERO);
        assert!(evidence.contains("; rows of auth.users refilled (empty on the target); storage.objects kept as they are"), "{evidence}");
        assert!(evidence.ends_with("1 object the target's role cannot replace left out by name (see \"Left out of the restore\")"));
    }
}
