//! Supabase Vault in `data` on real databases with a Vault-like fixture
//! (`tests/fixtures/vault_like.sql`: Vault's table, functions and view, a
//! per-database root key): secrets re-created from inputs or moved with the
//! root key decrypt on the target, values never printed; a missing input
//! writes nothing.

use crate::common;
use crate::fake_supabase;

use std::path::Path;

use common::*;
use fake_supabase::*;

const SOURCE_KEY: &str = "c291cmNlLXJvb3Qta2V5LTAxMjM0NTY3ODlhYmNkZWY=";
const TARGET_KEY: &str = "dGFyZ2V0LXJvb3Qta2V5LTAxMjM0NTY3ODlhYmNkZWY=";
const STRIPE_LIVE: &str = "sk_live_Vault0123456789abcdef";
const WEBHOOK_SECRET: &str = "whsec_Vault9876543210fedcba";

async fn with_vault(db: &TestDb, key: &str) {
    let sql = std::fs::read_to_string(repo_root().join("tests/fixtures/vault_like.sql"))
        .unwrap()
        .replace(":'root_key'", &format!("'{key}'"));
    db.exec(&sql).await;
    db.exec("create table public.notes (id int primary key, body text not null)")
        .await;
}

/// A source with two Vault secrets and a row, a target with another key.
async fn vault_pair() -> Pair {
    let (source, target) = tokio::join!(TestDb::new("vsrc"), TestDb::new("vtgt"));
    with_vault(&source, SOURCE_KEY).await;
    with_vault(&target, TARGET_KEY).await;
    source
        .exec(&format!(
            "insert into public.notes values (1, 'hello');
             select vault.create_secret('{STRIPE_LIVE}', 'stripe_key', 'payments');
             select vault.create_secret('{WEBHOOK_SECRET}', 'webhook_secret');"
        ))
        .await;
    Pair { source, target }
}

fn manifest(dir: &Path, vault: &str) -> std::path::PathBuf {
    let path = dir.join("cutover.toml");
    std::fs::write(
        &path,
        format!("[project]\nname = \"vault\"\n\n[data]\ntables = [\"notes\"]\n\n{vault}"),
    )
    .unwrap();
    path
}

/// Name → decrypted value on the target, read independently of cutover.
async fn decrypted(db: &TestDb) -> String {
    db.scalar(
        "select coalesce(string_agg(name || '=' || coalesce(decrypted_secret, '<none>'), ',' order by name), '')
           from vault.decrypted_secrets",
    )
    .await
    .unwrap_or_default()
}

fn run(dir: &Path, pair: &Pair, env: &[(&str, &str)], secrets: &[&str]) -> std::process::Output {
    let mut all: Vec<(String, String)> = vec![
        (
            "CUTOVER_SOURCE_DB_URL".into(),
            pair.source.url_with_password(LOCAL_SOURCE_PW),
        ),
        (
            "CUTOVER_TARGET_DB_URL".into(),
            pair.target.url_with_password(LOCAL_TARGET_PW),
        ),
        (
            "CUTOVER_MANIFEST".into(),
            dir.join("cutover.toml").display().to_string(),
        ),
        (
            "CUTOVER_REPORT_FILE".into(),
            dir.join("report.json").display().to_string(),
        ),
        (
            "CUTOVER_SUMMARY_FILE".into(),
            dir.join("summary.md").display().to_string(),
        ),
    ];
    all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut planted = vec![LOCAL_SOURCE_PW, LOCAL_TARGET_PW];
    planted.extend_from_slice(secrets);
    run_and_check_leaks(
        dir,
        &["data"],
        &all,
        &planted,
        &[&pair.source, &pair.target],
    )
}

#[tokio::test]
async fn recreated_secrets_decrypt_on_the_target_and_no_value_is_printed() {
    let pair = vault_pair().await;
    let dir = tempfile::tempdir().unwrap();
    manifest(
        dir.path(),
        "[vault]\nmode = \"recreate\"\n[vault.secrets]\nstripe_key = \"PROD_STRIPE_KEY\"\nwebhook_secret = \"PROD_WEBHOOK_SECRET\"\n",
    );
    let prod_stripe = "sk_live_Prod0000111122223333";
    let out = run(
        dir.path(),
        &pair,
        &[
            ("PROD_STRIPE_KEY", prod_stripe),
            ("PROD_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ],
        &[STRIPE_LIVE, WEBHOOK_SECRET, prod_stripe],
    );
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}\n{summary}", text(&out));
    assert_eq!(
        decrypted(&pair.target).await,
        format!("stripe_key={prod_stripe},webhook_secret={WEBHOOK_SECRET}")
    );
    assert!(
        summary.contains("2 of 2 secrets decrypt on the target to the expected value"),
        "{summary}"
    );
    assert!(
        summary.contains("as given (differs from the source's)"),
        "{summary}"
    );
    assert!(
        summary.contains("as given (same as the source's)"),
        "{summary}"
    );
    // Re-running updates by name: still two secrets.
    let out = run(
        dir.path(),
        &pair,
        &[
            ("PROD_STRIPE_KEY", prod_stripe),
            ("PROD_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("CUTOVER_OVERWRITE", "true"),
        ],
        &[STRIPE_LIVE, WEBHOOK_SECRET, prod_stripe],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        pair.target
            .scalar("select count(*)::text from vault.secrets")
            .await
            .as_deref(),
        Some("2")
    );
}

#[tokio::test]
async fn a_missing_vault_value_is_named_and_nothing_is_written() {
    let pair = vault_pair().await;
    let dir = tempfile::tempdir().unwrap();
    manifest(
        dir.path(),
        "[vault]\nmode = \"recreate\"\n[vault.secrets]\nstripe_key = \"PROD_STRIPE_KEY\"\n",
    );
    let out = run(
        dir.path(),
        &pair,
        &[("PROD_STRIPE_KEY", "sk_x_1234567890")],
        &[STRIPE_LIVE],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("webhook_secret (not in [vault.secrets])"),
        "{all}"
    );
    assert_eq!(decrypted(&pair.target).await, "");
    assert_eq!(
        pair.target
            .scalar("select count(*)::text from public.notes")
            .await
            .as_deref(),
        Some("0"),
        "no row moved either"
    );
}

#[tokio::test]
async fn by_default_the_source_secrets_are_named_in_a_warning() {
    let pair = vault_pair().await;
    let dir = tempfile::tempdir().unwrap();
    manifest(dir.path(), "");
    let out = run(dir.path(), &pair, &[], &[STRIPE_LIVE, WEBHOOK_SECRET]);
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}\n{summary}", text(&out));
    assert!(
        summary.contains("2 Vault secrets not moved: stripe_key, webhook_secret"),
        "{summary}"
    );
    // The platform tables with rows are named, each with what moves it.
    assert!(
        summary.contains(
            "| vault.secrets | encrypted with the source's root key: moved by [vault] mode |"
        ),
        "{summary}"
    );
    assert_eq!(decrypted(&pair.target).await, "");
}

#[tokio::test]
async fn moving_the_root_key_makes_the_copied_rows_decrypt() {
    let pair = vault_pair().await;
    let api = FakeApi::start().await;
    api.with(|s| {
        s.root_keys.insert(SOURCE.into(), SOURCE_KEY.into());
        s.root_keys.insert(TARGET.into(), TARGET_KEY.into());
        s.root_key_dbs.insert(TARGET.into(), pair.target.url());
    });
    let dir = tempfile::tempdir().unwrap();
    manifest(dir.path(), "[vault]\nmode = \"move-root-key\"\n");
    let api_url = api.url();
    let env = [
        ("CUTOVER_SOURCE_PROJECT_REF", SOURCE),
        ("CUTOVER_TARGET_PROJECT_REF", TARGET),
        ("CUTOVER_SUPABASE_ACCESS_TOKEN", TOKEN),
        ("CUTOVER_SUPABASE_API_URL", api_url.as_str()),
        ("CUTOVER_API_RETRY_BASE_MS", "2"),
    ];
    let out = run(
        dir.path(),
        &pair,
        &env,
        &[STRIPE_LIVE, WEBHOOK_SECRET, SOURCE_KEY, TARGET_KEY, TOKEN],
    );
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}\n{summary}", text(&out));
    assert_eq!(
        api.with(|s| s.root_key_puts.clone()),
        vec![(TARGET.to_string(), sha256_bytes(SOURCE_KEY.as_bytes()))]
    );
    assert_eq!(
        decrypted(&pair.target).await,
        format!("stripe_key={STRIPE_LIVE},webhook_secret={WEBHOOK_SECRET}")
    );
    assert!(
        row_contains(
            &summary,
            "Vault root key moved to the target",
            "the target's root key is now the source's"
        ),
        "{summary}"
    );
    assert!(summary.contains("same as the source's"), "{summary}");

    // The target's own secret would be lost with another key: refused.
    let other = vault_pair().await;
    other
        .target
        .exec("select vault.create_secret('tgt-only-value', 'target_only')")
        .await;
    api.with(|s| {
        s.root_keys.insert(TARGET.into(), TARGET_KEY.into());
        s.root_key_dbs.insert(TARGET.into(), other.target.url());
    });
    let dir = tempfile::tempdir().unwrap();
    manifest(dir.path(), "[vault]\nmode = \"move-root-key\"\n");
    let out = run(
        dir.path(),
        &other,
        &env,
        &[STRIPE_LIVE, WEBHOOK_SECRET, SOURCE_KEY, TARGET_KEY],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("would make the target's own Vault secrets unreadable: target_only"),
        "{all}"
    );
    assert_eq!(api.with(|s| s.root_key_puts.len()), 1, "no second PUT");
    assert_eq!(decrypted(&other.target).await, "target_only=tgt-only-value");
}

fn row_contains(summary: &str, title: &str, needle: &str) -> bool {
    summary
        .lines()
        .any(|l| l.contains(title) && l.contains(needle))
}
