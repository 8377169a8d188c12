//! The way back for Edge Functions (runbook Level 2): before `functions`
//! replaces a function, the deployment the target serves is saved — its
//! settings and the bundle `GET /functions/{slug}/body` serves, with the
//! bundle's sha-256 — in the ledger (where `rollback` reads it) and as files
//! in the backup folder (listed in the `backup-path` output, for upload as
//! an artifact).

use std::path::{Path, PathBuf};

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

/// Where one function's deployment was kept, or why it was not.
enum Saved {
    /// Removed meanwhile: nothing to save.
    Gone,
    /// Read, and kept where `kept` says (empty: nowhere).
    Kept {
        /// The table line.
        line: [String; 5],
        /// `ledger`, the folder, or both.
        kept: Vec<String>,
    },
    /// Not read.
    Unread,
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
        let saved = save_one(
            ctx,
            client,
            target,
            &f.slug,
            &dir,
            &mut SaveLog {
                report,
                problems: &mut problems,
                sums: &mut sums,
            },
        )
        .await;
        match saved {
            Saved::Gone => {}
            Saved::Kept { line, kept } if !kept.is_empty() => table.push(line),
            Saved::Kept { .. } | Saved::Unread => unsaved.push(f.slug.clone()),
        }
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
    report.check(save_row(
        &unsaved,
        &problems,
        saved,
        ctx.open_ledger().is_none(),
    ));
    if saved > 0 {
        report.tables.push(
            table.with_note(
                "`rollback` with rollback-functions redeploys these bundles byte for byte",
            ),
        );
    }
    unsaved
}

/// What saving adds to as it goes: artifacts, problems and the checksum file.
struct SaveLog<'a> {
    /// The report whose artifacts list the saved files.
    report: &'a mut PhaseReport,
    /// One line per thing that went wrong, `slug: why`.
    problems: &'a mut Vec<String>,
    /// The `SHA256SUMS` lines of the files written.
    sums: &'a mut String,
}

/// Reads one function's settings and bundle and keeps them in the ledger and
/// the backup folder.
async fn save_one(
    ctx: &mut Context,
    client: &ManagementClient,
    target: &str,
    slug: &str,
    dir: &Path,
    log: &mut SaveLog<'_>,
) -> Saved {
    // Settings and bundle together: both, or the function is not saved.
    let read = async {
        let current = client.get_function(target, slug).await?;
        let body = match &current {
            Some(_) => Some(client.function_body(target, slug).await?),
            None => None,
        };
        Ok::<_, crate::supabase::ApiError>(current.zip(body))
    };
    let (current, body) = match read.await {
        Ok(Some(read)) => read,
        Ok(None) => return Saved::Gone,
        Err(e) => {
            log.problems
                .push(format!("{slug}: {}", ctx.redactor.redact(&e.to_string())));
            return Saved::Unread;
        }
    };
    let snapshot = snapshot(ctx.run_id, target, current, body);
    let mut kept = Vec::new();
    if let Some(ledger) = ctx.open_ledger() {
        match ledger.record_function_snapshot(&snapshot).await {
            Ok(_) => kept.push("ledger".to_string()),
            Err(e) => log.problems.push(format!("{slug}: {e}")),
        }
    }
    let file_name = format!("{}-v{}.eszip", snapshot.slug, snapshot.version);
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(dir.join(&file_name), &snapshot.body));
    match written {
        Ok(()) => {
            log.report
                .artifacts
                .push(crate::phases::backup::shown(ctx, &dir.join(&file_name)));
            log.sums
                .push_str(&format!("{}  {file_name}\n", snapshot.body_sha256));
            kept.push(crate::phases::backup::shown(ctx, dir));
        }
        Err(e) => log.problems.push(format!(
            "{slug}: cannot write {}: {e}",
            dir.join(&file_name).display()
        )),
    }
    let line = [
        snapshot.slug.clone(),
        format!("v{}", snapshot.version),
        thousands(snapshot.body.len() as i64),
        short_sha(&snapshot.body_sha256),
        kept.join(", "),
    ];
    Saved::Kept { line, kept }
}

/// The ledger row of a deployment the target serves.
fn snapshot(
    run_id: uuid::Uuid,
    target: &str,
    current: Function,
    body: Vec<u8>,
) -> FunctionSnapshot {
    FunctionSnapshot {
        id: 0,
        run_id,
        project_ref: target.to_string(),
        slug: current.slug,
        version: current.version,
        verify_jwt: current.verify_jwt,
        import_map: current.import_map,
        entrypoint_path: current.entrypoint_path,
        import_map_path: current.import_map_path,
        body_sha256: bundle_sha256(&body),
        body,
        saved_at: None,
    }
}

/// The `save-deployments` row: fails when a function could not be saved,
/// warns when saved without the ledger or with problems.
fn save_row(unsaved: &[String], problems: &[String], saved: usize, no_ledger: bool) -> CheckItem {
    let deployments = count(saved, "deployment", "deployments");
    if !unsaved.is_empty() {
        return CheckItem::new(
            SAVE_ID,
            SAVE_TITLE,
            Status::Fail,
            format!(
                "not saved, so not deployed: {}; {}",
                unsaved.join(", "),
                problems.join("; ")
            ),
        )
        .with_hint(
            "re-run `functions` when the API answers: the function still serves its old version",
        );
    }
    if no_ledger || !problems.is_empty() {
        let files_only = if no_ledger {
            " as files only: without target-db-url there is no ledger, and `rollback` reads the saved bundles from the ledger"
        } else {
            ""
        };
        let problems = if problems.is_empty() {
            String::new()
        } else {
            format!("; {}", problems.join("; "))
        };
        return CheckItem::new(
            SAVE_ID,
            SAVE_TITLE,
            Status::Warn,
            format!("{deployments} saved{files_only}{problems}"),
        )
        .with_hint("pass target-db-url so `rollback` with rollback-functions can redeploy them");
    }
    CheckItem::new(
        SAVE_ID,
        SAVE_TITLE,
        Status::Pass,
        format!(
            "{deployments} saved in the ledger, each with its sha-256, and as files for upload"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsaved_function_fails_the_row() {
        let row = save_row(&["a".into()], &["a: 500".into()], 0, false);
        assert_eq!(row.status, Status::Fail);
        assert_eq!(row.evidence, "not saved, so not deployed: a; a: 500");
    }

    #[test]
    fn files_only_warns() {
        let row = save_row(&[], &[], 2, true);
        assert_eq!(row.status, Status::Warn);
        assert!(
            row.evidence
                .starts_with("2 deployments saved as files only")
        );
        let row = save_row(&[], &["b: cannot write".into()], 1, false);
        assert_eq!(row.evidence, "1 deployment saved; b: cannot write");
    }

    #[test]
    fn ledger_and_files_pass() {
        let row = save_row(&[], &[], 1, false);
        assert_eq!(row.status, Status::Pass);
        assert!(row.hint.is_none());
    }

    #[test]
    fn short_sha_is_twelve_digits() {
        let sha = bundle_sha256(b"x");
        assert_eq!(sha.len(), 64);
        assert_eq!(short_sha(&sha), sha[..12]);
    }
}
