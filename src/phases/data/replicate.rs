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
use crate::pg::copy::{CopyLedger, DeferredKind, DeferredObject};
use crate::pg::ledger::{Ledger, ReplicationRecord};
use crate::pg::replication::{
    ReplicationNames, describe_pending, new_password, publisher_conninfo, wait_for_fence,
};
use crate::pg::{Database, PgError};
use crate::report::{CheckItem, Outcome, PhaseReport, ReportTable, Status, human_duration};

use super::super::PhaseError;
use super::bytes_text;

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
    let mut items = Vec::new();
    let p = source.publisher_readiness().await?;
    items.push(if p.wal_level == "logical" {
        CheckItem::new(
            "replication-wal-level",
            "Source publishes logical changes",
            Status::Pass,
            "wal_level = logical",
        )
    } else {
        CheckItem::new(
            "replication-wal-level",
            "Source publishes logical changes",
            Status::Fail,
            format!("wal_level = {}", p.wal_level),
        )
        .with_hint("set wal_level = logical on the source and restart it (Supabase has it on), or use [data] mode = \"copy\"")
    });
    let sync_workers = 2i64;
    let free_slots = p.slots.0 - p.slots.1;
    let free_senders = p.wal_senders.0 - p.wal_senders.1;
    let needed = 1 + sync_workers.min(tables.len() as i64).max(1);
    items.push(
        CheckItem::new(
            "replication-slots",
            "Free replication slots and WAL senders on the source",
            if free_slots >= needed && free_senders >= needed {
                Status::Pass
            } else {
                Status::Fail
            },
            format!(
                "slots {} of {} free, WAL senders {} of {} free; {needed} needed (one for the subscription, one per table syncing at once)",
                free_slots, p.slots.0, free_senders, p.wal_senders.0
            ),
        )
        .with_hint("drop unused slots (pg_replication_slots) or raise max_replication_slots / max_wal_senders on the source"),
    );
    items.push(CheckItem::new(
        "replication-wal-keep",
        "WAL kept for a lagging replication is bounded",
        if p.max_slot_wal_keep_size == "-1" {
            Status::Warn
        } else {
            Status::Pass
        },
        if p.max_slot_wal_keep_size == "-1" {
            "max_slot_wal_keep_size = -1: a stalled subscription keeps WAL on the source without limit until `cutover` or `rollback` drops the slot".to_string()
        } else {
            format!(
                "max_slot_wal_keep_size = {}: a lag above it loses the slot (reported, then re-run `data`)",
                p.max_slot_wal_keep_size
            )
        },
    ));
    let role_ok = p.can_replicate && p.can_create_role && p.can_create_publication;
    items.push(
        CheckItem::new(
            "replication-source-role",
            "Source role may publish",
            if role_ok { Status::Pass } else { Status::Fail },
            format!(
                "REPLICATION {}, CREATEROLE {}, CREATE on the database {}",
                yes(p.can_replicate),
                yes(p.can_create_role),
                yes(p.can_create_publication)
            ),
        )
        .with_hint("connect to the source as a role with REPLICATION and CREATEROLE that owns the copied tables (Supabase: `postgres`)"),
    );
    let no_identity = source.tables_without_replica_identity(tables).await?;
    items.push(if no_identity.is_empty() {
        CheckItem::new(
            "replication-identity",
            "Every copied table has a primary key or replica identity",
            Status::Pass,
            format!("{} tables", tables.len()),
        )
    } else {
        CheckItem::new(
            "replication-identity",
            "Every copied table has a primary key or replica identity",
            Status::Fail,
            format!(
                "no primary key or replica identity: {} (publishing them would make the source refuse every UPDATE and DELETE on them)",
                join(&no_identity)
            ),
        )
        .with_hint("add a primary key (a migration), or `ALTER TABLE ... REPLICA IDENTITY FULL`, or list them in [data] exclude, or use [data] mode = \"copy\"")
    });
    items.push(CheckItem::new(
        "replication-large-objects",
        "No large objects (logical replication does not carry them)",
        if p.large_objects == 0 {
            Status::Pass
        } else {
            Status::Warn
        },
        if p.large_objects == 0 {
            "none".to_string()
        } else {
            format!(
                "{} large objects on the source will not reach the target",
                p.large_objects
            )
        },
    ));
    let s = target.subscriber_readiness().await?;
    let may_subscribe = s.superuser || (s.version_num >= 160000 && s.create_subscription);
    items.push(
        CheckItem::new(
            "replication-target",
            "Target may subscribe",
            if may_subscribe && s.can_create {
                Status::Pass
            } else {
                Status::Fail
            },
            format!(
                "PostgreSQL {}, superuser {}, pg_create_subscription {}, CREATE on the database {}",
                s.version_num / 10000,
                yes(s.superuser),
                yes(s.create_subscription),
                yes(s.can_create)
            ),
        )
        .with_hint("replicate mode needs a PostgreSQL 16+ target whose role is granted pg_create_subscription (Supabase PG 17: `postgres` is), or a superuser; otherwise use [data] mode = \"copy\""),
    );
    items.push(
        CheckItem::new(
            "replication-workers",
            "Target has logical replication workers",
            if s.workers >= 2 {
                Status::Pass
            } else {
                Status::Fail
            },
            format!(
                "max_logical_replication_workers = {}, max_sync_workers_per_subscription = {}",
                s.workers, s.sync_workers
            ),
        )
        .with_hint("raise max_logical_replication_workers on the target to at least 2"),
    );
    let conninfo = publisher_conninfo(
        ctx.settings.source_db_url.as_deref().unwrap_or_default(),
        ctx.manifest.data.replication_host.as_deref(),
        ctx.manifest.data.replication_port,
        "x",
        "x",
    );
    items.push(match conninfo {
        Ok(_) => CheckItem::new(
            "replication-address",
            "Target knows where to reach the source",
            Status::Pass,
            format!(
                "{}:{}",
                ctx.manifest
                    .data
                    .replication_host
                    .clone()
                    .unwrap_or_else(|| "the host of source-db-url".into()),
                ctx.manifest
                    .data
                    .replication_port
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
    });
    Ok(items)
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn join(tables: &[QualifiedName]) -> String {
    tables
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ")
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

    // An earlier run's replication: reuse it when it carries the same
    // tables and still exists; otherwise remove it and start afresh.
    let mut record = None;
    if let Some(previous) = ledger.active_replication().await? {
        let exists = target
            .subscription_state(&previous.subscription)
            .await?
            .is_some();
        if exists && previous.tables == table_names && previous.state != "creating" {
            report.check(CheckItem::new(
                "replication-reused",
                "Replication of an earlier run reused",
                Status::Pass,
                format!(
                    "subscription {} from run {} ({}) carries the same {} tables",
                    previous.subscription,
                    previous.run_id,
                    previous.state,
                    tables.len()
                ),
            ));
            record = Some(previous);
        } else {
            let removed = retire(ctx, ledger, &source_w, target, &previous).await?;
            report.check(CheckItem::new(
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
            ));
        }
    }

    let started = Instant::now();
    let record = match record {
        Some(r) => r,
        None => {
            create(
                ctx,
                ledger,
                &copy_ledger,
                &source_w,
                target,
                tables,
                &table_names,
                report,
            )
            .await?
        }
    };
    let names = ReplicationNames {
        subscription: record.subscription.clone(),
        publication: record.publication.clone(),
        role: record.role.clone(),
    };
    let retry_hint =
        "re-run `data`: it reuses the replication the ledger names; `rollback` removes it";

    // Initial sync.
    let sync_deadline = Duration::from_secs(ctx.manifest.data.sync_timeout_minutes * 60);
    wait_for_sync(ctx, target, &names.subscription, sync_deadline)
        .await
        .map_err(|e| PhaseError::new(e.to_string()).hint(retry_hint))?;
    let synced = tables.len();
    let sync_took = started.elapsed();
    report.check(CheckItem::new(
        "replication-sync",
        "Initial sync done",
        Status::Pass,
        format!(
            "{} tables copied by the target from the source in {}",
            synced,
            human_duration(sync_took.as_millis() as u64)
        ),
    ));

    // Deferred indexes, now that every table's rows are in.
    let owed: Vec<DeferredObject> = copy_ledger.dropped_objects().await?;
    if !owed.is_empty() {
        let rebuilt = super::rebuild::rebuild_all(
            ctx,
            target,
            &copy_ledger,
            &owed,
            &Default::default(),
            tables,
        )
        .await;
        match rebuilt {
            Ok(super::rebuild::RebuildOutcome { took, .. }) => report.check(CheckItem::new(
                "rebuild",
                "Indexes deferred during the sync rebuilt",
                Status::Pass,
                format!(
                    "{} indexes built in {}",
                    owed.len(),
                    human_duration(took.as_millis() as u64)
                ),
            )),
            Err(e) => {
                return Err(PhaseError::new(format!(
                    "rebuilding the indexes deferred during the sync: {e}"
                ))
                .hint(retry_hint));
            }
        }
    }
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
    .map_err(|e| PhaseError::new(e.to_string()).hint(retry_hint))?;
    let slot = source_w.slot_state(&names.subscription).await?;
    report.check(CheckItem::new(
        "replication-lag",
        "Target follows the source",
        Status::Pass,
        format!(
            "a fence written on the source reached the target in {}{}; the source keeps writing, the target keeps following until `cutover`",
            human_duration(lag.as_millis() as u64),
            slot.map(|s| format!(", slot {} behind ({})", bytes_text(s.lag_bytes.max(0) as u64), s.wal_status))
                .unwrap_or_default()
        ),
    ));
    ledger
        .set_replication_state(
            record.id,
            ctx.run_id,
            "streaming",
            serde_json::json!({"sync_ms": sync_took.as_millis() as u64, "lag_ms": lag.as_millis() as u64}),
        )
        .await?;

    let mut table = ReportTable::new("Replication", &["Object", "Where", "Name"]);
    table.push([
        "Publication".into(),
        "source".into(),
        names.publication.clone(),
    ]);
    table.push([
        "Replication role".into(),
        "source".into(),
        names.role.clone(),
    ]);
    table.push([
        "Subscription and slot".into(),
        "target / source".into(),
        names.subscription.clone(),
    ]);
    report.tables.push(table.with_note(format!(
        "{} tables; rows move server to server, never through the runner. `cutover` drains and retires them; `rollback` removes them.",
        tables.len()
    )));
    report.summary = format!(
        "Target follows the source: {} tables synced in {}, lag {}.",
        tables.len(),
        human_duration(sync_took.as_millis() as u64),
        human_duration(lag.as_millis() as u64)
    );
    Ok(())
}

/// Creates a fresh replication: checks the target's tables are empty (or
/// truncates them with `--overwrite`), records the names, defers the
/// secondary indexes, creates the publisher side then the subscription.
#[allow(clippy::too_many_arguments)]
async fn create(
    ctx: &mut Context,
    ledger: &Ledger,
    copy_ledger: &CopyLedger,
    source_w: &Database,
    target: &Database,
    tables: &[QualifiedName],
    table_names: &[String],
    report: &mut PhaseReport,
) -> Result<ReplicationRecord, PhaseError> {
    let schema = ctx.manifest.ledger.schema.clone();
    let non_empty = target.non_empty_tables(tables).await?;
    if !non_empty.is_empty() && !ctx.settings.overwrite {
        return Err(PhaseError::new(format!(
            "target tables already hold rows: {}; nothing was created",
            join(&non_empty)
        ))
        .hint("back up the target (`backup`), then pass --overwrite (input `overwrite: true`) to replace exactly the copied tables, or empty them"));
    }
    let names = ReplicationNames::for_run(ctx.run_id);
    let password = new_password();
    ctx.redactor.add(&password);
    ctx.console.add_mask(&password);
    let conninfo = publisher_conninfo(
        ctx.settings.source_db_url.as_deref().unwrap_or_default(),
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
    // Secondary indexes wait for the initial sync, as in copy mode; keys
    // stay (the apply worker finds rows to update by them).
    let deferred: Vec<DeferredObject> = deferral
        .deferred
        .into_iter()
        .filter(|o| o.kind == DeferredKind::Index && !o.definition.starts_with("CREATE UNIQUE"))
        .collect();
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
    // A connection to the source cut while the subscription is created (a
    // restart, a terminated walsender) is retried; a slot it left is removed.
    let mut attempt = 1;
    loop {
        match target.create_subscription(&names, &conninfo).await {
            Ok(()) => break,
            Err(e) if attempt < 3 && e.sqlstate().is_some_and(|c| c.starts_with("08")) => {
                attempt += 1;
                source_w
                    .drop_idle_slot(&names.subscription)
                    .await
                    .map_err(fail)?;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(fail(e)),
        }
    }
    ledger
        .set_replication_state(id, ctx.run_id, "syncing", serde_json::json!({}))
        .await?;
    report.check(CheckItem::new(
        "replication-created",
        "Replication created",
        Status::Pass,
        format!(
            "publication and role {} on the source (password random, never shown, its sha-256 in the ledger), subscription {} on the target; {} secondary indexes deferred{}",
            names.role,
            names.subscription,
            deferred.len(),
            if non_empty.is_empty() {
                String::new()
            } else {
                format!("; {} tables held rows and were truncated (--overwrite)", non_empty.len())
            }
        ),
    ));
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
    let names = ReplicationNames {
        subscription: record.subscription.clone(),
        publication: record.publication.clone(),
        role: record.role.clone(),
    };
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
