//! Rows the migrations themselves wrote: tables that `schema` created on the
//! target and that its files filled (an `insert` of default settings, lookup
//! values). The source is the truth for data, so `data` replaces such rows
//! without `--overwrite`; any other row on the target is still refused.

use std::collections::BTreeMap;

use sqlx::Row;
use uuid::Uuid;

use super::ledger::Ledger;
use super::{Database, PgError};
use crate::manifest::{QualifiedName, quote_ident};

/// Schemas that hold no application table a migration could seed.
const SYSTEM_SCHEMAS: &str =
    "'pg_catalog', 'information_schema', 'pg_toast', 'supabase_migrations'";

impl Database {
    /// Every ordinary or partitioned table outside the system schemas and the
    /// ledger's, by name.
    pub async fn app_tables(&self, ledger_schema: &str) -> Result<Vec<QualifiedName>, PgError> {
        let sql = format!(
            "select n.nspname, c.relname
               from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where c.relkind in ('r', 'p') and not c.relispartition
                and n.nspname not in ({SYSTEM_SCHEMAS}, $1)
                and n.nspname not like 'pg\\_%'
              order by 1, 2"
        );
        let rows = sqlx::query(&sql)
            .bind(ledger_schema)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error("listing the target's tables", e))?;
        Ok(rows
            .into_iter()
            .map(|r| QualifiedName {
                schema: r.get(0),
                name: r.get(1),
            })
            .collect())
    }

    /// The tables the ledger of `ledger_schema` records as seeded by the
    /// migrations, with the row count they had then. Empty when there is no
    /// ledger (or one older than the record); reads only.
    pub async fn seeded_tables(
        &self,
        ledger_schema: &str,
    ) -> Result<BTreeMap<QualifiedName, i64>, PgError> {
        let table = format!("{}.seeded_tables", quote_ident(ledger_schema));
        let exists: bool = sqlx::query_scalar("select to_regclass($1) is not null")
            .bind(&table)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.error("reading the seeded tables from the ledger", e))?;
        if !exists {
            return Ok(BTreeMap::new());
        }
        let rows = sqlx::query(&format!("select table_name, row_count from {table}"))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error("reading the seeded tables from the ledger", e))?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let name: String = r.get(0);
                QualifiedName::parse(&name).ok().map(|q| (q, r.get(1)))
            })
            .collect())
    }
}

impl Ledger {
    /// Records tables this run's migrations created and filled, with their
    /// row counts.
    pub async fn record_seeded(
        &self,
        run_id: Uuid,
        seeded: &BTreeMap<QualifiedName, i64>,
    ) -> Result<(), PgError> {
        if seeded.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = seeded.keys().map(|t| t.to_string()).collect();
        let rows: Vec<i64> = seeded.values().copied().collect();
        let sql = format!(
            "insert into {} (table_name, row_count, run_id)
             select t.name, t.n, $3 from unnest($1::text[], $2::bigint[]) as t(name, n)
             on conflict (table_name) do update
                set row_count = excluded.row_count, run_id = excluded.run_id, recorded_at = now()",
            self.table("seeded_tables")
        );
        sqlx::query(&sql)
            .bind(&names)
            .bind(&rows)
            .bind(run_id)
            .execute(&self.db.pool)
            .await
            .map_err(|e| {
                self.db
                    .error("recording the seeded tables in the ledger", e)
            })?;
        Ok(())
    }

    /// Forgets the seeded record of `tables` once the source's rows replaced
    /// them: from then on their rows are data like any other.
    pub async fn forget_seeded(&self, tables: &[QualifiedName]) -> Result<(), PgError> {
        let names: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
        let sql = format!(
            "delete from {} where table_name = any($1)",
            self.table("seeded_tables")
        );
        sqlx::query(&sql)
            .bind(&names)
            .execute(&self.db.pool)
            .await
            .map_err(|e| self.db.error("updating the seeded tables in the ledger", e))?;
        Ok(())
    }
}
