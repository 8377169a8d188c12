//! The guards part of the switch: off in the source, on in the target, each
//! state before saved in `<ledger>.guard_states`, and the undo of both.

use crate::context::Context;
use crate::pg::cron::ReleasedHold;
use crate::pg::guards::{GuardKind, GuardLedger, GuardValue, SwitchTable};
use crate::pg::{Database, Side};
use crate::report::{CheckItem, Status};

use super::super::PhaseError;
use super::steps::{Undo, set_guards};
use super::{describe_guards, guard_value, list_or_none, read_guards};

/// The id and title of the row of switching one side's guards.
pub(super) fn names(on: bool) -> (&'static str, &'static str) {
    if on {
        ("guards-target-on", "Guards on in the target")
    } else {
        ("guards-source-off", "Guards off in the source")
    }
}

/// The switch of one side's guards as a step: its row, and what undoes it.
pub(super) async fn step(
    ctx: &Context,
    db: &Database,
    table: Option<&SwitchTable>,
    ledger: &GuardLedger,
    on: bool,
) -> Result<(CheckItem, Undo), PhaseError> {
    let side = if on { Side::Target } else { Side::Source };
    match switch_guards(ctx, db, table, ledger, side, on).await {
        Ok((before, released, item)) if on => Ok((item, Undo::TargetGuards(before, released))),
        Ok((before, _, item)) => Ok((item, Undo::SourceGuards(before))),
        Err(e) => Err(e),
    }
}

/// The failed row of a guard switch.
pub(super) fn failed_row(on: bool, e: &PhaseError) -> CheckItem {
    let (id, title) = names(on);
    CheckItem::new(id, title, Status::Fail, e.message.clone())
        .with_hint(e.hint.clone().unwrap_or_default())
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
    let (id, title) = names(on);
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
        if g.value.is_none() {
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
        }
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
    let item = switched_row(id, title, &before, &changed, &released, &notes);
    Ok((before, released, item))
}

/// The row of a guard switch done.
fn switched_row(
    id: &str,
    title: &str,
    before: &[GuardValue],
    changed: &[GuardValue],
    released: &[ReleasedHold],
    notes: &[String],
) -> CheckItem {
    if before.is_empty() && released.is_empty() {
        return CheckItem::new(id, title, Status::Skip, "no [guards] in the manifest");
    }
    let mut evidence = if before.is_empty() {
        "no [guards] in the manifest".to_string()
    } else {
        format!(
            "{} → {}; previous state saved in the ledger",
            describe_guards(before),
            describe_guards(changed)
        )
    };
    if !released.is_empty() {
        evidence.push_str(&format!("; {}", describe_released(released)));
    }
    if !notes.is_empty() {
        evidence.push_str(&format!("; {}", notes.join(", ")));
    }
    let status = if notes.is_empty() {
        Status::Pass
    } else {
        Status::Warn
    };
    CheckItem::new(id, title, status, evidence)
}

/// `pg_cron jobs schema paused resumed: a, b` for the evidence.
fn describe_released(released: &[ReleasedHold]) -> String {
    let names = |found: bool| -> Vec<&str> {
        released
            .iter()
            .filter(|r| r.found == found)
            .map(|r| r.name.as_str())
            .collect()
    };
    let (resumed, gone) = (names(true), names(false));
    let mut text = format!(
        "pg_cron jobs held since schema resumed: {}",
        list_or_none(&resumed)
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
    set_guards(db, table, before)
        .await
        .map_err(|(_, e)| PhaseError::from(e))?;
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

/// Undoes the source's guards switch.
pub(super) async fn undo_source(
    ctx: &Context,
    source: &Database,
    table: Option<&SwitchTable>,
    ledger: &GuardLedger,
    before: &[GuardValue],
) -> CheckItem {
    let restored = restore_guards(ctx, source, table, ledger, Side::Source, before).await;
    undo_row(
        ("undo-guards-source", "Undo: source guards restored"),
        restored.map(|d| format!("back to {d}")),
    )
}

/// Undoes the target's guards switch, holding again the jobs it resumed.
pub(super) async fn undo_target(
    ctx: &Context,
    target: &Database,
    table: Option<&SwitchTable>,
    ledger: &GuardLedger,
    before: &[GuardValue],
    released: &[ReleasedHold],
) -> CheckItem {
    let restored = match restore_guards(ctx, target, table, ledger, Side::Target, before).await {
        Ok(d) => rehold(ctx, target, ledger, released)
            .await
            .map(|held| format!("{d}{held}")),
        Err(e) => Err(e),
    };
    undo_row(
        ("undo-guards-target", "Undo: target guards restored"),
        restored,
    )
}

fn undo_row((id, title): (&str, &str), restored: Result<String, PhaseError>) -> CheckItem {
    match restored {
        Ok(d) => CheckItem::new(id, title, Status::Pass, d),
        Err(e) => CheckItem::new(id, title, Status::Fail, e.message)
            .with_hint("run `cutover rollback`: the saved states are in the ledger"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(name: &str, found: bool) -> ReleasedHold {
        ReleasedHold {
            name: name.into(),
            found,
        }
    }

    #[test]
    fn released_holds_name_the_resumed_and_the_gone() {
        assert_eq!(
            describe_released(&[hold("a", true), hold("b", false), hold("c", true)]),
            "pg_cron jobs held since schema resumed: a, c (no longer scheduled: b)"
        );
        assert_eq!(
            describe_released(&[hold("b", false)]),
            "pg_cron jobs held since schema resumed: none (no longer scheduled: b)"
        );
    }

    #[test]
    fn a_switch_without_guards_or_holds_is_skipped() {
        let item = switched_row("i", "t", &[], &[], &[], &[]);
        assert_eq!(item.status, Status::Skip);
        assert_eq!(item.evidence, "no [guards] in the manifest");
    }

    #[test]
    fn a_guard_not_found_warns() {
        let g = GuardValue {
            kind: GuardKind::Switch,
            name: "sms".into(),
            value: Some("on".into()),
        };
        let off = GuardValue {
            value: Some("off".into()),
            ..g.clone()
        };
        let item = switched_row(
            "i",
            "t",
            &[g],
            &[off],
            &[],
            &["cron job x not found".into()],
        );
        assert_eq!(item.status, Status::Warn);
        assert_eq!(
            item.evidence,
            "sms = on → sms = off; previous state saved in the ledger; cron job x not found"
        );
    }
}
