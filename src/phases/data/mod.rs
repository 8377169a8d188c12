//! `data`: moves rows source → target, in the manifest's `[data] mode`:
//! [`copy`] (one snapshot, binary COPY streams through the runner) or
//! [`replicate`] (PostgreSQL logical replication, server to server, the
//! target following the source until `cutover`).
//!
//! Both start from the same plan ([`plan_jobs`]): which tables, and that
//! the target has each of them with every column the source has.

pub mod copy;
mod pipeline;
mod rebuild;
pub mod replicate;
mod vault;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::context::Context;
use crate::manifest::{DataMode, QualifiedName};
use crate::pg::Database;
use crate::pg::copy::{CopyJob, KeptObject, OutgoingForeignKey};
use crate::report::{CheckItem, PhaseReport, ReportTable, Status};

use super::{Phase, PhaseError, select_tables};

/// Runs `data` in the manifest's mode, with the source's Vault secrets
/// moved as `[vault]` says: its inputs checked before any row moves, a root
/// key moved before the rows, the secrets written and proven after.
pub async fn run(ctx: &mut Context) -> Result<PhaseReport, PhaseError> {
    let vault_plan = vault::plan(ctx).await?;
    let mut key_rows = PhaseReport::new("data");
    if let Some(plan) = &vault_plan {
        vault::move_root_key(ctx, plan, &mut key_rows).await?;
    }
    let mut report = match ctx.manifest.data.mode {
        DataMode::Copy => copy::run(ctx).await,
        DataMode::Replicate => replicate::run(ctx).await,
    }?;
    let key_failed = key_rows.has_failures();
    report.checks.splice(0..0, key_rows.checks);
    // The secrets follow the rows, once the rows and the key are in place.
    if let Some(plan) = vault_plan.filter(|_| !key_failed && !report.has_failures()) {
        vault::apply(ctx, plan, &mut report).await?;
    }
    if let Some(table) = left_out_table(ctx).await? {
        report.tables.push(table);
    }
    report.conclude_from_checks();
    Ok(report)
}

/// Why `data` does not copy a platform table, and what moves it instead.
fn left_out_reason(ctx: &Context, table: &QualifiedName) -> Option<&'static str> {
    let name = table.to_string();
    let data = &ctx.manifest.data;
    let explicit = data
        .tables
        .iter()
        .any(|t| QualifiedName::parse(t).is_ok_and(|q| &q == table));
    if explicit || data.copies_auth_table(table) {
        return None;
    }
    Some(match (table.schema.as_str(), table.name.as_str()) {
        (_, "migrations" | "schema_migrations") => {
            "the platform's own migration history: each project keeps its own"
        }
        ("auth", _) if crate::manifest::AUTH_LOGIN_TABLES.contains(&name.as_str()) => {
            "logins: copied with [data] include_auth = true"
        }
        ("auth", _) if crate::manifest::AUTH_SESSION_TABLES.contains(&name.as_str()) => {
            "sessions and tokens: copied with include_auth and include_auth_sessions"
        }
        ("auth", _) => "GoTrue's own bookkeeping: name it in [data] tables to copy it",
        ("storage", _) if data.include_storage => return None,
        ("storage", "objects") => {
            "object metadata without the files: the `storage` phase copies files and metadata together"
        }
        ("storage", _) => "Storage's own rows: buckets come with the `storage` phase",
        ("vault", _) => "encrypted with the source's root key: moved by [vault] mode",
        ("pgsodium", _) => "key material: moved only by [vault] mode = \"move-root-key\"",
        ("cron", "job") => {
            "pg_cron jobs come from the migration files (`schema` holds them until `cutover`)"
        }
        ("cron", _) => "pg_cron's run history of the source",
        ("net", _) => "pg_net's queue of the source's HTTP requests in flight",
        ("realtime", _) => {
            "Realtime's own state (subscriptions, broadcast messages), rebuilt by the platform"
        }
        ("supabase_functions", _) => "Database Webhooks' request history of the source",
        _ => "the platform's own table",
    })
}

/// The platform tables holding rows on the source that this run does not
/// copy, each with why; `None` when there are none.
async fn left_out_table(ctx: &mut Context) -> Result<Option<ReportTable>, PhaseError> {
    let source = ctx.source("data").await?;
    let mut table = ReportTable::new("Not copied, on purpose", &["Table", "Why"]);
    for t in source.platform_tables_with_rows().await? {
        if let Some(reason) = left_out_reason(ctx, &t) {
            table.push([t.to_string(), reason.to_string()]);
        }
    }
    Ok((!table.rows.is_empty()).then(|| {
        table.with_note("platform tables that hold rows on the source; the data copy leaves them out, and each line says what moves it instead")
    }))
}

/// The indexes and constraints of the copied tables that stay in place
/// during the load, and why; `None` when every one can be deferred. Shown by
/// `plan`, `preflight` and `data` alike.
pub(crate) fn kept_objects_table(kept: &[KeptObject]) -> Option<ReportTable> {
    if kept.is_empty() {
        return None;
    }
    let mut table = ReportTable::new(
        "Indexes and constraints kept in place",
        &["Table", "Kind", "Name", "Why"],
    );
    for k in kept {
        table.push([
            k.table.to_string(),
            k.kind.word().to_string(),
            k.name.clone(),
            k.reason.clone(),
        ]);
    }
    Some(table.with_note(
        "Not dropped before the load (the role may not, or other objects need them): these tables load with them in place, which is slower but loses nothing.",
    ))
}

/// A warning for foreign keys from copied tables to tables that are not
/// copied (most often `auth.users` with `include_auth` off): after the copy
/// they hold only if the target already has the referenced rows.
pub(crate) fn outgoing_keys_check(
    include_auth: bool,
    keys: &[OutgoingForeignKey],
) -> Option<CheckItem> {
    if keys.is_empty() {
        return None;
    }
    let to_auth = keys.iter().any(|k| k.referenced.schema == "auth");
    let list = keys
        .iter()
        .map(|k| format!("{} → {} ({})", k.table, k.referenced, k.name))
        .collect::<Vec<_>>()
        .join(", ");
    let item = CheckItem::new(
        "foreign-keys-outside-copy",
        "Copied tables reference only copied tables",
        Status::Warn,
        format!(
            "{} foreign keys reference tables that are not copied: {list}",
            keys.len()
        ),
    );
    Some(if to_auth && !include_auth {
        item.with_hint("the target must already have those users, or the keys end NOT VALID: set [data] include_auth = true to copy users and identities too")
    } else {
        item.with_hint("the target must already have the referenced rows, or the keys end NOT VALID: add those tables to the copy")
    })
}

/// What `plan` and `preflight` show of the load before it runs: the
/// indexes and constraints that will stay in place (read on the target when
/// it has every table, else on the source, whose migrations are the same) and
/// the foreign keys that leave the copy (read on the source).
pub(crate) async fn load_preview(
    ctx: &Context,
    source: Option<&Database>,
    target: Option<&Database>,
    names: &[QualifiedName],
) -> Result<(Option<ReportTable>, Option<CheckItem>), PhaseError> {
    let mut catalog = source;
    if let Some(t) = target {
        if t.existing_tables(names).await?.len() == names.len() {
            catalog = Some(t);
        }
    }
    let kept = match catalog {
        Some(db) => {
            let kept: Vec<KeptObject> = db
                .deferral_plan(names)
                .await?
                .kept
                .into_iter()
                .filter(|k| names.contains(&k.table))
                .collect();
            kept_objects_table(&kept)
        }
        None => None,
    };
    let outgoing = match source {
        Some(s) => outgoing_keys_check(
            ctx.manifest.data.include_auth,
            &s.outgoing_foreign_keys(names).await?,
        ),
        None => None,
    };
    Ok((kept, outgoing))
}

/// What `data` will move, decided before anything is written.
pub struct DataPlan {
    /// The source, read only.
    pub source: Database,
    /// The target, writable unless dry-run.
    pub target: Database,
    /// The tables to move, largest first.
    pub jobs: Vec<CopyJob>,
    /// Dry-run only: tables not on the target yet that `schema`, earlier in
    /// the same run, would create, with the file that creates each.
    pub created_by_schema: BTreeMap<QualifiedName, String>,
}

/// The tables to move, largest first, each checked to exist on the target
/// with every column the source has; with the two databases (the target
/// writable unless dry-run). Refuses before anything is written.
///
/// In a dry-run where `schema` comes first, a table that is not on the target
/// yet but that a migration file creates is planned from the source alone:
/// the dry-run plans what would happen, not what the target holds today.
pub async fn plan_jobs(ctx: &mut Context) -> Result<DataPlan, PhaseError> {
    let source = ctx.source("data").await?;
    let selection = select_tables(ctx, &source).await?;
    if !selection.missing.is_empty() {
        return Err(PhaseError::new(format!(
            "tables named in [data] tables do not exist on the source: {}",
            selection.missing.join(", ")
        ))
        .hint("fix the names (schema.table) in the manifest's [data] tables"));
    }
    let names: Vec<QualifiedName> = selection.copy.iter().map(|t| t.name.clone()).collect();
    let target = ctx.target("data", !ctx.settings.dry_run).await?;

    let on_target: BTreeSet<QualifiedName> =
        target.existing_tables(&names).await?.into_iter().collect();
    let mut created_by_schema = BTreeMap::new();
    let schema_first = super::dry_run_after(ctx, Phase::Data, &[Phase::Schema]);
    if schema_first && names.iter().any(|n| !on_target.contains(n)) {
        let dir = ctx.migration_dir()?;
        let created =
            crate::repo::migrations::created_tables(&dir.files.iter().collect::<Vec<_>>());
        for name in names.iter().filter(|n| !on_target.contains(n)) {
            if let Some(file) = created.get(name) {
                created_by_schema.insert(name.clone(), file.clone());
            }
        }
    }
    let absent: Vec<String> = names
        .iter()
        .filter(|n| !on_target.contains(n) && !created_by_schema.contains_key(n))
        .map(|n| n.to_string())
        .collect();
    if !absent.is_empty() {
        return Err(PhaseError::new(format!(
            "the target lacks tables to copy into: {}; nothing was copied",
            absent.join(", ")
        ))
        .hint(if schema_first {
            "no migration file creates them: add the migration that does, or exclude these tables in [data] exclude"
        } else {
            "run the `schema` phase first (or `migrate`), or exclude these tables in [data] exclude"
        }));
    }
    let mut jobs = Vec::new();
    for name in &names {
        let columns = source.copy_columns(name).await?;
        // A table `schema` creates later in this dry-run has no columns yet
        // to compare: it is planned from the source's.
        let target_columns: BTreeSet<String> = if created_by_schema.contains_key(name) {
            columns.iter().cloned().collect()
        } else {
            target.copy_columns(name).await?.into_iter().collect()
        };
        let missing: Vec<&String> = columns
            .iter()
            .filter(|c| !target_columns.contains(*c))
            .collect();
        if !missing.is_empty() {
            return Err(PhaseError::new(format!(
                "{name} on the target lacks columns the source has: {}; nothing was copied",
                missing.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
            ))
            .hint("the schemas differ: apply the missing migrations to the target (`schema`), then re-run `data`"));
        }
        let (partitioned, source_bytes) = source.table_shape(name).await?;
        jobs.push(CopyJob {
            emptied_by_delete: false,
            table: name.clone(),
            columns,
            partitioned,
            source_bytes,
        });
    }
    jobs.sort_by(|a, b| {
        b.source_bytes
            .cmp(&a.source_bytes)
            .then_with(|| a.table.cmp(&b.table))
    });

    Ok(DataPlan {
        source,
        target,
        jobs,
        created_by_schema,
    })
}

/// The tables a dry-run would move: name, columns, size on the source.
pub(crate) fn planned_tables(title: &str, jobs: &[CopyJob]) -> ReportTable {
    let mut table = ReportTable::new(title, &["Table", "Columns", "Size on source"]);
    for job in jobs {
        table.push([
            job.table.to_string(),
            job.columns.len().to_string(),
            bytes_text(job.source_bytes as u64),
        ]);
    }
    table
}

/// Refuses target tables that hold rows unless `--overwrite` is asked;
/// `nothing` says what was therefore not done.
pub(crate) fn refuse_rows(
    non_empty: &[QualifiedName],
    overwrite: bool,
    nothing: &str,
) -> Result<(), PhaseError> {
    if non_empty.is_empty() || overwrite {
        return Ok(());
    }
    Err(PhaseError::new(format!(
        "target tables already hold rows: {}; {nothing}",
        names_text(non_empty)
    ))
    .hint("back up the target (`backup`), then pass --overwrite (input `overwrite: true`) to replace exactly the copied tables, or empty them"))
}

/// Table names for people: `public.a, public.b`.
pub(crate) fn names_text(tables: &[QualifiedName]) -> String {
    tables
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A byte count for people: `512 B`, `1.5 KiB`.
pub(crate) fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A rate for people: `5.0 MiB/s`.
pub(crate) fn rate_text(bytes: u64, took: Duration) -> String {
    format!(
        "{}/s",
        bytes_text((bytes as f64 / took.as_secs_f64().max(0.001)) as u64)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes_text(512), "512 B");
        assert_eq!(bytes_text(1536), "1.5 KiB");
        assert_eq!(bytes_text(700 * 1024 * 1024), "700.0 MiB");
        assert_eq!(
            rate_text(10 * 1024 * 1024, Duration::from_secs(2)),
            "5.0 MiB/s"
        );
    }
}
