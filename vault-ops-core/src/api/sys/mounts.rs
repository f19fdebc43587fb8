//! Mounts (secret engines), auth methods, audit devices and the sanitized configuration:
//! `vault secrets ...`, `vault auth enable/disable/list/tune`, `vault audit ...`.
//!
//! All of it lives on [`Sys`] (`client.sys()`). Paths may be given with or without
//! leading and trailing slashes (`"kv2"`, `"kv2/"`, `"/team/kv/"`); the maps returned by the
//! `list_*` calls are keyed the way Vault keys them, with a trailing slash (`"secret/"`).
//!
//! ```no_run
//! # async fn run(client: vault_ops_core::VaultClient) -> Result<(), vault_ops_core::Error> {
//! use vault_ops_core::api::sys::mounts::{EnableAuth, EnableMount, MountTune};
//!
//! let sys = client.sys();
//! sys.enable_mount("app-kv", &EnableMount::kv2().description("app secrets")).await?;
//! sys.tune_mount("app-kv", &MountTune::new().max_lease_ttl("48h")).await?;
//! for (path, mount) in sys.list_mounts().await? {
//!     println!("{path:20} {:10} {}", mount.mount_type, mount.description);
//! }
//! sys.enable_auth("approle", &EnableAuth::new("approle")).await?;
//! # Ok(()) }
//! ```
//!
//! OpenBao refuses to enable audit devices through the API unless the server configuration
//! sets `unsafe_allow_api_audit_creation = true` (it prefers `audit` blocks in the
//! configuration); [`Sys::enable_audit`] then fails with Vault's 400 and its message.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Sys;
use crate::api::generic::{read_data, send};
use crate::error::{Error, Result};
use crate::http::Request;
use crate::response::null_default;

/// A mount as `sys/mounts` and `sys/auth` list it: a secret engine or an auth method.
/// An entry without a `type` is not a mount (the listing fails to decode).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct MountInfo {
    /// The engine or method type, e.g. `kv`, `pki`, `approle`, `token`.
    #[serde(rename = "type")]
    pub mount_type: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// The mount accessor, e.g. `kv_ff6f4872`.
    #[serde(default)]
    pub accessor: String,
    /// The mount's UUID.
    #[serde(default)]
    pub uuid: String,
    /// Local to this cluster (not replicated).
    #[serde(default)]
    pub local: bool,
    /// Seal wrapping enabled.
    #[serde(default)]
    pub seal_wrap: bool,
    /// External entropy access enabled.
    #[serde(default)]
    pub external_entropy_access: bool,
    /// Engine options, e.g. `version = "2"` for KV v2.
    #[serde(default, deserialize_with = "null_default")]
    pub options: BTreeMap<String, String>,
    /// TTLs and other per-mount settings.
    #[serde(default, deserialize_with = "null_default")]
    pub config: MountConfig,
    /// The pinned plugin version (empty when none is pinned).
    #[serde(default)]
    pub plugin_version: String,
    /// The running plugin version, e.g. `v2.7.2+builtin.bao`.
    #[serde(default)]
    pub running_plugin_version: String,
    /// The running plugin's SHA-256 (empty for built-ins).
    #[serde(default)]
    pub running_sha256: String,
    /// `supported`, `deprecated`, ... (when the server reports it).
    #[serde(default)]
    pub deprecation_status: Option<String>,
}

impl MountInfo {
    /// The `version` option of a KV mount: `Some(2)` for KV v2, `Some(1)` for KV v1 (also when
    /// the option is missing), `None` for other engine types.
    pub fn kv_version(&self) -> Option<u8> {
        if self.mount_type != "kv" && self.mount_type != "generic" {
            return None;
        }
        match self.options.get("version").map(String::as_str) {
            Some("2") => Some(2),
            _ => Some(1),
        }
    }
}

/// The `config` block of a [`MountInfo`]. TTLs are seconds; 0 means the system default.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct MountConfig {
    /// Default lease TTL in seconds (0: the system default).
    #[serde(default)]
    pub default_lease_ttl: u64,
    /// Maximum lease TTL in seconds (0: the system default).
    #[serde(default)]
    pub max_lease_ttl: u64,
    /// Responses are never cached.
    #[serde(default)]
    pub force_no_cache: bool,
    /// `unauth` when the mount is listed in the UI's login form.
    #[serde(default)]
    pub listing_visibility: Option<String>,
    /// Token type for auth methods (`default-service`, `batch`, ...).
    #[serde(default)]
    pub token_type: Option<String>,
    /// Request keys not HMAC'd in audit logs.
    #[serde(default, deserialize_with = "null_default")]
    pub audit_non_hmac_request_keys: Vec<String>,
    /// Response keys not HMAC'd in audit logs.
    #[serde(default, deserialize_with = "null_default")]
    pub audit_non_hmac_response_keys: Vec<String>,
    /// Request headers passed to the plugin.
    #[serde(default, deserialize_with = "null_default")]
    pub passthrough_request_headers: Vec<String>,
    /// Response headers the plugin may set.
    #[serde(default, deserialize_with = "null_default")]
    pub allowed_response_headers: Vec<String>,
    /// Any other settings the server reported.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// Settings for enabling a mount or an auth method (the `config` block of
/// [`EnableMount`] / [`EnableAuth`]). Unset fields are left to the server.
///
/// TTLs are Vault duration strings: `"1h"`, `"30m"`, `"768h"`, or seconds as `"3600"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MountConfigInput {
    /// Default lease TTL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_lease_ttl: Option<String>,
    /// Maximum lease TTL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_lease_ttl: Option<String>,
    /// Never cache responses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub force_no_cache: Option<bool>,
    /// `unauth` to list the mount in the UI's login form, `hidden` otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listing_visibility: Option<String>,
    /// Token type for auth methods (`default-service`, `default-batch`, `service`, `batch`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// Request keys not to HMAC in audit logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_non_hmac_request_keys: Option<Vec<String>>,
    /// Response keys not to HMAC in audit logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_non_hmac_response_keys: Option<Vec<String>>,
    /// Request headers to pass to the plugin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passthrough_request_headers: Option<Vec<String>>,
    /// Response headers the plugin may set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_response_headers: Option<Vec<String>>,
}

impl MountConfigInput {
    /// No settings: everything is left to the server.
    pub fn new() -> Self {
        Self::default()
    }

    setters! {
        /// Sets the default lease TTL (`"1h"`, `"3600"`, ...).
        fn default_lease_ttl(into);
        /// Sets the maximum lease TTL.
        fn max_lease_ttl(into);
        /// Sets the listing visibility (`unauth` or `hidden`).
        fn listing_visibility(into);
        /// Sets the token type (auth methods).
        fn token_type(into);
    }

    fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// What to enable with [`Sys::enable_mount`] (`vault secrets enable`).
///
/// ```
/// use vault_ops_core::api::sys::mounts::EnableMount;
/// let kv = EnableMount::kv2().description("team secrets").default_lease_ttl("1h");
/// let pki = EnableMount::new("pki").max_lease_ttl("87600h");
/// # let _ = (kv, pki);
/// ```
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct EnableMount {
    /// The engine type, e.g. `kv`, `pki`, `transit`, `database`.
    #[serde(rename = "type")]
    pub mount_type: String,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Engine options, e.g. `version = "2"` for KV.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// TTLs and other settings.
    #[serde(skip_serializing_if = "MountConfigInput::is_empty")]
    pub config: MountConfigInput,
    /// Local to this cluster (not replicated).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub local: bool,
    /// Enable seal wrapping.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub seal_wrap: bool,
    /// Pin a plugin version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_version: Option<String>,
}

impl EnableMount {
    /// An engine of type `mount_type` with default settings.
    pub fn new(mount_type: impl Into<String>) -> Self {
        EnableMount {
            mount_type: mount_type.into(),
            description: None,
            options: BTreeMap::new(),
            config: MountConfigInput::default(),
            local: false,
            seal_wrap: false,
            plugin_version: None,
        }
    }

    /// A KV version 2 engine (`type = "kv"`, `options.version = "2"`).
    pub fn kv2() -> Self {
        Self::new("kv").option("version", "2")
    }

    /// A KV version 1 engine.
    pub fn kv1() -> Self {
        Self::new("kv").option("version", "1")
    }

    setters! {
        /// Sets the description.
        fn description(into);
        /// Sets one engine option.
        fn option(entry options);
        /// Sets the whole `config` block.
        fn config(MountConfigInput);
        /// Sets the default lease TTL.
        fn default_lease_ttl(into) in config;
        /// Sets the maximum lease TTL.
        fn max_lease_ttl(into) in config;
        /// Makes the mount local to this cluster.
        fn local(bool);
        /// Enables seal wrapping.
        fn seal_wrap(bool);
    }
}

/// What to enable with [`Sys::enable_auth`] (`vault auth enable`).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct EnableAuth {
    /// The method type, e.g. `approle`, `userpass`, `kubernetes`, `jwt`.
    #[serde(rename = "type")]
    pub auth_type: String,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// TTLs, token type, listing visibility and other settings.
    #[serde(skip_serializing_if = "MountConfigInput::is_empty")]
    pub config: MountConfigInput,
    /// Method options.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Local to this cluster (not replicated).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub local: bool,
    /// Enable seal wrapping.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub seal_wrap: bool,
}

impl EnableAuth {
    /// A method of type `auth_type` with default settings.
    pub fn new(auth_type: impl Into<String>) -> Self {
        EnableAuth {
            auth_type: auth_type.into(),
            description: None,
            config: MountConfigInput::default(),
            options: BTreeMap::new(),
            local: false,
            seal_wrap: false,
        }
    }

    setters! {
        /// Sets the description.
        fn description(into);
        /// Sets the whole `config` block.
        fn config(MountConfigInput);
        /// Sets the default lease TTL of the tokens it issues.
        fn default_lease_ttl(into) in config;
        /// Sets the maximum lease TTL of the tokens it issues.
        fn max_lease_ttl(into) in config;
        /// Makes the method local to this cluster.
        fn local(bool);
    }
}

/// Changes for [`Sys::tune_mount`] / [`Sys::tune_auth`] (`vault secrets tune`,
/// `vault auth tune`). Only the fields that are set are sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MountTune {
    /// New description (an empty string clears it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Options to set, e.g. `version = "2"` to upgrade a KV v1 mount.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// TTLs and other settings.
    #[serde(flatten)]
    pub config: MountConfigInput,
}

impl MountTune {
    /// No changes yet.
    pub fn new() -> Self {
        Self::default()
    }

    setters! {
        /// Sets the description.
        fn description(into);
        /// Sets one option.
        fn option(entry options);
        /// Sets the default lease TTL (`"1h"`, `"3600"`, ...).
        fn default_lease_ttl(into) in config;
        /// Sets the maximum lease TTL.
        fn max_lease_ttl(into) in config;
        /// Sets the listing visibility (`unauth` or `hidden`).
        fn listing_visibility(into) in config;
        /// Sets the token type (auth methods).
        fn token_type(into) in config;
    }
}

/// A mount's tuning as `sys/mounts/<path>/tune` and `sys/auth/<path>/tune` report it: the
/// effective values, with system defaults filled in. TTLs are seconds; both must be in the
/// reply (a reply without them is not a mount's tuning).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct MountTuneInfo {
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Effective default lease TTL in seconds.
    pub default_lease_ttl: u64,
    /// Effective maximum lease TTL in seconds.
    pub max_lease_ttl: u64,
    /// Responses are never cached.
    #[serde(default)]
    pub force_no_cache: bool,
    /// Options (e.g. `version = "2"`).
    #[serde(default, deserialize_with = "null_default")]
    pub options: BTreeMap<String, String>,
    /// Listing visibility, when set.
    #[serde(default)]
    pub listing_visibility: Option<String>,
    /// Token type (auth methods).
    #[serde(default)]
    pub token_type: Option<String>,
    /// Request keys not HMAC'd in audit logs.
    #[serde(default, deserialize_with = "null_default")]
    pub audit_non_hmac_request_keys: Vec<String>,
    /// Response keys not HMAC'd in audit logs.
    #[serde(default, deserialize_with = "null_default")]
    pub audit_non_hmac_response_keys: Vec<String>,
    /// Request headers passed to the plugin.
    #[serde(default, deserialize_with = "null_default")]
    pub passthrough_request_headers: Vec<String>,
    /// Response headers the plugin may set.
    #[serde(default, deserialize_with = "null_default")]
    pub allowed_response_headers: Vec<String>,
    /// Any other settings the server reported.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// An audit device as `sys/audit` lists it. An entry without `type` or `path` is not an
/// audit device (the listing fails to decode).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct AuditDevice {
    /// The device type: `file`, `socket`, `syslog`, `http`.
    #[serde(rename = "type")]
    pub device_type: String,
    /// The device path, e.g. `file/`.
    pub path: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Device options, e.g. `file_path`.
    #[serde(default, deserialize_with = "null_default")]
    pub options: BTreeMap<String, String>,
    /// Local to this cluster (not replicated).
    #[serde(default)]
    pub local: bool,
}

/// What to enable with [`Sys::enable_audit`] (`vault audit enable`).
///
/// ```
/// use vault_ops_core::api::sys::mounts::EnableAudit;
/// let device = EnableAudit::file("/var/log/openbao/audit.log").description("main audit log");
/// # let _ = device;
/// ```
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct EnableAudit {
    /// The device type: `file`, `socket`, `syslog`, `http`.
    #[serde(rename = "type")]
    pub device_type: String,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Device options, e.g. `file_path` for `file`, `address` for `socket`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Local to this cluster (not replicated).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub local: bool,
}

impl EnableAudit {
    /// A device of type `device_type` without options.
    pub fn new(device_type: impl Into<String>) -> Self {
        EnableAudit {
            device_type: device_type.into(),
            description: None,
            options: BTreeMap::new(),
            local: false,
        }
    }

    /// A `file` device writing to `file_path` (`stdout` and `discard` are special values).
    pub fn file(file_path: impl Into<String>) -> Self {
        Self::new("file").option("file_path", file_path)
    }

    setters! {
        /// Sets the description.
        fn description(into);
        /// Sets one device option.
        fn option(entry options);
        /// Makes the device local to this cluster.
        fn local(bool);
    }
}

/// The server's configuration without secrets (`sys/config/state/sanitized`), as Vault sends
/// it. The fields differ between Vault and OpenBao versions, so it is kept as JSON with typed
/// accessors for the common parts. It must be a JSON object (`null` or another value is a
/// decode error, not an empty configuration).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
#[non_exhaustive]
pub struct SanitizedConfig {
    /// The whole configuration.
    pub raw: Value,
}

impl<'de> Deserialize<'de> for SanitizedConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = Value::deserialize(d)?;
        if !raw.is_object() {
            return Err(serde::de::Error::custom(
                "the sanitized configuration is not a JSON object",
            ));
        }
        Ok(SanitizedConfig { raw })
    }
}

impl SanitizedConfig {
    /// A top-level setting, e.g. `"api_addr"`, `"disable_mlock"`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.raw.get(key)
    }

    /// The storage backend type, e.g. `raft`, `inmem`, `file`.
    pub fn storage_type(&self) -> Option<&str> {
        self.raw.get("storage")?.get("type")?.as_str()
    }

    /// `api_addr` (may be empty).
    pub fn api_addr(&self) -> Option<&str> {
        self.raw.get("api_addr")?.as_str()
    }

    /// The listeners' addresses (`listener "tcp" { address = ... }`), in configuration order.
    pub fn listener_addresses(&self) -> Vec<&str> {
        self.listeners()
            .iter()
            .filter_map(|l| l.get("config")?.get("address")?.as_str())
            .collect()
    }

    /// The listener blocks, each `{"type": ..., "config": {...}}`.
    pub fn listeners(&self) -> &[Value] {
        self.raw
            .get("listeners")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// The seal types, e.g. `["shamir"]`.
    pub fn seal_types(&self) -> Vec<&str> {
        self.raw
            .get("seals")
            .and_then(Value::as_array)
            .map(|seals| {
                seals
                    .iter()
                    .filter_map(|s| s.get("type")?.as_str())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `sys/<area>/<path>` with `path` trimmed of slashes; an empty path is an error.
fn sys_path(area: &str, what: &str, path: &str) -> Result<String> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Err(Error::InvalidInput(format!(
            "the {what} path is empty (give e.g. \"my-mount\")"
        )));
    }
    Ok(format!("sys/{area}/{trimmed}"))
}

/// The key Vault uses in its listings: trimmed, with one trailing slash.
fn list_key(path: &str) -> String {
    format!("{}/", path.trim_matches('/'))
}

impl Sys<'_> {
    async fn get_data<T: serde::de::DeserializeOwned>(&self, path: String) -> Result<T> {
        read_data(self.client, Request::get(path)).await
    }

    async fn post_json(&self, path: String, body: &impl Serialize) -> Result<()> {
        send(self.client, Request::post(path).json(body)?).await
    }

    async fn delete_path(&self, path: String) -> Result<()> {
        send(self.client, Request::delete(path)).await
    }

    // ---- secret engines ----

    /// `vault secrets list`: every secret engine, keyed by path with a trailing slash.
    pub async fn list_mounts(&self) -> Result<BTreeMap<String, MountInfo>> {
        self.get_data("sys/mounts".to_string()).await
    }

    /// The secret engine mounted at `path`, or `None` when nothing is mounted there
    /// (looked up in [`list_mounts`](Self::list_mounts)).
    pub async fn mount_opt(&self, path: &str) -> Result<Option<MountInfo>> {
        sys_path("mounts", "mount", path)?;
        Ok(self.list_mounts().await?.remove(&list_key(path)))
    }

    /// `vault secrets enable -path=PATH TYPE`.
    pub async fn enable_mount(&self, path: &str, mount: &EnableMount) -> Result<()> {
        self.post_json(sys_path("mounts", "mount", path)?, mount)
            .await
    }

    /// `vault secrets disable PATH`: unmounts the engine and deletes its data. Vault answers
    /// success also when nothing is mounted there.
    pub async fn disable_mount(&self, path: &str) -> Result<()> {
        self.delete_path(sys_path("mounts", "mount", path)?).await
    }

    /// `vault read sys/mounts/PATH/tune`: the effective TTLs and options.
    pub async fn mount_tune(&self, path: &str) -> Result<MountTuneInfo> {
        self.get_data(format!("{}/tune", sys_path("mounts", "mount", path)?))
            .await
    }

    /// `vault secrets tune PATH`.
    pub async fn tune_mount(&self, path: &str, tune: &MountTune) -> Result<()> {
        self.post_json(format!("{}/tune", sys_path("mounts", "mount", path)?), tune)
            .await
    }

    // ---- auth methods ----

    /// `vault auth list`: every auth method, keyed by path with a trailing slash
    /// (`token/`, `approle/`, ...).
    pub async fn list_auth(&self) -> Result<BTreeMap<String, MountInfo>> {
        self.get_data("sys/auth".to_string()).await
    }

    /// The auth method mounted at `path` (without the `auth/` prefix), or `None`
    /// (looked up in [`list_auth`](Self::list_auth)).
    pub async fn auth_opt(&self, path: &str) -> Result<Option<MountInfo>> {
        sys_path("auth", "auth method", path)?;
        Ok(self.list_auth().await?.remove(&list_key(path)))
    }

    /// `vault auth enable -path=PATH TYPE` (`path` without the `auth/` prefix).
    pub async fn enable_auth(&self, path: &str, method: &EnableAuth) -> Result<()> {
        self.post_json(sys_path("auth", "auth method", path)?, method)
            .await
    }

    /// `vault auth disable PATH`: removes the method and revokes the tokens it issued.
    pub async fn disable_auth(&self, path: &str) -> Result<()> {
        self.delete_path(sys_path("auth", "auth method", path)?)
            .await
    }

    /// `vault read sys/auth/PATH/tune`.
    pub async fn auth_tune(&self, path: &str) -> Result<MountTuneInfo> {
        self.get_data(format!("{}/tune", sys_path("auth", "auth method", path)?))
            .await
    }

    /// `vault auth tune PATH`.
    pub async fn tune_auth(&self, path: &str, tune: &MountTune) -> Result<()> {
        self.post_json(
            format!("{}/tune", sys_path("auth", "auth method", path)?),
            tune,
        )
        .await
    }

    // ---- audit devices ----

    /// `vault audit list`: every audit device, keyed by path with a trailing slash.
    pub async fn list_audit(&self) -> Result<BTreeMap<String, AuditDevice>> {
        self.get_data("sys/audit".to_string()).await
    }

    /// `vault audit enable -path=PATH TYPE ...`. OpenBao allows this only when the server
    /// configuration sets `unsafe_allow_api_audit_creation = true`; otherwise Vault's 400
    /// ("cannot enable audit device via API ...") is returned as [`Error::Api`].
    pub async fn enable_audit(&self, path: &str, device: &EnableAudit) -> Result<()> {
        self.post_json(sys_path("audit", "audit device", path)?, device)
            .await
    }

    /// `vault audit disable PATH`.
    pub async fn disable_audit(&self, path: &str) -> Result<()> {
        self.delete_path(sys_path("audit", "audit device", path)?)
            .await
    }

    // ---- configuration ----

    /// `vault read sys/config/state/sanitized`: the server's configuration without secrets
    /// (needs a token allowed to read it, e.g. root).
    pub async fn config_state_sanitized(&self) -> Result<SanitizedConfig> {
        self.get_data("sys/config/state/sanitized".to_string())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths() {
        assert_eq!(
            sys_path("mounts", "mount", "/kv/").ok().as_deref(),
            Some("sys/mounts/kv")
        );
        assert_eq!(
            sys_path("auth", "auth method", "team/approle/")
                .ok()
                .as_deref(),
            Some("sys/auth/team/approle")
        );
        assert!(matches!(
            sys_path("mounts", "mount", "//"),
            Err(Error::InvalidInput(_))
        ));
        assert_eq!(list_key("kv"), "kv/");
        assert_eq!(list_key("/kv//"), "kv/");
    }

    #[test]
    fn bodies() {
        let m = EnableMount::kv2().description("d").max_lease_ttl("48h");
        assert_eq!(
            serde_json::to_value(&m).ok(),
            Some(
                json!({"type": "kv", "description": "d", "options": {"version": "2"},
                        "config": {"max_lease_ttl": "48h"}})
            )
        );
        assert_eq!(
            serde_json::to_value(EnableAuth::new("approle")).ok(),
            Some(json!({"type": "approle"}))
        );
        let t = MountTune::new().default_lease_ttl("1h").description("");
        assert_eq!(
            serde_json::to_value(&t).ok(),
            Some(json!({"description": "", "default_lease_ttl": "1h"}))
        );
        assert_eq!(
            serde_json::to_value(EnableAudit::file("/tmp/a.log")).ok(),
            Some(json!({"type": "file", "options": {"file_path": "/tmp/a.log"}}))
        );
    }

    #[test]
    fn decodes_nulls_and_extras() {
        let m: MountInfo = serde_json::from_value(json!({
            "type": "kv", "options": null, "config": {"default_lease_ttl": 5, "future": 1}
        }))
        .unwrap_or_default();
        assert_eq!(m.mount_type, "kv");
        assert_eq!(m.kv_version(), Some(1));
        assert_eq!(m.config.default_lease_ttl, 5);
        assert_eq!(m.config.other.get("future"), Some(&json!(1)));
        let c = SanitizedConfig {
            raw: json!({"storage": {"type": "raft"}, "listeners": [{"type": "tcp", "config": {"address": "127.0.0.1:8200"}}], "seals": [{"type": "shamir"}]}),
        };
        assert_eq!(c.storage_type(), Some("raft"));
        assert_eq!(c.listener_addresses(), vec!["127.0.0.1:8200"]);
        assert_eq!(c.seal_types(), vec!["shamir"]);
    }
}
