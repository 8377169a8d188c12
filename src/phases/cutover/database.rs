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
use crate::pg::Database;
use crate::pg::freeze::FreezeOutcome;
use crate::pg::ledger::{Ledger, ReplicationRecord};
use crate::pg::replication::wait_for_fence;
use crate::pg::table_diff::{TableComparison, compare_tables};
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

/// Checks the replication is healthy before anything is changed (replicate
/// mode), returning it and the lag. `Err` blocks with nothing changed.
pub async fn replication_ready(
    ctx: &mut Context,
    ledger: &Ledger,
    source_w: &Database,
    target: &Database,
    tables: &[QualifiedName],
) -> Result<(ReplicationRecord, Duration), SwitchStop> {
    let blocked = |evidence: String, hint: &str| SwitchStop::Blocked {
        item: CheckItem::new(
            "replication-health",
            "Replication healthy and close behind",
            Status::Fail,
            evidence,
        )
        .with_hint(hint),
        froze: false,
        table: None,
    };
    let failed = |e: crate::pg::PgError| SwitchStop::Failed {
        error: e.into(),
        froze: false,
    };
    let Some(record) = ledger.active_replication().await.map_err(failed)? else {
        return Err(blocked(
            "[data] mode = \"replicate\" but the ledger names no replication".into(),
            "run `data` (replicate mode) first, then `validate`",
        ));
    };
    if record.state != "streaming" {
        return Err(blocked(
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
    if recorded != names {
        return Err(blocked(
            "the manifest's table list changed since `data` set up the replication".into(),
            "re-run `data` so the replication carries exactly the tables to switch",
        ));
    }
    let Some(state) = target
        .subscription_state(&record.subscription)
        .await
        .map_err(failed)?
    else {
        return Err(blocked(
            format!(
                "subscription {} is missing on the target",
                record.subscription
            ),
            "re-run `data` to set the replication up again",
        ));
    };
    if !state.enabled || state.apply_pid.is_none() || state.ready != state.tables {
        return Err(blocked(
            format!(
                "subscription {}: enabled {}, apply worker {}, {} of {} tables ready, {} apply errors",
                record.subscription,
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
        ));
    }
    let slot = source_w
        .slot_state(&record.subscription)
        .await
        .map_err(failed)?;
    if slot.as_ref().is_none_or(|s| s.wal_status == "lost") {
        return Err(blocked(
            format!(
                "the source's slot {} is {}",
                record.subscription,
                if slot.is_none() {
                    "missing"
                } else {
                    "lost (WAL removed)"
                }
            ),
            "re-run `data --overwrite` to copy again",
        ));
    }
    let max_lag = Duration::from_secs(ctx.manifest.data.max_lag_seconds.max(1));
    let lag = measure_lag(
        source_w,
        target,
        &ctx.manifest.ledger.schema,
        &record.subscription,
        max_lag,
        max_lag * 12,
    )
    .await
    .map_err(failed)?;
    if lag > max_lag {
        return Err(blocked(
            format!(
                "replication lag {} is above [data] max_lag_seconds = {}",
                human_duration(lag.as_millis() as u64),
                max_lag.as_secs()
            ),
            "wait for the target to catch up (a bulk load on the source?), then run `cutover` again",
        ));
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
    let schema = ctx.manifest.ledger.schema.clone();
    let mut timings = FreezeTimings {
        lag_before: replication.as_ref().map(|r| r.1),
        ..FreezeTimings::default()
    };
    let earlier = ledger
        .open_freezes()
        .await
        .map_err(|e| SwitchStop::Failed {
            error: e.into(),
            froze: false,
        })?;

    // 1. Freeze.
    let freeze_started = Instant::now();
    let message = format!(
        "writes now go to {}",
        ctx.display(crate::pg::Side::Target).unwrap_or_default()
    );
    let lock_timeout = Duration::from_secs(ctx.manifest.data.freeze_lock_timeout_seconds);
    let outcome: FreezeOutcome = source_w
        .freeze_writes(&schema, tables, lock_timeout, &message)
        .await
        .map_err(|e| SwitchStop::Failed {
            error: crate::phases::PhaseError::from(e).hint(
                "nothing was frozen or switched: let the long transactions finish (or raise [data] freeze_lock_timeout_seconds), then run `cutover` again",
            ),
            froze: false,
        })?;
    timings.lock = outcome.total;
    let names: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
    let _ = ledger
        .record_freeze(
            ctx.run_id,
            &names,
            outcome.lock_wait.as_millis() as i64,
            serde_json::json!({"mode": ctx.manifest.data.mode.to_string()}),
        )
        .await;
    let froze = true;
    rows.push((
        CheckItem::new(
            "write-freeze",
            "Writes to the source frozen",
            Status::Pass,
            format!(
                "{} tables: every INSERT, UPDATE, DELETE and TRUNCATE is refused (SQLSTATE 25006), for every role; writers in flight waited {} ms{}",
                tables.len(),
                outcome.lock_wait.as_millis(),
                match (earlier.first(), outcome.already_frozen.len()) {
                    (_, 0) => String::new(),
                    (Some(f), n) => format!(
                        "; {n} tables were still frozen by run {} ({}), an interrupted switch: kept, and checked below",
                        f.run_id,
                        f.frozen_at.format("%Y-%m-%d %H:%M:%S UTC")
                    ),
                    (None, n) => format!(
                        "; {n} tables were already frozen (an interrupted switch): kept, and checked below"
                    ),
                }
            ),
        ),
        outcome.total,
    ));

    // 2. The target holds every acknowledged write.
    let verify_started = Instant::now();
    let checksums = replication.is_none();
    if let Some((record, _)) = &replication {
        let fenced = Instant::now();
        let fence = async {
            let id = source_w.write_fence(&schema, false).await?;
            wait_for_fence(
                target,
                &schema,
                &record.subscription,
                id,
                Duration::from_secs(ctx.manifest.data.max_lag_seconds.max(1) * 12),
            )
            .await
        }
        .await
        .map_err(|e| SwitchStop::Failed {
            error: crate::phases::PhaseError::from(e).hint(
                "the freeze is lifted again; check the replication, then run `cutover` again",
            ),
            froze,
        })?;
        timings.fence = fenced.elapsed();
        rows.push((
            CheckItem::new(
                "replication-drained",
                "Every write before the freeze applied on the target",
                Status::Pass,
                format!(
                    "a fence row written after the freeze reached the target in {} (commit-order apply: everything before it is there)",
                    human_duration(fence.as_millis() as u64)
                ),
            ),
            timings.fence,
        ));
    }
    let verify_clock = Instant::now();
    let comparisons = compare_tables(source_w, target, tables, checksums)
        .await
        .map_err(|e| SwitchStop::Failed {
            error: e.into(),
            froze,
        })?;
    timings.verify = verify_clock.elapsed();
    let differing: Vec<&TableComparison> = comparisons.iter().filter(|c| !c.equal()).collect();
    let rows_total: i64 = comparisons.iter().map(|c| c.source_rows).sum();
    if !differing.is_empty() {
        let mut table = ReportTable::new(
            "Tables that changed since the copy",
            &["Table", "Source (frozen)", "Target", "Δ rows", "Content"],
        );
        for c in &differing {
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
        let list = differing
            .iter()
            .map(|c| match c.delta() {
                Some(0) | None => format!("{} (content changed)", c.table),
                Some(d) => format!("{} ({:+} rows on the source)", c.table, -d),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let item = match &replication {
            None => CheckItem::new(
                "source-unchanged",
                "Source unchanged since the copy",
                Status::Fail,
                format!("the source changed after the copy: {list}"),
            )
            .with_hint("nothing was switched and the freeze is lifted: copy again (`data --overwrite`, then `validate`) with the app's writes stopped, or use [data] mode = \"replicate\" so the target follows the source"),
            Some(_) => CheckItem::new(
                "source-unchanged",
                "Row counts equal at the fence",
                Status::Fail,
                format!("after the fence the sides still differ: {list}"),
            )
            .with_hint("nothing was switched and the freeze is lifted: something writes to the target, or the replication skips changes; run `validate` to find the rows"),
        };
        return Err(SwitchStop::Blocked {
            item,
            froze,
            table: Some(table),
        });
    }
    rows.push((
        CheckItem::new(
            "source-unchanged",
            if replication.is_none() {
                "Source unchanged since the copy"
            } else {
                "Row counts equal at the fence"
            },
            Status::Pass,
            format!(
                "{} tables, {} rows, {} on both sides",
                comparisons.len(),
                thousands(rows_total),
                if checksums {
                    "counts and checksums equal"
                } else {
                    "exact counts equal"
                }
            ),
        ),
        verify_started.elapsed(),
    ));

    // 3. Sequences from the frozen source.
    let seq_clock = Instant::now();
    let values = source_w
        .sequence_values()
        .await
        .map_err(|e| SwitchStop::Failed {
            error: e.into(),
            froze,
        })?;
    let set = target
        .set_sequences(&values)
        .await
        .map_err(|e| SwitchStop::Failed {
            error: e.into(),
            froze,
        })?;
    timings.sequences = seq_clock.elapsed();
    rows.push((
        CheckItem::new(
            "sequences",
            "Sequences set from the frozen source",
            Status::Pass,
            format!(
                "{} set with setval(last_value, is_called)",
                crate::report::count(set.len(), "sequence", "sequences")
            ),
        ),
        timings.sequences,
    ));

    // The break-glass point: the target holds every write of the source
    // and has taken none of its own yet. A point-in-time restore (the PITR
    // add-on) to this moment undoes everything the app writes after the
    // switch; it is recorded with the freeze, read off the target's clock.
    match target.server_time().await {
        Ok(at) => {
            let recorded = ledger.record_restore_point(ctx.run_id, at).await;
            rows.push((
                CheckItem::new(
                    "pitr-restore-point",
                    "Point-in-time restore point recorded",
                    if recorded.is_ok() { Status::Pass } else { Status::Warn },
                    format!(
                        "{} (the target's clock){}: a PITR restore of the target to this time is the last way back; it is manual, in place, and the project is down while it runs",
                        at.format("%Y-%m-%d %H:%M:%S%.3f UTC"),
                        if recorded.is_ok() { ", in the ledger with the freeze" } else { ", not written to the ledger" },
                    ),
                )
                .with_hint("dashboard → Database → Backups → Point in time; only with the PITR add-on (preflight checks it); writes after this time are lost"),
                Duration::ZERO,
            ));
        }
        Err(e) => rows.push((
            CheckItem::new(
                "pitr-restore-point",
                "Point-in-time restore point recorded",
                Status::Warn,
                format!("the target's clock could not be read: {e}"),
            ),
            Duration::ZERO,
        )),
    }
    Ok(SwitchDone {
        tables: tables.len(),
        timings,
        freeze_started,
        sequences_set: set.len(),
        replication: replication.map(|r| r.0),
    })
}

/// Whether the manifest's mode is replicate.
pub fn replicating(ctx: &Context) -> bool {
    ctx.manifest.data.mode == DataMode::Replicate
}
