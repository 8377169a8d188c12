//! The command line and the action's inputs, resolved into [`Settings`].
//!
//! Every option can come from three places, first found wins: the flag; in
//! GitHub Actions (`GITHUB_ACTIONS=true`) the `INPUT_<NAME>` variable the
//! runner sets for the action's input (upper case, hyphens kept, e.g.
//! `INPUT_SOURCE-DB-URL`); elsewhere `CUTOVER_<NAME>` (upper case, hyphens as
//! underscores, e.g. `CUTOVER_SOURCE_DB_URL`). Unset and empty mean the same.

use std::collections::HashMap;
use std::path::PathBuf;

use clap::Parser;

use crate::phase::{Phase, parse_phase_list};
use crate::redact::{DbUrl, SecretText};

const AFTER_HELP: &str = "\
PHASES (one, or a comma list, run in the order given):
  plan        read everything read-only and say what each phase would do
  preflight   the pre-migration checklist (access, source ≠ target, migrations, secrets, ...)
  backup      pg_dump of source (and target when not empty), config tables as CSV, sha256
  schema      apply pending migration files to the target, recorded as the Supabase CLI does
  data        copy rows source → target in one snapshot, tables in parallel
  functions   deploy Edge Functions through the Management API
  secrets     set the target's Edge Function secrets from environment variables
  config      set database-stored configuration rows on the target
  validate    row counts, checksums, sequences, RLS and schema of source vs target
  cutover     check the approval gate, then switch guards and the frontend to the target
  smoke       HTTP checks of routes and function endpoints
  monitor     watch the target's 5xx rate, function errors and route latency for a window
  rollback    frontend back to the source, guards restored, optional target restore
  storage     create the Storage buckets on the target and copy their objects ([storage])
  migrate     = preflight,backup,schema,data,storage,functions,secrets,config,validate
              (storage only when the manifest has a [storage] section)

Every option is also read from CUTOVER_<NAME> (e.g. CUTOVER_SOURCE_DB_URL), or in
GitHub Actions from the action input INPUT_<NAME> (e.g. INPUT_SOURCE-DB-URL).

EXIT CODES: 0 success, 1 a phase failed, 2 bad usage or manifest, 3 blocked by a gate.";

/// `cutover [OPTIONS] <PHASES>`
/// (No `Debug`: it holds tokens and URLs as given; [`Settings`] holds them as
/// types that cannot print them.)
#[derive(Parser, Default)]
#[command(
    name = "cutover",
    version,
    about = "Move and release a Supabase-backed application from one environment to another.",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Phase, or comma list of phases, to run (see PHASES below) [default: plan]
    #[arg(value_name = "PHASES")]
    pub phases: Option<String>,
    /// Path of the manifest
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// PostgreSQL URL of the source environment's database
    #[arg(long, value_name = "URL")]
    pub source_db_url: Option<String>,
    /// PostgreSQL URL of the target environment's database
    #[arg(long, value_name = "URL")]
    pub target_db_url: Option<String>,
    /// Supabase project ref of the source
    #[arg(long, value_name = "REF")]
    pub source_project_ref: Option<String>,
    /// Supabase project ref of the target
    #[arg(long, value_name = "REF")]
    pub target_project_ref: Option<String>,
    /// Supabase Management API access token
    #[arg(long, value_name = "TOKEN")]
    pub supabase_access_token: Option<String>,
    /// Base URL of the Supabase Management API [default: https://api.supabase.com]
    #[arg(long, value_name = "URL")]
    pub supabase_api_url: Option<String>,
    /// GitHub token (API base from GITHUB_API_URL)
    #[arg(long, value_name = "TOKEN")]
    pub github_token: Option<String>,
    /// GitHub environment whose reviewers gate `cutover` [default: production]
    #[arg(long, value_name = "NAME")]
    pub environment: Option<String>,
    /// Plan every phase and write nothing anywhere
    #[arg(long)]
    pub dry_run: bool,
    /// Let `data` truncate and refill target tables that already hold rows
    #[arg(long)]
    pub overwrite: bool,
    /// `backup`: restore each dump into a scratch database and compare row counts
    #[arg(long)]
    pub verify: bool,
    /// `rollback`: restore the target database from this backup file
    #[arg(long, value_name = "FILE")]
    pub backup_file: Option<PathBuf>,
    /// `rollback`: Edge Functions to put back, `all` or names (`a,b`)
    #[arg(long, value_name = "NAMES")]
    pub rollback_functions: Option<String>,
    /// `rollback`: deploy the functions of this git ref instead of the saved bundles
    #[arg(long, value_name = "REF")]
    pub rollback_functions_ref: Option<String>,
    /// Storage API base of the source project [default: https://<source-project-ref>.supabase.co]
    #[arg(long, value_name = "URL")]
    pub source_storage_url: Option<String>,
    /// Storage API base of the target project [default: https://<target-project-ref>.supabase.co]
    #[arg(long, value_name = "URL")]
    pub target_storage_url: Option<String>,
    /// The source project's service_role key (`storage` reads its buckets and objects)
    #[arg(long, value_name = "KEY")]
    pub source_service_role_key: Option<String>,
    /// The target project's service_role key (`storage` writes its buckets and objects)
    #[arg(long, value_name = "KEY")]
    pub target_service_role_key: Option<String>,
    /// Vercel API token (frontend provider `vercel`)
    #[arg(long, value_name = "TOKEN")]
    pub vercel_token: Option<String>,
    /// Cloudflare API token (frontend provider `cloudflare-pages`)
    #[arg(long, value_name = "TOKEN")]
    pub cloudflare_api_token: Option<String>,
    /// Where to append the Markdown job summary [default: $GITHUB_STEP_SUMMARY]
    #[arg(long, value_name = "FILE")]
    pub summary_file: Option<PathBuf>,
    /// Where to write the JSON report
    #[arg(long, value_name = "FILE")]
    pub report_file: Option<PathBuf>,
}

/// Inputs that carry secrets: masked before anything is printed.
pub const SECRET_INPUTS: &[&str] = &[
    "source-db-url",
    "target-db-url",
    "supabase-access-token",
    "github-token",
    "vercel-token",
    "cloudflare-api-token",
    "source-service-role-key",
    "target-service-role-key",
];

/// Everything the run needs from its invocation, resolved and checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Phases in run order.
    pub phases: Vec<Phase>,
    /// The phases as the user wrote them (for the re-run command).
    pub phases_text: String,
    /// Manifest path.
    pub manifest: PathBuf,
    /// Source database URL.
    pub source_db_url: Option<DbUrl>,
    /// Target database URL.
    pub target_db_url: Option<DbUrl>,
    /// Source project ref.
    pub source_project_ref: Option<String>,
    /// Target project ref.
    pub target_project_ref: Option<String>,
    /// Management API token.
    pub supabase_access_token: Option<SecretText>,
    /// Management API base URL.
    pub supabase_api_url: String,
    /// GitHub token.
    pub github_token: Option<SecretText>,
    /// GitHub API base URL.
    pub github_api_url: String,
    /// GitHub environment name.
    pub environment: String,
    /// Write nothing.
    pub dry_run: bool,
    /// Truncate non-empty target tables in `data`.
    pub overwrite: bool,
    /// Verify backups by restoring them.
    pub verify: bool,
    /// Backup file for `rollback`.
    pub backup_file: Option<PathBuf>,
    /// Edge Functions for `rollback` to put back (`all` or names).
    pub rollback_functions: Option<String>,
    /// Git ref whose functions `rollback` deploys instead of the saved bundles.
    pub rollback_functions_ref: Option<String>,
    /// Storage API base of the source (`https://<ref>.supabase.co` when
    /// not given and the source project ref is).
    pub source_storage_url: Option<String>,
    /// Storage API base of the target (`https://<ref>.supabase.co` when
    /// not given and the target project ref is).
    pub target_storage_url: Option<String>,
    /// The source project's service_role key (never printed).
    pub source_service_role_key: Option<SecretText>,
    /// The target project's service_role key (never printed).
    pub target_service_role_key: Option<SecretText>,
    /// Vercel token.
    pub vercel_token: Option<SecretText>,
    /// Cloudflare token.
    pub cloudflare_api_token: Option<SecretText>,
    /// Markdown summary destination.
    pub summary_file: Option<PathBuf>,
    /// JSON report destination.
    pub report_file: PathBuf,
    /// Running inside GitHub Actions.
    pub actions: bool,
    /// `GITHUB_*` facts about the run.
    pub github: GithubRun,
}

/// Facts the runner exposes about the workflow run.
#[derive(Debug, Clone, Default)]
pub struct GithubRun {
    /// `owner/repo`.
    pub repository: Option<String>,
    /// Workflow run id.
    pub run_id: Option<u64>,
    /// Commit sha.
    pub sha: Option<String>,
    /// Git ref being built (`refs/tags/v1.2.0`).
    pub git_ref: Option<String>,
    /// Who started the run.
    pub actor: Option<String>,
    /// Link to the run.
    pub run_url: Option<String>,
    /// Workspace folder (paths in outputs are relative to it).
    pub workspace: Option<PathBuf>,
    /// `$GITHUB_OUTPUT`.
    pub output_file: Option<PathBuf>,
}

/// A problem with how cutover was invoked (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Reads variables the way the runner or a shell provides them.
pub trait EnvSource {
    /// The variable's value, if set.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl EnvSource for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

/// The variable an input is read from in this mode.
pub fn input_variable(name: &str, actions: bool) -> String {
    if actions {
        format!("INPUT_{}", name.to_uppercase().replace(' ', "_"))
    } else {
        format!("CUTOVER_{}", name.to_uppercase().replace(['-', ' '], "_"))
    }
}

/// How to tell the user where an input comes from, e.g.
/// "`source-db-url` (--source-db-url or CUTOVER_SOURCE_DB_URL)".
pub fn input_label(name: &str, actions: bool) -> String {
    if name == "phase" {
        // The phases are the positional argument on the command line.
        return if actions {
            "input `phase`".into()
        } else {
            format!(
                "the PHASES argument, e.g. `cutover plan` (or {})",
                input_variable(name, false)
            )
        };
    }
    if actions {
        format!("input `{name}`")
    } else {
        format!("--{name} (or {})", input_variable(name, false))
    }
}

struct Resolver<'a> {
    env: &'a dyn EnvSource,
    actions: bool,
}

impl Resolver<'_> {
    fn text(&self, flag: Option<String>, name: &str) -> Option<String> {
        if let Some(v) = flag.filter(|v| !v.trim().is_empty()) {
            return Some(v.trim().to_string());
        }
        let mut names = vec![input_variable(name, self.actions)];
        if self.actions {
            // Accept the underscore spelling too, for people running the image by hand.
            names.push(format!("INPUT_{}", name.to_uppercase().replace('-', "_")));
        }
        names
            .iter()
            .filter_map(|n| self.env.get(n))
            .map(|v| v.trim().to_string())
            .find(|v| !v.is_empty())
    }

    fn flag(&self, flag: bool, name: &str) -> Result<bool, UsageError> {
        if flag {
            return Ok(true);
        }
        match self.text(None, name).map(|v| v.to_ascii_lowercase()) {
            None => Ok(false),
            Some(v) if ["true", "1", "yes", "on"].contains(&v.as_str()) => Ok(true),
            Some(v) if ["false", "0", "no", "off"].contains(&v.as_str()) => Ok(false),
            Some(v) => Err(UsageError(format!(
                "{} is {v:?}; use true or false",
                input_label(name, self.actions)
            ))),
        }
    }
}

impl Settings {
    /// Resolves the parsed command line against the environment.
    pub fn resolve(cli: Cli, env: &dyn EnvSource) -> Result<Settings, UsageError> {
        let actions = env.get("GITHUB_ACTIONS").is_some_and(|v| v == "true");
        let r = Resolver { env, actions };
        let phases_text = r.text(cli.phases, "phase").unwrap_or_else(|| "plan".into());
        let phases = parse_phase_list(&phases_text)
            .map_err(|e| UsageError(format!("{} ({})", e, input_label("phase", actions))))?;
        let github_var = |name: &str| env.get(name).filter(|v| !v.is_empty());
        let repository = github_var("GITHUB_REPOSITORY");
        let run_id = github_var("GITHUB_RUN_ID").and_then(|v| v.parse().ok());
        let run_url = match (&repository, run_id) {
            (Some(repo), Some(id)) => Some(format!(
                "{}/{repo}/actions/runs/{id}",
                github_var("GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".into())
            )),
            _ => None,
        };
        let summary_file = r
            .text(
                cli.summary_file.map(|p| p.display().to_string()),
                "summary-file",
            )
            .or_else(|| github_var("GITHUB_STEP_SUMMARY"))
            .map(PathBuf::from);
        let source_ref = r.text(cli.source_project_ref, "source-project-ref");
        let target_ref = r.text(cli.target_project_ref, "target-project-ref");
        let settings = Settings {
            phases,
            phases_text,
            manifest: r
                .text(cli.manifest.map(|p| p.display().to_string()), "manifest")
                .unwrap_or_else(|| "cutover.toml".into())
                .into(),
            source_db_url: r.text(cli.source_db_url, "source-db-url").map(DbUrl::new),
            target_db_url: r.text(cli.target_db_url, "target-db-url").map(DbUrl::new),
            source_project_ref: source_ref.clone(),
            target_project_ref: target_ref.clone(),
            supabase_access_token: r
                .text(cli.supabase_access_token, "supabase-access-token")
                .map(SecretText::new),
            supabase_api_url: r
                .text(cli.supabase_api_url, "supabase-api-url")
                .unwrap_or_else(|| "https://api.supabase.com".into())
                .trim_end_matches('/')
                .to_string(),
            github_token: r
                .text(cli.github_token, "github-token")
                .map(SecretText::new),
            github_api_url: github_var("GITHUB_API_URL")
                .unwrap_or_else(|| "https://api.github.com".into())
                .trim_end_matches('/')
                .to_string(),
            environment: r
                .text(cli.environment, "environment")
                .unwrap_or_else(|| "production".into()),
            dry_run: r.flag(cli.dry_run, "dry-run")?,
            overwrite: r.flag(cli.overwrite, "overwrite")?,
            verify: r.flag(cli.verify, "verify")?,
            backup_file: r
                .text(
                    cli.backup_file.map(|p| p.display().to_string()),
                    "backup-file",
                )
                .map(PathBuf::from),
            rollback_functions: r.text(cli.rollback_functions, "rollback-functions"),
            rollback_functions_ref: r.text(cli.rollback_functions_ref, "rollback-functions-ref"),
            source_storage_url: r
                .text(cli.source_storage_url, "source-storage-url")
                .or_else(|| source_ref.as_deref().map(project_url)),
            target_storage_url: r
                .text(cli.target_storage_url, "target-storage-url")
                .or_else(|| target_ref.as_deref().map(project_url)),
            source_service_role_key: r
                .text(cli.source_service_role_key, "source-service-role-key")
                .map(SecretText::new),
            target_service_role_key: r
                .text(cli.target_service_role_key, "target-service-role-key")
                .map(SecretText::new),
            vercel_token: r
                .text(cli.vercel_token, "vercel-token")
                .map(SecretText::new),
            cloudflare_api_token: r
                .text(cli.cloudflare_api_token, "cloudflare-api-token")
                .map(SecretText::new),
            summary_file,
            report_file: r
                .text(
                    cli.report_file.map(|p| p.display().to_string()),
                    "report-file",
                )
                .unwrap_or_else(|| "cutover-report.json".into())
                .into(),
            actions,
            github: GithubRun {
                repository,
                run_id,
                sha: github_var("GITHUB_SHA"),
                git_ref: github_var("GITHUB_REF"),
                actor: github_var("GITHUB_TRIGGERING_ACTOR").or_else(|| github_var("GITHUB_ACTOR")),
                run_url,
                workspace: github_var("GITHUB_WORKSPACE").map(PathBuf::from),
                output_file: github_var("GITHUB_OUTPUT").map(PathBuf::from),
            },
        };
        for (name, url) in [
            ("source-db-url", &settings.source_db_url),
            ("target-db-url", &settings.target_db_url),
        ] {
            if let Some(url) = url {
                check_db_url(url.expose()).map_err(|why| {
                    UsageError(format!(
                        "{} is not a PostgreSQL URL: {why}",
                        input_label(name, actions)
                    ))
                })?;
            }
        }
        Ok(settings)
    }

    /// The secret-bearing input values that are set.
    pub fn secret_values(&self) -> Vec<(&'static str, &str)> {
        let values = [
            self.source_db_url.as_ref().map(DbUrl::expose),
            self.target_db_url.as_ref().map(DbUrl::expose),
            self.supabase_access_token.as_ref().map(SecretText::expose),
            self.github_token.as_ref().map(SecretText::expose),
            self.vercel_token.as_ref().map(SecretText::expose),
            self.cloudflare_api_token.as_ref().map(SecretText::expose),
            self.source_service_role_key
                .as_ref()
                .map(SecretText::expose),
            self.target_service_role_key
                .as_ref()
                .map(SecretText::expose),
        ];
        SECRET_INPUTS
            .iter()
            .copied()
            .zip(values)
            .filter_map(|(n, v)| v.map(|v| (n, v)))
            .collect()
    }

    /// The label of an input for messages.
    pub fn label(&self, name: &str) -> String {
        input_label(name, self.actions)
    }

    /// A command that re-runs the same phases with the same manifest.
    pub fn rerun_command(&self) -> String {
        if self.actions {
            format!(
                "re-run the workflow job, or locally: cutover {} --manifest {}",
                self.phases_text.replace(' ', ""),
                self.manifest.display()
            )
        } else {
            format!(
                "cutover {} --manifest {}{}",
                self.phases_text.replace(' ', ""),
                self.manifest.display(),
                if self.dry_run { " --dry-run" } else { "" }
            )
        }
    }
}

/// A project's own API base, `https://<ref>.supabase.co`.
pub fn project_url(project_ref: &str) -> String {
    format!("https://{project_ref}.supabase.co")
}

/// Checks that a URL is a PostgreSQL connection URL; the reason never repeats
/// the URL (it may hold a password).
fn check_db_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| {
        format!("{e}; expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE (percent-encode special characters in the password)")
    })?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "the scheme is {:?}; expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(
            "it names no host; expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn actions_inputs_keep_hyphens() {
        let e = env(&[
            ("GITHUB_ACTIONS", "true"),
            ("INPUT_PHASE", "preflight"),
            ("INPUT_SOURCE-DB-URL", "postgres://u:p@h/db"),
            ("INPUT_DRY-RUN", "true"),
            ("INPUT_MANIFEST", ""),
        ]);
        let s = Settings::resolve(Cli::default(), &e).unwrap();
        assert_eq!(s.phases, vec![Phase::Preflight]);
        assert_eq!(
            s.source_db_url.as_ref().map(DbUrl::expose),
            Some("postgres://u:p@h/db")
        );
        assert!(s.dry_run);
        assert_eq!(s.manifest, PathBuf::from("cutover.toml"), "empty = unset");
    }

    #[test]
    fn settings_debug_never_shows_a_token_or_a_url_password() {
        let e = env(&[
            ("GITHUB_ACTIONS", "true"),
            ("INPUT_PHASE", "preflight"),
            ("INPUT_SOURCE-DB-URL", "postgres://u:Pa55-secret@h:6543/db"),
            ("INPUT_GITHUB-TOKEN", "ghp_token_value_123"),
            ("INPUT_SUPABASE-ACCESS-TOKEN", "sbp_token_value_456"),
            ("INPUT_VERCEL-TOKEN", "vercel_token_value_789"),
        ]);
        let s = Settings::resolve(Cli::default(), &e).unwrap();
        let shown = format!("{s:?}");
        for secret in [
            "Pa55-secret",
            "ghp_token_value_123",
            "sbp_token_value_456",
            "vercel_token_value_789",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("h:6543/db"), "{shown}");
    }

    #[test]
    fn local_runs_read_cutover_variables_and_flags_win() {
        let e = env(&[
            ("CUTOVER_TARGET_DB_URL", "postgres://h/t"),
            ("CUTOVER_ENVIRONMENT", "uat"),
            ("INPUT_ENVIRONMENT", "ignored-outside-actions"),
        ]);
        let cli = Cli {
            environment: Some("staging".into()),
            ..Cli::default()
        };
        let s = Settings::resolve(cli, &e).unwrap();
        assert_eq!(
            s.target_db_url.as_ref().map(DbUrl::expose),
            Some("postgres://h/t")
        );
        assert_eq!(s.environment, "staging");
        assert_eq!(s.phases, vec![Phase::Plan]);
    }

    #[test]
    fn bad_boolean_names_the_input() {
        let e = env(&[("GITHUB_ACTIONS", "true"), ("INPUT_DRY-RUN", "maybe")]);
        let err = Settings::resolve(Cli::default(), &e).unwrap_err();
        assert!(err.0.contains("input `dry-run`"), "{err}");
    }

    #[test]
    fn invalid_url_names_the_input_not_the_value() {
        let e = env(&[("CUTOVER_SOURCE_DB_URL", "mysql://u:hunter22@h/db")]);
        let err = Settings::resolve(Cli::default(), &e).unwrap_err();
        assert!(err.0.contains("CUTOVER_SOURCE_DB_URL"), "{err}");
        assert!(!err.0.contains("hunter22"), "{err}");
    }

    #[test]
    fn misspelt_phase_suggests_the_nearest() {
        let cli = Cli {
            phases: Some("plan,prefligth".into()),
            ..Cli::default()
        };
        let err = Settings::resolve(cli, &env(&[])).unwrap_err();
        assert!(err.0.contains("did you mean `preflight`"), "{err}");
        // The CLI takes phases as an argument: no `--phase` flag to suggest.
        assert!(!err.0.contains("--phase"), "{err}");
        assert!(err.0.contains("the PHASES argument"), "{err}");
        let in_actions = Settings::resolve(
            Cli::default(),
            &env(&[("GITHUB_ACTIONS", "true"), ("INPUT_PHASE", "prefligth")]),
        )
        .unwrap_err();
        assert!(in_actions.0.contains("input `phase`"), "{in_actions}");
    }
}
