//! `[project_settings]` in `config`: the Supabase project settings a
//! database copy leaves behind (Auth URLs and SMTP, the Data API's exposed
//! schemas, Realtime and Storage limits), set on the target through the
//! Management API and shown before → after like the `[config]` rows.
//!
//! Everything is read and checked before anything is written: every key
//! must exist in its section's current answer (else an error naming it,
//! with the closest key), and a key whose name looks secret (`smtp_pass`,
//! `*_secret`, `*_key`, ...) may only come from a `${VAR}`; its value is
//! masked everywhere and compared with the digest the API answers.

use serde_json::{Map, Value};

use crate::cells;
use crate::context::Context;
use crate::manifest::expand;
use crate::redact::{MASK, name_looks_secret};
use crate::report::Cell;
use crate::report::{CheckItem, PhaseReport, ReportTable, Status, count};
use crate::supabase::settings::SettingsSection;
use crate::supabase::{ManagementClient, digest_matches};

use super::PhaseError;
use super::functions::{api_stop, management_client};

/// One key the manifest sets.
#[derive(Clone)]
struct Desired {
    section: SettingsSection,
    key: String,
    value: Value,
    secret: bool,
}

impl Desired {
    fn label(&self) -> String {
        format!("{}.{}", self.section.name(), self.key)
    }
}

/// Whether a settings key holds a secret (the API answers it as a digest).
fn key_is_secret(key: &str) -> bool {
    name_looks_secret(key) || key.ends_with("_pass")
}

/// The manifest's keys with `${VAR}`s expanded; secret values registered
/// with the redactor. A secret written literally, or an unset variable, is
/// an error naming the key.
fn desired(ctx: &mut Context) -> Result<Vec<Desired>, PhaseError> {
    let settings = ctx.manifest.project_settings.clone();
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for section in SettingsSection::ALL {
        let keys = match section {
            SettingsSection::Auth => &settings.auth,
            SettingsSection::Postgrest => &settings.postgrest,
            SettingsSection::Realtime => &settings.realtime,
            SettingsSection::Storage => &settings.storage,
        };
        for (key, raw) in keys {
            let secret = key_is_secret(key);
            let label = format!("[project_settings.{}] {key}", section.name());
            let value = match raw {
                toml::Value::String(text) => {
                    if secret && crate::manifest::env_refs(text).is_empty() {
                        problems.push(format!(
                            "{label} looks secret and is written in the manifest: give it as \"${{VAR}}\" and set VAR from the environment's secrets"
                        ));
                        continue;
                    }
                    match expand(text, |n| ctx.env_var(n)) {
                        Ok(v) => Value::String(v),
                        Err(missing) => {
                            problems.push(format!(
                                "{label} uses unset variables: {}",
                                missing.join(", ")
                            ));
                            continue;
                        }
                    }
                }
                other => match serde_json::to_value(other) {
                    Ok(v) => v,
                    Err(e) => {
                        problems.push(format!("{label}: {e}"));
                        continue;
                    }
                },
            };
            if secret {
                if let Value::String(v) = &value {
                    if ctx.redactor.add(v) {
                        ctx.console.add_mask(v);
                    }
                }
            }
            out.push(Desired {
                section,
                key: key.clone(),
                value,
                secret,
            });
        }
    }
    if !problems.is_empty() {
        return Err(PhaseError::new(problems.join("; ")).hint(
            "fix [project_settings] in the manifest or the step's `env:`; nothing was changed",
        ));
    }
    Ok(out)
}

/// How a current value is shown.
fn show(value: Option<&Value>, secret: bool) -> String {
    match value {
        None | Some(Value::Null) => "(unset)".into(),
        Some(_) if secret => MASK.into(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// Whether the API's current value is the one wanted: secrets by digest,
/// numbers by value (the API may answer `1000` for a `1000.0`), the rest
/// exactly.
fn holds(current: Option<&Value>, want: &Value, secret: bool) -> bool {
    match (current, want) {
        (Some(Value::String(now)), Value::String(w)) if secret => digest_matches(now, w),
        (Some(Value::Number(a)), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Some(now), w) => now == w,
        (None, Value::Null) => true,
        (None, _) => false,
    }
}

/// The closest key of `known` to `key`, for a "did you mean" hint.
fn closest<'a>(key: &str, known: impl Iterator<Item = &'a String>) -> Option<&'a String> {
    known
        .map(|k| (strsim::damerau_levenshtein(key, k), k))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// What `config` will set: the manifest's keys resolved and every section
/// they name read, decided before anything is written.
pub(crate) struct SettingsPlan {
    client: ManagementClient,
    target: String,
    wanted: Vec<Desired>,
    current: Vec<(SettingsSection, Map<String, Value>)>,
}

/// Reads and checks `[project_settings]`; `None` when it is empty. An
/// unknown key, a literal secret or an unset variable is an error.
pub(crate) async fn plan(ctx: &mut Context) -> Result<Option<SettingsPlan>, PhaseError> {
    if ctx.manifest.project_settings.is_empty() {
        return Ok(None);
    }
    let wanted = desired(ctx)?;
    let (client, target, _) = management_client(ctx, "config", false)?;
    // Read every section first: an unknown key stops the phase before any
    // section is changed.
    let mut current: Vec<(SettingsSection, Map<String, Value>)> = Vec::new();
    for section in SettingsSection::ALL {
        if wanted.iter().any(|d| d.section == section) {
            let now = client
                .settings(&target, section)
                .await
                .map_err(|e| api_stop(ctx, e, "target-project-ref"))?;
            current.push((section, now));
        }
    }
    let plan = SettingsPlan {
        client,
        target,
        wanted,
        current,
    };
    let unknown: Vec<String> = plan
        .wanted
        .iter()
        .filter(|d| !plan.now_of(d.section).contains_key(&d.key))
        .map(|d| match closest(&d.key, plan.now_of(d.section).keys()) {
            Some(k) => format!("{} (did you mean {k}?)", d.label()),
            None => d.label(),
        })
        .collect();
    if !unknown.is_empty() {
        return Err(PhaseError::new(format!(
            "[project_settings] names settings the Management API does not answer for `{}`: {}",
            plan.target,
            unknown.join(", ")
        ))
        .hint("use the keys of GET /v1/projects/{ref}/config/auth, /postgrest, /config/realtime or /config/storage; nothing was changed"));
    }
    Ok(Some(plan))
}

impl SettingsPlan {
    fn now_of(&self, section: SettingsSection) -> &Map<String, Value> {
        &self
            .current
            .iter()
            .find(|(s, _)| *s == section)
            .expect("every section with a key was read")
            .1
    }
}

/// Sets the planned settings on the target and adds its rows and table to
/// `report`.
pub(crate) async fn apply(
    ctx: &mut Context,
    plan: SettingsPlan,
    report: &mut PhaseReport,
) -> Result<(), PhaseError> {
    let wanted = &plan.wanted;
    let now_of = |section| plan.now_of(section);
    let mut table = ReportTable::new("Project settings", &["Setting", "Before", "After", ""]);
    let changes: Vec<&Desired> = wanted
        .iter()
        .filter(|d| !holds(now_of(d.section).get(&d.key), &d.value, d.secret))
        .collect();
    let dry = ctx.settings.dry_run;
    if dry || changes.is_empty() {
        for d in wanted {
            let changing = changes.iter().any(|c| c.label() == d.label());
            table.push(cells![
                d.label(),
                show(now_of(d.section).get(&d.key), d.secret),
                if changing {
                    show(Some(&d.value), d.secret)
                } else {
                    "unchanged".into()
                },
                if changing {
                    Cell::from("would change")
                } else {
                    Cell::verdict(Status::Pass)
                },
            ]);
        }
        report.check(CheckItem::new(
            "project-settings",
            "Project settings set on the target",
            if dry { Status::Skip } else { Status::Pass },
            if dry {
                format!(
                    "dry-run: {} of {} would change; nothing was changed",
                    changes.len(),
                    count(wanted.len(), "setting", "settings")
                )
            } else {
                format!(
                    "all {} already as the manifest says",
                    count(wanted.len(), "setting", "settings")
                )
            },
        ));
        report.tables.push(table);
        return Ok(());
    }

    let failures = patch_and_verify(
        ctx,
        &plan.client,
        &plan.target,
        wanted,
        &changes,
        &plan.current,
        &mut table,
    )
    .await?;
    report.check(if failures.is_empty() {
        CheckItem::new(
            "project-settings",
            "Project settings set on the target",
            Status::Pass,
            format!(
                "{} changed and read back ({}); {} already right",
                count(changes.len(), "setting", "settings"),
                changes.iter().map(|c| c.label()).collect::<Vec<_>>().join(", "),
                wanted.len() - changes.len()
            ),
        )
    } else {
        CheckItem::new(
            "project-settings",
            "Project settings set on the target",
            Status::Fail,
            format!("read back with another value: {}", failures.join(", ")),
        )
        .with_hint("the API accepted the change but answers another value (a plan limit, or a value it normalises): check the project's settings page, then re-run `config`")
    });
    report.tables.push(table);
    Ok(())
}

/// Patches each section with its changed keys, reads it back, and fills the
/// before → after table. Returns the settings read back with another value.
async fn patch_and_verify(
    ctx: &Context,
    client: &ManagementClient,
    target: &str,
    wanted: &[Desired],
    changes: &[&Desired],
    current: &[(SettingsSection, Map<String, Value>)],
    table: &mut ReportTable,
) -> Result<Vec<String>, PhaseError> {
    let mut failures = Vec::new();
    for (section, before) in current {
        let patch: Map<String, Value> = changes
            .iter()
            .filter(|c| c.section == *section)
            .map(|c| (c.key.clone(), c.value.clone()))
            .collect();
        let after = if patch.is_empty() {
            before.clone()
        } else {
            client
                .patch_settings(target, *section, &patch)
                .await
                .map_err(|e| api_stop(ctx, e, "target-project-ref"))?;
            client
                .settings(target, *section)
                .await
                .map_err(|e| api_stop(ctx, e, "target-project-ref"))?
        };
        for d in wanted.iter().filter(|d| d.section == *section) {
            let changed = patch.contains_key(&d.key);
            let ok = holds(after.get(&d.key), &d.value, d.secret);
            if !ok {
                failures.push(d.label());
            }
            table.push(cells![
                d.label(),
                show(before.get(&d.key), d.secret),
                if changed || !ok {
                    show(after.get(&d.key), d.secret)
                } else {
                    "unchanged".into()
                },
                Cell::pass_if(ok),
            ]);
        }
    }
    Ok(failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_digest_and_numbers_by_value() {
        let digest = crate::supabase::sha256_hex("hunter2-smtp");
        assert!(holds(
            Some(&Value::String(digest.clone())),
            &Value::String("hunter2-smtp".into()),
            true
        ));
        assert!(!holds(
            Some(&Value::String(digest)),
            &Value::String("other".into()),
            true
        ));
        assert!(holds(
            Some(&serde_json::json!(1000)),
            &serde_json::json!(1000.0),
            false
        ));
        assert!(!holds(None, &serde_json::json!("x"), false));
        assert!(key_is_secret("smtp_pass"));
        assert!(key_is_secret("security_captcha_secret"));
        assert!(!key_is_secret("site_url"));
    }

    #[test]
    fn the_closest_key_is_suggested() {
        let keys = ["site_url".to_string(), "uri_allow_list".to_string()];
        assert_eq!(
            closest("site_ur", keys.iter()).map(String::as_str),
            Some("site_url")
        );
        assert_eq!(closest("nothing_like_it", keys.iter()), None);
    }
}
