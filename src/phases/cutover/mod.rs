//! `cutover`: the gated switch from the source environment to the target.
//!
//! First the gate ([`gate`]): nothing changes unless every row passes. Then,
//! in order, each step timed and recorded: a GitHub deployment marked
//! `in_progress`; guards off in the source (the `[[guards.switches]]` of the
//! `[config]` table and the `[guards] cron_jobs`, their previous state saved
//! in `<ledger>.guard_states`) so no message goes out twice; the frontend's
//! production variables pointed at the target and published (previous values
//! saved in `<ledger>.frontend_states`); guards on in the target; the smoke
//! checks; the deployment marked `success` or `failure`.
//!
//! When a step after the source's guards fails, what this run changed is
//! undone in reverse order (target guards, frontend, source guards) and the
//! summary says so. This phase and `rollback` are the only ones that write to
//! the source, through [`Context::source_writable`], and only the guards.

pub mod database;
pub mod gate;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::context::{Context, name_looks_secret};
use crate::frontend::{Frontend, Snapshot};
use crate::github::{GithubClient, NewDeployment, NewDeploymentStatus};
use crate::manifest::{QualifiedName, expand};
use crate::pg::cron::ReleasedHold;
use crate::pg::guards::{GuardKind, GuardLedger, GuardValue, SwitchTable};
use crate::pg::ledger::StepRecord;
use crate::pg::release::{FrontendItem, FrontendLedger};
use crate::pg::{Database, Side};
use crate::report::{CheckItem, Outcome, PhaseReport, ReportTable, Status, human_duration};

use super::{PhaseError, smoke};

/// Per-request timeout of provider API calls.
pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(30);

/// The `[config]` table the switches live in, when there are switches.
pub fn switch_table(ctx: &Context) -> Result<Option<SwitchTable>, PhaseError> {
    if ctx.manifest.guards.switches.is_empty() {
        return Ok(None);
    }
    let c = &ctx.manifest.config;
    Ok(Some(SwitchTable {
        table: QualifiedName::parse(&c.table)
            .map_err(|m| PhaseError::new(format!("[config] table: {m}")))?,
        key_column: c.key_column.clone(),
        value_column: c.value_column.clone(),
    }))
}

/// The value a guard takes when switched off or on.
pub fn guard_value(ctx: &Context, kind: GuardKind, name: &str, on: bool) -> String {
    match kind {
        GuardKind::Cron | GuardKind::CronHold => on.to_string(),
        GuardKind::Switch => ctx
            .manifest
            .guards
            .switches
            .iter()
            .find(|s| s.key == name)
            .map(|s| if on { s.on.clone() } else { s.off.clone() })
            .unwrap_or_else(|| on.to_string()),
    }
}

/// Reads the guards of one side.
pub async fn read_guards(
    ctx: &Context,
    db: &Database,
    table: Option<&SwitchTable>,
) -> Result<Vec<GuardValue>, PhaseError> {
    let switches: Vec<String> = ctx
        .manifest
        .guards
        .switches
        .iter()
        .map(|s| s.key.clone())
        .collect();
    Ok(db
        .read_guards(table, &switches, &ctx.manifest.guards.cron_jobs)
        .await?)
}

/// `key = value` list for evidence; secret-looking keys never show values.
pub fn describe_guards(guards: &[GuardValue]) -> String {
    if guards.is_empty() {
        return "none configured".into();
    }
    guards
        .iter()
        .map(|g| {
            let what = match g.kind {
                GuardKind::Switch => g.name.clone(),
                GuardKind::Cron | GuardKind::CronHold => format!("cron job {}", g.name),
            };
            match &g.value {
                None => format!("{what} (absent)"),
                Some(v) if g.kind.is_cron() => {
                    format!("{what} {}", if v == "true" { "active" } else { "paused" })
                }
                Some(v) => format!("{what} = {v}"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `[frontend.env]` values, expanded, plus the provider token.
pub(crate) struct FrontendPlan {
    client: Frontend,
    values: BTreeMap<String, String>,
    project: String,
}

pub(crate) fn frontend_plan(ctx: &Context) -> Result<Option<FrontendPlan>, PhaseError> {
    let Some(section) = &ctx.manifest.frontend else {
        return Ok(None);
    };
    let (token, input) = match section.provider {
        crate::manifest::FrontendProvider::Vercel => {
            (ctx.settings.vercel_token.as_deref(), "vercel-token")
        }
        crate::manifest::FrontendProvider::CloudflarePages => (
            ctx.settings.cloudflare_api_token.as_deref(),
            "cloudflare-api-token",
        ),
    };
    let Some(token) = token else {
        return Err(PhaseError::new(format!(
            "[frontend] provider = \"{}\" needs an API token, but {} is not set; nothing was changed",
            section.provider,
            ctx.settings.label(input)
        ))
        .hint(format!(
            "pass `{input}: ${{{{ secrets.{} }}}}` to the action",
            input.to_uppercase().replace('-', "_")
        )));
    };
    let mut values = BTreeMap::new();
    let mut missing = Vec::new();
    for (name, value) in &section.env {
        // `${supabase.*}`: the target's URL and keys, read by project_keys.
        let lookup = |n: &str| {
            ctx.project_values
                .get(n)
                .cloned()
                .or_else(|| ctx.env_var(n))
        };
        match expand(value, lookup) {
            Ok(v) => {
                values.insert(name.clone(), v);
            }
            Err(m) => missing.extend(m),
        }
    }
    if !missing.is_empty() {
        missing.sort();
        missing.dedup();
        return Err(PhaseError::new(format!(
            "[frontend.env] references variables that are not set: {}; nothing was changed",
            missing.join(", ")
        ))
        .hint("set them in the cutover step's `env:` from the environment's secrets and vars"));
    }
    let client = Frontend::new(section, token, PROVIDER_TIMEOUT)
        .map_err(|e| PhaseError::new(e.to_string()))?;
    Ok(Some(FrontendPlan {
        client,
        values,
        project: section.project.clone(),
    }))
}

/// Saves a frontend snapshot in the ledger. Values of secret-looking names
/// are registered with the redactor, and never stored: the ledger holds no
/// secret, so such a variable is kept as "not restorable by value" and
/// `rollback` brings its old value back by restoring the previous deployment
/// (whose build carries it); only its sha-256 is kept, to tell whether it changed.
pub async fn save_frontend(
    ctx: &Context,
    ledger: &FrontendLedger,
    provider: &str,
    project: &str,
    snapshot: &Snapshot,
) -> Result<(), PhaseError> {
    for e in &snapshot.env {
        if let Some(v) = &e.value {
            if name_looks_secret(&e.name) {
                ctx.redactor.add(v);
                ctx.console.add_mask(v);
            }
        }
        let secret = name_looks_secret(&e.name);
        let (value, readable, digest) = match (&e.value, secret) {
            (Some(v), true) => (None, false, Some(hex::encode(Sha256::digest(v.as_bytes())))),
            (v, _) => (v.as_deref(), e.readable, None),
        };
        ledger
            .save(
                ctx.run_id,
                provider,
                project,
                FrontendItem::Env,
                &e.name,
                value,
                readable,
                serde_json::json!({
                    "id": e.id, "type": e.kind, "present": e.present,
                    "secret_not_kept": secret, "sha256": digest,
                }),
            )
            .await?;
    }
    if let Some(d) = &snapshot.deployment {
        ledger
            .save(
                ctx.run_id,
                provider,
                project,
                FrontendItem::Deployment,
                &d.id,
                d.url.as_deref(),
                true,
                serde_json::json!({}),
            )
            .await?;
    }
    Ok(())
}

/// One timed step for the steps table.
struct Steps {
    table: ReportTable,
}

impl Steps {
    fn new() -> Steps {
        Steps {
            table: ReportTable::new("Cutover steps", &["#", "Step", "Result", "Took"]),
        }
    }

    fn push(&mut self, report: &mut PhaseReport, item: CheckItem, took: Duration) {
        let n = self.table.rows.len() + 1;
        self.table.push([
            n.to_string(),
            item.title.clone(),
            format!("{} {}", item.status.icon(), item.status.word()),
            human_duration(took.as_millis() as u64),
        ]);
        report.check(item);
    }
}

/// What this run changed, to undo in reverse.
enum Change {
    /// The source's write freeze (replicate mode: the replication keeps
    /// running under it, so lifting it is the whole undo).
    Freeze,
    SourceGuards(Vec<GuardValue>),
    Frontend(Snapshot),
    /// The target's guards as they were, and the cron holds released.
    TargetGuards(Vec<GuardValue>, Vec<ReleasedHold>),
}

/// Runs `cutover`.
pub async fn run(ctx: &mut Context) -> Result<PhaseReport, PhaseError> {
    let mut report = PhaseReport::new("cutover");
    let gate = gate::check(ctx, &mut report).await?;
    report.approvers = gate.approvers.iter().map(|a| a.login.clone()).collect();
    if !gate.open {
        report.outcome = Outcome::Blocked;
        report.summary = "Blocked by the gate: nothing was changed. See the failed rows.".into();
        return Ok(report);
    }
    let approvers = gate
        .approvers
        .iter()
        .map(|a| format!("@{}", a.login))
        .collect::<Vec<_>>()
        .join(", ");

    // Everything that can be refused is refused before the first change.
    let table = switch_table(ctx)?;
    if super::project_keys::referenced(ctx) {
        super::project_keys::load(ctx, &mut report).await?;
    }
    let frontend = frontend_plan(ctx)?;
    let (smoke_checks, smoke_problems) = smoke::plan(ctx);
    if let Some(p) = smoke_problems.first() {
        return Err(PhaseError::new(format!(
            "the smoke checks cannot be built: {}; nothing was changed",
            p.evidence
        ))
        .hint(p.hint.clone().unwrap_or_default()));
    }

    if ctx.settings.dry_run {
        let source = ctx.source("cutover").await?;
        let target = ctx.target("cutover", false).await?;
        let s = read_guards(ctx, &source, table.as_ref()).await?;
        let t = read_guards(ctx, &target, table.as_ref()).await?;
        let holds: Vec<String> = GuardLedger::new(&target, &ctx.manifest.ledger.schema)
            .open_holds()
            .await?
            .into_iter()
            .map(|h| h.name)
            .collect();
        let copied = super::select_tables(ctx, &source).await?.copy.len();
        for (id, title, evidence) in [
            (
                "write-freeze",
                "Writes to the source frozen",
                format!(
                    "would freeze writes on {copied} copied tables, then {}, then set the sequences",
                    if database::replicating(ctx) {
                        "wait for a fence on the target and compare exact counts"
                    } else {
                        "prove them unchanged since the copy (counts and checksums)"
                    }
                ),
            ),
            (
                "guards-source-off",
                "Guards off in the source",
                format!(
                    "would switch off in the source; now: {}",
                    describe_guards(&s)
                ),
            ),
            (
                "frontend-switch",
                "Frontend switched to the target",
                match &frontend {
                    Some(f) => format!(
                        "would set {} on {} project {} and publish",
                        f.values.keys().cloned().collect::<Vec<_>>().join(", "),
                        f.client.provider(),
                        f.project
                    ),
                    None => "no [frontend] in the manifest".into(),
                },
            ),
            (
                "guards-target-on",
                "Guards on in the target",
                format!(
                    "would switch on in the target; now: {}{}",
                    describe_guards(&t),
                    if holds.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; would resume the pg_cron jobs held since schema: {}",
                            holds.join(", ")
                        )
                    }
                ),
            ),
            (
                "smoke",
                "Smoke checks",
                format!("would run {} check(s)", smoke_checks.len()),
            ),
        ] {
            report.check(CheckItem::new(
                id,
                title,
                Status::Skip,
                format!("dry run: {evidence}"),
            ));
        }
        report.summary =
            format!("Dry run: the gate is open (approved by {approvers}); nothing was changed.");
        return Ok(report);
    }

    let target = ctx.target("cutover", true).await?;
    let ledger = ctx
        .ledger("cutover")
        .await?
        .ok_or_else(|| PhaseError::new("the ledger is not open"))?;
    let schema = ctx.manifest.ledger.schema.clone();
    let guard_ledger = GuardLedger::new(&target, &schema);
    guard_ledger.create(&schema).await?;
    let frontend_ledger = FrontendLedger::new(&target, &schema);
    frontend_ledger.create(&schema).await?;
    let now = chrono::Utc::now();
    ledger
        .record_step(
            ctx.run_id,
            &StepRecord {
                phase: "cutover",
                step: "approval",
                started_at: now,
                finished_at: now,
                outcome: "pass",
                detail: serde_json::json!({
                    "environment": gate.environment,
                    "approvers": gate.approvers.iter().map(|a| serde_json::json!({
                        "login": a.login, "comment": a.comment, "seen_at": a.seen_at,
                    })).collect::<Vec<_>>(),
                }),
            },
        )
        .await?;

    // The GitHub deployment: refused permissions stop us before any change.
    let gh = ctx.settings.github.clone();
    let github = GithubClient::new(
        &ctx.settings.github_api_url,
        ctx.settings.github_token.as_deref().unwrap_or_default(),
        gh.repository.as_deref().unwrap_or_default(),
    )?;
    let environment_url = ctx.manifest.frontend.as_ref().and_then(|f| f.url.clone());
    let deployment = github
        .create_deployment(&NewDeployment {
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
        })
        .await
        .map_err(|e| {
            PhaseError::new(format!("{e}; nothing was changed"))
                .hint("the job needs `permissions: deployments: write`")
        })?;
    let run_url = gh.run_url.clone();
    let status = |state: &str, description: String| NewDeploymentStatus {
        state: state.into(),
        description: description.chars().take(140).collect(),
        log_url: run_url.clone(),
        environment_url: environment_url.clone(),
        environment: gate.environment.clone(),
    };
    github
        .create_deployment_status(
            deployment.id,
            &status(
                "in_progress",
                "cutover: switching guards and frontend".into(),
            ),
        )
        .await?;

    // A `monitor` later in this run compares with figures from before the
    // switch.
    ctx.monitor_baseline = super::monitor::take_baseline(ctx).await;

    let source_w = ctx.source_writable("cutover").await?;
    let mut steps = Steps::new();
    let mut changes: Vec<Change> = Vec::new();
    let mut failure: Option<String> = None;
    let mut blocked = false;

    // 0. The database: freeze the source, prove the target holds every
    // acknowledged write, carry the sequences over.
    let selection = super::select_tables(ctx, &source_w).await?;
    let copied: Vec<QualifiedName> = selection.copy.iter().map(|t| t.name.clone()).collect();
    let replication = if database::replicating(ctx) {
        match database::replication_ready(ctx, &ledger, &source_w, &target, &copied).await {
            Ok(r) => Some(r),
            Err(stop) => {
                absorb_stop(stop, &mut report, &mut steps, &mut failure, &mut blocked);
                None
            }
        }
    } else {
        None
    };
    let mut switched_db = None;
    if failure.is_none() {
        let mut rows = Vec::new();
        let result = database::switch(
            ctx,
            &ledger,
            &source_w,
            &target,
            &copied,
            replication,
            &mut rows,
        )
        .await;
        for (item, took) in rows {
            steps.push(&mut report, item, took);
        }
        match result {
            Ok(done) => {
                changes.push(Change::Freeze);
                switched_db = Some(done);
            }
            Err(stop) => {
                if stop_froze(&stop) {
                    changes.push(Change::Freeze);
                }
                absorb_stop(stop, &mut report, &mut steps, &mut failure, &mut blocked);
            }
        }
    }

    // 1. Guards off in the source.
    let clock = Instant::now();
    if failure.is_none() {
        match switch_guards(
            ctx,
            &source_w,
            table.as_ref(),
            &guard_ledger,
            Side::Source,
            false,
        )
        .await
        {
            Ok((before, _, item)) => {
                steps.push(&mut report, item, clock.elapsed());
                changes.push(Change::SourceGuards(before));
            }
            Err(e) => {
                steps.push(
                    &mut report,
                    CheckItem::new(
                        "guards-source-off",
                        "Guards off in the source",
                        Status::Fail,
                        e.message.clone(),
                    )
                    .with_hint(e.hint.clone().unwrap_or_default()),
                    clock.elapsed(),
                );
                failure = Some(e.message);
            }
        }
    }

    // 2. Frontend switched to the target.
    let frontend_clock = Instant::now();
    if failure.is_none() {
        let clock = Instant::now();
        match &frontend {
            None => steps.push(
                &mut report,
                CheckItem::new(
                    "frontend-switch",
                    "Frontend switched to the target",
                    Status::Skip,
                    "no [frontend] in the manifest",
                ),
                clock.elapsed(),
            ),
            Some(f) => match f
                .client
                .snapshot(&f.values.keys().cloned().collect::<Vec<_>>())
                .await
            {
                Err(e) => {
                    steps.push(
                        &mut report,
                        CheckItem::new(
                            "frontend-switch",
                            "Frontend switched to the target",
                            Status::Fail,
                            e.to_string(),
                        ),
                        clock.elapsed(),
                    );
                    failure = Some(e.to_string());
                }
                Ok(before) => {
                    save_frontend(
                        ctx,
                        &frontend_ledger,
                        f.client.provider(),
                        &f.project,
                        &before,
                    )
                    .await?;
                    changes.push(Change::Frontend(before.clone()));
                    let result = match f.client.set_env(&f.values, &before).await {
                        Ok(()) => f.client.publish(&before).await,
                        Err(e) => Err(e),
                    };
                    match result {
                        Ok(published) => {
                            let unreadable: Vec<&str> = before
                                .env
                                .iter()
                                .filter(|e| !e.readable)
                                .map(|e| e.name.as_str())
                                .collect();
                            let mut evidence = format!(
                                "{} set on {} project {}; {}",
                                f.values.keys().cloned().collect::<Vec<_>>().join(", "),
                                f.client.provider(),
                                f.project,
                                published.note
                            );
                            if !unreadable.is_empty() {
                                evidence.push_str(&format!(
                                    "; previous values of {} were not readable (sensitive) and are not saved for rollback",
                                    unreadable.join(", ")
                                ));
                            }
                            let item = CheckItem::new(
                                "frontend-switch",
                                "Frontend switched to the target",
                                if unreadable.is_empty() {
                                    Status::Pass
                                } else {
                                    Status::Warn
                                },
                                evidence,
                            );
                            steps.push(&mut report, item, clock.elapsed());
                        }
                        Err(e) => {
                            steps.push(
                                &mut report,
                                CheckItem::new("frontend-switch", "Frontend switched to the target", Status::Fail, e.to_string())
                                    .with_hint("check the provider token's access and the project name in [frontend]"),
                                clock.elapsed(),
                            );
                            failure = Some(e.to_string());
                        }
                    }
                }
            },
        }
    }

    // 3. Guards on in the target.
    if failure.is_none() {
        let clock = Instant::now();
        match switch_guards(
            ctx,
            &target,
            table.as_ref(),
            &guard_ledger,
            Side::Target,
            true,
        )
        .await
        {
            Ok((before, released, item)) => {
                steps.push(&mut report, item, clock.elapsed());
                changes.push(Change::TargetGuards(before, released));
            }
            Err(e) => {
                steps.push(
                    &mut report,
                    CheckItem::new(
                        "guards-target-on",
                        "Guards on in the target",
                        Status::Fail,
                        e.message.clone(),
                    )
                    .with_hint(e.hint.clone().unwrap_or_default()),
                    clock.elapsed(),
                );
                failure = Some(e.message);
            }
        }
    }

    // 4. Smoke checks.
    if failure.is_none() {
        let clock = Instant::now();
        let mut smoke_report = PhaseReport::new("smoke");
        let passed = smoke::run_checks(ctx, &mut smoke_report).await;
        let sent = smoke_report
            .checks
            .iter()
            .filter(|c| c.status != Status::Skip)
            .count();
        for c in smoke_report.checks {
            report.check(c);
        }
        report.tables.extend(smoke_report.tables);
        steps.push(
            &mut report,
            CheckItem::new(
                "smoke",
                "Smoke checks",
                if passed { Status::Pass } else { Status::Fail },
                if passed {
                    format!("{sent} check(s) passed")
                } else {
                    "a smoke check failed: see its row".to_string()
                },
            ),
            clock.elapsed(),
        );
        if !passed {
            failure = Some("a smoke check failed".into());
        }
    }

    let frontend_took = frontend_clock.elapsed();

    // 5. Replicate mode: the replication has nothing left to carry (the
    // source is frozen and everything arrived); retire it. Kept until here so
    // an undo above leaves the target following the source as before.
    if failure.is_none() {
        if let Some(record) = switched_db.as_ref().and_then(|d| d.replication.clone()) {
            let clock = Instant::now();
            let item = match super::data::replicate::retire(ctx, &ledger, &source_w, &target, &record).await {
                Ok(removed) => CheckItem::new(
                    "replication-retired",
                    "Replication retired",
                    Status::Pass,
                    format!("removed {}", removed.join(", ")),
                ),
                Err(e) => CheckItem::new(
                    "replication-retired",
                    "Replication retired",
                    Status::Warn,
                    e.message,
                )
                .with_hint("the switch is done; run `rollback`-free cleanup by re-running `cutover` or drop the subscription, publication and role the ledger names by hand"),
            };
            steps.push(&mut report, item, clock.elapsed());
        }
    }
    if let Some(done) = &switched_db {
        report
            .tables
            .push(freeze_table(done, frontend_took, failure.is_none()));
        let _ = ledger
            .record_step(
                ctx.run_id,
                &StepRecord {
                    phase: "cutover",
                    step: "write-freeze-timing",
                    started_at: chrono::Utc::now()
                        - chrono::Duration::from_std(done.freeze_started.elapsed())
                            .unwrap_or_default(),
                    finished_at: chrono::Utc::now(),
                    outcome: if failure.is_none() {
                        "frozen"
                    } else {
                        "lifted"
                    },
                    detail: serde_json::json!({
                        "mode": ctx.manifest.data.mode.to_string(),
                        "lag_before_ms": done.timings.lag_before.map(|d| d.as_millis() as u64),
                        "lock_ms": done.timings.lock.as_millis() as u64,
                        "fence_ms": done.timings.fence.as_millis() as u64,
                        "verify_ms": done.timings.verify.as_millis() as u64,
                        "sequences_ms": done.timings.sequences.as_millis() as u64,
                        "frontend_ms": frontend_took.as_millis() as u64,
                        "total_ms": done.freeze_started.elapsed().as_millis() as u64,
                    }),
                },
            )
            .await;
    }

    // Undo in reverse when something after the source's guards failed.
    let mut undone = Vec::new();
    if failure.is_some() && !changes.is_empty() {
        while let Some(change) = changes.pop() {
            let clock = Instant::now();
            let item = undo(
                ctx,
                change,
                &source_w,
                &target,
                table.as_ref(),
                &frontend,
                &guard_ledger,
                &frontend_ledger,
            )
            .await;
            undone.push(item.title.clone());
            steps.push(&mut report, item, clock.elapsed());
        }
    }

    // The deployment's final status.
    let (state, description) = match &failure {
        None => ("success", format!("cutover done, approved by {approvers}")),
        Some(why) => ("failure", format!("cutover failed and was undone: {why}")),
    };
    if let Err(e) = github
        .create_deployment_status(deployment.id, &status(state, description))
        .await
    {
        report.check(
            CheckItem::new(
                "github-deployment",
                "GitHub deployment status recorded",
                Status::Warn,
                e.to_string(),
            )
            .with_hint("the job needs `permissions: deployments: write`"),
        );
    } else {
        report.check(CheckItem::new(
            "github-deployment",
            "GitHub deployment status recorded",
            Status::Pass,
            format!(
                "deployment {} in {}: {state}",
                deployment.id, gate.environment
            ),
        ));
    }
    report.tables.push(steps.table);
    report.summary = match &failure {
        None => format!(
            "Cut over to {}: approved by {approvers}; every acknowledged write on the target and the source frozen ({}; writes refused for {} during the switch), source guards off, frontend switched, target guards on, smoke passed.",
            ctx.display(Side::Target).unwrap_or_default(),
            switched_db
                .as_ref()
                .map(|d| format!("{} tables", d.tables))
                .unwrap_or_else(|| "no tables".into()),
            switched_db
                .as_ref()
                .map(|d| human_duration(d.freeze_started.elapsed().as_millis() as u64))
                .unwrap_or_else(|| "0 ms".into())
        ),
        Some(why) if undone.is_empty() => {
            format!("Cutover failed before changing anything: {why}.")
        }
        Some(why) => format!(
            "Cutover failed ({why}) and was undone in reverse order: {}.",
            undone.join(", then ")
        ),
    };
    if blocked {
        report.outcome = Outcome::Blocked;
    } else if failure.is_some() {
        report.outcome = Outcome::Failed;
    }
    Ok(report)
}

fn stop_froze(stop: &database::SwitchStop) -> bool {
    match stop {
        database::SwitchStop::Blocked { froze, .. }
        | database::SwitchStop::Failed { froze, .. } => *froze,
    }
}

/// Puts a stop of the database part into the report: its row (or the
/// error), the table of differing tables, and `failure`/`blocked`.
fn absorb_stop(
    stop: database::SwitchStop,
    report: &mut PhaseReport,
    steps: &mut Steps,
    failure: &mut Option<String>,
    blocked: &mut bool,
) {
    match stop {
        database::SwitchStop::Blocked { item, table, .. } => {
            *failure = Some(item.evidence.clone());
            *blocked = true;
            steps.push(report, item, Duration::ZERO);
            if let Some(t) = table {
                report.tables.push(t);
            }
        }
        database::SwitchStop::Failed { error, .. } => {
            *failure = Some(error.message.clone());
            let mut item = CheckItem::new(
                "database-switch",
                "Database switched",
                Status::Fail,
                error.message,
            );
            if let Some(h) = error.hint {
                item = item.with_hint(h);
            }
            steps.push(report, item, Duration::ZERO);
        }
    }
}

/// The write freeze, split into its parts.
fn freeze_table(done: &database::SwitchDone, frontend: Duration, kept: bool) -> ReportTable {
    let t = &done.timings;
    let ms = |d: Duration| human_duration(d.as_millis() as u64);
    let mut table = ReportTable::new("Write freeze", &["Part", "Took"]);
    if let Some(lag) = t.lag_before {
        table.push([
            "Replication lag before the freeze (not frozen)".to_string(),
            ms(lag),
        ]);
    }
    table.push([
        "Lock: writers in flight finish, freeze installed".to_string(),
        ms(t.lock),
    ]);
    if t.fence > Duration::ZERO {
        table.push([
            "Fence: last writes applied on the target".to_string(),
            ms(t.fence),
        ]);
    }
    table.push(["Verify: both sides compared".to_string(), ms(t.verify)]);
    table.push(["Sequences set on the target".to_string(), ms(t.sequences)]);
    table.push([
        "Frontend switched (guards, provider, smoke)".to_string(),
        ms(frontend),
    ]);
    table.push([
        "**Writes refused on the source, until this phase ended**".to_string(),
        ms(done.freeze_started.elapsed()),
    ]);
    table.with_note(if kept {
        "The source stays frozen after the switch, so an old browser tab fails loudly instead of writing where nobody reads. `rollback` lifts the freeze."
    } else {
        "The switch was undone and the freeze lifted: the source takes writes again."
    })
}

/// Switches one side's guards off (`on == false`) or on, saving the state
/// before in the ledger. Fails before changing anything when a named switch
/// does not exist on that side. Switching the target's on also resumes the
/// pg_cron jobs `schema` held (see [`crate::pg::cron`]), so they come back
/// exactly with the app; the holds released are returned for the undo.
async fn switch_guards(
    ctx: &Context,
    db: &Database,
    table: Option<&SwitchTable>,
    ledger: &GuardLedger,
    side: Side,
    on: bool,
) -> Result<(Vec<GuardValue>, Vec<ReleasedHold>, CheckItem), PhaseError> {
    let (id, title) = if on {
        ("guards-target-on", "Guards on in the target")
    } else {
        ("guards-source-off", "Guards off in the source")
    };
    let before = read_guards(ctx, db, table).await?;
    let missing: Vec<&str> = before
        .iter()
        .filter(|g| g.kind == GuardKind::Switch && g.value.is_none())
        .map(|g| g.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(PhaseError::new(format!(
            "the {} database's [config] table has no row for {}",
            side.name(),
            missing.join(", ")
        ))
        .hint(
            "add the key to the config table (a migration), or remove it from [[guards.switches]]",
        ));
    }
    let mut notes = Vec::new();
    let mut changed = Vec::new();
    for g in &before {
        let Some(_) = &g.value else {
            notes.push(format!(
                "cron job {} not found{}",
                g.name,
                if db.has_pg_cron().await? {
                    ""
                } else {
                    " (pg_cron is not installed)"
                }
            ));
            continue;
        };
        let value = guard_value(ctx, g.kind, &g.name, on);
        ledger.save(ctx.run_id, side, g, &value).await?;
        db.set_guard(table, g.kind, &g.name, &value).await?;
        changed.push(GuardValue {
            kind: g.kind,
            name: g.name.clone(),
            value: Some(value),
        });
    }
    let released = if on && side == Side::Target {
        db.release_cron_holds(ledger, ctx.run_id).await?
    } else {
        Vec::new()
    };
    if before.is_empty() && released.is_empty() {
        return Ok((
            before,
            released,
            CheckItem::new(id, title, Status::Skip, "no [guards] in the manifest"),
        ));
    }
    let mut evidence = if before.is_empty() {
        "no [guards] in the manifest".to_string()
    } else {
        format!(
            "{} → {}; previous state saved in the ledger",
            describe_guards(&before),
            describe_guards(&changed)
        )
    };
    if !released.is_empty() {
        evidence.push_str(&format!("; {}", describe_released(&released)));
    }
    if !notes.is_empty() {
        evidence.push_str(&format!("; {}", notes.join(", ")));
    }
    let item = CheckItem::new(
        id,
        title,
        if notes.is_empty() {
            Status::Pass
        } else {
            Status::Warn
        },
        evidence,
    );
    Ok((before, released, item))
}

/// `pg_cron jobs schema paused resumed: a, b` for the evidence.
fn describe_released(released: &[ReleasedHold]) -> String {
    let resumed: Vec<&str> = released
        .iter()
        .filter(|r| r.found)
        .map(|r| r.name.as_str())
        .collect();
    let gone: Vec<&str> = released
        .iter()
        .filter(|r| !r.found)
        .map(|r| r.name.as_str())
        .collect();
    let mut text = format!(
        "pg_cron jobs held since schema resumed: {}",
        if resumed.is_empty() {
            "none".to_string()
        } else {
            resumed.join(", ")
        }
    );
    if !gone.is_empty() {
        text.push_str(&format!(" (no longer scheduled: {})", gone.join(", ")));
    }
    text
}

/// Puts one side's guards back to `before` (as read at the start of this
/// run), and closes the ledger states this run saved.
pub async fn restore_guards(
    ctx: &Context,
    db: &Database,
    table: Option<&SwitchTable>,
    ledger: &GuardLedger,
    side: Side,
    before: &[GuardValue],
) -> Result<String, PhaseError> {
    for g in before {
        if let Some(v) = &g.value {
            db.set_guard(table, g.kind, &g.name, v).await?;
        }
    }
    let mine: Vec<i64> = ledger
        .open_states()
        .await?
        .into_iter()
        .filter(|s| s.run_id == ctx.run_id && s.side == side)
        .map(|s| s.id)
        .collect();
    ledger.mark_restored(&mine, ctx.run_id).await?;
    Ok(describe_guards(before))
}

/// Pauses again the jobs whose holds this run released, with new holds, so
/// the next `cutover` resumes them; `; pg_cron jobs ... paused again` or "".
async fn rehold(
    ctx: &Context,
    target: &Database,
    ledger: &GuardLedger,
    released: &[ReleasedHold],
) -> Result<String, PhaseError> {
    let names: Vec<String> = released
        .iter()
        .filter(|r| r.found)
        .map(|r| r.name.clone())
        .collect();
    if names.is_empty() {
        return Ok(String::new());
    }
    let outcome = target
        .hold_active_cron_jobs(ledger, ctx.run_id, Some(&names))
        .await?
        .unwrap_or_default();
    Ok(format!(
        "; pg_cron jobs paused again until cutover: {}",
        outcome
            .held
            .iter()
            .map(|j| j.label())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

#[allow(clippy::too_many_arguments)]
async fn undo(
    ctx: &Context,
    change: Change,
    source: &Database,
    target: &Database,
    table: Option<&SwitchTable>,
    frontend: &Option<FrontendPlan>,
    guard_ledger: &GuardLedger,
    frontend_ledger: &FrontendLedger,
) -> CheckItem {
    match change {
        Change::Freeze => match source.lift_freeze().await {
            Ok(lifted) => {
                if let Some(ledger) = ctx.open_ledger() {
                    let _ = ledger.mark_freezes_lifted(ctx.run_id).await;
                }
                CheckItem::new(
                    "undo-freeze",
                    "Undo: write freeze lifted",
                    Status::Pass,
                    format!("{} source tables take writes again", lifted.len()),
                )
            }
            Err(e) => CheckItem::new(
                "undo-freeze",
                "Undo: write freeze lifted",
                Status::Fail,
                e.to_string(),
            )
            .with_hint("run `cutover rollback`: it lifts the freeze"),
        },
        Change::TargetGuards(before, released) => {
            let restored =
                match restore_guards(ctx, target, table, guard_ledger, Side::Target, &before).await
                {
                    Ok(d) => rehold(ctx, target, guard_ledger, &released)
                        .await
                        .map(|held| format!("{d}{held}")),
                    Err(e) => Err(e),
                };
            match restored {
                Ok(d) => CheckItem::new(
                    "undo-guards-target",
                    "Undo: target guards restored",
                    Status::Pass,
                    d,
                ),
                Err(e) => CheckItem::new(
                    "undo-guards-target",
                    "Undo: target guards restored",
                    Status::Fail,
                    e.message,
                )
                .with_hint("run `cutover rollback`: the saved states are in the ledger"),
            }
        }
        Change::Frontend(before) => {
            let Some(f) = frontend else {
                return CheckItem::new(
                    "undo-frontend",
                    "Undo: frontend restored",
                    Status::Skip,
                    "no frontend",
                );
            };
            match f.client.restore(&before).await {
                Ok(notes) => {
                    let mine: Vec<i64> = match frontend_ledger.open_states().await {
                        Ok(states) => states
                            .into_iter()
                            .filter(|s| s.run_id == ctx.run_id)
                            .map(|s| s.id)
                            .collect(),
                        Err(_) => Vec::new(),
                    };
                    let _ = frontend_ledger.mark_restored(&mine, ctx.run_id).await;
                    CheckItem::new(
                        "undo-frontend",
                        "Undo: frontend restored",
                        if notes.is_empty() { Status::Pass } else { Status::Warn },
                        if notes.is_empty() {
                            format!(
                                "previous values of {} put back{}",
                                before.env.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", "),
                                before.deployment.as_ref().map(|d| format!(", deployment {} live again", d.id)).unwrap_or_default()
                            )
                        } else {
                            notes.join("; ")
                        },
                    )
                }
                Err(e) => CheckItem::new("undo-frontend", "Undo: frontend restored", Status::Fail, e.to_string())
                    .with_hint("run `cutover rollback` once the provider answers: the previous values are in the ledger"),
            }
        }
        Change::SourceGuards(before) => {
            match restore_guards(ctx, source, table, guard_ledger, Side::Source, &before).await {
                Ok(d) => CheckItem::new(
                    "undo-guards-source",
                    "Undo: source guards restored",
                    Status::Pass,
                    format!("back to {d}"),
                ),
                Err(e) => CheckItem::new(
                    "undo-guards-source",
                    "Undo: source guards restored",
                    Status::Fail,
                    e.message,
                )
                .with_hint("run `cutover rollback`: the saved states are in the ledger"),
            }
        }
    }
}
