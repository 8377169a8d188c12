//! Logical replication source → target, server to server: the rows never
//! pass through the runner, and the target follows the source for as long
//! as the reviewers take.
//!
//! On the source: a throw-away role (LOGIN REPLICATION BYPASSRLS, a random
//! password set as a SCRAM verifier, so the clear text is in no statement),
//! `SELECT` on exactly the copied tables, and a publication over them plus a
//! fence table. On the target: the same fence table, and a subscription
//! (`copy_data`, `binary`) whose slot lives on the source.
//!
//! The fence is how both sides are compared while the app writes: a row
//! written on the source arrives on the target after every transaction that
//! committed before it (logical replication applies in commit order). A
//! fence row with `pause = true` also stops the target's apply worker right
//! there (a trigger that waits for an advisory lock cutover holds), so the
//! target stays at exactly the source's state before the fence while both
//! are compared (see [`pause_at_fence`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::Rng;
use sqlx::{ConnectOptions, Connection, PgConnection, Row};

use super::{Database, PgError};
use crate::manifest::{QualifiedName, quote_ident};

/// The fence table's name (in the ledger's schema on both sides).
pub const FENCE_TABLE: &str = "replication_fence";

/// The advisory lock a pausing fence row waits for on the target.
pub const FENCE_LOCK_KEY: i64 = 0x0063_7574_6f76_6572;

/// Names of the objects one replication uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationNames {
    /// Subscription on the target (and its slot on the source).
    pub subscription: String,
    /// Publication on the source.
    pub publication: String,
    /// The replication role on the source.
    pub role: String,
}

impl ReplicationNames {
    /// Names derived from a run id: short, unique per run, recognisable.
    pub fn for_run(run_id: uuid::Uuid) -> ReplicationNames {
        let short = &run_id.simple().to_string()[..10];
        ReplicationNames {
            subscription: format!("cutover_{short}"),
            publication: format!("cutover_{short}"),
            role: format!("cutover_repl_{short}"),
        }
    }
}

/// A random password for the replication role: 32 alphanumerics.
pub fn new_password() -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// The connection string the target uses to reach the source: host, port
/// and database of `source_url` unless overridden, the replication role and
/// its password, and the URL's `sslmode`. Errors name what is wrong.
pub fn publisher_conninfo(
    source_url: &str,
    host: Option<&str>,
    port: Option<u16>,
    role: &str,
    password: &str,
) -> Result<String, String> {
    let url = url::Url::parse(source_url).map_err(|_| {
        "source-db-url is not a postgresql:// URL, so the target cannot be told where the source is".to_string()
    })?;
    let host = match host {
        Some(h) => h.to_string(),
        None => url
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
            .filter(|h| !h.is_empty())
            .ok_or("source-db-url has no host; set [data] replication_host")?,
    };
    let port = port.or(url.port()).unwrap_or(5432);
    let dbname = percent_encoding::percent_decode_str(url.path().trim_start_matches('/'))
        .decode_utf8_lossy()
        .to_string();
    let dbname = if dbname.is_empty() {
        "postgres".to_string()
    } else {
        dbname
    };
    let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut info = format!(
        "host={} port={port} dbname={} user={} password={}",
        quote(&host),
        quote(&dbname),
        quote(role),
        quote(password)
    );
    if let Some((_, mode)) = url.query_pairs().find(|(k, _)| k == "sslmode") {
        info.push_str(&format!(" sslmode={}", quote(&mode)));
    }
    Ok(info)
}

/// What the source offers for logical replication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherReadiness {
    /// `wal_level` (must be `logical`).
    pub wal_level: String,
    /// `max_replication_slots` and how many are in use.
    pub slots: (i64, i64),
    /// `max_wal_senders` and how many are in use.
    pub wal_senders: (i64, i64),
    /// `max_slot_wal_keep_size` as the server prints it (`-1` = unbounded).
    pub max_slot_wal_keep_size: String,
    /// The connected role has REPLICATION (or is superuser).
    pub can_replicate: bool,
    /// The connected role may create roles.
    pub can_create_role: bool,
    /// The connected role may create publications (CREATE on the database).
    pub can_create_publication: bool,
    /// Large objects in the database (never replicated).
    pub large_objects: i64,
}

/// What the target offers as a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberReadiness {
    /// `server_version_num`.
    pub version_num: i32,
    /// The connected role is superuser.
    pub superuser: bool,
    /// The connected role is a member of `pg_create_subscription` (PG 16+).
    pub create_subscription: bool,
    /// CREATE on the database.
    pub can_create: bool,
    /// `max_logical_replication_workers`.
    pub workers: i64,
    /// `max_sync_workers_per_subscription`.
    pub sync_workers: i64,
}

/// One subscription as the target sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionState {
    /// `subenabled`.
    pub enabled: bool,
    /// The apply worker's pid, when it runs.
    pub apply_pid: Option<i32>,
    /// Tables in the subscription.
    pub tables: i64,
    /// Tables whose initial sync is done (`r`).
    pub ready: i64,
    /// Tables not ready yet, by state letter, for progress lines.
    pub pending: Vec<(String, String)>,
    /// Bytes the initial COPYs in progress have received.
    pub copying_bytes: i64,
    /// `pg_stat_subscription_stats`: apply and sync errors so far.
    pub errors: (i64, i64),
}

/// The slot on the source.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotState {
    /// Someone (the target's walsender) is connected to it.
    pub active: bool,
    /// `wal_status` (`reserved`, `extended`, `unreserved`, `lost`).
    pub wal_status: String,
    /// WAL bytes the target has not confirmed yet.
    pub lag_bytes: i64,
}

fn fence_table(schema: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(FENCE_TABLE))
}

fn fence_ddl(schema: &str) -> String {
    format!(
        "create schema if not exists {s};
         create table if not exists {t} (
             id bigint generated by default as identity primary key,
             pause boolean not null default false,
             written_at timestamptz not null default clock_timestamp()
         );",
        s = quote_ident(schema),
        t = fence_table(schema)
    )
}

impl Database {
    /// Reads [`PublisherReadiness`] (source).
    pub async fn publisher_readiness(&self) -> Result<PublisherReadiness, PgError> {
        let row = sqlx::query(
            "select current_setting('wal_level') as wal_level,
                    current_setting('max_replication_slots')::bigint as max_slots,
                    (select count(*) from pg_replication_slots)::bigint as used_slots,
                    current_setting('max_wal_senders')::bigint as max_senders,
                    (select count(*) from pg_stat_replication)::bigint as used_senders,
                    coalesce(current_setting('max_slot_wal_keep_size', true), '-1') as keep,
                    (select rolreplication or rolsuper from pg_roles where rolname = current_user) as repl,
                    (select rolcreaterole or rolsuper from pg_roles where rolname = current_user) as createrole,
                    has_database_privilege(current_database(), 'CREATE') as can_create,
                    (select count(*) from pg_largeobject_metadata)::bigint as lo",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.error("reading the source's replication settings", e))?;
        Ok(PublisherReadiness {
            wal_level: row.get("wal_level"),
            slots: (row.get("max_slots"), row.get("used_slots")),
            wal_senders: (row.get("max_senders"), row.get("used_senders")),
            max_slot_wal_keep_size: row.get("keep"),
            can_replicate: row.get("repl"),
            can_create_role: row.get("createrole"),
            can_create_publication: row.get("can_create"),
            large_objects: row.get("lo"),
        })
    }

    /// Reads [`SubscriberReadiness`] (target).
    pub async fn subscriber_readiness(&self) -> Result<SubscriberReadiness, PgError> {
        let row = sqlx::query(
            "select current_setting('server_version_num')::int as v,
                    (select rolsuper from pg_roles where rolname = current_user) as su,
                    exists (select 1 from pg_roles where rolname = 'pg_create_subscription')
                      and pg_has_role(current_user, 'pg_create_subscription', 'USAGE') as cs,
                    has_database_privilege(current_database(), 'CREATE') as can_create,
                    current_setting('max_logical_replication_workers')::bigint as workers,
                    current_setting('max_sync_workers_per_subscription')::bigint as sync",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.error("reading the target's subscription settings", e))?;
        Ok(SubscriberReadiness {
            version_num: row.get("v"),
            superuser: row.get("su"),
            create_subscription: row.get("cs"),
            can_create: row.get("can_create"),
            workers: row.get("workers"),
            sync_workers: row.get("sync"),
        })
    }

    /// Tables of `tables` whose UPDATEs and DELETEs could not be published:
    /// no primary key and replica identity `default`, or identity `nothing`.
    /// (Adding such a table to a publication makes the source refuse every
    /// UPDATE and DELETE on it, so they are refused before anything exists.)
    pub async fn tables_without_replica_identity(
        &self,
        tables: &[QualifiedName],
    ) -> Result<Vec<QualifiedName>, PgError> {
        let names: Vec<String> = tables.iter().map(QualifiedName::quoted).collect();
        let rows = sqlx::query(
            "select n.nspname::text, c.relname::text
               from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where c.oid = any(select to_regclass(t) from unnest($1::text[]) t)
                and (c.relreplident = 'n'
                     or (c.relreplident = 'd'
                         and not exists (select 1 from pg_index i
                                          where i.indrelid = c.oid and i.indisprimary)))
              order by 1, 2",
        )
        .bind(&names)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.error("checking replica identities", e))?;
        Ok(super::freeze::qualified_names(rows))
    }

    /// Source: the fence table, the replication role (password set as a
    /// SCRAM verifier), its grants, and the publication, in one transaction.
    pub async fn create_publisher(
        &self,
        schema: &str,
        names: &ReplicationNames,
        password: &str,
        tables: &[QualifiedName],
    ) -> Result<(), PgError> {
        let context = "creating the publication and the replication role on the source";
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        let role = quote_ident(&names.role);
        let fence = fence_table(schema);
        let mut schemas: Vec<&str> = tables.iter().map(|t| t.schema.as_str()).collect();
        schemas.push(schema);
        schemas.sort();
        schemas.dedup();
        let mut listed: Vec<String> = tables.iter().map(QualifiedName::quoted).collect();
        listed.push(fence.clone());
        let mut sql = fence_ddl(schema);
        sql.push_str(&format!(
            "create role {role} login replication bypassrls password '{verifier}';"
        ));
        for s in &schemas {
            sql.push_str(&format!(
                "grant usage on schema {} to {role};",
                quote_ident(s)
            ));
        }
        sql.push_str(&format!(
            "grant select on {} to {role};
             create publication {} for table {} with (publish_via_partition_root = true);",
            listed.join(", "),
            quote_ident(&names.publication),
            listed.join(", ")
        ));
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| self.error(context, e))?;
        sqlx::raw_sql(&sql)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.error(context, e))?;
        tx.commit().await.map_err(|e| self.error(context, e))
    }

    /// Source: drops what [`Database::create_publisher`] made (each part only
    /// if present) and the slot when the subscription could not drop it.
    /// Returns what was dropped.
    pub async fn drop_publisher(
        &self,
        schema: &str,
        names: &ReplicationNames,
    ) -> Result<Vec<String>, PgError> {
        let context = "removing the publication and the replication role from the source";
        let mut dropped = Vec::new();
        let slot: Option<bool> =
            sqlx::query_scalar("select active from pg_replication_slots where slot_name = $1")
                .bind(&names.subscription)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.error(context, e))?;
        if slot == Some(false) {
            sqlx::query("select pg_drop_replication_slot($1)")
                .bind(&names.subscription)
                .execute(&self.pool)
                .await
                .map_err(|e| self.error(context, e))?;
            dropped.push(format!("slot {}", names.subscription));
        }
        let has_pub: bool =
            sqlx::query_scalar("select exists (select 1 from pg_publication where pubname = $1)")
                .bind(&names.publication)
                .fetch_one(&self.pool)
                .await
                .map_err(|e| self.error(context, e))?;
        if has_pub {
            sqlx::raw_sql(&format!(
                "drop publication {}",
                quote_ident(&names.publication)
            ))
            .execute(&self.pool)
            .await
            .map_err(|e| self.error(context, e))?;
            dropped.push(format!("publication {}", names.publication));
        }
        let has_role: bool =
            sqlx::query_scalar("select exists (select 1 from pg_roles where rolname = $1)")
                .bind(&names.role)
                .fetch_one(&self.pool)
                .await
                .map_err(|e| self.error(context, e))?;
        if has_role {
            // Revoke exactly what it was granted (DROP OWNED needs membership
            // in the role, which CREATEROLE no longer gives on PG 16+).
            let grants: Vec<String> = sqlx::query_scalar(
                "select format('revoke all on %s from %I', c.oid::regclass, $1)
                   from pg_class c
                  where c.relacl is not null
                    and exists (select 1 from aclexplode(c.relacl) a
                                 where a.grantee = (select oid from pg_roles where rolname = $1))
                 union all
                 select format('revoke all on schema %I from %I', n.nspname, $1)
                   from pg_namespace n
                  where n.nspacl is not null
                    and exists (select 1 from aclexplode(n.nspacl) a
                                 where a.grantee = (select oid from pg_roles where rolname = $1))",
            )
            .bind(&names.role)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(context, e))?;
            let mut sql = grants.join(";");
            sql.push_str(&format!(";drop role {}", quote_ident(&names.role)));
            sqlx::raw_sql(&sql)
                .execute(&self.pool)
                .await
                .map_err(|e| self.error(context, e))?;
            dropped.push(format!("role {}", names.role));
        }
        let has_fence: bool = sqlx::query_scalar("select to_regclass($1) is not null")
            .bind(fence_table(schema))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.error(context, e))?;
        if has_fence {
            sqlx::raw_sql(&format!("drop table {}", fence_table(schema)))
                .execute(&self.pool)
                .await
                .map_err(|e| self.error(context, e))?;
            dropped.push("fence table".into());
        }
        Ok(dropped)
    }

    /// Target: the fence table and the trigger that makes a pausing fence
    /// row wait for [`FENCE_LOCK_KEY`] (`ENABLE ALWAYS`: the apply worker
    /// runs as a replica).
    pub async fn create_fence_receiver(&self, schema: &str) -> Result<(), PgError> {
        let s = quote_ident(schema);
        let t = fence_table(schema);
        let sql = format!(
            "{ddl}
             create or replace function {s}.fence_pause() returns trigger
             language plpgsql as $fn$
             begin
               if new.pause then
                 perform pg_advisory_xact_lock_shared({FENCE_LOCK_KEY});
               end if;
               return new;
             end
             $fn$;
             drop trigger if exists fence_pause on {t};
             create trigger fence_pause before insert on {t}
               for each row execute function {s}.fence_pause();
             alter table {t} enable always trigger fence_pause;",
            ddl = fence_ddl(schema)
        );
        super::ledger::create_ledger_objects(self, &sql, "the replication fence table").await
    }

    /// Target: creates the subscription (outside a transaction, as
    /// PostgreSQL requires when it creates the slot). `conninfo` holds the
    /// role's password: the redactor must know it already.
    pub async fn create_subscription(
        &self,
        names: &ReplicationNames,
        conninfo: &str,
    ) -> Result<(), PgError> {
        let sql = format!(
            "create subscription {} connection '{}' publication {}
               with (copy_data = true, binary = true, streaming = off)",
            quote_ident(&names.subscription),
            conninfo.replace('\'', "''"),
            quote_ident(&names.publication)
        );
        // Its own connection with statement logging off: the statement holds
        // the password, and `CUTOVER_LOG=trace` would otherwise log it.
        let options = (*self.pool.connect_options())
            .clone()
            .disable_statement_logging();
        let mut conn = sqlx::PgConnection::connect_with(&options)
            .await
            .map_err(|e| self.error("creating the subscription", e))?;
        let result = sqlx::raw_sql(&sql).execute(&mut conn).await;
        let _ = conn.close().await;
        result.map_err(|e| self.error("creating the subscription on the target", e))?;
        Ok(())
    }

    /// Target: the subscription's state, or `None` when it does not exist.
    pub async fn subscription_state(
        &self,
        name: &str,
    ) -> Result<Option<SubscriptionState>, PgError> {
        let context = "reading the subscription's state";
        let row = sqlx::query(
            "select s.subenabled,
                    (select pid from pg_stat_subscription st
                      where st.subid = s.oid and st.relid is null and st.pid is not null limit 1) as pid,
                    (select count(*) from pg_subscription_rel r where r.srsubid = s.oid)::bigint as tables,
                    (select count(*) from pg_subscription_rel r
                      where r.srsubid = s.oid and r.srsubstate = 'r')::bigint as ready,
                    coalesce((select sum(p.bytes_processed) from pg_stat_progress_copy p
                               where p.datid = (select oid from pg_database where datname = current_database())
                                 and p.command = 'COPY FROM'), 0)::bigint as copying
               from pg_subscription s
              where s.subname = $1 and s.subdbid = (select oid from pg_database where datname = current_database())",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.error(context, e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let pending = sqlx::query(
            "select r.srrelid::regclass::text, r.srsubstate::text
               from pg_subscription_rel r join pg_subscription s on s.oid = r.srsubid
              where s.subname = $1 and r.srsubstate <> 'r' order by 1",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.error(context, e))?
        .into_iter()
        .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
        .collect();
        let errors: Option<(i64, i64)> = sqlx::query_as(
            "select apply_error_count, sync_error_count from pg_stat_subscription_stats
              where subname = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .unwrap_or(None);
        Ok(Some(SubscriptionState {
            enabled: row.get(0),
            apply_pid: row.get(1),
            tables: row.get(2),
            ready: row.get(3),
            pending,
            copying_bytes: row.get(4),
            errors: errors.unwrap_or((0, 0)),
        }))
    }

    /// Target: disables and drops the subscription (which drops its slot on
    /// the source). When the source cannot be reached, detaches the slot
    /// first so the drop succeeds; the slot is then left for
    /// [`Database::drop_publisher`]. Returns whether a subscription existed.
    pub async fn drop_subscription(&self, name: &str) -> Result<bool, PgError> {
        if self.subscription_state(name).await?.is_none() {
            return Ok(false);
        }
        let n = quote_ident(name);
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| self.error("dropping the subscription", e))?;
        sqlx::raw_sql(&format!("alter subscription {n} disable"))
            .execute(&mut *conn)
            .await
            .map_err(|e| self.error("disabling the subscription", e))?;
        if sqlx::raw_sql(&format!("drop subscription {n}"))
            .execute(&mut *conn)
            .await
            .is_err()
        {
            sqlx::raw_sql(&format!(
                "alter subscription {n} set (slot_name = none); drop subscription {n}"
            ))
            .execute(&mut *conn)
            .await
            .map_err(|e| self.error("dropping the subscription", e))?;
        }
        Ok(true)
    }

    /// Source: drops slot `name` when it exists and nobody uses it.
    pub async fn drop_idle_slot(&self, name: &str) -> Result<bool, PgError> {
        let dropped: Vec<bool> = sqlx::query_scalar(
            "select pg_drop_replication_slot(slot_name) is null
               from pg_replication_slots where slot_name = $1 and not active",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.error("dropping a replication slot left by a failed attempt", e))?;
        Ok(!dropped.is_empty())
    }

    /// Source: writes a fence row and returns its id. Committed with
    /// `synchronous_commit = on`: with `off`, the commit would wait for the
    /// WAL writer (up to `wal_writer_delay`) before the walsender could send
    /// it, and the fence is on the freeze's critical path.
    pub async fn write_fence(&self, schema: &str, pause: bool) -> Result<i64, PgError> {
        let context = "writing a fence row on the source";
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| self.error(context, e))?;
        sqlx::query("set local synchronous_commit = on")
            .execute(&mut *tx)
            .await
            .map_err(|e| self.error(context, e))?;
        let id = sqlx::query_scalar(&format!(
            "insert into {} (pause) values ($1) returning id",
            fence_table(schema)
        ))
        .bind(pause)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| self.error(context, e))?;
        tx.commit().await.map_err(|e| self.error(context, e))?;
        Ok(id)
    }

    /// Target: whether fence row `id` has arrived.
    pub async fn fence_arrived(&self, schema: &str, id: i64) -> Result<bool, PgError> {
        sqlx::query_scalar(&format!(
            "select exists (select 1 from {} where id = $1)",
            fence_table(schema)
        ))
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.error("looking for the fence row on the target", e))
    }

    /// Source: the slot's state, or `None` without it.
    pub async fn slot_state(&self, slot: &str) -> Result<Option<SlotState>, PgError> {
        let row = sqlx::query(
            "select active, coalesce(wal_status, 'unknown')::text,
                    coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::bigint
               from pg_replication_slots where slot_name = $1",
        )
        .bind(slot)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.error("reading the replication slot", e))?;
        Ok(row.map(|r| SlotState {
            active: r.get(0),
            wal_status: r.get(1),
            lag_bytes: r.get(2),
        }))
    }
}

/// Waits until fence row `id` is on the target, polling; errors after
/// `deadline` naming the wait. Returns how long it took.
pub async fn wait_for_fence(
    target: &Database,
    schema: &str,
    subscription: &str,
    id: i64,
    deadline: Duration,
) -> Result<Duration, PgError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if target.fence_arrived(schema, id).await? {
            return Ok(started.elapsed());
        }
        if started.elapsed() > deadline {
            let state = target.subscription_state(subscription).await?;
            return Err(PgError::Query {
                context: "target database: waiting for the replication fence".into(),
                message: format!(
                    "fence row {id} did not arrive within {} s ({})",
                    deadline.as_secs(),
                    match state {
                        None => "the subscription does not exist".to_string(),
                        Some(s) if s.apply_pid.is_none() =>
                            "the subscription's apply worker is not running: see the target's log and pg_stat_subscription".to_string(),
                        Some(s) => format!("apply errors so far: {}", s.errors.0),
                    }
                ), sqlstate: None });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// The source and target held at one fence: a source snapshot taken while
/// no copied table could be written, and the target's apply worker waiting
/// just before that fence's transaction. Compare with
/// `source.at_snapshot(&held.snapshot_id)` and the target as it is, then
/// [`HeldAtFence::release`].
pub struct HeldAtFence {
    snapshot_conn: PgConnection,
    lock_conn: PgConnection,
    /// The exported source snapshot.
    pub snapshot_id: String,
    /// The fence row's id.
    pub fence_id: i64,
    /// How long writers to the copied tables were held (the SHARE lock).
    pub writers_held: Duration,
}

impl HeldAtFence {
    /// Lets the target's apply go on and ends the source snapshot.
    pub async fn release(mut self) {
        let _ = sqlx::query("select pg_advisory_unlock($1)")
            .bind(FENCE_LOCK_KEY)
            .execute(&mut self.lock_conn)
            .await;
        let _ = self.lock_conn.close().await;
        let _ = sqlx::raw_sql("rollback")
            .execute(&mut self.snapshot_conn)
            .await;
        let _ = self.snapshot_conn.close().await;
    }
}

/// Holds source and target at one fence (see [`HeldAtFence`]):
/// 1. the target's session takes [`FENCE_LOCK_KEY`];
/// 2. on the source, one transaction takes `SHARE` locks on the copied
///    tables (writers in flight finish, new ones wait), writes a pausing
///    fence row; a second session takes a snapshot; the first commits —
///    writers were held only for that moment;
/// 3. waits until the target's apply worker waits on the lock, i.e. has
///    applied everything before the fence and nothing after.
pub async fn hold_at_fence(
    source: &Database,
    target: &Database,
    schema: &str,
    subscription: &str,
    tables: &[QualifiedName],
    lock_timeout: Duration,
    deadline: Duration,
) -> Result<HeldAtFence, PgError> {
    let mut lock_conn = target
        .pool
        .acquire()
        .await
        .map_err(|e| target.error("holding the replication fence", e))?
        .detach();
    sqlx::query("select pg_advisory_lock($1)")
        .bind(FENCE_LOCK_KEY)
        .execute(&mut lock_conn)
        .await
        .map_err(|e| target.error("holding the replication fence", e))?;
    let result = async {
        let context = "taking a fence on the source";
        let mut fence_conn = source
            .pool
            .acquire()
            .await
            .map_err(|e| source.error(context, e))?;
        let mut snapshot_conn = source
            .pool
            .acquire()
            .await
            .map_err(|e| source.error(context, e))?
            .detach();
        let mut tx = fence_conn
            .begin()
            .await
            .map_err(|e| source.error(context, e))?;
        let held = Instant::now();
        if !tables.is_empty() {
            super::freeze::lock_tables(&mut tx, tables, "share", lock_timeout)
                .await
                .map_err(|e| source.error("waiting for writers in flight before the fence", e))?;
        }
        let fence_id: i64 = sqlx::query_scalar(&format!(
            "insert into {} (pause) values (true) returning id",
            fence_table(schema)
        ))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| source.error(context, e))?;
        sqlx::raw_sql("begin isolation level repeatable read read only")
            .execute(&mut snapshot_conn)
            .await
            .map_err(|e| source.error(context, e))?;
        let snapshot_id: String = sqlx::query_scalar("select pg_export_snapshot()")
            .fetch_one(&mut snapshot_conn)
            .await
            .map_err(|e| source.error(context, e))?;
        tx.commit().await.map_err(|e| source.error(context, e))?;
        let writers_held = held.elapsed();
        // The apply worker reaches the fence and waits on our lock.
        let started = Instant::now();
        loop {
            let waiting: bool = sqlx::query_scalar(
                "select exists (
                   select 1 from pg_locks l
                     join pg_stat_subscription s on s.pid = l.pid
                    where s.subname = $1 and l.locktype = 'advisory' and not l.granted)",
            )
            .bind(subscription)
            .fetch_one(&target.pool)
            .await
            .map_err(|e| target.error("waiting for the fence on the target", e))?;
            if waiting {
                break;
            }
            if started.elapsed() > deadline {
                let _ = sqlx::raw_sql("rollback").execute(&mut snapshot_conn).await;
                return Err(PgError::Query {
                    context: "target database: waiting for the replication fence".into(),
                    message: format!(
                        "the target did not reach fence {fence_id} within {} s: replication is behind or stopped",
                        deadline.as_secs()
                    ), sqlstate: None });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok((snapshot_conn, snapshot_id, fence_id, writers_held))
    }
    .await;
    match result {
        Ok((snapshot_conn, snapshot_id, fence_id, writers_held)) => Ok(HeldAtFence {
            snapshot_conn,
            lock_conn,
            snapshot_id,
            fence_id,
            writers_held,
        }),
        Err(e) => {
            let _ = sqlx::query("select pg_advisory_unlock($1)")
                .bind(FENCE_LOCK_KEY)
                .execute(&mut lock_conn)
                .await;
            let _ = lock_conn.close().await;
            Err(e)
        }
    }
}

/// Tables by initial-sync state letter, for a progress line.
pub fn describe_pending(pending: &[(String, String)]) -> String {
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, s) in pending {
        let word = match s.as_str() {
            "i" => "waiting",
            "d" => "copying",
            "f" | "s" => "catching up",
            _ => "other",
        };
        *by_state.entry(word).or_default() += 1;
    }
    by_state
        .into_iter()
        .map(|(w, n)| format!("{n} {w}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_takes_the_source_url_and_quotes_values() {
        let info = publisher_conninfo(
            "postgresql://u:p@db.abc.supabase.co:6543/postgres?sslmode=require",
            None,
            Some(5432),
            "cutover_repl_x",
            "pw'q",
        )
        .unwrap();
        assert_eq!(
            info,
            "host='db.abc.supabase.co' port=5432 dbname='postgres' user='cutover_repl_x' password='pw\\'q' sslmode='require'"
        );
        let info = publisher_conninfo("postgres://h/db", Some("direct"), None, "r", "p").unwrap();
        assert!(
            info.starts_with("host='direct' port=5432 dbname='db'"),
            "{info}"
        );
        assert!(publisher_conninfo("not a url", None, None, "r", "p").is_err());
    }

    #[test]
    fn names_are_short_and_per_run() {
        let a = ReplicationNames::for_run(uuid::Uuid::new_v4());
        let b = ReplicationNames::for_run(uuid::Uuid::new_v4());
        assert_ne!(a, b);
        assert!(a.role.starts_with("cutover_repl_") && a.role.len() < 63);
        assert_eq!(new_password().len(), 32);
    }

    #[test]
    fn pending_tables_are_grouped() {
        let p = vec![
            ("a".to_string(), "d".to_string()),
            ("b".to_string(), "d".to_string()),
            ("c".to_string(), "i".to_string()),
        ];
        assert_eq!(describe_pending(&p), "2 copying, 1 waiting");
    }
}
