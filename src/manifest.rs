//! The manifest, `cutover.toml`: what to move and how to check it.
//!
//! Every key has a default, so a minimal manifest is `[project] name = "..."`.
//! Unknown keys are errors (`deny_unknown_fields`) that name the file, line and
//! column, because a misspelt key silently ignored is how a runbook step gets
//! skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Schemas that Supabase manages itself; never copied or diffed as user data.
///
/// Mirrors the list the Supabase CLI excludes from `supabase db dump`.
pub const MANAGED_SCHEMAS: &[&str] = &[
    "auth",
    "storage",
    "extensions",
    "graphql",
    "graphql_public",
    "realtime",
    "_realtime",
    "supabase_functions",
    "supabase_migrations",
    "pgsodium",
    "pgsodium_masks",
    "vault",
    "net",
    "cron",
    "pgbouncer",
    "pgtle",
    "_analytics",
    "_supavisor",
    "information_schema",
    "pg_catalog",
    "pg_toast",
    "topology",
    "tiger",
    "tiger_data",
    "cutover",
];

/// Tables that are never copied, even when their schema is opted in: they
/// belong to the platform's own migration history.
pub const NEVER_COPIED: &[&str] = &[
    "auth.schema_migrations",
    "storage.migrations",
    "supabase_functions.migrations",
];

/// `auth` tables `[data] include_auth` copies: what a user needs to log in
/// on the target (accounts, linked identities, MFA factors, SSO set-up).
pub const AUTH_LOGIN_TABLES: &[&str] = &[
    "auth.users",
    "auth.identities",
    "auth.mfa_factors",
    "auth.sso_providers",
    "auth.sso_domains",
    "auth.saml_providers",
];

/// `auth` tables copied only with `include_auth_sessions` as well: live
/// sessions and tokens, login flows in progress, the audit log.
pub const AUTH_SESSION_TABLES: &[&str] = &[
    "auth.sessions",
    "auth.refresh_tokens",
    "auth.mfa_challenges",
    "auth.mfa_amr_claims",
    "auth.flow_state",
    "auth.one_time_tokens",
    "auth.saml_relay_states",
    "auth.audit_log_entries",
];

/// The whole manifest.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Manifest {
    /// `[project]`: names and folders.
    pub project: ProjectSection,
    /// `[schema]`: how migration files are applied.
    pub schema: SchemaSection,
    /// `[data]`: which tables are copied and how.
    pub data: DataSection,
    /// `[checks]`: what `preflight` and `validate` verify.
    pub checks: ChecksSection,
    /// `[functions]`: Edge Functions to deploy and invoke.
    pub functions: FunctionsSection,
    /// `[secrets]`: Edge Function secrets and where their values come from.
    pub secrets: SecretsSection,
    /// `[config]`: configuration rows stored in a database table.
    pub config: ConfigSection,
    /// `[guards]`: switches turned off in the source and on in the target.
    pub guards: GuardsSection,
    /// `[frontend]`: the hosted frontend that is pointed at the target.
    pub frontend: Option<FrontendSection>,
    /// `[gate]`: the approvals required before `cutover`.
    pub gate: GateSection,
    /// `[backup]`: where and how backups are written.
    pub backup: BackupSection,
    /// `[ledger]`: where the audit ledger lives in the target database.
    pub ledger: LedgerSection,
    /// `[lints]`: the security lints checked before `cutover`.
    pub lints: LintsSection,
    /// `[vault]`: what `data` does with the source's Vault secrets.
    pub vault: VaultSection,
    /// `[project_settings]`: project settings `config` sets through the API.
    pub project_settings: ProjectSettingsSection,
    /// `[parity]`: the project settings comparison's exceptions.
    pub parity: ParitySection,
    /// `[monitor]`: the monitoring window after the switch.
    pub monitor: MonitorSection,
    /// `[storage]`: Storage buckets and objects copied by the `storage`
    /// phase (opt-in: without it `migrate` leaves storage alone).
    pub storage: Option<StorageSection>,
}

/// `[storage]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// Buckets to copy by id: `["*"]` (the default) for every bucket of the
    /// source, or names.
    pub buckets: Vec<String>,
    /// Buckets never copied.
    pub exclude: Vec<String>,
    /// Objects copied at once.
    pub parallel: u16,
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            buckets: vec!["*".into()],
            exclude: Vec::new(),
            parallel: 4,
        }
    }
}

impl StorageSection {
    /// Whether `buckets` takes every bucket (`"*"`, or empty).
    pub fn all_buckets(&self) -> bool {
        self.buckets.is_empty() || self.buckets.iter().any(|b| b.trim() == "*")
    }
}

/// `[project]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectSection {
    /// A human name shown in the summary.
    pub name: String,
    /// Folder of `<version>_<name>.sql` files, relative to the manifest.
    pub migrations_dir: PathBuf,
    /// Folder of Edge Function folders, relative to the manifest.
    pub functions_dir: PathBuf,
}

impl Default for ProjectSection {
    fn default() -> Self {
        Self {
            name: String::new(),
            migrations_dir: PathBuf::from("supabase/migrations"),
            functions_dir: PathBuf::from("supabase/functions"),
        }
    }
}

/// `[schema]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaSection {
    /// Accept an applied migration whose file changed since (reported as a warning).
    pub allow_drift: bool,
    /// Accept a never-applied file older than the newest applied version.
    pub allow_out_of_order: bool,
    /// How long a writing phase waits for another cutover run's lock on the
    /// target before giving up, in seconds.
    pub lock_timeout_seconds: u64,
    /// Pause the target's active pg_cron jobs after the migrations, until
    /// `cutover` (on a target the ledger does not know as live). `false`
    /// for a target that is live without a cutover recorded in its ledger.
    pub hold_cron_jobs: bool,
}

impl Default for SchemaSection {
    fn default() -> Self {
        Self {
            allow_drift: false,
            allow_out_of_order: false,
            lock_timeout_seconds: 60,
            hold_cron_jobs: true,
        }
    }
}

/// How rows are moved.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DataMode {
    /// A one-off snapshot copy; `cutover` freezes the source and proves it
    /// unchanged since the copy.
    #[default]
    Copy,
    /// PostgreSQL logical replication: the target follows the source, server
    /// to server, until `cutover` freezes the source and drains the rest.
    Replicate,
}

impl std::fmt::Display for DataMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DataMode::Copy => "copy",
            DataMode::Replicate => "replicate",
        })
    }
}

/// `[data]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    /// Tables to copy, as `schema.table` or `table` (= `public.table`).
    /// Empty means every table of the user schemas.
    pub tables: Vec<String>,
    /// Tables left out of the default list.
    pub exclude: Vec<String>,
    /// Copy the `auth` tables logins need too ([`AUTH_LOGIN_TABLES`]: users,
    /// identities, MFA factors, SSO and SAML providers).
    pub include_auth: bool,
    /// With `include_auth`, also copy live sessions and tokens
    /// ([`AUTH_SESSION_TABLES`]). Off by default: after a switch (and a new
    /// JWT secret) they are useless, and copying them can keep old sessions
    /// alive.
    pub include_auth_sessions: bool,
    /// Copy rows of the `storage` schema (buckets, object metadata) too.
    pub include_storage: bool,
    /// `copy` (a one-off snapshot copy) or `replicate` (logical replication).
    pub mode: DataMode,
    /// Tables copied at once.
    pub parallel: u16,
    /// How long the write freeze (and a replicate-mode fence) waits for
    /// writers in flight before giving up and changing nothing, in seconds.
    pub freeze_lock_timeout_seconds: u64,
    /// Replicate mode: the host the target connects to for replication
    /// (Supabase: the direct host `db.<ref>.supabase.co`, not the pooler);
    /// default the host of `source-db-url`.
    pub replication_host: Option<String>,
    /// Replicate mode: the port for `replication_host`; default the port of
    /// `source-db-url` (5432 when it has none).
    pub replication_port: Option<u16>,
    /// Replicate mode: how long `data` waits for the initial sync, in minutes.
    pub sync_timeout_minutes: u64,
    /// Replicate mode: the replication lag (a fence's round trip) `data`
    /// waits to get under, and `cutover` refuses to freeze above, in seconds.
    pub max_lag_seconds: u64,
}

impl Default for DataSection {
    fn default() -> Self {
        Self {
            tables: Vec::new(),
            exclude: Vec::new(),
            include_auth: false,
            include_auth_sessions: false,
            include_storage: false,
            mode: DataMode::Copy,
            parallel: 2,
            freeze_lock_timeout_seconds: 10,
            replication_host: None,
            replication_port: None,
            sync_timeout_minutes: 300,
            max_lag_seconds: 5,
        }
    }
}

impl DataSection {
    /// Whether the default table list (no `[data] tables`) copies the `auth`
    /// table `name`: the login tables with `include_auth`, the session tables
    /// only with `include_auth_sessions` too, never any other (GoTrue's own
    /// bookkeeping, or a table a newer GoTrue added that cutover does not
    /// know yet: name it in `[data] tables` to copy it).
    pub fn copies_auth_table(&self, name: &QualifiedName) -> bool {
        let name = name.to_string();
        self.include_auth
            && (AUTH_LOGIN_TABLES.contains(&name.as_str())
                || self.include_auth_sessions && AUTH_SESSION_TABLES.contains(&name.as_str()))
    }
}

/// `[checks]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChecksSection {
    /// Tables whose row counts are compared; empty means every copied table.
    pub row_counts: Vec<String>,
    /// Compare per-table content checksums in `validate`.
    pub checksum: bool,
    /// Queries run as a role with JWT claims, and what they must return.
    pub rls_probes: Vec<RlsProbe>,
    /// Settings that must not be present in the job's environment or the
    /// frontend's variables (e.g. `VITE_USE_MOCK_DATA = "true"`).
    pub forbidden: Vec<ForbiddenSetting>,
}

impl Default for ChecksSection {
    fn default() -> Self {
        Self {
            row_counts: Vec::new(),
            checksum: true,
            rls_probes: Vec::new(),
            forbidden: Vec::new(),
        }
    }
}

/// One RLS probe: `query` run as `role` with `claims`, returning one value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RlsProbe {
    /// What the probe proves, shown in the summary.
    pub name: String,
    /// The database role, usually `authenticated`.
    #[serde(default = "default_probe_role")]
    pub role: String,
    /// JWT claims set as `request.jwt.claims`.
    #[serde(default)]
    pub claims: BTreeMap<String, toml::Value>,
    /// A query returning a single value.
    pub query: String,
    /// The value it must return, compared as text.
    pub expect: String,
}

fn default_probe_role() -> String {
    "authenticated".into()
}

/// A setting that must not be set (or must not have `value`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ForbiddenSetting {
    /// The variable name, e.g. `VITE_USE_MOCK_DATA`.
    pub name: String,
    /// The forbidden value (case-insensitive); absent means any value is forbidden.
    pub value: Option<String>,
}

/// `[functions]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FunctionsSection {
    /// Functions to deploy; empty means every folder with an entrypoint.
    pub deploy: Vec<String>,
    /// Folders never deployed (e.g. `test-create-user`).
    pub exclude: Vec<String>,
    /// The entrypoint file name looked for in each folder.
    pub entrypoint: String,
    /// `verify_jwt` per function; default from `supabase/config.toml`, else true.
    pub verify_jwt: BTreeMap<String, bool>,
    /// Invocations run after deploy and in `smoke`.
    pub smoke: Vec<FunctionSmoke>,
    /// Base URL of the functions, default `https://<target-project-ref>.supabase.co/functions/v1`;
    /// `${VAR}` allowed.
    pub base_url: Option<String>,
    /// Functions deployed at once (the Management API allows ~60 requests a minute).
    pub parallel: u16,
}

impl Default for FunctionsSection {
    fn default() -> Self {
        Self {
            deploy: Vec::new(),
            exclude: Vec::new(),
            entrypoint: "index.ts".into(),
            verify_jwt: BTreeMap::new(),
            smoke: Vec::new(),
            base_url: None,
            parallel: 3,
        }
    }
}

/// One function invocation and its expected answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FunctionSmoke {
    /// What it checks, shown in the summary.
    pub name: String,
    /// The function slug.
    pub function: String,
    /// Appended to the function's URL, e.g. `/health` or `?dry_run=1`.
    #[serde(default)]
    pub path: Option<String>,
    /// HTTP method.
    #[serde(default = "default_post")]
    pub method: String,
    /// Headers; values may be `${ENV_VAR}` references (masked).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request body; `${ENV_VAR}` references allowed.
    #[serde(default)]
    pub body: Option<String>,
    /// Expected status; `expect_not_status` instead refuses one status.
    #[serde(default)]
    pub expect_status: Option<u16>,
    /// A status the answer must not have (e.g. 500).
    #[serde(default)]
    pub expect_not_status: Option<u16>,
    /// Latency budget in milliseconds.
    #[serde(default)]
    pub max_latency_ms: Option<u64>,
}

fn default_post() -> String {
    "POST".into()
}

/// `[secrets]`
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsSection {
    /// Secret name → environment variable holding the target's value.
    pub required: BTreeMap<String, String>,
}

/// `[config]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigSection {
    /// The configuration table, `schema.table` or `table`.
    pub table: String,
    /// Its key column.
    pub key_column: String,
    /// Its value column.
    pub value_column: String,
    /// Insert keys missing from the table instead of reporting them.
    pub insert_missing: bool,
    /// Keys whose values are secrets: shown as `••••`, never logged.
    pub secret_keys: Vec<String>,
    /// Key → value the target must have; `${ENV_VAR}` reads the job's environment.
    pub values: BTreeMap<String, String>,
    /// Extra tables exported as CSV by `backup` for traceability.
    pub export_tables: Vec<String>,
}

impl Default for ConfigSection {
    fn default() -> Self {
        Self {
            table: String::new(),
            key_column: "config_key".into(),
            value_column: "config_value".into(),
            insert_missing: false,
            secret_keys: Vec::new(),
            values: BTreeMap::new(),
            export_tables: Vec::new(),
        }
    }
}

/// `[guards]`
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GuardsSection {
    /// Configuration switches: off in the source before go-live, on in the target after.
    pub switches: Vec<GuardSwitch>,
    /// pg_cron job names paused in the source and resumed in the target.
    pub cron_jobs: Vec<String>,
}

/// One switch in the `[config]` table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GuardSwitch {
    /// The configuration key, e.g. `whatsapp_enabled`.
    pub key: String,
    /// Value meaning "off".
    #[serde(default = "default_off")]
    pub off: String,
    /// Value meaning "on".
    #[serde(default = "default_on")]
    pub on: String,
}

fn default_off() -> String {
    "false".into()
}
fn default_on() -> String {
    "true".into()
}

/// Which hosting provider serves the frontend.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FrontendProvider {
    /// Vercel.
    Vercel,
    /// Cloudflare Pages.
    CloudflarePages,
}

impl std::fmt::Display for FrontendProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FrontendProvider::Vercel => "vercel",
            FrontendProvider::CloudflarePages => "cloudflare-pages",
        })
    }
}

/// `[frontend]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FrontendSection {
    /// `vercel` or `cloudflare-pages`.
    pub provider: FrontendProvider,
    /// The provider's project name or id.
    pub project: String,
    /// Vercel team id, when the project belongs to a team.
    #[serde(default)]
    pub team_id: Option<String>,
    /// Cloudflare account id.
    #[serde(default)]
    pub account_id: Option<String>,
    /// The public URL of the production site, used by smoke routes.
    #[serde(default)]
    pub url: Option<String>,
    /// Production variables pointed at the target; values may be `${ENV_VAR}`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Routes that must answer after the switch.
    #[serde(default)]
    pub routes: Vec<RouteCheck>,
    /// The source's values of secret-looking variables (`${VAR}` from the
    /// job's environment). The ledger never stores a secret, so `rollback`
    /// restores such a variable from here, after checking its sha-256 against
    /// the one `cutover` recorded; without it, the previous deployment (whose
    /// build carries the old value) is restored and the variable is reported.
    #[serde(default)]
    pub source_env: BTreeMap<String, String>,
    /// The provider's API base URL (default the provider's public API; set
    /// for a proxy or a test double).
    #[serde(default)]
    pub api_url: Option<String>,
    /// How long `cutover` waits for the provider's production deployment to
    /// be ready, in seconds.
    #[serde(default = "default_deploy_timeout")]
    pub deploy_timeout_seconds: u64,
}

fn default_deploy_timeout() -> u64 {
    600
}

/// One route smoke check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteCheck {
    /// Path below the frontend URL, e.g. `/dashboard`.
    pub path: String,
    /// Expected status.
    #[serde(default = "default_200")]
    pub expect_status: u16,
    /// Latency budget in milliseconds.
    #[serde(default)]
    pub max_latency_ms: Option<u64>,
}

fn default_200() -> u16 {
    200
}

/// `[gate]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GateSection {
    /// The GitHub environment whose reviewers approve; default the `environment` input.
    pub environment: Option<String>,
    /// Minimum number of required reviewers on that environment.
    pub min_approvals: u32,
    /// The approver must differ from the person who started the run.
    pub four_eyes: bool,
    /// How old the last passing `validate` may be, in hours.
    pub validation_max_age_hours: u32,
}

impl Default for GateSection {
    fn default() -> Self {
        Self {
            environment: None,
            min_approvals: 1,
            four_eyes: false,
            validation_max_age_hours: 24,
        }
    }
}

/// `[backup]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BackupSection {
    /// Folder (relative to the workspace) that holds one sub-folder per run.
    pub dir: PathBuf,
    /// `age` public keys; when present, dumps are encrypted for them.
    pub age_recipients: Vec<String>,
    /// Restore each dump into a scratch database and compare row counts.
    pub verify: bool,
}

impl Default for BackupSection {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("cutover-backups"),
            age_recipients: Vec::new(),
            verify: false,
        }
    }
}

/// `[ledger]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSection {
    /// Schema of the ledger tables in the target database.
    pub schema: String,
}

impl Default for LedgerSection {
    fn default() -> Self {
        Self {
            schema: "cutover".into(),
        }
    }
}

/// The security lints cutover knows, by their stable ids (Supabase's
/// database advisor names).
pub const KNOWN_LINTS: &[&str] = &[
    "rls_disabled_in_public",
    "policy_allows_all_to_anon",
    "function_search_path_mutable",
    "security_definer_view",
    "auth_users_exposed",
    "extension_in_public",
    "no_primary_key",
];

/// What `data` does with the source's Supabase Vault secrets, which a copy
/// of the rows cannot carry (they are encrypted with the project's root key).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum VaultMode {
    /// Nothing is moved; `data` warns, naming the source's secrets.
    #[default]
    Leave,
    /// Each secret is created on the target (with the target's key) from the
    /// value in `[vault.secrets]`.
    Recreate,
    /// The source's root key is given to the target (`PUT /pgsodium`) before
    /// the rows are copied verbatim.
    MoveRootKey,
}

impl std::fmt::Display for VaultMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VaultMode::Leave => "leave",
            VaultMode::Recreate => "recreate",
            VaultMode::MoveRootKey => "move-root-key",
        })
    }
}

/// `[vault]`
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VaultSection {
    /// `leave`, `recreate` or `move-root-key`.
    pub mode: VaultMode,
    /// `recreate`: Vault secret name → environment variable holding the
    /// target's value.
    pub secrets: BTreeMap<String, String>,
}

/// `[project_settings]`: Supabase project settings `config` sets through the
/// Management API, by section; each key as the API names it (e.g.
/// `[project_settings.auth] site_url`), each value plain or, for a key whose
/// name looks secret, only a `${VAR}` reference.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectSettingsSection {
    /// `/config/auth` keys (site URL, redirect allow list, SMTP, ...).
    pub auth: BTreeMap<String, toml::Value>,
    /// `/postgrest` keys (`db_schema`, `max_rows`, `db_extra_search_path`).
    pub postgrest: BTreeMap<String, toml::Value>,
    /// `/config/realtime` keys.
    pub realtime: BTreeMap<String, toml::Value>,
    /// `/config/storage` keys (`fileSizeLimit`, ...).
    pub storage: BTreeMap<String, toml::Value>,
}

impl ProjectSettingsSection {
    /// Whether any key is set.
    pub fn is_empty(&self) -> bool {
        self.auth.is_empty()
            && self.postgrest.is_empty()
            && self.realtime.is_empty()
            && self.storage.is_empty()
    }
}

/// `[lints]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LintsSection {
    /// Schemas the Data API exposes (Supabase: API settings → exposed
    /// schemas); the lints look at objects in these.
    pub exposed_schemas: Vec<String>,
    /// Findings accepted on purpose, each with its reason.
    pub accept: Vec<LintAcceptance>,
}

impl Default for LintsSection {
    fn default() -> Self {
        Self {
            exposed_schemas: vec!["public".into()],
            accept: Vec::new(),
        }
    }
}

/// `[parity]`: how `preflight`, `validate` and the cutover gate compare the
/// two projects' settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ParitySection {
    /// Settings (`auth.jwt_exp`, `postgrest.max_rows`, ...) allowed to
    /// differ, each with the reason shown in the summary.
    pub accept: Vec<ParityAcceptance>,
    /// The target's SMTP password as `${VAR}`: checked against the digest
    /// `GET /config/auth` answers, never printed.
    pub smtp_password: Option<String>,
}

/// `[[parity.accept]]`: one project setting allowed to differ.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ParityAcceptance {
    /// `section.key`, e.g. `auth.jwt_exp`.
    pub setting: String,
    /// Why the difference is intended; required, shown in the summary.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `[[lints.accept]]`: one finding accepted by lint id and object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LintAcceptance {
    /// The lint id, e.g. `rls_disabled_in_public`.
    pub lint: String,
    /// The object as the finding names it, e.g. `public.country_codes`.
    pub object: String,
    /// Why it is acceptable; required, and shown in the summary. Optional
    /// here only so that a missing one is refused in the manifest's words.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `[monitor]`: the monitoring window after the switch (runbook:
/// "Post-Deployment Monitoring"). Thresholds default to the runbook's
/// monitoring checklist: error rate < 1 %, Edge Function errors 0,
/// dashboard load < 3 s.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorSection {
    /// How long the window lasts, in seconds (default one hour).
    pub window_seconds: u64,
    /// Time between two polls, in seconds; stretched when a poll's API
    /// calls would pass the Management API's per-minute limit.
    pub interval_seconds: u64,
    /// The highest API error rate (5xx among all requests of the target's
    /// API gateway since the window opened), in percent.
    pub max_api_error_rate_percent: f64,
    /// The most Edge Function 5xx answers allowed in the window, all
    /// functions together.
    pub max_function_5xx: u64,
    /// The slowest a frontend route may answer, in milliseconds, for routes
    /// without their own `max_latency_ms`.
    pub max_route_latency_ms: u64,
    /// Requests the window must have seen before its error rate is judged
    /// (a handful of requests with one error is no rate).
    pub min_requests: u64,
    /// Edge Functions to watch, by slug; empty means every function the
    /// target lists.
    pub functions: Vec<String>,
    /// Run `rollback` when a threshold is passed.
    pub rollback_on_failure: bool,
    /// Run the window after `cutover` in the same run (as if `monitor`
    /// were listed after it), with its baseline taken before the switch.
    pub after_cutover: bool,
}

impl Default for MonitorSection {
    fn default() -> Self {
        Self {
            window_seconds: 3600,
            interval_seconds: 60,
            max_api_error_rate_percent: 1.0,
            max_function_5xx: 0,
            max_route_latency_ms: 3000,
            min_requests: 20,
            functions: Vec::new(),
            rollback_on_failure: false,
            after_cutover: false,
        }
    }
}

impl MonitorSection {
    /// What is wrong with the section, in the manifest's words with the fix.
    pub fn problem(&self) -> Option<String> {
        if self.interval_seconds == 0 {
            return Some(
                "[monitor] interval_seconds must be at least 1 (seconds between two polls), e.g. interval_seconds = 60".into(),
            );
        }
        if self.window_seconds == 0 {
            return Some(
                "[monitor] window_seconds must be at least 1 (how long to watch), e.g. window_seconds = 3600 for the runbook's first hour".into(),
            );
        }
        if self.window_seconds < self.interval_seconds {
            return Some(format!(
                "[monitor] window_seconds ({}) is shorter than interval_seconds ({}): the window would end before its first poll; make window_seconds a multiple of interval_seconds",
                self.window_seconds, self.interval_seconds
            ));
        }
        if !self.max_api_error_rate_percent.is_finite()
            || !(0.0..=100.0).contains(&self.max_api_error_rate_percent)
        {
            return Some(format!(
                "[monitor] max_api_error_rate_percent is {}, which is not a percentage: write a number from 0 to 100, e.g. max_api_error_rate_percent = 1.0 (the runbook's < 1 %)",
                self.max_api_error_rate_percent
            ));
        }
        if self.max_route_latency_ms == 0 {
            return Some(
                "[monitor] max_route_latency_ms must be at least 1, e.g. max_route_latency_ms = 3000 (the runbook's dashboard < 3 s)".into(),
            );
        }
        if let Some(slug) = self.functions.iter().find(|s| s.trim().is_empty()) {
            return Some(format!(
                "[monitor] functions holds an empty slug ({slug:?}): list function slugs, e.g. functions = [\"sms-ingest\"], or leave it out to watch every function"
            ));
        }
        None
    }
}

/// A manifest that could not be read; carries where the problem is.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file is missing or unreadable.
    #[error(
        "cannot read manifest {path}: {source}; pass --manifest (input `manifest`) with the path of your cutover.toml"
    )]
    Read {
        /// The path tried.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax, a wrong type or an unknown key.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The manifest file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong and, where known, how to fix it.
        message: String,
    },
    /// Parsed, but a value is not acceptable.
    #[error("{path}: {message}")]
    Invalid {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
}

impl ManifestError {
    /// Line and column, when the error has a position.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            ManifestError::Parse { line, column, .. } => Some((*line, *column)),
            _ => None,
        }
    }
}

/// A TOML/serde message with Rust's type names in words a manifest author
/// uses: "expected u64" reads "expected a whole number (0 or more)".
fn in_user_words(message: &str) -> String {
    const WORDS: [(&str, &str); 13] = [
        ("expected u8", "expected a whole number (0 to 255)"),
        ("expected u16", "expected a whole number (0 to 65535)"),
        ("expected u32", "expected a whole number (0 or more)"),
        ("expected u64", "expected a whole number (0 or more)"),
        ("expected usize", "expected a whole number (0 or more)"),
        ("expected i32", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
        (
            "expected a sequence",
            "expected a list, e.g. [\"a\", \"b\"]",
        ),
        ("expected a map", "expected a table of key = value"),
        ("expected a string", "expected text in quotes"),
        ("expected a boolean", "expected true or false"),
        ("invalid type: sequence", "invalid type: a list"),
    ];
    let mut text = message.to_string();
    for (rust, words) in WORDS {
        if let Some(at) = text.find(rust) {
            let end = at + rust.len();
            // Only whole words: "expected u64" but not "expected u645".
            if !text[end..].starts_with(|c: char| c.is_ascii_alphanumeric()) {
                text.replace_range(at..end, words);
            }
        }
    }
    text.replace("invalid type: string", "invalid type: text")
        .replace("invalid type: integer", "invalid type: a whole number")
        .replace("invalid type: map", "invalid type: a table")
}

impl Manifest {
    /// Reads and checks the manifest at `path`.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Manifest::parse(&text, path)
    }

    /// Parses manifest text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|span| line_column(text, span.start))
                .unwrap_or((1, 1));
            ManifestError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: in_user_words(e.message().trim()),
            }
        })?;
        manifest.check(path)?;
        Ok(manifest)
    }

    fn check(&self, path: &Path) -> Result<(), ManifestError> {
        let invalid = |message: String| ManifestError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        if self.data.parallel == 0 {
            return Err(invalid(
                "[data] parallel must be at least 1 (tables copied at once)".into(),
            ));
        }
        if self.data.include_auth_sessions && !self.data.include_auth {
            return Err(invalid(
                "[data] include_auth_sessions = true needs include_auth = true (sessions belong to the users it copies)".into(),
            ));
        }
        for table in self.data.tables.iter().chain(&self.data.exclude) {
            QualifiedName::parse(table).map_err(|m| invalid(format!("[data] {m}")))?;
        }
        if !self.config.values.is_empty() && self.config.table.is_empty() {
            return Err(invalid(
                "[config] values are set but [config] table is empty: name the table that holds them, e.g. table = \"invoice_configurations\"".into(),
            ));
        }
        if !self.guards.switches.is_empty() && self.config.table.is_empty() {
            return Err(invalid(
                "[[guards.switches]] need the [config] table they live in: set [config] table"
                    .into(),
            ));
        }
        if self.functions.parallel == 0 {
            return Err(invalid(
                "[functions] parallel must be at least 1 (functions deployed at once)".into(),
            ));
        }
        if !valid_identifier(&self.ledger.schema) {
            return Err(invalid(format!(
                "[ledger] schema {:?} is not a plain identifier (letters, digits, _)",
                self.ledger.schema
            )));
        }
        parse_recipients(&self.backup.age_recipients).map_err(invalid)?;
        for schema in &self.lints.exposed_schemas {
            if schema.trim().is_empty() {
                return Err(invalid(
                    "[lints] exposed_schemas holds an empty name: list schema names, e.g. [\"public\"]".into(),
                ));
            }
        }
        for a in &self.lints.accept {
            if !KNOWN_LINTS.contains(&a.lint.as_str()) {
                return Err(invalid(format!(
                    "[[lints.accept]] lint {:?} is not a lint cutover checks; known lints: {}",
                    a.lint,
                    KNOWN_LINTS.join(", ")
                )));
            }
            if a.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                return Err(invalid(format!(
                    "[[lints.accept]] reason is missing for lint = {:?}, object = {:?}: an accepted finding needs reason = \"why it is acceptable\" (shown in the summary)",
                    a.lint, a.object
                )));
            }
        }
        for a in &self.parity.accept {
            if a.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                return Err(invalid(format!(
                    "[[parity.accept]] reason is missing for setting = {:?}: an accepted difference needs reason = \"why it is intended\" (shown in the summary)",
                    a.setting
                )));
            }
            if !a.setting.contains('.') {
                return Err(invalid(format!(
                    "[[parity.accept]] setting {:?} names no section: write it as section.key, e.g. \"auth.jwt_exp\" or \"postgrest.max_rows\"",
                    a.setting
                )));
            }
        }
        if let Some(message) = self.monitor.problem() {
            return Err(invalid(message));
        }
        if let Some(storage) = &self.storage {
            if storage.parallel == 0 {
                return Err(invalid(
                    "[storage] parallel must be at least 1 (objects copied at once)".into(),
                ));
            }
            for name in storage.buckets.iter().chain(&storage.exclude) {
                if name.trim().is_empty() || (name.contains('*') && name.trim() != "*") {
                    return Err(invalid(format!(
                        "[storage] bucket {name:?} is not a bucket id: list ids, e.g. buckets = [\"avatars\", \"invoices\"], or [\"*\"] for every bucket"
                    )));
                }
            }
        }
        for (name, var) in &self.secrets.required {
            if var.trim().is_empty() {
                return Err(invalid(format!(
                    "[secrets.required] {name} names no environment variable: write {name} = \"ENV_VAR_NAME\""
                )));
            }
        }
        Ok(())
    }

    /// Resolves a path of the manifest relative to the manifest's folder.
    pub fn resolve(manifest_path: &Path, relative: &Path) -> PathBuf {
        if relative.is_absolute() {
            return relative.to_path_buf();
        }
        manifest_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| p.join(relative))
            .unwrap_or_else(|| relative.to_path_buf())
    }
}

/// A `schema.table` name; a bare `table` means `public.table`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QualifiedName {
    /// The schema.
    pub schema: String,
    /// The table.
    pub name: String,
}

impl QualifiedName {
    /// Parses `schema.table` or `table`.
    pub fn parse(text: &str) -> Result<QualifiedName, String> {
        let mut parts = text.split('.');
        let (schema, name) = match (parts.next(), parts.next(), parts.next()) {
            (Some(name), None, None) => ("public", name),
            (Some(schema), Some(name), None) => (schema, name),
            _ => {
                return Err(format!("table {text:?} is not `schema.table` or `table`"));
            }
        };
        if schema.is_empty() || name.is_empty() {
            return Err(format!("table {text:?} is not `schema.table` or `table`"));
        }
        Ok(QualifiedName {
            schema: schema.into(),
            name: name.into(),
        })
    }

    /// The name quoted for SQL: `"schema"."table"`.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

impl std::fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Parses `[backup] age_recipients`; an invalid key names its position.
pub fn parse_recipients(keys: &[String]) -> Result<Vec<age::x25519::Recipient>, String> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            k.trim().parse::<age::x25519::Recipient>().map_err(|e| {
                format!(
                    "[backup] age_recipients[{i}] is not an age X25519 public key ({e}); it must look like age1... (create a key pair with `age-keygen`, keep the AGE-SECRET-KEY-1... private part in a secret)"
                )
            })
        })
        .collect()
}

/// The `${VAR}` references in a manifest value, in order.
pub fn env_refs(text: &str) -> Vec<String> {
    let mut refs = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                if !name.is_empty() {
                    refs.push(name.to_string());
                }
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    refs
}

/// Replaces `${VAR}` references with `lookup(VAR)`; the error lists the
/// variables that are unset or empty.
pub fn expand(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, Vec<String>> {
    let mut out = text.to_string();
    let mut missing = Vec::new();
    for name in env_refs(text) {
        match lookup(&name) {
            Some(value) => out = out.replace(&format!("${{{name}}}"), &value),
            None => missing.push(name),
        }
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(missing)
    }
}

/// Quotes an SQL identifier.
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn valid_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_checked() {
        let id = age::x25519::Identity::generate();
        let public = id.to_public().to_string();
        assert_eq!(parse_recipients(&[public]).unwrap().len(), 1);
        let err = parse_recipients(&["ssh-ed25519 AAAA".into()]).unwrap_err();
        assert!(
            err.contains("age_recipients[0]") && err.contains("age1"),
            "{err}"
        );
    }

    #[test]
    fn type_errors_read_in_manifest_words() {
        let err = Manifest::parse(
            "[project]\nname = \"p\"\n[schema]\nlock_timeout_seconds = \"x\"\n",
            Path::new("cutover.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("invalid type: text \"x\", expected a whole number (0 or more)"),
            "{err}"
        );
        assert!(!err.contains("u64"), "{err}");
        assert_eq!(in_user_words("expected u645"), "expected u645");
        assert_eq!(
            in_user_words("invalid type: integer `1`, expected a boolean"),
            "invalid type: a whole number `1`, expected true or false"
        );
    }

    #[test]
    fn storage_section_is_opt_in_and_strict() {
        let path = Path::new("cutover.toml");
        let m = Manifest::parse("[project]\nname = \"x\"\n", path).unwrap();
        assert!(m.storage.is_none());
        let m = Manifest::parse("[storage]\n", path).unwrap();
        let s = m.storage.unwrap();
        assert!(s.all_buckets());
        assert_eq!(s.parallel, 4);
        let m = Manifest::parse("[storage]\nbuckets = [\"a\"]\nexclude = [\"b\"]\n", path).unwrap();
        assert!(!m.storage.unwrap().all_buckets());
        let err = Manifest::parse("[storage]\nbucket = [\"a\"]\n", path).unwrap_err();
        assert_eq!(err.position(), Some((2, 1)), "{err}");
        let err = Manifest::parse("[storage]\nparallel = 0\n", path).unwrap_err();
        assert!(err.to_string().contains("[storage] parallel"), "{err}");
        let err = Manifest::parse("[storage]\nbuckets = [\"av*\"]\n", path).unwrap_err();
        assert!(err.to_string().contains("not a bucket id"), "{err}");
    }

    #[test]
    fn minimal_manifest_gets_defaults() {
        let m = Manifest::parse("[project]\nname = \"x\"\n", Path::new("cutover.toml")).unwrap();
        assert_eq!(m.project.name, "x");
        assert_eq!(
            m.project.migrations_dir,
            PathBuf::from("supabase/migrations")
        );
        assert_eq!(m.data.parallel, 2);
        assert!(m.checks.checksum);
        assert_eq!(m.ledger.schema, "cutover");
    }

    #[test]
    fn auth_scope_copies_login_tables_and_sessions_only_when_asked() {
        let parse =
            |data: &str| Manifest::parse(&format!("[data]\n{data}\n"), Path::new("cutover.toml"));
        let q = |n: &str| QualifiedName::parse(n).unwrap();
        let login = parse("include_auth = true").unwrap();
        assert!(login.data.copies_auth_table(&q("auth.users")));
        assert!(login.data.copies_auth_table(&q("auth.mfa_factors")));
        assert!(!login.data.copies_auth_table(&q("auth.sessions")));
        assert!(!login.data.copies_auth_table(&q("auth.schema_migrations")));
        let all = parse("include_auth = true\ninclude_auth_sessions = true").unwrap();
        assert!(all.data.copies_auth_table(&q("auth.refresh_tokens")));
        assert!(!all.data.copies_auth_table(&q("auth.instances")));
        let off = parse("").unwrap();
        assert!(!off.data.copies_auth_table(&q("auth.users")));
        let err = parse("include_auth_sessions = true")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("include_auth_sessions") && err.contains("include_auth = true"),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let err = Manifest::parse(
            "[project]\nname = \"x\"\n\n[data]\ntabels = []\n",
            Path::new("cutover.toml"),
        )
        .unwrap_err();
        assert_eq!(err.position(), Some((5, 1)), "{err}");
        let text = err.to_string();
        assert!(text.starts_with("cutover.toml:5:1:"), "{text}");
        assert!(text.contains("tabels"), "{text}");
        assert!(text.contains("tables"), "names the expected keys: {text}");
    }

    #[test]
    fn wrong_type_names_line_and_column() {
        let err = Manifest::parse("[data]\nparallel = \"two\"\n", Path::new("m.toml")).unwrap_err();
        assert_eq!(err.position(), Some((2, 12)), "{err}");
    }

    #[test]
    fn qualified_names() {
        assert_eq!(
            QualifiedName::parse("customers").unwrap().to_string(),
            "public.customers"
        );
        assert_eq!(
            QualifiedName::parse("auth.users").unwrap().quoted(),
            "\"auth\".\"users\""
        );
        assert!(QualifiedName::parse("a.b.c").is_err());
        assert!(QualifiedName::parse(".x").is_err());
    }

    #[test]
    fn env_references() {
        assert_eq!(env_refs("${A}/x/${B_2}"), ["A", "B_2"]);
        assert_eq!(env_refs("plain ${"), Vec::<String>::new());
        let lookup = |n: &str| (n == "A").then(|| "1".to_string());
        assert_eq!(expand("a=${A}", lookup), Ok("a=1".into()));
        assert_eq!(expand("${A}${B}", lookup), Err(vec!["B".to_string()]));
    }

    #[test]
    fn lint_acceptance_needs_a_reason_and_a_known_lint() {
        let err = Manifest::parse(
            "[[lints.accept]]\nlint = \"rls_disabled_in_public\"\nobject = \"public.t\"\n",
            Path::new("m.toml"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("[[lints.accept]] reason"), "{err}");
        let err = Manifest::parse(
            "[[lints.accept]]\nlint = \"rls_off\"\nobject = \"public.t\"\nreason = \"x\"\n",
            Path::new("m.toml"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("rls_off"), "{err}");
        let m = Manifest::parse("[project]\nname = \"x\"\n", Path::new("m.toml")).unwrap();
        assert_eq!(m.lints.exposed_schemas, ["public"]);
    }

    #[test]
    fn monitor_values_are_checked_with_the_fix() {
        let parse =
            |body: &str| Manifest::parse(&format!("[monitor]\n{body}\n"), Path::new("m.toml"));
        let m = parse("").unwrap();
        assert_eq!(m.monitor.max_api_error_rate_percent, 1.0);
        assert_eq!(m.monitor.max_function_5xx, 0);
        assert_eq!(m.monitor.max_route_latency_ms, 3000);
        assert!(!m.monitor.rollback_on_failure);
        for (body, key) in [
            (
                "interval_seconds = 0",
                "interval_seconds must be at least 1",
            ),
            ("window_seconds = 0", "window_seconds must be at least 1"),
            (
                "window_seconds = 30\ninterval_seconds = 60",
                "window_seconds (30) is shorter",
            ),
            (
                "max_api_error_rate_percent = 150.0",
                "max_api_error_rate_percent is 150",
            ),
            ("max_api_error_rate_percent = -1.0", "from 0 to 100"),
            (
                "max_route_latency_ms = 0",
                "max_route_latency_ms must be at least 1",
            ),
            ("functions = [\"\"]", "empty slug"),
        ] {
            let err = parse(body).unwrap_err().to_string();
            assert!(
                err.contains(key) && err.contains("[monitor]"),
                "{body}: {err}"
            );
        }
        let err = parse("window = 10").unwrap_err().to_string();
        assert!(
            err.contains("window_seconds"),
            "names the known keys: {err}"
        );
    }

    #[test]
    fn config_values_need_a_table() {
        let err = Manifest::parse("[config.values]\na = \"b\"\n", Path::new("m.toml")).unwrap_err();
        assert!(err.to_string().contains("[config] table"), "{err}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Pieces of TOML-ish text, right and wrong, glued at random.
        const PIECES: &[&str] = &[
            "[project]",
            "[data]",
            "[checks]",
            "[[checks.rls_probes]]",
            "[backup]",
            "[config.values]",
            "[secrets.required]",
            "[gate]",
            "[frontend]",
            "[[x]]",
            "name",
            "tables",
            "parallel",
            "verify",
            "age_recipients",
            "tabels",
            "=",
            " = ",
            "\"",
            "\"x\"",
            "'",
            "'''",
            "\"\"\"",
            "[",
            "]",
            "{",
            "}",
            ",",
            "1",
            "-1",
            "0",
            "99999999999999999999",
            "true",
            "false",
            "1.5",
            "nan",
            "1979-05-27T07:32:00Z",
            "\n",
            "\r\n",
            "\t",
            " ",
            "#",
            ".",
            "é",
            "✓",
            "\\",
            "\\u12",
            "\u{0}",
        ];

        /// No panic; a parse error's line and column lie inside the text.
        fn check(text: &str) {
            match Manifest::parse(text, Path::new("m.toml")) {
                Ok(_) => {}
                Err(ManifestError::Parse { line, column, .. }) => {
                    let lines: Vec<&str> = text.split('\n').collect();
                    assert!(line >= 1 && line <= lines.len(), "line {line} of {text:?}");
                    let width = lines[line - 1].chars().count();
                    assert!(
                        column >= 1 && column <= width + 1,
                        "column {column} of line {line} ({width} chars) in {text:?}"
                    );
                }
                Err(ManifestError::Invalid { message, .. }) => assert!(!message.is_empty()),
                Err(ManifestError::Read { .. }) => unreachable!("parse reads no file"),
            }
        }

        proptest! {
            #[test]
            fn arbitrary_text_never_panics_and_errors_point_inside_it(text in ".*") {
                check(&text);
            }

            #[test]
            fn toml_like_text_never_panics_and_errors_point_inside_it(
                pieces in prop::collection::vec(prop::sample::select(PIECES), 0..40)
            ) {
                check(&pieces.concat());
            }

            #[test]
            fn unknown_keys_are_always_refused_at_their_position(
                section in prop::sample::select(&["data", "checks", "backup", "gate", "ledger", "schema"][..]),
                key in "[a-z]{3,12}_zz",
                blank in "\n{0,3}",
            ) {
                let text = format!("[project]\nname = \"p\"\n{blank}[{section}]\n{key} = 1\n");
                let err = Manifest::parse(&text, Path::new("m.toml")).unwrap_err();
                prop_assert!(err.to_string().contains(&key), "{}", err);
                prop_assert_eq!(err.position(), Some((4 + blank.len(), 1)));
            }
        }
    }
}
