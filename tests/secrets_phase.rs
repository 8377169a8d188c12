//! End to end: `secrets` in a GitHub-like run against a fake Management API,
//! with the ledger in a real target database. Values must never appear in
//! the log, summary, JSON report, outputs or ledger.

use crate::common;
use crate::fake_supabase;

use common::*;
use fake_supabase::*;

const OPENAI: &str = "sk-proj-TargetOpenAI-6a1f90";
const GEMINI: &str = "AIzaTargetGemini-77e0c4d1";
const INGEST: &str = "ingest-TargetKey-3b9d2e81";
const SHARED: &str = "sk-proj-SourceAndTarget-SAME-1234";

const MANIFEST: &str = r#"
[project]
name = "sacco"

[secrets.required]
OPENAI_API_KEY = "PROD_OPENAI_API_KEY"
GEMINI_API_KEY = "PROD_GEMINI_API_KEY"
INGEST_API_KEY = "PROD_INGEST_API_KEY"
SUPABASE_SERVICE_ROLE_KEY = "PROD_SERVICE_ROLE_KEY"
"#;

fn actions_env(
    files: &ActionsFiles,
    api: &FakeApi,
    target_db: &TestDb,
    values: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    std::fs::write(files.path("cutover.toml"), MANIFEST).unwrap();
    ActionsRun::new(files, "secrets")
        .manifest(files.path("cutover.toml"))
        .inputs([
            (
                "report-file",
                files.path("report.json").display().to_string(),
            ),
            (
                "target-db-url",
                target_db.url_with_password("Db-Pa55-word-9x"),
            ),
            ("target-project-ref", TARGET.to_string()),
            ("source-project-ref", SOURCE.to_string()),
            ("supabase-access-token", TOKEN.to_string()),
            ("supabase-api-url", api.url()),
        ])
        .var("CUTOVER_API_RETRY_BASE_MS", "2")
        .vars(values.iter().chain(extra).copied())
        .env()
}

async fn assert_nowhere(
    values: &[&str],
    out: &std::process::Output,
    files: &ActionsFiles,
    db: &TestDb,
) {
    let ledger = ledger_dump(db, "cutover").await;
    assert!(
        ledger.contains("secrets"),
        "the phase is in the ledger: {ledger}"
    );
    for v in values {
        assert_no_leak(v, out, files, &files.path("report.json"));
        assert!(!ledger.contains(v), "{v} leaked into the ledger");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_equal_to_the_source_blocks_and_nothing_is_set() {
    let api = FakeApi::start().await;
    api.with(|s| {
        let src = s.secrets.entry(SOURCE.into()).or_default();
        src.insert("OPENAI_API_KEY".into(), SHARED.into());
        src.insert("GEMINI_API_KEY".into(), "AIzaSourceOnly-000".into());
    });
    let db = TestDb::new("secleak").await;
    let files = ActionsFiles::new();
    let values = [
        ("PROD_OPENAI_API_KEY", SHARED),
        ("PROD_GEMINI_API_KEY", GEMINI),
        ("PROD_INGEST_API_KEY", INGEST),
    ];
    let out = run_cutover(
        files.dir.path(),
        &[],
        &actions_env(&files, &api, &db, &values, &[]),
    );
    let log = text(&out);
    assert_eq!(out.status.code(), Some(3), "blocked: {log}");
    assert_eq!(api.count("POST", "/secrets"), 0, "nothing written");
    assert!(api.with(|s| !s.secrets.contains_key(TARGET)));
    let summary = files.read("summary.md");
    assert!(summary.contains("No source values in target"), "{summary}");
    assert!(
        summary.contains("equal to the source project's value: OPENAI_API_KEY"),
        "{summary}"
    );
    assert!(
        !summary.contains("GEMINI_API_KEY;"),
        "only the leaking one is named"
    );
    assert_eq!(files.outputs()["status"], "blocked");
    assert_nowhere(
        &[SHARED, GEMINI, INGEST, TOKEN, "Db-Pa55-word-9x"],
        &out,
        &files,
        &db,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_every_secret_in_one_call_and_reports_what_changed() {
    let api = FakeApi::start().await;
    api.with(|s| {
        let src = s.secrets.entry(SOURCE.into()).or_default();
        src.insert("OPENAI_API_KEY".into(), "sk-proj-Source-Value-1".into());
        let tgt = s.secrets.entry(TARGET.into()).or_default();
        tgt.insert("INGEST_API_KEY".into(), INGEST.into());
        tgt.insert("GEMINI_API_KEY".into(), "AIzaOldTargetValue-1".into());
    });
    let db = TestDb::new("secset").await;
    let files = ActionsFiles::new();
    let values = [
        ("PROD_OPENAI_API_KEY", OPENAI),
        ("PROD_GEMINI_API_KEY", GEMINI),
        ("PROD_INGEST_API_KEY", INGEST),
        (
            "PROD_SERVICE_ROLE_KEY",
            "eyJ-service-role-should-not-be-sent",
        ),
    ];
    let out = run_cutover(
        files.dir.path(),
        &[],
        &actions_env(&files, &api, &db, &values, &[]),
    );
    let log = text(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let posts = api.with(|s| s.secret_posts.clone());
    assert_eq!(posts.len(), 1, "one bulk call");
    let names: Vec<&str> = posts[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["GEMINI_API_KEY", "INGEST_API_KEY", "OPENAI_API_KEY"]
    );
    let target = api.with(|s| s.secrets[TARGET].clone());
    assert_eq!(target["OPENAI_API_KEY"], OPENAI);
    assert_eq!(target["GEMINI_API_KEY"], GEMINI);
    let summary = files.read("summary.md");
    let row = |name: &str| {
        summary
            .lines()
            .find(|l| l.starts_with(&format!("| {name} |")))
            .unwrap_or_else(|| panic!("no row for {name}: {summary}"))
            .to_string()
    };
    assert!(
        row("OPENAI_API_KEY").contains("| yes | new | yes |"),
        "{summary}"
    );
    assert!(row("GEMINI_API_KEY").contains("| changed |"), "{summary}");
    assert!(row("INGEST_API_KEY").contains("| unchanged |"), "{summary}");
    assert!(
        row("SUPABASE_SERVICE_ROLE_KEY").contains("provided by Supabase"),
        "{summary}"
    );
    assert_nowhere(
        &[
            OPENAI,
            GEMINI,
            INGEST,
            "eyJ-service-role-should-not-be-sent",
            TOKEN,
        ],
        &out,
        &files,
        &db,
    )
    .await;

    // Re-running is safe: same values, all unchanged.
    let again = run_cutover(
        files.dir.path(),
        &[],
        &actions_env(&files, &api, &db, &values, &[]),
    );
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(files.read("summary.md").contains("(0 new or changed)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_values_fail_listed_by_name() {
    let api = FakeApi::start().await;
    let db = TestDb::new("secmiss").await;
    let files = ActionsFiles::new();
    let values = [
        ("PROD_OPENAI_API_KEY", OPENAI),
        ("PROD_GEMINI_API_KEY", "  "),
    ];
    let out = run_cutover(
        files.dir.path(),
        &[],
        &actions_env(&files, &api, &db, &values, &[]),
    );
    let log = text(&out);
    // A missing input fails (1) in every phase, as preflight does; 3 is for guards.
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains(
            "GEMINI_API_KEY (from $PROD_GEMINI_API_KEY), INGEST_API_KEY (from $PROD_INGEST_API_KEY)"
        ),
        "{log}"
    );
    assert_eq!(
        api.with(|s| s.log.len()),
        0,
        "no API call before values are complete"
    );
    assert_no_leak(OPENAI, &out, &files, &files.path("report.json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_compares_but_sets_nothing() {
    let api = FakeApi::start().await;
    let db = TestDb::new("secdry").await;
    let files = ActionsFiles::new();
    let values = [
        ("PROD_OPENAI_API_KEY", OPENAI),
        ("PROD_GEMINI_API_KEY", GEMINI),
        ("PROD_INGEST_API_KEY", INGEST),
    ];
    let out = run_cutover(
        files.dir.path(),
        &[],
        &actions_env(&files, &api, &db, &values, &[("INPUT_DRY-RUN", "true")]),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(api.count("POST", "/secrets"), 0);
    assert!(files.read("summary.md").contains("would set 3 secrets"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_ref_is_required_for_the_leak_guard() {
    let api = FakeApi::start().await;
    let db = TestDb::new("secsrc").await;
    let files = ActionsFiles::new();
    let mut env = actions_env(&files, &api, &db, &[("PROD_OPENAI_API_KEY", OPENAI)], &[]);
    env.retain(|(k, _)| k != "INPUT_SOURCE-PROJECT-REF");
    let out = run_cutover(files.dir.path(), &[], &env);
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains("source-project-ref"), "{log}");
}
