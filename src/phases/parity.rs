//! Project parity: the source's and the target's Supabase project settings
//! compared through the Management API, for `preflight`, `validate` and the
//! cutover gate. A database copy leaves these behind, and users find out
//! after the switch (logins redirect to the old app, emails stop, the Data
//! API exposes other schemas).
//!
//! Every compared setting has a rule:
//! - *must match*: the same on both (exposed schemas, `max_rows`, JWT
//!   expiry, MFA, sign-up, Realtime and Storage limits);
//! - *must name the target*: Auth's `site_url` and redirect allow list name
//!   the target's frontend (`[frontend] url`), not the source's or
//!   localhost;
//! - *source feature on the target*: each sign-in provider and custom SMTP
//!   the source has, the target has too (with the callback URL to register);
//! - the target's network restrictions let the runner in.
//!
//! A failing row carries its fix; `[[parity.accept]]` accepts one setting
//! with a reason. The comparison itself ([`compare`]) is pure.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::context::Context;
use crate::redact::{MASK, name_looks_secret};
use crate::report::{CheckItem, PhaseReport, ReportTable, Status, count};
use crate::supabase::settings::{SERVICE_ENDPOINTS, SettingsSection};
use crate::supabase::storage::Bucket;
use crate::supabase::{ApiError, ApiErrorKind, ManagementClient, digest_matches};

use super::PhaseError;
use super::functions::management_client;

/// How a setting is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// The same on both projects.
    MustMatch,
    /// Names the target's frontend, not the source's.
    MustNameTarget,
    /// What the source has, the target has too.
    SourceFeature,
    /// The target lets the runner connect.
    Reachable,
}

impl Rule {
    fn words(self) -> &'static str {
        match self {
            Rule::MustMatch => "must match",
            Rule::MustNameTarget => "must name the target",
            Rule::SourceFeature => "source's feature on the target",
            Rule::Reachable => "runner can connect",
        }
    }
}

/// One compared setting.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SettingRow {
    /// `section.key`.
    pub setting: String,
    /// How it is judged.
    pub rule: Rule,
    /// The source's value as shown (secrets masked).
    pub source: String,
    /// The target's value as shown.
    pub target: String,
    /// Pass, Warn or Fail (a Fail blocks the cutover gate).
    pub status: Status,
    /// What to do, or a note (a provider's callback URL).
    pub fix: Option<String>,
}

/// What is known besides the settings.
#[derive(Debug, Clone, Default)]
pub(crate) struct Facts {
    /// The target's project ref.
    pub target_ref: String,
    /// `[frontend] url`.
    pub frontend_url: Option<String>,
    /// The SMTP password supplied for the target, to check its digest.
    pub smtp_password: Option<String>,
}

/// Auth keys that must be equal on both projects (when either answers them).
const AUTH_MUST_MATCH: &[&str] = &[
    "jwt_exp",
    "disable_signup",
    "external_anonymous_users_enabled",
    "mfa_max_enrolled_factors",
    "mfa_totp_enroll_enabled",
    "mfa_totp_verify_enabled",
    "mfa_phone_enroll_enabled",
    "mfa_phone_verify_enabled",
    "password_min_length",
    "password_required_characters",
    "sessions_timebox",
    "sessions_inactivity_timeout",
    "security_captcha_enabled",
    "mailer_autoconfirm",
];

/// PostgREST keys that must be equal.
const POSTGREST_MUST_MATCH: &[&str] = &["db_schema", "max_rows", "db_extra_search_path"];

fn show(key: &str, value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "(unset)".into(),
        Some(Value::String(s)) if s.is_empty() => "(empty)".into(),
        Some(_) if name_looks_secret(key) || key.ends_with("_pass") => MASK.into(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

fn set(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(_) => true,
    }
}

/// `scheme://host` of a URL-ish text, lower-case.
fn origin(url: &str) -> String {
    url::Url::parse(url.trim())
        .ok()
        .map(|u| {
            format!(
                "{}://{}",
                u.scheme(),
                u.host_str().unwrap_or_default().to_ascii_lowercase()
            )
        })
        .unwrap_or_else(|| url.trim().trim_end_matches('/').to_ascii_lowercase())
}

fn row(
    setting: String,
    rule: Rule,
    source: String,
    target: String,
    status: Status,
    fix: Option<String>,
) -> SettingRow {
    SettingRow {
        setting,
        rule,
        source,
        target,
        status,
        fix,
    }
}

/// Compares the settings both projects answered. `source`/`target` map a
/// section to its answer; a section missing from either is not compared.
pub(crate) fn compare(
    source: &BTreeMap<SettingsSection, Map<String, Value>>,
    target: &BTreeMap<SettingsSection, Map<String, Value>>,
    network: Option<&Value>,
    facts: &Facts,
) -> Vec<SettingRow> {
    let mut rows = Vec::new();
    let dashboard = format!(
        "https://supabase.com/dashboard/project/{}",
        facts.target_ref
    );
    if let (Some(s), Some(t)) = (
        source.get(&SettingsSection::Auth),
        target.get(&SettingsSection::Auth),
    ) {
        auth_rows(s, t, facts, &dashboard, &mut rows);
    }
    let must_match: [(SettingsSection, Option<&[&str]>); 3] = [
        (SettingsSection::Postgrest, Some(POSTGREST_MUST_MATCH)),
        (SettingsSection::Realtime, None),
        (SettingsSection::Storage, None),
    ];
    for (section, keys) in must_match {
        let (Some(s), Some(t)) = (source.get(&section), target.get(&section)) else {
            continue;
        };
        let mut all: Vec<&String> = s.keys().chain(t.keys()).collect();
        all.sort();
        all.dedup();
        for key in all {
            if keys.is_some_and(|k| !k.contains(&key.as_str())) || name_looks_secret(key) {
                continue;
            }
            rows.push(must_match_row(
                section,
                key,
                s.get(key),
                t.get(key),
                &dashboard,
            ));
        }
    }
    if let Some(n) = network {
        rows.push(network_row(n, &dashboard));
    }
    rows
}

fn must_match_row(
    section: SettingsSection,
    key: &str,
    s: Option<&Value>,
    t: Option<&Value>,
    dashboard: &str,
) -> SettingRow {
    let equal = s == t;
    row(
        format!("{}.{key}", section.name()),
        Rule::MustMatch,
        show(key, s),
        show(key, t),
        if equal { Status::Pass } else { Status::Fail },
        (!equal).then(|| {
            format!(
                "set it to the source's value on the target ([project_settings.{}] {key} in the manifest makes `config` do it, or {dashboard}/settings)",
                section.name()
            )
        }),
    )
}

/// The Auth settings: Site URL and redirect list name the target's
/// frontend, the source's sign-in providers and custom SMTP are on the
/// target, and the must-match keys are equal.
fn auth_rows(
    s: &Map<String, Value>,
    t: &Map<String, Value>,
    facts: &Facts,
    dashboard: &str,
    rows: &mut Vec<SettingRow>,
) {
    let url_fix =
        format!("{dashboard}/auth/url-configuration, or [project_settings.auth] in the manifest");
    let s_site = s.get("site_url").and_then(Value::as_str).unwrap_or("");
    rows.push(site_url_row(s_site, t, facts, &url_fix));
    rows.push(allow_list_row(s_site, s, t, facts, &url_fix));
    // Sign-in providers the source has.
    let callback = format!("https://{}.supabase.co/auth/v1/callback", facts.target_ref);
    for (key, value) in s {
        let Some(provider) = key
            .strip_prefix("external_")
            .and_then(|k| k.strip_suffix("_enabled"))
        else {
            continue;
        };
        if provider == "anonymous_users" || !set(Some(value)) {
            continue;
        }
        let on = set(t.get(key));
        let fix = provider_fix(provider, on, &callback, dashboard);
        rows.push(feature_row(format!("auth.{key}"), on, fix));
    }
    rows.push(smtp_row(s, t, facts, dashboard));
    for key in AUTH_MUST_MATCH {
        if s.contains_key(*key) || t.contains_key(*key) {
            rows.push(must_match_row(
                SettingsSection::Auth,
                key,
                s.get(*key),
                t.get(*key),
                dashboard,
            ));
        }
    }
}

/// Site URL: the target's frontend, never the source's or localhost.
fn site_url_row(s_site: &str, t: &Map<String, Value>, facts: &Facts, url_fix: &str) -> SettingRow {
    let t_site = t.get("site_url").and_then(Value::as_str).unwrap_or("");
    let local = |u: &str| u.contains("localhost") || u.contains("127.0.0.1");
    let site_ok = match &facts.frontend_url {
        Some(front) => origin(t_site) == origin(front),
        None => !t_site.is_empty() && !local(t_site) && origin(t_site) != origin(s_site),
    };
    row(
        "auth.site_url".into(),
        Rule::MustNameTarget,
        s_site.to_string(),
        t_site.to_string(),
        if site_ok { Status::Pass } else { Status::Fail },
        (!site_ok).then(|| match &facts.frontend_url {
            Some(front) => format!("set the target's Site URL to {front} ({url_fix})"),
            None => format!(
                "set the target's Site URL to its own frontend, not the source's or localhost ({url_fix}); [frontend] url lets cutover check the exact value"
            ),
        }),
    )
}

/// Redirect allow list: includes the target's frontend, not the source's.
fn allow_list_row(
    s_site: &str,
    s: &Map<String, Value>,
    t: &Map<String, Value>,
    facts: &Facts,
    url_fix: &str,
) -> SettingRow {
    let list = |m: &Map<String, Value>| {
        m.get("uri_allow_list")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (s_list, t_list) = (list(s), list(t));
    let entries: Vec<String> = t_list
        .split(',')
        .map(origin)
        .filter(|e| !e.is_empty())
        .collect();
    let front = facts.frontend_url.as_deref();
    let names_front = front.is_none_or(|f| entries.contains(&origin(f)));
    let source_origin = origin(s_site);
    let names_source = !s_site.is_empty()
        && front.is_none_or(|f| origin(f) != source_origin)
        && entries.contains(&source_origin);
    let list_ok = names_front && !names_source;
    let shown = |l: String| if l.is_empty() { "(empty)".into() } else { l };
    row(
        "auth.uri_allow_list".into(),
        Rule::MustNameTarget,
        shown(s_list),
        shown(t_list),
        if list_ok { Status::Pass } else { Status::Fail },
        (!list_ok).then(|| {
            let mut what = Vec::new();
            if !names_front {
                what.push(format!(
                    "add {}/** to the target's redirect URLs",
                    front.unwrap_or_default().trim_end_matches('/')
                ));
            }
            if names_source {
                what.push(format!("remove the source's {source_origin}"));
            }
            format!("{} ({url_fix})", what.join(" and "))
        }),
    )
}

/// Custom SMTP: without it the platform sends 2 emails an hour.
fn smtp_row(
    s: &Map<String, Value>,
    t: &Map<String, Value>,
    facts: &Facts,
    dashboard: &str,
) -> SettingRow {
    let (s_smtp, t_smtp) = (set(s.get("smtp_host")), set(t.get("smtp_host")));
    let password = match (
        &facts.smtp_password,
        t.get("smtp_pass").and_then(Value::as_str),
    ) {
        (Some(given), Some(digest)) => Some(digest_matches(digest, given)),
        (Some(_), None) => Some(false),
        _ => None,
    };
    let (status, fix) = match (s_smtp, t_smtp, password) {
        (_, true, Some(false)) => (
            Status::Fail,
            Some("the target's SMTP password is not the one given in [parity] smtp_password: set it on the target (or [project_settings.auth] smtp_pass)".to_string()),
        ),
        (_, true, _) => (Status::Pass, None),
        (true, false, _) => (
            Status::Fail,
            Some(format!(
                "set custom SMTP on the target ({dashboard}/auth/smtp, or [project_settings.auth] smtp_host, smtp_user, smtp_pass = \"${{VAR}}\"): without it Supabase sends 2 emails an hour, so sign-ups and password resets fail"
            )),
        ),
        (false, false, _) => (
            Status::Warn,
            Some("neither project has custom SMTP: Supabase sends 2 emails an hour; set it before real users arrive".to_string()),
        ),
    };
    row(
        "auth.smtp_host".into(),
        Rule::SourceFeature,
        show("smtp_host", s.get("smtp_host")),
        format!(
            "{}{}",
            show("smtp_host", t.get("smtp_host")),
            match password {
                Some(true) => " (password matches)",
                Some(false) => " (password differs)",
                None => "",
            }
        ),
        status,
        fix,
    )
}

/// A feature the source has on: passes when the target has it on too.
fn feature_row(setting: String, on: bool, fix: Option<String>) -> SettingRow {
    row(
        setting,
        Rule::SourceFeature,
        "on".into(),
        if on { "on" } else { "off" }.into(),
        if on { Status::Pass } else { Status::Fail },
        fix,
    )
}

/// The fix (or, when on, the callback note) for a sign-in provider.
fn provider_fix(provider: &str, on: bool, callback: &str, dashboard: &str) -> Option<String> {
    let builtin = provider == "email" || provider == "phone";
    match (on, builtin) {
        (true, true) => None,
        (true, false) => Some(format!(
            "{provider}'s app must list {callback} as a callback URL"
        )),
        (false, true) => Some(format!(
            "enable {provider} sign-in on the target ({dashboard}/auth/providers)"
        )),
        (false, false) => Some(format!(
            "enable {provider} on the target with its client id and secret ({dashboard}/auth/providers), and register {callback} as a callback URL at {provider}"
        )),
    }
}

fn network_row(n: &Value, dashboard: &str) -> SettingRow {
    let cidrs = |k: &str| -> Vec<String> {
        n["config"][k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (v4, v6) = (cidrs("dbAllowedCidrs"), cidrs("dbAllowedCidrsV6"));
    let restricted = n["entitlement"].as_str() == Some("allowed")
        && !(v4.is_empty() && v6.is_empty())
        && !v4.iter().any(|c| c == "0.0.0.0/0");
    let shown = if v4.is_empty() && v6.is_empty() {
        "everyone".to_string()
    } else {
        v4.iter().chain(&v6).cloned().collect::<Vec<_>>().join(", ")
    };
    row(
        "network.db_allowed_cidrs".into(),
        Rule::Reachable,
        String::new(),
        shown,
        if restricted { Status::Fail } else { Status::Pass },
        restricted.then(|| format!(
            "the target's database only admits these addresses, and a GitHub-hosted runner's address is not known in advance (cutover cannot see it either): allow the runner's egress address, or 0.0.0.0/0 for the cutover window and restore it after ({dashboard}/settings/database → Network restrictions, or PATCH /v1/projects/{{ref}}/network-restrictions); accept it with [[parity.accept]] setting = \"network.db_allowed_cidrs\" when a self-hosted runner's address is listed"
        )),
    )
}

/// The Storage buckets: each of the source's exists on the target with the
/// same `public` flag, size limit and MIME types (Storage API, with the
/// service-role keys; `storage` creates and updates them).
pub(crate) fn bucket_rows(source: &[Bucket], target: &[Bucket]) -> Vec<SettingRow> {
    let fix = "the `storage` phase creates and updates the target's buckets with the source's settings (or dashboard → Storage)";
    let mut rows = Vec::new();
    for s in source {
        let Some(t) = target.iter().find(|t| t.id == s.id) else {
            rows.push(row(
                format!("storage.buckets.{}", s.id),
                Rule::MustMatch,
                "present".into(),
                "(missing)".into(),
                Status::Fail,
                Some(fix.into()),
            ));
            continue;
        };
        let types = |b: &Bucket| {
            let mut t = b.allowed_mime_types.clone().unwrap_or_default();
            t.sort();
            if t.is_empty() {
                "any".to_string()
            } else {
                t.join(", ")
            }
        };
        let limit = |b: &Bucket| {
            b.file_size_limit
                .map_or("project's".to_string(), |l| l.to_string())
        };
        for (what, a, b) in [
            ("public", s.public.to_string(), t.public.to_string()),
            ("file_size_limit", limit(s), limit(t)),
            ("allowed_mime_types", types(s), types(t)),
        ] {
            let equal = a == b;
            rows.push(row(
                format!("storage.buckets.{}.{what}", s.id),
                Rule::MustMatch,
                a,
                b,
                if equal { Status::Pass } else { Status::Fail },
                (!equal).then(|| fix.to_string()),
            ));
        }
    }
    rows
}

/// The service settings: pooler mode, SSL enforcement, the PITR and IPv4
/// add-ons, Postgres settings, and the target's free disk against the
/// source's database size. `source`/`target` map a name of
/// [`SERVICE_ENDPOINTS`] to its answer; missing ones are not compared.
pub(crate) fn service_rows(
    source: &BTreeMap<&str, Value>,
    target: &BTreeMap<&str, Value>,
    source_database_bytes: Option<i64>,
    dashboard: &str,
) -> Vec<SettingRow> {
    let mut rows = Vec::new();
    let both = |name: &str| source.get(name).zip(target.get(name));
    let settings_fix = format!("{dashboard}/settings/database");
    // Pooler: the primary's pool mode.
    if let Some((s, t)) = both("pooler") {
        let mode = |v: &Value| -> Option<Value> {
            let list = v.as_array().cloned().unwrap_or_else(|| vec![v.clone()]);
            list.iter()
                .find(|p| p["database_type"].as_str() != Some("READ_REPLICA"))
                .map(|p| p["pool_mode"].clone())
        };
        let (a, b) = (mode(s), mode(t));
        rows.push(must_match_with(
            "pooler.pool_mode",
            a.as_ref(),
            b.as_ref(),
            Status::Fail,
            &format!("set the pooler's mode on the target ({settings_fix} → Connection pooling)"),
        ));
    }
    if let Some((s, t)) = both("ssl") {
        rows.push(must_match_with(
            "ssl.enforced",
            Some(&s["currentConfig"]["database"]),
            Some(&t["currentConfig"]["database"]),
            Status::Fail,
            &format!("set SSL enforcement on the target as on the source ({settings_fix} → SSL configuration)"),
        ));
    }
    if let Some((s, t)) = both("addons") {
        let has = |v: &Value, kind: &str| {
            v["selected_addons"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["type"].as_str() == Some(kind)))
        };
        for kind in ["pitr", "ipv4"] {
            if has(s, kind) {
                let on = has(t, kind);
                let fix = (!on).then(|| {
                    format!("add the {kind} add-on to the target ({dashboard}/settings/addons)")
                });
                rows.push(feature_row(format!("addons.{kind}"), on, fix));
            }
        }
    }
    // Postgres settings: differences are warnings (a bigger compute may be
    // tuned on purpose).
    if let (Some(Value::Object(s)), Some(Value::Object(t))) =
        (source.get("postgres"), target.get("postgres"))
    {
        let mut keys: Vec<&String> = s.keys().chain(t.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            rows.push(must_match_with(
                &format!("postgres.{key}"),
                s.get(key),
                t.get(key),
                Status::Warn,
                "PUT /v1/projects/{ref}/config/database/postgres on the target, or accept it when the target's compute is tuned on purpose",
            ));
        }
    }
    // Disk headroom: the target must hold the source's database with room.
    if let (Some(t), Some(size)) = (target.get("disk"), source_database_bytes) {
        if let Some(avail) = t["metrics"]["fs_avail_bytes"].as_f64() {
            let needed = size as f64 * 1.2;
            let ok = avail >= needed;
            rows.push(row(
                "disk.headroom".into(),
                Rule::Reachable,
                format!("{} MB in the database", size / 1_000_000),
                format!("{} MB free", (avail / 1_000_000.0) as i64),
                if ok { Status::Pass } else { Status::Fail },
                (!ok).then(|| format!(
                    "the target needs at least the source's size and 20 % more free before the load: grow its disk ({dashboard}/settings/compute-and-disk)"
                )),
            ));
        }
    }
    rows
}

fn must_match_with(
    setting: &str,
    s: Option<&Value>,
    t: Option<&Value>,
    differing: Status,
    fix: &str,
) -> SettingRow {
    let key = setting.rsplit('.').next().unwrap_or(setting);
    let equal = s == t;
    row(
        setting.to_string(),
        Rule::MustMatch,
        show(key, s),
        show(key, t),
        if equal { Status::Pass } else { differing },
        (!equal).then(|| fix.to_string()),
    )
}

/// Where the comparison is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParityUse {
    /// A checklist row per failing setting, failing the phase.
    Preflight,
    /// The same rows as warnings: `validate` compares data, and the gate is
    /// where settings block (as with the security lints).
    Validate,
    /// One gate row that blocks `cutover` while a must-fix setting differs.
    Gate,
}

/// Adds the comparison's rows and table to `report`: a row per failing
/// setting (so each shows with its fix) and one summary row; at the gate,
/// only the summary row, which blocks on failures. Without the Management
/// API inputs, a skip row says what is missing.
pub(crate) async fn check(
    ctx: &mut Context,
    phase: &str,
    report: &mut PhaseReport,
    mode: ParityUse,
) -> Result<(), PhaseError> {
    let s = &ctx.settings;
    if s.source_project_ref.is_none()
        || s.target_project_ref.is_none()
        || s.supabase_access_token.is_none()
    {
        // At the gate a row says so; preflight's backups row already names
        // the missing inputs, and validate compares data without them.
        if mode == ParityUse::Gate {
            let (id, title) = mode.row();
            report.check(CheckItem::new(
                id,
                title,
                Status::Skip,
                "needs source-project-ref, target-project-ref and supabase-access-token (read from the Management API)",
            ));
        }
        return Ok(());
    }
    let mut read = read_settings(ctx, phase).await?;
    accept(&mut read.rows, &ctx.manifest.parity.accept);
    report_settings(mode, read, report);
    Ok(())
}

impl ParityUse {
    /// The summary row's id and title.
    fn row(self) -> (&'static str, &'static str) {
        if self == ParityUse::Gate {
            ("gate-project-settings", "Project settings that must match")
        } else {
            ("project-parity", "Project settings: source vs target")
        }
    }

    /// How a setting that must be fixed shows.
    fn failing_status(self) -> Status {
        if self == ParityUse::Validate {
            Status::Warn
        } else {
            Status::Fail
        }
    }
}

/// The compared settings, and what the token or plan could not read.
struct ReadSettings {
    /// One row per compared setting.
    rows: Vec<SettingRow>,
    /// `section (HTTP 403)` for each answer that did not come.
    unavailable: Vec<String>,
}

/// `HTTP 403`, or `no answer`.
fn unanswered(e: &ApiError) -> String {
    e.status.map_or("no answer".into(), |s| format!("HTTP {s}"))
}

/// Reads both projects' settings, services, network restrictions and
/// buckets, and compares them.
async fn read_settings(ctx: &mut Context, phase: &str) -> Result<ReadSettings, PhaseError> {
    let (client, target_ref, source_ref) = management_client(ctx, phase, true)?;
    let refs = (source_ref.unwrap_or_default(), target_ref);
    let mut unavailable = Vec::new();
    let sections = read_sections(ctx, &client, &refs, &mut unavailable).await?;
    let mut services = (BTreeMap::new(), BTreeMap::new());
    for (path, name) in SERVICE_ENDPOINTS {
        let (a, b) = tokio::join!(
            client.project_answer(&refs.0, path),
            client.project_answer(&refs.1, path)
        );
        match (a, b) {
            (Ok(a), Ok(b)) => {
                services.0.insert(name, a);
                services.1.insert(name, b);
            }
            (Err(e), _) | (_, Err(e)) => unavailable.push(format!("{name} ({})", unanswered(&e))),
        }
    }
    let source_database_bytes = if ctx.has_url(crate::pg::Side::Source) {
        ctx.source(phase).await?.database_size().await.ok()
    } else {
        None
    };
    let network = match client.network_restrictions(&refs.1).await {
        Ok(n) => Some(n),
        Err(e) => {
            unavailable.push(format!("network restrictions ({})", unanswered(&e)));
            None
        }
    };
    let facts = Facts {
        target_ref: refs.1.clone(),
        frontend_url: ctx.manifest.frontend.as_ref().and_then(|f| f.url.clone()),
        smtp_password: smtp_password(ctx)?,
    };
    let mut rows = compare(&sections.0, &sections.1, network.as_ref(), &facts);
    rows.extend(service_rows(
        &services.0,
        &services.1,
        source_database_bytes,
        &format!("https://supabase.com/dashboard/project/{}", refs.1),
    ));
    rows.extend(storage_rows(ctx, &mut unavailable).await);
    Ok(ReadSettings { rows, unavailable })
}

/// Both projects' settings sections (source, target). A section either
/// cannot read is left out and named in `unavailable`; a refused token
/// stops the phase.
async fn read_sections(
    ctx: &Context,
    client: &ManagementClient,
    (source, target): &(String, String),
    unavailable: &mut Vec<String>,
) -> Result<(SectionMap, SectionMap), PhaseError> {
    let mut sections = (BTreeMap::new(), BTreeMap::new());
    for section in SettingsSection::ALL {
        let (a, b) = tokio::join!(
            client.settings(source, section),
            client.settings(target, section)
        );
        match (a, b) {
            (Ok(a), Ok(b)) => {
                sections.0.insert(section, a);
                sections.1.insert(section, b);
            }
            (Err(e), _) | (_, Err(e)) => {
                if matches!(e.kind, ApiErrorKind::Unauthorized) {
                    return Err(super::functions::api_stop(ctx, e, "target-project-ref"));
                }
                unavailable.push(format!("{} ({})", section.name(), unanswered(&e)));
            }
        }
    }
    Ok(sections)
}

/// One project's settings, by section.
type SectionMap = BTreeMap<SettingsSection, Map<String, Value>>;

/// `[parity] smtp_password`, expanded and registered as a secret.
fn smtp_password(ctx: &Context) -> Result<Option<String>, PhaseError> {
    let Some(raw) = &ctx.manifest.parity.smtp_password else {
        return Ok(None);
    };
    match crate::manifest::expand(raw, |n| ctx.env_var(n)) {
        Ok(v) => {
            if ctx.redactor.add(&v) {
                ctx.console.add_mask(&v);
            }
            Ok(Some(v))
        }
        Err(missing) => Err(PhaseError::new(format!(
            "[parity] smtp_password uses unset variables: {}",
            missing.join(", ")
        ))
        .hint("set it in the step's `env:` from the environment's secrets")),
    }
}

/// Buckets, when `[storage]` is configured and its keys are given.
async fn storage_rows(ctx: &Context, unavailable: &mut Vec<String>) -> Vec<SettingRow> {
    if ctx.manifest.storage.is_none() {
        return Vec::new();
    }
    let Ok((_, source_storage, target_storage)) = super::storage::storage_clients(ctx) else {
        unavailable.push(
            "storage buckets (needs source-service-role-key and target-service-role-key)".into(),
        );
        return Vec::new();
    };
    match tokio::join!(source_storage.list_buckets(), target_storage.list_buckets()) {
        (Ok(a), Ok(b)) => bucket_rows(&a, &b),
        (Err(e), _) | (_, Err(e)) => {
            unavailable.push(format!(
                "storage buckets ({})",
                ctx.redactor.redact(&e.to_string())
            ));
            Vec::new()
        }
    }
}

/// Accepted differences pass, with their reason.
fn accept(rows: &mut [SettingRow], accepts: &[crate::manifest::ParityAcceptance]) {
    let accepted: BTreeMap<&str, &str> = accepts
        .iter()
        .map(|a| (a.setting.as_str(), a.reason.as_deref().unwrap_or_default()))
        .collect();
    for r in rows {
        if let (Status::Fail | Status::Warn, Some(reason)) =
            (r.status, accepted.get(r.setting.as_str()))
        {
            r.status = Status::Pass;
            r.fix = Some(format!("accepted: {reason}"));
        }
    }
}

/// The rows for failing settings (not at the gate), the summary row and the
/// table.
fn report_settings(mode: ParityUse, read: ReadSettings, report: &mut PhaseReport) {
    let failing: Vec<&SettingRow> = read
        .rows
        .iter()
        .filter(|r| r.status == Status::Fail)
        .collect();
    if mode != ParityUse::Gate {
        for r in &failing {
            report.check(failing_row(r, mode.failing_status()));
        }
    }
    report.check(summary_row(
        mode,
        read.rows.len(),
        &failing,
        &read.unavailable,
    ));
    report.tables.push(settings_table(read.rows));
}

/// The row of one setting that must be fixed.
fn failing_row(r: &SettingRow, status: Status) -> CheckItem {
    let source = if r.source.is_empty() {
        "—"
    } else {
        &r.source
    };
    let mut item = CheckItem::new(
        &format!("parity:{}", r.setting),
        &format!("Project setting {}", r.setting),
        status,
        format!("{}: source {source}, target {}", r.rule.words(), r.target),
    );
    item.hint = r.fix.clone();
    item
}

/// The summary row: how many settings were compared and which must be fixed.
fn summary_row(
    mode: ParityUse,
    compared: usize,
    failing: &[&SettingRow],
    unavailable: &[String],
) -> CheckItem {
    let (id, title) = mode.row();
    let verdict = if failing.is_empty() {
        "none differs where it must not".to_string()
    } else {
        let names: Vec<&str> = failing.iter().map(|r| r.setting.as_str()).collect();
        format!("must fix: {}", names.join(", "))
    };
    let unavailable = if unavailable.is_empty() {
        String::new()
    } else {
        format!(
            "; not available to this token or plan: {}",
            unavailable.join(", ")
        )
    };
    let status = if failing.is_empty() {
        Status::Pass
    } else {
        mode.failing_status()
    };
    let item = CheckItem::new(
        id,
        title,
        status,
        format!(
            "{} compared, {verdict}{unavailable}",
            count(compared, "setting", "settings")
        ),
    );
    if failing.is_empty() {
        return item;
    }
    item.with_hint(if mode == ParityUse::Gate {
        "fix each on the target (the table gives the fix), or accept one with [[parity.accept]] setting = \"...\" reason = \"...\"; nothing was changed"
    } else {
        "each failing setting has its own row with the fix; `cutover` blocks until they are fixed or accepted"
    })
}

/// Every compared setting: failures first, then warnings, then the rest.
fn settings_table(mut rows: Vec<SettingRow>) -> ReportTable {
    let mut table = ReportTable::new(
        "Project settings: source vs target",
        &["Setting", "Rule", "Source", "Target", "", "Fix"],
    );
    rows.sort_by_key(|r| match r.status {
        Status::Fail => 0,
        Status::Warn => 1,
        _ => 2,
    });
    for r in rows {
        table.push([
            r.setting,
            r.rule.words().into(),
            r.source,
            r.target,
            r.status.icon().into(),
            r.fix.unwrap_or_default(),
        ]);
    }
    table.with_note(
        "read with GET /config/auth, /postgrest, /config/realtime, /config/storage and /network-restrictions of both projects; secrets are compared by digest and never shown",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn setting(name: &str, status: Status) -> SettingRow {
        row(
            name.into(),
            Rule::MustMatch,
            "a".into(),
            "b".into(),
            status,
            Some("fix it".into()),
        )
    }

    #[test]
    fn an_accepted_difference_passes_with_its_reason() {
        let mut rows = vec![
            setting("auth.jwt_exp", Status::Fail),
            setting("x", Status::Fail),
        ];
        let accepts = [crate::manifest::ParityAcceptance {
            setting: "auth.jwt_exp".into(),
            reason: Some("shorter on purpose".into()),
        }];
        accept(&mut rows, &accepts);
        assert_eq!(rows[0].status, Status::Pass);
        assert_eq!(rows[0].fix.as_deref(), Some("accepted: shorter on purpose"));
        assert_eq!(rows[1].status, Status::Fail);
    }

    #[test]
    fn summary_rows_name_what_must_be_fixed() {
        let failing = setting("auth.jwt_exp", Status::Fail);
        let row = summary_row(
            ParityUse::Validate,
            3,
            &[&failing],
            &["realtime (HTTP 403)".into()],
        );
        assert_eq!(row.status, Status::Warn);
        assert_eq!(
            row.evidence,
            "3 settings compared, must fix: auth.jwt_exp; not available to this token or plan: realtime (HTTP 403)"
        );
        let row = summary_row(ParityUse::Gate, 1, &[], &[]);
        assert_eq!(row.id, "gate-project-settings");
        assert_eq!(row.status, Status::Pass);
        assert!(row.hint.is_none());
    }

    #[test]
    fn the_table_shows_failures_first() {
        let table = settings_table(vec![
            setting("ok", Status::Pass),
            setting("warned", Status::Warn),
            setting("failed", Status::Fail),
        ]);
        let order: Vec<String> = table.rows.iter().map(|r| r[0].to_string()).collect();
        assert_eq!(order, ["failed", "warned", "ok"]);
    }

    #[test]
    fn a_failing_row_shows_an_empty_source_as_a_dash() {
        let mut r = setting("auth.site_url", Status::Fail);
        r.source.clear();
        let item = failing_row(&r, Status::Fail);
        assert_eq!(item.id, "parity:auth.site_url");
        assert_eq!(item.evidence, "must match: source —, target b");
    }

    fn sections(auth: Value, postgrest: Value) -> BTreeMap<SettingsSection, Map<String, Value>> {
        let mut m = BTreeMap::new();
        m.insert(SettingsSection::Auth, auth.as_object().unwrap().clone());
        m.insert(
            SettingsSection::Postgrest,
            postgrest.as_object().unwrap().clone(),
        );
        m
    }

    fn facts() -> Facts {
        Facts {
            target_ref: "tgtprojectrefaaaaaaa".into(),
            frontend_url: Some("https://app.example.com".into()),
            smtp_password: None,
        }
    }

    fn status_of<'a>(rows: &'a [SettingRow], setting: &str) -> &'a SettingRow {
        rows.iter()
            .find(|r| r.setting == setting)
            .unwrap_or_else(|| panic!("no {setting} in {rows:?}"))
    }

    #[test]
    fn the_target_must_name_its_own_frontend_and_keep_the_sources_features() {
        let source = sections(
            json!({"site_url": "https://dev.example.com", "uri_allow_list": "https://dev.example.com/**",
                   "external_google_enabled": true, "smtp_host": "smtp.example.com", "jwt_exp": 3600}),
            json!({"db_schema": "public,api", "max_rows": 1000, "jwt_secret": "a"}),
        );
        let target = sections(
            json!({"site_url": "http://localhost:3000", "uri_allow_list": "https://dev.example.com/**",
                   "external_google_enabled": false, "smtp_host": null, "jwt_exp": 3600}),
            json!({"db_schema": "public", "max_rows": 1000, "jwt_secret": "b"}),
        );
        let rows = compare(&source, &target, None, &facts());
        assert_eq!(status_of(&rows, "auth.site_url").status, Status::Fail);
        let list = status_of(&rows, "auth.uri_allow_list");
        assert_eq!(list.status, Status::Fail);
        let fix = list.fix.as_deref().unwrap();
        assert!(
            fix.contains("add https://app.example.com/**")
                && fix.contains("remove the source's https://dev.example.com"),
            "{fix}"
        );
        let google = status_of(&rows, "auth.external_google_enabled");
        assert_eq!(google.status, Status::Fail);
        assert!(
            google
                .fix
                .as_deref()
                .unwrap()
                .contains("https://tgtprojectrefaaaaaaa.supabase.co/auth/v1/callback")
        );
        assert_eq!(status_of(&rows, "auth.smtp_host").status, Status::Fail);
        assert_eq!(status_of(&rows, "postgrest.db_schema").status, Status::Fail);
        assert_eq!(status_of(&rows, "postgrest.max_rows").status, Status::Pass);
        assert_eq!(status_of(&rows, "auth.jwt_exp").status, Status::Pass);
        assert!(
            rows.iter().all(|r| r.setting != "postgrest.jwt_secret"),
            "per-project secrets are not compared"
        );
    }

    #[test]
    fn a_fixed_target_passes_and_the_smtp_password_is_checked_by_digest() {
        let digest = crate::supabase::sha256_hex("smtp-pw-1");
        let source = sections(
            json!({"site_url": "https://dev.example.com", "smtp_host": "smtp.example.com"}),
            json!({"db_schema": "public"}),
        );
        let target = sections(
            json!({"site_url": "https://app.example.com/", "uri_allow_list": "https://app.example.com/**",
                   "smtp_host": "smtp.example.com", "smtp_pass": digest}),
            json!({"db_schema": "public"}),
        );
        let mut f = facts();
        f.smtp_password = Some("smtp-pw-1".into());
        let rows = compare(&source, &target, None, &f);
        assert!(rows.iter().all(|r| r.status == Status::Pass), "{rows:?}");
        assert!(
            status_of(&rows, "auth.smtp_host")
                .target
                .contains("password matches")
        );
        f.smtp_password = Some("wrong".into());
        let rows = compare(&source, &target, None, &f);
        assert_eq!(status_of(&rows, "auth.smtp_host").status, Status::Fail);
    }

    #[test]
    fn a_bucket_with_another_public_flag_or_missing_fails() {
        let bucket = |id: &str, public: bool| Bucket {
            id: id.into(),
            name: id.into(),
            public,
            file_size_limit: None,
            allowed_mime_types: None,
        };
        let rows = bucket_rows(
            &[bucket("avatars", true), bucket("invoices", false)],
            &[bucket("avatars", false)],
        );
        assert_eq!(
            status_of(&rows, "storage.buckets.avatars.public").status,
            Status::Fail
        );
        assert_eq!(
            status_of(&rows, "storage.buckets.avatars.file_size_limit").status,
            Status::Pass
        );
        assert_eq!(
            status_of(&rows, "storage.buckets.invoices").status,
            Status::Fail
        );
    }

    #[test]
    fn service_settings_add_ons_and_disk_headroom() {
        let source: BTreeMap<&str, Value> = [
            (
                "pooler",
                json!([{"database_type": "PRIMARY", "pool_mode": "transaction"}]),
            ),
            (
                "ssl",
                json!({"currentConfig": {"database": true}, "appliedSuccessfully": true}),
            ),
            (
                "addons",
                json!({"selected_addons": [{"type": "pitr"}, {"type": "ipv4"}]}),
            ),
            ("postgres", json!({"statement_timeout": "8s"})),
        ]
        .into_iter()
        .collect();
        let target: BTreeMap<&str, Value> = [
            ("pooler", json!([{"database_type": "PRIMARY", "pool_mode": "session"}])),
            ("ssl", json!({"currentConfig": {"database": true}, "appliedSuccessfully": true})),
            ("addons", json!({"selected_addons": [{"type": "pitr"}]})),
            ("postgres", json!({"statement_timeout": "30s"})),
            ("disk", json!({"metrics": {"fs_avail_bytes": 1.0e9, "fs_size_bytes": 8.0e9, "fs_used_bytes": 7.0e9}})),
        ]
        .into_iter()
        .collect();
        let rows = service_rows(&source, &target, Some(2_000_000_000), "https://d");
        assert_eq!(status_of(&rows, "pooler.pool_mode").status, Status::Fail);
        assert_eq!(status_of(&rows, "ssl.enforced").status, Status::Pass);
        assert_eq!(status_of(&rows, "addons.pitr").status, Status::Pass);
        assert_eq!(status_of(&rows, "addons.ipv4").status, Status::Fail);
        assert_eq!(
            status_of(&rows, "postgres.statement_timeout").status,
            Status::Warn
        );
        assert_eq!(status_of(&rows, "disk.headroom").status, Status::Fail);
        let rows = service_rows(&source, &target, Some(500_000_000), "https://d");
        assert_eq!(status_of(&rows, "disk.headroom").status, Status::Pass);
    }

    #[test]
    fn network_restrictions_that_shut_out_the_runner_fail() {
        let open = json!({"entitlement": "allowed", "config": {"dbAllowedCidrs": ["0.0.0.0/0"]}, "status": "applied"});
        let shut = json!({"entitlement": "allowed", "config": {"dbAllowedCidrs": ["203.0.113.0/24"]}, "status": "applied"});
        let none = BTreeMap::new();
        let f = facts();
        assert_eq!(
            compare(&none, &none, Some(&open), &f)[0].status,
            Status::Pass
        );
        let r = &compare(&none, &none, Some(&shut), &f)[0];
        assert_eq!(r.status, Status::Fail);
        assert!(r.fix.as_deref().unwrap().contains("0.0.0.0/0"));
    }
}
