//! Project parity against the fake Management API serving two projects:
//! `preflight` shows each setting that differs with its fix, the cutover
//! gate blocks on the must-fix ones, and `[[parity.accept]]` lets one pass
//! with its reason shown.

use std::path::Path;

use crate::common;
use crate::fake_github;
use crate::fake_storage::FakeStorage;
use crate::fake_supabase;

use common::*;
use fake_github::*;
use fake_supabase::*;
use serde_json::json;

const GH_TOKEN: &str = "ghs_ParityTokenValue0123456789";
const SMTP_PASSWORD: &str = "smtp-Parity-Pass-5521";

/// Two projects that differ as users get bitten: the target's Site URL is
/// still localhost, it exposes one schema fewer, has no custom SMTP while
/// the source has, and admits only one network to its database.
async fn two_projects() -> FakeApi {
    let api = FakeApi::start().await;
    api.set_settings(
        SOURCE,
        "/config/auth",
        json!({"site_url": "https://dev.example.com",
               "uri_allow_list": "https://dev.example.com/**",
               "smtp_host": "smtp.example.com", "smtp_user": "mailer"}),
    );
    api.set_settings(
        SOURCE,
        "/postgrest",
        json!({"db_schema": "public,graphql_public,api"}),
    );
    api.set_settings(
        TARGET,
        "/config/auth",
        json!({"uri_allow_list": "https://app.example.com/**"}),
    );
    api.with(|s| {
        s.network_restrictions.insert(
            TARGET.into(),
            json!({"entitlement": "allowed", "status": "applied",
                   "config": {"dbAllowedCidrs": ["203.0.113.0/24"], "dbAllowedCidrsV6": []}}),
        );
    });
    api
}

async fn work(extra: &str) -> (Pair, tempfile::TempDir) {
    let (source, target) = tokio::join!(TestDb::new("parsrc"), TestDb::new("partgt"));
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("supabase/migrations")).unwrap();
    std::fs::write(
        work.path().join("cutover.toml"),
        format!(
            "[project]\nname = \"parity\"\n\n[gate]\nenvironment = \"production\"\n\n[frontend]\nprovider = \"vercel\"\nproject = \"app\"\nurl = \"https://app.example.com\"\n\n{extra}"
        ),
    )
    .unwrap();
    (Pair { source, target }, work)
}

async fn run(
    phase: &str,
    api: &FakeApi,
    pair: &Pair,
    work: &Path,
    extra: &[(&str, &str)],
) -> (Option<i32>, String, std::process::Output, ActionsFiles) {
    let gh = github(
        environment(reviewers()),
        json!([approval("approved", "octocat", "ship it")]),
        "release-manager",
    )
    .await;
    let files = ActionsFiles::new();
    let out = ActionsRun::new(&files, phase)
        .var("GITHUB_API_URL", gh.uri())
        .manifest(work.join("cutover.toml"))
        .databases(pair.source.url(), pair.target.url())
        .inputs([
            ("github-token", GH_TOKEN.to_string()),
            ("source-project-ref", SOURCE.to_string()),
            ("target-project-ref", TARGET.to_string()),
            ("supabase-access-token", TOKEN.to_string()),
            ("supabase-api-url", api.url()),
        ])
        .var("CUTOVER_API_RETRY_BASE_MS", "2")
        .vars(extra.iter().copied())
        .run(work);
    let summary = files.read("summary.md");
    (out.status.code(), summary, out, files)
}

#[tokio::test]
async fn preflight_shows_each_difference_with_its_fix_and_cutover_blocks() {
    let api = two_projects().await;
    // One bucket public on the source and private on the target.
    const SOURCE_KEY: &str = "source-service-role-parity-0042";
    const TARGET_KEY: &str = "target-service-role-parity-0043";
    let (source_storage, target_storage) = tokio::join!(
        FakeStorage::start(SOURCE_KEY),
        FakeStorage::start(TARGET_KEY)
    );
    source_storage.bucket("avatars", true, None, None);
    // The target's pooler in session mode, the source's in transaction mode.
    let mut pooler = default_settings("/config/database/pooler");
    pooler[0]["pool_mode"] = json!("session");
    api.with(|s| {
        s.project_settings
            .insert((TARGET.into(), "/config/database/pooler".into()), pooler);
    });
    target_storage.bucket("avatars", false, None, None);
    let (pair, work) = work("[storage]\nbuckets = [\"*\"]\n").await;
    let (source_url, target_url) = (source_storage.url(), target_storage.url());
    let storage_env = [
        ("INPUT_SOURCE-STORAGE-URL", source_url.as_str()),
        ("INPUT_TARGET-STORAGE-URL", target_url.as_str()),
        ("INPUT_SOURCE-SERVICE-ROLE-KEY", SOURCE_KEY),
        ("INPUT_TARGET-SERVICE-ROLE-KEY", TARGET_KEY),
    ];
    let (code, summary, out, _) = run("preflight", &api, &pair, work.path(), &storage_env).await;
    assert_eq!(code, Some(1), "{}\n{summary}", text(&out));
    for (setting, fix) in [
        (
            "storage.buckets.avatars.public",
            "the `storage` phase creates and updates",
        ),
        (
            "auth.site_url",
            "set the target's Site URL to https://app.example.com",
        ),
        (
            "postgrest.db_schema",
            "set it to the source's value on the target",
        ),
        ("auth.smtp_host", "2 emails an hour"),
        ("pooler.pool_mode", "Connection pooling"),
        (
            "network.db_allowed_cidrs",
            "0.0.0.0/0 for the cutover window",
        ),
    ] {
        let r = row(&summary, &format!("| Project setting {setting} |"));
        assert!(r.contains("❌"), "{r}");
        assert!(
            summary.contains(fix),
            "{setting}: no fix {fix:?} in\n{summary}"
        );
    }
    // The target has room for the source's database.
    assert!(
        row(&summary, "| disk.headroom |").contains("✅"),
        "{summary}"
    );
    // The diff table, source vs target.
    let t = row(&summary, "| postgrest.db_schema | must match |");
    assert!(
        t.contains("public,graphql_public,api") && t.contains("| public,graphql_public |"),
        "{t}"
    );
    // What matches is not a row of its own.
    assert!(
        !summary.contains("| Project setting postgrest.max_rows |"),
        "{summary}"
    );

    let t = row(&summary, "| storage.buckets.avatars.public | must match |");
    assert!(t.contains("| true | false |"), "{t}");

    let (code, summary, out, _) = run("cutover", &api, &pair, work.path(), &storage_env).await;
    assert_eq!(code, Some(3), "{}\n{summary}", text(&out));
    let gate = row(&summary, "Project settings that must match");
    assert!(
        gate.contains("storage.buckets.avatars.public")
            && gate.contains("must fix: ")
            && gate.contains("auth.site_url")
            && gate.contains("network.db_allowed_cidrs"),
        "{gate}"
    );
    assert_eq!(
        api.with(|s| s.settings_patches.len()),
        0,
        "the gate changes nothing"
    );
}

#[tokio::test]
async fn accepted_differences_pass_with_their_reason_and_the_smtp_password_is_checked() {
    let api = two_projects().await;
    api.set_settings(
        TARGET,
        "/config/auth",
        json!({"site_url": "https://app.example.com", "smtp_host": "smtp.example.com",
               "smtp_pass": sha256_bytes(SMTP_PASSWORD.as_bytes())}),
    );
    let (pair, work) = work(
        "[parity]\nsmtp_password = \"${PROD_SMTP_PASSWORD}\"\n\n[[parity.accept]]\nsetting = \"postgrest.db_schema\"\nreason = \"the api schema is dev-only\"\n\n[[parity.accept]]\nsetting = \"network.db_allowed_cidrs\"\nreason = \"self-hosted runner in 203.0.113.0/24\"\n",
    )
    .await;
    let (code, summary, out, files) = run(
        "cutover",
        &api,
        &pair,
        work.path(),
        &[("PROD_SMTP_PASSWORD", SMTP_PASSWORD)],
    )
    .await;
    // Blocked only by what else the gate needs (no validate recorded).
    assert_eq!(code, Some(3), "{}\n{summary}", text(&out));
    let gate = row(&summary, "Project settings that must match");
    assert!(
        gate.contains("✅") && gate.contains("none differs"),
        "{gate}"
    );
    assert!(
        summary.contains("accepted: the api schema is dev-only"),
        "{summary}"
    );
    assert!(
        row(&summary, "| auth.smtp_host |").contains("password matches"),
        "{summary}"
    );
    assert_no_leak(
        SMTP_PASSWORD,
        &out,
        &files,
        &files.dir.path().join("cutover-report.json"),
    );
}

#[tokio::test]
async fn a_section_the_plan_does_not_allow_is_named_not_failed() {
    let api = two_projects().await;
    api.set_settings(
        TARGET,
        "/config/auth",
        json!({"site_url": "https://app.example.com",
        "smtp_host": "smtp.example.com"}),
    );
    api.set_settings(
        TARGET,
        "/postgrest",
        json!({"db_schema": "public,graphql_public,api"}),
    );
    api.with(|s| {
        s.network_restrictions.remove(TARGET);
    });
    for _ in 0..2 {
        api.fault(
            "GET",
            "/config/realtime",
            403,
            None,
            r#"{"message":"Forbidden resource"}"#,
        );
    }
    let (pair, work) = work("").await;
    let (code, summary, out, _) = run("preflight", &api, &pair, work.path(), &[]).await;
    let r = row(&summary, "Project settings: source vs target |");
    assert!(
        r.contains("✅") && r.contains("not available to this token or plan: realtime (HTTP 403)"),
        "{r}\n{}",
        text(&out)
    );
    let _ = code;
}
