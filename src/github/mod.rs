//! GitHub's REST API through octocrab: environments and their protection
//! rules, workflow runs and their environment approvals, deployments and
//! deployment statuses.
//!
//! The base URL comes from `GITHUB_API_URL` (GitHub Enterprise, and local
//! fakes in tests). Errors name the endpoint, the status and what permission
//! to add to the workflow, never the token.
//!
//! Retries stay in octocrab's middleware (`HandleRateLimits`): its errors
//! carry no response headers, so a retry loop around them could not honour
//! `Retry-After`. Every call is bounded by [`HttpLimits::deadline`]. The
//! calls use octocrab's generic `get`/`post` with the types below rather than
//! its typed handlers: the phases read these types, and octocrab's models
//! lack fields they need (a run's `triggering_actor`).

use std::time::Duration;

use octocrab::Octocrab;
use serde::Deserialize;

use crate::http::segment;

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
        let route = format!("{}/environments/{}", self.repo_path(), segment(name));
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

    /// `/repos/{owner}/{repo}`, both encoded.
    fn repo_path(&self) -> String {
        format!("/repos/{}/{}", segment(&self.owner), segment(&self.repo))
    }

    /// Runs one call within the deadline; its error worded by [`describe`]
    /// with the permission the call needs.
    async fn call<T>(
        &self,
        endpoint: &str,
        permission: &str,
        call: impl std::future::Future<Output = Result<T, octocrab::Error>>,
    ) -> Result<T, GithubError> {
        self.bounded(endpoint, call)
            .await?
            .map_err(|e| describe(endpoint, e, permission))
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

/// A GitHub account as the API embeds it (`simple-user`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Account {
    /// The login, e.g. `octocat`.
    pub login: String,
}

/// The fields of a workflow run the gate reads. Read with a generic GET
/// because octocrab's own run model has no `triggering_actor`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct WorkflowRun {
    /// Run id.
    pub id: u64,
    /// The event that started it (`push`, `workflow_dispatch`, ...).
    #[serde(default)]
    pub event: Option<String>,
    /// Branch or tag name of the run.
    #[serde(default)]
    pub head_branch: Option<String>,
    /// Link for humans.
    #[serde(default)]
    pub html_url: Option<String>,
    /// Who the run belongs to (for re-runs: who started the first attempt).
    #[serde(default)]
    pub actor: Option<Account>,
    /// Who started this attempt; four-eyes compares the approver with this one.
    #[serde(default)]
    pub triggering_actor: Option<Account>,
}

impl WorkflowRun {
    /// The person who started this attempt: `triggering_actor`, else `actor`.
    pub fn initiator(&self) -> Option<&str> {
        self.triggering_actor
            .as_ref()
            .or(self.actor.as_ref())
            .map(|a| a.login.as_str())
    }
}

/// One entry of a run's environment review log (`environment-approvals`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Approval {
    /// `approved`, `rejected` or `pending`.
    pub state: String,
    /// The reviewer's comment.
    #[serde(default)]
    pub comment: String,
    /// The reviewer.
    pub user: Account,
    /// The environments the review was for.
    #[serde(default)]
    pub environments: Vec<ApprovalEnvironment>,
}

/// An environment named in a review.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ApprovalEnvironment {
    /// Its name.
    #[serde(default)]
    pub name: String,
}

impl Approval {
    /// Whether this review covers the environment `name`.
    pub fn covers(&self, name: &str) -> bool {
        self.environments.iter().any(|e| e.name == name)
    }
}

/// A deployment to create (`POST /repos/{o}/{r}/deployments`).
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct NewDeployment {
    /// The ref deployed: a sha, tag or branch.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// `deploy`.
    pub task: String,
    /// Never merge the default branch into the ref: a release is what was approved.
    pub auto_merge: bool,
    /// Empty: the commit's status checks already ran in the workflow.
    pub required_contexts: Vec<String>,
    /// The GitHub environment.
    pub environment: String,
    /// Shown in GitHub's deployments list.
    pub description: String,
    /// Extra facts (cutover run id, source and target) without secrets.
    pub payload: serde_json::Value,
    /// Users use this environment directly.
    pub production_environment: bool,
}

/// A created deployment (the fields we read).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Deployment {
    /// Deployment id.
    pub id: u64,
    /// Its API URL.
    #[serde(default)]
    pub url: Option<String>,
}

/// A deployment status to add.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct NewDeploymentStatus {
    /// `in_progress`, `success`, `failure`, ...
    pub state: String,
    /// At most 140 characters.
    pub description: String,
    /// The workflow run's page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
    /// The site users reach.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment_url: Option<String>,
    /// The GitHub environment.
    pub environment: String,
}

/// A created deployment status (the fields we read).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct DeploymentStatus {
    /// Status id.
    pub id: u64,
    /// Its state.
    pub state: String,
}

impl GithubClient {
    /// `GET /repos/{owner}/{repo}/actions/runs/{run_id}`.
    pub async fn workflow_run(&self, run_id: u64) -> Result<WorkflowRun, GithubError> {
        let route = format!("{}/actions/runs/{run_id}", self.repo_path());
        let call = self.client.get::<WorkflowRun, _, ()>(&route, None);
        self.call(&format!("GET {route}"), "actions: read", call)
            .await
    }

    /// `GET /repos/{owner}/{repo}/actions/runs/{run_id}/approvals`: every
    /// review of the run's environment deployments.
    pub async fn run_approvals(&self, run_id: u64) -> Result<Vec<Approval>, GithubError> {
        let route = format!("{}/actions/runs/{run_id}/approvals", self.repo_path());
        let call = self.client.get::<Vec<Approval>, _, ()>(&route, None);
        self.call(&format!("GET {route}"), "actions: read", call)
            .await
    }

    /// `POST /repos/{owner}/{repo}/deployments`.
    pub async fn create_deployment(
        &self,
        deployment: &NewDeployment,
    ) -> Result<Deployment, GithubError> {
        let route = format!("{}/deployments", self.repo_path());
        let call = self.client.post::<_, Deployment>(&route, Some(deployment));
        self.call(&format!("POST {route}"), "deployments: write", call)
            .await
    }

    /// `POST /repos/{owner}/{repo}/deployments/{id}/statuses`.
    pub async fn create_deployment_status(
        &self,
        deployment_id: u64,
        status: &NewDeploymentStatus,
    ) -> Result<DeploymentStatus, GithubError> {
        let route = format!("{}/deployments/{deployment_id}/statuses", self.repo_path());
        let call = self
            .client
            .post::<_, DeploymentStatus>(&route, Some(status));
        self.call(&format!("POST {route}"), "deployments: write", call)
            .await
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
                404 if permission == "actions: read" => format!(
                    "404 {}: the run is not visible to this token; check GITHUB_REPOSITORY and GITHUB_RUN_ID, and add `permissions: {permission}` to the workflow job",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_client_never_debug_prints_its_token() {
        let client =
            GithubClient::new("http://127.0.0.1:1", "ghp_secret_token_value", "acme/app").unwrap();
        let shown = format!("{client:?}");
        assert!(!shown.contains("ghp_secret"), "{shown}");
        assert!(GithubClient::new("http://127.0.0.1:1", "t", "no-slash").is_err());
    }
}
