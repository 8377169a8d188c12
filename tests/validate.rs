//! `validate` after a real schema + data copy: everything equal passes and is
//! recorded for the gate; each kind of difference fails with evidence.

use crate::common;

use common::*;

const SECRET: &str = "validate-secret-value-123";
/// The target's 360Messenger key, set by `config` and compared by `validate`.
const WHATSAPP_KEY: &str = "prod-360messenger-key-5d1c9a";

async fn migrated() -> (Pair, tempfile::TempDir) {
    let pair = Pair::from_example("ops-portal").await;
    let work = tempfile::tempdir().unwrap();
    let manifest = repo_root().join("examples/ops-portal/cutover.toml");
    let out = run_local(
        work.path(),
        "schema,data,config",
        &manifest,
        &pair,
        &[
            ("CUTOVER_OVERWRITE", "true"),
            ("TARGET_WHATSAPP_API_KEY", WHATSAPP_KEY),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    (pair, work)
}

fn validate_in_actions(pair: &Pair, files: &ActionsFiles) -> std::process::Output {
    let env = ActionsRun::new(files, "validate")
        .manifest(repo_root().join("examples/ops-portal/cutover.toml"))
        .databases(
            pair.source.url_with_password(SECRET),
            pair.target.url_with_password(SECRET),
        )
        .var("TARGET_WHATSAPP_API_KEY", WHATSAPP_KEY)
        .env();
    run_and_check_leaks(files.dir.path(), &[], &env, &[SECRET], &[&pair.target])
}

#[tokio::test]
async fn an_identical_target_passes_and_is_recorded_for_the_gate() {
    let (pair, _work) = migrated().await;
    let files = ActionsFiles::new();
    let out = validate_in_actions(&pair, &files);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let summary = files.read("summary.md");
    assert!(
        summary.contains("| public.sales_transactions | 2,000 | 2,000 | +0 | equal | ✅ |"),
        "{summary}"
    );
    assert!(summary.contains("Schemas of source and target equal"));
    assert!(
        summary.contains("| manager sees every customer | authenticated | 300 | 300 | ✅ |"),
        "{summary}"
    );
    assert_eq!(files.outputs()["row-count-mismatches"], "0");
    let detail = pair
        .target
        .scalar("select detail::text from cutover.steps where phase = 'validate' and step = 'validation' and outcome = 'pass'")
        .await
        .expect("validation recorded");
    assert!(
        detail.contains("20250127000005") && detail.contains("public.customers"),
        "{detail}"
    );
    assert!(
        summary.contains("| ✅ | validate | Configuration has the expected values |"),
        "{summary}"
    );
    assert!(
        summary.contains("| whatsapp_api_key | •••• | •••• | ✅ |"),
        "{summary}"
    );
    assert_no_leak(SECRET, &out, &files, &files.path("cutover-report.json"));
    assert_no_leak(
        WHATSAPP_KEY,
        &out,
        &files,
        &files.path("cutover-report.json"),
    );
    let ledger = ledger_dump(&pair.target, "cutover").await;
    assert!(!ledger.contains(SECRET) && !ledger.contains(WHATSAPP_KEY));
}

#[tokio::test]
async fn an_extension_switched_on_by_hand_on_the_source_is_a_warning_with_the_fix() {
    let (pair, _work) = migrated().await;
    pair.source
        .exec("create extension if not exists citext with schema extensions")
        .await;
    let files = ActionsFiles::new();
    let out = validate_in_actions(&pair, &files);
    let summary = files.read("summary.md");
    let row = summary
        .lines()
        .find(|l| l.contains("Extensions and pg_cron jobs of the source on the target"))
        .unwrap_or_else(|| panic!("no features row in\n{summary}"));
    assert!(
        row.contains("⚠️") && row.contains("extensions missing on the target: citext"),
        "{row}\n{}",
        text(&out)
    );
    assert!(summary.contains("Database → Extensions"), "{summary}");
}

#[tokio::test]
async fn a_configuration_value_changed_on_the_target_fails_without_showing_it() {
    let (pair, _work) = migrated().await;
    pair.target
        .exec(
            "update public.invoice_configurations set config_value = 'tampered-key-value-77' where config_key = 'whatsapp_api_key';
             update public.invoice_configurations set config_value = 'MyDrive/Wrong' where config_key = 'invoice_folder_path';",
        )
        .await;
    let files = ActionsFiles::new();
    let out = validate_in_actions(&pair, &files);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let summary = files.read("summary.md");
    assert!(
        summary.contains("differ or missing: invoice_folder_path, whatsapp_api_key"),
        "{summary}"
    );
    assert!(
        summary.contains("| invoice_folder_path | MyDrive/Invoice | MyDrive/Wrong | ❌ |"),
        "{summary}"
    );
    assert!(
        summary.contains("| whatsapp_api_key | •••• | •••• (differs) | ❌ |"),
        "{summary}"
    );
    assert!(!summary.contains("tampered-key-value-77"));
    assert_no_leak(
        WHATSAPP_KEY,
        &out,
        &files,
        &files.path("cutover-report.json"),
    );
}

#[tokio::test]
async fn changed_missing_and_extra_rows_are_found_by_key() {
    let (pair, _work) = migrated().await;
    pair.target
        .exec(
            "set session_replication_role = replica;
             update public.customers set credit_limit = credit_limit + 1 where id = 57;
             delete from public.whatsapp_message_logs where id = (select min(id) from public.whatsapp_message_logs);
             insert into public.backup_logs (status, file_name) select status, 'extra-' || file_name from public.backup_logs limit 1;",
        )
        .await;
    let files = ActionsFiles::new();
    let out = validate_in_actions(&pair, &files);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let summary = files.read("summary.md");
    assert!(
        summary.contains("| public.customers | 300 | 300 | +0 | **differs** | ❌ |"),
        "{summary}"
    );
    assert!(
        summary.contains("| public.customers | id | 57 | different |"),
        "{summary}"
    );
    assert!(summary.contains("missing on target"), "{summary}");
    assert!(summary.contains("extra on target"), "{summary}");
    assert_eq!(files.outputs()["row-count-mismatches"], "2");
    let passes = pair
        .target
        .scalar("select count(*)::text from cutover.steps where step = 'validation'")
        .await;
    assert_eq!(
        passes.as_deref(),
        Some("0"),
        "a failing validation is not recorded as passing"
    );
}

#[tokio::test]
async fn schema_rls_and_sequence_differences_fail_with_evidence() {
    let (pair, _work) = migrated().await;
    pair.target
        .exec(
            "create index customers_email_extra_idx on public.customers (email);
             alter table public.whatsapp_templates disable row level security;
             select setval('public.invoice_number_sequence', 1);",
        )
        .await;
    let files = ActionsFiles::new();
    let out = validate_in_actions(&pair, &files);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let summary = files.read("summary.md");
    let row = |title: &str| {
        summary
            .lines()
            .find(|l| l.starts_with('|') && l.contains(title))
            .unwrap_or_else(|| panic!("no row {title}:\n{summary}"))
            .to_string()
    };
    assert!(row("Schemas of source and target equal").starts_with("| ❌"));
    assert!(
        summary.contains("customers_email_extra_idx"),
        "diff shown:\n{summary}"
    );
    // The terminal shows the same diff under its title.
    let terminal = String::from_utf8_lossy(&out.stdout);
    assert!(
        terminal.contains("  Schema: source → target:\n    --- source\n    +++ target"),
        "{terminal}"
    );
    assert!(
        terminal
            .lines()
            .any(|l| l.starts_with("    +") && l.contains("customers_email_extra_idx")),
        "the extra index is a + line of the diff:\n{terminal}"
    );
    assert!(
        row("RLS enabled with the same policies")
            .contains("public.whatsapp_templates: RLS disabled on target")
    );
    assert!(row("Sequences ahead of their columns").contains("invoice_number_sequence"));
}
