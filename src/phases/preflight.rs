//! `preflight`: the runbooks' pre-migration checklist, each box checked by a
//! program and shown with its evidence.
//!
//! Every item is evaluated even when an earlier one fails (unless it depends
//! on it), so one run shows everything that needs fixing.

use std::collections::{BTreeMap, BTreeSet};

use crate::cells;
use crate::context::Context;
use crate::github::GithubClient;
use crate::manifest::{QualifiedName, expand};
use crate::pg::{Database, ServerInfo, Side};
use crate::redact::DbUrl;
use crate::repo::migrations::MigrationDir;
use crate::report::{CheckItem, PhaseReport, ROW_COUNTS, ReportTable, Status, count, thousands};

use super::{PhaseError, TableSelection, select_tables};

/// Runs `preflight`.
pub async fn run(ctx: &mut Context) -> Result<PhaseReport, PhaseError> {
    let mut report = PhaseReport::new("preflight");

    // Access: read on the source, write on the target.
    let source = connect(ctx, Side::Source, &mut report).await;
    let target = connect(ctx, Side::Target, &mut report).await;
    let source_info = match &source {
        Some(db) => Some(db.server_info().await?),
        None => None,
    };
    let target_info = match &target {
        Some(db) => Some(db.server_info().await?),
        None => None,
    };
    report.check(distinct_environments(
        ctx,
        source_info.as_ref(),
        target_info.as_ref(),
    ));

    let selection = match &source {
        Some(db) => Some(select_tables(ctx, db).await?),
        None => None,
    };
    if let (Some(db), Some(info), Some(selection)) = (&source, &source_info, &selection) {
        report.check(source_readable(db, info, selection));
    }
    let ledger_ok = match (&target, &target_info) {
        (Some(db), Some(info)) => target_writable(ctx, db, info, &mut report).await,
        _ => false,
    };
    let sides = Sides {
        source: source.as_ref(),
        target: target.as_ref(),
    };
    if let Some(selection) = &selection {
        load_rows(ctx, sides, selection, &mut report).await?;
    }

    // Migration files and the source's history.
    migration_checks(ctx, source.as_ref(), &mut report).await?;

    if let Some(selection) = &selection {
        report.check(data_tables(selection));
        row_count_rows(ctx, sides, selection, ledger_ok, &mut report).await?;
    }
    platform_rows(ctx, &mut report).await?;

    report.conclude_from_checks();
    report.summary = summary(&report);
    Ok(report)
}

/// The two databases, when they answered.
#[derive(Clone, Copy)]
struct Sides<'a> {
    /// The source, read-only.
    source: Option<&'a Database>,
    /// The target.
    target: Option<&'a Database>,
}

/// Whether the source role can read every table to copy.
fn source_readable(db: &Database, info: &ServerInfo, selection: &TableSelection) -> CheckItem {
    let unreadable: Vec<String> = selection
        .copy
        .iter()
        .filter(|t| !t.can_select)
        .map(|t| t.name.to_string())
        .collect();
    if unreadable.is_empty() {
        return CheckItem::new(
            "source-readable",
            "Source database readable",
            Status::Pass,
            format!(
                "PostgreSQL {} at {} as `{}`; SELECT on all {} tables to copy",
                info.version,
                db.display,
                info.user,
                selection.copy.len()
            ),
        );
    }
    CheckItem::new(
        "source-readable",
        "Source database readable",
        Status::Fail,
        format!(
            "`{}` cannot SELECT from {}",
            info.user,
            unreadable.join(", ")
        ),
    )
    .with_hint("connect as a role that can read every table (Supabase: the `postgres` user)")
}

/// How the load will go: in replicate mode what logical replication needs
/// (the same rows `data` refuses on), then what stays in place and what
/// leaves the copy.
async fn load_rows(
    ctx: &Context,
    sides: Sides<'_>,
    selection: &TableSelection,
    report: &mut PhaseReport,
) -> Result<(), PhaseError> {
    let names: Vec<QualifiedName> = selection.copy.iter().map(|t| t.name.clone()).collect();
    if ctx.manifest.data.mode == crate::manifest::DataMode::Replicate {
        if let (Some(s), Some(t)) = (sides.source, sides.target) {
            for item in super::data::replicate::readiness(ctx, s, t, &names).await? {
                report.check(item);
            }
        }
    }
    if !selection.missing.is_empty() {
        return Ok(());
    }
    match super::data::load_preview(ctx, sides.source, sides.target, &names).await {
        Ok((kept, outgoing)) => {
            report.tables.extend(kept);
            if let Some(item) = outgoing {
                report.check(item);
            }
        }
        // A role that may not read the catalog it needs: a failed row,
        // and the checklist goes on.
        Err(e) => {
            let mut item = CheckItem::new(
                "load-plan",
                "Indexes and constraints the load may defer",
                Status::Fail,
                e.message,
            );
            item.hint = e.hint;
            report.check(item);
        }
    }
    Ok(())
}

/// Whether the tables `[data]` names exist, and what `exclude` names.
fn data_tables(selection: &TableSelection) -> CheckItem {
    const ID: &str = "data-tables";
    const TITLE: &str = "Tables named in [data] exist on the source";
    if !selection.missing.is_empty() {
        return CheckItem::new(
            ID,
            TITLE,
            Status::Fail,
            format!("not on the source: {}", selection.missing.join(", ")),
        )
        .with_hint("fix the names in [data] tables (schema.table), or create the tables first");
    }
    let mut evidence = format!("{} tables to copy", selection.copy.len());
    if !selection.excluded.is_empty() {
        evidence.push_str(&format!(", {} excluded", selection.excluded.len()));
    }
    if selection.unknown_excludes.is_empty() {
        return CheckItem::new(ID, TITLE, Status::Pass, evidence);
    }
    evidence.push_str(&format!(
        "; [data] exclude names no table: {}",
        selection.unknown_excludes.join(", ")
    ));
    CheckItem::new(ID, TITLE, Status::Warn, evidence)
        .with_hint("fix the names in [data] exclude (schema.table)")
}

/// The source's exact row counts (recorded in the ledger when it is
/// writable) and whether the target tables are empty.
async fn row_count_rows(
    ctx: &mut Context,
    sides: Sides<'_>,
    selection: &TableSelection,
    ledger_ok: bool,
    report: &mut PhaseReport,
) -> Result<(), PhaseError> {
    let Some(db) = sides.source else {
        return Ok(());
    };
    let names: Vec<QualifiedName> = selection.copy.iter().map(|t| t.name.clone()).collect();
    let counts = db.exact_row_counts(&names).await?;
    let total: i64 = counts.values().sum();
    let mut table =
        ReportTable::new("Source row counts", &["Table", "Source"]).merged_as(ROW_COUNTS);
    for (name, n) in &counts {
        table.push(cells![name.to_string(), *n]);
    }
    report
        .tables
        .push(table.with_note("Exact counts taken in one read-only snapshot of the source."));
    let recorded = if ctx.settings.dry_run {
        "not recorded (dry-run)".to_string()
    } else if ledger_ok {
        let ledger = ctx.ledger("preflight").await?.expect("not dry-run");
        ledger
            .record_snapshot(ctx.run_id, Side::Source, &counts, &Default::default())
            .await?;
        format!(
            "recorded in {}.snapshots for run {}",
            ctx.manifest.ledger.schema, ctx.run_id
        )
    } else {
        "not recorded: the target's ledger is not writable".to_string()
    };
    report.check(CheckItem::new(
        "source-row-counts",
        "Source row counts snapshot",
        if ledger_ok || ctx.settings.dry_run {
            Status::Pass
        } else {
            Status::Warn
        },
        format!(
            "{} rows in {} tables; {recorded}",
            thousands(total),
            counts.len()
        ),
    ));
    if let Some(target_db) = sides.target {
        report.check(target_empty(ctx, target_db, &names).await);
    }
    Ok(())
}

/// Whether the target's copies of the tables hold rows. A role that may not
/// look is a failed row, not the end of the checklist: the other rows still
/// say what else is wrong.
async fn target_empty(ctx: &Context, target: &Database, names: &[QualifiedName]) -> CheckItem {
    let looked = match target.existing_tables(names).await {
        Ok(existing) => target
            .exact_row_counts(&existing)
            .await
            .map(|counts| (existing, counts)),
        Err(e) => Err(e),
    };
    match looked {
        Ok((existing, counts)) => {
            target_empty_item(existing.len(), names.len(), &counts, ctx.settings.overwrite)
        }
        Err(e) => {
            let mut item = CheckItem::new(
                "target-empty",
                "Target tables empty",
                Status::Fail,
                e.to_string(),
            );
            item.hint = e.hint().map(str::to_string);
            item
        }
    }
}

/// The `target-empty` row from the target's row counts.
fn target_empty_item(
    existing: usize,
    tables: usize,
    counts: &BTreeMap<QualifiedName, i64>,
    overwrite: bool,
) -> CheckItem {
    let non_empty: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(t, n)| format!("{t} ({})", thousands(*n)))
        .collect();
    let row = |status, evidence: String| {
        CheckItem::new("target-empty", "Target tables empty", status, evidence)
    };
    if non_empty.is_empty() {
        row(
            Status::Pass,
            format!("{existing} of {tables} tables exist on the target, none holds rows"),
        )
    } else if overwrite {
        row(
            Status::Warn,
            format!(
                "hold rows, will be replaced (--overwrite): {}",
                non_empty.join(", ")
            ),
        )
    } else {
        row(Status::Warn, format!("already hold rows: {}", non_empty.join(", ")))
            .with_hint("`data` will refuse them: back up the target and pass overwrite (--overwrite), or empty them")
    }
}

/// The rows about secrets, settings, backups, parity, keys, functions and
/// the environment's protection.
async fn platform_rows(ctx: &mut Context, report: &mut PhaseReport) -> Result<(), PhaseError> {
    report.check(for_this_run(required_secrets(ctx), &ctx.settings.phases));
    report.check(forbidden_settings(ctx));
    for item in backup_checks(ctx).await {
        report.check(item);
    }
    super::parity::check(
        ctx,
        "preflight",
        report,
        super::parity::ParityUse::Preflight,
    )
    .await?;
    // The target's URL and client keys, for `[frontend.env]` and the
    // step's outputs, whenever the Management API inputs are given.
    if ctx.settings.target_project_ref.is_some() && ctx.settings.supabase_access_token.is_some() {
        if let Err(e) = super::project_keys::load(ctx, report).await {
            let mut item = CheckItem::new(
                "target-keys",
                "Target URL and client keys read",
                if super::project_keys::referenced(ctx) {
                    Status::Fail
                } else {
                    Status::Warn
                },
                e.message,
            );
            item.hint = e.hint;
            report.check(item);
        }
    }
    report.check(functions_present(ctx)?);
    report.check(environment_protection(ctx).await);
    Ok(())
}

/// In a list without the phases that use them (`preflight,backup,schema,
/// data,validate`), missing secret values are for a later run: a warning.
/// On its own, preflight is the whole release's checklist: a failure.
fn for_this_run(mut secrets: CheckItem, phases: &[super::Phase]) -> CheckItem {
    let users = [
        super::Phase::Secrets,
        super::Phase::Config,
        super::Phase::Cutover,
    ];
    if secrets.status == Status::Fail
        && phases.len() > 1
        && !phases.iter().any(|p| users.contains(p))
    {
        secrets.status = Status::Warn;
        secrets
            .evidence
            .push_str(" (needed by secrets, config and cutover, which this run does not include)");
    }
    secrets
}

/// The phase's summary: how many rows passed, failed, warned, were skipped.
fn summary(report: &PhaseReport) -> String {
    format!(
        "{}: {} passed, {} failed, {}, {} not applicable here.",
        count(report.checks.len(), "item checked", "items checked"),
        report.count_of(Status::Pass),
        report.count_of(Status::Fail),
        count(report.count_of(Status::Warn), "warning", "warnings"),
        report.count_of(Status::Skip),
    )
}

async fn connect(ctx: &mut Context, side: Side, report: &mut PhaseReport) -> Option<Database> {
    let (id, title) = match side {
        Side::Source => ("source-readable", "Source database readable"),
        Side::Target => ("target-writable", "Target database writable"),
    };
    let result = match side {
        Side::Source => ctx.source("preflight").await,
        Side::Target => ctx.target("preflight", true).await,
    };
    match result {
        Ok(db) => Some(db),
        Err(e) => {
            let mut item = CheckItem::new(id, title, Status::Fail, e.message);
            item.hint = e.hint;
            report.check(item);
            None
        }
    }
}

/// Why the target cannot take writes, if it cannot (a standby, read-only
/// transactions, no CREATE on the database for the ledger).
pub(crate) fn target_write_problem(info: &ServerInfo) -> Option<&'static str> {
    if info.in_recovery {
        Some("the server is a read-only standby (pg_is_in_recovery)")
    } else if info.read_only {
        Some("transactions are read only (default_transaction_read_only)")
    } else if !info.can_create {
        Some("the role may not create schemas in this database")
    } else {
        None
    }
}

async fn target_writable(
    ctx: &mut Context,
    db: &Database,
    info: &ServerInfo,
    report: &mut PhaseReport,
) -> bool {
    if let Some(problem) = target_write_problem(info) {
        report.check(
            CheckItem::new(
                "target-writable",
                "Target database writable",
                Status::Fail,
                format!(
                    "PostgreSQL {} at {} as `{}`: {problem}",
                    info.version, db.display, info.user
                ),
            )
            .with_hint("connect to the primary as the `postgres` user of the target project"),
        );
        return false;
    }
    let evidence = format!(
        "PostgreSQL {} at {} as `{}`",
        info.version, db.display, info.user
    );
    if ctx.settings.dry_run {
        report.check(CheckItem::new(
            "target-writable",
            "Target database writable",
            Status::Pass,
            format!("{evidence}; primary, CREATE allowed (ledger not written: dry-run)"),
        ));
        return false;
    }
    match ctx.ledger("preflight").await {
        Ok(_) => {
            report.check(CheckItem::new(
                "target-writable",
                "Target database writable",
                Status::Pass,
                format!(
                    "{evidence}; ledger schema `{}` created or found, run recorded",
                    ctx.manifest.ledger.schema
                ),
            ));
            true
        }
        Err(e) => {
            let mut item = CheckItem::new(
                "target-writable",
                "Target database writable",
                Status::Fail,
                format!("{evidence}; {}", e.message),
            );
            item.hint = e
                .hint
                .or(Some("grant the role CREATE on the database".into()));
            report.check(item);
            false
        }
    }
}

/// Host names that reach this machine.
fn normalise_host(host: &str) -> String {
    match host.to_ascii_lowercase().as_str() {
        "localhost" | "127.0.0.1" | "::1" | "[::1]" | "" => "loopback".into(),
        other => other.to_string(),
    }
}

fn url_parts(url: &str) -> Option<(String, u16, String)> {
    let u = url::Url::parse(url).ok()?;
    Some((
        normalise_host(u.host_str().unwrap_or("")),
        u.port().unwrap_or(5432),
        u.path().trim_start_matches('/').to_string(),
    ))
}

/// The "Source and target are different environments" row: project refs,
/// URLs (host, port, database) and, when both are connected, server identity.
pub(crate) fn distinct_environments(
    ctx: &Context,
    source: Option<&ServerInfo>,
    target: Option<&ServerInfo>,
) -> CheckItem {
    let title = "Source and target are different environments";
    let fail = |evidence: String| {
        CheckItem::new("distinct-environments", title, Status::Fail, evidence).with_hint(format!(
            "set {} to the target environment's database and {} to the source's; never migrate a database onto itself",
            ctx.settings.label("target-db-url"),
            ctx.settings.label("source-db-url")
        ))
    };
    let s = &ctx.settings;
    if let (Some(a), Some(b)) = (&s.source_project_ref, &s.target_project_ref) {
        if a == b {
            return fail(format!(
                "source-project-ref and target-project-ref are both `{a}`"
            ));
        }
    }
    let (Some(su), Some(tu)) = (
        s.source_db_url.as_ref().map(DbUrl::expose),
        s.target_db_url.as_ref().map(DbUrl::expose),
    ) else {
        return CheckItem::new(
            "distinct-environments",
            title,
            Status::Skip,
            "needs both source-db-url and target-db-url",
        );
    };
    if url_parts(su) == url_parts(tu) {
        return fail(format!(
            "source-db-url and target-db-url both point at {}",
            ctx.display(Side::Source).unwrap_or_default()
        ));
    }
    if let (Some(a), Some(b)) = (source, target) {
        if a.identity() == b.identity() {
            return fail(format!(
                "the two URLs reach the same database `{}` (same server start time and database oid)",
                a.database
            ));
        }
    }
    let refs = match (&s.source_project_ref, &s.target_project_ref) {
        (Some(a), Some(b)) => format!("; projects `{a}` → `{b}`"),
        _ => String::new(),
    };
    CheckItem::new(
        "distinct-environments",
        title,
        Status::Pass,
        format!(
            "{} → {}{}{refs}",
            ctx.display(Side::Source).unwrap_or_default(),
            ctx.display(Side::Target).unwrap_or_default(),
            if source.is_some() && target.is_some() {
                ", different databases by server identity"
            } else {
                ""
            }
        ),
    )
}

/// The "Migration files well-formed" row: named as the CLI expects, one
/// file per version, each readable UTF-8 text; with the folder when it reads.
pub(crate) fn migration_files_check(ctx: &Context) -> (CheckItem, Option<MigrationDir>) {
    let title = "Migration files well-formed";
    let dir = match ctx.migration_dir() {
        Ok(dir) => dir,
        Err(e) => {
            let mut item = CheckItem::new("migration-files", title, Status::Fail, e.message);
            item.hint = e.hint;
            return (item, None);
        }
    };
    let mut problems = Vec::new();
    if !dir.badly_named.is_empty() {
        problems.push(format!(
            "not named <digits>_<name>.sql (the Supabase CLI would skip them): {}",
            dir.badly_named.join(", ")
        ));
    }
    for (version, files) in &dir.duplicates {
        problems.push(format!("version {version} used by {}", files.join(" and ")));
    }
    let unreadable = crate::repo::migrations::unreadable(&dir.files.iter().collect::<Vec<_>>());
    let range = match (dir.files.first(), dir.files.last()) {
        (Some(a), Some(b)) => format!(" ({} … {})", a.version, b.version),
        _ => String::new(),
    };
    let item = if !unreadable.is_empty() {
        problems.extend(unreadable);
        CheckItem::new("migration-files", title, Status::Fail, problems.join("; "))
            .with_hint("re-save each named file as UTF-8 text; name files <version>_<name>.sql with a unique version")
    } else if problems.is_empty() {
        CheckItem::new(
            "migration-files",
            title,
            Status::Pass,
            format!(
                "{} in version order{range}, all UTF-8, no duplicate versions",
                count(dir.files.len(), "file", "files")
            ),
        )
    } else {
        CheckItem::new("migration-files", title, Status::Fail, problems.join("; "))
            .with_hint("rename files to <version>_<name>.sql with a unique version, e.g. 20250127000001_add_config.sql")
    };
    (item, Some(dir))
}

async fn migration_checks(
    ctx: &Context,
    source: Option<&Database>,
    report: &mut PhaseReport,
) -> Result<(), PhaseError> {
    let (item, dir) = migration_files_check(ctx);
    report.check(item);
    let Some(dir) = dir else {
        return Ok(());
    };

    let Some(source) = source else {
        return Ok(());
    };
    let title = "Source's applied migrations match the repository";
    let applied = source.applied_migrations().await?;
    let item = match applied {
        None => CheckItem::new(
            "source-migrations",
            title,
            Status::Warn,
            "the source has no supabase_migrations.schema_migrations: its schema was not built from migrations",
        )
        .with_hint("check the source's schema matches the repository before copying data"),
        Some(applied) => {
            let local: BTreeSet<&str> = dir.files.iter().map(|f| f.version.as_str()).collect();
            let remote: BTreeSet<&str> = applied.iter().map(|m| m.version.as_str()).collect();
            let missing_local: Vec<&str> = remote.difference(&local).copied().collect();
            let not_on_source: Vec<&str> = local.difference(&remote).copied().collect();
            if !missing_local.is_empty() {
                CheckItem::new(
                    "source-migrations",
                    title,
                    Status::Fail,
                    format!(
                        "applied on the source but no local file: {}",
                        missing_local.join(", ")
                    ),
                )
                .with_hint("pull the missing migration files into the repository (supabase db pull / git), or repair the source's history")
            } else if !not_on_source.is_empty() {
                CheckItem::new(
                    "source-migrations",
                    title,
                    Status::Warn,
                    format!(
                        "{} applied; {} local files not applied on the source: {}",
                        remote.len(),
                        not_on_source.len(),
                        not_on_source.join(", ")
                    ),
                )
                .with_hint("the source is behind the repository: apply them to the source first if its data depends on them")
            } else {
                CheckItem::new(
                    "source-migrations",
                    title,
                    Status::Pass,
                    format!("all {} versions applied on the source have files, none missing", remote.len()),
                )
            }
        }
    };
    report.check(item);
    Ok(())
}

pub(crate) fn required_secrets(ctx: &Context) -> CheckItem {
    required_values(
        ctx,
        RequiredValues {
            secrets: true,
            config: true,
            frontend: true,
        },
    )
}

/// Which of the manifest's variables a check asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequiredValues {
    /// `[secrets.required]` (the `secrets` phase).
    pub secrets: bool,
    /// `${VAR}`s in `[config] values` (the `config` phase).
    pub config: bool,
    /// `${VAR}`s in `[frontend.env]` (`cutover` and `rollback`).
    pub frontend: bool,
}

/// The "Required secret variables present" row for the variables `scope`
/// names.
pub(crate) fn required_values(ctx: &Context, scope: RequiredValues) -> CheckItem {
    let title = "Required secret variables present";
    let mut missing: Vec<String> = Vec::new();
    if scope.secrets {
        for (name, var) in &ctx.manifest.secrets.required {
            if ctx.env_var(var).is_none() {
                missing.push(format!("{name} (from ${var})"));
            }
        }
    }
    // `${VAR}` references in config values and frontend variables must resolve too.
    let lookup = |v: &str| ctx.env_var(v);
    if scope.config {
        for (key, value) in &ctx.manifest.config.values {
            if let Err(vars) = expand(value, lookup) {
                missing.push(format!("[config] {key} (from ${})", vars.join(", $")));
            }
        }
    }
    if let (Some(frontend), true) = (&ctx.manifest.frontend, scope.frontend) {
        for (name, value) in &frontend.env {
            if let Err(vars) = expand(value, lookup) {
                // `${supabase.*}` comes from the Management API, not the job.
                let vars: Vec<String> = vars
                    .into_iter()
                    .filter(|v| !v.starts_with("supabase."))
                    .collect();
                if !vars.is_empty() {
                    missing.push(format!("[frontend] {name} (from ${})", vars.join(", $")));
                }
            }
        }
    }
    let total = if scope.secrets {
        ctx.manifest.secrets.required.len()
    } else {
        0
    };
    if missing.is_empty() {
        CheckItem::new(
            "required-secrets",
            title,
            Status::Pass,
            format!(
                "{} and every ${{VAR}} reference have values (values not shown)",
                count(total, "secret", "secrets")
            ),
        )
    } else {
        CheckItem::new(
            "required-secrets",
            title,
            Status::Fail,
            format!("missing or empty: {}", missing.join(", ")),
        )
        .with_hint("set them in the step's `env:` from the GitHub environment's secrets, e.g. `GOOGLE_CLIENT_ID: ${{ secrets.GOOGLE_CLIENT_ID }}`")
    }
}

/// The runbook's "point-in-time recovery enabled" and "backup before the
/// switch": the source can be restored (PITR on, or a completed daily
/// backup), and the target will be restorable as the source was (PITR on the
/// target when it is on the source). Read from the Management API; named
/// restore points are internal to Supabase and not relied on.
async fn backup_checks(ctx: &Context) -> Vec<CheckItem> {
    const SOURCE: (&str, &str) = ("source-backups", "Source has a completed backup or PITR");
    const TARGET: (&str, &str) = (
        "target-pitr",
        "Target's point-in-time recovery matches the source's",
    );
    let s = &ctx.settings;
    if s.source_project_ref.is_none()
        || s.target_project_ref.is_none()
        || s.supabase_access_token.is_none()
    {
        return vec![CheckItem::new(
            SOURCE.0,
            SOURCE.1,
            Status::Skip,
            "needs source-project-ref, target-project-ref and supabase-access-token (read from the Management API)",
        )];
    }
    let client = match super::functions::management_client(ctx, "preflight", true) {
        Ok((client, _, _)) => client,
        Err(e) => {
            let mut item = CheckItem::new(SOURCE.0, SOURCE.1, Status::Fail, e.message);
            item.hint = e.hint;
            return vec![item];
        }
    };
    let (source_ref, target_ref) = (
        s.source_project_ref.as_deref().unwrap_or_default(),
        s.target_project_ref.as_deref().unwrap_or_default(),
    );
    let (source, target) = tokio::join!(
        client.list_backups(source_ref),
        client.list_backups(target_ref)
    );
    let unreadable = |e: crate::supabase::ApiError, (id, title): (&str, &str)| {
        CheckItem::new(id, title, Status::Warn, format!("could not read the backups: {e}"))
            .with_hint("the access token needs access to both projects (a personal access token of a member of both organisations)")
    };
    let mut items = Vec::new();
    match &source {
        Ok(b) if b.pitr_enabled => items.push(CheckItem::new(
            SOURCE.0,
            SOURCE.1,
            Status::Pass,
            "point-in-time recovery is on: the source can be restored to any moment before the switch",
        )),
        Ok(b) => match b.latest_completed() {
            Some(at) => items.push(CheckItem::new(
                SOURCE.0,
                SOURCE.1,
                Status::Pass,
                format!("latest completed daily backup {at}; PITR off"),
            )),
            None => items.push(
                CheckItem::new(SOURCE.0, SOURCE.1, Status::Fail, "no completed backup and PITR off: the source could not be restored after the switch")
                    .with_hint("wait for the daily backup (paid plans) or enable point-in-time recovery (Project Settings → Add-ons) before the cutover; `backup`'s pg_dump is a logical copy, not a platform restore"),
            ),
        },
        Err(e) => items.push(unreadable(e.clone(), SOURCE)),
    }
    match (&source, &target) {
        (Ok(src), Ok(tgt)) if src.pitr_enabled && !tgt.pitr_enabled => items.push(
            CheckItem::new(TARGET.0, TARGET.1, Status::Fail, "PITR is on for the source and off for the target: after the switch production could be restored only to a daily backup")
                .with_hint("enable point-in-time recovery on the target project (Project Settings → Add-ons → Point in time recovery) before the cutover"),
        ),
        (Ok(src), Ok(tgt)) => items.push(CheckItem::new(
            TARGET.0,
            TARGET.1,
            Status::Pass,
            match (src.pitr_enabled, tgt.pitr_enabled) {
                (true, true) => "PITR on for both projects",
                (false, true) => "PITR on for the target (off for the source)",
                _ => "PITR off for both projects: restores go to the daily backups",
            },
        )),
        (_, Err(e)) => items.push(unreadable(e.clone(), TARGET)),
        (Err(_), Ok(_)) => {}
    }
    items
}

fn forbidden_settings(ctx: &Context) -> CheckItem {
    let title = "Forbidden settings absent";
    let forbidden = &ctx.manifest.checks.forbidden;
    if forbidden.is_empty() {
        return CheckItem::new(
            "forbidden-settings",
            title,
            Status::Skip,
            "no [[checks.forbidden]] entries",
        );
    }
    let mut found = Vec::new();
    for setting in forbidden {
        let mut values: Vec<(String, String)> = Vec::new();
        if let Some(v) = ctx.env_var(&setting.name) {
            values.push(("job environment".into(), v));
        }
        if let Some(frontend) = &ctx.manifest.frontend {
            if let Some(raw) = frontend.env.get(&setting.name) {
                let v = expand(raw, |n| ctx.env_var(n)).unwrap_or_else(|_| raw.clone());
                values.push((format!("[frontend] env of {}", frontend.project), v));
            }
        }
        for (place, value) in values {
            let hit = match &setting.value {
                None => true,
                Some(bad) => value.trim().eq_ignore_ascii_case(bad.trim()),
            };
            if hit {
                found.push(format!("{}={} in the {place}", setting.name, value.trim()));
            }
        }
    }
    let names: Vec<String> = forbidden
        .iter()
        .map(|f| match &f.value {
            Some(v) => format!("{}={v}", f.name),
            None => f.name.clone(),
        })
        .collect();
    if found.is_empty() {
        CheckItem::new(
            "forbidden-settings",
            title,
            Status::Pass,
            format!("none of {} is set", names.join(", ")),
        )
    } else {
        CheckItem::new("forbidden-settings", title, Status::Fail, found.join("; "))
            .with_hint("remove the setting (or set it to false) in the production environment before migrating")
    }
}

fn functions_present(ctx: &Context) -> Result<CheckItem, PhaseError> {
    let title = "Edge Function folders present";
    let selection = ctx.function_selection()?;
    Ok(if selection.missing.is_empty() {
        let mut evidence = format!("{} functions to deploy", selection.deploy.len());
        if !selection.excluded.is_empty() {
            evidence.push_str(&format!(
                "; never deployed: {}",
                selection.excluded.join(", ")
            ));
        }
        CheckItem::new("functions-present", title, Status::Pass, evidence)
    } else {
        CheckItem::new(
            "functions-present",
            title,
            Status::Fail,
            format!(
                "listed in [functions] deploy but no folder with {}: {}",
                ctx.manifest.functions.entrypoint,
                selection.missing.join(", ")
            ),
        )
        .with_hint("fix the names in [functions] deploy, or add the folders")
    })
}

async fn environment_protection(ctx: &Context) -> CheckItem {
    let title = "Release environment requires reviewers";
    let name = ctx
        .manifest
        .gate
        .environment
        .clone()
        .unwrap_or_else(|| ctx.settings.environment.clone());
    let (Some(token), Some(repo)) = (&ctx.settings.github_token, &ctx.settings.github.repository)
    else {
        return CheckItem::new(
            "environment-protection",
            title,
            Status::Skip,
            "not checked: needs github-token and GITHUB_REPOSITORY (set in GitHub Actions)",
        );
    };
    let client = match GithubClient::new(&ctx.settings.github_api_url, token.expose(), repo) {
        Ok(c) => c,
        Err(e) => {
            return CheckItem::new(
                "environment-protection",
                title,
                Status::Fail,
                ctx.redactor.redact(&e.to_string()),
            );
        }
    };
    match client.environment(&name).await {
        Err(e) => CheckItem::new("environment-protection", title, Status::Fail, ctx.redactor.redact(&e.to_string()))
            .with_hint("give the job `permissions: actions: read` and check GITHUB_API_URL"),
        Ok(None) => CheckItem::new(
            "environment-protection",
            title,
            Status::Fail,
            format!("environment `{name}` does not exist in {repo}"),
        )
        .with_hint(
            "create it under Settings → Environments and add required reviewers, or set input `environment`",
        ),
        Ok(Some(env)) => match env.required_reviewers() {
            Some(rule) if rule.reviewers.len() as u32 >= ctx.manifest.gate.min_approvals => {
                let who: Vec<String> = rule.reviewers.iter().map(|r| r.display()).collect();
                CheckItem::new(
                    "environment-protection",
                    title,
                    Status::Pass,
                    format!(
                        "`{name}` requires review by {}{}",
                        who.join(", "),
                        if rule.prevent_self_review == Some(true) {
                            "; self-review prevented"
                        } else {
                            ""
                        }
                    ),
                )
            }
            Some(rule) => CheckItem::new(
                "environment-protection",
                title,
                Status::Fail,
                format!(
                    "`{name}` has {}; the manifest asks for at least {}",
                    count(rule.reviewers.len(), "required reviewer", "required reviewers"),
                    ctx.manifest.gate.min_approvals
                ),
            )
            .with_hint("add reviewers under Settings → Environments, or lower [gate] min_approvals"),
            None => CheckItem::new(
                "environment-protection",
                title,
                Status::Fail,
                format!("`{name}` has no required reviewers: anyone could run the cutover"),
            )
            .with_hint(format!("add required reviewers to `{name}` under Settings → Environments")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::TableInfo;

    fn name(n: &str) -> QualifiedName {
        QualifiedName::parse(n).unwrap()
    }

    #[test]
    fn data_tables_fail_on_missing_and_warn_on_unknown_excludes() {
        let mut selection = TableSelection {
            copy: vec![TableInfo {
                name: name("public.a"),
                rls_enabled: true,
                can_select: true,
            }],
            ..Default::default()
        };
        assert_eq!(data_tables(&selection).evidence, "1 tables to copy");
        selection.unknown_excludes.push("public.typo".into());
        let row = data_tables(&selection);
        assert_eq!(row.status, Status::Warn);
        assert!(
            row.evidence
                .ends_with("exclude names no table: public.typo")
        );
        selection.missing.push("public.gone".into());
        assert_eq!(data_tables(&selection).status, Status::Fail);
    }

    #[test]
    fn target_tables_holding_rows_warn() {
        let mut counts = BTreeMap::new();
        counts.insert(name("public.a"), 0);
        let row = target_empty_item(1, 2, &counts, false);
        assert_eq!(row.status, Status::Pass);
        assert_eq!(
            row.evidence,
            "1 of 2 tables exist on the target, none holds rows"
        );
        counts.insert(name("public.b"), 1200);
        let row = target_empty_item(2, 2, &counts, false);
        assert_eq!(row.evidence, "already hold rows: public.b (1,200)");
        assert!(row.hint.is_some());
        let row = target_empty_item(2, 2, &counts, true);
        assert!(row.hint.is_none());
    }

    #[test]
    fn missing_secrets_warn_when_the_run_does_not_use_them() {
        use super::super::Phase;
        let failed = || CheckItem::new("secrets", "Secrets", Status::Fail, "missing X");
        assert_eq!(
            for_this_run(failed(), &[Phase::Preflight]).status,
            Status::Fail
        );
        let later = for_this_run(failed(), &[Phase::Preflight, Phase::Backup]);
        assert_eq!(later.status, Status::Warn);
        assert_eq!(
            for_this_run(failed(), &[Phase::Preflight, Phase::Secrets]).status,
            Status::Fail
        );
    }

    #[test]
    fn loopback_names_are_one_host() {
        assert_eq!(
            url_parts("postgres://a@localhost/db"),
            url_parts("postgres://b:pw@127.0.0.1:5432/db")
        );
        assert_ne!(
            url_parts("postgres://a@localhost/db1"),
            url_parts("postgres://a@localhost/db2")
        );
    }
}
