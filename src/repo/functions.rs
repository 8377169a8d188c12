//! Edge Function folders under `functions_dir`.

use std::path::{Path, PathBuf};

use crate::manifest::FunctionsSection;

/// A function folder found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionDir {
    /// Slug = folder name.
    pub slug: String,
    /// The folder.
    pub path: PathBuf,
    /// The entrypoint file inside it.
    pub entrypoint: PathBuf,
}

/// The functions to deploy and the folders left out, with why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionSelection {
    /// Functions to deploy, sorted by slug.
    pub deploy: Vec<FunctionDir>,
    /// Folders with an entrypoint that are excluded by the manifest.
    pub excluded: Vec<String>,
    /// Names listed in `[functions] deploy` that have no folder or entrypoint.
    pub missing: Vec<String>,
}

/// Lists function folders: every folder with the entrypoint, except shared
/// folders (`_shared` and any name starting with `_` or `.`), minus `exclude`,
/// or exactly the `deploy` list when the manifest gives one. A missing
/// `functions_dir` means no functions.
pub fn discover(dir: &Path, section: &FunctionsSection) -> std::io::Result<FunctionSelection> {
    let mut found = Vec::new();
    if dir.is_dir() {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let slug = entry.file_name().to_string_lossy().into_owned();
            if slug.starts_with('_') || slug.starts_with('.') {
                continue;
            }
            let entrypoint = entry.path().join(&section.entrypoint);
            if entrypoint.is_file() {
                found.push(FunctionDir {
                    slug,
                    path: entry.path(),
                    entrypoint,
                });
            }
        }
    }
    found.sort_by(|a, b| a.slug.cmp(&b.slug));
    let mut selection = FunctionSelection::default();
    if !section.deploy.is_empty() {
        for name in &section.deploy {
            if !found.iter().any(|f| &f.slug == name) {
                selection.missing.push(name.clone());
            }
        }
    }
    for function in found {
        let listed = section.deploy.is_empty() || section.deploy.contains(&function.slug);
        if section.exclude.contains(&function.slug) {
            selection.excluded.push(function.slug);
        } else if listed {
            selection.deploy.push(function);
        }
    }
    Ok(selection)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_shared_and_excluded_folders() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["a", "b", "_shared", "test-create-user", "no-entry"] {
            std::fs::create_dir(dir.path().join(f)).unwrap();
            if f != "no-entry" {
                std::fs::write(dir.path().join(f).join("index.ts"), "").unwrap();
            }
        }
        let section = FunctionsSection {
            exclude: vec!["test-create-user".into()],
            ..FunctionsSection::default()
        };
        let sel = discover(dir.path(), &section).unwrap();
        let slugs: Vec<_> = sel.deploy.iter().map(|f| f.slug.as_str()).collect();
        assert_eq!(slugs, ["a", "b"]);
        assert_eq!(sel.excluded, ["test-create-user"]);

        let section = FunctionsSection {
            deploy: vec!["b".into(), "ghost".into()],
            ..FunctionsSection::default()
        };
        let sel = discover(dir.path(), &section).unwrap();
        assert_eq!(sel.deploy.len(), 1);
        assert_eq!(sel.missing, ["ghost"]);
    }
}
