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
use crate::report::{CheckItem, PhaseReport, ReportTable, Status, count};
use crate::supabase::{ManagementClient, NewSecret, digest_matches};

use super::PhaseError;
use super::functions::{api_stop, management_client, open_ledger};

/// The prefix of names the platform manages.
pub const PLATFORM_PREFIX: &str = "SUPABASE_";

/// Runs `secrets`.
pub async fn run(ctx: &mut Context) -> Result<PhaseReport, PhaseError> {
    let mut report = PhaseReport::new("secrets");
    if ctx.manifest.secrets.required.is_empty() {
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
        return Err(one_project(ctx, &target));
    }
    let plan = plan(ctx)?;

    // Leak guard first: nothing is written when a value equals the source's.
    let source_digests = digests(ctx, &client, &source, "source-project-ref").await?;
    let leaking = leaking(&plan.values, &source_digests);
    let before = digests(ctx, &client, &target, "target-project-ref").await?;
    let set = if !leaking.is_empty() {
        "no (blocked)"
    } else if ctx.settings.dry_run {
        "no (dry-run)"
    } else {
        "yes"
    };
    report
        .tables
        .push(secrets_table(&plan, &source_digests, &before, set));
    if !plan.platform.is_empty() {
        report.check(CheckItem::new(
            "secrets-platform",
            "Platform-managed names left to Supabase",
            Status::Pass,
            format!(
                "{}: every function gets these from the platform; the API refuses to set SUPABASE_* names",
                plan.platform.join(", ")
            ),
        ));
    }
    if !leaking.is_empty() {
        block_leak(&leaking, &mut report);
        return Ok(report);
    }
    report.check(CheckItem::new(
        "secrets-differ-from-source",
        "No source values in target",
        Status::Pass,
        format!(
            "{} values compared with `{source}`'s digests: none equal",
            plan.values.len()
        ),
    ));
    let changed = plan
        .values
        .iter()
        .filter(|(n, v)| !before.get(*n).is_some_and(|d| digest_matches(d, v)))
        .count();
    let secrets = count(plan.values.len(), "secret", "secrets");
    if ctx.settings.dry_run {
        report.check(CheckItem::new(
            "secrets-set",
            "Required secrets set on the target",
            Status::Skip,
            format!("dry-run: would set {secrets} in one call ({changed} new or changed)"),
        ));
        report.summary = format!(
            "Dry-run: would set {secrets} on `{target}` ({changed} new or changed); nothing was written."
        );
        return Ok(report);
    }
    set_secrets(ctx, &client, &target, &plan.values).await?;
    // Read back: every name present, with the digest of the value just set.
    let after = digests(ctx, &client, &target, "target-project-ref").await?;
    report.check(read_back_row(&plan.values, &after, &target, changed));
    report.conclude_from_checks();
    report.summary = if report.has_failures() {
        "Secrets were sent but the target does not list them all as set.".into()
    } else {
        format!(
            "Set {secrets} on `{target}` in one call ({changed} new or changed){}; none equals the source's.",
            if plan.platform.is_empty() {
                String::new()
            } else {
                format!("; {} left to the platform", plan.platform.join(", "))
            }
        )
    };
    Ok(report)
}

/// The values to set, read from the job's environment.
struct SecretsPlan {
    /// Name → value, for the names cutover sets.
    values: BTreeMap<String, String>,
    /// Names the platform manages (`SUPABASE_*`), never set.
    platform: Vec<String>,
}

/// Source and target named as one project.
fn one_project(ctx: &Context, target: &str) -> PhaseError {
    PhaseError {
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
    }
}

/// Values from the environment; platform-managed names are left out. Fails
/// when a value is missing.
fn plan(ctx: &Context) -> Result<SecretsPlan, PhaseError> {
    let mut plan = SecretsPlan {
        values: BTreeMap::new(),
        platform: Vec::new(),
    };
    let mut missing: Vec<String> = Vec::new();
    for (name, var) in &ctx.manifest.secrets.required {
        if name.starts_with(PLATFORM_PREFIX) {
            plan.platform.push(name.clone());
            continue;
        }
        match ctx.env_var(var) {
            Some(v) => {
                // Context::new registered it already; again, in case the
                // manifest changed after.
                ctx.redactor.add(&v);
                plan.values.insert(name.clone(), v);
            }
            None => missing.push(format!("{name} (from ${var})")),
        }
    }
    if missing.is_empty() {
        return Ok(plan);
    }
    Err(PhaseError {
        message: format!(
            "required secret values are missing or empty: {}",
            missing.join(", ")
        ),
        hint: Some("set each variable in the step's `env:` from the GitHub environment's secrets, e.g. `OPENAI_API_KEY: ${{ secrets.OPENAI_API_KEY }}`; nothing was set".into()),
        // A missing input is a failure (exit 1) in every phase, as in
        // preflight's required-secrets row; exit 3 is for guards.
        blocked: false,
    })
}

/// A project's secrets: name → the digest the API lists.
async fn digests(
    ctx: &Context,
    client: &ManagementClient,
    project: &str,
    project_input: &str,
) -> Result<BTreeMap<String, String>, PhaseError> {
    Ok(client
        .list_secrets(project)
        .await
        .map_err(|e| api_stop(ctx, e, project_input))?
        .into_iter()
        .map(|s| (s.name, s.value))
        .collect())
}

/// The names whose value equals the source's (by digest).
fn leaking(values: &BTreeMap<String, String>, source: &BTreeMap<String, String>) -> Vec<String> {
    values
        .iter()
        .filter(|(name, value)| {
            source
                .get(*name)
                .is_some_and(|digest| digest_matches(digest, value))
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// The table of names: whether each is set (`set`), new or changed, and
/// whether it differs from the source's.
fn secrets_table(
    plan: &SecretsPlan,
    source: &BTreeMap<String, String>,
    before: &BTreeMap<String, String>,
    set: &str,
) -> ReportTable {
    let mut table = ReportTable::new(
        "Secrets (names only; values never shown)",
        &["Secret", "Set", "Change", "Differs from source"],
    );
    for (name, value) in &plan.values {
        let change = match before.get(name) {
            None => "new",
            Some(d) if digest_matches(d, value) => "unchanged",
            Some(_) => "changed",
        };
        let differs = match source.get(name) {
            None => "yes (not on source)",
            Some(d) if digest_matches(d, value) => "**no: equals source**",
            Some(_) => "yes",
        };
        table.push([name.as_str(), set, change, differs]);
    }
    for name in &plan.platform {
        table.push([name.as_str(), "no: provided by Supabase", "—", "—"]);
    }
    table.with_note("Compared by SHA-256 digest (the Management API lists digests, not values).")
}

/// Blocks the phase: a value equals the source's.
fn block_leak(leaking: &[String], report: &mut PhaseReport) {
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
}

/// Sets every value in one call.
async fn set_secrets(
    ctx: &Context,
    client: &ManagementClient,
    target: &str,
    values: &BTreeMap<String, String>,
) -> Result<(), PhaseError> {
    if values.is_empty() {
        return Ok(());
    }
    let body: Vec<NewSecret> = values
        .iter()
        .map(|(name, value)| NewSecret {
            name: name.clone(),
            value: value.clone(),
        })
        .collect();
    client
        .create_secrets(target, &body)
        .await
        .map_err(|e| api_stop(ctx, e, "target-project-ref"))
}

/// The `secrets-set` row: every name listed after setting, with the digest
/// of the value just set.
fn read_back_row(
    values: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    target: &str,
    changed: usize,
) -> CheckItem {
    let absent: Vec<&str> = values
        .keys()
        .filter(|n| !after.contains_key(*n))
        .map(String::as_str)
        .collect();
    let stale: Vec<&str> = values
        .iter()
        .filter(|(n, v)| after.get(*n).is_some_and(|d| !digest_matches(d, v)))
        .map(|(n, _)| n.as_str())
        .collect();
    if absent.is_empty() && stale.is_empty() {
        return CheckItem::new(
            "secrets-set",
            "Required secrets set on the target",
            Status::Pass,
            format!(
                "{} listed on `{target}` with the expected digests ({changed} new or changed, set in one call)",
                count(values.len(), "secret", "secrets")
            ),
        );
    }
    let mut parts = Vec::new();
    if !absent.is_empty() {
        parts.push(format!("not listed after setting: {}", absent.join(", ")));
    }
    if !stale.is_empty() {
        parts.push(format!("listed with another digest: {}", stale.join(", ")));
    }
    CheckItem::new(
        "secrets-set",
        "Required secrets set on the target",
        Status::Fail,
        parts.join("; "),
    )
    .with_hint("re-run `secrets` (it is safe); if it persists, check the project's Edge Function secrets page")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(value: &str) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(value.as_bytes()))
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_value_equal_to_the_source_leaks() {
        let values = map(&[("A", "same-value"), ("B", "new-value")]);
        let source = map(&[("A", &sha("same-value")), ("B", &sha("old-value"))]);
        assert_eq!(leaking(&values, &source), ["A"]);
    }

    #[test]
    fn the_table_says_new_changed_and_equal() {
        let plan = SecretsPlan {
            values: map(&[("A", "aaaa"), ("B", "bbbb")]),
            platform: vec!["SUPABASE_URL".into()],
        };
        let source = map(&[("A", &sha("aaaa"))]);
        let before = map(&[("B", &sha("old!"))]);
        let table = secrets_table(&plan, &source, &before, "no (blocked)");
        assert_eq!(
            table.rows[0],
            ["A", "no (blocked)", "new", "**no: equals source**"]
        );
        assert_eq!(
            table.rows[1],
            ["B", "no (blocked)", "changed", "yes (not on source)"]
        );
        assert_eq!(table.rows[2][1], "no: provided by Supabase");
    }

    #[test]
    fn read_back_names_absent_and_stale_secrets() {
        let values = map(&[("A", "aaaa"), ("B", "bbbb")]);
        let row = read_back_row(
            &values,
            &map(&[("A", &sha("aaaa")), ("B", &sha("bbbb"))]),
            "t",
            2,
        );
        assert_eq!(row.status, Status::Pass);
        let row = read_back_row(&values, &map(&[("B", &sha("cccc"))]), "t", 2);
        assert_eq!(
            row.evidence,
            "not listed after setting: A; listed with another digest: B"
        );
    }
}
