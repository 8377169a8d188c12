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
    let env = ActionsRun::new(files, "backup")
        .manifest(manifest)
        .databases(
            pair.source.url_with_password(SOURCE_PW),
            pair.target.url_with_password(TARGET_PW),
        )
        .vars(extra.iter().copied())
        .env();
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
        .unwrap()
        .item;
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
        .unwrap()
        .item;
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
        .unwrap()
        .item;
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
async fn a_verify_without_psql_fails_naming_the_tool_and_leaves_no_scratch_database() {
    let pair = Pair::from_example("ops-portal").await;
    let files = ActionsFiles::new();
    // A PATH with pg_dump and pg_restore but no psql.
    let bin = files.path("nopsql");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["pg_dump", "pg_restore"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap();
        let real = String::from_utf8_lossy(&found.stdout).trim().to_string();
        std::os::unix::fs::symlink(real, bin.join(tool)).unwrap();
    }
    let path = bin.display().to_string();
    let out = run_backup(
        &files,
        &pair,
        &manifest(),
        &[("INPUT_VERIFY", "true"), ("PATH", &path)],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let log = text(&out);
    let row = log
        .lines()
        .find(|l| l.contains("Source dump restores"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        row.starts_with("  [fail]") && row.contains("cannot run psql"),
        "{row}"
    );
    assert!(log.contains("so that psql is on PATH"), "{log}");
    // The dump itself is kept; the scratch database is gone.
    assert!(
        backup_files(&files)
            .iter()
            .any(|p| p.ends_with("source.dump"))
    );
    assert_eq!(
        pair.target
            .scalar("select count(*)::text from pg_database where datname like 'cutover_verify_%' and datname in (select 'cutover_verify_' || left(replace(id::text, '-', ''), 12) from cutover.runs)")
            .await
            .as_deref(),
        Some("0")
    );
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

// ---------------------------------------------------------------------------
// Hosted Supabase: restores as the non-superuser `postgres` (PostgreSQL 15,
// whose pg_dump/pg_restore/psql are the machine's; pg_dump 15 cannot dump a
// PostgreSQL 17 server, so these run on the PostgreSQL 15 pair only).
// ---------------------------------------------------------------------------

/// The app, made as `postgres` on the source: keys to `auth.users` and a
/// trigger that notes every order.
const HOSTED_APP: &str = r#"
create table public.profiles (
  id uuid primary key references auth.users (id) on delete cascade,
  display_name text not null
);
create table public.orders (
  id bigint generated by default as identity primary key,
  profile_id uuid not null references public.profiles (id),
  total numeric(10, 2) not null
);
create table public.order_audit (order_id bigint not null);
create function public.note_order() returns trigger language plpgsql as $$
begin
  insert into public.order_audit (order_id) values (new.id);
  return new;
end
$$;
create trigger orders_audit after insert on public.orders
  for each row execute function public.note_order();
insert into auth.users (id, email)
select gen_random_uuid(), 'user' || g || '@example.com' from generate_series(1, 20) g;
insert into public.profiles select id, email from auth.users;
insert into public.orders (profile_id, total)
select id, 10.5 from public.profiles, generate_series(1, 3);
"#;

/// A table in `public` that the platform's superuser owns (as extensions'
/// tables are), on both sides with each side's own row: `postgres` may read
/// and write it, but neither drop nor replace it.
fn admin_table(side: &str) -> String {
    format!(
        "create table public.platform_notes (id int primary key, note text not null);
         grant all on public.platform_notes to postgres;
         insert into public.platform_notes values (1, '{side} note');"
    )
}

/// A work dir with an empty migrations folder and a manifest copying auth.
fn hosted_project() -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("supabase/migrations")).unwrap();
    std::fs::write(
        work.path().join("cutover.toml"),
        "[project]\nname = \"hosted-restore\"\n\n[data]\ninclude_auth = true\n",
    )
    .unwrap();
    work
}

/// The dump `backup` wrote for `side` under the work dir.
fn written_dump(work: &tempfile::TempDir, side: &str) -> PathBuf {
    let root = work.path().join("cutover-backups");
    std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path().join(format!("{side}.dump")))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no {side}.dump under {}", root.display()))
}

/// Count and content hash of a table, read as the superuser.
async fn digest_of(db: &SupaDb, table: &str) -> String {
    db.scalar_as_admin(&format!(
        "select count(*)::text || ' ' || coalesce(md5(string_agg(t::text, '|' order by t::text)), '')
           from {table} t"
    ))
    .await
    .unwrap()
}

/// Relations, functions, triggers and row counts of the app's schemas (not
/// the ledger, where a run records itself), read as the superuser: equal
/// before and after means nothing was written.
async fn catalog_of(db: &SupaDb) -> String {
    db.scalar_as_admin(
        "select concat_ws(E'\\n',
           (select string_agg(format('%s.%s %s', n.nspname, c.relname, c.relkind), ',' order by 1)
              from pg_class c join pg_namespace n on n.oid = c.relnamespace
             where n.nspname in ('public', 'auth', 'storage')),
           (select string_agg(p.oid::regprocedure::text, ',' order by 1) from pg_proc p
              join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'public'),
           (select string_agg(tgname, ',' order by 1) from pg_trigger where not tgisinternal),
           (select count(*)::text from auth.users),
           (select count(*)::text from pg_database where datname like 'cutover_verify_%'))",
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn backup_verify_and_rollback_restore_as_postgres_leaving_out_what_it_cannot_pg15() {
    let Some((source_server, target_server)) =
        pg_pair_or_skip(15, "backup_verify_and_rollback_restore_as_postgres")
    else {
        return;
    };
    let (source, target) = tokio::join!(
        SupaDb::new(&source_server, "restore15_s"),
        SupaDb::new(&target_server, "restore15_t")
    );
    source.exec(HOSTED_APP).await;
    source.exec_as_admin(&admin_table("source")).await;
    target.exec_as_admin(&admin_table("target")).await;
    // A trigger on the target's auth.users that refuses every insert: the
    // refilled users load only because the restore runs with triggers off.
    target
        .exec(
            "create function public.no_signups() returns trigger language plpgsql as $$
             begin raise exception 'a trigger fired during the restore'; end $$;
             create trigger no_signups before insert on auth.users
               for each row execute function public.no_signups();",
        )
        .await;
    let work = hosted_project();
    let (source_url, target_url) = (source.url_as_postgres(), target.url_as_postgres());

    // backup --verify as postgres: both dumps restore into scratch databases;
    // the platform's event trigger (superuser only) is left out by name.
    let (code, out) = run_with(&work, &["backup", "--verify"], &source_url, &target_url);
    assert_eq!(code, 0, "{out}");
    let terminal = out.split("\n# ").next().unwrap();
    for side in ["Source", "Target"] {
        let row = terminal
            .lines()
            .find(|l| l.contains(&format!("{side} dump restores")))
            .unwrap_or_else(|| panic!("{out}"));
        assert!(
            row.starts_with("  [pass]") && row.contains("counts equal to the dump's snapshot"),
            "{row}"
        );
    }
    assert!(!terminal.contains("[warn]"), "{terminal}");
    assert!(terminal.contains("Left out of the restore:"), "{terminal}");
    let left: Vec<&str> = terminal
        .lines()
        .filter(|l| l.contains("EVENT TRIGGER pgrst_ddl_watch"))
        .collect();
    assert_eq!(left.len(), 2, "once per dump: {terminal}");
    assert!(
        left.iter()
            .all(|l| l.contains("supabase_admin") && l.contains("only a superuser")),
        "{left:?}"
    );
    assert!(out.contains(" · Left out of the restore · "), "{out}");
    assert_eq!(
        target
            .scalar_as_admin(
                "select count(*)::text from pg_database where datname like 'cutover_verify_%'"
            )
            .await
            .as_deref(),
        Some("0")
    );

    // rollback --backup-file as postgres: the source's dump replaces the
    // target's app, the auth users come back into the empty auth.users, and
    // the admin-owned table stays as the target has it, named once.
    let dump = written_dump(&work, "source");
    let dump_arg = dump.display().to_string();
    let (code, out) = run_with(
        &work,
        &["rollback", "--backup-file", &dump_arg],
        &source_url,
        &target_url,
    );
    assert_eq!(code, 0, "{out}");
    let terminal = out.split("\n# ").next().unwrap();
    let row = terminal
        .lines()
        .find(|l| l.contains("Target restored from the backup"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        row.starts_with("  [pass]")
            && row.contains("auth.users refilled")
            && row.contains("equal to the counts recorded at backup time"),
        "{row}"
    );
    let left: Vec<&str> = terminal
        .lines()
        .filter(|l| l.contains("public.platform_notes") && l.contains("supabase_admin"))
        .collect();
    assert!(
        left.iter()
            .any(|l| l.contains("TABLE public.platform_notes ")),
        "{terminal}"
    );
    assert!(
        left.iter()
            .any(|l| l.contains("TABLE DATA public.platform_notes")),
        "{terminal}"
    );
    assert_eq!(
        target
            .scalar_as_admin("select note from public.platform_notes")
            .await
            .as_deref(),
        Some("target note")
    );
    for table in [
        "auth.users",
        "public.profiles",
        "public.orders",
        "public.order_audit",
    ] {
        assert_eq!(
            digest_of(&source, table).await,
            digest_of(&target, table).await,
            "{table} differs"
        );
    }
}

#[tokio::test]
async fn a_role_that_may_not_set_replication_role_is_refused_before_anything_pg15() {
    let Some((source_server, target_server)) =
        pg_pair_or_skip(15, "a_role_that_may_not_set_replication_role_is_refused")
    else {
        return;
    };
    let (source, target) = tokio::join!(
        SupaDb::new(&source_server, "norepl15_s"),
        SupaDb::new(&target_server, "norepl15_t")
    );
    source.exec(HOSTED_APP).await;
    let role = format!(
        "restorer_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let password = "restorer-pw-4f1";
    target
        .exec_as_admin(&format!(
            "create role {role} login createdb password '{password}';
             grant all on database \"{db}\" to {role};
             grant usage, create on schema public to {role};",
            db = target.name
        ))
        .await;
    target.drop_role_on_drop(&role);
    let work = hosted_project();
    let target_as_role = target.url_as(&role, Some(password));
    let fix = format!("GRANT SET ON PARAMETER session_replication_role TO {role}");

    // backup --verify: refused before any dump, file or scratch database.
    let before = catalog_of(&target).await;
    let (code, out) = run_with(
        &work,
        &["backup", "--verify"],
        &source.url_as_postgres(),
        &target_as_role,
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "the target's role {role} may not set session_replication_role"
        )) && out.contains("nothing was dumped or restored"),
        "{out}"
    );
    assert!(out.contains(&fix), "{out}");
    assert!(!work.path().join("cutover-backups").exists());
    assert_eq!(catalog_of(&target).await, before);

    // rollback --backup-file: a good backup (checked by its sidecar on a
    // target whose ledger the role makes itself), refused before pg_restore
    // runs.
    let (code, out) = run_with(
        &work,
        &["backup"],
        &source.url_as_postgres(),
        &target.url_as_postgres(),
    );
    assert_eq!(code, 0, "{out}");
    let dump = written_dump(&work, "source").display().to_string();
    let fresh = SupaDb::new(&target_server, "norepl15_f").await;
    fresh
        .exec_as_admin(&format!(
            "grant all on database \"{db}\" to {role};
             grant usage, create on schema public to {role};",
            db = fresh.name
        ))
        .await;
    let before = catalog_of(&fresh).await;
    let (code, out) = run_with(
        &work,
        &["rollback", "--backup-file", &dump],
        &source.url_as_postgres(),
        &fresh.url_as(&role, Some(password)),
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "the target's role {role} may not set session_replication_role"
        )) && out.contains("nothing was restored"),
        "{out}"
    );
    assert!(out.contains(&fix), "{out}");
    assert_eq!(catalog_of(&fresh).await, before);
    drop(fresh);
}

#[tokio::test]
async fn a_restore_that_fails_midway_leaves_the_target_as_it_was_pg15() {
    let Some((source_server, target_server)) = pg_pair_or_skip(
        15,
        "a_restore_that_fails_midway_leaves_the_target_as_it_was",
    ) else {
        return;
    };
    let (source, target) = tokio::join!(
        SupaDb::new(&source_server, "midway15_s"),
        SupaDb::new(&target_server, "midway15_t")
    );
    source.exec(HOSTED_APP).await;
    target
        .exec("create table public.keep (id int primary key); insert into public.keep values (7);")
        .await;
    // Without include_auth the users are not refilled, so the profiles'
    // key to auth.users cannot be made on the target.
    let work = hosted_project();
    std::fs::write(
        work.path().join("cutover.toml"),
        "[project]\nname = \"hosted-restore\"\n",
    )
    .unwrap();
    let (source_url, target_url) = (source.url_as_postgres(), target.url_as_postgres());
    let (code, out) = run_with(&work, &["backup"], &source_url, &target_url);
    assert_eq!(code, 0, "{out}");
    let dump = written_dump(&work, "source").display().to_string();
    let before = catalog_of(&target).await;
    let (code, out) = run_with(
        &work,
        &["rollback", "--backup-file", &dump],
        &source_url,
        &target_url,
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("failed and was rolled back")
            && out.contains("violates foreign key constraint"),
        "{out}"
    );
    assert!(out.contains("the target is as it was"), "{out}");
    assert_eq!(catalog_of(&target).await, before);
    assert_eq!(
        target
            .scalar("select string_agg(id::text, ',') from public.keep")
            .await
            .as_deref(),
        Some("7")
    );
}
