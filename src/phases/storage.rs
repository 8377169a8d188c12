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

use crate::cells;
use crate::context::Context;
use crate::manifest::StorageSection;
use crate::pg::ledger::Ledger;
use crate::pg::ledger_storage::CopiedObject;
use crate::report::{Cell, CheckItem, PhaseReport, ReportTable, Status, count, thousands};
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
    refuse_unknown_buckets(section, &known)?;
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
        match selection(section, &bucket.id) {
            Selection::NotListed => {}
            Selection::Excluded => out.excluded.push(bucket.id),
            Selection::Copied => {
                let target_bucket = target_buckets.get(&bucket.id).cloned();
                let plan = plan_bucket(ctx, source, target, ledger, bucket, target_bucket).await?;
                out.buckets.push(plan);
            }
        }
    }
    Ok(out)
}

/// Refuses `[storage] buckets` naming buckets the source does not have.
fn refuse_unknown_buckets(
    section: &StorageSection,
    known: &BTreeSet<&str>,
) -> Result<(), PhaseError> {
    if section.all_buckets() {
        return Ok(());
    }
    let missing: Vec<&str> = section
        .buckets
        .iter()
        .map(|b| b.trim())
        .filter(|b| !known.contains(b))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(PhaseError::new(format!(
        "[storage] buckets names buckets the source does not have: {}; the source has {}",
        missing.join(", "),
        if known.is_empty() {
            "none".to_string()
        } else {
            known.iter().copied().collect::<Vec<_>>().join(", ")
        }
    ))
    .hint("fix the ids in [storage] buckets (bucket ids, as in the dashboard's Storage page), or use [\"*\"]"))
}

/// What `[storage]` says of one source bucket.
#[derive(Debug, PartialEq, Eq)]
enum Selection {
    /// Not named in `buckets`.
    NotListed,
    /// Named in `exclude`.
    Excluded,
    /// Copied.
    Copied,
}

fn selection(section: &StorageSection, id: &str) -> Selection {
    let listed = section.all_buckets() || section.buckets.iter().any(|b| b.trim() == id);
    if !listed {
        Selection::NotListed
    } else if section.exclude.iter().any(|e| e.trim() == id) {
        Selection::Excluded
    } else {
        Selection::Copied
    }
}

/// Lists one bucket's objects on both sides and decides which to copy.
async fn plan_bucket(
    ctx: &Context,
    source: &StorageClient,
    target: &StorageClient,
    ledger: Option<&Ledger>,
    bucket: Bucket,
    target_bucket: Option<Bucket>,
) -> Result<BucketPlan, PhaseError> {
    let source_objects = source
        .list_objects(&bucket.id)
        .await
        .map_err(|e| storage_stop(ctx, e))?;
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
    let (to_copy, skipped) = objects_to_copy(&source_objects, &target_objects, &recorded);
    Ok(BucketPlan {
        bucket,
        target: target_bucket,
        source_objects,
        target_objects,
        to_copy,
        skipped,
    })
}

/// The source's objects the target does not hold yet, and how many it does.
fn objects_to_copy(
    source_objects: &[StoredObject],
    target_objects: &[StoredObject],
    recorded: &BTreeMap<String, CopiedObject>,
) -> (Vec<StoredObject>, usize) {
    let on_target: BTreeMap<&str, &StoredObject> = target_objects
        .iter()
        .map(|o| (o.path.as_str(), o))
        .collect();
    let (done, to_copy): (Vec<&StoredObject>, Vec<&StoredObject>) =
        source_objects.iter().partition(|object| {
            on_target
                .get(object.path.as_str())
                .is_some_and(|t| already_copied(object, t, recorded.get(&object.path)))
        });
    (to_copy.into_iter().cloned().collect(), done.len())
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
        table.push(cells![
            b.bucket.id.clone(),
            settings_text(&b.bucket),
            match &b.target {
                None => "missing: would create".to_string(),
                Some(t) if t.same_settings(&b.bucket) => "exists".to_string(),
                Some(t) => format!("exists, would update ({})", settings_text(t)),
            },
            b.source_objects.len(),
            bytes_of(&b.source_objects),
            b.to_copy.len(),
            b.skipped,
        ]);
    }
    table
}

/// Runs `storage`: survey both sides, then (unless dry-run) buckets, then
/// objects, then both sides listed again and compared.
pub async fn run(ctx: &mut Context) -> Result<PhaseReport, PhaseError> {
    let (section, source, target) = storage_clients(ctx)?;
    let parallel = usize::from(section.parallel.max(1));
    let section = section.clone();
    super::functions::open_ledger(ctx, "storage").await?;
    let ledger = ctx.open_ledger().cloned();
    let survey = survey(ctx, &section, &source, &target, ledger.as_ref()).await?;
    if ctx.settings.dry_run {
        return Ok(dry_run_report(&survey));
    }
    let buckets = apply_buckets(ctx, &target, &survey).await;
    let objects = copy_objects(
        ctx,
        &source,
        &target,
        ledger.as_ref(),
        &survey,
        &buckets,
        parallel,
    )
    .await;
    let mut after = Vec::new();
    for plan in &survey.buckets {
        let listed = list_after(ctx, &target, ledger.as_ref(), plan, &buckets, &objects).await?;
        after.push(listed);
    }
    Ok(report(&StorageOutcome {
        survey,
        buckets,
        objects,
        after,
    }))
}

/// A warning for `[storage] exclude` names that match no source bucket.
fn excludes_check(survey: &Survey) -> Option<CheckItem> {
    if survey.unknown_excludes.is_empty() {
        return None;
    }
    Some(
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
    )
}

/// What a dry-run shows: each bucket's counts and what would be copied.
fn dry_run_report(survey: &Survey) -> PhaseReport {
    let mut report = PhaseReport::new("storage");
    report.checks.extend(excludes_check(survey));
    report
        .tables
        .push(preview_table(survey, "Storage (dry-run: nothing copied)"));
    report.summary = format!(
        "Dry-run: would {}; nothing was created or copied.",
        survey_line(survey)
    );
    report
}

/// What creating or updating the buckets did, in the survey's order.
#[derive(Debug, Default)]
struct BucketsOutcome {
    /// Each bucket: id, the source's settings, what happened on the target.
    rows: Vec<[String; 3]>,
    /// The rows of buckets that could not be made: their objects are not copied.
    failures: Vec<CheckItem>,
    /// Their ids.
    failed: Vec<String>,
}

/// Creates or updates each bucket on the target with the source's settings.
async fn apply_buckets(ctx: &Context, target: &StorageClient, survey: &Survey) -> BucketsOutcome {
    let mut outcome = BucketsOutcome::default();
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
        let id = plan.bucket.id.clone();
        let cell = match action {
            Ok(a) => a,
            Err(e) => {
                let message = ctx.redactor.redact(&e.to_string());
                outcome.failures.push(
                    CheckItem::new(
                        &format!("storage-bucket:{id}"),
                        &format!("Bucket {id} on the target"),
                        Status::Fail,
                        message.clone(),
                    )
                    .with_hint(storage_hint(ctx, &e)),
                );
                outcome.failed.push(id.clone());
                format!("failed: {message}")
            }
        };
        outcome.rows.push([id, settings_text(&plan.bucket), cell]);
    }
    outcome
}

/// One object's copy: bucket, path, bytes or why it failed (redacted).
type ObjectCopy = (String, String, Result<u64, String>);

/// Copies the objects of the buckets the target has, `parallel` at a time
/// across buckets, each recorded in the ledger.
async fn copy_objects(
    ctx: &Context,
    source: &StorageClient,
    target: &StorageClient,
    ledger: Option<&Ledger>,
    survey: &Survey,
    buckets: &BucketsOutcome,
    parallel: usize,
) -> Vec<ObjectCopy> {
    let jobs: Vec<(&str, &StoredObject)> = survey
        .buckets
        .iter()
        .filter(|b| !buckets.failed.contains(&b.bucket.id))
        .flat_map(|b| b.to_copy.iter().map(move |o| (b.bucket.id.as_str(), o)))
        .collect();
    let total = jobs.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let (done, console, run_id) = (&done, &ctx.console, ctx.run_id);
    futures_util::stream::iter(jobs)
        .map(|(bucket, object)| async move {
            let result = match copy_object(source, target, bucket, object).await {
                Ok(bytes) => match ledger {
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
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if n % 500 == 0 && n < total {
                console.progress(&format!("storage: {n} of {total} objects copied"));
            }
            let result = result.map_err(|e| ctx.redactor.redact(&e));
            (bucket.to_string(), object.path.clone(), result)
        })
        .buffer_unordered(parallel)
        .collect()
        .await
}

/// The target's objects of one bucket after the copy (as before it when the
/// bucket could not be made), with the ETags of the objects copied now
/// confirmed in the ledger.
async fn list_after(
    ctx: &Context,
    target: &StorageClient,
    ledger: Option<&Ledger>,
    plan: &BucketPlan,
    buckets: &BucketsOutcome,
    objects: &[ObjectCopy],
) -> Result<Vec<StoredObject>, PhaseError> {
    let id = plan.bucket.id.as_str();
    let after = if buckets.failed.contains(&plan.bucket.id) {
        plan.target_objects.clone()
    } else {
        target
            .list_objects(id)
            .await
            .map_err(|e| storage_stop(ctx, e))?
    };
    if let Some(l) = ledger {
        l.confirm_copied_objects(ctx.run_id, id, &copied_etags(id, objects, &after))
            .await?;
    }
    Ok(after)
}

/// The target's ETags of the objects copied into bucket `id` now.
fn copied_etags(
    id: &str,
    objects: &[ObjectCopy],
    after: &[StoredObject],
) -> BTreeMap<String, String> {
    let copied_here: BTreeSet<&str> = objects
        .iter()
        .filter(|(b, _, r)| b == id && r.is_ok())
        .map(|(_, p, _)| p.as_str())
        .collect();
    after
        .iter()
        .filter(|o| copied_here.contains(o.path.as_str()))
        .filter_map(|o| o.etag.clone().map(|e| (o.path.clone(), e)))
        .collect()
}

/// What `storage` did, for [`report`].
struct StorageOutcome {
    survey: Survey,
    buckets: BucketsOutcome,
    objects: Vec<ObjectCopy>,
    /// Each surveyed bucket's objects on the target after the copy.
    after: Vec<Vec<StoredObject>>,
}

impl StorageOutcome {
    /// Objects copied, by bucket.
    fn copied(&self) -> BTreeMap<&str, usize> {
        let mut copied: BTreeMap<&str, usize> = BTreeMap::new();
        for (bucket, _, result) in &self.objects {
            if result.is_ok() {
                *copied.entry(bucket.as_str()).or_default() += 1;
            }
        }
        copied
    }

    /// Failed copies: bucket, path, error; by bucket, in the order they ended.
    fn failed(&self) -> Vec<(&str, &str, &str)> {
        let mut failed: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
        for (bucket, path, result) in &self.objects {
            if let Err(e) = result {
                failed.entry(bucket.as_str()).or_default().push((path, e));
            }
        }
        failed
            .into_iter()
            .flat_map(|(b, list)| list.into_iter().map(move |(p, e)| (b, p, e)))
            .collect()
    }
}

/// One bucket's objects on both sides after the copy.
struct Comparison<'a> {
    source_n: usize,
    source_bytes: u64,
    target_n: usize,
    target_bytes: u64,
    /// Source objects missing on the target or of another size there.
    absent_or_different: Vec<&'a str>,
}

impl<'a> Comparison<'a> {
    fn new(plan: &'a BucketPlan, after: &[StoredObject]) -> Self {
        let by_path: BTreeMap<&str, &StoredObject> =
            after.iter().map(|o| (o.path.as_str(), o)).collect();
        Comparison {
            source_n: plan.source_objects.len(),
            source_bytes: bytes_of(&plan.source_objects),
            target_n: after.len(),
            target_bytes: bytes_of(after),
            absent_or_different: plan
                .source_objects
                .iter()
                .filter(|o| {
                    by_path
                        .get(o.path.as_str())
                        .is_none_or(|t| t.size != o.size)
                })
                .map(|o| o.path.as_str())
                .collect(),
        }
    }

    fn matches(&self) -> bool {
        self.source_n == self.target_n
            && self.source_bytes == self.target_bytes
            && self.absent_or_different.is_empty()
    }

    /// Why the bucket does not match: counts, the first objects missing,
    /// or the objects only the target holds.
    fn mismatch(&self) -> String {
        let missing = &self.absent_or_different;
        let extra = self
            .target_n
            .saturating_sub(self.source_n - missing.len().min(self.source_n));
        let mut why = format!(
            "source {} ({} bytes), target {} ({} bytes)",
            count(self.source_n, "object", "objects"),
            thousands(self.source_bytes as i64),
            count(self.target_n, "object", "objects"),
            thousands(self.target_bytes as i64),
        );
        if !missing.is_empty() {
            let first: Vec<&str> = missing.iter().take(5).copied().collect();
            why.push_str(&format!(
                "; missing or of another size on the target: {}{}",
                first.join(", "),
                if missing.len() > 5 {
                    format!(" and {} more", missing.len() - 5)
                } else {
                    String::new()
                }
            ));
        }
        if extra > 0 && missing.is_empty() {
            why.push_str(&format!(
                "; the target holds {} the source does not (cutover never deletes)",
                count(extra, "object", "objects")
            ));
        }
        why
    }
}

/// The report: buckets, each bucket compared, the objects' row, failures.
fn report(outcome: &StorageOutcome) -> PhaseReport {
    let mut report = PhaseReport::new("storage");
    let survey = &outcome.survey;
    report.checks.extend(excludes_check(survey));
    report
        .checks
        .extend(outcome.buckets.failures.iter().cloned());
    if outcome.buckets.failures.is_empty() {
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
    let (table, mismatches) = objects_table(outcome);
    let mismatched = !mismatches.is_empty();
    report.checks.extend(mismatches);
    let failed = outcome.failed();
    let copied_total: usize = outcome.copied().values().sum();
    let skipped_total: usize = survey.buckets.iter().map(|b| b.skipped).sum();
    report.check(objects_check(
        &failed,
        outcome.objects.len(),
        copied_total,
        skipped_total,
    ));
    if !mismatched && !survey.buckets.is_empty() {
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
    report.tables.push(buckets_table(&outcome.buckets));
    report.tables.extend(failures_table(&failed));
    report.conclude_from_checks();
    report.summary = summary(survey, copied_total, skipped_total, failed.len());
    report
}

/// Each bucket's objects and bytes on both sides, and a failing row for
/// each bucket that does not match.
fn objects_table(outcome: &StorageOutcome) -> (ReportTable, Vec<CheckItem>) {
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
    let copied = outcome.copied();
    let failed = outcome.failed();
    let mut mismatches = Vec::new();
    for (plan, after) in outcome.survey.buckets.iter().zip(&outcome.after) {
        let id = plan.bucket.id.as_str();
        let c = Comparison::new(plan, after);
        let fails = failed.iter().filter(|(b, _, _)| *b == id).count();
        table.push(cells![
            id,
            c.source_n,
            c.source_bytes,
            c.target_n,
            c.target_bytes,
            copied.get(id).copied().unwrap_or(0),
            plan.skipped,
            fails,
            Cell::pass_if(c.matches()),
        ]);
        if !c.matches() {
            mismatches.push(
                CheckItem::new(
                    &format!("storage-counts:{id}"),
                    &format!("Bucket {id}: objects and bytes match"),
                    Status::Fail,
                    c.mismatch(),
                )
                .with_hint(if fails > 0 {
                    "see the failed copies below; re-run `storage` (objects already copied are skipped)"
                } else {
                    "re-run `storage`; objects only the target has must be removed there by hand if they should not be kept"
                }),
            );
        }
    }
    (table, mismatches)
}

/// The objects' row: all copied, or how many failed and the first.
fn objects_check(
    failed: &[(&str, &str, &str)],
    total: usize,
    copied: usize,
    skipped: usize,
) -> CheckItem {
    let Some((bucket, path, error)) = failed.first() else {
        return CheckItem::new(
            "storage-objects",
            "Storage objects copied",
            Status::Pass,
            format!(
                "{} copied, {} already on the target",
                count(copied, "object", "objects"),
                thousands(skipped as i64)
            ),
        );
    };
    CheckItem::new(
        "storage-objects",
        "Storage objects copied",
        Status::Fail,
        format!(
            "{} of {} failed; first: {bucket}/{path}: {error}",
            thousands(failed.len() as i64),
            count(total, "object", "objects"),
        ),
    )
    .with_hint("re-run `storage`: objects already copied are skipped")
}

fn buckets_table(buckets: &BucketsOutcome) -> ReportTable {
    let mut table = ReportTable::new(
        "Storage buckets",
        &["Bucket", "Settings (source)", "On the target"],
    );
    for row in &buckets.rows {
        table.push(row.clone());
    }
    table
}

/// The first 50 failed copies; `None` when none failed.
fn failures_table(failed: &[(&str, &str, &str)]) -> Option<ReportTable> {
    if failed.is_empty() {
        return None;
    }
    let mut table = ReportTable::new("Storage copies that failed", &["Bucket", "Object", "Error"]);
    for (b, p, e) in failed.iter().take(50) {
        table.push([*b, *p, *e]);
    }
    if failed.len() > 50 {
        table = table.with_note(format!(
            "The first 50 of {}; the JSON report's checklist has the count.",
            thousands(failed.len() as i64)
        ));
    }
    Some(table)
}

fn summary(survey: &Survey, copied: usize, skipped: usize, failed: usize) -> String {
    let objects: usize = survey.buckets.iter().map(|b| b.source_objects.len()).sum();
    format!(
        "{} in {}: {} copied, {} already on the target, {} failed{}.",
        count(objects, "object", "objects"),
        count(survey.buckets.len(), "bucket", "buckets"),
        thousands(copied as i64),
        thousands(skipped as i64),
        thousands(failed as i64),
        if survey.excluded.is_empty() {
            String::new()
        } else {
            format!("; never copied (excluded): {}", survey.excluded.join(", "))
        }
    )
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

    fn at(path: &str, size: u64) -> StoredObject {
        StoredObject {
            path: path.into(),
            ..object(size, path)
        }
    }

    fn bucket(id: &str) -> Bucket {
        Bucket {
            id: id.into(),
            name: id.into(),
            public: false,
            file_size_limit: None,
            allowed_mime_types: None,
        }
    }

    fn section(buckets: &[&str], exclude: &[&str]) -> StorageSection {
        StorageSection {
            buckets: buckets.iter().map(|b| b.to_string()).collect(),
            exclude: exclude.iter().map(|b| b.to_string()).collect(),
            parallel: 4,
        }
    }

    fn plan(id: &str, source: Vec<StoredObject>) -> BucketPlan {
        BucketPlan {
            bucket: bucket(id),
            target: None,
            to_copy: source.clone(),
            source_objects: source,
            target_objects: Vec::new(),
            skipped: 0,
        }
    }

    #[test]
    fn buckets_are_copied_when_listed_and_not_excluded() {
        let all = section(&["*"], &[" logs "]);
        assert_eq!(selection(&all, "avatars"), Selection::Copied);
        assert_eq!(selection(&all, "logs"), Selection::Excluded);
        let some = section(&["avatars"], &[]);
        assert_eq!(selection(&some, "docs"), Selection::NotListed);
    }

    #[test]
    fn named_buckets_the_source_lacks_are_refused() {
        let known = BTreeSet::from(["avatars"]);
        assert!(refuse_unknown_buckets(&section(&["*"], &[]), &known).is_ok());
        let refused =
            refuse_unknown_buckets(&section(&["avatars", "docs"], &[]), &known).unwrap_err();
        assert_eq!(
            refused.message,
            "[storage] buckets names buckets the source does not have: docs; the source has avatars"
        );
    }

    #[test]
    fn objects_already_on_the_target_are_skipped() {
        let source = [at("a", 1), at("b", 2), at("c", 3)];
        let target = [at("a", 1), at("b", 5)];
        let (to_copy, skipped) = objects_to_copy(&source, &target, &BTreeMap::new());
        let paths: Vec<&str> = to_copy.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(paths, ["b", "c"]);
        assert_eq!(skipped, 1);
    }

    #[test]
    fn a_bucket_compares_counts_bytes_and_each_object() {
        let p = plan("docs", vec![at("a", 1), at("b", 2)]);
        assert!(Comparison::new(&p, &[at("a", 1), at("b", 2)]).matches());
        let short = Comparison::new(&p, &[at("a", 1)]);
        assert!(!short.matches());
        assert_eq!(
            short.mismatch(),
            "source 2 objects (3 bytes), target 1 object (1 bytes); missing or of another size on the target: b"
        );
        let extra = Comparison::new(&p, &[at("a", 1), at("b", 2), at("z", 9)]);
        assert!(
            extra.mismatch().ends_with(
                "; the target holds 1 object the source does not (cutover never deletes)"
            )
        );
    }

    #[test]
    fn failed_copies_fail_the_objects_row_and_are_listed() {
        let outcome = StorageOutcome {
            survey: Survey {
                buckets: vec![
                    plan("b", vec![at("x", 1)]),
                    plan("a", vec![at("y", 1), at("z", 2)]),
                ],
                excluded: vec!["logs".into()],
                unknown_excludes: Vec::new(),
            },
            buckets: BucketsOutcome::default(),
            objects: vec![
                ("b".into(), "x".into(), Err("boom".into())),
                ("a".into(), "z".into(), Ok(2)),
                ("a".into(), "y".into(), Err("refused".into())),
            ],
            after: vec![Vec::new(), vec![at("z", 2)]],
        };
        assert_eq!(
            outcome.failed(),
            [("a", "y", "refused"), ("b", "x", "boom")]
        );
        assert_eq!(outcome.copied(), BTreeMap::from([("a", 1)]));
        assert_eq!(
            copied_etags("a", &outcome.objects, &outcome.after[1]),
            BTreeMap::from([("z".to_string(), "z".to_string())])
        );
        let report = report(&outcome);
        let rows: Vec<(&str, Status)> = report
            .checks
            .iter()
            .map(|c| (c.id.as_str(), c.status))
            .collect();
        assert_eq!(
            rows,
            [
                ("storage-buckets", Status::Pass),
                ("storage-counts:b", Status::Fail),
                ("storage-counts:a", Status::Fail),
                ("storage-objects", Status::Fail),
            ]
        );
        assert_eq!(
            report.checks[3].evidence,
            "2 of 3 objects failed; first: a/y: refused"
        );
        assert_eq!(report.tables.len(), 3);
        assert_eq!(
            report.summary,
            "3 objects in 2 buckets: 1 copied, 0 already on the target, 2 failed; never copied (excluded): logs."
        );
    }

    #[test]
    fn only_the_first_fifty_failures_are_listed() {
        let failed: Vec<(&str, &str, &str)> = (0..51).map(|_| ("a", "p", "e")).collect();
        let table = failures_table(&failed).unwrap();
        assert_eq!(table.rows.len(), 50);
        assert!(failures_table(&[]).is_none());
    }
}
