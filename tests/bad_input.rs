//! Every error a user can cause at the edges: each gets a specific message
//! naming the input and the fix, and the documented exit code.

use crate::common;

use common::*;

fn local(cwd: &std::path::Path, args: &[&str], extra: &[(&str, &str)]) -> std::process::Output {
    let env: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // Any password in a URL argument or variable is a planted secret.
    let passwords: Vec<String> = args
        .iter()
        .copied()
        .chain(extra.iter().map(|(_, v)| *v))
        .filter_map(|v| url::Url::parse(v).ok())
        .filter_map(|u| u.password().map(str::to_string))
        .collect();
    let passwords: Vec<&str> = passwords.iter().map(String::as_str).collect();
    run_and_check_leaks(cwd, args, &env, &passwords, &[])
}

fn write_manifest(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("cutover.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::create_dir_all(dir.join("supabase/migrations")).unwrap();
    path.display().to_string()
}

#[test]
fn unknown_manifest_key_exits_2_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(
        dir.path(),
        "[project]\nname = \"x\"\n\n[data]\nparalel = 4\n",
    );
    let out = local(dir.path(), &["plan", "--manifest", &manifest], &[]);
    assert_eq!(out.status.code(), Some(2));
    let log = text(&out);
    assert!(log.contains(&format!("{manifest}:5:1")), "{log}");
    assert!(log.contains("paralel"), "{log}");
}

#[test]
fn wrong_type_in_manifest_exits_2_with_an_annotation_in_actions() {
    let dir = tempfile::tempdir().unwrap();
    write_manifest(
        dir.path(),
        "[project]\nname = \"x\"\n[gate]\nfour_eyes = \"yes\"\n",
    );
    let files = ActionsFiles::new();
    let mut env = files.github_env();
    env.push(("INPUT_PHASE".into(), "preflight".into()));
    env.push((
        "INPUT_MANIFEST".into(),
        dir.path().join("cutover.toml").display().to_string(),
    ));
    let out = run_cutover(dir.path(), &[], &env);
    assert_eq!(out.status.code(), Some(2));
    let log = text(&out);
    let annotation = log
        .lines()
        .find(|l| l.starts_with("::error file="))
        .expect(&log);
    assert!(annotation.contains(",line=4,col=13::"), "{annotation}");
    assert_eq!(files.outputs()["status"], "failed");
    assert!(files.read("summary.md").contains("cutover.toml:4:13"));
}

#[test]
fn missing_manifest_names_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = local(dir.path(), &["plan"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let log = text(&out);
    assert!(
        log.contains("cannot read manifest cutover.toml") && log.contains("--manifest"),
        "{log}"
    );
}

#[test]
fn misspelt_phase_exits_2_and_suggests_the_nearest() {
    let dir = tempfile::tempdir().unwrap();
    let out = local(dir.path(), &["plan,preflihgt"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("did you mean `preflight`?"),
        "{}",
        text(&out)
    );
}

#[test]
fn misspelt_phase_input_in_actions_names_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = local(
        dir.path(),
        &[],
        &[("GITHUB_ACTIONS", "true"), ("INPUT_PHASE", "rollbak")],
    );
    assert_eq!(out.status.code(), Some(2));
    let log = text(&out);
    assert!(
        log.contains("input `phase`") && log.contains("`rollback`"),
        "{log}"
    );
    assert!(log.contains("::error::"), "{log}");
}

#[test]
fn a_usage_error_in_actions_still_writes_a_summary_and_the_status_output() {
    let dir = tempfile::tempdir().unwrap();
    let files = ActionsFiles::new();
    let mut env = files.github_env();
    env.push(("INPUT_PHASE".into(), "migrat".into()));
    env.push((
        "INPUT_TARGET-DB-URL".into(),
        "postgres://postgres:Usage-Pa55@127.0.0.1:5432/postgres".into(),
    ));
    let out = run_cutover(dir.path(), &[], &env);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(files.outputs()["status"], "failed");
    let summary = files.read("summary.md");
    assert!(
        summary.contains("unknown phase `migrat`") && summary.contains("did you mean `migrate`"),
        "{summary}"
    );
    assert!(summary.contains("input `phase`"), "{summary}");
    assert!(!summary.contains("Usage-Pa55"), "{summary}");
    let log = text(&out);
    assert!(
        !log.lines()
            .any(|l| !l.starts_with("::add-mask::") && l.contains("Usage-Pa55")),
        "{log}"
    );
    // The password is masked before anything else is printed.
    assert!(
        text(&out).contains("::add-mask::Usage-Pa55"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_phase_typo_on_the_command_line_names_the_argument_not_a_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = local(dir.path(), &["valdate"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let log = text(&out);
    assert!(log.contains("did you mean `validate`?"), "{log}");
    assert!(log.contains("the PHASES argument"), "{log}");
    assert!(!log.contains("--phase"), "{log}");
}

#[test]
fn a_number_given_as_text_in_the_manifest_reads_in_plain_words() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(
        dir.path(),
        "[project]\nname = \"x\"\n[schema]\nlock_timeout_seconds = \"30\"\n",
    );
    let out = local(dir.path(), &["plan", "--manifest", &manifest], &[]);
    assert_eq!(out.status.code(), Some(2));
    let log = text(&out);
    assert!(log.contains("cutover.toml:4:24"), "{log}");
    assert!(log.contains("expected a whole number"), "{log}");
    assert!(!log.contains("u64"), "{log}");
    assert!(
        log.contains("(no phase ran)") && !log.contains("()"),
        "{log}"
    );
}

#[test]
fn invalid_url_exits_2_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = local(
        dir.path(),
        &[
            "plan",
            "--source-db-url",
            "http://admin:Sekr1t-Value@db.example.com/postgres",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let log = text(&out);
    assert!(log.contains("--source-db-url"), "{log}");
    assert!(!log.contains("Sekr1t-Value"), "{log}");
}

#[test]
fn manifest_syntax_error_exits_2_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(dir.path(), "[project]\nname = \"x\n[data]\n");
    let out = local(dir.path(), &["plan", "--manifest", &manifest], &[]);
    assert_eq!(out.status.code(), Some(2));
    let log = text(&out);
    assert!(log.contains(&format!("{manifest}:2:")), "{log}");
}

#[test]
fn invalid_age_recipient_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(
        dir.path(),
        "[project]\nname = \"x\"\n[backup]\nage_recipients = [\"ssh-ed25519 AAAAC3Nza\"]\n",
    );
    let out = local(dir.path(), &["backup", "--manifest", &manifest], &[]);
    assert_eq!(out.status.code(), Some(2));
    let log = text(&out);
    assert!(log.contains("[backup] age_recipients[0]"), "{log}");
    assert!(log.contains("age1"), "{log}");
}

#[test]
fn secret_naming_no_variable_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(
        dir.path(),
        "[project]\nname = \"x\"\n[secrets.required]\nRESEND_API_KEY = \" \"\n",
    );
    let out = local(dir.path(), &["preflight", "--manifest", &manifest], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("[secrets.required] RESEND_API_KEY names no environment variable"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn unknown_role_names_the_input() {
    let target = TestDb::new("norole").await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(dir.path(), "[project]\nname = \"x\"\n");
    let mut source = url::Url::parse(&target.url()).unwrap();
    source.set_username("cutover_no_such_role").unwrap();
    source.set_password(Some("pw-NoRole-5521")).unwrap();
    let out = local(
        dir.path(),
        &["preflight", "--manifest", &manifest],
        &[
            ("CUTOVER_SOURCE_DB_URL", source.as_str()),
            ("CUTOVER_TARGET_DB_URL", &target.url()),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let log = text(&out);
    assert!(
        log.contains("role \"cutover_no_such_role\" does not exist"),
        "{log}"
    );
    assert!(log.contains("check the user in source-db-url"), "{log}");
}

#[tokio::test]
async fn a_locked_down_target_role_gets_failed_rows_with_the_fix_not_a_raw_sqlstate() {
    let (source, target) = tokio::join!(TestDb::new("lock_s"), TestDb::new("lock_t"));
    let role = format!("cutover_locked_{}", &target.url().len());
    let role = format!("{role}_{}", std::process::id());
    target
        .exec(&format!(
            "drop role if exists {role}; create role {role} login password 'Locked-Pa55';
             revoke all on schema auth from public;"
        ))
        .await;
    source
        .exec("create table public.orders (id int primary key)")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(
        dir.path(),
        "[project]\nname = \"x\"\n[data]\ninclude_auth = true\n",
    );
    let mut locked = url::Url::parse(&target.url()).unwrap();
    locked.set_username(&role).unwrap();
    locked.set_password(Some("Locked-Pa55")).unwrap();
    let out = local(
        dir.path(),
        &["preflight", "--manifest", &manifest],
        &[
            ("CUTOVER_SOURCE_DB_URL", &source.url()),
            ("CUTOVER_TARGET_DB_URL", locked.as_str()),
        ],
    );
    target
        .exec(&format!("drop owned by {role}; drop role {role};"))
        .await;
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        !log.contains("Stopped:"),
        "the checklist runs to its end: {log}"
    );
    assert!(
        log.contains("[fail] Target database writable")
            && log.contains("the role may not create schemas in this database"),
        "{log}"
    );
    assert!(
        log.contains("permission denied for schema auth")
            && log.contains("connect as the project's `postgres` user"),
        "a permission error is a failed row with the fix: {log}"
    );
}

#[tokio::test]
async fn a_host_that_never_answers_fails_within_the_connect_timeout() {
    // A listener that never accepts: the TCP handshake completes (backlog),
    // PostgreSQL's startup reply never comes, like a firewalled pooler.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let target = TestDb::new("silent").await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(dir.path(), "[project]\nname = \"x\"\n");
    let source = format!("postgres://postgres:pw-Silent-8812@127.0.0.1:{port}/postgres");
    let started = std::time::Instant::now();
    let out = local(
        dir.path(),
        &["preflight", "--manifest", &manifest],
        &[
            ("CUTOVER_SOURCE_DB_URL", &source),
            ("CUTOVER_TARGET_DB_URL", &target.url()),
        ],
    );
    let took = started.elapsed();
    drop(silent);
    assert_eq!(out.status.code(), Some(1));
    assert!(took < std::time::Duration::from_secs(30), "took {took:?}");
    let log = text(&out);
    assert!(log.contains("no answer within 10 s"), "{log}");
    assert!(log.contains("source-db-url"), "{log}");
}

#[tokio::test]
async fn unreachable_host_fails_fast_naming_the_input() {
    let target = TestDb::new("unreach").await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(dir.path(), "[project]\nname = \"x\"\n");
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let out = local(
        dir.path(),
        &["preflight", "--manifest", &manifest],
        &[
            (
                "CUTOVER_SOURCE_DB_URL",
                "postgres://postgres:pw-unreach-123@127.0.0.1:1/postgres",
            ),
            ("CUTOVER_TARGET_DB_URL", &target.url()),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let log = text(&out);
    assert!(
        log.contains("cannot connect to the source database at 127.0.0.1:1/postgres"),
        "{log}"
    );
    assert!(log.contains("source-db-url"), "{log}");
    assert!(!log.contains("pw-unreach-123"), "{log}");
}

#[tokio::test]
async fn missing_database_gets_a_specific_hint() {
    let target = TestDb::new("nodb").await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(dir.path(), "[project]\nname = \"x\"\n");
    let out = local(
        dir.path(),
        &["plan", "--manifest", &manifest],
        &[
            (
                "CUTOVER_SOURCE_DB_URL",
                &url_for("cutover_no_such_database", None),
            ),
            ("CUTOVER_TARGET_DB_URL", &target.url()),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let log = text(&out);
    assert!(log.contains("that database does not exist"), "{log}");
}

#[tokio::test]
async fn plan_without_urls_still_plans_local_files() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = repo_root().join("examples/ops-portal/cutover.toml");
    let out = local(
        dir.path(),
        &["plan", "--manifest", &manifest.display().to_string()],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let log = text(&out);
    assert!(log.contains("deploy 6 functions"), "{log}");
    assert!(log.contains("never deploy test-create-user"), "{log}");
    assert!(
        log.contains("--source-db-url (or CUTOVER_SOURCE_DB_URL) is not set"),
        "{log}"
    );
}

#[tokio::test]
async fn one_database_as_source_and_target_is_refused_by_every_phase_that_writes_or_compares() {
    let db = TestDb::new("same").await;
    db.exec(
        "create table public.orders (id int primary key, note text);
         insert into public.orders select g, 'n' || g from generate_series(1, 20) g;",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(dir.path(), "[project]\nname = \"x\"\n");
    let before = db.fingerprint().await;
    // The same URL, and the same database reached through another host name.
    let other_host = db.url().replace("127.0.0.1", "localhost");
    for (phase, target) in [
        ("data", db.url()),
        ("schema", db.url()),
        ("validate", db.url()),
        ("config", db.url()),
        ("cutover", db.url()),
        ("rollback", db.url()),
        ("schema,data,validate", other_host.clone()),
    ] {
        let mut args = vec![
            phase,
            "--manifest",
            &manifest,
            "--source-db-url",
            &db.url(),
            "--target-db-url",
            &target,
        ]
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
        if phase == "data" {
            args.push("--overwrite".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = local(dir.path(), &args, &[]);
        let log = text(&out);
        assert_eq!(out.status.code(), Some(1), "{phase}: {log}");
        assert!(
            log.contains("source and target are one environment")
                && log.contains("nothing was read or written"),
            "{phase}: {log}"
        );
    }
    assert_eq!(db.fingerprint().await, before, "the database was changed");
    assert_eq!(
        db.scalar("select count(*)::text from public.orders")
            .await
            .as_deref(),
        Some("20")
    );
}
