//! The JSON report: everything the summary shows, uncut, for upload as an artifact.

use std::path::Path;

use super::RunReport;

/// Serialises the run as pretty JSON.
pub fn render(run: &RunReport) -> String {
    // The model holds only strings, numbers and dates: serialisation cannot fail.
    serde_json::to_string_pretty(run).expect("report serialises")
}

/// Writes the JSON report to `path`, creating its folder.
pub fn write(run: &RunReport, path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, render(run) + "\n")
}
