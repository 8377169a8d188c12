//! Security lints: the problems Supabase's database advisor reports, as SQL
//! over the database connection.
//!
//! The advisor runs behind an HTTP endpoint cutover does not call; these
//! queries are our own, modelled on the advisor's lint list and ids, so the
//! same ids can be accepted in the manifest and compared between the two
//! environments. Each query reads the catalog only; objects owned by an
//! extension are left out, as the advisor leaves them out.

use sqlx::Row;

use super::{Database, PgError};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LintLevel {
    /// Data readable or writable by anyone with the anon key: blocks `cutover`.
    Error,
    /// Worth fixing, not blocking.
    Warn,
}

impl LintLevel {
    /// `ERROR` or `WARN`, as the advisor writes it.
    pub fn word(self) -> &'static str {
        match self {
            LintLevel::Error => "ERROR",
            LintLevel::Warn => "WARN",
        }
    }
}

/// One problem found by a lint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct LintFinding {
    /// The lint's stable id, e.g. `rls_disabled_in_public`.
    pub lint: &'static str,
    /// Its level.
    pub level: LintLevel,
    /// The object, as `[[lints.accept]] object` names it: `schema.name`,
    /// `schema.function(args)` for functions, the extension's name.
    pub object: String,
    /// What exactly is wrong with it.
    pub detail: String,
    /// How to fix it.
    pub fix: String,
}

/// The lints, their level and fix; the query returns `(object, detail)` rows
/// and reads the exposed schemas as `$1`.
struct Lint {
    id: &'static str,
    level: LintLevel,
    fix: &'static str,
    /// Lowest `server_version_num` the lint means anything on.
    min_version: i32,
    sql: &'static str,
}

/// Leaves out objects an extension owns (`pg_depend.deptype = 'e'`).
macro_rules! not_extension_owned {
    ($oid:literal) => {
        concat!(
            "not exists (select 1 from pg_depend d where d.objid = ",
            $oid,
            " and d.deptype = 'e')"
        )
    };
}

const LINTS: &[Lint] = &[
    Lint {
        id: "rls_disabled_in_public",
        level: LintLevel::Error,
        fix: "alter table … enable row level security; then add policies for the roles that need it",
        min_version: 0,
        sql: concat!(
            "select format('%I.%I', n.nspname, c.relname) as object,
                    'row level security is disabled: anyone with the anon key may read and write every row the grants allow' as detail
               from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where c.relkind in ('r', 'p') and not c.relispartition
                and not c.relrowsecurity
                and n.nspname = any($1)
                and ",
            not_extension_owned!("c.oid"),
            " order by 1"
        ),
    },
    Lint {
        id: "policy_allows_all_to_anon",
        level: LintLevel::Error,
        fix: "restrict the policy (a USING / WITH CHECK that is not true, e.g. auth.uid() = user_id) or grant it to authenticated only",
        min_version: 0,
        // A permissive policy for anon (or PUBLIC, oid 0) on ALL or a write
        // command whose expressions are absent or literally true.
        sql: concat!(
            "select format('%I.%I', n.nspname, c.relname) as object,
                    format('policy %I FOR %s TO %s allows every row (%s)', p.polname,
                           case p.polcmd when '*' then 'ALL' when 'a' then 'INSERT'
                                         when 'w' then 'UPDATE' when 'd' then 'DELETE' end,
                           case when 0 = any(p.polroles) then 'public' else 'anon' end,
                           case when p.polcmd = 'a' then 'WITH CHECK ' || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), 'absent')
                                else 'USING ' || coalesce(pg_get_expr(p.polqual, p.polrelid), 'absent') end) as detail
               from pg_policy p
               join pg_class c on c.oid = p.polrelid
               join pg_namespace n on n.oid = c.relnamespace
              where p.polpermissive
                and p.polcmd in ('*', 'a', 'w', 'd')
                and (0 = any(p.polroles)
                     or exists (select 1 from pg_roles r where r.rolname = 'anon' and r.oid = any(p.polroles)))
                and (p.polcmd = 'a' or p.polqual is null or pg_get_expr(p.polqual, p.polrelid) = 'true')
                and (p.polwithcheck is null or pg_get_expr(p.polwithcheck, p.polrelid) = 'true')
                and n.nspname = any($1)
                and ",
            not_extension_owned!("c.oid"),
            " order by 1, 2"
        ),
    },
    Lint {
        id: "function_search_path_mutable",
        level: LintLevel::Warn,
        fix: "alter function … set search_path = '' (and qualify the names it uses), or set search_path = public, pg_temp",
        min_version: 0,
        sql: concat!(
            "select format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)) as object,
                    'SECURITY DEFINER without a fixed search_path: a caller can make it resolve names to their own objects' as detail
               from pg_proc p join pg_namespace n on n.oid = p.pronamespace
              where p.prosecdef
                and not exists (select 1 from unnest(coalesce(p.proconfig, '{}'::text[])) s
                                 where s like 'search_path=%')
                and n.nspname = any($1)
                and ",
            not_extension_owned!("p.oid"),
            " order by 1"
        ),
    },
    Lint {
        id: "security_definer_view",
        level: LintLevel::Error,
        fix: "alter view … set (security_invoker = true), so the querying role's RLS and grants apply",
        // security_invoker exists from PostgreSQL 15 on.
        min_version: 150000,
        sql: concat!(
            "select format('%I.%I', n.nspname, c.relname) as object,
                    'view runs with its owner''s rights (not security_invoker): it bypasses the RLS of the tables it reads' as detail
               from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where c.relkind = 'v'
                and not exists (select 1 from unnest(coalesce(c.reloptions, '{}'::text[])) o
                                 where lower(o) in ('security_invoker=true', 'security_invoker=on',
                                                    'security_invoker=1', 'security_invoker=yes'))
                and n.nspname = any($1)
                and ",
            not_extension_owned!("c.oid"),
            " order by 1"
        ),
    },
    Lint {
        id: "auth_users_exposed",
        level: LintLevel::Error,
        fix: "drop the view or move it out of the exposed schemas; expose a table of your own with the columns the app needs, under RLS",
        min_version: 0,
        sql: concat!(
            "select distinct format('%I.%I', n.nspname, c.relname) as object,
                    'view reads auth.users (emails, phone numbers, metadata) from an exposed schema' as detail
               from pg_class c join pg_namespace n on n.oid = c.relnamespace
               join pg_rewrite r on r.ev_class = c.oid
               join pg_depend d on d.classid = 'pg_rewrite'::regclass and d.objid = r.oid
              where c.relkind in ('v', 'm')
                and d.refclassid = 'pg_class'::regclass
                and d.refobjid = to_regclass('auth.users')
                and n.nspname = any($1)
                and ",
            not_extension_owned!("c.oid"),
            " order by 1"
        ),
    },
    Lint {
        id: "extension_in_public",
        level: LintLevel::Warn,
        fix: "alter extension … set schema extensions (or drop and create it with schema extensions)",
        min_version: 0,
        sql: "select e.extname::text as object,
                     format('extension %s %s is installed in public', e.extname, e.extversion) as detail
                from pg_extension e join pg_namespace n on n.oid = e.extnamespace
               where n.nspname = 'public' and $1::text[] is not null
               order by 1",
    },
    Lint {
        id: "no_primary_key",
        level: LintLevel::Warn,
        fix: "add a primary key (alter table … add primary key (…)); replication, the Data API's updates and row comparisons need one",
        min_version: 0,
        sql: concat!(
            "select format('%I.%I', n.nspname, c.relname) as object,
                    'table has no primary key' as detail
               from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where c.relkind in ('r', 'p') and not c.relispartition
                and not exists (select 1 from pg_constraint k
                                 where k.conrelid = c.oid and k.contype = 'p')
                and n.nspname = any($1)
                and ",
            not_extension_owned!("c.oid"),
            " order by 1"
        ),
    },
];

/// The ids of every lint [`Database::security_lints`] runs, in order.
pub fn lint_ids() -> Vec<&'static str> {
    LINTS.iter().map(|l| l.id).collect()
}

impl Database {
    /// Runs every security lint against the objects of `exposed_schemas`,
    /// in one read-only transaction; findings sorted by level, lint, object.
    pub async fn security_lints(
        &self,
        exposed_schemas: &[String],
    ) -> Result<Vec<LintFinding>, PgError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| self.error("starting the security lints", e))?;
        sqlx::raw_sql(&self.read_transaction_sql())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.error("starting the security lints", e))?;
        let version: i32 = sqlx::query_scalar("select current_setting('server_version_num')::int")
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.error("reading the server version", e))?;
        let mut findings = Vec::new();
        for lint in LINTS.iter().filter(|l| version >= l.min_version) {
            let rows = sqlx::query(lint.sql)
                .bind(exposed_schemas)
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| self.error(format!("running the security lint {}", lint.id), e))?;
            findings.extend(rows.into_iter().map(|r| LintFinding {
                lint: lint.id,
                level: lint.level,
                object: r.get("object"),
                detail: r.get("detail"),
                fix: lint.fix.to_string(),
            }));
        }
        tx.rollback()
            .await
            .map_err(|e| self.error("ending the security lints", e))?;
        findings.sort();
        findings.dedup();
        Ok(findings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lint_is_one_the_manifest_accepts() {
        assert_eq!(lint_ids(), crate::manifest::KNOWN_LINTS);
    }

    #[test]
    fn errors_sort_before_warnings() {
        assert!(LintLevel::Error < LintLevel::Warn);
    }
}
