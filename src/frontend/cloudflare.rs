//! Cloudflare Pages: the project's production variables
//! (`PATCH /accounts/{a}/pages/projects/{p}` with
//! `deployment_configs.production.env_vars`) and deployments (`GET
//! .../deployments`, `POST .../deployments/{id}/rollback`). Uploading a build
//! stays with the official pages action in the workflow: the variables apply
//! to the next production deployment.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Map, Value, json};

use super::http::Api;
use super::{DeploymentRef, EnvValue, FrontendError, Published, Snapshot, segment};
use crate::manifest::FrontendSection;
use crate::redact::name_looks_secret;

/// The public API.
pub const DEFAULT_API: &str = "https://api.cloudflare.com/client/v4";

/// A Cloudflare Pages client for one project.
#[derive(Debug, Clone)]
pub struct CloudflarePages {
    api: Api,
    account: String,
    project: String,
}

impl CloudflarePages {
    /// A client for `[frontend]` (needs `account_id`).
    pub fn new(
        section: &FrontendSection,
        token: &str,
        timeout: Duration,
    ) -> Result<CloudflarePages, FrontendError> {
        let account = section.account_id.clone().ok_or_else(|| FrontendError {
            provider: "cloudflare-pages",
            endpoint: "(setup)".into(),
            status: None,
            message: "[frontend] account_id is not set: add the Cloudflare account id (dashboard → Workers & Pages → Account ID)".into(),
        })?;
        Ok(CloudflarePages {
            api: Api::new(
                "cloudflare-pages",
                section.api_url.as_deref().unwrap_or(DEFAULT_API),
                token,
                "cloudflare-api-token",
                timeout,
            )?,
            account,
            project: section.project.clone(),
        })
    }

    fn project_path(&self) -> String {
        format!(
            "/accounts/{}/pages/projects/{}",
            segment(&self.account),
            segment(&self.project)
        )
    }

    /// Cloudflare wraps answers in `{success, errors, result}`.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, FrontendError> {
        let answer = self.api.send(method.clone(), path, body).await?;
        if answer.get("success").and_then(Value::as_bool) == Some(false) {
            let messages: Vec<String> = answer
                .get("errors")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e.get("message").and_then(Value::as_str))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            return Err(FrontendError {
                provider: "cloudflare-pages",
                endpoint: format!("{method} {path}"),
                status: None,
                message: format!("the API reported failure: {}", messages.join("; ")),
            });
        }
        Ok(answer.get("result").cloned().unwrap_or(Value::Null))
    }

    async fn project(&self) -> Result<Value, FrontendError> {
        self.call(Method::GET, &self.project_path(), None).await
    }

    /// Reads the named production variables and the live deployment.
    pub async fn snapshot(&self, names: &[String]) -> Result<Snapshot, FrontendError> {
        let project = self.project().await?;
        let vars = project
            .pointer("/deployment_configs/production/env_vars")
            .cloned()
            .unwrap_or(Value::Null);
        let env = names
            .iter()
            .map(|name| match vars.get(name) {
                None | Some(Value::Null) => EnvValue::absent(name),
                Some(v) => {
                    let kind = v.get("type").and_then(Value::as_str).map(str::to_string);
                    // secret_text values are never returned.
                    let readable = kind.as_deref() != Some("secret_text");
                    EnvValue {
                        name: name.clone(),
                        value: if readable {
                            v.get("value").and_then(Value::as_str).map(str::to_string)
                        } else {
                            None
                        },
                        present: true,
                        readable,
                        id: None,
                        kind,
                    }
                }
            })
            .collect();
        let deployment = project
            .get("canonical_deployment")
            .filter(|d| !d.is_null())
            .and_then(|d| {
                Some(DeploymentRef {
                    id: d.get("id")?.as_str()?.to_string(),
                    url: d.get("url").and_then(Value::as_str).map(str::to_string),
                })
            });
        Ok(Snapshot { env, deployment })
    }

    fn var(name: &str, value: &str, kind: Option<&str>) -> Value {
        let kind = kind.unwrap_or(if name_looks_secret(name) {
            "secret_text"
        } else {
            "plain_text"
        });
        json!({ "type": kind, "value": value })
    }

    async fn patch_vars(&self, vars: Map<String, Value>) -> Result<(), FrontendError> {
        if vars.is_empty() {
            return Ok(());
        }
        let body = json!({ "deployment_configs": { "production": { "env_vars": vars } } });
        self.call(Method::PATCH, &self.project_path(), Some(&body))
            .await?;
        Ok(())
    }

    /// Sets production variables (one PATCH; other variables are kept).
    pub async fn set_env(
        &self,
        values: &BTreeMap<String, String>,
        before: &Snapshot,
    ) -> Result<(), FrontendError> {
        let mut vars = Map::new();
        for (name, value) in values {
            let kind = before
                .env
                .iter()
                .find(|e| &e.name == name)
                .and_then(|e| e.kind.as_deref());
            vars.insert(name.clone(), Self::var(name, value, kind));
        }
        self.patch_vars(vars).await
    }

    /// Nothing to call: the next production deployment picks the variables up.
    pub fn publish(&self, before: &Snapshot) -> Published {
        Published {
            deployment: before.deployment.clone(),
            note: "Cloudflare Pages applies the variables to the next production deployment: the workflow's pages deploy step after cutover publishes it".into(),
        }
    }

    /// Restores `before`: readable values put back, new variables removed
    /// (set to null), production rolled back to the saved deployment when
    /// another one is live now.
    pub async fn restore(&self, before: &Snapshot) -> Result<Vec<String>, FrontendError> {
        let mut notes = Vec::new();
        let mut vars = Map::new();
        for saved in &before.env {
            match (saved.present, saved.readable, &saved.value) {
                (false, _, _) => {
                    vars.insert(saved.name.clone(), Value::Null);
                }
                (true, true, Some(value)) => {
                    vars.insert(
                        saved.name.clone(),
                        Self::var(&saved.name, value, saved.kind.as_deref()),
                    );
                }
                _ => notes.push(format!(
                    "{} was a secret_text variable, whose value Cloudflare never returns: set it again by hand (the deployment rolled back to below still has its old value built in)",
                    saved.name
                )),
            }
        }
        self.patch_vars(vars).await?;
        match &before.deployment {
            Some(d) => {
                let live = self
                    .project()
                    .await?
                    .pointer("/canonical_deployment/id")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                if live.as_deref() == Some(d.id.as_str()) {
                    notes.push(format!(
                        "deployment {} is still the live production deployment: nothing to roll back",
                        d.id
                    ));
                } else {
                    let path = format!(
                        "{}/deployments/{}/rollback",
                        self.project_path(),
                        segment(&d.id)
                    );
                    self.call(Method::POST, &path, None).await?;
                }
            }
            None => {
                // Nothing saved: the one before the live deployment is the
                // runbook's "previous working deployment".
                let list = self.production_deployments().await?;
                match list.get(1) {
                    Some(previous) => {
                        let path = format!(
                            "{}/deployments/{}/rollback",
                            self.project_path(),
                            segment(&previous.id)
                        );
                        self.call(Method::POST, &path, None).await?;
                        notes.push(format!(
                            "no deployment was recorded before cutover: rolled back to the previous production deployment {}",
                            previous.id
                        ));
                    }
                    None => notes.push(
                        "no production deployment was recorded before cutover and there is no earlier one: deploy again to apply the restored variables".into(),
                    ),
                }
            }
        }
        Ok(notes)
    }

    /// Production deployments, newest first (for messages and tests).
    pub async fn production_deployments(&self) -> Result<Vec<DeploymentRef>, FrontendError> {
        let path = format!("{}/deployments?env=production", self.project_path());
        let list = self.call(Method::GET, &path, None).await?;
        Ok(list
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| {
                        Some(DeploymentRef {
                            id: d.get("id")?.as_str()?.to_string(),
                            url: d.get("url").and_then(Value::as_str).map(str::to_string),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}
