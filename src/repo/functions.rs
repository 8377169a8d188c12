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

/// What `supabase/config.toml` says about one function (`[functions.<slug>]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CliFunctionConfig {
    /// `verify_jwt`.
    pub verify_jwt: Option<bool>,
    /// `import_map`, relative to the `supabase` folder.
    pub import_map: Option<String>,
    /// `entrypoint`, relative to the `supabase` folder.
    pub entrypoint: Option<String>,
    /// `static_files` globs, relative to the `supabase` folder.
    pub static_files: Vec<String>,
}

/// Reads the `[functions.<slug>]` tables of the Supabase CLI's
/// `config.toml` in `supabase_dir`. A missing file means no settings; other
/// keys of the file are the CLI's business and ignored.
pub fn read_cli_config(
    supabase_dir: &Path,
) -> Result<std::collections::BTreeMap<String, CliFunctionConfig>, String> {
    let path = supabase_dir.join("config.toml");
    let mut out = std::collections::BTreeMap::new();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let value: toml::Table = toml::from_str(&text)
        .map_err(|e| format!("{} is not valid TOML: {}", path.display(), e.message()))?;
    let Some(functions) = value.get("functions").and_then(|v| v.as_table()) else {
        return Ok(out);
    };
    for (slug, table) in functions {
        let Some(table) = table.as_table() else {
            continue;
        };
        let text = |k: &str| table.get(k).and_then(|v| v.as_str()).map(str::to_string);
        out.insert(
            slug.clone(),
            CliFunctionConfig {
                verify_jwt: table.get("verify_jwt").and_then(|v| v.as_bool()),
                import_map: text("import_map"),
                entrypoint: text("entrypoint"),
                static_files: table
                    .get("static_files")
                    .and_then(|v| v.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            },
        );
    }
    Ok(out)
}

/// One file of a function's upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFile {
    /// Path relative to the upload root, `/`-separated (the part's filename).
    pub path: String,
    /// Where it is on disk.
    pub disk: PathBuf,
}

/// Everything one function's deploy sends: the files it needs and its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The function.
    pub slug: String,
    /// Entrypoint, relative to the upload root.
    pub entrypoint_path: String,
    /// Import map, relative to the upload root, when one applies.
    pub import_map_path: Option<String>,
    /// Where the import map choice came from (for the summary).
    pub import_map_source: Option<String>,
    /// Static globs, relative to the upload root.
    pub static_patterns: Vec<String>,
    /// Every file sent, sorted by path: the entrypoint, everything it imports
    /// transitively through relative paths (e.g. `../_shared/*.ts`), the
    /// import map and static files.
    pub files: Vec<BundleFile>,
    /// Relative imports that point at no file (shown as warnings, as the
    /// Supabase CLI does: some are in comments).
    pub unresolved: Vec<String>,
}

/// Why a function cannot be bundled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BundleError(pub String);

/// Import-map file names looked for, in order, in the function's folder and
/// then in the functions folder (as the Supabase CLI does).
const IMPORT_MAP_NAMES: &[&str] = &["deno.json", "deno.jsonc", "import_map.json"];

/// Collects the upload of `function`. `root` is the folder paths are made
/// relative to (the project root, so names read `supabase/functions/...` as
/// the Supabase CLI sends them); `supabase_dir` resolves `config.toml` paths.
pub fn bundle(
    function: &FunctionDir,
    functions_dir: &Path,
    supabase_dir: &Path,
    root: &Path,
    cli: Option<&CliFunctionConfig>,
) -> Result<Bundle, BundleError> {
    // Absolute, clean paths throughout: import-map targets are made absolute
    // too, and prefixes must compare equal.
    let abs = |p: &Path| {
        std::path::absolute(p)
            .map(|p| normalize(&p))
            .unwrap_or_else(|_| normalize(p))
    };
    let (root, functions_dir, supabase_dir) = (abs(root), abs(functions_dir), abs(supabase_dir));
    let function = &FunctionDir {
        slug: function.slug.clone(),
        path: abs(&function.path),
        entrypoint: abs(&function.entrypoint),
    };
    let (root, functions_dir, supabase_dir) = (
        root.as_path(),
        functions_dir.as_path(),
        supabase_dir.as_path(),
    );
    let relative = |p: &Path| -> Result<String, BundleError> {
        let p = normalize(p);
        p.strip_prefix(normalize(root))
            .map(|r| {
                r.components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .map_err(|_| {
                BundleError(format!(
                    "{} is outside the project folder {}: the platform cannot receive it",
                    p.display(),
                    root.display()
                ))
            })
    };
    // Import map: config.toml, else the function's folder, else the functions folder.
    let (import_map, source) = match cli.and_then(|c| c.import_map.as_deref()) {
        Some(p) => {
            let path = supabase_dir.join(p);
            if !path.is_file() {
                return Err(BundleError(format!(
                    "supabase/config.toml [functions.{}] import_map = {p:?}: no such file ({})",
                    function.slug,
                    path.display()
                )));
            }
            (
                Some(path),
                Some(format!("config.toml [functions.{}]", function.slug)),
            )
        }
        None => {
            let found = [&function.path, functions_dir]
                .into_iter()
                .flat_map(|dir| IMPORT_MAP_NAMES.iter().map(move |n| dir.join(n)))
                .find(|p| p.is_file());
            let source = found.as_ref().map(|p| {
                if p.parent() == Some(function.path.as_path()) {
                    "the function's folder".to_string()
                } else {
                    "the functions folder".to_string()
                }
            });
            (found, source)
        }
    };
    let mut files: std::collections::BTreeMap<String, PathBuf> = Default::default();
    let mut aliases: Vec<(String, String)> = Vec::new();
    if let Some(map) = &import_map {
        files.insert(relative(map)?, map.clone());
        let (imports, nested) = read_import_map(map)?;
        aliases = imports;
        if let Some(nested) = nested {
            files.insert(relative(&nested)?, nested.clone());
            aliases.extend(read_import_map(&nested)?.0);
        }
    }
    // Longest alias first, so `@x/y/` wins over `@x/`.
    aliases.sort_by_key(|a| std::cmp::Reverse(a.0.len()));

    let mut unresolved = Vec::new();
    let mut queue = vec![normalize(&function.entrypoint)];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(current) = queue.pop() {
        if !seen.insert(current.clone()) {
            continue;
        }
        let bytes = match std::fs::read(&current) {
            Ok(b) => b,
            Err(_) => {
                unresolved
                    .push(relative(&current).unwrap_or_else(|_| current.display().to_string()));
                continue;
            }
        };
        files.insert(relative(&current)?, current.clone());
        let text = String::from_utf8_lossy(&bytes);
        let dir = current.parent().unwrap_or(Path::new("")).to_path_buf();
        for specifier in import_specifiers(&text) {
            if let Some(path) = resolve_specifier(&specifier, &dir, &aliases) {
                queue.push(path);
            }
        }
    }
    let mut static_patterns = Vec::new();
    for pattern in cli.map(|c| c.static_files.as_slice()).unwrap_or_default() {
        let absolute = normalize(&supabase_dir.join(pattern));
        let rel_pattern = relative(&absolute)?;
        for path in walk_files(root) {
            if let Ok(rel) = relative(&path) {
                if glob_match(&rel_pattern, &rel) {
                    files.insert(rel, path);
                }
            }
        }
        static_patterns.push(rel_pattern);
    }
    unresolved.sort();
    unresolved.dedup();
    Ok(Bundle {
        slug: function.slug.clone(),
        entrypoint_path: relative(&function.entrypoint)?,
        import_map_path: import_map.as_deref().map(relative).transpose()?,
        import_map_source: source,
        static_patterns,
        files: files
            .into_iter()
            .map(|(path, disk)| BundleFile { path, disk })
            .collect(),
        unresolved,
    })
}

/// Import-map aliases (prefix, target) and the nested map a `deno.json` names.
type ImportMap = (Vec<(String, String)>, Option<PathBuf>);

/// The `imports` of an import map or `deno.json` as (prefix, target) pairs,
/// targets starting with `./` or `../` made absolute against the map's
/// folder; and the file a `deno.json` `importMap` key points at.
fn read_import_map(path: &Path) -> Result<ImportMap, BundleError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BundleError(format!("cannot read import map {}: {e}", path.display())))?;
    let value: serde_json::Value = serde_json::from_str(&strip_json_comments(&text))
        .map_err(|e| BundleError(format!("import map {} is not JSON: {e}", path.display())))?;
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut out = Vec::new();
    if let Some(imports) = value.get("imports").and_then(|v| v.as_object()) {
        for (key, target) in imports {
            if let Some(target) = target.as_str() {
                let target = if target.starts_with("./") || target.starts_with("../") {
                    let mut t = normalize(&dir.join(target)).display().to_string();
                    if target.ends_with('/') && !t.ends_with('/') {
                        t.push('/');
                    }
                    t
                } else {
                    target.to_string()
                };
                out.push((key.clone(), target));
            }
        }
    }
    let nested = value
        .get("importMap")
        .and_then(|v| v.as_str())
        .map(|p| normalize(&dir.join(p)));
    Ok((out, nested))
}

/// Removes `//` and `/* */` comments outside strings (for `deno.jsonc`).
fn strip_json_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut prev = ' ';
                for n in chars.by_ref() {
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Module specifiers of static imports, re-exports and dynamic `import()`s,
/// matched the way the Supabase CLI matches them.
pub fn import_specifiers(source: &str) -> Vec<String> {
    static PATTERN: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = PATTERN.get_or_init(|| {
        regex::Regex::new(
            r#"(?i)(?:import|export)\s+(?:\{[^{}]+\}|.*?)\s*(?:from)?\s*['"](.*?)['"]|import\(\s*['"](.*?)['"]\s*\)"#,
        )
        .expect("import pattern compiles")
    });
    re.captures_iter(source)
        .filter_map(|c| c.get(1).or_else(|| c.get(2)))
        .map(|m| m.as_str().trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A specifier as a file path: import-map aliases substituted, relative
/// paths resolved against `dir`. Remote (`https:`, `npm:`, `jsr:`) and bare
/// specifiers are not files to upload; neither are paths without an extension.
fn resolve_specifier(specifier: &str, dir: &Path, aliases: &[(String, String)]) -> Option<PathBuf> {
    let mut spec = specifier.to_string();
    for (prefix, target) in aliases {
        if spec.starts_with(prefix.as_str()) {
            spec = format!("{target}{}", &spec[prefix.len()..]);
            break;
        }
    }
    let spec = spec.strip_prefix("file://").unwrap_or(&spec).to_string();
    let path = if spec.starts_with("./") || spec.starts_with("../") {
        dir.join(&spec)
    } else if spec.starts_with('/') {
        PathBuf::from(&spec)
    } else {
        return None;
    };
    let clean = normalize(&path);
    clean.extension()?;
    Some(clean)
}

/// Removes `.` and `..` components without touching the file system.
pub fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `*` matches within a path segment, `**` across segments, `?` one character.
fn glob_match(pattern: &str, path: &str) -> bool {
    fn inner(p: &[u8], s: &[u8]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some(b'*') if p.get(1) == Some(&b'*') => {
                let rest = if p.get(2) == Some(&b'/') {
                    &p[3..]
                } else {
                    &p[2..]
                };
                (0..=s.len()).any(|i| inner(rest, &s[i..]))
            }
            Some(b'*') => (0..=s.len())
                .take_while(|i| *i == 0 || s[i - 1] != b'/')
                .any(|i| inner(&p[1..], &s[i..])),
            Some(b'?') => !s.is_empty() && s[0] != b'/' && inner(&p[1..], &s[1..]),
            Some(c) => s.first() == Some(c) && inner(&p[1..], &s[1..]),
        }
    }
    inner(pattern.as_bytes(), path.as_bytes())
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

    #[test]
    fn specifiers_as_the_cli_matches_them() {
        let src = r#"
import { a } from "../_shared/a.ts";
import {
  b,
  c,
} from '../_shared/b.ts';
import type { T } from "./types.ts";
import * as d from "./d.ts";
import "./side-effect.ts";
export * from "./re.ts";
export { x } from "./x.ts";
const lazy = await import("./lazy.ts");
import { createClient } from "npm:@supabase/supabase-js@2";
"#;
        assert_eq!(
            import_specifiers(src),
            [
                "../_shared/a.ts",
                "../_shared/b.ts",
                "./types.ts",
                "./d.ts",
                "./side-effect.ts",
                "./re.ts",
                "./x.ts",
                "./lazy.ts",
                "npm:@supabase/supabase-js@2"
            ]
        );
    }

    #[test]
    fn globs() {
        assert!(glob_match("a/*.txt", "a/b.txt"));
        assert!(!glob_match("a/*.txt", "a/b/c.txt"));
        assert!(glob_match("a/**/*.txt", "a/b/c.txt"));
        assert!(glob_match("a/**/*.txt", "a/c.txt"));
    }

    #[test]
    fn jsonc_comments_are_stripped() {
        let text = "{ // c\n \"a\": \"http://x\" /* b */ }";
        let v: serde_json::Value = serde_json::from_str(&strip_json_comments(text)).unwrap();
        assert_eq!(v["a"], "http://x");
    }

    #[test]
    fn bundles_follow_imports_and_aliases() {
        let root = tempfile::tempdir().unwrap();
        let fdir = root.path().join("supabase/functions");
        let w = |p: &str, t: &str| {
            let p = fdir.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, t).unwrap();
        };
        w(
            "deno.json",
            r#"{"imports": {"@shared/": "./_shared/", "zod": "npm:zod"}}"#,
        );
        w(
            "f/index.ts",
            "import { a } from '../_shared/a.ts';\nimport { s } from '@shared/s.ts';\nimport z from 'zod';\nconst m = await import('./lazy.ts');\nimport './gone.ts';",
        );
        w("f/lazy.ts", "export * from '../_shared/deep/d.ts';");
        w("_shared/a.ts", "export const a = 1;");
        w("_shared/s.ts", "export const s = 1;");
        w(
            "_shared/deep/d.ts",
            "import { a } from '../a.ts'; export const d = a;",
        );
        w("_shared/unused.ts", "export const u = 1;");
        let section = FunctionsSection::default();
        let sel = discover(&fdir, &section).unwrap();
        let b = bundle(
            &sel.deploy[0],
            &fdir,
            &root.path().join("supabase"),
            root.path(),
            None,
        )
        .unwrap();
        let paths: Vec<&str> = b.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "supabase/functions/_shared/a.ts",
                "supabase/functions/_shared/deep/d.ts",
                "supabase/functions/_shared/s.ts",
                "supabase/functions/deno.json",
                "supabase/functions/f/index.ts",
                "supabase/functions/f/lazy.ts",
            ]
        );
        assert_eq!(b.entrypoint_path, "supabase/functions/f/index.ts");
        assert_eq!(
            b.import_map_path.as_deref(),
            Some("supabase/functions/deno.json")
        );
        assert_eq!(b.unresolved, ["supabase/functions/f/gone.ts"]);
    }
}
