//! A phase list is all or nothing up front: what its phases need is checked
//! before the first one writes (`readiness`); files that cannot be applied
//! stop `schema` before its first file; rows the migrations themselves wrote
//! are replaced by the source's without `--overwrite`.

use crate::common;

use common::*;

/// A settings table the migration fills with defaults, and a table of data.
const SEEDING_MIGRATION: &str = "
create table public.app_settings (key text primary key, value text not null);
insert into public.app_settings values ('currency', 'EUR'), ('locale', 'en');
create table public.members (id bigint primary key, name text not null);
";

/// A work folder with that migration and a manifest (`[data]` as given).
fn work_dir(data: &str) -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    let migrations = work.path().join("supabase/migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    std::fs::write(migrations.join("20250101000000_app.sql"), SEEDING_MIGRATION).unwrap();
    std::fs::write(
        work.path().join("cutover.toml"),
        format!("[project]\nname = \"ready\"\n\n[data]\n{data}\n"),
    )
    .unwrap();
    work
}

/// A source with the app and its rows (settings changed from the defaults),
/// and an empty target.
async fn pair(label: &str) -> Pair {
    let (source_label, target_label) = (format!("{label}_s"), format!("{label}_t"));
    let (source, target) = tokio::join!(TestDb::new(&source_label), TestDb::new(&target_label));
    source.exec(SEEDING_MIGRATION).await;
    source
        .exec(
            "update public.app_settings set value = 'KES' where key = 'currency';
             insert into public.app_settings values ('timezone', 'Africa/Nairobi');
             insert into public.members select g, 'member ' || g from generate_series(1, 25) g;",
        )
        .await;
    Pair { source, target }
}

/// `[schema] lock_timeout_seconds = 1` appended to the work folder's manifest.
fn lock_timeout_of_one_second(work: &std::path::Path) {
    let manifest = work.join("cutover.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        format!("{text}\n[schema]\nlock_timeout_seconds = 1\n"),
    )
    .unwrap();
}

/// An application session named `application` inside a transaction that has
/// read `public.members`: its lock outlives a one-second timeout.
async fn reading_members(db: &TestDb, application: &str) -> sqlx::PgConnection {
    let mut app = db.connect().await;
    sqlx::raw_sql(&format!(
        "set application_name = '{application}'; begin; select count(*) from public.members"
    ))
    .execute(&mut app)
    .await
    .unwrap();
    app
}

fn run(
    work: &std::path::Path,
    phases: &str,
    pair: &Pair,
    extra: &[(&str, &str)],
) -> std::process::Output {
    run_local(work, phases, &work.join("cutover.toml"), pair, extra)
}

#[tokio::test]
async fn rows_the_migrations_wrote_are_replaced_by_the_sources_without_overwrite() {
    let pair = pair("seeded").await;
    let work = work_dir("");
    let out = run(work.path(), "schema,data,validate", &pair, &[]);
    let log = text(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    for table in ["public.app_settings", "public.members"] {
        assert_eq!(
            table_digest(&pair.source, table).await,
            table_digest(&pair.target, table).await,
            "{table}"
        );
    }
    let summary = std::fs::read_to_string(work.path().join("summary.md")).unwrap();
    assert!(summary.contains("Rows the migrations wrote"), "{summary}");
    assert!(
        summary.contains("public.app_settings (2 rows)"),
        "the replaced seed is its own row: {summary}"
    );
    // Replaced once: from now on those rows are data like any other.
    assert_eq!(
        pair.target
            .scalar("select count(*)::text from cutover.seeded_tables")
            .await
            .unwrap(),
        "0"
    );
}

#[tokio::test]
async fn a_seeded_table_that_gained_rows_since_is_refused_like_any_other() {
    let pair = pair("seedgrew").await;
    let work = work_dir("");
    let out = run(work.path(), "schema", &pair, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    pair.target
        .exec("insert into public.app_settings values ('written', 'by the app')")
        .await;
    let before = (
        table_digest(&pair.target, "public.app_settings").await,
        table_digest(&pair.target, "public.members").await,
    );
    let out = run(work.path(), "data", &pair, &[]);
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains("target tables already hold rows: public.app_settings"),
        "{log}"
    );
    let after = (
        table_digest(&pair.target, "public.app_settings").await,
        table_digest(&pair.target, "public.members").await,
    );
    assert_eq!(after, before, "nothing copied");
}

#[tokio::test]
async fn a_list_missing_what_a_later_phase_needs_writes_nothing() {
    // `functions` needs a project ref and a token; none is given.
    let pair = pair("notready").await;
    let work = work_dir("");
    std::fs::create_dir_all(work.path().join("supabase/functions/hello")).unwrap();
    std::fs::write(
        work.path().join("supabase/functions/hello/index.ts"),
        "Deno.serve(() => new Response('hi'))",
    )
    .unwrap();
    let before = pair.target.fingerprint().await;
    let out = run(work.path(), "schema,data,functions,validate", &pair, &[]);
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains("FAILED readiness"), "{log}");
    assert!(
        log.contains("functions needs target-project-ref and supabase-access-token"),
        "{log}"
    );
    assert_eq!(
        pair.target.fingerprint().await,
        before,
        "no migration applied, no row copied, no ledger written"
    );
    let summary = std::fs::read_to_string(work.path().join("summary.md")).unwrap();
    assert!(
        summary.contains("Management API inputs for `functions`"),
        "{summary}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.path().join("report.json")).unwrap())
            .unwrap();
    let outcomes: Vec<(String, String)> = report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["phase"].as_str().unwrap().to_string(),
                p["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(outcomes[0], ("readiness".into(), "failed".into()));
    assert!(
        outcomes[1..].iter().all(|(_, o)| o == "skipped"),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn a_target_holding_rows_of_its_own_is_refused_before_schema_runs() {
    let pair = pair("heldrows").await;
    let work = work_dir("");
    pair.target
        .exec(
            "create table public.members (id bigint primary key, name text not null);
               insert into public.members values (1, 'already here');",
        )
        .await;
    let before = pair.target.fingerprint().await;
    let out = run(work.path(), "schema,data", &pair, &[]);
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains("`data` would refuse them: public.members (1)"),
        "{log}"
    );
    assert_eq!(
        pair.target.fingerprint().await,
        before,
        "schema did not run"
    );
}

#[tokio::test]
async fn a_file_not_in_utf8_stops_schema_before_its_first_file() {
    let pair = pair("latin1").await;
    let work = work_dir("");
    std::fs::write(
        work.path()
            .join("supabase/migrations/20250102000000_notes.sql"),
        b"-- caf\xe9 notes\ncreate table public.notes (id int);\n",
    )
    .unwrap();
    for phases in ["schema", "preflight"] {
        let out = run(work.path(), phases, &pair, &[]);
        let log = text(&out);
        assert_eq!(out.status.code(), Some(1), "{phases}: {log}");
        assert!(
            log.contains("20250102000000_notes.sql: not UTF-8 text at line 1 (byte 7)"),
            "{phases}: {log}"
        );
    }
    let tables: String = pair
        .target
        .scalar("select count(*)::text from pg_tables where schemaname = 'public'")
        .await
        .unwrap();
    assert_eq!(tables, "0", "the file before it was not applied either");
}

#[tokio::test]
async fn a_dry_run_list_plans_data_on_the_tables_schema_would_create() {
    let pair = pair("dryplan").await;
    let work = work_dir("");
    let before = pair.target.fingerprint().await;
    let out = run(
        work.path(),
        "schema,data,validate",
        &pair,
        &[("CUTOVER_DRY_RUN", "true")],
    );
    let log = text(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains("Dry-run: 2 tables would be copied"), "{log}");
    let summary = std::fs::read_to_string(work.path().join("summary.md")).unwrap();
    assert!(
        summary.contains("Tables `schema` would create first"),
        "{summary}"
    );
    assert!(summary.contains("20250101000000_app.sql"), "{summary}");
    assert_eq!(pair.target.fingerprint().await, before, "nothing written");
    // Without `schema` before it, the same dry-run still says what is missing.
    let out = run(work.path(), "data", &pair, &[("CUTOVER_DRY_RUN", "true")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("the target lacks tables to copy into"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn a_lock_an_app_holds_on_a_target_table_times_out_naming_the_session() {
    let pair = pair("lockwait").await;
    let work = work_dir("");
    let out = run(work.path(), "schema", &pair, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    lock_timeout_of_one_second(work.path());
    // An app transaction reading the table: its lock outlives our timeout.
    let mut app = reading_members(&pair.target, "billing-worker").await;
    let out = run(work.path(), "data", &pair, &[]);
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains("(billing-worker) holds public.members"),
        "{log}"
    );
    assert!(log.contains("pg_terminate_backend(pid)"), "{log}");
    sqlx::raw_sql("rollback").execute(&mut app).await.unwrap();
    // Nothing half-done: the next run copies everything.
    let out = run(work.path(), "data", &pair, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        table_digest(&pair.source, "public.members").await,
        table_digest(&pair.target, "public.members").await
    );
}

#[tokio::test]
async fn a_migration_waiting_on_an_apps_lock_gives_up_naming_the_transaction() {
    let pair = pair("schemalock").await;
    let work = work_dir("");
    let out = run(work.path(), "schema", &pair, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    std::fs::write(
        work.path()
            .join("supabase/migrations/20250102000000_note.sql"),
        "alter table public.members add column note text;",
    )
    .unwrap();
    lock_timeout_of_one_second(work.path());
    let mut app = reading_members(&pair.target, "report-builder").await;
    let out = run(work.path(), "schema", &pair, &[]);
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains("lock timeout"), "{log}");
    assert!(
        log.contains("(report-builder) has a transaction open since"),
        "{log}"
    );
    sqlx::raw_sql("rollback").execute(&mut app).await.unwrap();
    // The file rolled back whole; the next run applies it.
    let out = run(work.path(), "schema", &pair, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        pair.target
            .scalar("select count(*)::text from information_schema.columns where table_name = 'members' and column_name = 'note'")
            .await
            .as_deref(),
        Some("1")
    );
}

#[tokio::test]
async fn frontend_variables_naming_the_targets_keys_are_filled_from_the_api() {
    use crate::fake_supabase::{FakeApi, TARGET, TOKEN};
    let api = FakeApi::start().await;
    let pair = pair("keys").await;
    let work = work_dir("");
    let manifest = work.path().join("cutover.toml");
    let text_before = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        format!(
            "{text_before}\n[frontend]\nprovider = \"vercel\"\nproject = \"app\"\n\n[frontend.env]\nVITE_SUPABASE_URL = \"${{supabase.url}}\"\nVITE_SUPABASE_ANON_KEY = \"${{supabase.anon_key}}\"\nVITE_SENTRY_DSN = \"${{SENTRY_DSN_UNSET}}\"\n"
        ),
    )
    .unwrap();
    let api_url = api.url();
    let out = run(
        work.path(),
        "schema,cutover",
        &pair,
        &[
            ("CUTOVER_TARGET_PROJECT_REF", TARGET),
            ("CUTOVER_SUPABASE_ACCESS_TOKEN", TOKEN),
            ("CUTOVER_SUPABASE_API_URL", api_url.as_str()),
            ("CUTOVER_VERCEL_TOKEN", "vercel-token-for-keys-test-1"),
        ],
    );
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    // Only the job's own unset variable is missing: the ${supabase.*} names
    // were read from GET /api-keys.
    assert!(
        log.contains("[frontend.env] references variables that are not set: SENTRY_DSN_UNSET;"),
        "{log}"
    );
    assert!(!log.contains("not set: supabase."), "{log}");
    let summary = std::fs::read_to_string(work.path().join("summary.md")).unwrap();
    assert!(
        summary.contains("Target URL and client keys read"),
        "{summary}"
    );
    assert!(
        !summary.contains(&format!("anon-key-of-{TARGET}")),
        "{summary}"
    );
    assert_eq!(
        api.with(|s| s.log.iter().filter(|l| l.contains("/api-keys")).count()),
        1
    );
}
