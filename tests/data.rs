//! `data` on real databases: identical rows by an independent hash, sequences
//! ahead, triggers not fired twice, refusal of non-empty targets, --overwrite,
//! and resumption after a killed process or a dropped connection.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A table big enough that a copy is still running when the test strikes.
const BULK_DDL: &str = "create table public.bulk_events (
    id bigint generated always as identity primary key,
    customer_id bigint references public.customers (id),
    kind text not null,
    payload jsonb not null,
    amount numeric(12, 2) not null
);
create index bulk_events_customer_idx on public.bulk_events (customer_id);
create index bulk_events_kind_idx on public.bulk_events (kind, amount);";

async fn pair_with_schema(example: &str) -> (Pair, tempfile::TempDir) {
    let pair = Pair::from_example(example).await;
    let work = tempfile::tempdir().unwrap();
    let manifest = repo_root()
        .join("examples")
        .join(example)
        .join("cutover.toml");
    let out = run_local(work.path(), "schema", &manifest, &pair, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    (pair, work)
}

async fn with_bulk(pair: &Pair, rows: i64) {
    pair.source.exec(BULK_DDL).await;
    pair.target.exec(BULK_DDL).await;
    pair.source
        .exec(&format!(
            "insert into public.bulk_events (customer_id, kind, payload, amount)
             select 1 + g % 300, 'event-' || (g % 17), jsonb_build_object('n', g, 'note', md5(g::text) || md5((g * 7)::text)), (g % 100000) / 100.0
               from generate_series(1, {rows}) g"
        ))
        .await;
}

fn manifest_for(example: &str) -> std::path::PathBuf {
    repo_root()
        .join("examples")
        .join(example)
        .join("cutover.toml")
}

/// The tables the example's manifest copies.
async fn copied_tables(pair: &Pair, example: &str) -> Vec<String> {
    let manifest = cutover::manifest::Manifest::load(&manifest_for(example)).unwrap();
    let mut tables = user_tables(&pair.source).await;
    tables.retain(|t| {
        let plain = t.replace('"', "");
        !manifest
            .data
            .exclude
            .iter()
            .any(|e| plain == *e || plain == format!("public.{e}"))
            && (plain.starts_with("public.")
                || (manifest.data.include_auth
                    && plain.starts_with("auth.")
                    && !plain.ends_with("schema_migrations")))
    });
    tables
}

async fn assert_identical(pair: &Pair) {
    let tables = copied_tables(pair, "ops-portal").await;
    assert_same_rows(&pair.source, &pair.target, &tables).await;
    // No duplicates: every source primary key unique on the target, counted
    // with GROUP BY, independently of the constraint (which a broken rebuild
    // could have left out).
    for table in &tables {
        let key = pair
            .source
            .scalar(&format!(
                "select string_agg(quote_ident(a.attname), ', ' order by a.attnum)
                   from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
                  where i.indrelid = '{table}'::regclass and i.indisprimary"
            ))
            .await;
        if let Some(key) = key {
            let dupes = pair
                .target
                .scalar(&format!(
                    "select count(*)::text from (select {key} from {table} group by {key} having count(*) > 1) d"
                ))
                .await;
            assert_eq!(dupes.as_deref(), Some("0"), "duplicate keys in {table}");
        }
    }
    assert_eq!(
        schema_dump(&pair.source),
        schema_dump(&pair.target),
        "an index or constraint is missing or changed"
    );
    let owed = pair
        .target
        .scalar("select count(*)::text from cutover.deferred_objects where status = 'dropped'")
        .await;
    assert_eq!(
        owed.as_deref(),
        Some("0"),
        "objects still owed in the ledger"
    );
}

#[tokio::test]
async fn copies_every_table_identically_with_sequences_ahead() {
    for example in ["ops-portal", "savings-groups"] {
        let (pair, work) = pair_with_schema(example).await;
        // Rows created by migrations (configuration seeds) are not part of the copy.
        let out = run_local(
            work.path(),
            "data",
            &manifest_for(example),
            &pair,
            &[("CUTOVER_OVERWRITE", "true")],
        );
        assert_eq!(out.status.code(), Some(0), "{example}: {}", text(&out));
        let tables = copied_tables(&pair, example).await;
        assert_same_rows(&pair.source, &pair.target, &tables).await;
        assert_eq!(
            schema_dump(&pair.source),
            schema_dump(&pair.target),
            "{example}"
        );
        let summary = std::fs::read_to_string(work.path().join("summary.md")).unwrap();
        assert!(summary.contains("<b>Row counts (data)</b>"), "{summary}");
        if example == "ops-portal" {
            // Identity and standalone sequences: new rows do not collide.
            pair.target
                .exec("insert into public.customers (client_name) values ('after cutover')")
                .await;
            let seq = pair
                .target
                .scalar("select last_value::text from public.invoice_number_sequence")
                .await;
            let src = pair
                .source
                .scalar("select last_value::text from public.invoice_number_sequence")
                .await;
            assert_eq!(seq, src);
        } else {
            // Triggers did not fire during the copy: audit rows equal, none extra.
            let a = table_digest(&pair.source, "public.audit_log").await;
            let b = table_digest(&pair.target, "public.audit_log").await;
            assert_eq!(a, b);
        }
    }
}

#[tokio::test]
async fn a_non_empty_target_is_refused_unless_overwrite() {
    let (pair, work) = pair_with_schema("ops-portal").await;
    let manifest = manifest_for("ops-portal");
    pair.target
        .exec("insert into public.customers (client_name) values ('already here')")
        .await;
    let out = run_local(work.path(), "data", &manifest, &pair, &[]);
    assert_eq!(out.status.code(), Some(1));
    let log = text(&out);
    assert!(
        log.contains("target tables already hold rows: public.customers"),
        "{log}"
    );
    assert!(log.contains("--overwrite"), "{log}");
    assert_eq!(
        pair.target
            .scalar("select count(*)::text from public.customers")
            .await
            .as_deref(),
        Some("1")
    );
    let out = run_local(
        work.path(),
        "data",
        &manifest,
        &pair,
        &[("CUTOVER_OVERWRITE", "true")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        table_digest(&pair.source, "public.customers").await,
        table_digest(&pair.target, "public.customers").await
    );
}

#[tokio::test]
async fn missing_target_tables_are_named() {
    let pair = Pair::from_example("ops-portal").await;
    let work = tempfile::tempdir().unwrap();
    let out = run_local(work.path(), "data", &manifest_for("ops-portal"), &pair, &[]);
    assert_eq!(out.status.code(), Some(1));
    let log = text(&out);
    assert!(
        log.contains("the target lacks tables to copy into")
            && log.contains("run the `schema` phase first"),
        "{log}"
    );
}

/// Waits (bounded) until the target is in the middle of copying bulk_events,
/// and returns the pid of the target backend doing it.
async fn wait_for_copy(target: &TestDb) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut conn = target.connect().await;
    loop {
        let pid: Option<i32> = sqlx::query_scalar(
            "select p.pid from pg_stat_progress_copy p
              where p.relid = 'public.bulk_events'::regclass and p.command = 'COPY FROM' and p.bytes_processed > 0",
        )
        .fetch_optional(&mut conn)
        .await
        .unwrap();
        if let Some(pid) = pid {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "the copy of bulk_events never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn spawn_data(work: &std::path::Path, pair: &Pair) -> std::process::Child {
    Command::new(cutover_bin())
        .current_dir(work)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CUTOVER_SOURCE_DB_URL", pair.source.url())
        .env("CUTOVER_TARGET_DB_URL", pair.target.url())
        .env("CUTOVER_MANIFEST", manifest_for("ops-portal"))
        .env("CUTOVER_OVERWRITE", "true")
        .arg("data")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn killed_mid_copy_then_rerun_gives_an_identical_target() {
    let (pair, work) = pair_with_schema("ops-portal").await;
    with_bulk(&pair, 300_000).await;
    let mut child = spawn_data(work.path(), &pair);
    wait_for_copy(&pair.target).await;
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    // Constraints are dropped right now; the ledger remembers them.
    let owed = pair
        .target
        .scalar("select count(*)::text from cutover.deferred_objects where status = 'dropped'")
        .await;
    assert_ne!(owed.as_deref(), Some("0"));
    let out = run_local(
        work.path(),
        "data",
        &manifest_for("ops-portal"),
        &pair,
        &[("CUTOVER_OVERWRITE", "true")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("Interrupted copy resumed"),
        "{}",
        text(&out)
    );
    assert_identical(&pair).await;
}

#[tokio::test]
async fn target_connection_terminated_mid_copy_then_rerun_gives_an_identical_target() {
    let (pair, work) = pair_with_schema("ops-portal").await;
    with_bulk(&pair, 300_000).await;
    let child = spawn_data(work.path(), &pair);
    let pid = wait_for_copy(&pair.target).await;
    pair.target
        .exec(&format!("select pg_terminate_backend({pid})"))
        .await;
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // Nothing left missing after a failure: rebuilt at once.
    assert_eq!(
        pair.target
            .scalar(
                "select count(*)::text from pg_indexes where indexname = 'bulk_events_kind_idx'"
            )
            .await
            .as_deref(),
        Some("1")
    );
    let out = run_local(
        work.path(),
        "data",
        &manifest_for("ops-portal"),
        &pair,
        &[("CUTOVER_OVERWRITE", "true")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_identical(&pair).await;
}

#[tokio::test]
async fn source_connection_terminated_mid_copy_then_rerun_gives_an_identical_target() {
    let (pair, work) = pair_with_schema("ops-portal").await;
    with_bulk(&pair, 300_000).await;
    let child = spawn_data(work.path(), &pair);
    wait_for_copy(&pair.target).await;
    pair.source
        .exec("select pg_terminate_backend(pid) from pg_stat_progress_copy where command = 'COPY TO' and relid = 'public.bulk_events'::regclass")
        .await;
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("bulk_events"), "{}", text(&out));
    let out = run_local(
        work.path(),
        "data",
        &manifest_for("ops-portal"),
        &pair,
        &[("CUTOVER_OVERWRITE", "true")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_identical(&pair).await;
}

#[tokio::test]
async fn two_concurrent_data_runs_never_interleave() {
    let (pair, work) = pair_with_schema("ops-portal").await;
    with_bulk(&pair, 150_000).await;
    let first = spawn_data(work.path(), &pair);
    wait_for_copy(&pair.target).await;
    let second = spawn_data(work.path(), &pair);
    // The second run waits for the first one's run lock, visibly.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut conn = pair.target.connect().await;
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity
              where datname = current_database() and application_name = 'cutover'
                and wait_event_type = 'Lock' and wait_event = 'advisory'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the second run never waited");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let a = first.wait_with_output().unwrap();
    let b = second.wait_with_output().unwrap();
    assert_eq!(a.status.code(), Some(0), "{}", text(&a));
    // The second ran after the first, alone: it refilled the tables
    // (--overwrite) without duplicating a row.
    assert_eq!(b.status.code(), Some(0), "{}", text(&b));
    assert_identical(&pair).await;
}
