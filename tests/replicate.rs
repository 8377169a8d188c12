//! Logical replication between the two PostgreSQL 17 clusters of
//! `.ci/pg17.sh`, as Supabase's `postgres` role (not a superuser) can do it.
//! Skipped (with a note) when the clusters' URLs are not set, except under CI.

use crate::common;
use crate::fake_github;

use std::time::{Duration, Instant};

use common::*;
use fake_github::*;

/// Polls `cond` every 200 ms until it holds; panics after 60 s with `what`.
async fn wait_for<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out after 60 s: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_string()
}

async fn assert_not_superuser(db: &SupaDb) {
    assert_eq!(
        db.scalar("select current_user::text").await.as_deref(),
        Some("postgres")
    );
    assert_eq!(
        db.scalar("select current_setting('is_superuser')")
            .await
            .as_deref(),
        Some("off"),
        "postgres must not be a superuser on {}",
        db.name
    );
}

#[tokio::test]
async fn bootstrap_loads_on_both_pg17_clusters_and_postgres_is_not_superuser() {
    let Some((source_url, target_url)) =
        pg17_servers_or_skip("bootstrap_loads_on_both_pg17_clusters_and_postgres_is_not_superuser")
    else {
        return;
    };
    let (source, target) = tokio::join!(
        SupaDb::new(&source_url, "boot_src"),
        SupaDb::new(&target_url, "boot_tgt")
    );
    assert_ne!(source.port(), target.port(), "two distinct clusters");
    for db in [&source, &target] {
        let version: i64 = db
            .scalar("select current_setting('server_version_num')")
            .await
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (170000..180000).contains(&version),
            "PostgreSQL 17: {version}"
        );
        assert_eq!(
            db.scalar("select current_setting('wal_level')")
                .await
                .as_deref(),
            Some("logical")
        );
        assert_not_superuser(db).await;
        assert_eq!(
            db.scalar_as_admin("select current_setting('is_superuser')")
                .await
                .as_deref(),
            Some("on"),
            "supabase_admin is the superuser"
        );
        // The role as on Supabase: no superuser, but replication, bypassrls,
        // createrole, createdb, and may create subscriptions.
        assert_eq!(
            db.scalar(
                "select format('%s %s %s %s %s', rolsuper, rolreplication, rolbypassrls, rolcreaterole, rolcreatedb)
                   from pg_roles where rolname = 'postgres'"
            )
            .await
            .as_deref(),
            Some("f t t t t")
        );
        assert_eq!(
            db.scalar("select pg_has_role('postgres', 'pg_create_subscription', 'member')::text")
                .await
                .as_deref(),
            Some("true")
        );
        // The bootstrap is there and usable by postgres.
        for object in ["auth.users", "storage.objects", "storage.buckets"] {
            assert!(
                db.scalar(&format!("select to_regclass('{object}')::text"))
                    .await
                    .is_some(),
                "{object} missing on {}",
                db.name
            );
        }
        assert_eq!(
            db.scalar("select count(*)::text from auth.users")
                .await
                .as_deref(),
            Some("0")
        );
        // App tables made as postgres belong to it, and the API roles get
        // their grants as on Supabase.
        db.exec("create table public.notes (id bigint primary key, body text)")
            .await;
        assert_eq!(
            db.scalar("select tableowner::text from pg_tables where tablename = 'notes'")
                .await
                .as_deref(),
            Some("postgres")
        );
        assert_eq!(
            db.scalar("select has_table_privilege('anon', 'public.notes', 'select')::text")
                .await
                .as_deref(),
            Some("true")
        );
        db.exec("set session_replication_role = replica").await;
    }
    // The bootstrap is idempotent on a cluster where the roles exist.
    source.exec_as_admin(&bootstrap_sql()).await;
}

#[tokio::test]
async fn non_superuser_postgres_can_subscribe_between_the_pg17_clusters() {
    let Some((source_url, target_url)) =
        pg17_servers_or_skip("non_superuser_postgres_can_subscribe_between_the_pg17_clusters")
    else {
        return;
    };
    let (source, target) = tokio::join!(
        SupaDb::new(&source_url, "repl_src"),
        SupaDb::new(&target_url, "repl_tgt")
    );
    assert_not_superuser(&source).await;
    assert_not_superuser(&target).await;

    let id = suffix();
    let (role, publication, subscription) =
        (format!("repl_x_{id}"), format!("p_{id}"), format!("s_{id}"));
    let password = uuid::Uuid::new_v4().simple().to_string();
    let table = "create table public.items (id bigint primary key, label text not null, qty int)";

    // Source, as postgres: the table, its rows, a password role that may
    // replicate, and a publication.
    source.drop_role_on_drop(&role);
    source
        .exec(&format!(
            "{table};
             insert into public.items select g, 'item ' || g, g % 7 from generate_series(1, 500) g;
             create role \"{role}\" login replication bypassrls password '{password}';
             grant select on public.items to \"{role}\";
             create publication \"{publication}\" for table public.items;"
        ))
        .await;

    // Target, as postgres: the same table and a subscription.
    target.exec(table).await;
    let conninfo = source.conninfo(&role, &password);
    target
        .exec(&format!(
            "create subscription \"{subscription}\" connection '{conninfo}'
               publication \"{publication}\" with (copy_data = true, binary = true)"
        ))
        .await;
    assert_eq!(
        target
            .scalar(&format!(
                "select subowner::regrole::text from pg_subscription where subname = '{subscription}'"
            ))
            .await
            .as_deref(),
        Some("postgres")
    );

    // Initial copy: every table ready, every row there.
    let state_sql = format!(
        "select format('%s/%s', count(*) filter (where r.srsubstate = 'r'), count(*))
           from pg_subscription_rel r join pg_subscription s on s.oid = r.srsubid
          where s.subname = '{subscription}'"
    );
    wait_for("initial sync of public.items", || async {
        target.scalar(&state_sql).await.as_deref() == Some("1/1")
            && target
                .scalar("select count(*)::text from public.items")
                .await
                .as_deref()
                == Some("500")
    })
    .await;
    let digest = "select md5(string_agg(format('%s|%s|%s', id, label, qty), ',' order by id)) from public.items";
    assert_eq!(source.scalar(digest).await, target.scalar(digest).await);

    // Streaming: a change on the source arrives.
    source
        .exec(
            "insert into public.items values (501, 'late', 1);
             update public.items set qty = 99 where id = 1;
             delete from public.items where id = 2;",
        )
        .await;
    wait_for("streamed insert, update and delete", || async {
        target
            .scalar("select format('%s %s %s', (select label from public.items where id = 501), (select qty from public.items where id = 1), (select count(*) from public.items where id = 2))")
            .await
            .as_deref()
            == Some("late 99 0")
    })
    .await;
    assert_eq!(source.scalar(digest).await, target.scalar(digest).await);

    // Clean up as postgres: dropping the subscription drops its slot on the
    // source.
    target
        .exec(&format!("drop subscription \"{subscription}\""))
        .await;
    assert_eq!(
        source
            .scalar_as_admin(&format!(
                "select count(*)::text from pg_replication_slots where slot_name = '{subscription}'"
            ))
            .await
            .as_deref(),
        Some("0"),
        "the subscription's slot is dropped with it"
    );
    source
        .exec(&format!("drop publication \"{publication}\""))
        .await;
}

#[tokio::test]
async fn dropping_the_handles_removes_live_subscriptions_slots_and_roles() {
    let Some((source_url, target_url)) =
        pg17_servers_or_skip("dropping_the_handles_removes_live_subscriptions_slots_and_roles")
    else {
        return;
    };
    let (source, target) = tokio::join!(
        SupaDb::new(&source_url, "drop_src"),
        SupaDb::new(&target_url, "drop_tgt")
    );
    let id = suffix();
    let (role, subscription) = (format!("repl_x_{id}"), format!("s_{id}"));
    source.drop_role_on_drop(&role);
    source
        .exec(&format!(
            "create table public.t (id int primary key);
             insert into public.t select generate_series(1, 10);
             create role \"{role}\" login replication password 'pw-{id}';
             grant select on public.t to \"{role}\";
             create publication p for table public.t;"
        ))
        .await;
    // Not in one exec: create subscription cannot run in a transaction block.
    target
        .exec("create table public.t (id int primary key)")
        .await;
    target
        .exec(&format!(
            "create subscription \"{subscription}\" connection '{}' publication p",
            source.conninfo(&role, &format!("pw-{id}"))
        ))
        .await;
    wait_for("the subscription's walsender", || async {
        source
            .scalar_as_admin(&format!(
                "select count(*)::text from pg_replication_slots where slot_name = '{subscription}' and active"
            ))
            .await
            .as_deref()
            == Some("1")
    })
    .await;

    // The source goes first, its slot still in use: the hard order.
    let (source_name, target_name) = (source.name.clone(), target.name.clone());
    drop(source);
    drop(target);
    let mut admin: sqlx::PgConnection = sqlx::Connection::connect(&source_url).await.unwrap();
    let left: i64 = sqlx::query_scalar(
        "select (select count(*) from pg_database where datname = $1)
              + (select count(*) from pg_replication_slots where database = $1)
              + (select count(*) from pg_roles where rolname = $2)",
    )
    .bind(&source_name)
    .bind(&role)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(left, 0, "source database, slots and role are gone");
    let mut admin: sqlx::PgConnection = sqlx::Connection::connect(&target_url).await.unwrap();
    let left: i64 = sqlx::query_scalar(
        "select (select count(*) from pg_database where datname = $1)
              + (select count(*) from pg_subscription where subname = $2)",
    )
    .bind(&target_name)
    .bind(&subscription)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(left, 0, "target database and subscription are gone");
}

// ---------------------------------------------------------------------------
// Replicate mode end to end, on the PostgreSQL 17 clusters, connected as the
// non-superuser `postgres`, with the app writing all the time.
// ---------------------------------------------------------------------------

const GH_TOKEN: &str = "ghs_ReplicateGateToken0123456789";

/// The app's tables, made as `postgres` on both sides (the schema phase's
/// work); the source seeded, the API roles granted.
const APP_SQL: &str = "
    create table public.orders (id bigint generated by default as identity primary key,
                                note text not null, qty int not null default 0);
    create table public.order_events (id uuid primary key default gen_random_uuid(),
                                      order_id bigint not null references public.orders(id) on delete cascade,
                                      kind text not null);
    create index orders_note_idx on public.orders (note);
    create index order_events_kind_idx on public.order_events (kind);
    grant all on public.orders, public.order_events to service_role;
    grant usage on all sequences in schema public to service_role;";

/// What a writer saw acknowledged (committed) or refused.
#[derive(Debug, Clone)]
enum Ack {
    /// An insert committed with this id and note.
    Inserted(i64, String),
    /// An update committed: id now has note.
    Updated(i64, String),
    /// A delete committed.
    Deleted(i64),
    /// A write refused by the freeze (its note must be nowhere).
    Refused(String),
}

/// A writer as the live app: `authenticator` → `set role service_role`,
/// inserts, updates and deletes (some in multi-statement transactions that
/// straddle whatever happens), logging every acknowledged commit, until
/// `stop`. Errors other than the freeze's refusal are returned.
async fn app_writer(
    url: String,
    writer: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    log: std::sync::Arc<std::sync::Mutex<Vec<Ack>>>,
) -> Vec<String> {
    use sqlx::Connection;
    use std::sync::atomic::Ordering;
    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .expect("writer connects");
    sqlx::query("set role service_role")
        .execute(&mut conn)
        .await
        .unwrap();
    let mut mine: Vec<i64> = Vec::new();
    let mut other_errors = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let note = format!("w{writer}-{n}");
        let result: Result<Vec<Ack>, sqlx::Error> = async {
            if n % 4 == 0 {
                // A transaction that spans a little time: insert, wait, update.
                let mut tx = conn.begin().await?;
                let id: i64 =
                    sqlx::query_scalar("insert into public.orders (note) values ($1) returning id")
                        .bind(&note)
                        .fetch_one(&mut *tx)
                        .await?;
                sqlx::query("select pg_sleep(0.02)")
                    .execute(&mut *tx)
                    .await?;
                let updated = format!("{note}-tx");
                sqlx::query("update public.orders set note = $2 where id = $1")
                    .bind(id)
                    .bind(&updated)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "insert into public.order_events (order_id, kind) values ($1, 'created')",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(vec![
                    Ack::Inserted(id, note.clone()),
                    Ack::Updated(id, updated),
                ])
            } else if n % 5 == 0 && mine.len() > 3 {
                let id = mine.remove(0);
                let done = sqlx::query("delete from public.orders where id = $1")
                    .bind(id)
                    .execute(&mut conn)
                    .await?;
                Ok(if done.rows_affected() == 1 {
                    vec![Ack::Deleted(id)]
                } else {
                    vec![]
                })
            } else if n % 3 == 0 && !mine.is_empty() {
                let id = mine[mine.len() / 2];
                let updated = format!("{note}-upd");
                sqlx::query("update public.orders set note = $2, qty = qty + 1 where id = $1")
                    .bind(id)
                    .bind(&updated)
                    .execute(&mut conn)
                    .await?;
                Ok(vec![Ack::Updated(id, updated)])
            } else {
                let id: i64 =
                    sqlx::query_scalar("insert into public.orders (note) values ($1) returning id")
                        .bind(&note)
                        .fetch_one(&mut conn)
                        .await?;
                Ok(vec![Ack::Inserted(id, note.clone())])
            }
        }
        .await;
        match result {
            Ok(acks) => {
                for a in &acks {
                    if let Ack::Inserted(id, _) = a {
                        mine.push(*id);
                    }
                }
                log.lock().unwrap().extend(acks);
            }
            // Refused by the freeze, or cancelled by PostgreSQL's deadlock
            // detector while the freeze took its locks (a transaction that
            // held one copied table and waited for another): an error, never
            // an acknowledgement; its rows must be nowhere.
            Err(e)
                if e.to_string().contains("frozen")
                    || e.as_database_error().and_then(|d| d.code()).as_deref() == Some("40P01") =>
            {
                log.lock().unwrap().push(Ack::Refused(note));
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => {
                other_errors.push(e.to_string());
                // A broken transaction: start again on a fresh connection.
                if let Ok(mut c) = sqlx::PgConnection::connect(&url).await {
                    let _ = sqlx::query("set role service_role").execute(&mut c).await;
                    conn = c;
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    other_errors
}

/// Runs the binary as the action runs it, in a blocking thread so the
/// writers go on meanwhile.
async fn run_action(
    work: std::path::PathBuf,
    phase: &str,
    source_url: String,
    target_url: String,
    github_url: String,
) -> (std::process::Output, String) {
    run_action_with(work, phase, source_url, target_url, github_url, Vec::new()).await
}

/// [`run_action`] with more environment variables.
async fn run_action_with(
    work: std::path::PathBuf,
    phase: &str,
    source_url: String,
    target_url: String,
    github_url: String,
    extra: Vec<(String, String)>,
) -> (std::process::Output, String) {
    let phase = phase.to_string();
    tokio::task::spawn_blocking(move || {
        let files = ActionsFiles::new();
        let out = ActionsRun::new(&files, &phase)
            .var("GITHUB_API_URL", github_url)
            .manifest(work.join("cutover.toml"))
            .databases(source_url, target_url)
            .input("github-token", GH_TOKEN)
            .vars(extra)
            .run(&work);
        let summary = std::fs::read_to_string(files.path("summary.md")).unwrap_or_default();
        (out, summary)
    })
    .await
    .unwrap()
}

fn replicate_manifest(source: &SupaDb, extra: &str) -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("supabase/migrations")).unwrap();
    std::fs::write(
        work.path().join("cutover.toml"),
        format!(
            r#"[project]
name = "replicate-e2e"

[data]
mode = "replicate"
replication_host = "{}"
replication_port = {}
{extra}

[gate]
environment = "production"

# The test app writes only through service_role (which bypasses RLS): its
# tables have no RLS on purpose, accepted with the reason as a user would.
[[lints.accept]]
lint = "rls_disabled_in_public"
object = "public.orders"
reason = "test app: written only through service_role"

[[lints.accept]]
lint = "rls_disabled_in_public"
object = "public.order_events"
reason = "test app: written only through service_role"
"#,
            source.host(),
            source.port()
        ),
    )
    .unwrap();
    work
}

async fn rows(db: &SupaDb, table: &str, columns: &str) -> String {
    db.scalar_as_admin(&format!(
        "select coalesce(string_agg(r::text, ',' order by r::text), '') from (select {columns} from {table}) r"
    ))
    .await
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicate_mode_keeps_every_acknowledged_write_while_the_app_writes() {
    let Some((src, tgt)) = pg17_servers_or_skip("replicate_mode_keeps_every_acknowledged_write")
    else {
        return;
    };
    let (source, target, work, gh, api_url) = replicate_pair(&src, &tgt, "zl", 20000).await;

    // The app writes from before `data` until after `cutover`.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..3)
        .map(|w| tokio::spawn(app_writer(api_url.clone(), w, stop.clone(), log.clone())))
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let (s_url, t_url) = (source.url_as_postgres(), target.url_as_postgres());
    let (_, summary) = run_action(
        work.path().to_path_buf(),
        "preflight",
        s_url.clone(),
        t_url.clone(),
        gh.uri(),
    )
    .await;
    assert!(
        summary.contains("Source publishes logical changes")
            && summary.contains("Target may subscribe"),
        "preflight shows the replication rows: {summary}"
    );
    let summary = run_ok(&work, "data", &s_url, &t_url, &gh.uri()).await;
    assert!(
        summary.contains("Initial sync done") && summary.contains("Target follows the source"),
        "{summary}"
    );
    let summary = run_ok(&work, "validate", &s_url, &t_url, &gh.uri()).await;
    assert!(
        summary.contains("Compared at a replication fence"),
        "{summary}"
    );
    assert!(
        row_of(&summary, "Replication healthy").contains("apply worker running"),
        "{summary}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let summary = run_ok(&work, "cutover", &s_url, &t_url, &gh.uri()).await;
    assert!(
        summary.contains("Every write before the freeze applied on the target"),
        "{summary}"
    );
    assert!(summary.contains("Replication retired"), "{summary}");
    assert!(
        summary.contains("Writes refused on the source"),
        "{summary}"
    );
    // Writers go on a moment against the frozen source, then stop.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        let errors = w.await.unwrap();
        assert!(
            errors.is_empty(),
            "writer errors other than the freeze: {errors:?}"
        );
    }

    // Every acknowledged write is on the target, once, with its final value;
    // refused writes are nowhere; the two sides are equal.
    let log = log.lock().unwrap().clone();
    let mut expected: std::collections::BTreeMap<i64, Option<String>> = Default::default();
    let mut refused = Vec::new();
    for a in &log {
        match a {
            Ack::Inserted(id, note) | Ack::Updated(id, note) => {
                expected.insert(*id, Some(note.clone()));
            }
            Ack::Deleted(id) => {
                expected.insert(*id, None);
            }
            Ack::Refused(note) => refused.push(note.clone()),
        }
    }
    assert!(
        expected.len() > 50,
        "the writers wrote too little: {}",
        expected.len()
    );
    assert!(!refused.is_empty(), "no write met the freeze");
    let ids: Vec<i64> = expected.keys().copied().collect();
    let mut conn = target.connect_as_admin().await;
    let found: Vec<(i64, String)> =
        sqlx::query_as("select id, note from public.orders where id = any($1)")
            .bind(&ids)
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let found: std::collections::BTreeMap<i64, String> = found.into_iter().collect();
    for (id, note) in &expected {
        assert_eq!(found.get(id), note.as_ref(), "order {id} on the target");
    }
    let notes: Vec<String> = refused.clone();
    for db in [&source, &target] {
        let mut c = db.connect_as_admin().await;
        let n: i64 = sqlx::query_scalar("select count(*) from public.orders where split_part(note, '-', 1) || '-' || split_part(note, '-', 2) = any($1)")
            .bind(&notes)
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(n, 0, "a refused write reached a database");
    }
    for (table, columns) in [
        ("public.orders", "id, note, qty"),
        ("public.order_events", "id, order_id, kind"),
    ] {
        assert_eq!(
            rows(&source, table, columns).await,
            rows(&target, table, columns).await,
            "{table}"
        );
    }
    // The source acknowledges nothing now; the target takes a new insert
    // (sequences carried over); replication objects are gone.
    let mut api = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&api_url).await.unwrap()
    };
    sqlx::query("set role service_role")
        .execute(&mut api)
        .await
        .unwrap();
    let err = sqlx::query("insert into public.orders (note) values ('after')")
        .execute(&mut api)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("frozen"), "{err}");
    target
        .exec("insert into public.orders (note) values ('first on the target')")
        .await;
    assert_eq!(
        source
            .scalar_as_admin(
                "select count(*)::text from pg_publication where pubname like 'cutover_%'"
            )
            .await
            .as_deref(),
        Some("0")
    );
    assert_eq!(
        source
            .scalar_as_admin(&format!(
                "select count(*)::text from pg_roles where rolname = '{}'",
                target
                    .scalar_as_admin("select role_name from cutover.replications")
                    .await
                    .unwrap_or_default()
            ))
            .await
            .as_deref(),
        Some("0")
    );
    assert_eq!(
        target.scalar_as_admin("select count(*)::text from pg_subscription where subname like 'cutover_%' and subdbid = (select oid from pg_database where datname = current_database())").await.as_deref(),
        Some("0")
    );
    let ledger = target
        .scalar_as_admin("select string_agg(state, ',') from cutover.replications")
        .await
        .unwrap_or_default();
    assert_eq!(ledger, "retired");
    let hashes = target
        .scalar_as_admin("select string_agg(password_sha256, ',') from cutover.replications")
        .await
        .unwrap_or_default();
    assert_eq!(
        hashes.len(),
        64,
        "only the password's sha-256 is kept: {hashes}"
    );
}

#[tokio::test]
async fn replicate_mode_refuses_a_table_without_a_key_before_creating_anything() {
    let Some((src, tgt)) = pg17_servers_or_skip("replicate_mode_refuses_a_table_without_a_key")
    else {
        return;
    };
    let (source, target) = tokio::join!(SupaDb::new(&src, "nksrc"), SupaDb::new(&tgt, "nktgt"));
    let sql = "create table public.audit_log (at timestamptz not null default now(), line text);
               create table public.items (id int primary key, name text);";
    source.exec(sql).await;
    target.exec(sql).await;
    source
        .exec("insert into public.audit_log (line) values ('a'), ('b')")
        .await;
    let work = replicate_manifest(&source, "");
    for phase in ["preflight", "data"] {
        let (out, summary) = run_action(
            work.path().to_path_buf(),
            phase,
            source.url_as_postgres(),
            target.url_as_postgres(),
            "http://127.0.0.1:9".into(),
        )
        .await;
        assert_eq!(
            out.status.code(),
            Some(1),
            "{phase}: {}\n{summary}",
            text(&out)
        );
        assert!(
            summary.contains("no primary key or replica identity: public.audit_log"),
            "{phase}: {summary}"
        );
    }
    // Nothing was created: no publication, no role, no subscription, and the
    // source still takes UPDATEs on the table.
    assert_eq!(
        source
            .scalar_as_admin(
                "select count(*)::text from pg_publication where pubname like 'cutover%'"
            )
            .await
            .as_deref(),
        Some("0")
    );
    assert_eq!(
        target
            .scalar_as_admin("select count(*)::text from pg_subscription where subname like 'cutover%' and subdbid = (select oid from pg_database where datname = current_database())")
            .await
            .as_deref(),
        Some("0")
    );
    source
        .exec("update public.audit_log set line = 'c' where line = 'a'")
        .await;
}

/// Source and target with the app's tables, the source seeded with `rows`
/// orders, `authenticator` able to log in; with the manifest and a gate
/// that approves.
async fn replicate_pair(
    src: &str,
    tgt: &str,
    label: &str,
    rows: u32,
) -> (
    SupaDb,
    SupaDb,
    tempfile::TempDir,
    wiremock::MockServer,
    String,
) {
    let (src_label, tgt_label) = (format!("{label}src"), format!("{label}tgt"));
    let (source, target) = tokio::join!(SupaDb::new(src, &src_label), SupaDb::new(tgt, &tgt_label));
    source.exec(APP_SQL).await;
    target.exec(APP_SQL).await;
    source
        .exec(&format!(
            "insert into public.orders (note, qty) select 'seed ' || g, g % 10 from generate_series(1, {rows}) g;
             insert into public.order_events (order_id, kind) select g, 'seeded' from generate_series(1, {rows}, 3) g;"
        ))
        .await;
    source
        .exec_as_admin("alter role authenticator login password 'app-writer-pw'")
        .await;
    let api_url = source.url_as("authenticator", Some("app-writer-pw"));
    let work = replicate_manifest(&source, "");
    let gh = github(
        environment(reviewers()),
        serde_json::json!([approval("approved", "octocat", "Go")]),
        "release-manager",
    )
    .await;
    (source, target, work, gh, api_url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_switch_killed_after_the_freeze_is_resumed_by_the_next_cutover() {
    use cutover::manifest::QualifiedName;
    use cutover::pg::{Database, Side};
    let Some((src, tgt)) = pg17_servers_or_skip("a_switch_killed_after_the_freeze") else {
        return;
    };
    let (source, target, work, gh, api_url) = replicate_pair(&src, &tgt, "kill", 2000).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = tokio::spawn(app_writer(api_url.clone(), 0, stop.clone(), log.clone()));
    let (s_url, t_url) = (source.url_as_postgres(), target.url_as_postgres());
    for phase in ["data", "validate"] {
        run_ok(&work, phase, &s_url, &t_url, &gh.uri()).await;
    }
    // What a cutover killed between its freeze and its fence leaves: the
    // source frozen, the replication still running, nothing switched.
    let redactor = cutover::redact::Redactor::new();
    let db = Database::connect(&s_url, Side::Source, false, 2, &redactor)
        .await
        .unwrap();
    db.freeze_writes(
        "cutover",
        &[
            QualifiedName::parse("public.order_events").unwrap(),
            QualifiedName::parse("public.orders").unwrap(),
        ],
        std::time::Duration::from_secs(10),
        "killed run",
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let summary = run_ok(&work, "cutover", &s_url, &t_url, &gh.uri()).await;
    assert!(
        summary.contains("already frozen (an interrupted switch): kept"),
        "{summary}"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(writer.await.unwrap().is_empty());
    for (table, columns) in [
        ("public.orders", "id, note, qty"),
        ("public.order_events", "id, order_id, kind"),
    ] {
        assert_eq!(
            rows(&source, table, columns).await,
            rows(&target, table, columns).await,
            "{table}"
        );
    }
    let acked = log
        .lock()
        .unwrap()
        .iter()
        .filter(|a| matches!(a, Ack::Inserted(..)))
        .count();
    assert!(acked > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_walsender_terminated_during_the_sync_does_not_lose_rows() {
    let Some((src, tgt)) = pg17_servers_or_skip("a_walsender_terminated_during_the_sync") else {
        return;
    };
    let (source, target, work, gh, _) = replicate_pair(&src, &tgt, "wals", 300_000).await;
    let (s_url, t_url) = (source.url_as_postgres(), target.url_as_postgres());
    // Traced as `CUTOVER_LOG=trace` traces: every statement is logged, but
    // the subscription's, which holds the replication role's password.
    let data = tokio::spawn(run_action_with(
        work.path().to_path_buf(),
        "data",
        s_url.clone(),
        t_url.clone(),
        gh.uri(),
        vec![("CUTOVER_LOG".into(), "trace".into())],
    ));
    // Once a table's initial copy runs, terminate the walsenders serving
    // this database's subscription (apply and table sync).
    let mut admin = source.connect_as_admin().await;
    let mut target_admin = target.connect_as_admin().await;
    let mut terminated = 0;
    for _ in 0..1500 {
        let copying: bool = sqlx::query_scalar(
            "select exists (select 1 from pg_subscription_rel r join pg_subscription s on s.oid = r.srsubid
                             where s.subdbid = (select oid from pg_database where datname = current_database())
                               and r.srsubstate = 'd')",
        )
        .fetch_one(&mut target_admin)
        .await
        .unwrap();
        if !copying {
            if data.is_finished() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        }
        let killed: Vec<bool> = sqlx::query_scalar(
            "select pg_terminate_backend(pid) from pg_stat_replication
              where application_name like 'cutover_%'
                and pid in (select pid from pg_stat_activity where datname = current_database())",
        )
        .fetch_all(&mut admin)
        .await
        .unwrap();
        if killed.iter().any(|k| *k) {
            terminated += 1;
            break;
        }
        if data.is_finished() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let (out, summary) = data.await.unwrap();
    assert_eq!(terminated, 1, "no walsender was caught while `data` ran");
    assert_eq!(
        out.status.code(),
        Some(0),
        "data: {}\n{summary}",
        text(&out)
    );
    let log = text(&out);
    assert!(log.contains("create publication"), "statements are traced");
    assert!(
        !log.contains("password='") && !log.contains("create subscription"),
        "the subscription's statement (with its password) is never logged"
    );
    assert_eq!(
        rows(&source, "public.orders", "count(*), sum(qty)").await,
        rows(&target, "public.orders", "count(*), sum(qty)").await
    );
    // Rollback before any cutover removes the replication everywhere.
    let summary = run_ok(&work, "rollback", &s_url, &t_url, &gh.uri()).await;
    assert!(summary.contains("Replication removed"), "{summary}");
    assert_eq!(
        source
            .scalar_as_admin(
                "select count(*)::text from pg_publication where pubname like 'cutover%'"
            )
            .await
            .as_deref(),
        Some("0")
    );
    assert_eq!(
        target
            .scalar_as_admin(
                "select count(*)::text from pg_subscription where subname like 'cutover%' and subdbid = (select oid from pg_database where datname = current_database())"
            )
            .await
            .as_deref(),
        Some("0")
    );
}

/// The summary's checklist row whose item is `title`.
fn row_of<'a>(summary: &'a str, title: &str) -> &'a str {
    summary
        .lines()
        .find(|l| l.contains(&format!("| {title} |")))
        .unwrap_or("")
}

/// [`run_action`] that must exit 0; returns the summary.
async fn run_ok(
    work: &tempfile::TempDir,
    phase: &str,
    source_url: &str,
    target_url: &str,
    github_url: &str,
) -> String {
    let (out, summary) = run_action(
        work.path().to_path_buf(),
        phase,
        source_url.to_string(),
        target_url.to_string(),
        github_url.to_string(),
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{phase}: {}\n{summary}",
        text(&out)
    );
    summary
}
