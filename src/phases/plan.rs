//! `plan`: reads everything read-only and says what each phase would do.
//!
//! Both databases are opened with `default_transaction_read_only = on`, so
//! even a bug here could not write; the ledger is not touched.

use std::collections::{BTreeMap, BTreeSet};

use crate::context::{Context, name_looks_secret};
use crate::manifest::{QualifiedName, expand};
use crate::pg::release::live_since;
use crate::pg::{Database, Side};
use crate::redact::MASK;
use crate::repo::cron_jobs::scheduled_jobs;
use crate::repo::migrations::MigrationDir;
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

    let source = if ctx.has_url(Side::Source) {
        Some(ctx.source("plan").await?)
    } else {
        report.check(missing_url_item(ctx, Side::Source));
        None
    };
    let target = if ctx.has_url(Side::Target) {
        Some(ctx.target("plan", false).await?)
    } else {
        report.check(missing_url_item(ctx, Side::Target));
        None
    };

    // --- preflight
    actions.push([
        "preflight".to_string(),
        format!(
            "check access to both databases, that they differ, {} migration files, {} required secrets, {} forbidden settings, the `{}` environment's protection",
            migrations.files.len(),
            ctx.manifest.secrets.required.len(),
            ctx.manifest.checks.forbidden.len(),
            gate_environment(ctx)
        ),
    ]);

    // --- schema
    let applied = match &target {
        Some(t) => t.applied_migrations().await?,
        None => None,
    };
    let applied_versions: BTreeSet<String> = applied
        .iter()
        .flatten()
        .map(|m| m.version.clone())
        .collect();
    let mut migration_table =
        ReportTable::new(MIGRATIONS, &["Version", "Name", "Status"]).merged_as(MIGRATIONS);
    let mut pending = 0;
    for file in &migrations.files {
        let state = if target.is_none() {
            "unknown"
        } else if applied_versions.contains(&file.version) {
            "applied"
        } else {
            pending += 1;
            "pending"
        };
        migration_table.push([file.version.clone(), file.name.clone(), state.to_string()]);
    }
    let local_versions: BTreeSet<&str> = migrations
        .files
        .iter()
        .map(|f| f.version.as_str())
        .collect();
    for version in applied_versions
        .iter()
        .filter(|v| !local_versions.contains(v.as_str()))
    {
        migration_table.push([version.clone(), "(no local file)".into(), "applied".into()]);
    }
    let (cron_table, cron_line) =
        cron_plan(ctx, target.as_ref(), &migrations, &applied_versions).await?;
    actions.push([
        "schema".to_string(),
        format!("{}{cron_line}", if target.is_none() {
            format!("apply the pending ones of {} migration files (target unknown)", migrations.files.len())
        } else if pending == 0 {
            "nothing: every migration file is applied on the target".to_string()
        } else {
            format!(
                "apply {pending} pending migration files of {} in version order, one transaction each",
                migrations.files.len()
            )
        }),
    ]);
    report.tables.push(migration_table);
    let not_applied: Vec<&crate::repo::migrations::MigrationFile> = migrations
        .files
        .iter()
        .filter(|f| !applied_versions.contains(&f.version))
        .collect();
    if let Some(item) = super::schema::outside_transaction_item(ctx, &not_applied)? {
        report.check(item);
    }
    if let Some(table) = cron_table {
        report.tables.push(table);
    }

    // --- data
    let selection = match &source {
        Some(s) => Some(select_tables(ctx, s).await?),
        None => None,
    };
    if let Some(selection) = &selection {
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
        let (table_rows, data_line) =
            data_plan(ctx, source.as_ref(), target.as_ref(), selection).await?;
        actions.push(["data".to_string(), data_line]);
        report.tables.push(table_rows);
        let names: Vec<QualifiedName> = selection.copy.iter().map(|t| t.name.clone()).collect();
        let (kept, outgoing) =
            super::data::load_preview(ctx, source.as_ref(), target.as_ref(), &names).await?;
        report.tables.extend(kept);
        if let Some(item) = outgoing {
            report.check(item);
        }
    } else {
        actions.push([
            "data".to_string(),
            "copy the user tables (source unknown)".to_string(),
        ]);
    }

    // --- storage
    let (line, storage_table) = super::storage::plan_line(ctx).await;
    actions.push(["storage".to_string(), line]);
    report.tables.extend(storage_table);

    // --- functions
    let mut function_table = ReportTable::new(
        "Edge Functions",
        &["Function", "Entrypoint", "verify_jwt", "Files to upload"],
    );
    let cli = super::functions::cli_config(ctx).unwrap_or_default();
    for f in &functions.deploy {
        let (verify, source) = super::functions::verify_jwt(ctx, &f.slug, cli.get(&f.slug));
        let files = match super::functions::bundle_of(ctx, f, cli.get(&f.slug)) {
            Ok(b) => format!("{} (entrypoint, imports, import map)", b.files.len()),
            Err(e) => format!("**cannot bundle: {e}**"),
        };
        function_table.push([
            f.slug.clone(),
            format!("{}/{}", f.slug, ctx.manifest.functions.entrypoint),
            format!("{verify} ({source})"),
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
    actions.push(["functions".to_string(), line]);
    report.tables.push(function_table);

    // --- secrets
    let mut secret_table = ReportTable::new(
        "Secrets (names only)",
        &["Secret", "From variable", "Value present"],
    );
    let mut missing_secrets = 0;
    for (name, var) in &ctx.manifest.secrets.required {
        let present = ctx.env_var(var).is_some();
        if !present {
            missing_secrets += 1;
        }
        let state = if name.starts_with("SUPABASE_") {
            "managed by Supabase, not set".to_string()
        } else if present {
            "yes".to_string()
        } else {
            "**no**".to_string()
        };
        secret_table.push([name.clone(), var.clone(), state]);
    }
    actions.push([
        "secrets".to_string(),
        format!(
            "set {} on the target{}",
            crate::report::count(ctx.manifest.secrets.required.len(), "secret", "secrets"),
            if missing_secrets > 0 {
                format!("; {missing_secrets} values missing from the environment")
            } else {
                String::new()
            }
        ),
    ]);
    report.tables.push(secret_table);

    // --- config
    let config_line = config_plan(ctx, target.as_ref(), &mut report).await?;
    actions.push(["config".to_string(), config_line]);

    // --- validate
    let copied = selection.as_ref().map_or(0, |s| s.copy.len());
    actions.push([
        "validate".to_string(),
        format!(
            "compare row counts{} of {copied} tables, sequences, RLS, schema; run {} RLS probes",
            if ctx.manifest.checks.checksum {
                " and checksums"
            } else {
                ""
            },
            ctx.manifest.checks.rls_probes.len()
        ),
    ]);

    // --- backup
    actions.push([
        "backup".to_string(),
        format!(
            "pg_dump -Fc of the source{} into {}/, with sha256 of each file",
            if selection.is_some() {
                " (and of the target when it holds rows)"
            } else {
                ""
            },
            ctx.manifest.backup.dir.display()
        ),
    ]);

    // --- cutover, smoke, rollback
    let guards = guard_plan(ctx, source.as_ref(), target.as_ref()).await?;
    let lints = match &target {
        Some(_) => {
            let a = super::lints::assess_target(ctx, "plan").await?;
            let errors = a.findings.iter().filter(|f| f.blocks()).count();
            format!(
                "no unaccepted ERROR-level security lint (the target has {} now, {} WARN, {} accepted)",
                errors,
                a.findings
                    .iter()
                    .filter(|f| f.finding.level == crate::pg::lints::LintLevel::Warn)
                    .count(),
                a.findings.iter().filter(|f| f.accepted.is_some()).count()
            )
        }
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
    actions.push([
        "cutover".to_string(),
        format!(
            "require environment `{}` with ≥ {}{}, this run approved, a passing validate newer than {} h, {lints}; then {}; set the sequences; {}; {}",
            gate_environment(ctx),
            count(gate.min_approvals, "reviewer", "reviewers"),
            if gate.four_eyes { ", approver ≠ initiator" } else { "" },
            gate.validation_max_age_hours,
            match ctx.manifest.data.mode {
                crate::manifest::DataMode::Copy => "freeze writes on the copied source tables and prove them unchanged since the copy (counts and checksums), or block",
                crate::manifest::DataMode::Replicate => "check the replication is streaming and within the lag limit, freeze writes on the source, wait for a fence on the target and compare exact counts; retire the replication after the smoke checks",
            },
            guards,
            frontend
        ),
    ]);
    let routes = ctx.manifest.frontend.as_ref().map_or(0, |f| f.routes.len());
    actions.push([
        "smoke".to_string(),
        format!(
            "check {routes} routes and {} function invocations",
            ctx.manifest.functions.smoke.len()
        ),
    ]);
    let m = &ctx.manifest.monitor;
    actions.push([
        "monitor".to_string(),
        format!(
            "{}watch the target for {} (a poll every {} s, a baseline first): API error rate ≤ {} %, Edge Function 5xx ≤ {}, routes within {} ms{}",
            if m.after_cutover { "after cutover, " } else { "" },
            crate::report::human_duration(m.window_seconds * 1000),
            m.interval_seconds,
            m.max_api_error_rate_percent,
            m.max_function_5xx,
            m.max_route_latency_ms,
            if m.rollback_on_failure { "; roll back when a threshold is passed" } else { "" }
        ),
    ]);
    actions.push([
        "rollback".to_string(),
        "frontend back to the source, target guards off, the source's write freeze lifted (and a replication still running removed), source guards restored; restore the target from a backup only when asked".to_string(),
    ]);
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
        count(copied, "table", "tables"),
        count(functions.deploy.len(), "function", "functions"),
        count(ctx.manifest.secrets.required.len(), "secret", "secrets")
    );
    Ok(report)
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
    let mut non_empty = 0;
    for info in &selection.copy {
        let rows = source_counts.get(&info.name).copied().unwrap_or(0);
        total += rows;
        let target_cell = match (&target_existing, target_counts.get(&info.name)) {
            (None, _) => "unknown".to_string(),
            (Some(_), Some(n)) => {
                if *n > 0 {
                    non_empty += 1;
                }
                thousands(*n)
            }
            (Some(_), None) => "table not created yet".to_string(),
        };
        table.push([
            info.name.to_string(),
            thousands(rows),
            target_cell,
            if info.rls_enabled { "on" } else { "off" }.to_string(),
        ]);
    }
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
            if ctx.manifest.data.include_auth_sessions {
                "GoTrue's own bookkeeping"
            } else {
                "sessions and tokens need include_auth_sessions; the rest is GoTrue's own bookkeeping"
            },
            join(&selection.auth_left_out)
        ));
    }
    if !notes.is_empty() {
        table = table.with_note(notes.join(" "));
    }
    let mut line = match ctx.manifest.data.mode {
        crate::manifest::DataMode::Copy => format!(
            "copy {} tables ({} rows) in one source snapshot, {} at a time",
            selection.copy.len(),
            thousands(total),
            ctx.manifest.data.parallel
        ),
        crate::manifest::DataMode::Replicate => format!(
            "replicate {} tables ({} rows) through a publication on the source and a subscription on the target (logical replication, server to server); return once synced and the lag is under {} s",
            selection.copy.len(),
            thousands(total),
            ctx.manifest.data.max_lag_seconds
        ),
    };
    if non_empty > 0 {
        if ctx.settings.overwrite {
            line.push_str(&format!(
                "; truncate {non_empty} target tables that hold rows (--overwrite)"
            ));
        } else {
            line.push_str(&format!(
                "; would refuse: {non_empty} target tables already hold rows (pass --overwrite to replace them)"
            ));
        }
    }
    Ok((table, line))
}

async fn config_plan(
    ctx: &Context,
    target: Option<&Database>,
    report: &mut PhaseReport,
) -> Result<String, PhaseError> {
    let config = &ctx.manifest.config;
    if config.values.is_empty() {
        return Ok("no [config] values: nothing to set".into());
    }
    let table_name = QualifiedName::parse(&config.table).map_err(PhaseError::new)?;
    let current = match target {
        Some(t) => {
            t.config_values(&table_name, &config.key_column, &config.value_column)
                .await?
        }
        None => None,
    };
    let mut table = ReportTable::new(
        &format!("Configuration in {table_name}"),
        &["Key", "Target now", "Would be"],
    );
    let mut changes = 0;
    for (key, wanted) in &config.values {
        let secret = config.secret_keys.contains(key) || name_looks_secret(key);
        let resolved = expand(wanted, |v| ctx.env_var(v));
        let now = current.as_ref().and_then(|c| c.get(key)).cloned().flatten();
        let show = |v: &str| {
            if secret {
                MASK.to_string()
            } else {
                v.to_string()
            }
        };
        let now_cell = match (&current, &now) {
            (None, _) => "table not on target yet".to_string(),
            (Some(c), None) if !c.contains_key(key) => "(missing key)".to_string(),
            (_, None) => "NULL".to_string(),
            (_, Some(v)) => show(v),
        };
        let wanted_cell = match &resolved {
            Ok(v) => {
                if now.as_deref() != Some(v.as_str()) {
                    changes += 1;
                }
                show(v)
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
        let config = &ctx.manifest.config;
        let table_name = QualifiedName::parse(&config.table).map_err(PhaseError::new)?;
        let source_now = match source {
            Some(s) => {
                s.config_values(&table_name, &config.key_column, &config.value_column)
                    .await?
            }
            None => None,
        };
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
