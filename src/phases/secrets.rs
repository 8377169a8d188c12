//! `secrets`: sets the target project's Edge Function secrets from the job's
//! environment, in one bulk call, after proving none equals the source's.
//!
//! The manifest names each secret and the variable holding the target's
//! value (`[secrets.required]`). Before anything is written, the SHA-256 of
//! every value is compared with the digest the API lists for the source
//! project's secret of the same name: an equal digest means a source value
//! would land in the target (the runbook's "no source values in target"),
//! and the phase stops with nothing set. Names starting with `SUPABASE_` are
//! provided by the platform and refused by the API; they are reported, not
//! set. Values are never shown, logged or recorded: only names and whether
//! digests are equal.

use std::collections::BTreeMap;

use crate::context::Context;
use crate::report::{CheckItem, PhaseReport, ReportTable, Status};
use crate::supabase::{NewSecret, digest_matches};

use super::PhaseError;
use super::functions::{api_stop, management_client, open_ledger};

/// The prefix of names the platform manages.
pub const PLATFORM_PREFIX: &str = "SUPABASE_";

/// Runs `secrets`.
pub async fn run(ctx: &mut Context) -> Result<PhaseReport, PhaseError> {
    let mut report = PhaseReport::new("secrets");
    let required = ctx.manifest.secrets.required.clone();
    if required.is_empty() {
        report.check(CheckItem::new(
            "secrets-required",
            "Required secrets set on the target",
            Status::Skip,
            "no [secrets.required] entries: nothing to set",
        ));
        report.summary = "No [secrets.required] in the manifest: nothing to set.".into();
        return Ok(report);
    }
    let (client, target, source) = management_client(ctx, "secrets", true)?;
    open_ledger(ctx, "secrets").await?;
    let source = source.unwrap_or_default();
    if source == target {
        return Err(PhaseError {
            message: format!(
                "source-project-ref and target-project-ref are both `{target}`: the leak guard cannot tell the environments apart"
            ),
            hint: Some(format!(
                "set {} to the project copied from and {} to the one being released",
                ctx.settings.label("source-project-ref"),
                ctx.settings.label("target-project-ref")
            )),
            // Source = target fails (1) in every phase, as in preflight.
            blocked: false,
        });
    }

    // Values from the environment; platform-managed names are left out.
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let mut platform: Vec<String> = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    for (name, var) in &required {
        if name.starts_with(PLATFORM_PREFIX) {
            platform.push(name.clone());
            continue;
        }
        match ctx.env_var(var) {
            Some(v) => {
                // Context::new registered it already; again, in case the
                // manifest changed after.
                ctx.redactor.add(&v);
                values.insert(name.clone(), v);
            }
            None => missing.push(format!("{name} (from ${var})")),
        }
    }
    if !missing.is_empty() {
        return Err(PhaseError {
            message: format!(
                "required secret values are missing or empty: {}",
                missing.join(", ")
            ),
            hint: Some("set each variable in the step's `env:` from the GitHub environment's secrets, e.g. `OPENAI_API_KEY: ${{ secrets.OPENAI_API_KEY }}`; nothing was set".into()),
            // A missing input is a failure (exit 1) in every phase, as in
            // preflight's required-secrets row; exit 3 is for guards.
            blocked: false,
        });
    }

    // Leak guard first: nothing is written when a value equals the source's.
    let source_secrets: BTreeMap<String, String> = client
        .list_secrets(&source)
        .await
        .map_err(|e| api_stop(ctx, e, "source-project-ref"))?
        .into_iter()
        .map(|s| (s.name, s.value))
        .collect();
    let leaking: Vec<String> = values
        .iter()
        .filter(|(name, value)| {
            source_secrets
                .get(*name)
                .is_some_and(|digest| digest_matches(digest, value))
        })
        .map(|(name, _)| name.clone())
        .collect();
    let target_before: BTreeMap<String, String> = client
        .list_secrets(&target)
        .await
        .map_err(|e| api_stop(ctx, e, "target-project-ref"))?
        .into_iter()
        .map(|s| (s.name, s.value))
        .collect();

    let mut table = ReportTable::new(
        "Secrets (names only; values never shown)",
        &["Secret", "Set", "Change", "Differs from source"],
    );
    for (name, value) in &values {
        let change = match target_before.get(name) {
            None => "new",
            Some(d) if digest_matches(d, value) => "unchanged",
            Some(_) => "changed",
        };
        let differs = match source_secrets.get(name) {
            None => "yes (not on source)",
            Some(d) if digest_matches(d, value) => "**no: equals source**",
            Some(_) => "yes",
        };
        let set = if !leaking.is_empty() {
            "no (blocked)"
        } else if ctx.settings.dry_run {
            "no (dry-run)"
        } else {
            "yes"
        };
        table.push([name.clone(), set.into(), change.into(), differs.into()]);
    }
    for name in &platform {
        table.push([
            name.clone(),
            "no: provided by Supabase".into(),
            "—".into(),
            "—".into(),
        ]);
    }
    report.tables.push(
        table.with_note(
            "Compared by SHA-256 digest (the Management API lists digests, not values).",
        ),
    );
    if !platform.is_empty() {
        report.check(CheckItem::new(
            "secrets-platform",
            "Platform-managed names left to Supabase",
            Status::Pass,
            format!(
                "{}: every function gets these from the platform; the API refuses to set SUPABASE_* names",
                platform.join(", ")
            ),
        ));
    }

    if !leaking.is_empty() {
        report.check(
            CheckItem::new(
                "secrets-differ-from-source",
                "No source values in target",
                Status::Fail,
                format!(
                    "equal to the source project's value: {}; nothing was set",
                    leaking.join(", ")
                ),
            )
            .with_hint("issue separate credentials for the target environment and put them in its GitHub environment secrets"),
        );
        report.outcome = crate::report::Outcome::Blocked;
        report.summary = format!(
            "Blocked: {} would copy the source's value into the target; no secret was set.",
            leaking.join(", ")
        );
        return Ok(report);
    }
    report.check(CheckItem::new(
        "secrets-differ-from-source",
        "No source values in target",
        Status::Pass,
        format!(
            "{} values compared with `{source}`'s digests: none equal",
            values.len()
        ),
    ));

    let changed = values
        .iter()
        .filter(|(n, v)| !target_before.get(*n).is_some_and(|d| digest_matches(d, v)))
        .count();
    if ctx.settings.dry_run {
        report.check(CheckItem::new(
            "secrets-set",
            "Required secrets set on the target",
            Status::Skip,
            format!(
                "dry-run: would set {} in one call ({changed} new or changed)",
                crate::report::count(values.len(), "secret", "secrets")
            ),
        ));
        report.summary = format!(
            "Dry-run: would set {} on `{target}` ({changed} new or changed); nothing was written.",
            crate::report::count(values.len(), "secret", "secrets")
        );
        return Ok(report);
    }

    if !values.is_empty() {
        let body: Vec<NewSecret> = values
            .iter()
            .map(|(name, value)| NewSecret {
                name: name.clone(),
                value: value.clone(),
            })
            .collect();
        client
            .create_secrets(&target, &body)
            .await
            .map_err(|e| api_stop(ctx, e, "target-project-ref"))?;
    }

    // Read back: every name present, with the digest of the value just set.
    let target_after: BTreeMap<String, String> = client
        .list_secrets(&target)
        .await
        .map_err(|e| api_stop(ctx, e, "target-project-ref"))?
        .into_iter()
        .map(|s| (s.name, s.value))
        .collect();
    let absent: Vec<&String> = values
        .keys()
        .filter(|n| !target_after.contains_key(*n))
        .collect();
    let stale: Vec<&String> = values
        .iter()
        .filter(|(n, v)| target_after.get(*n).is_some_and(|d| !digest_matches(d, v)))
        .map(|(n, _)| n)
        .collect();
    report.check(if absent.is_empty() && stale.is_empty() {
        CheckItem::new(
            "secrets-set",
            "Required secrets set on the target",
            Status::Pass,
            format!(
                "{} listed on `{target}` with the expected digests ({changed} new or changed, set in one call)", crate::report::count(values.len(), "secret", "secrets")),
        )
    } else {
        let mut parts = Vec::new();
        if !absent.is_empty() {
            parts.push(format!(
                "not listed after setting: {}",
                absent.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        if !stale.is_empty() {
            parts.push(format!(
                "listed with another digest: {}",
                stale.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        CheckItem::new(
            "secrets-set",
            "Required secrets set on the target",
            Status::Fail,
            parts.join("; "),
        )
        .with_hint("re-run `secrets` (it is safe); if it persists, check the project's Edge Function secrets page")
    });
    report.conclude_from_checks();
    report.summary = if report.has_failures() {
        "Secrets were sent but the target does not list them all as set.".into()
    } else {
        format!(
            "Set {} on `{target}` in one call ({changed} new or changed){}; none equals the source's.",
            crate::report::count(values.len(), "secret", "secrets"),
            if platform.is_empty() {
                String::new()
            } else {
                format!("; {} left to the platform", platform.join(", "))
            }
        )
    };
    Ok(report)
}
