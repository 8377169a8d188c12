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

/// How long and how often the client tries before it gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connecting to the API host.
    pub connect_timeout: Duration,
    /// Waiting for an answer to one request.
    pub read_timeout: Duration,
    /// Retries after a 5xx, a 429 or a transport error (each call).
    pub max_retries: usize,
    /// Wait after a 429 without `Retry-After` (GitHub's secondary limits).
    pub min_retry_wait: Duration,
    /// The most one call may take, retries and `Retry-After` waits included:
    /// a rate limit that asks for an hour fails clearly instead of hanging the job.
    pub deadline: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            max_retries: 3,
            min_retry_wait: Duration::from_secs(10),
            deadline: Duration::from_secs(180),
        }
    }
}

/// A GitHub API client for one repository.
#[derive(Debug, Clone)]
pub struct GithubClient {
    client: Octocrab,
    owner: String,
    repo: String,
    limits: HttpLimits,
}

impl GithubClient {
    /// A client for `owner/repo` at `api_url` with `token`.
    pub fn new(api_url: &str, token: &str, repository: &str) -> Result<GithubClient, GithubError> {
        Self::with_limits(api_url, token, repository, HttpLimits::default())
    }

    /// A client with explicit timeouts and retry bounds. Retries follow
    /// GitHub's rate-limit guidance (octocrab's `HandleRateLimits`): a 429
    /// or rate-limited 403 waits for `Retry-After` (or the reset time), a 5xx
    /// or a transport error is retried at once, at most `max_retries` times.
    pub fn with_limits(
        api_url: &str,
        token: &str,
        repository: &str,
        limits: HttpLimits,
    ) -> Result<GithubClient, GithubError> {
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
            .set_connect_timeout(Some(limits.connect_timeout))
            .set_read_timeout(Some(limits.read_timeout))
            .add_retry_config(
                octocrab::service::middleware::retry::RetryConfig::HandleRateLimits {
                    metrics: std::sync::Arc::new(
                        octocrab::service::middleware::retry::NoOpRateLimitMetrics,
                    ),
                    max_retries: limits.max_retries,
                    min_wait_seconds: limits.min_retry_wait.as_secs(),
                    retry_on_forbidden: false,
                },
            )
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
            limits,
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
        let endpoint = format!("GET {route}");
        let call = self.client.get::<Environment, _, ()>(&route, None);
        match self.bounded(&endpoint, call).await? {
            Ok(env) => Ok(Some(env)),
            Err(octocrab::Error::GitHub { source, .. }) if source.status_code.as_u16() == 404 => {
                Ok(None)
            }
            Err(e) => Err(describe(&endpoint, e, "actions: read")),
        }
    }

    /// Runs one call (with octocrab's retries inside) within the deadline.
    async fn bounded<T>(
        &self,
        endpoint: &str,
        call: impl std::future::Future<Output = Result<T, octocrab::Error>>,
    ) -> Result<Result<T, octocrab::Error>, GithubError> {
        tokio::time::timeout(self.limits.deadline, call)
            .await
            .map_err(|_| GithubError {
                endpoint: endpoint.into(),
                status: None,
                message: format!(
                    "no successful answer within {} s (timeouts, rate limiting or server errors, retried {} times); re-run the job later, and check https://www.githubstatus.com",
                    self.limits.deadline.as_secs(),
                    self.limits.max_retries
                ),
            })
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
                429 => format!(
                    "429 {}: rate limited, still after retries; re-run the job later (fewer runs at once help)",
                    source.message
                ),
                500..=599 => format!(
                    "{status} {}: GitHub had a server error, still after retries; re-run the job later",
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
        octocrab::Error::Serde { source, .. } => GithubError {
            endpoint: endpoint.into(),
            status: None,
            message: format!(
                "the answer is not the JSON GitHub's API sends ({source}); check that GITHUB_API_URL points at the API (https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server)"
            ),
        },
        octocrab::Error::Json { source, .. } => GithubError {
            endpoint: endpoint.into(),
            status: None,
            message: format!(
                "the answer is not the JSON GitHub's API sends ({source}); check that GITHUB_API_URL points at the API (https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server)"
            ),
        },
        other => GithubError {
            endpoint: endpoint.into(),
            status: None,
            message: format!("{other}, still after retries; check GITHUB_API_URL and the network"),
        },
    }
}
