//! The Management API client against a local fake that answers as
//! `shared/specs/supabase-management-api.json` documents, including 401,
//! 404, 429 (with and without Retry-After), 500, malformed JSON and a timeout.

use crate::fake_supabase;

use std::time::{Duration, Instant};

use cutover::supabase::{
    ApiErrorKind, DeployMetadata, ManagementClient, NewSecret, RetryPolicy, UploadFile,
    digest_matches,
};
use fake_supabase::*;
use serde_json::json;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Retries in milliseconds, not seconds: tests stay fast and a honoured
/// Retry-After (capped at 80 ms here) is still measurable.
fn fast() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(2),
        max_delay: Duration::from_millis(80),
        max_total: Duration::from_secs(5),
        request_timeout: Duration::from_millis(300),
        requests_per_minute: 60,
    }
}

fn client(url: &str) -> ManagementClient {
    ManagementClient::new(url, TOKEN, fast()).unwrap()
}

#[tokio::test]
async fn lists_functions_with_the_bearer_token() {
    let api = FakeApi::start().await;
    api.with(|s| {
        s.functions.entry(TARGET.into()).or_default().insert(
            "hello".into(),
            function_json(
                "hello",
                3,
                "ACTIVE",
                false,
                "supabase/functions/hello/index.ts",
            ),
        )
    });
    let list = client(&api.url()).list_functions(TARGET).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].slug, "hello");
    assert_eq!(list[0].version, 3);
    assert_eq!(list[0].verify_jwt, Some(false));
}

#[tokio::test]
async fn unauthorized_fails_fast_and_never_shows_the_token() {
    let api = FakeApi::start().await;
    let c = ManagementClient::new(&api.url(), "sbp_WrongToken_abcdef123456", fast()).unwrap();
    let err = c.list_functions(TARGET).await.unwrap_err();
    assert_eq!(err.kind, ApiErrorKind::Unauthorized);
    assert_eq!(err.status, Some(401));
    let text = err.to_string();
    assert!(
        text.contains("GET /v1/projects/tgtprojectrefaaaaaaa/functions"),
        "{text}"
    );
    assert!(text.contains("401"), "{text}");
    assert!(text.contains("Unauthorized"), "the API's message: {text}");
    assert!(!text.contains("sbp_WrongToken"), "{text}");
    assert_eq!(api.count("GET", "/functions"), 1, "401 is not retried");
}

#[tokio::test]
async fn not_found_function_is_none_and_unknown_project_is_an_error() {
    let api = FakeApi::start().await;
    let c = client(&api.url());
    assert_eq!(c.get_function(TARGET, "ghost").await.unwrap(), None);
    let err = c.list_functions("nosuchprojectrefxxxx").await.unwrap_err();
    assert_eq!(err.kind, ApiErrorKind::NotFound);
    assert!(err.to_string().contains("Project not found"), "{err}");
}

#[tokio::test]
async fn rate_limit_with_retry_after_is_honoured_then_succeeds() {
    let api = FakeApi::start().await;
    api.fault(
        "GET",
        "/secrets",
        429,
        Some("1"),
        r#"{"message":"Too many requests"}"#,
    );
    let clock = Instant::now();
    let secrets = client(&api.url()).list_secrets(TARGET).await.unwrap();
    let waited = clock.elapsed();
    assert!(secrets.is_empty());
    assert_eq!(api.count("GET", "/secrets"), 2);
    // Retry-After: 1 s, capped at max_delay (80 ms): far above the 2 ms
    // back-off base, so the header decided the wait.
    assert!(waited >= Duration::from_millis(80), "waited {waited:?}");
}

#[tokio::test]
async fn rate_limit_as_an_http_date_is_understood() {
    let api = FakeApi::start().await;
    let soon = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
    api.fault("GET", "/functions", 429, Some(&soon), "{}");
    let clock = Instant::now();
    client(&api.url()).list_functions(TARGET).await.unwrap();
    assert!(clock.elapsed() >= Duration::from_millis(80));
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff_then_succeed() {
    let api = FakeApi::start().await;
    api.fault(
        "GET",
        "/functions",
        500,
        None,
        r#"{"message":"Failed to retrieve project's functions"}"#,
    );
    api.fault("GET", "/functions", 503, None, "upstream unavailable");
    let list = client(&api.url()).list_functions(TARGET).await.unwrap();
    assert!(list.is_empty());
    assert_eq!(api.count("GET", "/functions"), 3);
}

#[tokio::test]
async fn persistent_server_errors_stop_after_bounded_attempts() {
    let api = FakeApi::start().await;
    for _ in 0..10 {
        api.fault(
            "GET",
            "/functions",
            500,
            None,
            r#"{"message":"Failed to retrieve project's functions"}"#,
        );
    }
    let err = client(&api.url()).list_functions(TARGET).await.unwrap_err();
    assert_eq!(err.kind, ApiErrorKind::Server);
    assert_eq!(api.count("GET", "/functions"), 4, "max_attempts");
    let text = err.to_string();
    assert!(text.contains("500"), "{text}");
    assert!(
        text.contains("Failed to retrieve project's functions"),
        "{text}"
    );
    assert!(text.contains("4 attempt"), "{text}");
}

#[tokio::test]
async fn persistent_rate_limit_reports_rate_limited() {
    let api = FakeApi::start().await;
    for _ in 0..10 {
        api.fault(
            "GET",
            "/secrets",
            429,
            None,
            r#"{"message":"Too many requests"}"#,
        );
    }
    let err = client(&api.url()).list_secrets(TARGET).await.unwrap_err();
    assert_eq!(err.kind, ApiErrorKind::RateLimited);
    assert_eq!(api.count("GET", "/secrets"), 4);
}

#[tokio::test]
async fn malformed_json_names_the_endpoint() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/projects/{TARGET}/functions")))
        .respond_with(ResponseTemplate::new(200).set_body_raw("[{\"slug\": ", "application/json"))
        .mount(&server)
        .await;
    let err = client(&server.uri())
        .list_functions(TARGET)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ApiErrorKind::Malformed);
    assert!(err.to_string().contains("GET /v1/projects/"), "{err}");
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        1,
        "not retried"
    );
}

#[tokio::test]
async fn a_timeout_is_retried_then_reported() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([]))
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&server)
        .await;
    let clock = Instant::now();
    let err = client(&server.uri())
        .list_secrets(TARGET)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ApiErrorKind::Network);
    assert!(err.to_string().contains("no answer within"), "{err}");
    assert_eq!(server.received_requests().await.unwrap().len(), 4);
    assert!(
        clock.elapsed() < Duration::from_secs(3),
        "bounded by the per-attempt timeout"
    );
}

#[tokio::test]
async fn a_slow_first_answer_then_a_fast_one_succeeds() {
    let api = FakeApi::start().await;
    api.with(|s| {
        s.faults.push_back(Fault {
            method: "GET".into(),
            path_suffix: "/functions".into(),
            status: 200,
            retry_after: None,
            body: "[]".into(),
            delay: Some(Duration::from_secs(2)),
        })
    });
    client(&api.url()).list_functions(TARGET).await.unwrap();
    assert_eq!(api.count("GET", "/functions"), 2);
}

#[tokio::test]
async fn connection_refused_is_a_network_error() {
    // Bind and drop a listener: the port is free and refuses connections.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = client(&format!("http://127.0.0.1:{port}"))
        .list_functions(TARGET)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ApiErrorKind::Network);
    assert!(err.to_string().contains("cannot connect"), "{err}");
    assert!(!err.to_string().contains(TOKEN));
}

#[tokio::test]
async fn deploy_sends_metadata_and_one_file_part_per_file() {
    let api = FakeApi::start().await;
    let meta = DeployMetadata {
        entrypoint_path: "supabase/functions/hello/index.ts".into(),
        import_map_path: Some("supabase/functions/deno.json".into()),
        static_patterns: vec![],
        verify_jwt: false,
        name: "hello".into(),
    };
    let files = vec![
        UploadFile {
            path: "supabase/functions/hello/index.ts".into(),
            content: b"import '../_shared/cors.ts';".to_vec(),
        },
        UploadFile {
            path: "supabase/functions/_shared/cors.ts".into(),
            content: b"export const x = 1;".to_vec(),
        },
    ];
    let f = client(&api.url())
        .deploy_function(TARGET, "hello", &meta, &files)
        .await
        .unwrap();
    assert_eq!(
        (f.slug.as_str(), f.version, f.status.as_str()),
        ("hello", 1, "ACTIVE")
    );
    let deploys = api.with(|s| s.deploys.clone());
    assert_eq!(deploys.len(), 1);
    let d = &deploys[0];
    assert_eq!(d.slug, "hello");
    assert_eq!(
        d.metadata["entrypoint_path"],
        "supabase/functions/hello/index.ts"
    );
    assert_eq!(
        d.metadata["import_map_path"],
        "supabase/functions/deno.json"
    );
    assert_eq!(d.metadata["verify_jwt"], false);
    assert_eq!(d.metadata["name"], "hello");
    assert_eq!(
        d.files.keys().cloned().collect::<Vec<_>>(),
        [
            "supabase/functions/_shared/cors.ts",
            "supabase/functions/hello/index.ts"
        ]
    );
    assert_eq!(
        d.files["supabase/functions/_shared/cors.ts"],
        "export const x = 1;"
    );
}

#[tokio::test]
async fn deploy_retried_after_429_sends_the_whole_form_again() {
    let api = FakeApi::start().await;
    api.fault(
        "POST",
        "/functions/deploy",
        429,
        Some("0"),
        r#"{"message":"Too many requests"}"#,
    );
    let meta = DeployMetadata {
        entrypoint_path: "f/index.ts".into(),
        import_map_path: None,
        static_patterns: vec![],
        verify_jwt: true,
        name: "f".into(),
    };
    let files = vec![UploadFile {
        path: "f/index.ts".into(),
        content: b"Deno.serve(() => new Response());".to_vec(),
    }];
    let f = client(&api.url())
        .deploy_function(TARGET, "f", &meta, &files)
        .await
        .unwrap();
    assert_eq!(f.version, 1);
    assert_eq!(api.count("POST", "/functions/deploy"), 2);
    let deploys = api.with(|s| s.deploys.clone());
    assert_eq!(
        deploys.len(),
        1,
        "the 429 was answered before the fake recorded it"
    );
    assert_eq!(deploys[0].files.len(), 1);
}

#[tokio::test]
async fn secrets_round_trip_with_digests() {
    let api = FakeApi::start().await;
    let c = client(&api.url());
    c.create_secrets(
        TARGET,
        &[NewSecret {
            name: "OPENAI_API_KEY".into(),
            value: "sk-proj-target-value".into(),
        }],
    )
    .await
    .unwrap();
    let listed = c.list_secrets(TARGET).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(digest_matches(&listed[0].value, "sk-proj-target-value"));
    assert!(!digest_matches(&listed[0].value, "sk-proj-other"));
    let err = c
        .create_secrets(
            TARGET,
            &[NewSecret {
                name: "SUPABASE_URL".into(),
                value: "https://x.supabase.co".into(),
            }],
        )
        .await
        .unwrap_err();
    assert_eq!(err.status, Some(400));
    assert!(err.to_string().contains("SUPABASE_ prefix"), "{err}");
}

#[tokio::test]
async fn api_keys_are_revealed() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/projects/{TARGET}/api-keys")))
        .and(query_param("reveal", "true"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"name": "anon", "api_key": "eyJhbGciOi.anon", "type": "legacy", "id": "anon"},
            {"name": "service_role", "api_key": "eyJhbGciOi.service", "type": "legacy", "id": "service_role"}
        ])))
        .expect(1)
        .mount(&server)
        .await;
    let keys = client(&server.uri()).api_keys(TARGET).await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].api_key.as_deref(), Some("eyJhbGciOi.anon"));
    assert!(
        !format!("{keys:?}").contains("eyJhbGciOi"),
        "Debug hides keys"
    );
}

#[tokio::test]
async fn the_client_paces_itself_under_the_per_minute_limit() {
    let api = FakeApi::start().await;
    let policy = RetryPolicy {
        requests_per_minute: 3,
        ..fast()
    };
    let c = ManagementClient::new(&api.url(), TOKEN, policy).unwrap();
    for _ in 0..3 {
        c.list_functions(TARGET).await.unwrap();
    }
    // The fourth must wait for the window: it does not complete promptly.
    let fourth = tokio::time::timeout(Duration::from_millis(300), c.list_functions(TARGET)).await;
    assert!(
        fourth.is_err(),
        "a fourth request in the same minute waited"
    );
    assert_eq!(api.count("GET", "/functions"), 3);
}
