//! PostgreSQL: connections, catalog introspection, counts and the ledger.
//!
//! Phases reach the databases only through this module. Every error leaving it
//! is a [`PgError`] whose text has been through the [`Redactor`], so a URL or
//! password can never ride along in a driver message.

pub mod compare;
pub mod config;
pub mod copy;
pub mod cron;
pub mod dump;
pub mod freeze;
pub mod function_snapshots;
pub mod guards;
pub mod ledger;
pub mod ledger_storage;
pub mod lints;
pub mod locks;
pub mod migrate;
pub mod platform_tables;
pub mod release;
pub mod replication;
pub mod restore;
pub mod seeded;
pub mod table_diff;
pub mod vault;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Row};

use crate::manifest::{MANAGED_SCHEMAS, NEVER_COPIED, QualifiedName, quote_ident};
use crate::redact::{Redactor, display_db_url};

/// How long a first connection may take before we give up on the host.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Which environment a connection belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The environment copied from.
    Source,
    /// The environment copied to.
    Target,
}

impl Side {
    /// `source` or `target`.
    pub fn name(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Target => "target",
        }
    }

    /// The input naming this side's URL.
    pub fn url_input(self) -> &'static str {
        match self {
            Side::Source => "source-db-url",
            Side::Target => "target-db-url",
        }
    }
}

/// A database error, already redacted, with a hint for the user.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// Could not connect.
    #[error("cannot connect to the {side} database at {display}: {message}")]
    Connect {
        /// Which side.
        side: &'static str,
        /// `host:port/db`.
        display: String,
        /// What the driver said, redacted.
        message: String,
        /// What to do about it.
        hint: String,
    },
    /// A query failed.
    #[error("{context}: {message}")]
    Query {
        /// What we were doing.
        context: String,
        /// What PostgreSQL said, redacted.
        message: String,
        /// PostgreSQL's SQLSTATE, when the server answered with one: what
        /// code decides on (retries, hints), never the message's words.
        sqlstate: Option<String>,
    },
}

impl PgError {
    /// The server's SQLSTATE, when there is one (e.g. `08006`).
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            PgError::Query { sqlstate, .. } => sqlstate.as_deref(),
            PgError::Connect { .. } => None,
        }
    }

    /// A hint for the user, when there is one.
    pub fn hint(&self) -> Option<&str> {
        match self {
            PgError::Connect { hint, .. } => Some(hint),
            // insufficient_privilege: the connected role may not read or
            // change something cutover needs.
            PgError::Query {
                sqlstate: Some(code),
                ..
            } if code == "42501" => Some(
                "the role in the database URL lacks a privilege cutover needs here: connect as the project's `postgres` user (Supabase: Settings → Database), or grant this role what the message names",
            ),
            PgError::Query { .. } => None,
        }
    }
}

/// An open database of one side.
#[derive(Debug, Clone)]
pub struct Database {
    /// Which side it is.
    pub side: Side,
    /// `host:port/db`, safe to print.
    pub display: String,
    /// The pool; at most a few connections.
    pub pool: PgPool,
    redactor: Redactor,
    /// An exported snapshot every read-only comparison transaction imports
    /// (`SET TRANSACTION SNAPSHOT`), so they all see one moment of this
    /// database; see [`Database::at_snapshot`].
    snapshot: Option<String>,
}

/// What the server says about itself once connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// `server_version`, e.g. `15.4`.
    pub version: String,
    /// `server_version_num`, e.g. `150004`.
    pub version_num: i32,
    /// The role we are connected as.
    pub user: String,
    /// `current_database()`.
    pub database: String,
    /// Oid of the database within its cluster.
    pub database_oid: i64,
    /// Postmaster start time as text: with the oid and name it identifies one
    /// database of one running cluster, whatever host name reached it.
    pub started_at: String,
    /// The server is a read-only standby.
    pub in_recovery: bool,
    /// Transactions default to read only (as `plan` sets).
    pub read_only: bool,
    /// The role may create schemas in this database.
    pub can_create: bool,
}

impl ServerInfo {
    /// An identity that is equal for two connections to the same database.
    pub fn identity(&self) -> String {
        format!(
            "{}#{}@{}",
            self.database, self.database_oid, self.started_at
        )
    }
}

/// A user table as found in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// Schema and name.
    pub name: QualifiedName,
    /// Row level security is enabled.
    pub rls_enabled: bool,
    /// The connected role may SELECT from it.
    pub can_select: bool,
}

/// A migration recorded in `supabase_migrations.schema_migrations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    /// The version (digits).
    pub version: String,
    /// The name part of the file, when recorded.
    pub name: Option<String>,
}

impl Database {
    /// Connects to `url`. `read_only` makes every transaction read only on the
    /// server side, so a phase that must not write cannot, whatever it runs.
    pub async fn connect(
        url: &str,
        side: Side,
        read_only: bool,
        max_connections: u32,
        redactor: &Redactor,
    ) -> Result<Database, PgError> {
        let display = display_db_url(url);
        let connect_error = |message: String, hint: String| PgError::Connect {
            side: side.name(),
            display: display.clone(),
            message: redactor.redact(&message),
            hint: redactor.redact(&hint),
        };
        let mut options = PgConnectOptions::from_str(url).map_err(|e| {
            connect_error(
                e.to_string(),
                format!(
                    "check the URL in {}: postgresql://USER:PASSWORD@HOST:PORT/DATABASE",
                    side.url_input()
                ),
            )
        })?;
        options = options
            .application_name("cutover")
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Debug, Duration::from_secs(5));
        if read_only {
            options = options.options([("default_transaction_read_only", "on")]);
        }
        // One direct connection first: it fails fast with the driver's real
        // reason, where a pool would retry until its own timeout.
        let first = tokio::time::timeout(
            CONNECT_TIMEOUT,
            sqlx::postgres::PgConnection::connect_with(&options),
        )
        .await
        .map_err(|_| {
            connect_error(
                format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
                format!(
                    "check the host and port in {} and that this runner may reach it (firewall, IPv6-only host: use Supabase's pooler address)",
                    side.url_input()
                ),
            )
        })?
        .map_err(|e| {
            let hint = connect_hint(&e, side);
            connect_error(e.to_string(), hint)
        })?;
        let _ = first.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(CONNECT_TIMEOUT * 3)
            .connect_lazy_with(options);
        Ok(Database {
            side,
            display,
            pool,
            redactor: redactor.clone(),
            snapshot: None,
        })
    }

    /// The same database, with every comparison read (counts, checksums,
    /// key ranges) taken in the exported snapshot `id`. The exporting
    /// transaction must stay open while the copy is used.
    pub fn at_snapshot(&self, id: &str) -> Database {
        Database {
            snapshot: Some(id.to_string()),
            ..self.clone()
        }
    }

    /// `set transaction ...` statements that start a read-only comparison
    /// transaction: repeatable read in the imported snapshot when there is
    /// one, so several statements agree.
    pub(crate) fn read_transaction_sql(&self) -> String {
        match &self.snapshot {
            Some(id) => format!(
                "set transaction isolation level repeatable read, read only; set transaction snapshot '{}';",
                id.replace('\'', "")
            ),
            None => "set transaction isolation level repeatable read, read only;".into(),
        }
    }

    /// Wraps a driver error with what we were doing, redacted.
    pub fn error(&self, context: impl Into<String>, e: sqlx::Error) -> PgError {
        PgError::Query {
            context: format!("{} database: {}", self.side.name(), context.into()),
            message: self.redactor.redact(&describe_sqlx_error(&e)),
            sqlstate: e
                .as_database_error()
                .and_then(|d| d.code())
                .map(|c| c.to_string())
                .or_else(|| match &e {
                    // A connection cut mid-query: connection failure.
                    sqlx::Error::Io(_) => Some("08006".to_string()),
                    _ => None,
                }),
        }
    }

    /// The server's clock now (`clock_timestamp()`): what a point-in-time
    /// restore of this database is told, so the runner's clock never matters.
    pub async fn server_time(&self) -> Result<chrono::DateTime<chrono::Utc>, PgError> {
        sqlx::query_scalar("select clock_timestamp()")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.error("reading the server's clock", e))
    }

    /// Reads [`ServerInfo`].
    pub async fn server_info(&self) -> Result<ServerInfo, PgError> {
        let row = sqlx::query(
            "select current_setting('server_version') as version,
                    current_setting('server_version_num')::int as version_num,
                    current_user::text as usr,
                    current_database()::text as db,
                    (select oid::bigint from pg_database where datname = current_database()) as db_oid,
                    pg_postmaster_start_time()::text as started_at,
                    pg_is_in_recovery() as in_recovery,
                    current_setting('transaction_read_only') = 'on' as read_only,
                    has_database_privilege(current_database(), 'CREATE') as can_create",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.error("reading server information", e))?;
        Ok(ServerInfo {
            version: row.get("version"),
            version_num: row.get("version_num"),
            user: row.get("usr"),
            database: row.get("db"),
            database_oid: row.get("db_oid"),
            started_at: row.get("started_at"),
            in_recovery: row.get("in_recovery"),
            read_only: row.get("read_only"),
            can_create: row.get("can_create"),
        })
    }

    /// Every ordinary or partitioned table outside Supabase's managed schemas,
    /// plus `auth`/`storage` tables when asked, never the platform's own
    /// migration tables. Sorted by schema and name.
    pub async fn user_tables(
        &self,
        include_auth: bool,
        include_storage: bool,
    ) -> Result<Vec<TableInfo>, PgError> {
        let mut excluded: Vec<String> = MANAGED_SCHEMAS.iter().map(|s| s.to_string()).collect();
        excluded.retain(|s| !(include_auth && s == "auth" || include_storage && s == "storage"));
        let rows = sqlx::query(
            "select n.nspname::text as schema, c.relname::text as name,
                    c.relrowsecurity as rls,
                    has_table_privilege(c.oid, 'SELECT') as can_select
               from pg_class c
               join pg_namespace n on n.oid = c.relnamespace
              where c.relkind in ('r', 'p')
                and not c.relispartition
                and n.nspname <> all($1)
                and n.nspname not like 'pg\\_%'
                and not exists (select 1 from pg_depend d
                                 where d.objid = c.oid and d.deptype = 'e')
              order by 1, 2",
        )
        .bind(&excluded)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.error("listing tables", e))?;
        Ok(rows
            .into_iter()
            .map(|r| TableInfo {
                name: QualifiedName {
                    schema: r.get("schema"),
                    name: r.get("name"),
                },
                rls_enabled: r.get("rls"),
                can_select: r.get("can_select"),
            })
            .filter(|t| !NEVER_COPIED.contains(&t.name.to_string().as_str()))
            .collect())
    }

    /// Which of `tables` exist here.
    pub async fn existing_tables(
        &self,
        tables: &[QualifiedName],
    ) -> Result<Vec<QualifiedName>, PgError> {
        let names: Vec<String> = tables.iter().map(QualifiedName::quoted).collect();
        let rows = sqlx::query(
            "select t.name from unnest($1::text[]) as t(name)
              where to_regclass(t.name) is not null",
        )
        .bind(&names)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.error("looking up tables", e))?;
        let found: Vec<String> = rows.into_iter().map(|r| r.get::<String, _>(0)).collect();
        Ok(tables
            .iter()
            .filter(|t| found.contains(&t.quoted()))
            .cloned()
            .collect())
    }

    /// Exact `count(*)` of each table, all in one read-only repeatable-read
    /// snapshot so the figures belong to one moment.
    pub async fn exact_row_counts(
        &self,
        tables: &[QualifiedName],
    ) -> Result<BTreeMap<QualifiedName, i64>, PgError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| self.error("starting the count snapshot", e))?;
        sqlx::raw_sql(&self.read_transaction_sql())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.error("starting the count snapshot", e))?;
        let mut counts = BTreeMap::new();
        for table in tables {
            let sql = format!("select count(*) from {}", table.quoted());
            let n: i64 = sqlx::query_scalar(&sql)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| self.error(format!("counting rows of {table}"), e))?;
            counts.insert(table.clone(), n);
        }
        tx.rollback()
            .await
            .map_err(|e| self.error("ending the count snapshot", e))?;
        Ok(counts)
    }

    /// The versions in `supabase_migrations.schema_migrations`, or `None` when
    /// the table does not exist (no migration was ever pushed).
    pub async fn applied_migrations(&self) -> Result<Option<Vec<AppliedMigration>>, PgError> {
        let exists: bool = sqlx::query_scalar(
            "select to_regclass('supabase_migrations.schema_migrations') is not null",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.error("looking for the migration history", e))?;
        if !exists {
            return Ok(None);
        }
        let has_name: bool = sqlx::query_scalar(
            "select exists (select 1 from information_schema.columns
                             where table_schema = 'supabase_migrations'
                               and table_name = 'schema_migrations' and column_name = 'name')",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.error("reading the migration history", e))?;
        let sql = if has_name {
            "select version::text, name::text from supabase_migrations.schema_migrations order by version"
        } else {
            "select version::text, null::text from supabase_migrations.schema_migrations order by version"
        };
        let rows = sqlx::query(sql)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error("reading the migration history", e))?;
        Ok(Some(
            rows.into_iter()
                .map(|r| AppliedMigration {
                    version: r.get(0),
                    name: r.get(1),
                })
                .collect(),
        ))
    }

    /// Current values of `keys` in a key/value configuration table, or `None`
    /// when the table does not exist yet.
    pub async fn config_values(
        &self,
        table: &QualifiedName,
        key_column: &str,
        value_column: &str,
    ) -> Result<Option<BTreeMap<String, Option<String>>>, PgError> {
        if self
            .existing_tables(std::slice::from_ref(table))
            .await?
            .is_empty()
        {
            return Ok(None);
        }
        let sql = format!(
            "select {k}::text, {v}::text from {t}",
            k = quote_ident(key_column),
            v = quote_ident(value_column),
            t = table.quoted()
        );
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(format!("reading configuration from {table}"), e))?;
        Ok(Some(
            rows.into_iter()
                .map(|r| (r.get::<String, _>(0), r.get::<Option<String>, _>(1)))
                .collect(),
        ))
    }

    /// pg_cron jobs by name with their `active` flag, or `None` without pg_cron.
    pub async fn cron_jobs(&self) -> Result<Option<BTreeMap<String, bool>>, PgError> {
        let exists: bool = sqlx::query_scalar("select to_regclass('cron.job') is not null")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.error("looking for pg_cron", e))?;
        if !exists {
            return Ok(None);
        }
        let rows =
            sqlx::query("select jobname::text, active from cron.job where jobname is not null")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.error("reading pg_cron jobs", e))?;
        Ok(Some(
            rows.into_iter()
                .map(|r| (r.get::<String, _>(0), r.get::<bool, _>(1)))
                .collect(),
        ))
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A driver error as one line, with PostgreSQL's detail and hint when present.
pub fn describe_sqlx_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => {
            let mut text = db.message().to_string();
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                if let Some(detail) = pg.detail() {
                    text.push_str(&format!(" (detail: {detail})"));
                }
                if let Some(hint) = pg.hint() {
                    text.push_str(&format!(" (hint: {hint})"));
                }
            }
            if let Some(code) = db.code() {
                text.push_str(&format!(" [SQLSTATE {code}]"));
            }
            text
        }
        other => other.to_string(),
    }
}

/// The hint for a connection refused by the server with SQLSTATE `code`.
fn sqlstate_hint(code: Option<&str>, input: &str) -> String {
    match code {
        Some("28P01") => format!(
            "the password is wrong: update the secret behind {input} (Supabase: Project Settings → Database → Connection string)"
        ),
        Some("28000") => {
            format!("the server refused this user or host (pg_hba.conf): check the user in {input}")
        }
        Some("3D000") => format!(
            "that database does not exist: check the database name at the end of {input} (Supabase uses `postgres`)"
        ),
        _ => format!("check {input} and the server's log"),
    }
}

fn connect_hint(e: &sqlx::Error, side: Side) -> String {
    let input = side.url_input();
    match e {
        sqlx::Error::Database(db) => sqlstate_hint(db.code().as_deref(), input),
        sqlx::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => format!(
                "nothing accepts connections at that host and port: check the host and port in {input} and that the database is running"
            ),
            _ => format!(
                "check the host in {input}; if the name does not resolve, copy the connection string again from the project's settings"
            ),
        },
        sqlx::Error::Tls(_) => format!(
            "the TLS handshake failed: try `?sslmode=require` in {input}, or `sslmode=disable` for a local database"
        ),
        _ => format!("check {input}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_refusals_get_specific_hints() {
        let wrong_password = sqlstate_hint(Some("28P01"), "source-db-url");
        assert!(
            wrong_password.contains("the password is wrong")
                && wrong_password.contains("source-db-url"),
            "{wrong_password}"
        );
        assert!(
            sqlstate_hint(Some("28000"), "target-db-url")
                .contains("check the user in target-db-url")
        );
        assert!(sqlstate_hint(Some("3D000"), "target-db-url").contains("database does not exist"));
        assert!(sqlstate_hint(None, "x").contains("check x"));
    }

    #[test]
    fn side_names() {
        assert_eq!(Side::Source.url_input(), "source-db-url");
        assert_eq!(Side::Target.name(), "target");
    }
}
