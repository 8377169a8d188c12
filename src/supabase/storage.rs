//! The Supabase Storage API of one project (`<project URL>/storage/v1`):
//! buckets (list, create, update), objects (list a folder page by page,
//! download, upload), and [`copy_object`], which streams one object from a
//! project's download straight into another's upload, with no file and no
//! whole object in memory.
//!
//! Every request sends the project's service_role key as
//! `Authorization: Bearer <key>` and `apikey: <key>`. Retries are
//! [`crate::http`]'s, with the Management API client's [`RetryPolicy`]: 429
//! and 5xx (honouring `Retry-After`), timeouts and connection errors back off
//! with jitter, within a bounded number of attempts and total time. The
//! Storage API has no per-minute budget like the Management API's, so
//! requests are not paced.
//! Errors name the side, the endpoint, the status and the API's own message
//! (`{"statusCode":"404","error":"not_found","message":"Object not found"}`);
//! the key is never part of them.

use std::time::Duration;

use futures_util::TryStreamExt;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::{ApiErrorKind, RetryPolicy};
use crate::http::{self, Api as _, BodyError, Failure, segments as encode_path};
use crate::redact::SecretText;

/// Most entries one `POST /object/list` page holds.
pub const PAGE_LIMIT: usize = 1000;

/// A bucket as `GET /bucket` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Its id (what object paths and URLs use).
    pub id: String,
    /// Its name (equal to the id for buckets made by the dashboard or the CLI).
    pub name: String,
    /// Objects readable without a key.
    #[serde(default)]
    pub public: bool,
    /// Largest object in bytes, `None` for the project's global limit.
    #[serde(default)]
    pub file_size_limit: Option<u64>,
    /// MIME types uploads may have, `None` for any.
    #[serde(default)]
    pub allowed_mime_types: Option<Vec<String>>,
}

impl Bucket {
    /// Whether `other` has the same settings (public, size limit, MIME types).
    pub fn same_settings(&self, other: &Bucket) -> bool {
        let types = |b: &Bucket| {
            let mut t = b.allowed_mime_types.clone().unwrap_or_default();
            t.sort();
            t
        };
        self.public == other.public
            && self.file_size_limit == other.file_size_limit
            && types(self) == types(other)
    }
}

/// One object, found by listing its bucket recursively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// Full path in the bucket, e.g. `folder/sub/file.pdf`.
    pub path: String,
    /// Size in bytes (`metadata.size`).
    pub size: u64,
    /// `metadata.eTag` without quotes (the MD5 of the content for objects
    /// uploaded in one request).
    pub etag: Option<String>,
    /// `metadata.mimetype`.
    pub content_type: Option<String>,
    /// `metadata.cacheControl`, e.g. `max-age=3600`.
    pub cache_control: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ListEntry {
    name: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    metadata: Option<EntryMetadata>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntryMetadata {
    #[serde(default)]
    e_tag: Option<String>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    content_length: Option<u64>,
    #[serde(default)]
    mimetype: Option<String>,
    #[serde(default)]
    cache_control: Option<String>,
}

/// A failed Storage API call. Its text never holds the key.
#[derive(Debug, Clone, thiserror::Error)]
#[error("Supabase Storage API of the {side} ({endpoint}): {message}")]
pub struct StorageError {
    /// `source` or `target`.
    pub side: &'static str,
    /// Method and path, e.g. `POST /object/list/avatars`.
    pub endpoint: String,
    /// The status the API meant: the body's `statusCode` when it has one
    /// (the API answers some 404s and 409s with HTTP 400), else the HTTP status.
    pub status: Option<u16>,
    /// The class of failure.
    pub kind: ApiErrorKind,
    /// Status, the API's message, attempts made.
    pub message: String,
}

/// The Storage API of one project, with its service_role key (a
/// [`SecretText`]: `Debug` shows a mask).
#[derive(Clone, Debug)]
pub struct StorageClient {
    http: reqwest::Client,
    base: String,
    key: SecretText,
    side: &'static str,
    policy: RetryPolicy,
}

/// The Storage API base for a project URL: `https://<ref>.supabase.co` →
/// `https://<ref>.supabase.co/storage/v1` (a URL already ending in
/// `/storage/v1` is kept).
pub fn storage_base(project_url: &str) -> String {
    let url = project_url.trim().trim_end_matches('/');
    if url.ends_with("/storage/v1") {
        url.to_string()
    } else {
        format!("{url}/storage/v1")
    }
}

impl StorageClient {
    /// A client for the project at `project_url` (`https://<ref>.supabase.co`
    /// or its `/storage/v1`), `side` naming it in errors.
    pub fn new(
        side: &'static str,
        project_url: &str,
        key: SecretText,
        policy: RetryPolicy,
    ) -> Result<Self, StorageError> {
        let http = http::client_builder(Duration::from_secs(10))
            .build()
            .map_err(|e| StorageError {
                side,
                endpoint: "(setup)".into(),
                status: None,
                kind: ApiErrorKind::Network,
                message: e.to_string(),
            })?;
        Ok(Self {
            http,
            base: storage_base(project_url),
            key,
            side,
            policy,
        })
    }

    /// `source` or `target`.
    pub fn side(&self) -> &'static str {
        self.side
    }

    /// The API base, e.g. `https://<ref>.supabase.co/storage/v1`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET /bucket`.
    pub async fn list_buckets(&self) -> Result<Vec<Bucket>, StorageError> {
        let endpoint = "GET /bucket".to_string();
        let response = http::send(self, &endpoint, || {
            self.http.get(format!("{}/bucket", self.base))
        })
        .await?;
        self.decode(&endpoint, response).await
    }

    /// `POST /bucket` with the bucket's id, name and settings; when it
    /// already exists (409, or 400 "already exists"), `PUT /bucket/{id}`
    /// with the settings instead. Returns whether it was created.
    pub async fn create_or_update_bucket(&self, bucket: &Bucket) -> Result<bool, StorageError> {
        let body = serde_json::json!({
            "id": bucket.id,
            "name": bucket.name,
            "public": bucket.public,
            "file_size_limit": bucket.file_size_limit,
            "allowed_mime_types": bucket.allowed_mime_types,
        });
        let endpoint = "POST /bucket".to_string();
        match http::send(self, &endpoint, || {
            self.http.post(format!("{}/bucket", self.base)).json(&body)
        })
        .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.status == Some(409) || e.message.contains("already exists") => {
                self.update_bucket(bucket).await.map(|()| false)
            }
            Err(e) => Err(e),
        }
    }

    /// `PUT /bucket/{id}` with the settings.
    pub async fn update_bucket(&self, bucket: &Bucket) -> Result<(), StorageError> {
        let body = serde_json::json!({
            "public": bucket.public,
            "file_size_limit": bucket.file_size_limit,
            "allowed_mime_types": bucket.allowed_mime_types,
        });
        let id = encode_path(&bucket.id);
        let endpoint = format!("PUT /bucket/{id}");
        http::send(self, &endpoint, || {
            self.http
                .put(format!("{}/bucket/{id}", self.base))
                .json(&body)
        })
        .await
        .map(drop)
    }

    /// Every object of a bucket: `POST /object/list/{bucket}` per folder,
    /// page by page (`limit` 1,000, `offset` on until a short page),
    /// descending into folders (entries without an id or metadata).
    pub async fn list_objects(&self, bucket: &str) -> Result<Vec<StoredObject>, StorageError> {
        let mut objects = Vec::new();
        let mut folders = vec![String::new()];
        let endpoint = format!("POST /object/list/{}", encode_path(bucket));
        let url = format!("{}/object/list/{}", self.base, encode_path(bucket));
        while let Some(prefix) = folders.pop() {
            let mut offset = 0usize;
            loop {
                let body = serde_json::json!({
                    "prefix": prefix,
                    "limit": PAGE_LIMIT,
                    "offset": offset,
                    "sortBy": {"column": "name", "order": "asc"},
                });
                let response =
                    http::send(self, &endpoint, || self.http.post(&url).json(&body)).await?;
                let page: Vec<ListEntry> = self.decode(&endpoint, response).await?;
                let n = page.len();
                for entry in page {
                    let path = format!("{prefix}{}", entry.name);
                    match (entry.id, entry.metadata) {
                        (Some(_), Some(m)) => objects.push(StoredObject {
                            path,
                            size: m.size.or(m.content_length).unwrap_or(0),
                            etag: m.e_tag.map(|t| t.trim_matches('"').to_string()),
                            content_type: m.mimetype,
                            cache_control: m.cache_control,
                        }),
                        (None, _) => folders.push(format!("{path}/")),
                        // An object whose metadata the API has not filled
                        // (an upload in progress): counted with no size.
                        (Some(_), None) => objects.push(StoredObject {
                            path,
                            size: 0,
                            etag: None,
                            content_type: None,
                            cache_control: None,
                        }),
                    }
                }
                if n < PAGE_LIMIT {
                    break;
                }
                offset += n;
            }
        }
        objects.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(objects)
    }

    /// `GET /object/{bucket}/{path}`: the answer, its body not yet read.
    pub async fn download(
        &self,
        bucket: &str,
        path: &str,
    ) -> Result<reqwest::Response, StorageError> {
        let target = format!("{}/{}", encode_path(bucket), encode_path(path));
        let endpoint = format!("GET /object/{target}");
        http::send(self, &endpoint, || {
            self.http.get(format!("{}/object/{target}", self.base))
        })
        .await
    }

    async fn decode<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &str,
        response: reqwest::Response,
    ) -> Result<T, StorageError> {
        let status = response.status().as_u16();
        let (kind, message) = match http::json_body(response).await {
            Ok(value) => return Ok(value),
            Err(BodyError::Unreadable(e)) => (
                ApiErrorKind::Network,
                format!("{status}, but the answer could not be read: {e}"),
            ),
            Err(BodyError::NotJson(e, start)) => (
                ApiErrorKind::Malformed,
                format!(
                    "{status}, but the answer is not the JSON the Storage API documents ({e}): {start}"
                ),
            ),
        };
        Err(StorageError {
            side: self.side,
            endpoint: endpoint.into(),
            status: Some(status),
            kind,
            message: self.scrub(&message),
        })
    }
}

impl http::Api for StorageClient {
    type Error = StorageError;

    fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    fn secret(&self) -> &str {
        self.key.expose()
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request
            .bearer_auth(self.key.expose())
            .header("apikey", self.key.expose())
    }

    fn transport_error(&self, endpoint: &str, e: &reqwest::Error, attempt: u32) -> StorageError {
        StorageError {
            side: self.side,
            endpoint: endpoint.into(),
            status: None,
            kind: ApiErrorKind::Network,
            message: format!(
                "{} ({}) after {attempt} attempt(s)",
                http::transport_problem(e, self.policy.request_timeout),
                self.scrub(&http::error_chain(e))
            ),
        }
    }

    fn status_error(&self, endpoint: &str, answer: http::Answer<'_>) -> StorageError {
        let http::Answer {
            status,
            body,
            attempt,
        } = answer;
        // `{"statusCode":"404","error":"not_found","message":"Object not found"}`
        let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let field = |k: &str| {
            json.as_ref()
                .and_then(|v| v.get(k))
                .and_then(|v| match v {
                    serde_json::Value::String(s) => Some(s.trim().to_string()),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .filter(|s| !s.is_empty())
        };
        let meant: u16 = field("statusCode")
            .and_then(|c| c.parse().ok())
            .filter(|c| (400..600).contains(c))
            .unwrap_or(status.as_u16());
        let api_message = match (field("error"), field("message")) {
            (Some(e), Some(m)) if e != m => format!("{e}: {m}"),
            (_, Some(m)) => m,
            (Some(e), None) => e,
            (None, None) => http::snippet(body),
        };
        let api_message = self.scrub(&api_message);
        let (kind, advice) = match (status.as_u16(), meant) {
            (429, _) => (
                ApiErrorKind::RateLimited,
                format!("rate limited after {attempt} attempt(s)"),
            ),
            (c, _) if c >= 500 => (
                ApiErrorKind::Server,
                format!("server error after {attempt} attempt(s)"),
            ),
            (_, 401) => (
                ApiErrorKind::Unauthorized,
                "the key is not accepted".to_string(),
            ),
            (_, 403) => (
                ApiErrorKind::Forbidden,
                "the key may not do this (is it the service_role key?)".to_string(),
            ),
            (_, 404) => (ApiErrorKind::NotFound, "not found".to_string()),
            _ => (ApiErrorKind::Refused, "refused".to_string()),
        };
        let code = status.as_u16();
        let shown = if meant == code {
            format!("{code} {}", status.canonical_reason().unwrap_or(""))
        } else {
            format!("{code} (statusCode {meant})")
        };
        let message = if api_message.is_empty() {
            format!("{shown}: {advice}")
        } else {
            format!("{shown}: {advice}: {api_message}")
        };
        StorageError {
            side: self.side,
            endpoint: endpoint.into(),
            status: Some(meant),
            kind,
            message,
        }
    }
}

/// Copies one object from `from` to `to` (same bucket id and path), keeping
/// its content type and cache control: the download's body is streamed into
/// the upload (`x-upsert: true`), never written to disk or held whole. A
/// failed attempt (429/5xx, a broken connection on either side) starts over
/// from a new download, within the upload side's retry policy. Returns the
/// bytes sent.
pub async fn copy_object(
    from: &StorageClient,
    to: &StorageClient,
    bucket: &str,
    object: &StoredObject,
) -> Result<u64, StorageError> {
    let target = format!("{}/{}", encode_path(bucket), encode_path(&object.path));
    let endpoint = format!("POST /object/{target}");
    let url = format!("{}/object/{target}", to.base);
    let (endpoint, url) = (endpoint.as_str(), url.as_str());
    http::retry(&to.policy, endpoint, |attempt| async move {
        // A download that fails for good (after its own retries) ends the copy.
        let download = from
            .download(bucket, &object.path)
            .await
            .map_err(Failure::fatal)?;
        let header = |name: reqwest::header::HeaderName| {
            download
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = object
            .content_type
            .clone()
            .or_else(|| header(reqwest::header::CONTENT_TYPE))
            .unwrap_or_else(|| "application/octet-stream".into());
        let cache_control = object
            .cache_control
            .clone()
            .or_else(|| header(reqwest::header::CACHE_CONTROL));
        let length = download.content_length();
        let counted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = counted.clone();
        let stream = download.bytes_stream().inspect_ok(move |chunk| {
            counter.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
        });
        let mut request = to
            .http
            .request(Method::POST, url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header("x-upsert", "true")
            .body(reqwest::Body::wrap_stream(stream));
        if let Some(length) = length {
            request = request.header(reqwest::header::CONTENT_LENGTH, length);
        }
        if let Some(cache) = cache_control {
            request = request.header(reqwest::header::CACHE_CONTROL, cache);
        }
        http::attempt(to, endpoint, request, attempt).await?;
        Ok(counted.load(std::sync::atomic::Ordering::Relaxed))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_and_paths() {
        assert_eq!(
            storage_base("https://abc.supabase.co/"),
            "https://abc.supabase.co/storage/v1"
        );
        assert_eq!(
            storage_base("http://127.0.0.1:9/storage/v1"),
            "http://127.0.0.1:9/storage/v1"
        );
        assert_eq!(encode_path("a b/c#d/é.txt"), "a%20b/c%23d/%C3%A9.txt");
    }

    #[test]
    fn bucket_settings_compare_mime_types_as_sets() {
        let a = Bucket {
            id: "x".into(),
            name: "x".into(),
            public: false,
            file_size_limit: Some(10),
            allowed_mime_types: Some(vec!["image/png".into(), "image/jpeg".into()]),
        };
        let mut b = a.clone();
        b.allowed_mime_types = Some(vec!["image/jpeg".into(), "image/png".into()]);
        assert!(a.same_settings(&b));
        b.public = true;
        assert!(!a.same_settings(&b));
    }

    #[test]
    fn errors_never_hold_the_key() {
        let client = StorageClient::new(
            "target",
            "http://127.0.0.1:1",
            SecretText::new("service-role-key-abcdef"),
            RetryPolicy::default(),
        )
        .unwrap();
        let e = client.status_error(
            "GET /bucket",
            http::Answer {
                status: reqwest::StatusCode::BAD_REQUEST,
                body: br#"{"statusCode":"403","error":"Unauthorized","message":"bad key service-role-key-abcdef"}"#,
                attempt: 1,
            },
        );
        assert_eq!(e.kind, ApiErrorKind::Forbidden);
        assert_eq!(e.status, Some(403));
        assert!(!e.to_string().contains("service-role-key-abcdef"), "{e}");
        assert!(!format!("{client:?}").contains("service-role-key"));
        let e = client.status_error(
            "POST /bucket",
            http::Answer {
                status: reqwest::StatusCode::BAD_REQUEST,
                body: br#"{"statusCode":"409","error":"Duplicate","message":"The resource already exists"}"#,
                attempt: 1,
            },
        );
        assert_eq!(e.status, Some(409));
    }
}
