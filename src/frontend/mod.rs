//! Frontend hosting providers: Vercel and Cloudflare Pages, through their
//! REST APIs (reqwest).
//!
//! `cutover` reads the production variables the manifest names
//! (`[frontend.env]`) and the live production deployment, sets the
//! variables to the target's values, and publishes (Vercel: a production
//! redeploy, waited for until READY; Cloudflare Pages: the next deployment of
//! the workflow's pages step picks them up). `rollback` puts the saved values
//! back and returns production to the saved deployment (Vercel: promote,
//! Cloudflare: rollback). Values a provider marks sensitive cannot be read;
//! they are reported as such and cannot be restored by value.

mod cloudflare;
mod http;
mod vercel;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::http::segment;
use crate::manifest::{FrontendProvider, FrontendSection};

pub use cloudflare::CloudflarePages;
pub use vercel::Vercel;

/// A failed provider call; the message names the endpoint and a fix, never the token.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{provider} API {endpoint}: {message}")]
pub struct FrontendError {
    /// `vercel` or `cloudflare-pages`.
    pub provider: &'static str,
    /// Method and path.
    pub endpoint: String,
    /// HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// What went wrong and what to do.
    pub message: String,
}

/// A production variable as found before cutover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvValue {
    /// Variable name.
    pub name: String,
    /// The value; `None` when absent or unreadable.
    pub value: Option<String>,
    /// Whether it existed.
    pub present: bool,
    /// Whether its value could be read (sensitive values cannot).
    pub readable: bool,
    /// The provider's id of the variable (Vercel).
    pub id: Option<String>,
    /// The provider's type (`plain`, `encrypted`, `sensitive`, `plain_text`, `secret_text`).
    pub kind: Option<String>,
}

impl EnvValue {
    /// A variable that does not exist (yet).
    pub fn absent(name: &str) -> EnvValue {
        EnvValue {
            name: name.to_string(),
            value: None,
            present: false,
            readable: true,
            id: None,
            kind: None,
        }
    }
}

/// A production deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentRef {
    /// Provider id.
    pub id: String,
    /// Its URL, when known.
    pub url: Option<String>,
}

/// The frontend's production settings at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The variables named in `[frontend.env]`.
    pub env: Vec<EnvValue>,
    /// The live production deployment.
    pub deployment: Option<DeploymentRef>,
}

/// What publishing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The new production deployment, when one was made.
    pub deployment: Option<DeploymentRef>,
    /// One sentence for the summary.
    pub note: String,
}

/// A provider client.
#[derive(Debug, Clone)]
pub enum Frontend {
    /// Vercel.
    Vercel(Vercel),
    /// Cloudflare Pages.
    CloudflarePages(CloudflarePages),
}

impl Frontend {
    /// A client for the manifest's `[frontend]` with `token`; `timeout` per request.
    pub fn new(
        section: &FrontendSection,
        token: &str,
        timeout: Duration,
    ) -> Result<Frontend, FrontendError> {
        Ok(match section.provider {
            FrontendProvider::Vercel => Frontend::Vercel(Vercel::new(section, token, timeout)?),
            FrontendProvider::CloudflarePages => {
                Frontend::CloudflarePages(CloudflarePages::new(section, token, timeout)?)
            }
        })
    }

    /// `vercel` or `cloudflare-pages`.
    pub fn provider(&self) -> &'static str {
        match self {
            Frontend::Vercel(_) => "vercel",
            Frontend::CloudflarePages(_) => "cloudflare-pages",
        }
    }

    /// Reads the named production variables and the live deployment.
    pub async fn snapshot(&self, names: &[String]) -> Result<Snapshot, FrontendError> {
        match self {
            Frontend::Vercel(v) => v.snapshot(names).await,
            Frontend::CloudflarePages(c) => c.snapshot(names).await,
        }
    }

    /// Sets production variables; `before` says which exist already.
    pub async fn set_env(
        &self,
        values: &BTreeMap<String, String>,
        before: &Snapshot,
    ) -> Result<(), FrontendError> {
        match self {
            Frontend::Vercel(v) => v.set_env(values, before).await,
            Frontend::CloudflarePages(c) => c.set_env(values, before).await,
        }
    }

    /// Makes production use the variables (Vercel: redeploy and wait).
    pub async fn publish(&self, before: &Snapshot) -> Result<Published, FrontendError> {
        match self {
            Frontend::Vercel(v) => v.publish(before).await,
            Frontend::CloudflarePages(c) => Ok(c.publish(before)),
        }
    }

    /// Puts `before` back: readable values restored, variables that did not
    /// exist removed, production returned to `before`'s deployment. Returns a
    /// sentence per thing that could not be restored.
    pub async fn restore(&self, before: &Snapshot) -> Result<Vec<String>, FrontendError> {
        match self {
            Frontend::Vercel(v) => v.restore(before).await,
            Frontend::CloudflarePages(c) => c.restore(before).await,
        }
    }
}

/// Appends `teamId` (Vercel) or nothing to a path.
fn with_query(path: &str, pairs: &[(&str, Option<&str>)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (k, v) in pairs {
        if let Some(v) = v {
            query.append_pair(k, v);
            any = true;
        }
    }
    if any {
        format!("{path}?{}", query.finish())
    } else {
        path.to_string()
    }
}
