//! HTTP checks: one request, its expected status and a latency budget.
//!
//! Used by `smoke` (and by `cutover`, which runs the smoke checks) for the
//! frontend's routes and for Edge Function invocations alike. A check never
//! fails with an error: every outcome (refused connection, timeout, wrong
//! status, too slow) is a result with a reason, so the summary can show each
//! row. Header values are expected to be registered with the redactor by the
//! caller; nothing here prints them.

use std::time::{Duration, Instant};

/// What the answer's status must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expectation {
    /// Exactly this status.
    Status(u16),
    /// Anything but this status (e.g. not 500).
    NotStatus(u16),
    /// Any status below this one (`< 500`: no server error).
    Below(u16),
}

impl std::fmt::Display for Expectation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expectation::Status(s) => write!(f, "{s}"),
            Expectation::NotStatus(s) => write!(f, "not {s}"),
            Expectation::Below(s) => write!(f, "< {s}"),
        }
    }
}

/// One request to make.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpCheck {
    /// What it proves, shown in the summary.
    pub name: String,
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// Full URL.
    pub url: String,
    /// Headers, values already expanded.
    pub headers: Vec<(String, String)>,
    /// Request body.
    pub body: Option<String>,
    /// The status expected.
    pub expect: Expectation,
    /// Latency budget in milliseconds.
    pub max_latency_ms: Option<u64>,
}

/// How a check came out.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpCheckResult {
    /// The answer's status, when there was one.
    pub status: Option<u16>,
    /// Time to the full answer, in milliseconds.
    pub latency_ms: u64,
    /// Whether status and latency are as expected.
    pub passed: bool,
    /// Why it failed.
    pub problem: Option<String>,
}

/// A client for checks: `timeout` per request, redirects followed (a route
/// that redirects to the login page answers what a browser would see).
pub fn client(timeout: Duration) -> reqwest::Client {
    crate::http::client_builder(timeout.min(Duration::from_secs(10)))
        .timeout(timeout)
        .user_agent(concat!("cutover/", env!("CARGO_PKG_VERSION"), " smoke"))
        .build()
        .expect("a TLS backend is compiled in")
}

/// Runs one check.
pub async fn run(client: &reqwest::Client, check: &HttpCheck) -> HttpCheckResult {
    let started = Instant::now();
    let method = match reqwest::Method::from_bytes(check.method.to_ascii_uppercase().as_bytes()) {
        Ok(m) => m,
        Err(_) => {
            return HttpCheckResult {
                status: None,
                latency_ms: 0,
                passed: false,
                problem: Some(format!("{:?} is not an HTTP method", check.method)),
            };
        }
    };
    let mut request = client.request(method, &check.url);
    for (name, value) in &check.headers {
        request = request.header(name, value);
    }
    if let Some(body) = &check.body {
        request = request.body(body.clone());
    }
    let answer = match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            // The latency a user sees includes the body.
            let _ = response.bytes().await;
            Ok(status)
        }
        Err(e) => Err(describe(&e)),
    };
    let latency_ms = started.elapsed().as_millis() as u64;
    match answer {
        Err(problem) => HttpCheckResult {
            status: None,
            latency_ms,
            passed: false,
            problem: Some(problem),
        },
        Ok(status) => {
            let status_ok = match check.expect {
                Expectation::Status(s) => status == s,
                Expectation::NotStatus(s) => status != s,
                Expectation::Below(s) => status < s,
            };
            let latency_ok = check.max_latency_ms.is_none_or(|max| latency_ms <= max);
            let problem = if !status_ok {
                Some(format!("answered {status}, expected {}", check.expect))
            } else if !latency_ok {
                Some(format!(
                    "took {latency_ms} ms, over the {} ms budget",
                    check.max_latency_ms.unwrap_or_default()
                ))
            } else {
                None
            };
            HttpCheckResult {
                status: Some(status),
                latency_ms,
                passed: problem.is_none(),
                problem,
            }
        }
    }
}

/// A transport error in words, without the URL (its query may carry keys).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer in time (timeout)".into()
    } else if e.is_connect() {
        "connection failed (DNS, refused or TLS)".into()
    } else if e.is_redirect() {
        "too many redirects".into()
    } else {
        let mut text = e.to_string();
        if let Some(url) = e.url() {
            text = text.replace(url.as_str(), "<url>");
        }
        format!("request failed: {text}")
    }
}
