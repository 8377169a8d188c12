//! What the release phases read from and add to the ledger: the last passing
//! validation (for the cutover gate), and the frontend settings as they were
//! before `cutover` changed them (`<ledger>.frontend_states`, for `rollback`).
//!
//! Frontend values are the production build variables of the site (e.g.
//! `VITE_SUPABASE_URL`); they are stored because rollback must put back
//! exactly what was there and providers do not keep history. Values the
//! provider marks sensitive cannot be read and are stored as unreadable.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::{Database, PgError};
use crate::manifest::quote_ident;

/// A passing `validate` recorded in the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedValidation {
    /// The run that validated.
    pub run_id: Uuid,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// Migration version → sha256 of the file, as validated.
    pub migrations: BTreeMap<String, String>,
    /// Tables compared.
    pub tables: Vec<String>,
}

async fn table_exists(db: &Database, qualified: &str) -> Result<bool, PgError> {
    sqlx::query_scalar("select to_regclass($1) is not null")
        .bind(qualified)
        .fetch_one(&db.pool)
        .await
        .map_err(|e| db.error("looking for a ledger table", e))
}

/// The newest passing validation of this source/target pair, if any.
pub async fn latest_validation(
    db: &Database,
    schema: &str,
    source: &str,
    target: &str,
) -> Result<Option<RecordedValidation>, PgError> {
    let steps = format!("{}.steps", quote_ident(schema));
    if !table_exists(db, &steps).await? {
        return Ok(None);
    }
    let sql = format!(
        "select run_id, coalesce(finished_at, started_at), detail from {steps}
          where phase = 'validate' and step = 'validation' and outcome = 'pass'
            and detail->>'source' = $1 and detail->>'target' = $2
          order by coalesce(finished_at, started_at) desc limit 1"
    );
    let row = sqlx::query(&sql)
        .bind(source)
        .bind(target)
        .fetch_optional(&db.pool)
        .await
        .map_err(|e| db.error("reading the last validation from the ledger", e))?;
    Ok(row.map(|r| {
        let detail: serde_json::Value = r.get(2);
        RecordedValidation {
            run_id: r.get(0),
            finished_at: r.get(1),
            migrations: detail
                .get("migrations")
                .and_then(|m| serde_json::from_value(m.clone()).ok())
                .unwrap_or_default(),
            tables: detail
                .get("tables")
                .and_then(|m| serde_json::from_value(m.clone()).ok())
                .unwrap_or_default(),
        }
    }))
}

/// The last successful `cutover` recorded, as (run id, finished at).
pub async fn last_cutover(
    db: &Database,
    schema: &str,
) -> Result<Option<(Uuid, DateTime<Utc>)>, PgError> {
    let steps = format!("{}.steps", quote_ident(schema));
    if !table_exists(db, &steps).await? {
        return Ok(None);
    }
    let sql = format!(
        "select run_id, coalesce(finished_at, started_at) from {steps}
          where phase = 'cutover' and step = 'phase' and outcome = 'success'
          order by id desc limit 1"
    );
    let row = sqlx::query(&sql)
        .fetch_optional(&db.pool)
        .await
        .map_err(|e| db.error("reading the last cutover from the ledger", e))?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// The cutover that made this target live, as (run id, finished at): the
/// last successful `cutover` recorded, unless a successful `rollback` came
/// after it. `None` for a target that never went live or was rolled back.
pub async fn live_since(
    db: &Database,
    schema: &str,
) -> Result<Option<(Uuid, DateTime<Utc>)>, PgError> {
    let steps = format!("{}.steps", quote_ident(schema));
    if !table_exists(db, &steps).await? {
        return Ok(None);
    }
    let sql = format!(
        "select phase, run_id, coalesce(finished_at, started_at) from {steps}
          where step = 'phase' and outcome = 'success' and phase in ('cutover', 'rollback')
          order by id desc limit 1"
    );
    let row = sqlx::query(&sql)
        .fetch_optional(&db.pool)
        .await
        .map_err(|e| db.error("reading from the ledger whether the target is live", e))?;
    Ok(row
        .filter(|r| r.get::<String, _>(0) == "cutover")
        .map(|r| (r.get(1), r.get(2))))
}

/// What is saved about a frontend setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrontendItem {
    /// A production environment variable.
    Env,
    /// The production deployment live before cutover.
    Deployment,
}

impl FrontendItem {
    fn word(self) -> &'static str {
        match self {
            FrontendItem::Env => "env",
            FrontendItem::Deployment => "deployment",
        }
    }
}

/// One saved frontend setting.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedFrontend {
    /// Ledger row id.
    pub id: i64,
    /// The run that saved it.
    pub run_id: Uuid,
    /// `vercel` or `cloudflare-pages`.
    pub provider: String,
    /// Provider project.
    pub project: String,
    /// Variable or deployment.
    pub item: FrontendItem,
    /// Variable name, or deployment id.
    pub name: String,
    /// Value before cutover (variables; `None`: absent or unreadable), or
    /// the deployment's URL.
    pub previous: Option<String>,
    /// Whether the provider let us read the previous value.
    pub readable: bool,
    /// Provider-specific facts (variable id and type).
    pub detail: serde_json::Value,
}

/// The `frontend_states` ledger table.
#[derive(Debug, Clone)]
pub struct FrontendLedger {
    db: Database,
    table: String,
}

impl FrontendLedger {
    /// The table in `schema` of the target database.
    pub fn new(target: &Database, schema: &str) -> FrontendLedger {
        FrontendLedger {
            db: target.clone(),
            table: format!("{}.frontend_states", quote_ident(schema)),
        }
    }

    /// Creates the table; one open state per setting, like `guard_states`.
    pub async fn create(&self, schema: &str) -> Result<(), PgError> {
        let s = quote_ident(schema);
        let ddl = format!(
            "create table if not exists {t} (
                 id bigserial primary key,
                 run_id uuid not null references {s}.runs(id),
                 provider text not null,
                 project text not null,
                 item text not null check (item in ('env', 'deployment')),
                 name text not null,
                 previous text,
                 readable boolean not null default true,
                 detail jsonb not null default '{{}}',
                 saved_at timestamptz not null default now(),
                 restored_at timestamptz,
                 restored_by uuid
             );
             create unique index if not exists frontend_states_open
                 on {t} (provider, project, item) where restored_at is null and item = 'deployment';
             create unique index if not exists frontend_states_open_env
                 on {t} (provider, project, name) where restored_at is null and item = 'env';",
            t = self.table
        );
        super::ledger::create_ledger_objects(&self.db, &ddl, "the frontend_states table").await
    }

    /// Saves a setting unless an open one is saved already (a re-run keeps
    /// the state from before the first cutover).
    #[allow(clippy::too_many_arguments)]
    pub async fn save(
        &self,
        run_id: Uuid,
        provider: &str,
        project: &str,
        item: FrontendItem,
        name: &str,
        previous: Option<&str>,
        readable: bool,
        detail: serde_json::Value,
    ) -> Result<(), PgError> {
        let conflict = match item {
            FrontendItem::Env => {
                "(provider, project, name) where restored_at is null and item = 'env'"
            }
            FrontendItem::Deployment => {
                "(provider, project, item) where restored_at is null and item = 'deployment'"
            }
        };
        let sql = format!(
            "insert into {} (run_id, provider, project, item, name, previous, readable, detail)
             values ($1, $2, $3, $4, $5, $6, $7, $8)
             on conflict {conflict} do nothing",
            self.table
        );
        sqlx::query(&sql)
            .bind(run_id)
            .bind(provider)
            .bind(project)
            .bind(item.word())
            .bind(name)
            .bind(previous)
            .bind(readable)
            .bind(detail)
            .execute(&self.db.pool)
            .await
            .map_err(|e| self.db.error("saving a frontend setting in the ledger", e))?;
        Ok(())
    }

    /// Open (not yet restored) saved settings, oldest first.
    pub async fn open_states(&self) -> Result<Vec<SavedFrontend>, PgError> {
        if !table_exists(&self.db, &self.table).await? {
            return Ok(Vec::new());
        }
        let sql = format!(
            "select id, run_id, provider, project, item, name, previous, readable, detail
               from {} where restored_at is null order by id",
            self.table
        );
        let rows = sqlx::query(&sql)
            .fetch_all(&self.db.pool)
            .await
            .map_err(|e| self.db.error("reading saved frontend settings", e))?;
        Ok(rows
            .into_iter()
            .map(|r| SavedFrontend {
                id: r.get(0),
                run_id: r.get(1),
                provider: r.get(2),
                project: r.get(3),
                item: if r.get::<String, _>(4) == "deployment" {
                    FrontendItem::Deployment
                } else {
                    FrontendItem::Env
                },
                name: r.get(5),
                previous: r.get(6),
                readable: r.get(7),
                detail: r.get(8),
            })
            .collect())
    }

    /// Marks saved settings as restored by `run_id`.
    pub async fn mark_restored(&self, ids: &[i64], run_id: Uuid) -> Result<(), PgError> {
        super::ledger::mark_rows_restored(&self.db, &self.table, ids, run_id, "frontend settings")
            .await
    }
}
