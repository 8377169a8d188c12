//! The ledger's record of Storage objects the `storage` phase copied
//! (`storage_objects`, migration 0007): what lets a re-run skip an object
//! that neither side changed since it was copied.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::PgError;
use super::ledger::Ledger;

/// One copied object as the ledger remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedObject {
    /// The source object's size when copied.
    pub size: i64,
    /// The source object's ETag when copied.
    pub etag: Option<String>,
    /// The ETag the target listed for the copy (`None` until the phase's
    /// final listing confirmed it).
    pub target_etag: Option<String>,
}

impl Ledger {
    /// Every object of `bucket` the ledger says was copied, by path.
    pub async fn copied_objects(
        &self,
        bucket: &str,
    ) -> Result<BTreeMap<String, CopiedObject>, PgError> {
        let sql = format!(
            "select path, size, etag, target_etag from {} where bucket = $1",
            self.table("storage_objects")
        );
        let rows: Vec<(String, i64, Option<String>, Option<String>)> = sqlx::query_as(&sql)
            .bind(bucket)
            .fetch_all(&self.db.pool)
            .await
            .map_err(|e| {
                self.db
                    .error("reading the copied Storage objects from the ledger", e)
            })?;
        Ok(rows
            .into_iter()
            .map(|(path, size, etag, target_etag)| {
                (
                    path,
                    CopiedObject {
                        size,
                        etag,
                        target_etag,
                    },
                )
            })
            .collect())
    }

    /// Records one copied object (replacing an earlier copy's row); the
    /// target's ETag is filled in later by [`Ledger::confirm_copied_objects`].
    pub async fn record_copied_object(
        &self,
        run_id: Uuid,
        bucket: &str,
        path: &str,
        size: i64,
        etag: Option<&str>,
    ) -> Result<(), PgError> {
        let sql = format!(
            "insert into {} (bucket, path, size, etag, target_etag, copied_at, run_id)
             values ($1, $2, $3, $4, null, now(), $5)
             on conflict (bucket, path) do update
                set size = excluded.size, etag = excluded.etag, target_etag = null,
                    copied_at = excluded.copied_at, run_id = excluded.run_id",
            self.table("storage_objects")
        );
        sqlx::query(&sql)
            .bind(bucket)
            .bind(path)
            .bind(size)
            .bind(etag)
            .bind(run_id)
            .execute(&self.db.pool)
            .await
            .map_err(|e| {
                self.db
                    .error("recording a copied Storage object in the ledger", e)
            })?;
        Ok(())
    }

    /// Sets the target's ETag of objects this run copied, as the target
    /// listed them after the copy: path → ETag.
    pub async fn confirm_copied_objects(
        &self,
        run_id: Uuid,
        bucket: &str,
        target_etags: &BTreeMap<String, String>,
    ) -> Result<(), PgError> {
        if target_etags.is_empty() {
            return Ok(());
        }
        let paths: Vec<&str> = target_etags.keys().map(String::as_str).collect();
        let etags: Vec<&str> = target_etags.values().map(String::as_str).collect();
        let sql = format!(
            "update {} o set target_etag = t.etag
               from unnest($3::text[], $4::text[]) as t(path, etag)
              where o.bucket = $2 and o.path = t.path and o.run_id = $1",
            self.table("storage_objects")
        );
        sqlx::query(&sql)
            .bind(run_id)
            .bind(bucket)
            .bind(&paths)
            .bind(&etags)
            .execute(&self.db.pool)
            .await
            .map_err(|e| {
                self.db
                    .error("confirming copied Storage objects in the ledger", e)
            })?;
        Ok(())
    }
}
