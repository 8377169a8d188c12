//! What every phase gets: settings, manifest, connections, ledger, console.

use std::path::PathBuf;

use uuid::Uuid;

use crate::cli::{EnvSource, Settings};
use crate::manifest::Manifest;
use crate::pg::ledger::{Ledger, RunRecord};
use crate::pg::{Database, Side};
use crate::phases::PhaseError;
use crate::redact::DbUrl;
use crate::redact::{Redactor, display_db_url};
use crate::repo::functions::{self, FunctionSelection};
use crate::repo::migrations::{self, MigrationDir};
use crate::report::actions::Console;

pub use crate::redact::name_looks_secret;

/// The state shared by the phases of one run.
pub struct Context {
    /// Resolved inputs.
    pub settings: Settings,
    /// The manifest.
    pub manifest: Manifest,
    /// Secret values to keep out of every output.
    pub redactor: Redactor,
    /// Log output (workflow commands in Actions).
    pub console: Console,
    /// This run's id (also `runs.id` in the ledger).
    pub run_id: Uuid,
    /// Source and target were proven to be different environments in this
    /// run (checked once, by the first phase that writes or compares).
    pub sides_distinct: bool,
    /// The monitoring baseline `cutover` took before its switch, for a
    /// `monitor` later in the same run.
    pub monitor_baseline: Option<crate::phases::monitor::Poll>,
    /// The target project's URL and client keys once read from the
    /// Management API (`supabase.url`, `supabase.anon_key`, ...): what
    /// `${supabase.*}` in `[frontend.env]` expands to.
    pub project_values: std::collections::BTreeMap<String, String>,
    env: Box<dyn EnvSource + Send + Sync>,
    source: Option<Database>,
    source_writable: Option<Database>,
    target_read_only: Option<Database>,
    target_writable: Option<Database>,
    ledger: Option<Ledger>,
}

impl Context {
    /// A context for one run. Registers every secret the manifest points at
    /// (the values of `[secrets.required]` variables, `${VAR}` references of
    /// secret config keys, function headers and frontend variables) with the
    /// redactor and the runner's mask list.
    pub fn new(
        settings: Settings,
        manifest: Manifest,
        redactor: Redactor,
        env: Box<dyn EnvSource + Send + Sync>,
    ) -> Context {
        let console = Console::new(settings.actions);
        let ctx = Context {
            settings,
            manifest,
            redactor,
            console,
            run_id: Uuid::new_v4(),
            sides_distinct: false,
            monitor_baseline: None,
            project_values: std::collections::BTreeMap::new(),
            env,
            source: None,
            source_writable: None,
            target_read_only: None,
            target_writable: None,
            ledger: None,
        };
        for var in ctx.secret_variables() {
            if let Some(value) = ctx.env_var(&var) {
                ctx.redactor.add(&value);
                ctx.console.add_mask(&value);
            }
        }
        ctx
    }

    /// Environment variables whose values are secrets, per the manifest.
    pub fn secret_variables(&self) -> Vec<String> {
        let m = &self.manifest;
        let mut vars: Vec<String> = m.secrets.required.values().cloned().collect();
        for (key, value) in &m.config.values {
            if m.config.secret_keys.contains(key) || name_looks_secret(key) {
                vars.extend(crate::manifest::env_refs(value));
            }
        }
        for smoke in &m.functions.smoke {
            for value in smoke.headers.values() {
                vars.extend(crate::manifest::env_refs(value));
            }
            // Body references that name a secret (e.g. ${INGEST_API_KEY}).
            if let Some(body) = &smoke.body {
                vars.extend(
                    crate::manifest::env_refs(body)
                        .into_iter()
                        .filter(|v| name_looks_secret(v)),
                );
            }
        }
        if let Some(frontend) = &m.frontend {
            for (name, value) in frontend.env.iter().chain(&frontend.source_env) {
                if name_looks_secret(name) {
                    vars.extend(crate::manifest::env_refs(value));
                }
            }
        }
        // Vault values `data` re-creates on the target.
        vars.extend(m.vault.secrets.values().cloned());
        // The identity that decrypts backups (rollback, backup --verify).
        vars.push(crate::phases::backup::AGE_IDENTITY_VAR.to_string());
        vars.sort();
        vars.dedup();
        vars
    }

    /// A variable of the job's environment; empty counts as unset.
    pub fn env_var(&self, name: &str) -> Option<String> {
        self.env.get(name).filter(|v| !v.trim().is_empty())
    }

    /// The manifest's folder-relative path resolved.
    pub fn manifest_relative(&self, path: &std::path::Path) -> PathBuf {
        Manifest::resolve(&self.settings.manifest, path)
    }

    /// Reads the migrations folder.
    pub fn migration_dir(&self) -> Result<MigrationDir, PhaseError> {
        let dir = self.manifest_relative(&self.manifest.project.migrations_dir);
        migrations::read_dir(&dir).map_err(|e| {
            PhaseError::new(format!(
                "cannot read migrations folder {}: {e}",
                dir.display()
            ))
            .hint(
                "set [project] migrations_dir in the manifest (relative to the manifest's folder)",
            )
        })
    }

    /// Lists the function folders to deploy.
    pub fn function_selection(&self) -> Result<FunctionSelection, PhaseError> {
        let dir = self.manifest_relative(&self.manifest.project.functions_dir);
        functions::discover(&dir, &self.manifest.functions).map_err(|e| {
            PhaseError::new(format!(
                "cannot read functions folder {}: {e}",
                dir.display()
            ))
            .hint("set [project] functions_dir in the manifest")
        })
    }

    /// `host:port/db` of a side, when its URL is set.
    pub fn display(&self, side: Side) -> Option<String> {
        self.url(side).map(display_db_url)
    }

    /// A side's database URL as given, credentials included (to connect
    /// with or hand to `pg_dump`; never to print).
    pub fn url(&self, side: Side) -> Option<&str> {
        match side {
            Side::Source => self.settings.source_db_url.as_ref().map(DbUrl::expose),
            Side::Target => self.settings.target_db_url.as_ref().map(DbUrl::expose),
        }
    }

    /// Whether a side's URL was given.
    pub fn has_url(&self, side: Side) -> bool {
        self.url(side).is_some()
    }

    fn missing_url(&self, side: Side, phase: &str) -> PhaseError {
        PhaseError::new(format!(
            "{phase} needs the {} database but {} is not set",
            side.name(),
            self.settings.label(side.url_input())
        ))
        .hint(format!(
            "pass the {} database's connection string, e.g. from a secret: `{}: ${{{{ secrets.{}_DB_URL }}}}`",
            side.name(),
            side.url_input(),
            side.name().to_uppercase()
        ))
    }

    fn pool_size(&self) -> u32 {
        u32::from(self.manifest.data.parallel) + 2
    }

    /// The source database. Always read only: cutover copies from the source
    /// and never writes to it outside the guards of `cutover`/`rollback`.
    pub async fn source(&mut self, phase: &str) -> Result<Database, PhaseError> {
        if let Some(db) = &self.source {
            return Ok(db.clone());
        }
        let url = self
            .url(Side::Source)
            .ok_or_else(|| self.missing_url(Side::Source, phase))?;
        let db =
            Database::connect(url, Side::Source, true, self.pool_size(), &self.redactor).await?;
        self.source = Some(db.clone());
        Ok(db)
    }

    /// A writable connection to the source, for the guards only: the one
    /// place cutover writes to the source is `cutover`/`rollback` switching
    /// `[guards]` (config switches and pg_cron jobs) off and back on. Every
    /// other phase uses [`Context::source`], which cannot write.
    pub async fn source_writable(&mut self, phase: &str) -> Result<Database, PhaseError> {
        if let Some(db) = &self.source_writable {
            return Ok(db.clone());
        }
        let url = self
            .url(Side::Source)
            .ok_or_else(|| self.missing_url(Side::Source, phase))?;
        let db = Database::connect(url, Side::Source, false, 2, &self.redactor).await?;
        self.source_writable = Some(db.clone());
        Ok(db)
    }

    /// The target database, read only (for `plan`) or writable.
    pub async fn target(&mut self, phase: &str, writable: bool) -> Result<Database, PhaseError> {
        let slot = if writable {
            &self.target_writable
        } else {
            &self.target_read_only
        };
        if let Some(db) = slot {
            return Ok(db.clone());
        }
        let url = self
            .url(Side::Target)
            .ok_or_else(|| self.missing_url(Side::Target, phase))?;
        let db = Database::connect(
            url,
            Side::Target,
            !writable,
            self.pool_size(),
            &self.redactor,
        )
        .await?;
        if writable {
            self.target_writable = Some(db.clone());
        } else {
            self.target_read_only = Some(db.clone());
        }
        Ok(db)
    }

    /// The ledger in the target database, created on first use. `None` with
    /// dry-run: nothing is written then, not even the audit trail.
    pub async fn ledger(&mut self, phase: &str) -> Result<Option<Ledger>, PhaseError> {
        if self.settings.dry_run {
            return Ok(None);
        }
        if let Some(ledger) = &self.ledger {
            return Ok(Some(ledger.clone()));
        }
        let target = self.target(phase, true).await?;
        let ledger = Ledger::open(&target, &self.manifest.ledger.schema, &self.redactor).await?;
        ledger
            .start_run(&RunRecord {
                id: self.run_id,
                phases: self
                    .settings
                    .phases
                    .iter()
                    .map(|p| p.name().to_string())
                    .collect(),
                git_sha: self.settings.github.sha.clone(),
                actor: self.settings.github.actor.clone(),
                run_url: self.settings.github.run_url.clone(),
                source: self.display(Side::Source),
                target: self.display(Side::Target),
            })
            .await?;
        self.ledger = Some(ledger.clone());
        Ok(Some(ledger))
    }

    /// The ledger if a phase already opened it (used to record steps).
    pub fn open_ledger(&self) -> Option<&Ledger> {
        self.ledger.as_ref()
    }

    /// Closes every connection.
    pub async fn close(&mut self) {
        for db in [
            self.source.take(),
            self.source_writable.take(),
            self.target_read_only.take(),
            self.target_writable.take(),
        ]
        .into_iter()
        .flatten()
        {
            db.close().await;
        }
    }
}
