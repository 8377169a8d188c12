//! The one HTTP layer of the API clients (the Supabase Management and
//! Storage APIs, Vercel and Cloudflare Pages): how a client is built, the
//! retry policy and the retry loop (`backon`), the one `Retry-After` parser,
//! the per-minute rate limiter (`governor`), the one path-segment encoder, and
//! the pieces of text errors are made of.
//!
//! A client plugs in through [`Api`]: it adds its credentials to a request
//! and words its own errors; [`send`] does the rest (pacing, the attempt,
//! the retry decision, the waits). GitHub goes through octocrab, which
//! retries inside its own middleware; `github` only bounds each call with a
//! deadline.

use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use backon::Retryable;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

/// `User-Agent` of every request cutover makes.
pub const USER_AGENT: &str = concat!("cutover/", env!("CARGO_PKG_VERSION"));

/// A client builder with cutover's user agent and `connect_timeout`.
pub fn client_builder(connect_timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(connect_timeout)
}

/// How a client retries and paces itself.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// First back-off delay; doubles per attempt, with full jitter.
    pub base_delay: Duration,
    /// Longest single back-off (and longest `Retry-After` honoured before
    /// trying again).
    pub max_delay: Duration,
    /// Longest time one request may take, all attempts and waits included.
    pub max_total: Duration,
    /// Timeout of one HTTP attempt.
    pub request_timeout: Duration,
    /// Requests sent per minute at most (the Management API's per-user
    /// limit); 0 for no limit.
    pub requests_per_minute: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            max_total: Duration::from_secs(180),
            request_timeout: Duration::from_secs(60),
            requests_per_minute: 60,
        }
    }
}

impl RetryPolicy {
    /// The jittered back-off before attempt `attempt + 1` (attempt counts from 1).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let cap = exp.min(self.max_delay);
        // Full jitter: many clients retrying at once spread out instead of
        // hitting the limit together again.
        let millis = cap.as_millis() as u64;
        if millis == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
    }

    /// The wait before the next attempt: the server's `Retry-After` when it
    /// gave one (capped at `max_delay`, so a wild value cannot stall the
    /// run), else `backoff`.
    pub fn wait(&self, retry_after: Option<Duration>, backoff: Duration) -> Duration {
        match retry_after {
            Some(after) => after.min(self.max_delay),
            None => backoff,
        }
    }

    /// The back-offs between attempts, `max_attempts - 1` of them: what
    /// `backon` sleeps through.
    fn backoffs(&self) -> Backoffs {
        Backoffs {
            policy: self.clone(),
            attempt: 0,
        }
    }
}

/// [`RetryPolicy::backoff`] per attempt, until the attempts are spent.
struct Backoffs {
    policy: RetryPolicy,
    attempt: u32,
}

impl Iterator for Backoffs {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.attempt += 1;
        (self.attempt < self.policy.max_attempts).then(|| self.policy.backoff(self.attempt))
    }
}

/// Whether an answer with this status is worth another attempt: 429 (rate
/// limited) and 5xx (the server's fault). Every other status is final.
pub fn retryable_status(status: u16) -> bool {
    status == 429 || (500..=599).contains(&status)
}

/// The longest `Retry-After` [`parse_retry_after`] returns: a day. Callers
/// cap it further (or refuse to wait that long).
pub const RETRY_AFTER_CEILING: Duration = Duration::from_secs(24 * 3600);

/// A `Retry-After` value as a delay from `now`: delay-seconds (fractions
/// accepted) or an HTTP date; a date in the past is no delay. Capped at
/// [`RETRY_AFTER_CEILING`]; `None` when it is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(RETRY_AFTER_CEILING.as_secs_f64())));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(RETRY_AFTER_CEILING),
    )
}

/// The `Retry-After` header of an answer, as [`parse_retry_after`] reads it.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now())
}

/// A failed attempt, as the retry loop sees it.
#[derive(Debug)]
pub struct Failure<E> {
    /// The error to return if this was the last attempt.
    pub error: E,
    /// Whether another attempt may succeed.
    pub retry: bool,
    /// How long the server asked to wait, if it did.
    pub retry_after: Option<Duration>,
}

impl<E> Failure<E> {
    /// A failure another attempt cannot fix.
    pub fn fatal(error: E) -> Self {
        Self {
            error,
            retry: false,
            retry_after: None,
        }
    }

    /// A failure worth another attempt after the usual back-off.
    pub fn transient(error: E) -> Self {
        Self {
            error,
            retry: true,
            retry_after: None,
        }
    }
}

/// Runs `attempt` (given the attempt number, from 1) until it succeeds, fails
/// for good, the policy's attempts are spent, or the next wait would end past
/// `max_total`; the error of the last attempt otherwise. `what` names the
/// call in the debug log.
pub async fn retry<T, E, F, Fut>(policy: &RetryPolicy, what: &str, mut attempt: F) -> Result<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, Failure<E>>>,
{
    let started = Instant::now();
    let mut made = 0u32;
    let next = || {
        made += 1;
        attempt(made)
    };
    next.retry(policy.backoffs())
        .when(|failure| failure.retry)
        .adjust(|failure, backoff| {
            let wait = policy.wait(failure.retry_after, backoff?);
            (started.elapsed() + wait <= policy.max_total).then_some(wait)
        })
        .notify(|_, wait| tracing::debug!(what, ?wait, "retrying"))
        .await
        .map_err(|failure| failure.error)
}

/// The rate limiter of a per-minute budget.
pub type Limiter = governor::DefaultDirectRateLimiter;

/// The one limiter of every client for the same API and secret in this
/// process (the Management API's limit is per user, so all the phases'
/// clients share it); `None` when `per_minute` is 0. See [`quota`].
pub fn shared_limiter(base_url: &str, secret: &str, per_minute: usize) -> Option<Arc<Limiter>> {
    type Limiters = std::collections::HashMap<(String, String, usize), Arc<Limiter>>;
    static LIMITERS: std::sync::OnceLock<std::sync::Mutex<Limiters>> = std::sync::OnceLock::new();
    let quota = quota(per_minute)?;
    let key = (
        base_url.trim_end_matches('/').to_string(),
        // Kept by digest: the secret itself is held only by the client.
        sha256_hex(secret),
        per_minute,
    );
    let limiter = LIMITERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key)
        .or_insert_with(|| Arc::new(Limiter::direct(quota)))
        .clone();
    Some(limiter)
}

/// The quota of a per-minute budget: the whole budget at once, then one
/// request every `60 / per_minute` seconds. A phase's first minute is never
/// slowed; in the worst case a sliding minute sees twice the budget, and the
/// API's 429 then waits its `Retry-After` (a stricter quota, with a smaller
/// burst, made every run of more than a few calls wait seconds per call).
/// `None` for 0.
pub fn quota(per_minute: usize) -> Option<governor::Quota> {
    let per_minute = NonZeroU32::new(u32::try_from(per_minute).unwrap_or(u32::MAX))?;
    Some(governor::Quota::per_minute(per_minute))
}

fn sha256_hex(value: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// Characters kept as they are in a path segment: letters, digits and
/// `-_.~` (RFC 3986's unreserved); everything else is percent-encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// One path segment, percent-encoded (names are user text: spaces, `/`,
/// `#`, `?`, non-ASCII).
pub fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// A `/`-separated path (a Storage object name), each segment encoded by
/// [`segment`] and the `/`s kept.
pub fn segments(path: &str) -> String {
    path.split('/').map(segment).collect::<Vec<_>>().join("/")
}

/// The first 200 characters of a body, on one line.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = one_line.chars().take(200).collect();
    if one_line.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// An error and its causes on one line (reqwest's Display omits the cause).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

/// `text` with `secret` replaced by the mask (a secret under 4 characters
/// is left: it would blank out ordinary text).
pub fn scrub(text: &str, secret: &str) -> String {
    if secret.len() >= 4 {
        text.replace(secret, crate::redact::MASK)
    } else {
        text.to_string()
    }
}

/// Why a request got no answer, in words: `no answer within N s`,
/// `cannot connect` or `the request failed`.
pub fn transport_problem(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("no answer within {} s", timeout.as_secs_f64())
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "the request failed".to_string()
    }
}

/// What a JSON answer's body came to when it was not the JSON expected.
#[derive(Debug)]
pub enum BodyError {
    /// The body could not be read (the connection broke).
    Unreadable(reqwest::Error),
    /// It is not the JSON expected: the parse error and the body's start.
    NotJson(serde_json::Error, String),
}

/// Reads a 2xx answer's body as JSON of type `T`.
pub async fn json_body<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, BodyError> {
    let bytes = response.bytes().await.map_err(BodyError::Unreadable)?;
    serde_json::from_slice(&bytes).map_err(|e| BodyError::NotJson(e, snippet(&bytes)))
}

/// A non-2xx answer, as [`Api::status_error`] words it.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// Its status.
    pub status: StatusCode,
    /// Its body.
    pub body: &'a [u8],
    /// The attempt it answered, from 1.
    pub attempt: u32,
}

/// An API as [`send`] drives it: its retry policy and limiter, its
/// credentials, and how it words its errors.
pub trait Api {
    /// The client's error.
    type Error;

    /// How it retries.
    fn policy(&self) -> &RetryPolicy;

    /// The per-minute budget it shares, if any.
    fn limiter(&self) -> Option<&Limiter> {
        None
    }

    /// The secret the client sends (a token or key), kept out of its errors.
    fn secret(&self) -> &str;

    /// Adds credentials (and anything else every request carries).
    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder;

    /// `text` (from the server or the HTTP stack) without the secret.
    fn scrub(&self, text: &str) -> String {
        scrub(text, self.secret())
    }

    /// The error of a non-2xx answer.
    fn status_error(&self, endpoint: &str, answer: Answer<'_>) -> Self::Error;

    /// The error of a request that got no answer on attempt `attempt`.
    fn transport_error(&self, endpoint: &str, error: &reqwest::Error, attempt: u32) -> Self::Error;
}

/// One attempt: paced, authorized and sent with the policy's timeout; a 2xx
/// answer, or the failure with the retry decision ([`retryable_status`],
/// `Retry-After`; an unanswered request is worth another attempt).
pub async fn attempt<A: Api>(
    api: &A,
    endpoint: &str,
    request: reqwest::RequestBuilder,
    attempt: u32,
) -> Result<reqwest::Response, Failure<A::Error>> {
    if let Some(limiter) = api.limiter() {
        limiter.until_ready().await;
    }
    let result = api
        .authorize(request)
        .timeout(api.policy().request_timeout)
        .send()
        .await;
    match result {
        Ok(response) if response.status().is_success() => Ok(response),
        Ok(response) => {
            let status = response.status();
            let retry_after = retry_after(response.headers());
            let body = response.bytes().await.unwrap_or_default();
            Err(Failure {
                error: api.status_error(
                    endpoint,
                    Answer {
                        status,
                        body: &body,
                        attempt,
                    },
                ),
                retry: retryable_status(status.as_u16()),
                retry_after,
            })
        }
        Err(e) => Err(Failure::transient(
            api.transport_error(endpoint, &e, attempt),
        )),
    }
}

/// Sends the request `build` makes (once per attempt: a body is consumed by
/// sending) with the API's retries; a 2xx answer or the last attempt's error.
pub async fn send<A: Api>(
    api: &A,
    endpoint: &str,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<reqwest::Response, A::Error> {
    retry(api.policy(), endpoint, |n| {
        attempt(api, endpoint, build(), n)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates_and_caps_them() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("1e300", now),
            Some(RETRY_AFTER_CEILING),
            "capped, not a panic"
        );
        assert_eq!(
            parse_retry_after("999999999", now),
            Some(RETRY_AFTER_CEILING)
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        let far = httpdate::fmt_http_date(now + Duration::from_secs(90 * 24 * 3600));
        assert_eq!(parse_retry_after(&far, now), Some(RETRY_AFTER_CEILING));
        for bad in ["", "-1", "soon", "NaN", "inf"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
    }

    #[test]
    fn only_rate_limits_and_server_errors_are_retried() {
        for status in [429, 500, 502, 503, 504, 599] {
            assert!(retryable_status(status), "{status}");
        }
        for status in [200, 204, 301, 400, 401, 403, 404, 409, 422, 428, 600] {
            assert!(!retryable_status(status), "{status}");
        }
    }

    #[test]
    fn waits_honour_retry_after_within_the_cap() {
        let p = RetryPolicy {
            max_delay: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        let backoff = Duration::from_millis(300);
        assert_eq!(p.wait(None, backoff), backoff);
        assert_eq!(
            p.wait(Some(Duration::from_secs(3)), backoff),
            Duration::from_secs(3)
        );
        assert_eq!(
            p.wait(Some(Duration::from_secs(3600)), backoff),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn backoff_grows_within_bounds() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let first = p.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            assert!(p.backoff(10) <= Duration::from_millis(350));
        }
        assert_eq!(p.backoffs().count(), 5, "max_attempts - 1 waits");
    }

    #[tokio::test]
    async fn the_loop_stops_at_max_attempts_and_on_a_fatal_failure() {
        let policy = RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            ..RetryPolicy::default()
        };
        let mut seen = Vec::new();
        let result: Result<(), u32> = retry(&policy, "test", |n| {
            seen.push(n);
            async move { Err(Failure::transient(n)) }
        })
        .await;
        assert_eq!(result, Err(4));
        assert_eq!(seen, [1, 2, 3, 4]);

        let result: Result<(), u32> =
            retry(&policy, "test", |n| async move { Err(Failure::fatal(n)) }).await;
        assert_eq!(result, Err(1));

        let result = retry(&policy, "test", |n| async move {
            if n < 3 {
                Err(Failure::transient(n))
            } else {
                Ok(n)
            }
        })
        .await;
        assert_eq!(result, Ok(3));
    }

    #[tokio::test]
    async fn the_loop_gives_up_when_the_next_wait_passes_max_total() {
        let policy = RetryPolicy {
            max_attempts: 10,
            max_total: Duration::from_millis(50),
            max_delay: Duration::from_secs(60),
            ..RetryPolicy::default()
        };
        let clock = Instant::now();
        let result: Result<(), u32> = retry(&policy, "test", |n| async move {
            Err(Failure {
                error: n,
                retry: true,
                retry_after: Some(Duration::from_secs(30)),
            })
        })
        .await;
        assert_eq!(result, Err(1), "a 30 s wait does not fit in 50 ms");
        assert!(clock.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn limiters_are_shared_per_api_and_secret() {
        let a = shared_limiter("http://api.test/", "tok-a", 60).unwrap();
        let b = shared_limiter("http://api.test", "tok-a", 60).unwrap();
        let c = shared_limiter("http://api.test", "tok-b", 60).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert!(shared_limiter("http://api.test", "tok-a", 0).is_none());
    }

    #[test]
    fn a_limiter_allows_a_minutes_budget_then_paces() {
        let l = shared_limiter("http://limit.test", "tok", 3).unwrap();
        for _ in 0..3 {
            assert!(l.check().is_ok());
        }
        assert!(l.check().is_err(), "the fourth in the minute waits");
        let q = quota(60).unwrap();
        assert_eq!(q.replenish_interval(), std::time::Duration::from_secs(1));
        assert!(quota(0).is_none());
    }

    #[test]
    fn segments_are_encoded_once() {
        assert_eq!(segment("prod env/eu"), "prod%20env%2Feu");
        assert_eq!(segment("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(segments("a b/c#d/é.txt"), "a%20b/c%23d/%C3%A9.txt");
        assert_eq!(segment("50%"), "50%25");
    }

    #[test]
    fn scrubbing_and_snippets() {
        assert_eq!(
            scrub("token sbp_abcdef here", "sbp_abcdef"),
            format!("token {} here", crate::redact::MASK)
        );
        assert_eq!(scrub("abc", "ab"), "abc");
        assert_eq!(snippet(b"a\n  b"), "a b");
        assert!(snippet("x".repeat(300).as_bytes()).ends_with('…'));
    }
}
