//! Test harness: fresh Supabase-like databases on a real PostgreSQL server,
//! and a way to run the built binary the way GitHub Actions runs it.
//!
//! Each test gets its own databases (random names), so tests run in parallel;
//! they are dropped when the handle goes out of scope.

#![allow(dead_code)]
#![allow(clippy::print_stdout, clippy::print_stderr)] // tests say why they skip

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sqlx::{Connection, PgConnection, Row};

/// The server tests create their databases on.
pub fn admin_url() -> String {
    std::env::var("CUTOVER_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Supabase-like bootstrap every test database starts from.
pub fn bootstrap_sql() -> String {
    std::fs::read_to_string(repo_root().join("tests/fixtures/supabase_bootstrap.sql"))
        .expect("bootstrap fixture")
}

/// What a hosted project adds around the bootstrap (admin-owned auth and
/// storage, the realtime publication, an event trigger), for [`SupaDb`].
pub fn platform_sql() -> String {
    std::fs::read_to_string(repo_root().join("tests/fixtures/supabase_platform.sql"))
        .expect("platform fixture")
}

/// A URL for database `name` on the test server, optionally with a password
/// (the test server trusts local connections and ignores it, which lets the
/// leak checks plant a recognisable secret in the URL).
pub fn url_for(name: &str, password: Option<&str>) -> String {
    let mut url = url::Url::parse(&admin_url()).expect("CUTOVER_TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    if let Some(pw) = password {
        url.set_password(Some(pw)).expect("password");
    }
    url.to_string()
}

/// A database created for one test and dropped afterwards.
pub struct TestDb {
    /// Its name.
    pub name: String,
}

impl TestDb {
    /// Creates an empty database with the Supabase-like bootstrap loaded.
    pub async fn new(label: &str) -> TestDb {
        let name = format!(
            "cutover_t_{label}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        );
        let mut admin = PgConnection::connect(&admin_url())
            .await
            .expect("connect to the test server (CUTOVER_TEST_DATABASE_URL)");
        sqlx::raw_sql(&format!("create database \"{name}\""))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let db = TestDb { name };
        db.exec(&bootstrap_sql()).await;
        db
    }

    /// Its URL.
    pub fn url(&self) -> String {
        url_for(&self.name, None)
    }

    /// Its URL with a (ignored) password.
    pub fn url_with_password(&self, password: &str) -> String {
        url_for(&self.name, Some(password))
    }

    /// A new connection.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url())
            .await
            .expect("connect to test database")
    }

    /// Runs SQL (several statements allowed).
    pub async fn exec(&self, sql: &str) {
        let mut conn = self.connect().await;
        sqlx::raw_sql(sql)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("SQL failed on {}: {e}\n{sql}", self.name));
    }

    /// One value as text.
    pub async fn scalar(&self, sql: &str) -> Option<String> {
        let mut conn = self.connect().await;
        let row = sqlx::query(sql)
            .fetch_one(&mut conn)
            .await
            .expect("scalar query");
        row.try_get::<Option<String>, _>(0).expect("text value")
    }

    /// Applies an example's migration files in order, each in one transaction
    /// (the CONCURRENTLY file alone, outside one), and records them in
    /// `supabase_migrations.schema_migrations` as the Supabase CLI does: this
    /// is how a source environment built by `supabase db push` looks.
    pub async fn apply_migrations(&self, example: &str, up_to: Option<usize>) {
        let dir = repo_root()
            .join("examples")
            .join(example)
            .join("supabase/migrations");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("migrations dir")
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "sql"))
            .collect();
        files.sort();
        self.exec(
            "create schema if not exists supabase_migrations;
             create table if not exists supabase_migrations.schema_migrations
               (version text not null primary key, statements text[], name text);",
        )
        .await;
        for file in files.iter().take(up_to.unwrap_or(usize::MAX)) {
            let sql = std::fs::read_to_string(file).unwrap();
            let stem = file.file_stem().unwrap().to_string_lossy().to_string();
            let (version, name) = stem.split_once('_').unwrap();
            if sql.to_lowercase().contains("concurrently") {
                self.exec(&sql).await;
            } else {
                self.exec(&format!("begin;\n{sql}\n;commit;")).await;
            }
            self.exec(&format!(
                "insert into supabase_migrations.schema_migrations (version, name, statements) values ('{version}', '{name}', array[]::text[])"
            ))
            .await;
        }
    }

    /// Loads an example's seed data.
    pub async fn seed(&self, example: &str) {
        let sql = std::fs::read_to_string(
            repo_root()
                .join("examples")
                .join(example)
                .join("supabase/seed.sql"),
        )
        .unwrap();
        self.exec(&sql).await;
    }

    /// A text rendering of the user-visible catalog (relations, columns,
    /// constraints, indexes, functions, policies, triggers, schemas) and
    /// every table's exact row count: equal before and after means nothing
    /// was written.
    pub async fn fingerprint(&self) -> String {
        let mut conn = self.connect().await;
        let catalog: Vec<String> = sqlx::query_scalar(
            "select format('%s|%s|%s', n.nspname, c.relname, c.relkind)
               from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg_toast%'
             union all select format('col|%s|%s|%s|%s', attrelid::regclass, attname, atttypid::regtype, attnum)
               from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
              where n.nspname not in ('pg_catalog', 'information_schema') and attnum > 0
             union all select format('con|%s|%s', conrelid::regclass, conname) from pg_constraint
             union all select format('fn|%s', p.oid::regprocedure) from pg_proc p join pg_namespace n on n.oid = p.pronamespace
              where n.nspname not in ('pg_catalog', 'information_schema')
             union all select format('pol|%s|%s', polrelid::regclass, polname) from pg_policy
             union all select format('trg|%s|%s', tgrelid::regclass, tgname) from pg_trigger
             union all select format('nsp|%s', nspname) from pg_namespace
             order by 1",
        )
        .fetch_all(&mut conn)
        .await
        .expect("catalog fingerprint");
        let tables: Vec<String> = sqlx::query_scalar(
            "select format('%I.%I', n.nspname, c.relname) from pg_class c
               join pg_namespace n on n.oid = c.relnamespace
              where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema')
                and n.nspname not like 'pg_toast%' order by 1",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let mut counts = BTreeMap::new();
        for t in tables {
            let n: i64 = sqlx::query_scalar(&format!("select count(*) from {t}"))
                .fetch_one(&mut conn)
                .await
                .unwrap();
            counts.insert(t, n);
        }
        format!("{}\n{counts:?}", catalog.join("\n"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async context: use a private runtime on a thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut admin) = PgConnection::connect(&admin_url()).await {
                    let _ =
                        sqlx::raw_sql(&format!("drop database if exists \"{name}\" with (force)"))
                            .execute(&mut admin)
                            .await;
                }
            });
        })
        .join();
    }
}

/// A source with an example's schema and seed, and an empty target.
pub struct Pair {
    /// The source environment.
    pub source: TestDb,
    /// The target environment.
    pub target: TestDb,
}

impl Pair {
    /// Source built from `example` (migrations + seed), target bootstrapped only.
    pub async fn from_example(example: &str) -> Pair {
        let (source, target) = tokio::join!(TestDb::new("src"), TestDb::new("tgt"));
        source.apply_migrations(example, None).await;
        source.seed(example).await;
        Pair { source, target }
    }
}

/// Files a GitHub-like run writes.
pub struct ActionsFiles {
    /// Temp folder (the workspace).
    pub dir: tempfile::TempDir,
}

impl ActionsFiles {
    /// A fresh workspace with empty summary and output files and an event.
    pub fn new() -> ActionsFiles {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("summary.md"), "").unwrap();
        std::fs::write(dir.path().join("output.txt"), "").unwrap();
        std::fs::write(
            dir.path().join("event.json"),
            r#"{"ref": "refs/tags/v1.2.0", "repository": {"full_name": "acme/ops-portal"}}"#,
        )
        .unwrap();
        ActionsFiles { dir }
    }

    /// Path of a file in the workspace.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Text of a file in the workspace ("" when absent).
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// The step outputs, parsed from the heredoc form.
    pub fn outputs(&self) -> BTreeMap<String, String> {
        parse_outputs(&self.read("output.txt"))
    }

    /// The `GITHUB_*` variables of a run whose workspace is this folder.
    pub fn github_env(&self) -> Vec<(String, String)> {
        let p = |n: &str| self.path(n).display().to_string();
        vec![
            ("GITHUB_ACTIONS".into(), "true".into()),
            ("GITHUB_STEP_SUMMARY".into(), p("summary.md")),
            ("GITHUB_OUTPUT".into(), p("output.txt")),
            ("GITHUB_EVENT_PATH".into(), p("event.json")),
            (
                "GITHUB_WORKSPACE".into(),
                self.dir.path().display().to_string(),
            ),
            ("GITHUB_REPOSITORY".into(), "acme/ops-portal".into()),
            ("GITHUB_RUN_ID".into(), "4242".into()),
            (
                "GITHUB_SHA".into(),
                "0123456789abcdef0123456789abcdef01234567".into(),
            ),
            ("GITHUB_REF".into(), "refs/tags/v1.2.0".into()),
            ("GITHUB_ACTOR".into(), "release-manager".into()),
            ("GITHUB_SERVER_URL".into(), "https://github.com".into()),
        ]
    }
}

/// The environment of one action run, built input by input: GitHub's
/// variables for an [`ActionsFiles`] workspace, the action's `INPUT_*`
/// values (named as in `action.yml`, e.g. `source-db-url`) and any other
/// variable (secrets the manifest names). Later values replace earlier ones.
#[derive(Clone)]
pub struct ActionsRun {
    env: Vec<(String, String)>,
}

impl ActionsRun {
    /// A run of `phase` in the `files` workspace.
    pub fn new(files: &ActionsFiles, phase: &str) -> ActionsRun {
        ActionsRun {
            env: files.github_env(),
        }
        .input("phase", phase)
    }

    /// Sets the action input `name` (as in `action.yml`).
    pub fn input(self, name: &str, value: impl Into<String>) -> ActionsRun {
        self.var(&format!("INPUT_{}", name.to_uppercase()), value)
    }

    /// Sets the action inputs, `(name, value)` each.
    pub fn inputs<V: Into<String>>(
        mut self,
        inputs: impl IntoIterator<Item = (&'static str, V)>,
    ) -> ActionsRun {
        for (name, value) in inputs {
            self = self.input(name, value);
        }
        self
    }

    /// Sets the manifest input.
    pub fn manifest(self, path: impl AsRef<Path>) -> ActionsRun {
        self.input("manifest", path.as_ref().display().to_string())
    }

    /// Sets the two database URL inputs.
    pub fn databases(self, source: impl Into<String>, target: impl Into<String>) -> ActionsRun {
        self.input("source-db-url", source)
            .input("target-db-url", target)
    }

    /// Sets any other variable (a secret the manifest names, `GITHUB_API_URL`).
    pub fn var(mut self, name: &str, value: impl Into<String>) -> ActionsRun {
        self.env.retain(|(k, _)| k != name);
        self.env.push((name.to_string(), value.into()));
        self
    }

    /// Sets several other variables.
    pub fn vars<K: AsRef<str>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> ActionsRun {
        for (name, value) in vars {
            self = self.var(name.as_ref(), value);
        }
        self
    }

    /// Leaves out variables (e.g. `INPUT_GITHUB-TOKEN`), to test their absence.
    pub fn without(mut self, names: &[&str]) -> ActionsRun {
        self.env.retain(|(k, _)| !names.contains(&k.as_str()));
        self
    }

    /// The environment, as [`run_cutover`] takes it.
    pub fn env(&self) -> Vec<(String, String)> {
        self.env.clone()
    }

    /// Runs the binary in `cwd` with this environment.
    pub fn run(&self, cwd: &Path) -> Output {
        run_cutover(cwd, &[], &self.env)
    }
}

/// The first line of `summary` that contains `needle` (a checklist row);
/// panics showing the summary when there is none.
pub fn row<'a>(summary: &'a str, needle: &str) -> &'a str {
    summary
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no row {needle:?} in:\n{summary}"))
}

/// Parses `$GITHUB_OUTPUT` heredoc blocks.
pub fn parse_outputs(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delim)) = line.split_once("<<") {
            let mut value = Vec::new();
            for l in lines.by_ref() {
                if l == delim {
                    break;
                }
                value.push(l);
            }
            out.insert(name.to_string(), value.join("\n"));
        }
    }
    out
}

/// Runs cutover locally with the two URLs given; exit code and all output
/// (terminal text, then the summary).
pub fn run_with(
    work: &tempfile::TempDir,
    args: &[&str],
    source: &str,
    target: &str,
) -> (i32, String) {
    let env: Vec<(String, String)> = [
        ("CUTOVER_SOURCE_DB_URL", source.to_string()),
        ("CUTOVER_TARGET_DB_URL", target.to_string()),
        (
            "CUTOVER_MANIFEST",
            work.path().join("cutover.toml").display().to_string(),
        ),
        (
            "CUTOVER_SUMMARY_FILE",
            work.path().join("summary.md").display().to_string(),
        ),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .into();
    let out = run_cutover(work.path(), args, &env);
    let summary = std::fs::read_to_string(work.path().join("summary.md")).unwrap_or_default();
    (
        out.status.code().unwrap_or(-1),
        format!("{}\n{summary}", text(&out)),
    )
}

/// The binary under test.
pub fn cutover_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cutover"))
}

/// Runs the binary in `cwd` with exactly `env` (plus PATH), nothing inherited,
/// so stray `CUTOVER_*` or `GITHUB_*` variables of the developer's shell
/// cannot change the result.
pub fn run_cutover(cwd: &Path, args: &[&str], env: &[(String, String)]) -> Output {
    let mut cmd = Command::new(cutover_bin());
    cmd.current_dir(cwd).args(args).env_clear();
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run cutover")
}

/// stdout + stderr as text.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts that `secret` appears nowhere a user or auditor could read it:
/// stdout/stderr (except the runner's own `::add-mask::` lines, which is how
/// it learns to hide the value), the summary, the JSON report, the outputs.
pub fn assert_no_leak(secret: &str, out: &Output, files: &ActionsFiles, report: &Path) {
    let log: String = text(out)
        .lines()
        .filter(|l| !l.starts_with("::add-mask::"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        !log.contains(secret),
        "secret leaked to stdout/stderr:\n{log}"
    );
    for name in ["summary.md", "output.txt"] {
        assert!(
            !files.read(name).contains(secret),
            "secret leaked to {name}"
        );
    }
    let report_text = std::fs::read_to_string(report).unwrap_or_default();
    assert!(
        !report_text.contains(secret),
        "secret leaked to the JSON report"
    );
}

/// Everything in the ledger schema as text (every table it has), for leak checks.
pub async fn ledger_dump(db: &TestDb, schema: &str) -> String {
    let mut conn = db.connect().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "select tablename::text from pg_tables where schemaname = $1 order by 1",
    )
    .bind(schema)
    .fetch_all(&mut conn)
    .await
    .unwrap_or_default();
    let mut all = String::new();
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!(
            "select coalesce(string_agg(t::text, E'\\n'), '') from \"{schema}\".\"{table}\" t"
        ))
        .fetch_all(&mut conn)
        .await
        .unwrap_or_default();
        all.push_str(&rows.join("\n"));
    }
    all
}

/// Passwords planted in the URLs `run_local` passes: the test server trusts
/// local connections and ignores them, so they are pure secrets that must
/// never come back out.
pub const LOCAL_SOURCE_PW: &str = "planted-Source-Pw-41x";
/// See [`LOCAL_SOURCE_PW`].
pub const LOCAL_TARGET_PW: &str = "planted-Target-Pw-93q";

/// Where a run with `env` in `cwd` writes its summary, outputs and report.
fn written_files(cwd: &Path, env: &[(String, String)]) -> Vec<PathBuf> {
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut files: Vec<PathBuf> = [
        "GITHUB_STEP_SUMMARY",
        "GITHUB_OUTPUT",
        "CUTOVER_SUMMARY_FILE",
        "CUTOVER_REPORT_FILE",
        "INPUT_REPORT-FILE",
        "INPUT_SUMMARY-FILE",
    ]
    .iter()
    .filter_map(|k| get(k))
    .map(PathBuf::from)
    .collect();
    files.push(cwd.join("cutover-report.json"));
    files
        .into_iter()
        .map(|f| if f.is_absolute() { f } else { cwd.join(f) })
        .collect()
}

/// Asserts that no `secret` appears in the run's stdout/stderr (the runner's
/// own `::add-mask::` lines aside), its summary, `$GITHUB_OUTPUT`, JSON
/// report, or the ledger tables of the databases at `ledger_urls`.
pub fn check_leaks(
    out: &Output,
    cwd: &Path,
    env: &[(String, String)],
    secrets: &[&str],
    ledger_urls: &[String],
) {
    let log: String = text(out)
        .lines()
        .filter(|l| !l.starts_with("::add-mask::"))
        .collect::<Vec<_>>()
        .join("\n");
    let files: Vec<(PathBuf, String)> = written_files(cwd, env)
        .into_iter()
        .map(|f| {
            let t = std::fs::read_to_string(&f).unwrap_or_default();
            (f, t)
        })
        .collect();
    let ledgers = ledger_texts(ledger_urls);
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(
            !log.contains(secret),
            "secret leaked to stdout/stderr:\n{log}"
        );
        for (file, body) in &files {
            assert!(
                !body.contains(secret),
                "secret leaked to {}",
                file.display()
            );
        }
        for (url, body) in &ledgers {
            assert!(
                !body.contains(secret),
                "secret leaked to the ledger of {url}"
            );
        }
    }
}

/// The ledger (schema `cutover`) of each database, read on a private runtime
/// so sync helpers can call it.
fn ledger_texts(urls: &[String]) -> Vec<(String, String)> {
    let urls = urls.to_vec();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut out = Vec::new();
            for url in urls {
                let name = url::Url::parse(&url)
                    .unwrap()
                    .path()
                    .trim_start_matches('/')
                    .to_string();
                let db = TestDbRef { url };
                out.push((name, db.ledger().await));
            }
            out
        })
    })
    .join()
    .unwrap()
}

/// A database by URL (of any test server), without owning (dropping) it.
struct TestDbRef {
    url: String,
}

impl TestDbRef {
    async fn ledger(&self) -> String {
        let Ok(mut conn) = PgConnection::connect(&self.url).await else {
            return String::new();
        };
        let tables: Vec<String> = sqlx::query_scalar(
            "select tablename::text from pg_tables where schemaname = 'cutover' order by 1",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap_or_default();
        let mut all = String::new();
        for table in tables {
            let rows: Vec<String> = sqlx::query_scalar(&format!(
                "select coalesce(string_agg(t::text, E'\\n'), '') from cutover.\"{table}\" t"
            ))
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
            all.push_str(&rows.join("\n"));
        }
        all
    }
}

/// Runs cutover and checks that none of `secrets` leaked anywhere (see
/// [`check_leaks`]); the reusable harness of every end-to-end test that
/// passes secrets.
pub fn run_and_check_leaks(
    cwd: &Path,
    args: &[&str],
    env: &[(String, String)],
    secrets: &[&str],
    ledger_dbs: &[&TestDb],
) -> Output {
    let out = run_cutover(cwd, args, env);
    let urls: Vec<String> = ledger_dbs.iter().map(|d| d.url()).collect();
    check_leaks(&out, cwd, env, secrets, &urls);
    out
}

/// An independent count and content hash of a table, computed differently
/// from cutover's own checksum: md5 over every row's text, sorted.
pub async fn table_digest(db: &TestDb, table: &str) -> (i64, String) {
    let mut conn = db.connect().await;
    let row = sqlx::query(&format!(
        "select count(*), coalesce(md5(string_agg(t::text, '|' order by t::text)), '') from {table} t"
    ))
    .fetch_one(&mut conn)
    .await
    .expect("digest");
    (row.get(0), row.get(1))
}

/// Every user table (not the ledger, not the migration history), schema-qualified.
pub async fn user_tables(db: &TestDb) -> Vec<String> {
    let mut conn = db.connect().await;
    sqlx::query_scalar(
        "select format('%I.%I', schemaname, tablename) from pg_tables
          where schemaname not in ('pg_catalog', 'information_schema', 'cutover', 'supabase_migrations')
          order by 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

/// Asserts both databases hold the same rows in every table they share.
pub async fn assert_same_rows(source: &TestDb, target: &TestDb, tables: &[String]) {
    for table in tables {
        let a = table_digest(source, table).await;
        let b = table_digest(target, table).await;
        assert_eq!(a, b, "{table} differs between source and target");
    }
}

/// `pg_dump --schema-only` of the user-visible schema, without the ledger,
/// the migration history and pg_dump's random \restrict keys.
pub fn schema_dump(db: &TestDb) -> String {
    let out = Command::new("pg_dump")
        .args([
            "--schema-only",
            "--no-owner",
            "-N",
            "cutover",
            "-N",
            "supabase_migrations",
        ])
        .arg(db.url())
        .output()
        .expect("pg_dump");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs cutover locally (CUTOVER_* variables) on a pair, with planted URL
/// passwords, and checks that they leak nowhere (output, summary, report,
/// ledger).
pub fn run_local(
    cwd: &Path,
    phases: &str,
    manifest: &Path,
    pair: &Pair,
    extra: &[(&str, &str)],
) -> Output {
    let mut env: Vec<(String, String)> = vec![
        (
            "CUTOVER_SOURCE_DB_URL".into(),
            pair.source.url_with_password(LOCAL_SOURCE_PW),
        ),
        (
            "CUTOVER_TARGET_DB_URL".into(),
            pair.target.url_with_password(LOCAL_TARGET_PW),
        ),
        ("CUTOVER_MANIFEST".into(), manifest.display().to_string()),
        (
            "CUTOVER_REPORT_FILE".into(),
            cwd.join("report.json").display().to_string(),
        ),
        (
            "CUTOVER_SUMMARY_FILE".into(),
            cwd.join("summary.md").display().to_string(),
        ),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    run_and_check_leaks(
        cwd,
        &[phases],
        &env,
        &[LOCAL_SOURCE_PW, LOCAL_TARGET_PW],
        &[&pair.source, &pair.target],
    )
}

/// Copies an example's supabase folder into a temp dir with a minimal
/// manifest, so a test can change files.
pub fn example_copy(example: &str, manifest: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let from = repo_root()
        .join("examples")
        .join(example)
        .join("supabase/migrations");
    let to = dir.path().join("supabase/migrations");
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    std::fs::write(dir.path().join("cutover.toml"), manifest).unwrap();
    dir
}

// ---------------------------------------------------------------------------
// PostgreSQL 17 source and target clusters (logical replication tests)
// ---------------------------------------------------------------------------

/// The admin URLs (`supabase_admin`, database `postgres`) of the source and
/// target clusters of PostgreSQL `major` (15 or 17) that `.ci/pg<major>.sh`
/// starts, from `CUTOVER_TEST_PG<major>_SOURCE_URL` and `..._TARGET_URL`.
///
/// Unset: `None` on a developer's machine (the test then skips, see
/// [`pg_pair_or_skip`]), a panic under CI, where they must be there.
pub fn pg_pair(major: u32) -> Option<(String, String)> {
    let var = |side: &str| {
        std::env::var(format!("CUTOVER_TEST_PG{major}_{side}_URL"))
            .ok()
            .filter(|v| !v.is_empty())
    };
    match (var("SOURCE"), var("TARGET")) {
        (Some(source), Some(target)) => Some((source, target)),
        _ if std::env::var_os("CI").is_some() => panic!(
            "CUTOVER_TEST_PG{major}_SOURCE_URL and CUTOVER_TEST_PG{major}_TARGET_URL are unset: \
             run .ci/pg{major}.sh, then `set -a; . /tmp/cutover-pg{major}/env; set +a` (.ci/run does)"
        ),
        _ => None,
    }
}

/// [`pg_pair`], printing a one-line skip note for `test` when absent.
pub fn pg_pair_or_skip(major: u32, test: &str) -> Option<(String, String)> {
    let servers = pg_pair(major);
    if servers.is_none() {
        eprintln!(
            "skipped {test}: no PostgreSQL {major} clusters (run .ci/pg{major}.sh and load /tmp/cutover-pg{major}/env)"
        );
    }
    servers
}

/// The PostgreSQL 17 pair (logical replication needs `pg_create_subscription`).
pub fn pg17_servers() -> Option<(String, String)> {
    pg_pair(17)
}

/// [`pg17_servers`] with a skip note.
pub fn pg17_servers_or_skip(test: &str) -> Option<(String, String)> {
    pg_pair_or_skip(17, test)
}

/// `url` with another user, password and database.
pub fn url_with(url: &str, user: &str, password: Option<&str>, db: &str) -> String {
    let mut url = url::Url::parse(url).expect("server URL");
    url.set_username(user).expect("user");
    url.set_password(password).expect("password");
    url.set_path(&format!("/{db}"));
    url.to_string()
}

/// A Supabase-like database on one of the PostgreSQL 17 clusters: created by
/// `supabase_admin` (the superuser, as on Supabase), bootstrapped with
/// `tests/fixtures/supabase_bootstrap.sql`, and with what Supabase's
/// `postgres` role has on it: ALL on the database (CONNECT, CREATE, TEMP) and
/// on schema `public`. App tables are made through [`SupaDb::exec`], which
/// runs as `postgres`, so `postgres` owns them as on Supabase.
///
/// Dropped with the handle, after [`SupaDb::cleanup_replication`].
pub struct SupaDb {
    /// The database name.
    pub name: String,
    /// The cluster's admin URL (`supabase_admin`, database `postgres`).
    server: String,
    /// Cluster-wide roles a test made, dropped after the database.
    roles: std::sync::Mutex<Vec<String>>,
    /// Whether the handle dropping drops the database (not a shared one).
    owned: bool,
}

impl SupaDb {
    /// A fresh bootstrapped database on the cluster whose admin URL is `server`.
    pub async fn new(server: &str, label: &str) -> SupaDb {
        let name = format!(
            "cutover_s_{label}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        );
        let mut admin = PgConnection::connect(server)
            .await
            .unwrap_or_else(|e| panic!("connect to {server} (run .ci/pg17.sh): {e}"));
        sqlx::raw_sql(&format!("create database \"{name}\""))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let db = SupaDb {
            name,
            server: server.to_string(),
            roles: Default::default(),
            owned: true,
        };
        db.prepare().await;
        db
    }

    /// Loads what [`SupaDb::new`] puts in a fresh database: the bootstrap,
    /// the platform fixture and `postgres`'s privileges.
    async fn prepare(&self) {
        let db = self;
        db.exec_as_admin(&bootstrap_sql()).await;
        db.exec_as_admin(&platform_sql()).await;
        db.exec_as_admin(&format!(
            "grant all on database \"{name}\" to postgres;
             grant all on schema public to postgres;
             grant usage, create on schema extensions to postgres;
             grant all on schema supabase_migrations to postgres;
             grant usage on schema graphql_public to postgres;
             alter default privileges for role postgres in schema public
               grant all on tables to anon, authenticated, service_role;
             alter default privileges for role postgres in schema public
               grant all on sequences to anon, authenticated, service_role;
             alter default privileges for role postgres in schema public
               grant execute on functions to anon, authenticated, service_role;",
            name = db.name
        ))
        .await;
    }

    /// Its URL as `supabase_admin` (superuser).
    pub fn admin_url(&self) -> String {
        url_with(&self.server, "supabase_admin", None, &self.name)
    }

    /// Its URL as `postgres` (not superuser; trusted on 127.0.0.1): the URL
    /// the product is given, as on Supabase.
    pub fn url_as_postgres(&self) -> String {
        url_with(&self.server, "postgres", None, &self.name)
    }

    /// Its URL as `user` with `password`.
    pub fn url_as(&self, user: &str, password: Option<&str>) -> String {
        url_with(&self.server, user, password, &self.name)
    }

    /// The cluster's TCP host.
    pub fn host(&self) -> String {
        url::Url::parse(&self.server)
            .unwrap()
            .host_str()
            .unwrap_or("127.0.0.1")
            .to_string()
    }

    /// The cluster's TCP port.
    pub fn port(&self) -> u16 {
        url::Url::parse(&self.server)
            .unwrap()
            .port()
            .unwrap_or(5432)
    }

    /// A libpq connection string to this database as `user` (for
    /// `create subscription ... connection '...'`).
    pub fn conninfo(&self, user: &str, password: &str) -> String {
        format!(
            "host={} port={} dbname={} user={user} password={password}",
            self.host(),
            self.port(),
            self.name
        )
    }

    /// A new connection as `supabase_admin`.
    pub async fn connect_as_admin(&self) -> PgConnection {
        PgConnection::connect(&self.admin_url())
            .await
            .expect("connect as supabase_admin")
    }

    /// A new connection as `postgres`.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url_as_postgres())
            .await
            .expect("connect as postgres")
    }

    async fn run(&self, mut conn: PgConnection, who: &str, sql: &str) {
        sqlx::raw_sql(sql)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("SQL as {who} failed on {}: {e}\n{sql}", self.name));
    }

    /// Runs SQL (several statements allowed) as `supabase_admin`.
    pub async fn exec_as_admin(&self, sql: &str) {
        self.run(self.connect_as_admin().await, "supabase_admin", sql)
            .await;
    }

    /// Runs SQL (several statements allowed) as `postgres`.
    pub async fn exec(&self, sql: &str) {
        self.run(self.connect().await, "postgres", sql).await;
    }

    async fn scalar_on(mut conn: PgConnection, sql: &str) -> Option<String> {
        let row = sqlx::query(sql)
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("scalar query failed: {e}\n{sql}"));
        row.try_get::<Option<String>, _>(0).expect("text value")
    }

    /// One value as text, queried as `postgres`.
    pub async fn scalar(&self, sql: &str) -> Option<String> {
        Self::scalar_on(self.connect().await, sql).await
    }

    /// One value as text, queried as `supabase_admin`.
    pub async fn scalar_as_admin(&self, sql: &str) -> Option<String> {
        Self::scalar_on(self.connect_as_admin().await, sql).await
    }

    /// Drops the cluster-wide role `role` after the database (roles outlive
    /// databases; a test that makes one registers it here).
    pub fn drop_role_on_drop(&self, role: &str) {
        self.roles.lock().unwrap().push(role.to_string());
    }

    /// Removes what keeps the database from being dropped: every subscription
    /// in it (disabled and detached from its slot first, so the drop needs no
    /// publisher) and every replication slot of it on its own cluster (active
    /// ones after ending their walsender). The source side of a subscription
    /// is cleaned by the source database's own cleanup.
    pub async fn cleanup_replication(&self) {
        cleanup_replication_at(&self.admin_url(), &self.name).await;
    }
}

/// [`SupaDb::cleanup_replication`] for database `name` at `admin_url`.
async fn cleanup_replication_at(admin_url: &str, name: &str) {
    let Ok(mut admin) = PgConnection::connect(admin_url).await else {
        return;
    };
    let subs: Vec<String> = sqlx::query_scalar(
        "select subname::text from pg_subscription
          where subdbid = (select oid from pg_database where datname = current_database())",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap_or_default();
    for sub in subs {
        for sql in [
            format!("alter subscription \"{sub}\" disable"),
            format!("alter subscription \"{sub}\" set (slot_name = none)"),
            format!("drop subscription \"{sub}\""),
        ] {
            if let Err(e) = sqlx::raw_sql(&sql).execute(&mut admin).await {
                eprintln!("cleanup of {name}: {sql}: {e}");
            }
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let slots: Vec<(String, Option<i32>)> = sqlx::query_as(
            "select slot_name::text, active_pid from pg_replication_slots
              where database = current_database()",
        )
        .fetch_all(&mut admin)
        .await
        .unwrap_or_default();
        if slots.is_empty() || std::time::Instant::now() > deadline {
            break;
        }
        for (slot, pid) in slots {
            if let Some(pid) = pid {
                let _ = sqlx::query("select pg_terminate_backend($1)")
                    .bind(pid)
                    .execute(&mut admin)
                    .await;
            }
            let _ = sqlx::query("select pg_drop_replication_slot($1)")
                .bind(&slot)
                .execute(&mut admin)
                .await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Drops database `name` of the cluster at `server` (after its replication
/// cleanup), then `roles`.
async fn drop_supa_db(server: &str, name: &str, roles: &[String]) {
    cleanup_replication_at(&url_with(server, "supabase_admin", None, name), name).await;
    let Ok(mut admin) = PgConnection::connect(server).await else {
        return;
    };
    if let Err(e) = sqlx::raw_sql(&format!("drop database if exists \"{name}\" with (force)"))
        .execute(&mut admin)
        .await
    {
        eprintln!("could not drop test database {name}: {e}");
    }
    for role in roles {
        let _ = sqlx::raw_sql(&format!("drop role if exists \"{role}\""))
            .execute(&mut admin)
            .await;
    }
}

impl Drop for SupaDb {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let (name, server) = (self.name.clone(), self.server.clone());
        let roles = std::mem::take(&mut *self.roles.lock().unwrap());
        // Drop runs outside async context: use a private runtime on a thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(drop_supa_db(&server, &name, &roles));
        })
        .join();
    }
}

// ---------------------------------------------------------------------------
// pg_cron: the one database of the PostgreSQL 15 target cluster it runs in
// ---------------------------------------------------------------------------

/// Serialises the tests of this process that use the pg_cron database (an
/// advisory lock on the server serialises them with other processes).
fn cron_lock() -> std::sync::Arc<tokio::sync::Mutex<()>> {
    static LOCK: std::sync::OnceLock<std::sync::Arc<tokio::sync::Mutex<()>>> =
        std::sync::OnceLock::new();
    LOCK.get_or_init(Default::default).clone()
}

/// The database pg_cron keeps its jobs in (`cron.database_name`) on the
/// PostgreSQL 15 target cluster, from `CUTOVER_TEST_PG15_CRON_DATABASE`.
/// pg_cron has only this one database per cluster, so a test that needs real
/// jobs uses it as its target: [`pg15_cron_target_or_skip`] hands it out to
/// one test at a time, emptied (every job unscheduled, every schema but
/// `cron` dropped) and bootstrapped as [`SupaDb::new`] would.
pub struct CronTarget {
    /// The database, as a [`SupaDb`] that is never dropped.
    pub db: SupaDb,
    /// The admin URL of the PostgreSQL 15 source cluster (for a source
    /// database made with [`SupaDb::new`]).
    pub source_server: String,
    /// Holds the server-side advisory lock until the test ends.
    lock: Option<PgConnection>,
    _in_process: tokio::sync::OwnedMutexGuard<()>,
}

/// Empties the pg_cron database: no job, no publication, no schema but
/// `cron`, `public` and the system's, and nothing in `public` but what an
/// extension owns: `.ci/pgpair.sh` creates pg_cron there, and dropping the
/// schema would drop the extension with it.
const CRON_RESET_SQL: &str = r#"
select cron.unschedule(jobid) from cron.job;
delete from cron.job_run_details;
do $reset$
declare
  s text;
  o record;
begin
  for s in select n.nspname from pg_namespace n
            where n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast', 'cron', 'public')
              and n.nspname not like 'pg\_temp\_%' and n.nspname not like 'pg\_toast\_temp\_%'
              and not exists (select 1 from pg_extension e
                               where e.extnamespace = n.oid and e.extname = 'pg_cron')
  loop
    execute format('drop schema %I cascade', s);
  end loop;
  for s in select pubname from pg_publication loop
    execute format('drop publication %I', s);
  end loop;
  for o in select c.oid::regclass::text as name,
                  case c.relkind when 'v' then 'view' when 'm' then 'materialized view'
                                 when 'S' then 'sequence' when 'f' then 'foreign table'
                                 else 'table' end as kind
             from pg_class c
            where c.relnamespace = 'public'::regnamespace
              and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')
              and not exists (select 1 from pg_depend d
                               where d.classid = 'pg_class'::regclass and d.objid = c.oid
                                 and d.deptype in ('e', 'i', 'a'))
  loop
    execute format('drop %s if exists %s cascade', o.kind, o.name);
  end loop;
  for o in select p.oid::regprocedure::text as name from pg_proc p
            where p.pronamespace = 'public'::regnamespace
              and not exists (select 1 from pg_depend d
                               where d.classid = 'pg_proc'::regclass and d.objid = p.oid
                                 and d.deptype = 'e')
  loop
    execute format('drop routine if exists %s cascade', o.name);
  end loop;
  for o in select t.oid::regtype::text as name from pg_type t
            where t.typnamespace = 'public'::regnamespace and t.typtype in ('e', 'd', 'r', 'c')
              and (t.typrelid = 0 or (select relkind from pg_class where oid = t.typrelid) = 'c')
              and not exists (select 1 from pg_depend d
                               where d.classid = 'pg_type'::regclass and d.objid = t.oid
                                 and d.deptype = 'e')
  loop
    execute format('drop type if exists %s cascade', o.name);
  end loop;
end
$reset$;
"#;

/// [`CronTarget`] of the PostgreSQL 15 clusters, or `None` with a skip note
/// where they are not set up (a panic under CI, like [`pg_pair`]). Waits
/// for other tests using the pg_cron database to finish.
pub async fn pg15_cron_target_or_skip(test: &str) -> Option<CronTarget> {
    let (source_server, target_server) = pg_pair_or_skip(15, test)?;
    let name = match std::env::var("CUTOVER_TEST_PG15_CRON_DATABASE") {
        Ok(n) if !n.is_empty() => n,
        _ if std::env::var_os("CI").is_some() => panic!(
            "CUTOVER_TEST_PG15_CRON_DATABASE is unset: run .ci/pg15.sh, then `set -a; . /tmp/cutover-pg15/env; set +a`"
        ),
        _ => {
            eprintln!(
                "skipped {test}: CUTOVER_TEST_PG15_CRON_DATABASE is unset (load /tmp/cutover-pg15/env)"
            );
            return None;
        }
    };
    let in_process = cron_lock().lock_owned().await;
    let db = SupaDb {
        name: name.clone(),
        server: target_server.clone(),
        roles: Default::default(),
        owned: false,
    };
    let mut lock = PgConnection::connect(&db.admin_url())
        .await
        .unwrap_or_else(|e| panic!("connect to {name} (run .ci/pg15.sh): {e}"));
    sqlx::query("select pg_advisory_lock(hashtext('cutover tests: pg_cron database'))")
        .execute(&mut lock)
        .await
        .expect("lock the pg_cron database");
    db.exec_as_admin(CRON_RESET_SQL).await;
    db.prepare().await;
    Some(CronTarget {
        db,
        source_server,
        lock: Some(lock),
        _in_process: in_process,
    })
}

impl CronTarget {
    /// `jobname=active` of every job, by name, read as the superuser.
    pub async fn jobs(&self) -> String {
        self.db
            .scalar_as_admin(
                "select coalesce(string_agg(jobname || '=' || active, ',' order by jobname), '') from cron.job",
            )
            .await
            .unwrap_or_default()
    }
}

impl Drop for CronTarget {
    /// Unschedules the test's jobs (they would keep running every minute),
    /// then the lock is released.
    fn drop(&mut self) {
        let url = self.db.admin_url();
        let lock = self.lock.take();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&url).await {
                    let _ = sqlx::raw_sql("select cron.unschedule(jobid) from cron.job")
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
        drop(lock);
    }
}

// ---------------------------------------------------------------------------
// Headless Chromium (the summary's rendered height)
// ---------------------------------------------------------------------------

/// Debian's `chromium` when on PATH (`.ci/chromium.sh` installs it).
///
/// Absent: `None` with a one-line skip note for `test` on a developer's
/// machine, a panic under CI, where `.ci/run` installs it first.
pub fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromium"))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("chromium is not on PATH: run .ci/chromium.sh (.ci/run does)");
        }
        eprintln!("skipped {test}: no chromium on PATH (run .ci/chromium.sh)");
    }
    found
}

/// Tells the developer a measured figure (test output shows it with `--nocapture`).
pub fn note(line: &str) {
    eprintln!("{line}");
}
