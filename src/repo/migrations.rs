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
