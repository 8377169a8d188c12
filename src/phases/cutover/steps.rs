//! The switch as a list of steps, each with what undoes it.
//!
//! [`plan`] says which [`CutoverStep`]s a cutover runs, in order;
//! [`apply_all`] applies them until one fails, keeping an [`Undo`] for each
//! step that changed something; [`unwind`] then undoes those in reverse.
//! The undo operations themselves ([`lift_freeze`], [`set_guards`],
//! [`restore_frontend`], [`retire_replication`]) are the ones `rollback`
//! runs too, from the states the ledger saved.

use crate::context::Context;
use crate::frontend::{Frontend, FrontendError, Snapshot};
use crate::manifest::QualifiedName;
use crate::pg::cron::ReleasedHold;
use crate::pg::guards::{GuardValue, SwitchTable};
use crate::pg::ledger::{Ledger, ReplicationRecord};
use crate::pg::release::FrontendLedger;
use crate::pg::{Database, PgError};

use super::super::PhaseError;

/// One step of the switch, in the order `cutover` runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutoverStep {
    /// Replicate mode: the replication is healthy and close behind. Changes
    /// nothing.
    ReplicationHealth,
    /// Writes to the source frozen, the target proven to hold every one of
    /// them (a fence in replicate mode), sequences set. Undo: lift the freeze.
    Database,
    /// Guards off in the source. Undo: back to the state read before.
    SourceGuardsOff,
    /// The frontend's production variables pointed at the target and
    /// published. Undo: the snapshot taken before.
    FrontendSwitch,
    /// Guards on in the target, the pg_cron jobs held since `schema`
    /// resumed. Undo: the guards back, those jobs held again.
    TargetGuardsOn,
    /// The smoke checks. Nothing to undo.
    Smoke,
    /// Replicate mode: the replication retired. Last, so an undo above
    /// leaves the target following the source as before; it never fails
    /// the switch.
    RetireReplication,
}

/// The steps a cutover runs, in order.
pub fn plan(replicating: bool) -> Vec<CutoverStep> {
    let mut steps = Vec::new();
    if replicating {
        steps.push(CutoverStep::ReplicationHealth);
    }
    steps.extend([
        CutoverStep::Database,
        CutoverStep::SourceGuardsOff,
        CutoverStep::FrontendSwitch,
        CutoverStep::TargetGuardsOn,
        CutoverStep::Smoke,
    ]);
    if replicating {
        steps.push(CutoverStep::RetireReplication);
    }
    steps
}

/// What a step changed, kept to undo it.
pub enum Undo {
    /// The source's write freeze (replicate mode: the replication keeps
    /// running under it, so lifting it is the whole undo).
    Freeze,
    /// The source's guards as they were.
    SourceGuards(Vec<GuardValue>),
    /// The frontend as it was.
    Frontend(Snapshot),
    /// The target's guards as they were, and the cron holds released.
    TargetGuards(Vec<GuardValue>, Vec<ReleasedHold>),
}

/// What applying one step did.
pub struct Applied<U> {
    /// What to undo should a later step fail; `None` when nothing changed.
    pub undo: Option<U>,
    /// Why the switch stops here; `None` to go on.
    pub failure: Option<String>,
}

impl<U> Applied<U> {
    /// Done, nothing to undo.
    pub fn done() -> Self {
        Applied {
            undo: None,
            failure: None,
        }
    }

    /// Done, `undo` undoes it.
    pub fn changed(undo: U) -> Self {
        Applied {
            undo: Some(undo),
            failure: None,
        }
    }

    /// Stopped, having changed nothing.
    pub fn failed(why: impl Into<String>) -> Self {
        Applied {
            undo: None,
            failure: Some(why.into()),
        }
    }
}

/// Steps that can be applied and undone, each recording its own rows.
pub(crate) trait Reversible {
    /// Which step.
    type Step: Copy;
    /// What undoes a step.
    type Undo;
    /// Applies one step. `Err` stops the phase at once, without undoing.
    async fn apply(&mut self, step: Self::Step) -> Result<Applied<Self::Undo>, PhaseError>;
    /// Undoes one step, returning the title of the row that says so.
    async fn undo(&mut self, undo: Self::Undo) -> String;
}

/// The result of [`apply_all`].
pub struct Run<U> {
    /// What the steps applied changed, in the order they ran.
    pub applied: Vec<U>,
    /// Why a step stopped the switch.
    pub failure: Option<String>,
}

/// Applies `plan` in order until a step fails; the steps after it are not
/// applied.
pub(crate) async fn apply_all<R: Reversible>(
    steps: &mut R,
    plan: &[R::Step],
) -> Result<Run<R::Undo>, PhaseError> {
    let mut applied = Vec::new();
    for step in plan {
        let outcome = steps.apply(*step).await?;
        applied.extend(outcome.undo);
        if outcome.failure.is_some() {
            return Ok(Run {
                applied,
                failure: outcome.failure,
            });
        }
    }
    Ok(Run {
        applied,
        failure: None,
    })
}

/// Undoes `applied` in reverse order; the titles of the undo rows.
pub(crate) async fn unwind<R: Reversible>(steps: &mut R, applied: Vec<R::Undo>) -> Vec<String> {
    let mut titles = Vec::new();
    for undo in applied.into_iter().rev() {
        titles.push(steps.undo(undo).await);
    }
    titles
}

/// Lifts the source's write freeze and marks the ledger's freezes lifted by
/// this run. The tables lifted, and the ledger's answer apart: the freeze
/// is lifted either way.
pub(crate) async fn lift_freeze(
    ctx: &Context,
    source: &Database,
) -> Result<(Vec<QualifiedName>, Result<(), PgError>), PgError> {
    let lifted = source.lift_freeze().await?;
    let marked = match ctx.open_ledger() {
        Some(ledger) => ledger.mark_freezes_lifted(ctx.run_id).await,
        None => Ok(()),
    };
    Ok((lifted, marked))
}

/// Sets each guard of `values` that has a value, in order, stopping at the
/// first error: `Err` holds how many of `values` were dealt with before it.
pub(crate) async fn set_guards(
    db: &Database,
    table: Option<&SwitchTable>,
    values: &[GuardValue],
) -> Result<(), (usize, PgError)> {
    for (n, g) in values.iter().enumerate() {
        if let Some(v) = &g.value {
            db.set_guard(table, g.kind, &g.name, v)
                .await
                .map_err(|e| (n, e))?;
        }
    }
    Ok(())
}

/// Which saved frontend states a restore closes.
pub(crate) enum SavedStates<'a> {
    /// The open states this run saved (`cutover`'s undo).
    ThisRun,
    /// These (`rollback`, from the ledger).
    These(&'a [i64]),
}

/// Puts `snapshot` back on the provider and marks the saved states
/// restored. The provider's notes, and the ledger's answer apart.
pub(crate) async fn restore_frontend(
    ctx: &Context,
    client: &Frontend,
    ledger: &FrontendLedger,
    snapshot: &Snapshot,
    saved: SavedStates<'_>,
) -> Result<(Vec<String>, Result<(), PgError>), FrontendError> {
    let notes = client.restore(snapshot).await?;
    let ids: Vec<i64> = match saved {
        SavedStates::These(ids) => ids.to_vec(),
        // A ledger that cannot be read leaves the states open: the values
        // are back either way, and `rollback` finds what stayed open.
        SavedStates::ThisRun => match ledger.open_states().await {
            Ok(states) => states
                .into_iter()
                .filter(|s| s.run_id == ctx.run_id)
                .map(|s| s.id)
                .collect(),
            Err(_) => Vec::new(),
        },
    };
    let marked = ledger.mark_restored(&ids, ctx.run_id).await;
    Ok((notes, marked))
}

/// Removes the replication (subscription, publication, slot, role);
/// `removed ...` for the evidence.
pub(crate) async fn retire_replication(
    ctx: &Context,
    ledger: &Ledger,
    source: &Database,
    target: &Database,
    record: &ReplicationRecord,
) -> Result<String, PhaseError> {
    let removed =
        super::super::data::replicate::retire(ctx, ledger, source, target, record).await?;
    Ok(format!("removed {}", removed.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fake steps: `fail_at` fails (after changing something when
    /// `partial`), every step logs what happened to it.
    struct Fake {
        fail_at: Option<u32>,
        partial: bool,
        log: Vec<String>,
    }

    impl Reversible for Fake {
        type Step = u32;
        type Undo = u32;

        async fn apply(&mut self, step: u32) -> Result<Applied<u32>, PhaseError> {
            self.log.push(format!("apply {step}"));
            Ok(match self.fail_at {
                Some(n) if n == step && self.partial => Applied {
                    undo: Some(step),
                    failure: Some(format!("step {step} failed")),
                },
                Some(n) if n == step => Applied::failed(format!("step {step} failed")),
                _ => Applied::changed(step),
            })
        }

        async fn undo(&mut self, step: u32) -> String {
            self.log.push(format!("undo {step}"));
            format!("undo {step}")
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn run(fail_at: Option<u32>, partial: bool) -> (Vec<String>, Option<String>) {
        block_on(async {
            let mut fake = Fake {
                fail_at,
                partial,
                log: Vec::new(),
            };
            let run = apply_all(&mut fake, &[1, 2, 3, 4, 5]).await.unwrap();
            if run.failure.is_some() {
                unwind(&mut fake, run.applied).await;
            }
            (fake.log, run.failure)
        })
    }

    #[test]
    fn a_failing_step_undoes_the_ones_before_it_in_reverse() {
        let (log, failure) = run(Some(4), false);
        assert_eq!(failure.as_deref(), Some("step 4 failed"));
        assert_eq!(
            log,
            [
                "apply 1", "apply 2", "apply 3", "apply 4", "undo 3", "undo 2", "undo 1"
            ]
        );
    }

    #[test]
    fn steps_after_the_failure_are_neither_applied_nor_undone() {
        let (log, _) = run(Some(2), false);
        assert_eq!(log, ["apply 1", "apply 2", "undo 1"]);
        assert!(!log.iter().any(|l| l.ends_with(" 3") || l.ends_with(" 5")));
    }

    #[test]
    fn a_step_that_changed_something_before_failing_is_undone_first() {
        let (log, _) = run(Some(3), true);
        assert_eq!(
            log,
            [
                "apply 1", "apply 2", "apply 3", "undo 3", "undo 2", "undo 1"
            ]
        );
    }

    #[test]
    fn a_failing_first_step_undoes_nothing() {
        let (log, _) = run(Some(1), false);
        assert_eq!(log, ["apply 1"]);
    }

    #[test]
    fn without_a_failure_every_step_is_applied_and_kept() {
        block_on(async {
            let mut fake = Fake {
                fail_at: None,
                partial: false,
                log: Vec::new(),
            };
            let run = apply_all(&mut fake, &[1, 2, 3]).await.unwrap();
            assert!(run.failure.is_none());
            assert_eq!(run.applied, [1, 2, 3]);
            assert_eq!(fake.log, ["apply 1", "apply 2", "apply 3"]);
        });
    }

    #[test]
    fn the_plan_runs_the_replication_steps_only_when_replicating() {
        use CutoverStep::*;
        assert_eq!(
            plan(false),
            [
                Database,
                SourceGuardsOff,
                FrontendSwitch,
                TargetGuardsOn,
                Smoke
            ]
        );
        assert_eq!(
            plan(true),
            [
                ReplicationHealth,
                Database,
                SourceGuardsOff,
                FrontendSwitch,
                TargetGuardsOn,
                Smoke,
                RetireReplication
            ]
        );
    }
}
