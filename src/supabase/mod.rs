//! The Supabase Management API (functions, secrets, api keys, project
//! settings in [`settings`], the analytics endpoints in [`analytics`]),
//! function invocations ([`invoke`]) and the Storage API ([`storage`]).
//!
//! One [`ManagementClient`] per run: `Authorization: Bearer <token>`, base URL
//! from `--supabase-api-url`. The API allows about 60 requests a minute per
//! user and answers 429 past that, so the client paces itself (a rate
//! limiter shared by every client of the same token in the process), honours
//! `Retry-After`, and backs off with jitter on 429, 5xx and connection
//! errors, within a bounded number of attempts and a bounded total time (all
//! of it [`crate::http`]'s). Errors name the endpoint, the status and the
//! API's own message; the token is scrubbed from anything the API echoes back.

pub mod analytics;
pub mod invoke;
pub mod settings;
pub mod storage;

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::http::{self, Api as _, BodyError, Limiter, segment};
use crate::redact::SecretText;

pub use crate::http::RetryPolicy;

/// Whether a string looks like a Supabase project ref (20 lower-case letters).
pub fn looks_like_project_ref(s: &str) -> bool {
    s.len() == 20 && s.bytes().all(|b| b.is_ascii_lowercase())
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
pub struct RootKey(SecretText);

impl std::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootKey(***)")
    }
}

impl RootKey {
    /// The key, for the redactor and the API call only.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// Hex sha-256 of the key, what the ledger and the summary may show.
    pub fn sha256(&self) -> String {
        sha256_hex(self.expose())
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
    token: SecretText,
    policy: RetryPolicy,
    limiter: Option<Arc<Limiter>>,
}

impl std::fmt::Debug for ManagementClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagementClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// `/v1/projects/{ref}` and `rest`, the ref encoded as a path segment.
fn project_path(project: &str, rest: &str) -> String {
    format!("/v1/projects/{}{rest}", segment(project))
}

impl ManagementClient {
    /// A client for `base_url` (e.g. `https://api.supabase.com`) with `token`.
    pub fn new(base_url: &str, token: &str, policy: RetryPolicy) -> Result<Self, ApiError> {
        let http = http::client_builder(Duration::from_secs(10))
            .build()
            .map_err(|e| ApiError {
                endpoint: "(setup)".into(),
                status: None,
                kind: ApiErrorKind::Network,
                message: e.to_string(),
            })?;
        let limiter = http::shared_limiter(base_url, token, policy.requests_per_minute);
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            token: SecretText::new(token),
            policy,
            limiter,
        })
    }

    /// The retry policy in use.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// `GET /v1/projects/{ref}/functions`.
    pub async fn list_functions(&self, project: &str) -> Result<Vec<Function>, ApiError> {
        self.get(project, "/functions").await
    }

    /// `GET /v1/projects/{ref}/functions/{slug}`; `None` on 404.
    pub async fn get_function(
        &self,
        project: &str,
        slug: &str,
    ) -> Result<Option<Function>, ApiError> {
        let path = project_path(project, &format!("/functions/{}", segment(slug)));
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
        let path = project_path(project, "/functions/deploy");
        let endpoint = format!("POST {path}?slug={slug}");
        let meta = serde_json::to_string(metadata).expect("metadata serialises");
        let response = http::send(self, &endpoint, || {
            // A form is consumed by sending, so each attempt builds its own.
            let mut form = reqwest::multipart::Form::new().text("metadata", meta.clone());
            for file in files {
                let part = reqwest::multipart::Part::bytes(file.content.clone())
                    .file_name(file.path.clone())
                    .mime_str(mime_for(&file.path))
                    .expect("static mime types parse");
                form = form.part("file", part);
            }
            self.request(Method::POST, &path)
                .query(&[("slug", slug)])
                .multipart(form)
        })
        .await?;
        self.decode(&endpoint, response).await
    }

    /// `GET /v1/projects/{ref}/functions/{slug}/body`: the bundle the project
    /// serves now (the API keeps no older version), as bytes.
    pub async fn function_body(&self, project: &str, slug: &str) -> Result<Vec<u8>, ApiError> {
        let path = project_path(project, &format!("/functions/{}/body", segment(slug)));
        let endpoint = format!("GET {path}");
        let response = http::send(self, &endpoint, || self.request(Method::GET, &path)).await?;
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
        let path = project_path(project, &format!("/functions/{}", segment(slug)));
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
        let response = http::send(self, &endpoint, || {
            self.request(Method::PATCH, &path)
                .query(&query)
                .header(reqwest::header::CONTENT_TYPE, ESZIP_CONTENT_TYPE)
                .body(body.to_vec())
        })
        .await?;
        self.decode(&endpoint, response).await
    }

    /// `GET /v1/projects/{ref}/pgsodium`: the root key Vault encrypts with.
    pub async fn pgsodium_root_key(&self, project: &str) -> Result<RootKey, ApiError> {
        let path = project_path(project, "/pgsodium");
        let config: PgsodiumConfig = self.json(Method::GET, &path, None::<&()>).await?;
        Ok(RootKey(SecretText::new(config.root_key)))
    }

    /// `PUT /v1/projects/{ref}/pgsodium`: gives the project `key` as its root
    /// key. Whatever the project encrypted with its old key stops decrypting.
    pub async fn set_pgsodium_root_key(
        &self,
        project: &str,
        key: &RootKey,
    ) -> Result<(), ApiError> {
        let path = project_path(project, "/pgsodium");
        let body = PgsodiumConfig {
            root_key: key.expose().to_string(),
        };
        let _: serde_json::Value = self.json(Method::PUT, &path, Some(&body)).await?;
        Ok(())
    }

    /// `GET /v1/projects/{ref}/database/backups`: PITR and the daily backups.
    pub async fn list_backups(&self, project: &str) -> Result<ProjectBackups, ApiError> {
        self.get(project, "/database/backups").await
    }

    /// `GET /v1/projects/{ref}/secrets`: names and digests.
    pub async fn list_secrets(&self, project: &str) -> Result<Vec<Secret>, ApiError> {
        self.get(project, "/secrets").await
    }

    /// `POST /v1/projects/{ref}/secrets`: sets all of them in one call.
    pub async fn create_secrets(
        &self,
        project: &str,
        secrets: &[NewSecret],
    ) -> Result<(), ApiError> {
        let path = project_path(project, "/secrets");
        self.no_content(Method::POST, &path, secrets).await
    }

    /// `DELETE /v1/projects/{ref}/secrets` with the names as body.
    pub async fn delete_secrets(&self, project: &str, names: &[String]) -> Result<(), ApiError> {
        let path = project_path(project, "/secrets");
        self.no_content(Method::DELETE, &path, names).await
    }

    /// `GET /v1/projects/{ref}/api-keys?reveal=true`.
    pub async fn api_keys(&self, project: &str) -> Result<Vec<ApiKey>, ApiError> {
        self.query(
            Method::GET,
            &project_path(project, "/api-keys"),
            &[("reveal", "true")],
            "?reveal=true",
        )
        .await
    }

    /// `GET /v1/projects/{ref}<rest>` as JSON.
    async fn get<T: DeserializeOwned>(&self, project: &str, rest: &str) -> Result<T, ApiError> {
        let path = project_path(project, rest);
        self.json(Method::GET, &path, None::<&()>).await
    }

    /// A request to `path` below the base URL (not yet authorized: [`http::send`] does that).
    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// `method path?query`, its JSON answer; `shown` is the query as the
    /// endpoint in errors shows it (empty for none).
    async fn query<T: DeserializeOwned, Q: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        query: &Q,
        shown: &str,
    ) -> Result<T, ApiError> {
        let endpoint = format!("{method} {path}{shown}");
        let response = http::send(self, &endpoint, || {
            self.request(method.clone(), path).query(query)
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
        let response = http::send(self, &endpoint, || {
            let req = self.request(method.clone(), path);
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
        http::send(self, &endpoint, || {
            self.request(method.clone(), path).json(body)
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
        http::json_body(response).await.map_err(|e| match e {
            BodyError::Unreadable(e) => ApiError {
                endpoint: endpoint.into(),
                status: Some(status),
                kind: ApiErrorKind::Network,
                message: format!("{status}, but the answer could not be read: {e}"),
            },
            BodyError::NotJson(e, start) => ApiError {
                endpoint: endpoint.into(),
                status: Some(status),
                kind: ApiErrorKind::Malformed,
                message: format!(
                    "{status}, but the answer is not the JSON the API documents ({e}): {}",
                    self.scrub(&start)
                ),
            },
        })
    }
}

impl http::Api for ManagementClient {
    type Error = ApiError;

    fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    fn limiter(&self) -> Option<&Limiter> {
        self.limiter.as_deref()
    }

    fn secret(&self) -> &str {
        self.token.expose()
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request
            .bearer_auth(self.token.expose())
            .header("Accept", "application/json")
    }

    fn status_error(&self, endpoint: &str, answer: http::Answer<'_>) -> ApiError {
        let http::Answer {
            status,
            body,
            attempt,
        } = answer;
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

    fn transport_error(&self, endpoint: &str, e: &reqwest::Error, attempt: u32) -> ApiError {
        ApiError {
            endpoint: endpoint.into(),
            status: None,
            kind: ApiErrorKind::Network,
            message: format!(
                "{} ({}) after {attempt} attempt(s); check --supabase-api-url and the network",
                http::transport_problem(e, self.policy.request_timeout),
                self.scrub(&http::error_chain(e))
            ),
        }
    }
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
    http::snippet(body)
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
    fn clients_of_one_token_share_their_limiter() {
        let a = ManagementClient::new("http://api.test/", "tok-a", RetryPolicy::default()).unwrap();
        let b = ManagementClient::new("http://api.test", "tok-a", RetryPolicy::default()).unwrap();
        let c = ManagementClient::new("http://api.test", "tok-b", RetryPolicy::default()).unwrap();
        let limiter = |x: &ManagementClient| x.limiter.clone().unwrap();
        assert!(Arc::ptr_eq(&limiter(&a), &limiter(&b)));
        assert!(!Arc::ptr_eq(&limiter(&a), &limiter(&c)));
    }

    #[test]
    fn secrets_debug_hides_values() {
        let s = NewSecret {
            name: "A".into(),
            value: "hunter2-secret".into(),
        };
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn clients_and_root_keys_never_debug_print_their_secrets() {
        let c = ManagementClient::new(
            "http://api.test",
            "sbp_secret_token_123",
            RetryPolicy::default(),
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("sbp_secret"));
        let key = RootKey(SecretText::new("root-key-material"));
        assert!(!format!("{key:?}").contains("root-key"));
        assert_eq!(key.expose(), "root-key-material");
    }
}
