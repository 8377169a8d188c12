//! The Supabase Management API (functions, secrets, api keys, project
//! settings in [`settings`], the analytics endpoints in [`analytics`]),
//! function invocations ([`invoke`]) and the Storage API ([`storage`]).
//!
//! One [`ManagementClient`] per run: `Authorization: Bearer <token>`, base URL
//! from `--supabase-api-url`. The API allows about 60 requests a minute per
//! user and answers 429 past that, so the client paces itself (a sliding
//! one-minute window, shared by every client of the same token in the
//! process), honours `Retry-After`, and backs off with jitter on
//! 429, 5xx and connection errors, within a bounded number of attempts and a
//! bounded total time. Errors name the endpoint, the status and the API's own
//! message; the token is scrubbed from anything the API echoes back.

pub mod analytics;
pub mod invoke;
pub mod settings;
pub mod storage;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

/// Whether a string looks like a Supabase project ref (20 lower-case letters).
pub fn looks_like_project_ref(s: &str) -> bool {
    s.len() == 20 && s.bytes().all(|b| b.is_ascii_lowercase())
}

/// How the client retries and paces itself.
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
    /// Requests sent per sliding minute at most (the API's per-user limit).
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
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
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
}

/// What went wrong with a Management API call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// 401: the token is missing, invalid or expired.
    Unauthorized,
    /// 403: the token may not do this on this project.
    Forbidden,
    /// 404: no such project or function.
    NotFound,
    /// 429 after every retry.
    RateLimited,
    /// Another 4xx: the request was refused.
    Refused,
    /// 5xx after every retry.
    Server,
    /// No answer (connection refused, timeout) after every retry.
    Network,
    /// An answer that is not the JSON the spec describes.
    Malformed,
}

/// A failed Management API call. Its text never holds the token.
#[derive(Debug, Clone, thiserror::Error)]
#[error("Supabase Management API {endpoint}: {message}")]
pub struct ApiError {
    /// Method and path, e.g. `GET /v1/projects/abc/functions`.
    pub endpoint: String,
    /// HTTP status of the last answer, when there was one.
    pub status: Option<u16>,
    /// The class of failure.
    pub kind: ApiErrorKind,
    /// Status, the API's message, attempts made.
    pub message: String,
}

/// A deployed function, as `GET /v1/projects/{ref}/functions` lists it
/// (`FunctionResponse` in the spec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Function {
    /// Its id.
    pub id: String,
    /// The slug (URL path segment).
    pub slug: String,
    /// Display name.
    pub name: String,
    /// `ACTIVE`, `REMOVED` or `THROTTLED`.
    pub status: String,
    /// Deployed version, incremented per deploy.
    pub version: i64,
    /// Milliseconds since the epoch.
    #[serde(default)]
    pub created_at: Option<i64>,
    /// Milliseconds since the epoch.
    #[serde(default)]
    pub updated_at: Option<i64>,
    /// Whether the gateway requires a valid JWT.
    #[serde(default)]
    pub verify_jwt: Option<bool>,
    /// Whether an import map was used.
    #[serde(default)]
    pub import_map: Option<bool>,
    /// The entrypoint the platform runs.
    #[serde(default)]
    pub entrypoint_path: Option<String>,
    /// The import map the platform uses.
    #[serde(default)]
    pub import_map_path: Option<String>,
}

/// The `metadata` part of a deploy (`FunctionDeployBody.metadata`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployMetadata {
    /// Path of the entrypoint among the uploaded files.
    pub entrypoint_path: String,
    /// Path of the import map among the uploaded files.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub import_map_path: Option<String>,
    /// Globs of static files shipped with the function.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub static_patterns: Vec<String>,
    /// Whether the gateway requires a valid JWT.
    pub verify_jwt: bool,
    /// Display name (the slug, as the Supabase CLI sends).
    pub name: String,
}

/// `PgsodiumConfigResponse` / `UpdatePgsodiumConfigBody`.
#[derive(Serialize, Deserialize)]
struct PgsodiumConfig {
    root_key: String,
}

/// A project's Vault root key: it never prints (`Debug` shows a mask), and
/// callers compare keys by [`RootKey::sha256`] and register
/// [`RootKey::expose`] with the redactor before anything can print.
#[derive(Clone, PartialEq, Eq)]
pub struct RootKey(String);

impl std::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootKey(***)")
    }
}

impl RootKey {
    /// The key, for the redactor and the API call only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Hex sha-256 of the key, what the ledger and the summary may show.
    pub fn sha256(&self) -> String {
        sha256_hex(&self.0)
    }
}

/// The media type of a function bundle in `PATCH /functions/{slug}`.
pub const ESZIP_CONTENT_TYPE: &str = "application/vnd.denoland.eszip";

/// The settings a bundle is redeployed with (query parameters of
/// `PATCH /functions/{slug}`); `None` leaves the platform's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BundleSettings {
    /// Whether the gateway requires a valid JWT.
    pub verify_jwt: Option<bool>,
    /// Whether the bundle uses an import map.
    pub import_map: Option<bool>,
    /// The entrypoint inside the bundle.
    pub entrypoint_path: Option<String>,
    /// The import map inside the bundle.
    pub import_map_path: Option<String>,
}

/// One `file` part of a deploy: its path (the part's filename) and content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadFile {
    /// Relative path with `/` separators, e.g. `supabase/functions/_shared/cors.ts`.
    pub path: String,
    /// The bytes.
    pub content: Vec<u8>,
}

/// A project's backups and point-in-time recovery (`V1BackupsResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProjectBackups {
    /// Point-in-time recovery is on (the PITR add-on).
    pub pitr_enabled: bool,
    /// WAL-G archiving is on (it backs PITR and physical backups).
    #[serde(default)]
    pub walg_enabled: bool,
    /// The daily backups, newest last or first as the API lists them.
    #[serde(default)]
    pub backups: Vec<ProjectBackup>,
}

/// One backup of a project.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProjectBackup {
    /// `COMPLETED`, `FAILED`, `PENDING`, `REMOVED`, `ARCHIVED` or `CANCELLED`.
    pub status: String,
    /// When it was taken (ISO 8601).
    pub inserted_at: String,
    /// A physical (WAL-G) backup rather than a logical dump.
    #[serde(default)]
    pub is_physical_backup: bool,
}

impl ProjectBackups {
    /// The newest completed backup's time, if any.
    pub fn latest_completed(&self) -> Option<&str> {
        self.backups
            .iter()
            .filter(|b| b.status == "COMPLETED")
            .map(|b| b.inserted_at.as_str())
            .max()
    }
}

/// A secret as listed (`SecretResponse`): `value` is what the API returns for
/// it, a SHA-256 digest of the value (hex on the live API; see [`digest_matches`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Secret {
    /// Its name.
    pub name: String,
    /// The digest of its value.
    pub value: String,
    /// When it was last set.
    #[serde(default)]
    pub updated_at: Option<String>,
}

/// A secret to set (`CreateSecretBody` item).
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct NewSecret {
    /// Its name (never `SUPABASE_*`: the API refuses those).
    pub name: String,
    /// The value.
    pub value: String,
}

impl std::fmt::Debug for NewSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A Debug print must never carry the value into a log.
        f.debug_struct("NewSecret")
            .field("name", &self.name)
            .field("value", &crate::redact::MASK)
            .finish()
    }
}

/// An API key of a project (`ApiKeyResponse`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct ApiKey {
    /// `anon`, `service_role`, or the key's name.
    pub name: String,
    /// The key itself (with `reveal=true` for new-style secret keys).
    #[serde(default)]
    pub api_key: Option<String>,
    /// `legacy`, `publishable` or `secret`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Its id.
    #[serde(default)]
    pub id: Option<String>,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// The SHA-256 of a value as lower-case hex.
pub fn sha256_hex(value: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// Whether the digest the API returned for a secret is the SHA-256 of `value`.
///
/// The spec types `SecretResponse.value` as a plain string; the live API puts
/// the SHA-256 of the value there as 64 hex digits. Base64 (standard or URL
/// alphabet, padded or not) is accepted too, and a value returned in clear
/// (older API versions) is compared as is.
pub fn digest_matches(returned: &str, value: &str) -> bool {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let ours: [u8; 32] = Sha256::digest(value.as_bytes()).into();
    let returned = returned.trim();
    if returned.len() == 64 {
        if let Ok(bytes) = hex::decode(returned) {
            return bytes == ours;
        }
    }
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    if (43..=44).contains(&returned.len()) {
        for engine in engines {
            if let Ok(bytes) = engine.decode(returned) {
                if bytes.len() == 32 {
                    return bytes == ours;
                }
            }
        }
    }
    returned == value
}

/// A Management API client for one token.
#[derive(Clone)]
pub struct ManagementClient {
    http: reqwest::Client,
    base: String,
    token: String,
    policy: RetryPolicy,
    window: Arc<Mutex<VecDeque<Instant>>>,
}

impl std::fmt::Debug for ManagementClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagementClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl ManagementClient {
    /// A client for `base_url` (e.g. `https://api.supabase.com`) with `token`.
    pub fn new(base_url: &str, token: &str, policy: RetryPolicy) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("cutover/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ApiError {
                endpoint: "(setup)".into(),
                status: None,
                kind: ApiErrorKind::Network,
                message: e.to_string(),
            })?;
        let window = shared_window(base_url, token, policy.requests_per_minute);
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            policy,
            window,
        })
    }

    /// The retry policy in use.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// `GET /v1/projects/{ref}/functions`.
    pub async fn list_functions(&self, project: &str) -> Result<Vec<Function>, ApiError> {
        let path = format!("/v1/projects/{project}/functions");
        self.json(Method::GET, &path, None::<&()>).await
    }

    /// `GET /v1/projects/{ref}/functions/{slug}`; `None` on 404.
    pub async fn get_function(
        &self,
        project: &str,
        slug: &str,
    ) -> Result<Option<Function>, ApiError> {
        let path = format!("/v1/projects/{project}/functions/{slug}");
        match self.json(Method::GET, &path, None::<&()>).await {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind == ApiErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /v1/projects/{ref}/functions/deploy?slug=`: a `metadata` part
    /// and one `file` part per file, as the Supabase CLI uploads them.
    pub async fn deploy_function(
        &self,
        project: &str,
        slug: &str,
        metadata: &DeployMetadata,
        files: &[UploadFile],
    ) -> Result<Function, ApiError> {
        let path = format!("/v1/projects/{project}/functions/deploy");
        let endpoint = format!("POST {path}?slug={slug}");
        let meta = serde_json::to_string(metadata).expect("metadata serialises");
        let response = self
            .send(&endpoint, || {
                // A form is consumed by sending, so each attempt builds its own.
                let mut form = reqwest::multipart::Form::new().text("metadata", meta.clone());
                for file in files {
                    let part = reqwest::multipart::Part::bytes(file.content.clone())
                        .file_name(file.path.clone())
                        .mime_str(mime_for(&file.path))
                        .expect("static mime types parse");
                    form = form.part("file", part);
                }
                self.http
                    .post(format!("{}{path}", self.base))
                    .query(&[("slug", slug)])
                    .multipart(form)
            })
            .await?;
        self.decode(&endpoint, response).await
    }

    /// `GET /v1/projects/{ref}/functions/{slug}/body`: the bundle the project
    /// serves now (the API keeps no older version), as bytes.
    pub async fn function_body(&self, project: &str, slug: &str) -> Result<Vec<u8>, ApiError> {
        let path = format!("/v1/projects/{project}/functions/{slug}/body");
        let endpoint = format!("GET {path}");
        let response = self
            .send(&endpoint, || self.http.get(format!("{}{path}", self.base)))
            .await?;
        let status = response.status().as_u16();
        response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| ApiError {
                endpoint,
                status: Some(status),
                kind: ApiErrorKind::Network,
                message: format!("{status}, but the body could not be read: {e}"),
            })
    }

    /// `PATCH /v1/projects/{ref}/functions/{slug}` with a bundle as
    /// `application/vnd.denoland.eszip`: deploys exactly those bytes as the
    /// function's next version, with the settings given.
    pub async fn redeploy_function_body(
        &self,
        project: &str,
        slug: &str,
        settings: &BundleSettings,
        body: &[u8],
    ) -> Result<Function, ApiError> {
        let path = format!("/v1/projects/{project}/functions/{slug}");
        let endpoint = format!("PATCH {path}");
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(v) = settings.verify_jwt {
            query.push(("verify_jwt", v.to_string()));
        }
        if let Some(v) = settings.import_map {
            query.push(("import_map", v.to_string()));
        }
        if let Some(v) = &settings.entrypoint_path {
            query.push(("entrypoint_path", v.clone()));
        }
        if let Some(v) = &settings.import_map_path {
            query.push(("import_map_path", v.clone()));
        }
        let response = self
            .send(&endpoint, || {
                self.http
                    .patch(format!("{}{path}", self.base))
                    .query(&query)
                    .header(reqwest::header::CONTENT_TYPE, ESZIP_CONTENT_TYPE)
                    .body(body.to_vec())
            })
            .await?;
        self.decode(&endpoint, response).await
    }

    /// `GET /v1/projects/{ref}/pgsodium`: the root key Vault encrypts with.
    pub async fn pgsodium_root_key(&self, project: &str) -> Result<RootKey, ApiError> {
        let path = format!("/v1/projects/{project}/pgsodium");
        let config: PgsodiumConfig = self.json(Method::GET, &path, None::<&()>).await?;
        Ok(RootKey(config.root_key))
    }

    /// `PUT /v1/projects/{ref}/pgsodium`: gives the project `key` as its root
    /// key. Whatever the project encrypted with its old key stops decrypting.
    pub async fn set_pgsodium_root_key(
        &self,
        project: &str,
        key: &RootKey,
    ) -> Result<(), ApiError> {
        let path = format!("/v1/projects/{project}/pgsodium");
        let body = PgsodiumConfig {
            root_key: key.0.clone(),
        };
        let _: serde_json::Value = self.json(Method::PUT, &path, Some(&body)).await?;
        Ok(())
    }

    /// `GET /v1/projects/{ref}/database/backups`: PITR and the daily backups.
    pub async fn list_backups(&self, project: &str) -> Result<ProjectBackups, ApiError> {
        let path = format!("/v1/projects/{project}/database/backups");
        self.json(Method::GET, &path, None::<&()>).await
    }

    /// `GET /v1/projects/{ref}/secrets`: names and digests.
    pub async fn list_secrets(&self, project: &str) -> Result<Vec<Secret>, ApiError> {
        let path = format!("/v1/projects/{project}/secrets");
        self.json(Method::GET, &path, None::<&()>).await
    }

    /// `POST /v1/projects/{ref}/secrets`: sets all of them in one call.
    pub async fn create_secrets(
        &self,
        project: &str,
        secrets: &[NewSecret],
    ) -> Result<(), ApiError> {
        let path = format!("/v1/projects/{project}/secrets");
        self.no_content(Method::POST, &path, secrets).await
    }

    /// `DELETE /v1/projects/{ref}/secrets` with the names as body.
    pub async fn delete_secrets(&self, project: &str, names: &[String]) -> Result<(), ApiError> {
        let path = format!("/v1/projects/{project}/secrets");
        self.no_content(Method::DELETE, &path, names).await
    }

    /// `GET /v1/projects/{ref}/api-keys?reveal=true`.
    pub async fn api_keys(&self, project: &str) -> Result<Vec<ApiKey>, ApiError> {
        let path = format!("/v1/projects/{project}/api-keys");
        let endpoint = format!("GET {path}?reveal=true");
        let response = self
            .send(&endpoint, || {
                self.http
                    .get(format!("{}{path}", self.base))
                    .query(&[("reveal", "true")])
            })
            .await?;
        self.decode(&endpoint, response).await
    }

    async fn json<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ApiError> {
        let endpoint = format!("{method} {path}");
        let response = self
            .send(&endpoint, || {
                let req = self
                    .http
                    .request(method.clone(), format!("{}{path}", self.base));
                match body {
                    Some(b) => req.json(b),
                    None => req,
                }
            })
            .await?;
        self.decode(&endpoint, response).await
    }

    async fn no_content<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<(), ApiError> {
        let endpoint = format!("{method} {path}");
        self.send(&endpoint, || {
            self.http
                .request(method.clone(), format!("{}{path}", self.base))
                .json(body)
        })
        .await
        .map(drop)
    }

    async fn decode<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        response: reqwest::Response,
    ) -> Result<T, ApiError> {
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| ApiError {
            endpoint: endpoint.into(),
            status: Some(status),
            kind: ApiErrorKind::Network,
            message: format!("{status}, but the answer could not be read: {e}"),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError {
            endpoint: endpoint.into(),
            status: Some(status),
            kind: ApiErrorKind::Malformed,
            message: format!(
                "{status}, but the answer is not the JSON the API documents ({e}): {}",
                self.scrub(&snippet(&bytes))
            ),
        })
    }

    /// Waits until one more request fits in the last minute's budget.
    async fn pace(&self) {
        if self.policy.requests_per_minute == 0 {
            return;
        }
        loop {
            let wait = {
                let mut window = self.window.lock().await;
                let now = Instant::now();
                while window
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
                {
                    window.pop_front();
                }
                if window.len() < self.policy.requests_per_minute {
                    window.push_back(now);
                    return;
                }
                Duration::from_secs(60) - now.duration_since(window[0])
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Sends with retries; returns a 2xx answer or the error of the last attempt.
    async fn send(
        &self,
        endpoint: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ApiError> {
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.pace().await;
            let result = build()
                .bearer_auth(&self.token)
                .header("Accept", "application/json")
                .timeout(self.policy.request_timeout)
                .send()
                .await;
            let (error, wait) = match result {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => {
                    let status = response.status();
                    let retry_after = retry_after(&response);
                    let body = response.bytes().await.unwrap_or_default();
                    let error = self.status_error(endpoint, status, &body, attempt);
                    let retryable =
                        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    if !retryable {
                        return Err(error);
                    }
                    let wait = match retry_after {
                        // The server said when: never earlier, capped so a
                        // wild value cannot stall the run.
                        Some(after) => after.min(self.policy.max_delay),
                        None => self.policy.backoff(attempt),
                    };
                    (error, wait)
                }
                Err(e) => {
                    let why = if e.is_timeout() {
                        format!(
                            "no answer within {} s",
                            self.policy.request_timeout.as_secs_f64()
                        )
                    } else if e.is_connect() {
                        "cannot connect".to_string()
                    } else {
                        "the request failed".to_string()
                    };
                    let error = ApiError {
                        endpoint: endpoint.into(),
                        status: None,
                        kind: ApiErrorKind::Network,
                        message: format!(
                            "{why} ({}) after {attempt} attempt(s); check --supabase-api-url and the network",
                            self.scrub(&error_chain(&e))
                        ),
                    };
                    (error, self.policy.backoff(attempt))
                }
            };
            if attempt >= self.policy.max_attempts
                || started.elapsed() + wait > self.policy.max_total
            {
                return Err(error);
            }
            tracing::debug!(endpoint, attempt, ?wait, "retrying Management API call");
            tokio::time::sleep(wait).await;
        }
    }

    fn status_error(
        &self,
        endpoint: &str,
        status: StatusCode,
        body: &[u8],
        attempt: u32,
    ) -> ApiError {
        let api_message = self.scrub(&api_message(body));
        let code = status.as_u16();
        let (kind, advice) = match code {
            401 => (
                ApiErrorKind::Unauthorized,
                "the access token is invalid or expired".to_string(),
            ),
            403 => (
                ApiErrorKind::Forbidden,
                "the access token may not do this on this project".to_string(),
            ),
            404 => (
                ApiErrorKind::NotFound,
                "not found (check the project ref)".to_string(),
            ),
            429 => (
                ApiErrorKind::RateLimited,
                format!("rate limited after {attempt} attempt(s)"),
            ),
            c if c >= 500 => (
                ApiErrorKind::Server,
                format!("server error after {attempt} attempt(s)"),
            ),
            _ => (ApiErrorKind::Refused, "refused".to_string()),
        };
        let reason = status.canonical_reason().unwrap_or("");
        let message = if api_message.is_empty() {
            format!("{code} {reason}: {advice}")
        } else {
            format!("{code} {reason}: {advice}: {api_message}")
        };
        ApiError {
            endpoint: endpoint.into(),
            status: Some(code),
            kind,
            message,
        }
    }

    /// Removes the token from text the server or the HTTP stack produced.
    fn scrub(&self, text: &str) -> String {
        if self.token.len() >= 4 {
            text.replace(&self.token, crate::redact::MASK)
        } else {
            text.to_string()
        }
    }
}

/// The one sliding window of every client for the same API and token in
/// this process: the limit is per user, so the phases' clients (preflight's
/// backups and project settings, functions, secrets, the gate) pace
/// together, not each from zero.
fn shared_window(base_url: &str, token: &str, per_minute: usize) -> Arc<Mutex<VecDeque<Instant>>> {
    type Windows =
        std::collections::HashMap<(String, String, usize), Arc<Mutex<VecDeque<Instant>>>>;
    static WINDOWS: std::sync::OnceLock<std::sync::Mutex<Windows>> = std::sync::OnceLock::new();
    let key = (
        base_url.trim_end_matches('/').to_string(),
        // Kept by digest: the token itself is held only by the client.
        sha256_hex(token),
        per_minute,
    );
    WINDOWS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key)
        .or_default()
        .clone()
}

/// The `Retry-After` header as a delay: seconds, or an HTTP date.
pub(crate) fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The API's own message: `{"message": ...}` (or `error`, `msg`), else the
/// body's first characters.
fn api_message(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        for key in ["message", "error", "msg", "error_description"] {
            if let Some(text) = value.get(key).and_then(|v| v.as_str()) {
                return text.trim().to_string();
            }
        }
    }
    snippet(body)
}

/// The first 200 characters of a body, on one line.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = one_line.chars().take(200).collect();
    if one_line.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// An error and its causes on one line (reqwest's Display omits the cause).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

fn mime_for(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "ts" | "tsx" | "mts" => "application/typescript",
        "js" | "mjs" | "jsx" => "application/javascript",
        "json" | "jsonc" => "application/json",
        "wasm" => "application/wasm",
        "html" => "text/html",
        "txt" | "md" => "text/plain",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_refs() {
        assert!(looks_like_project_ref("wadhydemushqqtcrrlwm"));
        assert!(!looks_like_project_ref("prod"));
    }

    #[test]
    fn digests_in_hex_base64_or_clear() {
        use base64::Engine;
        use sha2::{Digest, Sha256};
        let value = "sk-live-value";
        let raw = Sha256::digest(value.as_bytes());
        let hex = sha256_hex(value);
        assert!(digest_matches(&hex, value));
        assert!(digest_matches(&hex.to_uppercase(), value));
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        assert!(digest_matches(&b64, value));
        let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        assert!(digest_matches(&b64url, value));
        assert!(digest_matches(value, value), "clear text");
        assert!(!digest_matches(&sha256_hex("other"), value));
        assert!(!digest_matches("", value));
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
    }

    #[test]
    fn clients_of_one_token_share_their_pacing_window() {
        let a = ManagementClient::new("http://api.test/", "tok-a", RetryPolicy::default()).unwrap();
        let b = ManagementClient::new("http://api.test", "tok-a", RetryPolicy::default()).unwrap();
        let c = ManagementClient::new("http://api.test", "tok-b", RetryPolicy::default()).unwrap();
        assert!(Arc::ptr_eq(&a.window, &b.window));
        assert!(!Arc::ptr_eq(&a.window, &c.window));
    }

    #[test]
    fn secrets_debug_hides_values() {
        let s = NewSecret {
            name: "A".into(),
            value: "hunter2-secret".into(),
        };
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
