//! GitHub's REST API through octocrab: environments and their protection
//! rules, workflow runs and their environment approvals, deployments and
//! deployment statuses.
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
        let route = format!("/repos/{}/{}/actions/runs/{run_id}", self.owner, self.repo);
        self.client
            .get::<WorkflowRun, _, ()>(&route, None)
            .await
            .map_err(|e| describe(&format!("GET {route}"), e, "actions: read"))
    }

    /// `GET /repos/{owner}/{repo}/actions/runs/{run_id}/approvals`: every
    /// review of the run's environment deployments.
    pub async fn run_approvals(&self, run_id: u64) -> Result<Vec<Approval>, GithubError> {
        let route = format!(
            "/repos/{}/{}/actions/runs/{run_id}/approvals",
            self.owner, self.repo
        );
        self.client
            .get::<Vec<Approval>, _, ()>(&route, None)
            .await
            .map_err(|e| describe(&format!("GET {route}"), e, "actions: read"))
    }

    /// `POST /repos/{owner}/{repo}/deployments`.
    pub async fn create_deployment(
        &self,
        deployment: &NewDeployment,
    ) -> Result<Deployment, GithubError> {
        let route = format!("/repos/{}/{}/deployments", self.owner, self.repo);
        self.client
            .post::<_, Deployment>(&route, Some(deployment))
            .await
            .map_err(|e| describe(&format!("POST {route}"), e, "deployments: write"))
    }

    /// `POST /repos/{owner}/{repo}/deployments/{id}/statuses`.
    pub async fn create_deployment_status(
        &self,
        deployment_id: u64,
        status: &NewDeploymentStatus,
    ) -> Result<DeploymentStatus, GithubError> {
        let route = format!(
            "/repos/{}/{}/deployments/{deployment_id}/statuses",
            self.owner, self.repo
        );
        self.client
            .post::<_, DeploymentStatus>(&route, Some(status))
            .await
            .map_err(|e| describe(&format!("POST {route}"), e, "deployments: write"))
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
