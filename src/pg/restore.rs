//! Restores of `pg_dump -Fc` archives as a role that is not a superuser, as
//! Supabase's `postgres` is.
//!
//! Rows load with triggers off (`session_replication_role = replica`), as
//! `data` loads them. Hosted Supabase lets `postgres` `SET` that parameter
//! inside a session (supautils, or `GRANT SET ON PARAMETER`) but refuses it
//! as a startup option, so it cannot come through `PGOPTIONS`: pg_restore
//! writes the archive as SQL (`--file=-`) into `psql`, whose first command is
//! `SET session_replication_role = replica`.
//!
//! Before anything runs, [`Database::replica_role`] checks that the role may
//! set it, and [`Database::restore_left_out`] reads the server's catalogs
//! (the role's attributes, the extensions it may create, the owners of what
//! already exists) to name the archive's entries the role cannot restore;
//! those are left out of the `--use-list` and reported, instead of failing
//! the restore or warning about the same errors at every run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::dump::{ToolConnection, ToolError, stderr_tail};
use super::{Database, PgError};
use crate::redact::Redactor;

/// The first command of every restore session.
pub const SET_REPLICA: &str = "SET session_replication_role = replica";

/// Where `pg_restore` reads an archive from.
pub enum Archive<'a> {
    /// A plain `pg_dump -Fc` file.
    Plain(&'a Path),
    /// An age-encrypted one, decrypted on the fly with this identity.
    Encrypted(&'a Path, &'a age::x25519::Identity),
}

impl Archive<'_> {
    fn path(&self) -> &Path {
        match self {
            Archive::Plain(p) | Archive::Encrypted(p, _) => p,
        }
    }
}

/// What a restore reported.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreOutcome {
    /// Statements that failed and were passed over ([`OnError::Continue`]).
    pub errors_ignored: u64,
    /// The end of the tools' stderr, redacted.
    pub stderr: String,
    /// How long it took.
    pub duration: Duration,
}

/// What psql does when a statement of the restore fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Stop at once (`ON_ERROR_STOP=1`); with `--single-transaction` the
    /// transaction is never committed, so nothing of the restore stays.
    Stop,
    /// Go on and count the failures (a restore check into a scratch database).
    Continue,
}

/// The task feeding an encrypted archive's plaintext to pg_restore; it ends
/// with the decryption error, if any.
type Feeder = tokio::task::JoinHandle<Option<String>>;

/// Starts `pg_restore` with `args` on `archive`, stdout piped. For an
/// encrypted archive, a task feeds it the plaintext through its stdin (never
/// the disk) and answers with the decryption error, if any.
fn start_pg_restore(
    archive: &Archive<'_>,
    args: &[String],
) -> Result<(tokio::process::Child, Option<Feeder>), ToolError> {
    let mut cmd = tokio::process::Command::new("pg_restore");
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match archive {
        Archive::Plain(p) => {
            cmd.arg(p);
        }
        Archive::Encrypted(..) => {
            cmd.stdin(Stdio::piped());
        }
    }
    let mut child = cmd.spawn().map_err(|e| {
        ToolError::new(format!("cannot run pg_restore: {e}"))
            .hint("install the PostgreSQL client tools so that pg_restore is on PATH")
    })?;
    let Archive::Encrypted(path, identity) = archive else {
        return Ok((child, None));
    };
    let mut stdin = child.stdin.take().expect("piped stdin");
    let (path, identity) = (path.to_path_buf(), (*identity).clone());
    let feeder = tokio::spawn(async move {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
        let reader = tokio::task::spawn_blocking(move || -> Result<(), String> {
            use std::io::Read;
            let file = std::fs::File::open(&path).map_err(|e| e.to_string())?;
            let decryptor = age::Decryptor::new_buffered(std::io::BufReader::new(file))
                .map_err(|e| e.to_string())?;
            let mut plain = decryptor
                .decrypt(std::iter::once(&identity as &dyn age::Identity))
                .map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = plain.read(&mut buf).map_err(|e| e.to_string())?;
                if n == 0 || tx.blocking_send(buf[..n].to_vec()).is_err() {
                    return Ok(());
                }
            }
        });
        while let Some(chunk) = rx.recv().await {
            if stdin.write_all(&chunk).await.is_err() {
                // pg_restore stopped reading (`--list` needs only the head).
                break;
            }
        }
        drop(stdin);
        // The reader stops at its next send instead of waiting for room.
        drop(rx);
        match reader.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(e.to_string()),
        }
    });
    Ok((child, Some(feeder)))
}

fn read_all(mut from: impl AsyncRead + Unpin + Send + 'static) -> tokio::task::JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = from.read_to_end(&mut buf).await;
        buf
    })
}

fn decrypt_error(path: &Path, e: &str) -> ToolError {
    ToolError::new(format!("cannot decrypt {}: {e}", path.display()))
        .hint("set CUTOVER_AGE_IDENTITY to the AGE-SECRET-KEY-1... identity matching one of the [backup] age_recipients the file was encrypted for")
}

/// The table of contents of `archive` (`pg_restore --list`).
pub async fn archive_list(archive: &Archive<'_>, redactor: &Redactor) -> Result<String, ToolError> {
    let (mut child, feeder) = start_pg_restore(archive, &["--list".to_string()])?;
    let stdout = read_all(child.stdout.take().expect("piped stdout"));
    let stderr = read_all(child.stderr.take().expect("piped stderr"));
    let status = child.wait().await;
    let decrypted = match feeder {
        Some(f) => f.await.unwrap_or_else(|e| Some(e.to_string())),
        None => None,
    };
    let (stdout, stderr) = (
        stdout.await.unwrap_or_default(),
        stderr.await.unwrap_or_default(),
    );
    if let Some(e) = decrypted {
        return Err(decrypt_error(archive.path(), &e));
    }
    match status {
        Ok(s) if s.success() => Ok(String::from_utf8_lossy(&stdout).into_owned()),
        other => Err(ToolError::new(format!(
            "pg_restore --list of {} failed ({}): {}",
            archive.path().display(),
            other
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string()),
            stderr_tail(&stderr, redactor)
        ))
        .hint("the message above is pg_restore's; is the file a `pg_dump -Fc` archive?")),
    }
}

/// Restores `archive` into the database of `conn`: `pg_restore --file=-
/// <args>` piped into `psql`, whose first command is [`SET_REPLICA`].
pub async fn restore_archive(
    conn: &ToolConnection,
    archive: &Archive<'_>,
    args: &[String],
    on_error: OnError,
    redactor: &Redactor,
) -> Result<RestoreOutcome, ToolError> {
    let started = Instant::now();
    let restore_args: Vec<String> = std::iter::once("--file=-".to_string())
        .chain(args.iter().cloned())
        .collect();
    let (mut pg_restore, feeder) = start_pg_restore(archive, &restore_args)?;
    let script: Stdio = pg_restore
        .stdout
        .take()
        .expect("piped stdout")
        .try_into()
        .map_err(|e| ToolError::new(format!("cannot pipe pg_restore into psql: {e}")))?;
    let restore_stderr = read_all(pg_restore.stderr.take().expect("piped stderr"));
    // The command (and with it this process's copy of the pipe) is dropped
    // once psql runs, so that pg_restore sees psql stop.
    let spawned = {
        let mut cmd = conn.command("psql");
        cmd.args(["-X", "-q", "--no-password", "-v"])
            .arg(match on_error {
                OnError::Stop => "ON_ERROR_STOP=1",
                OnError::Continue => "ON_ERROR_STOP=0",
            })
            .args(["-c", SET_REPLICA, "-c", "SET client_min_messages = warning"])
            .args(["-f", "-"])
            .arg(format!("--dbname={}", conn.tool_url()))
            .stdin(script);
        cmd.spawn()
    };
    let mut psql = match spawned {
        Ok(child) => child,
        Err(e) => {
            let _ = pg_restore.start_kill();
            return Err(ToolError::new(format!("cannot run psql: {e}"))
                .hint("install the PostgreSQL client tools so that psql is on PATH"));
        }
    };
    let psql_stderr = read_all(psql.stderr.take().expect("piped stderr"));
    let psql_status = psql.wait().await;
    let restore_status = pg_restore.wait().await;
    let decrypted = match feeder {
        Some(f) => f.await.unwrap_or_else(|e| Some(e.to_string())),
        None => None,
    };
    let psql_stderr = psql_stderr.await.unwrap_or_default();
    let restore_stderr = restore_stderr.await.unwrap_or_default();
    if let Some(e) = decrypted {
        return Err(decrypt_error(archive.path(), &e));
    }
    let errors = String::from_utf8_lossy(&psql_stderr)
        .lines()
        .filter(|l| l.contains("ERROR:"))
        .count() as u64;
    let psql_tail = stderr_tail(&psql_stderr, redactor);
    let code = |s: &std::io::Result<std::process::ExitStatus>| match s {
        Ok(s) => s.to_string(),
        Err(e) => e.to_string(),
    };
    let psql_ok = matches!(&psql_status, Ok(s) if s.success());
    if !psql_ok {
        return Err(ToolError::new(format!(
            "restoring {} stopped ({}): {psql_tail}",
            archive.path().display(),
            code(&psql_status)
        ))
        .hint("the message above is the server's, as psql reported it"));
    }
    if !matches!(&restore_status, Ok(s) if s.success()) {
        return Err(ToolError::new(format!(
            "pg_restore of {} failed ({}): {}",
            archive.path().display(),
            code(&restore_status),
            stderr_tail(&restore_stderr, redactor)
        ))
        .hint("the message above is pg_restore's"));
    }
    Ok(RestoreOutcome {
        errors_ignored: errors,
        stderr: psql_tail,
        duration: started.elapsed(),
    })
}

/// Writes a `--use-list` file holding `entries` minus `left_out`, in the
/// archive's order, at `path`.
pub fn write_use_list(
    path: &Path,
    entries: &[&TocEntry],
    left_out: &[LeftOut],
) -> std::io::Result<PathBuf> {
    let out: BTreeSet<&str> = left_out.iter().map(|l| l.entry.line.as_str()).collect();
    let text: String = entries
        .iter()
        .filter(|e| !out.contains(e.line.as_str()))
        .map(|e| format!("{}\n", e.line))
        .collect();
    std::fs::write(path, text)?;
    Ok(path.to_path_buf())
}

/// One line of an archive's table of contents (`pg_restore --list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TocEntry {
    /// The line as pg_restore printed it (what a `--use-list` file holds).
    pub line: String,
    /// The kind, e.g. `TABLE`, `TABLE DATA`, `FK CONSTRAINT`.
    pub desc: String,
    /// The schema (`-` for objects outside any schema).
    pub namespace: String,
    /// The object's name as pg_restore shows it: `customers`,
    /// `orders orders_pkey` (table and constraint), `filename(text)`,
    /// `TABLE users` (what a comment is on).
    pub tag: String,
    /// The role that owned it in the dumped database (empty when none).
    pub owner: String,
}

impl TocEntry {
    /// `KIND schema.name`, e.g. `EVENT TRIGGER pgrst_ddl_watch` or
    /// `TABLE public.orders`.
    pub fn describe(&self) -> String {
        if self.namespace == "-" {
            format!("{} {}", self.desc, self.tag)
        } else {
            format!("{} {}.{}", self.desc, self.namespace, self.tag)
        }
    }
}

/// Kinds of TOC entries whose name has more than one word, longest first.
const MULTI_WORD_KINDS: &[&str] = &[
    "PUBLICATION TABLES IN SCHEMA",
    "TEXT SEARCH CONFIGURATION",
    "TEXT SEARCH DICTIONARY",
    "MATERIALIZED VIEW DATA",
    "FOREIGN DATA WRAPPER",
    "TEXT SEARCH TEMPLATE",
    "TEXT SEARCH PARSER",
    "PROCEDURAL LANGUAGE",
    "SEQUENCE OWNED BY",
    "PUBLICATION TABLE",
    "MATERIALIZED VIEW",
    "CHECK CONSTRAINT",
    "OPERATOR FAMILY",
    "STATISTICS DATA",
    "OPERATOR CLASS",
    "SECURITY LABEL",
    "FK CONSTRAINT",
    "EVENT TRIGGER",
    "FOREIGN TABLE",
    "ACCESS METHOD",
    "LARGE OBJECT",
    "SEQUENCE SET",
    "TABLE ATTACH",
    "INDEX ATTACH",
    "ROW SECURITY",
    "USER MAPPING",
    "DEFAULT ACL",
    "SHELL TYPE",
    "TABLE DATA",
    "BLOB DATA",
];

/// Parses `pg_restore --list` output. pg_restore prints each entry as
/// `<id>; <catalog oid> <oid> <KIND> <schema> <name> <owner>`, the owner
/// empty (the line ending in a space) for objects without one.
pub fn toc_entries(list: &str) -> Vec<TocEntry> {
    let mut entries = Vec::new();
    for line in list.lines() {
        if line.trim_start().starts_with(';') {
            continue;
        }
        let Some((_, rest)) = line.split_once(';') else {
            continue;
        };
        // Skip the two oids.
        let mut rest = rest.trim_start();
        for _ in 0..2 {
            rest = rest
                .split_once(' ')
                .map(|(_, r)| r.trim_start())
                .unwrap_or("");
        }
        let desc = MULTI_WORD_KINDS
            .iter()
            .find(|k| rest.starts_with(&format!("{k} ")))
            .map(|k| k.to_string())
            .or_else(|| rest.split(' ').next().map(str::to_string))
            .unwrap_or_default();
        let Some(after_desc) = rest.get(desc.len() + 1..) else {
            continue;
        };
        let Some((namespace, tag_owner)) = after_desc.split_once(' ') else {
            continue;
        };
        let (tag, owner) = match tag_owner.strip_suffix(' ') {
            Some(tag) => (tag, ""),
            None => tag_owner.rsplit_once(' ').unwrap_or((tag_owner, "")),
        };
        if desc.is_empty() || tag.is_empty() {
            continue;
        }
        entries.push(TocEntry {
            line: line.to_string(),
            desc,
            namespace: namespace.to_string(),
            tag: tag.to_string(),
            owner: owner.to_string(),
        });
    }
    entries
}

/// The schemas that have a `SCHEMA` entry in an archive's table of contents,
/// plus `public`, which pg_dump never creates.
pub fn schemas_in_list(list: &str) -> Vec<String> {
    let mut schemas = vec!["public".to_string()];
    for entry in toc_entries(list) {
        if entry.desc == "SCHEMA" && !schemas.contains(&entry.tag) {
            schemas.push(entry.tag);
        }
    }
    schemas
}

/// Whether a role may set `session_replication_role`, as a restore needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRole {
    /// The role (`current_user`).
    pub role: String,
    /// The server's refusal, when it refused.
    pub refusal: Option<String>,
}

/// Where a restore goes, which decides what the role needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreInto {
    /// A database made for the restore, owned by the role, objects created
    /// without their owners (`--no-owner`): only what needs more than that
    /// (a superuser, an extension the role may not create) is left out.
    NewDatabase,
    /// An existing database whose objects the restore replaces (`--clean`):
    /// also left out is whatever exists there owned by a role this one
    /// cannot act as, because it may neither drop nor replace it.
    ExistingDatabase,
}

/// An archive entry left out of a restore, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    /// The entry.
    pub entry: TocEntry,
    /// Why the role cannot restore it, from the server's catalogs.
    pub reason: String,
}

impl LeftOut {
    /// Whether a report shows it: ACL entries are never restored
    /// (`--no-privileges`), so leaving them out changes nothing.
    pub fn worth_reporting(&self) -> bool {
        !matches!(self.entry.desc.as_str(), "ACL" | "DEFAULT ACL")
    }
}

/// Kinds only a superuser may create.
const SUPERUSER_KINDS: &[&str] = &[
    "EVENT TRIGGER",
    "FOREIGN DATA WRAPPER",
    "ACCESS METHOD",
    "PROCEDURAL LANGUAGE",
];

/// Entries that load rows or values into a relation another entry defines.
const DATA_KINDS: &[&str] = &["TABLE DATA", "SEQUENCE SET", "MATERIALIZED VIEW DATA"];

/// Entries that are about another one: the object they name, from their tag.
const ATTACHED_KINDS: &[&str] = &["COMMENT", "SECURITY LABEL", "ACL"];

/// Catalog class of an object an entry creates or changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Relation,
    Routine,
    Type,
}

/// The object in a schema an entry creates or changes: its class and name.
fn object_of(desc: &str, tag: &str) -> Option<(Class, String)> {
    let first_word = || tag.split(' ').next().unwrap_or(tag).to_string();
    match desc {
        "TABLE"
        | "VIEW"
        | "SEQUENCE"
        | "MATERIALIZED VIEW"
        | "FOREIGN TABLE"
        | "INDEX"
        | "TABLE DATA"
        | "SEQUENCE SET"
        | "SEQUENCE OWNED BY"
        | "MATERIALIZED VIEW DATA"
        | "ROW SECURITY"
        | "INDEX ATTACH"
        | "TABLE ATTACH" => Some((Class::Relation, first_word())),
        // Tagged `<table> <name>`.
        "CONSTRAINT" | "FK CONSTRAINT" | "CHECK CONSTRAINT" | "TRIGGER" | "POLICY" | "DEFAULT"
        | "RULE" => Some((Class::Relation, first_word())),
        "FUNCTION" | "PROCEDURE" | "AGGREGATE" => Some((Class::Routine, tag.to_string())),
        "TYPE" | "DOMAIN" => Some((Class::Type, tag.to_string())),
        _ if ATTACHED_KINDS.contains(&desc) => {
            let (kind, rest) = attached_to(tag)?;
            if let Some((_, table)) = rest.split_once(" ON ") {
                return Some((Class::Relation, table.to_string()));
            }
            if kind == "COLUMN" {
                return Some((Class::Relation, rest.split('.').next()?.to_string()));
            }
            object_of(kind, rest)
        }
        _ => None,
    }
}

/// What a COMMENT, SECURITY LABEL or ACL entry is on: (`KIND`, name).
fn attached_to(tag: &str) -> Option<(&str, &str)> {
    let kind = MULTI_WORD_KINDS
        .iter()
        .copied()
        .find(|k| tag.starts_with(&format!("{k} ")))
        .or_else(|| tag.split(' ').next())?;
    Some((kind, tag.get(kind.len() + 1..)?))
}

impl Database {
    /// Tries `SET LOCAL session_replication_role = replica` in a transaction
    /// that is rolled back: writes nothing, and asks the server itself, so a
    /// superuser, a `GRANT SET ON PARAMETER` and supautils all count.
    pub async fn replica_role(&self) -> Result<ReplicaRole, PgError> {
        let context = "checking that the role may set session_replication_role";
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| self.error(context, e))?;
        let role: String = sqlx::query_scalar("select current_user::text")
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.error(context, e))?;
        let tried = sqlx::raw_sql("set local session_replication_role = replica")
            .execute(&mut *tx)
            .await;
        let _ = tx.rollback().await;
        match tried {
            Ok(_) => Ok(ReplicaRole {
                role,
                refusal: None,
            }),
            Err(e)
                if e.as_database_error()
                    .and_then(|d| d.code())
                    .is_some_and(|c| c == "42501") =>
            {
                Ok(ReplicaRole {
                    role,
                    refusal: Some(super::describe_sqlx_error(&e)),
                })
            }
            Err(e) => Err(self.error(context, e)),
        }
    }

    /// The entries of `entries` (those a restore would run) that this
    /// database's role cannot restore `into` this server, with the reason
    /// read from the catalogs: whether the role is a superuser, which
    /// extensions the server has and whether the role may create them
    /// (trusted, or listed in supautils' `privileged_extensions`), and, for
    /// an existing database, who owns what is already there. Comments and
    /// labels on a left-out object are left out with it.
    pub async fn restore_left_out(
        &self,
        entries: &[&TocEntry],
        into: RestoreInto,
    ) -> Result<Vec<LeftOut>, PgError> {
        let (role, superuser): (String, bool) = sqlx::query_as(
            "select current_user::text, rolsuper from pg_roles where rolname = current_user",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.error(LEFT_OUT_CONTEXT, e))?;
        let role = RestoreRole {
            name: role,
            superuser,
        };
        let extensions = self.extension_catalog(entries).await?;
        let mut left_out = kinds_left_out(entries, &role, &extensions);
        if into == RestoreInto::ExistingDatabase && !superuser {
            let foreign = self.foreign_objects(entries).await?;
            left_out.extend(owned_elsewhere(entries, &foreign, &role.name));
        }
        let rows = rows_left_out(entries, &left_out);
        left_out.extend(rows);
        let attached = attached_left_out(entries, &left_out);
        left_out.extend(attached);
        Ok(left_out)
    }

    /// The extensions `entries` create, as the server offers them, and
    /// supautils' privileged extensions.
    async fn extension_catalog(&self, entries: &[&TocEntry]) -> Result<Extensions, PgError> {
        let wanted: Vec<String> = entries
            .iter()
            .filter(|e| e.desc == "EXTENSION")
            .map(|e| e.tag.clone())
            .collect();
        let privileged: String = sqlx::query_scalar(
            "select coalesce(current_setting('supautils.privileged_extensions', true), '')",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.error(LEFT_OUT_CONTEXT, e))?;
        let available: Vec<(String, bool, bool)> = sqlx::query_as(
            "select a.name::text, coalesce(v.superuser, true), coalesce(v.trusted, false)
               from pg_available_extensions a
               left join pg_available_extension_versions v
                 on v.name = a.name and v.version = a.default_version
              where a.name = any($1)",
        )
        .bind(&wanted)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.error(LEFT_OUT_CONTEXT, e))?;
        Ok(Extensions {
            privileged: privileged
                .split(',')
                .map(|s| s.trim().to_string())
                .collect(),
            available,
        })
    }

    /// The objects in the schemas of `entries` owned by a role this one
    /// cannot act as: (schema, `relation` | `routine` | `type`, name, owner).
    async fn foreign_objects(&self, entries: &[&TocEntry]) -> Result<Vec<ForeignObject>, PgError> {
        let schemas: Vec<String> = entries
            .iter()
            .map(|e| e.namespace.clone())
            .filter(|n| n != "-")
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        sqlx::query_as(
            "select n.nspname::text, 'relation', c.relname::text, pg_get_userbyid(c.relowner)::text
               from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where n.nspname = any($1) and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f', 'i', 'I', 'c')
                and not pg_has_role(c.relowner, 'USAGE')
             union all
             select n.nspname::text, 'routine',
                    format('%s(%s)', p.proname,
                           array_to_string(array(select format_type(a.t, null)
                                                   from unnest(p.proargtypes::oid[]) with ordinality a(t, i)
                                                  order by a.i), ', ')),
                    pg_get_userbyid(p.proowner)::text
               from pg_proc p join pg_namespace n on n.oid = p.pronamespace
              where n.nspname = any($1) and not pg_has_role(p.proowner, 'USAGE')
             union all
             select n.nspname::text, 'type', t.typname::text, pg_get_userbyid(t.typowner)::text
               from pg_type t join pg_namespace n on n.oid = t.typnamespace
              where n.nspname = any($1) and not pg_has_role(t.typowner, 'USAGE')
                and (t.typrelid = 0 or (select relkind from pg_class where oid = t.typrelid) = 'c')",
        )
        .bind(&schemas)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.error(LEFT_OUT_CONTEXT, e))
    }
}

const LEFT_OUT_CONTEXT: &str = "reading what the role may restore";

/// The role a restore runs as.
struct RestoreRole {
    name: String,
    superuser: bool,
}

/// What the server offers of the extensions a restore creates.
struct Extensions {
    /// supautils' `privileged_extensions`: creatable without superuser.
    privileged: BTreeSet<String>,
    /// Each extension the server has: name, needs a superuser, trusted.
    available: Vec<(String, bool, bool)>,
}

/// An object owned by a role the restoring role cannot act as: schema,
/// class word, name, owner.
type ForeignObject = (String, String, String, String);

/// Entries of kinds the role may not create: superuser-only kinds, and
/// extensions the server lacks or only a superuser may create.
fn kinds_left_out(entries: &[&TocEntry], role: &RestoreRole, ext: &Extensions) -> Vec<LeftOut> {
    let name = &role.name;
    let extension_reason = |tag: &str| match ext.available.iter().find(|(n, ..)| n == tag) {
        None => Some(format!("extension {tag} is not available on the server")),
        Some((_, needs_superuser, trusted))
            if *needs_superuser && !trusted && !role.superuser && !ext.privileged.contains(tag) =>
        {
            Some(format!(
                "extension {tag} is not trusted and not among supautils' privileged extensions: only a superuser may create it; {name} is not one"
            ))
        }
        Some(_) => None,
    };
    entries
        .iter()
        .filter_map(|entry| {
            let reason = if SUPERUSER_KINDS.contains(&entry.desc.as_str()) && !role.superuser {
                Some(format!(
                    "only a superuser may create {}s; {name} is not one",
                    entry.desc.to_lowercase()
                ))
            } else if entry.desc == "EXTENSION" {
                extension_reason(&entry.tag)
            } else {
                None
            };
            reason.map(|reason| LeftOut {
                entry: (*entry).clone(),
                reason,
            })
        })
        .collect()
}

/// Entries changing objects that exist owned by a role this one cannot act
/// as: it may neither drop nor replace them. Rows need no ownership, only
/// their table: they are judged by [`rows_left_out`].
fn owned_elsewhere(entries: &[&TocEntry], foreign: &[ForeignObject], role: &str) -> Vec<LeftOut> {
    let mut left_out = Vec::new();
    for entry in entries
        .iter()
        .filter(|e| !DATA_KINDS.contains(&e.desc.as_str()))
    {
        let Some((class, name)) = object_of(&entry.desc, &entry.tag) else {
            continue;
        };
        let word = match class {
            Class::Relation => "relation",
            Class::Routine => "routine",
            Class::Type => "type",
        };
        let owner = foreign.iter().find(|(schema, kind, object, _)| {
            *schema == entry.namespace && *object == name && kind == word
        });
        if let Some((.., owner)) = owner {
            left_out.push(LeftOut {
                entry: (*entry).clone(),
                reason: format!(
                    "{}.{name} exists on the target owned by {owner}, a role {role} is not a member of: it may neither drop nor replace it, so it stays as it is",
                    entry.namespace
                ),
            });
        }
    }
    left_out
}

/// Rows (and sequence values) of a relation left out stay as the target
/// has them: loading them would add to the rows kept there.
fn rows_left_out(entries: &[&TocEntry], left_out: &[LeftOut]) -> Vec<LeftOut> {
    let relations_out: Vec<(String, String)> = left_out
        .iter()
        .filter(|l| !ATTACHED_KINDS.contains(&l.entry.desc.as_str()))
        .filter_map(|l| match object_of(&l.entry.desc, &l.entry.tag) {
            Some((Class::Relation, name)) => Some((l.entry.namespace.clone(), name)),
            _ => None,
        })
        .collect();
    entries
        .iter()
        .filter(|e| DATA_KINDS.contains(&e.desc.as_str()))
        .filter(|e| relations_out.contains(&(e.namespace.clone(), e.tag.clone())))
        .map(|entry| LeftOut {
            entry: (*entry).clone(),
            reason: format!(
                "{}.{} is left out, so the target's own rows stay as they are",
                entry.namespace, entry.tag
            ),
        })
        .collect()
}

/// Comments, labels and grants on what is left out go with it.
fn attached_left_out(entries: &[&TocEntry], left_out: &[LeftOut]) -> Vec<LeftOut> {
    let named: Vec<(String, String, String)> = left_out
        .iter()
        .map(|l| {
            (
                l.entry.namespace.clone(),
                format!("{} {}", l.entry.desc, l.entry.tag),
                l.entry.describe(),
            )
        })
        .collect();
    let mut attached = Vec::new();
    for entry in entries {
        if !ATTACHED_KINDS.contains(&entry.desc.as_str())
            || left_out.iter().any(|l| l.entry.line == entry.line)
        {
            continue;
        }
        if let Some((.., what)) = named
            .iter()
            .find(|(namespace, tag, _)| *namespace == entry.namespace && *tag == entry.tag)
        {
            attached.push(LeftOut {
                entry: (*entry).clone(),
                reason: format!("it is on {what}, which is left out"),
            });
        }
    }
    attached
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_parsed_with_their_owner() {
        let list = ";\n; Archive created at 2025-01-01\n;\n215; 2615 16390 SCHEMA - app postgres\n216; 2615 16391 SCHEMA - auth supabase_admin\n217; 1259 16392 TABLE public customers postgres\n3401; 0 16392 TABLE DATA public customers postgres\n2; 3079 16438 EXTENSION - pgcrypto \n3600; 0 0 COMMENT - EXTENSION pgcrypto \n295; 1255 16709 FUNCTION storage filename(text, integer) supabase_storage_admin\n";
        assert_eq!(schemas_in_list(list), ["public", "app", "auth"]);
        let entries = toc_entries(list);
        assert_eq!(entries.len(), 7);
        assert_eq!(entries[3].desc, "TABLE DATA");
        assert_eq!(entries[3].namespace, "public");
        assert_eq!(entries[3].tag, "customers");
        assert_eq!(entries[3].owner, "postgres");
        assert_eq!(
            (
                entries[4].desc.as_str(),
                entries[4].tag.as_str(),
                entries[4].owner.as_str()
            ),
            ("EXTENSION", "pgcrypto", "")
        );
        assert_eq!(
            (entries[5].desc.as_str(), entries[5].tag.as_str()),
            ("COMMENT", "EXTENSION pgcrypto")
        );
        assert_eq!(entries[6].tag, "filename(text, integer)");
        assert_eq!(entries[6].owner, "supabase_storage_admin");
        assert_eq!(
            entries[6].describe(),
            "FUNCTION storage.filename(text, integer)"
        );
        let fk = toc_entries(
            "4001; 2606 16500 FK CONSTRAINT public backup_logs backup_logs_fkey postgres",
        );
        assert_eq!(
            (
                fk[0].desc.as_str(),
                fk[0].namespace.as_str(),
                fk[0].tag.as_str()
            ),
            ("FK CONSTRAINT", "public", "backup_logs backup_logs_fkey")
        );
    }

    #[test]
    fn entries_name_the_object_they_touch() {
        let rel = |name: &str| Some((Class::Relation, name.to_string()));
        assert_eq!(object_of("TABLE DATA", "orders"), rel("orders"));
        assert_eq!(
            object_of("FK CONSTRAINT", "orders orders_fkey"),
            rel("orders")
        );
        assert_eq!(object_of("COMMENT", "COLUMN orders.ref"), rel("orders"));
        assert_eq!(
            object_of("COMMENT", "CONSTRAINT orders_pkey ON orders"),
            rel("orders")
        );
        assert_eq!(
            object_of("COMMENT", "MATERIALIZED VIEW totals"),
            rel("totals")
        );
        assert_eq!(
            object_of("COMMENT", "FUNCTION email()"),
            Some((Class::Routine, "email()".to_string()))
        );
        assert_eq!(
            object_of("DOMAIN", "positive"),
            Some((Class::Type, "positive".to_string()))
        );
        assert_eq!(object_of("EXTENSION", "pgcrypto"), None);
    }

    fn entry(line: &str) -> TocEntry {
        toc_entries(line).remove(0)
    }

    fn reasons(left_out: &[LeftOut]) -> Vec<(&str, &str)> {
        left_out
            .iter()
            .map(|l| (l.entry.desc.as_str(), l.reason.as_str()))
            .collect()
    }

    #[test]
    fn superuser_kinds_and_untrusted_extensions_are_left_out_for_other_roles() {
        let trigger = entry("10; 3466 1 EVENT TRIGGER - audit_ddl postgres");
        let vector = entry("2; 3079 2 EXTENSION - vector ");
        let crypto = entry("3; 3079 3 EXTENSION - pgcrypto ");
        let missing = entry("4; 3079 4 EXTENSION - postgis ");
        let entries = [&trigger, &vector, &crypto, &missing];
        let role = RestoreRole {
            name: "postgres".into(),
            superuser: false,
        };
        let extensions = Extensions {
            privileged: BTreeSet::from(["vector".to_string()]),
            available: vec![
                ("vector".into(), true, false),
                ("pgcrypto".into(), true, false),
            ],
        };
        assert_eq!(
            reasons(&kinds_left_out(&entries, &role, &extensions)),
            [
                (
                    "EVENT TRIGGER",
                    "only a superuser may create event triggers; postgres is not one"
                ),
                (
                    "EXTENSION",
                    "extension pgcrypto is not trusted and not among supautils' privileged extensions: only a superuser may create it; postgres is not one"
                ),
                (
                    "EXTENSION",
                    "extension postgis is not available on the server"
                ),
            ]
        );
        let superuser = RestoreRole {
            name: "admin".into(),
            superuser: true,
        };
        assert_eq!(kinds_left_out(&entries, &superuser, &extensions).len(), 1);
    }

    #[test]
    fn objects_owned_by_another_role_stay_with_their_rows_and_comments() {
        let table = entry("217; 1259 16392 TABLE public customers postgres");
        let rows = entry("3401; 0 16392 TABLE DATA public customers postgres");
        let comment = entry("3402; 0 0 COMMENT public TABLE customers postgres");
        let other = entry("218; 1259 16393 TABLE public orders postgres");
        let entries = [&table, &rows, &comment, &other];
        let foreign: Vec<ForeignObject> = vec![(
            "public".into(),
            "relation".into(),
            "customers".into(),
            "supabase_admin".into(),
        )];
        let mut left_out = owned_elsewhere(&entries, &foreign, "postgres");
        assert_eq!(
            reasons(&left_out),
            [
                (
                    "TABLE",
                    "public.customers exists on the target owned by supabase_admin, a role postgres is not a member of: it may neither drop nor replace it, so it stays as it is"
                ),
                (
                    "COMMENT",
                    "public.customers exists on the target owned by supabase_admin, a role postgres is not a member of: it may neither drop nor replace it, so it stays as it is"
                ),
            ]
        );
        let rows_out = rows_left_out(&entries, &left_out);
        assert_eq!(
            reasons(&rows_out),
            [(
                "TABLE DATA",
                "public.customers is left out, so the target's own rows stay as they are"
            )]
        );
        left_out.truncate(1);
        assert_eq!(
            reasons(&attached_left_out(&entries, &left_out)),
            [(
                "COMMENT",
                "it is on TABLE public.customers, which is left out"
            )]
        );
    }
}
