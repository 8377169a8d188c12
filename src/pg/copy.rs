//! Row copying: one exported source snapshot, binary `COPY` streamed from
//! source to target with no files, secondary indexes and constraints deferred
//! and rebuilt, sequences carried over. The ledger remembers every dropped
//! object and every finished table, so an interrupted copy resumes and never
//! leaves a constraint missing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use sqlx::postgres::PgPool;
use sqlx::{Connection, Executor, PgConnection, Row};
use uuid::Uuid;

use super::{Database, PgError, describe_sqlx_error};
use crate::manifest::{MANAGED_SCHEMAS, QualifiedName, quote_ident};

/// Bytes gathered from the source before one write to the target: the source
/// sends one message per row, and a write per row would be slow.
const WRITE_BATCH: usize = 256 * 1024;

/// Memory each index build may use on the target.
const INDEX_BUILD_MEMORY: &str = "128MB";

/// What kind of object was deferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeferredKind {
    /// A plain (secondary) index.
    Index,
    /// A primary key, rebuilt as a unique index + `ADD CONSTRAINT ... USING INDEX`.
    PrimaryKey,
    /// A unique constraint, rebuilt the same way.
    Unique,
    /// A foreign key, added `NOT VALID` then validated.
    ForeignKey,
}

impl DeferredKind {
    /// The word stored in the ledger.
    pub fn word(self) -> &'static str {
        match self {
            DeferredKind::Index => "index",
            DeferredKind::PrimaryKey => "primary key",
            DeferredKind::Unique => "unique",
            DeferredKind::ForeignKey => "foreign key",
        }
    }

    fn from_word(word: &str) -> Option<DeferredKind> {
        Some(match word {
            "index" => DeferredKind::Index,
            "primary key" => DeferredKind::PrimaryKey,
            "unique" => DeferredKind::Unique,
            "foreign key" => DeferredKind::ForeignKey,
            _ => return None,
        })
    }
}

/// An index or constraint dropped before loading and rebuilt after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeferredObject {
    /// The table it belongs to (for FKs: the referencing table).
    pub table: QualifiedName,
    /// What it is.
    pub kind: DeferredKind,
    /// Its name (index or constraint name, unqualified).
    pub name: String,
    /// `CREATE [UNIQUE] INDEX ...` for indexes and keys; the constraint
    /// definition (`FOREIGN KEY (...) REFERENCES ...`) for foreign keys.
    pub definition: String,
    /// `DEFERRABLE INITIALLY DEFERRED` and the like, or empty.
    pub deferrable: String,
    /// The FK was validated before (a `NOT VALID` one stays so).
    pub validated: bool,
    /// Statements that put back the properties a drop loses, run once the
    /// object is back: its comment, `REPLICA IDENTITY USING INDEX`,
    /// `CLUSTER ON`.
    pub follow_up: Vec<String>,
    /// For a foreign key, the table it references.
    pub referenced: Option<QualifiedName>,
}

/// An index or constraint of a copied table that `data` leaves in place
/// (its table then loads with it: slower, never wrong), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptObject {
    /// The table it belongs to.
    pub table: QualifiedName,
    /// What it is.
    pub kind: DeferredKind,
    /// Its name.
    pub name: String,
    /// Why it cannot be dropped, e.g. `view public.order_totals depends on it`.
    pub reason: String,
    /// For a foreign key, the table it references.
    pub referenced: Option<QualifiedName>,
}

impl DeferralPlan {
    /// Tables that a kept foreign key from another table references: they
    /// cannot be truncated while that key is there.
    pub fn referenced_by_kept_keys(&self) -> BTreeSet<QualifiedName> {
        self.kept
            .iter()
            .filter_map(|k| k.referenced.clone().filter(|r| r != &k.table))
            .collect()
    }

    /// The tables referenced by a kept foreign key from a table outside
    /// `copied`: an `--overwrite` empties them with `DELETE` (so the key's
    /// `ON DELETE` rule applies to the rows outside the copy).
    pub fn referenced_from_outside(&self, copied: &[QualifiedName]) -> Vec<QualifiedName> {
        let mut out: Vec<QualifiedName> = self
            .kept
            .iter()
            .filter(|k| k.kind == DeferredKind::ForeignKey && !copied.contains(&k.table))
            .filter_map(|k| k.referenced.clone())
            .filter(|r| copied.contains(r))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// What `data` will drop before loading and what it must leave in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeferralPlan {
    /// Dropped before the load and rebuilt after.
    pub deferred: Vec<DeferredObject>,
    /// Left in place, with the reason.
    pub kept: Vec<KeptObject>,
}

/// A foreign key from a copied table to a table that is not copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingForeignKey {
    /// The copied, referencing table.
    pub table: QualifiedName,
    /// The constraint's name.
    pub name: String,
    /// The referenced table, not in the copy.
    pub referenced: QualifiedName,
}

impl DeferredObject {
    /// Identity of the object: table, kind and name.
    pub fn key(&self) -> (String, DeferredKind, String) {
        (self.table.to_string(), self.kind, self.name.clone())
    }

    fn drop_sql_if_exists(&self) -> String {
        match self.kind {
            DeferredKind::Index => format!(
                "drop index if exists {}.{}",
                quote_ident(&self.table.schema),
                quote_ident(&self.name)
            ),
            _ => format!(
                "alter table {} drop constraint if exists {}",
                self.table.quoted(),
                quote_ident(&self.name)
            ),
        }
    }

    fn drop_sql(&self) -> String {
        match self.kind {
            DeferredKind::Index => format!(
                "drop index {}.{}",
                quote_ident(&self.table.schema),
                quote_ident(&self.name)
            ),
            _ => format!(
                "alter table {} drop constraint {}",
                self.table.quoted(),
                quote_ident(&self.name)
            ),
        }
    }
}

/// One table to copy.
#[derive(Debug, Clone)]
pub struct CopyJob {
    /// The table.
    pub table: QualifiedName,
    /// Columns copied (generated columns left out), in source order.
    pub columns: Vec<String>,
    /// A partitioned parent: copied through `COPY (SELECT ...)`, without FREEZE.
    pub partitioned: bool,
    /// Bytes on disk at the source, for progress and largest-first ordering.
    pub source_bytes: i64,
    /// A foreign key that stays in place (see [`DeferralPlan::kept`])
    /// references the table: `TRUNCATE` refuses it, so it is emptied with
    /// `DELETE` and loaded without `FREEZE`.
    pub emptied_by_delete: bool,
}

/// Live progress of one table copy.
#[derive(Debug, Default)]
pub struct CopyProgress {
    /// Bytes of COPY data moved so far.
    pub bytes: AtomicU64,
}

/// How a table copy ended.
#[derive(Debug, Clone)]
pub struct CopyResult {
    /// Rows written.
    pub rows: u64,
    /// Bytes of COPY data moved.
    pub bytes: u64,
    /// Time taken.
    pub duration: Duration,
}

/// A sequence's state on the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceValue {
    /// The sequence.
    pub name: QualifiedName,
    /// `last_value`.
    pub last_value: i64,
    /// `is_called`.
    pub is_called: bool,
}

/// A source transaction whose snapshot the copy workers share.
pub struct ExportedSnapshot {
    conn: PgConnection,
    /// The snapshot id from `pg_export_snapshot()`.
    pub id: String,
}

impl ExportedSnapshot {
    /// Ends the exporting transaction (after every worker has imported it).
    pub async fn close(mut self) {
        let _ = sqlx::raw_sql("rollback").execute(&mut self.conn).await;
        let _ = self.conn.close().await;
    }
}

impl Database {
    /// Columns a COPY moves: not dropped, not generated, in attnum order.
    pub async fn copy_columns(&self, table: &QualifiedName) -> Result<Vec<String>, PgError> {
        sqlx::query_scalar(
            "select attname::text from pg_attribute
              where attrelid = to_regclass($1) and attnum > 0 and not attisdropped and attgenerated = ''
              order by attnum",
        )
        .bind(table.quoted())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.error(format!("reading the columns of {table}"), e))
    }

    /// (relkind is partitioned, size in bytes) of a table.
    pub async fn table_shape(&self, table: &QualifiedName) -> Result<(bool, i64), PgError> {
        let row = sqlx::query(
            "select c.relkind = 'p', coalesce(pg_total_relation_size(c.oid), 0)::bigint
               from pg_class c where c.oid = to_regclass($1)",
        )
        .bind(table.quoted())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.error(format!("reading the size of {table}"), e))?;
        Ok((row.get(0), row.get(1)))
    }

    /// Which of `tables` hold at least one row.
    pub async fn non_empty_tables(
        &self,
        tables: &[QualifiedName],
    ) -> Result<Vec<QualifiedName>, PgError> {
        let mut out = Vec::new();
        for table in tables {
            let sql = format!("select exists (select 1 from {})", table.quoted());
            let has: bool = sqlx::query_scalar(&sql)
                .fetch_one(&self.pool)
                .await
                .map_err(|e| self.error(format!("checking whether {table} is empty"), e))?;
            if has {
                out.push(table.clone());
            }
        }
        Ok(out)
    }

    /// Opens a repeatable-read transaction on the source and exports its snapshot.
    pub async fn export_snapshot(&self) -> Result<ExportedSnapshot, PgError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| self.error("opening the snapshot connection", e))?
            .detach();
        sqlx::raw_sql("begin isolation level repeatable read read only")
            .execute(&mut conn)
            .await
            .map_err(|e| self.error("starting the snapshot", e))?;
        let id: String = sqlx::query_scalar("select pg_export_snapshot()")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| self.error("exporting the snapshot", e))?;
        Ok(ExportedSnapshot { conn, id })
    }

    /// Indexes, primary/unique keys of `tables`, and foreign keys from or to
    /// them, as this database's catalog has them now, split into those `data`
    /// may drop and rebuild and those it must leave in place:
    /// - anything on a table the connected role cannot alter (on Supabase,
    ///   `auth` and `storage` tables belong to their admin roles);
    /// - a key or index a view or a SQL function depends on (a view with
    ///   `GROUP BY <primary key>` relies on the key: PostgreSQL refuses to
    ///   drop it);
    /// - a key or unique index a kept foreign key references.
    ///
    /// Each deferred object carries the statements that restore what a drop
    /// loses (comments on indexes and constraints, replica identity,
    /// clustering).
    pub async fn deferral_plan(&self, tables: &[QualifiedName]) -> Result<DeferralPlan, PgError> {
        let names: Vec<String> = tables.iter().map(QualifiedName::quoted).collect();
        let rows = sqlx::query(DEFERRAL_SQL)
            .bind(&names)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error("reading indexes and constraints to defer", e))?;
        let mut plan = DeferralPlan::default();
        for r in rows {
            let Some(kind) = DeferredKind::from_word(r.get::<String, _>("kind").as_str()) else {
                continue;
            };
            let table = QualifiedName {
                schema: r.get("schema"),
                name: r.get("tbl"),
            };
            let name: String = r.get("name");
            let referenced = r
                .get::<Option<String>, _>("referenced")
                .and_then(|t| QualifiedName::parse(&t).ok());
            if let Some(reason) = r.get::<Option<String>, _>("keep_reason") {
                plan.kept.push(KeptObject {
                    table,
                    kind,
                    name,
                    reason,
                    referenced,
                });
                continue;
            }
            plan.deferred.push(DeferredObject {
                kind,
                table,
                name,
                definition: r.get("def"),
                deferrable: r.get("deferrable"),
                validated: r.get("validated"),
                follow_up: r.get("follow_up"),
                referenced,
            });
        }
        Ok(plan)
    }

    /// Foreign keys from `tables` to tables outside `tables` (e.g. to
    /// `auth.users` when auth is not copied): after the copy they hold only
    /// where the referenced rows already exist on the target.
    pub async fn outgoing_foreign_keys(
        &self,
        tables: &[QualifiedName],
    ) -> Result<Vec<OutgoingForeignKey>, PgError> {
        let names: Vec<String> = tables.iter().map(QualifiedName::quoted).collect();
        let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
            "with t as (select to_regclass(n) as oid from unnest($1::text[]) n)
             select n.nspname::text, c.relname::text, k.conname::text, rn.nspname::text, rc.relname::text
               from pg_constraint k
               join pg_class c on c.oid = k.conrelid join pg_namespace n on n.oid = c.relnamespace
               join pg_class rc on rc.oid = k.confrelid join pg_namespace rn on rn.oid = rc.relnamespace
              where k.contype = 'f' and k.conparentid = 0
                and k.conrelid in (select oid from t) and k.confrelid not in (select oid from t where oid is not null)
              order by 1, 2, 3",
        )
        .bind(&names)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.error("reading foreign keys to tables not copied", e))?;
        Ok(rows
            .into_iter()
            .map(|(s, t, name, rs, rt)| OutgoingForeignKey {
                table: QualifiedName { schema: s, name: t },
                name,
                referenced: QualifiedName {
                    schema: rs,
                    name: rt,
                },
            })
            .collect())
    }

    /// Sequences of the user schemas with their values (read on the source).
    pub async fn sequence_values(&self) -> Result<Vec<SequenceValue>, PgError> {
        let names: Vec<(String, String)> = sqlx::query_as(
            "select schemaname::text, sequencename::text from pg_sequences
              where schemaname <> all($1) order by 1, 2",
        )
        .bind(MANAGED_SCHEMAS)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.error("listing sequences", e))?;
        let mut out = Vec::new();
        for (schema, name) in names {
            let q = QualifiedName { schema, name };
            let row = sqlx::query(&format!("select last_value, is_called from {}", q.quoted()))
                .fetch_one(&self.pool)
                .await
                .map_err(|e| self.error(format!("reading sequence {q}"), e))?;
            out.push(SequenceValue {
                name: q,
                last_value: row.get(0),
                is_called: row.get(1),
            });
        }
        Ok(out)
    }

    /// `setval` on the target for each sequence that exists there; returns
    /// the ones set.
    pub async fn set_sequences(
        &self,
        values: &[SequenceValue],
    ) -> Result<Vec<QualifiedName>, PgError> {
        let mut set = Vec::new();
        for value in values {
            let exists: bool = sqlx::query_scalar("select to_regclass($1) is not null")
                .bind(value.name.quoted())
                .fetch_one(&self.pool)
                .await
                .map_err(|e| self.error("looking up a sequence", e))?;
            if !exists {
                continue;
            }
            sqlx::query("select setval($1::regclass, $2, $3)")
                .bind(value.name.quoted())
                .bind(value.last_value)
                .bind(value.is_called)
                .execute(&self.pool)
                .await
                .map_err(|e| self.error(format!("setting sequence {}", value.name), e))?;
            set.push(value.name.clone());
        }
        Ok(set)
    }

    /// Runs one DDL statement on its own connection (index builds, constraint
    /// validation), with more memory for sorting.
    pub async fn run_ddl(&self, sql: &str) -> Result<Duration, PgError> {
        let started = Instant::now();
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| self.error("opening a connection for a rebuild", e))?;
        sqlx::raw_sql(&format!(
            "set maintenance_work_mem = '{INDEX_BUILD_MEMORY}'; {sql}"
        ))
        .execute(&mut *conn)
        .await
        .map_err(|e| self.error(format!("running `{}`", shorten(sql)), e))?;
        Ok(started.elapsed())
    }
}

/// The ledger's copy bookkeeping: dropped objects and finished tables.
pub struct CopyLedger {
    db: Database,
    schema: String,
    /// How long dropping and emptying wait for a table's lock (`None`:
    /// the server's default, no limit).
    lock_timeout: Option<std::time::Duration>,
}

/// A table's copy state in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCopyState {
    /// `copying`, `done` or `complete`.
    pub status: String,
    /// Rows written when done.
    pub rows: i64,
}

impl CopyLedger {
    /// The bookkeeping tables in `schema` (created with the ledger).
    pub fn new(db: &Database, schema: &str) -> CopyLedger {
        CopyLedger {
            db: db.clone(),
            schema: schema.to_string(),
            lock_timeout: None,
        }
    }

    /// Bounds how long dropping indexes and emptying tables wait for a lock
    /// an application holds; on timeout the error names who holds it.
    pub fn with_lock_timeout(mut self, wait: std::time::Duration) -> CopyLedger {
        self.lock_timeout = Some(wait);
        self
    }

    /// `set local lock_timeout = ...;`, or nothing without a timeout.
    fn set_lock_timeout_sql(&self) -> String {
        self.lock_timeout
            .map(|w| format!("set local lock_timeout = '{}ms';", w.as_millis().max(1)))
            .unwrap_or_default()
    }

    fn t(&self, name: &str) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(name))
    }

    /// Objects dropped by an earlier, unfinished run (still to be rebuilt).
    pub async fn dropped_objects(&self) -> Result<Vec<DeferredObject>, PgError> {
        let sql = format!(
            "select table_name, kind, name, definition, deferral, validated, follow_up, referenced_table
               from {} where status = 'dropped' order by id",
            self.t("deferred_objects")
        );
        let rows = sqlx::query(&sql)
            .fetch_all(&self.db.pool)
            .await
            .map_err(|e| self.db.error("reading deferred objects from the ledger", e))?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(DeferredObject {
                    table: QualifiedName::parse(&r.get::<String, _>(0)).ok()?,
                    kind: DeferredKind::from_word(&r.get::<String, _>(1))?,
                    name: r.get(2),
                    definition: r.get(3),
                    deferrable: r.get(4),
                    validated: r.get(5),
                    follow_up: r.get(6),
                    referenced: r
                        .get::<Option<String>, _>(7)
                        .and_then(|t| QualifiedName::parse(&t).ok()),
                })
            })
            .collect())
    }

    /// Records and drops `objects` in one transaction: either they are all
    /// gone and remembered, or nothing changed. `recorded` are objects an
    /// earlier run already remembers (e.g. a foreign key it put back
    /// `NOT VALID` after a failure): they are dropped if present, not recorded again.
    pub async fn drop_objects(
        &self,
        objects: &[DeferredObject],
        recorded: &[DeferredObject],
        run_id: Uuid,
    ) -> Result<(), PgError> {
        if objects.is_empty() && recorded.is_empty() {
            return Ok(());
        }
        let mut tx = self
            .db
            .pool
            .begin()
            .await
            .map_err(|e| self.db.error("starting to drop indexes and constraints", e))?;
        sqlx::raw_sql(&self.set_lock_timeout_sql())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db.error("setting the lock timeout", e))?;
        let insert = format!(
            "insert into {} (table_name, kind, name, definition, deferral, validated, status, run_id,
                             follow_up, referenced_table)
             values ($1, $2, $3, $4, $5, $6, 'dropped', $7, $8, $9)",
            self.t("deferred_objects")
        );
        // Foreign keys first: keys they depend on cannot go before them.
        let mut ordered: Vec<(&DeferredObject, bool)> = objects
            .iter()
            .map(|o| (o, false))
            .chain(recorded.iter().map(|o| (o, true)))
            .collect();
        ordered.sort_by_key(|(o, _)| match o.kind {
            DeferredKind::ForeignKey => 0,
            DeferredKind::PrimaryKey | DeferredKind::Unique => 1,
            DeferredKind::Index => 2,
        });
        for (object, already_recorded) in ordered {
            if already_recorded {
                sqlx::raw_sql(&object.drop_sql_if_exists())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| {
                        self.db.error(
                            format!("dropping {} {}", object.kind.word(), object.name),
                            e,
                        )
                    })?;
                continue;
            }
            sqlx::query(&insert)
                .bind(object.table.to_string())
                .bind(object.kind.word())
                .bind(&object.name)
                .bind(&object.definition)
                .bind(&object.deferrable)
                .bind(object.validated)
                .bind(run_id)
                .bind(&object.follow_up)
                .bind(object.referenced.as_ref().map(|t| t.to_string()))
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db.error("recording a deferred object", e))?;
            if let Err(e) = sqlx::raw_sql(&object.drop_sql()).execute(&mut *tx).await {
                let context = format!(
                    "dropping {} {} on {} before loading",
                    object.kind.word(),
                    object.name,
                    object.table
                );
                let _ = tx.rollback().await;
                return Err(self
                    .db
                    .error_naming_lock_holders(context, e, std::slice::from_ref(&object.table))
                    .await);
            }
        }
        tx.commit()
            .await
            .map_err(|e| self.db.error("dropping indexes and constraints", e))?;
        Ok(())
    }

    /// Marks an object rebuilt.
    pub async fn mark_restored(&self, object: &DeferredObject) -> Result<(), PgError> {
        self.mark_back(object, "restored", "recording a rebuilt object")
            .await
    }

    /// Marks a foreign key finished but `NOT VALID`: it is back, the copy is
    /// complete, and rows reference rows the target does not have (a table
    /// that was not copied). Not owed: the next run does not resume for it.
    pub async fn mark_not_valid(&self, object: &DeferredObject) -> Result<(), PgError> {
        self.mark_back(
            object,
            "not valid",
            "recording a foreign key left not valid",
        )
        .await
    }

    /// Records a dropped object as back on the target, in `status`.
    async fn mark_back(
        &self,
        object: &DeferredObject,
        status: &str,
        context: &str,
    ) -> Result<(), PgError> {
        let sql = format!(
            "update {} set status = $4, restored_at = now()
              where status = 'dropped' and table_name = $1 and kind = $2 and name = $3",
            self.t("deferred_objects")
        );
        sqlx::query(&sql)
            .bind(object.table.to_string())
            .bind(object.kind.word())
            .bind(&object.name)
            .bind(status)
            .execute(&self.db.pool)
            .await
            .map_err(|e| self.db.error(context, e))?;
        Ok(())
    }

    /// Foreign keys an earlier copy left `NOT VALID` because the rows they
    /// reference were missing, as `(table, name)`: a later copy validates
    /// them again rather than keeping them `NOT VALID` for good.
    pub async fn left_not_valid(&self) -> Result<BTreeSet<(String, String)>, PgError> {
        let sql = format!(
            "select table_name, name from {} where status = 'not valid' and kind = 'foreign key'",
            self.t("deferred_objects")
        );
        let rows: Vec<(String, String)> = sqlx::query_as(&sql)
            .fetch_all(&self.db.pool)
            .await
            .map_err(|e| self.db.error("reading foreign keys left not valid", e))?;
        Ok(rows.into_iter().collect())
    }

    /// Copy states by table.
    pub async fn table_states(&self) -> Result<BTreeMap<String, TableCopyState>, PgError> {
        let sql = format!(
            "select table_name, status, rows from {}",
            self.t("table_copies")
        );
        let rows = sqlx::query(&sql)
            .fetch_all(&self.db.pool)
            .await
            .map_err(|e| {
                self.db
                    .error("reading table copy states from the ledger", e)
            })?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    r.get::<String, _>(0),
                    TableCopyState {
                        status: r.get(1),
                        rows: r.get(2),
                    },
                )
            })
            .collect())
    }

    /// Starts a fresh copy session: forgets finished sessions' states.
    pub async fn reset_states(&self) -> Result<(), PgError> {
        let sql = format!("delete from {}", self.t("table_copies"));
        sqlx::query(&sql)
            .execute(&self.db.pool)
            .await
            .map_err(|e| self.db.error("resetting table copy states", e))?;
        Ok(())
    }

    /// Marks every table of the session complete (the session is over).
    pub async fn complete_session(&self) -> Result<(), PgError> {
        let sql = format!("update {} set status = 'complete'", self.t("table_copies"));
        sqlx::query(&sql)
            .execute(&self.db.pool)
            .await
            .map_err(|e| self.db.error("closing the copy session", e))?;
        Ok(())
    }

    /// Empties `tables` in one transaction (for --overwrite): one `TRUNCATE`
    /// for all but `deleted`, which a foreign key from a table outside the
    /// copy references and are emptied with `DELETE` instead, with triggers
    /// on, so that key's `ON DELETE` rule (cascade, restrict) applies.
    pub async fn truncate(
        &self,
        tables: &[QualifiedName],
        deleted: &[QualifiedName],
    ) -> Result<(), PgError> {
        if tables.is_empty() {
            return Ok(());
        }
        let truncated: Vec<String> = tables
            .iter()
            .filter(|t| !deleted.contains(t))
            .map(QualifiedName::quoted)
            .collect();
        let mut sql = format!("begin; {}", self.set_lock_timeout_sql());
        if !truncated.is_empty() {
            sql.push_str(&format!(" truncate {};", truncated.join(", ")));
        }
        for table in tables.iter().filter(|t| deleted.contains(t)) {
            sql.push_str(&format!(" delete from {};", table.quoted()));
        }
        sql.push_str(" commit;");
        let mut conn = self
            .db
            .pool
            .acquire()
            .await
            .map_err(|e| self.db.error("emptying the target tables (--overwrite)", e))?;
        if let Err(e) = sqlx::raw_sql(&sql).execute(&mut *conn).await {
            let _ = sqlx::raw_sql("rollback").execute(&mut *conn).await;
            return Err(self
                .db
                .error_naming_lock_holders("emptying the target tables before loading", e, tables)
                .await);
        }
        Ok(())
    }

    /// Copies one table inside one target transaction: truncate, COPY FROM
    /// STDIN (FREEZE) fed by the source's COPY TO STDOUT in the shared
    /// snapshot, then mark it done. A failure or a kill rolls all of it back.
    pub async fn copy_table(
        &self,
        source: &PgPool,
        snapshot_id: &str,
        job: &CopyJob,
        run_id: Uuid,
        progress: Arc<CopyProgress>,
    ) -> Result<CopyResult, PgError> {
        let started = Instant::now();
        let statements = CopyStatements::of(job);
        let (reader, receiver) = spawn_reader(
            source.clone(),
            snapshot_id.to_string(),
            statements.copy_out.clone(),
            job.table.to_string(),
        );
        let mut conn = self
            .db
            .pool
            .acquire()
            .await
            .map_err(|e| self.db.error("opening a connection for the copy", e))?;
        // Triggers off (rows are copies, their side effects happened on the
        // source). No WAL flush wait at commit: a crash can only lose the
        // whole transaction, ledger row included, so the table is redone.
        sqlx::raw_sql(
            "begin; set local session_replication_role = replica; set local synchronous_commit = off",
        )
            .execute(&mut *conn)
            .await
            .map_err(|e| {
                self.db.error(
                    copying(job, "starting; the role must be allowed to set session_replication_role"),
                    e,
                )
            })?;
        let load = Load {
            job,
            run_id,
            statements: &statements,
            progress: &progress,
        };
        match self.load(&mut conn, &load, receiver).await {
            Ok((rows, bytes)) => {
                let _ = reader.await;
                Ok(CopyResult {
                    rows,
                    bytes,
                    duration: started.elapsed(),
                })
            }
            Err(e) => {
                reader.abort();
                // The connection may be mid-COPY: drop it rather than reuse it.
                let _ = conn.detach().close().await;
                Err(e)
            }
        }
    }

    /// Inside the open transaction: records the table as copying, empties
    /// it, streams the rows in, records it done and commits; rows and bytes.
    async fn load(
        &self,
        conn: &mut sqlx::PgConnection,
        load: &Load<'_>,
        mut receiver: RowBatches,
    ) -> Result<(u64, u64), PgError> {
        let job = load.job;
        let upsert = format!(
            "insert into {} (table_name, status, rows, run_id, started_at)
             values ($1, 'copying', 0, $2, now())
             on conflict (table_name) do update set status = 'copying', rows = 0, run_id = $2, started_at = now(), finished_at = null",
            self.t("table_copies")
        );
        let done = format!(
            "update {} set status = 'done', rows = $2, bytes = $3, finished_at = now() where table_name = $1",
            self.t("table_copies")
        );
        sqlx::query(&upsert)
            .bind(job.table.to_string())
            .bind(load.run_id)
            .execute(&mut *conn)
            .await
            .map_err(|e| self.db.error(copying(job, "ledger"), e))?;
        sqlx::raw_sql(&load.statements.empty)
            .execute(&mut *conn)
            .await
            .map_err(|e| self.db.error(copying(job, "emptying"), e))?;
        let mut writer = conn
            .copy_in_raw(&load.statements.copy_in)
            .await
            .map_err(|e| self.db.error(copying(job, "COPY FROM"), e))?;
        let mut bytes = 0u64;
        while let Some(batch) = receiver.recv().await {
            let data = match batch {
                Ok(data) => data,
                Err(message) => {
                    let _ = writer.abort("source failed").await;
                    return Err(PgError::Query {
                        context: format!("source database: {}", copying(job, "reading")),
                        message: self.db.redactor.redact(&message),
                        sqlstate: None,
                    });
                }
            };
            bytes += data.len() as u64;
            load.progress
                .bytes
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            if let Err(e) = writer.send(data).await {
                return Err(self.db.error(copying(job, "writing"), e));
            }
        }
        let rows = writer
            .finish()
            .await
            .map_err(|e| self.db.error(copying(job, "finishing COPY"), e))?;
        sqlx::query(&done)
            .bind(job.table.to_string())
            .bind(rows as i64)
            .bind(bytes as i64)
            .execute(&mut *conn)
            .await
            .map_err(|e| self.db.error(copying(job, "ledger"), e))?;
        sqlx::raw_sql("commit")
            .execute(&mut *conn)
            .await
            .map_err(|e| self.db.error(copying(job, "commit"), e))?;
        Ok((rows, bytes))
    }
}

/// What one table's load needs besides its connection.
struct Load<'a> {
    job: &'a CopyJob,
    run_id: Uuid,
    statements: &'a CopyStatements,
    progress: &'a CopyProgress,
}

/// Batches of a table's binary COPY stream, or why reading it failed.
type RowBatches = tokio::sync::mpsc::Receiver<Result<Vec<u8>, String>>;

/// `copying <table> (<what>)`: where a copy failed.
fn copying(job: &CopyJob, what: &str) -> String {
    format!("copying {} ({what})", job.table)
}

/// The statements that copy one table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CopyStatements {
    /// Run on the source: the table's rows as binary COPY.
    copy_out: String,
    /// Run on the target: loads them, frozen when the table was just emptied
    /// by `TRUNCATE` (a partitioned table or one emptied by `DELETE` cannot be).
    copy_in: String,
    /// Run on the target first: `TRUNCATE`, or `DELETE` when a kept key
    /// from outside the copy references the table.
    empty: String,
}

impl CopyStatements {
    fn of(job: &CopyJob) -> Self {
        let table = job.table.quoted();
        let cols = job
            .columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        // A partitioned table has no rows of its own to COPY TO.
        let copy_out = if job.partitioned {
            format!("copy (select {cols} from {table}) to stdout (format binary)")
        } else {
            format!("copy {table} ({cols}) to stdout (format binary)")
        };
        let freeze = if job.partitioned || job.emptied_by_delete {
            ""
        } else {
            ", freeze"
        };
        let empty = if job.emptied_by_delete {
            format!("delete from {table}")
        } else {
            format!("truncate {table}")
        };
        CopyStatements {
            copy_out,
            copy_in: format!("copy {table} ({cols}) from stdin (format binary{freeze})"),
            empty,
        }
    }
}

/// Reader: its own source connection in the shared snapshot, batching rows
/// into large writes, one channel slot ahead of the writer.
fn spawn_reader(
    source: PgPool,
    snapshot_id: String,
    copy_out: String,
    table_name: String,
) -> (tokio::task::JoinHandle<()>, RowBatches) {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, String>>(8);
    let reader = tokio::spawn(async move {
        if let Err(e) = read_table(source, snapshot_id, copy_out, sender.clone()).await {
            let _ = sender
                .send(Err(format!(
                    "reading {table_name} from the source: {}",
                    describe_sqlx_error(&e)
                )))
                .await;
        }
    });
    (reader, receiver)
}

/// Streams one table out of the source in the shared snapshot, batching rows
/// into large writes. A named function, not a closure, so the future is `Send`
/// for every lifetime sqlx's executor bounds ask about.
async fn read_table(
    source: PgPool,
    snapshot_id: String,
    copy_out: String,
    sender: tokio::sync::mpsc::Sender<Result<Vec<u8>, String>>,
) -> Result<(), sqlx::Error> {
    let mut conn = source.acquire().await?.detach();
    conn.execute("begin isolation level repeatable read read only")
        .await?;
    conn.execute(format!("set transaction snapshot '{snapshot_id}'").as_str())
        .await?;
    {
        let mut stream = conn.copy_out_raw(&copy_out).await?;
        let mut batch = Vec::with_capacity(WRITE_BATCH * 2);
        while let Some(chunk) = stream.try_next().await? {
            batch.extend_from_slice(&chunk);
            if batch.len() >= WRITE_BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(WRITE_BATCH * 2));
                if sender.send(Ok(full)).await.is_err() {
                    return Ok(());
                }
            }
        }
        if !batch.is_empty() {
            let _ = sender.send(Ok(batch)).await;
        }
    }
    conn.execute("rollback").await?;
    let _ = conn.close().await;
    Ok(())
}

/// The catalog query behind [`Database::deferral_plan`]. One row per index,
/// key and foreign key; `keep_reason` is set when it must stay in place.
/// Foreign keys are decided first (only ownership of the referencing table
/// matters to drop and re-add one), then keys and indexes, which must stay
/// when a kept foreign key, a view or a function depends on them.
const DEFERRAL_SQL: &str = r#"
with t as (select to_regclass(n) as oid from unnest($1::text[]) n),
fk as (
  select k.oid, k.conrelid, k.conindid, k.confrelid, k.conname,
         case when not pg_has_role(current_user, c.relowner, 'USAGE')
              then format('its table is owned by %s, which this role cannot alter',
                          pg_get_userbyid(c.relowner)) end as keep_reason
    from pg_constraint k join pg_class c on c.oid = k.conrelid
   where k.contype = 'f' and k.conparentid = 0
     and (k.conrelid in (select oid from t) or k.confrelid in (select oid from t))
),
idx as (
  select i.indexrelid, i.indrelid, ic.relname as idxname, i.indisreplident, i.indisclustered,
         k.oid as conoid, k.contype, k.conname, k.condeferrable, k.condeferred,
         c.relowner, n.nspname, c.relname
    from pg_index i
    join pg_class ic on ic.oid = i.indexrelid
    join pg_class c on c.oid = i.indrelid
    join pg_namespace n on n.oid = c.relnamespace
    left join pg_constraint k on k.conindid = i.indexrelid and k.conrelid = i.indrelid
                             and k.contype in ('p', 'u') and k.conparentid = 0
   where i.indrelid in (select oid from t)
     and not exists (select 1 from pg_inherits h where h.inhrelid = i.indexrelid)
     and not exists (select 1 from pg_constraint x where x.conindid = i.indexrelid
                       and x.conrelid = i.indrelid and x.contype not in ('p', 'u', 'f'))
     and (k.oid is not null or not exists (select 1 from pg_constraint x
                                            where x.conindid = i.indexrelid and x.contype in ('p', 'u')))
)
select 'foreign key' as kind, n.nspname::text as schema, c.relname::text as tbl,
       fk.conname::text as name, pg_get_constraintdef(fk.oid) as def,
       case when k.condeferrable then 'deferrable' || case when k.condeferred then ' initially deferred' else '' end else '' end as deferrable,
       k.convalidated as validated,
       array_remove(array[
         case when obj_description(fk.oid, 'pg_constraint') is not null
              then format('comment on constraint %I on %I.%I is %L', fk.conname, n.nspname, c.relname,
                          obj_description(fk.oid, 'pg_constraint')) end], null) as follow_up,
       format('%I.%I', rn.nspname, rc.relname) as referenced,
       fk.keep_reason
  from fk
  join pg_constraint k on k.oid = fk.oid
  join pg_class c on c.oid = fk.conrelid join pg_namespace n on n.oid = c.relnamespace
  join pg_class rc on rc.oid = fk.confrelid join pg_namespace rn on rn.oid = rc.relnamespace
union all
select case idx.contype when 'p' then 'primary key' when 'u' then 'unique' else 'index' end,
       idx.nspname::text, idx.relname::text,
       coalesce(idx.conname, idx.idxname)::text, pg_get_indexdef(idx.indexrelid),
       case when idx.condeferrable then 'deferrable' || case when idx.condeferred then ' initially deferred' else '' end else '' end,
       true,
       array_remove(array[
         case when obj_description(idx.indexrelid, 'pg_class') is not null
              then format('comment on index %I.%I is %L', idx.nspname, coalesce(idx.conname, idx.idxname),
                          obj_description(idx.indexrelid, 'pg_class')) end,
         case when idx.conoid is not null and obj_description(idx.conoid, 'pg_constraint') is not null
              then format('comment on constraint %I on %I.%I is %L', idx.conname, idx.nspname, idx.relname,
                          obj_description(idx.conoid, 'pg_constraint')) end,
         case when idx.indisreplident
              then format('alter table %I.%I replica identity using index %I', idx.nspname, idx.relname,
                          coalesce(idx.conname, idx.idxname)) end,
         case when idx.indisclustered
              then format('alter table %I.%I cluster on %I', idx.nspname, idx.relname,
                          coalesce(idx.conname, idx.idxname)) end], null),
       null,
       coalesce(
         case when not pg_has_role(current_user, idx.relowner, 'USAGE')
              then format('its table is owned by %s, which this role cannot alter',
                          pg_get_userbyid(idx.relowner)) end,
         (select case when d.classid = 'pg_rewrite'::regclass
                      then format('view %s depends on it',
                                  (select format('%I.%I', vn.nspname, v.relname)
                                     from pg_rewrite r join pg_class v on v.oid = r.ev_class
                                     join pg_namespace vn on vn.oid = v.relnamespace
                                    where r.oid = d.objid))
                      else format('function %s depends on it', d.objid::regprocedure::text) end
            from pg_depend d
           where d.classid in ('pg_rewrite'::regclass, 'pg_proc'::regclass)
             and ((d.refclassid = 'pg_constraint'::regclass and d.refobjid = idx.conoid)
                  or (d.refclassid = 'pg_class'::regclass and d.refobjid = idx.indexrelid))
           order by 1 limit 1),
         (select format('foreign key %s on %s references it and stays (%s)',
                        fk.conname, fk.conrelid::regclass::text, fk.keep_reason)
            from fk where fk.conindid = idx.indexrelid and fk.keep_reason is not null
           order by 1 limit 1))
  from idx
"#;

/// How an object is rebuilt, in three stages so parallel work never needs a
/// lock upgrade (two sessions each building an index on one table and then
/// asking for `ACCESS EXCLUSIVE` to attach it would deadlock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildSteps {
    /// Run in parallel with other builds: `CREATE [UNIQUE] INDEX`.
    pub build: Option<String>,
    /// Run one at a time, after every build: attach a key's index as its
    /// constraint, or add a foreign key `NOT VALID`.
    pub attach: Option<String>,
    /// Run in parallel after every attach: `VALIDATE CONSTRAINT`.
    pub validate: Option<String>,
}

/// The rebuild steps of an object.
pub fn rebuild_statements(object: &DeferredObject) -> RebuildSteps {
    let deferrable = if object.deferrable.is_empty() {
        String::new()
    } else {
        format!(" {}", object.deferrable)
    };
    match object.kind {
        DeferredKind::Index => RebuildSteps {
            build: Some(object.definition.clone()),
            attach: None,
            validate: None,
        },
        DeferredKind::PrimaryKey | DeferredKind::Unique => {
            let word = if object.kind == DeferredKind::PrimaryKey {
                "primary key"
            } else {
                "unique"
            };
            RebuildSteps {
                build: Some(object.definition.clone()),
                attach: Some(format!(
                    "alter table {} add constraint {} {word} using index {}{deferrable}",
                    object.table.quoted(),
                    quote_ident(&object.name),
                    quote_ident(&object.name)
                )),
                validate: None,
            }
        }
        DeferredKind::ForeignKey => {
            let def = object.definition.trim_end_matches(" NOT VALID");
            RebuildSteps {
                build: None,
                attach: Some(format!(
                    "alter table {} add constraint {} {def}{deferrable} not valid",
                    object.table.quoted(),
                    quote_ident(&object.name)
                )),
                validate: object.validated.then(|| {
                    format!(
                        "alter table {} validate constraint {}",
                        object.table.quoted(),
                        quote_ident(&object.name)
                    )
                }),
            }
        }
    }
}

fn shorten(sql: &str) -> String {
    let one_line = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 120 {
        format!("{}…", one_line.chars().take(120).collect::<String>())
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(kind: DeferredKind, def: &str) -> DeferredObject {
        DeferredObject {
            table: QualifiedName::parse("public.t").unwrap(),
            kind,
            name: "k".into(),
            definition: def.into(),
            deferrable: String::new(),
            validated: true,
            follow_up: Vec::new(),
            referenced: None,
        }
    }

    #[test]
    fn keys_are_rebuilt_through_their_index() {
        let steps = rebuild_statements(&object(
            DeferredKind::PrimaryKey,
            "CREATE UNIQUE INDEX k ON public.t USING btree (id)",
        ));
        assert_eq!(
            steps.build.as_deref(),
            Some("CREATE UNIQUE INDEX k ON public.t USING btree (id)")
        );
        assert_eq!(
            steps.attach.as_deref(),
            Some("alter table \"public\".\"t\" add constraint \"k\" primary key using index \"k\"")
        );
        assert!(steps.validate.is_none());
    }

    #[test]
    fn foreign_keys_are_added_not_valid_then_validated() {
        let steps = rebuild_statements(&object(
            DeferredKind::ForeignKey,
            "FOREIGN KEY (c) REFERENCES public.p(id) ON DELETE CASCADE",
        ));
        assert!(steps.build.is_none());
        assert!(
            steps
                .attach
                .unwrap()
                .ends_with("ON DELETE CASCADE not valid")
        );
        assert!(
            steps
                .validate
                .unwrap()
                .contains("validate constraint \"k\"")
        );
        let mut unvalidated = object(
            DeferredKind::ForeignKey,
            "FOREIGN KEY (c) REFERENCES p(id) NOT VALID",
        );
        unvalidated.validated = false;
        let steps = rebuild_statements(&unvalidated);
        assert!(
            steps
                .attach
                .unwrap()
                .ends_with("REFERENCES p(id) not valid")
        );
        assert!(steps.validate.is_none(), "a NOT VALID key stays so");
    }

    fn job(partitioned: bool, emptied_by_delete: bool) -> CopyJob {
        CopyJob {
            table: QualifiedName::parse("public.orders").unwrap(),
            columns: vec!["id".into(), "Total".into()],
            partitioned,
            source_bytes: 0,
            emptied_by_delete,
        }
    }

    #[test]
    fn a_plain_table_is_truncated_and_loaded_frozen() {
        let s = CopyStatements::of(&job(false, false));
        let table = QualifiedName::parse("public.orders").unwrap().quoted();
        let cols = format!("{}, {}", quote_ident("id"), quote_ident("Total"));
        assert_eq!(
            s.copy_out,
            format!("copy {table} ({cols}) to stdout (format binary)")
        );
        assert!(s.copy_in.ends_with("from stdin (format binary, freeze)"));
        assert!(s.empty.starts_with("truncate "));
    }

    #[test]
    fn partitioned_or_referenced_tables_are_not_frozen() {
        let partitioned = CopyStatements::of(&job(true, false));
        assert!(partitioned.copy_out.starts_with("copy (select "));
        assert!(partitioned.copy_in.ends_with("(format binary)"));
        let referenced = CopyStatements::of(&job(false, true));
        assert!(referenced.empty.starts_with("delete from "));
        assert!(referenced.copy_in.ends_with("(format binary)"));
    }
}
