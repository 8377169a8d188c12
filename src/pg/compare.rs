//! Comparing source and target: content checksums and where they differ,
//! sequences, row level security, RLS probes and a text rendering of the
//! catalog, for the `validate` phase.
//!
//! Every query here is read only: each runs in its own transaction that is
//! declared `read only` and rolled back. Values hashed as text (see
//! [`RowHash`]) are rendered under [`STABLE_TEXT_SETTINGS`], so a value prints
//! the same on both sides whatever each server's or role's defaults are.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use sqlx::postgres::PgConnection;
use sqlx::{Postgres, Row, Transaction};

use super::{Database, PgError};
use crate::manifest::{MANAGED_SCHEMAS, QualifiedName, quote_ident};

/// Session settings that make row text identical on both sides: time zone,
/// date and interval styles, float digits, bytea and money output, and a
/// search path that makes the catalog print every name schema-qualified
/// (`regclass` values, types from `format_type`, expressions). Applied with
/// `SET LOCAL` inside each comparing transaction; several statements, so run
/// it with `sqlx::raw_sql`. [`Database::probe_as`] does not use it: a probe
/// sees the session as the API would.
pub const STABLE_TEXT_SETTINGS: &str = "set local timezone = 'UTC'; \
     set local datestyle = 'ISO, YMD'; \
     set local intervalstyle = 'postgres'; \
     set local extra_float_digits = 1; \
     set local bytea_output = 'hex'; \
     set local lc_monetary = 'C'; \
     set local search_path = pg_catalog";

/// Rows a mismatching range may hold on each side before its rows are
/// fetched and compared one by one instead of split further.
pub const LEAF_ROWS: i64 = 1000;
/// How deep [`first_differing_keys`] bisects before comparing rows anyway.
pub const MAX_BISECT_DEPTH: usize = 32;
/// The most parts a mismatching range is split into at one level.
pub const MAX_SPLITS: usize = 16;
/// The most queries (on both sides together) one [`first_differing_keys`]
/// call runs; past it, it returns what it has found.
pub const MAX_BISECT_QUERIES: usize = 4096;

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    /// Column name.
    pub name: String,
    /// Its type as `format_type` prints it, schema-qualified when not in
    /// `pg_catalog` (e.g. `public.invoice_status`, `numeric(12,2)`).
    pub type_name: String,
    /// A generated (computed) column: never copied, only compared.
    pub generated: bool,
}

/// How a key differs between source and target.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum KeyDiffKind {
    /// The row is in the source only.
    MissingOnTarget,
    /// The row is in the target only.
    ExtraOnTarget,
    /// The row is on both sides with different content.
    Different,
}

impl KeyDiffKind {
    /// `missing on target`, `extra on target` or `different`.
    pub fn describe(self) -> &'static str {
        match self {
            KeyDiffKind::MissingOnTarget => "missing on target",
            KeyDiffKind::ExtraOnTarget => "extra on target",
            KeyDiffKind::Different => "different",
        }
    }
}

/// A primary key value whose row differs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyDiff {
    /// The key as PostgreSQL prints it.
    pub key: String,
    /// How it differs.
    pub kind: KeyDiffKind,
}

/// A sequence and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceState {
    /// Schema and name.
    pub name: QualifiedName,
    /// The sequence's `last_value` column (its start value while `is_called`
    /// is false); `None` when the connected role may not read it.
    pub last_value: Option<i64>,
    /// `nextval` has been called since the last `setval(.., false)`: the
    /// next value is `last_value + increment`, else `last_value` itself.
    pub is_called: bool,
    /// The table and column that own it (`serial`, identity or
    /// `owned by`), `None` for a free-standing sequence.
    pub owned_by: Option<(QualifiedName, String)>,
}

/// Row level security of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlsState {
    /// Schema and name.
    pub table: QualifiedName,
    /// `relrowsecurity`: RLS is enabled.
    pub enabled: bool,
    /// `relforcerowsecurity`: RLS applies to the table owner too.
    pub forced: bool,
    /// Its policies, sorted by name.
    pub policies: Vec<PolicyInfo>,
}

/// One RLS policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    /// Policy name.
    pub name: String,
    /// Permissive (`true`) or restrictive.
    pub permissive: bool,
    /// `SELECT`, `INSERT`, `UPDATE`, `DELETE` or `ALL`.
    pub command: String,
    /// Roles it applies to, sorted (`public` for every role).
    pub roles: Vec<String>,
    /// The `USING` expression, schema-qualified.
    pub using: Option<String>,
    /// The `WITH CHECK` expression, schema-qualified.
    pub with_check: Option<String>,
}

impl Database {
    /// Starts a read-only transaction with [`STABLE_TEXT_SETTINGS`].
    async fn stable_tx(&self, context: &str) -> Result<Transaction<'static, Postgres>, PgError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| self.error(context, e))?;
        let settings = match &self.snapshot {
            Some(_) => format!("{} {STABLE_TEXT_SETTINGS}", self.read_transaction_sql()),
            None => format!("set transaction read only; {STABLE_TEXT_SETTINGS}"),
        };
        sqlx::raw_sql(&settings)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.error(context, e))?;
        Ok(tx)
    }

    /// Ends a transaction of [`Database::stable_tx`].
    async fn end_tx(
        &self,
        tx: Transaction<'static, Postgres>,
        context: &str,
    ) -> Result<(), PgError> {
        tx.rollback().await.map_err(|e| self.error(context, e))
    }

    /// The names of `table`'s columns, in order (see [`Database::columns`]).
    pub async fn column_names(&self, table: &QualifiedName) -> Result<Vec<String>, PgError> {
        Ok(self
            .columns(table)
            .await?
            .into_iter()
            .map(|c| c.name)
            .collect())
    }

    /// Columns of `table` in `attnum` order, dropped ones left out. An error
    /// names the table when it does not exist.
    pub async fn columns(&self, table: &QualifiedName) -> Result<Vec<ColumnInfo>, PgError> {
        let context = format!("reading the columns of {table}");
        let mut tx = self.stable_tx(&context).await?;
        let exists: bool = sqlx::query_scalar(
            "select exists (select 1 from pg_class c
                              join pg_namespace n on n.oid = c.relnamespace
                             where n.nspname = $1 and c.relname = $2)",
        )
        .bind(&table.schema)
        .bind(&table.name)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| self.error(&context, e))?;
        if !exists {
            return Err(self.error(
                &context,
                sqlx::Error::InvalidArgument(format!("table {table} does not exist")),
            ));
        }
        let rows = sqlx::query(
            "select a.attname::text, format_type(a.atttypid, a.atttypmod),
                    a.attgenerated <> ''
               from pg_attribute a
               join pg_class c on c.oid = a.attrelid
               join pg_namespace n on n.oid = c.relnamespace
              where n.nspname = $1 and c.relname = $2
                and a.attnum > 0 and not a.attisdropped
              order by a.attnum",
        )
        .bind(&table.schema)
        .bind(&table.name)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| self.error(&context, e))?;
        self.end_tx(tx, &context).await?;
        Ok(rows
            .into_iter()
            .map(|r| ColumnInfo {
                name: r.get(0),
                type_name: r.get(1),
                generated: r.get(2),
            })
            .collect())
    }

    /// Order-independent content checksum of the whole table: the row count
    /// and the sum of the 64-bit [`RowHash`] of each row, as decimal text.
    /// Computed in the database: no row travels. Both sides of a comparison
    /// must be given the same `hash` (see [`row_hash`]).
    pub async fn table_checksum(
        &self,
        table: &QualifiedName,
        hash: &RowHash,
    ) -> Result<(i64, String), PgError> {
        let context = format!("computing the checksum of {table}");
        self.checksum_query(table, hash, None, None, None, &context)
            .await
    }

    /// The columns of `table` as [`RowHash::new`] needs them: each one's type
    /// with domains looked through and, for an array, its element type. In
    /// `attnum` order; an unknown table has none.
    pub async fn hash_columns(&self, table: &QualifiedName) -> Result<Vec<HashColumn>, PgError> {
        let context = format!("reading the column types of {table}");
        let mut tx = self.stable_tx(&context).await?;
        let rows = sqlx::query(HASH_COLUMNS_SQL)
            .bind(&table.schema)
            .bind(&table.name)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.error(&context, e))?;
        self.end_tx(tx, &context).await?;
        Ok(rows
            .into_iter()
            .map(|r| HashColumn {
                name: r.get(0),
                base_type: r.get(1),
                element_type: r.get(2),
            })
            .collect())
    }

    /// The single-column primary key of `table` as (column, type), or `None`
    /// when it has no primary key or a composite one. The type is printed by
    /// `format_type` under [`STABLE_TEXT_SETTINGS`] (schema-qualified), ready
    /// to cast a bound to.
    pub async fn single_column_pk(
        &self,
        table: &QualifiedName,
    ) -> Result<Option<(String, String)>, PgError> {
        let context = format!("reading the primary key of {table}");
        let mut tx = self.stable_tx(&context).await?;
        let row = sqlx::query(
            "select a.attname::text, format_type(a.atttypid, a.atttypmod)
               from pg_index i
               join pg_class c on c.oid = i.indrelid
               join pg_namespace n on n.oid = c.relnamespace
               join pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[0]
              where n.nspname = $1 and c.relname = $2
                and i.indisprimary and i.indnkeyatts = 1",
        )
        .bind(&table.schema)
        .bind(&table.name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| self.error(&context, e))?;
        self.end_tx(tx, &context).await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// [`Database::table_checksum`] of the rows with `lo <= pk < hi` (bounds
    /// as text, cast to the key's type; `None` is unbounded).
    pub async fn range_checksum(
        &self,
        table: &QualifiedName,
        hash: &RowHash,
        pk: &(String, String),
        lo: Option<&str>,
        hi: Option<&str>,
    ) -> Result<(i64, String), PgError> {
        let context = format!("computing the checksum of a key range of {table}");
        self.checksum_query(table, hash, Some(pk), lo, hi, &context)
            .await
    }

    async fn checksum_query(
        &self,
        table: &QualifiedName,
        hash: &RowHash,
        pk: Option<&(String, String)>,
        lo: Option<&str>,
        hi: Option<&str>,
        context: &str,
    ) -> Result<(i64, String), PgError> {
        let range = pk.map(|pk| range_predicate(pk, lo, hi));
        // sum(bigint) adds in 128 bits and returns numeric: exact, never
        // overflows, and the same value as summing each hash as numeric.
        let sql = format!(
            "select count(*), coalesce(sum({hash}), 0)::text from {t} as src{filter}",
            hash = hash.sql(),
            t = table.quoted(),
            filter = range
                .as_ref()
                .map(|(w, _)| format!(" where {w}"))
                .unwrap_or_default()
        );
        let mut tx = self.stable_tx(context).await?;
        let mut query = sqlx::query(&sql);
        if let Some((_, binds)) = &range {
            for b in binds {
                query = query.bind(*b);
            }
        }
        let row = query
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.error(context, e))?;
        self.end_tx(tx, context).await?;
        Ok((row.get(0), row.get(1)))
    }

    /// Up to `parts - 1` key values (as text, ascending, distinct, none equal
    /// to `lo`) that split the rows in `[lo, hi)` into about equal parts:
    /// `percentile_disc` over the key. Empty when the range holds too few rows.
    pub async fn split_points(
        &self,
        table: &QualifiedName,
        pk: &(String, String),
        lo: Option<&str>,
        hi: Option<&str>,
        parts: usize,
    ) -> Result<Vec<String>, PgError> {
        if parts < 2 {
            return Ok(Vec::new());
        }
        let context = format!("splitting a key range of {table}");
        let fractions: Vec<f64> = (1..parts).map(|k| k as f64 / parts as f64).collect();
        let (filter, binds) = range_predicate(pk, lo, hi);
        let sql = format!(
            "select (percentile_disc(${n}::float8[]) within group (order by {key}))::text[]
               from {t} as src where {filter}",
            n = binds.len() + 1,
            key = key_expr(pk),
            t = table.quoted(),
        );
        let mut tx = self.stable_tx(&context).await?;
        let mut query = sqlx::query_scalar::<_, Option<Vec<String>>>(&sql);
        for b in &binds {
            query = query.bind(*b);
        }
        let points = query
            .bind(&fractions)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.error(&context, e))?
            .unwrap_or_default();
        self.end_tx(tx, &context).await?;
        let mut out: Vec<String> = Vec::with_capacity(points.len());
        for p in points {
            if Some(p.as_str()) != lo && out.last() != Some(&p) {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// (key as text, row hash as text) of every row in `[lo, hi)`, ordered by
    /// key, at most `limit`. The hash is the one [`Database::table_checksum`]
    /// sums.
    pub async fn row_hashes(
        &self,
        table: &QualifiedName,
        hash: &RowHash,
        pk: &(String, String),
        lo: Option<&str>,
        hi: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(String, String)>, PgError> {
        let context = format!("reading row hashes of {table}");
        let (filter, binds) = range_predicate(pk, lo, hi);
        let sql = format!(
            "select src.{col}::text, ({hash})::text from {t} as src where {filter}
              order by {key} limit ${n}",
            col = quote_ident(&pk.0),
            hash = hash.sql(),
            t = table.quoted(),
            key = key_expr(pk),
            n = binds.len() + 1,
        );
        let mut tx = self.stable_tx(&context).await?;
        let mut query = sqlx::query(&sql);
        for b in &binds {
            query = query.bind(*b);
        }
        let rows = query
            .bind(limit.max(0))
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.error(&context, e))?;
        self.end_tx(tx, &context).await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Sequences of the user schemas (not [`MANAGED_SCHEMAS`], not owned by an
    /// extension), sorted by schema and name, with their values and owner.
    pub async fn sequences(&self) -> Result<Vec<SequenceState>, PgError> {
        let context = "reading sequences";
        let excluded: Vec<String> = MANAGED_SCHEMAS.iter().map(|s| s.to_string()).collect();
        let mut tx = self.stable_tx(context).await?;
        let rows = sqlx::query(
            "select n.nspname::text, c.relname::text,
                    has_sequence_privilege(c.oid, 'SELECT'),
                    tn.nspname::text, tc.relname::text, ta.attname::text
               from pg_class c
               join pg_namespace n on n.oid = c.relnamespace
               left join pg_depend d
                      on d.classid = 'pg_class'::regclass and d.objid = c.oid
                     and d.refclassid = 'pg_class'::regclass and d.refobjsubid > 0
                     and d.deptype in ('a', 'i')
               left join pg_class tc on tc.oid = d.refobjid
               left join pg_namespace tn on tn.oid = tc.relnamespace
               left join pg_attribute ta on ta.attrelid = d.refobjid and ta.attnum = d.refobjsubid
              where c.relkind = 'S'
                and n.nspname <> all($1)
                and n.nspname not like 'pg\\_%'
                and not exists (select 1 from pg_depend e
                                 where e.classid = 'pg_class'::regclass and e.objid = c.oid
                                   and e.deptype = 'e')
              order by n.nspname collate \"C\", c.relname collate \"C\"",
        )
        .bind(&excluded)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| self.error(context, e))?;
        let mut states: Vec<SequenceState> = Vec::with_capacity(rows.len());
        let mut readable: Vec<usize> = Vec::new();
        for r in rows {
            let owner_schema: Option<String> = r.get(3);
            let owner_table: Option<String> = r.get(4);
            let owner_column: Option<String> = r.get(5);
            let owned_by = match (owner_schema, owner_table, owner_column) {
                (Some(schema), Some(name), Some(column)) => {
                    Some((QualifiedName { schema, name }, column))
                }
                _ => None,
            };
            if r.get::<bool, _>(2) {
                readable.push(states.len());
            }
            states.push(SequenceState {
                name: QualifiedName {
                    schema: r.get(0),
                    name: r.get(1),
                },
                last_value: None,
                is_called: false,
                owned_by,
            });
        }
        // One query per batch of sequences rather than one per sequence.
        for batch in readable.chunks(200) {
            let sql = batch
                .iter()
                .map(|&i| {
                    format!(
                        "select {i}::int, last_value, is_called from {}",
                        states[i].name.quoted()
                    )
                })
                .collect::<Vec<_>>()
                .join(" union all ");
            let values = sqlx::query(&sql)
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| self.error(context, e))?;
            for v in values {
                let i = v.get::<i32, _>(0) as usize;
                states[i].last_value = Some(v.get(1));
                states[i].is_called = v.get(2);
            }
        }
        self.end_tx(tx, context).await?;
        Ok(states)
    }

    /// `max(column)` of `table` as a bigint (`None` when the table is empty):
    /// what an owned sequence must have reached.
    pub async fn column_max(
        &self,
        table: &QualifiedName,
        column: &str,
    ) -> Result<Option<i64>, PgError> {
        let context = format!("reading the largest {column} of {table}");
        let sql = format!(
            "select max({})::bigint from {}",
            quote_ident(column),
            table.quoted()
        );
        let mut tx = self.stable_tx(&context).await?;
        let max: Option<i64> = sqlx::query_scalar(&sql)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.error(&context, e))?;
        self.end_tx(tx, &context).await?;
        Ok(max)
    }

    /// RLS flags and policies of `tables`, in the order given; tables that do
    /// not exist here are left out. Expressions are printed schema-qualified.
    pub async fn rls_states(&self, tables: &[QualifiedName]) -> Result<Vec<RlsState>, PgError> {
        let context = "reading row level security";
        let schemas: Vec<&str> = tables.iter().map(|t| t.schema.as_str()).collect();
        let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        let mut tx = self.stable_tx(context).await?;
        let flags = sqlx::query(
            "select t.s, t.r, c.relrowsecurity, c.relforcerowsecurity
               from unnest($1::text[], $2::text[]) as t(s, r)
               join pg_namespace n on n.nspname = t.s
               join pg_class c on c.relnamespace = n.oid and c.relname = t.r",
        )
        .bind(&schemas)
        .bind(&names)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| self.error(context, e))?;
        let policies = sqlx::query(
            "select t.s, t.r, p.polname::text, p.polpermissive,
                    case p.polcmd when 'r' then 'SELECT' when 'a' then 'INSERT'
                                  when 'w' then 'UPDATE' when 'd' then 'DELETE'
                                  else 'ALL' end,
                    array(select case when x = 0 then 'public' else pg_get_userbyid(x)::text end
                            from unnest(p.polroles) as x),
                    pg_get_expr(p.polqual, p.polrelid),
                    pg_get_expr(p.polwithcheck, p.polrelid)
               from unnest($1::text[], $2::text[]) as t(s, r)
               join pg_namespace n on n.nspname = t.s
               join pg_class c on c.relnamespace = n.oid and c.relname = t.r
               join pg_policy p on p.polrelid = c.oid",
        )
        .bind(&schemas)
        .bind(&names)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| self.error(context, e))?;
        self.end_tx(tx, context).await?;

        let mut by_table: BTreeMap<QualifiedName, (bool, bool, Vec<PolicyInfo>)> = flags
            .into_iter()
            .map(|r| {
                (
                    QualifiedName {
                        schema: r.get(0),
                        name: r.get(1),
                    },
                    (r.get(2), r.get(3), Vec::new()),
                )
            })
            .collect();
        for r in policies {
            let table = QualifiedName {
                schema: r.get(0),
                name: r.get(1),
            };
            let mut roles: Vec<String> = r.get(5);
            roles.sort();
            if let Some(entry) = by_table.get_mut(&table) {
                entry.2.push(PolicyInfo {
                    name: r.get(2),
                    permissive: r.get(3),
                    command: r.get(4),
                    roles,
                    using: r.get(6),
                    with_check: r.get(7),
                });
            }
        }
        let mut out = Vec::new();
        for table in tables {
            if let Some((enabled, forced, mut policies)) = by_table.remove(table) {
                policies.sort_by(|a, b| a.name.cmp(&b.name));
                out.push(RlsState {
                    table: table.clone(),
                    enabled,
                    forced,
                    policies,
                });
            }
        }
        Ok(out)
    }

    /// Runs `query` as Supabase's API would for a request with these JWT
    /// claims, and returns the first column of its first row as PostgreSQL
    /// prints it (`None` for NULL or no row).
    ///
    /// In one read-only transaction, always rolled back: `set local role`
    /// (after checking the role exists; an error names it otherwise),
    /// `request.jwt.claims` set to `claims_json` (a JSON object), plus the
    /// older `request.jwt.claim.<name>` settings for `sub`, `role` (the role
    /// when the claims have none) and every other top-level claim. `query`
    /// must be one `SELECT` (or `VALUES`, `TABLE`, `WITH ... SELECT`); a
    /// trailing `;` is allowed. Works on read-write and read-only connections.
    pub async fn probe_as(
        &self,
        role: &str,
        claims_json: &str,
        query: &str,
    ) -> Result<Option<String>, PgError> {
        let context = format!("probing as role {role:?}");
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| self.error(&context, e))?;
        let result = self.probe_in(&mut tx, role, claims_json, query).await;
        let ended = tx.rollback().await;
        let value = result.map_err(|e| self.error(&context, e))?;
        ended.map_err(|e| self.error(&context, e))?;
        Ok(value)
    }

    async fn probe_in(
        &self,
        conn: &mut PgConnection,
        role: &str,
        claims_json: &str,
        query: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        sqlx::raw_sql("set transaction read only")
            .execute(&mut *conn)
            .await?;
        let exists: bool =
            sqlx::query_scalar("select exists (select 1 from pg_roles where rolname = $1)")
                .bind(role)
                .fetch_one(&mut *conn)
                .await?;
        if !exists {
            return Err(sqlx::Error::InvalidArgument(format!(
                "role {role:?} does not exist in the {} database",
                self.side.name()
            )));
        }
        sqlx::raw_sql(&format!("set local role {}", quote_ident(role)))
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "select set_config('request.jwt.claims', $1, true),
                    set_config('request.jwt.claim.sub', coalesce($1::jsonb ->> 'sub', ''), true),
                    set_config('request.jwt.claim.role', coalesce($1::jsonb ->> 'role', $2), true),
                    (select count(set_config('request.jwt.claim.' || c.key, c.value, true))
                       from jsonb_each_text($1::jsonb) as c
                      where c.key ~ '^[a-z_][a-z0-9_]*$' and c.key not in ('sub', 'role'))",
        )
        .bind(claims_json)
        .bind(role)
        .execute(&mut *conn)
        .await?;
        // The row as one record text, parsed here: it is how PostgreSQL
        // prints each value, whatever the column types. The extended protocol
        // also refuses a second statement smuggled after a `;`.
        let body = query.trim_end().trim_end_matches(';').trim_end();
        let sql = format!("select q::text from (\n{body}\n) as q limit 1");
        let row: Option<Option<String>> =
            sqlx::query_scalar(&sql).fetch_optional(&mut *conn).await?;
        Ok(row.flatten().and_then(|text| first_record_field(&text)))
    }

    /// The user schemas' catalog as sorted lines, one item each: schemas,
    /// tables (with RLS flags), columns, constraints, indexes, functions and
    /// procedures (with an md5 of their definition), triggers, policies,
    /// views (md5 of the definition), types, sequence definitions (not their
    /// values) and privileges. Leaves out [`MANAGED_SCHEMAS`], `ledger_schema`
    /// and objects of extensions. Nothing in it depends on OIDs or on when the
    /// database was built, so two databases built from the same migrations
    /// render the same text. Example line:
    /// `column public.customers.client_name text not null`.
    pub async fn schema_text(&self, ledger_schema: &str) -> Result<String, PgError> {
        let context = "reading the schema";
        let mut excluded: Vec<String> = MANAGED_SCHEMAS.iter().map(|s| s.to_string()).collect();
        excluded.push(ledger_schema.to_string());
        let mut tx = self.stable_tx(context).await?;
        let lines: Vec<Option<String>> = sqlx::query_scalar(SCHEMA_TEXT_SQL)
            .bind(&excluded)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.error(context, e))?;
        self.end_tx(tx, context).await?;
        let mut lines: Vec<String> = lines
            .into_iter()
            .flatten()
            .map(|l| {
                l.replace('\\', "\\\\")
                    .replace('\n', "\\n")
                    .replace('\r', "\\r")
            })
            .collect();
        lines.sort();
        lines.dedup();
        let mut text = lines.join("\n");
        text.push('\n');
        Ok(text)
    }
}

/// Narrows a checksum mismatch of `table` down to keys, like data-diff:
/// bisects the key range on both sides comparing [`Database::range_checksum`];
/// once a mismatching range holds at most [`LEAF_ROWS`] rows on each side,
/// compares [`Database::row_hashes`] of both. Returns up to `max_keys`
/// differing keys in key order. `hash` is the [`RowHash`] the table's
/// checksums were computed with (see [`row_hash`]).
///
/// Bounded: at most [`MAX_SPLITS`] parts per level, [`MAX_BISECT_DEPTH`]
/// levels and [`MAX_BISECT_QUERIES`] queries; past the query budget it
/// returns what it found so far (possibly fewer keys than differ).
pub async fn first_differing_keys(
    source: &Database,
    target: &Database,
    table: &QualifiedName,
    hash: &RowHash,
    pk: &(String, String),
    max_keys: usize,
) -> Result<Vec<KeyDiff>, PgError> {
    struct Range {
        lo: Option<String>,
        hi: Option<String>,
        depth: usize,
    }
    let mut found: Vec<KeyDiff> = Vec::new();
    let mut queries = 0usize;
    // A stack popped from the end: children are pushed last-first, so ranges
    // are visited in key order and keys come out in key order.
    let mut stack = vec![Range {
        lo: None,
        hi: None,
        depth: 0,
    }];
    while let Some(range) = stack.pop() {
        if found.len() >= max_keys || queries >= MAX_BISECT_QUERIES {
            break;
        }
        let (lo, hi) = (range.lo.as_deref(), range.hi.as_deref());
        let (s, t) = tokio::try_join!(
            source.range_checksum(table, hash, pk, lo, hi),
            target.range_checksum(table, hash, pk, lo, hi),
        )?;
        queries += 2;
        if s == t {
            continue;
        }
        let small = s.0 <= LEAF_ROWS && t.0 <= LEAF_ROWS;
        if !small && range.depth < MAX_BISECT_DEPTH {
            // Split by the side with more rows in the range: its parts shrink
            // for sure, and the other side's rows follow the same bounds.
            let (larger, n) = if s.0 >= t.0 {
                (source, s.0)
            } else {
                (target, t.0)
            };
            let parts = usize::try_from((n - 1) / LEAF_ROWS + 1)
                .unwrap_or(MAX_SPLITS)
                .clamp(2, MAX_SPLITS);
            let points = larger.split_points(table, pk, lo, hi, parts).await?;
            queries += 1;
            if !points.is_empty() {
                let mut bounds: Vec<Option<String>> = Vec::with_capacity(points.len() + 2);
                bounds.push(range.lo.clone());
                bounds.extend(points.into_iter().map(Some));
                bounds.push(range.hi.clone());
                for w in bounds.windows(2).rev() {
                    stack.push(Range {
                        lo: w[0].clone(),
                        hi: w[1].clone(),
                        depth: range.depth + 1,
                    });
                }
                continue;
            }
        }
        // Compare row by row. Only a range that could not be split further
        // may be larger than LEAF_ROWS; its fetch is capped.
        // One row more than the larger count, to see whether a side was cut.
        let limit = (s.0.max(t.0) + 1).min(LEAF_ROWS * MAX_SPLITS as i64);
        let (source_rows, target_rows) = tokio::try_join!(
            source.row_hashes(table, hash, pk, lo, hi, limit),
            target.row_hashes(table, hash, pk, lo, hi, limit),
        )?;
        queries += 2;
        let remaining = max_keys - found.len();
        found.extend(
            diff_row_hashes(&source_rows, &target_rows, limit)
                .into_iter()
                .take(remaining),
        );
    }
    Ok(found)
}

/// The keys that differ between two key-ordered (key, hash) lists of the same
/// range, in key order. A list of `limit` rows is taken as cut short: keys
/// past its last one are left out (they were not seen on both sides).
fn diff_row_hashes(
    source: &[(String, String)],
    target: &[(String, String)],
    limit: i64,
) -> Vec<KeyDiff> {
    let truncated = |rows: &[(String, String)]| rows.len() as i64 >= limit;
    let horizon: Option<&str> = [source, target]
        .into_iter()
        .filter(|rows| truncated(rows))
        .filter_map(|rows| rows.last().map(|(k, _)| k.as_str()))
        .min_by(|a, b| key_order(a, b));
    let target_by_key: BTreeMap<&str, &str> = target
        .iter()
        .map(|(k, h)| (k.as_str(), h.as_str()))
        .collect();
    let source_by_key: BTreeMap<&str, &str> = source
        .iter()
        .map(|(k, h)| (k.as_str(), h.as_str()))
        .collect();
    let mut diffs: Vec<KeyDiff> = Vec::new();
    for (key, hash) in source {
        match target_by_key.get(key.as_str()) {
            None => diffs.push(KeyDiff {
                key: key.clone(),
                kind: KeyDiffKind::MissingOnTarget,
            }),
            Some(other) if other != hash => diffs.push(KeyDiff {
                key: key.clone(),
                kind: KeyDiffKind::Different,
            }),
            Some(_) => {}
        }
    }
    for (key, _) in target {
        if !source_by_key.contains_key(key.as_str()) {
            diffs.push(KeyDiff {
                key: key.clone(),
                kind: KeyDiffKind::ExtraOnTarget,
            });
        }
    }
    if let Some(horizon) = horizon {
        diffs.retain(|d| key_order(&d.key, horizon) != Ordering::Greater);
    }
    diffs.sort_by(|a, b| key_order(&a.key, &b.key));
    diffs
}

/// Orders keys as PostgreSQL orders the usual key types: integers by value,
/// everything else (uuid, text under `collate "C"`) byte by byte.
fn key_order(a: &str, b: &str) -> Ordering {
    match (a.parse::<i128>(), b.parse::<i128>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// The lowest `server_version_num` (of the two sides) that gets the typed
/// [`RowHash::new`]: PostgreSQL 14. Older servers get [`RowHash::text`]
/// (the functions the typed form calls exist since 11 or 12, but it is only
/// used from 14 on; older servers keep the form they always had).
pub const TYPED_HASH_VERSION: i32 = 140_000;

/// A column as [`RowHash::new`] sees it (from [`Database::hash_columns`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashColumn {
    /// Column name.
    pub name: String,
    /// Its type with domains looked through: the bare name of a `pg_catalog`
    /// type (`int8`, `timestamptz`, `_text`), `schema.name` otherwise. Empty:
    /// unknown, the column is hashed as text.
    pub base_type: String,
    /// For an array type, its element type in the same form (a domain is not
    /// looked through); `None` otherwise.
    pub element_type: Option<String>,
}

impl HashColumn {
    /// A column hashed as its text whatever its type: what [`row_hash`] uses
    /// for a column whose type differs between the sides.
    pub fn as_text(name: &str) -> HashColumn {
        HashColumn {
            name: name.to_string(),
            base_type: String::new(),
            element_type: None,
        }
    }
}

/// The 64-bit hash of one row that the checksums sum: a bigint SQL
/// expression over the table's alias `src`. Both sides of a comparison must
/// evaluate the same one, so it is decided once ([`row_hash`]) and handed to
/// both; the bisecting ([`first_differing_keys`]) uses it too.
///
/// Typed ([`RowHash::new`], both sides PostgreSQL 14 or later): each column
/// is hashed by value with its type's own 64-bit hash function where that
/// hash tells apart every two values a client can tell apart, and as its
/// text otherwise (see `column_hash`); the column hashes, each seeded with
/// the column's position in name order and NULL standing for a constant of
/// that position, are XORed, and the result mixed once more so the sum over
/// rows depends on which values share a row. Otherwise ([`RowHash::text`])
/// it is `hashtextextended` of the row's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowHash {
    sql: String,
}

/// How one column enters the typed row hash.
#[derive(Debug, PartialEq, Eq)]
enum ColumnHash {
    /// A bigint expression, NULL when the column is NULL.
    Term(String),
    /// A bytea that is hashed with the other columns' in one array:
    /// types whose binary form is their value but that have no SQL-callable
    /// 64-bit hash of their own (or whose hash folds 64 bits into 32).
    Bytes(String),
}

/// Arrays whose element hash is exact: hashed as arrays, plus their
/// `array_dims` (the array hash looks at the elements only, not at the
/// dimensions or lower bounds, which a client sees).
const EXACT_ARRAY_ELEMENTS: &[&str] = &["int2", "int4", "uuid", "bool", "date", "text", "varchar"];

/// How column `c` (written `col`, at position `seed`) is hashed. Only
/// `pg_catalog` types whose hash tells apart any two values that print
/// differently are hashed by value; everything else is hashed as its text,
/// rendered under [`STABLE_TEXT_SETTINGS`]. Hashed as text on purpose:
///
/// * numeric: its hash ignores the sign and the display scale (`5` and `-5`,
///   `1.0` and `1.00` hash alike) and gives NaN and ±Infinity the seed;
/// * float4/float8: `0` and `-0` hash alike;
/// * interval: `1 day` and `24:00:00` hash alike;
/// * jsonb: numbers as numeric, and nesting is lost (`[[1],2]` and `[[1,2]]`
///   hash alike); json, xml, point and the geometric types have no hash;
/// * enums: the hash is of the label's OID, which differs between databases;
/// * time, timetz, int8 arrays and ranges, timestamp ranges: the bigint hash
///   folds 64 bits into 32;
/// * char(n)/bpchar: `::text` drops trailing blanks, so its output function
///   is used (`textin(bpcharout(c))`);
/// * reg* types (OIDs), money, composite and user types, extension types
///   (citext hashes case-insensitively), arrays and ranges of any of these.
fn column_hash(c: &HashColumn, col: &str, seed: usize) -> ColumnHash {
    use ColumnHash::{Bytes, Term};
    let as_text = |text: String| Term(format!("hashtextextended(({text}) collate \"C\", {seed})"));
    if let Some(element) = &c.element_type {
        if !EXACT_ARRAY_ELEMENTS.contains(&element.as_str()) {
            return as_text(format!("{col}::text"));
        }
        let collate = if matches!(element.as_str(), "text" | "varchar") {
            " collate \"C\""
        } else {
            ""
        };
        // array_dims is NULL for an empty array, which is not a NULL one.
        return Term(format!(
            "hash_array_extended({col}{collate}, {seed}) # \
             coalesce(hashtextextended(array_dims({col}), {seed}), 0)"
        ));
    }
    match c.base_type.as_str() {
        // Under "C", equal means byte-equal whatever the column's collation.
        "text" | "varchar" | "name" => {
            Term(format!("hashtextextended({col} collate \"C\", {seed})"))
        }
        "int2" => Term(format!("hashint2extended({col}, {seed})")),
        "int4" => Term(format!("hashint4extended({col}, {seed})")),
        "oid" => Term(format!("hashoidextended({col}, {seed})")),
        "uuid" => Term(format!("uuid_hash_extended({col}, {seed})")),
        "bool" | "char" => Term(format!("hashint4extended({col}::int4, {seed})")),
        // hashint8extended folds the 64 bits into 32 before hashing: the
        // high half is hashed on top.
        "int8" => Term(format!(
            "hashint4extended(({col} >> 32)::int4, hashint8extended({col}, {seed}))"
        )),
        // A date is its day number from 2000-01-01, ±infinity the int4 limits.
        "date" => Term(format!(
            "hashint4extended(case when isfinite({col}) then {col} - date '2000-01-01' \
             when {col} > date '2000-01-01' then 2147483647 \
             when {col} < date '2000-01-01' then (-2147483648)::int4 end, {seed})"
        )),
        "timestamp" => Bytes(format!("timestamp_send({col})")),
        "timestamptz" => Bytes(format!("timestamptz_send({col})")),
        "bytea" => Bytes(format!("{col}::bytea")),
        "inet" => Bytes(format!("inet_send({col})")),
        "cidr" => Bytes(format!("cidr_send({col})")),
        "macaddr" => Bytes(format!("macaddr_send({col})")),
        "macaddr8" => Bytes(format!("macaddr8_send({col})")),
        "int4range" | "daterange" => Bytes(format!("range_send({col})")),
        "bpchar" => as_text(format!("textin(bpcharout({col}))")),
        _ => as_text(format!("{col}::text")),
    }
}

/// A bigint literal standing for NULL in the column at `position`: a fixed
/// value that no column hash is more likely to take than any other
/// (splitmix64 of the position, kept positive so it prints as a bigint).
fn null_mark(position: usize) -> i64 {
    let mut z = (position as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 1) as i64
}

/// Column names sorted and deduplicated: the hash does not depend on the
/// order they are listed in.
fn sorted_names<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut names: Vec<&str> = names.collect();
    names.sort();
    names.dedup();
    names
}

impl RowHash {
    /// The row hash of `columns` (in name order, duplicates dropped) for
    /// servers whose lowest `server_version_num` is `server_version_num`:
    /// the typed form from 14 on, [`RowHash::text`] below. Pure: the same
    /// inputs give the same SQL.
    pub fn new(columns: &[HashColumn], server_version_num: i32) -> RowHash {
        let mut sorted: Vec<&HashColumn> = columns.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        sorted.dedup_by(|a, b| a.name == b.name);
        if server_version_num < TYPED_HASH_VERSION {
            let names: Vec<String> = sorted.iter().map(|c| c.name.clone()).collect();
            return RowHash::text(&names);
        }
        let mut terms: Vec<String> = Vec::with_capacity(sorted.len() + 1);
        let mut bytes: Vec<String> = Vec::new();
        for (i, c) in sorted.iter().enumerate() {
            let seed = i + 1;
            let col = format!("src.{}", quote_ident(&c.name));
            match column_hash(c, &col, seed) {
                ColumnHash::Term(hash) => {
                    terms.push(format!("coalesce({hash}, {})", null_mark(seed)))
                }
                ColumnHash::Bytes(b) => bytes.push(b),
            }
        }
        if !bytes.is_empty() {
            // Never NULL: a NULL element hashes as 0 inside the array.
            terms.push(format!(
                "hash_array_extended(array[{}], 0)",
                bytes.join(", ")
            ));
        }
        let combined = if terms.is_empty() {
            "0::int8".to_string()
        } else {
            terms.join(" # ")
        };
        // Mixed once more (the seed of a 32-bit hash takes all 64 bits): a
        // plain sum of XORed column hashes, or of an array hash (a linear
        // combination of its elements' hashes), would let values swapped
        // between rows cancel out.
        RowHash {
            sql: format!("hashint4extended(0, {combined})"),
        }
    }

    /// `hashtextextended(row(src.c1, src.c2, ...)::text, 0)` over `columns`
    /// sorted by name: the hash of the row's text, for any server from 11 on
    /// and any types. What [`RowHash::new`] gives below PostgreSQL 14.
    pub fn text(columns: &[String]) -> RowHash {
        let list = sorted_names(columns.iter().map(String::as_str))
            .iter()
            .map(|c| format!("src.{}", quote_ident(c)))
            .collect::<Vec<_>>()
            .join(", ");
        RowHash {
            sql: format!("hashtextextended(row({list})::text, 0)"),
        }
    }

    /// The bigint SQL expression, over the alias `src`.
    pub fn sql(&self) -> &str {
        &self.sql
    }
}

/// The [`RowHash`] of `columns` of `table` for comparing `source` with
/// `target`: typed by the column types (a column whose type differs between
/// the two sides, or that either lacks, is hashed as text) when both servers
/// are PostgreSQL 14 or later, the row's text otherwise. Give the result to
/// both sides.
pub async fn row_hash(
    source: &Database,
    target: &Database,
    table: &QualifiedName,
    columns: &[String],
) -> Result<RowHash, PgError> {
    let (source_columns, target_columns, source_info, target_info) = tokio::try_join!(
        source.hash_columns(table),
        target.hash_columns(table),
        source.server_info(),
        target.server_info(),
    )?;
    let version = source_info.version_num.min(target_info.version_num);
    let on_target: BTreeMap<&str, &HashColumn> = target_columns
        .iter()
        .map(|c| (c.name.as_str(), c))
        .collect();
    let typed: Vec<HashColumn> = sorted_names(columns.iter().map(String::as_str))
        .into_iter()
        .map(
            |name| match source_columns.iter().find(|c| c.name == name) {
                Some(c) if on_target.get(name) == Some(&c) => c.clone(),
                _ => HashColumn::as_text(name),
            },
        )
        .collect();
    Ok(RowHash::new(&typed, version))
}

/// Each column of the table `$1.$2` (`attnum` order): name, type with domains
/// looked through, and the element type of an array; `pg_catalog` types by
/// bare name, others as `schema.name`.
const HASH_COLUMNS_SQL: &str = r#"
with recursive col(attnum, name, typ) as (
  select a.attnum, a.attname::text, a.atttypid
    from pg_attribute a
    join pg_class c on c.oid = a.attrelid
    join pg_namespace n on n.oid = c.relnamespace
   where n.nspname = $1 and c.relname = $2
     and a.attnum > 0 and not a.attisdropped
  union all
  select col.attnum, col.name, t.typbasetype
    from col join pg_type t on t.oid = col.typ
   where t.typtype = 'd'
)
select col.name,
       case when tn.nspname = 'pg_catalog' then t.typname::text
            else format('%I.%I', tn.nspname, t.typname) end,
       case when e.oid is null then null
            when en.nspname = 'pg_catalog' then e.typname::text
            else format('%I.%I', en.nspname, e.typname) end
  from col
  join pg_type t on t.oid = col.typ
  join pg_namespace tn on tn.oid = t.typnamespace
  left join pg_type e on e.oid = t.typelem and e.typarray = t.oid
  left join pg_namespace en on en.oid = e.typnamespace
 where t.typtype <> 'd'
 order by col.attnum
"#;

/// Whether values of a key type compare by collation: those are compared
/// under `collate "C"` so both sides order them the same, whatever each
/// database's default collation.
fn collatable(type_name: &str) -> bool {
    let t = type_name.trim_start_matches("pg_catalog.");
    t == "text"
        || t == "name"
        || t == "citext"
        || t.ends_with(".citext")
        || t.starts_with("character")
}

/// The key column as compared and ordered, qualified by the table's alias
/// `src` (an unqualified `order by id` would sort the `id::text` output
/// column instead).
fn key_expr(pk: &(String, String)) -> String {
    if collatable(&pk.1) {
        format!("src.{} collate \"C\"", quote_ident(&pk.0))
    } else {
        format!("src.{}", quote_ident(&pk.0))
    }
}

/// `lo <= key and key < hi` with `$1`, `$2` for the bounds that are set
/// (`true` when neither is), and the values to bind in order.
fn range_predicate<'a>(
    pk: &(String, String),
    lo: Option<&'a str>,
    hi: Option<&'a str>,
) -> (String, Vec<&'a str>) {
    let key = key_expr(pk);
    let mut clauses = Vec::new();
    let mut binds = Vec::new();
    if let Some(lo) = lo {
        binds.push(lo);
        clauses.push(format!("{key} >= ${}::text::{}", binds.len(), pk.1));
    }
    if let Some(hi) = hi {
        binds.push(hi);
        clauses.push(format!("{key} < ${}::text::{}", binds.len(), pk.1));
    }
    if clauses.is_empty() {
        ("true".to_string(), binds)
    } else {
        (clauses.join(" and "), binds)
    }
}

/// The first field of a record's text form (`(300)`, `("a,b",2)`, `(,x)`):
/// `None` for NULL (an empty unquoted field) or a record without fields.
fn first_record_field(record: &str) -> Option<String> {
    let inner = record.strip_prefix('(')?;
    let mut chars = inner.chars().peekable();
    if chars.peek() == Some(&'"') {
        chars.next();
        let mut out = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    out.push('"');
                }
                '"' => return Some(out),
                '\\' => {
                    if let Some(escaped) = chars.next() {
                        out.push(escaped);
                    }
                }
                other => out.push(other),
            }
        }
        Some(out)
    } else {
        let field: String = chars.take_while(|&c| c != ',' && c != ')').collect();
        if field.is_empty() { None } else { Some(field) }
    }
}

/// One line per catalog item of the user schemas; `$1` is the schemas left
/// out. Run under [`STABLE_TEXT_SETTINGS`] (search path `pg_catalog`), so
/// every name in expressions and types is schema-qualified.
const SCHEMA_TEXT_SQL: &str = r#"
with ns as (
  select n.oid, n.nspname, n.nspacl, n.nspowner
    from pg_namespace n
   where n.nspname <> all($1::text[])
     and n.nspname not like 'pg\_%'
     and not exists (select 1 from pg_depend d
                      where d.classid = 'pg_namespace'::regclass and d.objid = n.oid
                        and d.deptype = 'e')
),
rel as (
  select c.oid, c.relname, c.relkind, c.relrowsecurity, c.relforcerowsecurity,
         c.relpersistence, c.relispartition, c.relpartbound, c.reloptions, c.relacl,
         c.relowner, c.relreplident, format('%I.%I', ns.nspname, c.relname) as qname
    from pg_class c
    join ns on ns.oid = c.relnamespace
   where not exists (select 1 from pg_depend d
                      where d.classid = 'pg_class'::regclass and d.objid = c.oid
                        and d.deptype = 'e')
),
-- Tables of the schemas Supabase manages that apps attach their own objects
-- to (a trigger on auth.users, a policy on storage.objects): those objects
-- are compared; the platform's own are not (they differ between versions).
mrel as (
  select c.oid, c.relowner, c.relacl, format('%I.%I', n.nspname, c.relname) as qname
    from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
   where n.nspname in ('auth', 'storage', 'realtime') and c.relkind in ('r', 'p')
),
fn as (
  select p.oid, p.prokind, p.proacl, p.proowner, p.prolang, p.provolatile, p.prosecdef,
         p.proisstrict, p.proleakproof, p.proparallel, p.proconfig, p.prosrc,
         format('%I.%I(%s)', ns.nspname, p.proname,
                pg_get_function_identity_arguments(p.oid)) as sig
    from pg_proc p
    join ns on ns.oid = p.pronamespace
   where not exists (select 1 from pg_depend d
                      where d.classid = 'pg_proc'::regclass and d.objid = p.oid
                        and d.deptype in ('e', 'i'))
),
typ as (
  select t.oid, t.typtype, t.typrelid, t.typbasetype, t.typtypmod, t.typnotnull,
         t.typdefault, format('%I.%I', ns.nspname, t.typname) as qname
    from pg_type t
    join ns on ns.oid = t.typnamespace
   where t.typtype in ('b', 'c', 'd', 'e', 'r')
     and not exists (select 1 from pg_type e where e.typarray = t.oid)
     and (t.typtype <> 'c'
          or (select c.relkind from pg_class c where c.oid = t.typrelid) = 'c')
     and not exists (select 1 from pg_depend d
                      where d.classid = 'pg_type'::regclass and d.objid = t.oid
                        and d.deptype = 'e')
)
select format('schema %I', ns.nspname) from ns
union all
select format('grant schema %I %s', ns.nspname, a.item::text)
  from ns, unnest(coalesce(ns.nspacl, acldefault('n', ns.nspowner))) as a(item)
 where a.item::text not like 'cutover\_repl\_%'
union all
select format('table %s%s%s rls %s force %s%s%s', rel.qname,
              case rel.relkind when 'p' then ' partitioned' when 'f' then ' foreign' else '' end,
              case rel.relpersistence when 'u' then ' unlogged' else '' end,
              case when rel.relrowsecurity then 'on' else 'off' end,
              case when rel.relforcerowsecurity then 'on' else 'off' end,
              case when rel.relispartition
                   then ' partition of '
                        || (select format('%I.%I', pn.nspname, pc.relname)
                              from pg_inherits i
                              join pg_class pc on pc.oid = i.inhparent
                              join pg_namespace pn on pn.oid = pc.relnamespace
                             where i.inhrelid = rel.oid limit 1)
                        || ' ' || pg_get_expr(rel.relpartbound, rel.oid)
                   else '' end,
              case when rel.reloptions is not null
                   then ' with (' || array_to_string(rel.reloptions, ', ') || ')' else '' end)
         || case rel.relreplident when 'f' then ' replica identity full'
                                  when 'n' then ' replica identity nothing'
                                  when 'i' then ' replica identity index' else '' end
  from rel where rel.relkind in ('r', 'p', 'f')
union all
select format('column %s.%I %s%s%s%s%s', rel.qname, a.attname,
              format_type(a.atttypid, a.atttypmod),
              case when a.attcollation <> 0 and a.attcollation <> t.typcollation
                   then (select format(' collate %I.%I', cn.nspname, co.collname)
                           from pg_collation co
                           join pg_namespace cn on cn.oid = co.collnamespace
                          where co.oid = a.attcollation)
                   else '' end,
              case when a.attnotnull then ' not null' else '' end,
              case a.attidentity when 'a' then ' generated always as identity'
                                 when 'd' then ' generated by default as identity'
                                 else '' end,
              case when a.attgenerated = 's'
                   then ' generated always as (' || pg_get_expr(ad.adbin, ad.adrelid) || ') stored'
                   when ad.adbin is not null
                   then ' default ' || pg_get_expr(ad.adbin, ad.adrelid)
                   else '' end)
  from rel
  join pg_attribute a on a.attrelid = rel.oid and a.attnum > 0 and not a.attisdropped
  join pg_type t on t.oid = a.atttypid
  left join pg_attrdef ad on ad.adrelid = a.attrelid and ad.adnum = a.attnum
 where rel.relkind in ('r', 'p', 'f')
union all
select format('constraint %s %I %s', rel.qname, con.conname, pg_get_constraintdef(con.oid))
       || coalesce(' comment ' || quote_literal(obj_description(con.oid, 'pg_constraint')), '')
  from pg_constraint con join rel on rel.oid = con.conrelid
union all
select format('constraint domain %s %I %s', typ.qname, con.conname, pg_get_constraintdef(con.oid))
  from pg_constraint con join typ on typ.oid = con.contypid
union all
select format('index %s %s%s%s%s%s', ir.qname, pg_get_indexdef(ix.indexrelid),
              case when not ix.indisvalid then ' (invalid)' else '' end,
              case when ix.indisreplident then ' replica identity' else '' end,
              case when ix.indisclustered then ' clustered' else '' end,
              coalesce(' comment ' || quote_literal(obj_description(ix.indexrelid, 'pg_class')), ''))
  from pg_index ix
  join rel ir on ir.oid = ix.indexrelid
union all
select format('%s %s%s language %s %s%s%s%s parallel %s%s md5 %s',
              case fn.prokind when 'p' then 'procedure' when 'a' then 'aggregate'
                              when 'w' then 'window function' else 'function' end,
              fn.sig,
              coalesce(' returns ' || pg_get_function_result(fn.oid), ''),
              (select l.lanname from pg_language l where l.oid = fn.prolang),
              case fn.provolatile when 'i' then 'immutable' when 's' then 'stable'
                                  else 'volatile' end,
              case when fn.prosecdef then ' security definer' else '' end,
              case when fn.proisstrict then ' strict' else '' end,
              case when fn.proleakproof then ' leakproof' else '' end,
              case fn.proparallel when 's' then 'safe' when 'r' then 'restricted'
                                  else 'unsafe' end,
              case when fn.proconfig is not null
                   then ' set ' || array_to_string(fn.proconfig, ', ') else '' end,
              md5(case when fn.prokind in ('f', 'p') then pg_get_functiondef(fn.oid)
                       else fn.prosrc end))
  from fn
union all
select format('trigger %s %I %s%s', rel.qname, tg.tgname, pg_get_triggerdef(tg.oid),
              case tg.tgenabled when 'D' then ' (disabled)' when 'R' then ' (enabled replica)'
                                when 'A' then ' (enabled always)' else '' end)
  from pg_trigger tg join rel on rel.oid = tg.tgrelid
 where not tg.tgisinternal and tg.tgname <> 'cutover_write_freeze'
union all
select format('policy %s %I %s for %s to %s%s%s', rel.qname, pol.polname,
              case when pol.polpermissive then 'permissive' else 'restrictive' end,
              case pol.polcmd when 'r' then 'select' when 'a' then 'insert'
                              when 'w' then 'update' when 'd' then 'delete' else 'all' end,
              (select string_agg(r.name, ', ' order by r.name collate "C")
                 from (select case when x = 0 then 'public'
                                   else quote_ident(pg_get_userbyid(x)) end as name
                         from unnest(pol.polroles) as x) r),
              coalesce(' using (' || pg_get_expr(pol.polqual, pol.polrelid) || ')', ''),
              coalesce(' with check (' || pg_get_expr(pol.polwithcheck, pol.polrelid) || ')', ''))
  from pg_policy pol join rel on rel.oid = pol.polrelid
union all
select format('%s %s%s md5 %s',
              case rel.relkind when 'm' then 'materialized view' else 'view' end,
              rel.qname,
              case when rel.reloptions is not null
                   then ' with (' || array_to_string(rel.reloptions, ', ') || ')' else '' end,
              md5(pg_get_viewdef(rel.oid)))
  from rel where rel.relkind in ('v', 'm')
union all
select case typ.typtype
         when 'e' then format('type %s enum (%s)', typ.qname,
                              (select string_agg(quote_literal(e.enumlabel), ', '
                                                 order by e.enumsortorder)
                                 from pg_enum e where e.enumtypid = typ.oid))
         when 'c' then format('type %s composite (%s)', typ.qname,
                              (select string_agg(format('%I %s', a.attname,
                                                        format_type(a.atttypid, a.atttypmod)),
                                                 ', ' order by a.attnum)
                                 from pg_attribute a
                                where a.attrelid = typ.typrelid and a.attnum > 0
                                  and not a.attisdropped))
         when 'd' then format('domain %s %s%s%s', typ.qname,
                              format_type(typ.typbasetype, typ.typtypmod),
                              case when typ.typnotnull then ' not null' else '' end,
                              coalesce(' default ' || typ.typdefault, ''))
         when 'r' then format('type %s range (%s)', typ.qname,
                              (select format_type(r.rngsubtype, null)
                                 from pg_range r where r.rngtypid = typ.oid))
         else format('type %s base', typ.qname) end
  from typ
union all
select format('sequence %s %s increment %s min %s max %s start %s cache %s%s%s', rel.qname,
              format_type(s.seqtypid, null), s.seqincrement, s.seqmin, s.seqmax, s.seqstart,
              s.seqcache, case when s.seqcycle then ' cycle' else ' no cycle' end,
              coalesce((select format(' owned by %I.%I.%I', tn.nspname, tc.relname, ta.attname)
                          from pg_depend d
                          join pg_class tc on tc.oid = d.refobjid
                          join pg_namespace tn on tn.oid = tc.relnamespace
                          join pg_attribute ta on ta.attrelid = d.refobjid
                                              and ta.attnum = d.refobjsubid
                         where d.classid = 'pg_class'::regclass and d.objid = rel.oid
                           and d.refclassid = 'pg_class'::regclass and d.refobjsubid > 0
                           and d.deptype in ('a', 'i')
                         limit 1), ''))
  from pg_sequence s join rel on rel.oid = s.seqrelid
union all
select format('grant %s %s %s',
              case rel.relkind when 'S' then 'sequence' when 'v' then 'view'
                               when 'm' then 'materialized view' else 'table' end,
              rel.qname, a.item::text)
  from rel,
       unnest(coalesce(rel.relacl,
                       acldefault((case rel.relkind when 'S' then 's' else 'r' end)::"char",
                                  rel.relowner))) as a(item)
 where rel.relkind in ('r', 'p', 'f', 'v', 'm', 'S')
   and a.item::text not like 'cutover\_repl\_%'
union all
select format('grant column %s.%I %s', rel.qname, att.attname, a.item::text)
  from rel
  join pg_attribute att on att.attrelid = rel.oid and att.attnum > 0 and not att.attisdropped
  cross join unnest(att.attacl) as a(item)
 where att.attacl is not null
union all
select format('grant %s %s %s', case fn.prokind when 'p' then 'procedure' else 'function' end,
              fn.sig, a.item::text)
  from fn, unnest(coalesce(fn.proacl, acldefault('f', fn.proowner))) as a(item)
union all
-- The app's objects on the platform's tables: triggers calling the app's
-- functions, every policy, and privileges the app granted (grantor neither
-- the owner nor a platform admin).
select format('trigger %s %I %s%s', mrel.qname, tg.tgname, pg_get_triggerdef(tg.oid),
              case tg.tgenabled when 'D' then ' (disabled)' when 'R' then ' (enabled replica)'
                                when 'A' then ' (enabled always)' else '' end)
  from pg_trigger tg
  join mrel on mrel.oid = tg.tgrelid
  join pg_proc tp on tp.oid = tg.tgfoid
  join pg_namespace tpn on tpn.oid = tp.pronamespace
 where not tg.tgisinternal
   and tpn.nspname not in ('auth', 'storage', 'realtime', 'extensions', 'pg_catalog')
union all
select format('policy %s %I %s for %s to %s%s%s', mrel.qname, pol.polname,
              case when pol.polpermissive then 'permissive' else 'restrictive' end,
              case pol.polcmd when 'r' then 'select' when 'a' then 'insert'
                              when 'w' then 'update' when 'd' then 'delete' else 'all' end,
              (select string_agg(r.name, ', ' order by r.name collate "C")
                 from (select case when x = 0 then 'public'
                                   else quote_ident(pg_get_userbyid(x)) end as name
                         from unnest(pol.polroles) as x) r),
              coalesce(' using (' || pg_get_expr(pol.polqual, pol.polrelid) || ')', ''),
              coalesce(' with check (' || pg_get_expr(pol.polwithcheck, pol.polrelid) || ')', ''))
  from pg_policy pol join mrel on mrel.oid = pol.polrelid
union all
select format('grant table %s %s', mrel.qname, a.item::text)
  from mrel, unnest(mrel.relacl) as a(item), aclexplode(array[a.item]) as x
 where x.grantor <> mrel.relowner
   and pg_get_userbyid(x.grantor) not in ('supabase_admin', 'supabase_auth_admin',
                                          'supabase_storage_admin', 'supabase_realtime_admin')
union all
-- Which tables each publication streams (Realtime's `supabase_realtime`
-- above all); cutover's own replication publications are not the app's.
select format('publication %I table %I.%I', p.pubname, pt.schemaname, pt.tablename)
  from pg_publication p
  join pg_publication_tables pt on pt.pubname = p.pubname
 where p.pubname not like 'cutover\_%'
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_fields() {
        assert_eq!(first_record_field("(300)"), Some("300".into()));
        assert_eq!(first_record_field("(,x)"), None);
        assert_eq!(first_record_field("()"), None);
        assert_eq!(first_record_field("(\"\",1)"), Some(String::new()));
        assert_eq!(
            first_record_field(r#"("a ""b"", \\c",2)"#),
            Some(r#"a "b", \c"#.into())
        );
        assert_eq!(first_record_field("(t,f)"), Some("t".into()));
    }

    fn col(name: &str, base_type: &str) -> HashColumn {
        HashColumn {
            name: name.into(),
            base_type: base_type.into(),
            element_type: None,
        }
    }

    fn array(name: &str, element: &str) -> HashColumn {
        HashColumn {
            name: name.into(),
            base_type: format!("_{element}"),
            element_type: Some(element.into()),
        }
    }

    #[test]
    fn text_hash_sorts_columns() {
        assert_eq!(
            RowHash::text(&["b".into(), "a".into(), "b".into()]).sql(),
            "hashtextextended(row(src.\"a\", src.\"b\")::text, 0)"
        );
    }

    #[test]
    fn typed_hash_expression() {
        let columns = [
            col("id", "int8"),
            col("amount", "numeric"),
            col("name", "text"),
            col("created_at", "timestamptz"),
            col("paid", "bool"),
            col("photo", "bytea"),
        ];
        let m = |p: usize| null_mark(p);
        assert_eq!(
            RowHash::new(&columns, 150_004).sql(),
            format!(
                "hashint4extended(0, \
                 coalesce(hashtextextended((src.\"amount\"::text) collate \"C\", 1), {}) # \
                 coalesce(hashint4extended((src.\"id\" >> 32)::int4, hashint8extended(src.\"id\", 3)), {}) # \
                 coalesce(hashtextextended(src.\"name\" collate \"C\", 4), {}) # \
                 coalesce(hashint4extended(src.\"paid\"::int4, 5), {}) # \
                 hash_array_extended(array[timestamptz_send(src.\"created_at\"), src.\"photo\"::bytea], 0))",
                m(1),
                m(3),
                m(4),
                m(5)
            )
        );
        // Column order and duplicates do not matter.
        let mut shuffled = columns.to_vec();
        shuffled.reverse();
        shuffled.push(col("name", "text"));
        assert_eq!(
            RowHash::new(&shuffled, 140_000),
            RowHash::new(&columns, 170_000)
        );
        // Below 14 (either side): the row's text, as before.
        let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        assert_eq!(RowHash::new(&columns, 130_011), RowHash::text(&names));
        assert_eq!(
            RowHash::new(&[], 150_000).sql(),
            "hashint4extended(0, 0::int8)"
        );
        // No array when no column needs one; identifiers quoted.
        assert_eq!(
            RowHash::new(&[col("we\"ird", "uuid")], 150_000).sql(),
            format!(
                "hashint4extended(0, coalesce(uuid_hash_extended(src.\"we\"\"ird\", 1), {}))",
                m(1)
            )
        );
    }

    #[test]
    fn column_hashes() {
        let hashed = |c: HashColumn| column_hash(&c, "src.\"c\"", 7);
        let term = |s: &str| ColumnHash::Term(s.to_string());
        let bytes = |s: &str| ColumnHash::Bytes(s.to_string());
        for t in ["text", "varchar", "name"] {
            assert_eq!(
                hashed(col("c", t)),
                term("hashtextextended(src.\"c\" collate \"C\", 7)")
            );
        }
        for (t, f) in [
            ("int2", "hashint2extended"),
            ("int4", "hashint4extended"),
            ("oid", "hashoidextended"),
            ("uuid", "uuid_hash_extended"),
        ] {
            assert_eq!(hashed(col("c", t)), term(&format!("{f}(src.\"c\", 7)")));
        }
        for t in ["bool", "char"] {
            assert_eq!(
                hashed(col("c", t)),
                term("hashint4extended(src.\"c\"::int4, 7)")
            );
        }
        assert_eq!(
            hashed(col("c", "int8")),
            term("hashint4extended((src.\"c\" >> 32)::int4, hashint8extended(src.\"c\", 7))")
        );
        assert_eq!(
            hashed(col("c", "date")),
            term(
                "hashint4extended(case when isfinite(src.\"c\") then src.\"c\" - date '2000-01-01' \
                 when src.\"c\" > date '2000-01-01' then 2147483647 \
                 when src.\"c\" < date '2000-01-01' then (-2147483648)::int4 end, 7)"
            )
        );
        for (t, b) in [
            ("timestamp", "timestamp_send(src.\"c\")"),
            ("timestamptz", "timestamptz_send(src.\"c\")"),
            ("bytea", "src.\"c\"::bytea"),
            ("inet", "inet_send(src.\"c\")"),
            ("cidr", "cidr_send(src.\"c\")"),
            ("macaddr", "macaddr_send(src.\"c\")"),
            ("macaddr8", "macaddr8_send(src.\"c\")"),
            ("int4range", "range_send(src.\"c\")"),
            ("daterange", "range_send(src.\"c\")"),
        ] {
            assert_eq!(hashed(col("c", t)), bytes(b), "{t}");
        }
        assert_eq!(
            hashed(array("c", "text")),
            term(
                "hash_array_extended(src.\"c\" collate \"C\", 7) # \
                 coalesce(hashtextextended(array_dims(src.\"c\"), 7), 0)"
            )
        );
        assert_eq!(
            hashed(array("c", "int4")),
            term(
                "hash_array_extended(src.\"c\", 7) # \
                 coalesce(hashtextextended(array_dims(src.\"c\"), 7), 0)"
            )
        );
        assert_eq!(
            hashed(col("c", "bpchar")),
            term("hashtextextended((textin(bpcharout(src.\"c\"))) collate \"C\", 7)")
        );
        // Types whose hash misses changes a client sees, types without a
        // hash, user and extension types, unknown types: their text.
        for c in [
            col("c", "numeric"),
            col("c", "float4"),
            col("c", "float8"),
            col("c", "interval"),
            col("c", "time"),
            col("c", "timetz"),
            col("c", "money"),
            col("c", "jsonb"),
            col("c", "json"),
            col("c", "xml"),
            col("c", "point"),
            col("c", "int8range"),
            col("c", "tstzrange"),
            col("c", "numrange"),
            col("c", "regclass"),
            col("c", "public.invoice_status"),
            col("c", "extensions.citext"),
            col("c", "public.text"),
            array("c", "numeric"),
            array("c", "int8"),
            array("c", "jsonb"),
            array("c", "public.mood"),
            HashColumn::as_text("c"),
        ] {
            assert_eq!(
                hashed(c.clone()),
                term("hashtextextended((src.\"c\"::text) collate \"C\", 7)"),
                "{c:?}"
            );
        }
    }

    #[test]
    fn null_marks_differ() {
        let marks: Vec<i64> = (1..=2000).map(null_mark).collect();
        assert!(marks.iter().all(|&m| m > 0 && m > i64::from(i32::MAX)));
        let distinct: std::collections::BTreeSet<i64> = marks.iter().copied().collect();
        assert_eq!(distinct.len(), marks.len());
    }

    #[test]
    fn range_predicates() {
        let pk = ("id".to_string(), "bigint".to_string());
        assert_eq!(range_predicate(&pk, None, None), ("true".into(), vec![]));
        assert_eq!(
            range_predicate(&pk, Some("5"), Some("9")),
            (
                "src.\"id\" >= $1::text::bigint and src.\"id\" < $2::text::bigint".into(),
                vec!["5", "9"]
            )
        );
        let text_pk = ("code".to_string(), "text".to_string());
        assert_eq!(
            range_predicate(&text_pk, None, Some("m")).0,
            "src.\"code\" collate \"C\" < $1::text::text"
        );
    }

    #[test]
    fn row_hash_diff() {
        let s = vec![
            ("1".to_string(), "a".to_string()),
            ("2".into(), "b".into()),
            ("10".into(), "c".into()),
        ];
        let t = vec![
            ("2".to_string(), "x".to_string()),
            ("3".into(), "d".into()),
            ("10".into(), "c".into()),
        ];
        let d = diff_row_hashes(&s, &t, 100);
        assert_eq!(
            d,
            vec![
                KeyDiff {
                    key: "1".into(),
                    kind: KeyDiffKind::MissingOnTarget
                },
                KeyDiff {
                    key: "2".into(),
                    kind: KeyDiffKind::Different
                },
                KeyDiff {
                    key: "3".into(),
                    kind: KeyDiffKind::ExtraOnTarget
                },
            ]
        );
        // Cut at 2 rows: key 10 of the source was seen, the target's was not.
        let d = diff_row_hashes(&s, &t[..2], 2);
        assert!(d.iter().all(|k| k.key != "10"));
    }
}
