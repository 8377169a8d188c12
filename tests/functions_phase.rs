//! End to end: the built binary deploys the examples' Edge Functions to a
//! fake Management API that records every upload, then runs the smoke
//! invocations against a fake functions host.

use crate::common;
use crate::fake_supabase;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::*;
use fake_supabase::*;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const INGEST_KEY: &str = "ingest-key-Zq81x-live-0042";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// A workspace with an example's `supabase/` folder and `manifest`.
fn workspace(example: &str, manifest: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &repo_root().join("examples").join(example).join("supabase"),
        &dir.path().join("supabase"),
    );
    std::fs::write(dir.path().join("cutover.toml"), manifest).unwrap();
    dir
}

fn env_for(dir: &Path, api: &str, token: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        (
            "CUTOVER_MANIFEST".into(),
            dir.join("cutover.toml").display().to_string(),
        ),
        (
            "CUTOVER_REPORT_FILE".into(),
            dir.join("report.json").display().to_string(),
        ),
        (
            "CUTOVER_SUMMARY_FILE".into(),
            dir.join("summary.md").display().to_string(),
        ),
        ("CUTOVER_TARGET_PROJECT_REF".into(), TARGET.into()),
        ("CUTOVER_SOURCE_PROJECT_REF".into(), SOURCE.into()),
        ("CUTOVER_SUPABASE_ACCESS_TOKEN".into(), token.into()),
        ("CUTOVER_SUPABASE_API_URL".into(), api.into()),
        // Milliseconds of back-off, so retries do not slow the suite.
        ("CUTOVER_API_RETRY_BASE_MS".into(), "2".into()),
        ("CUTOVER_API_MAX_DELAY_MS".into(), "50".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// Relative module specifiers in a source file, found independently of
/// cutover's own matcher (line-based, static, re-export and dynamic forms).
fn relative_imports(source: &str) -> Vec<String> {
    let re = regex::Regex::new(r#"(?:from\s*|import\s*\(?\s*)["'](\.{1,2}/[^"']+)["']"#).unwrap();
    re.captures_iter(source).map(|c| c[1].to_string()).collect()
}

fn join(file: &str, spec: &str) -> String {
    let mut parts: Vec<&str> = file.split('/').collect();
    parts.pop();
    for seg in spec.split('/') {
        match seg {
            "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

/// Every relative import of every uploaded file is uploaded too.
fn assert_closed(deploy: &Deploy) {
    for (name, content) in &deploy.files {
        for spec in relative_imports(content) {
            let target = join(name, &spec);
            assert!(
                deploy.files.contains_key(&target),
                "{}: {name} imports {spec} ({target}) but it was not uploaded; got {:?}",
                deploy.slug,
                deploy.files.keys().collect::<Vec<_>>()
            );
        }
    }
}

fn deploys_by_slug(api: &FakeApi) -> BTreeMap<String, Deploy> {
    api.with(|s| {
        s.deploys
            .iter()
            .map(|d| (d.slug.clone(), d.clone()))
            .collect()
    })
}

fn names(d: &Deploy) -> BTreeSet<String> {
    d.files.keys().cloned().collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_portal_functions_upload_their_shared_imports_and_never_the_excluded_one() {
    let api = FakeApi::start().await;
    // whatsapp-send is already deployed at v4 on the target.
    api.with(|s| {
        s.functions.entry(TARGET.into()).or_default().insert(
            "whatsapp-send".into(),
            function_json("whatsapp-send", 4, "ACTIVE", false, "x"),
        )
    });
    // The first deploy is rate limited with Retry-After: it must be retried.
    api.fault(
        "POST",
        "/functions/deploy",
        429,
        Some("1"),
        r#"{"message":"Too many requests"}"#,
    );
    let functions_host = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/google-drive-token"))
        .and(header("x-api-key", INGEST_KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"ok": true})))
        .expect(1)
        .mount(&functions_host)
        .await;
    Mock::given(method("POST"))
        .and(path("/whatsapp-send"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"dry_run": true})),
        )
        .expect(1)
        .mount(&functions_host)
        .await;
    let manifest = r#"
[project]
name = "ops"

[functions]
exclude = ["test-create-user"]
base_url = "${FUNCTIONS_URL}"

[[functions.smoke]]
name = "google-drive-token returns 200"
function = "google-drive-token"
headers = { x-api-key = "${INGEST_API_KEY}" }
expect_status = 200

[[functions.smoke]]
name = "whatsapp-send with messaging disabled does not return 500"
function = "whatsapp-send"
body = '{"dry_run": true}'
expect_not_status = 500
"#;
    let dir = workspace("ops-portal", manifest);
    let files = ActionsFiles::new();
    let out = run_cutover(
        dir.path(),
        &["functions"],
        &env_for(
            dir.path(),
            &api.url(),
            TOKEN,
            &[
                ("FUNCTIONS_URL", &functions_host.uri()),
                ("INGEST_API_KEY", INGEST_KEY),
            ],
        ),
    );
    let log = text(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");

    let deploys = deploys_by_slug(&api);
    assert_eq!(
        deploys.keys().cloned().collect::<Vec<_>>(),
        [
            "create-user",
            "database-backup",
            "google-drive-token",
            "google-drive-upload",
            "whatsapp-retry",
            "whatsapp-send"
        ]
    );
    assert!(!deploys.contains_key("test-create-user"));
    assert!(api.with(|s| {
        s.deploys
            .iter()
            .all(|d| !d.files.keys().any(|f| f.contains("test-create-user")))
    }));
    for d in deploys.values() {
        let entry = format!("supabase/functions/{}/index.ts", d.slug);
        assert_eq!(d.metadata["entrypoint_path"], entry.as_str());
        assert_eq!(
            d.metadata["import_map_path"],
            "supabase/functions/deno.json"
        );
        assert_eq!(d.metadata["name"], d.slug.as_str());
        assert!(d.files.contains_key(&entry), "{}", d.slug);
        assert!(d.files.contains_key("supabase/functions/deno.json"));
        assert_closed(d);
    }
    // Exactly what each needs, nothing unrelated.
    assert_eq!(
        names(&deploys["google-drive-token"]),
        set(&[
            "supabase/functions/_shared/cors.ts",
            "supabase/functions/deno.json",
            "supabase/functions/google-drive-token/index.ts"
        ])
    );
    assert_eq!(
        names(&deploys["whatsapp-send"]),
        set(&[
            "supabase/functions/_shared/cors.ts",
            "supabase/functions/_shared/supabase-client.ts",
            "supabase/functions/_shared/whatsapp.ts",
            "supabase/functions/deno.json",
            "supabase/functions/whatsapp-send/index.ts"
        ])
    );
    assert!(
        names(&deploys["google-drive-upload"])
            .contains("supabase/functions/google-drive-upload/drive.ts")
    );
    // verify_jwt from supabase/config.toml.
    assert_eq!(deploys["whatsapp-send"].metadata["verify_jwt"], false);
    assert_eq!(deploys["google-drive-token"].metadata["verify_jwt"], true);
    // The uploaded bytes are the files' bytes.
    let cors =
        std::fs::read_to_string(dir.path().join("supabase/functions/_shared/cors.ts")).unwrap();
    assert_eq!(
        deploys["create-user"].files["supabase/functions/_shared/cors.ts"],
        cors
    );

    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(summary.contains("v4 → v5"), "{summary}");
    assert!(summary.contains("new → v1"), "{summary}");
    assert!(summary.contains("ACTIVE"), "{summary}");
    assert!(
        summary.contains("google-drive-token returns 200"),
        "{summary}"
    );
    assert!(
        summary.contains("test-create-user"),
        "the exclusion is reported: {summary}"
    );
    assert!(
        api.count("POST", "/functions/deploy") >= 7,
        "the 429 was retried"
    );
    assert_no_leak(INGEST_KEY, &out, &files, &dir.path().join("report.json"));
    assert_no_leak(TOKEN, &out, &files, &dir.path().join("report.json"));
    assert!(!summary.contains(INGEST_KEY) && !summary.contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savings_groups_functions_deploy_with_parsers_and_csv() {
    let api = FakeApi::start().await;
    let dir = workspace("savings-groups", "[project]\nname = \"sacco\"\n");
    let out = run_cutover(
        dir.path(),
        &["functions"],
        &env_for(dir.path(), &api.url(), TOKEN, &[]),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let deploys = deploys_by_slug(&api);
    assert_eq!(deploys.len(), 5);
    for d in deploys.values() {
        assert_closed(d);
    }
    assert_eq!(
        names(&deploys["parse-momo-sms"]),
        set(&[
            "supabase/functions/_shared/cors.ts",
            "supabase/functions/_shared/supabase-client.ts",
            "supabase/functions/deno.json",
            "supabase/functions/parse-momo-sms/index.ts",
            "supabase/functions/parse-momo-sms/parsers.ts"
        ])
    );
    assert!(names(&deploys["bulk-import-groups"]).contains("supabase/functions/_shared/csv.ts"));
    assert!(!names(&deploys["sms-ingest"]).contains("supabase/functions/_shared/csv.ts"));
    assert_eq!(deploys["sms-ingest"].metadata["verify_jwt"], false);
}

/// Writes a dozen functions that import shared code every way Deno allows.
fn dozen_functions(root: &Path) {
    let f = root.join("supabase/functions");
    let w = |p: &str, t: &str| {
        let p = f.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, t).unwrap();
    };
    w(
        "deno.json",
        r#"{
  // aliases, as deno.jsonc allows comments
  "imports": { "@shared/": "./_shared/", "@supabase/supabase-js": "jsr:@supabase/supabase-js@2" }
}"#,
    );
    w("_shared/cors.ts", "export const cors = {};\n");
    w(
        "_shared/db.ts",
        "import { createClient } from \"@supabase/supabase-js\";\nimport { cors } from \"./cors.ts\";\nexport const db = () => createClient(\"u\", \"k\");\n",
    );
    w(
        "_shared/all.ts",
        "export * from \"./cors.ts\";\nexport * from './util/strings.ts';\n",
    );
    w(
        "_shared/util/strings.ts",
        "export const s = (x: string) => x.trim();\n",
    );
    w("_shared/lazy.ts", "export const heavy = 1;\n");
    w("_shared/types.ts", "export type Row = { id: number };\n");
    w("_shared/never-imported.ts", "export const nope = 1;\n");
    let bodies = [
        ("f01", "import { cors } from \"../_shared/cors.ts\";\n"),
        ("f02", "import {\n  db,\n} from '../_shared/db.ts';\n"),
        ("f03", "export * from \"../_shared/all.ts\";\n"),
        ("f04", "const m = await import(\"../_shared/lazy.ts\");\n"),
        ("f05", "import type { Row } from \"../_shared/types.ts\";\n"),
        ("f06", "import { cors } from \"@shared/cors.ts\";\n"),
        ("f07", "import { helper } from \"./helper.ts\";\n"),
        ("f08", "import \"../_shared/util/strings.ts\";\n"),
        ("f09", "export { db } from \"../_shared/db.ts\";\n"),
        ("f10", "import * as all from \"@shared/all.ts\";\n"),
        ("f11", "Deno.serve(() => new Response(\"ok\"));\n"),
        (
            "f12",
            "import { cors } from \"../_shared/cors.ts\";\nimport { db } from \"../_shared/db.ts\";\n",
        ),
    ];
    for (name, body) in bodies {
        w(&format!("{name}/index.ts"), body);
    }
    w(
        "f07/helper.ts",
        "import { s } from \"../_shared/util/strings.ts\";\nexport const helper = s;\n",
    );
    w(
        "test-only/index.ts",
        "import { nope } from \"../_shared/never-imported.ts\";\n",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dozen_functions_get_exactly_the_files_they_import() {
    let api = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    dozen_functions(dir.path());
    std::fs::write(
        dir.path().join("cutover.toml"),
        "[project]\nname = \"dozen\"\n[functions]\nexclude = [\"test-only\"]\nparallel = 4\n",
    )
    .unwrap();
    let out = run_cutover(
        dir.path(),
        &["functions"],
        &env_for(dir.path(), &api.url(), TOKEN, &[]),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let deploys = deploys_by_slug(&api);
    assert_eq!(deploys.len(), 12);
    assert!(!deploys.contains_key("test-only"));
    let sh = |p: &str| format!("supabase/functions/_shared/{p}");
    let expect = |slug: &str, shared: &[&str], own: &[&str]| {
        let mut want: BTreeSet<String> = shared.iter().map(|p| sh(p)).collect();
        want.insert("supabase/functions/deno.json".into());
        want.insert(format!("supabase/functions/{slug}/index.ts"));
        for o in own {
            want.insert(format!("supabase/functions/{slug}/{o}"));
        }
        assert_eq!(names(&deploys[slug]), want, "{slug}");
    };
    expect("f01", &["cors.ts"], &[]);
    expect("f02", &["db.ts", "cors.ts"], &[]);
    expect("f03", &["all.ts", "cors.ts", "util/strings.ts"], &[]);
    expect("f04", &["lazy.ts"], &[]);
    expect("f05", &["types.ts"], &[]);
    expect("f06", &["cors.ts"], &[]);
    expect("f07", &["util/strings.ts"], &["helper.ts"]);
    expect("f08", &["util/strings.ts"], &[]);
    expect("f09", &["db.ts", "cors.ts"], &[]);
    expect("f10", &["all.ts", "cors.ts", "util/strings.ts"], &[]);
    expect("f11", &[], &[]);
    expect("f12", &["cors.ts", "db.ts"], &[]);
    assert!(api.with(|s| {
        s.deploys
            .iter()
            .all(|d| !d.files.keys().any(|f| f.contains("never-imported")))
    }));
    for d in deploys.values() {
        assert_closed(d);
        assert_eq!(d.metadata["verify_jwt"], true, "platform default");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_fails_fast_naming_the_input_not_the_value() {
    let api = FakeApi::start().await;
    let dir = workspace("savings-groups", "[project]\nname = \"sacco\"\n");
    let wrong = "sbp_ExpiredToken_99887766554433";
    let files = ActionsFiles::new();
    let out = run_cutover(
        dir.path(),
        &["functions"],
        &env_for(dir.path(), &api.url(), wrong, &[]),
    );
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains("401"), "{log}");
    assert!(
        log.contains("CUTOVER_SUPABASE_ACCESS_TOKEN"),
        "names the input: {log}"
    );
    assert_no_leak(wrong, &out, &files, &dir.path().join("report.json"));
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(!summary.contains(wrong));
    assert_eq!(
        api.with(|s| s.log.len()),
        1,
        "no retries, no deploys after a 401"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_project_ref_and_token_are_named() {
    let dir = workspace("savings-groups", "[project]\nname = \"sacco\"\n");
    let env: Vec<(String, String)> = vec![
        (
            "CUTOVER_MANIFEST".into(),
            dir.path().join("cutover.toml").display().to_string(),
        ),
        (
            "CUTOVER_REPORT_FILE".into(),
            dir.path().join("report.json").display().to_string(),
        ),
    ];
    let out = run_cutover(dir.path(), &["functions"], &env);
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains("target-project-ref and supabase-access-token"),
        "{log}"
    );
    assert!(log.contains("CUTOVER_TARGET_PROJECT_REF"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failed_deploy_is_reported_and_the_others_finish() {
    let api = FakeApi::start().await;
    api.with(|s| s.broken_slugs.push("sms-ingest".into()));
    let dir = workspace("savings-groups", "[project]\nname = \"sacco\"\n");
    let out = run_cutover(
        dir.path(),
        &["functions"],
        &env_for(dir.path(), &api.url(), TOKEN, &[]),
    );
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    let active = api.with(|s| {
        s.functions
            .get(TARGET)
            .map(|m| m.values().filter(|f| f["status"] == "ACTIVE").count())
            .unwrap_or(0)
    });
    assert_eq!(active, 4, "the other four were deployed");
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(
        summary.contains("1 of 5 functions failed (sms-ingest)"),
        "{summary}"
    );
    assert!(
        summary.contains("Failed to deploy function"),
        "the API's message: {summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_function_fails_the_phase() {
    let api = FakeApi::start().await;
    api.with(|s| s.throttled_slugs.push("staff-invite".into()));
    let dir = workspace("savings-groups", "[project]\nname = \"sacco\"\n");
    let out = run_cutover(
        dir.path(),
        &["functions"],
        &env_for(dir.path(), &api.url(), TOKEN, &[]),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(summary.contains("status THROTTLED"), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_deploys_nothing_and_invokes_nothing() {
    let api = FakeApi::start().await;
    let dir = workspace(
        "ops-portal",
        "[project]\nname = \"ops\"\n[functions]\nexclude = [\"test-create-user\"]\n[[functions.smoke]]\nname = \"x\"\nfunction = \"whatsapp-send\"\n",
    );
    let out = run_cutover(
        dir.path(),
        &["functions", "--dry-run"],
        &env_for(dir.path(), &api.url(), TOKEN, &[]),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(api.count("POST", "/functions/deploy"), 0);
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(summary.contains("would deploy 6 functions"), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_smoke_invocation_fails_the_phase() {
    let api = FakeApi::start().await;
    let functions_host = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/sms-ingest"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&functions_host)
        .await;
    let manifest = r#"
[project]
name = "sacco"
[functions]
base_url = "${FUNCTIONS_URL}"
[[functions.smoke]]
name = "sms-ingest does not return 500"
function = "sms-ingest"
expect_not_status = 500
"#;
    let dir = workspace("savings-groups", manifest);
    let out = run_cutover(
        dir.path(),
        &["functions"],
        &env_for(
            dir.path(),
            &api.url(),
            TOKEN,
            &[("FUNCTIONS_URL", &functions_host.uri())],
        ),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(summary.contains("POST /sms-ingest → 500"), "{summary}");
}

/// The bundle the target served before the deploy: binary, as an eszip is.
const OLD_BUNDLE: &[u8] = b"ESZIP2\x00\x01\xffprevious whatsapp-send v4 \x00bundle";

const ROLLBACK_MANIFEST: &str = r#"
[project]
name = "ops"

[functions]
exclude = ["test-create-user"]
base_url = "${FUNCTIONS_URL}"

[[functions.smoke]]
name = "whatsapp-send answers"
function = "whatsapp-send"
body = '{"dry_run": true}'
expect_status = 200
"#;

/// A fake API where whatsapp-send is live at v4 with [`OLD_BUNDLE`], and a
/// functions host that answers the smoke invocation.
async fn live_whatsapp_send() -> (FakeApi, MockServer) {
    let api = FakeApi::start().await;
    api.with(|s| {
        s.functions.entry(TARGET.into()).or_default().insert(
            "whatsapp-send".into(),
            function_json("whatsapp-send", 4, "ACTIVE", false, "x"),
        );
        s.bodies
            .insert((TARGET.into(), "whatsapp-send".into()), OLD_BUNDLE.to_vec());
    });
    let functions_host = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/whatsapp-send"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"ok": true})))
        .mount(&functions_host)
        .await;
    (api, functions_host)
}

/// [`live_whatsapp_send`] with a target database for the ledger, the ops
/// portal's workspace, and the environment of a run against both.
struct RollbackSetup {
    api: FakeApi,
    functions_host: MockServer,
    target: TestDb,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

async fn rollback_setup(label: &str) -> RollbackSetup {
    let (api, functions_host) = live_whatsapp_send().await;
    let target = TestDb::new(label).await;
    let dir = workspace("ops-portal", ROLLBACK_MANIFEST);
    let env = env_for(
        dir.path(),
        &api.url(),
        TOKEN,
        &[
            ("FUNCTIONS_URL", &functions_host.uri()),
            ("CUTOVER_TARGET_DB_URL", &target.url()),
        ],
    );
    RollbackSetup {
        api,
        functions_host,
        target,
        dir,
        env,
    }
}

fn served(api: &FakeApi, slug: &str) -> (i64, Vec<u8>) {
    api.with(|s| {
        (
            s.functions[TARGET][slug]["version"].as_i64().unwrap(),
            s.bodies[&(TARGET.to_string(), slug.to_string())].clone(),
        )
    })
}

#[tokio::test]
async fn rollback_redeploys_the_saved_bundle_byte_for_byte_and_only_the_function_named() {
    let RollbackSetup {
        api,
        functions_host,
        target,
        dir,
        env,
    } = rollback_setup("fnrb").await;
    let out = run_cutover(dir.path(), &["functions"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (version, body) = served(&api, "whatsapp-send");
    assert_eq!(version, 5);
    assert_ne!(body, OLD_BUNDLE, "the deploy replaced the bundle");
    let old_sha = sha256_bytes(OLD_BUNDLE);
    // The ledger keeps the old bundle and its sha-256; the backup folder a copy.
    assert_eq!(
        target
            .scalar("select slug || ' v' || version || ' ' || body_sha256 || ' ' || (sha256(body) = decode(body_sha256, 'hex')) from cutover.function_snapshots")
            .await
            .as_deref(),
        Some(format!("whatsapp-send v4 {old_sha} true").as_str())
    );
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(
        summary.contains("Deployments saved for rollback"),
        "{summary}"
    );
    let saved_files: Vec<_> = walk(&dir.path().join("cutover-backups"));
    let saved = saved_files
        .iter()
        .find(|p| p.ends_with("whatsapp-send-v4.eszip"))
        .unwrap_or_else(|| panic!("no saved bundle file among {saved_files:?}"));
    assert_eq!(std::fs::read(saved).unwrap(), OLD_BUNDLE);

    // Level 2 for one function: back to the saved bundle.
    let mut rollback_env = env.clone();
    rollback_env.push(("CUTOVER_ROLLBACK_FUNCTIONS".into(), "whatsapp-send".into()));
    let out = run_cutover(dir.path(), &["rollback"], &rollback_env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let patches = api.with(|s| s.body_patches.clone());
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert_eq!(patches[0].slug, "whatsapp-send");
    assert_eq!(
        patches[0].sha256, old_sha,
        "the API received the saved bytes"
    );
    assert!(
        patches[0].query.contains("verify_jwt=false"),
        "{}",
        patches[0].query
    );
    let (version, body) = served(&api, "whatsapp-send");
    assert_eq!(version, 6, "the version moved on");
    assert_eq!(body, OLD_BUNDLE);
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(summary.contains("Edge Functions rolled back"), "{summary}");
    assert!(summary.contains("(same)"), "{summary}");
    assert_eq!(
        functions_host.received_requests().await.unwrap().len(),
        2,
        "the smoke invocation ran after the deploy and after the rollback"
    );
    assert_eq!(
        target
            .scalar("select count(*)::text from cutover.function_snapshots where restored_at is not null")
            .await
            .as_deref(),
        Some("1")
    );

    // Again: it already serves the saved bundle, so nothing is redeployed.
    let out = run_cutover(dir.path(), &["rollback"], &rollback_env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(api.with(|s| s.body_patches.len()), 1);
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(
        summary.contains("already serves the saved bundle"),
        "{summary}"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[tokio::test]
async fn rollback_of_a_function_never_saved_or_a_bad_name_changes_nothing() {
    let RollbackSetup {
        api,
        functions_host: _functions_host,
        target: _target,
        dir,
        env,
    } = rollback_setup("fnrbbad").await;
    let out = run_cutover(dir.path(), &["functions"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // google-drive-token was deployed for the first time: nothing to go back to.
    for (names, expected) in [
        (
            "whatsapp-send,google-drive-token",
            "no deployment of it saved before a deploy",
        ),
        ("whatsapp-send;drop", "which is not a function name"),
    ] {
        let mut e = env.clone();
        e.push(("CUTOVER_ROLLBACK_FUNCTIONS".into(), names.into()));
        let out = run_cutover(dir.path(), &["rollback"], &e);
        let all = text(&out);
        assert_ne!(out.status.code(), Some(0), "{all}");
        assert!(all.contains(expected), "{all}");
        assert!(all.contains("CUTOVER_ROLLBACK_FUNCTIONS"), "{all}");
        assert_eq!(api.with(|s| s.body_patches.len()), 0, "nothing redeployed");
    }
    assert_eq!(served(&api, "whatsapp-send").0, 5);
}

#[tokio::test]
async fn a_function_whose_bundle_cannot_be_saved_is_not_replaced() {
    let RollbackSetup {
        api,
        functions_host: _functions_host,
        target: _target,
        dir,
        env,
    } = rollback_setup("fnsave").await;
    for _ in 0..8 {
        api.fault(
            "GET",
            "/whatsapp-send/body",
            500,
            None,
            r#"{"message":"Failed to retrieve function body with given slug"}"#,
        );
    }
    let out = run_cutover(dir.path(), &["functions"], &env);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(
        summary.contains("not saved, so not deployed: whatsapp-send"),
        "{summary}"
    );
    let (version, body) = served(&api, "whatsapp-send");
    assert_eq!(
        (version, body.as_slice()),
        (4, OLD_BUNDLE),
        "left as it was"
    );
    assert!(
        deploys_by_slug(&api).contains_key("google-drive-token"),
        "the others were still deployed"
    );
}

#[tokio::test]
async fn rollback_to_a_git_ref_deploys_that_refs_function_files() {
    let RollbackSetup {
        api,
        functions_host: _functions_host,
        target: _target,
        dir,
        env,
    } = rollback_setup("fnref").await;
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(["-c", "user.email=t@example.com", "-c", "user.name=t"])
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "v1.4.0"]);
    git(&["tag", "v1.4.0"]);
    let entry = dir.path().join("supabase/functions/whatsapp-send/index.ts");
    let original = std::fs::read_to_string(&entry).unwrap();
    std::fs::write(&entry, format!("{original}\n// v1.5.0: a broken change\n")).unwrap();
    let out = run_cutover(dir.path(), &["functions"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut e = env.clone();
    e.push(("CUTOVER_ROLLBACK_FUNCTIONS".into(), "whatsapp-send".into()));
    e.push(("CUTOVER_ROLLBACK_FUNCTIONS_REF".into(), "v1.4.0".into()));
    let out = run_cutover(dir.path(), &["rollback"], &e);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let deploys = api.with(|s| s.deploys.clone());
    let last = deploys.last().unwrap();
    assert_eq!(last.slug, "whatsapp-send");
    let uploaded = last
        .files
        .iter()
        .find(|(name, _)| name.ends_with("whatsapp-send/index.ts"))
        .map(|(_, c)| c.clone())
        .unwrap();
    assert_eq!(uploaded, original, "the tagged version was deployed");
    assert_eq!(
        deploys
            .iter()
            .filter(|d| d.slug == "google-drive-token")
            .count(),
        1,
        "only the named function was redeployed"
    );
    assert_eq!(served(&api, "whatsapp-send").0, 6);
    // A ref that does not exist is named, and nothing is deployed.
    let before = api.with(|s| s.deploys.len());
    let mut e = env.clone();
    e.push(("CUTOVER_ROLLBACK_FUNCTIONS".into(), "all".into()));
    e.push(("CUTOVER_ROLLBACK_FUNCTIONS_REF".into(), "v9.9.9".into()));
    let out = run_cutover(dir.path(), &["rollback"], &e);
    let all = text(&out);
    assert_ne!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("\"v9.9.9\", which is not a commit"), "{all}");
    assert_eq!(api.with(|s| s.deploys.len()), before);
}
