//! The GitHub environments API against a local fake that answers as
//! `shared/specs/github-environments-api.json` documents.

use crate::common;

use common::*;
use cutover::github::GithubClient;
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "ghs_FakeTokenValue0123456789";

fn environment(name: &str, reviewers: serde_json::Value) -> serde_json::Value {
    json!({
        "id": 161088068,
        "node_id": "MDExOkVudmlyb25tZW50MTYxMDg4MDY4",
        "name": name,
        "url": format!("https://api.github.com/repos/acme/ops-portal/environments/{name}"),
        "html_url": "https://github.com/acme/ops-portal/deployments/activity_log",
        "created_at": "2020-11-23T22:00:40Z",
        "updated_at": "2020-11-23T22:00:40Z",
        "protection_rules": [
            {"id": 3736, "node_id": "MDQ6R2F0ZTM3MzY=", "type": "wait_timer", "wait_timer": 30},
            {"id": 3755, "node_id": "MDQ6R2F0ZTM3NTU=", "prevent_self_review": true,
             "type": "required_reviewers", "reviewers": reviewers},
            {"id": 3756, "node_id": "MDQ6R2F0ZTM3NTY=", "type": "branch_policy"}
        ],
        "deployment_branch_policy": {"protected_branches": false, "custom_branch_policies": true}
    })
}

fn reviewers() -> serde_json::Value {
    json!([
        {"type": "User", "reviewer": {"login": "octocat", "id": 1, "type": "User", "site_admin": false}},
        {"type": "Team", "reviewer": {"id": 1, "name": "Release Managers", "slug": "release-managers"}}
    ])
}

#[tokio::test]
async fn reads_required_reviewers_with_an_encoded_name() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/ops-portal/environments/prod%20eu%2F1"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(environment("prod eu/1", reviewers())),
        )
        .expect(1)
        .mount(&server)
        .await;
    let client = GithubClient::new(&server.uri(), TOKEN, "acme/ops-portal").unwrap();
    let env = client
        .environment("prod eu/1")
        .await
        .unwrap()
        .expect("found");
    let rule = env.required_reviewers().expect("rule");
    let who: Vec<String> = rule.reviewers.iter().map(|r| r.display()).collect();
    assert_eq!(who, ["@octocat", "team:release-managers"]);
    assert_eq!(rule.prevent_self_review, Some(true));
}

#[tokio::test]
async fn missing_environment_is_none() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404).set_body_json(
            json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}),
        ))
        .mount(&server)
        .await;
    let client = GithubClient::new(&server.uri(), TOKEN, "acme/ops-portal").unwrap();
    assert_eq!(client.environment("production").await.unwrap(), None);
}

#[tokio::test]
async fn forbidden_names_the_permission_and_not_the_token() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "message": "Resource not accessible by integration",
            "documentation_url": "https://docs.github.com/rest"
        })))
        .mount(&server)
        .await;
    let client = GithubClient::new(&server.uri(), TOKEN, "acme/ops-portal").unwrap();
    let err = client
        .environment("production")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("403") && err.contains("permissions: actions: read"),
        "{err}"
    );
    assert!(!err.contains(TOKEN));
}

#[tokio::test]
async fn unauthorised_names_the_input() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"
        })))
        .mount(&server)
        .await;
    let client = GithubClient::new(&server.uri(), TOKEN, "acme/ops-portal").unwrap();
    let err = client
        .environment("production")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("input `github-token`"), "{err}");
    assert!(!err.contains(TOKEN));
}

/// Preflight in Actions: an environment without required reviewers fails the
/// row; one with reviewers passes and names them.
#[tokio::test]
async fn preflight_checks_the_release_environment() {
    let server = MockServer::start().await;
    let mut unprotected = environment("production", json!([]));
    unprotected["protection_rules"] = json!([]);
    Mock::given(method("GET"))
        .and(path("/repos/acme/ops-portal/environments/production"))
        .respond_with(ResponseTemplate::new(200).set_body_json(unprotected))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/ops-portal/environments/uat"))
        .respond_with(ResponseTemplate::new(200).set_body_json(environment("uat", reviewers())))
        .mount(&server)
        .await;

    let source = TestDb::new("ghsrc").await;
    let target = TestDb::new("ghtgt").await;
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("supabase/migrations")).unwrap();
    std::fs::write(
        work.path().join("cutover.toml"),
        "[project]\nname = \"gh\"\n",
    )
    .unwrap();

    for (environment_name, ok) in [("production", false), ("uat", true)] {
        let files = ActionsFiles::new();
        let env = ActionsRun::new(&files, "preflight")
            .var("GITHUB_API_URL", server.uri())
            .manifest(work.path().join("cutover.toml"))
            .databases(source.url(), target.url())
            .input("github-token", TOKEN)
            .input("environment", environment_name)
            .env();
        let out = run_and_check_leaks(work.path(), &[], &env, &[TOKEN], &[&target]);
        let summary = files.read("summary.md");
        let row = summary
            .lines()
            .find(|l| l.contains("Release environment requires reviewers"))
            .unwrap_or_else(|| panic!("{summary}"));
        if ok {
            assert_eq!(out.status.code(), Some(0), "{}", text(&out));
            assert!(
                row.starts_with("| ✅") && row.contains("@octocat, team:release-managers"),
                "{row}"
            );
        } else {
            assert_eq!(out.status.code(), Some(1), "{}", text(&out));
            assert!(
                row.starts_with("| ❌") && row.contains("no required reviewers"),
                "{row}"
            );
        }
        assert_no_leak(
            TOKEN,
            &out,
            &files,
            &work.path().join("cutover-report.json"),
        );
    }
}

// HTTP faults: bounded retries and clear errors, never the token.

use cutover::github::HttpLimits;
use std::time::{Duration, Instant};

fn fast_limits() -> HttpLimits {
    HttpLimits {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_millis(500),
        max_retries: 3,
        min_retry_wait: Duration::from_secs(0),
        deadline: Duration::from_secs(20),
    }
}

async fn requests(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

fn found() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(environment("production", reviewers()))
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(503).set_body_json(json!({"message": "Service Unavailable"})),
        )
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(found())
        .mount(&server)
        .await;
    let client =
        GithubClient::with_limits(&server.uri(), TOKEN, "acme/ops-portal", fast_limits()).unwrap();
    let env = client.environment("production").await.unwrap();
    assert!(env.is_some());
    assert_eq!(requests(&server).await, 3);
}

#[tokio::test]
async fn persistent_server_errors_stop_after_the_retry_bound() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(502).set_body_json(json!({"message": "Bad Gateway"})))
        .mount(&server)
        .await;
    let client =
        GithubClient::with_limits(&server.uri(), TOKEN, "acme/ops-portal", fast_limits()).unwrap();
    let err = client.environment("production").await.unwrap_err();
    assert_eq!(requests(&server).await, 4, "one call and 3 retries");
    assert_eq!(err.status, Some(502));
    let text = err.to_string();
    assert!(text.contains("server error, still after retries"), "{text}");
    assert!(!text.contains(TOKEN));
}

#[tokio::test]
async fn rate_limits_wait_for_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(json!({"message": "API rate limit exceeded"})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(found())
        .mount(&server)
        .await;
    let client =
        GithubClient::with_limits(&server.uri(), TOKEN, "acme/ops-portal", fast_limits()).unwrap();
    let started = Instant::now();
    assert!(client.environment("production").await.unwrap().is_some());
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(requests(&server).await, 2);
}

#[tokio::test]
async fn rate_limits_without_retry_after_are_bounded_and_named() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(429)
                .set_body_json(json!({"message": "You have exceeded a secondary rate limit"})),
        )
        .mount(&server)
        .await;
    let client =
        GithubClient::with_limits(&server.uri(), TOKEN, "acme/ops-portal", fast_limits()).unwrap();
    let err = client.environment("production").await.unwrap_err();
    assert_eq!(requests(&server).await, 4);
    assert_eq!(err.status, Some(429));
    assert!(err.to_string().contains("rate limited"), "{err}");
}

#[tokio::test]
async fn a_retry_after_beyond_the_deadline_fails_clearly_instead_of_hanging() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "3600")
                .set_body_json(json!({"message": "API rate limit exceeded"})),
        )
        .mount(&server)
        .await;
    let limits = HttpLimits {
        deadline: Duration::from_secs(2),
        ..fast_limits()
    };
    let client =
        GithubClient::with_limits(&server.uri(), TOKEN, "acme/ops-portal", limits).unwrap();
    let started = Instant::now();
    let err = client.environment("production").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        err.to_string().contains("no successful answer within 2 s"),
        "{err}"
    );
}

#[tokio::test]
async fn a_silent_server_times_out_with_bounded_retries() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(found().set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let limits = HttpLimits {
        max_retries: 1,
        ..fast_limits()
    };
    let client =
        GithubClient::with_limits(&server.uri(), TOKEN, "acme/ops-portal", limits).unwrap();
    let started = Instant::now();
    let err = client.environment("production").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "read timeout applies"
    );
    assert_eq!(requests(&server).await, 2, "one call and one retry");
    let text = err.to_string();
    assert!(
        text.contains("still after retries") && text.contains("GITHUB_API_URL"),
        "{text}"
    );
    assert!(!text.contains(TOKEN));
}

#[tokio::test]
async fn malformed_json_names_the_api_url() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/json")
                .set_body_string("<html>proxy login</html>"),
        )
        .mount(&server)
        .await;
    let client =
        GithubClient::with_limits(&server.uri(), TOKEN, "acme/ops-portal", fast_limits()).unwrap();
    let err = client.environment("production").await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("not the JSON GitHub's API sends"), "{text}");
    assert!(text.contains("GITHUB_API_URL"), "{text}");
    assert_eq!(requests(&server).await, 1, "a bad body is not retried");
}
