//! The copy-and-build pipeline of copy mode: tables copied in parallel from
//! one exported source snapshot, each table's indexes built as soon as its
//! rows are in, with a progress line for long copies.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::context::Context;
use crate::manifest::QualifiedName;
use crate::pg::copy::rebuild_statements;
use crate::pg::copy::{CopyJob, CopyLedger, CopyProgress, CopyResult, DeferredObject};
use crate::pg::{Database, PgError};
use crate::report::human_duration;

use super::rebuild::ObjectKey;
use super::{bytes_text, rate_text};

/// How often a long copy prints a progress line.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What finished in the pipeline.
enum Event {
    /// A table's copy ended.
    Copied(QualifiedName, Result<CopyResult, PgError>),
    /// An index build (of an index or a key's index) ended.
    Built(ObjectKey, Result<(), PgError>),
}

/// A pipeline task. Not `Send`: the pipeline is polled in place, never spawned.
type Task<'a> = Pin<Box<dyn Future<Output = Event> + 'a>>;

/// Tables being copied: start, live progress, estimated size.
type InFlight = Arc<std::sync::Mutex<BTreeMap<String, (Instant, Arc<CopyProgress>, i64)>>>;

/// What the pipeline did.
#[derive(Debug, Default)]
pub(super) struct PipelineOutcome {
    /// The tables copied, with rows, bytes and time.
    pub copied: BTreeMap<QualifiedName, CopyResult>,
    /// The tables whose copy failed, in the order they ended.
    pub failures: Vec<(QualifiedName, PgError)>,
    /// The index builds that succeeded (a failed one is left to the rebuild).
    pub built: BTreeSet<ObjectKey>,
    /// How long the copy took.
    pub took: Duration,
}

/// What every copy task shares.
struct Shared<'a> {
    source: &'a Database,
    target: &'a Database,
    copy_ledger: &'a CopyLedger,
    snapshot_id: String,
    run_id: Uuid,
    in_flight: InFlight,
    /// Set by the first failed copy: the copies not started yet are not.
    stop: AtomicBool,
    /// One pool of `parallel` slots for copies and index builds: a table's
    /// indexes start building as soon as its rows are in, while other tables
    /// are still copying, so neither core idles while the largest table copies.
    slots: Semaphore,
}

/// Copies `pending` from one snapshot of the source, `parallel` at a time,
/// building each copied table's indexes (and those of `finished`, kept from
/// an interrupted run) as soon as a slot is free.
pub(super) async fn copy_tables(
    ctx: &Context,
    source: &Database,
    target: &Database,
    copy_ledger: &CopyLedger,
    pending: Vec<CopyJob>,
    finished: &[QualifiedName],
    to_rebuild: &[DeferredObject],
) -> Result<PipelineOutcome, PgError> {
    let started = Instant::now();
    let snapshot = source.export_snapshot().await?;
    let shared = Shared {
        source,
        target,
        copy_ledger,
        snapshot_id: snapshot.id.clone(),
        run_id: ctx.run_id,
        in_flight: InFlight::default(),
        stop: AtomicBool::new(false),
        slots: Semaphore::new(usize::from(ctx.manifest.data.parallel)),
    };
    let reporter = spawn_progress(ctx, target, shared.in_flight.clone());
    let builds = builds_by_table(to_rebuild);
    let mut work: FuturesUnordered<Task> = pending
        .into_iter()
        .map(|job| copy_future(&shared, job))
        .collect();
    for table in finished {
        work.extend(build_futures(&shared, &builds, table));
    }
    let mut outcome = PipelineOutcome::default();
    while let Some(event) = work.next().await {
        match event {
            Event::Copied(table, Ok(result)) => {
                work.extend(build_futures(&shared, &builds, &table));
                outcome.copied.insert(table, result);
            }
            Event::Copied(table, Err(e)) => outcome.failures.push((table, e)),
            Event::Built(key, Ok(())) => {
                outcome.built.insert(key);
            }
            // A failed early build is retried by the final rebuild, which
            // reports it.
            Event::Built(_, Err(_)) => {}
        }
    }
    reporter.abort();
    snapshot.close().await;
    outcome.took = started.elapsed();
    Ok(outcome)
}

/// The objects with an index to build, by table.
fn builds_by_table(objects: &[DeferredObject]) -> BTreeMap<QualifiedName, Vec<&DeferredObject>> {
    let mut by_table: BTreeMap<QualifiedName, Vec<&DeferredObject>> = BTreeMap::new();
    for object in objects {
        if rebuild_statements(object).build.is_some() {
            by_table
                .entry(object.table.clone())
                .or_default()
                .push(object);
        }
    }
    by_table
}

/// The builds of one table's indexes, each once a slot is free.
fn build_futures<'a>(
    shared: &'a Shared<'a>,
    builds: &BTreeMap<QualifiedName, Vec<&'a DeferredObject>>,
    table: &QualifiedName,
) -> Vec<Task<'a>> {
    let objects = builds.get(table).cloned().unwrap_or_default();
    objects
        .into_iter()
        .map(|object| -> Task<'a> {
            Box::pin(async move {
                let _slot = shared.slots.acquire().await.expect("semaphore open");
                let sql = rebuild_statements(object).build.unwrap_or_default();
                Event::Built(object.key(), shared.target.run_ddl(&sql).await.map(|_| ()))
            })
        })
        .collect()
}

/// Copies one table once a slot is free, unless another table failed first.
fn copy_future<'a>(shared: &'a Shared<'a>, job: CopyJob) -> Task<'a> {
    Box::pin(async move {
        let _slot = shared.slots.acquire().await.expect("semaphore open");
        if shared.stop.load(Ordering::Relaxed) {
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
        let key = job.table.to_string();
        shared.in_flight.lock().expect("progress lock").insert(
            key.clone(),
            (Instant::now(), progress.clone(), job.source_bytes),
        );
        let result = shared
            .copy_ledger
            .copy_table(
                &shared.source.pool,
                &shared.snapshot_id,
                &job,
                shared.run_id,
                progress,
            )
            .await;
        shared.in_flight.lock().expect("progress lock").remove(&key);
        if result.is_err() {
            shared.stop.store(true, Ordering::Relaxed);
        }
        Event::Copied(job.table.clone(), result)
    })
}

/// Prints a line for every table copying for longer than [`PROGRESS_EVERY`],
/// and the sessions holding a lock on the target when one did not move.
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
                    progress_line(table, bytes, *estimate, start.elapsed())
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

/// One table's progress: bytes so far of the estimate, rate, time left.
fn progress_line(table: &str, bytes: u64, estimate: i64, elapsed: Duration) -> String {
    let rate = bytes as f64 / elapsed.as_secs_f64().max(0.001);
    let estimate = estimate.max(bytes as i64) as u64;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::copy::DeferredKind;

    #[test]
    fn progress_lines_give_the_rate_and_time_left() {
        let line = progress_line(
            "public.orders",
            10 * 1024 * 1024,
            30 * 1024 * 1024,
            Duration::from_secs(2),
        );
        assert!(
            line.starts_with("  copying public.orders: 10.0 MiB of ~30.0 MiB (5.0 MiB/s), ETA ~")
        );
    }

    #[test]
    fn a_stalled_copy_has_no_time_left_and_an_estimate_no_smaller_than_its_bytes() {
        let line = progress_line("public.t", 0, 100, Duration::from_secs(5));
        assert_eq!(line, "  copying public.t: 0 B of ~100 B (0 B/s)");
        let line = progress_line("public.t", 2048, 100, Duration::from_secs(1));
        assert!(line.contains("2.0 KiB of ~2.0 KiB"), "{line}");
    }

    #[test]
    fn only_objects_with_an_index_are_built_early() {
        let object = |table: &str, kind| DeferredObject {
            table: QualifiedName::parse(table).unwrap(),
            kind,
            name: format!("{table}_{kind:?}"),
            definition: "CREATE INDEX i ON t (a)".into(),
            deferrable: String::new(),
            validated: true,
            follow_up: Vec::new(),
            referenced: None,
        };
        let objects = [
            object("public.a", DeferredKind::Index),
            object("public.a", DeferredKind::ForeignKey),
            object("public.b", DeferredKind::PrimaryKey),
        ];
        let by_table = builds_by_table(&objects);
        assert_eq!(by_table.len(), 2);
        assert_eq!(
            by_table[&QualifiedName::parse("public.a").unwrap()].len(),
            1
        );
        assert_eq!(
            by_table[&QualifiedName::parse("public.b").unwrap()].len(),
            1
        );
    }
}
