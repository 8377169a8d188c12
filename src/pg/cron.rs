//! pg_cron jobs held on a target that is not live yet.
//!
//! Migrations create jobs (`cron.schedule(...)`) that pg_cron starts running
//! at once: on a target that the app does not use yet they would send
//! messages or call webhooks twice, once from each environment. So `schema`
//! pauses every active job of the target right after the migrations, and
//! records each as a cron hold in `<ledger>.guard_states` (kind `cron-hold`,
//! previous `true`, applied `false`); `cutover` resumes the held jobs in the
//! same step that switches the target's guards on, and `rollback` holds the
//! target's active jobs again.
//!
//! Jobs are paused with `cron.alter_job`, which is what a non-superuser may
//! call on hosted Supabase, and which pg_cron allows only on the caller's own
//! jobs: a job owned by another role is left active and reported with the
//! fix, never skipped silently. Pausing and recording a hold happen in one
//! transaction (pg_cron keeps its jobs in the database the ledger is in), so
//! a job is never paused without the record that brings it back. Without
//! pg_cron nothing here does anything.

use sqlx::Row;
use uuid::Uuid;

use super::guards::GuardLedger;
use super::{Database, PgError};

/// Whether the connected role may alter a job: its own, or any when
/// superuser. `username` is read through `to_jsonb` so that a `cron.job`
/// without the column (a test double, a very old pg_cron) counts as ours.
const ALTERABLE: &str =
    "(coalesce(to_jsonb(j) ->> 'username', current_user::text) = current_user::text
     or (select rolsuper from pg_roles where rolname = current_user))";

/// A pg_cron job as `cron.job` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronJob {
    /// `cron.job.jobid`.
    pub id: i64,
    /// Its name; `None` for a job scheduled without one.
    pub name: Option<String>,
    /// The cron expression.
    pub schedule: String,
    /// The role it runs as (its owner).
    pub owner: Option<String>,
    /// Whether pg_cron runs it.
    pub active: bool,
    /// Whether the connected role may pause it (its own job, or superuser).
    pub alterable: bool,
}

impl CronJob {
    /// The name a hold is recorded under: the job's name, or `#<jobid>`
    /// for an unnamed job.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| format!("#{}", self.id))
    }
}

/// A job left active because the connected role may not pause it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnheldJob {
    /// The job.
    pub job: CronJob,
    /// Why: pg_cron's answer, or that another role owns it.
    pub reason: String,
}

/// What holding the target's active jobs did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HoldOutcome {
    /// Jobs paused now, each with an open hold in the ledger.
    pub held: Vec<CronJob>,
    /// Active jobs left running: owned by another role.
    pub unheld: Vec<UnheldJob>,
}

impl HoldOutcome {
    /// The jobs left active, each with why: `purge (owned by supabase_admin: ...)`.
    pub fn unheld_list(&self) -> String {
        self.unheld
            .iter()
            .map(|u| format!("{} ({})", u.job.label(), u.reason))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// How to pause each job left active by hand, as its owner.
    pub fn pause_by_hand(&self) -> String {
        self.unheld
            .iter()
            .map(|u| {
                format!(
                    "as {}: `select cron.alter_job({}, active := false);`",
                    u.job.owner.as_deref().unwrap_or("its owner"),
                    u.job.id
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One hold `cutover` released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasedHold {
    /// The job's name (or `#<jobid>`).
    pub name: String,
    /// Whether the job still existed (a job unscheduled meanwhile is gone).
    pub found: bool,
}

impl Database {
    /// Every pg_cron job the connected role can see (on Supabase `postgres`
    /// bypasses `cron.job`'s row security and sees all), by id; `None`
    /// without pg_cron.
    pub async fn list_cron_jobs(&self) -> Result<Option<Vec<CronJob>>, PgError> {
        if !self.has_pg_cron().await? {
            return Ok(None);
        }
        let sql = format!(
            "select j.jobid::bigint, j.jobname::text, j.schedule::text,
                    to_jsonb(j) ->> 'username', j.active, {ALTERABLE}
               from cron.job j order by j.jobid"
        );
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error("reading pg_cron jobs", e))?;
        Ok(Some(
            rows.into_iter()
                .map(|r| CronJob {
                    id: r.get(0),
                    name: r.get(1),
                    schedule: r.get(2),
                    owner: r.get(3),
                    active: r.get(4),
                    alterable: r.get::<Option<bool>, _>(5).unwrap_or(false),
                })
                .collect(),
        ))
    }

    /// The statement that sets one job's `active` ($1 jobid, $2 active):
    /// `cron.alter_job` where the installed pg_cron has it, else an update.
    async fn alter_job_sql(&self) -> Result<&'static str, PgError> {
        let has_alter: bool = sqlx::query_scalar(
            "select exists (select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                             where n.nspname = 'cron' and p.proname = 'alter_job')",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.error("looking for cron.alter_job", e))?;
        Ok(if has_alter {
            "select cron.alter_job($1, active := $2)"
        } else {
            "update cron.job set active = $2 where jobid = $1"
        })
    }

    /// Pauses the active jobs of this database (all of them, or only those
    /// whose label is in `only`) and records a cron hold for each, in one
    /// transaction per job. `None` without pg_cron. The ledger's
    /// `guard_states` table must exist ([`GuardLedger::create`]).
    pub async fn hold_active_cron_jobs(
        &self,
        ledger: &GuardLedger,
        run_id: Uuid,
        only: Option<&[String]>,
    ) -> Result<Option<HoldOutcome>, PgError> {
        let Some(jobs) = self.list_cron_jobs().await? else {
            return Ok(None);
        };
        let alter = self.alter_job_sql().await?;
        let record = format!(
            "insert into {} (run_id, side, kind, name, previous, applied)
             values ($1, 'target', 'cron-hold', $2, 'true', 'false')
             on conflict (side, kind, name) where restored_at is null do nothing",
            ledger.table()
        );
        let mut outcome = HoldOutcome::default();
        for job in jobs.into_iter().filter(|j| j.active) {
            let label = job.label();
            if only.is_some_and(|names| !names.contains(&label)) {
                continue;
            }
            if !job.alterable {
                outcome.unheld.push(UnheldJob {
                    reason: format!(
                        "owned by {}: pg_cron lets only a job's owner (or a superuser) pause it",
                        job.owner.as_deref().unwrap_or("another role")
                    ),
                    job,
                });
                continue;
            }
            let context = format!("pausing pg_cron job {label} until cutover");
            let mut tx = self
                .pool
                .begin()
                .await
                .map_err(|e| self.error(&context, e))?;
            sqlx::query(&record)
                .bind(run_id)
                .bind(&label)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.error(&context, e))?;
            let paused = sqlx::query(alter)
                .bind(job.id)
                .bind(false)
                .execute(&mut *tx)
                .await;
            match paused {
                Ok(_) => {
                    tx.commit().await.map_err(|e| self.error(&context, e))?;
                    outcome.held.push(CronJob {
                        active: false,
                        ..job
                    });
                }
                // pg_cron refuses with XX000 ("does not exist or you don't
                // own it") or a privilege error: the job stays as it is and
                // is reported; nothing was recorded for it.
                Err(e) => {
                    let _ = tx.rollback().await;
                    outcome.unheld.push(UnheldJob {
                        reason: self.error(&context, e).to_string(),
                        job,
                    });
                }
            }
        }
        Ok(Some(outcome))
    }

    /// Sets `active` of the job a hold names (`#<jobid>` or a job name; of
    /// several jobs with one name, those the role may alter). Returns
    /// whether such a job exists; without pg_cron, `false`.
    pub async fn set_held_job_active(&self, label: &str, active: bool) -> Result<bool, PgError> {
        let Some(jobs) = self.list_cron_jobs().await? else {
            return Ok(false);
        };
        let by_id = label
            .strip_prefix('#')
            .and_then(|id| id.parse::<i64>().ok());
        let matching: Vec<&CronJob> = jobs
            .iter()
            .filter(|j| match by_id {
                Some(id) => j.id == id && j.name.is_none(),
                None => j.name.as_deref() == Some(label) && j.alterable,
            })
            .collect();
        let alter = self.alter_job_sql().await?;
        for job in &matching {
            sqlx::query(alter)
                .bind(job.id)
                .bind(active)
                .execute(&self.pool)
                .await
                .map_err(|e| {
                    self.error(format!("setting pg_cron job {label} active = {active}"), e)
                })?;
        }
        Ok(!matching.is_empty())
    }

    /// Resumes every held job and closes its hold (restored by `run_id`).
    pub async fn release_cron_holds(
        &self,
        ledger: &GuardLedger,
        run_id: Uuid,
    ) -> Result<Vec<ReleasedHold>, PgError> {
        let mut released = Vec::new();
        for hold in ledger.open_holds().await? {
            let found = self.set_held_job_active(&hold.name, true).await?;
            ledger.mark_restored(&[hold.id], run_id).await?;
            released.push(ReleasedHold {
                name: hold.name,
                found,
            });
        }
        Ok(released)
    }
}
