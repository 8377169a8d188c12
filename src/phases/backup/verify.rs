//! `backup --verify`: each dump restored into a scratch database on the
//! target's server, its row counts compared with the dump's snapshot.

use std::collections::BTreeMap;

use crate::context::Context;
use crate::manifest::QualifiedName;
use crate::pg::Side;
use crate::pg::dump::{self, ToolConnection, ToolError};
use crate::pg::restore::{
    Archive, LeftOut, OnError, RestoreInto, RestoreOutcome, TocEntry, archive_list,
    restore_archive, toc_entries, write_use_list,
};
use crate::pg::{Database, PgError};
use crate::report::{CheckItem, Status, human_duration, thousands};

use super::{AGE_IDENTITY_VAR, LEFT_OUT_TITLE, TakenDump, capitalise, objects};

/// Why a dump could not be verified, and what to do.
#[derive(Debug)]
struct Failed {
    evidence: String,
    hint: Option<String>,
}

impl Failed {
    fn new(evidence: impl Into<String>) -> Self {
        Failed {
            evidence: evidence.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl From<ToolError> for Failed {
    fn from(e: ToolError) -> Self {
        Failed::new(e.message)
    }
}

impl From<PgError> for Failed {
    fn from(e: PgError) -> Self {
        Failed::new(e.to_string())
    }
}

/// What a restore into the scratch database gave.
#[derive(Debug)]
struct ScratchRestore {
    /// Entries the target's role cannot create, left out by name.
    left_out: Vec<LeftOut>,
    outcome: RestoreOutcome,
    /// Rows of each dumped table in the scratch database (`None`: missing).
    counted: BTreeMap<QualifiedName, Option<i64>>,
    /// Dropping the scratch database again.
    dropped: Result<(), PgError>,
}

/// Restores a dump into `cutover_verify_<run>` on the target's server (never
/// the source's: cutover does not write to the source), compares row counts
/// with the dump's snapshot, and drops the scratch database again. Entries
/// the target's role cannot create are left out and returned.
pub(super) async fn verify_dump(
    ctx: &Context,
    target: &Database,
    dump: &TakenDump,
    identity: Option<&age::x25519::Identity>,
) -> (CheckItem, Vec<LeftOut>) {
    let id = format!("{}-restores", dump.side.name());
    let title = format!("{} dump restores", capitalise(dump.side.name()));
    let scratch = format!("cutover_verify_{}", &ctx.run_id.simple().to_string()[..12]);
    let restored = match dump_archive(dump, identity) {
        Ok(archive) => restore_into_scratch(ctx, target, dump, &archive, &scratch).await,
        Err(failed) => Err(failed),
    };
    match restored {
        Ok(restored) => {
            let item = verified_item(&id, &title, dump, &scratch, &restored);
            (item, restored.left_out)
        }
        Err(failed) => {
            let item = CheckItem::new(&id, &title, Status::Fail, failed.evidence);
            let item = match failed.hint {
                Some(hint) => item.with_hint(hint),
                None => item,
            };
            (item, Vec::new())
        }
    }
}

/// The dump as pg_restore reads it: decrypted on the fly when encrypted.
fn dump_archive<'a>(
    dump: &'a TakenDump,
    identity: Option<&'a age::x25519::Identity>,
) -> Result<Archive<'a>, Failed> {
    match (dump.file.encrypted, identity) {
        (false, _) => Ok(Archive::Plain(&dump.file.path)),
        (true, Some(identity)) => Ok(Archive::Encrypted(&dump.file.path, identity)),
        (true, None) => Err(Failed::new("the dump is encrypted and no identity was given to decrypt it").hint(format!("set {AGE_IDENTITY_VAR} (from a secret) to the AGE-SECRET-KEY-1... identity of one of the recipients, or turn off verify"))),
    }
}

/// Creates the scratch database, restores the dump into it (what the
/// target's role cannot create left out, decided before anything runs),
/// counts its rows and drops it again.
async fn restore_into_scratch(
    ctx: &Context,
    target: &Database,
    dump: &TakenDump,
    archive: &Archive<'_>,
    scratch: &str,
) -> Result<ScratchRestore, Failed> {
    let target_url = ctx.url(Side::Target).unwrap_or_default().to_string();
    let scratch_tool = ToolConnection::from_url(&target_url)?.with_database(scratch);
    let list = archive_list(archive, &ctx.redactor).await?;
    let entries = toc_entries(&list);
    let all: Vec<&TocEntry> = entries.iter().collect();
    let left_out = target
        .restore_left_out(&all, RestoreInto::NewDatabase)
        .await?;
    let list_file = std::env::temp_dir().join(format!(
        "cutover-verify-{}-{}.list",
        ctx.run_id,
        dump.side.name()
    ));
    write_use_list(&list_file, &all, &left_out)
        .map_err(|e| Failed::new(format!("cannot write {}: {e}", list_file.display())))?;
    if let Err(e) = target.create_database(scratch).await {
        let _ = std::fs::remove_file(&list_file);
        return Err(Failed::from(e).hint(
            "the target's role needs CREATEDB to verify backups (Supabase's postgres role has it); or turn off [backup] verify",
        ));
    }
    // Roles are cluster-wide, so the target server has Supabase's roles; the
    // restore still skips owners and grants, which belong to the environment,
    // not to the backup.
    let args: Vec<String> = vec![
        "--no-owner".into(),
        "--no-privileges".into(),
        format!("--use-list={}", list_file.display()),
    ];
    let restored = restore_archive(
        &scratch_tool,
        archive,
        &args,
        OnError::Continue,
        &ctx.redactor,
    )
    .await;
    let _ = std::fs::remove_file(&list_file);
    let tables: Vec<QualifiedName> = dump.counts.keys().cloned().collect();
    let counted = match &restored {
        Ok(_) => {
            dump::row_counts_at(&scratch_tool.url_with_password(), &tables, &ctx.redactor).await
        }
        Err(e) => Err(e.clone()),
    };
    let dropped = target.drop_database(scratch).await;
    let outcome = restored.map_err(|e| {
        let keep =
            "the dump did not restore: keep the previous backup and investigate before migrating";
        Failed::new(e.message).hint(match e.hint {
            Some(tool) => format!("{tool}; {keep}"),
            None => keep.to_string(),
        })
    })?;
    Ok(ScratchRestore {
        left_out,
        outcome,
        counted: counted?,
        dropped,
    })
}

/// The tables whose restored rows differ from the dump's snapshot.
fn differing_counts(
    expected: &BTreeMap<QualifiedName, i64>,
    counted: &BTreeMap<QualifiedName, Option<i64>>,
) -> Vec<String> {
    expected
        .iter()
        .filter_map(
            |(table, expected)| match counted.get(table).copied().flatten() {
                Some(n) if n == *expected => None,
                Some(n) => Some(format!("{table}: {expected} in the snapshot, {n} restored")),
                None => Some(format!("{table}: missing after restore")),
            },
        )
        .collect()
}

/// The row of a restore that ran: counts differ (fail), statements failed
/// (warn) or all equal (pass); a scratch database left behind is named.
fn verified_item(
    id: &str,
    title: &str,
    dump: &TakenDump,
    scratch: &str,
    restored: &ScratchRestore,
) -> CheckItem {
    let differing = differing_counts(&dump.counts, &restored.counted);
    let outcome = &restored.outcome;
    let rows: i64 = dump.counts.values().sum();
    let where_ = format!("scratch database {scratch} on the target's server");
    let reported = restored
        .left_out
        .iter()
        .filter(|l| l.worth_reporting())
        .count();
    let left_out_note = if reported == 0 {
        String::new()
    } else {
        format!(
            "; {} the target's role cannot create left out by name (see \"{LEFT_OUT_TITLE}\")",
            objects(reported)
        )
    };
    let took = human_duration(outcome.duration.as_millis() as u64);
    let mut item = if !differing.is_empty() {
        CheckItem::new(
            id,
            title,
            Status::Fail,
            format!("restored into {where_}, but {}", differing.join("; ")),
        )
        .with_hint("the dump does not restore every row: do not rely on it; check pg_restore's messages in the log")
    } else if outcome.errors_ignored > 0 {
        CheckItem::new(
            id,
            title,
            Status::Warn,
            format!(
                "all {} tables and {} rows restored into {where_} in {took}{left_out_note}, with {} statements that failed: {}",
                dump.counts.len(),
                thousands(rows),
                outcome.errors_ignored,
                outcome.stderr.replace('\n', " / ")
            ),
        )
    } else {
        CheckItem::new(
            id,
            title,
            Status::Pass,
            format!(
                "all {} tables and {} rows restored into {where_} in {took}, counts equal to the dump's snapshot{left_out_note}",
                dump.counts.len(),
                thousands(rows),
            ),
        )
    };
    if let Err(e) = &restored.dropped {
        item.evidence
            .push_str(&format!("; the scratch database could not be dropped: {e}"));
        if item.status == Status::Pass {
            item.status = Status::Warn;
        }
        item.hint = Some(format!("drop it by hand: drop database {scratch};"));
    }
    item
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::pg::Side;
    use crate::pg::dump::WrittenFile;

    fn name(s: &str) -> QualifiedName {
        QualifiedName::parse(s).unwrap()
    }

    fn dump(counts: &[(&str, i64)]) -> TakenDump {
        TakenDump {
            side: Side::Source,
            file: WrittenFile {
                path: "backups/source.dump".into(),
                sha256: "0".repeat(64),
                bytes: 10,
                duration: Duration::ZERO,
                encrypted: false,
            },
            counts: counts.iter().map(|(t, n)| (name(t), *n)).collect(),
        }
    }

    fn restored(counted: &[(&str, Option<i64>)], errors_ignored: u64) -> ScratchRestore {
        ScratchRestore {
            left_out: Vec::new(),
            outcome: RestoreOutcome {
                errors_ignored,
                stderr: "ERROR: one\nERROR: two".into(),
                duration: Duration::ZERO,
            },
            counted: counted.iter().map(|(t, n)| (name(t), *n)).collect(),
            dropped: Ok(()),
        }
    }

    #[test]
    fn restored_counts_are_compared_with_the_snapshot() {
        let expected = dump(&[("public.a", 2), ("public.b", 3), ("public.c", 1)]).counts;
        let counted = BTreeMap::from([
            (name("public.a"), Some(2)),
            (name("public.b"), Some(1)),
            (name("public.c"), None),
        ]);
        assert_eq!(
            differing_counts(&expected, &counted),
            [
                "public.b: 3 in the snapshot, 1 restored",
                "public.c: missing after restore"
            ]
        );
    }

    #[test]
    fn a_restore_with_failed_statements_warns_and_quotes_them() {
        let dump = dump(&[("public.a", 2)]);
        let item = verified_item(
            "source-restores",
            "t",
            &dump,
            "scratch",
            &restored(&[("public.a", Some(2))], 2),
        );
        assert_eq!(item.status, Status::Warn);
        assert!(
            item.evidence
                .ends_with("with 2 statements that failed: ERROR: one / ERROR: two")
        );
        let item = verified_item(
            "source-restores",
            "t",
            &dump,
            "scratch",
            &restored(&[("public.a", Some(2))], 0),
        );
        assert_eq!(item.status, Status::Pass);
    }

    #[test]
    fn a_scratch_database_left_behind_is_named() {
        let dump = dump(&[("public.a", 2)]);
        let mut left = restored(&[("public.a", Some(2))], 0);
        left.dropped = Err(PgError::Query {
            context: "dropping".into(),
            message: "in use".into(),
            sqlstate: None,
        });
        let item = verified_item("source-restores", "t", &dump, "scratch_1", &left);
        assert_eq!(item.status, Status::Warn);
        assert_eq!(
            item.hint.as_deref(),
            Some("drop it by hand: drop database scratch_1;")
        );
    }

    #[test]
    fn an_encrypted_dump_without_an_identity_is_not_restored() {
        let mut dump = dump(&[]);
        dump.file.encrypted = true;
        let Err(failed) = dump_archive(&dump, None) else {
            panic!("an encrypted dump without an identity is refused")
        };
        assert_eq!(
            failed.evidence,
            "the dump is encrypted and no identity was given to decrypt it"
        );
    }
}
