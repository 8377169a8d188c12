//! The target project's URL and client keys, read from the Management API
//! (`GET /v1/projects/{ref}/api-keys?reveal=true`) so no one copies them by
//! hand: `[frontend.env]` values may name them as `${supabase.url}`,
//! `${supabase.anon_key}` and `${supabase.publishable_key}`, and the phases
//! that read them set the step's outputs `target-url`, `target-anon-key` and
//! `target-publishable-key`. The keys are masked in the job log
//! (`::add-mask::`) and never written to the summary, the report or the
//! ledger; the service-role and secret keys are never read into either.

use std::collections::BTreeMap;

use crate::context::Context;
use crate::report::{CheckItem, PhaseReport, Status};

use super::PhaseError;
use super::functions::{api_stop, management_client};

/// The names `[frontend.env]` may use, and the outputs they feed.
pub(crate) const NAMES: [(&str, &str); 3] = [
    ("supabase.url", "target-url"),
    ("supabase.anon_key", "target-anon-key"),
    ("supabase.publishable_key", "target-publishable-key"),
];

/// Whether `[frontend.env]` names any of [`NAMES`].
pub(crate) fn referenced(ctx: &Context) -> bool {
    ctx.manifest.frontend.as_ref().is_some_and(|f| {
        f.env.values().any(|v| {
            crate::manifest::env_refs(v)
                .iter()
                .any(|r| r.starts_with("supabase."))
        })
    })
}

/// Reads the target's URL and keys into `ctx.project_values` (once per
/// run), masks the keys, and adds the outputs and a checklist row to
/// `report`.
pub(crate) async fn load(ctx: &mut Context, report: &mut PhaseReport) -> Result<(), PhaseError> {
    if ctx.project_values.is_empty() {
        let (client, target, _) = management_client(ctx, report.phase.as_str(), false)?;
        let keys = client
            .api_keys(&target)
            .await
            .map_err(|e| api_stop(ctx, e, "target-project-ref"))?;
        let mut values = BTreeMap::new();
        values.insert(
            "supabase.url".to_string(),
            format!("https://{target}.supabase.co"),
        );
        for key in keys {
            let name = match (key.kind.as_deref(), key.name.as_str()) {
                (Some("legacy") | None, "anon") => "supabase.anon_key",
                (Some("publishable"), _) => "supabase.publishable_key",
                _ => continue, // service_role and secret keys: never read in
            };
            if let Some(value) = key.api_key.filter(|v| !v.is_empty()) {
                values.entry(name.to_string()).or_insert(value);
            }
        }
        for (name, value) in &values {
            if name != "supabase.url" {
                ctx.console.add_mask(value);
            }
        }
        ctx.project_values = values;
    }
    let found: Vec<&str> = NAMES
        .iter()
        .filter(|(n, _)| ctx.project_values.contains_key(*n))
        .map(|(_, output)| *output)
        .collect();
    for (name, output) in NAMES {
        if let Some(v) = ctx.project_values.get(name) {
            report.outputs.push((output.to_string(), v.clone()));
        }
    }
    report.check(CheckItem::new(
        "target-keys",
        "Target URL and client keys read",
        Status::Pass,
        format!(
            "GET /api-keys: outputs {} set (keys masked, never written to the summary or the ledger)",
            found.join(", ")
        ),
    ));
    Ok(())
}
