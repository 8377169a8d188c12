//! Who holds the locks cutover waits for: named in progress lines while a
//! copy stalls on one, and in the error when a `lock_timeout` gives up, so a
//! user can find the session (pid, application, since when, what it runs) and
//! end it, or wait for it.

use std::fmt;

use sqlx::Row;

use super::{Database, PgError};
use crate::manifest::QualifiedName;

/// A session holding a lock that another one needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    /// Its backend process id (`pg_terminate_backend(pid)` ends it).
    pub pid: i32,
    /// Its `application_name` (empty when it set none).
    pub application: String,
    /// `state` in `pg_stat_activity`, e.g. `idle in transaction`.
    pub state: String,
    /// When its transaction started.
    pub transaction_start: String,
    /// The first characters of its current or last query.
    pub query: String,
    /// The table it holds a lock on (empty when only its open transaction
    /// is known).
    pub relation: String,
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let holds = if self.relation.is_empty() {
            "has a transaction open".to_string()
        } else {
            format!("holds {}", self.relation)
        };
        write!(
            f,
            "process {} ({}) {holds} since {}, {}: {}",
            self.pid,
            if self.application.is_empty() {
                "no application name"
            } else {
                &self.application
            },
            self.transaction_start,
            self.state,
            self.query
        )
    }
}

/// Columns of a [`LockHolder`], from `pg_stat_activity` `a` and the lock's
/// relation `l.relation`.
const HOLDER_COLUMNS: &str = "a.pid, coalesce(a.application_name, ''), coalesce(a.state, ''),
    coalesce(to_char(a.xact_start at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS \"UTC\"'), 'unknown'),
    left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 80),
    coalesce((select n.nspname || '.' || c.relname from pg_class c
       join pg_namespace n on n.oid = c.relnamespace where c.oid = l.relation), '')";

impl Database {
    /// Other sessions holding a lock on one of `tables` (at most five, the
    /// longest-running transactions first). `with_readers`: include plain
    /// readers (ACCESS SHARE), which block DDL but not a write freeze.
    pub async fn lock_holders(
        &self,
        tables: &[QualifiedName],
        with_readers: bool,
    ) -> Vec<LockHolder> {
        let names: Vec<String> = tables.iter().map(QualifiedName::quoted).collect();
        let sql = format!(
            "select distinct {HOLDER_COLUMNS}
               from pg_locks l join pg_stat_activity a on a.pid = l.pid
              where l.granted and l.pid <> pg_backend_pid()
                and l.relation = any(select to_regclass(t) from unnest($1::text[]) t)
                and ($2 or l.mode <> 'AccessShareLock')
              order by 4, 1 limit 5"
        );
        self.holders(sqlx::query(&sql).bind(&names).bind(with_readers))
            .await
    }

    /// The sessions that block one of cutover's own (a copy waiting for a
    /// lock an application transaction holds).
    pub async fn blockers_of_cutover(&self) -> Vec<LockHolder> {
        let sql = format!(
            "select distinct {HOLDER_COLUMNS}
               from pg_stat_activity w
               cross join lateral unnest(pg_blocking_pids(w.pid)) as b(pid)
               join pg_stat_activity a on a.pid = b.pid
               join pg_locks l on l.pid = a.pid and l.granted and l.relation is not null
               join pg_locks wl on wl.pid = w.pid and not wl.granted and wl.relation = l.relation
              where w.application_name = 'cutover' and w.wait_event_type = 'Lock'
              order by 1"
        );
        self.holders(sqlx::query(&sql)).await
    }

    /// Runs a holders query; a failure to look is not the user's problem,
    /// so it yields nothing rather than an error.
    async fn holders(
        &self,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Vec<LockHolder> {
        let Ok(rows) = query.fetch_all(&self.pool).await else {
            return Vec::new();
        };
        rows.into_iter()
            .map(|r| LockHolder {
                pid: r.get(0),
                application: r.get(1),
                state: r.get(2),
                transaction_start: r.get(3),
                query: self.redactor.redact(&r.get::<String, _>(4)),
                relation: r.get(5),
            })
            .collect()
    }

    /// Other clients' transactions open on this database, the oldest first
    /// (at most five): after a lock timeout, the likely holders.
    pub async fn open_transactions(&self) -> Vec<LockHolder> {
        let sql = format!(
            "select {}
               from pg_stat_activity a left join lateral (select null::oid as relation) l on true
              where a.datname = current_database() and a.pid <> pg_backend_pid()
                and a.xact_start is not null
                and a.application_name is distinct from 'cutover'
              order by a.xact_start limit 5",
            HOLDER_COLUMNS
        );
        self.holders(sqlx::query(&sql)).await
    }

    /// `error` for `context`; when it is a lock timeout (SQLSTATE 55P03),
    /// the message names who holds a lock on `tables` and how to go on.
    pub async fn error_naming_lock_holders(
        &self,
        context: impl Into<String>,
        e: sqlx::Error,
        tables: &[QualifiedName],
    ) -> PgError {
        let mut error = self.error(context, e);
        if error.sqlstate() == Some("55P03") {
            let holders = self.lock_holders(tables, true).await;
            if let PgError::Query { message, .. } = &mut error {
                if !holders.is_empty() {
                    let named: Vec<String> = holders.iter().map(|h| h.to_string()).collect();
                    message.push_str(&format!(": {}", named.join("; ")));
                }
                message.push_str(
                    "; let that transaction finish (or end it with pg_terminate_backend(pid)), or raise [schema] lock_timeout_seconds, then re-run",
                );
            }
        }
        error
    }
}
