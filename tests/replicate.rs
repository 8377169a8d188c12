//! Logical replication between the two PostgreSQL 17 clusters of
//! `.ci/pg17.sh`, as Supabase's `postgres` role (not a superuser) can do it.
//! Skipped (with a note) when the clusters' URLs are not set, except under CI.

mod common;

use std::time::{Duration, Instant};

use common::*;

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
