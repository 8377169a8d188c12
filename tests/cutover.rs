//! `cutover`, `smoke` and `rollback` end to end: the built binary in a
//! GitHub-like environment, real databases, and local fakes of the GitHub API
//! (as `shared/specs/github-environments-api.json` documents it), Vercel and
//! the production site.

mod common;

use common::*;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const GH_TOKEN: &str = "ghs_GateTokenValue0123456789";
const VERCEL_TOKEN: &str = "vercel_TokenValue_0123456789";
const SOURCE_ANON: &str = "eyJsource.anon.key.0123456789";
const TARGET_ANON: &str = "eyJtarget.anon.key.9876543210";
const CF_TOKEN: &str = "cf_Token_0123456789abcdef";
const REPO: &str = "/repos/acme/ops-portal";

fn user(login: &str) -> Value {
    json!({"login": login, "id": 1, "node_id": "MDQ6VXNlcjE=", "type": "User", "site_admin": false})
}

fn environment(reviewers: Value) -> Value {
    json!({
        "id": 161088068, "node_id": "MDExOkVudmlyb25tZW50MTYxMDg4MDY4", "name": "production",
        "url": "https://api.github.com/repos/acme/ops-portal/environments/production",
        "html_url": "https://github.com/acme/ops-portal/deployments/activity_log",
        "created_at": "2020-11-23T22:00:40Z", "updated_at": "2020-11-23T22:00:40Z",
        "protection_rules": [
            {"id": 3755, "node_id": "MDQ6R2F0ZTM3NTU=", "prevent_self_review": false,
             "type": "required_reviewers", "reviewers": reviewers}
        ],
        "deployment_branch_policy": {"protected_branches": false, "custom_branch_policies": true}
    })
}

fn reviewers() -> Value {
    json!([
        {"type": "User", "reviewer": user("octocat")},
        {"type": "Team", "reviewer": {"id": 1, "name": "Release Managers", "slug": "release-managers"}}
    ])
}

fn approval(state: &str, login: &str, comment: &str) -> Value {
    json!({
        "state": state, "comment": comment, "user": user(login),
        "environments": [{"id": 161088068, "node_id": "MDExOkVudmlyb25tZW50MTYxMDg4MDY4",
                          "name": "production",
                          "url": "https://api.github.com/repos/acme/ops-portal/environments/production",
                          "html_url": "https://github.com/acme/ops-portal/deployments/activity_log?environments_filter=production",
                          "created_at": "2020-11-23T22:00:40Z", "updated_at": "2020-11-23T22:00:40Z"}]
    })
}

fn workflow_run(triggering: &str) -> Value {
    json!({
        "id": 4242, "name": "release", "node_id": "MDEyOldvcmtmbG93IFJ1bjI2OTI4OQ==",
        "head_branch": "v1.2.0", "head_sha": "0123456789abcdef0123456789abcdef01234567",
        "path": ".github/workflows/release.yml@v1.2.0", "run_number": 7, "event": "push",
        "status": "in_progress", "conclusion": null, "workflow_id": 159038,
        "url": "https://api.github.com/repos/acme/ops-portal/actions/runs/4242",
        "html_url": "https://github.com/acme/ops-portal/actions/runs/4242",
        "created_at": "2025-01-22T19:33:08Z", "updated_at": "2025-01-22T19:33:08Z",
        "actor": user("release-manager"), "triggering_actor": user(triggering), "run_attempt": 1
    })
}

/// A fake GitHub answering for run 4242 of acme/ops-portal.
async fn github(env: Value, approvals: Value, triggering: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/environments/production")))
        .respond_with(ResponseTemplate::new(200).set_body_json(env))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/actions/runs/4242/approvals")))
        .respond_with(ResponseTemplate::new(200).set_body_json(approvals))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/actions/runs/4242")))
        .respond_with(ResponseTemplate::new(200).set_body_json(workflow_run(triggering)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/deployments")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "url": "https://api.github.com/repos/acme/ops-portal/deployments/42", "id": 42,
            "node_id": "MDEwOkRlcGxveW1lbnQx", "sha": "0123456789abcdef0123456789abcdef01234567",
            "ref": "0123456789abcdef0123456789abcdef01234567", "task": "deploy", "payload": {},
            "environment": "production", "description": "cutover", "creator": user("github-actions"),
            "created_at": "2025-01-22T19:33:08Z", "updated_at": "2025-01-22T19:33:08Z",
            "statuses_url": "https://api.github.com/repos/acme/ops-portal/deployments/42/statuses",
            "repository_url": "https://api.github.com/repos/acme/ops-portal",
            "transient_environment": false, "production_environment": true
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/deployments/42/statuses")))
        .respond_with(|req: &Request| {
            let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
            ResponseTemplate::new(201).set_body_json(json!({
                "url": "https://api.github.com/repos/acme/ops-portal/deployments/42/statuses/1",
                "id": 1, "node_id": "MDE2OkRlcGxveW1lbnRTdGF0dXMx", "state": body["state"],
                "creator": user("github-actions"), "description": body["description"],
                "environment": "production", "target_url": body["log_url"],
                "created_at": "2025-01-22T19:33:08Z", "updated_at": "2025-01-22T19:33:08Z",
                "deployment_url": "https://api.github.com/repos/acme/ops-portal/deployments/42",
                "repository_url": "https://api.github.com/repos/acme/ops-portal",
                "environment_url": body["environment_url"], "log_url": body["log_url"]
            }))
        })
        .mount(&server)
        .await;
    server
}

/// A fake Vercel project `ops-portal` whose production variables point at
/// the source; `patch_status` answers edits (500 = the switch fails).
async fn vercel(patch_status: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v10/projects/ops-portal/env"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"envs": [
            {"id": "env_url", "key": "VITE_SUPABASE_URL", "value": "https://source.supabase.co",
             "type": "encrypted", "decrypted": true, "target": ["production", "preview"]},
            {"id": "env_anon", "key": "VITE_SUPABASE_ANON_KEY", "value": SOURCE_ANON,
             "type": "encrypted", "decrypted": true, "target": ["production"]},
            {"id": "env_preview", "key": "VITE_SUPABASE_URL", "value": "https://preview.supabase.co",
             "type": "plain", "target": ["preview"]}
        ]})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v6/deployments"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"deployments": [
                {"uid": "dpl_old", "name": "ops-portal", "url": "ops-portal-old.vercel.app",
                 "state": "READY", "target": "production", "created": 1700000000000u64}
            ]})),
        )
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .respond_with(ResponseTemplate::new(patch_status).set_body_json(if patch_status == 200 {
            json!({"id": "env_url", "key": "VITE_SUPABASE_URL", "type": "encrypted"})
        } else {
            json!({"error": {"code": "internal_server_error", "message": "An unexpected error occurred"}})
        }))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v13/deployments"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "dpl_new", "url": "ops-portal-new.vercel.app", "readyState": "BUILDING"
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v13/deployments/dpl_new"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "dpl_new", "url": "ops-portal-new.vercel.app", "readyState": "READY"
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v10/projects/ops-portal/promote/dpl_old"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&server)
        .await;
    server
}

/// The production site: `/dashboard` answers 200.
async fn site() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/dashboard"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>dashboard</html>"))
        .mount(&server)
        .await;
    server
}

const GUARDS_SQL: &str = "
    create table public.app_config (config_key text primary key, config_value text);
    create schema cron;
    create table cron.job (jobid bigserial primary key, jobname text, schedule text,
                           command text, active boolean not null default true);";

struct Setup {
    pair: Pair,
    work: tempfile::TempDir,
}

/// Source with WhatsApp on and the reminders job active; target with both
/// off; a passing validate of the pair recorded in the target's ledger.
async fn setup(four_eyes: bool, vercel_url: &str, site_url: &str) -> Setup {
    let frontend = format!(
        r#"[frontend]
provider = "vercel"
project = "ops-portal"
url = "{site_url}"
api_url = "{vercel_url}"
deploy_timeout_seconds = 5
"#
    );
    setup_with(four_eyes, &frontend).await
}

async fn setup_with(four_eyes: bool, frontend: &str) -> Setup {
    setup_with_tables(four_eyes, frontend, "").await
}

/// Orders copied from source to target (equal on both sides before validate).
const ORDERS_SQL: &str = "
    create table public.orders (id bigint generated by default as identity primary key, note text not null);
    create table public.order_items (id bigint generated by default as identity primary key,
                                     order_id bigint references public.orders(id), qty int);
    insert into public.orders (note) select 'order ' || g from generate_series(1, 50) g;
    insert into public.order_items (order_id, qty) select g, g % 7 from generate_series(1, 50) g;
    grant all on public.orders, public.order_items to service_role;
    grant usage on all sequences in schema public to service_role;";

/// As [`setup_with`], with `tables_sql` run on both sides first.
async fn setup_with_tables(four_eyes: bool, frontend: &str, tables_sql: &str) -> Setup {
    let (source, target) = tokio::join!(TestDb::new("cosrc"), TestDb::new("cotgt"));
    if !tables_sql.is_empty() {
        source.exec(tables_sql).await;
        target.exec(tables_sql).await;
    }
    source
        .exec(&format!(
            "{GUARDS_SQL}
             insert into public.app_config values ('whatsapp_enabled', 'true'), ('other', 'x');
             insert into cron.job (jobname, schedule, command, active)
               values ('payment-reminders', '0 9 * * *', 'select 1', true),
                      ('cleanup', '0 3 * * *', 'select 2', true);"
        ))
        .await;
    target
        .exec(&format!(
            "{GUARDS_SQL}
             insert into public.app_config values ('whatsapp_enabled', 'false'), ('other', 'y');
             insert into cron.job (jobname, schedule, command, active)
               values ('payment-reminders', '0 9 * * *', 'select 1', false);"
        ))
        .await;
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("supabase/migrations")).unwrap();
    std::fs::write(
        work.path().join("cutover.toml"),
        format!(
            r#"[project]
name = "e2e"

[data]
exclude = ["public.app_config"]

[config]
table = "public.app_config"

[guards]
cron_jobs = ["payment-reminders"]

[[guards.switches]]
key = "whatsapp_enabled"

{frontend}
[frontend.env]
VITE_SUPABASE_URL = "${{TARGET_SUPABASE_URL}}"
VITE_SUPABASE_ANON_KEY = "${{TARGET_SUPABASE_ANON_KEY}}"

[frontend.source_env]
VITE_SUPABASE_ANON_KEY = "${{SOURCE_SUPABASE_ANON_KEY}}"

[[frontend.routes]]
path = "/dashboard"
max_latency_ms = 3000

[gate]
environment = "production"
four_eyes = {four_eyes}
"#
        ),
    )
    .unwrap();
    let setup = Setup {
        pair: Pair { source, target },
        work,
    };
    let files = ActionsFiles::new();
    let out = setup.run(&files, "validate", "http://127.0.0.1:9");
    assert_eq!(out.status.code(), Some(0), "validate: {}", text(&out));
    setup
}

impl Setup {
    fn run(&self, files: &ActionsFiles, phase: &str, github_url: &str) -> std::process::Output {
        self.run_without(files, phase, github_url, &[])
    }

    fn run_without(
        &self,
        files: &ActionsFiles,
        phase: &str,
        github_url: &str,
        unset: &[&str],
    ) -> std::process::Output {
        let mut env = files.github_env();
        env.extend(
            [
                ("GITHUB_API_URL", github_url.to_string()),
                ("INPUT_PHASE", phase.to_string()),
                (
                    "INPUT_MANIFEST",
                    self.work.path().join("cutover.toml").display().to_string(),
                ),
                ("INPUT_SOURCE-DB-URL", self.pair.source.url()),
                ("INPUT_TARGET-DB-URL", self.pair.target.url()),
                ("INPUT_GITHUB-TOKEN", GH_TOKEN.to_string()),
                ("INPUT_VERCEL-TOKEN", VERCEL_TOKEN.to_string()),
                (
                    "TARGET_SUPABASE_URL",
                    "https://target.supabase.co".to_string(),
                ),
                ("TARGET_SUPABASE_ANON_KEY", TARGET_ANON.to_string()),
                ("SOURCE_SUPABASE_ANON_KEY", SOURCE_ANON.to_string()),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );
        env.retain(|(k, _)| !unset.contains(&k.as_str()));
        run_cutover(self.work.path(), &[], &env)
    }

    async fn guards(&self, db: &TestDb) -> (String, String) {
        (
            db.scalar(
                "select config_value from public.app_config where config_key = 'whatsapp_enabled'",
            )
            .await
            .unwrap_or_default(),
            db.scalar(
                "select string_agg(jobname || '=' || active, ',' order by jobname) from cron.job",
            )
            .await
            .unwrap_or_default(),
        )
    }
}

fn row<'a>(summary: &'a str, title: &str) -> &'a str {
    summary
        .lines()
        .find(|l| l.contains(title))
        .unwrap_or_else(|| panic!("no row {title:?} in:\n{summary}"))
}

/// Runs cutover against a gate that must block; checks exit 3, the row and
/// that nothing changed anywhere.
async fn assert_blocked(
    gh: MockServer,
    four_eyes: bool,
    title: &str,
    why: &str,
    stale: Option<&str>,
) {
    let vercel = vercel(200).await;
    let site = site().await;
    let s = setup(four_eyes, &vercel.uri(), &site.uri()).await;
    if let Some(sql) = stale {
        s.pair.target.exec(sql).await;
    }
    let before = (
        s.guards(&s.pair.source).await,
        s.guards(&s.pair.target).await,
    );
    let files = ActionsFiles::new();
    let out = s.run(&files, "cutover", &gh.uri());
    let summary = files.read("summary.md");
    assert_eq!(out.status.code(), Some(3), "{}\n{summary}", text(&out));
    let r = row(&summary, title);
    assert!(r.starts_with("| ❌") && r.contains(why), "{r}");
    assert_eq!(files.outputs()["status"], "blocked");
    let after = (
        s.guards(&s.pair.source).await,
        s.guards(&s.pair.target).await,
    );
    assert_eq!(before, after, "a blocked cutover changed guards");
    let vercel_calls = vercel.received_requests().await.unwrap_or_default();
    assert!(vercel_calls.is_empty(), "a blocked cutover called Vercel");
    let deployments = gh
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method.as_str() == "POST")
        .count();
    assert_eq!(deployments, 0, "a blocked cutover created a deployment");
    assert_no_leak(
        GH_TOKEN,
        &out,
        &files,
        &s.work.path().join("cutover-report.json"),
    );
}

#[tokio::test]
async fn environment_without_required_reviewers_blocks() {
    let mut env = environment(reviewers());
    env["protection_rules"] = json!([]);
    let gh = github(
        env,
        json!([approval("approved", "octocat", "ok")]),
        "release-manager",
    )
    .await;
    assert_blocked(
        gh,
        false,
        "Environment requires reviewers",
        "has no required reviewers rule",
        None,
    )
    .await;
}

#[tokio::test]
async fn run_without_approval_blocks() {
    let gh = github(environment(reviewers()), json!([]), "release-manager").await;
    assert_blocked(
        gh,
        false,
        "This run was approved for the environment",
        "run 4242 has no approval for production",
        None,
    )
    .await;
}

#[tokio::test]
async fn rejected_run_blocks() {
    let gh = github(
        environment(reviewers()),
        json!([approval("rejected", "octocat", "not during business hours")]),
        "release-manager",
    )
    .await;
    assert_blocked(
        gh,
        false,
        "This run was approved for the environment",
        "rejected for production by @octocat (\"not during business hours\")",
        None,
    )
    .await;
}

#[tokio::test]
async fn self_approval_blocks_with_four_eyes() {
    let gh = github(
        environment(reviewers()),
        json!([approval("approved", "octocat", "lgtm")]),
        "octocat",
    )
    .await;
    assert_blocked(
        gh,
        true,
        "Approved by someone other than who started the run",
        "@octocat started run 4242 and approved it themself",
        None,
    )
    .await;
}

#[tokio::test]
async fn stale_validation_blocks() {
    let gh = github(
        environment(reviewers()),
        json!([approval("approved", "octocat", "ship it")]),
        "release-manager",
    )
    .await;
    assert_blocked(
        gh,
        true,
        "A recent passing validate covers these inputs",
        "over [gate] validation_max_age_hours = 24",
        Some(
            "update cutover.steps set finished_at = now() - interval '30 hours', started_at = now() - interval '30 hours' where phase = 'validate'",
        ),
    )
    .await;
}

#[tokio::test]
async fn validation_of_other_migrations_blocks() {
    let gh = github(
        environment(reviewers()),
        json!([approval("approved", "octocat", "ship it")]),
        "release-manager",
    )
    .await;
    let vercel = vercel(200).await;
    let site = site().await;
    let s = setup(false, &vercel.uri(), &site.uri()).await;
    std::fs::write(
        s.work
            .path()
            .join("supabase/migrations/20250101000000_new.sql"),
        "create table public.x (id int);\n",
    )
    .unwrap();
    let files = ActionsFiles::new();
    let out = s.run(&files, "cutover", &gh.uri());
    let summary = files.read("summary.md");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let r = row(&summary, "A recent passing validate covers these inputs");
    assert!(r.contains("20250101000000 added"), "{r}");
}

#[tokio::test]
async fn missing_actions_permission_names_it() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/environments/production")))
        .respond_with(ResponseTemplate::new(200).set_body_json(environment(reviewers())))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "message": "Resource not accessible by integration",
            "documentation_url": "https://docs.github.com/rest"
        })))
        .mount(&server)
        .await;
    let vercel = vercel(200).await;
    let site = site().await;
    let s = setup(false, &vercel.uri(), &site.uri()).await;
    let files = ActionsFiles::new();
    let out = s.run(&files, "cutover", &server.uri());
    let summary = files.read("summary.md");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(summary.contains("permissions: actions: read"), "{summary}");
    assert_no_leak(
        GH_TOKEN,
        &out,
        &files,
        &s.work.path().join("cutover-report.json"),
    );
}

/// Vercel PATCH bodies received, as (path, value).
async fn patches(server: &MockServer) -> Vec<(String, String)> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method.as_str() == "PATCH")
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            (
                r.url.path().to_string(),
                body["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn failed_frontend_switch_leaves_source_guards_as_they_were() {
    let gh = github(
        environment(reviewers()),
        json!([approval("approved", "octocat", "ship it")]),
        "release-manager",
    )
    .await;
    let vercel = vercel(500).await;
    let site = site().await;
    let s = setup(true, &vercel.uri(), &site.uri()).await;
    let source_before = s.guards(&s.pair.source).await;
    let target_before = s.guards(&s.pair.target).await;
    assert_eq!(source_before.0, "true");
    assert_eq!(source_before.1, "cleanup=true,payment-reminders=true");

    let files = ActionsFiles::new();
    let out = s.run(&files, "cutover", &gh.uri());
    let summary = files.read("summary.md");
    assert_eq!(out.status.code(), Some(1), "{}\n{summary}", text(&out));
    assert!(
        row(&summary, "Guards off in the source").starts_with("| ✅"),
        "guards were switched off first"
    );
    let r = row(&summary, "Frontend switched to the target");
    assert!(r.starts_with("| ❌") && r.contains("500"), "{r}");
    assert!(row(&summary, "Undo: source guards restored").starts_with("| ✅"));
    assert!(summary.contains("was undone in reverse order"), "{summary}");
    assert_eq!(s.guards(&s.pair.source).await, source_before);
    assert_eq!(s.guards(&s.pair.target).await, target_before);
    // The deployment ends as a failure.
    let states: Vec<String> = gh
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path().ends_with("/statuses"))
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["state"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(states, ["in_progress", "failure"]);
    // Vercel was down for the undo too: its row says so, and the saved
    // values stay in the ledger for `rollback`, which puts them back once
    // Vercel answers again; the source guards need nothing more.
    assert!(row(&summary, "Undo: frontend restored").starts_with("| ❌"));
    vercel.reset().await;
    let recovered = vercel_mocks_after_cutover(&vercel).await;
    let files = ActionsFiles::new();
    let out = s.run(&files, "rollback", &gh.uri());
    let summary = files.read("summary.md");
    assert_eq!(out.status.code(), Some(0), "{}\n{summary}", text(&out));
    assert!(
        row(&summary, "Source guards restored").contains("cutover saved no source guard state")
    );
    let mut sent = patches(recovered).await;
    sent.sort();
    assert_eq!(
        sent[1],
        (
            "/v9/projects/ops-portal/env/env_url".to_string(),
            "https://source.supabase.co".to_string()
        )
    );
    assert_eq!(s.guards(&s.pair.source).await, source_before);
    for secret in [VERCEL_TOKEN, GH_TOKEN, TARGET_ANON, SOURCE_ANON] {
        assert_no_leak(
            secret,
            &out,
            &files,
            &s.work.path().join("cutover-report.json"),
        );
    }
}

#[tokio::test]
async fn approved_cutover_then_rollback_restores_frontend_and_guards_exactly() {
    let gh = github(
        environment(reviewers()),
        json!([approval("approved", "octocat", "Ship it!")]),
        "release-manager",
    )
    .await;
    let vercel = vercel(200).await;
    let site = site().await;
    let s = setup(true, &vercel.uri(), &site.uri()).await;
    let source_before = s.guards(&s.pair.source).await;
    let target_before = s.guards(&s.pair.target).await;

    // Cutover.
    let files = ActionsFiles::new();
    let out = s.run(&files, "cutover", &gh.uri());
    let summary = files.read("summary.md");
    assert_eq!(out.status.code(), Some(0), "{}\n{summary}", text(&out));
    assert!(summary.contains("| @octocat | approved |"), "{summary}");
    assert!(summary.contains("Ship it!"), "{summary}");
    assert!(
        row(&summary, "Approved by someone other")
            .contains("started by @release-manager, approved by @octocat")
    );
    assert!(row(&summary, "Frontend switched to the target").contains("READY"));
    assert!(summary.contains("/dashboard"), "{summary}");
    assert!(summary.contains("Cutover steps"), "{summary}");
    assert_eq!(
        s.guards(&s.pair.source).await,
        (
            "false".into(),
            "cleanup=true,payment-reminders=false".into()
        )
    );
    assert_eq!(
        s.guards(&s.pair.target).await,
        ("true".into(), "payment-reminders=true".into())
    );
    let mut sent = patches(&vercel).await;
    sent.sort();
    assert_eq!(
        sent,
        [
            (
                "/v9/projects/ops-portal/env/env_anon".to_string(),
                TARGET_ANON.to_string()
            ),
            (
                "/v9/projects/ops-portal/env/env_url".to_string(),
                "https://target.supabase.co".to_string()
            ),
        ]
    );
    let deploy: Vec<Value> = gh
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(deploy[0]["auto_merge"], false);
    assert_eq!(deploy[0]["required_contexts"], json!([]));
    assert_eq!(deploy[1]["state"], "in_progress");
    assert_eq!(deploy[2]["state"], "success");
    assert_eq!(
        deploy[2]["log_url"],
        "https://github.com/acme/ops-portal/actions/runs/4242"
    );
    assert_eq!(deploy[2]["environment_url"], site.uri());
    // The approver is in the ledger.
    let approver = s
        .pair
        .target
        .scalar("select detail->'approvers'->0->>'login' from cutover.steps where phase = 'cutover' and step = 'approval'")
        .await;
    assert_eq!(approver.as_deref(), Some("octocat"));
    for secret in [VERCEL_TOKEN, GH_TOKEN, TARGET_ANON, SOURCE_ANON] {
        assert_no_leak(
            secret,
            &out,
            &files,
            &s.work.path().join("cutover-report.json"),
        );
    }

    // The ledger holds each guard's state from before cutover.
    let saved = s
        .pair
        .target
        .scalar("select string_agg(side || ':' || name || '=' || coalesce(previous, '-'), ',' order by side, name) from cutover.guard_states where restored_at is null")
        .await
        .unwrap();
    assert_eq!(
        saved,
        "source:payment-reminders=true,source:whatsapp_enabled=true,target:payment-reminders=false,target:whatsapp_enabled=false"
    );

    // Rollback.
    vercel.reset().await;
    let vercel_again = vercel_mocks_after_cutover(&vercel).await;
    let files = ActionsFiles::new();
    let out = s.run(&files, "rollback", &gh.uri());
    let summary = files.read("summary.md");
    assert_eq!(out.status.code(), Some(0), "{}\n{summary}", text(&out));
    assert_eq!(
        s.guards(&s.pair.source).await,
        source_before,
        "source guards exactly as before"
    );
    assert_eq!(s.guards(&s.pair.target).await, target_before);
    let mut sent = patches(vercel_again).await;
    sent.sort();
    assert_eq!(
        sent,
        [
            (
                "/v9/projects/ops-portal/env/env_anon".to_string(),
                SOURCE_ANON.to_string()
            ),
            (
                "/v9/projects/ops-portal/env/env_url".to_string(),
                "https://source.supabase.co".to_string()
            ),
        ],
        "the previous values are put back"
    );
    let promoted = vercel_again
        .received_requests()
        .await
        .unwrap()
        .iter()
        .any(|r| {
            r.method.as_str() == "POST"
                && r.url.path() == "/v10/projects/ops-portal/promote/dpl_old"
        });
    assert!(promoted, "the pre-cutover deployment is promoted back");
    assert!(row(&summary, "Frontend back to the source").starts_with("| ✅"));
    assert!(row(&summary, "Source guards restored").contains("whatsapp_enabled = true"));
    assert!(
        summary.contains("Left as it is, for forensics"),
        "{summary}"
    );
    for secret in [VERCEL_TOKEN, GH_TOKEN, TARGET_ANON, SOURCE_ANON] {
        assert_no_leak(
            secret,
            &out,
            &files,
            &s.work.path().join("cutover-report.json"),
        );
    }
    let ledger = ledger_dump(&s.pair.target, "cutover").await;
    assert!(!ledger.contains(VERCEL_TOKEN) && !ledger.contains(GH_TOKEN));
    // The source's anon key came back from [frontend.source_env]: the ledger
    // never held it, only its digest.
    let states = s
        .pair
        .target
        .scalar("select coalesce(string_agg(t::text, E'\\n'), '') from cutover.frontend_states t")
        .await
        .unwrap_or_default();
    assert!(
        !states.contains(SOURCE_ANON) && !states.contains(TARGET_ANON),
        "{states}"
    );

    // Rolling back twice is safe: nothing left.
    let files = ActionsFiles::new();
    let out = s.run(&files, "rollback", &gh.uri());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(files.read("summary.md").contains("already restored"));
    assert_eq!(s.guards(&s.pair.source).await, source_before);
}

/// After cutover the project's variables point at the target.
async fn vercel_mocks_after_cutover(server: &MockServer) -> &MockServer {
    Mock::given(method("GET"))
        .and(path("/v10/projects/ops-portal/env"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"envs": [
            {"id": "env_url", "key": "VITE_SUPABASE_URL", "value": "https://target.supabase.co",
             "type": "encrypted", "decrypted": true, "target": ["production", "preview"]},
            {"id": "env_anon", "key": "VITE_SUPABASE_ANON_KEY", "value": TARGET_ANON,
             "type": "encrypted", "decrypted": true, "target": ["production"]}
        ]})))
        .mount(server)
        .await;
    Mock::given(method("PATCH"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "x"})))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v10/projects/ops-portal/promote/dpl_old"))
        .respond_with(ResponseTemplate::new(201))
        .mount(server)
        .await;
    server
}

#[tokio::test]
async fn rollback_without_a_cutover_fails_clearly() {
    let vercel = vercel(200).await;
    let site = site().await;
    let s = setup(false, &vercel.uri(), &site.uri()).await;
    let files = ActionsFiles::new();
    let out = s.run(&files, "rollback", "http://127.0.0.1:9");
    let summary = files.read("summary.md");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(summary.contains("nothing to roll back to"), "{summary}");
    assert!(summary.contains("records no cutover"), "{summary}");
}

#[tokio::test]
async fn dry_run_checks_the_gate_and_changes_nothing() {
    let gh = github(
        environment(reviewers()),
        json!([approval("approved", "octocat", "ok")]),
        "release-manager",
    )
    .await;
    let vercel = vercel(200).await;
    let site = site().await;
    let s = setup(true, &vercel.uri(), &site.uri()).await;
    let before = (
        s.pair.source.fingerprint().await,
        s.pair.target.fingerprint().await,
    );
    let files = ActionsFiles::new();
    let out = {
        let mut env = files.github_env();
        env.push(("INPUT_DRY-RUN".into(), "true".into()));
        env.extend(
            [
                ("GITHUB_API_URL", gh.uri()),
                ("INPUT_PHASE", "cutover,rollback".to_string()),
                (
                    "INPUT_MANIFEST",
                    s.work.path().join("cutover.toml").display().to_string(),
                ),
                ("INPUT_SOURCE-DB-URL", s.pair.source.url()),
                ("INPUT_TARGET-DB-URL", s.pair.target.url()),
                ("INPUT_GITHUB-TOKEN", GH_TOKEN.to_string()),
                ("INPUT_VERCEL-TOKEN", VERCEL_TOKEN.to_string()),
                (
                    "TARGET_SUPABASE_URL",
                    "https://target.supabase.co".to_string(),
                ),
                ("TARGET_SUPABASE_ANON_KEY", TARGET_ANON.to_string()),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );
        run_cutover(s.work.path(), &[], &env)
    };
    let summary = files.read("summary.md");
    assert!(
        row(&summary, "This run was approved").starts_with("| ✅"),
        "{summary}"
    );
    assert!(summary.contains("Dry run: the gate is open"), "{summary}");
    // Rollback in dry-run with nothing recorded: the clear failure.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let after = (
        s.pair.source.fingerprint().await,
        s.pair.target.fingerprint().await,
    );
    assert_eq!(before, after);
    assert!(vercel.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn missing_provider_token_or_variable_refuses_before_any_change() {
    let gh = github(
        environment(reviewers()),
        json!([approval("approved", "octocat", "ok")]),
        "release-manager",
    )
    .await;
    let vercel = vercel(200).await;
    let site = site().await;
    let s = setup(false, &vercel.uri(), &site.uri()).await;
    let before = (
        s.guards(&s.pair.source).await,
        s.guards(&s.pair.target).await,
    );
    for (unset, expect) in [
        (
            "INPUT_VERCEL-TOKEN",
            "needs an API token, but input `vercel-token` is not set",
        ),
        (
            "TARGET_SUPABASE_ANON_KEY",
            "[frontend.env] references variables that are not set: TARGET_SUPABASE_ANON_KEY",
        ),
    ] {
        let files = ActionsFiles::new();
        let out = s.run_without(&files, "cutover", &gh.uri(), &[unset]);
        let summary = files.read("summary.md");
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(summary.contains(expect), "{summary}");
        assert!(summary.contains("nothing was changed"), "{summary}");
        assert_eq!(
            before,
            (
                s.guards(&s.pair.source).await,
                s.guards(&s.pair.target).await
            )
        );
    }
    assert!(vercel.received_requests().await.unwrap().is_empty());
    let posts = gh
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "POST")
        .count();
    assert_eq!(posts, 0, "no deployment for a refused cutover");

    // Outside a workflow run the gate cannot see any approval: blocked.
    let files = ActionsFiles::new();
    let out = s.run_without(&files, "cutover", &gh.uri(), &["GITHUB_RUN_ID"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        row(&files.read("summary.md"), "Running in a GitHub Actions run")
            .contains("GITHUB_RUN_ID is not set")
    );
}

#[tokio::test]
async fn cloudflare_pages_cutover_and_rollback() {
    let gh = github(
        environment(reviewers()),
        json!([approval("approved", "octocat", "ok")]),
        "release-manager",
    )
    .await;
    let site = site().await;
    let cf = MockServer::start().await;
    let project_path = "/accounts/acc0123/pages/projects/ibimina-gemini";
    let project = |canonical: &str| {
        json!({"success": true, "errors": [], "messages": [], "result": {
            "id": "7b162ea7", "name": "ibimina-gemini",
            "canonical_deployment": {"id": canonical, "url": format!("https://{canonical}.ibimina-gemini.pages.dev")},
            "deployment_configs": {"production": {"env_vars": {
                "VITE_SUPABASE_URL": {"type": "plain_text", "value": "https://source.supabase.co"},
                "VITE_SUPABASE_ANON_KEY": {"type": "secret_text"}
            }}}
        }})
    };
    // Cutover reads the project once; by rollback the pages step deployed dep_new.
    Mock::given(method("GET"))
        .and(path(project_path))
        .respond_with(ResponseTemplate::new(200).set_body_json(project("dep_old")))
        .up_to_n_times(1)
        .mount(&cf)
        .await;
    Mock::given(method("GET"))
        .and(path(project_path))
        .respond_with(ResponseTemplate::new(200).set_body_json(project("dep_new")))
        .mount(&cf)
        .await;
    Mock::given(method("PATCH"))
        .and(path(project_path))
        .respond_with(ResponseTemplate::new(200).set_body_json(project("dep_old")))
        .mount(&cf)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{project_path}/deployments/dep_old/rollback")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"success": true, "errors": [], "result": {"id": "dep_old"}})),
        )
        .expect(1)
        .mount(&cf)
        .await;
    let frontend = format!(
        "[frontend]\nprovider = \"cloudflare-pages\"\nproject = \"ibimina-gemini\"\naccount_id = \"acc0123\"\nurl = \"{}\"\napi_url = \"{}\"\n",
        site.uri(),
        cf.uri()
    );
    let s = setup_with(false, &frontend).await;
    let source_before = s.guards(&s.pair.source).await;
    let run_cf = |phase: &str, files: &ActionsFiles| {
        let mut env = files.github_env();
        env.extend(
            [
                ("GITHUB_API_URL", gh.uri()),
                ("INPUT_PHASE", phase.to_string()),
                (
                    "INPUT_MANIFEST",
                    s.work.path().join("cutover.toml").display().to_string(),
                ),
                ("INPUT_SOURCE-DB-URL", s.pair.source.url()),
                ("INPUT_TARGET-DB-URL", s.pair.target.url()),
                ("INPUT_GITHUB-TOKEN", GH_TOKEN.to_string()),
                ("INPUT_CLOUDFLARE-API-TOKEN", CF_TOKEN.to_string()),
                (
                    "TARGET_SUPABASE_URL",
                    "https://target.supabase.co".to_string(),
                ),
                ("TARGET_SUPABASE_ANON_KEY", TARGET_ANON.to_string()),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );
        run_cutover(s.work.path(), &[], &env)
    };
    let files = ActionsFiles::new();
    let out = run_cf("cutover", &files);
    let summary = files.read("summary.md");
    assert_eq!(out.status.code(), Some(0), "{}\n{summary}", text(&out));
    let r = row(&summary, "Frontend switched to the target");
    assert!(
        r.contains("next production deployment")
            && r.contains("VITE_SUPABASE_ANON_KEY were not readable"),
        "{r}"
    );
    let patch: Value = cf
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.method.as_str() == "PATCH")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .unwrap();
    let vars = &patch["deployment_configs"]["production"]["env_vars"];
    assert_eq!(
        vars["VITE_SUPABASE_URL"]["value"],
        "https://target.supabase.co"
    );
    assert_eq!(vars["VITE_SUPABASE_ANON_KEY"]["type"], "secret_text");

    cf.reset().await;
    Mock::given(method("GET"))
        .and(path(project_path))
        .respond_with(ResponseTemplate::new(200).set_body_json(project("dep_new")))
        .mount(&cf)
        .await;
    Mock::given(method("PATCH"))
        .and(path(project_path))
        .respond_with(ResponseTemplate::new(200).set_body_json(project("dep_new")))
        .mount(&cf)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{project_path}/deployments/dep_old/rollback")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"success": true, "errors": [], "result": {"id": "dep_old"}})),
        )
        .expect(1)
        .mount(&cf)
        .await;
    let files = ActionsFiles::new();
    let out = run_cf("rollback", &files);
    let summary = files.read("summary.md");
    assert_eq!(out.status.code(), Some(0), "{}\n{summary}", text(&out));
    let r = row(&summary, "Frontend back to the source");
    assert!(r.starts_with("| ⚠️") && r.contains("secret_text"), "{r}");
    let patch: Value = cf
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.method.as_str() == "PATCH")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .unwrap();
    let vars = &patch["deployment_configs"]["production"]["env_vars"];
    assert_eq!(
        vars["VITE_SUPABASE_URL"],
        json!({"type": "plain_text", "value": "https://source.supabase.co"})
    );
    assert_eq!(s.guards(&s.pair.source).await, source_before);
    assert_no_leak(
        CF_TOKEN,
        &out,
        &files,
        &s.work.path().join("cutover-report.json"),
    );
}

/// A connection to `db` as PostgREST makes it: `authenticator`, then
/// `set role service_role`.
async fn as_service_role(db: &TestDb) -> sqlx::PgConnection {
    use sqlx::Connection;
    let mut url = url::Url::parse(&db.url()).unwrap();
    url.set_username("authenticator").unwrap();
    let mut conn = sqlx::PgConnection::connect(url.as_str()).await.unwrap();
    sqlx::raw_sql("set role service_role")
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

/// Runs `sql` on a fresh connection and returns the error text, if any.
async fn write_error(db: &TestDb, sql: &str) -> Option<String> {
    let mut conn = db.connect().await;
    sqlx::raw_sql(sql).execute(&mut conn).await.err().map(|e| {
        let code = e
            .as_database_error()
            .and_then(|d| d.code().map(|c| c.to_string()))
            .unwrap_or_default();
        format!("{e} [{code}]")
    })
}

#[tokio::test]
async fn copy_mode_cutover_freezes_the_source_for_every_role_and_rollback_lifts_it() {
    let gh = github(
        environment(reviewers()),
        json!([approval("approved", "octocat", "Ship it!")]),
        "release-manager",
    )
    .await;
    let vercel = vercel(200).await;
    let site = site().await;
    let frontend = format!(
        "[frontend]\nprovider = \"vercel\"\nproject = \"ops-portal\"\nurl = \"{}\"\napi_url = \"{}\"\ndeploy_timeout_seconds = 5\n",
        site.uri(),
        vercel.uri()
    );
    let s = setup_with_tables(false, &frontend, ORDERS_SQL).await;
    let files = ActionsFiles::new();
    let out = s.run(&files, "cutover", &gh.uri());
    let summary = files.read("summary.md");
    assert_eq!(out.status.code(), Some(0), "{}\n{summary}", text(&out));
    assert!(
        row(&summary, "Writes to the source frozen").contains("2 tables"),
        "{summary}"
    );
    assert!(
        row(&summary, "Source unchanged since the copy").contains("counts and checksums equal"),
        "{summary}"
    );
    assert!(summary.contains("Write freeze"), "{summary}");
    assert!(
        summary.contains("Writes refused on the source"),
        "{summary}"
    );

    // Every writer meets the freeze: the owner, a replica-role session, the
    // API's service_role, TRUNCATE; readers are not blocked.
    for sql in [
        "insert into public.orders (note) values ('late')",
        "set session_replication_role = replica; update public.orders set note = 'x' where id = 1",
        "delete from public.order_items where id = 1",
        "truncate public.order_items",
    ] {
        let err = write_error(&s.pair.source, sql).await;
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("frozen") && e.contains("25006")),
            "{sql}: {err:?}"
        );
    }
    let mut api = as_service_role(&s.pair.source).await;
    let err = sqlx::raw_sql("insert into public.orders (note) values ('from the API')")
        .execute(&mut api)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("public.orders is frozen"), "{err}");
    assert_eq!(
        s.pair
            .source
            .scalar("select count(*)::text from public.orders")
            .await
            .as_deref(),
        Some("50")
    );
    // The target takes writes, and its sequences follow the source's.
    s.pair
        .target
        .exec("insert into public.orders (note) values ('first on the new side')")
        .await;
    assert_eq!(
        s.pair
            .target
            .scalar("select max(id)::text from public.orders")
            .await
            .as_deref(),
        Some("51")
    );
    let ledger = ledger_dump(&s.pair.target, "cutover").await;
    assert!(ledger.contains("write-freeze"), "{ledger}");
    assert_eq!(
        s.pair
            .target
            .scalar("select count(*)::text from cutover.freezes where lifted_at is null")
            .await
            .as_deref(),
        Some("1")
    );

    // Rollback lifts the freeze and says so.
    let vercel_after = vercel_mocks_after_cutover(&vercel).await;
    let _ = vercel_after;
    let files = ActionsFiles::new();
    let out = s.run(&files, "rollback", &gh.uri());
    let summary = files.read("summary.md");
    assert_eq!(out.status.code(), Some(0), "{}\n{summary}", text(&out));
    assert!(
        row(&summary, "Write freeze on the source lifted").contains("2 tables take writes again"),
        "{summary}"
    );
    assert_eq!(
        write_error(
            &s.pair.source,
            "insert into public.orders (note) values ('after rollback')"
        )
        .await,
        None
    );
    assert_eq!(
        s.pair
            .target
            .scalar("select count(*)::text from cutover.freezes where lifted_at is null")
            .await
            .as_deref(),
        Some("0")
    );
}

#[tokio::test]
async fn copy_mode_cutover_blocks_when_the_source_changed_after_validate() {
    let gh = github(
        environment(reviewers()),
        json!([approval("approved", "octocat", "Ship it!")]),
        "release-manager",
    )
    .await;
    let vercel = vercel(200).await;
    let site = site().await;
    let s = setup_with_tables(
        false,
        &format!(
            "[frontend]\nprovider = \"vercel\"\nproject = \"ops-portal\"\nurl = \"{}\"\napi_url = \"{}\"\ndeploy_timeout_seconds = 5\n",
            site.uri(),
            vercel.uri()
        ),
        ORDERS_SQL,
    )
    .await;
    // The live app writes after validate, through the API.
    let mut api = as_service_role(&s.pair.source).await;
    sqlx::raw_sql(
        "insert into public.orders (note) select 'late ' || g from generate_series(1, 3) g;
         update public.order_items set qty = 99 where id = 7;",
    )
    .execute(&mut api)
    .await
    .unwrap();
    let source_guards = s.guards(&s.pair.source).await;
    let files = ActionsFiles::new();
    let out = s.run(&files, "cutover", &gh.uri());
    let summary = files.read("summary.md");
    assert_eq!(out.status.code(), Some(3), "{}\n{summary}", text(&out));
    let blocked = row(&summary, "Source unchanged since the copy");
    assert!(
        blocked.contains("public.orders (+3 rows on the source)")
            && blocked.contains("public.order_items (content changed)"),
        "{summary}"
    );
    assert!(summary.contains("Undo: write freeze lifted"), "{summary}");
    // Nothing switched: frontend untouched, guards as they were, the source
    // takes writes, every acknowledged write still there.
    assert!(patches(&vercel).await.is_empty());
    assert_eq!(s.guards(&s.pair.source).await, source_guards);
    assert_eq!(
        write_error(
            &s.pair.source,
            "insert into public.orders (note) values ('still live')"
        )
        .await,
        None
    );
    assert_eq!(
        s.pair
            .source
            .scalar("select count(*)::text from public.orders")
            .await
            .as_deref(),
        Some("54")
    );
    assert_eq!(
        s.pair
            .target
            .scalar("select count(*)::text from cutover.freezes where lifted_at is null")
            .await
            .as_deref(),
        Some("0")
    );
}

#[tokio::test]
async fn a_writer_queued_behind_the_freeze_lock_is_refused_and_holders_are_named() {
    use cutover::manifest::QualifiedName;
    use cutover::pg::{Database, Side};
    use sqlx::Connection;
    let db = TestDb::new("freeze").await;
    db.exec(ORDERS_SQL).await;
    let redactor = cutover::redact::Redactor::new();
    let source = Database::connect(&db.url(), Side::Source, false, 4, &redactor)
        .await
        .unwrap();
    let tables = vec![
        QualifiedName::parse("public.orders").unwrap(),
        QualifiedName::parse("public.order_items").unwrap(),
    ];
    // A transaction in flight holds the table; the freeze waits for it.
    let mut holder = db.connect().await;
    sqlx::raw_sql("begin; insert into public.orders (note) values ('in flight')")
        .execute(&mut holder)
        .await
        .unwrap();
    let freeze = source.freeze_writes(
        "cutover",
        &tables,
        std::time::Duration::from_secs(20),
        "go to the target",
    );
    let url = db.url();
    let orchestrate = async {
        // Wait until the freeze waits on the lock, then queue a writer behind it.
        let mut watcher = sqlx::PgConnection::connect(&url).await.unwrap();
        for _ in 0..400 {
            let waiting: bool = sqlx::query_scalar(
                "select exists (select 1 from pg_locks where not granted and mode = 'ExclusiveLock'
                                 and relation = 'public.orders'::regclass)",
            )
            .fetch_one(&mut watcher)
            .await
            .unwrap();
            if waiting {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        let queued = async {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query("insert into public.orders (note) values ('queued')")
                .execute(&mut conn)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let release = async {
            for _ in 0..400 {
                let waits: i64 = sqlx::query_scalar(
                    "select count(*) from pg_locks where not granted
                       and relation = 'public.orders'::regclass",
                )
                .fetch_one(&mut watcher)
                .await
                .unwrap();
                if waits >= 2 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            // The writer in flight commits: its write is acknowledged and kept.
            sqlx::query("commit").execute(&mut holder).await.unwrap();
        };
        tokio::join!(queued, release).0
    };
    let (outcome, queued) = tokio::join!(freeze, orchestrate);
    let outcome = outcome.unwrap();
    assert_eq!(outcome.newly_frozen.len(), 2);
    assert!(
        queued.as_ref().is_err_and(|e| e.contains("frozen")),
        "the queued writer must be refused, got {queued:?}"
    );
    assert_eq!(
        db.scalar("select string_agg(note, ',' order by id) from public.orders where id > 50")
            .await
            .as_deref(),
        Some("in flight")
    );
    // A second freeze keeps the first; a long transaction makes a freeze
    // give up after its timeout, naming the session, changing nothing.
    source.lift_freeze().await.unwrap();
    sqlx::raw_sql("begin; delete from public.order_items where id = 1")
        .execute(&mut holder)
        .await
        .unwrap();
    let err = source
        .freeze_writes(
            "cutover",
            &tables,
            std::time::Duration::from_millis(300),
            "x",
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("holding the tables: pid"), "{err}");
    assert!(source.frozen_tables().await.unwrap().is_empty());
    sqlx::raw_sql("rollback")
        .execute(&mut holder)
        .await
        .unwrap();
}
