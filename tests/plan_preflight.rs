//! End-to-end: the built binary, run as GitHub Actions runs it, against real
//! databases built from `examples/ops-portal`.

use crate::common;

use common::*;

const DB_PASSWORD: &str = "pw-Do-Not-Print-7f3a9c";

/// The secret variables the ops-portal manifest names, with recognisable values.
fn ops_portal_secrets() -> Vec<(String, String)> {
    [
        (
            "TARGET_GOOGLE_REFRESH_TOKEN",
            "1//refresh-token-SECRET-aa11",
        ),
        (
            "TARGET_GOOGLE_CLIENT_ID",
            "client-id-SECRET-bb22.apps.example",
        ),
        ("TARGET_GOOGLE_CLIENT_SECRET", "GOCSPX-SECRET-cc33"),
        ("TARGET_RESEND_API_KEY", "re_SECRET_dd44"),
        ("TARGET_APP_URL", "https://ops.aamodha.example"),
        ("TARGET_WHATSAPP_API_KEY", "wa-key-SECRET-ee55"),
        ("TARGET_SUPABASE_URL", "https://targetref.supabase.co"),
        (
            "TARGET_SUPABASE_ANON_KEY",
            "eyJhbGciOiJIUzI1NiJ9.anon-SECRET-ff66",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Runs the binary and checks that no secret value of the run leaked.
fn run_checked(
    files: &ActionsFiles,
    env: &[(String, String)],
    pair: &Pair,
) -> std::process::Output {
    let secrets: Vec<String> = ops_portal_secrets()
        .into_iter()
        .map(|(_, v)| v)
        .filter(|v| v.contains("SECRET"))
        .chain([DB_PASSWORD.to_string()])
        .collect();
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    run_and_check_leaks(
        files.dir.path(),
        &[],
        env,
        &secrets,
        &[&pair.source, &pair.target],
    )
}

fn actions_run(files: &ActionsFiles, pair: &Pair, phase: &str) -> ActionsRun {
    ActionsRun::new(files, phase)
        .vars(ops_portal_secrets())
        .manifest(repo_root().join("examples/ops-portal/cutover.toml"))
        .databases(
            pair.source.url_with_password(DB_PASSWORD),
            pair.target.url_with_password(DB_PASSWORD),
        )
        .inputs([
            ("environment", "production"),
            ("dry-run", "false"),
            ("report-file", "cutover-report.json"),
        ])
}

fn actions_env(files: &ActionsFiles, pair: &Pair, phase: &str) -> Vec<(String, String)> {
    actions_run(files, pair, phase).env()
}

#[tokio::test]
async fn help_lists_every_phase() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_cutover(dir.path(), &["--help"], &[]);
    assert!(out.status.success());
    let help = text(&out);
    for phase in [
        "plan",
        "preflight",
        "backup",
        "schema",
        "data",
        "functions",
        "secrets",
        "config",
        "validate",
        "cutover",
        "smoke",
        "rollback",
        "migrate",
    ] {
        assert!(
            help.contains(&format!("  {phase} ")),
            "--help lacks {phase}:\n{help}"
        );
    }
    for flag in [
        "--manifest",
        "--source-db-url",
        "--supabase-api-url",
        "--dry-run",
        "--overwrite",
        "--summary-file",
        "--report-file",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[tokio::test]
async fn plan_and_preflight_in_actions_pass_with_a_full_summary_and_no_leaks() {
    let pair = Pair::from_example("ops-portal").await;
    let files = ActionsFiles::new();
    let out = run_cutover(
        files.dir.path(),
        &[],
        &actions_env(&files, &pair, "plan,preflight"),
    );
    let log = text(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");

    // Masks come first, before anything else is printed.
    let first = log.lines().next().unwrap_or_default();
    assert!(first.starts_with("::add-mask::"), "first line is {first:?}");
    assert!(log.contains(&format!("::add-mask::{DB_PASSWORD}")));
    assert!(log.contains("::group::cutover plan") && log.contains("::group::cutover preflight"));

    let summary = files.read("summary.md");
    assert!(
        summary.starts_with("# ✅ cutover plan, preflight: success"),
        "{summary}"
    );
    for row in [
        "Source database readable",
        "Target database writable",
        "Source and target are different environments",
        "Migration files well-formed",
        "Source's applied migrations match the repository",
        "Tables named in [data] exist on the source",
        "Source row counts snapshot",
        "Target tables empty",
        "Required secret variables present",
        "Forbidden settings absent",
        "Edge Function folders present",
        "Release environment requires reviewers",
    ] {
        let line = summary
            .lines()
            .find(|l| l.starts_with('|') && l.contains(row))
            .unwrap_or_else(|| panic!("no checklist row {row:?} in\n{summary}"));
        let evidence = line.rsplit('|').nth(1).unwrap().trim();
        assert!(!evidence.is_empty(), "row {row:?} has no evidence");
    }
    assert!(
        summary.contains("| public.customers | 300 |"),
        "row counts table:\n{summary}"
    );
    assert!(summary.contains("What each phase would do"));
    // A run of a few seconds gets no gantt (its ticks would all read the
    // same second); the phases table has the durations.
    assert!(!summary.contains("```mermaid"), "{summary}");
    assert!(summary.contains("| plan | ✅ success |"));
    // Secrets by name only.
    assert!(summary.contains("GOOGLE_CLIENT_SECRET"));

    let outputs = files.outputs();
    assert_eq!(outputs["status"], "success");
    assert_eq!(
        outputs["report-path"], "cutover-report.json",
        "relative to the workspace"
    );
    assert_eq!(outputs["summary-path"], "summary.md");
    assert_eq!(outputs["row-count-mismatches"], "0");

    let report: serde_json::Value =
        serde_json::from_str(&files.read("cutover-report.json")).expect("JSON report");
    assert_eq!(report["schema_version"], 2);
    assert_eq!(report["outcome"], "success");
    assert_eq!(report["phases"][1]["phase"], "preflight");
    // Row counts are numbers in the JSON, not "1,234" text.
    let counts = report["phases"][1]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["title"] == "Source row counts")
        .expect("preflight's row counts table");
    let customers = counts["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[0] == "public.customers")
        .expect("a customers row");
    assert_eq!(customers[1], 300, "{customers}");

    // The ledger holds the run, its steps and the source snapshot.
    let ledger = ledger_dump(&pair.target, "cutover").await;
    assert!(ledger.contains("source-row-counts"), "{ledger}");
    assert_eq!(
        pair.target
            .scalar("select status from cutover.runs")
            .await
            .as_deref(),
        Some("success")
    );
    assert_eq!(
        pair.target
            .scalar("select row_count::text from cutover.snapshots where table_name = 'public.customers'")
            .await
            .as_deref(),
        Some("300")
    );

    let report_path = files.path("cutover-report.json");
    let mut secrets: Vec<String> = ops_portal_secrets()
        .into_iter()
        .filter(|(k, _)| k != "TARGET_APP_URL" && k != "TARGET_SUPABASE_URL")
        .map(|(_, v)| v)
        .collect();
    secrets.push(DB_PASSWORD.into());
    secrets.push(pair.target.url_with_password(DB_PASSWORD));
    for secret in &secrets {
        assert_no_leak(secret, &out, &files, &report_path);
        assert!(
            !ledger.contains(secret.as_str()),
            "{secret} leaked to the ledger"
        );
    }
}

#[tokio::test]
async fn plan_leaves_the_target_unchanged() {
    let pair = Pair::from_example("ops-portal").await;
    // A target that already has part of the schema and some rows.
    pair.target.apply_migrations("ops-portal", Some(4)).await;
    pair.target
        .exec("insert into public.customers (client_name) select 'existing ' || g from generate_series(1, 5) g")
        .await;
    let before = pair.target.fingerprint().await;
    let files = ActionsFiles::new();
    let out = run_checked(&files, &actions_env(&files, &pair, "plan"), &pair);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let summary = files.read("summary.md");
    assert!(summary.contains("pending"), "{summary}");
    assert!(
        summary.contains("would refuse"),
        "non-empty target noticed:\n{summary}"
    );
    assert_eq!(
        pair.target.fingerprint().await,
        before,
        "plan changed the target"
    );
    assert_eq!(
        pair.target
            .scalar("select to_regnamespace('cutover')::text")
            .await,
        None,
        "plan must not create the ledger"
    );
}

#[tokio::test]
async fn source_equal_to_target_fails_preflight_naming_the_problem() {
    let pair = Pair::from_example("ops-portal").await;
    let files = ActionsFiles::new();
    let env = actions_run(&files, &pair, "preflight")
        // Same database through another host name.
        .input(
            "target-db-url",
            pair.source.url().replace("127.0.0.1", "localhost"),
        )
        .env();
    let out = run_checked(&files, &env, &pair);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let summary = files.read("summary.md");
    let row = summary
        .lines()
        .find(|l| l.contains("Source and target are different environments"))
        .unwrap();
    assert!(row.starts_with("| ❌"), "{row}");
    assert!(
        row.contains("both point at") || row.contains("same database"),
        "{row}"
    );
    assert!(text(&out).contains("::error::preflight: Source and target are different"));
    assert_eq!(files.outputs()["status"], "failed");
}

#[tokio::test]
async fn same_project_ref_is_refused() {
    let pair = Pair::from_example("ops-portal").await;
    let files = ActionsFiles::new();
    let env = actions_run(&files, &pair, "preflight")
        .input("source-project-ref", "wadhydemushqqtcrrlwm")
        .input("target-project-ref", "wadhydemushqqtcrrlwm")
        .env();
    let out = run_checked(&files, &env, &pair);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        files
            .read("summary.md")
            .contains("are both `wadhydemushqqtcrrlwm`")
    );
}

#[tokio::test]
async fn missing_secret_and_forbidden_setting_fail_preflight_by_name() {
    let pair = Pair::from_example("ops-portal").await;
    let files = ActionsFiles::new();
    let env = actions_run(&files, &pair, "preflight")
        .without(&["TARGET_GOOGLE_CLIENT_SECRET"])
        .var("TARGET_RESEND_API_KEY", "   ")
        .var("VITE_USE_MOCK_DATA", "TRUE")
        .env();
    let out = run_checked(&files, &env, &pair);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let summary = files.read("summary.md");
    let secrets_row = summary
        .lines()
        .find(|l| l.contains("Required secret variables present"))
        .unwrap();
    assert!(
        secrets_row.contains("GOOGLE_CLIENT_SECRET (from $TARGET_GOOGLE_CLIENT_SECRET)"),
        "{secrets_row}"
    );
    assert!(
        secrets_row.contains("RESEND_API_KEY"),
        "empty counts as missing: {secrets_row}"
    );
    let forbidden_row = summary
        .lines()
        .find(|l| l.contains("Forbidden settings absent"))
        .unwrap();
    assert!(
        forbidden_row.contains("VITE_USE_MOCK_DATA=TRUE"),
        "{forbidden_row}"
    );
}

#[tokio::test]
async fn bad_migration_files_and_unknown_tables_fail_preflight() {
    let pair = Pair::from_example("ops-portal").await;
    let work = tempfile::tempdir().unwrap();
    let migrations = work.path().join("supabase/migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    for entry in
        std::fs::read_dir(repo_root().join("examples/ops-portal/supabase/migrations")).unwrap()
    {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), migrations.join(entry.file_name())).unwrap();
    }
    std::fs::write(migrations.join("add_orders.sql"), "select 1;").unwrap();
    std::fs::write(migrations.join("20250127000005_again.sql"), "select 1;").unwrap();
    std::fs::write(
        work.path().join("cutover.toml"),
        "[project]\nname = \"t\"\n[data]\ntables = [\"customers\", \"public.no_such_table\"]\n",
    )
    .unwrap();
    let files = ActionsFiles::new();
    let env = ActionsRun::new(&files, "preflight")
        .manifest(work.path().join("cutover.toml"))
        .databases(pair.source.url(), pair.target.url())
        .env();
    let out = run_checked(&files, &env, &pair);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let summary = files.read("summary.md");
    let row = summary
        .lines()
        .find(|l| l.contains("Migration files well-formed"))
        .unwrap();
    assert!(row.contains("add_orders.sql"), "{row}");
    assert!(row.contains("version 20250127000005 used by"), "{row}");
    let row = summary
        .lines()
        .find(|l| l.contains("Tables named in [data]"))
        .unwrap();
    assert!(row.contains("public.no_such_table"), "{row}");
}

#[tokio::test]
async fn source_history_without_local_file_blocks_like_the_cli() {
    let pair = Pair::from_example("ops-portal").await;
    pair.source
        .exec("insert into supabase_migrations.schema_migrations (version, name) values ('20991231000000', 'hotfix_in_dashboard')")
        .await;
    let files = ActionsFiles::new();
    let out = run_checked(&files, &actions_env(&files, &pair, "preflight"), &pair);
    assert_eq!(out.status.code(), Some(1));
    let summary = files.read("summary.md");
    let row = summary
        .lines()
        .find(|l| l.contains("Source's applied migrations match the repository"))
        .unwrap();
    assert!(
        row.starts_with("| ❌") && row.contains("20991231000000"),
        "{row}"
    );
}

#[tokio::test]
async fn dry_run_preflight_writes_no_ledger() {
    let pair = Pair::from_example("ops-portal").await;
    let files = ActionsFiles::new();
    let env = actions_run(&files, &pair, "preflight")
        .input("dry-run", "true")
        .env();
    let out = run_checked(&files, &env, &pair);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        pair.target
            .scalar("select to_regnamespace('cutover')::text")
            .await,
        None
    );
    assert!(files.read("summary.md").contains("**dry-run**"));
}

#[tokio::test]
async fn rerunning_preflight_reuses_the_ledger() {
    let pair = Pair::from_example("ops-portal").await;
    let files = ActionsFiles::new();
    let env = actions_env(&files, &pair, "preflight");
    // Two runs at once: the ledger's creation is serialised, neither fails.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| run_checked(&files, &env, &pair));
        let b = s.spawn(|| run_checked(&files, &env, &pair));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a.status.code(), Some(0), "{}", text(&a));
    assert_eq!(b.status.code(), Some(0), "{}", text(&b));
    assert_eq!(
        pair.target
            .scalar("select count(*)::text from cutover.runs")
            .await
            .as_deref(),
        Some("2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pitr_off_on_the_target_with_it_on_the_source_fails_preflight_with_the_fix() {
    use crate::fake_supabase::{FakeApi, SOURCE, TARGET, TOKEN};
    let api = FakeApi::start().await;
    let backups = |pitr: bool| {
        serde_json::json!({
            "region": "eu-central-1", "walg_enabled": pitr, "pitr_enabled": pitr,
            "backups": [{"id": 1, "is_physical_backup": false, "status": "COMPLETED",
                         "inserted_at": "2026-12-02T03:00:00Z"}],
            "physical_backup_data": {}
        })
    };
    api.with(|s| {
        s.backups.insert(SOURCE.into(), backups(true));
        s.backups.insert(TARGET.into(), backups(false));
    });
    let pair = Pair::from_example("ops-portal").await;
    let row_of = |files: &ActionsFiles| {
        files
            .read("summary.md")
            .lines()
            .find(|l| l.contains("Target's point-in-time recovery matches the source's"))
            .map(str::to_string)
            .unwrap_or_else(|| files.read("summary.md"))
    };
    let env_with_api = |files: &ActionsFiles| {
        actions_run(files, &pair, "preflight")
            .inputs([
                ("source-project-ref", SOURCE.to_string()),
                ("target-project-ref", TARGET.to_string()),
                ("supabase-access-token", TOKEN.to_string()),
                ("supabase-api-url", api.url()),
            ])
            .env()
    };

    let files = ActionsFiles::new();
    let out = run_checked(&files, &env_with_api(&files), &pair);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let row = row_of(&files);
    assert!(
        row.contains("PITR is on for the source and off for the target")
            && row.contains("enable point-in-time recovery on the target project"),
        "{row}"
    );
    assert!(
        files
            .read("summary.md")
            .contains("point-in-time recovery is on"),
        "the source's row passes"
    );
    assert!(
        !text(&out)
            .lines()
            .any(|l| !l.starts_with("::add-mask::") && l.contains(TOKEN)),
        "the token is masked, never printed"
    );

    api.with(|s| {
        s.backups.insert(TARGET.into(), backups(true));
    });
    api.ready_ops_portal_target();
    let files = ActionsFiles::new();
    let out = run_checked(&files, &env_with_api(&files), &pair);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(row_of(&files).contains("PITR on for both projects"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_targets_url_and_client_keys_become_masked_outputs_never_the_secret_key() {
    use crate::fake_supabase::{FakeApi, SOURCE, TARGET, TOKEN};
    let api = FakeApi::start().await;
    let pair = Pair::from_example("ops-portal").await;
    let files = ActionsFiles::new();
    let env = actions_run(&files, &pair, "preflight")
        .inputs([
            ("source-project-ref", SOURCE.to_string()),
            ("target-project-ref", TARGET.to_string()),
            ("supabase-access-token", TOKEN.to_string()),
            ("supabase-api-url", api.url()),
        ])
        .env();
    let out = run_checked(&files, &env, &pair);
    let anon = format!("anon-key-of-{TARGET}-0123456789");
    let publishable = format!("sb_publishable-key-of-{TARGET}-0123456789");
    let outputs = parse_outputs(&files.read("output.txt"));
    assert_eq!(
        outputs.get("target-url").map(String::as_str),
        Some(format!("https://{TARGET}.supabase.co").as_str()),
        "{outputs:?}\n{}",
        text(&out)
    );
    assert_eq!(outputs.get("target-anon-key"), Some(&anon));
    assert_eq!(outputs.get("target-publishable-key"), Some(&publishable));
    let log = text(&out);
    assert!(log.contains(&format!("::add-mask::{anon}")), "{log}");
    assert!(log.contains(&format!("::add-mask::{publishable}")), "{log}");
    // Masked: nowhere else, and the service-role key is never read in.
    let report = std::fs::read_to_string(files.dir.path().join("cutover-report.json")).unwrap();
    let unmasked_log: String = log
        .lines()
        .filter(|l| !l.starts_with("::add-mask::"))
        .collect::<Vec<_>>()
        .join("\n");
    for key in [anon.as_str(), publishable.as_str()] {
        assert!(!unmasked_log.contains(key), "{unmasked_log}");
        assert!(!files.read("summary.md").contains(key));
        assert!(!report.contains(key));
    }
    let everything = format!(
        "{log}{}{}",
        files.read("summary.md"),
        files.read("output.txt")
    );
    assert!(!everything.contains("service-role-key-of"), "{everything}");
    assert!(
        files
            .read("summary.md")
            .contains("Target URL and client keys read"),
        "{}",
        files.read("summary.md")
    );
}
