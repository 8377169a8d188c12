//! Security lints as release checks: the gate of `cutover` blocks on an
//! ERROR-level finding the manifest does not accept, against real databases
//! and the fake GitHub API; and the SQL's findings on hand-made objects and
//! on the two examples.

use std::path::Path;

use crate::common;
use crate::fake_github;

use common::*;
use cutover::manifest::Manifest;
use cutover::pg::lints::{LintFinding, LintLevel};
use cutover::pg::{Database, Side};
use cutover::redact::Redactor;
use fake_github::*;
use serde_json::json;

const GH_TOKEN: &str = "ghs_LintsTokenValue0123456789";
const LINT_TITLE: &str = "No unaccepted ERROR-level security lints on the target";

const CREATE_NOTES: &str = "create table public.notes (id bigint primary key, body text);
alter table public.notes enable row level security;
";

/// A source with `public.notes` under RLS; a target where `schema` applied
/// the migration creating it and then one that disables its RLS.
async fn disabled_rls_pair(manifest_extra: &str) -> (Pair, tempfile::TempDir) {
    let (source, target) = tokio::join!(TestDb::new("lintsrc"), TestDb::new("linttgt"));
    source.exec(CREATE_NOTES).await;
    let work = tempfile::tempdir().unwrap();
    let migrations = work.path().join("supabase/migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    std::fs::write(migrations.join("20250101000000_notes.sql"), CREATE_NOTES).unwrap();
    std::fs::write(
        migrations.join("20250102000000_open_notes.sql"),
        "alter table public.notes disable row level security;\n",
    )
    .unwrap();
    std::fs::write(
        work.path().join("cutover.toml"),
        format!("[project]\nname = \"lints\"\n\n[gate]\nenvironment = \"production\"\n\n{manifest_extra}"),
    )
    .unwrap();
    let pair = Pair { source, target };
    let out = run_local(
        work.path(),
        "schema",
        &work.path().join("cutover.toml"),
        &pair,
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "schema: {}", text(&out));
    (pair, work)
}

/// Runs `cutover` as an approved Actions run; returns the exit code and summary.
async fn cutover_run(pair: &Pair, work: &Path) -> (Option<i32>, String, std::process::Output) {
    let gh = github(
        environment(reviewers()),
        json!([approval("approved", "octocat", "ship it")]),
        "release-manager",
    )
    .await;
    let files = ActionsFiles::new();
    let out = ActionsRun::new(&files, "cutover")
        .var("GITHUB_API_URL", gh.uri())
        .manifest(work.join("cutover.toml"))
        .databases(pair.source.url(), pair.target.url())
        .input("github-token", GH_TOKEN)
        .run(work);
    let summary = files.read("summary.md");
    (out.status.code(), summary, out)
}

#[tokio::test]
async fn a_migration_that_disables_rls_blocks_cutover_naming_lint_and_object() {
    let (pair, work) = disabled_rls_pair("").await;
    let (code, summary, out) = cutover_run(&pair, work.path()).await;
    assert_eq!(code, Some(3), "{}\n{summary}", text(&out));
    let r = row(&summary, LINT_TITLE);
    assert!(
        r.starts_with("| ⛔") && r.contains("new: rls_disabled_in_public public.notes"),
        "{r}"
    );
    // The findings table shows it, marked new (the source has RLS on).
    let t = summary
        .lines()
        .find(|l| l.contains("rls_disabled_in_public") && l.contains("| ERROR"))
        .unwrap_or_else(|| panic!("no lints table row in:\n{summary}"));
    assert!(t.contains("public.notes") && t.contains("new"), "{t}");
}

#[tokio::test]
async fn an_accepted_finding_passes_the_gate_row_and_shows_its_reason() {
    let (pair, work) = disabled_rls_pair(
        "[[lints.accept]]\nlint = \"rls_disabled_in_public\"\nobject = \"public.notes\"\nreason = \"public bulletin board, no user data\"\n\n[[lints.accept]]\nlint = \"security_definer_view\"\nobject = \"public.gone\"\nreason = \"dropped last week\"\n",
    )
    .await;
    let (code, summary, out) = cutover_run(&pair, work.path()).await;
    // Still blocked: no validate was recorded. The lint row itself passes.
    assert_eq!(code, Some(3), "{}\n{summary}", text(&out));
    let r = row(&summary, LINT_TITLE);
    assert!(
        r.contains("✅") && r.contains("public bulletin board, no user data"),
        "{r}"
    );
    let unused = row(&summary, "Every [[lints.accept]] names a finding");
    assert!(
        unused.contains("⚠️") && unused.contains("security_definer_view public.gone"),
        "{unused}"
    );
}

#[tokio::test]
async fn an_acceptance_without_reason_is_a_manifest_error() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("cutover.toml"),
        "[project]\nname = \"lints\"\n\n[[lints.accept]]\nlint = \"rls_disabled_in_public\"\nobject = \"public.notes\"\n",
    )
    .unwrap();
    let out = run_cutover(
        work.path(),
        &[
            "plan",
            "--manifest",
            &work.path().join("cutover.toml").display().to_string(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("[[lints.accept]] reason"),
        "{}",
        text(&out)
    );
}

async fn lint(db: &TestDb) -> Vec<LintFinding> {
    Database::connect(&db.url(), Side::Target, true, 1, &Redactor::new())
        .await
        .unwrap()
        .security_lints(&["public".to_string()])
        .await
        .unwrap()
}

#[tokio::test]
async fn each_lint_finds_its_problem_and_not_the_fixed_form() {
    let db = TestDb::new("lintsql").await;
    db.exec(
        "create table public.open_t (id int primary key);
         create table public.closed_t (id int primary key);
         alter table public.closed_t enable row level security;
         create policy anyone on public.closed_t for all to anon using (true) with check (true);
         create policy own on public.closed_t for update to anon using (id = 1);
         create policy read on public.closed_t for select to anon using (true);
         create table public.no_pk (v text);
         alter table public.no_pk enable row level security;
         create function public.definer() returns int language sql security definer as 'select 1';
         create function public.fixed() returns int language sql security definer
           set search_path = '' as 'select 1';
         create view public.owner_view as select id from public.closed_t;
         create view public.invoker_view with (security_invoker = true) as select id from public.closed_t;
         create view public.emails with (security_invoker = true) as select id, email from auth.users;
         create extension if not exists pg_trgm with schema public;
         create table extensions.hidden (v text);",
    )
    .await;
    let found: Vec<(&str, LintLevel, String)> = lint(&db)
        .await
        .into_iter()
        .map(|f| (f.lint, f.level, f.object))
        .collect();
    let has = |lint: &str, object: &str| found.iter().any(|f| f.0 == lint && f.2 == object);
    assert!(has("rls_disabled_in_public", "public.open_t"), "{found:?}");
    assert!(
        !has("rls_disabled_in_public", "public.closed_t"),
        "{found:?}"
    );
    assert!(
        has("policy_allows_all_to_anon", "public.closed_t"),
        "{found:?}"
    );
    assert_eq!(
        found
            .iter()
            .filter(|f| f.0 == "policy_allows_all_to_anon")
            .count(),
        1,
        "a restricted UPDATE and a SELECT policy are not findings: {found:?}"
    );
    assert!(has("no_primary_key", "public.no_pk"), "{found:?}");
    assert!(!has("no_primary_key", "extensions.hidden"), "{found:?}");
    assert!(
        has("function_search_path_mutable", "public.definer()"),
        "{found:?}"
    );
    assert!(
        !has("function_search_path_mutable", "public.fixed()"),
        "{found:?}"
    );
    assert!(
        has("security_definer_view", "public.owner_view"),
        "{found:?}"
    );
    assert!(
        !has("security_definer_view", "public.invoker_view"),
        "{found:?}"
    );
    assert!(has("auth_users_exposed", "public.emails"), "{found:?}");
    assert!(has("extension_in_public", "pg_trgm"), "{found:?}");
    assert!(
        found
            .iter()
            .filter(|f| f.0 == "auth_users_exposed" || f.0 == "rls_disabled_in_public")
            .all(|f| f.1 == LintLevel::Error)
    );
}

/// The examples' schemas: every ERROR finding is accepted in their
/// manifest (with its reason), so the examples could be cut over.
#[tokio::test]
async fn the_examples_have_no_unaccepted_error_findings() {
    for example in ["ops-portal", "savings-groups"] {
        let db = TestDb::new("lintex").await;
        db.apply_migrations(example, None).await;
        let manifest = Manifest::load(
            &repo_root()
                .join("examples")
                .join(example)
                .join("cutover.toml"),
        )
        .unwrap();
        let assessment =
            cutover::phases::lints::assess(lint(&db).await, None, &manifest.lints.accept);
        let blocking: Vec<String> = assessment
            .findings
            .iter()
            .filter(|f| f.blocks())
            .map(|f| {
                format!(
                    "{} {}: {}",
                    f.finding.lint, f.finding.object, f.finding.detail
                )
            })
            .collect();
        assert!(blocking.is_empty(), "{example}: {blocking:#?}");
        assert!(
            assessment.unmatched.is_empty(),
            "{example}: {:?}",
            assessment.unmatched
        );
    }
}
