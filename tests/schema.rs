//! `schema` on real databases: the same result as the Supabase CLI's psql
//! way, history rows the CLI reads, stops at a broken file, resumes, refuses
//! drift and missing files, and never interleaves with another run.

use crate::common;

use common::*;

async fn history(db: &TestDb) -> Vec<String> {
    let mut conn = db.connect().await;
    sqlx::query_scalar("select version from supabase_migrations.schema_migrations order by version")
        .fetch_all(&mut conn)
        .await
        .unwrap_or_default()
}

#[tokio::test]
async fn applies_each_example_like_the_cli_does() {
    for example in ["ops-portal", "savings-groups"] {
        let pair = Pair::from_example(example).await;
        let work = tempfile::tempdir().unwrap();
        let manifest = repo_root()
            .join("examples")
            .join(example)
            .join("cutover.toml");
        let out = run_local(work.path(), "schema", &manifest, &pair, &[]);
        assert_eq!(out.status.code(), Some(0), "{example}: {}", text(&out));
        assert_eq!(
            schema_dump(&pair.source),
            schema_dump(&pair.target),
            "{example}: schema differs from the psql way"
        );
        assert_eq!(history(&pair.source).await, history(&pair.target).await);
        // One row per file, statements recorded as the CLI records them.
        let empty: String = pair
            .target
            .scalar("select count(*)::text from supabase_migrations.schema_migrations where cardinality(statements) = 0 or name is null or name = ''")
            .await
            .unwrap();
        assert_eq!(empty, "0");
        let checksums = pair
            .target
            .scalar("select count(*)::text from cutover.migrations")
            .await
            .unwrap();
        assert_eq!(checksums, history(&pair.target).await.len().to_string());
        if example == "savings-groups" {
            assert!(
                std::fs::read_to_string(work.path().join("summary.md"))
                    .unwrap()
                    .contains("outside a transaction")
            );
        }
        // A second run finds nothing to do.
        let again = run_local(work.path(), "schema", &manifest, &pair, &[]);
        assert_eq!(again.status.code(), Some(0));
        assert!(
            text(&again).contains("0 of 0 pending migrations applied"),
            "{}",
            text(&again)
        );
    }
}

#[tokio::test]
async fn a_broken_file_stops_with_its_name_and_line_and_the_next_run_resumes() {
    let pair = Pair::from_example("ops-portal").await;
    let work = example_copy("ops-portal", "[project]\nname = \"t\"\n");
    let broken = work
        .path()
        .join("supabase/migrations/20250116000000_broken.sql");
    std::fs::write(&broken, "-- adds a column\ncreate table public.extra (id int);\n\nalter table public.customers\n  add column oops no_such_type;\n").unwrap();
    let manifest = work.path().join("cutover.toml");
    let out = run_local(work.path(), "schema", &manifest, &pair, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let log = text(&out);
    assert!(
        log.contains("20250116000000_broken.sql: statement 2 (line 5) failed"),
        "{log}"
    );
    assert!(
        log.contains("type \"no_such_type\" does not exist"),
        "{log}"
    );
    let applied = history(&pair.target).await;
    assert_eq!(
        applied,
        ["20250103130000", "20250113000000", "20250114000000"],
        "exactly the files before it"
    );
    assert_eq!(
        pair.target
            .scalar("select to_regclass('public.extra')::text")
            .await,
        None,
        "rolled back"
    );

    std::fs::write(&broken, "create table public.extra (id int);\n").unwrap();
    let out = run_local(work.path(), "schema", &manifest, &pair, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(history(&pair.target).await.len(), 13);
}

#[tokio::test]
async fn drift_and_missing_local_files_block_before_any_change() {
    let pair = Pair::from_example("ops-portal").await;
    let work = example_copy("ops-portal", "[project]\nname = \"t\"\n");
    let manifest = work.path().join("cutover.toml");
    let out = run_local(work.path(), "schema", &manifest, &pair, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Edit an applied file: drift.
    let file = work
        .path()
        .join("supabase/migrations/20250113000000_initial_setup.sql");
    let mut sql = std::fs::read_to_string(&file).unwrap();
    sql.push_str("\n-- edited after it was applied\n");
    std::fs::write(&file, sql).unwrap();
    std::fs::write(
        work.path()
            .join("supabase/migrations/20990101000000_new.sql"),
        "create table public.later (id int);",
    )
    .unwrap();
    let out = run_local(work.path(), "schema", &manifest, &pair, &[]);
    assert_eq!(out.status.code(), Some(1));
    let summary = std::fs::read_to_string(work.path().join("summary.md")).unwrap();
    assert!(
        summary.contains("changed since they were applied: 20250113000000_initial_setup"),
        "{summary}"
    );
    assert_eq!(
        pair.target
            .scalar("select to_regclass('public.later')::text")
            .await,
        None,
        "nothing applied"
    );

    // Allowed drift goes ahead with a warning.
    std::fs::write(
        &manifest,
        "[project]\nname = \"t\"\n[schema]\nallow_drift = true\n",
    )
    .unwrap();
    let out = run_local(work.path(), "schema", &manifest, &pair, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // A version on the target with no file: refused like the CLI's ErrMissingLocal.
    std::fs::remove_file(
        work.path()
            .join("supabase/migrations/20990101000000_new.sql"),
    )
    .unwrap();
    let out = run_local(work.path(), "schema", &manifest, &pair, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("applied on the target but no local file: 20990101000000"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn out_of_order_files_block_unless_allowed() {
    let pair = Pair::from_example("ops-portal").await;
    let work = example_copy("ops-portal", "[project]\nname = \"t\"\n");
    let manifest = work.path().join("cutover.toml");
    assert_eq!(
        run_local(work.path(), "schema", &manifest, &pair, &[])
            .status
            .code(),
        Some(0)
    );
    std::fs::write(
        work.path()
            .join("supabase/migrations/20250101000000_late.sql"),
        "create table public.late (id int);",
    )
    .unwrap();
    let out = run_local(work.path(), "schema", &manifest, &pair, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("older than the newest applied version"),
        "{}",
        text(&out)
    );
    std::fs::write(
        &manifest,
        "[project]\nname = \"t\"\n[schema]\nallow_out_of_order = true\n",
    )
    .unwrap();
    assert_eq!(
        run_local(work.path(), "schema", &manifest, &pair, &[])
            .status
            .code(),
        Some(0)
    );
    assert!(
        pair.target
            .scalar("select to_regclass('public.late')::text")
            .await
            .is_some()
    );
}

#[tokio::test]
async fn a_second_run_waits_for_the_lock_then_fails_clearly() {
    let pair = Pair::from_example("ops-portal").await;
    let work = example_copy(
        "ops-portal",
        "[project]\nname = \"t\"\n[schema]\nlock_timeout_seconds = 1\n",
    );
    let manifest = work.path().join("cutover.toml");
    // Another run holds the lock.
    let mut holder = pair.target.connect().await;
    sqlx::query("select pg_advisory_lock($1)")
        .bind(cutover::pg::migrate::RUN_LOCK_KEY)
        .execute(&mut holder)
        .await
        .unwrap();
    let out = run_local(work.path(), "schema", &manifest, &pair, &[]);
    assert_eq!(out.status.code(), Some(1));
    let log = text(&out);
    assert!(
        log.contains("another cutover run holds the run lock"),
        "{log}"
    );
    assert!(log.contains("nothing was changed"), "{log}");
    assert!(history(&pair.target).await.is_empty());
    drop(holder);
    assert_eq!(
        run_local(work.path(), "schema", &manifest, &pair, &[])
            .status
            .code(),
        Some(0)
    );
}

#[tokio::test]
async fn dry_run_applies_nothing() {
    let pair = Pair::from_example("ops-portal").await;
    let before = pair.target.fingerprint().await;
    let manifest = repo_root().join("examples/ops-portal/cutover.toml");
    let work = tempfile::tempdir().unwrap();
    let out = run_local(
        work.path(),
        "schema",
        &manifest,
        &pair,
        &[("CUTOVER_DRY_RUN", "true")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("would apply (dry-run)"));
    assert_eq!(pair.target.fingerprint().await, before);
}

#[tokio::test]
async fn files_with_their_own_begin_and_commit_stay_atomic() {
    let pair = Pair::from_example("ops-portal").await;
    let work = example_copy("ops-portal", "[project]\nname = \"t\"\n");
    std::fs::write(
        work.path().join("supabase/migrations/20990101000000_wrapped.sql"),
        "begin;\ncreate table public.wrapped (id int);\ncommit;\nbegin;\ninsert into public.wrapped values (1);\nselect 1/0;\ncommit;\n",
    )
    .unwrap();
    let out = run_local(
        work.path(),
        "schema",
        &work.path().join("cutover.toml"),
        &pair,
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("division by zero"), "{}", text(&out));
    assert_eq!(
        pair.target
            .scalar("select to_regclass('public.wrapped')::text")
            .await,
        None,
        "the whole file rolled back"
    );
    assert_eq!(history(&pair.target).await.len(), 12);
}

/// Waits (bounded) until a cutover backend on `db` waits for a lock, and
/// returns its pid.
async fn wait_for_lock_wait(db: &TestDb) -> i32 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut conn = db.connect().await;
    loop {
        let pid: Option<i32> = sqlx::query_scalar(
            "select pid from pg_stat_activity
              where datname = current_database() and application_name = 'cutover'
                and wait_event_type = 'Lock' and wait_event = 'relation'",
        )
        .fetch_optional(&mut conn)
        .await
        .unwrap();
        if let Some(pid) = pid {
            return pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "cutover never waited on the lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The migration history and the objects the files create agree.
async fn assert_history_matches_schema(db: &TestDb, files: &[(&str, &str)]) {
    let applied = history(db).await;
    for (version, table) in files {
        let exists = db
            .scalar(&format!("select to_regclass('public.{table}')::text"))
            .await
            .is_some();
        assert_eq!(
            applied.contains(&version.to_string()),
            exists,
            "history {applied:?} and table {table} disagree"
        );
    }
}

#[tokio::test]
async fn killed_between_two_files_leaves_history_and_schema_agreeing_and_a_rerun_completes() {
    let target = TestDb::new("schkill").await;
    target
        .exec("create table public.contended (id int); insert into public.contended values (1);")
        .await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("supabase/migrations");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("20250101000000_first.sql"),
        "create table public.first_t (id int);",
    )
    .unwrap();
    // The second file needs the table the test keeps locked: the run stops
    // inside it, in a known place, without any sleep.
    std::fs::write(
        dir.join("20250102000000_second.sql"),
        "create table public.second_t (id int);\nlock table public.contended in access exclusive mode;\ninsert into public.second_t select id from public.contended;",
    )
    .unwrap();
    std::fs::write(
        dir.join("20250103000000_third.sql"),
        "create table public.third_t (id int);",
    )
    .unwrap();
    std::fs::write(
        work.path().join("cutover.toml"),
        "[project]\nname = \"t\"\n",
    )
    .unwrap();
    let files = [
        ("20250101000000", "first_t"),
        ("20250102000000", "second_t"),
        ("20250103000000", "third_t"),
    ];

    let mut holder = target.connect().await;
    sqlx::raw_sql("begin; lock table public.contended in access share mode;")
        .execute(&mut holder)
        .await
        .unwrap();
    let mut child = std::process::Command::new(cutover_bin())
        .current_dir(work.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CUTOVER_TARGET_DB_URL", target.url())
        .env("CUTOVER_MANIFEST", work.path().join("cutover.toml"))
        .arg("schema")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let waiting = wait_for_lock_wait(&target).await;
    child.kill().unwrap(); // SIGKILL, mid-file
    let _ = child.wait();
    // The orphaned backend ends when it next talks to its dead client.
    sqlx::raw_sql("commit").execute(&mut holder).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while target
        .scalar(&format!(
            "select (select pid::text from pg_stat_activity where pid = {waiting})"
        ))
        .await
        .is_some()
    {
        assert!(std::time::Instant::now() < deadline, "backend never ended");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(history(&target).await, ["20250101000000"]);
    assert_history_matches_schema(&target, &files).await;

    let out = run_local_target(work.path(), &target);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(history(&target).await.len(), 3);
    assert_history_matches_schema(&target, &files).await;
    assert_eq!(
        target
            .scalar("select count(*)::text from public.second_t")
            .await
            .as_deref(),
        Some("1"),
        "the file ran once, whole"
    );
}

fn run_local_target(work: &std::path::Path, target: &TestDb) -> std::process::Output {
    run_cutover(
        work,
        &["schema"],
        &[
            ("CUTOVER_TARGET_DB_URL".into(), target.url()),
            (
                "CUTOVER_MANIFEST".into(),
                work.join("cutover.toml").display().to_string(),
            ),
        ],
    )
}

#[tokio::test]
async fn stdout_closed_by_its_reader_ends_the_run_cleanly_with_summary_and_closed_ledger() {
    // `cutover schema,data | head -1`: the reader goes away at once.
    let pair = Pair::from_example("ops-portal").await;
    let work = tempfile::tempdir().unwrap();
    let manifest = repo_root().join("examples/ops-portal/cutover.toml");
    let mut child = std::process::Command::new(cutover_bin())
        .current_dir(work.path())
        .arg("schema,data")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CUTOVER_SOURCE_DB_URL", pair.source.url())
        .env("CUTOVER_TARGET_DB_URL", pair.target.url())
        .env("CUTOVER_MANIFEST", &manifest)
        .env("CUTOVER_SUMMARY_FILE", work.path().join("summary.md"))
        .env("CUTOVER_REPORT_FILE", work.path().join("report.json"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "no panic (101): {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let summary = std::fs::read_to_string(work.path().join("summary.md")).unwrap();
    assert!(
        summary.contains("data"),
        "the summary is written: {summary}"
    );
    assert_eq!(
        pair.target
            .scalar("select string_agg(distinct status, ',') from cutover.runs")
            .await
            .unwrap(),
        "success",
        "the ledger's run is closed, not left running"
    );
    assert_eq!(history(&pair.source).await, history(&pair.target).await);
}

#[tokio::test]
async fn plan_and_schema_warn_about_a_file_supabase_db_push_would_reject() {
    let (source, target) = tokio::join!(TestDb::new("cic_src"), TestDb::new("cic_tgt"));
    let pair = Pair { source, target };
    let work = tempfile::tempdir().unwrap();
    let migrations = work.path().join("supabase/migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    std::fs::write(
        migrations.join("20250101000000_orders.sql"),
        "create table public.orders (id bigint primary key, ref text);\n",
    )
    .unwrap();
    std::fs::write(
        migrations.join("20250102000000_orders_ref.sql"),
        "-- built without blocking writes\n\ncreate index concurrently orders_ref_idx\n  on public.orders (ref);\n",
    )
    .unwrap();
    std::fs::write(
        work.path().join("cutover.toml"),
        "[project]\nname = \"t\"\n",
    )
    .unwrap();
    let manifest = work.path().join("cutover.toml");
    let named = "supabase/migrations/20250102000000_orders_ref.sql line 3: CREATE INDEX CONCURRENTLY cannot run inside a transaction block";

    for phase in ["plan", "schema"] {
        let out = run_local(work.path(), phase, &manifest, &pair, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let log = text(&out);
        let row = log
            .lines()
            .find(|l| l.contains("Migration statements that cannot run in a transaction"))
            .unwrap_or_else(|| panic!("{phase}: {log}"));
        assert!(row.starts_with("  [warn]") && row.contains(named), "{row}");
        assert!(
            !row.contains("20250101000000_orders.sql"),
            "only the file with the statement: {row}"
        );
        assert!(
            log.contains("drop CONCURRENTLY")
                && log.contains("expect `supabase db push` to reject the file"),
            "{log}"
        );
        let summary = std::fs::read_to_string(work.path().join("summary.md")).unwrap();
        assert!(summary.contains(named), "{summary}");
    }
    // cutover itself applied it, outside the file's transaction.
    assert_eq!(
        pair.target
            .scalar("select to_regclass('public.orders_ref_idx')::text")
            .await
            .as_deref(),
        Some("orders_ref_idx")
    );
    // Applied: the next plan has nothing to warn about.
    let out = run_local(work.path(), "plan", &manifest, &pair, &[]);
    assert!(
        !text(&out).contains("cannot run in a transaction"),
        "{}",
        text(&out)
    );
}
