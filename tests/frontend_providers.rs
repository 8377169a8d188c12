//! The Vercel and Cloudflare Pages clients against local fakes, including
//! the answers that go wrong: 401, 404, 429 with and without Retry-After,
//! 5xx, malformed JSON, timeouts, failed builds, unreadable values.

use std::collections::BTreeMap;
use std::time::Duration;

use cutover::frontend::{Frontend, Snapshot};
use cutover::manifest::{FrontendProvider, FrontendSection};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "tok_ProviderSecret_0123456789";

fn section(provider: FrontendProvider, api: &str) -> FrontendSection {
    FrontendSection {
        provider,
        project: "ibimina-gemini".into(),
        team_id: Some("team_123".into()),
        account_id: Some("acc0123".into()),
        url: None,
        env: BTreeMap::new(),
        routes: Vec::new(),
        source_env: BTreeMap::new(),
        api_url: Some(api.into()),
        deploy_timeout_seconds: 1,
    }
}

fn client(provider: FrontendProvider, server: &MockServer, timeout_ms: u64) -> Frontend {
    Frontend::new(
        &section(provider, &server.uri()),
        TOKEN,
        Duration::from_millis(timeout_ms),
    )
    .unwrap()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

async fn vercel_deployments(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/v6/deployments"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"deployments": [{"uid": "dpl_1", "url": "app-1.vercel.app", "state": "READY"}]}),
        ))
        .mount(server)
        .await;
}

#[tokio::test]
async fn vercel_snapshot_reads_values_and_says_which_are_sensitive() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v10/projects/ibimina-gemini/env"))
        .and(query_param("teamId", "team_123"))
        .and(query_param("decrypt", "true"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"envs": [
            {"id": "e1", "key": "VITE_SUPABASE_URL", "value": "https://a.supabase.co", "type": "plain", "target": ["production"]},
            {"id": "e2", "key": "VITE_SUPABASE_ANON_KEY", "type": "sensitive", "target": ["production"]},
            {"id": "e3", "key": "VITE_APP_URL", "value": "https://preview", "type": "plain", "target": ["preview"]}
        ]})))
        .mount(&server)
        .await;
    vercel_deployments(&server).await;
    let snap = client(FrontendProvider::Vercel, &server, 2000)
        .snapshot(&names(&[
            "VITE_SUPABASE_URL",
            "VITE_SUPABASE_ANON_KEY",
            "VITE_APP_URL",
        ]))
        .await
        .unwrap();
    assert_eq!(snap.env[0].value.as_deref(), Some("https://a.supabase.co"));
    assert!(snap.env[1].present && !snap.env[1].readable);
    assert!(
        !snap.env[2].present,
        "a preview-only variable is not production's"
    );
    assert_eq!(
        snap.deployment.unwrap().url.as_deref(),
        Some("https://app-1.vercel.app")
    );
}

#[tokio::test]
async fn vercel_redeploy_waits_until_ready() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v13/deployments"))
        .and(body_json(
            json!({"name": "ibimina-gemini", "deploymentId": "dpl_1", "target": "production"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"id": "dpl_2", "readyState": "QUEUED", "url": "app-2.vercel.app"}),
        ))
        .mount(&server)
        .await;
    // First poll: still building; then READY.
    Mock::given(method("GET"))
        .and(path("/v13/deployments/dpl_2"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "dpl_2", "readyState": "BUILDING"})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v13/deployments/dpl_2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"id": "dpl_2", "readyState": "READY", "url": "app-2.vercel.app"}),
        ))
        .mount(&server)
        .await;
    let before = Snapshot {
        env: vec![],
        deployment: Some(cutover::frontend::DeploymentRef {
            id: "dpl_1".into(),
            url: None,
        }),
    };
    let published = client(FrontendProvider::Vercel, &server, 2000)
        .publish(&before)
        .await
        .unwrap();
    assert_eq!(
        published.deployment.unwrap().url.as_deref(),
        Some("https://app-2.vercel.app")
    );
    assert!(published.note.contains("READY"), "{}", published.note);
}

#[tokio::test]
async fn vercel_failed_build_and_timeout_are_errors() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v13/deployments"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "dpl_err", "readyState": "QUEUED"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v13/deployments/dpl_err"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "dpl_err", "readyState": "ERROR"})),
        )
        .mount(&server)
        .await;
    let before = Snapshot {
        env: vec![],
        deployment: Some(cutover::frontend::DeploymentRef {
            id: "dpl_1".into(),
            url: None,
        }),
    };
    let err = client(FrontendProvider::Vercel, &server, 2000)
        .publish(&before)
        .await
        .unwrap_err();
    assert!(err.message.contains("ended ERROR"), "{err}");

    // Never READY: bounded by deploy_timeout_seconds (1 s here).
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v13/deployments"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "dpl_slow", "readyState": "QUEUED"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v13/deployments/dpl_slow"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "dpl_slow", "readyState": "BUILDING"})),
        )
        .mount(&server)
        .await;
    let err = client(FrontendProvider::Vercel, &server, 2000)
        .publish(&before)
        .await
        .unwrap_err();
    assert!(err.message.contains("deploy_timeout_seconds"), "{err}");

    // No production deployment at all.
    let err = client(FrontendProvider::Vercel, &server, 2000)
        .publish(&Snapshot::default())
        .await
        .unwrap_err();
    assert!(
        err.message.contains("no READY production deployment"),
        "{err}"
    );
}

#[tokio::test]
async fn retries_5xx_and_429_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "0"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/v9/projects/ibimina-gemini/env/e1"))
        .and(body_json(json!({"value": "https://b.supabase.co"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "e1"})))
        .expect(1)
        .mount(&server)
        .await;
    let before = Snapshot {
        env: vec![cutover::frontend::EnvValue {
            name: "VITE_SUPABASE_URL".into(),
            value: Some("https://a.supabase.co".into()),
            present: true,
            readable: true,
            id: Some("e1".into()),
            kind: Some("plain".into()),
        }],
        deployment: None,
    };
    let values = BTreeMap::from([(
        "VITE_SUPABASE_URL".to_string(),
        "https://b.supabase.co".to_string(),
    )]);
    client(FrontendProvider::Vercel, &server, 2000)
        .set_env(&values, &before)
        .await
        .unwrap();
}

#[tokio::test]
async fn persistent_errors_name_the_endpoint_and_never_the_token() {
    for (status, body, expect) in [
        (
            401,
            json!({"error": {"code": "forbidden", "message": "Not authorized"}}),
            "input `vercel-token`",
        ),
        (
            404,
            json!({"error": {"code": "not_found", "message": "Project not found"}}),
            "check [frontend] project",
        ),
        (
            500,
            json!({"error": {"message": format!("boom, your token was {TOKEN}")}}),
            "500",
        ),
        (429, json!({}), "rate limited"),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .mount(&server)
            .await;
        let err = client(FrontendProvider::Vercel, &server, 2000)
            .snapshot(&names(&["A"]))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(expect), "{status}: {err}");
        assert!(
            err.contains("GET /v10/projects/ibimina-gemini/env"),
            "{err}"
        );
        assert!(!err.contains(TOKEN), "{err}");
    }
    // A Retry-After longer than cutover waits fails at once.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "3600"))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(FrontendProvider::Vercel, &server, 2000)
        .snapshot(&names(&["A"]))
        .await
        .unwrap_err();
    assert!(err.message.contains("3600 s"), "{err}");
}

#[tokio::test]
async fn malformed_json_and_timeouts_are_errors() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>gateway</html>"))
        .mount(&server)
        .await;
    let err = client(FrontendProvider::Vercel, &server, 2000)
        .snapshot(&names(&["A"]))
        .await
        .unwrap_err();
    assert!(err.message.contains("not the JSON"), "{err}");

    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let err = client(FrontendProvider::CloudflarePages, &server, 100)
        .snapshot(&names(&["A"]))
        .await
        .unwrap_err();
    assert!(err.message.contains("timeout"), "{err}");
}

fn pages_project(env_vars: Value, canonical: &str) -> Value {
    json!({"success": true, "errors": [], "messages": [], "result": {
        "id": "7b162ea7", "name": "ibimina-gemini", "subdomain": "ibimina-gemini.pages.dev",
        "canonical_deployment": {"id": canonical, "url": format!("https://{canonical}.ibimina-gemini.pages.dev"), "environment": "production"},
        "deployment_configs": {"production": {"env_vars": env_vars}, "preview": {"env_vars": null}}
    }})
}

#[tokio::test]
async fn cloudflare_sets_variables_and_rolls_back() {
    let server = MockServer::start().await;
    let project = "/accounts/acc0123/pages/projects/ibimina-gemini";
    Mock::given(method("GET"))
        .and(path(project))
        .respond_with(ResponseTemplate::new(200).set_body_json(pages_project(
            json!({
                "VITE_SUPABASE_URL": {"type": "plain_text", "value": "https://a.supabase.co"},
                "VITE_SUPABASE_ANON_KEY": {"type": "secret_text"}
            }),
            "dep_old",
        )))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(project))
        .respond_with(ResponseTemplate::new(200).set_body_json(pages_project(json!({}), "dep_old")))
        .mount(&server)
        .await;
    let c = client(FrontendProvider::CloudflarePages, &server, 2000);
    let before = c
        .snapshot(&names(&[
            "VITE_SUPABASE_URL",
            "VITE_SUPABASE_ANON_KEY",
            "VITE_USE_MOCK_DATA",
        ]))
        .await
        .unwrap();
    assert_eq!(before.deployment.as_ref().unwrap().id, "dep_old");
    assert!(!before.env[1].readable, "secret_text is never returned");
    let values = BTreeMap::from([
        (
            "VITE_SUPABASE_URL".to_string(),
            "https://b.supabase.co".to_string(),
        ),
        ("VITE_USE_MOCK_DATA".to_string(), "false".to_string()),
    ]);
    c.set_env(&values, &before).await.unwrap();
    let published = c.publish(&before).await.unwrap();
    assert!(published.note.contains("next production deployment"));

    // After the pages action deployed dep_new, roll back to dep_old.
    Mock::given(method("GET"))
        .and(path(project))
        .respond_with(ResponseTemplate::new(200).set_body_json(pages_project(json!({}), "dep_new")))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{project}/deployments/dep_old/rollback")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"success": true, "errors": [], "result": {"id": "dep_old"}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let notes = c.restore(&before).await.unwrap();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("VITE_SUPABASE_ANON_KEY") && n.contains("secret_text")),
        "{notes:?}"
    );
    let patches: Vec<Value> = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "PATCH")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let set = &patches[0]["deployment_configs"]["production"]["env_vars"];
    assert_eq!(
        set["VITE_SUPABASE_URL"],
        json!({"type": "plain_text", "value": "https://b.supabase.co"})
    );
    let back = &patches[1]["deployment_configs"]["production"]["env_vars"];
    assert_eq!(
        back["VITE_SUPABASE_URL"],
        json!({"type": "plain_text", "value": "https://a.supabase.co"})
    );
    assert_eq!(
        back["VITE_USE_MOCK_DATA"],
        Value::Null,
        "a variable cutover added is removed"
    );
    assert!(
        back.get("VITE_SUPABASE_ANON_KEY").is_none(),
        "an unreadable value is not overwritten"
    );
}

#[tokio::test]
async fn cloudflare_failure_envelope_is_an_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "success": false, "errors": [{"code": 8000007, "message": "Project not found"}], "result": null
        })))
        .mount(&server)
        .await;
    let err = client(FrontendProvider::CloudflarePages, &server, 2000)
        .snapshot(&names(&["A"]))
        .await
        .unwrap_err();
    assert!(err.message.contains("Project not found"), "{err}");
    let mut s = section(FrontendProvider::CloudflarePages, &server.uri());
    s.account_id = None;
    let err = Frontend::new(&s, TOKEN, Duration::from_secs(1)).unwrap_err();
    assert!(err.message.contains("[frontend] account_id"), "{err}");
}
