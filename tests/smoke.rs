//! `smoke` end to end against a local site and a local functions endpoint:
//! routes and function invocations, expected statuses, latency budgets,
//! masked header values, missing variables, dry-run.

use crate::common;

use std::time::Duration;

use common::*;
use cutover::http_checks::{self, Expectation, HttpCheck};
use wiremock::matchers::{body_string, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const INGEST_KEY: &str = "ingest_SecretKey_0123456789";

async fn servers() -> MockServer {
    let server = MockServer::start().await;
    for route in ["/", "/dashboard"] {
        Mock::given(method("GET"))
            .and(path(route))
            .respond_with(ResponseTemplate::new(200).set_body_string("<html></html>"))
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/transactions"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/functions/v1/sms-ingest"))
        .and(header("x-api-key", INGEST_KEY))
        .and(body_string("{\"sms_text\":\"Test SMS\"}"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"success\":true}"))
        .mount(&server)
        .await;
    server
}

fn manifest(site: &str, routes: &str) -> String {
    format!(
        r#"[project]
name = "smoke"

[frontend]
provider = "cloudflare-pages"
project = "p"
url = "{site}"
{routes}

[functions]
base_url = "${{FUNCTIONS_URL}}"

[[functions.smoke]]
name = "sms-ingest accepts a test SMS"
function = "sms-ingest"
method = "POST"
headers = {{ "x-api-key" = "${{INGEST_API_KEY}}" }}
body = '{{"sms_text":"Test SMS"}}'
expect_status = 200
max_latency_ms = 5000
"#
    )
}

fn run(
    dir: &std::path::Path,
    files: &ActionsFiles,
    extra: &[(&str, &str)],
) -> std::process::Output {
    let mut env = files.github_env();
    env.extend(
        [
            ("INPUT_PHASE", "smoke"),
            ("INPUT_MANIFEST", dir.join("cutover.toml").to_str().unwrap()),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    run_cutover(dir, &[], &env)
}

#[tokio::test]
async fn routes_and_functions_pass_with_a_table_and_masked_keys() {
    let server = servers().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cutover.toml"),
        manifest(
            &server.uri(),
            "[[frontend.routes]]\npath = \"/\"\n\n[[frontend.routes]]\npath = \"/dashboard\"\nmax_latency_ms = 3000\n",
        ),
    )
    .unwrap();
    let files = ActionsFiles::new();
    let functions = format!("{}/functions/v1", server.uri());
    let out = run(
        dir.path(),
        &files,
        &[
            ("FUNCTIONS_URL", &functions),
            ("INGEST_API_KEY", INGEST_KEY),
        ],
    );
    let summary = files.read("summary.md");
    assert_eq!(out.status.code(), Some(0), "{}\n{summary}", text(&out));
    assert!(summary.contains("Smoke checks"), "{summary}");
    let dash = summary
        .lines()
        .find(|l| l.starts_with("| route /dashboard"))
        .expect("dashboard row in the table");
    assert!(
        dash.contains("| 200 |") && dash.contains("3000 ms"),
        "{dash}"
    );
    assert!(
        summary.contains("sms-ingest accepts a test SMS"),
        "{summary}"
    );
    assert!(text(&out).contains(&format!("::add-mask::{INGEST_KEY}")));
    assert_no_leak(
        INGEST_KEY,
        &out,
        &files,
        &dir.path().join("cutover-report.json"),
    );
}

#[tokio::test]
async fn a_404_route_fails_with_a_hint() {
    let server = servers().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cutover.toml"),
        manifest(
            &server.uri(),
            "[[frontend.routes]]\npath = \"/transactions\"\n",
        ),
    )
    .unwrap();
    let files = ActionsFiles::new();
    let functions = format!("{}/functions/v1", server.uri());
    let out = run(
        dir.path(),
        &files,
        &[
            ("FUNCTIONS_URL", &functions),
            ("INGEST_API_KEY", INGEST_KEY),
        ],
    );
    let summary = files.read("summary.md");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let row = summary
        .lines()
        .find(|l| l.contains("route /transactions") && l.starts_with("| ❌"))
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(row.contains("answered 404, expected 200"), "{row}");
    assert!(summary.contains("SPA fallback"), "{summary}");
}

#[tokio::test]
async fn a_missing_header_variable_names_it_and_dry_run_sends_nothing() {
    let server = servers().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cutover.toml"),
        manifest(&server.uri(), "[[frontend.routes]]\npath = \"/\"\n"),
    )
    .unwrap();
    let files = ActionsFiles::new();
    let functions = format!("{}/functions/v1", server.uri());
    let out = run(dir.path(), &files, &[("FUNCTIONS_URL", &functions)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(files.read("summary.md").contains("${INGEST_API_KEY}"));

    server.reset().await;
    let files = ActionsFiles::new();
    let out = run(
        dir.path(),
        &files,
        &[
            ("FUNCTIONS_URL", &functions),
            ("INGEST_API_KEY", INGEST_KEY),
            ("INPUT_DRY-RUN", "true"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(files.read("summary.md").contains("not sent (dry run)"));
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn latency_budget_and_not_status() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/slow"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(300)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/fn"))
        .respond_with(ResponseTemplate::new(400))
        .mount(&server)
        .await;
    let client = http_checks::client(Duration::from_secs(5));
    let slow = HttpCheck {
        name: "slow".into(),
        method: "GET".into(),
        url: format!("{}/slow", server.uri()),
        headers: vec![],
        body: None,
        expect: Expectation::Status(200),
        max_latency_ms: Some(100),
    };
    let r = http_checks::run(&client, &slow).await;
    assert!(!r.passed && r.latency_ms >= 300, "{r:?}");
    assert!(r.problem.unwrap().contains("over the 100 ms budget"));
    let not500 = HttpCheck {
        name: "fn".into(),
        method: "post".into(),
        url: format!("{}/fn", server.uri()),
        headers: vec![],
        body: Some("{}".into()),
        expect: Expectation::NotStatus(500),
        max_latency_ms: None,
    };
    assert!(http_checks::run(&client, &not500).await.passed);
    let refused = HttpCheck {
        url: "http://127.0.0.1:9/x".into(),
        ..not500
    };
    let r = http_checks::run(&client, &refused).await;
    assert!(!r.passed && r.status.is_none(), "{r:?}");
}
