//! `config`: sets database-stored configuration on the target (the
//! runbook's `invoice_configurations` step), in one transaction, and shows
//! every key before → after.
//!
//! Values are plain or `${ENV_VAR}` references. Keys named in
//! `secret_keys` (or whose names look secret) are compared but always shown
//! as `••••`. A key missing from the table is reported and nothing is
//! written, unless `insert_missing = true`: a missing key usually means a
//! migration is missing.

use std::collections::BTreeMap;

use crate::context::{Context, name_looks_secret};
use crate::manifest::{QualifiedName, expand};
use crate::pg::config::{ConfigTable, ConfigWrite};
use crate::redact::MASK;
use crate::report::{CheckItem, Outcome, PhaseReport, ReportTable, Status, TextDiff, count};

use super::{Phase, PhaseError};

/// Values longer than this (or spanning lines) are shown as a diff.
const LONG_VALUE: usize = 60;

/// One key of `[config] values`, resolved.
#[derive(Clone)]
pub(crate) struct Expected {
    /// The key.
    pub key: String,
    /// The value the target must have.
    pub value: String,
    /// Shown as `••••`.
    pub secret: bool,
}

/// The configuration table and the expected values, with `${VAR}`s
/// expanded; secret values are registered with the redactor. An unset
/// variable is an error naming the key and the variable.
pub(crate) fn expected_values(
    ctx: &Context,
    phase: &str,
) -> Result<(ConfigTable, Vec<Expected>), PhaseError> {
    let config = &ctx.manifest.config;
    let table = QualifiedName::parse(&config.table)
        .map_err(|m| PhaseError::new(format!("[config] {m}")))?;
    let mut expected = Vec::new();
    let mut missing = Vec::new();
    for (key, raw) in &config.values {
        let secret = config.secret_keys.contains(key) || name_looks_secret(key);
        match expand(raw, |v| ctx.env_var(v)) {
            Ok(value) => {
                if secret && ctx.redactor.add(&value) {
                    ctx.console.add_mask(&value);
                }
                expected.push(Expected {
                    key: key.clone(),
                    value,
                    secret,
                });
            }
            Err(vars) => missing.push(format!("{key} (from ${})", vars.join(", $"))),
        }
    }
    if !missing.is_empty() {
        return Err(PhaseError {
            message: format!(
                "{phase}: [config] values use unset or empty variables: {}",
                missing.join(", ")
            ),
            hint: Some(
                "set them in the step's `env:` from the GitHub environment's secrets".into(),
            ),
            // A missing input: exit 1, as everywhere (exit 3 is for guards).
            blocked: false,
        });
    }
    Ok((
        ConfigTable {
            table,
            key_column: config.key_column.clone(),
            value_column: config.value_column.clone(),
        },
        expected,
    ))
}

/// A value as shown: masked when secret, `NULL` when null.
pub(crate) fn shown(value: Option<&str>, secret: bool) -> String {
    match value {
        None => "NULL".into(),
        Some(_) if secret => MASK.into(),
        Some(v) => v.to_string(),
    }
}

fn is_long(v: &str) -> bool {
    v.chars().count() > LONG_VALUE || v.contains('\n')
}

/// Runs `config`.
pub async fn run(ctx: &mut Context) -> Result<PhaseReport, PhaseError> {
    // Every input is checked before anything is written.
    let settings = super::project_settings::plan(ctx).await?;
    let mut report = table_values(ctx).await?;
    if let Some(settings) = settings {
        if ctx.manifest.config.values.is_empty() {
            // Only project settings: the table's skip row would be noise.
            report.checks.clear();
        }
        super::project_settings::apply(ctx, settings, &mut report).await?;
        report.conclude_from_checks();
        if ctx.manifest.config.values.is_empty() {
            report.summary = match report.checks.last() {
                Some(c) => format!("Project settings: {}.", c.evidence),
                None => String::new(),
            };
        }
    }
    Ok(report)
}

/// `[config] values` in the configuration table.
async fn table_values(ctx: &mut Context) -> Result<PhaseReport, PhaseError> {
    let mut report = PhaseReport::new("config");
    if ctx.manifest.config.values.is_empty() {
        report.check(CheckItem::new(
            "config-values",
            "Configuration set on the target",
            Status::Skip,
            "no [config] values in the manifest",
        ));
        report.summary = "No [config] values: nothing to set.".into();
        return Ok(report);
    }
    let (table, expected) = expected_values(ctx, "config")?;
    let dry_run = ctx.settings.dry_run;
    let target = ctx.target("config", !dry_run).await?;
    ctx.ledger("config").await?;
    let Some(current) = table.read(&target).await? else {
        if super::dry_run_after(ctx, Phase::Config, &[Phase::Schema]) {
            let dir = ctx.migration_dir()?;
            let created =
                crate::repo::migrations::created_tables(&dir.files.iter().collect::<Vec<_>>());
            if let Some(file) = created.get(&table.table) {
                report.check(CheckItem::new(
                    "config-values",
                    "Configuration set on the target",
                    Status::Skip,
                    format!(
                        "{} is not on the target yet: {file} creates it when `schema` runs; the {} are shown before → after then",
                        table.table,
                        count(expected.len(), "key", "keys")
                    ),
                ));
                report.summary = format!(
                    "Dry-run: {} would be set once `schema` created {}; nothing was written.",
                    count(expected.len(), "key", "keys"),
                    table.table
                );
                return Ok(report);
            }
        }
        return Err(PhaseError::new(format!(
            "configuration table {} does not exist on the target",
            table.table
        ))
        .hint("run `schema` first (the migrations create it), or fix [config] table"));
    };

    let insert_missing = ctx.manifest.config.insert_missing;
    let mut writes = Vec::new();
    let mut unknown = Vec::new();
    let mut rows = ReportTable::new(
        &format!("Configuration in {}: before → after", table.table),
        &["Key", "Before", "After", "Change"],
    );
    let mut diffs = Vec::new();
    for e in &expected {
        let present = current.contains_key(&e.key);
        let before = current.get(&e.key).cloned().flatten();
        let change = if !present {
            unknown.push(e.key.clone());
            if insert_missing {
                "inserted"
            } else {
                "**key not in table**"
            }
        } else if before.as_deref() == Some(e.value.as_str()) {
            "unchanged"
        } else {
            "changed"
        };
        if (present && change == "changed") || (!present && insert_missing) {
            writes.push(ConfigWrite {
                key: e.key.clone(),
                value: e.value.clone(),
                insert: !present,
            });
        }
        let before_cell = if present {
            shown(before.as_deref(), e.secret)
        } else {
            "(missing)".into()
        };
        let after_cell = shown(Some(&e.value), e.secret);
        let long = !e.secret && (is_long(&e.value) || before.as_deref().is_some_and(is_long));
        if long && change != "unchanged" {
            diffs.push(TextDiff {
                title: format!("{}: {}", table.table, e.key),
                before_label: "before".into(),
                after_label: "after".into(),
                before: before.clone().unwrap_or_default(),
                after: e.value.clone(),
            });
            rows.push([
                e.key.clone(),
                "(long value: see the diff)".into(),
                "(long value: see the diff)".into(),
                change.into(),
            ]);
        } else {
            rows.push([e.key.clone(), before_cell, after_cell, change.into()]);
        }
    }
    let mut rows = rows.with_note(format!(
        "Secret keys ({}) are compared but shown as {MASK}.",
        expected
            .iter()
            .filter(|e| e.secret)
            .map(|e| e.key.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if !expected.iter().any(|e| e.secret) {
        rows.note = None;
    }
    report.tables.push(rows);
    report.diffs.extend(diffs);

    if !unknown.is_empty() && !insert_missing {
        report.check(
            CheckItem::new(
                "config-keys",
                "Configuration keys exist on the target",
                Status::Fail,
                format!(
                    "not in {}: {}; nothing was written",
                    table.table,
                    unknown.join(", ")
                ),
            )
            .with_hint("apply the migration that creates these keys (`schema`), fix the key names, or set [config] insert_missing = true"),
        );
        report.summary = format!(
            "Refused: {} keys are not in {}; nothing was written.",
            unknown.len(),
            table.table
        );
        report.outcome = Outcome::Failed;
        return Ok(report);
    }
    let inserted = writes.iter().filter(|w| w.insert).count();
    report.check(CheckItem::new(
        "config-keys",
        "Configuration keys exist on the target",
        Status::Pass,
        if inserted > 0 {
            format!(
                "{} keys, {inserted} inserted (insert_missing = true): {}",
                expected.len(),
                unknown.join(", ")
            )
        } else {
            format!("all {} keys present in {}", expected.len(), table.table)
        },
    ));

    if dry_run {
        report.check(CheckItem::new(
            "config-values",
            "Configuration set on the target",
            Status::Skip,
            format!(
                "dry-run: would change {} of {} keys in one transaction",
                writes.len(),
                expected.len()
            ),
        ));
        report.summary = format!(
            "Dry-run: would change {} of {} keys in {}; nothing was written.",
            writes.len(),
            expected.len(),
            table.table
        );
        return Ok(report);
    }

    if !writes.is_empty() {
        table.apply(&target, &writes).await?;
    }
    // Read back what the target now holds.
    let after = table.read(&target).await?.unwrap_or_default();
    let wrong: Vec<String> = expected
        .iter()
        .filter(|e| after.get(&e.key).cloned().flatten().as_deref() != Some(e.value.as_str()))
        .map(|e| e.key.clone())
        .collect();
    report.check(if wrong.is_empty() {
        CheckItem::new(
            "config-values",
            "Configuration set on the target",
            Status::Pass,
            format!(
                "{} of {} keys changed in one transaction; every key read back with its expected value",
                writes.len(),
                expected.len()
            ),
        )
    } else {
        CheckItem::new(
            "config-values",
            "Configuration set on the target",
            Status::Fail,
            format!("read back with another value: {}", wrong.join(", ")),
        )
        .with_hint("a trigger or another writer changed them: check the table's triggers, then re-run `config`")
    });
    report.conclude_from_checks();
    report.summary = format!(
        "{} of {} keys of {} changed (before → after below); {} unchanged.",
        writes.len(),
        expected.len(),
        table.table,
        expected.len() - writes.len()
    );
    Ok(report)
}

/// The `validate` check: every expected key has its expected value on the
/// target (the runbook's `config_key LIKE 'whatsapp_%' OR config_key IN
/// (...)` query). Secret values are compared, never shown.
pub(crate) async fn expectations_check(
    ctx: &mut Context,
    target: &crate::pg::Database,
) -> Result<Option<(CheckItem, ReportTable)>, PhaseError> {
    if ctx.manifest.config.values.is_empty() {
        return Ok(None);
    }
    let title = "Configuration has the expected values";
    let (table, expected) = match expected_values(ctx, "validate") {
        Ok(v) => v,
        Err(e) => {
            let mut item = CheckItem::new("config", title, Status::Fail, e.message);
            item.hint = e.hint;
            return Ok(Some((item, ReportTable::new("Configuration", &["Key"]))));
        }
    };
    let current: BTreeMap<String, Option<String>> = match table.read(target).await? {
        Some(c) => c,
        None => {
            return Ok(Some((
                CheckItem::new(
                    "config",
                    title,
                    Status::Fail,
                    format!("{} does not exist on the target", table.table),
                )
                .with_hint("run `schema` then `config`"),
                ReportTable::new("Configuration", &["Key"]),
            )));
        }
    };
    let mut rows = ReportTable::new(
        &format!("Configuration in {} on the target", table.table),
        &["Key", "Expected", "Target", ""],
    );
    let mut bad = Vec::new();
    for e in &expected {
        let present = current.contains_key(&e.key);
        let got = current.get(&e.key).cloned().flatten();
        let ok = got.as_deref() == Some(e.value.as_str());
        if !ok {
            bad.push(e.key.clone());
        }
        let got_cell = if present {
            if e.secret && got.is_some() {
                if ok {
                    MASK.into()
                } else {
                    format!("{MASK} (differs)")
                }
            } else {
                shown(got.as_deref(), e.secret)
            }
        } else {
            "(missing)".into()
        };
        rows.push([
            e.key.clone(),
            shown(Some(&e.value), e.secret),
            got_cell,
            if ok { "✅".into() } else { "❌".into() },
        ]);
    }
    let item = if bad.is_empty() {
        CheckItem::new(
            "config",
            title,
            Status::Pass,
            format!(
                "{} keys of {} hold the manifest's values",
                expected.len(),
                table.table
            ),
        )
    } else {
        CheckItem::new(
            "config",
            title,
            Status::Fail,
            format!("differ or missing: {}", bad.join(", ")),
        )
        .with_hint("run `config` to set them")
    };
    Ok(Some((item, rows)))
}
