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

/// A secret value held by the program (an access token, a service role
/// key): kept in a [`secrecy::SecretString`] (wiped from memory on drop), it
/// has no `Display`, its `Debug` shows [`MASK`], and the value is reached only
/// through [`SecretText::expose`], where it is sent (a request header).
#[derive(Clone)]
pub struct SecretText(secrecy::SecretString);

impl SecretText {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(secrecy::SecretString::from(value.into()))
    }

    /// The value itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        secrecy::ExposeSecret::expose_secret(&self.0)
    }
}

impl PartialEq for SecretText {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for SecretText {}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretText({MASK})")
    }
}

/// A database URL that may hold credentials. `Display` and `Debug` show
/// `host:port/database` only (never the user, password or query); the URL
/// itself is reached through [`DbUrl::expose`], for the one place that
/// connects with it.
#[derive(Clone, PartialEq, Eq)]
pub struct DbUrl(SecretText);

impl DbUrl {
    /// Wraps a URL (kept as given, surrounding spaces trimmed).
    pub fn new(url: impl Into<String>) -> Self {
        Self(SecretText::new(url.into().trim()))
    }

    /// The URL with its credentials, to connect with.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

impl std::fmt::Display for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match url::Url::parse(self.expose()) {
            Ok(u) => write!(
                f,
                "{}:{}{}",
                u.host_str().unwrap_or("localhost"),
                u.port().unwrap_or(5432),
                if u.path().is_empty() { "/" } else { u.path() }
            ),
            Err(_) => f.write_str("(unparseable URL)"),
        }
    }
}

impl std::fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DbUrl({self})")
    }
}

/// A database URL shown to humans: `host:port/database`, never credentials
/// (what [`DbUrl`] displays).
pub fn display_db_url(url: &str) -> String {
    DbUrl::new(url).to_string()
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
    fn db_urls_never_print_credentials() {
        let url =
            DbUrl::new(" postgresql://app:s3cr%40t@db.example:6543/postgres?sslmode=require ");
        for shown in [
            url.to_string(),
            format!("{url:?}"),
            format!("{:?}", url.clone()),
        ] {
            assert!(
                !shown.contains("s3cr") && !shown.contains("app:"),
                "{shown}"
            );
            assert!(!shown.contains("sslmode"), "{shown}");
        }
        assert_eq!(url.to_string(), "db.example:6543/postgres");
        assert_eq!(format!("{url:?}"), "DbUrl(db.example:6543/postgres)");
        assert_eq!(
            url.expose(),
            "postgresql://app:s3cr%40t@db.example:6543/postgres?sslmode=require"
        );
        assert_eq!(DbUrl::new("not a url").to_string(), "(unparseable URL)");
        assert_eq!(DbUrl::new("postgres://h").to_string(), "h:5432/");
    }

    #[test]
    fn secret_text_compares_by_value() {
        assert_eq!(SecretText::new("a-secret"), SecretText::new("a-secret"));
        assert_ne!(SecretText::new("a-secret"), SecretText::new("b-secret"));
    }

    #[test]
    fn display_hides_credentials() {
        assert_eq!(
            display_db_url("postgresql://u:p@h.example:6543/db?sslmode=require"),
            "h.example:6543/db"
        );
    }
}
