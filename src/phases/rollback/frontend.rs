//! Rollback Level 1, the frontend: the production variables `cutover` saved
//! put back and production returned to the deployment live before, through
//! the same restore as `cutover`'s own undo.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::context::{Context, name_looks_secret};
use crate::frontend::{DeploymentRef, EnvValue, Frontend, Snapshot};
use crate::manifest::FrontendSection;
use crate::pg::release::{FrontendItem, FrontendLedger, SavedFrontend};
use crate::report::{CheckItem, ReportTable, Status};

use super::super::cutover::steps::{SavedStates, restore_frontend};
use super::super::cutover::{PROVIDER_TIMEOUT, provider_token, variable_names};

const ID: &str = "rollback-frontend";
const TITLE: &str = "Frontend back to the source";

/// Puts back the values of secret-looking variables, which the ledger does
/// not keep, from `[frontend.source_env]`, each only if its sha-256 is the one
/// `cutover` recorded. Returns a note per variable left as it is.
fn fill_secret_values(
    ctx: &Context,
    snapshot: &mut Snapshot,
    saved: &[&SavedFrontend],
) -> Vec<String> {
    let mut notes = Vec::new();
    let source_env = ctx
        .manifest
        .frontend
        .as_ref()
        .map(|f| f.source_env.clone())
        .unwrap_or_default();
    for e in snapshot.env.iter_mut() {
        let Some(recorded) = secret_digest(saved, &e.name) else {
            continue;
        };
        let value = source_env
            .get(&e.name)
            .and_then(|raw| crate::manifest::expand(raw, |n| ctx.env_var(n)).ok());
        match value {
            None => notes.push(format!(
                "{}: its old value is a secret the ledger does not keep; set [frontend.source_env] {} = \"${{VAR}}\" to restore it by value",
                e.name, e.name
            )),
            Some(v) if hex::encode(Sha256::digest(v.as_bytes())) != recorded => notes.push(format!(
                "{}: the value given in [frontend.source_env] is not the one live before cutover (sha-256 differs); left as it is",
                e.name
            )),
            Some(v) => {
                e.value = Some(v);
                e.readable = true;
            }
        }
    }
    notes
}

/// The sha-256 `cutover` recorded of variable `name`, when its value is a
/// secret the ledger does not keep.
fn secret_digest<'a>(saved: &[&'a SavedFrontend], name: &str) -> Option<&'a str> {
    let state = saved
        .iter()
        .find(|s| s.item == FrontendItem::Env && s.name == name)?;
    let detail = &state.detail;
    if detail
        .get("secret_not_kept")
        .and_then(serde_json::Value::as_bool)
        != Some(true)
    {
        return None;
    }
    detail.get("sha256").and_then(serde_json::Value::as_str)
}

/// The snapshot `cutover` took, as the ledger saved it.
fn snapshot_from(saved: &[&SavedFrontend]) -> Snapshot {
    let mut snapshot = Snapshot::default();
    for s in saved {
        let text = |key: &str| {
            s.detail
                .get(key)
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        };
        match s.item {
            FrontendItem::Deployment => {
                snapshot.deployment = Some(DeploymentRef {
                    id: s.name.clone(),
                    url: s.previous.clone(),
                })
            }
            FrontendItem::Env => snapshot.env.push(EnvValue {
                name: s.name.clone(),
                value: s.previous.clone(),
                present: s
                    .detail
                    .get("present")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(s.previous.is_some() || !s.readable),
                readable: s.readable,
                id: text("id"),
                kind: text("type"),
            }),
        }
    }
    snapshot
}

/// A value for the Restored table: secrets masked.
pub(super) fn show_value(name: &str, value: Option<&str>) -> String {
    match value {
        None => "(absent)".into(),
        Some(_) if name_looks_secret(name) => crate::redact::MASK.into(),
        Some(v) => v.to_string(),
    }
}

/// The Restored table's row of one frontend variable; `unreadable` says
/// why a value cannot be shown.
pub(super) fn variable_row(
    name: &str,
    readable: bool,
    value: Option<&str>,
    unreadable: &str,
) -> [String; 3] {
    [
        format!("frontend {name}"),
        "(target value)".into(),
        if readable {
            show_value(name, value)
        } else {
            unreadable.into()
        },
    ]
}

/// The status and evidence of the frontend row, built project by project.
struct Verdict {
    status: Status,
    evidence: Vec<String>,
}

impl Verdict {
    fn fail(&mut self, why: String) {
        self.status = Status::Fail;
        self.evidence.push(why);
    }

    /// Notes that make a passing row a warning.
    fn warn(&mut self, notes: Vec<String>) {
        if notes.is_empty() {
            return;
        }
        if self.status == Status::Pass {
            self.status = Status::Warn;
        }
        self.evidence.extend(notes);
    }
}

/// The provider's client for the manifest's `[frontend]`, or the failed row.
fn client(ctx: &Context) -> Result<(Frontend, &FrontendSection), CheckItem> {
    let Some(section) = &ctx.manifest.frontend else {
        return Err(CheckItem::new(
            ID,
            TITLE,
            Status::Fail,
            "the ledger holds frontend settings but the manifest has no [frontend]",
        )
        .with_hint("restore the manifest's [frontend] section as it was at cutover"));
    };
    let (token, input) = provider_token(ctx, section);
    let Some(token) = token else {
        return Err(CheckItem::new(
            ID,
            TITLE,
            Status::Fail,
            format!("{} is not set", ctx.settings.label(input)),
        )
        .with_hint(format!("pass `{input}` to the rollback run")));
    };
    match Frontend::new(section, token, PROVIDER_TIMEOUT) {
        Ok(c) => Ok((c, section)),
        Err(e) => Err(CheckItem::new(ID, TITLE, Status::Fail, e.to_string())),
    }
}

/// The saved states by provider and project.
fn by_project<'a>(
    saved: &[&'a SavedFrontend],
) -> BTreeMap<(String, String), Vec<&'a SavedFrontend>> {
    let mut by_project: BTreeMap<(String, String), Vec<&SavedFrontend>> = BTreeMap::new();
    for s in saved {
        by_project
            .entry((s.provider.clone(), s.project.clone()))
            .or_default()
            .push(s);
    }
    by_project
}

/// Level 1's frontend row: every project's saved settings put back.
pub(super) async fn rollback_frontend(
    ctx: &Context,
    ledger: &FrontendLedger,
    saved: &[&SavedFrontend],
    restored: &mut ReportTable,
) -> CheckItem {
    let (client, section) = match client(ctx) {
        Ok(found) => found,
        Err(item) => return item,
    };
    let mut verdict = Verdict {
        status: Status::Pass,
        evidence: Vec::new(),
    };
    for ((provider, project), states) in by_project(saved) {
        if provider != client.provider() || project != section.project {
            verdict.fail(format!(
                "saved settings are for {provider} project {project}, the manifest names {} project {}",
                client.provider(),
                section.project
            ));
            continue;
        }
        let mut snapshot = snapshot_from(&states);
        verdict.warn(fill_secret_values(ctx, &mut snapshot, &states));
        let ids: Vec<i64> = states.iter().map(|s| s.id).collect();
        let put_back =
            restore_frontend(ctx, &client, ledger, &snapshot, SavedStates::These(&ids)).await;
        match put_back {
            Ok((notes, marked)) => {
                for row in restored_rows(&snapshot) {
                    restored.push(row);
                }
                if let Err(e) = marked {
                    verdict.fail(e.to_string());
                }
                verdict
                    .evidence
                    .push(restored_evidence(&project, &snapshot));
                verdict.warn(notes);
            }
            Err(e) => verdict.fail(e.to_string()),
        }
    }
    let item = CheckItem::new(ID, TITLE, verdict.status, verdict.evidence.join("; "));
    if verdict.status == Status::Fail {
        item.with_hint("re-run rollback once the provider answers: the saved settings stay in the ledger until restored")
    } else {
        item
    }
}

/// The Restored table's rows of a snapshot put back.
fn restored_rows(snapshot: &Snapshot) -> Vec<[String; 3]> {
    let mut rows: Vec<[String; 3]> = snapshot
        .env
        .iter()
        .map(|e| {
            variable_row(
                &e.name,
                e.readable,
                e.value.as_deref(),
                "not restorable (unreadable)",
            )
        })
        .collect();
    if let Some(d) = &snapshot.deployment {
        rows.push([
            "frontend production deployment".into(),
            "(cutover's)".into(),
            format!(
                "{}{}",
                d.id,
                d.url
                    .as_deref()
                    .map(|u| format!(" ({u})"))
                    .unwrap_or_default()
            ),
        ]);
    }
    rows
}

/// `project: A, B restored, production back on deployment d`.
fn restored_evidence(project: &str, snapshot: &Snapshot) -> String {
    format!(
        "{project}: {} restored{}",
        variable_names(snapshot, true),
        snapshot
            .deployment
            .as_ref()
            .map(|d| format!(", production back on deployment {}", d.id))
            .unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(
        item: FrontendItem,
        name: &str,
        previous: Option<&str>,
        readable: bool,
    ) -> SavedFrontend {
        SavedFrontend {
            id: 1,
            run_id: uuid::Uuid::nil(),
            provider: "vercel".into(),
            project: "web".into(),
            item,
            name: name.into(),
            previous: previous.map(str::to_string),
            readable,
            detail: serde_json::json!({"id": "env1", "type": "encrypted"}),
        }
    }

    #[test]
    fn the_saved_states_make_the_snapshot_cutover_took() {
        let url = saved(FrontendItem::Env, "API_URL", Some("https://old"), true);
        let key = saved(FrontendItem::Env, "SECRET_KEY", None, false);
        let deployment = saved(FrontendItem::Deployment, "dpl_1", Some("old.app"), true);
        let snapshot = snapshot_from(&[&url, &key, &deployment]);
        assert_eq!(snapshot.env.len(), 2);
        assert!(snapshot.env[0].present && snapshot.env[1].present);
        assert_eq!(snapshot.env[0].id.as_deref(), Some("env1"));
        assert_eq!(snapshot.deployment.as_ref().unwrap().id, "dpl_1");
        let rows = restored_rows(&snapshot);
        assert_eq!(rows[0][2], "https://old");
        assert_eq!(rows[1][2], "not restorable (unreadable)");
        assert_eq!(rows[2][2], "dpl_1 (old.app)");
        assert_eq!(
            restored_evidence("web", &snapshot),
            "web: API_URL restored, production back on deployment dpl_1"
        );
    }

    #[test]
    fn a_failure_outranks_a_warning() {
        let mut verdict = Verdict {
            status: Status::Pass,
            evidence: Vec::new(),
        };
        verdict.warn(Vec::new());
        assert_eq!(verdict.status, Status::Pass);
        verdict.fail("down".into());
        verdict.warn(vec!["note".into()]);
        assert_eq!(verdict.status, Status::Fail);
        assert_eq!(verdict.evidence, ["down", "note"]);
    }
}
