//! `storage`: creates the source's Storage buckets on the target (with their
//! `public`, `file_size_limit` and `allowed_mime_types`) and copies their
//! objects through the two projects' Storage APIs, each object streamed from
//! the source's download into the target's upload (no files), `[storage]
//! parallel` at a time, keeping content type and cache control.
//!
//! An object the target already holds with the same size, ETag, content type
//! and cache control is skipped, and so is one the ledger recorded as copied
//! when neither side changed since (ETags of large uploads can differ
//! between projects). Afterwards both sides are listed again and compared
//! per bucket: object counts and bytes must match.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::StreamExt;

use crate::context::Context;
use crate::manifest::StorageSection;
use crate::pg::ledger::Ledger;
use crate::pg::ledger_storage::CopiedObject;
use crate::report::{CheckItem, PhaseReport, ReportTable, Status, count, thousands};
use crate::supabase::ApiErrorKind;
use crate::supabase::storage::{Bucket, StorageClient, StorageError, StoredObject, copy_object};

use super::PhaseError;

/// The two Storage clients a run needs, or an error naming every missing
/// input (and the `[storage]` section, when absent).
pub(crate) fn storage_clients(
    ctx: &Context,
) -> Result<(&StorageSection, StorageClient, StorageClient), PhaseError> {
    let s = &ctx.settings;
    let Some(section) = ctx.manifest.storage.as_ref() else {
        return Err(PhaseError::new(
            "storage was asked for but the manifest has no [storage] section",
        )
        .hint("add `[storage]` to the manifest (buckets = [\"*\"] copies every bucket), or leave `storage` out of the phase list"));
    };
    let mut missing = Vec::new();
    if s.source_storage_url.is_none() {
        missing.push("source-storage-url (or source-project-ref)");
    }
    if s.target_storage_url.is_none() {
        missing.push("target-storage-url (or target-project-ref)");
    }
    if s.source_service_role_key.is_none() {
        missing.push("source-service-role-key");
    }
    if s.target_service_role_key.is_none() {
        missing.push("target-service-role-key");
    }
    if !missing.is_empty() {
        return Err(PhaseError::new(format!(
            "storage needs {} but {} not set",
            missing.join(" and "),
            if missing.len() == 1 { "it is" } else { "they are" },
        ))
        .hint(format!(
            "pass {} and {}: each project's service_role key (dashboard → Project Settings → API Keys) from a secret, e.g. `target-service-role-key: ${{{{ secrets.TARGET_SERVICE_ROLE_KEY }}}}`; the Storage URLs default to https://<project-ref>.supabase.co",
            s.label("source-service-role-key"),
            s.label("target-service-role-key"),
        )));
    }
    let urls = [
        ("source-storage-url", s.source_storage_url.as_deref()),
        ("target-storage-url", s.target_storage_url.as_deref()),
    ];
    for (input, url) in urls {
        let url = url.unwrap_or_default();
        let ok = url::Url::parse(url)
            .map(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .unwrap_or(false);
        if !ok {
            return Err(PhaseError::new(format!(
                "{} is {url:?}, which is not an http(s) URL",
                s.label(input)
            ))
            .hint("use the project URL, https://<project-ref>.supabase.co"));
        }
    }
    let base = |u: &Option<String>| {
        crate::supabase::storage::storage_base(u.as_deref().unwrap_or_default()).to_lowercase()
    };
    if base(&s.source_storage_url) == base(&s.target_storage_url) {
        return Err(PhaseError::new(format!(
            "source and target are one environment: {} and {} both point at {}; nothing was read or written",
            s.label("source-storage-url"),
            s.label("target-storage-url"),
            base(&s.source_storage_url)
        ))
        .hint("set target-storage-url (or target-project-ref) to the target project"));
    }
    let policy = super::functions::retry_policy(ctx);
    let client = |side: &'static str, url: &Option<String>, key: &Option<_>| {
        StorageClient::new(
            side,
            url.as_deref().unwrap_or_default(),
            Option::clone(key).expect("checked above"),
            policy.clone(),
        )
        .map_err(|e| PhaseError::new(e.to_string()))
    };
    Ok((
        section,
        client("source", &s.source_storage_url, &s.source_service_role_key)?,
        client("target", &s.target_storage_url, &s.target_service_role_key)?,
    ))
}

/// A fix for a Storage API failure, naming the input to change.
pub(crate) fn storage_hint(ctx: &Context, error: &StorageError) -> String {
    let s = &ctx.settings;
    let key = s.label(&format!("{}-service-role-key", error.side));
    let url = s.label(&format!("{}-storage-url", error.side));
    match error.kind {
        ApiErrorKind::Unauthorized | ApiErrorKind::Forbidden => format!(
            "pass the {} project's service_role key as {key} (dashboard → Project Settings → API Keys → service_role); the anon key may not list or write buckets, and a key of another project is refused",
            error.side
        ),
        ApiErrorKind::NotFound => format!(
            "check {url}: it must be the {} project's URL, https://<project-ref>.supabase.co",
            error.side
        ),
        ApiErrorKind::RateLimited | ApiErrorKind::Server | ApiErrorKind::Network => format!(
            "the Storage API did not answer successfully after retries; check https://status.supabase.com and {url}, then re-run (objects already copied are skipped)"
        ),
        ApiErrorKind::Malformed => {
            format!("{url} must be the project URL, https://<project-ref>.supabase.co")
        }
        ApiErrorKind::Refused => "the Storage API refused the request: see its message".into(),
    }
}

/// A Storage API failure that stops the phase.
fn storage_stop(ctx: &Context, error: StorageError) -> PhaseError {
    let hint = storage_hint(ctx, &error);
    PhaseError::new(ctx.redactor.redact(&error.to_string())).hint(hint)
}

/// One bucket to copy and what each side holds.
#[derive(Debug)]
pub(crate) struct BucketPlan {
    /// The source's bucket.
    pub bucket: Bucket,
    /// The target's bucket of the same id, if it has one.
    pub target: Option<Bucket>,
    /// The source's objects.
    pub source_objects: Vec<StoredObject>,
    /// The target's objects (before the copy).
    pub target_objects: Vec<StoredObject>,
    /// Objects to copy.
    pub to_copy: Vec<StoredObject>,
    /// Objects already on the target.
    pub skipped: usize,
}

/// What `storage` would do: the selected buckets, each side's objects.
#[derive(Debug, Default)]
pub(crate) struct Survey {
    /// Buckets to copy.
    pub buckets: Vec<BucketPlan>,
    /// Buckets left out by `exclude`.
    pub excluded: Vec<String>,
    /// Names in `exclude` that match no source bucket.
    pub unknown_excludes: Vec<String>,
}

/// Whether the target's object is the source's: same size, content type
/// and cache control, and the same ETag, or the ETags the ledger recorded
/// for the last copy of it on both sides.
fn already_copied(
    source: &StoredObject,
    target: &StoredObject,
    ledger: Option<&CopiedObject>,
) -> bool {
    if source.size != target.size {
        return false;
    }
    let same = |a: &Option<String>, b: &Option<String>| a.is_none() || b.is_none() || a == b;
    if !same(&source.content_type, &target.content_type)
        || !same(&source.cache_control, &target.cache_control)
    {
        return false;
    }
    if source.etag.is_some() && source.etag == target.etag {
        return true;
    }
    ledger.is_some_and(|l| {
        l.size == source.size as i64
            && l.etag.is_some()
            && l.etag == source.etag
            && l.target_etag.is_some()
            && l.target_etag == target.etag
    })
}

/// Lists both sides and decides what to copy.
pub(crate) async fn survey(
    ctx: &Context,
    section: &StorageSection,
    source: &StorageClient,
    target: &StorageClient,
    ledger: Option<&Ledger>,
) -> Result<Survey, PhaseError> {
    let source_buckets = source
        .list_buckets()
        .await
        .map_err(|e| storage_stop(ctx, e))?;
    let target_buckets: BTreeMap<String, Bucket> = target
        .list_buckets()
        .await
        .map_err(|e| storage_stop(ctx, e))?
        .into_iter()
        .map(|b| (b.id.clone(), b))
        .collect();
    let known: BTreeSet<&str> = source_buckets.iter().map(|b| b.id.as_str()).collect();
    if !section.all_buckets() {
        let missing: Vec<&str> = section
            .buckets
            .iter()
            .map(|b| b.trim())
            .filter(|b| !known.contains(b))
            .collect();
        if !missing.is_empty() {
            return Err(PhaseError::new(format!(
                "[storage] buckets names buckets the source does not have: {}; the source has {}",
                missing.join(", "),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.iter().copied().collect::<Vec<_>>().join(", ")
                }
            ))
            .hint("fix the ids in [storage] buckets (bucket ids, as in the dashboard's Storage page), or use [\"*\"]"));
        }
    }
    let mut out = Survey {
        unknown_excludes: section
            .exclude
            .iter()
            .filter(|e| !known.contains(e.trim()))
            .cloned()
            .collect(),
        ..Survey::default()
    };
    for bucket in source_buckets {
        let listed = section.all_buckets() || section.buckets.iter().any(|b| b.trim() == bucket.id);
        if !listed {
            continue;
        }
        if section.exclude.iter().any(|e| e.trim() == bucket.id) {
            out.excluded.push(bucket.id);
            continue;
        }
        let source_objects = source
            .list_objects(&bucket.id)
            .await
            .map_err(|e| storage_stop(ctx, e))?;
        let target_bucket = target_buckets.get(&bucket.id).cloned();
        let target_objects = if target_bucket.is_some() {
            target
                .list_objects(&bucket.id)
                .await
                .map_err(|e| storage_stop(ctx, e))?
        } else {
            Vec::new()
        };
        let recorded = match ledger {
            Some(l) => l.copied_objects(&bucket.id).await?,
            None => BTreeMap::new(),
        };
        let on_target: BTreeMap<&str, &StoredObject> = target_objects
            .iter()
            .map(|o| (o.path.as_str(), o))
            .collect();
        let mut to_copy = Vec::new();
        let mut skipped = 0;
        for object in &source_objects {
            let done = on_target
                .get(object.path.as_str())
                .is_some_and(|t| already_copied(object, t, recorded.get(&object.path)));
            if done {
                skipped += 1;
            } else {
                to_copy.push(object.clone());
            }
        }
        out.buckets.push(BucketPlan {
            bucket,
            target: target_bucket,
            source_objects,
            target_objects,
            to_copy,
            skipped,
        });
    }
    Ok(out)
}

fn bytes_of(objects: &[StoredObject]) -> u64 {
    objects.iter().map(|o| o.size).sum()
}

fn settings_text(b: &Bucket) -> String {
    format!(
        "{}, size limit {}, MIME types {}",
        if b.public { "public" } else { "private" },
        b.file_size_limit.map_or("none".to_string(), |n| format!(
            "{} bytes",
            thousands(n as i64)
        )),
        b.allowed_mime_types
            .as_ref()
            .filter(|t| !t.is_empty())
            .map_or("any".to_string(), |t| t.join(", "))
    )
}

/// The line `plan` shows for `storage`, and a table of counts (when the
/// section is configured and the keys are set). Never fails: a problem is
/// the line.
pub(crate) async fn plan_line(ctx: &Context) -> (String, Option<ReportTable>) {
    if ctx.manifest.storage.is_none() {
        return (
            "no [storage] section: Storage buckets and objects are not copied".into(),
            None,
        );
    }
    let (section, source, target) = match storage_clients(ctx) {
        Ok(c) => c,
        Err(e) => return (format!("cannot plan: {}", e.message), None),
    };
    match survey(ctx, section, &source, &target, None).await {
        Ok(s) => {
            let table = preview_table(&s, "Storage (what `storage` would copy)");
            (survey_line(&s), Some(table))
        }
        Err(e) => (format!("cannot plan: {}", e.message), None),
    }
}

fn survey_line(s: &Survey) -> String {
    let objects: usize = s.buckets.iter().map(|b| b.source_objects.len()).sum();
    let copy: usize = s.buckets.iter().map(|b| b.to_copy.len()).sum();
    let bytes: u64 = s.buckets.iter().map(|b| bytes_of(&b.to_copy)).sum();
    let new_buckets = s.buckets.iter().filter(|b| b.target.is_none()).count();
    let mut line = format!(
        "copy {} of {} in {} ({} bytes){}",
        thousands(copy as i64),
        count(objects, "object", "objects"),
        count(s.buckets.len(), "bucket", "buckets"),
        thousands(bytes as i64),
        if new_buckets > 0 {
            format!(", creating {}", count(new_buckets, "bucket", "buckets"))
        } else {
            String::new()
        }
    );
    if !s.excluded.is_empty() {
        line.push_str(&format!("; never copy {}", s.excluded.join(", ")));
    }
    line
}

fn preview_table(s: &Survey, title: &str) -> ReportTable {
    let mut table = ReportTable::new(
        title,
        &[
            "Bucket",
            "Settings",
            "On the target",
            "Source objects",
            "Source bytes",
            "To copy",
            "Already there",
        ],
    );
    for b in &s.buckets {
        table.push([
            b.bucket.id.clone(),
            settings_text(&b.bucket),
            match &b.target {
                None => "missing: would create".to_string(),
                Some(t) if t.same_settings(&b.bucket) => "exists".to_string(),
                Some(t) => format!("exists, would update ({})", settings_text(t)),
            },
            thousands(b.source_objects.len() as i64),
            thousands(bytes_of(&b.source_objects) as i64),
            thousands(b.to_copy.len() as i64),
            thousands(b.skipped as i64),
        ]);
    }
    table
}

/// Runs `storage`.
pub async fn run(ctx: &mut Context) -> Result<PhaseReport, PhaseError> {
    let mut report = PhaseReport::new("storage");
    let (section, source, target) = storage_clients(ctx)?;
    let section = section.clone();
    super::functions::open_ledger(ctx, "storage").await?;
    let ledger = ctx.open_ledger().cloned();
    let survey = survey(ctx, &section, &source, &target, ledger.as_ref()).await?;
    if !survey.unknown_excludes.is_empty() {
        report.check(
            CheckItem::new(
                "storage-excludes",
                "[storage] exclude names source buckets",
                Status::Warn,
                format!(
                    "no such bucket on the source: {}",
                    survey.unknown_excludes.join(", ")
                ),
            )
            .with_hint("fix the bucket ids in [storage] exclude (probably misspelt)"),
        );
    }

    if ctx.settings.dry_run {
        report
            .tables
            .push(preview_table(&survey, "Storage (dry-run: nothing copied)"));
        report.summary = format!(
            "Dry-run: would {}; nothing was created or copied.",
            survey_line(&survey)
        );
        return Ok(report);
    }

    // Buckets first, with the source's settings.
    let mut bucket_table = ReportTable::new(
        "Storage buckets",
        &["Bucket", "Settings (source)", "On the target"],
    );
    let mut bucket_failures = Vec::new();
    for plan in &survey.buckets {
        let action = match &plan.target {
            Some(t) if t.same_settings(&plan.bucket) => Ok("unchanged".to_string()),
            Some(t) => target
                .update_bucket(&plan.bucket)
                .await
                .map(|()| format!("updated (was {})", settings_text(t))),
            None => target
                .create_or_update_bucket(&plan.bucket)
                .await
                .map(|created| if created { "created" } else { "updated" }.to_string()),
        };
        let cell = match action {
            Ok(a) => a,
            Err(e) => {
                let hint = storage_hint(ctx, &e);
                let message = ctx.redactor.redact(&e.to_string());
                bucket_failures.push(plan.bucket.id.clone());
                report.check(
                    CheckItem::new(
                        &format!("storage-bucket:{}", plan.bucket.id),
                        &format!("Bucket {} on the target", plan.bucket.id),
                        Status::Fail,
                        message.clone(),
                    )
                    .with_hint(hint),
                );
                format!("failed: {message}")
            }
        };
        bucket_table.push([plan.bucket.id.clone(), settings_text(&plan.bucket), cell]);
    }
    if bucket_failures.is_empty() {
        report.check(CheckItem::new(
            "storage-buckets",
            "Buckets on the target with the source's settings",
            Status::Pass,
            format!(
                "{}: public, file_size_limit and allowed_mime_types as on the source",
                count(survey.buckets.len(), "bucket", "buckets")
            ),
        ));
    }

    // Objects, `parallel` at a time, across buckets.
    let jobs: Vec<(&str, &StoredObject)> = survey
        .buckets
        .iter()
        .filter(|b| !bucket_failures.contains(&b.bucket.id))
        .flat_map(|b| b.to_copy.iter().map(move |o| (b.bucket.id.as_str(), o)))
        .collect();
    let total = jobs.len();
    let parallel = usize::from(section.parallel.max(1));
    let (source_ref, target_ref, ledger_ref, run_id) =
        (&source, &target, ledger.as_ref(), ctx.run_id);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let done_ref = &done;
    let console = &ctx.console;
    let outcomes: Vec<(String, String, Result<u64, String>)> = futures_util::stream::iter(jobs)
        .map(|(bucket, object)| async move {
            let result = match copy_object(source_ref, target_ref, bucket, object).await {
                Ok(bytes) => match ledger_ref {
                    Some(l) => l
                        .record_copied_object(
                            run_id,
                            bucket,
                            &object.path,
                            object.size as i64,
                            object.etag.as_deref(),
                        )
                        .await
                        .map(|()| bytes)
                        .map_err(|e| e.to_string()),
                    None => Ok(bytes),
                },
                Err(e) => Err(e.to_string()),
            };
            let n = done_ref.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if n % 500 == 0 && n < total {
                console.progress(&format!("storage: {n} of {total} objects copied"));
            }
            (bucket.to_string(), object.path.clone(), result)
        })
        .buffer_unordered(parallel)
        .collect()
        .await;

    let mut copied: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failed: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
    for (bucket, path, result) in &outcomes {
        match result {
            Ok(_) => *copied.entry(bucket.as_str()).or_default() += 1,
            Err(e) => failed
                .entry(bucket.as_str())
                .or_default()
                .push((path.clone(), ctx.redactor.redact(e))),
        }
    }

    // Both sides compared after the copy.
    let mut table = ReportTable::new(
        "Storage objects",
        &[
            "Bucket",
            "Source objects",
            "Source bytes",
            "Target objects",
            "Target bytes",
            "Copied",
            "Skipped",
            "Failed",
            "",
        ],
    )
    .with_note("Counts and bytes of every object in each bucket, listed on both sides after the copy; skipped objects were already on the target with the same size, ETag, content type and cache control.");
    let mut mismatched = Vec::new();
    for plan in &survey.buckets {
        let id = plan.bucket.id.as_str();
        let after = if bucket_failures.contains(&plan.bucket.id) {
            plan.target_objects.clone()
        } else {
            target
                .list_objects(id)
                .await
                .map_err(|e| storage_stop(ctx, e))?
        };
        if let Some(l) = &ledger {
            let copied_here: BTreeSet<&str> = outcomes
                .iter()
                .filter(|(b, _, r)| b == id && r.is_ok())
                .map(|(_, p, _)| p.as_str())
                .collect();
            let etags: BTreeMap<String, String> = after
                .iter()
                .filter(|o| copied_here.contains(o.path.as_str()))
                .filter_map(|o| o.etag.clone().map(|e| (o.path.clone(), e)))
                .collect();
            l.confirm_copied_objects(run_id, id, &etags).await?;
        }
        let (source_n, source_bytes) = (plan.source_objects.len(), bytes_of(&plan.source_objects));
        let (target_n, target_bytes) = (after.len(), bytes_of(&after));
        let fails = failed.get(id).map_or(0, Vec::len);
        let by_path: BTreeMap<&str, &StoredObject> =
            after.iter().map(|o| (o.path.as_str(), o)).collect();
        let absent_or_different: Vec<&str> = plan
            .source_objects
            .iter()
            .filter(|o| {
                by_path
                    .get(o.path.as_str())
                    .is_none_or(|t| t.size != o.size)
            })
            .map(|o| o.path.as_str())
            .collect();
        let matches =
            source_n == target_n && source_bytes == target_bytes && absent_or_different.is_empty();
        table.push([
            id.to_string(),
            thousands(source_n as i64),
            thousands(source_bytes as i64),
            thousands(target_n as i64),
            thousands(target_bytes as i64),
            thousands(copied.get(id).copied().unwrap_or(0) as i64),
            thousands(plan.skipped as i64),
            thousands(fails as i64),
            if matches { "✅" } else { "❌" }.to_string(),
        ]);
        if !matches {
            let extra = target_n.saturating_sub(source_n - absent_or_different.len().min(source_n));
            let mut why = format!(
                "source {} ({} bytes), target {} ({} bytes)",
                count(source_n, "object", "objects"),
                thousands(source_bytes as i64),
                count(target_n, "object", "objects"),
                thousands(target_bytes as i64),
            );
            if !absent_or_different.is_empty() {
                let first: Vec<&str> = absent_or_different.iter().take(5).copied().collect();
                why.push_str(&format!(
                    "; missing or of another size on the target: {}{}",
                    first.join(", "),
                    if absent_or_different.len() > 5 {
                        format!(" and {} more", absent_or_different.len() - 5)
                    } else {
                        String::new()
                    }
                ));
            }
            if extra > 0 && absent_or_different.is_empty() {
                why.push_str(&format!(
                    "; the target holds {} the source does not (cutover never deletes)",
                    count(extra, "object", "objects")
                ));
            }
            mismatched.push(id.to_string());
            report.check(
                CheckItem::new(
                    &format!("storage-counts:{id}"),
                    &format!("Bucket {id}: objects and bytes match"),
                    Status::Fail,
                    why,
                )
                .with_hint(if fails > 0 {
                    "see the failed copies below; re-run `storage` (objects already copied are skipped)"
                } else {
                    "re-run `storage`; objects only the target has must be removed there by hand if they should not be kept"
                }),
            );
        }
    }
    let all_failed: Vec<(String, String, String)> = failed
        .iter()
        .flat_map(|(b, list)| {
            list.iter()
                .map(|(p, e)| (b.to_string(), p.clone(), e.clone()))
        })
        .collect();
    let copied_total: usize = copied.values().sum();
    let skipped_total: usize = survey.buckets.iter().map(|b| b.skipped).sum();
    report.check(if all_failed.is_empty() {
        CheckItem::new(
            "storage-objects",
            "Storage objects copied",
            Status::Pass,
            format!(
                "{} copied, {} already on the target",
                count(copied_total, "object", "objects"),
                thousands(skipped_total as i64)
            ),
        )
    } else {
        let first = &all_failed[0];
        CheckItem::new(
            "storage-objects",
            "Storage objects copied",
            Status::Fail,
            format!(
                "{} of {} failed; first: {}/{}: {}",
                thousands(all_failed.len() as i64),
                count(total, "object", "objects"),
                first.0,
                first.1,
                first.2
            ),
        )
        .with_hint("re-run `storage`: objects already copied are skipped")
    });
    if mismatched.is_empty() && !survey.buckets.is_empty() {
        report.check(CheckItem::new(
            "storage-counts",
            "Storage objects and bytes match per bucket",
            Status::Pass,
            format!(
                "{}: every bucket holds as many objects and bytes on the target as on the source",
                count(survey.buckets.len(), "bucket", "buckets")
            ),
        ));
    }
    report.tables.push(table);
    report.tables.push(bucket_table);
    if !all_failed.is_empty() {
        let mut failures =
            ReportTable::new("Storage copies that failed", &["Bucket", "Object", "Error"]);
        for (b, p, e) in all_failed.iter().take(50) {
            failures.push([b.clone(), p.clone(), e.clone()]);
        }
        if all_failed.len() > 50 {
            failures = failures.with_note(format!(
                "The first 50 of {}; the JSON report's checklist has the count.",
                thousands(all_failed.len() as i64)
            ));
        }
        report.tables.push(failures);
    }
    report.conclude_from_checks();
    report.summary = format!(
        "{} in {}: {} copied, {} already on the target, {} failed{}.",
        count(
            survey
                .buckets
                .iter()
                .map(|b| b.source_objects.len())
                .sum::<usize>(),
            "object",
            "objects"
        ),
        count(survey.buckets.len(), "bucket", "buckets"),
        thousands(copied_total as i64),
        thousands(skipped_total as i64),
        thousands(all_failed.len() as i64),
        if survey.excluded.is_empty() {
            String::new()
        } else {
            format!("; never copied (excluded): {}", survey.excluded.join(", "))
        }
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(size: u64, etag: &str) -> StoredObject {
        StoredObject {
            path: "a/b.txt".into(),
            size,
            etag: Some(etag.into()),
            content_type: Some("text/plain".into()),
            cache_control: Some("max-age=3600".into()),
        }
    }

    #[test]
    fn skips_only_what_is_the_same() {
        let s = object(10, "abc");
        assert!(already_copied(&s, &object(10, "abc"), None));
        assert!(!already_copied(&s, &object(11, "abc"), None));
        assert!(
            !already_copied(&s, &object(10, "def"), None),
            "changed content"
        );
        let mut other_type = object(10, "abc");
        other_type.content_type = Some("application/pdf".into());
        assert!(!already_copied(&s, &other_type, None));
        // ETags that differ between projects: trusted when the ledger saw both.
        let recorded = CopiedObject {
            size: 10,
            etag: Some("abc".into()),
            target_etag: Some("abc-2".into()),
        };
        assert!(already_copied(&s, &object(10, "abc-2"), Some(&recorded)));
        assert!(!already_copied(
            &object(10, "new"),
            &object(10, "abc-2"),
            Some(&recorded)
        ));
    }
}
