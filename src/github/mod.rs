//! GitHub's REST API through octocrab: environments and their protection rules.
//!
//! The base URL comes from `GITHUB_API_URL` (GitHub Enterprise, and local
//! fakes in tests). Errors name the endpoint, the status and what permission
//! to add to the workflow, never the token.

use std::time::Duration;

use octocrab::Octocrab;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

/// Characters escaped in a path segment (environment names may hold spaces and `/`).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A failed GitHub call.
#[derive(Debug, thiserror::Error)]
#[error("GitHub API {endpoint}: {message}")]
pub struct GithubError {
    /// Method and path called.
    pub endpoint: String,
    /// HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// What went wrong and what to do.
    pub message: String,
}

/// A GitHub environment as the API returns it (the fields we read).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Environment {
    /// Its name.
    pub name: String,
    /// Link for humans.
    #[serde(default)]
    pub html_url: Option<String>,
    /// Protection rules: `required_reviewers`, `wait_timer`, `branch_policy`.
    #[serde(default)]
    pub protection_rules: Vec<ProtectionRule>,
    /// Which refs may deploy to it.
    #[serde(default)]
    pub deployment_branch_policy: Option<DeploymentBranchPolicy>,
}

/// One protection rule.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ProtectionRule {
    /// `required_reviewers`, `wait_timer` or `branch_policy`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Reviewers, for `required_reviewers`.
    #[serde(default)]
    pub reviewers: Vec<Reviewer>,
    /// Whether the person who triggered a run may approve it.
    #[serde(default)]
    pub prevent_self_review: Option<bool>,
    /// Minutes, for `wait_timer`.
    #[serde(default)]
    pub wait_timer: Option<u64>,
}

/// A required reviewer: a user or a team.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Reviewer {
    /// `User` or `Team`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The user or team object.
    pub reviewer: serde_json::Value,
}

impl Reviewer {
    /// `@login` for users, `team:slug` for teams.
    pub fn display(&self) -> String {
        let field = |k: &str| {
            self.reviewer
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("?")
                .to_string()
        };
        if self.kind == "Team" {
            format!("team:{}", field("slug"))
        } else {
            format!("@{}", field("login"))
        }
    }
}

/// The environment's branch policy.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct DeploymentBranchPolicy {
    /// Only protected branches may deploy.
    pub protected_branches: bool,
    /// Custom name patterns decide.
    pub custom_branch_policies: bool,
}

impl Environment {
    /// The reviewers of the `required_reviewers` rule, if there is one.
    pub fn required_reviewers(&self) -> Option<&ProtectionRule> {
        self.protection_rules
            .iter()
            .find(|r| r.kind == "required_reviewers")
    }
}

/// A GitHub API client for one repository.
#[derive(Debug, Clone)]
pub struct GithubClient {
    client: Octocrab,
    owner: String,
    repo: String,
}

impl GithubClient {
    /// A client for `owner/repo` at `api_url` with `token`.
    pub fn new(api_url: &str, token: &str, repository: &str) -> Result<GithubClient, GithubError> {
        let (owner, repo) = repository.split_once('/').ok_or_else(|| GithubError {
            endpoint: "(setup)".into(),
            status: None,
            message: format!("GITHUB_REPOSITORY {repository:?} is not owner/repo"),
        })?;
        let client = Octocrab::builder()
            .base_uri(api_url)
            .map_err(|e| GithubError {
                endpoint: "(setup)".into(),
                status: None,
                message: format!("GITHUB_API_URL {api_url:?} is not a URL: {e}"),
            })?
            .personal_token(token.to_string())
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(30)))
            .build()
            .map_err(|e| GithubError {
                endpoint: "(setup)".into(),
                status: None,
                message: e.to_string(),
            })?;
        Ok(GithubClient {
            client,
            owner: owner.into(),
            repo: repo.into(),
        })
    }

    /// `GET /repos/{owner}/{repo}/environments/{name}`; `None` when it does not exist.
    pub async fn environment(&self, name: &str) -> Result<Option<Environment>, GithubError> {
        let route = format!(
            "/repos/{}/{}/environments/{}",
            self.owner,
            self.repo,
            utf8_percent_encode(name, SEGMENT)
        );
        match self.client.get::<Environment, _, ()>(&route, None).await {
            Ok(env) => Ok(Some(env)),
            Err(octocrab::Error::GitHub { source, .. }) if source.status_code.as_u16() == 404 => {
                Ok(None)
            }
            Err(e) => Err(describe(&format!("GET {route}"), e, "actions: read")),
        }
    }
}

fn describe(endpoint: &str, e: octocrab::Error, permission: &str) -> GithubError {
    match e {
        octocrab::Error::GitHub { source, .. } => {
            let status = source.status_code.as_u16();
            let message = match status {
                401 => format!(
                    "401 {}: the token is invalid or expired; pass the workflow's token as input `github-token` (default `${{{{ github.token }}}}`)",
                    source.message
                ),
                403 => format!(
                    "403 {}: the token lacks a permission; add `permissions: {permission}` to the workflow job",
                    source.message
                ),
                _ => format!("{status} {}", source.message),
            };
            GithubError {
                endpoint: endpoint.into(),
                status: Some(status),
                message,
            }
        }
        other => GithubError {
            endpoint: endpoint.into(),
            status: None,
            message: format!("{other}; check GITHUB_API_URL and the network"),
        },
    }
}
