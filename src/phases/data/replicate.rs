//! `data` in replicate mode: the target follows the source through
//! PostgreSQL's logical replication, server to server.
//!
//! Refuses before creating anything when the source or target cannot do it
//! ([`readiness`], also shown by `preflight`). Then, with the ledger
//! recording every name first: the target's secondary indexes deferred as
//! the copy mode does; on the source a throw-away role, its grants and a
//! publication over exactly the copied tables plus a fence table; on the
//! target a subscription that copies the rows (`copy_data`, `binary`) and
//! then streams every change. Returns once every table's initial sync is
//! done, the indexes are rebuilt and a fence's round trip is under
//! `[data] max_lag_seconds`. Nothing runs on the runner afterwards: the
//! reviewers can take days. `cutover` freezes the source, drains the rest
//! and retires the replication; `rollback` and a re-run clean up or reuse
//! what the ledger names.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::context::Context;
use crate::manifest::QualifiedName;
use crate::pg::Side;
use crate::pg::copy::{CopyLedger, DeferredKind, DeferredObject};
use crate::pg::ledger::{Ledger, ReplicationRecord};
use crate::pg::replication::{
    PublisherReadiness, ReplicationNames, SlotState, SubscriberReadiness, describe_pending,
    new_password, publisher_conninfo, wait_for_fence,
};
use crate::pg::{Database, PgError};
use crate::report::{CheckItem, Outcome, PhaseReport, ReportTable, Status, human_duration};

use super::super::PhaseError;
use super::{bytes_text, names_text};

/// How often the sync wait prints a progress line.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The checklist rows that decide whether replication can be set up,
/// read-only: `data` refuses when one fails, `preflight` shows them.
pub async fn readiness(
    ctx: &Context,
    source: &Database,
    target: &Database,
    tables: &[QualifiedName],
) -> Result<Vec<CheckItem>, PhaseError> {
    let p = source.publisher_readiness().await?;
    let mut items = publisher_items(&p, tables.len());
    let no_identity = source.tables_without_replica_identity(tables).await?;
    items.push(identity_item(&no_identity, tables.len()));
    items.push(large_objects_item(p.large_objects));
    let s = target.subscriber_readiness().await?;
    items.extend(subscriber_items(&s));
    items.push(address_item(ctx));
    Ok(items)
}

/// The source's side: logical WAL, free slots and senders, bounded WAL,
/// a role that may publish.
fn publisher_items(p: &PublisherReadiness, tables: usize) -> Vec<CheckItem> {
    let mut items = Vec::new();
    let wal_level = format!("wal_level = {}", p.wal_level);
    items.push(if p.wal_level == "logical" {
        CheckItem::new("replication-wal-level", WAL_LEVEL_TITLE, Status::Pass, wal_level)
    } else {
        CheckItem::new("replication-wal-level", WAL_LEVEL_TITLE, Status::Fail, wal_level)
        .with_hint("set wal_level = logical on the source and restart it (Supabase has it on), or use [data] mode = \"copy\"")
    });
    let sync_workers = 2i64;
    let free_slots = p.slots.0 - p.slots.1;
    let free_senders = p.wal_senders.0 - p.wal_senders.1;
    let needed = 1 + sync_workers.min(tables as i64).max(1);
    items.push(
        CheckItem::new(
            "replication-slots",
            "Free replication slots and WAL senders on the source",
            pass_if(free_slots >= needed && free_senders >= needed),
            format!(
                "slots {} of {} free, WAL senders {} of {} free; {needed} needed (one for the subscription, one per table syncing at once)",
                free_slots, p.slots.0, free_senders, p.wal_senders.0
            ),
        )
        .with_hint("drop unused slots (pg_replication_slots) or raise max_replication_slots / max_wal_senders on the source"),
    );
    let unbounded = p.max_slot_wal_keep_size == "-1";
    items.push(CheckItem::new(
        "replication-wal-keep",
        "WAL kept for a lagging replication is bounded",
        if unbounded { Status::Warn } else { Status::Pass },
        if unbounded {
            "max_slot_wal_keep_size = -1: a stalled subscription keeps WAL on the source without limit until `cutover` or `rollback` drops the slot".to_string()
        } else {
            format!(
                "max_slot_wal_keep_size = {}: a lag above it loses the slot (reported, then re-run `data`)",
                p.max_slot_wal_keep_size
            )
        },
    ));
    items.push(
        CheckItem::new(
            "replication-source-role",
            "Source role may publish",
            pass_if(p.can_replicate && p.can_create_role && p.can_create_publication),
            format!(
                "REPLICATION {}, CREATEROLE {}, CREATE on the database {}",
                yes(p.can_replicate),
                yes(p.can_create_role),
                yes(p.can_create_publication)
            ),
        )
        .with_hint("connect to the source as a role with REPLICATION and CREATEROLE that owns the copied tables (Supabase: `postgres`)"),
    );
    items
}

const WAL_LEVEL_TITLE: &str = "Source publishes logical changes";
const IDENTITY_TITLE: &str = "Every copied table has a primary key or replica identity";

fn pass_if(ok: bool) -> Status {
    if ok { Status::Pass } else { Status::Fail }
}

/// Tables without a key or replica identity: publishing them would make the
/// source refuse every UPDATE and DELETE on them.
fn identity_item(no_identity: &[QualifiedName], tables: usize) -> CheckItem {
    if no_identity.is_empty() {
        return CheckItem::new(
            "replication-identity",
            IDENTITY_TITLE,
            Status::Pass,
            format!("{tables} tables"),
        );
    }
    CheckItem::new(
        "replication-identity",
        IDENTITY_TITLE,
        Status::Fail,
        format!(
            "no primary key or replica identity: {} (publishing them would make the source refuse every UPDATE and DELETE on them)",
            names_text(no_identity)
        ),
    )
    .with_hint("add a primary key (a migration), or `ALTER TABLE ... REPLICA IDENTITY FULL`, or list them in [data] exclude, or use [data] mode = \"copy\"")
}

/// Large objects: logical replication does not carry them.
fn large_objects_item(large_objects: i64) -> CheckItem {
    CheckItem::new(
        "replication-large-objects",
        "No large objects (logical replication does not carry them)",
        if large_objects == 0 {
            Status::Pass
        } else {
            Status::Warn
        },
        if large_objects == 0 {
            "none".to_string()
        } else {
            format!("{large_objects} large objects on the source will not reach the target")
        },
    )
}

/// The target's side: may subscribe, has workers.
fn subscriber_items(s: &SubscriberReadiness) -> [CheckItem; 2] {
    let may_subscribe = s.superuser || (s.version_num >= 160000 && s.create_subscription);
    [
        CheckItem::new(
            "replication-target",
            "Target may subscribe",
            pass_if(may_subscribe && s.can_create),
            format!(
                "PostgreSQL {}, superuser {}, pg_create_subscription {}, CREATE on the database {}",
                s.version_num / 10000,
                yes(s.superuser),
                yes(s.create_subscription),
                yes(s.can_create)
            ),
        )
        .with_hint("replicate mode needs a PostgreSQL 16+ target whose role is granted pg_create_subscription (Supabase PG 17: `postgres` is), or a superuser; otherwise use [data] mode = \"copy\""),
        CheckItem::new(
            "replication-workers",
            "Target has logical replication workers",
            pass_if(s.workers >= 2),
            format!(
                "max_logical_replication_workers = {}, max_sync_workers_per_subscription = {}",
                s.workers, s.sync_workers
            ),
        )
        .with_hint("raise max_logical_replication_workers on the target to at least 2"),
    ]
}

/// source-db-url as given ("" when unset: the callers' checks name it).
fn source_url(ctx: &Context) -> &str {
    ctx.url(Side::Source).unwrap_or_default()
}

/// Where the target reaches the source: `[data] replication_host`, else the
/// host of source-db-url.
fn address_item(ctx: &Context) -> CheckItem {
    let data = &ctx.manifest.data;
    let conninfo = publisher_conninfo(
        source_url(ctx),
        data.replication_host.as_deref(),
        data.replication_port,
        "x",
        "x",
    );
    match conninfo {
        Ok(_) => CheckItem::new(
            "replication-address",
            "Target knows where to reach the source",
            Status::Pass,
            format!(
                "{}:{}",
                data.replication_host
                    .clone()
                    .unwrap_or_else(|| "the host of source-db-url".into()),
                data.replication_port
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "its port".into())
            ),
        ),
        Err(e) => CheckItem::new(
            "replication-address",
            "Target knows where to reach the source",
            Status::Fail,
            e,
        )
        .with_hint("set [data] replication_host (Supabase: db.<ref>.supabase.co, the direct host; the pooler does not carry replication)"),
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Runs `data` in replicate mode.
pub async fn run(ctx: &mut Context) -> Result<PhaseReport, PhaseError> {
    let mut report = PhaseReport::new("data");
    let super::DataPlan {
        source,
        target,
        jobs,
        ..
    } = super::plan_jobs(ctx).await?;
    let names: Vec<QualifiedName> = jobs.iter().map(|j| j.table.clone()).collect();
    let checks = readiness(ctx, &source, &target, &names).await?;
    let refused: Vec<String> = checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.title.clone())
        .collect();
    for c in checks {
        report.check(c);
    }
    if !refused.is_empty() {
        report.outcome = Outcome::Failed;
        report.summary = format!(
            "Replication cannot be set up ({}); nothing was created.",
            refused.join("; ")
        );
        return Ok(report);
    }
    if ctx.settings.dry_run {
        report.tables.push(super::planned_tables(
            "Tables to replicate (dry-run)",
            &jobs,
        ));
        report.summary = format!(
            "Dry-run: {} tables would be replicated source → target; nothing was created.",
            jobs.len()
        );
        return Ok(report);
    }
    let ledger = ctx
        .ledger("data")
        .await?
        .ok_or_else(|| PhaseError::new("the ledger is not open"))?;
    let wait = Duration::from_secs(ctx.manifest.schema.lock_timeout_seconds);
    let lock = target.lock_for_run(wait).await?;
    let result = replicate_with_lock(ctx, &ledger, &target, &names, &mut report).await;
    lock.release().await;
    result?;
    Ok(report)
}

/// Sets up (or reuses) the replication and waits until the target follows
/// the source: initial sync, deferred indexes rebuilt, lag under the limit.
async fn replicate_with_lock(
    ctx: &mut Context,
    ledger: &Ledger,
    target: &Database,
    tables: &[QualifiedName],
    report: &mut PhaseReport,
) -> Result<(), PhaseError> {
    let schema = ctx.manifest.ledger.schema.clone();
    let mut table_names: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
    table_names.sort();
    let copy_ledger = CopyLedger::new(target, &schema);
    let source_w = ctx.source_writable("data").await?;
    let (reused, item) = earlier_replication(ctx, ledger, &source_w, target, &table_names).await?;
    report.checks.extend(item);
    let started = Instant::now();
    let record = match reused {
        Some(r) => r,
        None => {
            let sides = Sides {
                ledger,
                copy_ledger: &copy_ledger,
                source_w: &source_w,
                target,
            };
            create(ctx, &sides, tables, &table_names, report).await?
        }
    };
    let names = names_of(&record);
    let retry = |e: PgError| PhaseError::new(e.to_string()).hint(RETRY_HINT);
    let sync_deadline = Duration::from_secs(ctx.manifest.data.sync_timeout_minutes * 60);
    wait_for_sync(ctx, target, &names.subscription, sync_deadline)
        .await
        .map_err(retry)?;
    let sync_took = started.elapsed();
    report.check(sync_check(tables.len(), sync_took));
    report
        .checks
        .extend(rebuild_deferred(ctx, target, &copy_ledger, tables).await?);
    copy_ledger.complete_session().await?;
    // Lag: a fence's round trip, until it is under the threshold.
    let max_lag = Duration::from_secs(ctx.manifest.data.max_lag_seconds.max(1));
    let lag = measure_lag(
        &source_w,
        target,
        &schema,
        &names.subscription,
        max_lag,
        sync_deadline,
    )
    .await
    .map_err(retry)?;
    let slot = source_w.slot_state(&names.subscription).await?;
    report.check(lag_check(lag, slot.as_ref()));
    let figures = serde_json::json!({"sync_ms": sync_took.as_millis() as u64, "lag_ms": lag.as_millis() as u64});
    ledger
        .set_replication_state(record.id, ctx.run_id, "streaming", figures)
        .await?;
    report.tables.push(replication_table(&names, tables.len()));
    report.summary = format!(
        "Target follows the source: {} tables synced in {}, lag {}.",
        tables.len(),
        human_duration(sync_took.as_millis() as u64),
        human_duration(lag.as_millis() as u64)
    );
    Ok(())
}

/// What a failure after the replication exists says to do.
const RETRY_HINT: &str =
    "re-run `data`: it reuses the replication the ledger names; `rollback` removes it";

/// An earlier run's replication: reused when it carries the same tables and
/// still exists (returned), otherwise removed so this run starts afresh.
async fn earlier_replication(
    ctx: &Context,
    ledger: &Ledger,
    source_w: &Database,
    target: &Database,
    table_names: &[String],
) -> Result<(Option<ReplicationRecord>, Option<CheckItem>), PhaseError> {
    let Some(previous) = ledger.active_replication().await? else {
        return Ok((None, None));
    };
    let exists = target
        .subscription_state(&previous.subscription)
        .await?
        .is_some();
    if reusable(&previous, exists, table_names) {
        let item = CheckItem::new(
            "replication-reused",
            "Replication of an earlier run reused",
            Status::Pass,
            format!(
                "subscription {} from run {} ({}) carries the same {} tables",
                previous.subscription,
                previous.run_id,
                previous.state,
                table_names.len()
            ),
        );
        return Ok((Some(previous), Some(item)));
    }
    let removed = retire(ctx, ledger, source_w, target, &previous).await?;
    let item = CheckItem::new(
        "replication-replaced",
        "Replication of an earlier run removed",
        Status::Warn,
        format!(
            "run {}'s replication ({}) {}: removed {}",
            previous.run_id,
            previous.state,
            if exists {
                "carried other tables"
            } else {
                "was never finished"
            },
            removed.join(", ")
        ),
    );
    Ok((None, Some(item)))
}

/// An earlier replication is reused when its subscription still exists,
/// it was finished being created, and it carries exactly these tables.
fn reusable(previous: &ReplicationRecord, exists: bool, table_names: &[String]) -> bool {
    exists && previous.tables == table_names && previous.state != "creating"
}

fn names_of(record: &ReplicationRecord) -> ReplicationNames {
    ReplicationNames {
        subscription: record.subscription.clone(),
        publication: record.publication.clone(),
        role: record.role.clone(),
    }
}

fn sync_check(tables: usize, took: Duration) -> CheckItem {
    CheckItem::new(
        "replication-sync",
        "Initial sync done",
        Status::Pass,
        format!(
            "{tables} tables copied by the target from the source in {}",
            human_duration(took.as_millis() as u64)
        ),
    )
}

/// Rebuilds the indexes deferred during the sync, now that every table's
/// rows are in; the row saying so, when there were any.
async fn rebuild_deferred(
    ctx: &Context,
    target: &Database,
    copy_ledger: &CopyLedger,
    tables: &[QualifiedName],
) -> Result<Option<CheckItem>, PhaseError> {
    let owed: Vec<DeferredObject> = copy_ledger.dropped_objects().await?;
    if owed.is_empty() {
        return Ok(None);
    }
    let rebuilt =
        super::rebuild::rebuild_all(ctx, target, copy_ledger, &owed, &Default::default(), tables)
            .await
            .map_err(|e| {
                PhaseError::new(format!(
                    "rebuilding the indexes deferred during the sync: {e}"
                ))
                .hint(RETRY_HINT)
            })?;
    Ok(Some(CheckItem::new(
        "rebuild",
        "Indexes deferred during the sync rebuilt",
        Status::Pass,
        format!(
            "{} indexes built in {}",
            owed.len(),
            human_duration(rebuilt.took.as_millis() as u64)
        ),
    )))
}

fn lag_check(lag: Duration, slot: Option<&SlotState>) -> CheckItem {
    CheckItem::new(
        "replication-lag",
        "Target follows the source",
        Status::Pass,
        format!(
            "a fence written on the source reached the target in {}{}; the source keeps writing, the target keeps following until `cutover`",
            human_duration(lag.as_millis() as u64),
            slot.map(|s| format!(
                ", slot {} behind ({})",
                bytes_text(s.lag_bytes.max(0) as u64),
                s.wal_status
            ))
            .unwrap_or_default()
        ),
    )
}

/// The replication's objects on each side.
fn replication_table(names: &ReplicationNames, tables: usize) -> ReportTable {
    let mut table = ReportTable::new("Replication", &["Object", "Where", "Name"]);
    table.push(["Publication", "source", names.publication.as_str()]);
    table.push(["Replication role", "source", names.role.as_str()]);
    table.push([
        "Subscription and slot",
        "target / source",
        names.subscription.as_str(),
    ]);
    table.with_note(format!(
        "{tables} tables; rows move server to server, never through the runner. `cutover` drains and retires them; `rollback` removes them."
    ))
}

/// The databases and ledgers a new replication is made in.
struct Sides<'a> {
    ledger: &'a Ledger,
    copy_ledger: &'a CopyLedger,
    source_w: &'a Database,
    target: &'a Database,
}

/// Creates a fresh replication: checks the target's tables are empty (or
/// truncates them with `--overwrite`), records the names, defers the
/// secondary indexes, creates the publisher side then the subscription.
async fn create(
    ctx: &mut Context,
    sides: &Sides<'_>,
    tables: &[QualifiedName],
    table_names: &[String],
    report: &mut PhaseReport,
) -> Result<ReplicationRecord, PhaseError> {
    let Sides {
        ledger,
        copy_ledger,
        source_w,
        target,
    } = *sides;
    let schema = ctx.manifest.ledger.schema.clone();
    let non_empty = target.non_empty_tables(tables).await?;
    super::refuse_rows(&non_empty, ctx.settings.overwrite, "nothing was created")?;
    let names = ReplicationNames::for_run(ctx.run_id);
    let password = new_password();
    ctx.redactor.add(&password);
    ctx.console.add_mask(&password);
    let conninfo = publisher_conninfo(
        source_url(ctx),
        ctx.manifest.data.replication_host.as_deref(),
        ctx.manifest.data.replication_port,
        &names.role,
        &password,
    )
    .map_err(|e| PhaseError::new(e).hint("set [data] replication_host"))?;
    let digest = hex::encode(Sha256::digest(password.as_bytes()));
    let id = ledger
        .record_replication(ctx.run_id, &names, &digest, table_names)
        .await?;
    let deferral = target.deferral_plan(tables).await?;
    if !non_empty.is_empty() {
        copy_ledger
            .truncate(tables, &deferral.referenced_from_outside(tables))
            .await?;
    }
    let deferred = secondary_indexes(deferral.deferred);
    copy_ledger.reset_states().await?;
    copy_ledger.drop_objects(&deferred, &[], ctx.run_id).await?;
    let fail = |e: PgError| {
        PhaseError::new(e.to_string()).hint(
            "fix the cause, then re-run `data` (it removes this half-made replication first) or `rollback`",
        )
    };
    source_w
        .create_publisher(&schema, &names, &password, tables)
        .await
        .map_err(fail)?;
    target.create_fence_receiver(&schema).await.map_err(fail)?;
    subscribe(source_w, target, &names, &conninfo)
        .await
        .map_err(fail)?;
    ledger
        .set_replication_state(id, ctx.run_id, "syncing", serde_json::json!({}))
        .await?;
    report.check(created_check(&names, deferred.len(), non_empty.len()));
    Ok(ReplicationRecord {
        id,
        run_id: ctx.run_id,
        subscription: names.subscription,
        publication: names.publication,
        role: names.role,
        state: "syncing".into(),
        tables: table_names.to_vec(),
    })
}

/// The indexes that wait for the initial sync, as in copy mode: secondary
/// ones only; keys and unique indexes stay (the apply worker finds rows to
/// update by them).
fn secondary_indexes(deferred: Vec<DeferredObject>) -> Vec<DeferredObject> {
    deferred
        .into_iter()
        .filter(|o| o.kind == DeferredKind::Index && !o.definition.starts_with("CREATE UNIQUE"))
        .collect()
}

/// Creates the subscription. A connection to the source cut while it is
/// created (a restart, a terminated walsender) is retried; a slot it left
/// is removed.
async fn subscribe(
    source_w: &Database,
    target: &Database,
    names: &ReplicationNames,
    conninfo: &str,
) -> Result<(), PgError> {
    let mut attempt = 1;
    loop {
        match target.create_subscription(names, conninfo).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 3 && e.sqlstate().is_some_and(|c| c.starts_with("08")) => {
                attempt += 1;
                source_w.drop_idle_slot(&names.subscription).await?;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn created_check(names: &ReplicationNames, deferred: usize, truncated: usize) -> CheckItem {
    CheckItem::new(
        "replication-created",
        "Replication created",
        Status::Pass,
        format!(
            "publication and role {} on the source (password random, never shown, its sha-256 in the ledger), subscription {} on the target; {deferred} secondary indexes deferred{}",
            names.role,
            names.subscription,
            if truncated == 0 {
                String::new()
            } else {
                format!("; {truncated} tables held rows and were truncated (--overwrite)")
            }
        ),
    )
}

/// Waits until every table of the subscription is ready, printing progress.
/// Returns the number of tables.
async fn wait_for_sync(
    ctx: &Context,
    target: &Database,
    subscription: &str,
    deadline: Duration,
) -> Result<i64, PgError> {
    let started = Instant::now();
    let mut last_line = Instant::now();
    loop {
        let Some(state) = target.subscription_state(subscription).await? else {
            return Err(PgError::Query {
                context: "target database: waiting for the initial sync".into(),
                message: format!("subscription {subscription} is gone"),
                sqlstate: None,
            });
        };
        if state.tables > 0 && state.ready == state.tables {
            return Ok(state.tables);
        }
        if started.elapsed() > deadline {
            return Err(PgError::Query {
                context: "target database: waiting for the initial sync".into(),
                message: format!(
                    "{} of {} tables ready after {} ({}); sync errors so far: {}",
                    state.ready,
                    state.tables,
                    human_duration(started.elapsed().as_millis() as u64),
                    describe_pending(&state.pending),
                    state.errors.1
                ),
                sqlstate: None,
            });
        }
        if last_line.elapsed() >= PROGRESS_EVERY {
            last_line = Instant::now();
            ctx.console.progress(&format!(
                "  replication: {} of {} tables ready ({}), {} in the copies running now{}",
                state.ready,
                state.tables,
                describe_pending(&state.pending),
                bytes_text(state.copying_bytes.max(0) as u64),
                if state.errors.1 > 0 {
                    format!(
                        "; {} sync errors so far (retried by PostgreSQL; see the target's log)",
                        state.errors.1
                    )
                } else {
                    String::new()
                }
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Writes fences until one's round trip is under `max_lag`; returns it.
pub async fn measure_lag(
    source_w: &Database,
    target: &Database,
    schema: &str,
    subscription: &str,
    max_lag: Duration,
    deadline: Duration,
) -> Result<Duration, PgError> {
    let started = Instant::now();
    loop {
        let id = source_w.write_fence(schema, false).await?;
        let remaining = deadline.saturating_sub(started.elapsed());
        let took = wait_for_fence(target, schema, subscription, id, remaining).await?;
        if took <= max_lag || started.elapsed() > deadline {
            return Ok(took);
        }
    }
}

/// Removes a replication everywhere (subscription and slot, publication,
/// role, fence table), records it retired; returns what was removed.
pub async fn retire(
    ctx: &Context,
    ledger: &Ledger,
    source_w: &Database,
    target: &Database,
    record: &ReplicationRecord,
) -> Result<Vec<String>, PhaseError> {
    let names = names_of(record);
    let mut removed = Vec::new();
    if target.drop_subscription(&names.subscription).await? {
        removed.push(format!("subscription {}", names.subscription));
    }
    removed.extend(
        source_w
            .drop_publisher(&ctx.manifest.ledger.schema, &names)
            .await?,
    );
    ledger
        .set_replication_state(
            record.id,
            ctx.run_id,
            "retired",
            serde_json::json!({"removed": removed}),
        )
        .await?;
    if removed.is_empty() {
        removed.push("nothing was left".into());
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publisher() -> PublisherReadiness {
        PublisherReadiness {
            wal_level: "logical".into(),
            slots: (10, 1),
            wal_senders: (10, 1),
            max_slot_wal_keep_size: "-1".into(),
            can_replicate: true,
            can_create_role: true,
            can_create_publication: true,
            large_objects: 0,
        }
    }

    fn record(state: &str, tables: &[&str]) -> ReplicationRecord {
        ReplicationRecord {
            id: 1,
            run_id: uuid::Uuid::nil(),
            subscription: "cutover_sub".into(),
            publication: "cutover_pub".into(),
            role: "cutover_role".into(),
            state: state.into(),
            tables: tables.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn statuses(items: &[CheckItem]) -> Vec<(&str, Status)> {
        items.iter().map(|c| (c.id.as_str(), c.status)).collect()
    }

    #[test]
    fn a_logical_source_with_free_slots_may_publish() {
        assert_eq!(
            statuses(&publisher_items(&publisher(), 5)),
            [
                ("replication-wal-level", Status::Pass),
                ("replication-slots", Status::Pass),
                ("replication-wal-keep", Status::Warn),
                ("replication-source-role", Status::Pass),
            ]
        );
    }

    #[test]
    fn a_source_without_logical_wal_or_slots_is_refused() {
        let p = PublisherReadiness {
            wal_level: "replica".into(),
            slots: (3, 2),
            can_create_role: false,
            max_slot_wal_keep_size: "10GB".into(),
            ..publisher()
        };
        let items = publisher_items(&p, 5);
        assert_eq!(
            statuses(&items),
            [
                ("replication-wal-level", Status::Fail),
                ("replication-slots", Status::Fail),
                ("replication-wal-keep", Status::Pass),
                ("replication-source-role", Status::Fail),
            ]
        );
        assert!(
            items[1]
                .evidence
                .starts_with("slots 1 of 3 free, WAL senders 9 of 10 free; 3 needed")
        );
        assert_eq!(
            items[3].evidence,
            "REPLICATION yes, CREATEROLE no, CREATE on the database yes"
        );
    }

    #[test]
    fn tables_without_identity_and_large_objects_are_named() {
        let table = QualifiedName::parse("public.logs").unwrap();
        let item = identity_item(&[table], 4);
        assert_eq!(item.status, Status::Fail);
        assert!(
            item.evidence
                .starts_with("no primary key or replica identity: public.logs")
        );
        assert_eq!(identity_item(&[], 4).evidence, "4 tables");
        assert_eq!(large_objects_item(2).status, Status::Warn);
        assert_eq!(large_objects_item(0).evidence, "none");
    }

    #[test]
    fn a_target_subscribes_from_pg16_with_the_grant_or_as_superuser() {
        let mut s = SubscriberReadiness {
            version_num: 150000,
            superuser: false,
            create_subscription: true,
            can_create: true,
            workers: 4,
            sync_workers: 2,
        };
        assert_eq!(subscriber_items(&s)[0].status, Status::Fail);
        s.version_num = 170002;
        assert_eq!(subscriber_items(&s)[0].status, Status::Pass);
        s.workers = 1;
        assert_eq!(subscriber_items(&s)[1].status, Status::Fail);
    }

    #[test]
    fn an_earlier_replication_is_reused_only_when_finished_and_of_the_same_tables() {
        let tables = ["public.a".to_string(), "public.b".to_string()];
        assert!(reusable(
            &record("streaming", &["public.a", "public.b"]),
            true,
            &tables
        ));
        assert!(!reusable(
            &record("streaming", &["public.a", "public.b"]),
            false,
            &tables
        ));
        assert!(!reusable(
            &record("creating", &["public.a", "public.b"]),
            true,
            &tables
        ));
        assert!(!reusable(
            &record("streaming", &["public.a"]),
            true,
            &tables
        ));
    }

    #[test]
    fn only_secondary_indexes_wait_for_the_sync() {
        let object = |kind, definition: &str| DeferredObject {
            table: QualifiedName::parse("public.a").unwrap(),
            kind,
            name: definition.into(),
            definition: definition.into(),
            deferrable: String::new(),
            validated: true,
            follow_up: Vec::new(),
            referenced: None,
        };
        let kept = secondary_indexes(vec![
            object(DeferredKind::Index, "CREATE INDEX a_b ON public.a (b)"),
            object(
                DeferredKind::Index,
                "CREATE UNIQUE INDEX a_c ON public.a (c)",
            ),
            object(
                DeferredKind::PrimaryKey,
                "CREATE UNIQUE INDEX a_pkey ON public.a (id)",
            ),
        ]);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].name, "CREATE INDEX a_b ON public.a (b)");
    }

    #[test]
    fn the_rows_name_the_replication_objects() {
        let names = names_of(&record("syncing", &[]));
        assert!(created_check(&names, 2, 1).evidence.ends_with(
            "subscription cutover_sub on the target; 2 secondary indexes deferred; 1 tables held rows and were truncated (--overwrite)"
        ));
        let slot = SlotState {
            active: true,
            wal_status: "reserved".into(),
            lag_bytes: 2048,
        };
        assert!(
            lag_check(Duration::from_millis(120), Some(&slot))
                .evidence
                .contains(", slot 2.0 KiB behind (reserved);")
        );
        let table = replication_table(&names, 3);
        assert_eq!(table.rows[0][2], "cutover_pub");
        assert_eq!(table.rows[2][2], "cutover_sub");
    }
}
