//! The cutover gate: what must hold before `cutover` changes anything.
//!
//! Each condition is a checklist row with its evidence; any failing row
//! blocks the phase (exit 3). All reads: the gate never writes, so it runs
//! the same with dry-run.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;

use crate::context::Context;
use crate::github::{Approval, Environment, GithubClient};
use crate::pg::Side;
use crate::pg::release::latest_validation;
use crate::report::{CheckItem, PhaseReport, ReportTable, Status, count};

use super::super::PhaseError;

/// Who approved, for the summary, the ledger and the deployment payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Approver {
    /// GitHub login.
    pub login: String,
    /// Their comment.
    pub comment: String,
    /// When cutover saw the approval (the API gives no review time).
    pub seen_at: chrono::DateTime<Utc>,
}

/// The gate's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// Every row passed.
    pub open: bool,
    /// The approvers of this run for the environment.
    pub approvers: Vec<Approver>,
    /// The environment checked.
    pub environment: String,
}

/// The environment the gate checks: `[gate] environment`, else the input.
pub fn environment_name(ctx: &Context) -> String {
    ctx.manifest
        .gate
        .environment
        .clone()
        .unwrap_or_else(|| ctx.settings.environment.clone())
}

fn block(id: &str, title: &str, evidence: impl Into<String>, hint: &str) -> CheckItem {
    CheckItem::new(id, title, Status::Fail, evidence).with_hint(hint)
}

/// Checks the gate, adding its rows (and the approvals table) to `report`.
pub async fn check(ctx: &mut Context, report: &mut PhaseReport) -> Result<Gate, PhaseError> {
    let environment = environment_name(ctx);
    let mut gate = Gate {
        open: true,
        approvers: Vec::new(),
        environment: environment.clone(),
    };
    let rows_before = report.checks.len();
    let Some(client) = github_client(ctx)? else {
        report.check(no_github_row(ctx));
        gate.open = false;
        validation_row(ctx, report).await?;
        lints_rows(ctx, report).await?;
        return Ok(gate);
    };
    let run_id = ctx.settings.github.run_id.unwrap_or_default();

    // 1. The environment exists and has enough required reviewers.
    let env = client.environment(&environment).await.map_err(permission)?;
    report.check(environment_row(ctx, &environment, env.as_ref()));

    // 2. This run was approved for it, and not rejected.
    let approvals = client.run_approvals(run_id).await.map_err(permission)?;
    let mine: Vec<&Approval> = approvals
        .iter()
        .filter(|a| a.covers(&environment))
        .collect();
    let seen_at = Utc::now();
    gate.approvers = mine
        .iter()
        .filter(|a| a.state == "approved")
        .map(|a| Approver {
            login: a.user.login.clone(),
            comment: a.comment.clone(),
            seen_at,
        })
        .collect();
    let others = approvals.len() - mine.len();
    report.check(approval_row(run_id, &environment, &mine, others));
    if !mine.is_empty() {
        report
            .tables
            .push(approvals_table(ctx, run_id, &mine, seen_at));
    }

    // 3. Four eyes: an approver other than whoever started the run.
    report.check(four_eyes_row(ctx, &client, run_id, &gate.approvers).await?);

    // 4. A recent passing validate covering the same migrations.
    validation_row(ctx, report).await?;

    // 5. The deployment-branch policy admits the ref.
    let approved = !gate.approvers.is_empty();
    report.check(branch_policy_row(ctx, env.as_ref(), approved));

    // 6. No security lint at ERROR level the manifest did not accept.
    lints_rows(ctx, report).await?;

    // 7. The project settings that must match do.
    super::super::parity::check(
        ctx,
        "cutover",
        report,
        super::super::parity::ParityUse::Gate,
    )
    .await?;

    gate.open = !report.checks[rows_before..]
        .iter()
        .any(|c| c.status == Status::Fail);
    Ok(gate)
}

/// The GitHub client of this Actions run, or `None` outside of one.
fn github_client(ctx: &Context) -> Result<Option<GithubClient>, PhaseError> {
    let gh = &ctx.settings.github;
    Ok(
        match (&ctx.settings.github_token, &gh.repository, gh.run_id) {
            (Some(token), Some(repo), Some(_)) => Some(GithubClient::new(
                &ctx.settings.github_api_url,
                token.expose(),
                repo,
            )?),
            _ => None,
        },
    )
}

/// The row that blocks outside a GitHub Actions run with a token.
fn no_github_row(ctx: &Context) -> CheckItem {
    let gh = &ctx.settings.github;
    let missing = [
        ctx.settings
            .github_token
            .is_none()
            .then(|| format!("{} is not set", ctx.settings.label("github-token"))),
        gh.repository
            .is_none()
            .then(|| "GITHUB_REPOSITORY is not set".to_string()),
        gh.run_id
            .is_none()
            .then(|| "GITHUB_RUN_ID is not set".to_string()),
    ];
    let missing: Vec<String> = missing.into_iter().flatten().collect();
    block(
        "gate-github",
        "Running in a GitHub Actions run with a token",
        format!(
            "the gate reads this run's approvals, but {} ",
            missing.join(", ")
        )
        .trim_end()
        .to_string(),
        "run `cutover` in a workflow job bound to the protected environment (`environment: production`) with `github-token: ${{ github.token }}`",
    )
}

/// The reviews of this run for the environment, as a table.
fn approvals_table(
    ctx: &Context,
    run_id: u64,
    mine: &[&Approval],
    seen_at: chrono::DateTime<Utc>,
) -> ReportTable {
    let mut table = ReportTable::new("Approvals", &["Reviewer", "State", "Time", "Comment"])
        .with_note(format!(
            "From GET /repos/{}/actions/runs/{run_id}/approvals. GitHub's review log gives no review time: the time shown is when cutover read the approval, which the review preceded.",
            ctx.settings.github.repository.as_deref().unwrap_or_default()
        ));
    for a in mine {
        table.push([
            format!("@{}", a.user.login),
            a.state.clone(),
            seen_at.format("≤ %Y-%m-%d %H:%M:%S UTC").to_string(),
            if a.comment.is_empty() {
                "—".to_string()
            } else {
                a.comment.clone()
            },
        ]);
    }
    table
}

/// The approval row: rejected by anyone blocks, and so does no approval;
/// `others` is how many reviews were for other environments.
fn approval_row(run_id: u64, environment: &str, mine: &[&Approval], others: usize) -> CheckItem {
    let (id, title) = ("gate-approval", "This run was approved for the environment");
    let by = |state: &str| {
        mine.iter()
            .filter(|a| a.state == state)
            .map(|a| {
                if a.comment.is_empty() {
                    format!("@{}", a.user.login)
                } else {
                    format!("@{} (\"{}\")", a.user.login, a.comment)
                }
            })
            .collect::<Vec<_>>()
    };
    let (rejected, approved) = (by("rejected"), by("approved"));
    if !rejected.is_empty() {
        return block(
            id,
            title,
            format!(
                "run {run_id} was rejected for {environment} by {}",
                rejected.join(", ")
            ),
            "a reviewer rejected this deployment: start a new run once the reason is resolved",
        );
    }
    if approved.is_empty() {
        return block(
            id,
            title,
            format!(
                "run {run_id} has no approval for {environment} ({others} review(s) of other environments)"
            ),
            "bind the cutover job to the environment (`environment: production` in the workflow) so a required reviewer must approve it before it starts",
        );
    }
    CheckItem::new(
        id,
        title,
        Status::Pass,
        format!("approved for {environment} by {}", approved.join(", ")),
    )
}

/// The four-eyes row, when `[gate] four_eyes` asks for it.
async fn four_eyes_row(
    ctx: &Context,
    client: &GithubClient,
    run_id: u64,
    approvers: &[Approver],
) -> Result<CheckItem, PhaseError> {
    if !ctx.manifest.gate.four_eyes {
        return Ok(CheckItem::new(
            FOUR_EYES.0,
            FOUR_EYES.1,
            Status::Skip,
            "not required ([gate] four_eyes = false)",
        ));
    }
    let run = client.workflow_run(run_id).await.map_err(permission)?;
    Ok(four_eyes_verdict(run_id, run.initiator(), approvers))
}

const FOUR_EYES: (&str, &str) = (
    "gate-four-eyes",
    "Approved by someone other than who started the run",
);

/// Whether someone other than `initiator` approved.
fn four_eyes_verdict(run_id: u64, initiator: Option<&str>, approvers: &[Approver]) -> CheckItem {
    let (id, title) = FOUR_EYES;
    let others: Vec<String> = approvers
        .iter()
        .filter(|a| Some(a.login.as_str()) != initiator)
        .map(|a| format!("@{}", a.login))
        .collect();
    match (initiator, approvers.is_empty(), others.is_empty()) {
        (_, true, _) => block(id, title, "no approval to compare", "see the approval row"),
        (None, _, _) => block(
            id,
            title,
            format!("run {run_id} names no triggering_actor or actor"),
            "re-run the workflow; GitHub should name who started it",
        ),
        (Some(who), false, true) => block(
            id,
            title,
            format!(
                "@{who} started run {run_id} and approved it themself ([gate] four_eyes = true)"
            ),
            "ask another required reviewer to approve; turn on \"Prevent self-review\" in the environment's settings so GitHub enforces it too",
        ),
        (Some(who), false, false) => CheckItem::new(
            id,
            title,
            Status::Pass,
            format!("started by @{who}, approved by {}", others.join(", ")),
        ),
    }
}

/// The security lints' rows and table: the target linted (and the source,
/// to tell which findings are new), matched with `[[lints.accept]]`.
async fn lints_rows(ctx: &mut Context, report: &mut PhaseReport) -> Result<(), PhaseError> {
    if ctx.display(Side::Target).is_none() {
        report.check(block(
            "gate-lints",
            super::super::lints::GATE_TITLE,
            "target-db-url is needed to lint the target",
            "pass target-db-url",
        ));
        return Ok(());
    }
    let assessment = super::super::lints::assess_target(ctx, "cutover").await?;
    for row in super::super::lints::gate_rows(&assessment, &ctx.manifest.lints.exposed_schemas) {
        report.check(row);
    }
    report
        .tables
        .extend(super::super::lints::table(&assessment));
    Ok(())
}

/// A GitHub error with the gate's own words: which permission to add.
fn permission(e: crate::github::GithubError) -> PhaseError {
    let mut err = PhaseError::new(e.to_string()).hint(
        "the workflow job needs `permissions: { actions: read, deployments: write, contents: read }`",
    );
    err.blocked = matches!(e.status, Some(401 | 403 | 404));
    err
}

fn environment_row(ctx: &Context, name: &str, env: Option<&Environment>) -> CheckItem {
    let title = "Environment requires reviewers";
    let min = ctx.manifest.gate.min_approvals as usize;
    let Some(env) = env else {
        return block(
            "gate-environment",
            title,
            format!("environment {name:?} does not exist in this repository"),
            "create it (Settings → Environments) with required reviewers, or set [gate] environment / input `environment` to the right name",
        );
    };
    match env.required_reviewers() {
        None => block(
            "gate-environment",
            title,
            format!("environment {name:?} has no required reviewers rule"),
            "Settings → Environments → production → Required reviewers: add the people or teams who approve a cutover",
        ),
        Some(rule) if rule.reviewers.len() < min.max(1) => block(
            "gate-environment",
            title,
            format!(
                "environment {name:?} has {}, [gate] min_approvals asks for {}",
                count(
                    rule.reviewers.len(),
                    "required reviewer",
                    "required reviewers"
                ),
                min.max(1)
            ),
            "add reviewers to the environment, or lower [gate] min_approvals",
        ),
        Some(rule) => CheckItem::new(
            "gate-environment",
            title,
            Status::Pass,
            format!(
                "{name}: {}: {}{}",
                count(
                    rule.reviewers.len(),
                    "required reviewer",
                    "required reviewers"
                ),
                rule.reviewers
                    .iter()
                    .map(|r| r.display())
                    .collect::<Vec<_>>()
                    .join(", "),
                match rule.prevent_self_review {
                    Some(true) => "; self-review prevented",
                    _ => "",
                }
            ),
        ),
    }
}

/// The deployment-branch policy row. The spec this build follows has no
/// endpoint for custom name patterns, so for those the evidence is GitHub's
/// own enforcement: a run is only offered for approval once the policy admits
/// its ref.
fn branch_policy_row(ctx: &Context, env: Option<&Environment>, approved: bool) -> CheckItem {
    let title = "Deployment branch policy admits the ref";
    let git_ref = ctx.settings.github.git_ref.clone().unwrap_or_default();
    let is_tag = git_ref.starts_with("refs/tags/");
    let Some(env) = env else {
        return CheckItem::new(
            "gate-branch-policy",
            title,
            Status::Skip,
            "no environment to read the policy from",
        );
    };
    match &env.deployment_branch_policy {
        None => CheckItem::new(
            "gate-branch-policy",
            title,
            Status::Warn,
            format!("{}: every branch and tag may deploy to {}", show(&git_ref), env.name),
        )
        .with_hint("restrict the environment to your release tags (Deployment branches and tags → Selected, e.g. v*)"),
        Some(p) if p.protected_branches && is_tag => CheckItem::new(
            "gate-branch-policy",
            title,
            Status::Fail,
            format!(
                "{} is a tag, and {} only admits protected branches",
                show(&git_ref),
                env.name
            ),
        )
        .with_hint("switch the environment to \"Selected branches and tags\" with a tag rule (e.g. v*), or release from a protected branch"),
        Some(p) if p.protected_branches => CheckItem::new(
            "gate-branch-policy",
            title,
            Status::Pass,
            format!(
                "{}: only protected branches may deploy; GitHub enforced it before offering the run for approval",
                show(&git_ref)
            ),
        ),
        Some(_) => CheckItem::new(
            "gate-branch-policy",
            title,
            if approved { Status::Pass } else { Status::Warn },
            format!(
                "{}: {} uses custom branch and tag rules; {}",
                show(&git_ref),
                env.name,
                if approved {
                    "GitHub admitted this ref: the run was offered for approval and approved"
                } else {
                    "the rules could not be confirmed (no approval yet)"
                }
            ),
        ),
    }
}

fn show(git_ref: &str) -> String {
    if git_ref.is_empty() {
        "GITHUB_REF not set".into()
    } else {
        git_ref.to_string()
    }
}

/// The validation row: a passing `validate` of this pair, newer than
/// `[gate] validation_max_age_hours`, covering the current migration files.
async fn validation_row(ctx: &mut Context, report: &mut PhaseReport) -> Result<(), PhaseError> {
    let title = "A recent passing validate covers these inputs";
    let (Some(source), Some(target)) = (ctx.display(Side::Source), ctx.display(Side::Target))
    else {
        report.check(block(
            "gate-validation",
            title,
            "source-db-url and target-db-url are both needed to find the validation",
            "pass both database URLs",
        ));
        return Ok(());
    };
    let db = ctx.target("cutover", false).await?;
    let schema = ctx.manifest.ledger.schema.clone();
    let found = latest_validation(&db, &schema, &source, &target).await?;
    let Some(v) = found else {
        report.check(block(
            "gate-validation",
            title,
            format!("the ledger ({schema}) of {target} records no passing validate of {source} → {target}"),
            "run `cutover validate` (or `migrate`) for this source and target first",
        ));
        return Ok(());
    };
    let max_hours = ctx.manifest.gate.validation_max_age_hours;
    let age = Utc::now() - v.finished_at;
    let age_text = if age.num_hours() >= 1 {
        format!("{} h {} min", age.num_hours(), age.num_minutes() % 60)
    } else {
        format!("{} min", age.num_minutes().max(0))
    };
    if age > chrono::Duration::hours(i64::from(max_hours)) {
        report.check(block(
            "gate-validation",
            title,
            format!(
                "the last passing validate (run {}, {}) is {age_text} old, over [gate] validation_max_age_hours = {max_hours}",
                v.run_id,
                v.finished_at.format("%Y-%m-%d %H:%M UTC")
            ),
            "run `cutover validate` again: the data may have changed since",
        ));
        return Ok(());
    }
    let now: BTreeMap<String, String> = ctx
        .migration_dir()?
        .files
        .into_iter()
        .map(|f| (f.version, f.checksum))
        .collect();
    let versions: BTreeSet<&String> = now.keys().chain(v.migrations.keys()).collect();
    let mut differences = Vec::new();
    for version in versions {
        match (v.migrations.get(version), now.get(version)) {
            (Some(a), Some(b)) if a != b => differences.push(format!("{version} changed")),
            (None, Some(_)) => differences.push(format!("{version} added")),
            (Some(_), None) => differences.push(format!("{version} removed")),
            _ => {}
        }
    }
    report.check(if differences.is_empty() {
        CheckItem::new(
            "gate-validation",
            title,
            Status::Pass,
            format!(
                "run {} passed {age_text} ago ({}), {} migration(s) with the same checksums, {} table(s)",
                v.run_id,
                v.finished_at.format("%Y-%m-%d %H:%M UTC"),
                now.len(),
                v.tables.len()
            ),
        )
    } else {
        block(
            "gate-validation",
            title,
            format!(
                "the last passing validate (run {}) covered other migration files: {}",
                v.run_id,
                differences.join(", ")
            ),
            "apply the migrations (`cutover schema`) and run `cutover validate` again",
        )
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval(login: &str, state: &str, comment: &str) -> Approval {
        serde_json::from_value(serde_json::json!({
            "state": state,
            "comment": comment,
            "user": {"login": login},
            "environments": [{"name": "production"}],
        }))
        .unwrap()
    }

    fn approver(login: &str) -> Approver {
        Approver {
            login: login.into(),
            comment: String::new(),
            seen_at: Utc::now(),
        }
    }

    #[test]
    fn a_rejection_blocks_even_with_approvals() {
        let (a, r) = (
            approval("ann", "approved", ""),
            approval("bob", "rejected", "not now"),
        );
        let item = approval_row(7, "production", &[&a, &r], 0);
        assert_eq!(item.status, Status::Fail);
        assert_eq!(
            item.evidence,
            "run 7 was rejected for production by @bob (\"not now\")"
        );
    }

    #[test]
    fn no_approval_blocks_and_counts_the_other_reviews() {
        let item = approval_row(7, "production", &[], 2);
        assert_eq!(item.status, Status::Fail);
        assert_eq!(
            item.evidence,
            "run 7 has no approval for production (2 review(s) of other environments)"
        );
        let a = approval("ann", "approved", "ship it");
        let item = approval_row(7, "production", &[&a], 0);
        assert_eq!(item.status, Status::Pass);
        assert_eq!(
            item.evidence,
            "approved for production by @ann (\"ship it\")"
        );
    }

    #[test]
    fn four_eyes_needs_an_approver_who_did_not_start_the_run() {
        let ann = [approver("ann")];
        assert_eq!(four_eyes_verdict(7, Some("ann"), &ann).status, Status::Fail);
        assert_eq!(four_eyes_verdict(7, None, &ann).status, Status::Fail);
        assert_eq!(
            four_eyes_verdict(7, Some("ann"), &[]).evidence,
            "no approval to compare"
        );
        let both = [approver("ann"), approver("bob")];
        let item = four_eyes_verdict(7, Some("ann"), &both);
        assert_eq!(item.status, Status::Pass);
        assert_eq!(item.evidence, "started by @ann, approved by @bob");
    }
}
