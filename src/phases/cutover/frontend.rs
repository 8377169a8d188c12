//! The frontend part of the switch: the provider's client and the values
//! `[frontend.env]` sets, the snapshot saved before, the switch and its undo.

use std::collections::BTreeMap;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::context::{Context, name_looks_secret};
use crate::frontend::{Frontend, Snapshot};
use crate::manifest::{FrontendProvider, FrontendSection, expand};
use crate::pg::release::{FrontendItem, FrontendLedger};
use crate::redact::SecretText;
use crate::report::{CheckItem, Status};

use super::super::PhaseError;
use super::PROVIDER_TIMEOUT;
use super::steps::{SavedStates, Undo, restore_frontend};

const SWITCH: (&str, &str) = ("frontend-switch", "Frontend switched to the target");
const UNDO: (&str, &str) = ("undo-frontend", "Undo: frontend restored");

/// The `[frontend.env]` values, expanded, plus the provider token.
pub(crate) struct FrontendPlan {
    pub(super) client: Frontend,
    pub(super) values: BTreeMap<String, String>,
    pub(super) project: String,
}

impl FrontendPlan {
    /// `A, B` : the variables set.
    pub(super) fn names(&self) -> String {
        self.values.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// The provider's API token, and the input that carries it.
pub(crate) fn provider_token<'a>(
    ctx: &'a Context,
    section: &FrontendSection,
) -> (Option<&'a str>, &'static str) {
    match section.provider {
        FrontendProvider::Vercel => (
            ctx.settings.vercel_token.as_ref().map(SecretText::expose),
            "vercel-token",
        ),
        FrontendProvider::CloudflarePages => (
            ctx.settings
                .cloudflare_api_token
                .as_ref()
                .map(SecretText::expose),
            "cloudflare-api-token",
        ),
    }
}

/// The frontend switch to make, or `None` without `[frontend]`; an error,
/// before anything changed, when a token or a variable is missing.
pub(crate) fn frontend_plan(ctx: &Context) -> Result<Option<FrontendPlan>, PhaseError> {
    let Some(section) = &ctx.manifest.frontend else {
        return Ok(None);
    };
    let (token, input) = provider_token(ctx, section);
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

/// The frontend switch's row, and what undoes it once the snapshot is
/// saved (set even when setting or publishing then failed). `Err` when the
/// ledger refused the snapshot: the phase stops there.
pub(super) async fn switch(
    ctx: &Context,
    ledger: &FrontendLedger,
    frontend: Option<&FrontendPlan>,
) -> Result<(CheckItem, Option<Undo>), PhaseError> {
    let (id, title) = SWITCH;
    let Some(f) = frontend else {
        let item = CheckItem::new(id, title, Status::Skip, "no [frontend] in the manifest");
        return Ok((item, None));
    };
    let names: Vec<String> = f.values.keys().cloned().collect();
    let before = match f.client.snapshot(&names).await {
        Ok(before) => before,
        Err(e) => return Ok((CheckItem::new(id, title, Status::Fail, e.to_string()), None)),
    };
    save_frontend(ctx, ledger, f.client.provider(), &f.project, &before).await?;
    let result = match f.client.set_env(&f.values, &before).await {
        Ok(()) => f.client.publish(&before).await,
        Err(e) => Err(e),
    };
    let item = match result {
        Ok(published) => switched_row(f, &before, &published.note),
        Err(e) => CheckItem::new(id, title, Status::Fail, e.to_string())
            .with_hint("check the provider token's access and the project name in [frontend]"),
    };
    Ok((item, Some(Undo::Frontend(before))))
}

/// The row of a switch done: a warning when previous values were not
/// readable, so not saved for rollback.
fn switched_row(f: &FrontendPlan, before: &Snapshot, published: &str) -> CheckItem {
    let unreadable: Vec<&str> = before
        .env
        .iter()
        .filter(|e| !e.readable)
        .map(|e| e.name.as_str())
        .collect();
    let mut evidence = format!(
        "{} set on {} project {}; {published}",
        f.names(),
        f.client.provider(),
        f.project,
    );
    if !unreadable.is_empty() {
        evidence.push_str(&format!(
            "; previous values of {} were not readable (sensitive) and are not saved for rollback",
            unreadable.join(", ")
        ));
    }
    let status = if unreadable.is_empty() {
        Status::Pass
    } else {
        Status::Warn
    };
    CheckItem::new(SWITCH.0, SWITCH.1, status, evidence)
}

/// Undoes the switch: `before` put back, this run's saved states closed.
pub(super) async fn undo(
    ctx: &Context,
    ledger: &FrontendLedger,
    frontend: Option<&FrontendPlan>,
    before: Snapshot,
) -> CheckItem {
    let (id, title) = UNDO;
    let Some(f) = frontend else {
        return CheckItem::new(id, title, Status::Skip, "no frontend");
    };
    match restore_frontend(ctx, &f.client, ledger, &before, SavedStates::ThisRun).await {
        // The states stay open when the ledger refused: `rollback` finds them.
        Ok((notes, _marked)) if notes.is_empty() => CheckItem::new(
            id,
            title,
            Status::Pass,
            format!(
                "previous values of {} put back{}",
                variable_names(&before, false),
                before
                    .deployment
                    .as_ref()
                    .map(|d| format!(", deployment {} live again", d.id))
                    .unwrap_or_default()
            ),
        ),
        Ok((notes, _marked)) => CheckItem::new(id, title, Status::Warn, notes.join("; ")),
        Err(e) => CheckItem::new(id, title, Status::Fail, e.to_string()).with_hint(
            "run `cutover rollback` once the provider answers: the previous values are in the ledger",
        ),
    }
}

/// `A, B`: the variables of `snapshot`, only the readable ones when
/// `readable_only`.
pub(crate) fn variable_names(snapshot: &Snapshot, readable_only: bool) -> String {
    snapshot
        .env
        .iter()
        .filter(|e| e.readable || !readable_only)
        .map(|e| e.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Measures the frontend's part of the freeze, from its switch to the end
/// of the smoke checks.
#[derive(Default)]
pub(super) struct FrontendClock {
    started: Option<Instant>,
    took: Option<std::time::Duration>,
}

impl FrontendClock {
    /// The switch starts.
    pub(super) fn start(&mut self) {
        self.started = Some(Instant::now());
    }

    /// The smoke checks ended.
    pub(super) fn stop(&mut self) {
        self.took = self.started.map(|s| s.elapsed());
    }

    /// How long it took: until now when the smoke checks were not reached.
    pub(super) fn took(&self) -> std::time::Duration {
        self.took
            .or_else(|| self.started.map(|s| s.elapsed()))
            .unwrap_or_default()
    }
}
