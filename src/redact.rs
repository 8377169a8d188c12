//! Keeps secret values out of everything cutover writes.
//!
//! Every secret-bearing input (database URLs and their passwords, tokens, the
//! values of the secret variables the manifest names) is registered here
//! before anything is printed. The runner is told to mask each one, and every
//! string leaving the process (errors, summary, JSON report, ledger details,
//! outputs) goes through [`Redactor::redact`] as a second line of defence.

use std::sync::{Arc, RwLock};

/// What replaces a secret value.
pub const MASK: &str = "••••";

/// A shared, growing set of secret values.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    values: Arc<RwLock<Vec<String>>>,
}

impl Redactor {
    /// An empty redactor.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a secret value. Values shorter than 4 characters are not
    /// redacted by substring (they would blank out ordinary words), but still
    /// returned so the caller can mask them in the runner.
    pub fn add(&self, value: &str) -> bool {
        let value = value.trim();
        if value.len() < 4 {
            return false;
        }
        let mut values = self.values.write().expect("redactor lock");
        if values.iter().any(|v| v == value) {
            return false;
        }
        values.push(value.to_string());
        // Longest first, so a URL is replaced whole before its password is.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        true
    }

    /// Registers a database URL: the whole URL, and its password both raw and
    /// percent-decoded.
    pub fn add_url(&self, url: &str) -> Vec<String> {
        let mut added = Vec::new();
        if url.trim().is_empty() {
            return added;
        }
        if self.add(url) {
            added.push(url.trim().to_string());
        }
        if let Ok(parsed) = url::Url::parse(url.trim()) {
            if let Some(password) = parsed.password() {
                if self.add(password) {
                    added.push(password.to_string());
                }
                if let Ok(decoded) = urlencoding_decode(password) {
                    if self.add(&decoded) {
                        added.push(decoded);
                    }
                }
            }
        }
        added
    }

    /// Replaces every registered secret in `text` with [`MASK`].
    pub fn redact(&self, text: &str) -> String {
        let values = self.values.read().expect("redactor lock");
        let mut out = text.to_string();
        for value in values.iter() {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), MASK);
            }
        }
        out
    }

    /// Every registered value (for the leak checks in tests).
    pub fn values(&self) -> Vec<String> {
        self.values.read().expect("redactor lock").clone()
    }
}

fn urlencoding_decode(s: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes: Vec<u8> = url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned().into_bytes())
        .unwrap_or_default();
    // form decoding turns '+' into ' '; passwords keep their '+'.
    let plus_safe = url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned().into_bytes())
        .unwrap_or(bytes);
    String::from_utf8(plus_safe)
}

/// A secret value held by the program (a service role key): it has no
/// `Display`, its `Debug` shows [`MASK`], and the value is reached only
/// through [`SecretText::expose`], where it is sent (a request header).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(String);

impl SecretText {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretText({MASK})")
    }
}

/// A database URL shown to humans: `host:port/database`, never credentials.
pub fn display_db_url(url: &str) -> String {
    match url::Url::parse(url.trim()) {
        Ok(u) => format!(
            "{}:{}{}",
            u.host_str().unwrap_or("localhost"),
            u.port().unwrap_or(5432),
            if u.path().is_empty() { "/" } else { u.path() }
        ),
        Err(_) => "(unparseable URL)".into(),
    }
}

/// Names that mark a variable's value as secret when the manifest does not say.
const SECRET_NAME_PARTS: &[&str] = &["KEY", "TOKEN", "SECRET", "PASSWORD", "DSN", "CREDENTIAL"];

/// Whether a variable or configuration key name suggests a secret value.
pub fn name_looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_NAME_PARTS.iter().any(|part| upper.contains(part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_text_never_prints() {
        let key = SecretText::new("eyJhbGciOiJIUzI1NiJ9.service-role");
        assert!(!format!("{key:?}").contains("eyJ"));
        assert_eq!(key.expose(), "eyJhbGciOiJIUzI1NiJ9.service-role");
    }

    #[test]
    fn urls_and_passwords_are_redacted() {
        let r = Redactor::new();
        r.add_url("postgres://app:s3cr%40t+pw@db.example.com:6543/postgres");
        let text = "failed to connect to postgres://app:s3cr%40t+pw@db.example.com:6543/postgres (password s3cr@t+pw)";
        let out = r.redact(text);
        assert!(!out.contains("s3cr"), "{out}");
        assert!(out.contains(MASK));
    }

    #[test]
    fn short_values_are_not_substring_redacted() {
        let r = Redactor::new();
        assert!(!r.add("abc"));
        assert_eq!(r.redact("abc abc"), "abc abc");
    }

    #[test]
    fn display_hides_credentials() {
        assert_eq!(
            display_db_url("postgresql://u:p@h.example:6543/db?sslmode=require"),
            "h.example:6543/db"
        );
    }
}
