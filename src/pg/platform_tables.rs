//! The platform's own tables that hold rows on a database (what `data`
//! leaves out on purpose, so the summary can name each with the reason and
//! the way it moves instead) and the database features switched on outside
//! the migrations (extensions), which `validate` compares.

use sqlx::Row;

use super::{Database, PgError};
use crate::manifest::{QualifiedName, quote_ident};

/// The schemas whose tables are the platform's (Auth, Storage, Vault,
/// Realtime, pg_cron, pg_net, webhooks, migration history).
pub const PLATFORM_DATA_SCHEMAS: &[&str] = &[
    "auth",
    "storage",
    "vault",
    "pgsodium",
    "realtime",
    "cron",
    "net",
    "supabase_functions",
    "supabase_migrations",
];

impl Database {
    /// Tables of [`PLATFORM_DATA_SCHEMAS`] that hold at least one row, in
    /// name order (an `exists` probe per table: no full count).
    pub async fn platform_tables_with_rows(&self) -> Result<Vec<QualifiedName>, PgError> {
        let schemas: Vec<String> = PLATFORM_DATA_SCHEMAS
            .iter()
            .map(|s| s.to_string())
            .collect();
        let tables: Vec<(String, String)> = sqlx::query(
            "select n.nspname::text, c.relname::text
               from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where c.relkind in ('r', 'p') and not c.relispartition
                and n.nspname = any($1)
                and has_table_privilege(c.oid, 'SELECT')
              order by 1, 2",
        )
        .bind(&schemas)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.error("listing the platform's tables", e))?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
        let mut with_rows = Vec::new();
        for (schema, name) in tables {
            let sql = format!(
                "select exists (select 1 from {}.{})",
                quote_ident(&schema),
                quote_ident(&name)
            );
            // A table the role may list but not read is left out silently.
            if let Ok(true) = sqlx::query_scalar::<_, bool>(&sql)
                .fetch_one(&self.pool)
                .await
            {
                with_rows.push(QualifiedName { schema, name });
            }
        }
        Ok(with_rows)
    }
}

impl Database {
    /// The installed extensions as `name version`, sorted (PL/pgSQL left
    /// out: every database has it).
    pub async fn extensions(&self) -> Result<Vec<String>, PgError> {
        sqlx::query_scalar(
            "select extname::text from pg_extension where extname <> 'plpgsql' order by 1",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.error("listing extensions", e))
    }
}

impl Database {
    /// `pg_database_size` of the connected database, in bytes.
    pub async fn database_size(&self) -> Result<i64, PgError> {
        sqlx::query_scalar("select pg_database_size(current_database())")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.error("reading the database size", e))
    }
}
