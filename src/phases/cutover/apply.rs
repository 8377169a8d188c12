//! The steps of [`super::steps`] applied to real databases and providers:
//! each one timed, its rows in the checklist and the steps table.

use std::time::{Duration, Instant};

use crate::context::Context;
use crate::manifest::QualifiedName;
use crate::pg::Database;
use crate::pg::guards::{GuardLedger, SwitchTable};
use crate::pg::ledger::{Ledger, ReplicationRecord};
use crate::pg::release::FrontendLedger;
use crate::report::{CheckItem, PhaseReport, ReportTable, Status, human_duration};

use super::super::{PhaseError, smoke};
use super::database::{self, SwitchDone, SwitchStop};
use super::frontend::{self, FrontendClock, FrontendPlan};
use super::guards;
use super::steps::{Applied, CutoverStep, Reversible, Undo, lift_freeze, retire_replication};

/// The table of the steps, in the order they ran, each with its time.
pub(super) struct StepsTable {
    pub(super) table: ReportTable,
}

impl StepsTable {
    fn new() -> StepsTable {
        StepsTable {
            table: ReportTable::new("Cutover steps", &["#", "Step", "Result", "Took"]),
        }
    }

    fn push(&mut self, report: &mut PhaseReport, item: CheckItem, took: Duration) {
        let n = self.table.rows.len() + 1;
        self.table.push([
            n.to_string(),
            item.title.clone(),
            format!("{} {}", item.status.icon(), item.status.word()),
            human_duration(took.as_millis() as u64),
        ]);
        report.check(item);
    }
}

/// What the switch works with: both databases, the ledgers, the plans made
/// before the first change, and what the steps found on the way.
pub(super) struct Cutover<'a> {
    pub(super) ctx: &'a mut Context,
    pub(super) report: &'a mut PhaseReport,
    pub(super) steps: StepsTable,
    pub(super) ledger: Ledger,
    pub(super) source: Database,
    pub(super) target: Database,
    pub(super) switches: Option<SwitchTable>,
    pub(super) frontend: Option<FrontendPlan>,
    pub(super) guard_ledger: GuardLedger,
    pub(super) frontend_ledger: FrontendLedger,
    /// The copied tables, the ones frozen.
    pub(super) copied: Vec<QualifiedName>,
    /// Replicate mode: the replication found healthy, and its lag.
    pub(super) replication: Option<(ReplicationRecord, Duration)>,
    /// The database part, once done.
    pub(super) switched: Option<SwitchDone>,
    /// A stop of the database part blocked (exit 3) rather than failed.
    pub(super) blocked: bool,
    pub(super) frontend_clock: FrontendClock,
}

/// The ledgers and databases a cutover opens before its first change.
pub(super) struct Opened {
    pub(super) ledger: Ledger,
    pub(super) source: Database,
    pub(super) target: Database,
    pub(super) guard_ledger: GuardLedger,
    pub(super) frontend_ledger: FrontendLedger,
}

impl<'a> Cutover<'a> {
    /// A switch about to start.
    pub(super) fn new(
        ctx: &'a mut Context,
        report: &'a mut PhaseReport,
        opened: Opened,
        switches: Option<SwitchTable>,
        frontend: Option<FrontendPlan>,
        copied: Vec<QualifiedName>,
    ) -> Cutover<'a> {
        Cutover {
            ctx,
            report,
            steps: StepsTable::new(),
            ledger: opened.ledger,
            source: opened.source,
            target: opened.target,
            switches,
            frontend,
            guard_ledger: opened.guard_ledger,
            frontend_ledger: opened.frontend_ledger,
            copied,
            replication: None,
            switched: None,
            blocked: false,
            frontend_clock: FrontendClock::default(),
        }
    }

    fn push(&mut self, item: CheckItem, took: Duration) {
        self.steps.push(self.report, item, took);
    }

    /// Puts a stop of the database part into the report: its row (or the
    /// error) and the table of differing tables; the failure it is.
    fn absorb(&mut self, stop: SwitchStop) -> Applied<Undo> {
        let froze = stop.froze();
        let why = match stop {
            SwitchStop::Blocked { item, table, .. } => {
                self.blocked = true;
                let why = item.evidence.clone();
                self.push(item, Duration::ZERO);
                self.report.tables.extend(table);
                why
            }
            SwitchStop::Failed { error, .. } => {
                let why = error.message.clone();
                let mut item = CheckItem::new(
                    "database-switch",
                    "Database switched",
                    Status::Fail,
                    why.clone(),
                );
                if let Some(h) = error.hint {
                    item = item.with_hint(h);
                }
                self.push(item, Duration::ZERO);
                why
            }
        };
        Applied {
            undo: froze.then_some(Undo::Freeze),
            failure: Some(why),
        }
    }

    async fn replication_health(&mut self) -> Applied<Undo> {
        let ready = database::replication_ready(
            self.ctx,
            &self.ledger,
            &self.source,
            &self.target,
            &self.copied,
        )
        .await;
        match ready {
            Ok(r) => {
                self.replication = Some(r);
                Applied::done()
            }
            Err(stop) => self.absorb(stop),
        }
    }

    async fn database(&mut self) -> Applied<Undo> {
        let mut rows = Vec::new();
        let result = database::switch(
            self.ctx,
            &self.ledger,
            &self.source,
            &self.target,
            &self.copied,
            self.replication.take(),
            &mut rows,
        )
        .await;
        for (item, took) in rows {
            self.push(item, took);
        }
        match result {
            Ok(done) => {
                self.switched = Some(done);
                Applied::changed(Undo::Freeze)
            }
            Err(stop) => self.absorb(stop),
        }
    }

    async fn guards(&mut self, on: bool) -> Applied<Undo> {
        let clock = Instant::now();
        let db = if on { &self.target } else { &self.source };
        let result =
            guards::step(self.ctx, db, self.switches.as_ref(), &self.guard_ledger, on).await;
        match result {
            Ok((item, undo)) => {
                self.push(item, clock.elapsed());
                Applied::changed(undo)
            }
            Err(e) => {
                self.push(guards::failed_row(on, &e), clock.elapsed());
                Applied::failed(e.message)
            }
        }
    }

    async fn frontend(&mut self) -> Result<Applied<Undo>, PhaseError> {
        self.frontend_clock.start();
        let clock = Instant::now();
        let (item, undo) =
            frontend::switch(self.ctx, &self.frontend_ledger, self.frontend.as_ref()).await?;
        let failure = (item.status == Status::Fail).then(|| item.evidence.clone());
        self.push(item, clock.elapsed());
        Ok(Applied { undo, failure })
    }

    async fn smoke(&mut self) -> Applied<Undo> {
        let clock = Instant::now();
        let mut smoke_report = PhaseReport::new("smoke");
        let passed = smoke::run_checks(self.ctx, &mut smoke_report).await;
        let sent = smoke_report
            .checks
            .iter()
            .filter(|c| c.status != Status::Skip)
            .count();
        for c in smoke_report.checks {
            self.report.check(c);
        }
        self.report.tables.extend(smoke_report.tables);
        let item = if passed {
            CheckItem::new(
                "smoke",
                "Smoke checks",
                Status::Pass,
                format!("{sent} check(s) passed"),
            )
        } else {
            CheckItem::new(
                "smoke",
                "Smoke checks",
                Status::Fail,
                "a smoke check failed: see its row",
            )
        };
        self.push(item, clock.elapsed());
        self.frontend_clock.stop();
        if passed {
            Applied::done()
        } else {
            Applied::failed("a smoke check failed")
        }
    }

    async fn retire(&mut self) -> Applied<Undo> {
        let Some(record) = self.switched.as_ref().and_then(|d| d.replication.clone()) else {
            return Applied::done();
        };
        let (id, title) = ("replication-retired", "Replication retired");
        let clock = Instant::now();
        let retired =
            retire_replication(self.ctx, &self.ledger, &self.source, &self.target, &record).await;
        let item = match retired {
            Ok(removed) => CheckItem::new(id, title, Status::Pass, removed),
            Err(e) => CheckItem::new(id, title, Status::Warn, e.message)
                .with_hint("the switch is done; run `rollback`-free cleanup by re-running `cutover` or drop the subscription, publication and role the ledger names by hand"),
        };
        self.push(item, clock.elapsed());
        Applied::done()
    }

    async fn undo_freeze(&self) -> CheckItem {
        let (id, title) = ("undo-freeze", "Undo: write freeze lifted");
        match lift_freeze(self.ctx, &self.source).await {
            // The ledger's refusal leaves its freeze open: `rollback` sees it.
            Ok((lifted, _marked)) => CheckItem::new(
                id,
                title,
                Status::Pass,
                format!("{} source tables take writes again", lifted.len()),
            ),
            Err(e) => CheckItem::new(id, title, Status::Fail, e.to_string())
                .with_hint("run `cutover rollback`: it lifts the freeze"),
        }
    }

    /// The freeze's parts in a table and in the ledger, once the steps ran:
    /// `kept` when the switch stands.
    pub(super) async fn record_freeze(&mut self, kept: bool) {
        let Some(done) = &self.switched else {
            return;
        };
        let frontend = self.frontend_clock.took();
        self.report
            .tables
            .push(database::freeze_table(done, frontend, kept));
        let record = database::timing_record(&self.ctx.manifest.data.mode, done, frontend, kept);
        // The timings are for the record only: the switch stands without.
        let _ = self.ledger.record_step(self.ctx.run_id, &record).await;
    }
}

impl Reversible for Cutover<'_> {
    type Step = CutoverStep;
    type Undo = Undo;

    async fn apply(&mut self, step: CutoverStep) -> Result<Applied<Undo>, PhaseError> {
        Ok(match step {
            CutoverStep::ReplicationHealth => self.replication_health().await,
            CutoverStep::Database => self.database().await,
            CutoverStep::SourceGuardsOff => self.guards(false).await,
            CutoverStep::FrontendSwitch => return self.frontend().await,
            CutoverStep::TargetGuardsOn => self.guards(true).await,
            CutoverStep::Smoke => self.smoke().await,
            CutoverStep::RetireReplication => self.retire().await,
        })
    }

    async fn undo(&mut self, undo: Undo) -> String {
        let clock = Instant::now();
        let table = self.switches.as_ref();
        let item = match undo {
            Undo::Freeze => self.undo_freeze().await,
            Undo::SourceGuards(before) => {
                guards::undo_source(self.ctx, &self.source, table, &self.guard_ledger, &before)
                    .await
            }
            Undo::Frontend(before) => {
                frontend::undo(
                    self.ctx,
                    &self.frontend_ledger,
                    self.frontend.as_ref(),
                    before,
                )
                .await
            }
            Undo::TargetGuards(before, released) => {
                let ledger = &self.guard_ledger;
                guards::undo_target(self.ctx, &self.target, table, ledger, &before, &released).await
            }
        };
        let title = item.title.clone();
        self.push(item, clock.elapsed());
        title
    }
}
