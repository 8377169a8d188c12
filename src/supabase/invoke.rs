//! One Edge Function invocation: the request a `[[functions.smoke]]` entry
//! describes, its status and latency, and whether that is what the manifest
//! expects. Used by `functions` (after deploying) and by `smoke`.
//!
//! Header values and the body may hold `${VAR}` references (e.g. an ingest
//! API key); they are expanded here from the lookup the caller passes, and
//! the values never appear in what this module returns.

use std::time::{Duration, Instant};

use crate::manifest::{FunctionSmoke, expand};

/// How long one invocation may take before it counts as failed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The functions base URL of a project: `https://<ref>.supabase.co/functions/v1`.
pub fn default_base_url(project_ref: &str) -> String {
    format!("https://{project_ref}.supabase.co/functions/v1")
}

/// The functions base URL: the manifest's `[functions] base_url` with its
/// `${VAR}`s expanded, else the target project's own. The error lists unset
/// variables.
pub fn base_url(
    configured: Option<&str>,
    target_ref: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Vec<String>> {
    match configured {
        Some(url) => expand(url, lookup),
        None => Ok(default_base_url(target_ref)),
    }
}

/// `<base>/<slug><path>`, e.g. `https://x.supabase.co/functions/v1/sms-ingest`.
pub fn function_url(base: &str, slug: &str, path: Option<&str>) -> String {
    let mut url = format!("{}/{}", base.trim_end_matches('/'), slug);
    if let Some(p) = path.filter(|p| !p.is_empty()) {
        if !p.starts_with('/') && !p.starts_with('?') {
            url.push('/');
        }
        url.push_str(p);
    }
    url
}

/// A ready-to-send invocation (values expanded: do not print it).
#[derive(Clone)]
pub struct Invocation {
    /// HTTP method.
    pub method: reqwest::Method,
    /// Full URL.
    pub url: String,
    /// Headers, values expanded.
    pub headers: Vec<(String, String)>,
    /// Body, expanded.
    pub body: Option<String>,
    /// Timeout of the request.
    pub timeout: Duration,
}

impl std::fmt::Debug for Invocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values may be API keys.
        f.debug_struct("Invocation")
            .field("method", &self.method)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// What the manifest entry needs that is not there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrepareError {
    /// `${VAR}` references that are unset or empty.
    #[error("unset or empty variables: {}", .0.join(", "))]
    MissingVariables(Vec<String>),
    /// Not an HTTP method.
    #[error("method {0:?} is not an HTTP method")]
    BadMethod(String),
}

/// Builds the invocation of `smoke` against functions base URL `base`.
pub fn prepare(
    smoke: &FunctionSmoke,
    base: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Invocation, PrepareError> {
    let method = reqwest::Method::from_bytes(smoke.method.trim().to_ascii_uppercase().as_bytes())
        .map_err(|_| PrepareError::BadMethod(smoke.method.clone()))?;
    let mut missing = Vec::new();
    let mut headers = Vec::new();
    for (name, value) in &smoke.headers {
        match expand(value, &lookup) {
            Ok(v) => headers.push((name.clone(), v)),
            Err(vars) => missing.extend(vars),
        }
    }
    let body = match &smoke.body {
        Some(b) => match expand(b, &lookup) {
            Ok(v) => Some(v),
            Err(vars) => {
                missing.extend(vars);
                None
            }
        },
        None => None,
    };
    if !missing.is_empty() {
        missing.sort();
        missing.dedup();
        return Err(PrepareError::MissingVariables(missing));
    }
    Ok(Invocation {
        method,
        url: function_url(base, &smoke.function, smoke.path.as_deref()),
        headers,
        body,
        timeout: DEFAULT_TIMEOUT,
    })
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationResult {
    /// HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// Time to the response head (or to the failure).
    pub latency: Duration,
    /// Why there was no answer (timeout, connection refused).
    pub error: Option<String>,
}

/// Sends one invocation. Never retries: a smoke test reports what a user
/// would have seen.
pub async fn invoke(http: &reqwest::Client, invocation: &Invocation) -> InvocationResult {
    let mut request = http
        .request(invocation.method.clone(), &invocation.url)
        .timeout(invocation.timeout);
    for (name, value) in &invocation.headers {
        request = request.header(name, value);
    }
    if let Some(body) = &invocation.body {
        request = request.body(body.clone());
    }
    let clock = Instant::now();
    match request.send().await {
        Ok(response) => {
            let latency = clock.elapsed();
            let status = response.status().as_u16();
            // Drain the body so the connection can be reused; its content is
            // not shown (it could echo a header).
            let _ = response.bytes().await;
            InvocationResult {
                status: Some(status),
                latency,
                error: None,
            }
        }
        Err(e) => InvocationResult {
            status: None,
            latency: clock.elapsed(),
            error: Some(if e.is_timeout() {
                format!("no answer within {} s", invocation.timeout.as_secs_f64())
            } else if e.is_connect() {
                "cannot connect".into()
            } else {
                "request failed".into()
            }),
        },
    }
}

/// Whether a result is what `smoke` expects, and the expectation in words.
pub fn judge(smoke: &FunctionSmoke, result: &InvocationResult) -> (bool, String) {
    let Some(status) = result.status else {
        return (false, expectation(smoke));
    };
    let ok = match (smoke.expect_status, smoke.expect_not_status) {
        (Some(want), _) => status == want,
        (None, Some(not)) => status != not,
        // No expectation: anything but a server error.
        (None, None) => status < 500,
    };
    let in_budget = smoke
        .max_latency_ms
        .is_none_or(|budget| result.latency.as_millis() as u64 <= budget);
    (ok && in_budget, expectation(smoke))
}

/// `200`, `not 500`, or `< 500`.
pub fn expectation(smoke: &FunctionSmoke) -> String {
    match (smoke.expect_status, smoke.expect_not_status) {
        (Some(want), _) => want.to_string(),
        (None, Some(not)) => format!("not {not}"),
        (None, None) => "< 500".into(),
    }
}

/// The expectation of a `[[functions.smoke]]` entry, as [`judge`] applies it:
/// its status, anything but its `expect_not_status`, else no server error.
pub fn check_expectation(smoke: &FunctionSmoke) -> crate::http_checks::Expectation {
    use crate::http_checks::Expectation;
    match (smoke.expect_status, smoke.expect_not_status) {
        (Some(want), _) => Expectation::Status(want),
        (None, Some(not)) => Expectation::NotStatus(not),
        (None, None) => Expectation::Below(500),
    }
}

/// A client suited to invocations (no default timeout: each request sets one).
pub fn http_client() -> reqwest::Client {
    crate::http::client_builder(Duration::from_secs(10))
        .build()
        .expect("an HTTP client with static settings builds")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn smoke() -> FunctionSmoke {
        FunctionSmoke {
            name: "n".into(),
            function: "sms-ingest".into(),
            path: None,
            method: "post".into(),
            headers: BTreeMap::from([("x-api-key".to_string(), "${KEY}".to_string())]),
            body: Some("{}".into()),
            expect_status: None,
            expect_not_status: Some(500),
            max_latency_ms: None,
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            function_url(&default_base_url("abcdefghijklmnopqrst"), "f", None),
            "https://abcdefghijklmnopqrst.supabase.co/functions/v1/f"
        );
        assert_eq!(
            function_url("http://h/", "f", Some("health")),
            "http://h/f/health"
        );
        assert_eq!(
            function_url("http://h", "f", Some("?a=1")),
            "http://h/f?a=1"
        );
    }

    #[test]
    fn prepare_expands_and_lists_missing() {
        let s = smoke();
        let err = prepare(&s, "http://h", |_| None).unwrap_err();
        assert_eq!(err, PrepareError::MissingVariables(vec!["KEY".into()]));
        let inv = prepare(&s, "http://h", |_| Some("k-123".into())).unwrap();
        assert_eq!(inv.method, reqwest::Method::POST);
        assert_eq!(inv.headers[0].1, "k-123");
        assert!(!format!("{inv:?}").contains("k-123"));
    }

    #[test]
    fn judging() {
        let mut s = smoke();
        let r = |status| InvocationResult {
            status,
            latency: Duration::ZERO,
            error: None,
        };
        assert!(judge(&s, &r(Some(503))).0);
        assert!(!judge(&s, &r(Some(500))).0);
        assert!(!judge(&s, &r(None)).0);
        s.expect_status = Some(200);
        assert!(judge(&s, &r(Some(200))).0);
        assert!(!judge(&s, &r(Some(201))).0);
    }
}
