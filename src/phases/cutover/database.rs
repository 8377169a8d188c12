//! The database part of the switch: freeze the source, make sure the target
//! holds every write the source acknowledged, carry the sequences over.
//!
//! - `copy` mode: after the freeze, the source must still equal the target
//!   (exact counts and checksums of every copied table, both sides at once);
//!   a table that changed since the copy blocks the cutover, named with its
//!   row delta, and the freeze is lifted: nothing acknowledged is lost, and
//!   the fix is a new copy.
//! - `replicate` mode: the replication must be healthy and close behind
//!   before the freeze; after it, a fence row written on the source and seen
//!   on the target proves every earlier transaction applied (commit order),
//!   and the exact counts must agree.
//!
//! Either way the writes refused by the freeze got errors, not
//! acknowledgements. Sequences are set from the frozen source (logical
//! replication does not carry them; a copy's may have moved since).

use std::time::{Duration, Instant};

use crate::context::Context;
use crate::manifest::{DataMode, QualifiedName};
use crate::pg::freeze::FreezeOutcome;
use crate::pg::ledger::{FreezeRecord, Ledger, ReplicationRecord, StepRecord};
use crate::pg::replication::{SlotState, SubscriptionState, wait_for_fence};
use crate::pg::table_diff::{TableComparison, compare_tables};
use crate::pg::{Database, PgError};
use crate::report::{CheckItem, ReportTable, Status, human_duration, thousands};

use super::super::PhaseError;
use super::super::data::replicate::measure_lag;

/// What was measured, for the summary's freeze table and the ledger.
#[derive(Debug, Clone, Default)]
pub struct FreezeTimings {
    /// Replication lag (a fence's round trip) just before the freeze.
    pub lag_before: Option<Duration>,
    /// Waiting for writers in flight, until the freeze committed.
    pub lock: Duration,
    /// Replicate: the fence's trip to the target after the freeze.
    pub fence: Duration,
    /// Counts (and in copy mode checksums) compared.
    pub verify: Duration,
    /// Sequences set.
    pub sequences: Duration,
}

/// Why the database part stopped.
pub enum SwitchStop {
    /// The source changed since the copy, or the replication is not ready:
    /// nothing is switched (exit 3). `froze` tells whether a freeze must be
    /// lifted.
    Blocked {
        /// The checklist row that says why.
        item: CheckItem,
        /// Whether the source was frozen by this run.
        froze: bool,
        /// Tables that differ.
        table: Option<ReportTable>,
    },
    /// An error; `froze` as above.
    Failed {
        /// The error.
        error: PhaseError,
        /// Whether the source was frozen by this run.
        froze: bool,
    },
}

/// The database part's result.
pub struct SwitchDone {
    /// How many tables were frozen.
    pub tables: usize,
    /// Timings.
    pub timings: FreezeTimings,
    /// When writers started waiting (the lock request): the freeze's start.
    pub freeze_started: Instant,
    /// Sequences set.
    pub sequences_set: usize,
    /// The replication to retire once the switch succeeded.
    pub replication: Option<ReplicationRecord>,
}

impl SwitchStop {
    /// An error, after the freeze (`froze`) or before it.
    fn failed(error: impl Into<PhaseError>, froze: bool) -> SwitchStop {
        SwitchStop::Failed {
            error: error.into(),
            froze,
        }
    }

    /// Whether the source was frozen by this run: the freeze must be lifted.
    pub fn froze(&self) -> bool {
        match self {
            SwitchStop::Blocked { froze, .. } | SwitchStop::Failed { froze, .. } => *froze,
        }
    }
}

/// Blocks with nothing changed: the replication is not ready.
fn not_ready((evidence, hint): (String, &str)) -> SwitchStop {
    SwitchStop::Blocked {
        item: CheckItem::new(
            "replication-health",
            "Replication healthy and close behind",
            Status::Fail,
            evidence,
        )
        .with_hint(hint),
        froze: false,
        table: None,
    }
}

/// What keeps the replication the ledger records from being the one to
/// switch: not streaming, or carrying other tables than `tables`.
fn record_problem(
    record: &ReplicationRecord,
    tables: &[QualifiedName],
) -> Option<(String, &'static str)> {
    if record.state != "streaming" {
        return Some((
            format!(
                "replication {} is `{}`, not streaming",
                record.subscription, record.state
            ),
            "re-run `data`: it resumes the initial sync",
        ));
    }
    let mut names: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
    names.sort();
    let mut recorded = record.tables.clone();
    recorded.sort();
    (recorded != names).then_some((
        "the manifest's table list changed since `data` set up the replication".into(),
        "re-run `data` so the replication carries exactly the tables to switch",
    ))
}

/// What is wrong with the target's subscription, if anything.
fn subscription_problem(
    name: &str,
    state: Option<&SubscriptionState>,
) -> Option<(String, &'static str)> {
    let Some(state) = state else {
        return Some((
            format!("subscription {name} is missing on the target"),
            "re-run `data` to set the replication up again",
        ));
    };
    if state.enabled && state.apply_pid.is_some() && state.ready == state.tables {
        return None;
    }
    Some((
        format!(
            "subscription {name}: enabled {}, apply worker {}, {} of {} tables ready, {} apply errors",
            state.enabled,
            if state.apply_pid.is_some() {
                "running"
            } else {
                "not running"
            },
            state.ready,
            state.tables,
            state.errors.0
        ),
        "see the target's log and pg_stat_subscription; re-run `data` to repair",
    ))
}

/// What is wrong with the source's slot, if anything.
fn slot_problem(name: &str, slot: Option<&SlotState>) -> Option<(String, &'static str)> {
    let problem = match slot {
        None => "missing",
        Some(s) if s.wal_status == "lost" => "lost (WAL removed)",
        Some(_) => return None,
    };
    Some((
        format!("the source's slot {name} is {problem}"),
        "re-run `data --overwrite` to copy again",
    ))
}

/// A lag above `max_lag`, if it is.
fn lag_problem(lag: Duration, max_lag: Duration) -> Option<(String, &'static str)> {
    (lag > max_lag).then(|| {
        (
            format!(
                "replication lag {} is above [data] max_lag_seconds = {}",
                human_duration(lag.as_millis() as u64),
                max_lag.as_secs()
            ),
            "wait for the target to catch up (a bulk load on the source?), then run `cutover` again",
        )
    })
}

/// Checks the replication is healthy before anything is changed (replicate
/// mode), returning it and the lag. `Err` blocks with nothing changed.
pub async fn replication_ready(
    ctx: &mut Context,
    ledger: &Ledger,
    source_w: &Database,
    target: &Database,
    tables: &[QualifiedName],
) -> Result<(ReplicationRecord, Duration), SwitchStop> {
    let failed = |e: PgError| SwitchStop::failed(e, false);
    let Some(record) = ledger.active_replication().await.map_err(failed)? else {
        return Err(not_ready((
            "[data] mode = \"replicate\" but the ledger names no replication".into(),
            "run `data` (replicate mode) first, then `validate`",
        )));
    };
    if let Some(problem) = record_problem(&record, tables) {
        return Err(not_ready(problem));
    }
    let name = &record.subscription;
    let state = target.subscription_state(name).await.map_err(failed)?;
    if let Some(problem) = subscription_problem(name, state.as_ref()) {
        return Err(not_ready(problem));
    }
    let slot = source_w.slot_state(name).await.map_err(failed)?;
    if let Some(problem) = slot_problem(name, slot.as_ref()) {
        return Err(not_ready(problem));
    }
    let max_lag = Duration::from_secs(ctx.manifest.data.max_lag_seconds.max(1));
    let schema = &ctx.manifest.ledger.schema;
    let lag = measure_lag(source_w, target, schema, name, max_lag, max_lag * 12)
        .await
        .map_err(failed)?;
    if let Some(problem) = lag_problem(lag, max_lag) {
        return Err(not_ready(problem));
    }
    Ok((record, lag))
}

/// Freezes the source and proves the target holds everything, then sets
/// the sequences. `report_rows` gets the checklist rows.
#[allow(clippy::too_many_arguments)]
pub async fn switch(
    ctx: &Context,
    ledger: &Ledger,
    source_w: &Database,
    target: &Database,
    tables: &[QualifiedName],
    replication: Option<(ReplicationRecord, Duration)>,
    rows: &mut Vec<(CheckItem, Duration)>,
) -> Result<SwitchDone, SwitchStop> {
    let mut timings = FreezeTimings {
        lag_before: replication.as_ref().map(|r| r.1),
        ..FreezeTimings::default()
    };
    let earlier = ledger
        .open_freezes()
        .await
        .map_err(|e| SwitchStop::failed(e, false))?;

    // 1. Freeze.
    let freeze_started = Instant::now();
    let outcome = freeze(ctx, ledger, source_w, tables).await?;
    timings.lock = outcome.total;
    rows.push((
        frozen_row(tables.len(), &outcome, earlier.first()),
        outcome.total,
    ));

    // 2. The target holds every acknowledged write.
    let verify_started = Instant::now();
    if let Some((record, _)) = &replication {
        let (item, took) = fence(ctx, source_w, target, record).await?;
        timings.fence = took;
        rows.push((item, took));
    }
    let verify_clock = Instant::now();
    let comparisons = compare_tables(source_w, target, tables, replication.is_none())
        .await
        .map_err(|e| SwitchStop::failed(e, true))?;
    timings.verify = verify_clock.elapsed();
    let (verified, differing) = verified_row(&comparisons, replication.is_some());
    if let Some(table) = differing {
        return Err(SwitchStop::Blocked {
            item: verified,
            froze: true,
            table: Some(table),
        });
    }
    rows.push((verified, verify_started.elapsed()));

    // 3. Sequences from the frozen source.
    let seq_clock = Instant::now();
    let set = set_sequences(source_w, target).await?;
    timings.sequences = seq_clock.elapsed();
    rows.push((sequences_row(set), timings.sequences));

    rows.push((restore_point(ctx, ledger, target).await, Duration::ZERO));
    Ok(SwitchDone {
        tables: tables.len(),
        timings,
        freeze_started,
        sequences_set: set,
        replication: replication.map(|r| r.0),
    })
}

/// Freezes writes on the source's `tables` and records the freeze in the
/// ledger.
async fn freeze(
    ctx: &Context,
    ledger: &Ledger,
    source_w: &Database,
    tables: &[QualifiedName],
) -> Result<FreezeOutcome, SwitchStop> {
    let message = format!(
        "writes now go to {}",
        ctx.display(crate::pg::Side::Target).unwrap_or_default()
    );
    let lock_timeout = Duration::from_secs(ctx.manifest.data.freeze_lock_timeout_seconds);
    let outcome = source_w
        .freeze_writes(&ctx.manifest.ledger.schema, tables, lock_timeout, &message)
        .await
        .map_err(|e| SwitchStop::failed(PhaseError::from(e).hint(
            "nothing was frozen or switched: let the long transactions finish (or raise [data] freeze_lock_timeout_seconds), then run `cutover` again",
        ), false))?;
    let names: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
    // The freeze stands without its ledger row: `rollback` reads the
    // source's triggers.
    let _ = ledger
        .record_freeze(
            ctx.run_id,
            &names,
            outcome.lock_wait.as_millis() as i64,
            serde_json::json!({"mode": ctx.manifest.data.mode.to_string()}),
        )
        .await;
    Ok(outcome)
}

/// The freeze's row; `earlier` is an open freeze an interrupted run left.
fn frozen_row(tables: usize, outcome: &FreezeOutcome, earlier: Option<&FreezeRecord>) -> CheckItem {
    let kept = match (earlier, outcome.already_frozen.len()) {
        (_, 0) => String::new(),
        (Some(f), n) => format!(
            "; {n} tables were still frozen by run {} ({}), an interrupted switch: kept, and checked below",
            f.run_id,
            f.frozen_at.format("%Y-%m-%d %H:%M:%S UTC")
        ),
        (None, n) => format!(
            "; {n} tables were already frozen (an interrupted switch): kept, and checked below"
        ),
    };
    CheckItem::new(
        "write-freeze",
        "Writes to the source frozen",
        Status::Pass,
        format!(
            "{tables} tables: every INSERT, UPDATE, DELETE and TRUNCATE is refused (SQLSTATE 25006), for every role; writers in flight waited {} ms{kept}",
            outcome.lock_wait.as_millis(),
        ),
    )
}

/// Replicate mode: a fence row written on the frozen source, awaited on the
/// target. Its row and how long it took.
async fn fence(
    ctx: &Context,
    source_w: &Database,
    target: &Database,
    record: &ReplicationRecord,
) -> Result<(CheckItem, Duration), SwitchStop> {
    let schema = &ctx.manifest.ledger.schema;
    let fenced = Instant::now();
    let deadline = Duration::from_secs(ctx.manifest.data.max_lag_seconds.max(1) * 12);
    let fence = async {
        let id = source_w.write_fence(schema, false).await?;
        wait_for_fence(target, schema, &record.subscription, id, deadline).await
    }
    .await
    .map_err(|e| {
        SwitchStop::failed(
            PhaseError::from(e).hint(
                "the freeze is lifted again; check the replication, then run `cutover` again",
            ),
            true,
        )
    })?;
    let item = CheckItem::new(
        "replication-drained",
        "Every write before the freeze applied on the target",
        Status::Pass,
        format!(
            "a fence row written after the freeze reached the target in {} (commit-order apply: everything before it is there)",
            human_duration(fence.as_millis() as u64)
        ),
    );
    Ok((item, fenced.elapsed()))
}

/// The comparison's row, and the table of the tables that differ, if any:
/// then the row blocks (the source is frozen, so a difference is a write
/// the target does not hold).
fn verified_row(
    comparisons: &[TableComparison],
    replicating: bool,
) -> (CheckItem, Option<ReportTable>) {
    let differing: Vec<&TableComparison> = comparisons.iter().filter(|c| !c.equal()).collect();
    if !differing.is_empty() {
        let item = differing_row(&differing, replicating);
        return (item, Some(differing_table(&differing)));
    }
    let rows_total: i64 = comparisons.iter().map(|c| c.source_rows).sum();
    let item = CheckItem::new(
        "source-unchanged",
        if replicating {
            "Row counts equal at the fence"
        } else {
            "Source unchanged since the copy"
        },
        Status::Pass,
        format!(
            "{} tables, {} rows, {} on both sides",
            comparisons.len(),
            thousands(rows_total),
            if replicating {
                "exact counts equal"
            } else {
                "counts and checksums equal"
            }
        ),
    );
    (item, None)
}

/// The row that blocks on tables that differ.
fn differing_row(differing: &[&TableComparison], replicating: bool) -> CheckItem {
    let list = differing
        .iter()
        .map(|c| match c.delta() {
            Some(0) | None => format!("{} (content changed)", c.table),
            Some(d) => format!("{} ({:+} rows on the source)", c.table, -d),
        })
        .collect::<Vec<_>>()
        .join(", ");
    if replicating {
        CheckItem::new(
            "source-unchanged",
            "Row counts equal at the fence",
            Status::Fail,
            format!("after the fence the sides still differ: {list}"),
        )
        .with_hint("nothing was switched and the freeze is lifted: something writes to the target, or the replication skips changes; run `validate` to find the rows")
    } else {
        CheckItem::new(
            "source-unchanged",
            "Source unchanged since the copy",
            Status::Fail,
            format!("the source changed after the copy: {list}"),
        )
        .with_hint("nothing was switched and the freeze is lifted: copy again (`data --overwrite`, then `validate`) with the app's writes stopped, or use [data] mode = \"replicate\" so the target follows the source")
    }
}

/// The tables that differ, with their counts.
fn differing_table(differing: &[&TableComparison]) -> ReportTable {
    let mut table = ReportTable::new(
        "Tables that changed since the copy",
        &["Table", "Source (frozen)", "Target", "Δ rows", "Content"],
    );
    for c in differing {
        table.push([
            c.table.to_string(),
            thousands(c.source_rows),
            c.target_rows
                .map(thousands)
                .unwrap_or_else(|| "missing".into()),
            c.delta()
                .map(|d| format!("{:+}", -d))
                .unwrap_or_else(|| "—".into()),
            if c.content_equal() {
                "same".into()
            } else {
                "differs".into()
            },
        ]);
    }
    table
}

/// Sets the target's sequences from the frozen source; how many.
async fn set_sequences(source_w: &Database, target: &Database) -> Result<usize, SwitchStop> {
    let failed = |e: PgError| SwitchStop::failed(e, true);
    let values = source_w.sequence_values().await.map_err(failed)?;
    let set = target.set_sequences(&values).await.map_err(failed)?;
    Ok(set.len())
}

fn sequences_row(set: usize) -> CheckItem {
    CheckItem::new(
        "sequences",
        "Sequences set from the frozen source",
        Status::Pass,
        format!(
            "{} set with setval(last_value, is_called)",
            crate::report::count(set, "sequence", "sequences")
        ),
    )
}

/// The break-glass point: the target holds every write of the source
/// and has taken none of its own yet. A point-in-time restore (the PITR
/// add-on) to this moment undoes everything the app writes after the
/// switch; it is recorded with the freeze, read off the target's clock.
async fn restore_point(ctx: &Context, ledger: &Ledger, target: &Database) -> CheckItem {
    let (id, title) = ("pitr-restore-point", "Point-in-time restore point recorded");
    let at = match target.server_time().await {
        Ok(at) => at,
        Err(e) => {
            return CheckItem::new(
                id,
                title,
                Status::Warn,
                format!("the target's clock could not be read: {e}"),
            );
        }
    };
    let recorded = ledger.record_restore_point(ctx.run_id, at).await.is_ok();
    CheckItem::new(
        id,
        title,
        if recorded { Status::Pass } else { Status::Warn },
        format!(
            "{} (the target's clock){}: a PITR restore of the target to this time is the last way back; it is manual, in place, and the project is down while it runs",
            at.format("%Y-%m-%d %H:%M:%S%.3f UTC"),
            if recorded { ", in the ledger with the freeze" } else { ", not written to the ledger" },
        ),
    )
    .with_hint("dashboard → Database → Backups → Point in time; only with the PITR add-on (preflight checks it); writes after this time are lost")
}

/// The write freeze, split into its parts; `frontend` is the frontend's
/// part, `kept` whether the switch stands.
pub fn freeze_table(done: &SwitchDone, frontend: Duration, kept: bool) -> ReportTable {
    let t = &done.timings;
    let ms = |d: Duration| human_duration(d.as_millis() as u64);
    let mut table = ReportTable::new("Write freeze", &["Part", "Took"]);
    if let Some(lag) = t.lag_before {
        table.push([
            "Replication lag before the freeze (not frozen)".to_string(),
            ms(lag),
        ]);
    }
    table.push([
        "Lock: writers in flight finish, freeze installed".to_string(),
        ms(t.lock),
    ]);
    if t.fence > Duration::ZERO {
        table.push([
            "Fence: last writes applied on the target".to_string(),
            ms(t.fence),
        ]);
    }
    table.push(["Verify: both sides compared".to_string(), ms(t.verify)]);
    table.push(["Sequences set on the target".to_string(), ms(t.sequences)]);
    table.push([
        "Frontend switched (guards, provider, smoke)".to_string(),
        ms(frontend),
    ]);
    table.push([
        "**Writes refused on the source, until this phase ended**".to_string(),
        ms(done.freeze_started.elapsed()),
    ]);
    table.with_note(if kept {
        "The source stays frozen after the switch, so an old browser tab fails loudly instead of writing where nobody reads. `rollback` lifts the freeze."
    } else {
        "The switch was undone and the freeze lifted: the source takes writes again."
    })
}

/// The ledger's `write-freeze-timing` step: the freeze's parts, and whether
/// it was kept (`frozen`) or `lifted`.
pub fn timing_record(
    mode: &DataMode,
    done: &SwitchDone,
    frontend: Duration,
    kept: bool,
) -> StepRecord<'static> {
    let t = &done.timings;
    let ms = |d: Duration| d.as_millis() as u64;
    StepRecord {
        phase: "cutover",
        step: "write-freeze-timing",
        started_at: chrono::Utc::now()
            - chrono::Duration::from_std(done.freeze_started.elapsed()).unwrap_or_default(),
        finished_at: chrono::Utc::now(),
        outcome: if kept { "frozen" } else { "lifted" },
        detail: serde_json::json!({
            "mode": mode.to_string(),
            "lag_before_ms": t.lag_before.map(ms),
            "lock_ms": ms(t.lock),
            "fence_ms": ms(t.fence),
            "verify_ms": ms(t.verify),
            "sequences_ms": ms(t.sequences),
            "frontend_ms": ms(frontend),
            "total_ms": ms(done.freeze_started.elapsed()),
        }),
    }
}

/// Whether the manifest's mode is replicate.
pub fn replicating(ctx: &Context) -> bool {
    ctx.manifest.data.mode == DataMode::Replicate
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(state: &str, tables: &[&str]) -> ReplicationRecord {
        ReplicationRecord {
            id: 1,
            run_id: uuid::Uuid::nil(),
            subscription: "cutover_sub".into(),
            publication: "cutover_pub".into(),
            role: "cutover_repl".into(),
            state: state.into(),
            tables: tables.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn names(list: &[&str]) -> Vec<QualifiedName> {
        list.iter()
            .map(|n| QualifiedName::parse(n).unwrap())
            .collect()
    }

    #[test]
    fn a_replication_not_streaming_or_with_other_tables_is_not_the_one_to_switch() {
        let tables = names(&["public.a", "public.b"]);
        assert!(record_problem(&record("streaming", &["public.b", "public.a"]), &tables).is_none());
        let (why, _) =
            record_problem(&record("syncing", &["public.a", "public.b"]), &tables).unwrap();
        assert_eq!(why, "replication cutover_sub is `syncing`, not streaming");
        let (why, _) = record_problem(&record("streaming", &["public.a"]), &tables).unwrap();
        assert!(why.starts_with("the manifest's table list changed"));
    }

    #[test]
    fn a_missing_or_lost_slot_blocks() {
        let slot = |wal: &str| SlotState {
            active: true,
            wal_status: wal.into(),
            lag_bytes: 0,
        };
        assert_eq!(
            slot_problem("s", None).unwrap().0,
            "the source's slot s is missing"
        );
        assert_eq!(
            slot_problem("s", Some(&slot("lost"))).unwrap().0,
            "the source's slot s is lost (WAL removed)"
        );
        assert!(slot_problem("s", Some(&slot("reserved"))).is_none());
    }

    #[test]
    fn lag_blocks_only_above_the_maximum() {
        let max = Duration::from_secs(5);
        assert!(lag_problem(Duration::from_secs(5), max).is_none());
        assert!(lag_problem(Duration::from_secs(6), max).is_some());
    }

    fn comparison(table: &str, source: i64, target: Option<i64>) -> TableComparison {
        TableComparison {
            table: QualifiedName::parse(table).unwrap(),
            source_rows: source,
            target_rows: target,
            source_checksum: None,
            target_checksum: None,
        }
    }

    #[test]
    fn equal_tables_pass_and_a_difference_blocks_naming_the_tables() {
        let same = [comparison("public.a", 3, Some(3))];
        let (item, differing) = verified_row(&same, true);
        assert!(differing.is_none());
        assert_eq!(item.title, "Row counts equal at the fence");
        assert_eq!(
            item.evidence,
            "1 tables, 3 rows, exact counts equal on both sides"
        );
        let moved = [comparison("public.a", 4, Some(3))];
        let (item, table) = verified_row(&moved, false);
        assert_eq!(item.status, Status::Fail);
        assert_eq!(
            item.evidence,
            "the source changed after the copy: public.a (+1 rows on the source)"
        );
        assert_eq!(table.unwrap().rows.len(), 1);
    }
}
