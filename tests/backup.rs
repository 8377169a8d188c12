//! `backup` with the real pg_dump/pg_restore: the files restore with every
//! row, the sha-256 guards the restore, encryption keeps plaintext off the
//! disk, an old pg_dump is refused with the version to install, and dry-run
//! writes nothing.

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret;
use common::*;
use cutover::cli::{Cli, Settings};
use cutover::context::Context;
use cutover::manifest::Manifest;
use cutover::phases::backup::restore_target_from_backup;
use cutover::redact::Redactor;
use cutover::report::Status;

const SOURCE_PW: &str = "src-Backup-Secret-9a1";
const TARGET_PW: &str = "tgt-Backup-Secret-7c3";

fn manifest() -> PathBuf {
    repo_root().join("examples/ops-portal/cutover.toml")
}

/// Runs `backup` as the action would, with planted URL passwords.
fn run_backup(
    files: &ActionsFiles,
    pair: &Pair,
    manifest: &Path,
    extra: &[(&str, &str)],
) -> std::process::Output {
    let mut env = files.github_env();
    env.extend([
        ("INPUT_PHASE".to_string(), "backup".to_string()),
        ("INPUT_MANIFEST".to_string(), manifest.display().to_string()),
        (
            "INPUT_SOURCE-DB-URL".to_string(),
            pair.source.url_with_password(SOURCE_PW),
        ),
        (
            "INPUT_TARGET-DB-URL".to_string(),
            pair.target.url_with_password(TARGET_PW),
        ),
    ]);
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let identity = env
        .iter()
        .find(|(k, _)| k == "CUTOVER_AGE_IDENTITY")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    run_and_check_leaks(
        files.dir.path(),
        &[],
        &env,
        &[SOURCE_PW, TARGET_PW, &identity],
        &[&pair.target],
    )
}

/// A context for `rollback` against `target`, as the rollback phase has it.
fn rollback_context(
    target: &TestDb,
    manifest: &Path,
    env: &[(&str, &str)],
    dry_run: bool,
) -> Context {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let cli = Cli {
        phases: Some("rollback".into()),
        manifest: Some(manifest.to_path_buf()),
        target_db_url: Some(target.url_with_password(TARGET_PW)),
        dry_run,
        ..Cli::default()
    };
    let settings = Settings::resolve(cli, &env).unwrap();
    let manifest = Manifest::load(manifest).unwrap();
    Context::new(settings, manifest, Redactor::new(), Box::new(env))
}

fn backup_files(files: &ActionsFiles) -> Vec<String> {
    files
        .outputs()
        .get("backup-path")
        .cloned()
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

async fn public_tables(db: &TestDb) -> Vec<String> {
    user_tables(db)
        .await
        .into_iter()
        .filter(|t| t.starts_with("public."))
        .collect()
}

#[tokio::test]
async fn a_backup_restores_into_an_empty_database_with_every_row() {
    let pair = Pair::from_example("ops-portal").await;
    let files = ActionsFiles::new();
    let out = run_backup(&files, &pair, &manifest(), &[("INPUT_VERIFY", "true")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let log = text(&out);
    assert!(log.contains("Source dump restores"), "{log}");
    assert!(log.contains("counts equal to the dump's snapshot"), "{log}");

    // Outputs: files relative to the workspace, each with its sidecar.
    let paths = backup_files(&files);
    let dump = paths
        .iter()
        .find(|p| p.ends_with("/source.dump"))
        .unwrap_or_else(|| panic!("{paths:?}"));
    assert!(dump.starts_with("cutover-backups/"), "{dump}");
    assert!(
        dump.contains("-production-"),
        "folder named by environment: {dump}"
    );
    assert!(
        paths.iter().any(|p| p.ends_with("source.dump.sha256")),
        "{paths:?}"
    );
    assert!(
        paths
            .iter()
            .any(|p| p.ends_with("source-public.invoice_configurations.csv")),
        "{paths:?}"
    );
    assert!(
        !paths.iter().any(|p| p.ends_with("target.dump")),
        "an empty target is not dumped: {paths:?}"
    );
    for p in &paths {
        assert!(files.path(p).is_file(), "{p} listed but missing");
    }
    let csv = files.read(
        paths
            .iter()
            .find(|p| p.ends_with("invoice_configurations.csv"))
            .unwrap(),
    );
    assert!(
        csv.lines().next().unwrap().contains("config_key"),
        "CSV with a header: {csv}"
    );
    // The sidecar is sha256sum's format, and right.
    let sidecar = files.read(&format!("{dump}.sha256"));
    let check = std::process::Command::new("sha256sum")
        .arg("-c")
        .arg(files.path(&format!("{dump}.sha256")))
        .current_dir(files.path(dump).parent().unwrap())
        .output()
        .unwrap();
    assert!(check.status.success(), "{sidecar}");
    let recorded = pair
        .target
        .scalar("select sha256 from cutover.backups where file_name = 'source.dump'")
        .await
        .unwrap();
    assert_eq!(Some(recorded.as_str()), sidecar.split_whitespace().next());
    let summary = files.read("summary.md");
    assert!(summary.contains("Backup files"), "{summary}");
    assert!(summary.contains(&recorded), "sha-256 in the summary");
    // No scratch database is left behind.
    let left = pair
        .target
        .scalar("select count(*)::text from pg_database where datname like 'cutover_verify_%' and datname in (select 'cutover_verify_' || left(replace(id::text, '-', ''), 12) from cutover.runs)")
        .await;
    assert_eq!(left.as_deref(), Some("0"));
    for secret in [SOURCE_PW, TARGET_PW] {
        assert_no_leak(secret, &out, &files, &files.path("cutover-report.json"));
        assert!(!ledger_dump(&pair.target, "cutover").await.contains(secret));
    }

    // The target (empty, as a new environment is) restored from the file:
    // checked against the ledger's sha-256, every row back.
    let mut ctx = rollback_context(&pair.target, &manifest(), &[], false);
    let item = restore_target_from_backup(&mut ctx, &files.path(dump))
        .await
        .unwrap();
    ctx.close().await;
    assert_eq!(item.status, Status::Pass, "{item:?}");
    assert!(item.evidence.contains("matches the ledger"), "{item:?}");
    assert!(
        item.evidence
            .contains("equal to the counts recorded at backup time"),
        "{item:?}"
    );
    let tables = public_tables(&pair.source).await;
    assert!(tables.len() > 5);
    assert_eq!(public_tables(&pair.target).await, tables);
    assert_same_rows(&pair.source, &pair.target, &tables).await;
    // Sequences came back too: the next invoice number continues.
    assert_eq!(
        pair.source
            .scalar("select last_value::text from public.invoice_number_sequence")
            .await,
        pair.target
            .scalar("select last_value::text from public.invoice_number_sequence")
            .await
    );

    // Restoring again (rollback re-run) replaces instead of duplicating.
    let mut ctx = rollback_context(&pair.target, &manifest(), &[], false);
    let item = restore_target_from_backup(&mut ctx, &files.path(dump))
        .await
        .unwrap();
    ctx.close().await;
    assert_eq!(item.status, Status::Pass, "{item:?}");
    assert_same_rows(&pair.source, &pair.target, &tables).await;
}

#[tokio::test]
async fn a_corrupted_or_unrecorded_backup_is_refused_before_any_restore() {
    let pair = Pair::from_example("ops-portal").await;
    let files = ActionsFiles::new();
    let out = run_backup(&files, &pair, &manifest(), &[("INPUT_VERIFY", "false")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let dump = files.path(
        backup_files(&files)
            .iter()
            .find(|p| p.ends_with("/source.dump"))
            .unwrap(),
    );

    // A fresh database without a ledger: the sidecar is the record.
    let fresh = TestDb::new("corrupt").await;
    let before = fresh.fingerprint().await;
    let mut bytes = std::fs::read(&dump).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&dump, &bytes).unwrap();
    let mut ctx = rollback_context(&fresh, &manifest(), &[], false);
    let err = restore_target_from_backup(&mut ctx, &dump)
        .await
        .unwrap_err();
    ctx.close().await;
    assert!(
        err.message.contains("the sha-256 of source.dump is")
            && err.message.contains("nothing was restored"),
        "{err:?}"
    );
    // The ledger was opened (rollback records itself), but no user object appeared.
    fresh.exec("drop schema cutover cascade").await;
    assert_eq!(fresh.fingerprint().await, before);

    // The same against the target's ledger record.
    let mut ctx = rollback_context(&pair.target, &manifest(), &[], false);
    let err = restore_target_from_backup(&mut ctx, &dump)
        .await
        .unwrap_err();
    ctx.close().await;
    assert!(err.message.contains("the ledger recorded"), "{err:?}");
    assert_eq!(public_tables(&pair.target).await, Vec::<String>::new());

    // No record at all: refused too.
    let lone = files.path("lone.dump");
    std::fs::copy(&dump, &lone).unwrap();
    let mut ctx = rollback_context(&fresh, &manifest(), &[], true);
    let err = restore_target_from_backup(&mut ctx, &lone)
        .await
        .unwrap_err();
    assert!(err.message.contains("no recorded sha-256"), "{err:?}");

    // A missing file names the input.
    let mut ctx = rollback_context(&fresh, &manifest(), &[], true);
    let err = restore_target_from_backup(&mut ctx, &files.path("nope.dump"))
        .await
        .unwrap_err();
    assert!(err.message.contains("--backup-file"), "{err:?}");
}

#[tokio::test]
async fn encrypted_backups_keep_plaintext_off_the_disk_and_restore_with_the_identity() {
    let pair = Pair::from_example("ops-portal").await;
    // The target already holds data: it is dumped too.
    pair.target
        .exec("create table public.keep_me (id int primary key, note text); insert into public.keep_me values (1, 'old target row');")
        .await;
    let identity = age::x25519::Identity::generate();
    let secret = identity.to_string().expose_secret().to_string();
    let public = identity.to_public().to_string();
    let work = tempfile::tempdir().unwrap();
    let manifest_text = std::fs::read_to_string(manifest()).unwrap().replace(
        "age_recipients = []",
        &format!("age_recipients = [\"{public}\"]"),
    );
    assert!(manifest_text.contains(&public));
    let manifest_path = work.path().join("cutover.toml");
    std::fs::write(&manifest_path, manifest_text).unwrap();
    std::fs::create_dir_all(work.path().join("supabase")).unwrap();
    let files = ActionsFiles::new();
    let out = run_backup(
        &files,
        &pair,
        &manifest_path,
        &[("CUTOVER_AGE_IDENTITY", &secret)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let paths = backup_files(&files);
    let target_dump = paths
        .iter()
        .find(|p| p.ends_with("/target.dump.age"))
        .unwrap_or_else(|| panic!("the non-empty target is dumped: {paths:?}"));
    let source_dump = paths
        .iter()
        .find(|p| p.ends_with("/source.dump.age"))
        .unwrap();
    for p in paths.iter().filter(|p| !p.ends_with(".sha256")) {
        let bytes = std::fs::read(files.path(p)).unwrap();
        assert!(bytes.starts_with(b"age-encryption.org/v1"), "{p}");
        assert!(
            !String::from_utf8_lossy(&bytes).contains("invoice"),
            "plaintext in {p}"
        );
    }
    // No plaintext file was ever left in the folder.
    let folder = files.path(source_dump).parent().unwrap().to_path_buf();
    for entry in std::fs::read_dir(&folder).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            name.ends_with(".age") || name.ends_with(".age.sha256"),
            "{name}"
        );
    }
    let log = text(&out);
    assert!(log.contains("Target dump restores"), "{log}");
    assert_no_leak(&secret, &out, &files, &files.path("cutover-report.json"));

    // Roll the target back to its own backup, decrypting with the identity.
    pair.target
        .exec("update public.keep_me set note = 'changed after the backup'")
        .await;
    let mut ctx = rollback_context(
        &pair.target,
        &manifest_path,
        &[("CUTOVER_AGE_IDENTITY", &secret)],
        false,
    );
    let item = restore_target_from_backup(&mut ctx, &files.path(target_dump))
        .await
        .unwrap();
    ctx.close().await;
    assert_eq!(item.status, Status::Pass, "{item:?}");
    assert_eq!(
        pair.target
            .scalar("select note from public.keep_me")
            .await
            .as_deref(),
        Some("old target row")
    );

    // Without the identity: refused, nothing touched.
    let mut ctx = rollback_context(&pair.target, &manifest_path, &[], false);
    let err = restore_target_from_backup(&mut ctx, &files.path(source_dump))
        .await
        .unwrap_err();
    ctx.close().await;
    assert!(err.message.contains("CUTOVER_AGE_IDENTITY"), "{err:?}");
}

#[tokio::test]
async fn an_old_pg_dump_is_refused_naming_the_client_to_install() {
    let pair = Pair::from_example("ops-portal").await;
    let files = ActionsFiles::new();
    let bin = files.path("oldbin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("pg_dump");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\nexit 0\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = run_backup(&files, &pair, &manifest(), &[("PATH", &path)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let log = text(&out);
    assert!(
        log.contains("pg_dump is version 9 but the source server is PostgreSQL"),
        "{log}"
    );
    assert!(log.contains("install postgresql-client-"), "{log}");
    assert!(!files.path("cutover-backups").exists());
}

#[tokio::test]
async fn dry_run_writes_no_file_and_nothing_in_the_target() {
    let pair = Pair::from_example("ops-portal").await;
    let before = pair.target.fingerprint().await;
    let files = ActionsFiles::new();
    let out = run_backup(&files, &pair, &manifest(), &[("INPUT_DRY-RUN", "true")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("Backup files (dry-run)"),
        "{}",
        text(&out)
    );
    assert!(!files.path("cutover-backups").exists());
    assert_eq!(pair.target.fingerprint().await, before);
    assert_eq!(
        files.outputs().get("backup-path").map(String::as_str),
        Some("")
    );
}

#[tokio::test]
async fn a_config_table_missing_on_the_source_fails_by_name() {
    let pair = Pair::from_example("ops-portal").await;
    let work = tempfile::tempdir().unwrap();
    let manifest_text = std::fs::read_to_string(manifest()).unwrap().replace(
        "export_tables = [\"public.whatsapp_templates\"]",
        "export_tables = [\"public.whatsapp_templatez\"]",
    );
    let manifest_path = work.path().join("cutover.toml");
    std::fs::write(&manifest_path, manifest_text).unwrap();
    let files = ActionsFiles::new();
    let out = run_backup(&files, &pair, &manifest_path, &[("INPUT_VERIFY", "false")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let summary = files.read("summary.md");
    let row = summary
        .lines()
        .find(|l| l.contains("Configuration tables exported as CSV"))
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(
        row.starts_with("| ❌") && row.contains("public.whatsapp_templatez"),
        "{row}"
    );
    // The dumps are still written and listed: a backup is never thrown away.
    assert!(
        backup_files(&files)
            .iter()
            .any(|p| p.ends_with("source.dump"))
    );
}
