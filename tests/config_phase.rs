//! End to end: `config` sets `invoice_configurations` on a real target built
//! from the ops-portal migrations, shows before → after, and never shows or
//! records the secret key's value.

use crate::common;

use common::*;

const WHATSAPP_KEY: &str = "prod-360messenger-key-8f3a2b";

async fn target() -> TestDb {
    let db = TestDb::new("cfg").await;
    db.apply_migrations("ops-portal", None).await;
    db
}

fn run_config(
    files: &ActionsFiles,
    db: &TestDb,
    manifest: &std::path::Path,
    extra: &[(&str, &str)],
) -> std::process::Output {
    ActionsRun::new(files, "config")
        .manifest(manifest)
        .input("target-db-url", db.url_with_password("cfg-db-pw-31"))
        .vars(extra.iter().copied())
        .run(files.dir.path())
}

async fn value(db: &TestDb, key: &str) -> Option<String> {
    db.scalar(&format!(
        "select config_value from public.invoice_configurations where config_key = '{key}'"
    ))
    .await
}

#[tokio::test]
async fn the_example_config_is_applied_and_shown_before_and_after() {
    let db = target().await;
    let manifest = repo_root().join("examples/ops-portal/cutover.toml");
    let files = ActionsFiles::new();
    let out = run_config(
        &files,
        &db,
        &manifest,
        &[("TARGET_WHATSAPP_API_KEY", WHATSAPP_KEY)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let summary = files.read("summary.md");
    assert!(
        summary.contains("| whatsapp_failure_notification_email | ops@example.com | ops-alerts@aamodha.example | changed |"),
        "{summary}"
    );
    assert!(
        summary.contains("| whatsapp_api_key | •••• | •••• | changed |"),
        "{summary}"
    );
    assert!(
        summary.contains("| invoice_folder_path | MyDrive/Invoice | MyDrive/Invoice | unchanged |"),
        "{summary}"
    );
    assert_eq!(
        value(&db, "whatsapp_api_key").await.as_deref(),
        Some(WHATSAPP_KEY)
    );
    assert_eq!(
        value(&db, "whatsapp_failure_notification_email")
            .await
            .as_deref(),
        Some("ops-alerts@aamodha.example")
    );
    assert_eq!(
        value(&db, "whatsapp_enabled").await.as_deref(),
        Some("false"),
        "guard-owned key untouched"
    );
    assert_no_leak(
        WHATSAPP_KEY,
        &out,
        &files,
        &files.path("cutover-report.json"),
    );
    let ledger = ledger_dump(&db, "cutover").await;
    assert!(ledger.contains("config-values"), "{ledger}");
    assert!(!ledger.contains(WHATSAPP_KEY));

    // A re-run finds everything in place.
    let files = ActionsFiles::new();
    let again = run_config(
        &files,
        &db,
        &manifest,
        &[("TARGET_WHATSAPP_API_KEY", WHATSAPP_KEY)],
    );
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(
        files.read("summary.md").contains("0 of 9 keys"),
        "{}",
        files.read("summary.md")
    );
}

#[tokio::test]
async fn a_missing_variable_fails_naming_key_and_variable() {
    let db = target().await;
    let manifest = repo_root().join("examples/ops-portal/cutover.toml");
    let files = ActionsFiles::new();
    let before = db.fingerprint().await;
    let out = run_config(&files, &db, &manifest, &[]);
    let log = text(&out);
    // A missing input fails (1) in every phase, as preflight does; 3 is for guards.
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains("whatsapp_api_key (from $TARGET_WHATSAPP_API_KEY)"),
        "{log}"
    );
    assert_eq!(
        db.fingerprint().await,
        before,
        "nothing written, not even the ledger"
    );
}

fn manifest(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("cutover.toml");
    std::fs::write(
        &path,
        format!(
            "[project]\nname = \"cfg\"\n[config]\ntable = \"public.invoice_configurations\"\n{body}"
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn unknown_keys_are_refused_unless_insert_missing() {
    let db = target().await;
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(
        dir.path(),
        "[config.values]\nstorage_provider = \"onedrive\"\nnew_feature_flag = \"on\"\n",
    );
    let files = ActionsFiles::new();
    let out = run_config(&files, &db, &m, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let summary = files.read("summary.md");
    assert!(
        summary.contains(
            "not in public.invoice_configurations: new_feature_flag; nothing was written"
        ),
        "{summary}"
    );
    assert_eq!(
        value(&db, "storage_provider").await.as_deref(),
        Some("google_drive"),
        "nothing written"
    );

    let m = manifest(
        dir.path(),
        "insert_missing = true\n[config.values]\nstorage_provider = \"onedrive\"\nnew_feature_flag = \"on\"\n",
    );
    let files = ActionsFiles::new();
    let out = run_config(&files, &db, &m, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let summary = files.read("summary.md");
    assert!(
        summary.contains("| new_feature_flag | (missing) | on | inserted |"),
        "{summary}"
    );
    assert!(
        summary.contains("| storage_provider | google_drive | onedrive | changed |"),
        "{summary}"
    );
    assert_eq!(value(&db, "new_feature_flag").await.as_deref(), Some("on"));
    assert_eq!(
        value(&db, "storage_provider").await.as_deref(),
        Some("onedrive")
    );
}

#[tokio::test]
async fn a_failing_write_rolls_back_every_key() {
    let db = target().await;
    let dir = tempfile::tempdir().unwrap();
    // storage_provider has a check constraint: 'dropbox' is refused, and the
    // other change in the same transaction must not stay behind.
    let m = manifest(
        dir.path(),
        "[config.values]\nbackup_folder_path = \"MyDrive/New\"\nstorage_provider = \"dropbox\"\n",
    );
    let files = ActionsFiles::new();
    let out = run_config(&files, &db, &m, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("setting storage_provider"),
        "{}",
        text(&out)
    );
    assert_eq!(
        value(&db, "backup_folder_path").await.as_deref(),
        Some("MyDrive/Backups")
    );
}

#[tokio::test]
async fn long_values_are_shown_as_a_diff_and_dry_run_writes_nothing() {
    let db = target().await;
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(
        dir.path(),
        "[config.values]\ninvoice_folder_path = \"\"\"\nMyDrive/Invoices/2026/Quarterly/Region-North/Branch-0042/Approved\nsecond line\"\"\"\n",
    );
    let files = ActionsFiles::new();
    let before = db.fingerprint().await;
    let out = run_config(&files, &db, &m, &[("INPUT_DRY-RUN", "true")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(db.fingerprint().await, before, "dry-run wrote nothing");
    assert_eq!(
        value(&db, "invoice_folder_path").await.as_deref(),
        Some("MyDrive/Invoice")
    );
    let summary = files.read("summary.md");
    assert!(summary.contains("```diff"), "{summary}");
    assert!(summary.contains("-MyDrive/Invoice\n"), "{summary}");
    assert!(
        summary.contains("+MyDrive/Invoices/2026/Quarterly"),
        "{summary}"
    );
    assert!(summary.contains("would change 1 of 1 keys"), "{summary}");
}

mod project_settings {
    //! `[project_settings]`: Supabase project settings set through a fake
    //! Management API, shown before → after, secrets only from variables
    //! and never shown.

    use super::*;
    use crate::fake_supabase::*;

    const SMTP_PASSWORD: &str = "smtp-Prod-Pass-7741x";

    fn settings_manifest(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
        let path = dir.join("cutover.toml");
        std::fs::write(&path, format!("[project]\nname = \"cfg\"\n{body}")).unwrap();
        path
    }

    fn run(
        files: &ActionsFiles,
        api: &FakeApi,
        manifest: &std::path::Path,
        extra: &[(&str, &str)],
    ) -> std::process::Output {
        ActionsRun::new(files, "config")
            .manifest(manifest)
            .inputs([
                ("target-project-ref", TARGET.to_string()),
                ("supabase-access-token", TOKEN.to_string()),
                ("supabase-api-url", api.url()),
            ])
            .var("CUTOVER_API_RETRY_BASE_MS", "2")
            .vars(extra.iter().copied())
            .run(files.dir.path())
    }

    const BODY: &str = r#"
[project_settings.auth]
site_url = "https://app.example.com"
uri_allow_list = "https://app.example.com/**"
smtp_host = "smtp.example.com"
smtp_pass = "${SMTP_PASSWORD}"

[project_settings.postgrest]
max_rows = 500
"#;

    #[tokio::test]
    async fn settings_are_set_read_back_and_the_password_never_shown() {
        let api = FakeApi::start().await;
        let files = ActionsFiles::new();
        let manifest = settings_manifest(files.dir.path(), BODY);
        let out = run(&files, &api, &manifest, &[("SMTP_PASSWORD", SMTP_PASSWORD)]);
        let summary = files.read("summary.md");
        assert_eq!(out.status.code(), Some(0), "{}\n{summary}", text(&out));
        let auth = api.with(|s| {
            s.project_settings[&(TARGET.to_string(), "/config/auth".to_string())].clone()
        });
        assert_eq!(auth["site_url"], "https://app.example.com");
        assert_eq!(auth["uri_allow_list"], "https://app.example.com/**");
        assert_eq!(
            auth["smtp_pass"],
            sha256_bytes(SMTP_PASSWORD.as_bytes()),
            "the password reached the API"
        );
        let postgrest = api
            .with(|s| s.project_settings[&(TARGET.to_string(), "/postgrest".to_string())].clone());
        assert_eq!(postgrest["max_rows"], 500);
        assert!(
            summary.contains(
                "| auth.site_url | http://localhost:3000 | https://app.example.com | ✅ |"
            ),
            "{summary}"
        );
        assert!(
            summary.contains("| auth.smtp_pass | (unset) | •••• | ✅ |"),
            "{summary}"
        );
        assert!(text(&out).contains(&format!("::add-mask::{SMTP_PASSWORD}")));
        assert_no_leak(
            SMTP_PASSWORD,
            &out,
            &files,
            &files.dir.path().join("cutover-report.json"),
        );
        assert_eq!(
            api.with(|s| s.settings_patches.len()),
            2,
            "one PATCH per section"
        );

        // Again: everything already as asked, the password by its digest.
        let files = ActionsFiles::new();
        let manifest = settings_manifest(files.dir.path(), BODY);
        let out = run(&files, &api, &manifest, &[("SMTP_PASSWORD", SMTP_PASSWORD)]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_eq!(
            api.with(|s| s.settings_patches.len()),
            2,
            "nothing patched again"
        );
        assert!(
            files
                .read("summary.md")
                .contains("all 5 settings already as the manifest says")
        );
    }

    #[tokio::test]
    async fn a_literal_secret_an_unset_variable_or_an_unknown_key_changes_nothing() {
        let api = FakeApi::start().await;
        for (body, env, expected) in [
            (
                "[project_settings.auth]\nsmtp_pass = \"hunter2-literal\"\n",
                vec![],
                "[project_settings.auth] smtp_pass looks secret and is written in the manifest",
            ),
            (
                BODY,
                vec![],
                "[project_settings.auth] smtp_pass uses unset variables: SMTP_PASSWORD",
            ),
            (
                "[project_settings.auth]\nsite_ur = \"https://app.example.com\"\n[project_settings.postgrest]\nmax_rows = 10\n",
                vec![("SMTP_PASSWORD", SMTP_PASSWORD)],
                "auth.site_ur (did you mean site_url?)",
            ),
        ] {
            let files = ActionsFiles::new();
            let manifest = settings_manifest(files.dir.path(), body);
            let out = run(&files, &api, &manifest, &env);
            let all = format!("{}{}", text(&out), files.read("summary.md"));
            assert_eq!(out.status.code(), Some(1), "{all}");
            assert!(all.contains(expected), "{all}");
            assert!(!all.contains("hunter2-literal") || expected.contains("literal"));
            assert_eq!(api.with(|s| s.settings_patches.len()), 0, "nothing patched");
        }
    }

    #[tokio::test]
    async fn a_rate_limited_patch_is_retried_and_a_forbidden_read_names_the_fix() {
        let api = FakeApi::start().await;
        api.fault(
            "PATCH",
            "/config/auth",
            429,
            Some("1"),
            r#"{"message":"Too many requests"}"#,
        );
        let files = ActionsFiles::new();
        let manifest = settings_manifest(
            files.dir.path(),
            "[project_settings.auth]\nsite_url = \"https://app.example.com\"\n",
        );
        let out = run(&files, &api, &manifest, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_eq!(
            api.with(|s| s.log.iter().filter(|l| l.starts_with("PATCH")).count()),
            2,
            "the 429 was retried"
        );

        let api = FakeApi::start().await;
        api.fault(
            "GET",
            "/postgrest",
            403,
            None,
            r#"{"message":"Forbidden resource"}"#,
        );
        let files = ActionsFiles::new();
        let manifest = settings_manifest(
            files.dir.path(),
            "[project_settings.auth]\nsite_url = \"https://app.example.com\"\n[project_settings.postgrest]\nmax_rows = 10\n",
        );
        let out = run(&files, &api, &manifest, &[]);
        let all = format!("{}{}", text(&out), files.read("summary.md"));
        assert_eq!(out.status.code(), Some(1), "{all}");
        assert!(all.contains("403"), "{all}");
        assert!(all.contains("Owner or Administrator for settings"), "{all}");
        assert_eq!(
            api.with(|s| s.settings_patches.len()),
            0,
            "auth was not patched either"
        );
        assert_no_leak(
            TOKEN,
            &out,
            &files,
            &files.dir.path().join("cutover-report.json"),
        );
    }
}
