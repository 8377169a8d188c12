//! `monitor` end to end: the built binary polls a fake Management API whose
//! analytics answer scripted figures (API gateway requests and 5xx per poll,
//! Edge Function 5xx per bucket) and a local site, with no wait between polls
//! (`CUTOVER_MONITOR_INTERVAL_MS=0`). Healthy windows pass; rising 5xx fail
//! with the measured rate; `/analytics/endpoints/logs` answering 404 falls
//! back to `logs.all`; with `rollback_on_failure`, a failed window after a
//! real `cutover` rolls it back.

use crate::common;
use crate::fake_supabase;

use std::path::Path;

use common::*;
use fake_supabase::*;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The production site: `/dashboard` answers 200.
async fn site() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/dashboard"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>dashboard</html>"))
        .mount(&server)
        .await;
    server
}

/// A fake API whose target has `sms-ingest` deployed.
async fn api() -> FakeApi {
    let api = FakeApi::start().await;
    api.with(|s| {
        s.functions.entry(TARGET.into()).or_default().insert(
            "sms-ingest".into(),
            function_json("sms-ingest", 3, "ACTIVE", false, "index.ts"),
        );
        s.analytics.edge_default = (100, 0);
    });
    api
}

fn manifest(site: &str, monitor: &str) -> String {
    format!(
        r#"[project]
name = "monitor"

[frontend]
provider = "cloudflare-pages"
project = "p"
url = "{site}"

[[frontend.routes]]
path = "/dashboard"

[monitor]
{monitor}
"#
    )
}

fn run(
    dir: &Path,
    files: &ActionsFiles,
    api: &str,
    extra: &[(&str, &str)],
) -> std::process::Output {
    ActionsRun::new(files, "monitor")
        .manifest(dir.join("cutover.toml"))
        .inputs([
            ("target-project-ref", TARGET),
            ("supabase-access-token", TOKEN),
            ("supabase-api-url", api),
        ])
        .vars([
            ("CUTOVER_MONITOR_INTERVAL_MS", "0"),
            ("CUTOVER_API_RETRY_BASE_MS", "2"),
            ("CUTOVER_API_MAX_DELAY_MS", "50"),
        ])
        .vars(extra.iter().copied())
        .run(dir)
}

fn workspace(site: &str, monitor: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cutover.toml"), manifest(site, monitor)).unwrap();
    dir
}

#[tokio::test]
async fn a_healthy_window_passes_with_the_figures_over_time() {
    let (api, site) = (api().await, site().await);
    // One logs call and one function a poll: 3 s apart at most 50 calls a minute.
    let dir = workspace(&site.uri(), "window_seconds = 9\ninterval_seconds = 3");
    let files = ActionsFiles::new();
    let out = run(dir.path(), &files, &api.url(), &[]);
    let summary = files.read("summary.md");
    assert_eq!(out.status.code(), Some(0), "{}\n{summary}", text(&out));
    assert_eq!(files.outputs()["status"], "success");
    // A baseline and three polls, each reading the logs and the function.
    assert_eq!(api.count("GET", "/analytics/endpoints/logs"), 4);
    assert_eq!(api.count("GET", "/analytics/endpoints/logs.all"), 0);
    assert_eq!(api.count("GET", "/functions.combined-stats"), 4);
    let stats = api.with(|s| {
        s.log
            .iter()
            .filter(|l| l.contains("combined-stats"))
            .cloned()
            .collect::<Vec<_>>()
    });
    assert!(
        stats
            .iter()
            .all(|l| l.contains("interval=15min") && l.contains("function_id=id-sms-ingest")),
        "{stats:?}"
    );
    let queries = api.with(|s| s.analytics.logs_queries.clone());
    for (_, params) in &queries {
        assert!(params["sql"].contains("edge_logs"), "{params:?}");
        assert!(
            params.contains_key("iso_timestamp_start") && params.contains_key("iso_timestamp_end")
        );
    }
    assert!(row(&summary, "API error rate ≤ 1.00 %").contains("0.00 % (0 of 300 requests"));
    assert!(row(&summary, "Edge Function 5xx ≤ 0").contains("0 across 1 function (sms-ingest)"));
    assert!(row(&summary, "Frontend routes within 3000 ms").contains("/dashboard"));
    assert!(summary.contains("Monitoring window"), "{summary}");
    assert!(summary.contains("| baseline |"), "{summary}");
    assert!(summary.contains("```mermaid\nxychart-beta"), "{summary}");
    assert!(summary.contains("Monitoring confirmed") || !summary.contains("Release sign-off"));
    assert_no_leak(TOKEN, &out, &files, &dir.path().join("cutover-report.json"));
    let report = std::fs::read_to_string(dir.path().join("cutover-report.json")).unwrap();
    assert!(
        report.contains("\"charts\""),
        "the JSON report has the figures"
    );
}

#[tokio::test]
async fn rising_5xx_fail_the_window_with_the_measured_rate() {
    let (api, site) = (api().await, site().await);
    // Baseline, then 0, 2 and 7 of 100 requests answer 5xx.
    api.with(|s| {
        s.analytics.edge = [(100, 0), (100, 0), (100, 2), (100, 7)].into();
    });
    let dir = workspace(&site.uri(), "window_seconds = 15\ninterval_seconds = 3");
    let files = ActionsFiles::new();
    let out = run(dir.path(), &files, &api.url(), &[]);
    let summary = files.read("summary.md");
    assert_eq!(out.status.code(), Some(1), "{}\n{summary}", text(&out));
    assert_eq!(files.outputs()["status"], "failed");
    let r = row(&summary, "API error rate ≤ 1.00 %");
    assert!(
        r.contains("3.00 % (9 of 300 requests answered 5xx since the window opened) is over the 1.00 % limit"),
        "{r}"
    );
    assert!(
        summary.contains("Monitoring failed at poll 3 of 5"),
        "{summary}"
    );
    // The window stopped at the breach: baseline + 3 polls.
    assert_eq!(api.count("GET", "/analytics/endpoints/logs"), 4);
    assert!(r.contains("run `rollback`"), "{r}");
}

#[tokio::test]
async fn edge_function_5xx_fail_the_window() {
    let (api, site) = (api().await, site().await);
    api.with(|s| {
        s.analytics
            .function_5xx
            .insert("id-sms-ingest".into(), [1, 0, 2].into());
    });
    let dir = workspace(&site.uri(), "window_seconds = 12\ninterval_seconds = 3");
    let files = ActionsFiles::new();
    let out = run(dir.path(), &files, &api.url(), &[]);
    let summary = files.read("summary.md");
    assert_eq!(out.status.code(), Some(1), "{}\n{summary}", text(&out));
    let r = row(&summary, "Edge Function 5xx ≤ 0");
    assert!(
        r.contains("2 Edge Function 5xx since the window opened, over the limit of 0"),
        "{r}"
    );
    assert!(r.contains("baseline: 1 in the 15 minutes before"), "{r}");
}

#[tokio::test]
async fn logs_endpoint_404_falls_back_to_logs_all() {
    let (api, site) = (api().await, site().await);
    api.with(|s| s.analytics.logs_missing = true);
    let dir = workspace(&site.uri(), "window_seconds = 6\ninterval_seconds = 3");
    let files = ActionsFiles::new();
    let out = run(dir.path(), &files, &api.url(), &[]);
    let summary = files.read("summary.md");
    assert_eq!(out.status.code(), Some(0), "{}\n{summary}", text(&out));
    // Probed once, then logs.all for the baseline and both polls.
    assert_eq!(api.count("GET", "/analytics/endpoints/logs"), 1);
    assert_eq!(api.count("GET", "/analytics/endpoints/logs.all"), 3);
    assert!(
        row(&summary, "within the API's rate limit").contains(
            "`/analytics/endpoints/logs` answered 404; read from `/analytics/endpoints/logs.all`"
        ),
        "{summary}"
    );
}

#[tokio::test]
async fn a_token_without_analytics_access_stops_with_the_fix_and_429_is_retried() {
    let (api, site) = (api().await, site().await);
    api.fault(
        "GET",
        "/logs",
        429,
        Some("0"),
        r#"{"message":"Too many requests"}"#,
    );
    let dir = workspace(&site.uri(), "window_seconds = 3\ninterval_seconds = 3");
    let files = ActionsFiles::new();
    let out = run(dir.path(), &files, &api.url(), &[]);
    let summary = files.read("summary.md");
    assert_eq!(
        out.status.code(),
        Some(0),
        "429 retried: {}\n{summary}",
        text(&out)
    );

    let api = self::api().await;
    api.fault(
        "GET",
        "/logs",
        403,
        None,
        r#"{"message":"Forbidden resource"}"#,
    );
    let files = ActionsFiles::new();
    let out = run(dir.path(), &files, &api.url(), &[]);
    let summary = files.read("summary.md");
    assert_eq!(out.status.code(), Some(1), "{}\n{summary}", text(&out));
    assert!(summary.contains("403"), "{summary}");
    assert!(summary.contains("analytics:read"), "{summary}");
    assert!(summary.contains("nothing rolled back"), "{summary}");

    let files = ActionsFiles::new();
    let out = run(
        dir.path(),
        &files,
        &api.url(),
        &[("INPUT_SUPABASE-ACCESS-TOKEN", "sbp_wrong")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        files.read("summary.md").contains("401"),
        "{}",
        files.read("summary.md")
    );
}

#[tokio::test]
async fn many_functions_stretch_the_interval_under_the_api_limit() {
    let (api, site) = (api().await, site().await);
    api.with(|s| {
        let functions = s.functions.entry(TARGET.into()).or_default();
        for i in 0..11 {
            let slug = format!("fn-{i:02}");
            functions.insert(
                slug.clone(),
                function_json(&slug, 1, "ACTIVE", true, "index.ts"),
            );
        }
    });
    // 1 logs + 12 functions = 13 calls a poll: 16 s at 50 a minute.
    let dir = workspace(&site.uri(), "window_seconds = 32\ninterval_seconds = 10");
    let files = ActionsFiles::new();
    let out = run(dir.path(), &files, &api.url(), &[]);
    let summary = files.read("summary.md");
    assert_eq!(out.status.code(), Some(0), "{}\n{summary}", text(&out));
    let r = row(&summary, "within the API's rate limit");
    assert!(r.starts_with("| ⚠️"), "{r}");
    assert!(
        r.contains("stretched from the manifest's 10 s to 16 s"),
        "{r}"
    );
    assert!(r.contains("2 polls every 16 s"), "{r}");
    assert_eq!(api.count("GET", "/functions.combined-stats"), 3 * 12);
}

#[tokio::test]
async fn bad_monitor_settings_name_the_key_and_the_fix() {
    let site = "http://127.0.0.1:9";
    let api = api().await;
    let dir = workspace(site, "interval_seconds = 0");
    let files = ActionsFiles::new();
    let out = run(dir.path(), &files, &api.url(), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("[monitor] interval_seconds must be at least 1"),
        "{}",
        text(&out)
    );
    let dir = workspace(site, "max_api_error_rate_percent = 101.0");
    let out = run(dir.path(), &files, &api.url(), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("from 0 to 100"), "{}", text(&out));
    let dir = workspace(site, "window_minutes = 60");
    let out = run(dir.path(), &files, &api.url(), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("window_minutes"), "{}", text(&out));
    // A function the target does not have.
    let dir = workspace(site, "functions = [\"sms-ingset\"]");
    let files = ActionsFiles::new();
    let out = run(dir.path(), &files, &api.url(), &[]);
    let summary = files.read("summary.md");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        summary.contains("`sms-ingset`") && summary.contains("sms-ingest"),
        "{summary}"
    );
    // rollback_on_failure without the databases: refused before watching.
    let dir = workspace(site, "rollback_on_failure = true");
    let files = ActionsFiles::new();
    let out = run(dir.path(), &files, &api.url(), &[]);
    let summary = files.read("summary.md");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        summary.contains("rollback_on_failure = true needs the databases"),
        "{summary}"
    );
    assert_eq!(api.count("GET", "/analytics/endpoints/logs"), 0);
}

#[tokio::test]
async fn a_failed_window_after_cutover_rolls_back_when_asked() {
    use crate::cutover::{GH_TOKEN, SOURCE_ANON, TARGET_ANON, VERCEL_TOKEN, setup, site, vercel};
    use crate::fake_github::*;
    use wiremock::Request;

    let gh = github(
        environment(reviewers()),
        serde_json::json!([approval("approved", "octocat", "Ship it!")]),
        "release-manager",
    )
    .await;
    let vercel = vercel(200).await;
    let site = site().await;
    let s = setup(false, &vercel.uri(), &site.uri()).await;
    let source_before = s.guards(&s.pair.source).await;
    let target_before = s.guards(&s.pair.target).await;
    let api = api().await;
    // Baseline before the switch, then 0 and 30 of 100 requests answer 5xx.
    api.with(|st| st.analytics.edge = [(40, 0), (100, 0), (100, 30)].into());
    let manifest = s.work.path().join("cutover.toml");
    let mut text_of = std::fs::read_to_string(&manifest).unwrap();
    text_of.push_str(
        "\n[monitor]\nwindow_seconds = 9\ninterval_seconds = 3\nrollback_on_failure = true\nafter_cutover = true\n",
    );
    std::fs::write(&manifest, text_of).unwrap();

    let files = ActionsFiles::new();
    let out = ActionsRun::new(&files, "cutover")
        .var("GITHUB_API_URL", gh.uri())
        .manifest(&manifest)
        .databases(s.pair.source.url(), s.pair.target.url())
        .inputs([
            ("github-token", GH_TOKEN.to_string()),
            ("vercel-token", VERCEL_TOKEN.to_string()),
            ("target-project-ref", TARGET.to_string()),
            ("supabase-access-token", TOKEN.to_string()),
            ("supabase-api-url", api.url()),
        ])
        .vars([
            ("TARGET_SUPABASE_URL", "https://target.supabase.co"),
            ("TARGET_SUPABASE_ANON_KEY", TARGET_ANON),
            ("SOURCE_SUPABASE_ANON_KEY", SOURCE_ANON),
            ("CUTOVER_MONITOR_INTERVAL_MS", "0"),
        ])
        .run(s.work.path());
    let summary = files.read("summary.md");
    assert_eq!(out.status.code(), Some(1), "{}\n{summary}", text(&out));
    // `after_cutover` ran the window after the switch, against a baseline
    // cutover took before it.
    assert!(summary.contains("| cutover | ✅ success |"), "{summary}");
    assert!(summary.contains("| monitor | ❌ failed |"), "{summary}");
    assert!(
        summary.contains("| baseline (before the switch) |"),
        "{summary}"
    );
    assert!(
        row(&summary, "API error rate ≤ 1.00 %")
            .contains("15.00 % (30 of 200 requests answered 5xx since the window opened)"),
        "{summary}"
    );
    assert!(
        summary.contains("Monitoring failed at poll 2 of 3"),
        "{summary}"
    );
    // The rollback ran and restored what cutover switched.
    assert!(
        row(&summary, "Rolled back after the failed window").contains("✅"),
        "{summary}"
    );
    assert_eq!(s.guards(&s.pair.source).await, source_before);
    assert_eq!(s.guards(&s.pair.target).await, target_before);
    let promoted = vercel
        .received_requests()
        .await
        .unwrap()
        .iter()
        .any(|r: &Request| {
            r.method.as_str() == "POST"
                && r.url.path() == "/v10/projects/ops-portal/promote/dpl_old"
        });
    assert!(promoted, "the pre-cutover deployment is live again");
    let open = s
        .pair
        .target
        .scalar("select count(*)::text from cutover.guard_states where restored_at is null")
        .await;
    assert_eq!(open.as_deref(), Some("0"));
    assert!(
        row(&summary, "Monitoring confirmed").contains("failed"),
        "the sign-off says so: {summary}"
    );
    for secret in [TOKEN, GH_TOKEN, VERCEL_TOKEN, TARGET_ANON, SOURCE_ANON] {
        assert_no_leak(
            secret,
            &out,
            &files,
            &s.work.path().join("cutover-report.json"),
        );
    }
}

#[tokio::test]
async fn dry_run_plans_the_window_and_calls_nothing() {
    let (api, site) = (api().await, site().await);
    let dir = workspace(&site.uri(), "rollback_on_failure = false");
    let files = ActionsFiles::new();
    let out = run(dir.path(), &files, &api.url(), &[("INPUT_DRY-RUN", "true")]);
    let summary = files.read("summary.md");
    assert_eq!(out.status.code(), Some(0), "{}\n{summary}", text(&out));
    assert!(
        row(&summary, "Monitoring window planned").contains("would watch project"),
        "{summary}"
    );
    assert!(api.with(|s| s.log.is_empty()), "no API call in a dry run");
    assert!(site.received_requests().await.unwrap().is_empty());
}
