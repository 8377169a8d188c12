//! The GitHub deployment that records a cutover: created `in_progress`
//! before the first change, marked `success` or `failure` at the end.

use crate::context::Context;
use crate::github::{GithubClient, NewDeployment, NewDeploymentStatus};
use crate::pg::Side;
use crate::redact::SecretText;
use crate::report::{CheckItem, PhaseReport, Status};

use super::super::PhaseError;
use super::gate::Gate;

/// A deployment created for this run.
pub(super) struct Deployment {
    github: GithubClient,
    id: u64,
    environment: String,
    environment_url: Option<String>,
    log_url: Option<String>,
}

impl Deployment {
    /// Creates the deployment and marks it `in_progress`; refused
    /// permissions stop the phase before any change.
    pub(super) async fn start(ctx: &Context, gate: &Gate) -> Result<Deployment, PhaseError> {
        let gh = &ctx.settings.github;
        let github = GithubClient::new(
            &ctx.settings.github_api_url,
            ctx.settings
                .github_token
                .as_ref()
                .map(SecretText::expose)
                .unwrap_or_default(),
            gh.repository.as_deref().unwrap_or_default(),
        )?;
        let created = github
            .create_deployment(&new_deployment(ctx, gate))
            .await
            .map_err(|e| {
                PhaseError::new(format!("{e}; nothing was changed"))
                    .hint("the job needs `permissions: deployments: write`")
            })?;
        let deployment = Deployment {
            github,
            id: created.id,
            environment: gate.environment.clone(),
            environment_url: ctx.manifest.frontend.as_ref().and_then(|f| f.url.clone()),
            log_url: gh.run_url.clone(),
        };
        let status = deployment.status("in_progress", "cutover: switching guards and frontend");
        deployment
            .github
            .create_deployment_status(deployment.id, &status)
            .await?;
        Ok(deployment)
    }

    fn status(&self, state: &str, description: &str) -> NewDeploymentStatus {
        NewDeploymentStatus {
            state: state.into(),
            description: description.chars().take(140).collect(),
            log_url: self.log_url.clone(),
            environment_url: self.environment_url.clone(),
            environment: self.environment.clone(),
        }
    }

    /// Marks the deployment `success`, or `failure` with `failure`'s reason,
    /// and adds the row that says whether GitHub took it.
    pub(super) async fn finish(
        &self,
        report: &mut PhaseReport,
        failure: Option<&str>,
        approvers: &str,
    ) {
        let (id, title) = ("github-deployment", "GitHub deployment status recorded");
        let (state, description) = match failure {
            None => ("success", format!("cutover done, approved by {approvers}")),
            Some(why) => ("failure", format!("cutover failed and was undone: {why}")),
        };
        let status = self.status(state, &description);
        report.check(
            match self.github.create_deployment_status(self.id, &status).await {
                Err(e) => CheckItem::new(id, title, Status::Warn, e.to_string())
                    .with_hint("the job needs `permissions: deployments: write`"),
                Ok(_) => CheckItem::new(
                    id,
                    title,
                    Status::Pass,
                    format!("deployment {} in {}: {state}", self.id, self.environment),
                ),
            },
        );
    }
}

fn new_deployment(ctx: &Context, gate: &Gate) -> NewDeployment {
    let gh = &ctx.settings.github;
    NewDeployment {
        git_ref: gh
            .sha
            .clone()
            .or_else(|| gh.git_ref.clone())
            .unwrap_or_else(|| "HEAD".into()),
        task: "deploy".into(),
        auto_merge: false,
        required_contexts: Vec::new(),
        environment: gate.environment.clone(),
        description: format!(
            "cutover to {}",
            ctx.display(Side::Target).unwrap_or_default()
        ),
        payload: serde_json::json!({
            "cutover_run": ctx.run_id,
            "source": ctx.display(Side::Source),
            "target": ctx.display(Side::Target),
            "approved_by": gate.approvers.iter().map(|a| a.login.clone()).collect::<Vec<_>>(),
        }),
        production_environment: true,
    }
}
