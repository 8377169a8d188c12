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

use crate::cells;
use crate::context::{Context, name_looks_secret};
use crate::manifest::{ConfigSection, QualifiedName, expand};
use crate::pg::config::{ConfigTable, ConfigWrite};
use crate::redact::MASK;
use crate::report::Cell;
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
        let secret = secret_key(config, key);
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

/// Whether a `[config]` key's value is shown masked: named in
/// `secret_keys`, or a name that looks secret.
pub(crate) fn secret_key(config: &ConfigSection, key: &str) -> bool {
    config.secret_keys.iter().any(|k| k == key) || name_looks_secret(key)
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
        return not_created_yet(ctx, &table, expected.len(), report);
    };
    let plan = plan_writes(
        &table,
        &expected,
        &current,
        ctx.manifest.config.insert_missing,
    );
    report.tables.push(plan.rows);
    report.diffs.extend(plan.diffs);
    let (keys, refused) = keys_row(
        &table,
        &expected,
        &plan.unknown,
        &plan.writes,
        ctx.manifest.config.insert_missing,
    );
    report.check(keys);
    if refused {
        report.summary = format!(
            "Refused: {} keys are not in {}; nothing was written.",
            plan.unknown.len(),
            table.table
        );
        report.outcome = Outcome::Failed;
        return Ok(report);
    }
    let (writes, keys) = (plan.writes.len(), expected.len());
    if dry_run {
        report.check(CheckItem::new(
            "config-values",
            "Configuration set on the target",
            Status::Skip,
            format!("dry-run: would change {writes} of {keys} keys in one transaction"),
        ));
        report.summary = format!(
            "Dry-run: would change {writes} of {keys} keys in {}; nothing was written.",
            table.table
        );
        return Ok(report);
    }
    if !plan.writes.is_empty() {
        table.apply(&target, &plan.writes).await?;
    }
    // Read back what the target now holds.
    let after = table.read(&target).await?.unwrap_or_default();
    report.check(read_back_row(&expected, &after, writes));
    report.conclude_from_checks();
    report.summary = format!(
        "{writes} of {keys} keys of {} changed (before → after below); {} unchanged.",
        table.table,
        keys - writes
    );
    Ok(report)
}

/// The table is not on the target: in a dry-run after `schema` whose
/// migrations create it, a skip row; otherwise an error.
fn not_created_yet(
    ctx: &Context,
    table: &ConfigTable,
    keys: usize,
    mut report: PhaseReport,
) -> Result<PhaseReport, PhaseError> {
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
                    count(keys, "key", "keys")
                ),
            ));
            report.summary = format!(
                "Dry-run: {} would be set once `schema` created {}; nothing was written.",
                count(keys, "key", "keys"),
                table.table
            );
            return Ok(report);
        }
    }
    Err(PhaseError::new(format!(
        "configuration table {} does not exist on the target",
        table.table
    ))
    .hint("run `schema` first (the migrations create it), or fix [config] table"))
}

/// What `config` writes, decided from the table's current values.
struct ConfigPlan {
    /// The keys to update or insert.
    writes: Vec<ConfigWrite>,
    /// Keys the table does not have.
    unknown: Vec<String>,
    /// Each key before → after.
    rows: ReportTable,
    /// Long values, before → after.
    diffs: Vec<TextDiff>,
}

/// Each expected key against the table's current value: unchanged,
/// changed, inserted (with `insert_missing`) or not in the table.
fn plan_writes(
    table: &ConfigTable,
    expected: &[Expected],
    current: &BTreeMap<String, Option<String>>,
    insert_missing: bool,
) -> ConfigPlan {
    let mut plan = ConfigPlan {
        writes: Vec::new(),
        unknown: Vec::new(),
        rows: ReportTable::new(
            &format!("Configuration in {}: before → after", table.table),
            &["Key", "Before", "After", "Change"],
        ),
        diffs: Vec::new(),
    };
    for e in expected {
        let present = current.contains_key(&e.key);
        let before = current.get(&e.key).cloned().flatten();
        let change = if !present {
            plan.unknown.push(e.key.clone());
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
            plan.writes.push(ConfigWrite {
                key: e.key.clone(),
                value: e.value.clone(),
                insert: !present,
            });
        }
        let long = !e.secret && (is_long(&e.value) || before.as_deref().is_some_and(is_long));
        if long && change != "unchanged" {
            plan.diffs.push(TextDiff {
                title: format!("{}: {}", table.table, e.key),
                before_label: "before".into(),
                after_label: "after".into(),
                before: before.clone().unwrap_or_default(),
                after: e.value.clone(),
            });
            let see = "(long value: see the diff)";
            plan.rows.push([e.key.as_str(), see, see, change]);
            continue;
        }
        let before_cell = if present {
            shown(before.as_deref(), e.secret)
        } else {
            "(missing)".into()
        };
        let after_cell = shown(Some(&e.value), e.secret);
        plan.rows
            .push([e.key.clone(), before_cell, after_cell, change.into()]);
    }
    let secret: Vec<&str> = expected
        .iter()
        .filter(|e| e.secret)
        .map(|e| e.key.as_str())
        .collect();
    if !secret.is_empty() {
        plan.rows.note = Some(format!(
            "Secret keys ({}) are compared but shown as {MASK}.",
            secret.join(", ")
        ));
    }
    plan
}

/// The `config-keys` row, and whether it refuses the write (keys missing
/// without `insert_missing`).
fn keys_row(
    table: &ConfigTable,
    expected: &[Expected],
    unknown: &[String],
    writes: &[ConfigWrite],
    insert_missing: bool,
) -> (CheckItem, bool) {
    if !unknown.is_empty() && !insert_missing {
        let item = CheckItem::new(
            "config-keys",
            "Configuration keys exist on the target",
            Status::Fail,
            format!(
                "not in {}: {}; nothing was written",
                table.table,
                unknown.join(", ")
            ),
        )
        .with_hint("apply the migration that creates these keys (`schema`), fix the key names, or set [config] insert_missing = true");
        return (item, true);
    }
    let inserted = writes.iter().filter(|w| w.insert).count();
    let evidence = if inserted > 0 {
        format!(
            "{} keys, {inserted} inserted (insert_missing = true): {}",
            expected.len(),
            unknown.join(", ")
        )
    } else {
        format!("all {} keys present in {}", expected.len(), table.table)
    };
    let item = CheckItem::new(
        "config-keys",
        "Configuration keys exist on the target",
        Status::Pass,
        evidence,
    );
    (item, false)
}

/// The `config-values` row after writing: every key read back with its
/// expected value.
fn read_back_row(
    expected: &[Expected],
    after: &BTreeMap<String, Option<String>>,
    writes: usize,
) -> CheckItem {
    let wrong: Vec<&str> = expected
        .iter()
        .filter(|e| after.get(&e.key).cloned().flatten().as_deref() != Some(e.value.as_str()))
        .map(|e| e.key.as_str())
        .collect();
    if wrong.is_empty() {
        return CheckItem::new(
            "config-values",
            "Configuration set on the target",
            Status::Pass,
            format!(
                "{writes} of {} keys changed in one transaction; every key read back with its expected value",
                expected.len()
            ),
        );
    }
    CheckItem::new(
        "config-values",
        "Configuration set on the target",
        Status::Fail,
        format!("read back with another value: {}", wrong.join(", ")),
    )
    .with_hint("a trigger or another writer changed them: check the table's triggers, then re-run `config`")
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
        rows.push(cells![
            e.key.clone(),
            shown(Some(&e.value), e.secret),
            got_cell,
            Cell::pass_if(ok),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> ConfigTable {
        ConfigTable {
            table: QualifiedName::parse("public.app_config").unwrap(),
            key_column: "key".into(),
            value_column: "value".into(),
        }
    }

    fn expected(key: &str, value: &str, secret: bool) -> Expected {
        Expected {
            key: key.into(),
            value: value.into(),
            secret,
        }
    }

    fn current(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    }

    #[test]
    fn only_changed_keys_are_written_and_secrets_are_masked() {
        let wanted = [
            expected("a", "1", false),
            expected("b", "2", false),
            expected("api_key", "s3cret", true),
        ];
        let now = current(&[("a", Some("1")), ("b", Some("old")), ("api_key", None)]);
        let plan = plan_writes(&table(), &wanted, &now, false);
        let written: Vec<&str> = plan.writes.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(written, ["b", "api_key"]);
        assert_eq!(plan.rows.rows[0][3], "unchanged");
        assert_eq!(plan.rows.rows[2], ["api_key", "NULL", MASK, "changed"]);
        assert!(plan.rows.note.as_deref().unwrap().contains("(api_key)"));
    }

    #[test]
    fn a_missing_key_refuses_unless_inserted() {
        let wanted = [expected("new_key", "v", false)];
        let plan = plan_writes(&table(), &wanted, &current(&[]), false);
        assert!(plan.writes.is_empty());
        let (row, refused) = keys_row(&table(), &wanted, &plan.unknown, &plan.writes, false);
        assert!(refused);
        assert_eq!(row.status, Status::Fail);
        let plan = plan_writes(&table(), &wanted, &current(&[]), true);
        assert!(plan.writes[0].insert);
        let (row, refused) = keys_row(&table(), &wanted, &plan.unknown, &plan.writes, true);
        assert!(!refused);
        assert_eq!(
            row.evidence,
            "1 keys, 1 inserted (insert_missing = true): new_key"
        );
    }

    #[test]
    fn long_values_go_to_a_diff() {
        let long = "x".repeat(LONG_VALUE + 1);
        let wanted = [expected("template", &long, false)];
        let plan = plan_writes(
            &table(),
            &wanted,
            &current(&[("template", Some("short"))]),
            false,
        );
        assert_eq!(plan.diffs.len(), 1);
        assert_eq!(plan.rows.rows[0][1], "(long value: see the diff)");
        assert!(plan.rows.note.is_none());
    }

    #[test]
    fn read_back_names_the_wrong_keys() {
        let wanted = [expected("a", "1", false), expected("b", "2", false)];
        let row = read_back_row(&wanted, &current(&[("a", Some("1")), ("b", Some("9"))]), 1);
        assert_eq!(row.evidence, "read back with another value: b");
    }
}
