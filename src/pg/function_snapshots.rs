//! Saved Edge Function deployments in the ledger
//! (`<ledger>.function_snapshots`): what the target served before
//! `functions` deployed over it, kept so `rollback` can put it back (runbook
//! Level 2). The Management API serves only a function's current bundle, so
//! the ledger holds the one copy of the previous one, with its sha-256.

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::ledger::Ledger;
use super::{Database, PgError};
use crate::manifest::quote_ident;

/// A function's deployment as saved before a deploy replaced it.
#[derive(Clone, PartialEq, Eq)]
pub struct FunctionSnapshot {
    /// Ledger row id (0 before it is recorded).
    pub id: i64,
    /// The run that saved it.
    pub run_id: Uuid,
    /// The project it was served by.
    pub project_ref: String,
    /// The function's slug.
    pub slug: String,
    /// The version the project served.
    pub version: i64,
    /// Whether the gateway required a JWT.
    pub verify_jwt: Option<bool>,
    /// Whether it used an import map.
    pub import_map: Option<bool>,
    /// Its entrypoint.
    pub entrypoint_path: Option<String>,
    /// Its import map.
    pub import_map_path: Option<String>,
    /// The bundle as `GET /functions/{slug}/body` served it.
    pub body: Vec<u8>,
    /// Lower-case hex sha-256 of `body`.
    pub body_sha256: String,
    /// When it was saved.
    pub saved_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for FunctionSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The bundle is bytes, not worth a debug print.
        f.debug_struct("FunctionSnapshot")
            .field("slug", &self.slug)
            .field("version", &self.version)
            .field("bytes", &self.body.len())
            .field("body_sha256", &self.body_sha256)
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Records a saved deployment; returns its row id.
    pub async fn record_function_snapshot(
        &self,
        snapshot: &FunctionSnapshot,
    ) -> Result<i64, PgError> {
        let sql = format!(
            "insert into {} (run_id, project_ref, slug, version, verify_jwt, import_map,
                             entrypoint_path, import_map_path, body, body_sha256)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) returning id",
            self.table("function_snapshots")
        );
        sqlx::query_scalar(&sql)
            .bind(snapshot.run_id)
            .bind(&snapshot.project_ref)
            .bind(&snapshot.slug)
            .bind(snapshot.version)
            .bind(snapshot.verify_jwt)
            .bind(snapshot.import_map)
            .bind(&snapshot.entrypoint_path)
            .bind(&snapshot.import_map_path)
            .bind(&snapshot.body)
            .bind(&snapshot.body_sha256)
            .fetch_one(&self.db.pool)
            .await
            .map_err(|e| {
                self.db
                    .error("saving the function's deployment in the ledger", e)
            })
    }

    /// Stamps a saved deployment as put back by `run_id`.
    pub async fn mark_function_restored(&self, id: i64, run_id: Uuid) -> Result<(), PgError> {
        let sql = format!(
            "update {} set restored_at = now(), restored_by = $2 where id = $1",
            self.table("function_snapshots")
        );
        sqlx::query(&sql)
            .bind(id)
            .bind(run_id)
            .execute(&self.db.pool)
            .await
            .map_err(|e| {
                self.db
                    .error("recording the function's rollback in the ledger", e)
            })?;
        Ok(())
    }
}

/// The newest saved deployment of each function of `project_ref` in the
/// ledger of `schema`, by slug; reads only, and finds nothing in a ledger
/// older than the table.
pub async fn latest_function_snapshots(
    db: &Database,
    schema: &str,
    project_ref: &str,
) -> Result<Vec<FunctionSnapshot>, PgError> {
    let table = format!("{}.function_snapshots", quote_ident(schema));
    let exists: bool = sqlx::query_scalar("select to_regclass($1) is not null")
        .bind(&table)
        .fetch_one(&db.pool)
        .await
        .map_err(|e| db.error("looking for saved function deployments", e))?;
    if !exists {
        return Ok(Vec::new());
    }
    let sql = format!(
        "select distinct on (slug) id, run_id, project_ref, slug, version, verify_jwt,
                import_map, entrypoint_path, import_map_path, body, body_sha256, saved_at
           from {table} where project_ref = $1
          order by slug, saved_at desc, id desc"
    );
    let rows = sqlx::query(&sql)
        .bind(project_ref)
        .fetch_all(&db.pool)
        .await
        .map_err(|e| db.error("reading saved function deployments from the ledger", e))?;
    Ok(rows
        .into_iter()
        .map(|r| FunctionSnapshot {
            id: r.get(0),
            run_id: r.get(1),
            project_ref: r.get(2),
            slug: r.get(3),
            version: r.get(4),
            verify_jwt: r.get(5),
            import_map: r.get(6),
            entrypoint_path: r.get(7),
            import_map_path: r.get(8),
            body: r.get(9),
            body_sha256: r.get(10),
            saved_at: r.get(11),
        })
        .collect())
}
