//! Backups with the real `pg_dump` and `pg_restore`, and CSV exports.
//!
//! The PostgreSQL client tools are run as child processes (tokio::process).
//! They get the connection as a URL *without* its password (on the command
//! line, which other users of the machine could read in `ps`) and the password
//! in `PGPASSWORD` (the environment, which they cannot). Their stderr is
//! redacted before it reaches any message.
//!
//! Every file is written through one sink: optionally the `age` encryptor (the
//! plaintext never touches the disk), then a sha-256 hasher, then a
//! `.partial` file renamed into place only when complete, so a failed or
//! killed backup never leaves a plausible-looking file behind.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::{Database, PgError};
use crate::manifest::QualifiedName;
use crate::redact::Redactor;

/// How many lines of a tool's stderr an error quotes.
const STDERR_LINES: usize = 12;

/// The first bytes of every age file.
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1";

/// A client tool that failed or could not run; already redacted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ToolError {
    /// What went wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl ToolError {
    pub(super) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
        }
    }

    pub(super) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Parses the major version out of `pg_dump --version` output, e.g.
/// `pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)` → 15.
pub fn parse_tool_version(text: &str) -> Option<u32> {
    let after = text.split(')').nth(1).unwrap_or(text);
    let token = after
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    let digits: String = token.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// The major version of a server from `server_version_num` (150004 → 15).
pub fn server_major(version_num: i32) -> u32 {
    (version_num / 10_000).max(0) as u32
}

/// Why a client is too old for a server, or `None` when it is recent enough.
/// pg_dump refuses servers newer than itself; say which client to install.
pub fn version_problem(tool: &str, client_major: u32, server: u32, side: &str) -> Option<String> {
    (client_major < server).then(|| {
        format!(
            "{tool} is version {client_major} but the {side} server is PostgreSQL {server}: {tool} must be at least as new as the server; install postgresql-client-{server} or newer (the cutover container image ships a recent client)"
        )
    })
}

/// Runs `<tool> --version`.
pub async fn tool_version(tool: &str) -> Result<(u32, String), ToolError> {
    let out = tokio::process::Command::new(tool)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| {
            ToolError::new(format!("cannot run `{tool}`: {e}")).hint(format!(
                "install the PostgreSQL client tools (e.g. `apt-get install postgresql-client-17`) so that `{tool}` is on PATH; the cutover container image has them"
            ))
        })?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let major = parse_tool_version(&text).ok_or_else(|| {
        ToolError::new(format!("cannot tell the version of `{tool}` from {text:?}"))
            .hint(format!("check that `{tool}` on PATH is PostgreSQL's"))
    })?;
    Ok((major, text))
}

/// How a client tool reaches a database: a URL without its password, and the
/// password apart (for `PGPASSWORD`).
#[derive(Clone)]
pub struct ToolConnection {
    url: url::Url,
    password: Option<String>,
}

impl std::fmt::Debug for ToolConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        write!(
            f,
            "ToolConnection({})",
            crate::redact::display_db_url(self.url.as_str())
        )
    }
}

impl ToolConnection {
    /// Splits `url` into a password-free URL and its (percent-decoded) password.
    pub fn from_url(url: &str) -> Result<ToolConnection, ToolError> {
        let mut parsed = url::Url::parse(url.trim())
            .map_err(|e| ToolError::new(format!("the database URL cannot be parsed: {e}")))?;
        let password = parsed.password().map(|p| {
            percent_encoding::percent_decode_str(p)
                .decode_utf8_lossy()
                .into_owned()
        });
        let _ = parsed.set_password(None);
        Ok(ToolConnection {
            url: parsed,
            password,
        })
    }

    /// The same server and credentials, another database.
    pub fn with_database(&self, database: &str) -> ToolConnection {
        let mut other = self.clone();
        other.url.set_path(&format!("/{database}"));
        other
    }

    /// The password-free URL, for a tool's `--dbname`.
    pub(super) fn tool_url(&self) -> &url::Url {
        &self.url
    }

    /// The user name in the URL (the role the tools connect as).
    pub fn user(&self) -> String {
        percent_encoding::percent_decode_str(self.url.username())
            .decode_utf8_lossy()
            .into_owned()
    }

    /// The database name in the URL.
    pub fn database(&self) -> String {
        self.url.path().trim_start_matches('/').to_string()
    }

    /// The full URL, password included, for a Rust-side connection.
    pub fn url_with_password(&self) -> String {
        let mut url = self.url.clone();
        if let Some(p) = &self.password {
            let encoded =
                percent_encoding::utf8_percent_encode(p, percent_encoding::NON_ALPHANUMERIC)
                    .to_string();
            let _ = url.set_password(Some(&encoded));
        }
        url.to_string()
    }

    /// `tool` with this connection's password in its environment (never on
    /// its command line); stdin and stdout closed, stderr piped.
    pub(super) fn command(&self, tool: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(tool);
        cmd.env_remove("PGPASSWORD")
            .env_remove("PGSERVICE")
            .env("PGCONNECT_TIMEOUT", "10")
            .env("PGAPPNAME", "cutover")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(p) = &self.password {
            cmd.env("PGPASSWORD", p);
        }
        cmd
    }
}

/// A file written by a backup.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenFile {
    /// Where it is.
    pub path: PathBuf,
    /// sha-256 of the bytes on disk (the ciphertext when encrypted), hex.
    pub sha256: String,
    /// Size on disk.
    pub bytes: u64,
    /// How long writing it took.
    pub duration: Duration,
    /// Encrypted with age.
    pub encrypted: bool,
}

/// Counts bytes and hashes them on their way to the file.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The receiving end of a file being written: chunks go through a channel to
/// a blocking thread that encrypts (optionally), hashes and writes them.
struct FileSink {
    tx: mpsc::Sender<Vec<u8>>,
    writer: tokio::task::JoinHandle<std::io::Result<(String, u64)>>,
    partial: PathBuf,
    path: PathBuf,
    encrypted: bool,
    started: Instant,
}

impl FileSink {
    fn create(path: &Path, recipients: &[age::x25519::Recipient]) -> std::io::Result<FileSink> {
        let partial = partial_path(path);
        let file = std::fs::File::create(&partial)?;
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
        let recipients = recipients.to_vec();
        let encrypted = !recipients.is_empty();
        let writer = tokio::task::spawn_blocking(move || {
            let hashing = HashingWriter {
                inner: std::io::BufWriter::with_capacity(1 << 20, file),
                hasher: Sha256::new(),
                bytes: 0,
            };
            let mut hashing = if recipients.is_empty() {
                let mut w = hashing;
                while let Some(chunk) = rx.blocking_recv() {
                    w.write_all(&chunk)?;
                }
                w
            } else {
                let encryptor = age::Encryptor::with_recipients(
                    recipients.iter().map(|r| r as &dyn age::Recipient),
                )
                .map_err(std::io::Error::other)?;
                let mut w = encryptor.wrap_output(hashing)?;
                while let Some(chunk) = rx.blocking_recv() {
                    w.write_all(&chunk)?;
                }
                w.finish()?
            };
            hashing.flush()?;
            hashing.inner.get_ref().sync_all()?;
            Ok((hex::encode(hashing.hasher.finalize()), hashing.bytes))
        });
        Ok(FileSink {
            tx,
            writer,
            partial,
            path: path.to_path_buf(),
            encrypted,
            started: Instant::now(),
        })
    }

    /// Sends a chunk; false when the writer stopped (its error comes from `finish`).
    async fn write(&self, chunk: Vec<u8>) -> bool {
        self.tx.send(chunk).await.is_ok()
    }

    async fn finish(self) -> std::io::Result<WrittenFile> {
        drop(self.tx);
        let (sha256, bytes) = self.writer.await.map_err(std::io::Error::other)??;
        std::fs::rename(&self.partial, &self.path)?;
        Ok(WrittenFile {
            path: self.path,
            sha256,
            bytes,
            duration: self.started.elapsed(),
            encrypted: self.encrypted,
        })
    }

    async fn abandon(self) {
        drop(self.tx);
        let _ = self.writer.await;
        let _ = std::fs::remove_file(&self.partial);
    }
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

/// The last lines of a tool's stderr, redacted.
pub(super) fn stderr_tail(stderr: &[u8], redactor: &Redactor) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(STDERR_LINES);
    redactor.redact(&lines[start..].join("\n"))
}

/// `pg_dump -Fc` of one database into `dest`, in `snapshot` when given, the
/// output streamed through the sink (encrypted when there are recipients).
pub async fn pg_dump(
    conn: &ToolConnection,
    snapshot: Option<&str>,
    dest: &Path,
    recipients: &[age::x25519::Recipient],
    redactor: &Redactor,
) -> Result<WrittenFile, ToolError> {
    let mut cmd = conn.command("pg_dump");
    cmd.arg("--format=custom").arg("--no-password");
    if let Some(id) = snapshot {
        cmd.arg(format!("--snapshot={id}"));
    }
    cmd.arg(format!("--dbname={}", conn.url))
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        ToolError::new(format!("cannot run pg_dump: {e}"))
            .hint("install the PostgreSQL client tools so that pg_dump is on PATH")
    })?;
    let io_error = |e: std::io::Error| {
        ToolError::new(format!("cannot write {}: {e}", dest.display()))
            .hint("check that the [backup] dir is writable and the disk has room")
    };
    let sink = FileSink::create(dest, recipients).map_err(io_error)?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let err_task = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf).await;
        buf
    });
    let mut buf = vec![0u8; 256 * 1024];
    let mut sink_broken = false;
    loop {
        let n = stdout.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        if !sink.write(buf[..n].to_vec()).await {
            sink_broken = true;
            break;
        }
    }
    if sink_broken {
        let _ = child.start_kill();
    }
    let status = child.wait().await;
    let stderr = err_task.await.unwrap_or_default();
    let ok = matches!(&status, Ok(s) if s.success());
    if !ok || sink_broken {
        let finished = if sink_broken {
            sink.finish().await.err()
        } else {
            sink.abandon().await;
            None
        };
        let _ = std::fs::remove_file(partial_path(dest));
        if let Some(e) = finished {
            return Err(io_error(e));
        }
        let code = status
            .map(|s| s.to_string())
            .unwrap_or_else(|e| e.to_string());
        return Err(ToolError::new(format!(
            "pg_dump of {} failed ({code}): {}",
            crate::redact::display_db_url(conn.url.as_str()),
            stderr_tail(&stderr, redactor)
        ))
        .hint(
            "the message above is pg_dump's; check the role's read access and the server's log",
        ));
    }
    sink.finish().await.map_err(io_error)
}

/// sha-256 and size of a file as it is on disk.
pub fn file_sha256(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// Whether a file starts like an age file.
pub fn is_age_file(path: &Path) -> std::io::Result<bool> {
    let mut head = [0u8; 21];
    let mut file = std::fs::File::open(path)?;
    let mut read = 0;
    while read < head.len() {
        let n = file.read(&mut head[read..])?;
        if n == 0 {
            break;
        }
        read += n;
    }
    Ok(read == head.len() && head == AGE_MAGIC)
}

/// The text of a `<file>.sha256` sidecar, in `sha256sum`'s format so that
/// `sha256sum -c` checks it too.
pub fn sidecar_text(file: &WrittenFile) -> String {
    format!(
        "{}  {}\n",
        file.sha256,
        file.path.file_name().unwrap_or_default().to_string_lossy()
    )
}

/// Path of a file's sidecar.
pub fn sidecar_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".sha256");
    path.with_file_name(name)
}

/// Reads the hash out of a sidecar, when there is one.
pub fn read_sidecar(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(sidecar_path(path)).ok()?;
    let hash = text.split_whitespace().next()?.to_ascii_lowercase();
    (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hash)
}

/// An open repeatable-read transaction whose snapshot pg_dump imports, so the
/// dump, the row counts and the CSV exports all show one moment.
pub struct DumpSnapshot {
    conn: PgConnection,
    db: Database,
    /// From `pg_export_snapshot()`.
    pub id: String,
}

impl Database {
    /// Starts a [`DumpSnapshot`].
    pub async fn dump_snapshot(&self) -> Result<DumpSnapshot, PgError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| self.error("opening the backup snapshot", e))?
            .detach();
        sqlx::raw_sql("begin isolation level repeatable read read only")
            .execute(&mut conn)
            .await
            .map_err(|e| self.error("starting the backup snapshot", e))?;
        let id: String = sqlx::query_scalar("select pg_export_snapshot()")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| self.error("exporting the backup snapshot", e))?;
        Ok(DumpSnapshot {
            conn,
            db: self.clone(),
            id,
        })
    }

    /// Creates an empty scratch database on this server (for restore checks).
    pub async fn create_database(&self, name: &str) -> Result<(), PgError> {
        let sql = format!(
            "create database {} template template0",
            crate::manifest::quote_ident(name)
        );
        sqlx::raw_sql(&sql)
            .execute(&self.pool)
            .await
            .map_err(|e| self.error(format!("creating the scratch database {name}"), e))?;
        Ok(())
    }

    /// Drops a database of this server, ending its sessions.
    pub async fn drop_database(&self, name: &str) -> Result<(), PgError> {
        let sql = format!(
            "drop database if exists {} with (force)",
            crate::manifest::quote_ident(name)
        );
        sqlx::raw_sql(&sql)
            .execute(&self.pool)
            .await
            .map_err(|e| self.error(format!("dropping the scratch database {name}"), e))?;
        Ok(())
    }

    /// Creates each schema that does not exist yet.
    pub async fn ensure_schemas(&self, schemas: &[String]) -> Result<(), PgError> {
        for schema in schemas {
            let sql = format!(
                "create schema if not exists {}",
                crate::manifest::quote_ident(schema)
            );
            sqlx::raw_sql(&sql)
                .execute(&self.pool)
                .await
                .map_err(|e| self.error(format!("creating schema {schema}"), e))?;
        }
        Ok(())
    }
}

impl DumpSnapshot {
    /// Exact row counts of `tables` in the snapshot.
    pub async fn row_counts(
        &mut self,
        tables: &[QualifiedName],
    ) -> Result<BTreeMap<QualifiedName, i64>, PgError> {
        let mut counts = BTreeMap::new();
        for table in tables {
            let sql = format!("select count(*) from {}", table.quoted());
            let n: i64 = sqlx::query_scalar(&sql)
                .fetch_one(&mut self.conn)
                .await
                .map_err(|e| self.db.error(format!("counting rows of {table}"), e))?;
            counts.insert(table.clone(), n);
        }
        Ok(counts)
    }

    /// `COPY table TO STDOUT (FORMAT csv, HEADER)` into `dest`, in the snapshot.
    pub async fn export_csv(
        &mut self,
        table: &QualifiedName,
        dest: &Path,
        recipients: &[age::x25519::Recipient],
    ) -> Result<WrittenFile, ToolError> {
        let io_error = |e: std::io::Error| {
            ToolError::new(format!("cannot write {}: {e}", dest.display()))
                .hint("check that the [backup] dir is writable and the disk has room")
        };
        let sink = FileSink::create(dest, recipients).map_err(io_error)?;
        let sql = format!(
            "copy (select * from {}) to stdout (format csv, header)",
            table.quoted()
        );
        let result: Result<(), PgError> = async {
            let mut stream = self
                .conn
                .copy_out_raw(&sql)
                .await
                .map_err(|e| self.db.error(format!("exporting {table} as CSV"), e))?;
            while let Some(chunk) = stream.next().await {
                let chunk =
                    chunk.map_err(|e| self.db.error(format!("exporting {table} as CSV"), e))?;
                if !sink.write(chunk.to_vec()).await {
                    break;
                }
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => sink.finish().await.map_err(io_error),
            Err(e) => {
                sink.abandon().await;
                Err(ToolError::new(e.to_string()))
            }
        }
    }

    /// Ends the snapshot transaction.
    pub async fn close(mut self) {
        let _ = sqlx::raw_sql("rollback").execute(&mut self.conn).await;
        let _ = self.conn.close().await;
    }
}

/// Exact row counts of `tables` in another database reached by URL (the
/// scratch database of a restore check).
pub async fn row_counts_at(
    url: &str,
    tables: &[QualifiedName],
    redactor: &Redactor,
) -> Result<BTreeMap<QualifiedName, Option<i64>>, ToolError> {
    let mut conn = PgConnection::connect(url).await.map_err(|e| {
        ToolError::new(redactor.redact(&format!(
            "cannot connect to the scratch database: {}",
            super::describe_sqlx_error(&e)
        )))
    })?;
    let mut counts = BTreeMap::new();
    for table in tables {
        let sql = format!("select count(*) from {}", table.quoted());
        let n: Option<i64> = sqlx::query_scalar(&sql).fetch_one(&mut conn).await.ok();
        counts.insert(table.clone(), n);
    }
    let _ = conn.close().await;
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_versions() {
        assert_eq!(
            parse_tool_version("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(parse_tool_version("pg_dump (PostgreSQL) 17.2"), Some(17));
        assert_eq!(
            parse_tool_version("pg_restore (PostgreSQL) 9.6.24"),
            Some(9)
        );
        assert_eq!(parse_tool_version("something else"), None);
        assert_eq!(server_major(150004), 15);
        assert_eq!(server_major(90624), 9);
    }

    #[test]
    fn older_clients_name_the_version_to_install() {
        let why = version_problem("pg_dump", 15, 17, "source").unwrap();
        assert!(why.contains("postgresql-client-17"), "{why}");
        assert!(why.contains("source server is PostgreSQL 17"), "{why}");
        assert_eq!(version_problem("pg_dump", 17, 15, "target"), None);
        assert_eq!(version_problem("pg_dump", 15, 15, "target"), None);
    }

    #[test]
    fn passwords_leave_the_url() {
        let c = ToolConnection::from_url(
            "postgresql://app:p%40ss%2Fw0rd@db.example:6543/postgres?sslmode=require",
        )
        .unwrap();
        assert_eq!(c.password.as_deref(), Some("p@ss/w0rd"));
        assert!(!c.url.as_str().contains("p%40ss"), "{}", c.url);
        assert!(c.url.as_str().contains("sslmode=require"));
        assert!(!format!("{c:?}").contains("w0rd"));
        assert_eq!(c.with_database("scratch").database(), "scratch");
        assert!(c.url_with_password().contains("p%40ss%2Fw0rd"));
    }

    #[test]
    fn sidecars_use_sha256sum_format() {
        let dir = tempfile::tempdir().unwrap();
        let file = WrittenFile {
            path: dir.path().join("source.dump"),
            sha256: "ab".repeat(32),
            bytes: 3,
            duration: Duration::ZERO,
            encrypted: false,
        };
        let text = sidecar_text(&file);
        assert_eq!(text, format!("{}  source.dump\n", "ab".repeat(32)));
        std::fs::write(sidecar_path(&file.path), text).unwrap();
        assert_eq!(read_sidecar(&file.path), Some("ab".repeat(32)));
    }
}
