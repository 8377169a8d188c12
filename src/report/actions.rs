//! GitHub Actions workflow commands (`::add-mask::`, `::group::`, `::error::`)
//! and step outputs (`$GITHUB_OUTPUT`).
//!
//! Outside Actions the same calls print plain headings (or nothing), so the
//! phases never need to know where they run.
#![allow(clippy::print_stdout, clippy::print_stderr)] // the one place output is written

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::text::TerminalStyle;

/// Set once stdout turned out to be a closed pipe (`cutover migrate | head`).
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `text` to stdout. A reader that went away (broken pipe) is not an
/// error of the run: printing stops, and the run goes on to its end, so the
/// summary, the JSON report and the ledger are still written and closed
/// (`print!` would panic there, mid-phase).
pub fn out(text: &str) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        }
    }
}

/// [`out`] with a line end.
pub fn out_line(line: &str) {
    out(&format!("{line}\n"));
}

/// Prints workflow commands when running in GitHub Actions, plain text otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Console {
    /// True when `GITHUB_ACTIONS=true`.
    pub actions: bool,
    /// How terminal text looks on this process's stdout.
    pub style: TerminalStyle,
}

impl Console {
    /// A console for this process: Actions or not, and the style stdout takes.
    pub fn new(actions: bool) -> Self {
        Self {
            actions,
            style: TerminalStyle::for_stdout(),
        }
    }

    /// Prints terminal text made with [`Console::style`] (escape codes are
    /// dropped where `anstream` finds stdout takes none).
    pub fn text(&self, text: &str) {
        if STDOUT_CLOSED.load(Ordering::Relaxed) {
            return;
        }
        // A closed pipe is no error of the run (see [`out`]).
        if write!(anstream::stdout(), "{text}").is_err() {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        }
    }

    /// Tells the runner to hide `value` in every log line from now on.
    ///
    /// Called for each secret before anything else is printed; multi-line
    /// values are masked line by line, as the runner matches per line.
    pub fn add_mask(&self, value: &str) {
        if !self.actions {
            return;
        }
        for line in value.lines().map(str::trim).filter(|l| !l.is_empty()) {
            out_line(&format!("::add-mask::{}", escape_data(line)));
        }
    }

    /// Opens a collapsible group in the log.
    pub fn group(&self, title: &str) {
        if self.actions {
            out_line(&format!("::group::{}", escape_data(title)));
        } else {
            out_line(&format!("== {title}"));
        }
    }

    /// Closes the group opened by [`Console::group`].
    pub fn end_group(&self) {
        if self.actions {
            out_line("::endgroup::");
        }
    }

    /// An error annotation, attached to a file position when given.
    pub fn error(&self, message: &str, file: Option<&str>, position: Option<(usize, usize)>) {
        if !self.actions {
            return;
        }
        let mut props = Vec::new();
        if let Some(file) = file {
            props.push(format!("file={}", escape_property(file)));
        }
        if let Some((line, col)) = position {
            props.push(format!("line={line}"));
            props.push(format!("col={col}"));
        }
        let props = if props.is_empty() {
            String::new()
        } else {
            format!(" {}", props.join(","))
        };
        out_line(&format!("::error{props}::{}", escape_data(message)));
    }

    /// A warning annotation.
    pub fn warning(&self, message: &str) {
        if self.actions {
            out_line(&format!("::warning::{}", escape_data(message)));
        }
    }

    /// A progress line: what a long step is waiting on (a copy, an index
    /// build, a migration, a replication catching up).
    pub fn progress(&self, line: &str) {
        self.text(&format!("{}\n", self.style.progress(line)));
    }
}

/// Escapes the message part of a workflow command.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a property value of a workflow command.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// Appends step outputs to the `$GITHUB_OUTPUT` file in the heredoc form, with
/// a random delimiter so no value can end its own block early.
pub fn write_outputs(path: &Path, outputs: &[(&str, String)]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    for (name, value) in outputs {
        let delimiter = loop {
            let candidate = format!("ghadelimiter_{}", uuid::Uuid::new_v4().simple());
            if !value.contains(&candidate) {
                break candidate;
            }
        };
        writeln!(file, "{name}<<{delimiter}\n{value}\n{delimiter}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_use_heredoc_with_random_delimiters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        write_outputs(
            &path,
            &[("status", "success".into()), ("multi", "a\nb".into())],
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("status<<ghadelimiter_"));
        assert_eq!(lines[1], "success");
        assert_eq!(lines[2], lines[0].trim_start_matches("status<<"));
        assert!(lines[3].starts_with("multi<<ghadelimiter_"));
        assert_ne!(lines[0].split("<<").nth(1), lines[3].split("<<").nth(1));
        assert_eq!(&lines[4..6], &["a", "b"]);
    }

    #[test]
    fn command_escaping() {
        assert_eq!(escape_data("50%\nnext"), "50%25%0Anext");
        assert_eq!(escape_property("a:b,c"), "a%3Ab%2Cc");
    }
}
