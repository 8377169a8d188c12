//! The job summary as a person sees it: the Markdown rendered the way GitHub
//! renders it (comrak, GFM extensions, the HTML GitHub allows), laid out by
//! headless Chromium at the width of a job summary, and measured.
//!
//! The demo's summary (ops-portal, the phases `scripts/demo.sh` runs) must fit
//! in about one screen of verdict and checklist plus a few tables: under
//! [`DEMO_HEIGHT_LIMIT_PX`].

use std::path::Path;
use std::process::Command;

use crate::common;

use common::*;

/// The demo page's height limit; before issue 11 it was about 9,500 px.
const DEMO_HEIGHT_LIMIT_PX: u64 = 3_000;

/// A secret-free stand-in for every variable the ops-portal manifest reads.
fn demo_secrets() -> Vec<(String, String)> {
    [
        ("TARGET_GOOGLE_REFRESH_TOKEN", "demo-refresh-token"),
        ("TARGET_GOOGLE_CLIENT_ID", "demo-client-id"),
        ("TARGET_GOOGLE_CLIENT_SECRET", "demo-client-secret"),
        ("TARGET_RESEND_API_KEY", "demo-resend-key"),
        ("TARGET_APP_URL", "http://localhost:5173"),
        ("TARGET_WHATSAPP_API_KEY", "demo-whatsapp-key"),
        ("TARGET_SUPABASE_URL", "http://localhost:54321"),
        ("TARGET_SUPABASE_ANON_KEY", "demo-anon-key"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// GitHub-flavoured Markdown to the HTML GitHub shows: tables, strikethrough,
/// autolinks, task lists, alerts, footnotes; raw HTML kept, as GitHub keeps
/// `<details>`, `<summary>`, `<sub>`, `<br>` (its filtered tags, `<script>`
/// and the like, never reach the page: the summary escapes every `<`), and
/// an unknown tag such as `<version>` laid out as nothing, as on GitHub.
pub fn github_html(markdown: &str) -> String {
    let mut options = comrak::Options::default();
    options.extension.table = true;
    options.extension.strikethrough = true;
    options.extension.autolink = true;
    options.extension.tasklist = true;
    options.extension.footnotes = true;
    options.extension.alerts = true;
    options.render.r#unsafe = true;
    comrak::markdown_to_html(markdown, &options)
}

/// The rendered page, styled like GitHub's `markdown-body` in a job summary
/// (about 1,000 px wide, 16 px text, padded table cells).
fn page(markdown: &str) -> String {
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><style>
body {{ margin: 0; }}
.markdown-body {{ box-sizing: border-box; width: 1000px; padding: 16px 24px;
  font-family: -apple-system, "Segoe UI", "Noto Sans", Helvetica, Arial, sans-serif;
  font-size: 16px; line-height: 1.5; word-wrap: break-word; }}
h1, h2, h3 {{ margin: 24px 0 16px; font-weight: 600; line-height: 1.25; }}
h1 {{ font-size: 2em; padding-bottom: .3em; border-bottom: 1px solid #d1d9e0; }}
h2 {{ font-size: 1.5em; padding-bottom: .3em; border-bottom: 1px solid #d1d9e0; }}
h3 {{ font-size: 1.25em; }}
p, table, pre, details, ul, blockquote, .markdown-alert {{ margin: 0 0 16px; }}
table {{ display: block; width: max-content; max-width: 100%; overflow: auto; border-collapse: collapse; }}
td, th {{ padding: 6px 13px; border: 1px solid #d1d9e0; }}
code {{ font-family: monospace; font-size: 85%; padding: .2em .4em; background: #eff1f3; }}
pre {{ padding: 16px; font-size: 85%; line-height: 1.45; background: #f6f8fa; overflow: auto; }}
pre code {{ padding: 0; background: none; }}
summary {{ cursor: pointer; }}
</style></head><body><article class="markdown-body">
{}
</article><script>
document.body.setAttribute("data-height", String(document.documentElement.scrollHeight));
</script></body></html>"#,
        github_html(markdown)
    )
}

/// Lays `markdown` out in headless Chromium and returns the page height in
/// CSS pixels; with `screenshot`, also saves a PNG of the whole page there.
pub fn rendered_height(chromium: &Path, markdown: &str, screenshot: Option<&Path>) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("summary.html");
    std::fs::write(&html, page(markdown)).unwrap();
    let url = format!("file://{}", html.display());
    let chromium_run = |extra: &[String]| {
        let out = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--allow-file-access-from-files",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("profile").display()
            ))
            .args(extra)
            .arg(&url)
            .output()
            .expect("run chromium");
        assert!(
            out.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dom = chromium_run(&["--window-size=1000,800".into(), "--dump-dom".into()]);
    let height: u64 = dom
        .split("data-height=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|h| h.parse().ok())
        .unwrap_or_else(|| panic!("no height in the dumped page:\n{dom}"));
    if let Some(png) = screenshot {
        chromium_run(&[
            format!("--window-size=1000,{height}"),
            format!("--screenshot={}", png.display()),
        ]);
    }
    height
}

#[test]
fn summary_markdown_renders_like_github() {
    let html = github_html(
        "| a | b |\n|---|---|\n| `x \\| y` | &lt;version&gt; |\n\n<details open><summary>more</summary>\n\ntext\n\n</details>\n",
    );
    assert!(html.contains("<table>"), "{html}");
    assert!(html.contains("<code>x | y</code>"), "{html}");
    assert!(html.contains("&lt;version&gt;"), "{html}");
    assert!(html.contains("<details open>"), "{html}");
}

/// Measures a summary file (`CUTOVER_MEASURE_SUMMARY=path`) the way the demo
/// test does: `cargo test --test tests summary_height_of_a_file -- --ignored --nocapture`.
#[test]
#[ignore = "a tool: set CUTOVER_MEASURE_SUMMARY to a summary file"]
fn summary_height_of_a_file() {
    let Some(chromium) = chromium_or_skip("summary_height_of_a_file") else {
        return;
    };
    let path = std::env::var("CUTOVER_MEASURE_SUMMARY").expect("CUTOVER_MEASURE_SUMMARY");
    let markdown = std::fs::read_to_string(&path).unwrap();
    let png = std::env::var_os("CUTOVER_MEASURE_SCREENSHOT").map(std::path::PathBuf::from);
    let height = rendered_height(&chromium, &markdown, png.as_deref());
    note(&format!("{path}: {height} px"));
}

#[tokio::test]
async fn summary_of_the_demo_fits_in_about_one_screen() {
    let Some(chromium) = chromium_or_skip("summary_of_the_demo_fits_in_about_one_screen") else {
        return;
    };
    let pair = Pair::from_example("ops-portal").await;
    let work = tempfile::tempdir().unwrap();
    let summary = work.path().join("summary.md");
    let mut env = demo_secrets();
    env.extend([
        ("CUTOVER_SOURCE_DB_URL".to_string(), pair.source.url()),
        ("CUTOVER_TARGET_DB_URL".to_string(), pair.target.url()),
        (
            "CUTOVER_MANIFEST".to_string(),
            repo_root()
                .join("examples/ops-portal/cutover.toml")
                .display()
                .to_string(),
        ),
        (
            "CUTOVER_SUMMARY_FILE".to_string(),
            summary.display().to_string(),
        ),
        (
            "CUTOVER_REPORT_FILE".to_string(),
            work.path().join("report.json").display().to_string(),
        ),
    ]);
    let out = run_cutover(
        work.path(),
        &["plan,preflight,schema,data,config,validate"],
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let markdown = std::fs::read_to_string(&summary).unwrap();
    let png = std::env::var_os("CUTOVER_MEASURE_SCREENSHOT").map(std::path::PathBuf::from);
    let height = rendered_height(&chromium, &markdown, png.as_deref());
    note(&format!("demo summary: {height} px"));
    assert!(
        height < DEMO_HEIGHT_LIMIT_PX,
        "the demo's summary is {height} px high (limit {DEMO_HEIGHT_LIMIT_PX}):\n{markdown}"
    );
}
