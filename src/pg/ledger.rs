//! The audit ledger: `runs`, `steps`, `migrations` and `snapshots` tables in
//! the target database (schema `cutover` unless the manifest names another),
//! plus the data phase's bookkeeping: `deferred_objects` (indexes and
//! constraints dropped for loading, until rebuilt) and `table_copies` (which
//! tables of an interrupted copy are finished); and the switch-over's:
//! `replications` (the objects a replicate-mode `data` created, at most one
//! active) and `freezes` (when the source was frozen, and lifted).
//!
//! The ledger is what makes re-runs resumable and what the cutover gate reads.
//! Details are JSON that has been through the redactor: no secret lands here.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::{Connection, Row};
use uuid::Uuid;

use super::{Database, PgError, Side};

/// The ledger's migrations, embedded in the binary.
static LEDGER_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("src/pg/ledger_migrations");
use crate::manifest::{QualifiedName, quote_ident};
use crate::redact::Redactor;

/// The ledger in one target database.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub(super) db: Database,
    schema: String,
    redactor: Redactor,
}

/// What is known about a run when it starts.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// Run id.
    pub id: Uuid,
    /// Phases asked for.
    pub phases: Vec<String>,
    /// Commit.
    pub git_sha: Option<String>,
    /// Who started it.
    pub actor: Option<String>,
    /// Link to the workflow run.
    pub run_url: Option<String>,
    /// `host:port/db` of the source.
    pub source: Option<String>,
    /// `host:port/db` of the target.
    pub target: Option<String>,
}

/// One recorded step.
#[derive(Debug, Clone)]
pub struct StepRecord<'a> {
    /// Phase name.
    pub phase: &'a str,
    /// Step name (a checklist id, or `phase`).
    pub step: &'a str,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// End time.
    pub finished_at: DateTime<Utc>,
    /// `pass`, `fail`, `success`, ...
    pub outcome: &'a str,
    /// Details (redacted before writing).
    pub detail: serde_json::Value,
}

impl Ledger {
    /// Creates the ledger, or upgrades it in place: the embedded migrations
    /// of `src/pg/ledger_migrations/` run through sqlx's migrator with the
    /// ledger's schema as search path (a 0.1 ledger, made before the history
    /// existed, takes the first one as a no-op). Concurrent runs serialise
    /// on an advisory lock.
    pub async fn open(db: &Database, schema: &str, redactor: &Redactor) -> Result<Ledger, PgError> {
        debug_assert_eq!(db.side, Side::Target);
        let s = quote_ident(schema);
        let mut conn = db
            .pool
            .acquire()
            .await
            .map_err(|e| db.error("opening the ledger", e))?
            .detach();
        // Two runs starting at once: one creates the schema, the other waits.
        // The migrator takes its own lock and keeps its history (checksums
        // included) in `<schema>._sqlx_migrations`.
        let setup = format!(
            "select pg_advisory_lock(hashtext('cutover.ledger'));
             create schema if not exists {s};
             set search_path to {s};"
        );
        sqlx::raw_sql(&setup)
            .execute(&mut conn)
            .await
            .map_err(|e| db.error(format!("creating the ledger schema {schema}"), e))?;
        let migrated = LEDGER_MIGRATIONS.run_direct(&mut conn).await;
        let _ = sqlx::raw_sql("select pg_advisory_unlock(hashtext('cutover.ledger'))")
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
        migrated.map_err(|e| PgError::Query {
            context: format!(
                "{} database: upgrading the ledger in schema {schema}",
                db.side.name()
            ),
            message: db.redactor.redact(&e.to_string()),
            sqlstate: None,
        })?;
        Ok(Ledger {
            db: db.clone(),
            schema: schema.to_string(),
            redactor: redactor.clone(),
        })
    }

    pub(super) fn table(&self, name: &str) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(name))
    }

    /// Records the start of a run.
    pub async fn start_run(&self, run: &RunRecord) -> Result<(), PgError> {
        let r = &self.redactor;
        let sql = format!(
            "insert into {} (id, phases, git_sha, actor, workflow_run_url, source, target)
             values ($1, $2, $3, $4, $5, $6, $7) on conflict (id) do nothing",
            self.table("runs")
        );
        sqlx::query(&sql)
            .bind(run.id)
            .bind(&run.phases)
            .bind(&run.git_sha)
            .bind(run.actor.as_deref().map(|a| r.redact(a)))
            .bind(&run.run_url)
            .bind(run.source.as_deref().map(|s| r.redact(s)))
            .bind(run.target.as_deref().map(|s| r.redact(s)))
            .execute(&self.db.pool)
            .await
            .map_err(|e| self.db.error("recording the run in the ledger", e))?;
        Ok(())
    }

    /// Records one step; the detail is redacted first.
    pub async fn record_step(&self, run_id: Uuid, step: &StepRecord<'_>) -> Result<(), PgError> {
        let detail: serde_json::Value =
            serde_json::from_str(&self.redactor.redact(&step.detail.to_string()))
                .unwrap_or(serde_json::Value::Null);
        let sql = format!(
            "insert into {} (run_id, phase, step, started_at, finished_at, outcome, detail)
             values ($1, $2, $3, $4, $5, $6, $7)",
            self.table("steps")
        );
        sqlx::query(&sql)
            .bind(run_id)
            .bind(step.phase)
            .bind(step.step)
            .bind(step.started_at)
            .bind(step.finished_at)
            .bind(step.outcome)
            .bind(detail)
            .execute(&self.db.pool)
            .await
            .map_err(|e| self.db.error("recording a step in the ledger", e))?;
        Ok(())
    }

    /// Records the end of a run.
    pub async fn finish_run(&self, run_id: Uuid, status: &str) -> Result<(), PgError> {
        let sql = format!(
            "update {} set finished_at = now(), status = $2 where id = $1",
            self.table("runs")
        );
        sqlx::query(&sql)
            .bind(run_id)
            .bind(status)
            .execute(&self.db.pool)
            .await
            .map_err(|e| self.db.error("closing the run in the ledger", e))?;
        Ok(())
    }

    /// Records row counts (and checksums, when known) of one side.
    pub async fn record_snapshot(
        &self,
        run_id: Uuid,
        side: Side,
        counts: &BTreeMap<QualifiedName, i64>,
        checksums: &BTreeMap<QualifiedName, String>,
    ) -> Result<(), PgError> {
        let names: Vec<String> = counts.keys().map(|t| t.to_string()).collect();
        let rows: Vec<i64> = counts.values().copied().collect();
        let sums: Vec<Option<String>> = counts.keys().map(|t| checksums.get(t).cloned()).collect();
        let sql = format!(
            "insert into {} (run_id, side, table_name, row_count, checksum)
             select $1, $2, t.name, t.n, t.sum
               from unnest($3::text[], $4::bigint[], $5::text[]) as t(name, n, sum)",
            self.table("snapshots")
        );
        sqlx::query(&sql)
            .bind(run_id)
            .bind(side.name())
            .bind(&names)
            .bind(&rows)
            .bind(&sums)
            .execute(&self.db.pool)
            .await
            .map_err(|e| self.db.error("recording row counts in the ledger", e))?;
        Ok(())
    }

    /// The outcomes recorded for a run, as (phase, step, outcome), in order.
    pub async fn steps_of(&self, run_id: Uuid) -> Result<Vec<(String, String, String)>, PgError> {
        let sql = format!(
            "select phase, step, outcome from {} where run_id = $1 order by id",
            self.table("steps")
        );
        let rows = sqlx::query(&sql)
            .bind(run_id)
            .fetch_all(&self.db.pool)
            .await
            .map_err(|e| self.db.error("reading the ledger", e))?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }
}

/// One backup file, as `backup` records it in `<ledger>.backups`.
#[derive(Debug, Clone)]
pub struct BackupRecord {
    /// `source` or `target`.
    pub side: Side,
    /// `dump` (pg_dump -Fc) or `csv` (a config table export).
    pub kind: &'static str,
    /// Path relative to the workspace, as in the `backup-path` output.
    pub path: String,
    /// The file name alone (what a restore looks the record up by).
    pub file_name: String,
    /// sha-256 of the file as written, hex.
    pub sha256: String,
    /// Size on disk.
    pub bytes: i64,
    /// Encrypted with age.
    pub encrypted: bool,
    /// How long writing it took, in milliseconds.
    pub duration_ms: i64,
    /// Row counts taken in the dump's snapshot (`{"public.t": 12}`).
    pub row_counts: serde_json::Value,
}

impl Ledger {
    /// Records backup files in `<ledger>.backups` (created on first use, so
    /// ledgers from before `backup` existed gain it without a migration).
    pub async fn record_backups(
        &self,
        run_id: Uuid,
        records: &[BackupRecord],
    ) -> Result<(), PgError> {
        let t = self.table("backups");
        let runs = self.table("runs");
        let ddl = format!(
            "create table if not exists {t} (
                 id bigserial primary key,
                 run_id uuid not null references {runs}(id),
                 side text not null check (side in ('source', 'target')),
                 kind text not null,
                 path text not null,
                 file_name text not null,
                 sha256 text not null,
                 bytes bigint not null,
                 encrypted boolean not null,
                 duration_ms bigint not null,
                 row_counts jsonb not null default '{{}}',
                 created_at timestamptz not null default now()
             );
             create index if not exists backups_file_idx on {t} (file_name);"
        );
        let mut tx = self
            .db
            .pool
            .begin()
            .await
            .map_err(|e| self.db.error("recording backups in the ledger", e))?;
        sqlx::query("select pg_advisory_xact_lock(hashtext('cutover.ledger'))")
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db.error("locking the ledger", e))?;
        sqlx::raw_sql(&ddl)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db.error("creating the ledger's backups table", e))?;
        let sql = format!(
            "insert into {t} (run_id, side, kind, path, file_name, sha256, bytes, encrypted, duration_ms, row_counts)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        );
        for r in records {
            sqlx::query(&sql)
                .bind(run_id)
                .bind(r.side.name())
                .bind(r.kind)
                .bind(self.redactor.redact(&r.path))
                .bind(self.redactor.redact(&r.file_name))
                .bind(&r.sha256)
                .bind(r.bytes)
                .bind(r.encrypted)
                .bind(r.duration_ms)
                .bind(&r.row_counts)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db.error("recording a backup in the ledger", e))?;
        }
        tx.commit()
            .await
            .map_err(|e| self.db.error("recording backups in the ledger", e))?;
        Ok(())
    }

    /// The newest recorded (sha-256, row counts) of a backup file by its file
    /// name and, when several runs wrote that name, its run folder path; `None`
    /// when the ledger has no record of it.
    pub async fn recorded_backup(
        &self,
        file_name: &str,
        path_suffix: &str,
    ) -> Result<Option<(String, serde_json::Value)>, PgError> {
        let exists: bool = sqlx::query_scalar("select to_regclass($1) is not null")
            .bind(self.table("backups"))
            .fetch_one(&self.db.pool)
            .await
            .map_err(|e| self.db.error("reading the ledger's backups", e))?;
        if !exists {
            return Ok(None);
        }
        let sql = format!(
            "select sha256, row_counts from {} where file_name = $1
              order by (right($2, length(path)) = path) desc, created_at desc, id desc limit 1",
            self.table("backups")
        );
        let row = sqlx::query(&sql)
            .bind(file_name)
            .bind(path_suffix)
            .fetch_optional(&self.db.pool)
            .await
            .map_err(|e| self.db.error("reading the ledger's backups", e))?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }
}

/// Marks rows of a ledger table with saved states (`guard_states`,
/// `frontend_states`) as restored by `run_id`.
pub(crate) async fn mark_rows_restored(
    db: &Database,
    table: &str,
    ids: &[i64],
    run_id: Uuid,
    what: &str,
) -> Result<(), PgError> {
    if ids.is_empty() {
        return Ok(());
    }
    let sql =
        format!("update {table} set restored_at = now(), restored_by = $2 where id = any($1)");
    sqlx::query(&sql)
        .bind(ids)
        .bind(run_id)
        .execute(&db.pool)
        .await
        .map_err(|e| db.error(format!("marking {what} restored"), e))?;
    Ok(())
}

/// Runs ledger DDL in one transaction under the ledger's advisory lock, as
/// [`Ledger::open`] does: `create ... if not exists` races with itself when
/// two runs start at once.
pub(crate) async fn create_ledger_objects(
    db: &Database,
    ddl: &str,
    what: &str,
) -> Result<(), PgError> {
    let mut tx = db
        .pool
        .begin()
        .await
        .map_err(|e| db.error(format!("creating {what}"), e))?;
    sqlx::query("select pg_advisory_xact_lock(hashtext('cutover.ledger'))")
        .execute(&mut *tx)
        .await
        .map_err(|e| db.error("locking the ledger", e))?;
    sqlx::raw_sql(ddl)
        .execute(&mut *tx)
        .await
        .map_err(|e| db.error(format!("creating {what}"), e))?;
    tx.commit()
        .await
        .map_err(|e| db.error(format!("creating {what}"), e))
}

/// A replication as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationRecord {
    /// Ledger row id.
    pub id: i64,
    /// The run that created it.
    pub run_id: Uuid,
    /// Subscription (and slot) name.
    pub subscription: String,
    /// Publication name.
    pub publication: String,
    /// Replication role name.
    pub role: String,
    /// `creating`, `syncing`, `streaming` or `retired`.
    pub state: String,
    /// The tables it carries.
    pub tables: Vec<String>,
}

/// A freeze of the source as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeRecord {
    /// Ledger row id.
    pub id: i64,
    /// The run that froze.
    pub run_id: Uuid,
    /// When.
    pub frozen_at: DateTime<Utc>,
    /// The tables frozen.
    pub tables: Vec<String>,
}

impl Ledger {
    /// Records a replication about to be created (state `creating`): written
    /// before the first object exists, so a cleanup always knows the names.
    /// Only the password's sha-256 is kept.
    pub async fn record_replication(
        &self,
        run_id: Uuid,
        names: &super::replication::ReplicationNames,
        password_sha256: &str,
        tables: &[String],
    ) -> Result<i64, PgError> {
        let sql = format!(
            "insert into {} (run_id, subscription, publication, role_name, password_sha256, tables, state)
             values ($1, $2, $3, $4, $5, $6, 'creating') returning id",
            self.table("replications")
        );
        sqlx::query_scalar(&sql)
            .bind(run_id)
            .bind(&names.subscription)
            .bind(&names.publication)
            .bind(&names.role)
            .bind(password_sha256)
            .bind(tables)
            .fetch_one(&self.db.pool)
            .await
            .map_err(|e| self.db.error("recording the replication in the ledger", e))
    }

    /// The replication not retired yet, if any.
    pub async fn active_replication(&self) -> Result<Option<ReplicationRecord>, PgError> {
        active_replication(&self.db, &self.schema).await
    }

    /// Moves a replication to `state` (`retired` also stamps who and when),
    /// merging `detail` into what is recorded.
    pub async fn set_replication_state(
        &self,
        id: i64,
        run_id: Uuid,
        state: &str,
        detail: serde_json::Value,
    ) -> Result<(), PgError> {
        let detail: serde_json::Value =
            serde_json::from_str(&self.redactor.redact(&detail.to_string()))
                .unwrap_or(serde_json::Value::Null);
        let sql = format!(
            "update {} set state = $2, updated_at = now(), detail = detail || $3,
                    retired_at = case when $2 = 'retired' then now() end,
                    retired_by = case when $2 = 'retired' then $4 end
              where id = $1",
            self.table("replications")
        );
        sqlx::query(&sql)
            .bind(id)
            .bind(state)
            .bind(detail)
            .bind(run_id)
            .execute(&self.db.pool)
            .await
            .map_err(|e| self.db.error("updating the replication in the ledger", e))?;
        Ok(())
    }

    /// Records a freeze of the source.
    pub async fn record_freeze(
        &self,
        run_id: Uuid,
        tables: &[String],
        lock_wait_ms: i64,
        detail: serde_json::Value,
    ) -> Result<(), PgError> {
        let sql = format!(
            "insert into {} (run_id, tables, lock_wait_ms, detail) values ($1, $2, $3, $4)",
            self.table("freezes")
        );
        sqlx::query(&sql)
            .bind(run_id)
            .bind(tables)
            .bind(lock_wait_ms)
            .bind(detail)
            .execute(&self.db.pool)
            .await
            .map_err(|e| self.db.error("recording the freeze in the ledger", e))?;
        Ok(())
    }

    /// Records on this run's freeze the time a point-in-time restore of the
    /// target would go back to (`detail.pitr_restore_to`).
    pub async fn record_restore_point(
        &self,
        run_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), PgError> {
        let sql = format!(
            "update {} set detail = detail || jsonb_build_object('pitr_restore_to', $2::text)
              where run_id = $1",
            self.table("freezes")
        );
        sqlx::query(&sql)
            .bind(run_id)
            .bind(at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
            .execute(&self.db.pool)
            .await
            .map_err(|e| {
                self.db
                    .error("recording the restore point in the ledger", e)
            })?;
        Ok(())
    }

    /// The newest restore point recorded at a freeze, with its run.
    pub async fn latest_restore_point(&self) -> Result<Option<(Uuid, String)>, PgError> {
        let sql = format!(
            "select run_id, detail->>'pitr_restore_to' from {}
              where detail ? 'pitr_restore_to' order by id desc limit 1",
            self.table("freezes")
        );
        let row = sqlx::query(&sql)
            .fetch_optional(&self.db.pool)
            .await
            .map_err(|e| {
                self.db
                    .error("reading the restore point from the ledger", e)
            })?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// Freezes not lifted yet, oldest first.
    pub async fn open_freezes(&self) -> Result<Vec<FreezeRecord>, PgError> {
        let sql = format!(
            "select id, run_id, frozen_at, tables from {} where lifted_at is null order by id",
            self.table("freezes")
        );
        let rows = sqlx::query(&sql)
            .fetch_all(&self.db.pool)
            .await
            .map_err(|e| self.db.error("reading freezes from the ledger", e))?;
        Ok(rows
            .into_iter()
            .map(|r| FreezeRecord {
                id: r.get(0),
                run_id: r.get(1),
                frozen_at: r.get(2),
                tables: r.get(3),
            })
            .collect())
    }

    /// Marks every open freeze lifted by `run_id`.
    pub async fn mark_freezes_lifted(&self, run_id: Uuid) -> Result<(), PgError> {
        let sql = format!(
            "update {} set lifted_at = now(), lifted_by = $1 where lifted_at is null",
            self.table("freezes")
        );
        sqlx::query(&sql)
            .bind(run_id)
            .execute(&self.db.pool)
            .await
            .map_err(|e| {
                self.db
                    .error("recording the lifted freeze in the ledger", e)
            })?;
        Ok(())
    }
}

/// The replication not retired yet in the ledger of `schema`, if any; reads
/// only, and finds nothing in a ledger older than the `replications` table.
pub async fn active_replication(
    db: &Database,
    schema: &str,
) -> Result<Option<ReplicationRecord>, PgError> {
    let table = format!("{}.replications", quote_ident(schema));
    let exists: bool = sqlx::query_scalar("select to_regclass($1) is not null")
        .bind(&table)
        .fetch_one(&db.pool)
        .await
        .map_err(|e| db.error("reading the replication from the ledger", e))?;
    if !exists {
        return Ok(None);
    }
    let sql = format!(
        "select id, run_id, subscription, publication, role_name, state, tables
           from {table} where retired_at is null order by id desc limit 1"
    );
    let row = sqlx::query(&sql)
        .fetch_optional(&db.pool)
        .await
        .map_err(|e| db.error("reading the replication from the ledger", e))?;
    Ok(row.map(|r| ReplicationRecord {
        id: r.get(0),
        run_id: r.get(1),
        subscription: r.get(2),
        publication: r.get(3),
        role: r.get(4),
        state: r.get(5),
        tables: r.get(6),
    }))
}
