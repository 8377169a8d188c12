//! The deploy of `functions` (and of `rollback`'s git-ref functions) in
//! three steps: [`plan`] decides what each folder uploads from the files and
//! the manifest alone, [`upload`] saves and deploys, and the `report_*`
//! functions turn what the target lists before and after into rows, tables
//! and the summary.

use std::collections::BTreeMap;

use futures_util::StreamExt;

use crate::context::Context;
use crate::repo::functions::{Bundle, BundleError, CliFunctionConfig, FunctionDir};
use crate::report::{CheckItem, PhaseReport, ReportTable, Status, count};
use crate::supabase::{DeployMetadata, Function, ManagementClient, UploadFile};

use super::saved::save_deployments;
use super::{
    PhaseError, api_stop, bundle_of, cli_config, management_client, open_ledger, run_smoke,
    verify_jwt,
};

/// One function the plan uploads.
struct PlannedFunction {
    /// The files and paths it uploads.
    bundle: Bundle,
    /// The settings sent with them.
    meta: DeployMetadata,
    /// Where `verify_jwt` came from (`manifest`, `config.toml`, `default`).
    verify_source: &'static str,
}

/// What a deploy uploads, decided before any API call.
struct DeployPlan {
    /// The functions to upload, sorted by slug.
    functions: Vec<PlannedFunction>,
    /// Rows for folders that cannot be bundled (they are not uploaded).
    unbundled: Vec<CheckItem>,
    /// Slugs that failed so far (not bundled, later not saved or not live).
    failed: Vec<String>,
    /// Folders the manifest excludes.
    excluded: Vec<String>,
}

/// What the target lists and what each upload answered.
struct Uploaded {
    /// The target's functions before the deploy, by slug.
    before: BTreeMap<String, Function>,
    /// The target's functions after the deploy, by slug.
    after: BTreeMap<String, Function>,
    /// Each uploaded function's answer (or why it was not sent).
    outcomes: BTreeMap<String, Result<Function, String>>,
}

/// Deploys the function folders of the manifest's functions folder (all, or
/// only the slugs in `only`), after saving what the target serves of each;
/// `phase` names the phase in errors and the report (`rollback` deploys a
/// git ref's folders this way).
pub(crate) async fn deploy(
    ctx: &mut Context,
    phase: &str,
    only: Option<&[String]>,
) -> Result<PhaseReport, PhaseError> {
    let mut report = PhaseReport::new(phase);
    let (client, target, _) = management_client(ctx, phase, false)?;
    open_ledger(ctx, phase).await?;
    let mut plan = plan(ctx, only)?;
    for row in std::mem::take(&mut plan.unbundled) {
        report.check(row);
    }
    let before = list_functions(ctx, &client, &target).await?;
    if ctx.settings.dry_run {
        report_dry_run(&plan, &before, &target, &mut report);
        return Ok(report);
    }
    let uploaded = upload(ctx, &client, &target, &mut plan, before, &mut report).await?;
    report_deploys(ctx, &mut plan, &uploaded, &mut report);
    let smoke_failed = run_smoke(ctx, &target, &mut report, only).await;
    report.conclude_from_checks();
    report.summary = summary(
        &target,
        &plan,
        smoke_failed,
        ctx.manifest.functions.smoke.len(),
    );
    Ok(report)
}

/// The folders to deploy and what each uploads, or an error for names in
/// `only` or `[functions] deploy` that have no folder.
fn plan(ctx: &Context, only: Option<&[String]>) -> Result<DeployPlan, PhaseError> {
    let mut selection = ctx.function_selection()?;
    if let Some(only) = only {
        let unknown = unknown_slugs(&selection.deploy, only);
        if !unknown.is_empty() {
            return Err(PhaseError::new(format!(
                "no function folder to deploy named {}",
                unknown.join(", ")
            ))
            .hint(format!(
                "name functions that exist in {} (and are not excluded in [functions])",
                ctx.manifest.project.functions_dir.display()
            )));
        }
        selection.deploy.retain(|f| only.contains(&f.slug));
    }
    if !selection.missing.is_empty() {
        return Err(PhaseError::new(format!(
            "listed in [functions] deploy but no folder with {}: {}",
            ctx.manifest.functions.entrypoint,
            selection.missing.join(", ")
        ))
        .hint("fix the names in [functions] deploy, or add the folders"));
    }
    let cli = cli_config(ctx)?;
    let mut plan = DeployPlan {
        functions: Vec::new(),
        unbundled: Vec::new(),
        failed: Vec::new(),
        excluded: selection.excluded,
    };
    for upload in folder_uploads(ctx, &selection.deploy, &cli) {
        match upload.bundle {
            Ok(bundle) => plan.functions.push(PlannedFunction {
                meta: metadata(&bundle, upload.verify_jwt),
                bundle,
                verify_source: upload.verify_source,
            }),
            Err(e) => {
                plan.unbundled.push(
                    deploy_row(&upload.slug, Status::Fail, e.to_string()).with_hint(
                        "fix the path, or the [functions.<name>] entry of supabase/config.toml",
                    ),
                );
                plan.failed.push(upload.slug);
            }
        }
    }
    Ok(plan)
}

/// What one function folder would upload.
pub(crate) struct FolderUpload {
    /// The function.
    pub(crate) slug: String,
    /// Its files, or why they cannot be bundled.
    pub(crate) bundle: Result<Bundle, BundleError>,
    /// The `verify_jwt` sent with it.
    pub(crate) verify_jwt: bool,
    /// Where `verify_jwt` came from (`manifest`, `config.toml`, `default`).
    pub(crate) verify_source: &'static str,
}

/// What each folder would upload, with the `[functions.<slug>]` tables of
/// `supabase/config.toml` in `cli`: the decision `plan` shows and `deploy`
/// carries out.
pub(crate) fn folder_uploads(
    ctx: &Context,
    folders: &[FunctionDir],
    cli: &BTreeMap<String, CliFunctionConfig>,
) -> Vec<FolderUpload> {
    folders
        .iter()
        .map(|function| {
            let config = cli.get(&function.slug);
            let (verify_jwt, verify_source) = verify_jwt(ctx, &function.slug, config);
            FolderUpload {
                slug: function.slug.clone(),
                bundle: bundle_of(ctx, function, config),
                verify_jwt,
                verify_source,
            }
        })
        .collect()
}

/// The names in `only` that are not among the folders to deploy.
fn unknown_slugs<'a>(deploy: &[FunctionDir], only: &'a [String]) -> Vec<&'a str> {
    only.iter()
        .filter(|s| !deploy.iter().any(|f| &f.slug == *s))
        .map(String::as_str)
        .collect()
}

/// The settings the deploy sends with a bundle.
fn metadata(bundle: &Bundle, verify_jwt: bool) -> DeployMetadata {
    DeployMetadata {
        entrypoint_path: bundle.entrypoint_path.clone(),
        import_map_path: bundle.import_map_path.clone(),
        static_patterns: bundle.static_patterns.clone(),
        verify_jwt,
        name: bundle.slug.clone(),
    }
}

/// The target's functions by slug.
async fn list_functions(
    ctx: &Context,
    client: &ManagementClient,
    target: &str,
) -> Result<BTreeMap<String, Function>, PhaseError> {
    Ok(client
        .list_functions(target)
        .await
        .map_err(|e| api_stop(ctx, e, "target-project-ref"))?
        .into_iter()
        .map(|f| (f.slug.clone(), f))
        .collect())
}

/// Saves what the target serves now, then uploads the functions a few at a
/// time. The API keeps no older version, so the saved deployment is the way
/// back (runbook Level 2): a function that cannot be saved is not replaced.
async fn upload(
    ctx: &mut Context,
    client: &ManagementClient,
    target: &str,
    plan: &mut DeployPlan,
    before: BTreeMap<String, Function>,
    report: &mut PhaseReport,
) -> Result<Uploaded, PhaseError> {
    let replaced: Vec<&Function> = plan
        .functions
        .iter()
        .filter_map(|f| before.get(&f.bundle.slug))
        .collect();
    let unsaved = save_deployments(ctx, client, target, &replaced, report).await;
    plan.functions.retain(|f| !unsaved.contains(&f.bundle.slug));
    plan.failed.extend(unsaved);
    let parallel = usize::from(ctx.manifest.functions.parallel.max(1));
    let outcomes = futures_util::stream::iter(plan.functions.iter())
        .map(|f| async move {
            let result = match read_files(&f.bundle) {
                Ok(files) => client
                    .deploy_function(target, &f.bundle.slug, &f.meta, &files)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            (f.bundle.slug.clone(), result)
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    let after = list_functions(ctx, client, target).await?;
    Ok(Uploaded {
        before,
        after,
        outcomes,
    })
}

/// The bundle's files as the deploy sends them.
fn read_files(bundle: &Bundle) -> Result<Vec<UploadFile>, String> {
    bundle
        .files
        .iter()
        .map(|f| {
            std::fs::read(&f.disk)
                .map(|content| UploadFile {
                    path: f.path.clone(),
                    content,
                })
                .map_err(|e| format!("cannot read {}: {e}", f.path))
        })
        .collect()
}

/// The table of the files each function uploads.
fn files_table(plan: &DeployPlan) -> ReportTable {
    let mut table = ReportTable::new("Uploaded files", &["Function", "Files"]);
    for f in &plan.functions {
        let files: Vec<String> = f
            .bundle
            .files
            .iter()
            .map(|file| format!("`{}`", file.path))
            .collect();
        table.push([f.bundle.slug.clone(), files.join(", ")]);
    }
    table
}

/// A `deploy:<slug>` row.
fn deploy_row(slug: &str, status: Status, evidence: impl Into<String>) -> CheckItem {
    CheckItem::new(
        &format!("deploy:{slug}"),
        &format!("Deploy {slug}"),
        status,
        evidence,
    )
}

/// The import map cell.
fn import_map_cell(bundle: &Bundle) -> String {
    bundle
        .import_map_path
        .clone()
        .unwrap_or_else(|| "none".into())
}

/// Dry-run: what each function would upload, next to what the target runs.
fn report_dry_run(
    plan: &DeployPlan,
    before: &BTreeMap<String, Function>,
    target: &str,
    report: &mut PhaseReport,
) {
    let mut table = ReportTable::new(
        "Edge Functions (dry-run: nothing deployed)",
        &[
            "Function",
            "Version now",
            "Would upload",
            "verify_jwt",
            "Import map",
        ],
    );
    for f in &plan.functions {
        let b = &f.bundle;
        let files = count(b.files.len(), "file", "files");
        table.push([
            b.slug.clone(),
            before.get(&b.slug).map_or("not deployed".into(), |f| {
                format!("v{} {}", f.version, f.status)
            }),
            files.clone(),
            format!("{} ({})", f.meta.verify_jwt, f.verify_source),
            import_map_cell(b),
        ]);
        report.check(deploy_row(
            &b.slug,
            Status::Skip,
            format!("dry-run: would upload {files}"),
        ));
    }
    report.tables.push(table);
    report.tables.push(files_table(plan));
    report.summary = format!(
        "Dry-run: would deploy {} functions to `{target}`{}; nothing was deployed or invoked.",
        plan.functions.len(),
        excluded_note(&plan.excluded)
    );
}

/// A row and a table line per uploaded function; the failed ones join
/// `plan.failed`.
fn report_deploys(
    ctx: &Context,
    plan: &mut DeployPlan,
    uploaded: &Uploaded,
    report: &mut PhaseReport,
) {
    let mut table = ReportTable::new(
        "Edge Functions",
        &[
            "Function",
            "Version",
            "Status",
            "verify_jwt",
            "Files",
            "Import map",
        ],
    );
    for f in &plan.functions {
        let b = &f.bundle;
        let Some(outcome) = uploaded.outcomes.get(&b.slug) else {
            continue;
        };
        let old = uploaded.before.get(&b.slug);
        let new = uploaded.after.get(&b.slug);
        let outcome = outcome.as_ref().map_err(|m| ctx.redactor.redact(m));
        let (item, failed) = verdict(f, old, new, outcome);
        if failed {
            plan.failed.push(b.slug.clone());
        }
        report.check(item);
        table.push([
            b.slug.clone(),
            version_cell(old, new),
            new.map_or("—".into(), |f| f.status.clone()),
            format!(
                "{} ({})",
                new.and_then(|f| f.verify_jwt).unwrap_or(f.meta.verify_jwt),
                f.verify_source
            ),
            b.files.len().to_string(),
            import_map_cell(b),
        ]);
    }
    report.tables.push(table);
    report.tables.push(files_table(plan));
}

/// `v3 → v4`, `new → v1`, `v3 → missing`.
fn version_cell(old: Option<&Function>, new: Option<&Function>) -> String {
    format!(
        "{} → {}",
        old.map_or("new".to_string(), |f| format!("v{}", f.version)),
        new.map_or("missing".to_string(), |f| format!("v{}", f.version))
    )
}

/// The row for one uploaded function and whether it failed: the upload
/// answered, the target lists it `ACTIVE`, at a higher version than before.
fn verdict(
    f: &PlannedFunction,
    old: Option<&Function>,
    new: Option<&Function>,
    outcome: Result<&Function, String>,
) -> (CheckItem, bool) {
    let slug = &f.bundle.slug;
    let version = version_cell(old, new);
    let fail = |evidence: String, hint: &str| {
        (
            deploy_row(slug, Status::Fail, evidence).with_hint(hint),
            true,
        )
    };
    if let Err(message) = outcome {
        return fail(
            message,
            "see the API's message; other functions were still deployed. Re-running `functions` is safe",
        );
    }
    let Some(new) = new else {
        return fail(
            "deploy answered 201 but the function is not listed on the target".into(),
            "re-run `functions`; if it persists, check the project's Edge Functions page",
        );
    };
    if new.status != "ACTIVE" {
        return fail(
            format!("{version}, status {}", new.status),
            "a THROTTLED or REMOVED function does not serve requests: check the project's plan and the function's logs",
        );
    }
    if old.is_some_and(|o| new.version <= o.version) {
        return fail(
            format!("{version}: the version did not increase"),
            "the platform kept the old version: re-run `functions`",
        );
    }
    let evidence = format!(
        "{version} {}, {} files, verify_jwt {}",
        new.status,
        f.bundle.files.len(),
        new.verify_jwt.unwrap_or(f.meta.verify_jwt)
    );
    if f.bundle.unresolved.is_empty() {
        return (deploy_row(slug, Status::Pass, evidence), false);
    }
    let evidence = format!(
        "{evidence}; imports that point at no file (not uploaded): {}",
        f.bundle.unresolved.join(", ")
    );
    let item = deploy_row(slug, Status::Warn, evidence)
        .with_hint("remove or fix the import (a commented-out import is harmless)");
    (item, false)
}

/// The phase's summary once the deploys and smoke invocations are done.
fn summary(target: &str, plan: &DeployPlan, smoke_failed: usize, smoke_listed: usize) -> String {
    let uploaded = plan.functions.len();
    if plan.failed.is_empty() && smoke_failed == 0 {
        let smoke = if smoke_listed == 0 {
            String::new()
        } else {
            format!("; {smoke_listed} smoke invocations passed")
        };
        return format!(
            "Deployed {uploaded} functions to `{target}`, all ACTIVE at a new version{smoke}{}.",
            excluded_note(&plan.excluded)
        );
    }
    let mut failed = plan.failed.clone();
    failed.sort();
    failed.dedup();
    // Functions that never reached the upload count among those attempted.
    let not_uploaded = failed
        .iter()
        .filter(|s| !plan.functions.iter().any(|f| &f.bundle.slug == *s))
        .count();
    format!(
        "{} of {} failed{}{}; the others were deployed.",
        failed.len(),
        count(uploaded + not_uploaded, "function", "functions"),
        if failed.is_empty() {
            String::new()
        } else {
            format!(" ({})", failed.join(", "))
        },
        if smoke_failed > 0 {
            format!(", {smoke_failed} smoke invocations failed")
        } else {
            String::new()
        }
    )
}

/// `; never deployed (excluded): a, b` when the manifest excludes folders.
fn excluded_note(excluded: &[String]) -> String {
    if excluded.is_empty() {
        String::new()
    } else {
        format!("; never deployed (excluded): {}", excluded.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn function(slug: &str, version: i64, status: &str) -> Function {
        Function {
            id: format!("id-{slug}"),
            slug: slug.into(),
            name: slug.into(),
            status: status.into(),
            version,
            created_at: None,
            updated_at: None,
            verify_jwt: Some(true),
            import_map: None,
            entrypoint_path: None,
            import_map_path: None,
        }
    }

    fn planned(slug: &str, unresolved: &[&str]) -> PlannedFunction {
        let bundle = Bundle {
            slug: slug.into(),
            entrypoint_path: format!("supabase/functions/{slug}/index.ts"),
            import_map_path: None,
            import_map_source: None,
            static_patterns: Vec::new(),
            files: Vec::new(),
            unresolved: unresolved.iter().map(|s| s.to_string()).collect(),
        };
        PlannedFunction {
            meta: metadata(&bundle, false),
            bundle,
            verify_source: "default",
        }
    }

    fn plan_of(slugs: &[&str], failed: &[&str]) -> DeployPlan {
        DeployPlan {
            functions: slugs.iter().map(|s| planned(s, &[])).collect(),
            unbundled: Vec::new(),
            failed: failed.iter().map(|s| s.to_string()).collect(),
            excluded: Vec::new(),
        }
    }

    #[test]
    fn a_higher_active_version_passes() {
        let (old, new) = (function("a", 3, "ACTIVE"), function("a", 4, "ACTIVE"));
        let (item, failed) = verdict(&planned("a", &[]), Some(&old), Some(&new), Ok(&new));
        assert!(!failed);
        assert_eq!(item.status, Status::Pass);
        assert_eq!(item.evidence, "v3 → v4 ACTIVE, 0 files, verify_jwt true");
    }

    #[test]
    fn the_same_version_or_an_inactive_one_fails() {
        let old = function("a", 3, "ACTIVE");
        let (item, failed) = verdict(&planned("a", &[]), Some(&old), Some(&old), Ok(&old));
        assert!(failed);
        assert_eq!(item.evidence, "v3 → v3: the version did not increase");
        let throttled = function("a", 4, "THROTTLED");
        let (item, failed) = verdict(&planned("a", &[]), None, Some(&throttled), Ok(&throttled));
        assert!(failed);
        assert_eq!(item.evidence, "new → v4, status THROTTLED");
    }

    #[test]
    fn an_api_error_or_a_missing_function_fails() {
        let (item, failed) = verdict(&planned("a", &[]), None, None, Err("boom".into()));
        assert!(failed);
        assert_eq!(
            (item.id.as_str(), item.evidence.as_str()),
            ("deploy:a", "boom")
        );
        let new = function("a", 1, "ACTIVE");
        let (item, failed) = verdict(&planned("a", &[]), None, None, Ok(&new));
        assert!(failed);
        assert!(item.evidence.contains("not listed on the target"));
    }

    #[test]
    fn unresolved_imports_warn() {
        let new = function("a", 1, "ACTIVE");
        let (item, failed) = verdict(&planned("a", &["../x.ts"]), None, Some(&new), Ok(&new));
        assert!(!failed);
        assert_eq!(item.status, Status::Warn);
        assert!(item.evidence.ends_with("(not uploaded): ../x.ts"));
    }

    #[test]
    fn only_names_must_be_folders() {
        let dir = |slug: &str| FunctionDir {
            slug: slug.into(),
            path: PathBuf::from(slug),
            entrypoint: PathBuf::from(slug).join("index.ts"),
        };
        let only = ["a".to_string(), "zz".to_string()];
        assert_eq!(unknown_slugs(&[dir("a"), dir("b")], &only), ["zz"]);
    }

    #[test]
    fn summaries_count_every_attempted_function() {
        assert_eq!(
            summary("ref", &plan_of(&["a", "b"], &[]), 0, 2),
            "Deployed 2 functions to `ref`, all ACTIVE at a new version; 2 smoke invocations passed."
        );
        assert_eq!(
            summary("ref", &plan_of(&["a", "b"], &["b", "c", "b"]), 1, 2),
            "2 of 3 functions failed (b, c), 1 smoke invocations failed; the others were deployed."
        );
    }
}
