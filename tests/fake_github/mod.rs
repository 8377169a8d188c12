//! A fake GitHub API for run 4242 of acme/ops-portal, answering as
//! `shared/specs/github-environments-api.json` documents: the environment and
//! its required reviewers, the run's approvals, the run, deployments and
//! their statuses. Shared by every test that passes the cutover gate.

#![allow(dead_code)]

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// The repository's API path.
pub const REPO: &str = "/repos/acme/ops-portal";

/// A GitHub user object.
pub fn user(login: &str) -> Value {
    json!({"login": login, "id": 1, "node_id": "MDQ6VXNlcjE=", "type": "User", "site_admin": false})
}

/// The `production` environment with required reviewers.
pub fn environment(reviewers: Value) -> Value {
    json!({
        "id": 161088068, "node_id": "MDExOkVudmlyb25tZW50MTYxMDg4MDY4", "name": "production",
        "url": "https://api.github.com/repos/acme/ops-portal/environments/production",
        "html_url": "https://github.com/acme/ops-portal/deployments/activity_log",
        "created_at": "2020-11-23T22:00:40Z", "updated_at": "2020-11-23T22:00:40Z",
        "protection_rules": [
            {"id": 3755, "node_id": "MDQ6R2F0ZTM3NTU=", "prevent_self_review": false,
             "type": "required_reviewers", "reviewers": reviewers}
        ],
        "deployment_branch_policy": {"protected_branches": false, "custom_branch_policies": true}
    })
}

/// A user and a team as required reviewers.
pub fn reviewers() -> Value {
    json!([
        {"type": "User", "reviewer": user("octocat")},
        {"type": "Team", "reviewer": {"id": 1, "name": "Release Managers", "slug": "release-managers"}}
    ])
}

/// One review of the run for `production`.
pub fn approval(state: &str, login: &str, comment: &str) -> Value {
    json!({
        "state": state, "comment": comment, "user": user(login),
        "environments": [{"id": 161088068, "node_id": "MDExOkVudmlyb25tZW50MTYxMDg4MDY4",
                          "name": "production",
                          "url": "https://api.github.com/repos/acme/ops-portal/environments/production",
                          "html_url": "https://github.com/acme/ops-portal/deployments/activity_log?environments_filter=production",
                          "created_at": "2020-11-23T22:00:40Z", "updated_at": "2020-11-23T22:00:40Z"}]
    })
}

/// Run 4242, started by `triggering`.
pub fn workflow_run(triggering: &str) -> Value {
    json!({
        "id": 4242, "name": "release", "node_id": "MDEyOldvcmtmbG93IFJ1bjI2OTI4OQ==",
        "head_branch": "v1.2.0", "head_sha": "0123456789abcdef0123456789abcdef01234567",
        "path": ".github/workflows/release.yml@v1.2.0", "run_number": 7, "event": "push",
        "status": "in_progress", "conclusion": null, "workflow_id": 159038,
        "url": "https://api.github.com/repos/acme/ops-portal/actions/runs/4242",
        "html_url": "https://github.com/acme/ops-portal/actions/runs/4242",
        "created_at": "2025-01-22T19:33:08Z", "updated_at": "2025-01-22T19:33:08Z",
        "actor": user("release-manager"), "triggering_actor": user(triggering), "run_attempt": 1
    })
}

/// A fake GitHub answering for run 4242 of acme/ops-portal.
pub async fn github(env: Value, approvals: Value, triggering: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/environments/production")))
        .respond_with(ResponseTemplate::new(200).set_body_json(env))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/actions/runs/4242/approvals")))
        .respond_with(ResponseTemplate::new(200).set_body_json(approvals))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/actions/runs/4242")))
        .respond_with(ResponseTemplate::new(200).set_body_json(workflow_run(triggering)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/deployments")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "url": "https://api.github.com/repos/acme/ops-portal/deployments/42", "id": 42,
            "node_id": "MDEwOkRlcGxveW1lbnQx", "sha": "0123456789abcdef0123456789abcdef01234567",
            "ref": "0123456789abcdef0123456789abcdef01234567", "task": "deploy", "payload": {},
            "environment": "production", "description": "cutover", "creator": user("github-actions"),
            "created_at": "2025-01-22T19:33:08Z", "updated_at": "2025-01-22T19:33:08Z",
            "statuses_url": "https://api.github.com/repos/acme/ops-portal/deployments/42/statuses",
            "repository_url": "https://api.github.com/repos/acme/ops-portal",
            "transient_environment": false, "production_environment": true
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/deployments/42/statuses")))
        .respond_with(|req: &Request| {
            let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
            ResponseTemplate::new(201).set_body_json(json!({
                "url": "https://api.github.com/repos/acme/ops-portal/deployments/42/statuses/1",
                "id": 1, "node_id": "MDE2OkRlcGxveW1lbnRTdGF0dXMx", "state": body["state"],
                "creator": user("github-actions"), "description": body["description"],
                "environment": "production", "target_url": body["log_url"],
                "created_at": "2025-01-22T19:33:08Z", "updated_at": "2025-01-22T19:33:08Z",
                "deployment_url": "https://api.github.com/repos/acme/ops-portal/deployments/42",
                "repository_url": "https://api.github.com/repos/acme/ops-portal",
                "environment_url": body["environment_url"], "log_url": body["log_url"]
            }))
        })
        .mount(&server)
        .await;
    server
}
