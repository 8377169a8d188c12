//! A fake Supabase Management API that answers as
//! `shared/specs/supabase-management-api.json` documents and records what it
//! was sent: functions (list, multipart deploy), secrets (list with SHA-256
//! hex digests, bulk create refusing `SUPABASE_*`), the analytics endpoints
//! `monitor` reads (logs under both names, `functions.combined-stats`, with
//! scripted figures per poll), and scripted faults (429 with or without
//! `Retry-After`, 5xx, malformed JSON, slow answers).

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// A project ref the fake knows as the target.
pub const TARGET: &str = "tgtprojectrefaaaaaaa";
/// A project ref the fake knows as the source.
pub const SOURCE: &str = "srcprojectrefbbbbbbb";
/// The only token the fake accepts.
pub const TOKEN: &str = "sbp_FakeManagementToken0123456789abcdef";

/// One multipart part.
#[derive(Debug, Clone)]
pub struct Part {
    /// Form field name.
    pub name: String,
    /// Filename, for file parts.
    pub filename: Option<String>,
    /// Content.
    pub content: Vec<u8>,
}

/// One deploy call as received.
#[derive(Debug, Clone)]
pub struct Deploy {
    /// Project ref.
    pub project: String,
    /// `slug` query parameter.
    pub slug: String,
    /// The `metadata` part, parsed.
    pub metadata: Value,
    /// Filename → content of every `file` part.
    pub files: BTreeMap<String, String>,
}

/// A scripted answer for the next matching request.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Method to match.
    pub method: String,
    /// Path suffix to match, e.g. `/functions` or `/secrets`.
    pub path_suffix: String,
    /// Status to answer.
    pub status: u16,
    /// `Retry-After` header.
    pub retry_after: Option<String>,
    /// Body to answer.
    pub body: String,
    /// Delay before answering.
    pub delay: Option<Duration>,
}

/// What the fake holds.
#[derive(Debug, Default)]
pub struct State {
    /// project → slug → function object.
    pub functions: BTreeMap<String, BTreeMap<String, Value>>,
    /// project → name → value.
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
    /// Deploys received, in order.
    pub deploys: Vec<Deploy>,
    /// Bodies of `POST /secrets` received.
    pub secret_posts: Vec<Value>,
    /// Every request: `METHOD path?query`.
    pub log: Vec<String>,
    /// Scripted faults, consumed in order when they match.
    pub faults: VecDeque<Fault>,
    /// Deploys of these slugs answer 500 (always).
    pub broken_slugs: Vec<String>,
    /// Deploys of these slugs leave the function THROTTLED.
    pub throttled_slugs: Vec<String>,
    /// project → `GET /database/backups` answer (default: PITR off, no backup).
    pub backups: BTreeMap<String, Value>,
    /// (project, slug) → the bundle `GET /functions/{slug}/body` serves: set
    /// by a deploy (a stand-in for the eszip the platform builds: every
    /// file's name and content) or by a `PATCH` with an eszip body.
    pub bodies: BTreeMap<(String, String), Vec<u8>>,
    /// `PATCH /functions/{slug}` calls with an eszip body, in order.
    pub body_patches: Vec<BodyPatch>,
    /// project → Vault root key (`GET`/`PUT /pgsodium`).
    pub root_keys: BTreeMap<String, String>,
    /// project → URL of a database with the Vault-like fixture: a `PUT
    /// /pgsodium` gives it the new key, as the platform's restart would.
    pub root_key_dbs: BTreeMap<String, String>,
    /// `PUT /pgsodium` calls: (project, sha-256 of the key).
    pub root_key_puts: Vec<(String, String)>,
    /// (project, settings path such as `/config/auth`) → the section's
    /// settings; unset sections answer [`default_settings`]. Secret keys are
    /// kept as the API answers them: hex sha-256 digests.
    pub project_settings: BTreeMap<(String, String), Value>,
    /// project → `GET /network-restrictions` answer (default: everyone).
    pub network_restrictions: BTreeMap<String, Value>,
    /// Settings `PATCH` bodies received: (project, path, body), secret
    /// values replaced by their digest.
    pub settings_patches: Vec<(String, String, Value)>,
    /// Analytics: what the logs and function statistics answer.
    pub analytics: Analytics,
}

/// One `PATCH /functions/{slug}` with an eszip body, as received.
#[derive(Debug, Clone)]
pub struct BodyPatch {
    /// Project ref.
    pub project: String,
    /// The slug.
    pub slug: String,
    /// Hex sha-256 of the body received.
    pub sha256: String,
    /// The query string.
    pub query: String,
}

/// Hex sha-256 of bytes.
pub fn sha256_bytes(v: &[u8]) -> String {
    hex::encode(Sha256::digest(v))
}

/// The bundle the fake serves for a multipart deploy.
pub fn bundle_of(files: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = b"ESZIP2-fake".to_vec();
    for (name, content) in files {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(content.as_bytes());
        out.push(0);
    }
    out
}

/// The analytics endpoints' scripted figures.
#[derive(Debug, Default)]
pub struct Analytics {
    /// `/analytics/endpoints/logs` answers 404 (only `logs.all` exists).
    pub logs_missing: bool,
    /// (requests, 5xx) answered by successive logs queries; when used up,
    /// `edge_default`.
    pub edge: VecDeque<(u64, u64)>,
    /// (requests, 5xx) once `edge` is used up.
    pub edge_default: (u64, u64),
    /// function id → 5xx of the bucket each successive stats call adds.
    pub function_5xx: BTreeMap<String, VecDeque<u64>>,
    /// function id → the buckets so far (each call adds one and answers all).
    pub buckets: BTreeMap<String, Vec<Value>>,
    /// Logs queries received: endpoint name and query parameters.
    pub logs_queries: Vec<(String, BTreeMap<String, String>)>,
}

/// The fake server.
pub struct FakeApi {
    /// The HTTP server.
    pub server: MockServer,
    /// Its state.
    pub state: Arc<Mutex<State>>,
}

struct Responder(Arc<Mutex<State>>);

fn sha256_hex(v: &str) -> String {
    hex::encode(Sha256::digest(v.as_bytes()))
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = self.0.lock().unwrap();
        let path = request.url.path().to_string();
        let method = request.method.to_string();
        let query = request
            .url
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        state.log.push(format!("{method} {path}{query}"));
        let auth = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if auth != format!("Bearer {TOKEN}") {
            return ResponseTemplate::new(401).set_body_json(json!({"message": "Unauthorized"}));
        }
        if let Some(i) = state
            .faults
            .iter()
            .position(|f| f.method == method && path.ends_with(&f.path_suffix))
        {
            let f = state.faults.remove(i).unwrap();
            let mut r = ResponseTemplate::new(f.status).set_body_raw(f.body, "application/json");
            if let Some(ra) = f.retry_after {
                r = r.insert_header("Retry-After", ra.as_str());
            }
            if let Some(d) = f.delay {
                r = r.set_delay(d);
            }
            return r;
        }
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        // v1 / projects / {ref} / ...
        if parts.len() < 4 || parts[0] != "v1" || parts[1] != "projects" {
            return ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"}));
        }
        let project = parts[2].to_string();
        if project != TARGET && project != SOURCE {
            return ResponseTemplate::new(404)
                .set_body_json(json!({"message": "Project not found"}));
        }
        if let Some(answer) = project_settings(&mut state, &project, request, &parts[3..]) {
            return answer;
        }
        if let Some(answer) = analytics(&mut state, request, &parts[3..]) {
            return answer;
        }
        match (method.as_str(), &parts[3..]) {
            ("GET", ["functions"]) => {
                let list: Vec<Value> = state
                    .functions
                    .get(&project)
                    .map(|m| m.values().cloned().collect())
                    .unwrap_or_default();
                ResponseTemplate::new(200).set_body_json(list)
            }
            ("GET", ["functions", slug]) => {
                match state.functions.get(&project).and_then(|m| m.get(*slug)) {
                    Some(f) => ResponseTemplate::new(200).set_body_json(f.clone()),
                    None => ResponseTemplate::new(404)
                        .set_body_json(json!({"message": "Function not found"})),
                }
            }
            ("POST", ["functions", "deploy"]) => {
                let slug = request
                    .url
                    .query_pairs()
                    .find(|(k, _)| k == "slug")
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_default();
                let content_type = request
                    .headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let parts = parse_multipart(&content_type, &request.body);
                let metadata: Value = parts
                    .iter()
                    .find(|p| p.name == "metadata")
                    .map(|p| serde_json::from_slice(&p.content).expect("metadata is JSON"))
                    .unwrap_or(Value::Null);
                let files = parts
                    .iter()
                    .filter(|p| p.name == "file")
                    .map(|p| {
                        (
                            p.filename.clone().unwrap_or_default(),
                            String::from_utf8_lossy(&p.content).into_owned(),
                        )
                    })
                    .collect();
                let body = bundle_of(&files);
                state.deploys.push(Deploy {
                    project: project.clone(),
                    slug: slug.clone(),
                    metadata: metadata.clone(),
                    files,
                });
                if state.broken_slugs.contains(&slug) {
                    return ResponseTemplate::new(500)
                        .set_body_json(json!({"message": "Failed to deploy function"}));
                }
                let status = if state.throttled_slugs.contains(&slug) {
                    "THROTTLED"
                } else {
                    "ACTIVE"
                };
                let functions = state.functions.entry(project.clone()).or_default();
                let version = functions
                    .get(&slug)
                    .and_then(|f| f["version"].as_i64())
                    .unwrap_or(0)
                    + 1;
                let f = function_json(
                    &slug,
                    version,
                    status,
                    metadata["verify_jwt"].as_bool().unwrap_or(true),
                    metadata["entrypoint_path"].as_str().unwrap_or(""),
                );
                functions.insert(slug.clone(), f.clone());
                state.bodies.insert((project, slug), body);
                ResponseTemplate::new(201).set_body_json(f)
            }
            ("GET", ["functions", slug, "body"]) => {
                let key = (project.clone(), slug.to_string());
                let deployed = state.functions.get(&project).and_then(|m| m.get(*slug));
                match (state.bodies.get(&key), deployed) {
                    (Some(b), _) => ResponseTemplate::new(200)
                        .set_body_raw(b.clone(), "application/octet-stream"),
                    // Deployed before the fake saw it: a bundle of its own.
                    (None, Some(f)) => ResponseTemplate::new(200).set_body_raw(
                        format!("ESZIP2-fake-initial {slug} v{}", f["version"]).into_bytes(),
                        "application/octet-stream",
                    ),
                    (None, None) => ResponseTemplate::new(404)
                        .set_body_json(json!({"message": "Function not found"})),
                }
            }
            ("PATCH", ["functions", slug]) => {
                let content_type = request
                    .headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if content_type != "application/vnd.denoland.eszip" {
                    return ResponseTemplate::new(400)
                        .set_body_json(json!({"message": "expected an eszip body"}));
                }
                let slug = slug.to_string();
                let Some(existing) = state
                    .functions
                    .get(&project)
                    .and_then(|m| m.get(&slug))
                    .cloned()
                else {
                    return ResponseTemplate::new(404)
                        .set_body_json(json!({"message": "Function not found"}));
                };
                let q = |k: &str| {
                    request
                        .url
                        .query_pairs()
                        .find(|(n, _)| n == k)
                        .map(|(_, v)| v.to_string())
                };
                state.body_patches.push(BodyPatch {
                    project: project.clone(),
                    slug: slug.clone(),
                    sha256: sha256_bytes(&request.body),
                    query: request.url.query().unwrap_or("").to_string(),
                });
                let f = function_json(
                    &slug,
                    existing["version"].as_i64().unwrap_or(0) + 1,
                    "ACTIVE",
                    q("verify_jwt")
                        .map(|v| v == "true")
                        .unwrap_or(existing["verify_jwt"].as_bool().unwrap_or(true)),
                    &q("entrypoint_path").unwrap_or_else(|| {
                        existing["entrypoint_path"]
                            .as_str()
                            .unwrap_or("")
                            .to_string()
                    }),
                );
                state
                    .functions
                    .entry(project.clone())
                    .or_default()
                    .insert(slug.clone(), f.clone());
                state.bodies.insert((project, slug), request.body.clone());
                ResponseTemplate::new(200).set_body_json(f)
            }
            ("GET", ["pgsodium"]) => match state.root_keys.get(&project) {
                Some(k) => ResponseTemplate::new(200).set_body_json(json!({"root_key": k})),
                None => ResponseTemplate::new(500).set_body_json(
                    json!({"message": "Failed to retrieve project's pgsodium config"}),
                ),
            },
            ("PUT", ["pgsodium"]) => {
                let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
                let Some(key) = body["root_key"].as_str().map(str::to_string) else {
                    return ResponseTemplate::new(400)
                        .set_body_json(json!({"message": "root_key must be a string"}));
                };
                if let Some(url) = state.root_key_dbs.get(&project) {
                    let out = std::process::Command::new("psql")
                        .arg(url)
                        .arg("-c")
                        .arg(format!(
                            "update vault_fixture.root_key set key = '{}'",
                            key.replace('\'', "''")
                        ))
                        .output()
                        .expect("psql");
                    assert!(
                        out.status.success(),
                        "{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                state
                    .root_key_puts
                    .push((project.clone(), sha256_hex(&key)));
                state.root_keys.insert(project, key.clone());
                ResponseTemplate::new(200).set_body_json(json!({"root_key": key}))
            }
            ("GET", ["network-restrictions"]) => {
                let answer = state.network_restrictions.get(&project).cloned().unwrap_or_else(|| {
                    json!({"entitlement": "allowed", "status": "applied",
                           "config": {"dbAllowedCidrs": ["0.0.0.0/0"], "dbAllowedCidrsV6": ["::/0"]}})
                });
                ResponseTemplate::new(200).set_body_json(answer)
            }
            ("GET", ["api-keys"]) => {
                let reveal = request
                    .url
                    .query_pairs()
                    .any(|(k, v)| k == "reveal" && v == "true");
                let key = |kind: &str| format!("{kind}-key-of-{project}-0123456789");
                let hidden = |k: String| {
                    if reveal {
                        json!(k)
                    } else {
                        json!(format!("{}...", &k[..6]))
                    }
                };
                ResponseTemplate::new(200).set_body_json(json!([
                    {"name": "anon", "type": "legacy", "id": "anon", "api_key": key("anon")},
                    {"name": "service_role", "type": "legacy", "id": "service_role", "api_key": key("service-role")},
                    {"name": "default", "type": "publishable", "id": "p1", "api_key": key("sb_publishable")},
                    {"name": "default", "type": "secret", "id": "s1", "api_key": hidden(key("sb_secret"))}
                ]))
            }
            ("GET", ["database", "backups"]) => {
                let answer = state.backups.get(&project).cloned().unwrap_or_else(|| {
                    json!({"region": "eu-central-1", "walg_enabled": false, "pitr_enabled": false,
                           "backups": [], "physical_backup_data": {}})
                });
                ResponseTemplate::new(200).set_body_json(answer)
            }
            ("GET", ["secrets"]) => {
                let list: Vec<Value> = state
                    .secrets
                    .get(&project)
                    .map(|m| {
                        m.iter()
                            .map(|(n, v)| {
                                json!({"name": n, "value": sha256_hex(v), "updated_at": "2026-01-07T12:00:00Z"})
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                ResponseTemplate::new(200).set_body_json(list)
            }
            ("POST", ["secrets"]) => {
                let body: Value = match serde_json::from_slice(&request.body) {
                    Ok(b) => b,
                    Err(_) => {
                        return ResponseTemplate::new(400)
                            .set_body_json(json!({"message": "invalid body"}));
                    }
                };
                let items = body.as_array().cloned().unwrap_or_default();
                for item in &items {
                    let name = item["name"].as_str().unwrap_or("");
                    if name.starts_with("SUPABASE_") {
                        return ResponseTemplate::new(400).set_body_json(
                            json!({"message": "Secret name must not start with the SUPABASE_ prefix."}),
                        );
                    }
                }
                state.secret_posts.push(body.clone());
                let secrets = state.secrets.entry(project).or_default();
                for item in items {
                    secrets.insert(
                        item["name"].as_str().unwrap_or("").to_string(),
                        item["value"].as_str().unwrap_or("").to_string(),
                    );
                }
                ResponseTemplate::new(201)
            }
            _ => ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"})),
        }
    }
}

/// The analytics endpoints, as the spec documents them (`AnalyticsResponse`:
/// `{"result": [...], "error": null}`); `None` for any other path.
fn analytics(state: &mut State, request: &Request, rest: &[&str]) -> Option<ResponseTemplate> {
    let ["analytics", "endpoints", name] = rest else {
        return None;
    };
    if request.method.as_str() != "GET" {
        return None;
    }
    let params: BTreeMap<String, String> = request
        .url
        .query_pairs()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let a = &mut state.analytics;
    match *name {
        "logs" | "logs.all" => {
            if *name == "logs" && a.logs_missing {
                return Some(
                    ResponseTemplate::new(404).set_body_json(json!({"message": "Cannot GET"})),
                );
            }
            a.logs_queries.push((name.to_string(), params.clone()));
            let parse = |k: &str| {
                params
                    .get(k)
                    .and_then(|v| chrono::DateTime::parse_from_rfc3339(v).ok())
            };
            match (parse("iso_timestamp_start"), parse("iso_timestamp_end")) {
                (Some(s), Some(e)) if e >= s && e - s <= chrono::Duration::hours(24) => {}
                _ => {
                    return Some(ResponseTemplate::new(200).set_body_json(json!({
                        "result": [],
                        "error": {"code": 400, "errors": [], "message": "iso_timestamp_start and iso_timestamp_end must span at most 24 hours", "status": "INVALID"}
                    })));
                }
            }
            if !params.get("sql").is_some_and(|s| s.contains("edge_logs")) {
                return Some(ResponseTemplate::new(200).set_body_json(
                    json!({"result": [], "error": "the fake only answers queries of edge_logs"}),
                ));
            }
            let (requests, errors) = a.edge.pop_front().unwrap_or(a.edge_default);
            Some(ResponseTemplate::new(200).set_body_json(json!({
                "result": [{"requests": requests, "server_errors": errors}],
                "error": null
            })))
        }
        "functions.combined-stats" => {
            let interval = params.get("interval").map(String::as_str);
            let id = params.get("function_id").cloned();
            let (Some("15min" | "1hr" | "3hr" | "1day"), Some(id)) = (interval, id) else {
                return Some(ResponseTemplate::new(400).set_body_json(
                    json!({"message": "interval (15min, 1hr, 3hr, 1day) and function_id are required"}),
                ));
            };
            let errors = a
                .function_5xx
                .get_mut(&id)
                .and_then(|q| q.pop_front())
                .unwrap_or(0);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros() as i64;
            let buckets = a.buckets.entry(id).or_default();
            buckets.push(json!({
                "timestamp": now + buckets.len() as i64,
                "requests_count": 10,
                "success_count": 10 - errors.min(10),
                "server_err_count": errors,
                "client_err_count": 0,
                "avg_execution_time": 12.5
            }));
            Some(ResponseTemplate::new(200).set_body_json(json!({
                "result": buckets.clone(),
                "error": null
            })))
        }
        _ => None,
    }
}

/// A `FunctionResponse` object.
pub fn function_json(
    slug: &str,
    version: i64,
    status: &str,
    verify_jwt: bool,
    entry: &str,
) -> Value {
    json!({
        "id": format!("id-{slug}"),
        "slug": slug,
        "name": slug,
        "status": status,
        "version": version,
        "created_at": 1736200000000i64,
        "updated_at": 1736200000000i64 + version,
        "verify_jwt": verify_jwt,
        "import_map": true,
        "entrypoint_path": entry,
        "import_map_path": "supabase/functions/deno.json",
        "ezbr_sha256": "0000"
    })
}

impl FakeApi {
    /// Starts the fake.
    pub async fn start() -> FakeApi {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State::default()));
        Mock::given(wiremock::matchers::any())
            .respond_with(Responder(state.clone()))
            .mount(&server)
            .await;
        FakeApi { server, state }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        self.server.uri()
    }

    /// Runs `f` on the state.
    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Sets keys of a project's settings section (e.g. `/config/auth`).
    pub fn set_settings(&self, project: &str, path: &str, keys: Value) {
        self.with(|s| {
            let key = (project.to_string(), path.to_string());
            let mut now = s
                .project_settings
                .get(&key)
                .cloned()
                .unwrap_or_else(|| default_settings(path));
            for (k, v) in keys.as_object().cloned().unwrap_or_default() {
                now[k] = v;
            }
            s.project_settings.insert(key, now);
        });
    }

    /// The target named as the ops-portal example's frontend
    /// (`https://ops.aamodha.example`), as a ready target is.
    pub fn ready_ops_portal_target(&self) {
        self.set_settings(
            TARGET,
            "/config/auth",
            json!({"site_url": "https://ops.aamodha.example",
                   "uri_allow_list": "https://ops.aamodha.example/**"}),
        );
    }

    /// Adds a scripted fault.
    pub fn fault(
        &self,
        method: &str,
        suffix: &str,
        status: u16,
        retry_after: Option<&str>,
        body: &str,
    ) {
        self.with(|s| {
            s.faults.push_back(Fault {
                method: method.into(),
                path_suffix: suffix.into(),
                status,
                retry_after: retry_after.map(str::to_string),
                body: body.into(),
                delay: None,
            })
        });
    }

    /// Requests received matching `METHOD path-suffix`.
    pub fn count(&self, method: &str, suffix: &str) -> usize {
        self.with(|s| {
            s.log
                .iter()
                .filter(|l| {
                    let (m, p) = l.split_once(' ').unwrap();
                    let p = p.split('?').next().unwrap();
                    m == method && p.ends_with(suffix)
                })
                .count()
        })
    }
}

/// Parses a `multipart/form-data` body.
pub fn parse_multipart(content_type: &str, body: &[u8]) -> Vec<Part> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .expect("multipart boundary")
        .trim_matches('"')
        .to_string();
    let delimiter = format!("--{boundary}").into_bytes();
    let mut parts = Vec::new();
    let mut chunks = split(body, &delimiter);
    chunks.remove(0); // preamble
    for chunk in chunks {
        if chunk.starts_with(b"--") {
            break; // closing delimiter
        }
        let chunk = chunk.strip_prefix(b"\r\n").unwrap_or(chunk);
        let Some(split_at) = find(chunk, b"\r\n\r\n") else {
            continue;
        };
        let headers = String::from_utf8_lossy(&chunk[..split_at]).to_string();
        let mut content = &chunk[split_at + 4..];
        content = content.strip_suffix(b"\r\n").unwrap_or(content);
        let disposition = headers
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))
            .unwrap_or("")
            .to_string();
        let attr = |key: &str| {
            disposition.split(';').find_map(|p| {
                p.trim()
                    .strip_prefix(&format!("{key}="))
                    .map(|v| v.trim_matches('"').to_string())
            })
        };
        parts.push(Part {
            name: attr("name").unwrap_or_default(),
            filename: attr("filename"),
            content: content.to_vec(),
        });
    }
    parts
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn split<'a>(mut hay: &'a [u8], delimiter: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    while let Some(i) = find(hay, delimiter) {
        out.push(&hay[..i]);
        hay = &hay[i + delimiter.len()..];
    }
    out.push(hay);
    out
}

/// What a project's settings section answers before any test changes it.
pub fn default_settings(path: &str) -> Value {
    match path {
        "/config/auth" => json!({
            "site_url": "http://localhost:3000",
            "uri_allow_list": "",
            "jwt_exp": 3600,
            "disable_signup": false,
            "external_email_enabled": true,
            "external_google_enabled": false,
            "mfa_max_enrolled_factors": 10,
            "smtp_host": null,
            "smtp_port": null,
            "smtp_user": null,
            "smtp_pass": null,
            "smtp_admin_email": null,
            "smtp_sender_name": null,
            "security_captcha_secret": null
        }),
        "/postgrest" => json!({
            "db_schema": "public,graphql_public",
            "max_rows": 1000,
            "db_extra_search_path": "public,extensions",
            "db_pool": null,
            "jwt_secret": "0f4c2b4d4e6b1c9e2f2b7f2a1c3d5e7f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d"
        }),
        "/config/realtime" => json!({
            "private_only": false,
            "max_concurrent_users": 200,
            "max_events_per_second": 100,
            "suspend": false
        }),
        "/config/storage" => json!({
            "fileSizeLimit": 52428800,
            "features": {"imageTransformation": {"enabled": true}, "s3Protocol": {"enabled": true}},
            "capabilities": {"list_v2": true, "iceberg_catalog": false}
        }),
        "/config/database/pooler" => json!([{
            "identifier": "primary", "database_type": "PRIMARY", "is_using_scram_auth": true,
            "db_user": "postgres", "db_host": "pooler.example", "db_port": 6543, "db_name": "postgres",
            "connection_string": "postgres://postgres.ref:[YOUR-PASSWORD]@pooler.example:6543/postgres",
            "default_pool_size": 15, "max_client_conn": 200, "pool_mode": "transaction"
        }]),
        "/ssl-enforcement" => {
            json!({"currentConfig": {"database": false}, "appliedSuccessfully": true})
        }
        "/billing/addons" => json!({"selected_addons": [], "available_addons": []}),
        "/config/database/postgres" => json!({"statement_timeout": "8s", "max_connections": 60}),
        "/config/disk/util" => json!({"timestamp": "2026-12-03T00:00:00Z",
            "metrics": {"fs_size_bytes": 8.0e9, "fs_avail_bytes": 7.0e9, "fs_used_bytes": 1.0e9}}),
        _ => Value::Null,
    }
}

/// A secret-looking settings key, answered as a digest.
fn settings_key_is_secret(key: &str) -> bool {
    let upper = key.to_ascii_uppercase();
    key.ends_with("_pass")
        || ["KEY", "TOKEN", "SECRET", "PASSWORD"]
            .iter()
            .any(|p| upper.contains(p))
}

/// `GET`/`PATCH` of `/config/auth`, `/postgrest`, `/config/realtime` and
/// `/config/storage`: the section's object; a `PATCH` merges the keys given
/// (400 for a key the section does not have) and answers the new object.
fn project_settings(
    state: &mut State,
    project: &str,
    request: &Request,
    rest: &[&str],
) -> Option<ResponseTemplate> {
    let path = format!("/{}", rest.join("/"));
    if default_settings(&path).is_null() {
        return None;
    }
    let key = (project.to_string(), path.clone());
    let current = state
        .project_settings
        .get(&key)
        .cloned()
        .unwrap_or_else(|| default_settings(&path));
    match request.method.as_str() {
        "GET" => Some(ResponseTemplate::new(200).set_body_json(current)),
        "PATCH" => {
            let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&request.body) else {
                return Some(
                    ResponseTemplate::new(400)
                        .set_body_json(json!({"message": "body must be an object"})),
                );
            };
            let mut merged = current.as_object().cloned().unwrap_or_default();
            let mut recorded = serde_json::Map::new();
            for (k, v) in body {
                if !merged.contains_key(&k) {
                    return Some(ResponseTemplate::new(400).set_body_json(
                        json!({"message": format!("property {k} should not exist")}),
                    ));
                }
                let stored = match (&v, settings_key_is_secret(&k)) {
                    (Value::String(s), true) => Value::String(sha256_hex(s)),
                    _ => v,
                };
                recorded.insert(k.clone(), stored.clone());
                merged.insert(k, stored);
            }
            state
                .settings_patches
                .push((project.to_string(), path, Value::Object(recorded)));
            state
                .project_settings
                .insert(key, Value::Object(merged.clone()));
            Some(ResponseTemplate::new(200).set_body_json(Value::Object(merged)))
        }
        _ => None,
    }
}
