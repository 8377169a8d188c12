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
    CheckItem, ErrorReport, Outcome, PhaseReport, ReportTable, Status, human_duration, thousands,
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
    let (source, target, jobs) = super::plan_jobs(ctx).await?;
    let names: Vec<QualifiedName> = jobs.iter().map(|j| j.table.clone()).collect();

    if dry_run {
        report
            .tables
            .push(super::planned_tables("Tables to copy (dry-run)", &jobs));
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
    jobs: Vec<CopyJob>,
    report: &mut PhaseReport,
) -> Result<(), PhaseError> {
    let copy_ledger = CopyLedger::new(target, ledger_schema);
    let states = copy_ledger.table_states().await?;
    let owed = copy_ledger.dropped_objects().await?;
    let resuming = !owed.is_empty() || states.values().any(|s| s.status != "complete");

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
        if !non_empty.is_empty() && !ctx.settings.overwrite {
            return Err(PhaseError::new(format!(
                "target tables already hold rows: {}; nothing was copied",
                non_empty.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
            ))
            .hint("back up the target (`backup`), then pass --overwrite (input `overwrite: true`) to replace exactly the copied tables, or empty them"));
        }
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

    // Defer indexes and constraints: remembered and dropped in one transaction.
    let owed_keys: BTreeSet<_> = owed.iter().map(DeferredObject::key).collect();
    let current: Vec<DeferredObject> = target
        .deferrable_objects(names)
        .await?
        .into_iter()
        .filter(|o| !owed_keys.contains(&o.key()))
        .collect();
    copy_ledger
        .drop_objects(&current, &owed, ctx.run_id)
        .await?;
    let mut to_rebuild = owed;
    to_rebuild.extend(current);
    if ctx.settings.overwrite && !resuming {
        copy_ledger.truncate(names).await?;
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
    let reporter = spawn_progress(ctx, in_flight.clone());
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
    let rebuild = rebuild_all(ctx, target, &copy_ledger, &to_rebuild, &built).await;

    // Report.
    let mut table = ReportTable::new("Tables copied", &["Table", "Rows", "Data", "Took", "Rate"]);
    let mut total_rows = 0u64;
    let mut total_bytes = 0u64;
    for job in &jobs {
        if let Some(rows) = finished.get(&job.table) {
            table.push([
                job.table.to_string(),
                thousands(*rows),
                "—".into(),
                "—".into(),
                "kept from the interrupted run".into(),
            ]);
            total_rows += *rows as u64;
        } else if let Some(r) = copied.get(&job.table) {
            total_rows += r.rows;
            total_bytes += r.bytes;
            table.push([
                job.table.to_string(),
                thousands(r.rows as i64),
                bytes_text(r.bytes),
                human_duration(r.duration.as_millis() as u64),
                rate_text(r.bytes, r.duration),
            ]);
        } else {
            table.push([
                job.table.to_string(),
                "—".into(),
                "—".into(),
                "—".into(),
                "**not copied**".into(),
            ]);
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
                "{} sequences set with setval(last_value, is_called)",
                sequences_set.len()
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
    match rebuild {
        Ok((took, unvalidated)) => {
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
    if report.outcome == Outcome::Success && !report.has_failures() {
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

/// Rebuilds indexes and keys in parallel, then foreign keys (`NOT VALID`,
/// then validated in parallel). Returns the time taken and the foreign keys
/// whose validation failed (left `NOT VALID`, still owed in the ledger).
pub(super) async fn rebuild_all(
    ctx: &Context,
    target: &Database,
    ledger: &CopyLedger,
    objects: &[DeferredObject],
    already_built: &BTreeSet<(String, DeferredKind, String)>,
) -> Result<(Duration, Vec<String>), PgError> {
    let started = Instant::now();
    let parallel = usize::from(ctx.manifest.data.parallel);
    if objects.is_empty() {
        return Ok((started.elapsed(), Vec::new()));
    }
    ctx.console.progress(&format!(
        "rebuilding {} indexes and constraints, {parallel} at a time",
        objects.len()
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
        if step.validate.is_none() {
            ledger.mark_restored(object).await?;
        }
    }
    // 3. Validate foreign keys, in parallel; a failure leaves the key NOT
    // VALID and still owed in the ledger.
    let validations: Vec<(String, Result<(), PgError>)> =
        futures_util::stream::iter(steps.iter().filter(|(_, s)| s.validate.is_some()))
            .map(|(object, step)| async move {
                let sql = step.validate.as_deref().unwrap_or_default();
                let result = match target.run_ddl(sql).await {
                    Ok(_) => ledger.mark_restored(object).await,
                    Err(e) => Err(e),
                };
                (format!("{} on {}", object.name, object.table), result)
            })
            .buffer_unordered(parallel)
            .collect()
            .await;
    let unvalidated = validations
        .into_iter()
        .filter(|(_, r)| r.is_err())
        .map(|(name, _)| name)
        .collect();
    Ok((started.elapsed(), unvalidated))
}

fn spawn_progress(ctx: &Context, in_flight: InFlight) -> tokio::task::JoinHandle<()> {
    let console = ctx.console;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            let lines: Vec<String> = in_flight
                .lock()
                .expect("progress lock")
                .iter()
                .filter(|(_, (start, _, _))| start.elapsed() >= PROGRESS_EVERY)
                .map(|(table, (start, progress, estimate))| {
                    let bytes = progress.bytes.load(Ordering::Relaxed);
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
                        "  {table}: {} of ~{} ({}){eta}",
                        bytes_text(bytes),
                        bytes_text(estimate),
                        rate_text(bytes, elapsed)
                    )
                })
                .collect();
            for line in lines {
                console.progress(&line);
            }
        }
    })
}
