//! KV version 2 (`vault kv ...` on a v2 mount): versions, check-and-set, metadata.
//!
//! ```no_run
//! # async fn run(client: vault_ops_core::VaultClient) -> Result<(), vault_ops_core::Error> {
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Db { username: String, password: vault_ops_core::SecretString }
//!
//! let kv = client.kv2("secret");
//! let written = kv.put("database/main-db", &serde_json::json!({"username": "app", "password": "s3cr3t"})).await?;
//! // Only succeeds if nobody wrote in between (check-and-set):
//! kv.put_cas("database/main-db", &serde_json::json!({"username": "app", "password": "n3w"}), written.version).await?;
//! let db = kv.get::<Db>("database/main-db").await?;
//! println!("{} at version {}", db.data.username, db.metadata.version);
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::api::generic::{list_keys, not_found_as_none, read_data, read_data_opt, send};
use crate::client::VaultClient;
use crate::error::{ApiError, Error, Result};
use crate::http::{join_path, Request, Response};
use crate::response::{null_default, VaultResponse};

/// A KV v2 mount. Get it with [`VaultClient::kv2`].
#[derive(Debug, Clone)]
pub struct Kv2<'a> {
    client: &'a VaultClient,
    mount: String,
}

impl VaultClient {
    /// The KV v2 engine mounted at `mount` (e.g. `secret`).
    pub fn kv2(&self, mount: impl Into<String>) -> Kv2<'_> {
        Kv2 {
            client: self,
            mount: mount.into().trim_matches('/').to_string(),
        }
    }
}

/// A secret version: its data and its metadata. `Debug` does not print the data.
#[derive(Clone, Deserialize)]
#[non_exhaustive]
pub struct KvSecret<T> {
    /// The secret's data.
    pub data: T,
    /// The version's metadata.
    pub metadata: VersionMetadata,
}

impl<T> std::fmt::Debug for KvSecret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvSecret")
            .field("data", &"[REDACTED]")
            .field("metadata", &self.metadata)
            .finish()
    }
}

/// The metadata of one version.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct VersionMetadata {
    /// The version number.
    pub version: u64,
    /// When it was written (RFC 3339).
    #[serde(default)]
    pub created_time: String,
    /// When it was soft-deleted (RFC 3339), empty if not.
    #[serde(default)]
    pub deletion_time: String,
    /// Whether it is destroyed.
    #[serde(default)]
    pub destroyed: bool,
    /// The secret's custom metadata.
    #[serde(default, deserialize_with = "null_default")]
    pub custom_metadata: BTreeMap<String, String>,
}

/// A secret's metadata: all its versions and settings (`vault kv metadata get`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[non_exhaustive]
pub struct SecretMetadata {
    /// The newest version.
    #[serde(default)]
    pub current_version: u64,
    /// The oldest version still kept.
    #[serde(default)]
    pub oldest_version: u64,
    /// How many versions are kept (0: the mount's setting).
    #[serde(default)]
    pub max_versions: u64,
    /// Whether writes must use check-and-set.
    #[serde(default)]
    pub cas_required: bool,
    /// How long after writing a version is deleted (`0s` for never).
    #[serde(default)]
    pub delete_version_after: String,
    /// Created (RFC 3339).
    #[serde(default)]
    pub created_time: String,
    /// Last updated (RFC 3339).
    #[serde(default)]
    pub updated_time: String,
    /// Custom metadata.
    #[serde(default, deserialize_with = "null_default")]
    pub custom_metadata: BTreeMap<String, String>,
    /// Every kept version by number.
    #[serde(default, deserialize_with = "null_default")]
    pub versions: BTreeMap<u64, VersionState>,
}

/// One version in [`SecretMetadata::versions`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct VersionState {
    /// Written (RFC 3339).
    #[serde(default)]
    pub created_time: String,
    /// Soft-deleted (RFC 3339), empty if not.
    #[serde(default)]
    pub deletion_time: String,
    /// Destroyed.
    #[serde(default)]
    pub destroyed: bool,
}

/// Settings written by [`Kv2::write_metadata`]; fields left `None` are unchanged.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct MetadataUpdate {
    /// How many versions to keep.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_versions: Option<u64>,
    /// Require check-and-set on writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cas_required: Option<bool>,
    /// Delete versions this long after writing, e.g. `720h` (`0s`: never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_version_after: Option<String>,
    /// Custom metadata (replaces the whole map when set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_metadata: Option<HashMap<String, String>>,
}

impl MetadataUpdate {
    /// An empty update.
    pub fn new() -> Self {
        Self::default()
    }
    setters! {
        /// Sets `max_versions`.
        fn max_versions(Some(u64));
        /// Sets `cas_required`.
        fn cas_required(Some(bool));
        /// Sets `delete_version_after`.
        fn delete_version_after(into);
    }
    /// Sets one custom metadata entry.
    pub fn custom(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.custom_metadata
            .get_or_insert_with(HashMap::new)
            .insert(key.into(), value.into());
        self
    }
}

/// The mount's settings (`<mount>/config`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct KvConfig {
    /// Versions kept per secret.
    #[serde(default)]
    pub max_versions: u64,
    /// Require check-and-set on every write.
    #[serde(default)]
    pub cas_required: bool,
    /// Delete versions this long after writing.
    #[serde(default)]
    pub delete_version_after: String,
}

#[derive(Deserialize)]
struct ReadData {
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    metadata: Option<VersionMetadata>,
}

impl Kv2<'_> {
    fn path(&self, kind: &str, path: &str) -> Result<String> {
        let p = path.trim_matches('/');
        if p.is_empty() {
            return Err(Error::InvalidInput("the secret path is empty".into()));
        }
        Ok(join_path(&[&self.mount, kind, p]))
    }

    /// `vault kv get`: the latest version, typed. A missing secret is an error for which
    /// [`Error::is_not_found`] is true; a deleted or destroyed latest version is
    /// [`Error::SecretVersionDeleted`] / [`Error::SecretVersionDestroyed`].
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<KvSecret<T>> {
        self.read(path, None).await
    }

    /// `vault kv get -version=N`.
    pub async fn get_version<T: DeserializeOwned>(
        &self,
        path: &str,
        version: u64,
    ) -> Result<KvSecret<T>> {
        self.read(path, Some(version)).await
    }

    /// Like [`get`](Self::get), but `None` when the secret does not exist.
    pub async fn get_opt<T: DeserializeOwned>(&self, path: &str) -> Result<Option<KvSecret<T>>> {
        not_found_as_none(self.read(path, None).await)
    }

    /// The latest version as a JSON map.
    pub async fn get_json(&self, path: &str) -> Result<KvSecret<Map<String, Value>>> {
        self.read(path, None).await
    }

    async fn read<T: DeserializeOwned>(
        &self,
        path: &str,
        version: Option<u64>,
    ) -> Result<KvSecret<T>> {
        let mut req = Request::get(self.path("data", path)?).accept_statuses(&[404]);
        if let Some(v) = version {
            req = req.query("version", v.to_string());
        }
        let resp = self.client.execute(req).await?;
        let body: Option<VaultResponse<ReadData>> = if resp.status() == 404 {
            // A deleted or destroyed version answers 404 with its metadata; a missing one
            // with `{"errors":[]}`.
            resp.json().ok()
        } else {
            Some(resp.json()?)
        };
        let read = body.map(|b| b.data);
        match read {
            Some(ReadData {
                data: Some(data),
                metadata: Some(metadata),
            }) if !data.is_null() => {
                let data =
                    serde_json::from_value(data).map_err(|e| resp.decode_error(e.to_string()))?;
                Ok(KvSecret { data, metadata })
            }
            Some(ReadData {
                metadata: Some(m), ..
            }) if m.destroyed => Err(Error::SecretVersionDestroyed {
                mount: self.mount.clone(),
                path: path.to_string(),
                version: m.version,
            }),
            Some(ReadData {
                metadata: Some(m), ..
            }) if !m.deletion_time.is_empty() => Err(Error::SecretVersionDeleted {
                mount: self.mount.clone(),
                path: path.to_string(),
                version: m.version,
                deletion_time: m.deletion_time,
            }),
            _ if resp.status() == 404 => Err(not_found(&resp)),
            _ => Err(resp.decode_error("the reply has no data or metadata")),
        }
    }

    /// `vault kv put`: writes a new version.
    pub async fn put(&self, path: &str, data: &impl Serialize) -> Result<VersionMetadata> {
        self.write(Request::post, path, data, None).await
    }

    /// `vault kv put -cas=N`: writes only if the current version is `cas` (0: only if the
    /// secret does not exist). A mismatch is an error for which [`Error::is_cas_mismatch`] is true.
    pub async fn put_cas(
        &self,
        path: &str,
        data: &impl Serialize,
        cas: u64,
    ) -> Result<VersionMetadata> {
        self.write(Request::post, path, data, Some(cas)).await
    }

    /// Writes (POST) or merges (PATCH) `data` as a new version, with an optional CAS.
    async fn write(
        &self,
        method: fn(String) -> Request,
        path: &str,
        data: &impl Serialize,
        cas: Option<u64>,
    ) -> Result<VersionMetadata> {
        let body = match cas {
            Some(cas) => json!({"data": data, "options": {"cas": cas}}),
            None => json!({"data": data}),
        };
        read_data(self.client, method(self.path("data", path)?).json(&body)?).await
    }

    /// `vault kv patch`: merges `data` into the latest version (JSON merge patch; `null`
    /// removes a key), writing a new version.
    pub async fn patch(&self, path: &str, data: &impl Serialize) -> Result<VersionMetadata> {
        self.write(Request::patch, path, data, None).await
    }

    /// `vault kv patch -cas=N`.
    pub async fn patch_cas(
        &self,
        path: &str,
        data: &impl Serialize,
        cas: u64,
    ) -> Result<VersionMetadata> {
        self.write(Request::patch, path, data, Some(cas)).await
    }

    /// `vault kv list`: keys below `path` (folders end in `/`); empty when there are none.
    pub async fn list(&self, path: &str) -> Result<Vec<String>> {
        let p = join_path(&[&self.mount, "metadata", path.trim_matches('/')]);
        list_keys(self.client, &format!("{p}/")).await
    }

    /// `vault kv delete`: soft-deletes the latest version.
    pub async fn delete_latest(&self, path: &str) -> Result<()> {
        send(self.client, Request::delete(self.path("data", path)?)).await
    }

    /// `vault kv delete -versions=...`: soft-deletes these versions.
    pub async fn delete_versions(&self, path: &str, versions: &[u64]) -> Result<()> {
        self.versions_op("delete", path, versions).await
    }

    /// `vault kv undelete -versions=...`.
    pub async fn undelete(&self, path: &str, versions: &[u64]) -> Result<()> {
        self.versions_op("undelete", path, versions).await
    }

    /// `vault kv destroy -versions=...`: removes these versions for good.
    pub async fn destroy(&self, path: &str, versions: &[u64]) -> Result<()> {
        self.versions_op("destroy", path, versions).await
    }

    async fn versions_op(&self, op: &str, path: &str, versions: &[u64]) -> Result<()> {
        if versions.is_empty() {
            return Err(Error::InvalidInput(format!("{op}: no versions given")));
        }
        let req = Request::post(self.path(op, path)?).json(&json!({ "versions": versions }))?;
        send(self.client, req).await
    }

    /// `vault kv metadata get`, or `None` when the secret does not exist.
    pub async fn read_metadata(&self, path: &str) -> Result<Option<SecretMetadata>> {
        read_data_opt(self.client, Request::get(self.path("metadata", path)?)).await
    }

    /// `vault kv metadata put`: writes the settings given (creates the metadata when missing).
    pub async fn write_metadata(&self, path: &str, update: &MetadataUpdate) -> Result<()> {
        let req = Request::post(self.path("metadata", path)?).json(update)?;
        send(self.client, req).await
    }

    /// `vault kv metadata delete`: removes the secret with all its versions.
    pub async fn delete_metadata(&self, path: &str) -> Result<()> {
        send(self.client, Request::delete(self.path("metadata", path)?)).await
    }

    /// The mount's settings.
    pub async fn read_config(&self) -> Result<KvConfig> {
        let req = Request::get(join_path(&[&self.mount, "config"]));
        read_data(self.client, req).await
    }

    /// Writes the mount's settings (`max_versions`, `cas_required`, `delete_version_after`).
    pub async fn write_config(&self, config: &KvConfig) -> Result<()> {
        let req = Request::post(join_path(&[&self.mount, "config"])).json(config)?;
        send(self.client, req).await
    }
}

fn not_found(resp: &Response) -> Error {
    let (errors, warnings, request_id) = crate::http::parse_error_body(resp.bytes());
    Error::from(ApiError {
        status: 404,
        method: "GET".into(),
        path: resp.path.clone(),
        errors,
        warnings,
        request_id,
    })
}
