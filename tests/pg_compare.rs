//! The database side of `validate` (`cutover::pg::compare`) against real
//! databases: two environments built from `examples/ops-portal` the same way,
//! then made to differ on purpose.

use crate::common;

use std::collections::BTreeSet;

use common::*;
use cutover::manifest::{Manifest, QualifiedName};
use cutover::pg::compare::{KeyDiff, KeyDiffKind, first_differing_keys};
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
        let columns = column_names(&source, &info.name).await;
        let (a, b) = tokio::join!(
            source.table_checksum(&info.name, &columns),
            target.table_checksum(&info.name, &columns)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a, b, "{}", info.name);
    }
    let customers = table("public.customers");
    let (count, sum) = source
        .table_checksum(&customers, &column_names(&source, &customers).await)
        .await
        .unwrap();
    assert_eq!(count, 300);
    assert_ne!(sum, "0");
    // Column order does not matter, only the set of columns.
    let mut reversed = column_names(&source, &customers).await;
    reversed.reverse();
    assert_eq!(
        source.table_checksum(&customers, &reversed).await.unwrap(),
        (count, sum.clone())
    );
    // Fewer columns, another checksum.
    let (n, other) = source
        .table_checksum(&customers, &["id".to_string(), "email".to_string()])
        .await
        .unwrap();
    assert_eq!(n, 300);
    assert_ne!(other, sum);

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
    let columns = column_names(&source, &customers).await;
    assert!(
        first_differing_keys(&source, &target, &customers, &columns, &pk, 10)
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
        let columns = column_names(&source, &t).await;
        let (a, b) = tokio::join!(
            source.table_checksum(&t, &columns),
            target.table_checksum(&t, &columns)
        );
        assert_ne!(a.unwrap(), b.unwrap(), "{name}");
        let pk = source.single_column_pk(&t).await.unwrap().unwrap();
        let found = first_differing_keys(&source, &target, &t, &columns, &pk, 100)
            .await
            .unwrap();
        // Keys come out in key order (uuid text order is uuid order).
        expected.sort_by(|a, b| match (a.key.parse::<i64>(), b.key.parse::<i64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => a.key.cmp(&b.key),
        });
        assert_eq!(found, expected, "{name}");
        // At most max_keys, the first ones.
        let first = first_differing_keys(&source, &target, &t, &columns, &pk, 1)
            .await
            .unwrap();
        assert_eq!(first, expected[..1], "{name}");
    }

    // Ranges and split points on the 2000-row table.
    let sales = table("public.sales_transactions");
    let pk = ("id".to_string(), "bigint".to_string());
    let columns = column_names(&source, &sales).await;
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
        .range_checksum(&sales, &columns, &pk, Some("500"), Some("1000"))
        .await
        .unwrap();
    assert_eq!(n, 500);
    let (n, _) = source
        .range_checksum(&sales, &columns, &pk, None, Some("11"))
        .await
        .unwrap();
    assert_eq!(n, 10);
    let (a, b) = tokio::join!(
        source.range_checksum(&sales, &columns, &pk, Some("1"), Some("1500")),
        target.range_checksum(&sales, &columns, &pk, Some("1"), Some("1500"))
    );
    assert_eq!(a.unwrap(), b.unwrap());
    let hashes = source
        .row_hashes(&sales, &columns, &pk, Some("8"), Some("100"), 3)
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
    let columns = column_names(&source, &items).await;
    let found = first_differing_keys(&source, &target, &items, &columns, &pk, 100)
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
    let first_two = first_differing_keys(&source, &target, &items, &columns, &pk, 2)
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
