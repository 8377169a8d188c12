//! JSON over HTTP for the provider clients: bearer token, bounded retries
//! ([`crate::http`]'s) on 429 (honouring a bounded `Retry-After`), 5xx and
//! transport errors, and errors that name the endpoint and never the token.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::FrontendError;
use crate::http::{self, Failure, RetryPolicy};
use crate::redact::SecretText;

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
    token: SecretText,
    client: reqwest::Client,
    /// The input that holds the token, for messages.
    pub token_input: &'static str,
    /// Attempts, back-off (from 500 ms) and the per-request timeout.
    policy: RetryPolicy,
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
        let client = http::client_builder(timeout.min(Duration::from_secs(10)))
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
            token: SecretText::new(token),
            client,
            token_input,
            policy: RetryPolicy {
                max_attempts: ATTEMPTS,
                base_delay: Duration::from_millis(500),
                max_delay: MAX_RETRY_AFTER,
                // Bounded by the attempts: three timeouts and two waits.
                max_total: timeout * ATTEMPTS + MAX_RETRY_AFTER * (ATTEMPTS - 1),
                request_timeout: timeout,
                requests_per_minute: 0,
            },
        })
    }

    fn error(&self, endpoint: &str, status: Option<u16>, message: String) -> FrontendError {
        // A provider could echo the Authorization header in an error body.
        FrontendError {
            provider: self.provider,
            endpoint: endpoint.to_string(),
            status,
            message: http::Api::scrub(self, &message),
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
        let (endpoint, url) = (endpoint.as_str(), url.as_str());
        let response = http::retry(&self.policy, endpoint, |attempt| {
            let mut request = self.client.request(method.clone(), url);
            if let Some(body) = body {
                request = request.json(body);
            }
            async move {
                http::attempt(self, endpoint, request, attempt)
                    .await
                    .map_err(|failure| self.refuse_long_waits(endpoint, failure))
            }
        })
        .await?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| {
            self.error(
                endpoint,
                Some(status.as_u16()),
                format!("the answer is not the JSON the API documents ({e})"),
            )
        })
    }

    /// A rate limit that asks for longer than [`MAX_RETRY_AFTER`] fails at
    /// once instead of waiting.
    fn refuse_long_waits(
        &self,
        endpoint: &str,
        failure: Failure<FrontendError>,
    ) -> Failure<FrontendError> {
        match failure.retry_after {
            Some(wait) if failure.error.status == Some(429) && wait > MAX_RETRY_AFTER => {
                Failure::fatal(self.error(
                    endpoint,
                    Some(429),
                    format!(
                        "rate limited; the API asks to wait {} s, longer than cutover waits: re-run later",
                        wait.as_secs()
                    ),
                ))
            }
            _ => failure,
        }
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

impl http::Api for Api {
    type Error = FrontendError;

    fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    fn secret(&self) -> &str {
        self.token.expose()
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.bearer_auth(self.token.expose())
    }

    fn status_error(&self, endpoint: &str, answer: http::Answer<'_>) -> FrontendError {
        let http::Answer { status, body, .. } = answer;
        let said = provider_message(&String::from_utf8_lossy(body));
        self.error(endpoint, Some(status.as_u16()), self.explain(status, &said))
    }

    fn transport_error(&self, endpoint: &str, e: &reqwest::Error, _attempt: u32) -> FrontendError {
        let what = if e.is_timeout() {
            "no answer in time (timeout)"
        } else if e.is_connect() {
            "cannot connect"
        } else {
            "the request failed"
        };
        self.error(
            endpoint,
            None,
            format!("{what}; check the network and [frontend] api_url"),
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_never_debug_prints_its_token() {
        let api = Api::new(
            "vercel",
            "http://127.0.0.1:1/",
            "vercel-token-abcdef",
            "vercel-token",
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(api.base, "http://127.0.0.1:1");
        assert!(!format!("{api:?}").contains("token-abcdef"));
        let e = api.error("GET /x", None, "echoed vercel-token-abcdef".into());
        assert!(!e.to_string().contains("token-abcdef"), "{e}");
    }
}
