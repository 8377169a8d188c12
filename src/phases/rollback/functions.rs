//! Rollback Level 2: Edge Functions back to the version the target served
//! before `functions` replaced them (`rollback-functions: all` or names).
//!
//! By default the bundles `functions` saved in the ledger are redeployed
//! byte for byte (`PATCH /functions/{slug}` with the saved eszip), and each
//! is proven: the version moved on, the function is `ACTIVE`, the API
//! serves a bundle with the saved sha-256, and its smoke invocations pass.
//! With `rollback-functions-ref`, the function folders of that git ref are
//! deployed instead (through the `functions` phase's own deploy, which saves
//! what it replaces, so a rollback can itself be undone).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::context::Context;
use crate::pg::function_snapshots::{FunctionSnapshot, latest_function_snapshots};
use crate::report::Cell;
use crate::report::{CheckItem, PhaseReport, ReportTable, Status, count};
use crate::supabase::{BundleSettings, Function, ManagementClient};

use super::super::PhaseError;
use super::super::functions::{api_stop, bundle_sha256, management_client, run_smoke, short_sha};

/// Which functions `rollback-functions` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FunctionChoice {
    /// Every function the ledger holds a saved deployment of.
    All,
    /// These slugs only.
    Named(Vec<String>),
}

/// Reads `rollback-functions`: `None` when unset or empty.
pub(super) fn choice(ctx: &Context) -> Result<Option<FunctionChoice>, PhaseError> {
    let Some(raw) = ctx.settings.rollback_functions.as_deref() else {
        return Ok(None);
    };
    let raw = raw.trim();
    if raw.is_empty() || raw.eq_ignore_ascii_case("none") || raw == "false" {
        return Ok(None);
    }
    if raw.eq_ignore_ascii_case("all") || raw == "true" {
        return Ok(Some(FunctionChoice::All));
    }
    let names: Vec<String> = raw
        .split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let bad: Vec<&String> = names
        .iter()
        .filter(|n| {
            !n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .collect();
    if !bad.is_empty() {
        return Err(PhaseError::new(format!(
            "{} holds {}, which {} not a function name",
            ctx.settings.label("rollback-functions"),
            bad.iter()
                .map(|b| format!("{b:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            if bad.len() == 1 { "is" } else { "are" }
        ))
        .hint("give `all`, or function names (letters, digits, - and _) separated by commas, e.g. `send-sms,daily-report`"));
    }
    Ok(Some(FunctionChoice::Named(names)))
}

/// Checks, before `rollback` changes anything, what Level 2 needs: the
/// Management API inputs, and (without `rollback-functions-ref`) a saved
/// deployment of every function named. A git ref is checked when read.
pub(super) async fn check_inputs(
    ctx: &mut Context,
    choice: &FunctionChoice,
) -> Result<(), PhaseError> {
    let (_, target, _) = management_client(ctx, "rollback", false)?;
    let by_ref = ctx
        .settings
        .rollback_functions_ref
        .as_deref()
        .is_some_and(|r| !r.trim().is_empty());
    if !by_ref {
        let db = ctx.target("rollback", false).await?;
        let schema = ctx.manifest.ledger.schema.clone();
        let saved = latest_function_snapshots(&db, &schema, &target).await?;
        pick(ctx, &saved, choice, &target)?;
    }
    Ok(())
}

/// Runs Level 2 and adds its rows to `report`. Every name is checked
/// against what can be put back before anything is deployed.
pub(super) async fn roll_back(
    ctx: &mut Context,
    choice: &FunctionChoice,
    report: &mut PhaseReport,
) -> Result<(), PhaseError> {
    match ctx.settings.rollback_functions_ref.clone() {
        Some(git_ref) if !git_ref.trim().is_empty() => {
            from_git_ref(ctx, choice, git_ref.trim(), report).await
        }
        _ => from_saved(ctx, choice, report).await,
    }
}

/// Picks the saved deployments `choice` names, or an error naming those
/// the ledger does not hold.
fn pick<'a>(
    ctx: &Context,
    saved: &'a [FunctionSnapshot],
    choice: &FunctionChoice,
    target: &str,
) -> Result<Vec<&'a FunctionSnapshot>, PhaseError> {
    match choice {
        FunctionChoice::All => Ok(saved.iter().collect()),
        FunctionChoice::Named(names) => {
            let missing: Vec<&String> = names
                .iter()
                .filter(|n| !saved.iter().any(|s| &s.slug == *n))
                .collect();
            if missing.is_empty() {
                return Ok(saved.iter().filter(|s| names.contains(&s.slug)).collect());
            }
            let known: Vec<&str> = saved.iter().map(|s| s.slug.as_str()).collect();
            Err(PhaseError::new(format!(
                "{} names {}, but the ledger holds no deployment of {} saved before a deploy to `{target}`",
                ctx.settings.label("rollback-functions"),
                missing.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", "),
                if missing.len() == 1 { "it" } else { "them" },
            ))
            .hint(if known.is_empty() {
                format!(
                    "nothing was saved yet (a function `functions` deployed for the first time has no earlier version); pass {} to deploy a git ref's version instead",
                    ctx.settings.label("rollback-functions-ref")
                )
            } else {
                format!(
                    "name one of {}, or pass {} to deploy a git ref's version instead",
                    known.join(", "),
                    ctx.settings.label("rollback-functions-ref")
                )
            }))
        }
    }
}

const ID: &str = "rollback-functions";
const TITLE: &str = "Edge Functions back to the saved versions";

/// Level 2 from the ledger: each chosen function's saved bundle redeployed
/// and proven served.
async fn from_saved(
    ctx: &mut Context,
    choice: &FunctionChoice,
    report: &mut PhaseReport,
) -> Result<(), PhaseError> {
    let (client, target, _) = management_client(ctx, "rollback", false)?;
    let db = ctx.target("rollback", false).await?;
    let schema = ctx.manifest.ledger.schema.clone();
    let saved = latest_function_snapshots(&db, &schema, &target).await?;
    let chosen = pick(ctx, &saved, choice, &target)?;
    if chosen.is_empty() {
        report.check(CheckItem::new(
            ID,
            TITLE,
            Status::Skip,
            format!("the ledger holds no deployment saved before a deploy to `{target}`"),
        ));
        return Ok(());
    }
    let mut table = ReportTable::new(
        "Edge Functions rolled back",
        &[
            "Function",
            "Before rollback",
            "Saved bundle",
            "After rollback",
            "Served sha-256",
        ],
    );
    if ctx.settings.dry_run {
        planned(&chosen, table, report);
        return Ok(());
    }
    let ledger = ctx
        .ledger("rollback")
        .await?
        .ok_or_else(|| PhaseError::new("the ledger is not open"))?;
    let put_back = PutBack {
        ctx,
        client: &client,
        target: &target,
    };
    let mut done = Vec::new();
    let mut failures = Vec::new();
    for s in &chosen {
        match put_back.redeploy(s, &mut table).await? {
            Redeployed::AlreadyServed => done.push(s.slug.clone()),
            Redeployed::Proven => {
                ledger.mark_function_restored(s.id, ctx.run_id).await?;
                done.push(s.slug.clone());
            }
            Redeployed::Failed(why) => failures.push(format!("{}: {why}", s.slug)),
        }
    }
    report.check(verdict_row(&done, &failures));
    report.tables.push(table.with_note(
        "redeployed byte for byte from the ledger (PATCH /functions/{slug} with the saved eszip); sha-256 shortened to 12 digits",
    ));
    if !done.is_empty() {
        run_smoke(ctx, &target, report, Some(&done)).await;
    }
    Ok(())
}

/// Dry run: the bundles that would be redeployed.
fn planned(chosen: &[&FunctionSnapshot], mut table: ReportTable, report: &mut PhaseReport) {
    for s in chosen {
        table.push([
            s.slug.clone(),
            "(now)".into(),
            saved_cell(s),
            "(would be redeployed)".into(),
            String::new(),
        ]);
    }
    report.check(CheckItem::new(
        ID,
        TITLE,
        Status::Skip,
        format!(
            "dry run: would redeploy {} saved in the ledger",
            count(chosen.len(), "bundle", "bundles")
        ),
    ));
    report
        .tables
        .push(table.with_note("planned, not done (dry run)"));
}

fn saved_cell(s: &FunctionSnapshot) -> String {
    format!("v{} · {}", s.version, short_sha(&s.body_sha256))
}

/// The Level 2 row: every function back, or what went wrong with each.
fn verdict_row(done: &[String], failures: &[String]) -> CheckItem {
    if failures.is_empty() {
        CheckItem::new(
            ID,
            TITLE,
            Status::Pass,
            format!(
                "{} back to the bundle saved before the deploy, each served with the saved sha-256: {}",
                count(done.len(), "function", "functions"),
                done.join(", ")
            ),
        )
    } else {
        CheckItem::new(ID, TITLE, Status::Fail, failures.join("; ")).with_hint(
            "re-run rollback with the same rollback-functions: a function already back is left as it is",
        )
    }
}

/// What became of one saved bundle.
enum Redeployed {
    /// The target already served it: nothing deployed.
    AlreadyServed,
    /// Redeployed, and served as saved.
    Proven,
    /// Why it is not back.
    Failed(String),
}

/// What is wrong after a redeploy: the version must have moved on from
/// `before`, the function be `ACTIVE`, and the API serve the saved bundle.
fn problems(
    before: Option<i64>,
    after: Option<(i64, &str)>,
    served: &str,
    saved: &str,
) -> Vec<String> {
    let moved_on = match (before, after) {
        (Some(b), Some((a, _))) => a > b,
        (None, Some(_)) => true,
        _ => false,
    };
    let mut why = Vec::new();
    if !moved_on {
        why.push("the version did not move on".to_string());
    }
    if after.is_none_or(|(_, status)| status != "ACTIVE") {
        why.push(format!("the function is {}", after_cell(after)));
    }
    if served != saved {
        why.push(format!(
            "the API serves sha-256 {} instead of the saved {}",
            short_sha(served),
            short_sha(saved)
        ));
    }
    why
}

fn after_cell(after: Option<(i64, &str)>) -> String {
    after.map_or("missing".to_string(), |(version, status)| {
        format!("v{version} {status}")
    })
}

/// The target's Management API, to put saved bundles back.
struct PutBack<'a> {
    ctx: &'a Context,
    client: &'a ManagementClient,
    target: &'a str,
}

impl PutBack<'_> {
    /// The function as deployed now.
    async fn function(&self, slug: &str) -> Result<Option<Function>, PhaseError> {
        self.client
            .get_function(self.target, slug)
            .await
            .map_err(|e| api_stop(self.ctx, e, "target-project-ref"))
    }

    /// The sha-256 of the bundle the API serves.
    async fn served(&self, slug: &str) -> Result<String, PhaseError> {
        let body = self
            .client
            .function_body(self.target, slug)
            .await
            .map_err(|e| api_stop(self.ctx, e, "target-project-ref"))?;
        Ok(bundle_sha256(&body))
    }

    /// Redeploys saved bundle `s` unless it is served already, with its row
    /// in `table`.
    async fn redeploy(
        &self,
        s: &FunctionSnapshot,
        table: &mut ReportTable,
    ) -> Result<Redeployed, PhaseError> {
        let before = self.function(&s.slug).await?;
        let before_sha = match &before {
            Some(_) => Some(self.served(&s.slug).await?),
            None => None,
        };
        let before_cell = before.as_ref().map_or("not deployed".to_string(), |f| {
            format!(
                "v{} · {}",
                f.version,
                short_sha(before_sha.as_deref().unwrap_or_default())
            )
        });
        let mut row = |after: Cell, served: String| {
            table.push(vec![
                s.slug.clone().into(),
                before_cell.clone().into(),
                saved_cell(s).into(),
                after,
                served.into(),
            ]);
        };
        if before_sha.as_deref() == Some(s.body_sha256.as_str()) {
            row(
                "unchanged: already serves the saved bundle".into(),
                short_sha(&s.body_sha256),
            );
            return Ok(Redeployed::AlreadyServed);
        }
        let settings = BundleSettings {
            verify_jwt: s.verify_jwt,
            import_map: s.import_map,
            entrypoint_path: s.entrypoint_path.clone(),
            import_map_path: s.import_map_path.clone(),
        };
        let redeployed = self
            .client
            .redeploy_function_body(self.target, &s.slug, &settings, &s.body)
            .await;
        if let Err(e) = redeployed {
            row(
                Cell::verdict_because(Status::Fail, "redeploy failed"),
                String::new(),
            );
            return Ok(Redeployed::Failed(self.ctx.redactor.redact(&e.to_string())));
        }
        let after = self.function(&s.slug).await?;
        let served = self.served(&s.slug).await?;
        let after = after.as_ref().map(|f| (f.version, f.status.as_str()));
        let same = if served == s.body_sha256 {
            " (same)"
        } else {
            " (differs)"
        };
        row(
            after_cell(after).into(),
            format!("{}{same}", short_sha(&served)),
        );
        let why = problems(before.map(|f| f.version), after, &served, &s.body_sha256);
        Ok(if why.is_empty() {
            Redeployed::Proven
        } else {
            Redeployed::Failed(why.join(", "))
        })
    }
}

/// The folder of the repository `path` is in, and `path` relative to it.
fn repository_of(ctx: &Context, dir: &Path) -> Result<(PathBuf, PathBuf), PhaseError> {
    let output = git(dir)
        .args(["rev-parse", "--show-toplevel"])
        .output()
        .map_err(|e| {
            PhaseError::new(format!("cannot run git: {e}")).hint(format!(
                "{} needs git on PATH and the repository checked out",
                ctx.settings.label("rollback-functions-ref")
            ))
        })?;
    if !output.status.success() {
        return Err(PhaseError::new(format!(
            "{} is not inside a git repository",
            dir.display()
        ))
        .hint(format!(
            "{} deploys a git ref's functions: run it in the checked-out repository (actions/checkout)",
            ctx.settings.label("rollback-functions-ref")
        )));
    }
    let root = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let canonical = absolute.canonicalize().unwrap_or(absolute);
    let root = root.canonicalize().unwrap_or(root);
    let relative = canonical
        .strip_prefix(&root)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    Ok((root, relative))
}

/// `git` with the workspace trusted: in a container action the checkout
/// belongs to another user, which git otherwise refuses.
fn git(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.arg("-c")
        .arg("safe.directory=*")
        .arg("-C")
        .arg(dir)
        .stdin(Stdio::null());
    c
}

/// Writes the tree of `git_ref` under `relative` into `into`.
fn extract(
    ctx: &Context,
    root: &Path,
    relative: &Path,
    git_ref: &str,
    into: &Path,
) -> Result<(), PhaseError> {
    let label = ctx.settings.label("rollback-functions-ref");
    let verify = git(root)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("{git_ref}^{{commit}}"))
        .output()
        .map_err(|e| PhaseError::new(format!("cannot run git: {e}")))?;
    if !verify.status.success() {
        return Err(PhaseError::new(format!(
            "{label} is {git_ref:?}, which is not a commit of the checked-out repository"
        ))
        .hint("name a tag, branch or commit that exists; in a workflow, check out with `fetch-depth: 0` so older tags are present"));
    }
    let mut archive = git(root)
        .args(["archive", "--format=tar"])
        .arg(git_ref)
        .arg("--")
        .arg(if relative.as_os_str().is_empty() {
            Path::new(".")
        } else {
            relative
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| PhaseError::new(format!("cannot run git archive: {e}")))?;
    let stdout = archive.stdout.take().expect("piped");
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(into)
        .stdin(stdout)
        .output()
        .map_err(|e| PhaseError::new(format!("cannot run tar: {e}")))?;
    let archived = archive
        .wait_with_output()
        .map_err(|e| PhaseError::new(format!("git archive: {e}")))?;
    if !archived.status.success() || !tar.status.success() {
        return Err(PhaseError::new(format!(
            "cannot read the files of {git_ref} from git: {}{}",
            String::from_utf8_lossy(&archived.stderr).trim(),
            String::from_utf8_lossy(&tar.stderr).trim()
        ))
        .hint(format!(
            "check {label} and that the manifest's folder exists at that ref"
        )));
    }
    Ok(())
}

async fn from_git_ref(
    ctx: &mut Context,
    choice: &FunctionChoice,
    git_ref: &str,
    report: &mut PhaseReport,
) -> Result<(), PhaseError> {
    let manifest = ctx.settings.manifest.clone();
    let manifest_dir = ctx.manifest_relative(Path::new("."));
    let (root, relative) = repository_of(ctx, &manifest_dir)?;
    let tree = tempfile::tempdir()
        .map_err(|e| PhaseError::new(format!("cannot make a scratch folder: {e}")))?;
    extract(ctx, &root, &relative, git_ref, tree.path())?;
    let only = match choice {
        FunctionChoice::All => None,
        FunctionChoice::Named(names) => Some(names.clone()),
    };
    // The manifest stays the one checked out; only the function folders
    // come from the ref, found where the manifest says they are.
    let file_name = manifest
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("cutover.toml"));
    ctx.settings.manifest = tree.path().join(&relative).join(file_name);
    let deployed = super::super::functions::deploy(ctx, "rollback", only.as_deref()).await;
    ctx.settings.manifest = manifest;
    let deployed = deployed?;
    let failed = deployed.has_failures();
    report.check(if failed {
        CheckItem::new(
            "rollback-functions",
            &format!("Edge Functions back to {git_ref}"),
            Status::Fail,
            deployed.summary.clone(),
        )
        .with_hint("see the failed rows; re-running rollback is safe")
    } else {
        CheckItem::new(
            "rollback-functions",
            &format!("Edge Functions back to {git_ref}"),
            Status::Pass,
            format!("{} (the functions folder of {git_ref})", deployed.summary),
        )
    });
    report.checks.extend(deployed.checks);
    report.tables.extend(deployed.tables);
    report.artifacts.extend(deployed.artifacts);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redeploy_is_proven_by_version_status_and_served_bundle() {
        assert!(problems(Some(3), Some((4, "ACTIVE")), "abc", "abc").is_empty());
        assert!(problems(None, Some((1, "ACTIVE")), "abc", "abc").is_empty());
        assert_eq!(
            problems(
                Some(4),
                Some((4, "THROTTLED")),
                "abcdef0123456789",
                "0123456789abcdef"
            ),
            [
                "the version did not move on",
                "the function is v4 THROTTLED",
                "the API serves sha-256 abcdef012345 instead of the saved 0123456789ab"
            ]
        );
        assert_eq!(
            problems(Some(4), None, "abc", "abc"),
            ["the version did not move on", "the function is missing"]
        );
    }

    #[test]
    fn the_row_fails_when_any_function_is_not_back() {
        let done = ["a".to_string(), "b".to_string()];
        let item = verdict_row(&done, &[]);
        assert_eq!(item.status, Status::Pass);
        assert!(item.evidence.ends_with("saved sha-256: a, b"));
        let item = verdict_row(&done, &["c: the version did not move on".into()]);
        assert_eq!(item.status, Status::Fail);
        assert_eq!(item.evidence, "c: the version did not move on");
    }
}
