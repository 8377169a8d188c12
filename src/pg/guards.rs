//! Guards: the switches that keep two environments from acting at once.
//!
//! A guard is either a row of the `[config]` table (e.g. `whatsapp_enabled`)
//! or a pg_cron job (`cron.job.active`). `cutover` turns the source's guards
//! off before the target goes live and the target's on after; `rollback`
//! does the reverse. The state each guard had before cutover touched it is
//! saved in the ledger table `<ledger>.guard_states`, so `rollback` restores
//! exactly what was there, and a re-run of `cutover` keeps the first saved
//! state rather than the one it left behind itself.
//!
//! A third kind, the cron hold ([`GuardKind::CronHold`], see [`super::cron`]),
//! is a pg_cron job of the target that `schema` (or `rollback`) paused
//! because the target is not live yet; `cutover` resumes it together with the
//! target's guards. Holds are not part of [`GuardLedger::open_states`], which
//! is the state `cutover` saved for `rollback`.

use sqlx::Row;
use uuid::Uuid;

use super::{Database, PgError, Side};
use crate::manifest::{QualifiedName, quote_ident};

/// What kind of guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardKind {
    /// A key of the `[config]` table.
    Switch,
    /// A pg_cron job, by name.
    Cron,
    /// A pg_cron job of the target held paused until `cutover`, by name
    /// (`#<jobid>` for an unnamed job).
    CronHold,
}

impl GuardKind {
    /// `switch`, `cron` or `cron-hold`, as stored in the ledger.
    pub fn word(self) -> &'static str {
        match self {
            GuardKind::Switch => "switch",
            GuardKind::Cron => "cron",
            GuardKind::CronHold => "cron-hold",
        }
    }

    fn parse(word: &str) -> GuardKind {
        match word {
            "cron" => GuardKind::Cron,
            "cron-hold" => GuardKind::CronHold,
            _ => GuardKind::Switch,
        }
    }

    /// Whether the guard is a pg_cron job (its value `true`/`false`).
    pub fn is_cron(self) -> bool {
        matches!(self, GuardKind::Cron | GuardKind::CronHold)
    }
}

/// One guard's value: the config value as text, or `true`/`false` for a
/// cron job's `active`; `None` when the key or job does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardValue {
    /// Switch or cron job.
    pub kind: GuardKind,
    /// Config key or job name.
    pub name: String,
    /// Current value, `None` when absent.
    pub value: Option<String>,
}

/// Where the `[config]` switches live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchTable {
    /// The table.
    pub table: QualifiedName,
    /// Its key column.
    pub key_column: String,
    /// Its value column.
    pub value_column: String,
}

impl Database {
    /// Whether pg_cron's `cron.job` table exists here.
    pub async fn has_pg_cron(&self) -> Result<bool, PgError> {
        sqlx::query_scalar("select to_regclass('cron.job') is not null")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.error("looking for pg_cron", e))
    }

    /// Reads the named switches and cron jobs. Without pg_cron every job reads
    /// as absent; without the config table every switch does.
    pub async fn read_guards(
        &self,
        table: Option<&SwitchTable>,
        switches: &[String],
        cron_jobs: &[String],
    ) -> Result<Vec<GuardValue>, PgError> {
        let mut out = Vec::new();
        if !switches.is_empty() {
            let values = match table {
                Some(t) => self
                    .config_values(&t.table, &t.key_column, &t.value_column)
                    .await?
                    .unwrap_or_default(),
                None => Default::default(),
            };
            for key in switches {
                out.push(GuardValue {
                    kind: GuardKind::Switch,
                    name: key.clone(),
                    value: values.get(key).map(|v| v.clone().unwrap_or_default()),
                });
            }
        }
        if !cron_jobs.is_empty() {
            let jobs = self.cron_jobs().await?.unwrap_or_default();
            for job in cron_jobs {
                out.push(GuardValue {
                    kind: GuardKind::Cron,
                    name: job.clone(),
                    value: jobs.get(job).map(|a| a.to_string()),
                });
            }
        }
        Ok(out)
    }

    /// Sets one switch. The text is cast to the value column's own type, so a
    /// boolean or jsonb column takes `false` as well as a text column does.
    /// Returns whether the key existed.
    pub async fn set_switch(
        &self,
        table: &SwitchTable,
        key: &str,
        value: &str,
    ) -> Result<bool, PgError> {
        let column_type: Option<String> = sqlx::query_scalar(
            "select format_type(atttypid, atttypmod) from pg_attribute
              where attrelid = to_regclass($1) and attname = $2 and not attisdropped",
        )
        .bind(table.table.quoted())
        .bind(&table.value_column)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.error(format!("reading the type of {}", table.table), e))?;
        let Some(column_type) = column_type else {
            return Err(PgError::Query {
                context: format!("{} database", self.side.name()),
                message: format!(
                    "{} has no column {:?}; check [config] table and value_column",
                    table.table, table.value_column
                ),
                sqlstate: None,
            });
        };
        // The type name comes from the catalog (format_type), not from input.
        let sql = format!(
            "update {t} set {v} = cast($2::text as {column_type}) where {k}::text = $1",
            t = table.table.quoted(),
            v = quote_ident(&table.value_column),
            k = quote_ident(&table.key_column),
        );
        // The switch's table may be frozen (a copied table, after the
        // switch-over): cutover's own guard write passes the freeze.
        let context = format!("setting {key} in {}", table.table);
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| self.error(&context, e))?;
        sqlx::query("select set_config($1, 'on', true)")
            .bind(super::freeze::FREEZE_BYPASS_SETTING)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.error(&context, e))?;
        let done = sqlx::query(&sql)
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.error(&context, e))?;
        tx.commit().await.map_err(|e| self.error(&context, e))?;
        Ok(done.rows_affected() > 0)
    }

    /// Pauses or resumes a pg_cron job by name. Uses `cron.alter_job` when the
    /// installed pg_cron has it (direct updates of `cron.job` need more
    /// privileges on hosted Postgres), else updates `cron.job`. Returns
    /// whether the job exists; without pg_cron, `false`.
    pub async fn set_cron_active(&self, job: &str, active: bool) -> Result<bool, PgError> {
        if !self.has_pg_cron().await? {
            return Ok(false);
        }
        let has_alter: bool = sqlx::query_scalar(
            "select exists (select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                             where n.nspname = 'cron' and p.proname = 'alter_job')",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.error("looking for cron.alter_job", e))?;
        let sql = if has_alter {
            "select cron.alter_job(jobid, active := $2) from cron.job where jobname = $1"
        } else {
            "update cron.job set active = $2 where jobname = $1 returning jobid"
        };
        let rows = sqlx::query(sql)
            .bind(job)
            .bind(active)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(format!("setting pg_cron job {job} active = {active}"), e))?;
        Ok(!rows.is_empty())
    }

    /// Sets one guard to `value` (a switch value, or `true`/`false` for a job).
    pub async fn set_guard(
        &self,
        table: Option<&SwitchTable>,
        kind: GuardKind,
        name: &str,
        value: &str,
    ) -> Result<bool, PgError> {
        match (kind, table) {
            (GuardKind::Switch, Some(t)) => self.set_switch(t, name, value).await,
            (GuardKind::Switch, None) => Ok(false),
            (GuardKind::Cron, _) => self.set_cron_active(name, value == "true").await,
            (GuardKind::CronHold, _) => self.set_held_job_active(name, value == "true").await,
        }
    }
}

/// A guard state saved before cutover changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedGuard {
    /// Ledger row id.
    pub id: i64,
    /// The run that saved it.
    pub run_id: Uuid,
    /// Which database.
    pub side: Side,
    /// Switch or cron job.
    pub kind: GuardKind,
    /// Config key or job name.
    pub name: String,
    /// The value before cutover (`None`: absent then).
    pub previous: Option<String>,
    /// The value cutover set.
    pub applied: String,
}

/// The `guard_states` ledger table.
#[derive(Debug, Clone)]
pub struct GuardLedger {
    db: Database,
    table: String,
}

impl GuardLedger {
    /// The table in `schema` of the target database (it need not exist yet:
    /// [`GuardLedger::create`] makes it, reads of a missing table find nothing).
    pub fn new(target: &Database, schema: &str) -> GuardLedger {
        GuardLedger {
            db: target.clone(),
            table: format!("{}.guard_states", quote_ident(schema)),
        }
    }

    /// Creates the table. At most one open (unrestored) state per guard: the
    /// partial unique index is what keeps a re-run from overwriting it.
    pub async fn create(&self, schema: &str) -> Result<(), PgError> {
        let s = quote_ident(schema);
        let ddl = format!(
            "create table if not exists {t} (
                 id bigserial primary key,
                 run_id uuid not null references {s}.runs(id),
                 side text not null check (side in ('source', 'target')),
                 kind text not null check (kind in ('switch', 'cron', 'cron-hold')),
                 name text not null,
                 previous text,
                 applied text not null,
                 saved_at timestamptz not null default now(),
                 restored_at timestamptz,
                 restored_by uuid
             );
             create unique index if not exists guard_states_open
                 on {t} (side, kind, name) where restored_at is null;",
            t = self.table
        );
        super::ledger::create_ledger_objects(&self.db, &ddl, "the guard_states table").await
    }

    async fn exists(&self) -> Result<bool, PgError> {
        sqlx::query_scalar("select to_regclass($1) is not null")
            .bind(&self.table)
            .fetch_one(&self.db.pool)
            .await
            .map_err(|e| self.db.error("looking for the guard_states table", e))
    }

    /// Saves a guard's state before it is changed, unless an open state is
    /// already saved (a re-run keeps the state from before the first run).
    pub async fn save(
        &self,
        run_id: Uuid,
        side: Side,
        guard: &GuardValue,
        applied: &str,
    ) -> Result<(), PgError> {
        let sql = format!(
            "insert into {} (run_id, side, kind, name, previous, applied)
             values ($1, $2, $3, $4, $5, $6)
             on conflict (side, kind, name) where restored_at is null do nothing",
            self.table
        );
        sqlx::query(&sql)
            .bind(run_id)
            .bind(side.name())
            .bind(guard.kind.word())
            .bind(&guard.name)
            .bind(&guard.value)
            .bind(applied)
            .execute(&self.db.pool)
            .await
            .map_err(|e| self.db.error("saving a guard's state in the ledger", e))?;
        Ok(())
    }

    /// The table's qualified name, for the cron holds' own statements.
    pub(crate) fn table(&self) -> &str {
        &self.table
    }

    /// The open (not yet restored) states `cutover` saved, oldest first;
    /// cron holds are not among them (see [`GuardLedger::open_holds`]).
    pub async fn open_states(&self) -> Result<Vec<SavedGuard>, PgError> {
        self.open_where("kind <> 'cron-hold'").await
    }

    /// The open cron holds: jobs paused until `cutover`, oldest first.
    pub async fn open_holds(&self) -> Result<Vec<SavedGuard>, PgError> {
        self.open_where("kind = 'cron-hold'").await
    }

    async fn open_where(&self, kinds: &str) -> Result<Vec<SavedGuard>, PgError> {
        if !self.exists().await? {
            return Ok(Vec::new());
        }
        let sql = format!(
            "select id, run_id, side, kind, name, previous, applied from {}
              where restored_at is null and {kinds} order by id",
            self.table
        );
        let rows = sqlx::query(&sql)
            .fetch_all(&self.db.pool)
            .await
            .map_err(|e| self.db.error("reading saved guard states", e))?;
        Ok(rows
            .into_iter()
            .map(|r| SavedGuard {
                id: r.get(0),
                run_id: r.get(1),
                side: if r.get::<String, _>(2) == "source" {
                    Side::Source
                } else {
                    Side::Target
                },
                kind: GuardKind::parse(&r.get::<String, _>(3)),
                name: r.get(4),
                previous: r.get(5),
                applied: r.get(6),
            })
            .collect())
    }

    /// Marks saved states as restored by `run_id`.
    pub async fn mark_restored(&self, ids: &[i64], run_id: Uuid) -> Result<(), PgError> {
        super::ledger::mark_rows_restored(&self.db, &self.table, ids, run_id, "guard states").await
    }

    /// When the last state was restored, and by which run, if any ever was.
    pub async fn last_restored(
        &self,
    ) -> Result<Option<(chrono::DateTime<chrono::Utc>, Option<Uuid>)>, PgError> {
        if !self.exists().await? {
            return Ok(None);
        }
        let sql = format!(
            "select restored_at, restored_by from {} where restored_at is not null
                and kind <> 'cron-hold'
              order by restored_at desc limit 1",
            self.table
        );
        let row = sqlx::query(&sql)
            .fetch_optional(&self.db.pool)
            .await
            .map_err(|e| self.db.error("reading restored guard states", e))?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }
}
