//! Migration files: `<version>_<name>.sql` in `migrations_dir`, as the
//! Supabase CLI names and orders them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// One migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationFile {
    /// The digits before the first `_`.
    pub version: String,
    /// What follows, without `.sql`.
    pub name: String,
    /// Path on disk.
    pub path: PathBuf,
    /// sha-256 of the file's bytes, hex.
    pub checksum: String,
}

/// What was found in the migrations folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationDir {
    /// Well-named files, sorted by version (the CLI's order).
    pub files: Vec<MigrationFile>,
    /// `.sql` files whose names do not match `<digits>_<name>.sql`; the
    /// Supabase CLI skips them silently, which is how a migration goes missing.
    pub badly_named: Vec<String>,
    /// Versions used by more than one file, with the file names.
    pub duplicates: BTreeMap<String, Vec<String>>,
}

/// Splits a file name into version and name, per `^([0-9]+)_(.*)\.sql$`.
pub fn parse_file_name(file_name: &str) -> Option<(String, String)> {
    let stem = file_name.strip_suffix(".sql")?;
    let (version, name) = stem.split_once('_')?;
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // The CLI's `.*` (Go regexp) does not cross a line break.
    if name.contains('\n') {
        return None;
    }
    Some((version.to_string(), name.to_string()))
}

/// Reads the migrations folder. A missing folder is an error naming it.
pub fn read_dir(dir: &Path) -> std::io::Result<MigrationDir> {
    let mut result = MigrationDir::default();
    let mut by_version: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let entries = std::fs::read_dir(dir)?;
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if !file_name.ends_with(".sql") {
            continue;
        }
        match parse_file_name(&file_name) {
            Some((version, name)) => {
                let bytes = std::fs::read(entry.path())?;
                by_version
                    .entry(version.clone())
                    .or_default()
                    .push(file_name);
                result.files.push(MigrationFile {
                    version,
                    name,
                    path: entry.path(),
                    checksum: hex::encode(Sha256::digest(&bytes)),
                });
            }
            None => result.badly_named.push(file_name),
        }
    }
    // The CLI sorts by file name, which for equal-length timestamps is the
    // version order; sort by (version as number, name) to be exact either way.
    result
        .files
        .sort_by(|a, b| compare_versions(&a.version, &b.version).then_with(|| a.name.cmp(&b.name)));
    result.badly_named.sort();
    result.duplicates = by_version
        .into_iter()
        .filter(|(_, files)| files.len() > 1)
        .map(|(v, mut files)| {
            files.sort();
            (v, files)
        })
        .collect();
    Ok(result)
}

/// The text of a migration file, or why it cannot be applied as it is: not
/// readable, or not UTF-8 (PostgreSQL and the Supabase CLI read UTF-8; a
/// file saved in another encoding would fail half-way through a run).
pub fn read_text(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..at].iter().filter(|b| **b == b'\n').count();
        format!(
            "not UTF-8 text at line {line} (byte {}): save it as UTF-8",
            at + 1
        )
    })
}

/// The files of `files` that [`read_text`] refuses, as `path: reason`.
pub fn unreadable(files: &[&MigrationFile]) -> Vec<String> {
    files
        .iter()
        .filter_map(|f| {
            read_text(&f.path)
                .err()
                .map(|why| format!("{}: {why}", f.path.display()))
        })
        .collect()
}

/// The tables `files` create (`CREATE [UNLOGGED] TABLE [IF NOT EXISTS]
/// name`), each with the first file that does, as `<version>_<name>.sql`.
/// Unquoted names fold to lower case as PostgreSQL folds them; a name without
/// a schema is taken as `public`, the migrations' search path. Files that do
/// not read are skipped: [`read_text`] reports them. A dry-run uses this to
/// plan `data` on what `schema` would create.
pub fn created_tables(
    files: &[&MigrationFile],
) -> BTreeMap<crate::manifest::QualifiedName, String> {
    let pattern = regex::Regex::new(
        r#"(?is)^create\s+(?:(?:global\s+|local\s+)?(?:temp|temporary)\s+(?-u:\b)(?P<temp>)|unlogged\s+)?table\s+(?:if\s+not\s+exists\s+)?(?P<name>(?:"[^"]+"|[\w$]+)(?:\s*\.\s*(?:"[^"]+"|[\w$]+))?)"#,
    )
    .expect("valid pattern");
    let mut created = BTreeMap::new();
    for file in files {
        let Ok(text) = read_text(&file.path) else {
            continue;
        };
        for statement in crate::repo::sql_split::split(&text) {
            let Some(found) = pattern.captures(&statement.text) else {
                continue;
            };
            if found.name("temp").is_some() {
                continue;
            }
            let parts: Vec<String> = found["name"]
                .split('.')
                .map(|p| {
                    let p = p.trim();
                    match p.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
                        Some(quoted) => quoted.to_string(),
                        None => p.to_lowercase(),
                    }
                })
                .collect();
            let name = match parts.as_slice() {
                [name] => crate::manifest::QualifiedName {
                    schema: "public".into(),
                    name: name.clone(),
                },
                [schema, name] => crate::manifest::QualifiedName {
                    schema: schema.clone(),
                    name: name.clone(),
                },
                _ => continue,
            };
            created
                .entry(name)
                .or_insert_with(|| format!("{}_{}.sql", file.version, file.name));
        }
    }
    created
}

/// Orders versions numerically (digits only), without overflow on long ones.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_tables_are_read_from_the_statements() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1_app.sql");
        std::fs::write(
            &path,
            "create table Members (id int);\n\
             CREATE UNLOGGED TABLE IF NOT EXISTS \"Billing\".\"Invoices\" (id int);\n\
             create temp table scratch (id int);\n\
             -- create table commented_out (id int);\n\
             select 'create table in_a_string (id int)';\n\
             create table  app . audit_log (id int);",
        )
        .unwrap();
        let file = MigrationFile {
            version: "1".into(),
            name: "app".into(),
            path,
            checksum: String::new(),
        };
        let names: Vec<String> = created_tables(&[&file])
            .into_iter()
            .map(|(t, f)| format!("{t} <- {f}"))
            .collect();
        assert_eq!(
            names,
            [
                "Billing.Invoices <- 1_app.sql",
                "app.audit_log <- 1_app.sql",
                "public.members <- 1_app.sql",
            ]
        );
    }

    #[test]
    fn a_file_not_in_utf8_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1_latin1.sql");
        std::fs::write(&path, b"select 1;\n-- caf\xe9\nselect 2;\n").unwrap();
        let why = read_text(&path).unwrap_err();
        assert_eq!(why, "not UTF-8 text at line 2 (byte 17): save it as UTF-8");
        std::fs::write(&path, "select 'café';").unwrap();
        assert_eq!(read_text(&path).unwrap(), "select 'café';");
    }

    #[test]
    fn file_names() {
        assert_eq!(
            parse_file_name("20250103000000_create_orders_table.sql"),
            Some(("20250103000000".into(), "create_orders_table".into()))
        );
        assert_eq!(parse_file_name("1_.sql"), Some(("1".into(), "".into())));
        assert_eq!(parse_file_name("init.sql"), None);
        assert_eq!(
            parse_file_name("2025_01_x.sql"),
            Some(("2025".into(), "01_x".into()))
        );
        assert_eq!(parse_file_name("v1_x.sql"), None);
        assert_eq!(parse_file_name("1_x.sql.bak"), None);
    }

    #[test]
    fn reads_sorts_and_reports_problems() {
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in [
            ("20250110000000_b.sql", "select 2;"),
            ("20250103000000_a.sql", "select 1;"),
            ("20250103000000_dup.sql", "select 3;"),
            ("notes.sql", "--"),
            ("README.md", "x"),
        ] {
            std::fs::write(dir.path().join(name), body).unwrap();
        }
        let found = read_dir(dir.path()).unwrap();
        let order: Vec<_> = found.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(order, ["a", "dup", "b"]);
        assert_eq!(found.badly_named, ["notes.sql"]);
        assert_eq!(
            found.duplicates.get("20250103000000").unwrap(),
            &vec![
                "20250103000000_a.sql".to_string(),
                "20250103000000_dup.sql".to_string()
            ]
        );
        assert_eq!(found.files[0].checksum.len(), 64);
    }

    #[test]
    fn numeric_version_order() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_versions("9", "10"), Less);
        assert_eq!(compare_versions("010", "10"), Equal);
        assert_eq!(compare_versions("20250103000000", "20250103000001"), Less);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// The Supabase CLI's pattern, as the oracle.
        fn oracle(name: &str) -> Option<(String, String)> {
            let re = regex::Regex::new(r"^([0-9]+)_(.*)\.sql$").unwrap();
            re.captures(name)
                .map(|c| (c[1].to_string(), c[2].to_string()))
        }

        proptest! {
            #[test]
            fn line_breaks_are_refused_like_the_cli(a in "[0-9]{1,3}", b in "[a-z]{0,3}") {
                let name = format!("{a}_{b}\n.sql");
                prop_assert_eq!(parse_file_name(&name), None);
                prop_assert_eq!(oracle(&name), None);
            }

            #[test]
            fn agrees_with_the_regex_on_arbitrary_names(name in "(?s).*") {
                prop_assert_eq!(parse_file_name(&name), oracle(&name));
            }

            #[test]
            fn agrees_with_the_regex_on_name_like_input(
                name in "[0-9a-z_.]{0,4}[0-9]{0,16}[_a-zA-Z.]{0,3}[a-z_ 0-9é\n]{0,12}(\\.sql|\\.SQL|\\.sql\\.bak|sql|)"
            ) {
                prop_assert_eq!(parse_file_name(&name), oracle(&name));
            }
        }
    }
}
