//! The way back for Edge Functions (runbook Level 2): before `functions`
//! replaces a function, the deployment the target serves is saved — its
//! settings and the bundle `GET /functions/{slug}/body` serves, with the
//! bundle's sha-256 — in the ledger (where `rollback` reads it) and as files
//! in the backup folder (listed in the `backup-path` output, for upload as
//! an artifact).

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::context::Context;
use crate::pg::function_snapshots::FunctionSnapshot;
use crate::report::{CheckItem, PhaseReport, ReportTable, Status, count, thousands};
use crate::supabase::{Function, ManagementClient};

/// The check row's id.
pub(crate) const SAVE_ID: &str = "save-deployments";
const SAVE_TITLE: &str = "Deployments saved for rollback";

/// Lower-case hex sha-256 of a bundle.
pub(crate) fn bundle_sha256(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// The first 12 hex digits, as tables show a digest.
pub(crate) fn short_sha(sha: &str) -> String {
    sha.chars().take(12).collect()
}

/// Saves each replaced function's current deployment. Returns the slugs
/// whose deployment could not be saved anywhere: those are not deployed,
/// because the deploy would destroy the only copy.
pub(super) async fn save_deployments(
    ctx: &mut Context,
    client: &ManagementClient,
    target: &str,
    replaced: &[&Function],
    report: &mut PhaseReport,
) -> Vec<String> {
    if replaced.is_empty() {
        return Vec::new();
    }
    let dir: PathBuf =
        crate::phases::backup::backup_root(ctx).join(format!("functions-{}", ctx.run_id));
    let mut table = ReportTable::new(
        "Saved before deploy (for rollback)",
        &["Function", "Version", "Bytes", "sha-256", "Kept in"],
    );
    let mut unsaved = Vec::new();
    let mut problems = Vec::new();
    let mut sums = String::new();
    for f in replaced {
        // Settings and bundle together: both, or the function is not saved.
        let read = async {
            let current = client.get_function(target, &f.slug).await?;
            let body = match &current {
                Some(_) => Some(client.function_body(target, &f.slug).await?),
                None => None,
            };
            Ok::<_, crate::supabase::ApiError>(current.zip(body))
        };
        let (current, body) = match read.await {
            Ok(Some(read)) => read,
            Ok(None) => continue, // removed meanwhile: nothing to save
            Err(e) => {
                unsaved.push(f.slug.clone());
                problems.push(format!(
                    "{}: {}",
                    f.slug,
                    ctx.redactor.redact(&e.to_string())
                ));
                continue;
            }
        };
        let sha = bundle_sha256(&body);
        let snapshot = FunctionSnapshot {
            id: 0,
            run_id: ctx.run_id,
            project_ref: target.to_string(),
            slug: current.slug.clone(),
            version: current.version,
            verify_jwt: current.verify_jwt,
            import_map: current.import_map,
            entrypoint_path: current.entrypoint_path.clone(),
            import_map_path: current.import_map_path.clone(),
            body_sha256: sha.clone(),
            body,
            saved_at: None,
        };
        let mut kept = Vec::new();
        if let Some(ledger) = ctx.open_ledger() {
            match ledger.record_function_snapshot(&snapshot).await {
                Ok(_) => kept.push("ledger".to_string()),
                Err(e) => problems.push(format!("{}: {e}", f.slug)),
            }
        }
        let file_name = format!("{}-v{}.eszip", snapshot.slug, snapshot.version);
        let written = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join(&file_name), &snapshot.body));
        match written {
            Ok(()) => {
                report
                    .artifacts
                    .push(crate::phases::backup::shown(ctx, &dir.join(&file_name)));
                sums.push_str(&format!("{sha}  {file_name}\n"));
                kept.push(crate::phases::backup::shown(ctx, &dir));
            }
            Err(e) => problems.push(format!(
                "{}: cannot write {}: {e}",
                f.slug,
                dir.join(&file_name).display()
            )),
        }
        if kept.is_empty() {
            unsaved.push(f.slug.clone());
            continue;
        }
        table.push([
            snapshot.slug.clone(),
            format!("v{}", snapshot.version),
            thousands(snapshot.body.len() as i64),
            short_sha(&sha),
            kept.join(", "),
        ]);
    }
    if !sums.is_empty() {
        let path = dir.join("SHA256SUMS");
        if std::fs::write(&path, &sums).is_ok() {
            report
                .artifacts
                .push(crate::phases::backup::shown(ctx, &path));
        }
    }
    let saved = table.rows.len();
    let no_ledger = ctx.open_ledger().is_none();
    let (status, evidence, hint) = if !unsaved.is_empty() {
        (
            Status::Fail,
            format!(
                "not saved, so not deployed: {}; {}",
                unsaved.join(", "),
                problems.join("; ")
            ),
            Some(
                "re-run `functions` when the API answers: the function still serves its old version",
            ),
        )
    } else if no_ledger || !problems.is_empty() {
        (
            Status::Warn,
            format!(
                "{} saved{}{}",
                count(saved, "deployment", "deployments"),
                if no_ledger {
                    " as files only: without target-db-url there is no ledger, and `rollback` reads the saved bundles from the ledger"
                } else {
                    ""
                },
                if problems.is_empty() {
                    String::new()
                } else {
                    format!("; {}", problems.join("; "))
                }
            ),
            Some("pass target-db-url so `rollback` with rollback-functions can redeploy them"),
        )
    } else {
        (
            Status::Pass,
            format!(
                "{} saved in the ledger, each with its sha-256, and as files for upload",
                count(saved, "deployment", "deployments")
            ),
            None,
        )
    };
    let mut item = CheckItem::new(SAVE_ID, SAVE_TITLE, status, evidence);
    if let Some(h) = hint {
        item = item.with_hint(h);
    }
    report.check(item);
    if saved > 0 {
        report.tables.push(
            table.with_note(
                "`rollback` with rollback-functions redeploys these bundles byte for byte",
            ),
        );
    }
    unsaved
}
