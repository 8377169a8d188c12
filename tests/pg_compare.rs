//! The database side of `validate` (`cutover::pg::compare`) against real
//! databases: two environments built from `examples/ops-portal` the same way,
//! then made to differ on purpose.

use crate::common;

use std::collections::BTreeSet;

use common::*;
use cutover::manifest::{Manifest, QualifiedName};
use cutover::pg::compare::{
    HashColumn, KeyDiff, KeyDiffKind, RowHash, first_differing_keys, row_hash,
};
use cutover::pg::{Database, Side};
use cutover::redact::Redactor;

/// Source and target, both with the ops-portal migrations and seed.
async fn identical_pair() -> (TestDb, TestDb) {
    let (source, target) = tokio::join!(TestDb::new("cmp_src"), TestDb::new("cmp_tgt"));
    tokio::join!(build(&source), build(&target));
    (source, target)
}

async fn build(db: &TestDb) {
    db.apply_migrations("ops-portal", None).await;
    db.seed("ops-portal").await;
    // The migrations insert configuration rows stamped with now(): give both
    // sides the same stamp (one no row has yet, or the trigger replaces it).
    db.exec(
        "update public.invoice_configurations
            set updated_at = timestamptz '2025-01-01 00:00:00+00'",
    )
    .await;
}

async fn open(db: &TestDb, side: Side) -> Database {
    Database::connect(&db.url(), side, true, 4, &Redactor::new())
        .await
        .expect("connect")
}

fn table(name: &str) -> QualifiedName {
    QualifiedName::parse(name).unwrap()
}

/// Columns compared for `table`: all of them, generated ones too.
async fn column_names(db: &Database, table: &QualifiedName) -> Vec<String> {
    db.columns(table)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect()
}

/// The row hash of every column of `table`, as `validate` decides it.
async fn hash_of(source: &Database, target: &Database, table: &QualifiedName) -> RowHash {
    let columns = column_names(source, table).await;
    row_hash(source, target, table, &columns).await.unwrap()
}

fn diff(key: &str, kind: KeyDiffKind) -> KeyDiff {
    KeyDiff {
        key: key.to_string(),
        kind,
    }
}

#[tokio::test]
async fn checksums_are_equal_on_identical_databases() {
    let (s, t) = identical_pair().await;
    let (source, target) = tokio::join!(open(&s, Side::Source), open(&t, Side::Target));
    let tables = source.user_tables(false, false).await.unwrap();
    assert!(tables.len() >= 8, "{tables:?}");
    for info in &tables {
        let hash = hash_of(&source, &target, &info.name).await;
        let (a, b) = tokio::join!(
            source.table_checksum(&info.name, &hash),
            target.table_checksum(&info.name, &hash)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a, b, "{}", info.name);
    }
    let customers = table("public.customers");
    let hash = hash_of(&source, &target, &customers).await;
    let (count, sum) = source.table_checksum(&customers, &hash).await.unwrap();
    assert_eq!(count, 300);
    assert_ne!(sum, "0");
    // Column order does not matter, only the set of columns.
    let mut reversed = column_names(&source, &customers).await;
    reversed.reverse();
    let reversed_hash = row_hash(&source, &target, &customers, &reversed)
        .await
        .unwrap();
    assert_eq!(reversed_hash, hash);
    assert_eq!(
        source
            .table_checksum(&customers, &reversed_hash)
            .await
            .unwrap(),
        (count, sum.clone())
    );
    // Fewer columns, another checksum.
    let fewer = row_hash(
        &source,
        &target,
        &customers,
        &["id".to_string(), "email".to_string()],
    )
    .await
    .unwrap();
    let (n, other) = source.table_checksum(&customers, &fewer).await.unwrap();
    assert_eq!(n, 300);
    assert_ne!(other, sum);
    // The text form (servers before 14) agrees between the sides too.
    let text = RowHash::text(&column_names(&source, &customers).await);
    assert_eq!(
        source.table_checksum(&customers, &text).await.unwrap(),
        target.table_checksum(&customers, &text).await.unwrap()
    );

    let columns = source.columns(&customers).await.unwrap();
    assert_eq!(columns[0].name, "id");
    assert_eq!(columns[0].type_name, "bigint");
    assert!(!columns[0].generated);
    let credit = columns.iter().find(|c| c.name == "credit_limit").unwrap();
    assert_eq!(credit.type_name, "numeric(12,2)");
    let invoices = source.columns(&table("public.invoices")).await.unwrap();
    let status = invoices.iter().find(|c| c.name == "status").unwrap();
    assert_eq!(status.type_name, "public.invoice_status");
    let users = source.columns(&table("auth.users")).await.unwrap();
    let confirmed = users.iter().find(|c| c.name == "confirmed_at").unwrap();
    assert!(confirmed.generated);
    let err = source
        .columns(&table("public.no_such_table"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("public.no_such_table"), "{err}");

    assert_eq!(
        source.single_column_pk(&customers).await.unwrap(),
        Some(("id".to_string(), "bigint".to_string()))
    );
    assert_eq!(
        source
            .single_column_pk(&table("public.invoices"))
            .await
            .unwrap(),
        Some(("id".to_string(), "uuid".to_string()))
    );

    // Identical sides: nothing to narrow down.
    let pk = ("id".to_string(), "bigint".to_string());
    assert!(
        first_differing_keys(&source, &target, &customers, &hash, &pk, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn differing_rows_are_found_by_key() {
    let (s, t) = identical_pair().await;
    t.exec(
        "update public.customers set credit_limit = credit_limit + 1 where id = 57;
         insert into public.customers (id, client_name, branch, credit_limit, created_at, updated_at)
              values (1000, 'Extra customer', 'Guntur', 0, '2025-02-01 00:00:00+00', '2025-02-01 00:00:00+00');
         delete from public.whatsapp_message_logs where id = 123;
         update public.sales_transactions set description = 'changed' where id = 1500;
         delete from public.sales_transactions where id = 1999;
         delete from public.invoices where id = md5('ops-portal-invoice-1')::uuid;
         update public.invoices set status = 'cancelled' where id = md5('ops-portal-invoice-2')::uuid;
         insert into public.invoices (id, invoice_number, transaction_id, customer_id, created_at, updated_at)
              values ('ffffffff-0000-0000-0000-000000000001', 'INV-EXTRA', 1, 1,
                      '2025-02-01 00:00:00+00', '2025-02-01 00:00:00+00');",
    )
    .await;
    let (source, target) = tokio::join!(open(&s, Side::Source), open(&t, Side::Target));
    let uuid_of = |label: &str| {
        let s = &s;
        let label = label.to_string();
        async move {
            s.scalar(&format!("select md5('{label}')::uuid::text"))
                .await
                .unwrap()
        }
    };
    let invoice_1 = uuid_of("ops-portal-invoice-1").await;
    let invoice_2 = uuid_of("ops-portal-invoice-2").await;

    let cases: Vec<(&str, Vec<KeyDiff>)> = vec![
        (
            "public.customers",
            vec![
                diff("57", KeyDiffKind::Different),
                diff("1000", KeyDiffKind::ExtraOnTarget),
            ],
        ),
        (
            "public.whatsapp_message_logs",
            vec![diff("123", KeyDiffKind::MissingOnTarget)],
        ),
        // 2000 rows: found by bisecting, not in one fetch.
        (
            "public.sales_transactions",
            vec![
                diff("1500", KeyDiffKind::Different),
                diff("1999", KeyDiffKind::MissingOnTarget),
            ],
        ),
        // 1440 rows with uuid keys.
        (
            "public.invoices",
            vec![
                diff(&invoice_1, KeyDiffKind::MissingOnTarget),
                diff(&invoice_2, KeyDiffKind::Different),
                diff(
                    "ffffffff-0000-0000-0000-000000000001",
                    KeyDiffKind::ExtraOnTarget,
                ),
            ],
        ),
    ];
    for (name, mut expected) in cases {
        let t = table(name);
        let hash = hash_of(&source, &target, &t).await;
        let (a, b) = tokio::join!(
            source.table_checksum(&t, &hash),
            target.table_checksum(&t, &hash)
        );
        assert_ne!(a.unwrap(), b.unwrap(), "{name}");
        let pk = source.single_column_pk(&t).await.unwrap().unwrap();
        let found = first_differing_keys(&source, &target, &t, &hash, &pk, 100)
            .await
            .unwrap();
        // Keys come out in key order (uuid text order is uuid order).
        expected.sort_by(|a, b| match (a.key.parse::<i64>(), b.key.parse::<i64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => a.key.cmp(&b.key),
        });
        assert_eq!(found, expected, "{name}");
        // At most max_keys, the first ones.
        let first = first_differing_keys(&source, &target, &t, &hash, &pk, 1)
            .await
            .unwrap();
        assert_eq!(first, expected[..1], "{name}");
    }

    // Ranges and split points on the 2000-row table.
    let sales = table("public.sales_transactions");
    let pk = ("id".to_string(), "bigint".to_string());
    let hash = hash_of(&source, &target, &sales).await;
    let points = source
        .split_points(&sales, &pk, None, None, 4)
        .await
        .unwrap();
    assert_eq!(points, ["500", "1000", "1500"]);
    let points = source
        .split_points(&sales, &pk, Some("1001"), Some("1101"), 2)
        .await
        .unwrap();
    assert_eq!(points, ["1050"]);
    let (n, _) = source
        .range_checksum(&sales, &hash, &pk, Some("500"), Some("1000"))
        .await
        .unwrap();
    assert_eq!(n, 500);
    let (n, _) = source
        .range_checksum(&sales, &hash, &pk, None, Some("11"))
        .await
        .unwrap();
    assert_eq!(n, 10);
    let (a, b) = tokio::join!(
        source.range_checksum(&sales, &hash, &pk, Some("1"), Some("1500")),
        target.range_checksum(&sales, &hash, &pk, Some("1"), Some("1500"))
    );
    assert_eq!(a.unwrap(), b.unwrap());
    let hashes = source
        .row_hashes(&sales, &hash, &pk, Some("8"), Some("100"), 3)
        .await
        .unwrap();
    let keys: Vec<&str> = hashes.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["8", "9", "10"]);
}

#[tokio::test]
async fn schema_text_matches_and_shows_a_new_index() {
    let (s, t) = identical_pair().await;
    let (source, target) = tokio::join!(open(&s, Side::Source), open(&t, Side::Target));
    let before = source.schema_text("cutover").await.unwrap();
    assert_eq!(before, target.schema_text("cutover").await.unwrap());
    for expected in [
        "column public.customers.client_name text not null",
        "column public.customers.id bigint not null generated by default as identity",
        "table public.customers rls on force off",
        "type public.invoice_status enum ('draft', 'generated', 'sent', 'paid', 'cancelled')",
        "sequence public.invoice_number_sequence bigint increment 1 min 1 max 9223372036854775807 start 1001 cache 1 no cycle",
        "grant table public.customers authenticated=arwdDxt/postgres",
    ] {
        assert!(
            before.lines().any(|l| l == expected),
            "no line {expected:?} in\n{before}"
        );
    }
    for prefix in [
        "constraint public.invoices invoices_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES public.customers(id)",
        "index public.idx_invoices_status CREATE INDEX",
        "function public.is_manager() returns boolean language sql stable security definer",
        "trigger public.customers customers_set_updated_at CREATE TRIGGER",
        "policy public.customers \"Managers see all customers, staff their own\" permissive for select to authenticated using",
    ] {
        assert!(
            before.lines().any(|l| l.starts_with(prefix)),
            "no line starting {prefix:?} in\n{before}"
        );
    }
    // Supabase's own schemas and the ledger are not part of it.
    for outside in [
        "schema auth",
        "table auth.",
        "column auth.",
        "table supabase_migrations.",
    ] {
        assert!(
            !before.lines().any(|l| l.starts_with(outside)),
            "{outside:?} in\n{before}"
        );
    }

    t.exec("create index on public.customers (email); create schema cutover; create table cutover.runs (id int);")
        .await;
    let after = target.schema_text("cutover").await.unwrap();
    let old: BTreeSet<&str> = before.lines().collect();
    let new: BTreeSet<&str> = after.lines().collect();
    let added: Vec<&str> = new.difference(&old).copied().collect();
    let removed: Vec<&str> = old.difference(&new).copied().collect();
    assert!(removed.is_empty(), "{removed:?}");
    assert_eq!(
        added,
        [
            "index public.customers_email_idx CREATE INDEX customers_email_idx ON public.customers USING btree (email)"
        ]
    );
}

#[tokio::test]
async fn sequences_report_values_and_owners() {
    let (s, t) = identical_pair().await;
    let (source, target) = tokio::join!(open(&s, Side::Source), open(&t, Side::Target));
    let sequences = source.sequences().await.unwrap();
    assert_eq!(sequences, target.sequences().await.unwrap());
    let names: Vec<String> = sequences.iter().map(|s| s.name.to_string()).collect();
    assert_eq!(
        names,
        [
            "public.customers_id_seq",
            "public.invoice_configurations_id_seq",
            "public.invoice_number_sequence",
            "public.sales_transactions_id_seq",
            "public.whatsapp_message_logs_id_seq",
        ]
    );
    let by_name = |n: &str| sequences.iter().find(|s| s.name.to_string() == n).unwrap();
    let invoice_numbers = by_name("public.invoice_number_sequence");
    assert_eq!(invoice_numbers.owned_by, None);
    // setval(.., 1000 + max(transaction_id)) in the seed: sale 1799.
    assert_eq!(invoice_numbers.last_value, Some(2799));
    assert!(invoice_numbers.is_called);
    let customers = by_name("public.customers_id_seq");
    assert_eq!(
        customers.owned_by,
        Some((table("public.customers"), "id".to_string()))
    );
    assert_eq!(customers.last_value, Some(300));
    assert!(customers.is_called);
    assert_eq!(
        source
            .column_max(&table("public.customers"), "id")
            .await
            .unwrap(),
        Some(300)
    );
    let sales = by_name("public.sales_transactions_id_seq");
    assert_eq!(
        sales.owned_by,
        Some((table("public.sales_transactions"), "id".to_string()))
    );
    assert_eq!(sales.last_value, Some(2000));
    // Used by the migrations' inserts only.
    let config = by_name("public.invoice_configurations_id_seq");
    assert!(config.is_called);
    // Never used: is_called is false and last_value is the start.
    t.exec("create table public.empty_things (id serial primary key)")
        .await;
    let target_sequences = target.sequences().await.unwrap();
    let empty = target_sequences
        .iter()
        .find(|s| s.name.to_string() == "public.empty_things_id_seq")
        .unwrap();
    assert_eq!(empty.last_value, Some(1));
    assert!(!empty.is_called);
    assert_eq!(
        empty.owned_by,
        Some((table("public.empty_things"), "id".to_string()))
    );
    assert_eq!(
        target
            .column_max(&table("public.empty_things"), "id")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn rls_states_match_and_show_a_disabled_table() {
    let (s, t) = identical_pair().await;
    let (source, target) = tokio::join!(open(&s, Side::Source), open(&t, Side::Target));
    let tables: Vec<QualifiedName> = source
        .user_tables(false, false)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .chain([table("public.no_such_table")])
        .collect();
    let before = source.rls_states(&tables).await.unwrap();
    assert_eq!(before, target.rls_states(&tables).await.unwrap());
    assert_eq!(before.len(), tables.len() - 1);
    assert!(before.iter().all(|s| s.enabled && !s.forced));
    let customers = before
        .iter()
        .find(|s| s.table == table("public.customers"))
        .unwrap();
    let names: Vec<&str> = customers.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Managers see all customers, staff their own",
            "Managers update all customers, staff their own",
            "Only managers delete customers",
            "Staff create customers as themselves",
        ]
    );
    let select = &customers.policies[0];
    assert!(select.permissive);
    assert_eq!(select.command, "SELECT");
    assert_eq!(select.roles, ["authenticated"]);
    assert_eq!(
        select.using.as_deref(),
        Some("(public.is_manager() OR (created_by = auth.uid()))")
    );
    assert_eq!(select.with_check, None);
    let insert = &customers.policies[3];
    assert_eq!(insert.command, "INSERT");
    assert_eq!(insert.using, None);
    assert!(insert.with_check.is_some());

    t.exec("alter table public.whatsapp_templates disable row level security")
        .await;
    let after = target.rls_states(&tables).await.unwrap();
    let changed: Vec<String> = before
        .iter()
        .zip(&after)
        .filter(|(a, b)| a != b)
        .map(|(a, _)| a.table.to_string())
        .collect();
    assert_eq!(changed, ["public.whatsapp_templates"]);
    let templates = after
        .iter()
        .find(|s| s.table == table("public.whatsapp_templates"))
        .unwrap();
    assert!(!templates.enabled);
    assert_eq!(templates.policies.len(), 2);
}

#[tokio::test]
async fn probes_answer_as_the_manifest_expects() {
    let (s, t) = identical_pair().await;
    let manifest = Manifest::load(&repo_root().join("examples/ops-portal/cutover.toml")).unwrap();
    assert!(manifest.checks.rls_probes.len() >= 6);
    // A read-only source connection and a read-write target one.
    let source = open(&s, Side::Source).await;
    let target = Database::connect(&t.url(), Side::Target, false, 2, &Redactor::new())
        .await
        .unwrap();
    for db in [&source, &target] {
        for probe in &manifest.checks.rls_probes {
            let claims = serde_json::to_string(&probe.claims).unwrap();
            let got = db
                .probe_as(&probe.role, &claims, &probe.query)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", probe.name));
            assert_eq!(
                got.as_deref(),
                Some(probe.expect.as_str()),
                "{} on {}",
                probe.name,
                db.side.name()
            );
        }
    }

    let staff = r#"{"sub": "7c0c7c1e-3a5e-4d8b-9a61-0f4b2e5d1a02", "role": "authenticated", "email": "staff@aamodha.example"}"#;
    // The older per-claim settings, the role, text of any type, NULL.
    let q = |sql: &'static str| target.probe_as("authenticated", staff, sql);
    assert_eq!(
        q("select current_setting('request.jwt.claim.sub')")
            .await
            .unwrap()
            .as_deref(),
        Some("7c0c7c1e-3a5e-4d8b-9a61-0f4b2e5d1a02")
    );
    assert_eq!(
        q("select auth.email(), 1").await.unwrap().as_deref(),
        Some("staff@aamodha.example")
    );
    assert_eq!(
        q("select current_user").await.unwrap().as_deref(),
        Some("authenticated")
    );
    assert_eq!(
        q("select public.is_manager();").await.unwrap().as_deref(),
        Some("f")
    );
    assert_eq!(
        q("select 'a, \"b\"'::text -- comment")
            .await
            .unwrap()
            .as_deref(),
        Some("a, \"b\"")
    );
    assert_eq!(q("select null::int").await.unwrap(), None);
    assert_eq!(
        q("select 1 from public.customers where false")
            .await
            .unwrap(),
        None
    );
    // Nothing is written, even by a probe that tries.
    assert!(
        q("select count(*) from public.customers; delete from public.customers")
            .await
            .is_err()
    );
    assert!(
        target
            .probe_as(
                "service_role",
                "{}",
                "select nextval('public.invoice_number_sequence')"
            )
            .await
            .is_err()
    );
    assert_eq!(
        t.scalar("select last_value::text from public.invoice_number_sequence")
            .await
            .as_deref(),
        Some("2799")
    );
    // The session is as before: no role or claims left behind.
    for _ in 0..3 {
        let user: String = sqlx::query_scalar("select current_user::text")
            .fetch_one(&target.pool)
            .await
            .unwrap();
        assert_eq!(user, "postgres");
        let claims: Option<String> =
            sqlx::query_scalar("select nullif(current_setting('request.jwt.claims', true), '')")
                .fetch_one(&target.pool)
                .await
                .unwrap();
        assert_eq!(claims, None);
    }

    let err = target
        .probe_as("no_such_role_xyz", "{}", "select 1")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no_such_role_xyz"), "{err}");
    let err = source
        .probe_as("authenticated", "not json", "select 1")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("authenticated"), "{err}");
}

#[tokio::test]
async fn bisects_a_larger_table_with_text_keys() {
    let (s, t) = tokio::join!(TestDb::new("cmp_big_src"), TestDb::new("cmp_big_tgt"));
    // Keys whose text order is not their numeric order, in mixed case, and
    // a target column with a linguistic collation that orders them otherwise:
    // both sides must still agree on one byte-wise (collate "C") order.
    let rows = "insert into public.items
                select case when n % 2 = 0 then 'item-' else 'Item-' end || n, n % 97, 'note ' || n
                  from generate_series(1, 30000) as n;";
    let source_setup =
        format!("create table public.items (code text primary key, qty int, note text); {rows}");
    let target_setup = format!(
        "create table public.items (code text collate \"en-US-x-icu\" primary key, qty int, note text); {rows}"
    );
    tokio::join!(s.exec(&source_setup), t.exec(&target_setup));
    t.exec(
        "update public.items set qty = qty + 1 where code in ('Item-7', 'item-15000', 'Item-29999');
         delete from public.items where code = 'item-20000';
         insert into public.items values ('ZZZ-extra', 1, null), ('aaa-extra', 2, null);",
    )
    .await;
    let (source, target) = tokio::join!(open(&s, Side::Source), open(&t, Side::Target));
    let items = table("public.items");
    let pk = source.single_column_pk(&items).await.unwrap().unwrap();
    assert_eq!(pk, ("code".to_string(), "text".to_string()));
    let hash = hash_of(&source, &target, &items).await;
    let found = first_differing_keys(&source, &target, &items, &hash, &pk, 100)
        .await
        .unwrap();
    assert_eq!(
        found,
        [
            diff("Item-29999", KeyDiffKind::Different),
            diff("Item-7", KeyDiffKind::Different),
            diff("ZZZ-extra", KeyDiffKind::ExtraOnTarget),
            diff("aaa-extra", KeyDiffKind::ExtraOnTarget),
            diff("item-15000", KeyDiffKind::Different),
            diff("item-20000", KeyDiffKind::MissingOnTarget),
        ]
    );
    let first_two = first_differing_keys(&source, &target, &items, &hash, &pk, 2)
        .await
        .unwrap();
    assert_eq!(first_two, found[..2]);
    // Split points are in the same byte-wise order.
    let points = source
        .split_points(&items, &pk, None, None, 16)
        .await
        .unwrap();
    assert_eq!(points.len(), 15);
    assert!(points.windows(2).all(|w| w[0] < w[1]), "{points:?}");
}

/// One table with a column of each type a Supabase app commonly has.
fn kinds_ddl(citext: bool) -> String {
    format!(
        "create type public.mood as enum ('sad', 'ok', 'happy');
         create type public.pair as (a int, b numeric);
         create domain public.price as numeric check (value >= 0);
         create domain public.label as text;
         {ext}
         create table public.kinds (
           id int primary key,
           i2 int2, i4 int4, i8 int8, num numeric, f4 float4, f8 float8,
           t text, vc varchar(20), ch char(4), bp bpchar, u uuid, b bool, d date,
           ts timestamp, tstz timestamptz, tm time, iv interval, jb jsonb, js json,
           by bytea, ip inet, mood public.mood, tags text[], nums int[],
           price public.price, lbl public.label, pr public.pair, pt point, r int4range,
           x int4, y int4{ci}
         );",
        ext = if citext {
            "create extension if not exists citext with schema extensions;"
        } else {
            ""
        },
        ci = if citext { ", ci extensions.citext" } else { "" },
    )
}

/// The rows of `public.kinds`, the third one NULL in every column.
fn kinds_rows(citext: bool, reverse: bool) -> String {
    let ci = |v: &str| {
        if citext {
            format!(", {v}")
        } else {
            String::new()
        }
    };
    let mut rows = [
        format!(
            "(1, 1, 1, 0, 1.0, 0, 0, 'a', 'a', 'ab', 'a', '00000000-0000-0000-0000-000000000001',
              true, '2025-01-01', '2025-01-01 10:00:00', '2025-01-01 10:00:00+00', '12:00', '1 day',
              '{{\"a\": 1.0, \"n\": [[1], 2], \"s\": 5}}', '{{\"a\":1}}', '\\x00', '10.0.0.1', 'ok',
              '{{a,b}}', '{{1,2}}', 1.0, 'x', '(1,1.0)', '(0,0)', '[1,3)', 1, 2{})",
            ci("'abc'")
        ),
        format!(
            "(2, 2, 2, 2, 5, 1.5, 1.5, 'b', 'b', 'cd', 'b', '00000000-0000-0000-0000-000000000002',
              false, '2025-01-02', '2025-01-02 10:00:00', '2025-01-02 10:00:00+00', '13:00', '2 days',
              '[]', '[]', '\\x01', '10.0.0.2', 'happy', '{{c}}', '{{3}}', 2, 'y', '(2,2)', '(1,2)',
              '[2,5)', 3, 4{})",
            ci("'def'")
        ),
        format!(
            "(3, null, null, null, null, null, null, null, null, null, null, null, null, null,
              null, null, null, null, null, null, null, null, null, null, null, null, null, null,
              null, null, null, null{})",
            ci("null")
        ),
        format!(
            "(4, 0, 0, 4294967297, 'NaN', 'NaN', 'NaN', '', '', '', '', null, null, 'infinity',
              'infinity', '-infinity', null, null, '{{}}', '{{}}', '', null, null, '{{}}', '{{}}', null, '',
              '(,)', null, 'empty', null, 5{})",
            ci("''")
        ),
    ];
    if reverse {
        rows.reverse();
    }
    format!("insert into public.kinds values {};", rows.join(",\n"))
}

#[tokio::test]
async fn row_hash_sees_every_visible_change() {
    let (s, t) = tokio::join!(TestDb::new("hash_src"), TestDb::new("hash_tgt"));
    let citext = s
        .scalar("select count(*)::text from pg_available_extensions where name = 'citext'")
        .await
        .as_deref()
        == Some("1");
    s.exec(&format!(
        "{}{}",
        kinds_ddl(citext),
        kinds_rows(citext, false)
    ))
    .await;
    // The target: other OIDs for the enum labels (an enum's hash is of its
    // OID), rows in another physical order, and a pristine copy to reset from.
    t.exec(&format!(
        "create type public.unrelated as enum ('u1', 'u2', 'u3');
         {}{}
         create table public.pristine as table public.kinds;",
        kinds_ddl(citext),
        kinds_rows(citext, true)
    ))
    .await;
    let (source, target) = tokio::join!(open(&s, Side::Source), open(&t, Side::Target));
    let kinds = table("public.kinds");
    let hash = hash_of(&source, &target, &kinds).await;
    // Typed: numeric, jsonb, the enum and numeric domain as text, the rest by value.
    for expected in [
        "hashtextextended((src.\"num\"::text) collate \"C\"",
        "hashtextextended((src.\"mood\"::text) collate \"C\"",
        "hashtextextended((src.\"price\"::text) collate \"C\"",
        "hashtextextended(src.\"lbl\" collate \"C\"",
        "uuid_hash_extended(src.\"u\"",
        "timestamptz_send(src.\"tstz\")",
        "hash_array_extended(array[",
    ] {
        assert!(
            hash.sql().contains(expected),
            "{expected} in {}",
            hash.sql()
        );
    }
    let source_sum = source.table_checksum(&kinds, &hash).await.unwrap();
    assert_eq!(source_sum.0, 4);
    assert_eq!(
        target.table_checksum(&kinds, &hash).await.unwrap(),
        source_sum
    );

    // The same bisecting: the whole key range is the whole table, and the
    // row hashes add up to the checksum.
    let pk = ("id".to_string(), "integer".to_string());
    assert_eq!(
        source
            .range_checksum(&kinds, &hash, &pk, None, None)
            .await
            .unwrap(),
        source_sum
    );
    let rows = source
        .row_hashes(&kinds, &hash, &pk, None, None, 10)
        .await
        .unwrap();
    let total: i128 = rows.iter().map(|(_, h)| h.parse::<i128>().unwrap()).sum();
    assert_eq!(total.to_string(), source_sum.1);

    // The hashes this guards against really do collide.
    // Row 1's value of `c` with bits 0 and 32 of its microseconds flipped.
    let shifted = |c: &str, ty: &str| {
        format!(
            "(select {c} + ((x # 4294967297) - x) * interval '1 microsecond'
                from (select {c}, (extract(epoch from {c} - {ty} '2000-01-01') * 1000000)::bigint as x
                        from public.kinds where id = 1) as k)"
        )
    };
    for check in [
        "select (hashint8extended(0, 1) = hashint8extended(4294967297, 1))::text".to_string(),
        format!(
            "select (timestamp_hash_extended(ts, 1) = timestamp_hash_extended({}, 1))::text
               from public.kinds where id = 1",
            shifted("ts", "timestamp")
        ),
        "select (hash_numeric_extended(5, 1) = hash_numeric_extended(-5, 1))::text".into(),
        "select (hash_numeric_extended(1.0, 1) = hash_numeric_extended(1.00, 1))::text".into(),
        "select (hashfloat8extended(0, 1) = hashfloat8extended('-0', 1))::text".into(),
        "select (jsonb_hash_extended('[[1],2]', 1) = jsonb_hash_extended('[[1,2]]', 1))::text"
            .into(),
        "select (interval_hash_extended('1 day', 1) = interval_hash_extended('24 hours', 1))::text"
            .into(),
        "select (hash_array_extended('{1,2}'::int[], 1) = hash_array_extended('{{1,2}}'::int[], 1))::text"
            .into(),
    ] {
        assert_eq!(s.scalar(&check).await.as_deref(), Some("true"), "{check}");
    }

    let mut changes: Vec<(&str, String)> =
        vec![
        ("int2", "update public.kinds set i2 = 3 where id = 1".into()),
        (
            "int4",
            "update public.kinds set i4 = -1 where id = 1".into(),
        ),
        (
            "int8 with the same folded hash",
            "update public.kinds set i8 = 4294967297 where id = 1".into(),
        ),
        (
            "int8 NULL",
            "update public.kinds set i8 = null where id = 2".into(),
        ),
        (
            "numeric scale",
            "update public.kinds set num = 1.00 where id = 1".into(),
        ),
        (
            "numeric sign",
            "update public.kinds set num = -5 where id = 2".into(),
        ),
        (
            "numeric NaN to Infinity",
            "update public.kinds set num = 'Infinity' where id = 4".into(),
        ),
        (
            "numeric NULL to NaN",
            "update public.kinds set num = 'NaN' where id = 3".into(),
        ),
        (
            "float4 -0",
            "update public.kinds set f4 = '-0' where id = 1".into(),
        ),
        (
            "float8 -0",
            "update public.kinds set f8 = '-0' where id = 1".into(),
        ),
        (
            "float8 NaN to NULL",
            "update public.kinds set f8 = null where id = 4".into(),
        ),
        (
            "text case",
            "update public.kinds set t = 'A' where id = 1".into(),
        ),
        (
            "text empty to NULL",
            "update public.kinds set t = null where id = 4".into(),
        ),
        (
            "varchar trailing blank",
            "update public.kinds set vc = 'a ' where id = 1".into(),
        ),
        (
            "char(n)",
            "update public.kinds set ch = 'ac' where id = 1".into(),
        ),
        (
            "bpchar trailing blank",
            "update public.kinds set bp = 'a ' where id = 1".into(),
        ),
        (
            "uuid",
            "update public.kinds set u = '00000000-0000-0000-0000-000000000003' where id = 1"
                .into(),
        ),
        (
            "bool",
            "update public.kinds set b = false where id = 1".into(),
        ),
        (
            "bool false to NULL",
            "update public.kinds set b = null where id = 2".into(),
        ),
        (
            "date",
            "update public.kinds set d = d + 1 where id = 1".into(),
        ),
        ("date infinity", "update public.kinds set d = '-infinity' where id = 4".into()),
        ("date NULL to infinity", "update public.kinds set d = 'infinity' where id = 3".into()),
        ("timestamp infinity to NULL", "update public.kinds set ts = null where id = 4".into()),
        ("timestamptz infinity", "update public.kinds set tstz = 'infinity' where id = 4".into()),
        (
            "timestamp with the same folded hash",
            format!(
                "update public.kinds set ts = {} where id = 1",
                shifted("ts", "timestamp")
            ),
        ),
        (
            "timestamptz with the same folded hash",
            format!(
                "update public.kinds set tstz = {} where id = 1",
                shifted("tstz", "timestamptz")
            ),
        ),
        (
            "timestamptz",
            "update public.kinds set tstz = tstz + interval '1 microsecond' where id = 2".into(),
        ),
        (
            "time",
            "update public.kinds set tm = '12:00:01' where id = 1".into(),
        ),
        (
            "interval",
            "update public.kinds set iv = '24 hours' where id = 1".into(),
        ),
        (
            "jsonb number scale",
            r#"update public.kinds set jb = '{"a": 1.00, "n": [[1], 2], "s": 5}' where id = 1"#
                .into(),
        ),
        (
            "jsonb nesting",
            r#"update public.kinds set jb = '{"a": 1.0, "n": [[1, 2]], "s": 5}' where id = 1"#
                .into(),
        ),
        (
            "jsonb sign",
            r#"update public.kinds set jb = '{"a": 1.0, "n": [[1], 2], "s": -5}' where id = 1"#
                .into(),
        ),
        (
            "json whitespace",
            r#"update public.kinds set js = '{"a": 1}' where id = 1"#.into(),
        ),
        (
            "bytea",
            r"update public.kinds set by = '\x0000' where id = 1".into(),
        ),
        (
            "bytea empty to NULL",
            "update public.kinds set by = null where id = 4".into(),
        ),
        (
            "inet netmask",
            "update public.kinds set ip = '10.0.0.1/24' where id = 1".into(),
        ),
        (
            "enum",
            "update public.kinds set mood = 'happy' where id = 1".into(),
        ),
        (
            "text[] order",
            "update public.kinds set tags = '{b,a}' where id = 1".into(),
        ),
        (
            "text[] lower bound",
            "update public.kinds set tags = '[0:1]={a,b}' where id = 1".into(),
        ),
        (
            "text[] dimensions",
            "update public.kinds set tags = '{{a,b}}' where id = 1".into(),
        ),
        (
            "text[] element case",
            "update public.kinds set tags = '{A,b}' where id = 1".into(),
        ),
        (
            "text[] empty to NULL",
            "update public.kinds set tags = null where id = 4".into(),
        ),
        (
            "int[] dimensions",
            "update public.kinds set nums = '{{1,2}}' where id = 1".into(),
        ),
        (
            "int[] NULL element",
            "update public.kinds set nums = '{NULL}' where id = 4".into(),
        ),
        (
            "domain over numeric",
            "update public.kinds set price = 1.00 where id = 1".into(),
        ),
        (
            "domain over text",
            "update public.kinds set lbl = 'X' where id = 1".into(),
        ),
        (
            "composite",
            "update public.kinds set pr = '(1,1.00)' where id = 1".into(),
        ),
        (
            "composite NULLs",
            "update public.kinds set pr = null where id = 4".into(),
        ),
        (
            "point -0",
            "update public.kinds set pt = '(-0,0)' where id = 1".into(),
        ),
        (
            "point",
            "update public.kinds set pt = '(2,1)' where id = 2".into(),
        ),
        (
            "range",
            "update public.kinds set r = '[1,4)' where id = 1".into(),
        ),
        (
            "range empty to NULL",
            "update public.kinds set r = null where id = 4".into(),
        ),
        (
            "values swapped between rows",
            "update public.kinds set t = case id when 1 then 'b' else 'a' end where id in (1, 2)"
                .into(),
        ),
        (
            "int8 swapped between rows",
            "update public.kinds set i8 = case id when 1 then 2 else 0 end where id in (1, 2)"
                .into(),
        ),
        (
            "values swapped between columns",
            "update public.kinds set x = 2, y = 1 where id = 1".into(),
        ),
        (
            "NULL moved to another column",
            "update public.kinds set x = 5, y = null where id = 4".into(),
        ),
        (
            "row replaced",
            "delete from public.kinds where id = 2; insert into public.kinds (id) values (2)"
                .into(),
        ),
    ];
    if citext {
        changes.push((
            "citext case",
            "update public.kinds set ci = 'ABC' where id = 1".into(),
        ));
    }
    let reset = "truncate public.kinds; insert into public.kinds select * from public.pristine;";
    let mut missed = Vec::new();
    for (what, sql) in &changes {
        t.exec(&format!("{reset} {sql};")).await;
        let changed = target.table_checksum(&kinds, &hash).await.unwrap();
        if changed == source_sum {
            missed.push(*what);
        }
    }
    assert!(missed.is_empty(), "checksum unchanged by: {missed:?}");

    // Back to identical; the bisecting finds a changed row.
    t.exec(reset).await;
    assert_eq!(
        target.table_checksum(&kinds, &hash).await.unwrap(),
        source_sum
    );
    t.exec("update public.kinds set num = -num where id = 2")
        .await;
    assert_eq!(
        first_differing_keys(&source, &target, &kinds, &hash, &pk, 10)
            .await
            .unwrap(),
        [diff("2", KeyDiffKind::Different)]
    );
}

#[tokio::test]
async fn row_hash_of_columns_typed_differently_is_their_text() {
    let (s, t) = tokio::join!(TestDb::new("hash_mix_src"), TestDb::new("hash_mix_tgt"));
    let rows = "insert into public.mixed values (1, 10, 'a', 1.5), (2, null, null, 2), (3, -7, 'c', null);";
    s.exec(&format!(
        "create table public.mixed (id int primary key, v int4, w text, z numeric); {rows}"
    ))
    .await;
    t.exec(&format!(
        "create table public.mixed (id int primary key, v int8, w varchar(5), z numeric); {rows}"
    ))
    .await;
    let (source, target) = tokio::join!(open(&s, Side::Source), open(&t, Side::Target));
    let mixed = table("public.mixed");
    assert_eq!(
        source.hash_columns(&mixed).await.unwrap()[1],
        HashColumn {
            name: "v".into(),
            base_type: "int4".into(),
            element_type: None
        }
    );
    let hash = hash_of(&source, &target, &mixed).await;
    assert!(
        hash.sql()
            .contains("hashtextextended((src.\"v\"::text) collate \"C\", 2)"),
        "{}",
        hash.sql()
    );
    assert!(
        hash.sql()
            .contains("hashtextextended((src.\"w\"::text) collate \"C\", 3)"),
        "{}",
        hash.sql()
    );
    assert!(
        hash.sql().contains("hashint4extended(src.\"id\", 1)"),
        "{}",
        hash.sql()
    );
    let (a, b) = tokio::join!(
        source.table_checksum(&mixed, &hash),
        target.table_checksum(&mixed, &hash)
    );
    assert_eq!(a.unwrap(), b.unwrap());
    t.exec("update public.mixed set v = 11 where id = 1").await;
    assert_ne!(
        source.table_checksum(&mixed, &hash).await.unwrap(),
        target.table_checksum(&mixed, &hash).await.unwrap()
    );
}
