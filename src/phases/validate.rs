//! `validate`: proves the target holds what the source holds.
//!
//! Row counts (exact, both sides at once), per-table checksums computed inside
//! each database and, on a mismatch, the first differing keys found by
//! bisecting the primary-key range; sequences ahead of their columns; RLS
//! enabled with the same policies; RLS probes as roles with JWT claims; the
//! user schemas' catalogs diffed. A passing validation is recorded in the
//! ledger with what it covered, for the cutover gate.

use std::collections::{BTreeMap, BTreeSet};

use crate::cells;
use crate::context::Context;
use crate::manifest::DataMode;
use crate::manifest::QualifiedName;
use crate::pg::compare::{RlsState, first_differing_keys, row_hash};
use crate::pg::ledger::StepRecord;
use crate::pg::replication::hold_at_fence;
use crate::pg::table_diff::{TableComparison, compare_tables};
use crate::pg::{Database, Side};
use crate::report::Cell;
use crate::report::{
    CheckItem, PhaseReport, ROW_COUNTS, ReportTable, Status, TextDiff, count, thousands,
};

use super::{Phase, PhaseError, select_tables};

/// Differing keys shown per table.
const MAX_KEYS_SHOWN: usize = 5;

/// Runs `validate`.
pub async fn run(ctx: &mut Context) -> Result<PhaseReport, PhaseError> {
    let mut report = PhaseReport::new("validate");
    // A dry-run list writes nothing, so there is nothing to compare yet.
    let writers = [Phase::Schema, Phase::Data, Phase::Config];
    if super::dry_run_after(ctx, Phase::Validate, &writers) {
        report.check(CheckItem::new(
            "dry-run",
            "Target compared with the source",
            Status::Skip,
            "the phases before it wrote nothing (dry-run): validate compares the target after they run",
        ));
        report.summary =
            "Dry-run: nothing to compare yet; validate runs after a real schema/data/config."
                .into();
        return Ok(report);
    }
    let source = ctx.source("validate").await?;
    let target = ctx.target("validate", false).await?;
    let tables = tables_to_compare(ctx, &source).await?;
    let sides = (&source, &target);
    let compared = compare_rows(ctx, sides, &tables, &mut report).await?;
    if compared.at_fence {
        report.check(CheckItem::new(
            "sequences",
            "Sequences ahead of their columns",
            Status::Skip,
            "replicate mode: logical replication does not carry sequences; `cutover` sets them from the frozen source",
        ));
    } else {
        sequences_check(&source, &target, &mut report).await?;
    }
    rls_check(&source, &target, &mut report).await?;
    probes_check(ctx, &target, &mut report).await?;
    if let Some((item, table)) = super::config::expectations_check(ctx, &target).await? {
        report.check(item);
        report.tables.push(table);
    }
    schema_check(ctx, sides, &mut report).await?;

    // Security lints: shown, never failing; `cutover` is where they block.
    let lints = super::lints::assess_target(ctx, "validate").await?;
    for row in super::lints::report_rows(&lints) {
        report.check(row);
    }
    report.tables.extend(super::lints::table(&lints));

    // Features switched on outside the tables: extensions and pg_cron jobs.
    report.check(features_row(&source, &target).await?);

    // Project settings: shown as warnings; the cutover gate blocks on them.
    super::parity::check(
        ctx,
        "validate",
        &mut report,
        super::parity::ParityUse::Validate,
    )
    .await?;

    report.conclude_from_checks();
    let passed = !report.has_failures();
    let recorded = passed && !ctx.settings.dry_run;
    if recorded {
        record_validation(ctx, &tables, &compared).await?;
    }
    report.summary = summary(passed, tables.len(), recorded);
    Ok(report)
}

/// The phase's summary.
fn summary(passed: bool, tables: usize, recorded: bool) -> String {
    if !passed {
        return "Target does not match source: see the failed rows.".into();
    }
    format!(
        "Target matches source: {tables} tables, counts and checksums equal, schema equal{}.",
        if recorded {
            "; recorded in the ledger for the cutover gate"
        } else {
            ""
        }
    )
}

/// The tables whose rows are compared: `[checks] row_counts`, else the
/// tables `data` copies.
async fn tables_to_compare(
    ctx: &Context,
    source: &Database,
) -> Result<Vec<QualifiedName>, PhaseError> {
    let selection = select_tables(ctx, source).await?;
    if !selection.missing.is_empty() {
        return Err(PhaseError::new(format!(
            "tables named in [data] tables do not exist on the source: {}",
            selection.missing.join(", ")
        ))
        .hint("fix the names (schema.table) in the manifest's [data] tables"));
    }
    if ctx.manifest.checks.row_counts.is_empty() {
        return Ok(selection.copy.iter().map(|t| t.name.clone()).collect());
    }
    ctx.manifest
        .checks
        .row_counts
        .iter()
        .map(|t| QualifiedName::parse(t).map_err(PhaseError::new))
        .collect()
}

/// Both sides' counts and checksums, as the ledger records them.
#[derive(Default)]
struct Compared {
    /// Whether they were taken at a replication fence.
    at_fence: bool,
    /// Source rows per table.
    source_counts: BTreeMap<QualifiedName, i64>,
    /// Target rows per table (tables the target has).
    target_counts: BTreeMap<QualifiedName, i64>,
    /// Source checksums (when both sides have one).
    source_sums: BTreeMap<QualifiedName, String>,
    /// Target checksums (when both sides have one).
    target_sums: BTreeMap<QualifiedName, String>,
}

impl Compared {
    /// Tables whose checksums differ.
    fn content_mismatches(&self, tables: &[QualifiedName]) -> usize {
        tables
            .iter()
            .filter(|t| {
                self.source_sums
                    .get(*t)
                    .is_some_and(|a| self.target_sums.get(*t) != Some(a))
            })
            .count()
    }
}

/// Row counts and checksums: directly, or in replicate mode at a fence (the
/// source's snapshot and the target held at the same transaction), so they
/// agree while the app keeps writing. Adds the row, the table and the first
/// differing keys.
async fn compare_rows(
    ctx: &mut Context,
    (source, target): (&Database, &Database),
    tables: &[QualifiedName],
    report: &mut PhaseReport,
) -> Result<Compared, PhaseError> {
    let replicating = replication_to_compare(ctx).await?;
    let comparisons = match &replicating {
        None => compare_tables(source, target, tables, ctx.manifest.checks.checksum).await?,
        Some(subscription) => {
            let (comparisons, health, evidence) =
                compare_at_fence(ctx, target, subscription, tables).await?;
            report.check(health);
            report.check(evidence);
            comparisons
        }
    };
    let mut compared = Compared {
        at_fence: replicating.is_some(),
        ..Compared::default()
    };
    let mut diff_table = ReportTable::new(
        "Row counts and checksums",
        &["Table", "Source", "Target", "Δ", "Checksum", "Status"],
    )
    .merged_as(ROW_COUNTS);
    let mut mismatches = 0u64;
    let mut differing_keys = Vec::new();
    for c in &comparisons {
        compared
            .source_counts
            .insert(c.table.clone(), c.source_rows);
        mismatches += u64::from(!c.counts_equal());
        diff_table.push(comparison_line(c));
        let Some(tgt) = c.target_rows else { continue };
        compared.target_counts.insert(c.table.clone(), tgt);
        let (Some(a), Some(b)) = (&c.source_checksum, &c.target_checksum) else {
            continue;
        };
        // Keys are looked up only without a fence: the source has moved on since.
        if !c.content_equal() && !compared.at_fence {
            differing_keys.extend(keys_that_differ(source, target, &c.table).await?);
        }
        compared.source_sums.insert(c.table.clone(), a.clone());
        compared.target_sums.insert(c.table.clone(), b.clone());
    }
    report.row_count_mismatches = Some(mismatches);
    let total = compared.source_counts.values().sum();
    report.check(row_counts_item(
        tables.len(),
        total,
        mismatches,
        compared.content_mismatches(tables),
        ctx.manifest.checks.checksum,
    ));
    report.tables.push(diff_table.with_note(
        "Exact count(*) on both sides; checksum = sum of a 64-bit hash of every row, computed in each database.",
    ));
    if !differing_keys.is_empty() {
        let mut keys = ReportTable::new(
            "First differing keys",
            &["Table", "Key column", "Key", "How"],
        );
        for row in differing_keys {
            keys.push(row);
        }
        report.tables.push(keys);
    }
    Ok(compared)
}

/// One line of the row counts table.
fn comparison_line(c: &TableComparison) -> Vec<Cell> {
    let src = c.source_rows;
    let Some(tgt) = c.target_rows else {
        return cells![
            c.table.to_string(),
            src,
            "missing",
            "—",
            "—",
            Cell::verdict_because(Status::Fail, "table missing on target"),
        ];
    };
    let checksum = match (&c.source_checksum, &c.target_checksum) {
        (Some(_), Some(_)) if c.content_equal() => "equal",
        (Some(_), Some(_)) => "**differs**",
        _ => "not compared",
    };
    cells![
        c.table.to_string(),
        src,
        tgt,
        Cell::Delta(tgt - src),
        checksum,
        Cell::pass_if(c.equal()),
    ]
}

/// The first keys whose rows differ, for a table with a one-column primary
/// key (none otherwise).
async fn keys_that_differ(
    source: &Database,
    target: &Database,
    table: &QualifiedName,
) -> Result<Vec<[String; 4]>, PhaseError> {
    let Some(pk) = source.single_column_pk(table).await? else {
        return Ok(Vec::new());
    };
    let columns = source.column_names(table).await?;
    let hash = row_hash(source, target, table, &columns).await?;
    let keys = first_differing_keys(source, target, table, &hash, &pk, MAX_KEYS_SHOWN).await?;
    Ok(keys
        .into_iter()
        .map(|k| {
            [
                table.to_string(),
                pk.0.clone(),
                k.key,
                k.kind.describe().to_string(),
            ]
        })
        .collect())
}

/// The `row-counts` row.
fn row_counts_item(
    tables: usize,
    rows: i64,
    mismatches: u64,
    content_mismatches: usize,
    checksum: bool,
) -> CheckItem {
    if mismatches == 0 && content_mismatches == 0 {
        return CheckItem::new(
            "row-counts",
            "Row counts and content equal",
            Status::Pass,
            format!(
                "{tables} tables, {} rows on each side{}",
                thousands(rows),
                if checksum { ", checksums equal" } else { "" }
            ),
        );
    }
    CheckItem::new(
        "row-counts",
        "Row counts and content equal",
        Status::Fail,
        format!("{mismatches} tables differ in row count, {content_mismatches} in content"),
    )
    .with_hint("re-run `data` with overwrite after finding why (writes to the source during the copy? rows written on the target?)")
}

/// The user schemas' catalogs, source against target.
async fn schema_check(
    ctx: &Context,
    (source, target): (&Database, &Database),
    report: &mut PhaseReport,
) -> Result<(), PhaseError> {
    let ledger_schema = &ctx.manifest.ledger.schema;
    let (a, b) = tokio::join!(
        source.schema_text(ledger_schema),
        target.schema_text(ledger_schema)
    );
    let (item, diff) = schema_row(a?, b?);
    report.check(item);
    report.diffs.extend(diff);
    Ok(())
}

/// The `schema` row, and the diff when the catalogs differ.
fn schema_row(a: String, b: String) -> (CheckItem, Option<TextDiff>) {
    if a == b {
        let item = CheckItem::new(
            "schema",
            "Schemas of source and target equal",
            Status::Pass,
            format!(
                "{} catalog items compared (tables, columns, constraints, indexes, functions, triggers, policies, grants)",
                a.lines().count()
            ),
        );
        return (item, None);
    }
    let diff = similar::TextDiff::from_lines(&a, &b);
    let mut only_source = Vec::new();
    let mut only_target = Vec::new();
    for change in diff.iter_all_changes() {
        let line = change.value().trim_end().to_string();
        match change.tag() {
            similar::ChangeTag::Delete => only_source.push(line),
            similar::ChangeTag::Insert => only_target.push(line),
            similar::ChangeTag::Equal => {}
        }
    }
    let changed = only_source.len() + only_target.len();
    let item = CheckItem::new(
        "schema",
        "Schemas of source and target equal",
        Status::Fail,
        format!(
            "{changed} catalog lines differ{}{}",
            first_lines("only on the source", &only_source),
            first_lines("only on the target", &only_target)
        ),
    )
    .with_hint(schema_hint(&only_source, &only_target));
    let diff = TextDiff {
        title: "Schema: source → target".into(),
        before_label: "source".into(),
        after_label: "target".into(),
        before: a,
        after: b,
    };
    (item, Some(diff))
}

async fn sequences_check(
    source: &Database,
    target: &Database,
    report: &mut PhaseReport,
) -> Result<(), PhaseError> {
    let (src, tgt) = tokio::join!(source.sequences(), target.sequences());
    let (src, tgt) = (src?, tgt?);
    let source_values: BTreeMap<QualifiedName, i64> = src
        .iter()
        .filter_map(|s| s.last_value.map(|v| (s.name.clone(), v)))
        .collect();
    let mut behind = Vec::new();
    for seq in &tgt {
        let Some(last) = seq.last_value else { continue };
        // The next value nextval() hands out.
        let next = if seq.is_called { last + 1 } else { last };
        match &seq.owned_by {
            Some((table, column)) => {
                if let Some(max) = target.column_max(table, column).await? {
                    if next <= max {
                        behind.push(format!(
                            "{} next {next} ≤ max({table}.{column}) {max}",
                            seq.name
                        ));
                    }
                }
            }
            None => {
                if let Some(src_last) = source_values.get(&seq.name) {
                    if last < *src_last {
                        behind.push(format!("{} at {last} < source {src_last}", seq.name));
                    }
                }
            }
        }
    }
    report.check(if behind.is_empty() {
        CheckItem::new(
            "sequences",
            "Sequences ahead of their columns",
            Status::Pass,
            format!("{} sequences: the next value of each is above its column's max (free-standing ones at least the source's)", tgt.len()),
        )
    } else {
        CheckItem::new("sequences", "Sequences ahead of their columns", Status::Fail, behind.join("; "))
            .with_hint("re-run `data` (it sets sequences from the source), or setval() them past the max")
    });
    Ok(())
}

async fn rls_check(
    source: &Database,
    target: &Database,
    report: &mut PhaseReport,
) -> Result<(), PhaseError> {
    let tables: Vec<QualifiedName> = source
        .user_tables(false, false)
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    let (src, tgt) = tokio::join!(source.rls_states(&tables), target.rls_states(&tables));
    let (src, tgt) = (src?, tgt?);
    let tgt: BTreeMap<QualifiedName, RlsState> =
        tgt.into_iter().map(|s| (s.table.clone(), s)).collect();
    let mut problems = Vec::new();
    let mut enabled = 0;
    let mut policies = 0;
    for state in &src {
        if !state.enabled && state.policies.is_empty() {
            continue;
        }
        enabled += usize::from(state.enabled);
        policies += state.policies.len();
        match tgt.get(&state.table) {
            None => problems.push(format!("{}: missing on target", state.table)),
            Some(t) => {
                if state.enabled && !t.enabled {
                    problems.push(format!("{}: RLS disabled on target", state.table));
                }
                if state.policies != t.policies {
                    let names = |s: &RlsState| {
                        s.policies
                            .iter()
                            .map(|p| p.name.clone())
                            .collect::<BTreeSet<_>>()
                    };
                    let (a, b) = (names(state), names(t));
                    let missing: Vec<_> = a.difference(&b).cloned().collect();
                    let extra: Vec<_> = b.difference(&a).cloned().collect();
                    let mut what = Vec::new();
                    if !missing.is_empty() {
                        what.push(format!("missing {}", missing.join(", ")));
                    }
                    if !extra.is_empty() {
                        what.push(format!("extra {}", extra.join(", ")));
                    }
                    if what.is_empty() {
                        what.push("policy definitions differ".into());
                    }
                    problems.push(format!("{}: {}", state.table, what.join("; ")));
                }
            }
        }
    }
    report.check(if problems.is_empty() {
        CheckItem::new(
            "rls",
            "RLS enabled with the same policies",
            Status::Pass,
            format!("{enabled} tables with RLS on the source, all enabled on the target; {policies} policies identical"),
        )
    } else {
        CheckItem::new("rls", "RLS enabled with the same policies", Status::Fail, problems.join("; "))
            .with_hint("apply the migrations that enable RLS and create the policies on the target")
    });
    Ok(())
}

async fn probes_check(
    ctx: &Context,
    target: &Database,
    report: &mut PhaseReport,
) -> Result<(), PhaseError> {
    let probes = &ctx.manifest.checks.rls_probes;
    if probes.is_empty() {
        return Ok(());
    }
    let mut table = ReportTable::new(
        "RLS probes on the target",
        &["Probe", "Role", "Expected", "Got", ""],
    );
    let mut failed = 0;
    for probe in probes {
        let claims = serde_json::to_string(&probe.claims).unwrap_or_else(|_| "{}".into());
        let got = match target.probe_as(&probe.role, &claims, &probe.query).await {
            Ok(v) => v.unwrap_or_else(|| "NULL".into()),
            Err(e) => format!("error: {e}"),
        };
        let ok = got.trim() == probe.expect.trim();
        failed += usize::from(!ok);
        table.push(cells![
            probe.name.clone(),
            probe.role.clone(),
            probe.expect.clone(),
            got,
            Cell::pass_if(ok),
        ]);
    }
    report.tables.push(table);
    report.check(if failed == 0 {
        CheckItem::new("rls-probes", "RLS probes as roles", Status::Pass, format!("{} probes returned what the manifest expects", probes.len()))
    } else {
        CheckItem::new(
            "rls-probes",
            "RLS probes as roles",
            Status::Fail,
            format!("{failed} of {} probes returned something else", probes.len()),
        )
        .with_hint("a policy lets a role see too much or too little: compare the policies, or fix the probe's expectation")
    });
    Ok(())
}

/// Records the passing validation: both sides' counts and checksums as
/// snapshots, and a `validation` step holding what it covered (migration
/// checksums, tables), which the cutover gate compares with the run at hand.
async fn record_validation(
    ctx: &mut Context,
    tables: &[QualifiedName],
    compared: &Compared,
) -> Result<(), PhaseError> {
    let Some(ledger) = ctx.ledger("validate").await? else {
        return Ok(());
    };
    ledger
        .record_snapshot(
            ctx.run_id,
            Side::Source,
            &compared.source_counts,
            &compared.source_sums,
        )
        .await?;
    ledger
        .record_snapshot(
            ctx.run_id,
            Side::Target,
            &compared.target_counts,
            &compared.target_sums,
        )
        .await?;
    let migrations: BTreeMap<String, String> = ctx
        .migration_dir()?
        .files
        .into_iter()
        .map(|f| (f.version, f.checksum))
        .collect();
    let now = chrono::Utc::now();
    ledger
        .record_step(
            ctx.run_id,
            &StepRecord {
                phase: "validate",
                step: "validation",
                started_at: now,
                finished_at: now,
                outcome: "pass",
                detail: serde_json::json!({
                    "source": ctx.display(Side::Source),
                    "target": ctx.display(Side::Target),
                    "migrations": migrations,
                    "tables": tables.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
                }),
            },
        )
        .await?;
    Ok(())
}

/// In replicate mode, the subscription to compare at a fence: the one the
/// ledger names as streaming. `None` in copy mode, or when no replication
/// runs (then validate compares directly, as in copy mode).
async fn replication_to_compare(ctx: &mut Context) -> Result<Option<String>, PhaseError> {
    if ctx.manifest.data.mode != DataMode::Replicate || ctx.settings.dry_run {
        return Ok(None);
    }
    let Some(ledger) = ctx.ledger("validate").await? else {
        return Ok(None);
    };
    Ok(ledger
        .active_replication()
        .await?
        .filter(|r| r.state == "streaming")
        .map(|r| r.subscription))
}

/// Compares at a fence: holds the source's writers for a moment to write a
/// pausing fence row and take a snapshot, waits until the target's apply
/// worker stops right before that fence, compares the snapshot with the
/// target, then lets replication go on.
async fn compare_at_fence(
    ctx: &mut Context,
    target: &Database,
    subscription: &str,
    tables: &[QualifiedName],
) -> Result<(Vec<TableComparison>, CheckItem, CheckItem), PhaseError> {
    let source_w = ctx.source_writable("validate").await?;
    let schema = ctx.manifest.ledger.schema.clone();
    let lock_timeout =
        std::time::Duration::from_secs(ctx.manifest.data.freeze_lock_timeout_seconds);
    let deadline = std::time::Duration::from_secs(ctx.manifest.data.max_lag_seconds.max(1) * 12);
    let started = std::time::Instant::now();
    let held = hold_at_fence(
        &source_w,
        target,
        &schema,
        subscription,
        tables,
        lock_timeout,
        deadline,
    )
    .await
    .map_err(|e| {
        PhaseError::new(e.to_string())
            .hint("check the replication's health (`data` re-run reports it) and that no long transaction holds the copied tables")
    })?;
    let reached = started.elapsed();
    let health = replication_health(&source_w, target, subscription).await?;
    let source_at_fence = source_w.at_snapshot(&held.snapshot_id);
    let result = compare_tables(
        &source_at_fence,
        target,
        tables,
        ctx.manifest.checks.checksum,
    )
    .await;
    let fence_id = held.fence_id;
    let writers_held = held.writers_held;
    held.release().await;
    let comparisons = result?;
    Ok((
        comparisons,
        health,
        CheckItem::new(
            "replication-fence",
            "Compared at a replication fence",
            Status::Pass,
            format!(
                "fence {fence_id}: source writers held {} ms for the snapshot; target reached the fence in {}; replication paused during the comparison, then resumed",
                writers_held.as_millis(),
                crate::report::human_duration(reached.as_millis() as u64)
            ),
        ),
    ))
}

/// The replication's health: the apply worker runs, no apply or sync errors,
/// every table synced, the slot keeps its WAL.
async fn replication_health(
    source: &Database,
    target: &Database,
    subscription: &str,
) -> Result<CheckItem, PhaseError> {
    let state = target.subscription_state(subscription).await?;
    let slot = source.slot_state(subscription).await?;
    let (status, evidence) = match (&state, &slot) {
        (None, _) => (
            Status::Fail,
            format!("subscription {subscription} is missing on the target"),
        ),
        (_, None) => (
            Status::Fail,
            format!("the source's slot {subscription} is missing"),
        ),
        (Some(st), Some(sl)) => {
            let healthy = st.enabled
                && st.apply_pid.is_some()
                && st.ready == st.tables
                && sl.wal_status != "lost";
            (
                if !healthy {
                    Status::Fail
                } else if st.errors.0 + st.errors.1 > 0 {
                    Status::Warn
                } else {
                    Status::Pass
                },
                format!(
                    "apply worker {}, {} of {} tables synced, {} apply and {} sync errors so far; slot {} ({} bytes behind)",
                    if st.apply_pid.is_some() {
                        "running"
                    } else {
                        "not running"
                    },
                    st.ready,
                    st.tables,
                    st.errors.0,
                    st.errors.1,
                    sl.wal_status,
                    sl.lag_bytes
                ),
            )
        }
    };
    Ok(CheckItem::new(
        "replication-health",
        "Replication healthy",
        status,
        evidence,
    )
    .with_hint(
        "see pg_stat_subscription and the target's log; re-run `data` to repair the replication",
    ))
}

/// Up to three differing catalog lines, shortened, after `label`.
fn first_lines(label: &str, lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = lines
        .iter()
        .take(3)
        .map(|l| {
            if l.chars().count() > 160 {
                format!("`{}…`", l.chars().take(160).collect::<String>())
            } else {
                format!("`{l}`")
            }
        })
        .collect();
    let more = if lines.len() > 3 {
        format!(" and {} more", lines.len() - 3)
    } else {
        String::new()
    };
    format!("; {label}: {}{more}", shown.join(", "))
}

/// The fix for a schema difference. A foreign key that is valid on the
/// source and `NOT VALID` on the target is not a missing migration: the
/// target lacks rows it references (most often users, when auth is not
/// copied).
fn schema_hint(only_source: &[String], only_target: &[String]) -> &'static str {
    let not_valid_only = !only_target.is_empty()
        && only_target.iter().all(|t| {
            t.starts_with("constraint ")
                && t.contains(" NOT VALID")
                && only_source.contains(&t.replacen(" NOT VALID", "", 1))
        });
    if not_valid_only {
        "foreign keys are NOT VALID on the target because rows they reference are missing there: copy the referenced tables too (for auth.users: [data] include_auth = true) and re-run `data` with --overwrite"
    } else {
        "apply the missing migrations (`schema`), re-run `data` if it was interrupted (it puts back the indexes and constraints it owes), or find the manual change on one side"
    }
}

/// Extensions and pg_cron jobs the source has and the target lacks (or has
/// with another schedule): a warning with the fix, since a dashboard switch
/// or a job created by hand is in no migration file.
async fn features_row(source: &Database, target: &Database) -> Result<CheckItem, PhaseError> {
    let (src_ext, tgt_ext) = (source.extensions().await?, target.extensions().await?);
    let missing_ext: Vec<&String> = src_ext.iter().filter(|e| !tgt_ext.contains(e)).collect();
    let jobs = |list: Option<Vec<crate::pg::cron::CronJob>>| -> Vec<(String, String)> {
        list.unwrap_or_default()
            .into_iter()
            .map(|j| (j.label(), j.schedule))
            .collect()
    };
    let (src_jobs, tgt_jobs) = (
        jobs(source.list_cron_jobs().await?),
        jobs(target.list_cron_jobs().await?),
    );
    let missing_jobs: Vec<String> = src_jobs
        .iter()
        .filter(|j| !tgt_jobs.contains(j))
        .map(
            |(name, schedule)| match tgt_jobs.iter().find(|(n, _)| n == name) {
                Some((_, other)) => {
                    format!("{name} ({schedule} on the source, {other} on the target)")
                }
                None => format!("{name} ({schedule})"),
            },
        )
        .collect();
    const ID: &str = "features";
    const TITLE: &str = "Extensions and pg_cron jobs of the source on the target";
    if missing_ext.is_empty() && missing_jobs.is_empty() {
        return Ok(CheckItem::new(
            ID,
            TITLE,
            Status::Pass,
            format!(
                "{} and {} of the source present on the target",
                count(src_ext.len(), "extension", "extensions"),
                count(src_jobs.len(), "pg_cron job", "pg_cron jobs")
            ),
        ));
    }
    let mut what = Vec::new();
    if !missing_ext.is_empty() {
        what.push(format!(
            "extensions missing on the target: {}",
            missing_ext
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !missing_jobs.is_empty() {
        what.push(format!(
            "pg_cron jobs missing or scheduled differently: {}",
            missing_jobs.join(", ")
        ));
    }
    Ok(CheckItem::new(ID, TITLE, Status::Warn, what.join("; ")).with_hint(
        "switched on by hand on the source, so in no migration file: add `create extension ...` or `select cron.schedule(...)` to a migration (then `schema`), or enable it on the target's dashboard (Database → Extensions)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comparison(target: Option<i64>, sums: (Option<&str>, Option<&str>)) -> TableComparison {
        TableComparison {
            table: QualifiedName::parse("public.a").unwrap(),
            source_rows: 10,
            target_rows: target,
            source_checksum: sums.0.map(str::to_string),
            target_checksum: sums.1.map(str::to_string),
        }
    }

    #[test]
    fn comparison_lines_say_missing_differs_or_equal() {
        let line = comparison_line(&comparison(None, (None, None)));
        assert_eq!(line[2], "missing");
        assert_eq!(line[5], "❌ table missing on target");
        assert_eq!(
            line[5],
            Cell::verdict_because(Status::Fail, "table missing on target")
        );
        let line = comparison_line(&comparison(Some(12), (Some("1"), Some("2"))));
        assert_eq!(
            (&line[3], &line[4]),
            (&Cell::Delta(2), &Cell::from("**differs**"))
        );
        assert_eq!(line[3], "+2");
        let line = comparison_line(&comparison(Some(10), (None, None)));
        assert_eq!(
            (&line[4], &line[5]),
            (&Cell::from("not compared"), &Cell::pass_if(true))
        );
        assert_eq!(line[1], Cell::Count(10));
    }

    #[test]
    fn row_counts_fail_on_any_mismatch() {
        let row = row_counts_item(2, 1500, 0, 0, true);
        assert_eq!(row.status, Status::Pass);
        assert_eq!(
            row.evidence,
            "2 tables, 1,500 rows on each side, checksums equal"
        );
        let row = row_counts_item(2, 1500, 0, 1, true);
        assert_eq!(row.evidence, "0 tables differ in row count, 1 in content");
    }

    #[test]
    fn equal_schemas_pass_without_a_diff() {
        let (row, diff) = schema_row("a\nb\n".into(), "a\nb\n".into());
        assert_eq!(row.status, Status::Pass);
        assert!(diff.is_none());
        let (row, diff) = schema_row("a\n".into(), "a\nb\n".into());
        assert_eq!(row.status, Status::Fail);
        assert!(row.evidence.starts_with("1 catalog lines differ"));
        assert!(diff.is_some());
    }

    #[test]
    fn summaries() {
        assert!(summary(true, 3, true).ends_with("recorded in the ledger for the cutover gate."));
        assert_eq!(
            summary(false, 3, false),
            "Target does not match source: see the failed rows."
        );
    }

    #[test]
    fn a_key_not_valid_only_on_the_target_points_at_the_missing_rows() {
        let source = vec![
            "constraint public.p p_fkey FOREIGN KEY (id) REFERENCES auth.users(id)".to_string(),
        ];
        let target = vec![
            "constraint public.p p_fkey FOREIGN KEY (id) REFERENCES auth.users(id) NOT VALID"
                .to_string(),
        ];
        assert!(schema_hint(&source, &target).contains("include_auth = true"));
        let other = vec![
            "index public.p p_idx CREATE INDEX p_idx ON public.p USING btree (id)".to_string(),
        ];
        assert!(schema_hint(&other, &[]).contains("missing migrations"));
    }

    #[test]
    fn differing_lines_are_named_three_at_most() {
        let lines: Vec<String> = (1..=5).map(|i| format!("index i{i}")).collect();
        let text = first_lines("only on the source", &lines);
        assert!(
            text.contains("`index i1`") && text.contains("`index i3`"),
            "{text}"
        );
        assert!(
            !text.contains("i4`") && text.ends_with("and 2 more"),
            "{text}"
        );
        assert_eq!(first_lines("x", &[]), "");
    }
}
