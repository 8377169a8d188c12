//! Database-stored configuration: a key/value table such as
//! `invoice_configurations (config_key, config_value)`.

use std::collections::BTreeMap;

use crate::manifest::{QualifiedName, quote_ident};

use super::{Database, PgError};

/// Where configuration rows live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigTable {
    /// The table.
    pub table: QualifiedName,
    /// Its key column.
    pub key_column: String,
    /// Its value column.
    pub value_column: String,
}

/// One key to write.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigWrite {
    /// The key.
    pub key: String,
    /// The new value.
    pub value: String,
    /// Insert a row (the key is not in the table) instead of updating.
    pub insert: bool,
}

impl std::fmt::Debug for ConfigWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may be secrets.
        f.debug_struct("ConfigWrite")
            .field("key", &self.key)
            .field("insert", &self.insert)
            .finish_non_exhaustive()
    }
}

impl ConfigTable {
    /// Key → value of every row; `None` when the table does not exist.
    pub async fn read(
        &self,
        db: &Database,
    ) -> Result<Option<BTreeMap<String, Option<String>>>, PgError> {
        db.config_values(&self.table, &self.key_column, &self.value_column)
            .await
    }

    /// The SQL type of the value column, for casting text into it.
    async fn value_type(&self, db: &Database) -> Result<String, PgError> {
        let ty: Option<String> = sqlx::query_scalar(
            "select format_type(a.atttypid, a.atttypmod) from pg_attribute a
              where a.attrelid = $1::regclass and a.attname = $2 and not a.attisdropped",
        )
        .bind(self.table.quoted())
        .bind(&self.value_column)
        .fetch_optional(&db.pool)
        .await
        .map_err(|e| {
            db.error(
                format!("looking up {}.{}", self.table, self.value_column),
                e,
            )
        })?;
        ty.ok_or_else(|| PgError::Query {
            context: format!("{} database: {}", db.side.name(), self.table),
            message: format!(
                "has no column {:?}: set [config] value_column",
                self.value_column
            ),
            sqlstate: None,
        })
    }

    /// Applies every write in one transaction: all or nothing. Returns the
    /// rows touched.
    pub async fn apply(&self, db: &Database, writes: &[ConfigWrite]) -> Result<u64, PgError> {
        let ty = self.value_type(db).await?;
        let mut tx = db
            .pool
            .begin()
            .await
            .map_err(|e| db.error("starting the configuration transaction", e))?;
        let (t, k, v) = (
            self.table.quoted(),
            quote_ident(&self.key_column),
            quote_ident(&self.value_column),
        );
        let update = format!("update {t} set {v} = $2::text::{ty} where {k} = $1");
        let insert = format!("insert into {t} ({k}, {v}) values ($1, $2::text::{ty})");
        let mut touched = 0;
        for w in writes {
            let sql = if w.insert { &insert } else { &update };
            let done = sqlx::query(sql)
                .bind(&w.key)
                .bind(&w.value)
                .execute(&mut *tx)
                .await
                // The key names the row; the value is never in the message.
                .map_err(|e| db.error(format!("setting {} in {}", w.key, self.table), e))?;
            touched += done.rows_affected();
        }
        tx.commit()
            .await
            .map_err(|e| db.error("committing the configuration", e))?;
        Ok(touched)
    }
}
