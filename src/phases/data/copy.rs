//! `data` in copy mode: copies rows source → target.
//!
//! One exported source snapshot shared by every worker, tables copied in
//! parallel (largest first) as binary COPY streams, triggers off
//! (`session_replication_role = replica`), indexes and constraints dropped
//! before loading and rebuilt in parallel after, sequences set from the source.
//! Each table is copied in one target transaction, so an interruption leaves
//! whole tables or empty ones; the ledger knows which are finished, and which
//! indexes and constraints are still owed, so a re-run resumes.
//!
//! [`run`] is plan ([`super::plan_jobs`]) → [`apply`] → [`report`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::cells;
use crate::context::Context;
use crate::manifest::QualifiedName;
use crate::pg::copy::{
    CopyJob, CopyLedger, DeferredKind, DeferredObject, KeptObject, TableCopyState,
};
use crate::pg::{Database, PgError};
use crate::report::{
    CheckItem, ErrorReport, Outcome, PhaseReport, ROW_COUNTS, ReportTable, Status, count, emphasis,
    human_duration, thousands,
};

use super::super::PhaseError;
use super::pipeline::{self, PipelineOutcome};
use super::rebuild::{RebuildOutcome, rebuild_all};
use super::{DataPlan, bytes_text, rate_text, refuse_rows};

/// Runs `data` in copy mode.
pub async fn run(ctx: &mut Context) -> Result<PhaseReport, PhaseError> {
    let plan = super::plan_jobs(ctx).await?;
    if ctx.settings.dry_run {
        return Ok(dry_run_report(&plan.jobs, &plan.created_by_schema));
    }
    ctx.ledger("data").await?;
    let wait = Duration::from_secs(ctx.manifest.schema.lock_timeout_seconds);
    let lock = plan.target.lock_for_run(wait).await?;
    let outcome = apply(ctx, &plan).await;
    lock.release().await;
    Ok(report(outcome?))
}

/// What a dry-run shows: the tables it would copy, and those `schema` would
/// create first.
fn dry_run_report(
    jobs: &[CopyJob],
    created_by_schema: &BTreeMap<QualifiedName, String>,
) -> PhaseReport {
    let mut report = PhaseReport::new("data");
    report
        .tables
        .push(super::planned_tables("Tables to copy (dry-run)", jobs));
    if !created_by_schema.is_empty() {
        let mut table = ReportTable::new(
            "Tables `schema` would create first (dry-run)",
            &["Table", "Created by"],
        );
        for (name, file) in created_by_schema {
            table.push([name.to_string(), file.clone()]);
        }
        report.tables.push(table.with_note(
            "Not on the target yet: planned from the source's columns, as `schema` runs before `data` in this list.",
        ));
    }
    report.summary = format!(
        "Dry-run: {} tables would be copied; nothing was written.",
        jobs.len()
    );
    report
}

/// Where the copy starts: from an interrupted run's work, or afresh.
#[derive(Debug, Default)]
struct Start {
    /// An interrupted run left tables unfinished or objects owed.
    resuming: bool,
    /// Tables the interrupted run finished, with their rows: kept.
    finished: BTreeMap<QualifiedName, i64>,
    /// Indexes and constraints the interrupted run dropped and still owes.
    owed: Vec<DeferredObject>,
    /// Tables holding exactly the rows the migrations wrote, with their
    /// counts: the source's rows replace them.
    seeded: BTreeMap<QualifiedName, i64>,
    /// Tables holding other rows: emptied because `--overwrite` is asked.
    overwritten: Vec<QualifiedName>,
}

/// The indexes and constraints of the load.
#[derive(Debug, Default)]
struct Deferral {
    /// Dropped before the load, rebuilt after: what an interrupted run owes,
    /// then what this run drops.
    to_rebuild: Vec<DeferredObject>,
    /// What stays in place on the copied tables, and why.
    kept: Vec<KeptObject>,
    /// Copied tables a kept key from outside the copy references: emptied
    /// with `DELETE`, so that key's `ON DELETE` rule applies.
    emptied_by_delete: Vec<QualifiedName>,
}

/// What the copy did, for [`report`].
struct CopyOutcome {
    /// The tables of the plan, largest first.
    jobs: Vec<CopyJob>,
    start: Start,
    deferral: Deferral,
    pipeline: PipelineOutcome,
    /// Sequences set from the source (none after a failed copy).
    sequences_set: usize,
    rebuild: Result<RebuildOutcome, PgError>,
    /// Tables copied at a time.
    parallel: u16,
    /// Where the ledger keeps the definitions still owed.
    ledger_schema: String,
}

impl CopyOutcome {
    /// Every table and every object is back: the copy is finished even when
    /// a foreign key to a table outside it could not be validated, so the
    /// next run starts afresh instead of "resuming".
    fn complete(&self) -> bool {
        self.pipeline.failures.is_empty()
            && self
                .rebuild
                .as_ref()
                .is_ok_and(|r| r.unvalidated.is_empty())
    }
}

/// Copies the planned tables under the target's run lock: resumes or starts
/// afresh, defers indexes and constraints, copies, sets the sequences and
/// rebuilds (even after a failed copy, so nothing is left missing).
async fn apply(ctx: &Context, plan: &DataPlan) -> Result<CopyOutcome, PhaseError> {
    let DataPlan { source, target, .. } = plan;
    let ledger_schema = ctx.manifest.ledger.schema.clone();
    // Dropping keys and emptying tables wait at most this long for a lock an
    // application transaction holds, and then name it.
    let copy_ledger = CopyLedger::new(target, &ledger_schema).with_lock_timeout(
        Duration::from_secs(ctx.manifest.schema.lock_timeout_seconds),
    );
    let names: Vec<QualifiedName> = plan.jobs.iter().map(|j| j.table.clone()).collect();
    let start = start(ctx, target, &copy_ledger, &names).await?;
    let mut jobs = plan.jobs.clone();
    let deferral = defer_objects(ctx, target, &copy_ledger, &mut jobs, &start.owed).await?;
    let emptied = tables_to_empty(&start, &names, ctx.settings.overwrite);
    copy_ledger
        .truncate(&emptied, &deferral.emptied_by_delete)
        .await?;
    if let (Some(ledger), false) = (ctx.open_ledger(), start.seeded.is_empty()) {
        let seeded: Vec<QualifiedName> = start.seeded.keys().cloned().collect();
        ledger.forget_seeded(&seeded).await?;
    }
    let pending: Vec<CopyJob> = jobs
        .iter()
        .filter(|j| !start.finished.contains_key(&j.table))
        .cloned()
        .collect();
    let finished: Vec<QualifiedName> = start.finished.keys().cloned().collect();
    let pipeline = pipeline::copy_tables(
        ctx,
        source,
        target,
        &copy_ledger,
        pending,
        &finished,
        &deferral.to_rebuild,
    )
    .await?;
    let mut sequences_set = 0;
    if pipeline.failures.is_empty() {
        let values = source.sequence_values().await?;
        sequences_set = target.set_sequences(&values).await?.len();
    }
    let rebuild = rebuild_all(
        ctx,
        target,
        &copy_ledger,
        &deferral.to_rebuild,
        &pipeline.built,
        &names,
    )
    .await;
    let outcome = CopyOutcome {
        jobs,
        start,
        deferral,
        pipeline,
        sequences_set,
        rebuild,
        parallel: ctx.manifest.data.parallel,
        ledger_schema,
    };
    if outcome.complete() {
        copy_ledger.complete_session().await?;
    }
    Ok(outcome)
}

/// Reads where the copy starts. Afresh, target tables holding rows are
/// refused unless they hold only the migrations' rows or `--overwrite` is
/// asked, and the ledger's table states are reset.
async fn start(
    ctx: &Context,
    target: &Database,
    copy_ledger: &CopyLedger,
    names: &[QualifiedName],
) -> Result<Start, PhaseError> {
    let states = copy_ledger.table_states().await?;
    let owed = copy_ledger.dropped_objects().await?;
    if is_resuming(&states, &owed) {
        let counts = target
            .exact_row_counts(&done_tables(names, &states))
            .await?;
        return Ok(Start {
            resuming: true,
            finished: finished_tables(names, &states, &counts),
            owed,
            ..Start::default()
        });
    }
    let non_empty = target.non_empty_tables(names).await?;
    // Rows the migrations wrote (and nothing since) are the source's to
    // replace; any other row is refused unless overwrite is asked.
    let (seeded, others) = split_seeded(target, &ctx.manifest.ledger.schema, non_empty).await?;
    refuse_rows(&others, ctx.settings.overwrite, "nothing was copied")?;
    copy_ledger.reset_states().await?;
    Ok(Start {
        seeded,
        overwritten: others,
        owed,
        ..Start::default()
    })
}

/// Defers indexes and constraints: remembered and dropped in one
/// transaction. What the role may not drop stays in place. Marks the jobs
/// whose table a kept key references (emptied by `DELETE`, not `TRUNCATE`).
async fn defer_objects(
    ctx: &Context,
    target: &Database,
    copy_ledger: &CopyLedger,
    jobs: &mut [CopyJob],
    owed: &[DeferredObject],
) -> Result<Deferral, PhaseError> {
    let names: Vec<QualifiedName> = jobs.iter().map(|j| j.table.clone()).collect();
    let left_not_valid = copy_ledger.left_not_valid().await?;
    let plan = target.deferral_plan(&names).await?;
    let referenced_by_kept = plan.referenced_by_kept_keys();
    for job in jobs.iter_mut() {
        job.emptied_by_delete = referenced_by_kept.contains(&job.table);
    }
    let emptied_by_delete = plan.referenced_from_outside(&names);
    // Shown: what stays on the copied tables themselves (keys of tables
    // outside the copy that point at them are theirs to keep).
    let kept = plan
        .kept
        .into_iter()
        .filter(|k| names.contains(&k.table))
        .collect();
    let current = objects_to_drop(plan.deferred, owed, &left_not_valid);
    copy_ledger.drop_objects(&current, owed, ctx.run_id).await?;
    let mut to_rebuild = owed.to_vec();
    to_rebuild.extend(current);
    Ok(Deferral {
        to_rebuild,
        kept,
        emptied_by_delete,
    })
}

/// An interrupted run left objects owed or tables not complete.
fn is_resuming(states: &BTreeMap<String, TableCopyState>, owed: &[DeferredObject]) -> bool {
    !owed.is_empty() || states.values().any(|s| s.status != "complete")
}

/// The tables the ledger says an interrupted run finished.
fn done_tables(
    names: &[QualifiedName],
    states: &BTreeMap<String, TableCopyState>,
) -> Vec<QualifiedName> {
    names
        .iter()
        .filter(|n| {
            states
                .get(&n.to_string())
                .is_some_and(|s| s.status == "done")
        })
        .cloned()
        .collect()
}

/// The finished tables that still hold the rows recorded: kept, with those
/// rows. A table whose count changed since is copied again.
fn finished_tables(
    names: &[QualifiedName],
    states: &BTreeMap<String, TableCopyState>,
    counts: &BTreeMap<QualifiedName, i64>,
) -> BTreeMap<QualifiedName, i64> {
    done_tables(names, states)
        .into_iter()
        .filter_map(|name| {
            let recorded = states[&name.to_string()].rows;
            (counts.get(&name) == Some(&recorded)).then_some((name, recorded))
        })
        .collect()
}

/// The deferrable objects this run drops: those not already owed. A foreign
/// key an earlier copy left NOT VALID (its referenced rows were missing) is
/// validated again this time.
fn objects_to_drop(
    deferred: Vec<DeferredObject>,
    owed: &[DeferredObject],
    left_not_valid: &BTreeSet<(String, String)>,
) -> Vec<DeferredObject> {
    let owed_keys: BTreeSet<_> = owed.iter().map(DeferredObject::key).collect();
    deferred
        .into_iter()
        .filter(|o| !owed_keys.contains(&o.key()))
        .map(|mut o| {
            if left_not_valid.contains(&(o.table.to_string(), o.name.clone())) {
                o.validated = true;
            }
            o
        })
        .collect()
}

/// The tables emptied before the load: every copied table when
/// `--overwrite` starts afresh, else the seeded ones.
fn tables_to_empty(start: &Start, names: &[QualifiedName], overwrite: bool) -> Vec<QualifiedName> {
    if overwrite && !start.resuming {
        names.to_vec()
    } else {
        start.seeded.keys().cloned().collect()
    }
}

/// The checklist rows of where the copy started.
fn start_checks(start: &Start, tables: usize) -> Vec<CheckItem> {
    if start.resuming {
        return vec![CheckItem::new(
            "resume",
            "Interrupted copy resumed",
            Status::Pass,
            format!(
                "{} tables finished earlier are kept, {} indexes/constraints still owed will be rebuilt",
                start.finished.len(),
                start.owed.len()
            ),
        )];
    }
    let mut checks = Vec::new();
    if !start.seeded.is_empty() {
        checks.push(CheckItem::new(
            "seeded-rows",
            "Rows the migrations wrote are replaced by the source's",
            Status::Pass,
            format!(
                "{}: created and filled by `schema` (recorded in the ledger), unchanged since",
                start
                    .seeded
                    .iter()
                    .map(|(t, n)| format!("{t} ({})", count(*n, "row", "rows")))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let overwritten = start.overwritten.len();
    checks.push(CheckItem::new(
        "target-empty",
        "Target tables empty or overwrite asked",
        if overwritten == 0 {
            Status::Pass
        } else {
            Status::Warn
        },
        if overwritten == 0 {
            format!("all {tables} tables empty")
        } else {
            format!("{overwritten} tables held rows and were truncated (--overwrite)")
        },
    ));
    checks
}

/// The report of a copy: where it started, what it copied, rebuilt and kept.
fn report(outcome: CopyOutcome) -> PhaseReport {
    let mut report = PhaseReport::new("data");
    report
        .checks
        .extend(start_checks(&outcome.start, outcome.jobs.len()));
    let (rows, bytes) = totals(&outcome);
    report.tables.push(copied_table(&outcome));
    report
        .tables
        .push(deferred_table(&outcome.deferral.to_rebuild));
    report
        .tables
        .extend(super::kept_objects_table(&outcome.deferral.kept));
    let pipeline = &outcome.pipeline;
    if pipeline.failures.is_empty() {
        report.checks.extend(copied_checks(&outcome, rows, bytes));
    } else {
        for (table, e) in &pipeline.failures {
            report.errors.push(ErrorReport {
                message: format!("{table}: {e}"),
                hint: Some("fix the cause and re-run `data`: finished tables are kept, this one is copied again".into()),
            });
        }
        report.outcome = Outcome::Failed;
    }
    report.checks.extend(rebuild_checks(
        &outcome.rebuild,
        outcome.deferral.to_rebuild.len(),
        &outcome.ledger_schema,
    ));
    report.summary = format!(
        "{} tables: {} copied, {} kept from an interrupted run, {} failed; {} rows.",
        outcome.jobs.len(),
        pipeline.copied.len(),
        outcome.start.finished.len(),
        pipeline.failures.len(),
        thousands(rows as i64)
    );
    report
}

/// Rows in the target's copied and kept tables, and bytes copied.
fn totals(outcome: &CopyOutcome) -> (u64, u64) {
    let mut rows = 0u64;
    let mut bytes = 0u64;
    for job in &outcome.jobs {
        if let Some(kept) = outcome.start.finished.get(&job.table) {
            rows += *kept as u64;
        } else if let Some(r) = outcome.pipeline.copied.get(&job.table) {
            rows += r.rows;
            bytes += r.bytes;
        }
    }
    (rows, bytes)
}

/// Each table: kept, copied (rows, bytes, time) or not copied.
fn copied_table(outcome: &CopyOutcome) -> ReportTable {
    let mut table =
        ReportTable::new("Tables copied", &["Table", "Copied", "Copy"]).merged_as(ROW_COUNTS);
    for job in &outcome.jobs {
        let name = job.table.to_string();
        if let Some(rows) = outcome.start.finished.get(&job.table) {
            table.push(cells![name, *rows, "kept from the interrupted run"]);
        } else if let Some(r) = outcome.pipeline.copied.get(&job.table) {
            // The rate is the two figures divided: the checklist gives the
            // whole copy's.
            table.push(cells![
                name,
                r.rows,
                format!(
                    "{} in {}",
                    bytes_text(r.bytes),
                    human_duration(r.duration.as_millis() as u64)
                ),
            ]);
        } else {
            table.push(cells![name, "—", emphasis("not copied")]);
        }
    }
    table.with_note(format!(
        "One source snapshot; binary COPY streamed source → target, {} tables at a time, triggers off (session_replication_role = replica).",
        outcome.parallel
    ))
}

/// How many indexes and constraints of each kind were deferred.
fn deferred_table(to_rebuild: &[DeferredObject]) -> ReportTable {
    let mut table = ReportTable::new(
        "Indexes and constraints deferred and rebuilt",
        &["Kind", "Count"],
    );
    let mut by_kind: BTreeMap<DeferredKind, usize> = BTreeMap::new();
    for o in to_rebuild {
        *by_kind.entry(o.kind).or_default() += 1;
    }
    for (kind, n) in by_kind {
        table.push(cells![kind.word(), n]);
    }
    table
}

/// The rows of a copy without failures: rows copied, sequences set.
fn copied_checks(outcome: &CopyOutcome, rows: u64, bytes: u64) -> [CheckItem; 2] {
    let took = outcome.pipeline.took;
    [
        CheckItem::new(
            "copy",
            "Rows copied",
            Status::Pass,
            format!(
                "{} rows, {} in {} tables in {} ({})",
                thousands(rows as i64),
                bytes_text(bytes),
                outcome.jobs.len(),
                human_duration(took.as_millis() as u64),
                rate_text(bytes, took)
            ),
        ),
        CheckItem::new(
            "sequences",
            "Sequences set from the source",
            Status::Pass,
            format!(
                "{} set with setval(last_value, is_called)",
                count(outcome.sequences_set, "sequence", "sequences")
            ),
        ),
    ]
}

/// The rows of the rebuild: done (or keys left NOT VALID), and foreign keys
/// to tables outside the copy whose referenced rows are missing.
fn rebuild_checks(
    rebuild: &Result<RebuildOutcome, PgError>,
    objects: usize,
    ledger_schema: &str,
) -> Vec<CheckItem> {
    let outcome = match rebuild {
        Ok(outcome) => outcome,
        Err(e) => {
            return vec![
                CheckItem::new("rebuild", "Indexes and constraints rebuilt", Status::Fail, e.to_string())
                    .with_hint(format!(
                        "the definitions are kept in {ledger_schema}.deferred_objects; fix the cause and re-run `data` to rebuild them"
                    )),
            ];
        }
    };
    let mut evidence = format!(
        "{objects} rebuilt in {}",
        human_duration(outcome.took.as_millis() as u64)
    );
    let status = if outcome.unvalidated.is_empty() {
        Status::Pass
    } else {
        evidence.push_str(&format!(
            "; left NOT VALID until the copy is complete: {}",
            outcome.unvalidated.join(", ")
        ));
        Status::Warn
    };
    let mut checks = vec![CheckItem::new(
        "rebuild",
        "Indexes and constraints rebuilt",
        status,
        evidence,
    )];
    let missing = &outcome.missing_references;
    if !missing.is_empty() {
        let auth = missing.iter().any(|r| r.referenced.schema == "auth");
        checks.push(
            CheckItem::new(
                "foreign-keys-outside-copy",
                "Foreign keys to tables not copied hold",
                Status::Fail,
                format!(
                    "left NOT VALID, their referenced rows are missing on the target: {}",
                    missing
                        .iter()
                        .map(|r| format!("{} on {} → {}", r.name, r.table, r.referenced))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .with_hint(if auth {
                "copy the users too: set [data] include_auth = true, then re-run `data` with --overwrite (the copy itself is complete; the keys are validated again then)"
            } else {
                "copy both tables of each key (or exclude both), or create the missing rows on the target, then re-run `data` with --overwrite"
            }),
        );
    }
    checks
}

/// Splits the non-empty target tables into those holding exactly the rows
/// the migrations wrote (seeded, with their counts) and the others.
pub(crate) async fn split_seeded(
    target: &Database,
    ledger_schema: &str,
    non_empty: Vec<QualifiedName>,
) -> Result<(BTreeMap<QualifiedName, i64>, Vec<QualifiedName>), PhaseError> {
    let recorded = target.seeded_tables(ledger_schema).await?;
    if recorded.is_empty() || non_empty.is_empty() {
        return Ok((BTreeMap::new(), non_empty));
    }
    let counts = target.exact_row_counts(&non_empty).await?;
    Ok(partition_seeded(&recorded, &counts, non_empty))
}

/// The tables whose count is the one the ledger recorded when the
/// migrations filled them (seeded), and the others.
fn partition_seeded(
    recorded: &BTreeMap<QualifiedName, i64>,
    counts: &BTreeMap<QualifiedName, i64>,
    non_empty: Vec<QualifiedName>,
) -> (BTreeMap<QualifiedName, i64>, Vec<QualifiedName>) {
    let mut seeded = BTreeMap::new();
    let mut others = Vec::new();
    for table in non_empty {
        match (recorded.get(&table), counts.get(&table)) {
            (Some(then), Some(now)) if then == now => {
                seeded.insert(table, *now);
            }
            _ => others.push(table),
        }
    }
    (seeded, others)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::copy::CopyResult;

    fn name(s: &str) -> QualifiedName {
        QualifiedName::parse(s).unwrap()
    }

    fn state(status: &str, rows: i64) -> TableCopyState {
        TableCopyState {
            status: status.into(),
            rows,
        }
    }

    fn object(table: &str, kind: DeferredKind, object: &str) -> DeferredObject {
        DeferredObject {
            table: name(table),
            kind,
            name: object.into(),
            definition: String::new(),
            deferrable: String::new(),
            validated: false,
            follow_up: Vec::new(),
            referenced: None,
        }
    }

    fn job(table: &str) -> CopyJob {
        CopyJob {
            table: name(table),
            columns: vec!["id".into()],
            partitioned: false,
            source_bytes: 0,
            emptied_by_delete: false,
        }
    }

    fn outcome(jobs: &[&str]) -> CopyOutcome {
        CopyOutcome {
            jobs: jobs.iter().map(|t| job(t)).collect(),
            start: Start::default(),
            deferral: Deferral::default(),
            pipeline: PipelineOutcome::default(),
            sequences_set: 0,
            rebuild: Ok(RebuildOutcome::default()),
            parallel: 2,
            ledger_schema: "cutover".into(),
        }
    }

    #[test]
    fn a_run_resumes_when_objects_are_owed_or_a_table_is_not_complete() {
        let complete = BTreeMap::from([("public.a".to_string(), state("complete", 1))]);
        assert!(!is_resuming(&complete, &[]));
        assert!(is_resuming(
            &complete,
            &[object("public.a", DeferredKind::Index, "i")]
        ));
        let copying = BTreeMap::from([("public.a".to_string(), state("copying", 0))]);
        assert!(is_resuming(&copying, &[]));
    }

    #[test]
    fn finished_tables_are_kept_only_while_their_count_holds() {
        let names = [name("public.a"), name("public.b"), name("public.c")];
        let states = BTreeMap::from([
            ("public.a".to_string(), state("done", 5)),
            ("public.b".to_string(), state("done", 7)),
            ("public.c".to_string(), state("copying", 0)),
        ]);
        assert_eq!(
            done_tables(&names, &states),
            vec![name("public.a"), name("public.b")]
        );
        let counts = BTreeMap::from([(name("public.a"), 5), (name("public.b"), 6)]);
        assert_eq!(
            finished_tables(&names, &states, &counts),
            BTreeMap::from([(name("public.a"), 5)])
        );
    }

    #[test]
    fn rows_on_the_target_are_refused_without_overwrite() {
        assert!(refuse_rows(&[], false, "nothing was copied").is_ok());
        assert!(refuse_rows(&[name("public.a")], true, "nothing was copied").is_ok());
        let refused = refuse_rows(
            &[name("public.a"), name("public.b")],
            false,
            "nothing was copied",
        )
        .unwrap_err();
        assert_eq!(
            refused.message,
            "target tables already hold rows: public.a, public.b; nothing was copied"
        );
    }

    #[test]
    fn owed_objects_are_not_dropped_again_and_keys_left_not_valid_are_validated() {
        let owed = [object("public.a", DeferredKind::Index, "a_idx")];
        let deferred = vec![
            object("public.a", DeferredKind::Index, "a_idx"),
            object("public.a", DeferredKind::ForeignKey, "a_b_fk"),
            object("public.a", DeferredKind::ForeignKey, "a_c_fk"),
        ];
        let left = BTreeSet::from([("public.a".to_string(), "a_b_fk".to_string())]);
        let dropped = objects_to_drop(deferred, &owed, &left);
        let names: Vec<(&str, bool)> = dropped
            .iter()
            .map(|o| (o.name.as_str(), o.validated))
            .collect();
        assert_eq!(names, [("a_b_fk", true), ("a_c_fk", false)]);
    }

    #[test]
    fn overwrite_empties_every_table_only_when_starting_afresh() {
        let names = [name("public.a"), name("public.b")];
        let start = Start {
            seeded: BTreeMap::from([(name("public.b"), 3)]),
            ..Start::default()
        };
        assert_eq!(tables_to_empty(&start, &names, true), names.to_vec());
        assert_eq!(tables_to_empty(&start, &names, false), [name("public.b")]);
        let resumed = Start {
            resuming: true,
            ..Start::default()
        };
        assert!(tables_to_empty(&resumed, &names, true).is_empty());
    }

    #[test]
    fn seeded_tables_are_those_whose_count_is_unchanged() {
        let recorded = BTreeMap::from([(name("public.a"), 3), (name("public.b"), 4)]);
        let counts = BTreeMap::from([
            (name("public.a"), 3),
            (name("public.b"), 5),
            (name("public.c"), 1),
        ]);
        let (seeded, others) = partition_seeded(
            &recorded,
            &counts,
            vec![name("public.a"), name("public.b"), name("public.c")],
        );
        assert_eq!(seeded, BTreeMap::from([(name("public.a"), 3)]));
        assert_eq!(others, [name("public.b"), name("public.c")]);
    }

    #[test]
    fn a_fresh_start_says_which_tables_held_rows() {
        let start = Start {
            seeded: BTreeMap::from([(name("public.a"), 1)]),
            overwritten: vec![name("public.b")],
            ..Start::default()
        };
        let checks = start_checks(&start, 3);
        let rows: Vec<(&str, Status, &str)> = checks
            .iter()
            .map(|c| (c.id.as_str(), c.status, c.evidence.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                (
                    "seeded-rows",
                    Status::Pass,
                    "public.a (1 row): created and filled by `schema` (recorded in the ledger), unchanged since"
                ),
                (
                    "target-empty",
                    Status::Warn,
                    "1 tables held rows and were truncated (--overwrite)"
                ),
            ]
        );
        assert_eq!(
            start_checks(&Start::default(), 3)[0].evidence,
            "all 3 tables empty"
        );
    }

    #[test]
    fn a_copy_reports_kept_copied_and_missing_tables() {
        let mut outcome = outcome(&["public.a", "public.b", "public.c"]);
        outcome.start.resuming = true;
        outcome.start.finished.insert(name("public.a"), 10);
        outcome.pipeline.copied.insert(
            name("public.b"),
            CopyResult {
                rows: 5,
                bytes: 2048,
                duration: Duration::from_secs(1),
            },
        );
        outcome.pipeline.failures.push((
            name("public.c"),
            PgError::Query {
                context: "copying public.c".into(),
                message: "boom".into(),
                sqlstate: None,
            },
        ));
        assert_eq!(totals(&outcome), (15, 2048));
        assert!(!outcome.complete());
        let report = report(outcome);
        assert_eq!(report.outcome, Outcome::Failed);
        assert_eq!(report.errors.len(), 1);
        assert_eq!(
            report.summary,
            "3 tables: 1 copied, 1 kept from an interrupted run, 1 failed; 15 rows."
        );
        let cells: Vec<String> = report.tables[0]
            .rows
            .iter()
            .map(|r| r[2].to_string())
            .collect();
        assert_eq!(cells[0], "kept from the interrupted run");
        assert_eq!(cells[2], emphasis("not copied"));
    }

    #[test]
    fn keys_left_not_valid_warn_and_keep_the_copy_open() {
        let mut outcome = outcome(&["public.a"]);
        outcome.rebuild = Ok(RebuildOutcome {
            unvalidated: vec!["fk on public.a".into()],
            ..RebuildOutcome::default()
        });
        assert!(!outcome.complete());
        let checks = rebuild_checks(&outcome.rebuild, 1, "cutover");
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].status, Status::Warn);
        assert!(
            checks[0]
                .evidence
                .ends_with("; left NOT VALID until the copy is complete: fk on public.a")
        );
    }

    #[test]
    fn a_failed_rebuild_names_where_the_definitions_are_kept() {
        let failed: Result<RebuildOutcome, PgError> = Err(PgError::Query {
            context: "rebuilding".into(),
            message: "boom".into(),
            sqlstate: None,
        });
        let checks = rebuild_checks(&failed, 2, "ledger");
        assert_eq!(checks[0].status, Status::Fail);
        assert!(
            checks[0].hint.as_deref().is_some_and(
                |h| h.starts_with("the definitions are kept in ledger.deferred_objects")
            )
        );
    }
}
