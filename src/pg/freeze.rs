//! The write freeze on the source: from the switch on, every write to a
//! copied table is refused with an error, whoever makes it.
//!
//! `default_transaction_read_only` is not enough (PostgREST opens
//! `BEGIN READ WRITE`), and revoking privileges misses owners, superusers and
//! SECURITY DEFINER functions. A trigger is what every writer meets: one
//! statement-level `BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE` trigger per
//! table, `ENABLE ALWAYS` so sessions with `session_replication_role =
//! replica` meet it too. It is installed in the transaction that holds
//! `LOCK TABLE ... IN EXCLUSIVE MODE` on every copied table: taking that lock
//! waits out the writers in flight, and a writer queued behind it reads the
//! new trigger once the lock is released, so from the freeze's commit on no
//! write can be acknowledged. Readers are never blocked.
//!
//! The trigger function lets a session through only when it set
//! `cutover.freeze_bypass = 'on'` itself: cutover's own guard switches (a row
//! of the `[config]` table) use it; an application never would.

use std::time::{Duration, Instant};

use sqlx::{Connection, Row};

use super::{Database, PgError};
use crate::manifest::{QualifiedName, quote_ident};

/// Name of the trigger installed on each frozen table.
pub const FREEZE_TRIGGER: &str = "cutover_write_freeze";

/// The session setting that lets cutover's own guard writes through.
pub const FREEZE_BYPASS_SETTING: &str = "cutover.freeze_bypass";

/// SQLSTATE of a refused write: `read_only_sql_transaction`, what clients
/// already treat as "this database does not take writes".
pub const REFUSED_SQLSTATE: &str = "25006";

/// What installing the freeze took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeOutcome {
    /// Tables frozen by this call (already frozen ones are not counted).
    pub newly_frozen: Vec<QualifiedName>,
    /// Tables that were frozen already (a freeze left by an earlier run).
    pub already_frozen: Vec<QualifiedName>,
    /// Time spent waiting for the lock (the in-flight writers).
    pub lock_wait: Duration,
    /// Time from the start to the commit.
    pub total: Duration,
}

impl Database {
    /// Freezes writes on `tables` (see the module docs). `schema` is where the
    /// refusing function lives (the ledger's schema name, created if absent);
    /// `lock_timeout` bounds the wait for writers in flight: on timeout
    /// nothing is changed and the error names the sessions that held the
    /// tables. `message` is appended to the refusal (where writes go now).
    pub async fn freeze_writes(
        &self,
        schema: &str,
        tables: &[QualifiedName],
        lock_timeout: Duration,
        message: &str,
    ) -> Result<FreezeOutcome, PgError> {
        let started = Instant::now();
        let s = quote_ident(schema);
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| self.error("opening a connection for the write freeze", e))?
            .detach();
        let mut tx = conn
            .begin()
            .await
            .map_err(|e| self.error("starting the write freeze", e))?;
        let function = format!(
            "create schema if not exists {s};
             create or replace function {s}.refuse_write() returns trigger
             language plpgsql as $fn$
             begin
               if coalesce(current_setting('{FREEZE_BYPASS_SETTING}', true), '') = 'on' then
                 return null;
               end if;
               raise exception using
                 errcode = '{REFUSED_SQLSTATE}',
                 message = format('cutover: %I.%I is frozen: this environment was switched over and takes no writes', tg_table_schema, tg_table_name),
                 hint = tg_argv[0];
             end
             $fn$;"
        );
        sqlx::raw_sql(&function)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.error("creating the write-freeze function", e))?;
        let frozen_before = frozen_tables_in(&mut *tx, self).await?;
        if tables.is_empty() {
            tx.commit()
                .await
                .map_err(|e| self.error("committing the write freeze", e))?;
            return Ok(FreezeOutcome {
                newly_frozen: Vec::new(),
                already_frozen: Vec::new(),
                lock_wait: Duration::ZERO,
                total: started.elapsed(),
            });
        }
        let mut sorted: Vec<&QualifiedName> = tables.iter().collect();
        sorted.sort();
        sorted.dedup();
        let lock_started = Instant::now();
        if let Err(e) = lock_tables(&mut tx, tables, "exclusive", lock_timeout).await {
            drop(tx);
            // Readers (ACCESS SHARE) do not conflict with the freeze's lock.
            let holders: Vec<String> = self
                .lock_holders(tables, false)
                .await
                .iter()
                .map(ToString::to_string)
                .collect();
            let mut err = self.error(
                format!(
                    "waiting {} s for writers in flight to finish before the freeze",
                    lock_timeout.as_secs_f64()
                ),
                e,
            );
            if let PgError::Query { message, .. } = &mut err {
                if !holders.is_empty() {
                    message.push_str(&format!("; holding the tables: {}", holders.join("; ")));
                }
            }
            return Err(err);
        }
        let lock_wait = lock_started.elapsed();
        let hint = message.replace('\'', "''");
        let mut newly = Vec::new();
        let mut already = Vec::new();
        for table in sorted {
            if frozen_before.contains(table) {
                already.push(table.clone());
                continue;
            }
            let sql = format!(
                "create trigger {FREEZE_TRIGGER}
                   before insert or update or delete or truncate on {t}
                   for each statement execute function {s}.refuse_write('{hint}');
                 alter table {t} enable always trigger {FREEZE_TRIGGER};",
                t = table.quoted()
            );
            sqlx::raw_sql(&sql)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.error(format!("freezing writes on {table}"), e))?;
            newly.push(table.clone());
        }
        tx.commit()
            .await
            .map_err(|e| self.error("committing the write freeze", e))?;
        let _ = conn.close().await;
        Ok(FreezeOutcome {
            newly_frozen: newly,
            already_frozen: already,
            lock_wait,
            total: started.elapsed(),
        })
    }

    /// Tables that carry the freeze trigger now.
    pub async fn frozen_tables(&self) -> Result<Vec<QualifiedName>, PgError> {
        frozen_tables_in(&self.pool, self).await
    }

    /// Lifts the freeze from every table that carries it, in one
    /// transaction. Returns the tables that were frozen.
    pub async fn lift_freeze(&self) -> Result<Vec<QualifiedName>, PgError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| self.error("lifting the write freeze", e))?;
        let frozen = frozen_tables_in(&mut *tx, self).await?;
        for table in &frozen {
            sqlx::raw_sql(&format!(
                "drop trigger if exists {FREEZE_TRIGGER} on {}",
                table.quoted()
            ))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.error(format!("lifting the write freeze on {table}"), e))?;
        }
        tx.commit()
            .await
            .map_err(|e| self.error("lifting the write freeze", e))?;
        Ok(frozen)
    }
}

async fn frozen_tables_in<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    db: &Database,
) -> Result<Vec<QualifiedName>, PgError> {
    let rows = sqlx::query(
        "select n.nspname::text, c.relname::text
           from pg_trigger t join pg_class c on c.oid = t.tgrelid
           join pg_namespace n on n.oid = c.relnamespace
          where t.tgname = $1 order by 1, 2",
    )
    .bind(FREEZE_TRIGGER)
    .fetch_all(executor)
    .await
    .map_err(|e| db.error("looking for frozen tables", e))?;
    Ok(qualified_names(rows))
}

/// `(schema, name)` rows as names.
pub(crate) fn qualified_names(rows: Vec<sqlx::postgres::PgRow>) -> Vec<QualifiedName> {
    rows.into_iter()
        .map(|r| QualifiedName {
            schema: r.get(0),
            name: r.get(1),
        })
        .collect()
}

/// Deadlocks a `LOCK TABLE` of several tables may meet before giving up.
const LOCK_ATTEMPTS: u32 = 5;

/// Locks `tables` in `mode` inside the open transaction, waiting at most
/// `timeout` (`SET LOCAL lock_timeout`), retrying when
/// PostgreSQL breaks a deadlock by cancelling it (SQLSTATE 40P01): an app
/// transaction that holds one of the tables and waits for another, in the
/// other order, is the usual cause, and it finishes while we step back.
/// Each attempt runs in a savepoint, so a cancelled one releases what it
/// had locked. Returns how many deadlocks were retried.
pub(crate) async fn lock_tables(
    conn: &mut sqlx::PgConnection,
    tables: &[QualifiedName],
    mode: &str,
    timeout: Duration,
) -> Result<u32, sqlx::Error> {
    let mut names: Vec<String> = tables.iter().map(QualifiedName::quoted).collect();
    names.sort();
    names.dedup();
    sqlx::raw_sql(&format!(
        "set local lock_timeout = '{}ms'",
        timeout.as_millis().max(1)
    ))
    .execute(&mut *conn)
    .await?;
    let sql = format!("lock table {} in {mode} mode", names.join(", "));
    let sql = sql.as_str();
    let mut retried = 0;
    loop {
        sqlx::raw_sql("savepoint cutover_lock")
            .execute(&mut *conn)
            .await?;
        match sqlx::raw_sql(sql).execute(&mut *conn).await {
            Ok(_) => {
                sqlx::raw_sql("release savepoint cutover_lock")
                    .execute(&mut *conn)
                    .await?;
                return Ok(retried);
            }
            Err(e)
                if retried + 1 < LOCK_ATTEMPTS
                    && e.as_database_error().and_then(|d| d.code()).as_deref() == Some("40P01") =>
            {
                sqlx::raw_sql("rollback to savepoint cutover_lock")
                    .execute(&mut *conn)
                    .await?;
                retried += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
