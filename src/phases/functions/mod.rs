//! `functions`: deploys the Edge Function folders to the target project
//! through the Management API's multipart deploy, the way the Supabase CLI
//! uploads them (entrypoint, every file it imports through relative paths
//! such as `../_shared/*.ts`, the import map), then checks each is `ACTIVE`
//! at a newer version and runs the manifest's smoke invocations.
//!
//! Functions deploy a few at a time (`[functions] parallel`); the client
//! paces itself under the API's per-minute limit. A failed deploy is reported
//! and the others still finish; the phase fails if any failed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cells;
use crate::context::Context;
use crate::redact::SecretText;
use crate::repo::functions::{Bundle, CliFunctionConfig, bundle, read_cli_config};
use crate::report::Cell;
use crate::report::{CheckItem, PhaseReport, ReportTable, Status};
use crate::supabase::invoke::{self, InvocationResult};
use crate::supabase::{
    ApiError, ApiErrorKind, ManagementClient, RetryPolicy, looks_like_project_ref,
};

use super::PhaseError;

mod deploy;
mod saved;
pub(crate) use deploy::{deploy, folder_uploads};
pub(crate) use saved::{bundle_sha256, short_sha};

/// Environment variable that sets the client's first back-off delay in
/// milliseconds (tests use a few; the default is 500).
pub const RETRY_BASE_ENV: &str = "CUTOVER_API_RETRY_BASE_MS";
/// Environment variable that caps one wait (back-off or `Retry-After`) in
/// milliseconds (default 60 000).
pub const RETRY_MAX_DELAY_ENV: &str = "CUTOVER_API_MAX_DELAY_MS";

/// The Management API client and the project refs a phase needs, or an
/// error naming every missing input.
pub(crate) fn management_client(
    ctx: &Context,
    phase: &str,
    needs_source: bool,
) -> Result<(ManagementClient, String, Option<String>), PhaseError> {
    let s = &ctx.settings;
    let mut missing = Vec::new();
    if s.target_project_ref.is_none() {
        missing.push("target-project-ref");
    }
    if needs_source && s.source_project_ref.is_none() {
        missing.push("source-project-ref");
    }
    if s.supabase_access_token.is_none() {
        missing.push("supabase-access-token");
    }
    if !missing.is_empty() {
        let labels: Vec<String> = missing.iter().map(|n| s.label(n)).collect();
        return Err(PhaseError::new(format!(
            "{phase} needs {} but {} not set",
            missing.join(" and "),
            if missing.len() == 1 { "it is" } else { "they are" },
        ))
        .hint(format!(
            "pass {}: project refs are the 20 letters in the dashboard URL (supabase.com/dashboard/project/<ref>), the token is a personal access token from a secret, e.g. `supabase-access-token: ${{{{ secrets.SUPABASE_ACCESS_TOKEN }}}}`",
            labels.join(", ")
        )));
    }
    let refs = [
        ("target-project-ref", s.target_project_ref.as_deref()),
        ("source-project-ref", s.source_project_ref.as_deref()),
    ];
    for (name, value) in refs {
        if let Some(v) = value {
            if !looks_like_project_ref(v) {
                return Err(PhaseError::new(format!(
                    "{} is {v:?}, which is not a Supabase project ref (20 lower-case letters)",
                    s.label(name)
                ))
                .hint("copy the ref from the project's dashboard URL or Settings → General"));
            }
        }
    }
    let policy = retry_policy(ctx);
    let client = ManagementClient::new(
        &s.supabase_api_url,
        s.supabase_access_token
            .as_ref()
            .map(SecretText::expose)
            .unwrap_or_default(),
        policy,
    )
    .map_err(|e| PhaseError::new(e.to_string()))?;
    Ok((
        client,
        s.target_project_ref.clone().unwrap_or_default(),
        s.source_project_ref.clone(),
    ))
}

/// The retry policy of the API clients, with the waits the environment
/// shortens (tests).
pub(crate) fn retry_policy(ctx: &Context) -> RetryPolicy {
    let mut policy = RetryPolicy::default();
    if let Some(ms) = ctx.env_var(RETRY_BASE_ENV).and_then(|v| v.parse().ok()) {
        policy.base_delay = Duration::from_millis(ms);
    }
    if let Some(ms) = ctx
        .env_var(RETRY_MAX_DELAY_ENV)
        .and_then(|v| v.parse().ok())
    {
        policy.max_delay = Duration::from_millis(ms);
    }
    policy
}

/// Opens the ledger when the target database is given (not with dry-run),
/// so the phase's steps are recorded; platform phases also run without it.
pub(crate) async fn open_ledger(ctx: &mut Context, phase: &str) -> Result<(), PhaseError> {
    if ctx.has_url(crate::pg::Side::Target) {
        ctx.ledger(phase).await?;
    }
    Ok(())
}

/// A fix for a Management API failure, naming the input to change.
pub(crate) fn api_hint(ctx: &Context, error: &ApiError, project_input: &str) -> String {
    let s = &ctx.settings;
    match error.kind {
        ApiErrorKind::Unauthorized => format!(
            "pass a valid personal access token as {} (dashboard → Account → Access Tokens); it may have expired or been revoked",
            s.label("supabase-access-token")
        ),
        ApiErrorKind::Forbidden => format!(
            "the owner of {} needs a role on the project named by {} that allows this call (Owner or Administrator for settings, keys and Vault; Developer for Edge Functions and secrets); a plan without the feature answers 403 too",
            s.label("supabase-access-token"),
            s.label(project_input)
        ),
        ApiErrorKind::NotFound => format!(
            "check {}: no such project is visible to this token",
            s.label(project_input)
        ),
        ApiErrorKind::RateLimited => "the Management API allows about 60 requests a minute per user: wait a minute and re-run (re-running is safe)".into(),
        ApiErrorKind::Server | ApiErrorKind::Network => format!(
            "the API did not answer successfully after retries; check https://status.supabase.com and {}, then re-run",
            s.label("supabase-api-url")
        ),
        ApiErrorKind::Malformed => format!(
            "{} must point at the Management API (https://api.supabase.com)",
            s.label("supabase-api-url")
        ),
        ApiErrorKind::Refused => "the API refused the request: see its message".into(),
    }
}

/// A Management API failure that stops the phase.
pub(crate) fn api_stop(ctx: &Context, error: ApiError, project_input: &str) -> PhaseError {
    let hint = api_hint(ctx, &error, project_input);
    PhaseError::new(ctx.redactor.redact(&error.to_string())).hint(hint)
}

/// The folder upload paths are relative to: the manifest's folder when the
/// functions folder is inside it (so names read `supabase/functions/...` as
/// the Supabase CLI sends them), else the functions folder's parent.
fn upload_root(ctx: &Context, functions_dir: &Path) -> PathBuf {
    let manifest_dir = ctx.manifest_relative(Path::new("."));
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (m, f) = (
        crate::repo::functions::normalize(&absolute(&manifest_dir)),
        crate::repo::functions::normalize(&absolute(functions_dir)),
    );
    if f.starts_with(&m) {
        m
    } else {
        f.parent().map(Path::to_path_buf).unwrap_or(f)
    }
}

/// `verify_jwt` and where it came from: the manifest, `supabase/config.toml`,
/// else the platform's default (true).
pub(crate) fn verify_jwt(
    ctx: &Context,
    slug: &str,
    cli: Option<&CliFunctionConfig>,
) -> (bool, &'static str) {
    if let Some(v) = ctx.manifest.functions.verify_jwt.get(slug) {
        (*v, "manifest")
    } else if let Some(v) = cli.and_then(|c| c.verify_jwt) {
        (v, "config.toml")
    } else {
        (true, "default")
    }
}

/// The functions folder, the `supabase` folder holding `config.toml`, and
/// the upload root.
fn folders(ctx: &Context) -> (PathBuf, PathBuf, PathBuf) {
    let functions_dir = ctx.manifest_relative(&ctx.manifest.project.functions_dir);
    let supabase_dir = functions_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let root = upload_root(ctx, &functions_dir);
    (functions_dir, supabase_dir, root)
}

/// The `[functions.<slug>]` tables of `supabase/config.toml`.
pub(crate) fn cli_config(ctx: &Context) -> Result<BTreeMap<String, CliFunctionConfig>, PhaseError> {
    let (_, supabase_dir, _) = folders(ctx);
    read_cli_config(&supabase_dir)
        .map_err(|e| PhaseError::new(e).hint("fix supabase/config.toml (TOML syntax)"))
}

/// What one function would upload.
pub(crate) fn bundle_of(
    ctx: &Context,
    function: &crate::repo::functions::FunctionDir,
    cli: Option<&CliFunctionConfig>,
) -> Result<Bundle, crate::repo::functions::BundleError> {
    let (functions_dir, supabase_dir, root) = folders(ctx);
    bundle(function, &functions_dir, &supabase_dir, &root, cli)
}

/// Runs `functions`.
pub async fn run(ctx: &mut Context) -> Result<PhaseReport, PhaseError> {
    deploy(ctx, "functions", None).await
}

/// The functions base URL: `[functions] base_url` (with `${VAR}`), else the
/// project's own.
pub fn functions_base_url(ctx: &Context, target: &str) -> Result<String, Vec<String>> {
    invoke::base_url(ctx.manifest.functions.base_url.as_deref(), target, |v| {
        ctx.env_var(v)
    })
}

/// Runs `[[functions.smoke]]`, adding a table and one check per invocation.
/// Returns how many failed.
/// `only` limits them to the invocations of those functions.
pub(crate) async fn run_smoke(
    ctx: &Context,
    target: &str,
    report: &mut PhaseReport,
    only: Option<&[String]>,
) -> usize {
    let smokes: Vec<&crate::manifest::FunctionSmoke> = ctx
        .manifest
        .functions
        .smoke
        .iter()
        .filter(|s| only.is_none_or(|o| o.contains(&s.function)))
        .collect();
    if smokes.is_empty() {
        return 0;
    }
    let base = match functions_base_url(ctx, target) {
        Ok(b) => b,
        Err(missing) => {
            report.check(
                CheckItem::new(
                    "smoke",
                    "Smoke invocations",
                    Status::Fail,
                    format!(
                        "[functions] base_url uses unset variables: {}",
                        missing.join(", ")
                    ),
                )
                .with_hint("set them in the step's `env:`"),
            );
            return smokes.len();
        }
    };
    let http = invoke::http_client();
    let mut table = ReportTable::new(
        "Function smoke invocations",
        &["Check", "Request", "Expected", "Got", "Latency", ""],
    );
    let mut failed = 0;
    for smoke in smokes {
        let id = format!("smoke:{}", smoke.name);
        let title = format!("Smoke: {}", smoke.name);
        let invocation = match invoke::prepare(smoke, &base, |v| ctx.env_var(v)) {
            Ok(i) => i,
            Err(e) => {
                failed += 1;
                report.check(
                    CheckItem::new(&id, &title, Status::Fail, e.to_string()).with_hint(
                        "set the variables in the step's `env:` from the environment's secrets",
                    ),
                );
                continue;
            }
        };
        let result: InvocationResult = invoke::invoke(&http, &invocation).await;
        let (ok, expected) = invoke::judge(smoke, &result);
        let got = match (&result.status, &result.error) {
            (Some(s), _) => s.to_string(),
            (None, Some(e)) => e.clone(),
            (None, None) => "no answer".into(),
        };
        let latency = format!("{} ms", result.latency.as_millis());
        let request = format!(
            "{} /{}{}",
            invocation.method,
            smoke.function,
            smoke.path.as_deref().unwrap_or("")
        );
        table.push(cells![
            smoke.name.clone(),
            request.clone(),
            expected.clone(),
            got.clone(),
            latency.clone(),
            Cell::pass_if(ok),
        ]);
        let evidence = format!("{request} → {got} in {latency} (expected {expected})");
        report.check(if ok {
            CheckItem::new(&id, &title, Status::Pass, evidence)
        } else {
            failed += 1;
            CheckItem::new(&id, &title, Status::Fail, evidence).with_hint(
                "look at the function's logs in the dashboard; a 401 usually means a missing or wrong key header, a 500 a missing secret or config",
            )
        });
    }
    report.tables.push(table);
    failed
}
