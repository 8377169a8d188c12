//! `plan`: reads everything read-only and says what each phase would do.
//!
//! Both databases are opened with `default_transaction_read_only = on`, so
//! even a bug here could not write; the ledger is not touched.

use std::collections::{BTreeMap, BTreeSet};

use crate::cells;
use crate::context::Context;
use crate::manifest::{DataMode, QualifiedName, expand};
use crate::pg::release::live_since;
use crate::pg::{Database, Side};
use crate::repo::cron_jobs::scheduled_jobs;
use crate::repo::functions::FunctionSelection;
use crate::repo::migrations::{MigrationDir, MigrationFile};
use crate::report::Cell;
use crate::report::{
    CheckItem, MIGRATIONS, PhaseReport, ROW_COUNTS, ReportTable, Status, count, thousands,
};

use super::{PhaseError, TableSelection, select_tables};

/// Runs `plan`.
pub async fn run(ctx: &mut Context) -> Result<PhaseReport, PhaseError> {
    let mut report = PhaseReport::new("plan");
    let mut actions = ReportTable::new("What each phase would do", &["Phase", "Would do"]);

    let migrations = ctx.migration_dir()?;
    let functions = ctx.function_selection()?;
    let source = open_side(ctx, Side::Source, &mut report).await?;
    let target = open_side(ctx, Side::Target, &mut report).await?;

    actions.push(["preflight".to_string(), preflight_line(ctx, &migrations)]);
    let pending =
        schema_section(ctx, target.as_ref(), &migrations, &mut actions, &mut report).await?;
    let copied = data_section(
        ctx,
        source.as_ref(),
        target.as_ref(),
        &mut actions,
        &mut report,
    )
    .await?;
    let (line, storage_table) = super::storage::plan_line(ctx).await;
    actions.push(["storage".to_string(), line]);
    report.tables.extend(storage_table);
    let (line, function_table) = functions_section(ctx, &functions);
    actions.push(["functions".to_string(), line]);
    report.tables.push(function_table);
    let (line, secret_table) = secrets_section(ctx);
    actions.push(["secrets".to_string(), line]);
    report.tables.push(secret_table);
    let config_line = config_plan(ctx, target.as_ref(), &mut report).await?;
    actions.push(["config".to_string(), config_line]);
    actions.push([
        "validate".to_string(),
        validate_line(ctx, copied.unwrap_or(0)),
    ]);
    actions.push(["backup".to_string(), backup_line(ctx, copied.is_some())]);
    let cutover = cutover_line(ctx, source.as_ref(), target.as_ref()).await?;
    actions.push(["cutover".to_string(), cutover]);
    actions.push(["smoke".to_string(), smoke_line(ctx)]);
    actions.push(["monitor".to_string(), monitor_line(&ctx.manifest.monitor)]);
    actions.push(["rollback".to_string(), ROLLBACK_LINE.to_string()]);
    if let Some(f) = &ctx.manifest.frontend {
        let mut table = ReportTable::new(
            "Frontend variables",
            &["Variable", "Value (as in the manifest)"],
        );
        for (name, value) in &f.env {
            table.push([name.clone(), format!("`{value}`")]);
        }
        report.tables.push(table);
    }

    report.tables.insert(0, actions);
    report.summary = format!(
        "Read-only plan: {} pending, {} to copy, {}, {}. Nothing was written.",
        count(pending, "migration", "migrations"),
        count(copied.unwrap_or(0), "table", "tables"),
        count(functions.deploy.len(), "function", "functions"),
        count(ctx.manifest.secrets.required.len(), "secret", "secrets")
    );
    Ok(report)
}

/// What `rollback` would do.
const ROLLBACK_LINE: &str = "frontend back to the source, target guards off, the source's write freeze lifted (and a replication still running removed), source guards restored; restore the target from a backup only when asked";

/// The side's database, read-only, or a warning row when its URL is not given.
async fn open_side(
    ctx: &mut Context,
    side: Side,
    report: &mut PhaseReport,
) -> Result<Option<Database>, PhaseError> {
    if !ctx.has_url(side) {
        report.check(missing_url_item(ctx, side));
        return Ok(None);
    }
    Ok(Some(match side {
        Side::Source => ctx.source("plan").await?,
        Side::Target => ctx.target("plan", false).await?,
    }))
}

/// What `preflight` would check.
fn preflight_line(ctx: &Context, migrations: &MigrationDir) -> String {
    format!(
        "check access to both databases, that they differ, {} migration files, {} required secrets, {} forbidden settings, the `{}` environment's protection",
        migrations.files.len(),
        ctx.manifest.secrets.required.len(),
        ctx.manifest.checks.forbidden.len(),
        gate_environment(ctx)
    )
}

/// The migrations table, the pg_cron jobs they schedule and the schema
/// line. Returns how many migrations are pending.
async fn schema_section(
    ctx: &Context,
    target: Option<&Database>,
    migrations: &MigrationDir,
    actions: &mut ReportTable,
    report: &mut PhaseReport,
) -> Result<usize, PhaseError> {
    let applied = match target {
        Some(t) => t.applied_migrations().await?,
        None => None,
    };
    let applied: BTreeSet<String> = applied
        .iter()
        .flatten()
        .map(|m| m.version.clone())
        .collect();
    let states = migration_states(&migrations.files, target.map(|_| &applied));
    let pending = states.iter().filter(|(_, _, s)| *s == "pending").count();
    let mut migration_table =
        ReportTable::new(MIGRATIONS, &["Version", "Name", "Status"]).merged_as(MIGRATIONS);
    for (version, name, state) in states {
        migration_table.push([version, name, state.to_string()]);
    }
    let (cron_table, cron_line) = cron_plan(ctx, target, migrations, &applied).await?;
    let line = schema_line(target.is_some(), pending, migrations.files.len());
    actions.push(["schema".to_string(), format!("{line}{cron_line}")]);
    report.tables.push(migration_table);
    let not_applied: Vec<&MigrationFile> = migrations
        .files
        .iter()
        .filter(|f| !applied.contains(&f.version))
        .collect();
    if let Some(item) = super::schema::outside_transaction_item(ctx, &not_applied)? {
        report.check(item);
    }
    report.tables.extend(cron_table);
    Ok(pending)
}

/// Each migration file's state (`unknown` without a target, `applied` or
/// `pending`), then the applied versions with no local file.
fn migration_states(
    files: &[MigrationFile],
    applied: Option<&BTreeSet<String>>,
) -> Vec<(String, String, &'static str)> {
    let mut rows: Vec<(String, String, &'static str)> = files
        .iter()
        .map(|file| {
            let state = match applied {
                None => "unknown",
                Some(a) if a.contains(&file.version) => "applied",
                Some(_) => "pending",
            };
            (file.version.clone(), file.name.clone(), state)
        })
        .collect();
    let local: BTreeSet<&str> = files.iter().map(|f| f.version.as_str()).collect();
    for version in applied.into_iter().flatten() {
        if !local.contains(version.as_str()) {
            rows.push((version.clone(), "(no local file)".into(), "applied"));
        }
    }
    rows
}

/// What `schema` would apply.
fn schema_line(target_known: bool, pending: usize, files: usize) -> String {
    if !target_known {
        format!("apply the pending ones of {files} migration files (target unknown)")
    } else if pending == 0 {
        "nothing: every migration file is applied on the target".to_string()
    } else {
        format!(
            "apply {pending} pending migration files of {files} in version order, one transaction each"
        )
    }
}

/// The tables `data` would copy, with their rows on both sides. Returns how
/// many tables it copies (`None` when the source is unknown).
async fn data_section(
    ctx: &Context,
    source: Option<&Database>,
    target: Option<&Database>,
    actions: &mut ReportTable,
    report: &mut PhaseReport,
) -> Result<Option<usize>, PhaseError> {
    let Some(s) = source else {
        actions.push([
            "data".to_string(),
            "copy the user tables (source unknown)".to_string(),
        ]);
        return Ok(None);
    };
    let selection = select_tables(ctx, s).await?;
    for name in &selection.missing {
        report.check(
            CheckItem::new(
                "data-tables",
                "Tables named in [data] exist on the source",
                Status::Fail,
                format!("table `{name}` does not exist on the source"),
            )
            .with_hint("fix the name in [data] tables (schema.table) or remove it"),
        );
    }
    let (table_rows, data_line) = data_plan(ctx, source, target, &selection).await?;
    actions.push(["data".to_string(), data_line]);
    report.tables.push(table_rows);
    let names: Vec<QualifiedName> = selection.copy.iter().map(|t| t.name.clone()).collect();
    let (kept, outgoing) = super::data::load_preview(ctx, source, target, &names).await?;
    report.tables.extend(kept);
    if let Some(item) = outgoing {
        report.check(item);
    }
    Ok(Some(selection.copy.len()))
}

/// What `functions` would upload, as `deploy` decides it.
fn functions_section(ctx: &Context, functions: &FunctionSelection) -> (String, ReportTable) {
    let mut table = ReportTable::new(
        "Edge Functions",
        &["Function", "Entrypoint", "verify_jwt", "Files to upload"],
    );
    let cli = super::functions::cli_config(ctx).unwrap_or_default();
    for upload in super::functions::folder_uploads(ctx, &functions.deploy, &cli) {
        let files = match upload.bundle {
            Ok(b) => format!("{} (entrypoint, imports, import map)", b.files.len()),
            Err(e) => format!("**cannot bundle: {e}**"),
        };
        table.push([
            upload.slug.clone(),
            format!("{}/{}", upload.slug, ctx.manifest.functions.entrypoint),
            format!("{} ({})", upload.verify_jwt, upload.verify_source),
            files,
        ]);
    }
    let mut line = format!(
        "deploy {} functions through the Management API",
        functions.deploy.len()
    );
    if !functions.excluded.is_empty() {
        line.push_str(&format!("; never deploy {}", functions.excluded.join(", ")));
    }
    if !functions.missing.is_empty() {
        line.push_str(&format!(
            "; listed but not found: {}",
            functions.missing.join(", ")
        ));
    }
    (line, table)
}

/// The required secrets by name, whether the job's environment has each.
fn secrets_section(ctx: &Context) -> (String, ReportTable) {
    let mut table = ReportTable::new(
        "Secrets (names only)",
        &["Secret", "From variable", "Value present"],
    );
    let mut missing = 0;
    for (name, var) in &ctx.manifest.secrets.required {
        let present = ctx.env_var(var).is_some();
        if !present {
            missing += 1;
        }
        table.push([name.clone(), var.clone(), secret_state(name, present)]);
    }
    let line = format!(
        "set {} on the target{}",
        count(ctx.manifest.secrets.required.len(), "secret", "secrets"),
        if missing > 0 {
            format!("; {missing} values missing from the environment")
        } else {
            String::new()
        }
    );
    (line, table)
}

/// The "Value present" cell of a required secret.
fn secret_state(name: &str, present: bool) -> String {
    if name.starts_with("SUPABASE_") {
        "managed by Supabase, not set".to_string()
    } else if present {
        "yes".to_string()
    } else {
        "**no**".to_string()
    }
}

/// What `validate` would compare.
fn validate_line(ctx: &Context, copied: usize) -> String {
    format!(
        "compare row counts{} of {copied} tables, sequences, RLS, schema; run {} RLS probes",
        if ctx.manifest.checks.checksum {
            " and checksums"
        } else {
            ""
        },
        ctx.manifest.checks.rls_probes.len()
    )
}

/// What `backup` would dump.
fn backup_line(ctx: &Context, source_known: bool) -> String {
    format!(
        "pg_dump -Fc of the source{} into {}/, with sha256 of each file",
        if source_known {
            " (and of the target when it holds rows)"
        } else {
            ""
        },
        ctx.manifest.backup.dir.display()
    )
}

/// What `cutover` would require and do.
async fn cutover_line(
    ctx: &mut Context,
    source: Option<&Database>,
    target: Option<&Database>,
) -> Result<String, PhaseError> {
    let guards = guard_plan(ctx, source, target).await?;
    let lints = match target {
        Some(_) => lints_clause(&super::lints::assess_target(ctx, "plan").await?),
        None => "no unaccepted ERROR-level security lint (target unknown)".to_string(),
    };
    let gate = &ctx.manifest.gate;
    let frontend = match &ctx.manifest.frontend {
        Some(f) => format!(
            "point {} project `{}` at the target ({} variables)",
            f.provider,
            f.project,
            f.env.len()
        ),
        None => "no [frontend] section: no frontend switch".to_string(),
    };
    let data = match ctx.manifest.data.mode {
        DataMode::Copy => {
            "freeze writes on the copied source tables and prove them unchanged since the copy (counts and checksums), or block"
        }
        DataMode::Replicate => {
            "check the replication is streaming and within the lag limit, freeze writes on the source, wait for a fence on the target and compare exact counts; retire the replication after the smoke checks"
        }
    };
    Ok(format!(
        "require environment `{}` with ≥ {}{}, this run approved, a passing validate newer than {} h, {lints}; then {data}; set the sequences; {guards}; {frontend}",
        gate_environment(ctx),
        count(gate.min_approvals, "reviewer", "reviewers"),
        if gate.four_eyes {
            ", approver ≠ initiator"
        } else {
            ""
        },
        gate.validation_max_age_hours,
    ))
}

/// The lint clause of the cutover line, with the target's findings now.
fn lints_clause(a: &super::lints::Assessment) -> String {
    format!(
        "no unaccepted ERROR-level security lint (the target has {} now, {} WARN, {} accepted)",
        a.findings.iter().filter(|f| f.blocks()).count(),
        a.findings
            .iter()
            .filter(|f| f.finding.level == crate::pg::lints::LintLevel::Warn)
            .count(),
        a.findings.iter().filter(|f| f.accepted.is_some()).count()
    )
}

/// What `smoke` would check.
fn smoke_line(ctx: &Context) -> String {
    let routes = ctx.manifest.frontend.as_ref().map_or(0, |f| f.routes.len());
    format!(
        "check {routes} routes and {} function invocations",
        ctx.manifest.functions.smoke.len()
    )
}

/// What `monitor` would watch.
fn monitor_line(m: &crate::manifest::MonitorSection) -> String {
    format!(
        "{}watch the target for {} (a poll every {} s, a baseline first): API error rate ≤ {} %, Edge Function 5xx ≤ {}, routes within {} ms{}",
        if m.after_cutover {
            "after cutover, "
        } else {
            ""
        },
        crate::report::human_duration(m.window_seconds * 1000),
        m.interval_seconds,
        m.max_api_error_rate_percent,
        m.max_function_5xx,
        m.max_route_latency_ms,
        if m.rollback_on_failure {
            "; roll back when a threshold is passed"
        } else {
            ""
        }
    )
}

/// The pg_cron jobs the pending migrations schedule (all files when the
/// target is unknown), and what `schema` will do with them: the table, and
/// a clause for the schema row ("" when they schedule none).
async fn cron_plan(
    ctx: &Context,
    target: Option<&Database>,
    migrations: &MigrationDir,
    applied: &BTreeSet<String>,
) -> Result<(Option<ReportTable>, String), PhaseError> {
    let mut found = Vec::new();
    for file in migrations
        .files
        .iter()
        .filter(|f| !applied.contains(&f.version))
    {
        let Ok(text) = std::fs::read_to_string(&file.path) else {
            continue;
        };
        let shown = file
            .path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        for job in scheduled_jobs(&text) {
            found.push((shown.clone(), job));
        }
    }
    if found.is_empty() {
        return Ok((None, String::new()));
    }
    let (fate, clause) = match target {
        _ if !ctx.manifest.schema.hold_cron_jobs => (
            "runs at once: [schema] hold_cron_jobs = false".to_string(),
            "leave them running ([schema] hold_cron_jobs = false)".to_string(),
        ),
        None => (
            "paused by `schema` until `cutover` (unless the target is live)".to_string(),
            "pause them until cutover".to_string(),
        ),
        Some(t) => match live_since(t, &ctx.manifest.ledger.schema).await? {
            Some((run, _)) => (
                format!("runs at once: the target is live (cutover run {run})"),
                "leave them running (the target is live)".to_string(),
            ),
            None if !t.has_pg_cron().await? => (
                "pg_cron is not installed in the target database".to_string(),
                "nothing to pause (no pg_cron on the target)".to_string(),
            ),
            None => (
                "paused by `schema` until `cutover`".to_string(),
                "pause them until cutover".to_string(),
            ),
        },
    };
    let mut table = ReportTable::new(
        "pg_cron jobs the pending migrations schedule",
        &["File", "Line", "Job", "Schedule", "Before cutover"],
    );
    for (file, job) in &found {
        table.push([
            file.clone(),
            job.line.to_string(),
            job.name.clone().unwrap_or_else(|| "(unnamed)".into()),
            job.schedule
                .as_deref()
                .map(|s| format!("`{s}`"))
                .unwrap_or_else(|| "(computed)".into()),
            if job.active {
                fate.clone()
            } else {
                "scheduled paused (active := false)".into()
            },
        ]);
    }
    Ok((
        Some(table),
        format!("; they schedule {} pg_cron job(s): {clause}", found.len()),
    ))
}

fn gate_environment(ctx: &Context) -> String {
    ctx.manifest
        .gate
        .environment
        .clone()
        .unwrap_or_else(|| ctx.settings.environment.clone())
}

fn missing_url_item(ctx: &Context, side: Side) -> CheckItem {
    CheckItem::new(
        &format!("{}-url", side.name()),
        &format!("{} database given", capitalise(side.name())),
        Status::Warn,
        format!(
            "{} is not set: the plan cannot look at the {} database",
            ctx.settings.label(side.url_input()),
            side.name()
        ),
    )
    .with_hint(format!("pass {}", ctx.settings.label(side.url_input())))
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

async fn data_plan(
    ctx: &Context,
    source: Option<&Database>,
    target: Option<&Database>,
    selection: &TableSelection,
) -> Result<(ReportTable, String), PhaseError> {
    let names: Vec<QualifiedName> = selection.copy.iter().map(|t| t.name.clone()).collect();
    let source_counts = match source {
        Some(s) => s.exact_row_counts(&names).await?,
        None => BTreeMap::new(),
    };
    let (target_existing, target_counts) = match target {
        Some(t) => {
            let existing = t.existing_tables(&names).await?;
            let counts = t.exact_row_counts(&existing).await?;
            (Some(existing), counts)
        }
        None => (None, BTreeMap::new()),
    };
    let mut table = ReportTable::new(
        "Tables to copy",
        &["Table", "Source", "Target", "RLS on source"],
    )
    .merged_as(ROW_COUNTS);
    let mut total = 0i64;
    let mut non_empty = 0usize;
    for info in &selection.copy {
        let rows = source_counts.get(&info.name).copied().unwrap_or(0);
        total += rows;
        let target_cell = match (&target_existing, target_counts.get(&info.name)) {
            (None, _) => Cell::from("unknown"),
            (Some(_), Some(n)) => {
                if *n > 0 {
                    non_empty += 1;
                }
                Cell::Count(*n)
            }
            (Some(_), None) => "table not created yet".into(),
        };
        table.push(cells![
            info.name.to_string(),
            rows,
            target_cell,
            if info.rls_enabled { "on" } else { "off" },
        ]);
    }
    if let Some(note) = data_note(ctx.manifest.data.include_auth_sessions, selection) {
        table = table.with_note(note);
    }
    let line = data_line(ctx, selection.copy.len(), total, non_empty);
    Ok((table, line))
}

/// The note under the tables to copy: the tables the manifest or the auth
/// scope leaves out.
fn data_note(include_auth_sessions: bool, selection: &TableSelection) -> Option<String> {
    let join = |names: &[QualifiedName]| {
        names
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut notes = Vec::new();
    if !selection.excluded.is_empty() {
        notes.push(format!(
            "Excluded by the manifest: {}.",
            join(&selection.excluded)
        ));
    }
    if !selection.auth_left_out.is_empty() {
        notes.push(format!(
            "Auth tables not copied ({}): {}.",
            if include_auth_sessions {
                "GoTrue's own bookkeeping"
            } else {
                "sessions and tokens need include_auth_sessions; the rest is GoTrue's own bookkeeping"
            },
            join(&selection.auth_left_out)
        ));
    }
    (!notes.is_empty()).then(|| notes.join(" "))
}

/// What `data` would do with `tables` tables holding `rows` rows, when
/// `non_empty` target tables already hold rows.
fn data_line(ctx: &Context, tables: usize, rows: i64, non_empty: usize) -> String {
    let data = &ctx.manifest.data;
    let mut line = match data.mode {
        DataMode::Copy => format!(
            "copy {tables} tables ({} rows) in one source snapshot, {} at a time",
            thousands(rows),
            data.parallel
        ),
        DataMode::Replicate => format!(
            "replicate {tables} tables ({} rows) through a publication on the source and a subscription on the target (logical replication, server to server); return once synced and the lag is under {} s",
            thousands(rows),
            data.max_lag_seconds
        ),
    };
    if non_empty == 0 {
        return line;
    }
    if ctx.settings.overwrite {
        line.push_str(&format!(
            "; truncate {non_empty} target tables that hold rows (--overwrite)"
        ));
    } else {
        line.push_str(&format!(
            "; would refuse: {non_empty} target tables already hold rows (pass --overwrite to replace them)"
        ));
    }
    line
}

/// What `config` would set: each key now and as it would be (secret values
/// masked as `config` shows them).
async fn config_plan(
    ctx: &Context,
    target: Option<&Database>,
    report: &mut PhaseReport,
) -> Result<String, PhaseError> {
    let config = &ctx.manifest.config;
    if config.values.is_empty() {
        return Ok("no [config] values: nothing to set".into());
    }
    let (table_name, current) = config_values(ctx, target).await?;
    let mut table = ReportTable::new(
        &format!("Configuration in {table_name}"),
        &["Key", "Target now", "Would be"],
    );
    let mut changes = 0;
    for (key, wanted) in &config.values {
        let secret = super::config::secret_key(config, key);
        let now = current.as_ref().and_then(|c| c.get(key)).cloned().flatten();
        let now_cell = match &current {
            None => "table not on target yet".to_string(),
            Some(c) if !c.contains_key(key) => "(missing key)".to_string(),
            Some(_) => super::config::shown(now.as_deref(), secret),
        };
        let wanted_cell = match expand(wanted, |v| ctx.env_var(v)) {
            Ok(v) => {
                changes += usize::from(now.as_deref() != Some(v.as_str()));
                super::config::shown(Some(&v), secret)
            }
            Err(missing) => format!("**unset variable {}**", missing.join(", ")),
        };
        table.push([key.clone(), now_cell, wanted_cell]);
    }
    report.tables.push(table);
    Ok(format!(
        "set {} keys in {table_name} ({changes} would change)",
        config.values.len()
    ))
}

/// The `[config]` table's name and, when `db` is given and has it, its
/// values.
async fn config_values(
    ctx: &Context,
    db: Option<&Database>,
) -> Result<(QualifiedName, Option<BTreeMap<String, Option<String>>>), PhaseError> {
    let config = &ctx.manifest.config;
    let table_name = QualifiedName::parse(&config.table).map_err(PhaseError::new)?;
    let values = match db {
        Some(db) => {
            db.config_values(&table_name, &config.key_column, &config.value_column)
                .await?
        }
        None => None,
    };
    Ok((table_name, values))
}

async fn guard_plan(
    ctx: &Context,
    source: Option<&Database>,
    target: Option<&Database>,
) -> Result<String, PhaseError> {
    let guards = &ctx.manifest.guards;
    if guards.switches.is_empty() && guards.cron_jobs.is_empty() {
        return Ok("no [guards]".into());
    }
    let mut parts = Vec::new();
    if !guards.switches.is_empty() {
        let (_, source_now) = config_values(ctx, source).await?;
        for switch in &guards.switches {
            let now = source_now
                .as_ref()
                .and_then(|c| c.get(&switch.key).cloned().flatten())
                .unwrap_or_else(|| "?".into());
            parts.push(format!(
                "source `{}` {now} → {}, target → {}",
                switch.key, switch.off, switch.on
            ));
        }
    }
    if !guards.cron_jobs.is_empty() {
        let jobs = match source {
            Some(s) => s.cron_jobs().await?,
            None => None,
        };
        let known = |name: &String| match &jobs {
            None => format!("`{name}` (no pg_cron on source)"),
            Some(j) => match j.get(name) {
                Some(true) => format!("`{name}` (active)"),
                Some(false) => format!("`{name}` (already paused)"),
                None => format!("`{name}` (not found)"),
            },
        };
        parts.push(format!(
            "pause pg_cron jobs {} in the source, resume them in the target",
            guards
                .cron_jobs
                .iter()
                .map(known)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let _ = target;
    Ok(format!("guards: {}", parts.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn file(version: &str) -> MigrationFile {
        MigrationFile {
            version: version.into(),
            name: format!("m{version}"),
            path: PathBuf::from(format!("{version}_m{version}.sql")),
            checksum: String::new(),
        }
    }

    #[test]
    fn migrations_without_a_target_are_unknown() {
        let rows = migration_states(&[file("1"), file("2")], None);
        assert!(rows.iter().all(|(_, _, s)| *s == "unknown"));
    }

    #[test]
    fn migrations_are_applied_pending_or_remote_only() {
        let applied: BTreeSet<String> = ["1".to_string(), "9".to_string()].into();
        let rows = migration_states(&[file("1"), file("2")], Some(&applied));
        let states: Vec<(&str, &str)> = rows.iter().map(|(v, _, s)| (v.as_str(), *s)).collect();
        assert_eq!(
            states,
            [("1", "applied"), ("2", "pending"), ("9", "applied")]
        );
        assert_eq!(rows[2].1, "(no local file)");
    }

    #[test]
    fn schema_lines() {
        assert!(schema_line(false, 0, 3).ends_with("(target unknown)"));
        assert_eq!(
            schema_line(true, 0, 3),
            "nothing: every migration file is applied on the target"
        );
        assert!(schema_line(true, 2, 3).starts_with("apply 2 pending migration files of 3"));
    }

    #[test]
    fn secret_states() {
        assert_eq!(
            secret_state("SUPABASE_URL", false),
            "managed by Supabase, not set"
        );
        assert_eq!(secret_state("STRIPE_KEY", true), "yes");
        assert_eq!(secret_state("STRIPE_KEY", false), "**no**");
    }

    #[test]
    fn data_notes_name_what_is_left_out() {
        let mut selection = TableSelection::default();
        assert_eq!(data_note(false, &selection), None);
        selection
            .excluded
            .push(QualifiedName::parse("public.logs").unwrap());
        assert_eq!(
            data_note(false, &selection).as_deref(),
            Some("Excluded by the manifest: public.logs.")
        );
    }

    #[test]
    fn capitalise_the_first_letter() {
        assert_eq!(capitalise("source"), "Source");
        assert_eq!(capitalise(""), "");
    }
}
