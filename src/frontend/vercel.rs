//! Vercel: project environment variables (`/v10/projects/{p}/env`,
//! `/v9/projects/{p}/env/{id}`), production deployments (`/v6/deployments`,
//! `/v13/deployments`) and promotion (`/v10/projects/{id}/promote/{dpl}`).
//! `teamId` is added to every call when `[frontend] team_id` is set.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use super::http::Api;
use super::{DeploymentRef, EnvValue, FrontendError, Published, Snapshot, segment, with_query};
use crate::manifest::FrontendSection;

/// The public API.
pub const DEFAULT_API: &str = "https://api.vercel.com";

/// A Vercel client for one project.
#[derive(Debug, Clone)]
pub struct Vercel {
    api: Api,
    project: String,
    team_id: Option<String>,
    ready_timeout: Duration,
    poll_every: Duration,
}

impl Vercel {
    /// A client for `[frontend]`.
    pub fn new(
        section: &FrontendSection,
        token: &str,
        timeout: Duration,
    ) -> Result<Vercel, FrontendError> {
        let ready_timeout = Duration::from_secs(section.deploy_timeout_seconds);
        Ok(Vercel {
            api: Api::new(
                "vercel",
                section.api_url.as_deref().unwrap_or(DEFAULT_API),
                token,
                "vercel-token",
                timeout,
            )?,
            project: section.project.clone(),
            team_id: section.team_id.clone(),
            ready_timeout,
            // Builds take minutes; polling faster only burns rate limit.
            poll_every: (ready_timeout / 20)
                .clamp(Duration::from_millis(50), Duration::from_secs(5)),
        })
    }

    fn path(&self, path: &str, extra: &[(&str, Option<&str>)]) -> String {
        let mut pairs: Vec<(&str, Option<&str>)> = extra.to_vec();
        pairs.push(("teamId", self.team_id.as_deref()));
        with_query(path, &pairs)
    }

    fn project_path(&self) -> String {
        segment(&self.project)
    }

    /// `/v9/projects/{p}/env/{id}`: one variable.
    fn env_path(&self, id: &str) -> String {
        let path = format!("/v9/projects/{}/env/{}", self.project_path(), segment(id));
        self.path(&path, &[])
    }

    /// `PATCH /v9/projects/{p}/env/{id}` with a new value.
    async fn patch_env(&self, id: &str, value: &str) -> Result<(), FrontendError> {
        let body = json!({ "value": value });
        self.api
            .send(Method::PATCH, &self.env_path(id), Some(&body))
            .await
            .map(drop)
    }

    /// `POST /v10/projects/{p}/env?upsert=true`: a production variable of `kind`.
    async fn create_env(&self, name: &str, value: &str, kind: &str) -> Result<(), FrontendError> {
        let path = self.path(
            &format!("/v10/projects/{}/env", self.project_path()),
            &[("upsert", Some("true"))],
        );
        let body = json!({
            "key": name,
            "value": value,
            "type": kind,
            "target": ["production"],
        });
        self.api
            .send(Method::POST, &path, Some(&body))
            .await
            .map(drop)
    }

    /// The project's production variables as the API lists them.
    async fn list_env(&self) -> Result<Vec<Value>, FrontendError> {
        let path = self.path(
            &format!("/v10/projects/{}/env", self.project_path()),
            &[("decrypt", Some("true"))],
        );
        let body = self.api.send(Method::GET, &path, None).await?;
        let envs = match body {
            Value::Array(a) => a,
            Value::Object(mut o) => match o.remove("envs") {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        Ok(envs
            .into_iter()
            .filter(|e| match e.get("target") {
                Some(Value::Array(t)) => t.iter().any(|t| t == "production"),
                Some(Value::String(t)) => t == "production",
                _ => false,
            })
            .collect())
    }

    /// Reads the named variables and the live production deployment.
    pub async fn snapshot(&self, names: &[String]) -> Result<Snapshot, FrontendError> {
        let envs = self.list_env().await?;
        let mut out = Vec::new();
        for name in names {
            let found = envs
                .iter()
                .find(|e| e.get("key").and_then(Value::as_str) == Some(name.as_str()));
            out.push(match found {
                None => EnvValue::absent(name),
                Some(e) => {
                    let kind = e.get("type").and_then(Value::as_str).map(str::to_string);
                    let value = e.get("value").and_then(Value::as_str).map(str::to_string);
                    // `sensitive` values are write-only; `decrypted: false`
                    // means the API handed back ciphertext.
                    let readable = kind.as_deref() != Some("sensitive")
                        && e.get("decrypted").and_then(Value::as_bool) != Some(false)
                        && value.is_some();
                    EnvValue {
                        name: name.clone(),
                        value: if readable { value } else { None },
                        present: true,
                        readable,
                        id: e.get("id").and_then(Value::as_str).map(str::to_string),
                        kind,
                    }
                }
            });
        }
        Ok(Snapshot {
            env: out,
            deployment: self.production_deployment().await?,
        })
    }

    /// The newest READY production deployment.
    async fn production_deployment(&self) -> Result<Option<DeploymentRef>, FrontendError> {
        let path = self.path(
            "/v6/deployments",
            &[
                ("projectId", Some(&self.project)),
                ("target", Some("production")),
                ("state", Some("READY")),
                ("limit", Some("1")),
            ],
        );
        let body = self.api.send(Method::GET, &path, None).await?;
        Ok(body
            .get("deployments")
            .and_then(Value::as_array)
            .and_then(|d| d.first())
            .and_then(|d| {
                let id = d
                    .get("uid")
                    .or_else(|| d.get("id"))
                    .and_then(Value::as_str)?;
                Some(DeploymentRef {
                    id: id.to_string(),
                    url: d.get("url").and_then(Value::as_str).map(https),
                })
            }))
    }

    /// Sets production variables: existing ones by id, new ones created
    /// (encrypted, production only).
    pub async fn set_env(
        &self,
        values: &BTreeMap<String, String>,
        before: &Snapshot,
    ) -> Result<(), FrontendError> {
        for (name, value) in values {
            let existing = before
                .env
                .iter()
                .find(|e| &e.name == name)
                .and_then(|e| e.id.clone());
            match existing {
                Some(id) => self.patch_env(&id, value).await?,
                None => self.create_env(name, value, "encrypted").await?,
            }
        }
        Ok(())
    }

    /// Redeploys the live production deployment (a new build with the new
    /// variables) and waits until it is READY, at most `deploy_timeout_seconds`.
    pub async fn publish(&self, before: &Snapshot) -> Result<Published, FrontendError> {
        let Some(current) = &before.deployment else {
            return Err(FrontendError {
                provider: "vercel",
                endpoint: "GET /v6/deployments".into(),
                status: None,
                message: format!(
                    "project {} has no READY production deployment to redeploy; deploy it once (vercel --prod), then re-run",
                    self.project
                ),
            });
        };
        let path = self.path("/v13/deployments", &[]);
        let body = json!({
            "name": self.project,
            "deploymentId": current.id,
            "target": "production",
        });
        let created = self.api.send(Method::POST, &path, Some(&body)).await?;
        let id = created
            .get("id")
            .or_else(|| created.get("uid"))
            .and_then(Value::as_str)
            .ok_or_else(|| FrontendError {
                provider: "vercel",
                endpoint: "POST /v13/deployments".into(),
                status: None,
                message: "the answer has no deployment id".into(),
            })?
            .to_string();
        let mut url = created.get("url").and_then(Value::as_str).map(https);
        let started = Instant::now();
        let mut state = created
            .get("readyState")
            .and_then(Value::as_str)
            .unwrap_or("QUEUED")
            .to_string();
        let status_path = self.path(&format!("/v13/deployments/{}", segment(&id)), &[]);
        while state != "READY" {
            if matches!(state.as_str(), "ERROR" | "CANCELED") {
                return Err(FrontendError {
                    provider: "vercel",
                    endpoint: format!("GET /v13/deployments/{id}"),
                    status: None,
                    message: format!(
                        "the production redeploy ended {state}; see its build log in Vercel"
                    ),
                });
            }
            if started.elapsed() >= self.ready_timeout {
                return Err(FrontendError {
                    provider: "vercel",
                    endpoint: format!("GET /v13/deployments/{id}"),
                    status: None,
                    message: format!(
                        "the production redeploy is still {state} after {} s; raise [frontend] deploy_timeout_seconds or check the build in Vercel",
                        self.ready_timeout.as_secs()
                    ),
                });
            }
            tokio::time::sleep(self.poll_every).await;
            let d = self.api.send(Method::GET, &status_path, None).await?;
            state = d
                .get("readyState")
                .and_then(Value::as_str)
                .unwrap_or("QUEUED")
                .to_string();
            if let Some(u) = d.get("url").and_then(Value::as_str) {
                url = Some(https(u));
            }
        }
        Ok(Published {
            note: format!(
                "production redeployed from {} as {id}, READY in {} s{}",
                current.id,
                started.elapsed().as_secs(),
                url.as_deref()
                    .map(|u| format!(" at {u}"))
                    .unwrap_or_default()
            ),
            deployment: Some(DeploymentRef { id, url }),
        })
    }

    /// Restores `before`: values put back, new variables removed, and the
    /// saved deployment promoted back to production (no rebuild).
    pub async fn restore(&self, before: &Snapshot) -> Result<Vec<String>, FrontendError> {
        let mut notes = Vec::new();
        let now = self.list_env().await?;
        for saved in &before.env {
            let current = now
                .iter()
                .find(|e| e.get("key").and_then(Value::as_str) == Some(saved.name.as_str()));
            let current_id = current
                .and_then(|e| e.get("id"))
                .and_then(Value::as_str)
                .map(str::to_string);
            match (saved.present, saved.readable, &saved.value, current_id) {
                (false, _, _, Some(id)) => {
                    self.api
                        .send(Method::DELETE, &self.env_path(&id), None)
                        .await?;
                }
                (false, _, _, None) => {}
                (true, true, Some(value), Some(id)) => self.patch_env(&id, value).await?,
                (true, true, Some(value), None) => {
                    let kind = saved.kind.as_deref().unwrap_or("encrypted");
                    self.create_env(&saved.name, value, kind).await?;
                }
                _ => notes.push(format!(
                    "{} was {} and could not be read before cutover: set it again in Vercel by hand (the promoted deployment below still has its old value built in)",
                    saved.name,
                    saved.kind.as_deref().unwrap_or("unreadable")
                )),
            }
        }
        match &before.deployment {
            Some(d) => {
                let path = self.path(
                    &format!(
                        "/v10/projects/{}/promote/{}",
                        self.project_path(),
                        segment(&d.id)
                    ),
                    &[],
                );
                self.api.send(Method::POST, &path, None).await?;
            }
            None => notes.push(
                "no production deployment was recorded before cutover: redeploy production to apply the restored variables"
                    .into(),
            ),
        }
        Ok(notes)
    }
}

/// Vercel gives deployment hosts without a scheme.
fn https(host: &str) -> String {
    if host.starts_with("http://") || host.starts_with("https://") {
        host.to_string()
    } else {
        format!("https://{host}")
    }
}
