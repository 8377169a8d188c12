//! The JSON report: everything the summary shows, uncut, for upload as an artifact.

use std::path::Path;

use serde::Serialize;

use super::RunReport;

/// The JSON report's shape version: raised when a field changes meaning or
/// goes away (new fields do not raise it), so a consumer can tell. 2: table
/// cells are typed (counts are numbers, verdicts are objects), where 1 had
/// every cell as displayed text.
pub const SCHEMA_VERSION: u32 = 2;

/// The report as written: its shape version first, then the run's fields.
#[derive(Serialize)]
struct Versioned<'a> {
    schema_version: u32,
    #[serde(flatten)]
    run: &'a RunReport,
    /// The release sign-off, for audit (runs that include `cutover`).
    #[serde(skip_serializing_if = "Option::is_none")]
    sign_off: Option<super::SignOff>,
}

/// Serialises the run as pretty JSON.
pub fn render(run: &RunReport) -> String {
    // The model holds only strings, numbers and dates: serialisation cannot fail.
    serde_json::to_string_pretty(&Versioned {
        schema_version: SCHEMA_VERSION,
        run,
        sign_off: run.sign_off(),
    })
    .expect("report serialises")
}

/// Writes the JSON report to `path`, creating its folder.
pub fn write(run: &RunReport, path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, render(run) + "\n")
}
