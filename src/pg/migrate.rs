//! Applying migration files to the target, recorded as the Supabase CLI
//! records them, under an advisory lock so two runs never interleave.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Postgres, Row};
use uuid::Uuid;

use super::{Database, PgError, describe_sqlx_error};
use crate::manifest::quote_ident;
use crate::repo::migrations::MigrationFile;
use crate::repo::sql_split::Statement;

/// The advisory lock every writing phase of cutover takes on the target
/// ('cutover' in ASCII), so schema and data runs never interleave.
pub const RUN_LOCK_KEY: i64 = 0x0063_7574_6f76_6572;

/// The Supabase CLI's statements (pkg/migration/history.go), verbatim in effect:
/// `supabase migration list` and `db push` then read our rows as their own.
const CREATE_HISTORY: &str = "create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.schema_migrations (version text not null primary key);
alter table supabase_migrations.schema_migrations add column if not exists statements text[];
alter table supabase_migrations.schema_migrations add column if not exists name text;";

/// A connection holding the run lock on the target.
pub struct LockedSession {
    conn: PoolConnection<Postgres>,
    db: Database,
}

#[cfg(test)]
mod tests {
    #[test]
    fn transaction_control_is_recognised() {
        for s in [
            "begin",
            "BEGIN TRANSACTION",
            "commit",
            "End Work",
            "start transaction",
        ] {
            assert!(super::is_transaction_control(s), "{s}");
        }
        for s in [
            "begin atomic",
            "commit prepared 'x'",
            "create table begin_log (id int)",
            "rollback",
        ] {
            assert!(!super::is_transaction_control(s), "{s}");
        }
    }
}

/// Why a migration file failed, located in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyFailure {
    /// 1-based statement number within the file.
    pub statement: usize,
    /// 1-based line in the file.
    pub line: usize,
    /// PostgreSQL's message with detail, hint and SQLSTATE (redacted).
    pub message: String,
    /// Statements of the file that ran outside a transaction before the
    /// failure and stay applied (they cannot be rolled back).
    pub committed_outside_transaction: usize,
}

/// How a file was applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// Statements run.
    pub statements: usize,
    /// Statements that ran outside a transaction (e.g. CREATE INDEX CONCURRENTLY).
    pub outside_transaction: usize,
    /// Time taken.
    pub duration: Duration,
}

impl Database {
    /// Takes the run lock on a dedicated connection, waiting at most
    /// `wait`. When another run holds it, the error says who and since when.
    pub async fn lock_for_run(&self, wait: Duration) -> Result<LockedSession, PgError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| self.error("opening a connection for the run lock", e))?;
        sqlx::query(&format!(
            "set lock_timeout = '{}ms'",
            wait.as_millis().max(1)
        ))
        .execute(&mut *conn)
        .await
        .map_err(|e| self.error("setting the lock timeout", e))?;
        let locked = sqlx::query("select pg_advisory_lock($1)")
            .bind(RUN_LOCK_KEY)
            .execute(&mut *conn)
            .await;
        if let Err(e) = locked {
            let is_timeout =
                matches!(&e, sqlx::Error::Database(db) if db.code().as_deref() == Some("55P03"));
            if !is_timeout {
                return Err(self.error("taking the run lock", e));
            }
            let holder: Option<(i32, Option<String>, Option<String>)> = sqlx::query_as(
                "select a.pid, a.application_name::text, a.backend_start::text
                   from pg_locks l join pg_stat_activity a on a.pid = l.pid
                  where l.locktype = 'advisory' and l.granted
                    and l.classid = ($1 >> 32)::int::oid and l.objid = ($1 & 4294967295)::bigint::oid
                  limit 1",
            )
            .bind(RUN_LOCK_KEY)
            .fetch_optional(&mut *conn)
            .await
            .ok()
            .flatten();
            let who = holder.map_or("another session".to_string(), |(pid, app, since)| {
                format!(
                    "process {pid} ({}) since {}",
                    app.unwrap_or_default(),
                    since.unwrap_or_default()
                )
            });
            return Err(PgError::Query {
                context: format!(
                    "{} database: another cutover run holds the run lock",
                    self.side.name()
                ),
                message: format!(
                    "{who} has held it for more than {} s; wait for that run to finish (or stop it), then re-run — nothing was changed",
                    wait.as_secs()
                ),
                sqlstate: None,
            });
        }
        // The timeout stays on the session: a migration statement waiting
        // for a lock an application transaction holds gives up after the
        // same `wait` (and its error names the open transactions), rather
        // than hanging the run, and the file rolls back whole.
        Ok(LockedSession {
            conn,
            db: self.clone(),
        })
    }
}

/// `BEGIN`, `COMMIT`, `START TRANSACTION`, `END` with optional `WORK`/`TRANSACTION`.
fn is_transaction_control(statement: &str) -> bool {
    let words: Vec<String> = statement
        .split_whitespace()
        .map(|w| w.to_ascii_lowercase())
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    matches!(
        words.as_slice(),
        ["begin"]
            | ["begin", "work" | "transaction"]
            | ["start", "transaction"]
            | ["commit" | "end"]
            | ["commit" | "end", "work" | "transaction"]
    )
}

impl LockedSession {
    /// The locked connection, for callers that run their own statements.
    pub fn connection(&mut self) -> &mut sqlx::PgConnection {
        &mut self.conn
    }

    /// Creates `supabase_migrations.schema_migrations` as the CLI does.
    pub async fn ensure_history(&mut self) -> Result<(), PgError> {
        sqlx::raw_sql(CREATE_HISTORY)
            .execute(&mut *self.conn)
            .await
            .map_err(|e| {
                self.db
                    .error("creating supabase_migrations.schema_migrations", e)
            })?;
        Ok(())
    }

    /// Checksums recorded in the ledger's `migrations` table, by version.
    pub async fn ledger_checksums(
        &mut self,
        ledger_schema: &str,
    ) -> Result<BTreeMap<String, String>, PgError> {
        let sql = format!(
            "select version, checksum from {}.migrations",
            quote_ident(ledger_schema)
        );
        let rows = sqlx::query(&sql)
            .fetch_all(&mut *self.conn)
            .await
            .map_err(|e| {
                self.db
                    .error("reading migration checksums from the ledger", e)
            })?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Applies one file: its statements in order, in one transaction with the
    /// history row and the ledger row, so a failure leaves nothing of it.
    /// Statements that cannot run in a transaction run on their own, in
    /// order, between transactional batches.
    pub async fn apply(
        &mut self,
        file: &MigrationFile,
        statements: &[Statement],
        ledger: Option<(&str, Uuid)>,
    ) -> Result<Applied, ApplyFailure> {
        let started = Instant::now();
        let mut outside = 0;
        let mut in_transaction = false;
        for (i, statement) in statements.iter().enumerate() {
            // The file runs in our transaction already; its own BEGIN/COMMIT
            // would end ours early and leave the history row unprotected.
            if is_transaction_control(&statement.text) {
                continue;
            }
            if statement.needs_no_transaction {
                if in_transaction {
                    self.simple("commit")
                        .await
                        .map_err(|m| self.failure(i, statement, m, outside))?;
                    in_transaction = false;
                }
                self.simple(&statement.text)
                    .await
                    .map_err(|m| self.failure(i, statement, m, outside))?;
                outside += 1;
                continue;
            }
            if !in_transaction {
                self.simple("begin")
                    .await
                    .map_err(|m| self.failure(i, statement, m, outside))?;
                in_transaction = true;
            }
            if let Err((mut message, position)) = self.simple(&statement.text).await {
                let _ = self.simple("rollback").await;
                if message.contains("55P03") {
                    let open = self.db.open_transactions().await;
                    if !open.is_empty() {
                        let named: Vec<String> = open.iter().map(|h| h.to_string()).collect();
                        message.push_str(&format!("; open transactions: {}", named.join("; ")));
                    }
                    message.push_str("; let them finish (or end one with pg_terminate_backend(pid)), or raise [schema] lock_timeout_seconds, then re-run");
                }
                return Err(self.failure(i, statement, (message, position), outside));
            }
        }
        if !in_transaction {
            let none = Statement {
                text: String::new(),
                line: 1,
                index: statements.len(),
                needs_no_transaction: false,
            };
            self.simple("begin")
                .await
                .map_err(|m| self.failure(statements.len(), &none, m, outside))?;
        }
        let texts: Vec<&str> = statements.iter().map(|s| s.text.as_str()).collect();
        let record = async {
            // Reset the role and search_path a migration may have changed.
            sqlx::raw_sql("reset role; reset search_path")
                .execute(&mut *self.conn)
                .await?;
            sqlx::query(
                "insert into supabase_migrations.schema_migrations (version, name, statements) values ($1, $2, $3)",
            )
            .bind(&file.version)
            .bind(&file.name)
            .bind(&texts)
            .execute(&mut *self.conn)
            .await?;
            if let Some((schema, run_id)) = ledger {
                let sql = format!(
                    "insert into {}.migrations (version, name, checksum, run_id) values ($1, $2, $3, $4)
                     on conflict (version) do update set name = excluded.name, checksum = excluded.checksum,
                       applied_at = now(), run_id = excluded.run_id",
                    quote_ident(schema)
                );
                sqlx::query(&sql)
                    .bind(&file.version)
                    .bind(&file.name)
                    .bind(&file.checksum)
                    .bind(run_id)
                    .execute(&mut *self.conn)
                    .await?;
            }
            sqlx::raw_sql("commit").execute(&mut *self.conn).await?;
            Ok::<(), sqlx::Error>(())
        }
        .await;
        if let Err(e) = record {
            let _ = self.simple("rollback").await;
            return Err(ApplyFailure {
                statement: statements.len() + 1,
                line: 1,
                message: format!(
                    "recording the migration in supabase_migrations.schema_migrations failed: {}",
                    self.db.redactor.redact(&describe_sqlx_error(&e))
                ),
                committed_outside_transaction: outside,
            });
        }
        Ok(Applied {
            statements: statements.len(),
            outside_transaction: outside,
            duration: started.elapsed(),
        })
    }

    /// Records an already-applied migration's checksum in the ledger, for
    /// files applied by another tool before cutover tracked them.
    pub async fn adopt_checksum(
        &mut self,
        ledger_schema: &str,
        file: &MigrationFile,
        run_id: Uuid,
    ) -> Result<(), PgError> {
        let sql = format!(
            "insert into {}.migrations (version, name, checksum, run_id) values ($1, $2, $3, $4)
             on conflict (version) do nothing",
            quote_ident(ledger_schema)
        );
        sqlx::query(&sql)
            .bind(&file.version)
            .bind(&file.name)
            .bind(&file.checksum)
            .bind(run_id)
            .execute(&mut *self.conn)
            .await
            .map_err(|e| self.db.error("recording a checksum in the ledger", e))?;
        Ok(())
    }

    /// Releases the lock (closing the connection would too).
    pub async fn release(mut self) {
        let _ = sqlx::query("select pg_advisory_unlock($1)")
            .bind(RUN_LOCK_KEY)
            .execute(&mut *self.conn)
            .await;
    }

    async fn simple(&mut self, sql: &str) -> Result<(), (String, Option<usize>)> {
        match sqlx::raw_sql(sql).execute(&mut *self.conn).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let position = match &e {
                    sqlx::Error::Database(db) => db
                        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                        .and_then(|pg| match pg.position() {
                            Some(sqlx::postgres::PgErrorPosition::Original(p)) => Some(p),
                            _ => None,
                        }),
                    _ => None,
                };
                Err((self.db.redactor.redact(&describe_sqlx_error(&e)), position))
            }
        }
    }

    fn failure(
        &self,
        index: usize,
        statement: &Statement,
        (message, position): (String, Option<usize>),
        outside: usize,
    ) -> ApplyFailure {
        // PostgreSQL's position is a 1-based character offset in the statement.
        let extra_lines = position
            .map(|p| {
                statement
                    .text
                    .chars()
                    .take(p.saturating_sub(1))
                    .filter(|c| *c == '\n')
                    .count()
            })
            .unwrap_or(0);
        ApplyFailure {
            statement: index + 1,
            line: statement.line + extra_lines,
            message,
            committed_outside_transaction: outside,
        }
    }
}
