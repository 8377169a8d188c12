//! The phases: each turns the context into a [`PhaseReport`].
//!
//! A phase talks to databases and APIs only through `pg`, `supabase`,
//! `github` and `frontend`, and never prints its report itself.

pub mod backup;
pub mod config;
pub mod cutover;
pub mod data;
pub mod functions;
pub mod lints;
pub mod monitor;
pub mod parity;
pub mod plan;
pub mod preflight;
pub mod project_keys;
pub mod project_settings;
pub mod readiness;
pub mod rollback;
pub mod schema;
pub mod secrets;
pub mod smoke;
pub mod storage;
pub mod validate;

use std::collections::BTreeMap;

use crate::context::Context;
use crate::manifest::QualifiedName;
use crate::pg::{Database, PgError, TableInfo};
use crate::report::PhaseReport;

pub use crate::phase::{Phase, parse_phase_list};

/// Why a phase stopped: a message, a fix, and whether a gate blocked it.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseError {
    /// What went wrong (already free of secrets).
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
    /// A gate refused (exit 3) rather than a failure (exit 1).
    pub blocked: bool,
}

impl PhaseError {
    /// A failure.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
            blocked: false,
        }
    }

    /// Adds a fix.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl From<PgError> for PhaseError {
    fn from(e: PgError) -> Self {
        let hint = e.hint().map(str::to_string);
        PhaseError {
            message: e.to_string(),
            hint,
            blocked: false,
        }
    }
}

impl From<crate::github::GithubError> for PhaseError {
    fn from(e: crate::github::GithubError) -> Self {
        PhaseError::new(e.to_string())
    }
}

/// Runs one phase. A phase that writes to a database or compares the two
/// first refuses when source and target are one environment, whatever ran
/// (or did not run) before it: `preflight` is not what keeps a `data
/// --overwrite` from emptying the source.
pub async fn run(phase: Phase, ctx: &mut Context) -> Result<PhaseReport, PhaseError> {
    if writes_or_compares(phase) {
        refuse_one_environment(phase, ctx).await?;
    }
    match phase {
        Phase::Plan => plan::run(ctx).await,
        Phase::Preflight => preflight::run(ctx).await,
        Phase::Backup => backup::run(ctx).await,
        Phase::Schema => schema::run(ctx).await,
        Phase::Data => data::run(ctx).await,
        Phase::Storage => storage::run(ctx).await,
        Phase::Validate => validate::run(ctx).await,
        Phase::Cutover => cutover::run(ctx).await,
        Phase::Smoke => smoke::run(ctx).await,
        Phase::Monitor => monitor::run(ctx).await,
        Phase::Rollback => rollback::run(ctx).await,
        Phase::Functions => functions::run(ctx).await,
        Phase::Secrets => secrets::run(ctx).await,
        Phase::Config => config::run(ctx).await,
    }
}

/// Whether this is a dry-run in which one of `earlier` runs before `phase`:
/// the target does not hold yet what those would write, so `phase` plans on
/// what they would create rather than failing on today's target.
pub(crate) fn dry_run_after(ctx: &Context, phase: Phase, earlier: &[Phase]) -> bool {
    let phases = &ctx.settings.phases;
    let at = |p: Phase| phases.iter().position(|q| *q == p);
    ctx.settings.dry_run
        && at(phase).is_some_and(|own| earlier.iter().any(|e| at(*e).is_some_and(|i| i < own)))
}

/// Phases that write to a database or compare source with target.
fn writes_or_compares(phase: Phase) -> bool {
    // `monitor` reads the platform's figures; when it rolls back, it asks
    // for this check itself before `rollback` writes.
    !matches!(
        phase,
        Phase::Plan | Phase::Preflight | Phase::Smoke | Phase::Monitor
    )
}

/// Fails when source and target are the same environment: equal project
/// refs, URLs naming the same host, port and database, or two URLs that
/// reach the same database (same server identity). Checked once a run.
async fn refuse_one_environment(phase: Phase, ctx: &mut Context) -> Result<(), PhaseError> {
    use crate::pg::Side;
    if ctx.sides_distinct {
        return Ok(());
    }
    let both = ctx.has_url(Side::Source) && ctx.has_url(Side::Target);
    // Server identity needs both connections; a side that does not answer
    // is left to the phase itself to report.
    let (source_info, target_info) = if both {
        let s = match ctx.source(phase.name()).await {
            Ok(db) => db.server_info().await.ok(),
            Err(_) => None,
        };
        let t = match ctx.target(phase.name(), false).await {
            Ok(db) => db.server_info().await.ok(),
            Err(_) => None,
        };
        (s, t)
    } else {
        (None, None)
    };
    let item = preflight::distinct_environments(ctx, source_info.as_ref(), target_info.as_ref());
    if item.status == crate::report::Status::Fail {
        let mut error = PhaseError::new(format!(
            "source and target are one environment: {}; nothing was read or written",
            item.evidence
        ));
        if let Some(hint) = item.hint {
            error = error.hint(hint);
        }
        return Err(error);
    }
    ctx.sides_distinct = both && source_info.is_some() && target_info.is_some();
    Ok(())
}

/// The tables a run copies, as decided by `[data]` and the source catalog.
#[derive(Debug, Clone, Default)]
pub struct TableSelection {
    /// Tables to copy, sorted by name.
    pub copy: Vec<TableInfo>,
    /// Tables left out by `exclude`.
    pub excluded: Vec<QualifiedName>,
    /// Names in `[data] tables` that the source does not have.
    pub missing: Vec<String>,
    /// Names in `[data] exclude` that match no table (probably misspelt).
    pub unknown_excludes: Vec<String>,
    /// `auth` tables that `include_auth`'s scope leaves out (sessions and
    /// tokens without `include_auth_sessions`, GoTrue's own bookkeeping).
    pub auth_left_out: Vec<QualifiedName>,
}

/// Applies `[data]` to the source's tables.
pub async fn select_tables(ctx: &Context, source: &Database) -> Result<TableSelection, PhaseError> {
    let data = &ctx.manifest.data;
    let mut selection = TableSelection::default();
    let parse = |name: &String| QualifiedName::parse(name).map_err(PhaseError::new);
    let excludes: Vec<QualifiedName> = data.exclude.iter().map(parse).collect::<Result<_, _>>()?;
    let candidates = if data.tables.is_empty() {
        let mut tables = source
            .user_tables(data.include_auth, data.include_storage)
            .await?;
        tables.retain(|t| {
            let copied = t.name.schema != "auth" || data.copies_auth_table(&t.name);
            if !copied {
                selection.auth_left_out.push(t.name.clone());
            }
            copied
        });
        tables
    } else {
        // Naming a table is opting in to it, whichever schema it is in.
        let all: BTreeMap<QualifiedName, TableInfo> = source
            .user_tables(true, true)
            .await?
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect();
        let mut listed = Vec::new();
        for name in &data.tables {
            let q = parse(name)?;
            match all.get(&q) {
                Some(t) => listed.push(t.clone()),
                None => selection.missing.push(name.clone()),
            }
        }
        listed
    };
    // cutover's own schema (the ledger on the target; the freeze function
    // and the replication fence on the source) is never application data.
    let ledger_schema = &ctx.manifest.ledger.schema;
    let candidates: Vec<TableInfo> = candidates
        .into_iter()
        .filter(|t| &t.name.schema != ledger_schema)
        .collect();
    for (text, q) in data.exclude.iter().zip(&excludes) {
        if !candidates.iter().any(|t| &t.name == q) {
            selection.unknown_excludes.push(text.clone());
        }
    }
    for table in candidates {
        if excludes.contains(&table.name) {
            selection.excluded.push(table.name);
        } else if !selection.copy.iter().any(|t| t.name == table.name) {
            selection.copy.push(table);
        }
    }
    selection.copy.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(selection)
}
