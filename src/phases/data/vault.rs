//! Supabase Vault in `data`: the source's secrets cannot travel as rows
//! alone (they are encrypted with the source project's root key), so the
//! manifest's `[vault] mode` says how they move:
//!
//! - `recreate`: each secret is created (or updated) on the target from the
//!   value in `[vault.secrets]`, encrypted with the target's own key;
//! - `move-root-key`: before any row moves, the target is given the source's
//!   root key (`GET`/`PUT /v1/projects/{ref}/pgsodium`), then the rows are
//!   copied verbatim;
//! - `leave` (the default): nothing moves, and the secrets are named in a
//!   warning.
//!
//! Every input is checked before anything is written, and afterwards every
//! secret must decrypt on the target to the value expected (compared as
//! sha-256 digests the servers compute; values never reach the runner's
//! output).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::context::Context;
use crate::manifest::VaultMode;
use crate::pg::Database;
use crate::pg::vault::VaultSecret;
use crate::report::Cell;
use crate::report::{CheckItem, PhaseReport, ReportTable, Status, count};
use crate::supabase::ManagementClient;

use super::super::PhaseError;
use super::super::functions::{api_stop, management_client};

const ID: &str = "vault";
const TITLE: &str = "Vault secrets decrypt on the target";

/// What the Vault step will do, decided before anything is written.
pub(crate) struct VaultPlan {
    mode: VaultMode,
    source: Vec<VaultSecret>,
    /// `recreate`: name → value (registered with the redactor).
    values: BTreeMap<String, String>,
    /// `move-root-key`: the client and the (target, source) refs.
    api: Option<(ManagementClient, String, String)>,
}

fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// Reads the source's Vault and the inputs its mode needs; `None` when
/// there is nothing to do. Errors name every missing input.
pub(crate) async fn plan(ctx: &mut Context) -> Result<Option<VaultPlan>, PhaseError> {
    let mode = ctx.manifest.vault.mode;
    let source = ctx.source("data").await?.vault_secrets().await?;
    if source.is_empty() && ctx.manifest.vault.secrets.is_empty() {
        return Ok(None);
    }
    let mut values = BTreeMap::new();
    let mut api = None;
    match mode {
        VaultMode::Leave => {}
        VaultMode::Recreate => {
            let mut missing = Vec::new();
            for s in &source {
                match &s.name {
                    Some(name) if ctx.manifest.vault.secrets.contains_key(name) => {}
                    Some(name) => missing.push(format!("{name} (not in [vault.secrets])")),
                    None => missing.push(format!(
                        "{} (unnamed: give it a name on the source)",
                        s.label()
                    )),
                }
            }
            for (name, var) in &ctx.manifest.vault.secrets {
                match ctx.env_var(var) {
                    Some(v) => {
                        if ctx.redactor.add(&v) {
                            ctx.console.add_mask(&v);
                        }
                        values.insert(name.clone(), v);
                    }
                    None => missing.push(format!("{name} (${var} is unset or empty)")),
                }
            }
            if !missing.is_empty() {
                return Err(PhaseError::new(format!(
                    "[vault] mode = \"recreate\" needs a value for every Vault secret of the source; missing: {}",
                    missing.join(", ")
                ))
                .hint("map each name to the variable holding the target's value, e.g. `[vault.secrets] stripe_key = \"STRIPE_KEY\"`, and set it in the step's `env:` from the environment's secrets; nothing was written"));
            }
        }
        VaultMode::MoveRootKey => {
            let (client, target_ref, source_ref) = management_client(ctx, "data", true)?;
            // The target's own secrets would stop decrypting with another key.
            let target = ctx.target("data", false).await?.vault_secrets().await?;
            let own: Vec<String> = target
                .iter()
                .filter(|t| t.decrypts && !source.iter().any(|s| s.id == t.id))
                .map(VaultSecret::label)
                .collect();
            if !own.is_empty() {
                return Err(PhaseError::new(format!(
                    "[vault] mode = \"move-root-key\" would make the target's own Vault secrets unreadable: {}",
                    own.join(", ")
                ))
                .hint("delete them on the target first if they are leftovers, or use mode = \"recreate\" with their values; nothing was written"));
            }
            api = Some((client, target_ref, source_ref.unwrap_or_default()));
        }
    }
    Ok(Some(VaultPlan {
        mode,
        source,
        values,
        api,
    }))
}

/// `move-root-key`, before any row moves: the target gets the source's
/// root key unless it has it already.
pub(crate) async fn move_root_key(
    ctx: &mut Context,
    plan: &VaultPlan,
    report: &mut PhaseReport,
) -> Result<(), PhaseError> {
    let Some((client, target_ref, source_ref)) = &plan.api else {
        return Ok(());
    };
    let source_key = client
        .pgsodium_root_key(source_ref)
        .await
        .map_err(|e| api_stop(ctx, e, "source-project-ref"))?;
    let target_key = client
        .pgsodium_root_key(target_ref)
        .await
        .map_err(|e| api_stop(ctx, e, "target-project-ref"))?;
    for key in [&source_key, &target_key] {
        if ctx.redactor.add(key.expose()) {
            ctx.console.add_mask(key.expose());
        }
    }
    let id = "vault-root-key";
    let title = "Vault root key moved to the target";
    if ctx.settings.dry_run {
        report.check(CheckItem::new(
            id,
            title,
            Status::Skip,
            if source_key == target_key {
                "dry-run: the target already has the source's root key".to_string()
            } else {
                "dry-run: would give the target the source's root key (PUT /pgsodium)".to_string()
            },
        ));
        return Ok(());
    }
    if source_key == target_key {
        report.check(CheckItem::new(
            id,
            title,
            Status::Pass,
            format!(
                "the target already has the source's root key (sha-256 {}…)",
                &source_key.sha256()[..12]
            ),
        ));
        return Ok(());
    }
    client
        .set_pgsodium_root_key(target_ref, &source_key)
        .await
        .map_err(|e| api_stop(ctx, e, "target-project-ref"))?;
    let now = client
        .pgsodium_root_key(target_ref)
        .await
        .map_err(|e| api_stop(ctx, e, "target-project-ref"))?;
    report.check(if now == source_key {
        CheckItem::new(
            id,
            title,
            Status::Pass,
            format!(
                "PUT /pgsodium: the target's root key is now the source's (sha-256 {}…, key never shown)",
                &source_key.sha256()[..12]
            ),
        )
    } else {
        CheckItem::new(
            id,
            title,
            Status::Fail,
            "the API accepted the new root key but still reports another one",
        )
        .with_hint("check the project's Vault settings in the dashboard, then re-run `data`")
    });
    Ok(())
}

/// After the rows: the secrets written as the mode says, then proven.
pub(crate) async fn apply(
    ctx: &mut Context,
    plan: VaultPlan,
    report: &mut PhaseReport,
) -> Result<(), PhaseError> {
    let names = |list: &[VaultSecret]| -> String {
        list.iter()
            .map(VaultSecret::label)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if plan.mode == VaultMode::Leave {
        if !plan.source.is_empty() {
            report.check(
                CheckItem::new(
                    ID,
                    "Vault secrets of the source",
                    Status::Warn,
                    format!(
                        "{} not moved: {} (encrypted with the source's root key, they would not decrypt on the target)",
                        count(plan.source.len(), "Vault secret", "Vault secrets"),
                        names(&plan.source)
                    ),
                )
                .with_hint("set [vault] mode = \"recreate\" with [vault.secrets] values, or mode = \"move-root-key\" to give the target the source's key"),
            );
        }
        return Ok(());
    }
    if ctx.settings.dry_run {
        report.check(CheckItem::new(
            ID,
            TITLE,
            Status::Skip,
            format!(
                "dry-run: would {} {}",
                if plan.mode == VaultMode::Recreate {
                    "create on the target"
                } else {
                    "copy verbatim"
                },
                count(
                    plan.source.len().max(plan.values.len()),
                    "Vault secret",
                    "Vault secrets"
                )
            ),
        ));
        return Ok(());
    }
    let target = ctx.target("data", true).await?;
    let expected: BTreeMap<String, String> = match plan.mode {
        VaultMode::Recreate => {
            for (name, value) in &plan.values {
                target.put_vault_secret(name, value).await?;
            }
            plan.values
                .iter()
                .map(|(n, v)| (n.clone(), sha256_hex(v)))
                .collect()
        }
        VaultMode::MoveRootKey => {
            let source = ctx.source("data").await?;
            target.copy_vault_rows(&source).await?;
            plan.source
                .iter()
                .map(|s| (s.label(), s.value_sha256.clone().unwrap_or_default()))
                .collect()
        }
        VaultMode::Leave => BTreeMap::new(),
    };
    prove(&target, &plan.source, &expected, plan.mode, report).await
}

async fn prove(
    target: &Database,
    source: &[VaultSecret],
    expected: &BTreeMap<String, String>,
    mode: VaultMode,
    report: &mut PhaseReport,
) -> Result<(), PhaseError> {
    let now = target.vault_secrets().await?;
    let mut table = ReportTable::new(
        "Vault secrets",
        &["Secret", "On the source", "Decrypts on the target", "Value"],
    );
    let mut failed = Vec::new();
    for (name, want) in expected {
        let on_source = source.iter().find(|s| &s.label() == name);
        let got = now.iter().find(|t| &t.label() == name);
        let decrypts = got.is_some_and(|g| g.decrypts);
        let same = got.and_then(|g| g.value_sha256.as_ref()) == Some(want);
        let value: Cell = match (decrypts, same, mode) {
            (false, _, _) => "—".into(),
            (true, true, VaultMode::MoveRootKey) => "same as the source's".into(),
            (true, true, _) => match on_source.and_then(|s| s.value_sha256.as_ref()) {
                Some(s) if s == want => "as given (same as the source's)".into(),
                Some(_) => "as given (differs from the source's)".into(),
                None => "as given".into(),
            },
            (true, false, _) => Cell::verdict_because(Status::Fail, "not the expected value"),
        };
        if !decrypts || !same {
            failed.push(name.clone());
        }
        table.push(vec![
            name.into(),
            if on_source.is_some() { "yes" } else { "no" }.into(),
            if got.is_none() {
                Cell::verdict_because(Status::Fail, "missing")
            } else if decrypts {
                "yes".into()
            } else {
                Cell::verdict_because(Status::Fail, "no")
            },
            value,
        ]);
    }
    report.check(if failed.is_empty() {
        CheckItem::new(
            ID,
            TITLE,
            Status::Pass,
            format!(
                "{} of {} decrypt on the target to the expected value ({}; compared as sha-256 digests, values never shown)",
                expected.len(),
                count(expected.len(), "secret", "secrets"),
                if mode == VaultMode::Recreate {
                    "created from [vault.secrets]"
                } else {
                    "rows copied after the root key moved"
                }
            ),
        )
    } else {
        CheckItem::new(
            ID,
            TITLE,
            Status::Fail,
            format!("do not decrypt to the expected value on the target: {}", failed.join(", ")),
        )
        .with_hint(if mode == VaultMode::MoveRootKey {
            "the target does not use the source's root key yet: check the \"Vault root key\" row, then re-run `data`"
        } else {
            "re-run `data`: secrets are created or updated by name"
        })
    });
    report.tables.push(table.with_note(
        "decryption is checked through vault.decrypted_secrets on the target; values are compared by the sha-256 the servers compute",
    ));
    Ok(())
}
