//! Project settings through the Management API: the sections `config` can
//! read and change (`[project_settings.<section>]`), each a JSON object read
//! with `GET` and changed with `PATCH` of only the keys given.

use reqwest::Method;
use serde_json::{Map, Value};

use super::{ApiError, ManagementClient};

/// A section of a project's settings the Management API reads and patches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SettingsSection {
    /// `/config/auth`: Auth (GoTrue): URLs, SMTP, providers, MFA, limits.
    Auth,
    /// `/postgrest`: the Data API: exposed schemas, max rows, search path.
    Postgrest,
    /// `/config/realtime`: Realtime limits.
    Realtime,
    /// `/config/storage`: Storage limits and features.
    Storage,
}

impl SettingsSection {
    /// Every section, in the order they are applied.
    pub const ALL: [SettingsSection; 4] = [
        SettingsSection::Auth,
        SettingsSection::Postgrest,
        SettingsSection::Realtime,
        SettingsSection::Storage,
    ];

    /// The manifest's name (`[project_settings.<name>]`).
    pub fn name(self) -> &'static str {
        match self {
            SettingsSection::Auth => "auth",
            SettingsSection::Postgrest => "postgrest",
            SettingsSection::Realtime => "realtime",
            SettingsSection::Storage => "storage",
        }
    }

    /// The path below `/v1/projects/{ref}`.
    pub fn path(self) -> &'static str {
        match self {
            SettingsSection::Auth => "/config/auth",
            SettingsSection::Postgrest => "/postgrest",
            SettingsSection::Realtime => "/config/realtime",
            SettingsSection::Storage => "/config/storage",
        }
    }
}

impl ManagementClient {
    /// `GET /v1/projects/{ref}<section path>`: the section as the API
    /// answers it (secrets only as digests).
    pub async fn settings(
        &self,
        project: &str,
        section: SettingsSection,
    ) -> Result<Map<String, Value>, ApiError> {
        self.get(project, section.path()).await
    }

    /// `PATCH /v1/projects/{ref}<section path>` with only `changes`.
    pub async fn patch_settings(
        &self,
        project: &str,
        section: SettingsSection,
        changes: &Map<String, Value>,
    ) -> Result<(), ApiError> {
        let path = super::project_path(project, section.path());
        // Some sections answer the new settings, some nothing: either is fine.
        self.no_content(Method::PATCH, &path, changes).await
    }
}

impl ManagementClient {
    /// `GET /v1/projects/{ref}/network-restrictions`: the CIDRs allowed to
    /// reach the database (`config.dbAllowedCidrs`, `dbAllowedCidrsV6`).
    pub async fn network_restrictions(&self, project: &str) -> Result<Value, ApiError> {
        self.get(project, "/network-restrictions").await
    }
}

/// The read-only project answers parity compares besides the settable
/// sections: path below `/v1/projects/{ref}` and the name rows use.
pub const SERVICE_ENDPOINTS: [(&str, &str); 5] = [
    ("/config/database/pooler", "pooler"),
    ("/ssl-enforcement", "ssl"),
    ("/billing/addons", "addons"),
    ("/config/database/postgres", "postgres"),
    ("/config/disk/util", "disk"),
];

impl ManagementClient {
    /// `GET /v1/projects/{ref}<path>` as JSON, for the read-only answers of
    /// [`SERVICE_ENDPOINTS`].
    pub async fn project_answer(&self, project: &str, path: &str) -> Result<Value, ApiError> {
        self.get(project, path).await
    }
}
