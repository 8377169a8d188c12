//! A fake Supabase Storage API (`/storage/v1`) of one project, in memory,
//! answering as the Storage REST API does: buckets (`GET /bucket`, `POST
//! /bucket` refusing a duplicate with a 409 `statusCode` in an HTTP 400,
//! `PUT /bucket/{id}`), folder listings (`POST /object/list/{bucket}`: one
//! folder level, folders as entries with `id: null` and `metadata: null`,
//! sorted by name, at most 1,000 entries a page, `offset` paging), downloads
//! and uploads (`x-upsert`), ETags the MD5 of the content in quotes. Errors
//! are `{"statusCode","error","message"}`: 401 for a wrong key, 403 (in an
//! HTTP 400, as the API sends row-level-security refusals) for a key without
//! rights, 404 for a missing bucket or object, and scripted faults (429 with
//! `Retry-After`, 5xx).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use md5::{Digest, Md5};
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Most entries the fake puts in one list page, whatever `limit` asks.
pub const MAX_PAGE: usize = 1000;

/// One stored object.
#[derive(Debug, Clone)]
pub struct Obj {
    /// The bytes.
    pub content: Vec<u8>,
    /// `metadata.mimetype`.
    pub content_type: String,
    /// `metadata.cacheControl`.
    pub cache_control: String,
    /// MD5 of the content, hex (shown in quotes as `eTag`).
    pub etag: String,
}

/// One bucket.
#[derive(Debug, Clone, Default)]
pub struct BucketState {
    /// Readable without a key.
    pub public: bool,
    /// Largest object in bytes.
    pub file_size_limit: Option<u64>,
    /// Allowed MIME types.
    pub allowed_mime_types: Option<Vec<String>>,
    /// Path → object.
    pub objects: BTreeMap<String, Obj>,
}

/// A scripted answer for the next matching request.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Method to match.
    pub method: String,
    /// Text the path must contain, e.g. `/object/list/`.
    pub path_contains: String,
    /// Status to answer.
    pub status: u16,
    /// `Retry-After` header.
    pub retry_after: Option<String>,
}

/// What the fake holds and saw.
#[derive(Debug, Default)]
pub struct State {
    /// Bucket id → bucket.
    pub buckets: BTreeMap<String, BucketState>,
    /// Every request: `METHOD path`.
    pub log: Vec<String>,
    /// Scripted faults, consumed in order when they match.
    pub faults: VecDeque<Fault>,
    /// Uploads received (successful ones).
    pub uploads: usize,
    /// The largest list page answered.
    pub largest_page: usize,
    /// A key the fake knows but that may not do anything (an anon key).
    pub forbidden_key: Option<String>,
}

/// The fake project.
pub struct FakeStorage {
    /// The HTTP server.
    pub server: MockServer,
    /// Its state.
    pub state: Arc<Mutex<State>>,
    /// The service_role key it accepts.
    pub key: String,
}

fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

fn error(http: u16, code: &str, error: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(http)
        .set_body_json(json!({"statusCode": code, "error": error, "message": message}))
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .to_string()
}

struct Responder(Arc<Mutex<State>>, String);

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = self.0.lock().unwrap();
        let raw_path = request.url.path().to_string();
        let method = request.method.to_string();
        state.log.push(format!("{method} {raw_path}"));
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let (auth, apikey) = (header("authorization"), header("apikey"));
        let bearer = auth.strip_prefix("Bearer ").unwrap_or("");
        if state.forbidden_key.as_deref().is_some_and(|k| k == bearer) {
            return error(
                400,
                "403",
                "Unauthorized",
                "new row violates row-level security policy",
            );
        }
        if bearer != self.1 || apikey != self.1 {
            return error(401, "401", "Unauthorized", "Invalid Compact JWS");
        }
        if let Some(i) = state
            .faults
            .iter()
            .position(|f| f.method == method && raw_path.contains(&f.path_contains))
        {
            let f = state.faults.remove(i).unwrap();
            let mut r = error(f.status, &f.status.to_string(), "fault", "scripted failure");
            if let Some(after) = f.retry_after {
                r = r.insert_header("Retry-After", after.as_str());
            }
            return r;
        }
        let Some(rest) = raw_path.strip_prefix("/storage/v1/") else {
            return error(404, "404", "not_found", "Route not found");
        };
        let parts: Vec<String> = rest.split('/').map(decode).collect();
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        match (method.as_str(), parts[0].as_str()) {
            ("GET", "bucket") if parts.len() == 1 => {
                let list: Vec<Value> = state
                    .buckets
                    .iter()
                    .map(|(id, b)| {
                        json!({
                            "id": id, "name": id, "owner": "",
                            "public": b.public,
                            "file_size_limit": b.file_size_limit,
                            "allowed_mime_types": b.allowed_mime_types,
                            "created_at": "2025-01-01T00:00:00.000Z",
                            "updated_at": "2025-01-01T00:00:00.000Z",
                        })
                    })
                    .collect();
                ResponseTemplate::new(200).set_body_json(list)
            }
            ("POST", "bucket") if parts.len() == 1 => {
                let id = body["id"].as_str().or(body["name"].as_str()).unwrap_or("");
                if id.is_empty() {
                    return error(400, "400", "Invalid Input", "body must have id or name");
                }
                if state.buckets.contains_key(id) {
                    return error(400, "409", "Duplicate", "The resource already exists");
                }
                let bucket = bucket_from(&body, BucketState::default());
                state.buckets.insert(id.to_string(), bucket);
                ResponseTemplate::new(200).set_body_json(json!({"name": id}))
            }
            ("PUT", "bucket") if parts.len() == 2 => {
                let Some(old) = state.buckets.get(&parts[1]).cloned() else {
                    return error(400, "404", "Bucket not found", "Bucket not found");
                };
                state
                    .buckets
                    .insert(parts[1].clone(), bucket_from(&body, old));
                ResponseTemplate::new(200).set_body_json(json!({"message": "Successfully updated"}))
            }
            ("POST", "object") if parts.len() >= 3 && parts[1] == "list" => {
                let Some(bucket) = state.buckets.get(&parts[2]) else {
                    return error(400, "404", "Bucket not found", "Bucket not found");
                };
                let mut prefix = body["prefix"].as_str().unwrap_or("").to_string();
                if !prefix.is_empty() && !prefix.ends_with('/') {
                    prefix.push('/');
                }
                let limit = (body["limit"].as_u64().unwrap_or(100) as usize).min(MAX_PAGE);
                let offset = body["offset"].as_u64().unwrap_or(0) as usize;
                let mut folders = BTreeSet::new();
                let mut entries: Vec<(String, Value)> = Vec::new();
                for (path, obj) in &bucket.objects {
                    let Some(rest) = path.strip_prefix(&prefix) else {
                        continue;
                    };
                    match rest.split_once('/') {
                        Some((folder, _)) => {
                            folders.insert(folder.to_string());
                        }
                        None => entries.push((
                            rest.to_string(),
                            json!({
                                "name": rest,
                                "id": format!("id-{}", md5_hex(path.as_bytes())),
                                "updated_at": "2025-01-01T00:00:00.000Z",
                                "created_at": "2025-01-01T00:00:00.000Z",
                                "last_accessed_at": "2025-01-01T00:00:00.000Z",
                                "metadata": {
                                    "eTag": format!("\"{}\"", obj.etag),
                                    "size": obj.content.len(),
                                    "mimetype": obj.content_type,
                                    "cacheControl": obj.cache_control,
                                    "lastModified": "2025-01-01T00:00:00.000Z",
                                    "contentLength": obj.content.len(),
                                    "httpStatusCode": 200,
                                },
                            }),
                        )),
                    }
                }
                for folder in folders {
                    entries.push((
                        folder.clone(),
                        json!({
                            "name": folder, "id": null, "updated_at": null,
                            "created_at": null, "last_accessed_at": null, "metadata": null,
                        }),
                    ));
                }
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                let page: Vec<Value> = entries
                    .into_iter()
                    .skip(offset)
                    .take(limit)
                    .map(|(_, v)| v)
                    .collect();
                state.largest_page = state.largest_page.max(page.len());
                ResponseTemplate::new(200).set_body_json(page)
            }
            ("GET", "object") if parts.len() >= 3 => {
                let path = parts[2..].join("/");
                let Some(obj) = state
                    .buckets
                    .get(&parts[1])
                    .and_then(|b| b.objects.get(&path))
                else {
                    return error(404, "404", "not_found", "Object not found");
                };
                ResponseTemplate::new(200)
                    .set_body_raw(obj.content.clone(), &obj.content_type)
                    .insert_header("cache-control", obj.cache_control.as_str())
                    .insert_header("etag", format!("\"{}\"", obj.etag).as_str())
            }
            ("POST", "object") if parts.len() >= 3 => {
                let path = parts[2..].join("/");
                let upsert = header("x-upsert") == "true";
                let content_type = match header("content-type") {
                    t if t.is_empty() => "text/plain;charset=UTF-8".to_string(),
                    t => t,
                };
                let cache_control = match header("cache-control") {
                    c if c.is_empty() => "no-cache".to_string(),
                    c => c,
                };
                let Some(bucket) = state.buckets.get_mut(&parts[1]) else {
                    return error(400, "404", "Bucket not found", "Bucket not found");
                };
                if bucket.objects.contains_key(&path) && !upsert {
                    return error(400, "409", "Duplicate", "The resource already exists");
                }
                let content = request.body.clone();
                bucket.objects.insert(
                    path.clone(),
                    Obj {
                        etag: md5_hex(&content),
                        content,
                        content_type,
                        cache_control,
                    },
                );
                state.uploads += 1;
                ResponseTemplate::new(200).set_body_json(json!({
                    "Key": format!("{}/{path}", parts[1]),
                    "Id": format!("id-{}", md5_hex(path.as_bytes())),
                }))
            }
            _ => error(404, "404", "not_found", "Route not found"),
        }
    }
}

fn bucket_from(body: &Value, old: BucketState) -> BucketState {
    BucketState {
        public: body["public"].as_bool().unwrap_or(old.public),
        file_size_limit: if body.get("file_size_limit").is_some() {
            body["file_size_limit"].as_u64()
        } else {
            old.file_size_limit
        },
        allowed_mime_types: if body.get("allowed_mime_types").is_some() {
            body["allowed_mime_types"].as_array().map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
        } else {
            old.allowed_mime_types
        },
        objects: old.objects,
    }
}

impl FakeStorage {
    /// Starts a project accepting `key` as its service_role key.
    pub async fn start(key: &str) -> FakeStorage {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State::default()));
        Mock::given(wiremock::matchers::any())
            .respond_with(Responder(state.clone(), key.to_string()))
            .mount(&server)
            .await;
        FakeStorage {
            server,
            state,
            key: key.to_string(),
        }
    }

    /// The project URL (`https://<ref>.supabase.co` on the platform).
    pub fn url(&self) -> String {
        self.server.uri()
    }

    /// Runs `f` on the state.
    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Adds a bucket.
    pub fn bucket(&self, id: &str, public: bool, limit: Option<u64>, types: Option<&[&str]>) {
        self.with(|s| {
            s.buckets.insert(
                id.into(),
                BucketState {
                    public,
                    file_size_limit: limit,
                    allowed_mime_types: types.map(|t| t.iter().map(|x| x.to_string()).collect()),
                    objects: BTreeMap::new(),
                },
            )
        });
    }

    /// Stores an object.
    pub fn put(&self, bucket: &str, path: &str, content: &[u8], content_type: &str, cache: &str) {
        self.with(|s| {
            s.buckets.get_mut(bucket).expect("bucket").objects.insert(
                path.into(),
                Obj {
                    content: content.to_vec(),
                    content_type: content_type.into(),
                    cache_control: cache.into(),
                    etag: md5_hex(content),
                },
            )
        });
    }

    /// An object, if stored.
    pub fn get(&self, bucket: &str, path: &str) -> Option<Obj> {
        self.with(|s| {
            s.buckets
                .get(bucket)
                .and_then(|b| b.objects.get(path).cloned())
        })
    }

    /// Adds a scripted fault.
    pub fn fault(&self, method: &str, path_contains: &str, status: u16, retry_after: Option<&str>) {
        self.with(|s| {
            s.faults.push_back(Fault {
                method: method.into(),
                path_contains: path_contains.into(),
                status,
                retry_after: retry_after.map(str::to_string),
            })
        });
    }

    /// Requests received whose `METHOD path` line contains `text`.
    pub fn count(&self, text: &str) -> usize {
        self.with(|s| s.log.iter().filter(|l| l.contains(text)).count())
    }
}
