//! End to end: the built binary copies Storage buckets and objects between
//! two fake Storage APIs (`fake_storage`), with the ledger in a real target
//! database: 2,000 objects in 3 buckets (one folder of 1,500, past the
//! 1,000-entry page), content types and cache control kept, a re-run copies
//! nothing, a changed object is copied again, bucket settings, include and
//! exclude, a wrong key, retries.

use crate::common;
use crate::fake_storage;

use common::*;
use fake_storage::*;

const SOURCE_KEY: &str = "eyJhbGciOiJIUzI1NiJ9.source-service-role.Sx81kq";
const TARGET_KEY: &str = "eyJhbGciOiJIUzI1NiJ9.target-service-role.Tq72mz";

/// A workspace with a manifest holding `storage` as its `[storage]` section.
fn workspace(storage: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("supabase/migrations")).unwrap();
    std::fs::write(
        dir.path().join("cutover.toml"),
        format!("[project]\nname = \"storage-test\"\n\n[storage]\n{storage}\n"),
    )
    .unwrap();
    dir
}

fn env_for(
    dir: &std::path::Path,
    source: &FakeStorage,
    target: &FakeStorage,
    target_db: Option<&TestDb>,
    target_key: &str,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        (
            "CUTOVER_MANIFEST",
            dir.join("cutover.toml").display().to_string(),
        ),
        (
            "CUTOVER_REPORT_FILE",
            dir.join("report.json").display().to_string(),
        ),
        (
            "CUTOVER_SUMMARY_FILE",
            dir.join("summary.md").display().to_string(),
        ),
        ("CUTOVER_SOURCE_STORAGE_URL", source.url()),
        ("CUTOVER_TARGET_STORAGE_URL", target.url()),
        ("CUTOVER_SOURCE_SERVICE_ROLE_KEY", SOURCE_KEY.to_string()),
        ("CUTOVER_TARGET_SERVICE_ROLE_KEY", target_key.to_string()),
        ("CUTOVER_API_RETRY_BASE_MS", "2".to_string()),
        ("CUTOVER_API_MAX_DELAY_MS", "50".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(db) = target_db {
        env.push((
            "CUTOVER_TARGET_DB_URL".into(),
            db.url_with_password(LOCAL_TARGET_PW),
        ));
    }
    env
}

/// The summary's row whose first cell is `first`.
fn table_row(summary: &str, first: &str) -> String {
    summary
        .lines()
        .find(|l| l.starts_with(&format!("| {first} |")))
        .unwrap_or_else(|| panic!("no row {first} in\n{summary}"))
        .to_string()
}

fn cells(row: &str) -> Vec<String> {
    row.trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_string())
        .collect()
}

/// The source of the main case: 2,000 objects in 3 buckets.
async fn source_with_2000_objects() -> FakeStorage {
    let source = FakeStorage::start(SOURCE_KEY).await;
    source.bucket(
        "avatars",
        true,
        Some(1_048_576),
        Some(&["image/png", "image/jpeg"]),
    );
    source.bucket("invoices", false, None, None);
    source.bucket(
        "docs",
        false,
        Some(5_000_000),
        Some(&["application/pdf", "text/plain"]),
    );
    for i in 0..300 {
        source.put(
            "avatars",
            &format!("user-{i:03}.png"),
            format!("png bytes of avatar {i}").as_bytes(),
            "image/png",
            "max-age=86400",
        );
    }
    // One folder of 1,500: two list pages and a half.
    for i in 0..1500 {
        source.put(
            "invoices",
            &format!("2024/INV-{i:04}.pdf"),
            format!("%PDF invoice number {i}").as_bytes(),
            "application/pdf",
            "max-age=3600",
        );
    }
    for i in 0..199 {
        source.put(
            "docs",
            &format!("team/{}/note-{i}.txt", i % 7),
            format!("note {i}").as_bytes(),
            "text/plain",
            "no-cache",
        );
    }
    source.put(
        "docs",
        "read me first.pdf",
        b"%PDF a name with spaces",
        "application/pdf",
        "max-age=60",
    );
    source
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_objects_in_three_buckets_are_copied_then_a_rerun_copies_nothing_and_a_change_is_recopied()
 {
    let source = source_with_2000_objects().await;
    let target = FakeStorage::start(TARGET_KEY).await;
    // The target already has `docs`, public and without limits: updated.
    target.bucket("docs", true, None, None);
    let target_db = TestDb::new("storage_main_t").await;
    let work = workspace("buckets = [\"*\"]\nparallel = 6");
    let env = env_for(work.path(), &source, &target, Some(&target_db), TARGET_KEY);
    // A rate limit on the first listing and a server error on an upload:
    // both retried.
    source.fault("POST", "/object/list/invoices", 429, Some("0"));
    target.fault("POST", "/object/invoices/2024/INV-0007.pdf", 503, None);

    let secrets = [SOURCE_KEY, TARGET_KEY, LOCAL_TARGET_PW];
    // The summary file is appended to: each run's own.
    let _ = std::fs::remove_file(work.path().join("summary.md"));
    let out = run_and_check_leaks(work.path(), &["storage"], &env, &secrets, &[&target_db]);
    let summary = std::fs::read_to_string(work.path().join("summary.md")).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}\n{summary}", text(&out));

    // Every object, with its bytes, content type and cache control.
    for (bucket, objects) in source.with(|s| {
        s.buckets
            .iter()
            .map(|(id, b)| (id.clone(), b.objects.clone()))
            .collect::<Vec<_>>()
    }) {
        for (path, obj) in objects {
            let copy = target
                .get(&bucket, &path)
                .unwrap_or_else(|| panic!("{bucket}/{path} not copied"));
            assert_eq!(copy.content, obj.content, "{bucket}/{path}");
            assert_eq!(copy.content_type, obj.content_type, "{bucket}/{path}");
            assert_eq!(copy.cache_control, obj.cache_control, "{bucket}/{path}");
        }
    }
    assert_eq!(target.with(|s| s.uploads), 2000);
    // Paged: never more than 1,000 entries a page, and the folder of 1,500
    // took two pages.
    assert!(source.with(|s| s.largest_page) <= MAX_PAGE);
    assert!(
        source.count("POST /storage/v1/object/list/invoices") >= 3,
        "root + 2 pages + the retried one"
    );
    // Bucket settings as on the source.
    target.with(|s| {
        let avatars = &s.buckets["avatars"];
        assert!(avatars.public);
        assert_eq!(avatars.file_size_limit, Some(1_048_576));
        assert_eq!(
            avatars.allowed_mime_types.as_deref(),
            Some(&["image/png".to_string(), "image/jpeg".to_string()][..])
        );
        let docs = &s.buckets["docs"];
        assert!(!docs.public, "updated to the source's setting");
        assert_eq!(docs.file_size_limit, Some(5_000_000));
        assert!(!s.buckets["invoices"].public);
    });
    // The counts and bytes table.
    let bytes = |bucket: &str| -> u64 {
        source.with(|s| {
            s.buckets[bucket]
                .objects
                .values()
                .map(|o| o.content.len() as u64)
                .sum()
        })
    };
    for (bucket, n) in [("avatars", 300), ("invoices", 1500), ("docs", 200)] {
        let row = cells(&table_row(&summary, bucket));
        let b = bytes(bucket);
        let thousands = |n: u64| {
            let s = n.to_string();
            let mut out = String::new();
            for (i, c) in s.chars().enumerate() {
                if i > 0 && (s.len() - i) % 3 == 0 {
                    out.push(',');
                }
                out.push(c);
            }
            out
        };
        assert_eq!(
            row[1..9],
            [
                thousands(n),
                thousands(b),
                thousands(n),
                thousands(b),
                thousands(n),
                "0".to_string(),
                "0".to_string(),
                "✅".to_string()
            ],
            "{summary}"
        );
    }
    assert_eq!(
        target_db
            .scalar("select count(*) || ':' || count(target_etag) from cutover.storage_objects")
            .await
            .as_deref(),
        Some("2000:2000")
    );

    // A re-run copies nothing.
    // The summary file is appended to: each run's own.
    let _ = std::fs::remove_file(work.path().join("summary.md"));
    let out = run_and_check_leaks(work.path(), &["storage"], &env, &secrets, &[&target_db]);
    let summary = std::fs::read_to_string(work.path().join("summary.md")).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}\n{summary}", text(&out));
    assert_eq!(target.with(|s| s.uploads), 2000, "nothing copied again");
    let row = cells(&table_row(&summary, "invoices"));
    assert_eq!(row[5..8], ["0", "1,500", "0"], "{summary}");

    // A changed object (same size, other bytes) is copied again, alone.
    source.put(
        "invoices",
        "2024/INV-0042.pdf",
        b"%PDF invoice number 4X",
        "application/pdf",
        "max-age=3600",
    );
    // The summary file is appended to: each run's own.
    let _ = std::fs::remove_file(work.path().join("summary.md"));
    let out = run_and_check_leaks(work.path(), &["storage"], &env, &secrets, &[&target_db]);
    let summary = std::fs::read_to_string(work.path().join("summary.md")).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}\n{summary}", text(&out));
    assert_eq!(target.with(|s| s.uploads), 2001);
    assert_eq!(
        target.get("invoices", "2024/INV-0042.pdf").unwrap().content,
        b"%PDF invoice number 4X"
    );
    let row = cells(&table_row(&summary, "invoices"));
    assert_eq!(row[5..8], ["1", "1,499", "0"], "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn include_and_exclude_choose_the_buckets() {
    let source = FakeStorage::start(SOURCE_KEY).await;
    for id in ["alpha", "beta", "gamma"] {
        source.bucket(id, false, None, None);
        source.put(id, "x/one.json", b"{}", "application/json", "max-age=3600");
    }
    let target = FakeStorage::start(TARGET_KEY).await;
    let work = workspace("buckets = [\"alpha\", \"beta\"]\nexclude = [\"beta\", \"delta\"]");
    let env = env_for(work.path(), &source, &target, None, TARGET_KEY);
    let out = run_cutover(work.path(), &["storage"], &env);
    let summary = std::fs::read_to_string(work.path().join("summary.md")).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}\n{summary}", text(&out));
    let ids: Vec<String> = target.with(|s| s.buckets.keys().cloned().collect());
    assert_eq!(ids, ["alpha"]);
    assert!(
        summary.contains("never copied (excluded): beta"),
        "{summary}"
    );
    assert!(
        summary.contains("no such bucket on the source: delta"),
        "{summary}"
    );

    // A listed bucket the source does not have: refused, named.
    let work = workspace("buckets = [\"alpha\", \"avatarz\"]");
    let env = env_for(work.path(), &source, &target, None, TARGET_KEY);
    let out = run_cutover(work.path(), &["storage"], &env);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("avatarz"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_names_the_input_and_never_shows_the_key() {
    let source = FakeStorage::start(SOURCE_KEY).await;
    source.bucket("files", false, None, None);
    source.put("files", "a.txt", b"a", "text/plain", "no-cache");
    let target = FakeStorage::start(TARGET_KEY).await;
    let wrong = "eyJhbGciOiJIUzI1NiJ9.the-anon-key.Wr0ngKey99";
    let work = workspace("");
    let env = env_for(work.path(), &source, &target, None, wrong);
    let out = run_and_check_leaks(work.path(), &["storage"], &env, &[SOURCE_KEY, wrong], &[]);
    let summary = std::fs::read_to_string(work.path().join("summary.md")).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}\n{summary}", text(&out));
    assert!(summary.contains("401"), "{summary}");
    assert!(
        summary.contains("CUTOVER_TARGET_SERVICE_ROLE_KEY"),
        "the hint names the input: {summary}"
    );
    assert_eq!(target.with(|s| s.uploads), 0);

    // A key the project knows but that may not write (403 in an HTTP 400).
    target.with(|s| s.forbidden_key = Some(wrong.to_string()));
    let out = run_and_check_leaks(work.path(), &["storage"], &env, &[SOURCE_KEY, wrong], &[]);
    let summary = std::fs::read_to_string(work.path().join("summary.md")).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}\n{summary}", text(&out));
    assert!(summary.contains("statusCode 403"), "{summary}");
    assert!(summary.contains("service_role"), "{summary}");

    // In Actions, both keys are masked before anything else is printed.
    let files = ActionsFiles::new();
    let mut env: Vec<(String, String)> = vec![
        ("GITHUB_ACTIONS".into(), "true".into()),
        ("INPUT_PHASE".into(), "storage".into()),
        (
            "INPUT_MANIFEST".into(),
            work.path().join("cutover.toml").display().to_string(),
        ),
        ("INPUT_SOURCE-STORAGE-URL".into(), source.url()),
        ("INPUT_TARGET-STORAGE-URL".into(), target.url()),
        ("INPUT_SOURCE-SERVICE-ROLE-KEY".into(), SOURCE_KEY.into()),
        ("INPUT_TARGET-SERVICE-ROLE-KEY".into(), wrong.into()),
        (
            "GITHUB_STEP_SUMMARY".into(),
            files.path("summary.md").display().to_string(),
        ),
        (
            "GITHUB_OUTPUT".into(),
            files.path("output.txt").display().to_string(),
        ),
        ("CUTOVER_API_RETRY_BASE_MS".into(), "2".into()),
    ];
    env.push((
        "INPUT_REPORT-FILE".into(),
        work.path().join("r.json").display().to_string(),
    ));
    let out = run_cutover(work.path(), &[], &env);
    let log = text(&out);
    assert!(log.contains(&format!("::add-mask::{SOURCE_KEY}")), "{log}");
    assert!(log.contains(&format!("::add-mask::{wrong}")), "{log}");
    assert!(
        files
            .read("summary.md")
            .contains("input `target-service-role-key`")
    );
    assert_no_leak(wrong, &out, &files, &work.path().join("r.json"));
    assert_no_leak(SOURCE_KEY, &out, &files, &work.path().join("r.json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_server_errors_are_retried() {
    let source = FakeStorage::start(SOURCE_KEY).await;
    source.bucket("media", true, None, None);
    for i in 0..5 {
        source.put(
            "media",
            &format!("clip-{i}.mp4"),
            &vec![i as u8; 10_000],
            "video/mp4",
            "max-age=3600",
        );
    }
    let target = FakeStorage::start(TARGET_KEY).await;
    source.fault("GET", "/bucket", 429, Some("0"));
    source.fault("GET", "/object/media/clip-1.mp4", 502, None);
    target.fault("POST", "/bucket", 500, None);
    target.fault("POST", "/object/media/clip-3.mp4", 429, Some("0"));
    let work = workspace("parallel = 2");
    let env = env_for(work.path(), &source, &target, None, TARGET_KEY);
    let out = run_cutover(work.path(), &["storage"], &env);
    let summary = std::fs::read_to_string(work.path().join("summary.md")).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}\n{summary}", text(&out));
    assert_eq!(target.with(|s| s.buckets["media"].objects.len()), 5);
    assert_eq!(source.count("GET /storage/v1/bucket"), 2, "429 retried");
    assert_eq!(
        source.count("GET /storage/v1/object/media/clip-1.mp4"),
        2,
        "502 retried"
    );
    assert_eq!(
        target.count("POST /storage/v1/object/media/clip-3.mp4"),
        2,
        "429 retried"
    );

    // Faults that outlast every retry fail the phase, naming the endpoint.
    for _ in 0..6 {
        target.fault("GET", "/bucket", 503, None);
    }
    let out = run_cutover(work.path(), &["storage"], &env);
    let summary = std::fs::read_to_string(work.path().join("summary.md")).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}\n{summary}", text(&out));
    assert!(summary.contains("GET /bucket"), "{summary}");
    assert!(summary.contains("after 6 attempt(s)"), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_with_storage_and_no_keys_fails_before_anything_is_written() {
    let target_db = TestDb::new("storage_ready_t").await;
    let work = workspace("");
    let env: Vec<(String, String)> = vec![
        (
            "CUTOVER_MANIFEST".into(),
            work.path().join("cutover.toml").display().to_string(),
        ),
        (
            "CUTOVER_SUMMARY_FILE".into(),
            work.path().join("summary.md").display().to_string(),
        ),
        (
            "CUTOVER_REPORT_FILE".into(),
            work.path().join("report.json").display().to_string(),
        ),
        ("CUTOVER_TARGET_DB_URL".into(), target_db.url()),
    ];
    let out = run_cutover(work.path(), &["schema,storage"], &env);
    let summary = std::fs::read_to_string(work.path().join("summary.md")).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}\n{summary}", text(&out));
    let row = summary
        .lines()
        .find(|l| l.contains("Storage API inputs for `storage`"))
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(
        row.contains("❌") && row.contains("source-service-role-key"),
        "{row}"
    );
    assert_eq!(
        target_db
            .scalar("select count(*)::text from pg_namespace where nspname = 'cutover'")
            .await
            .as_deref(),
        Some("0"),
        "nothing written, not even the ledger"
    );

    // `plan` says what `storage` would copy.
    let source = FakeStorage::start(SOURCE_KEY).await;
    source.bucket("files", false, None, None);
    source.put("files", "a/b.txt", b"abc", "text/plain", "no-cache");
    source.put("files", "c.txt", b"de", "text/plain", "no-cache");
    let target = FakeStorage::start(TARGET_KEY).await;
    let env = env_for(work.path(), &source, &target, None, TARGET_KEY);
    let _ = std::fs::remove_file(work.path().join("summary.md"));
    let out = run_cutover(work.path(), &["plan"], &env);
    let summary = std::fs::read_to_string(work.path().join("summary.md")).unwrap();
    let row = table_row(&summary, "storage");
    assert!(
        row.contains("copy 2 of 2 objects in 1 bucket (5 bytes), creating 1 bucket"),
        "{row}\n{}",
        text(&out)
    );
    assert_eq!(target.with(|s| s.buckets.len()), 0, "plan writes nothing");
}
