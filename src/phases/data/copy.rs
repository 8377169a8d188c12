//! `data` in copy mode: copies rows source → target.
//!
//! One exported source snapshot shared by every worker, tables copied in
//! parallel (largest first) as binary COPY streams, triggers off
//! (`session_replication_role = replica`), indexes and constraints dropped
//! before loading and rebuilt in parallel after, sequences set from the source.
//! Each table is copied in one target transaction, so an interruption leaves
//! whole tables or empty ones; the ledger knows which are finished, and which
//! indexes and constraints are still owed, so a re-run resumes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use std::future::Future;
use std::pin::Pin;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::context::Context;
use crate::manifest::QualifiedName;
use crate::pg::copy::{
    CopyJob, CopyLedger, CopyProgress, CopyResult, DeferredKind, DeferredObject, RebuildSteps,
    rebuild_statements,
};
use crate::pg::{Database, PgError};
use crate::report::{
    CheckItem, ErrorReport, Outcome, PhaseReport, ROW_COUNTS, ReportTable, Status, count, emphasis,
    human_duration, thousands,
};

use super::super::PhaseError;
use super::{bytes_text, rate_text};

/// What finished in the copy-and-build pipeline.
enum Event {
    /// A table's copy ended.
    Copied(QualifiedName, Result<CopyResult, PgError>),
    /// An index build (of an index or a key's index) ended.
    Built((String, DeferredKind, String), Result<(), PgError>),
}

/// A pipeline task. Not `Send`: the pipeline is polled in place, never spawned.
type Task<'a> = Pin<Box<dyn Future<Output = Event> + 'a>>;

fn boxed<'a>(future: impl Future<Output = Event> + 'a) -> Task<'a> {
    Box::pin(future)
}

/// Builds one index (or a key's index) once a slot is free.
fn build_future<'a>(
    object: &'a DeferredObject,
    target: &'a Database,
    slots: Arc<tokio::sync::Semaphore>,
) -> Task<'a> {
    boxed(async move {
        let _slot = slots.acquire_owned().await.expect("semaphore open");
        let sql = rebuild_statements(object).build.unwrap_or_default();
        Event::Built(object.key(), target.run_ddl(&sql).await.map(|_| ()))
    })
}

/// Tables being copied: start, live progress, estimated size.
type InFlight = Arc<std::sync::Mutex<BTreeMap<String, (Instant, Arc<CopyProgress>, i64)>>>;

/// How often a long copy prints a progress line.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Runs `data` in copy mode.
pub async fn run(ctx: &mut Context) -> Result<PhaseReport, PhaseError> {
    let mut report = PhaseReport::new("data");
    let dry_run = ctx.settings.dry_run;
    let super::DataPlan {
        source,
        target,
        jobs,
        created_by_schema,
    } = super::plan_jobs(ctx).await?;
    let names: Vec<QualifiedName> = jobs.iter().map(|j| j.table.clone()).collect();

    if dry_run {
        report
            .tables
            .push(super::planned_tables("Tables to copy (dry-run)", &jobs));
        if !created_by_schema.is_empty() {
            let mut table = ReportTable::new(
                "Tables `schema` would create first (dry-run)",
                &["Table", "Created by"],
            );
            for (name, file) in &created_by_schema {
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
        return Ok(report);
    }

    let ledger_schema = ctx.manifest.ledger.schema.clone();
    ctx.ledger("data").await?;
    let wait = Duration::from_secs(ctx.manifest.schema.lock_timeout_seconds);
    let lock = target.lock_for_run(wait).await?;
    let result = copy_with_lock(
        ctx,
        &source,
        &target,
        &ledger_schema,
        &names,
        jobs,
        &mut report,
    )
    .await;
    lock.release().await;
    result?;
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn copy_with_lock(
    ctx: &Context,
    source: &Database,
    target: &Database,
    ledger_schema: &str,
    names: &[QualifiedName],
    mut jobs: Vec<CopyJob>,
    report: &mut PhaseReport,
) -> Result<(), PhaseError> {
    // Dropping keys and emptying tables wait at most this long for a lock an
    // application transaction holds, and then name it.
    let copy_ledger = CopyLedger::new(target, ledger_schema).with_lock_timeout(
        Duration::from_secs(ctx.manifest.schema.lock_timeout_seconds),
    );
    let states = copy_ledger.table_states().await?;
    let owed = copy_ledger.dropped_objects().await?;
    let resuming = !owed.is_empty() || states.values().any(|s| s.status != "complete");

    let mut replaced_seeded: Vec<QualifiedName> = Vec::new();
    // Which tables are already finished (an interrupted run's work).
    let mut finished: BTreeMap<QualifiedName, i64> = BTreeMap::new();
    if resuming {
        let done: Vec<QualifiedName> = names
            .iter()
            .filter(|n| {
                states
                    .get(&n.to_string())
                    .is_some_and(|s| s.status == "done")
            })
            .cloned()
            .collect();
        let counts = target.exact_row_counts(&done).await?;
        for name in done {
            let recorded = states[&name.to_string()].rows;
            if counts.get(&name) == Some(&recorded) {
                finished.insert(name, recorded);
            }
        }
        report.check(CheckItem::new(
            "resume",
            "Interrupted copy resumed",
            Status::Pass,
            format!(
                "{} tables finished earlier are kept, {} indexes/constraints still owed will be rebuilt",
                finished.len(),
                owed.len()
            ),
        ));
    } else {
        let non_empty = target.non_empty_tables(names).await?;
        // Rows the migrations wrote (and nothing since) are the source's to
        // replace; any other row is refused unless overwrite is asked.
        let (seeded, non_empty) = split_seeded(target, ledger_schema, non_empty).await?;
        if !non_empty.is_empty() && !ctx.settings.overwrite {
            return Err(PhaseError::new(format!(
                "target tables already hold rows: {}; nothing was copied",
                non_empty.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
            ))
            .hint("back up the target (`backup`), then pass --overwrite (input `overwrite: true`) to replace exactly the copied tables, or empty them"));
        }
        if !seeded.is_empty() {
            report.check(CheckItem::new(
                "seeded-rows",
                "Rows the migrations wrote are replaced by the source's",
                Status::Pass,
                format!(
                    "{}: created and filled by `schema` (recorded in the ledger), unchanged since",
                    seeded
                        .iter()
                        .map(|(t, n)| format!("{t} ({})", count(*n, "row", "rows")))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        replaced_seeded = seeded.into_keys().collect();
        copy_ledger.reset_states().await?;
        report.check(CheckItem::new(
            "target-empty",
            "Target tables empty or overwrite asked",
            if non_empty.is_empty() {
                Status::Pass
            } else {
                Status::Warn
            },
            if non_empty.is_empty() {
                format!("all {} tables empty", names.len())
            } else {
                format!(
                    "{} tables held rows and were truncated (--overwrite)",
                    non_empty.len()
                )
            },
        ));
    }

    // Defer indexes and constraints: remembered and dropped in one
    // transaction. What the role may not drop stays in place. A foreign key
    // an earlier copy left NOT VALID (its referenced rows were missing) is
    // validated again this time.
    let owed_keys: BTreeSet<_> = owed.iter().map(DeferredObject::key).collect();
    let left_not_valid = copy_ledger.left_not_valid().await?;
    let deferral = target.deferral_plan(names).await?;
    let referenced_by_kept = deferral.referenced_by_kept_keys();
    let emptied_by_delete = deferral.referenced_from_outside(names);
    for job in &mut jobs {
        job.emptied_by_delete = referenced_by_kept.contains(&job.table);
    }
    // Shown: what stays on the copied tables themselves (keys of tables
    // outside the copy that point at them are theirs to keep).
    let kept: Vec<_> = deferral
        .kept
        .iter()
        .filter(|k| names.contains(&k.table))
        .cloned()
        .collect();
    let current: Vec<DeferredObject> = deferral
        .deferred
        .into_iter()
        .filter(|o| !owed_keys.contains(&o.key()))
        .map(|mut o| {
            if left_not_valid.contains(&(o.table.to_string(), o.name.clone())) {
                o.validated = true;
            }
            o
        })
        .collect();
    copy_ledger
        .drop_objects(&current, &owed, ctx.run_id)
        .await?;
    let mut to_rebuild = owed;
    to_rebuild.extend(current);
    if ctx.settings.overwrite && !resuming {
        copy_ledger.truncate(names, &emptied_by_delete).await?;
    } else if !replaced_seeded.is_empty() {
        copy_ledger
            .truncate(&replaced_seeded, &emptied_by_delete)
            .await?;
    }
    if let (Some(ledger), false) = (ctx.open_ledger(), replaced_seeded.is_empty()) {
        ledger.forget_seeded(&replaced_seeded).await?;
    }

    // Copy.
    let started = Instant::now();
    let snapshot = source.export_snapshot().await?;
    let pending: Vec<CopyJob> = jobs
        .iter()
        .filter(|j| !finished.contains_key(&j.table))
        .cloned()
        .collect();
    let in_flight: InFlight = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let reporter = spawn_progress(ctx, target, in_flight.clone());
    let parallel = usize::from(ctx.manifest.data.parallel);
    // One pool of `parallel` slots for copies and index builds: a table's
    // indexes start building as soon as its rows are in, while other tables
    // are still copying, so neither core idles while the largest table copies.
    let slots = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut builds_by_table: BTreeMap<QualifiedName, Vec<&DeferredObject>> = BTreeMap::new();
    for object in &to_rebuild {
        if rebuild_statements(object).build.is_some() {
            builds_by_table
                .entry(object.table.clone())
                .or_default()
                .push(object);
        }
    }
    let mut work = FuturesUnordered::new();
    for job in pending {
        let copy_ledger = &copy_ledger;
        let snapshot_id = snapshot.id.clone();
        let in_flight = in_flight.clone();
        let stop = stop.clone();
        let slots = slots.clone();
        work.push(boxed(async move {
            let _slot = slots.acquire_owned().await.expect("semaphore open");
            if stop.load(Ordering::Relaxed) {
                return Event::Copied(
                    job.table.clone(),
                    Err(PgError::Query {
                        context: format!("copying {}", job.table),
                        message: "not started: another table failed".into(),
                        sqlstate: None,
                    }),
                );
            }
            let progress = Arc::new(CopyProgress::default());
            in_flight.lock().expect("progress lock").insert(
                job.table.to_string(),
                (Instant::now(), progress.clone(), job.source_bytes),
            );
            let result = copy_ledger
                .copy_table(&source.pool, &snapshot_id, &job, ctx.run_id, progress)
                .await;
            in_flight
                .lock()
                .expect("progress lock")
                .remove(&job.table.to_string());
            if result.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            Event::Copied(job.table.clone(), result)
        }));
    }
    let mut results: Vec<(QualifiedName, Result<CopyResult, PgError>)> = Vec::new();
    let mut built: BTreeSet<(String, DeferredKind, String)> = BTreeSet::new();
    // Tables kept from an interrupted run can have their indexes built at once.
    for table in finished.keys() {
        for object in builds_by_table.get(table).into_iter().flatten() {
            work.push(build_future(object, target, slots.clone()));
        }
    }
    while let Some(event) = work.next().await {
        match event {
            Event::Copied(table, result) => {
                if result.is_ok() {
                    for object in builds_by_table.get(&table).into_iter().flatten() {
                        work.push(build_future(object, target, slots.clone()));
                    }
                }
                results.push((table, result));
            }
            // A failed early build is retried by the final rebuild, which
            // reports it.
            Event::Built(key, Ok(())) => {
                built.insert(key);
            }
            Event::Built(_, Err(_)) => {}
        }
    }
    reporter.abort();
    snapshot.close().await;
    let copy_took = started.elapsed();

    let mut copied: BTreeMap<QualifiedName, CopyResult> = BTreeMap::new();
    let mut failures = Vec::new();
    for (table, result) in results {
        match result {
            Ok(r) => {
                copied.insert(table, r);
            }
            Err(e) => failures.push((table, e)),
        }
    }

    // Sequences, then the rebuild, which runs even after a failed copy so
    // nothing is left missing.
    let mut sequences_set = Vec::new();
    if failures.is_empty() {
        let values = source.sequence_values().await?;
        sequences_set = target.set_sequences(&values).await?;
    }
    let rebuild = rebuild_all(ctx, target, &copy_ledger, &to_rebuild, &built, names).await;

    // Report.
    let mut table =
        ReportTable::new("Tables copied", &["Table", "Copied", "Copy"]).merged_as(ROW_COUNTS);
    let mut total_rows = 0u64;
    let mut total_bytes = 0u64;
    for job in &jobs {
        if let Some(rows) = finished.get(&job.table) {
            table.push([
                job.table.to_string(),
                thousands(*rows),
                "kept from the interrupted run".into(),
            ]);
            total_rows += *rows as u64;
        } else if let Some(r) = copied.get(&job.table) {
            total_rows += r.rows;
            total_bytes += r.bytes;
            // The rate is the two figures divided: the checklist gives the
            // whole copy's.
            table.push([
                job.table.to_string(),
                thousands(r.rows as i64),
                format!(
                    "{} in {}",
                    bytes_text(r.bytes),
                    human_duration(r.duration.as_millis() as u64)
                ),
            ]);
        } else {
            table.push([job.table.to_string(), "—".into(), emphasis("not copied")]);
        }
    }
    report.tables.push(table.with_note(format!(
        "One source snapshot; binary COPY streamed source → target, {parallel} tables at a time, triggers off (session_replication_role = replica)."
    )));
    let mut deferred = ReportTable::new(
        "Indexes and constraints deferred and rebuilt",
        &["Kind", "Count"],
    );
    let mut by_kind: BTreeMap<DeferredKind, usize> = BTreeMap::new();
    for o in &to_rebuild {
        *by_kind.entry(o.kind).or_default() += 1;
    }
    for (kind, n) in by_kind {
        deferred.push([kind.word().to_string(), n.to_string()]);
    }
    report.tables.push(deferred);
    report.tables.extend(super::kept_objects_table(&kept));

    if failures.is_empty() {
        report.check(CheckItem::new(
            "copy",
            "Rows copied",
            Status::Pass,
            format!(
                "{} rows, {} in {} tables in {} ({})",
                thousands(total_rows as i64),
                bytes_text(total_bytes),
                jobs.len(),
                human_duration(copy_took.as_millis() as u64),
                rate_text(total_bytes, copy_took)
            ),
        ));
        report.check(CheckItem::new(
            "sequences",
            "Sequences set from the source",
            Status::Pass,
            format!(
                "{} set with setval(last_value, is_called)",
                crate::report::count(sequences_set.len(), "sequence", "sequences")
            ),
        ));
    } else {
        for (table, e) in &failures {
            report.errors.push(ErrorReport {
                message: format!("{table}: {e}"),
                hint: Some("fix the cause and re-run `data`: finished tables are kept, this one is copied again".into()),
            });
        }
        report.outcome = Outcome::Failed;
    }
    let mut copy_complete = false;
    match rebuild {
        Ok(RebuildOutcome {
            took,
            unvalidated,
            missing_references,
        }) => {
            copy_complete = unvalidated.is_empty();
            let status = if unvalidated.is_empty() {
                Status::Pass
            } else {
                Status::Warn
            };
            let mut evidence = format!(
                "{} rebuilt in {}",
                to_rebuild.len(),
                human_duration(took.as_millis() as u64)
            );
            if !unvalidated.is_empty() {
                evidence.push_str(&format!(
                    "; left NOT VALID until the copy is complete: {}",
                    unvalidated.join(", ")
                ));
            }
            report.check(CheckItem::new(
                "rebuild",
                "Indexes and constraints rebuilt",
                status,
                evidence,
            ));
            if !missing_references.is_empty() {
                let auth = missing_references
                    .iter()
                    .any(|r| r.referenced.schema == "auth");
                report.check(
                    CheckItem::new(
                        "foreign-keys-outside-copy",
                        "Foreign keys to tables not copied hold",
                        Status::Fail,
                        format!(
                            "left NOT VALID, their referenced rows are missing on the target: {}",
                            missing_references
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
        }
        Err(e) => {
            report.check(
                CheckItem::new("rebuild", "Indexes and constraints rebuilt", Status::Fail, e.to_string())
                    .with_hint(format!(
                        "the definitions are kept in {ledger_schema}.deferred_objects; fix the cause and re-run `data` to rebuild them"
                    )),
            );
        }
    }
    // Every table and every object is back: the copy is finished even when a
    // foreign key to a table outside it could not be validated, so the next
    // run starts afresh instead of "resuming".
    if copy_complete && failures.is_empty() && report.outcome == Outcome::Success {
        copy_ledger.complete_session().await?;
    }
    report.summary = format!(
        "{} tables: {} copied, {} kept from an interrupted run, {} failed; {} rows.",
        jobs.len(),
        copied.len(),
        finished.len(),
        failures.len(),
        thousands(total_rows as i64)
    );
    Ok(())
}

/// What [`rebuild_all`] did.
pub(super) struct RebuildOutcome {
    /// How long it took.
    pub took: Duration,
    /// Foreign keys between copied tables whose validation failed: left
    /// `NOT VALID` and still owed in the ledger.
    pub unvalidated: Vec<String>,
    /// Foreign keys to tables outside the copy whose validation failed: the
    /// referenced rows are missing on the target. Left `NOT VALID`, recorded
    /// as finished.
    pub missing_references: Vec<DeferredObjectRef>,
}

/// A foreign key that references rows missing on the target.
pub(super) struct DeferredObjectRef {
    /// Its name.
    pub name: String,
    /// The referencing (copied) table.
    pub table: QualifiedName,
    /// The referenced table, not copied.
    pub referenced: QualifiedName,
}

/// Rebuilds indexes and keys in parallel, then foreign keys (`NOT VALID`,
/// then validated in parallel), putting back each object's comment, replica
/// identity and clustering. `copied` are the tables of the copy: a foreign
/// key to any other table that fails validation is reported as a missing
/// reference, not as owed work.
pub(super) async fn rebuild_all(
    ctx: &Context,
    target: &Database,
    ledger: &CopyLedger,
    objects: &[DeferredObject],
    already_built: &BTreeSet<(String, DeferredKind, String)>,
    copied: &[QualifiedName],
) -> Result<RebuildOutcome, PgError> {
    let started = Instant::now();
    let parallel = usize::from(ctx.manifest.data.parallel);
    if objects.is_empty() {
        return Ok(RebuildOutcome {
            took: started.elapsed(),
            unvalidated: Vec::new(),
            missing_references: Vec::new(),
        });
    }
    ctx.console.progress(&format!(
        "rebuilding {}, {parallel} at a time",
        count(
            objects.len(),
            "index or constraint",
            "indexes and constraints"
        )
    ));
    let steps: Vec<(&DeferredObject, RebuildSteps)> =
        objects.iter().map(|o| (o, rebuild_statements(o))).collect();
    // 1. Index builds not already done during the copy, in parallel.
    let built: Vec<Result<Duration, PgError>> = futures_util::stream::iter(
        steps
            .iter()
            .filter(|(o, _)| !already_built.contains(&o.key()))
            .filter_map(|(_, s)| s.build.clone()),
    )
    .map(|sql| async move { target.run_ddl(&sql).await })
    .buffer_unordered(parallel)
    .collect()
    .await;
    if let Some(Err(e)) = built.into_iter().find(|r| r.is_err()) {
        return Err(e);
    }
    // 2. Attach keys, then add foreign keys NOT VALID, one at a time.
    let mut ordered: Vec<&(&DeferredObject, RebuildSteps)> = steps.iter().collect();
    ordered.sort_by_key(|(o, _)| o.kind == DeferredKind::ForeignKey);
    for (object, step) in &ordered {
        if let Some(sql) = &step.attach {
            target.run_ddl(sql).await?;
        }
        for sql in &object.follow_up {
            target.run_ddl(sql).await?;
        }
        if step.validate.is_none() {
            ledger.mark_restored(object).await?;
        }
    }
    // 3. Validate foreign keys, in parallel; a failure leaves the key NOT
    // VALID and still owed in the ledger.
    let validations: Vec<(&DeferredObject, Result<(), PgError>)> =
        futures_util::stream::iter(steps.iter().filter(|(_, s)| s.validate.is_some()))
            .map(|(object, step)| async move {
                let sql = step.validate.as_deref().unwrap_or_default();
                let result = match target.run_ddl(sql).await {
                    Ok(_) => ledger.mark_restored(object).await,
                    Err(e) => Err(e),
                };
                (*object, result)
            })
            .buffer_unordered(parallel)
            .collect()
            .await;
    let mut outcome = RebuildOutcome {
        took: Duration::ZERO,
        unvalidated: Vec::new(),
        missing_references: Vec::new(),
    };
    for (object, result) in validations {
        let Err(e) = result else { continue };
        // 23503: rows reference rows that are not there.
        // A key between a copied table and one outside the copy (either
        // way round) that fails holds rows the copy cannot make whole.
        let outside = object.referenced.as_ref().filter(|r| {
            (!copied.contains(r) || !copied.contains(&object.table))
                && e.sqlstate() == Some("23503")
        });
        match outside {
            Some(referenced) => {
                ledger.mark_not_valid(object).await?;
                outcome.missing_references.push(DeferredObjectRef {
                    name: object.name.clone(),
                    table: object.table.clone(),
                    referenced: referenced.clone(),
                });
            }
            None => outcome
                .unvalidated
                .push(format!("{} on {}", object.name, object.table)),
        }
    }
    outcome.took = started.elapsed();
    Ok(outcome)
}

fn spawn_progress(
    ctx: &Context,
    target: &Database,
    in_flight: InFlight,
) -> tokio::task::JoinHandle<()> {
    let console = ctx.console;
    let target = target.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        tick.tick().await;
        // Bytes of each table at the last tick: a table that did not move
        // is waiting on something, and a lock is the usual thing.
        let mut last: BTreeMap<String, u64> = BTreeMap::new();
        loop {
            tick.tick().await;
            let mut stalled = false;
            let lines: Vec<String> = in_flight
                .lock()
                .expect("progress lock")
                .iter()
                .filter(|(_, (start, _, _))| start.elapsed() >= PROGRESS_EVERY)
                .map(|(table, (start, progress, estimate))| {
                    let bytes = progress.bytes.load(Ordering::Relaxed);
                    stalled |= last.insert(table.clone(), bytes) == Some(bytes);
                    let elapsed = start.elapsed();
                    let rate = bytes as f64 / elapsed.as_secs_f64().max(0.001);
                    let estimate = (*estimate).max(bytes as i64) as u64;
                    let eta = if rate > 0.0 {
                        format!(
                            ", ETA ~{}",
                            human_duration(((estimate - bytes) as f64 / rate * 1000.0) as u64)
                        )
                    } else {
                        String::new()
                    };
                    format!(
                        "  copying {table}: {} of ~{} ({}){eta}",
                        bytes_text(bytes),
                        bytes_text(estimate),
                        rate_text(bytes, elapsed)
                    )
                })
                .collect();
            for line in lines {
                console.progress(&line);
            }
            if stalled {
                for holder in target.blockers_of_cutover().await {
                    console.progress(&format!("  waiting for a lock on the target: {holder}"));
                }
            }
        }
    })
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
    Ok((seeded, others))
}
