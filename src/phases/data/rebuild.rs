//! Rebuilding the indexes and constraints `data` dropped before loading, in
//! both modes: index builds in parallel, keys attached one at a time, foreign
//! keys validated in parallel.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::context::Context;
use crate::manifest::QualifiedName;
use crate::pg::copy::{CopyLedger, DeferredKind, DeferredObject, RebuildSteps, rebuild_statements};
use crate::pg::{Database, PgError};
use crate::report::count;

/// The identity of a deferred object: table, kind, name.
pub(super) type ObjectKey = (String, DeferredKind, String);

/// What [`rebuild_all`] did.
#[derive(Debug, Default)]
pub(super) struct RebuildOutcome {
    /// How long it took.
    pub took: Duration,
    /// Foreign keys between copied tables whose validation failed: left
    /// `NOT VALID` and still owed in the ledger.
    pub unvalidated: Vec<String>,
    /// Foreign keys to tables outside the copy whose validation failed: the
    /// referenced rows are missing on the target. Left `NOT VALID`, recorded
    /// as finished.
    pub missing_references: Vec<DeferredObjectRef>,
}

/// A foreign key that references rows missing on the target.
#[derive(Debug)]
pub(super) struct DeferredObjectRef {
    /// Its name.
    pub name: String,
    /// The referencing (copied) table.
    pub table: QualifiedName,
    /// The referenced table, not copied.
    pub referenced: QualifiedName,
}

/// Rebuilds indexes and keys in parallel, then foreign keys (`NOT VALID`,
/// then validated in parallel), putting back each object's comment, replica
/// identity and clustering. `copied` are the tables of the copy: a foreign
/// key to any other table that fails validation is reported as a missing
/// reference, not as owed work.
pub(super) async fn rebuild_all(
    ctx: &Context,
    target: &Database,
    ledger: &CopyLedger,
    objects: &[DeferredObject],
    already_built: &BTreeSet<ObjectKey>,
    copied: &[QualifiedName],
) -> Result<RebuildOutcome, PgError> {
    let started = Instant::now();
    if objects.is_empty() {
        return Ok(RebuildOutcome::default());
    }
    let parallel = usize::from(ctx.manifest.data.parallel);
    ctx.console.progress(&format!(
        "rebuilding {}, {parallel} at a time",
        count(
            objects.len(),
            "index or constraint",
            "indexes and constraints"
        )
    ));
    let steps: Vec<(&DeferredObject, RebuildSteps)> =
        objects.iter().map(|o| (o, rebuild_statements(o))).collect();
    build_indexes(target, &steps, already_built, parallel).await?;
    attach_keys(target, ledger, &steps).await?;
    let validations = validate_foreign_keys(target, ledger, &steps, parallel).await;
    let mut outcome = RebuildOutcome::default();
    for (object, result) in validations {
        let Err(e) = result else { continue };
        match outside_reference(object, e.sqlstate(), copied) {
            Some(referenced) => {
                ledger.mark_not_valid(object).await?;
                outcome.missing_references.push(DeferredObjectRef {
                    name: object.name.clone(),
                    table: object.table.clone(),
                    referenced: referenced.clone(),
                });
            }
            None => outcome
                .unvalidated
                .push(format!("{} on {}", object.name, object.table)),
        }
    }
    outcome.took = started.elapsed();
    Ok(outcome)
}

/// Step 1: the index builds not already done during the copy, in parallel.
async fn build_indexes(
    target: &Database,
    steps: &[(&DeferredObject, RebuildSteps)],
    already_built: &BTreeSet<ObjectKey>,
    parallel: usize,
) -> Result<(), PgError> {
    let built: Vec<Result<Duration, PgError>> = futures_util::stream::iter(
        steps
            .iter()
            .filter(|(o, _)| !already_built.contains(&o.key()))
            .filter_map(|(_, s)| s.build.clone()),
    )
    .map(|sql| async move { target.run_ddl(&sql).await })
    .buffer_unordered(parallel)
    .collect()
    .await;
    match built.into_iter().find(|r| r.is_err()) {
        Some(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

/// Step 2: keys attached, then foreign keys added `NOT VALID`, one at a time
/// (two sessions upgrading their locks on one table would deadlock).
async fn attach_keys(
    target: &Database,
    ledger: &CopyLedger,
    steps: &[(&DeferredObject, RebuildSteps)],
) -> Result<(), PgError> {
    let mut ordered: Vec<&(&DeferredObject, RebuildSteps)> = steps.iter().collect();
    ordered.sort_by_key(|(o, _)| o.kind == DeferredKind::ForeignKey);
    for (object, step) in ordered {
        if let Some(sql) = &step.attach {
            target.run_ddl(sql).await?;
        }
        for sql in &object.follow_up {
            target.run_ddl(sql).await?;
        }
        if step.validate.is_none() {
            ledger.mark_restored(object).await?;
        }
    }
    Ok(())
}

/// Step 3: foreign keys validated in parallel; a failure leaves the key NOT
/// VALID and still owed in the ledger.
async fn validate_foreign_keys<'a>(
    target: &Database,
    ledger: &CopyLedger,
    steps: &'a [(&'a DeferredObject, RebuildSteps)],
    parallel: usize,
) -> Vec<(&'a DeferredObject, Result<(), PgError>)> {
    futures_util::stream::iter(steps.iter().filter(|(_, s)| s.validate.is_some()))
        .map(|(object, step)| async move {
            let sql = step.validate.as_deref().unwrap_or_default();
            let result = match target.run_ddl(sql).await {
                Ok(_) => ledger.mark_restored(object).await,
                Err(e) => Err(e),
            };
            (*object, result)
        })
        .buffer_unordered(parallel)
        .collect()
        .await
}

/// The table outside the copy a foreign key failed to validate against, when
/// that is why it failed: a key between a copied table and one outside the
/// copy (either way round) whose rows reference rows that are not there
/// (23503) holds rows the copy cannot make whole.
fn outside_reference<'a>(
    object: &'a DeferredObject,
    sqlstate: Option<&str>,
    copied: &[QualifiedName],
) -> Option<&'a QualifiedName> {
    object.referenced.as_ref().filter(|r| {
        (!copied.contains(r) || !copied.contains(&object.table)) && sqlstate == Some("23503")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> QualifiedName {
        QualifiedName::parse(s).unwrap()
    }

    fn foreign_key(table: &str, referenced: &str) -> DeferredObject {
        DeferredObject {
            table: name(table),
            kind: DeferredKind::ForeignKey,
            name: "fk".into(),
            definition: "FOREIGN KEY (a) REFERENCES x(id)".into(),
            deferrable: String::new(),
            validated: true,
            follow_up: Vec::new(),
            referenced: Some(name(referenced)),
        }
    }

    #[test]
    fn a_key_to_a_table_outside_the_copy_is_a_missing_reference() {
        let key = foreign_key("public.orders", "auth.users");
        let copied = [name("public.orders")];
        assert_eq!(
            outside_reference(&key, Some("23503"), &copied),
            Some(&name("auth.users"))
        );
    }

    #[test]
    fn a_key_inside_the_copy_or_another_error_is_owed_work() {
        let key = foreign_key("public.orders", "public.users");
        let both = [name("public.orders"), name("public.users")];
        assert_eq!(outside_reference(&key, Some("23503"), &both), None);
        let one = [name("public.orders")];
        assert_eq!(outside_reference(&key, Some("57014"), &one), None);
        assert_eq!(outside_reference(&key, None, &one), None);
    }

    #[test]
    fn a_key_from_outside_into_the_copy_is_a_missing_reference() {
        let key = foreign_key("public.audit", "public.orders");
        let copied = [name("public.orders")];
        assert_eq!(
            outside_reference(&key, Some("23503"), &copied),
            Some(&name("public.orders"))
        );
    }
}
