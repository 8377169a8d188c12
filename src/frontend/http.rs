//! JSON over HTTP for the provider clients: bearer token, bounded retries
//! with backoff on 429 (honouring a bounded `Retry-After`), 5xx and transport
//! errors, and errors that name the endpoint and never the token.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::FrontendError;

/// Attempts per request (the first try included).
const ATTEMPTS: u32 = 3;
/// The longest `Retry-After` honoured; a longer one fails the call, because
/// a cutover should not hang on a provider's rate limit.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(20);

/// A provider API: base URL, token, and how it words its errors.
#[derive(Debug, Clone)]
pub struct Api {
    /// `vercel` or `cloudflare-pages`.
    pub provider: &'static str,
    /// Base URL without a trailing slash.
    pub base: String,
    token: String,
    client: reqwest::Client,
    /// The input that holds the token, for messages.
    pub token_input: &'static str,
    /// Base backoff between attempts.
    pub backoff: Duration,
}

impl Api {
    /// A client with `timeout` per request.
    pub fn new(
        provider: &'static str,
        base: &str,
        token: &str,
        token_input: &'static str,
        timeout: Duration,
    ) -> Result<Api, FrontendError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("cutover/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FrontendError {
                provider,
                endpoint: "(setup)".into(),
                status: None,
                message: e.to_string(),
            })?;
        Ok(Api {
            provider,
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            client,
            token_input,
            backoff: Duration::from_millis(500),
        })
    }

    fn error(&self, endpoint: &str, status: Option<u16>, message: String) -> FrontendError {
        // A provider could echo the Authorization header in an error body.
        let message = message.replace(&self.token, crate::redact::MASK);
        FrontendError {
            provider: self.provider,
            endpoint: endpoint.to_string(),
            status,
            message,
        }
    }

    /// Sends a request; `path_and_query` starts with `/`. Returns the JSON
    /// body (`Value::Null` for an empty body).
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Value, FrontendError> {
        let endpoint = format!("{method} {}", path_only(path_and_query));
        let url = format!("{}{path_and_query}", self.base);
        let mut last: Option<FrontendError> = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(self.backoff * 2u32.pow(attempt - 1)).await;
            }
            let mut request = self
                .client
                .request(method.clone(), &url)
                .bearer_auth(&self.token);
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    let what = if e.is_timeout() {
                        "no answer in time (timeout)"
                    } else if e.is_connect() {
                        "cannot connect"
                    } else {
                        "the request failed"
                    };
                    last = Some(self.error(
                        &endpoint,
                        None,
                        format!("{what}; check the network and [frontend] api_url"),
                    ));
                    continue;
                }
            };
            let status = response.status();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let text = response.text().await.unwrap_or_default();
            if status.is_success() {
                if text.trim().is_empty() {
                    return Ok(Value::Null);
                }
                return serde_json::from_str(&text).map_err(|e| {
                    self.error(
                        &endpoint,
                        Some(status.as_u16()),
                        format!("the answer is not the JSON the API documents ({e})"),
                    )
                });
            }
            let err = self.error(
                &endpoint,
                Some(status.as_u16()),
                self.explain(status, &provider_message(&text)),
            );
            if status == StatusCode::TOO_MANY_REQUESTS {
                match retry_after {
                    Some(wait) if wait > MAX_RETRY_AFTER => {
                        return Err(self.error(
                            &endpoint,
                            Some(429),
                            format!(
                                "rate limited; the API asks to wait {} s, longer than cutover waits: re-run later",
                                wait.as_secs()
                            ),
                        ));
                    }
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => {}
                }
                last = Some(err);
                continue;
            }
            if status.is_server_error() {
                last = Some(err);
                continue;
            }
            return Err(err);
        }
        Err(last.unwrap_or_else(|| self.error(&endpoint, None, "no attempt made".into())))
    }

    fn explain(&self, status: StatusCode, provider_message: &str) -> String {
        let code = status.as_u16();
        let said = if provider_message.is_empty() {
            String::new()
        } else {
            format!(" {provider_message}")
        };
        match code {
            401 => format!(
                "401{said}: the token is invalid or expired; set input `{}` from a valid secret",
                self.token_input
            ),
            403 => format!(
                "403{said}: the token may not do this; give it access to the project (and team/account) named in [frontend]"
            ),
            404 => {
                format!("404{said}: not found; check [frontend] project (and team_id / account_id)")
            }
            429 => format!("429{said}: rate limited, retried {ATTEMPTS} times"),
            _ => format!("{code}{said}"),
        }
    }
}

/// The path without the query (query strings carry team ids, never secrets,
/// but keep messages short).
fn path_only(path_and_query: &str) -> &str {
    path_and_query.split('?').next().unwrap_or(path_and_query)
}

/// The provider's own error text: Vercel `{"error": {"message"}}`,
/// Cloudflare `{"errors": [{"message"}]}`.
fn provider_message(body: &str) -> String {
    let Ok(json) = serde_json::from_str::<Value>(body) else {
        return String::new();
    };
    if let Some(m) = json.pointer("/error/message").and_then(Value::as_str) {
        return m.to_string();
    }
    if let Some(errors) = json.get("errors").and_then(Value::as_array) {
        let texts: Vec<&str> = errors
            .iter()
            .filter_map(|e| e.get("message").and_then(Value::as_str))
            .collect();
        return texts.join("; ");
    }
    json.get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}
