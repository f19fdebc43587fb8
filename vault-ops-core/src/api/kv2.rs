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

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::api::generic::{list_keys, not_found_as_none, read_data, read_data_opt, send};
use crate::client::VaultClient;
use crate::error::{ApiError, Error, Result};
use crate::http::{Request, Response};
use crate::response::{null_default, DataOnly};

/// A KV v2 mount. Get it with [`VaultClient::kv2`].
#[derive(Debug, Clone)]
pub struct Kv2<'a> {
    client: &'a VaultClient,
    /// Borrowed when the caller's mount has no slashes to trim (the usual case): no copy
    /// per call.
    mount: Cow<'a, str>,
}

impl VaultClient {
    /// The KV v2 engine mounted at `mount` (e.g. `secret`).
    pub fn kv2<'a>(&'a self, mount: impl Into<Cow<'a, str>>) -> Kv2<'a> {
        let mut mount: Cow<'a, str> = mount.into();
        if mount.starts_with('/') || mount.ends_with('/') {
            mount = Cow::Owned(mount.trim_matches('/').to_string());
        }
        Kv2 {
            client: self,
            mount,
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

// Hand-written: `data` is KV data, which holds secret values a derive would print.
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

/// A read's `data`: the secret, decoded straight into the caller's type (no
/// `serde_json::Value` in between), and the version's metadata.
#[derive(Deserialize)]
struct ReadData<T> {
    #[serde(default = "Option::default")]
    data: Option<T>,
    #[serde(default)]
    metadata: Option<VersionMetadata>,
}

/// A write's body, serialized straight from the caller's data (no `serde_json::Value`).
#[derive(Serialize)]
struct WriteBody<'a, D: ?Sized> {
    data: &'a D,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<CasOption>,
}

/// A write's check-and-set option.
#[derive(Serialize)]
struct CasOption {
    cas: u64,
}

impl Kv2<'_> {
    fn path(&self, kind: &str, path: &str) -> Result<String> {
        self.check_mount()?;
        let p = path.trim_matches('/');
        if p.is_empty() {
            return Err(Error::InvalidInput("the secret path is empty".into()));
        }
        Ok(self.join(kind, p, false))
    }

    /// An empty mount is refused: `<kind>/<path>` would address no KV engine (or another
    /// mount named like the kind).
    fn check_mount(&self) -> Result<()> {
        if self.mount.is_empty() {
            return Err(Error::InvalidInput("the KV v2 mount is empty".into()));
        }
        Ok(())
    }

    /// `<mount>/<kind>/<rest>` (plus a trailing `/` for a LIST) in one allocation: the path
    /// `join_path` gives, for a trimmed `rest` and a fixed `kind` segment.
    fn join(&self, kind: &str, rest: &str, trailing_slash: bool) -> String {
        let mut p = String::with_capacity(self.mount.len() + kind.len() + rest.len() + 3);
        if !self.mount.is_empty() {
            p.push_str(&self.mount);
            p.push('/');
        }
        p.push_str(kind);
        if !rest.is_empty() {
            p.push('/');
            p.push_str(rest);
        }
        if trailing_slash {
            p.push('/');
        }
        p
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
        let read: Option<ReadData<T>> = if resp.status() == 404 {
            // A deleted or destroyed version answers 404 with its metadata (and `data: null`);
            // a missing one with `{"errors":[]}`. Only the metadata matters here.
            resp.json::<DataOnly<ReadData<IgnoredAny>>>()
                .ok()
                .map(|body| ReadData {
                    data: None,
                    metadata: body.data.metadata,
                })
        } else {
            // Straight into `T`; a body that does not fit is `Response::decode_error` (values
            // redacted), as every `Response::json`.
            Some(resp.json::<DataOnly<ReadData<T>>>()?.data)
        };
        match read {
            Some(ReadData {
                data: Some(data),
                metadata: Some(metadata),
            }) => Ok(KvSecret { data, metadata }),
            Some(ReadData {
                metadata: Some(m), ..
            }) if m.destroyed => Err(Error::SecretVersionDestroyed {
                mount: self.mount.to_string(),
                path: path.to_string(),
                version: m.version,
            }),
            Some(ReadData {
                metadata: Some(m), ..
            }) if !m.deletion_time.is_empty() => Err(Error::SecretVersionDeleted {
                mount: self.mount.to_string(),
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
        let body = WriteBody {
            data,
            options: cas.map(|cas| CasOption { cas }),
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
    /// A key joined to `path` addresses that secret as it is, whatever characters it holds
    /// (the send path encodes them as the `vault` CLI does).
    pub async fn list(&self, path: &str) -> Result<Vec<String>> {
        self.check_mount()?;
        let p = self.join("metadata", path.trim_matches('/'), true);
        list_keys(self.client, p).await
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
        self.check_mount()?;
        let req = Request::get(self.join("config", "", false));
        read_data(self.client, req).await
    }

    /// Writes the mount's settings (`max_versions`, `cas_required`, `delete_version_after`).
    pub async fn write_config(&self, config: &KvConfig) -> Result<()> {
        self.check_mount()?;
        let req = Request::post(self.join("config", "", false)).json(config)?;
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
        retry_after: None,
        location: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::join_path;

    #[test]
    fn paths_match_join_path() {
        let c = VaultClient::new("http://127.0.0.1:1").unwrap_or_else(|e| panic!("{e}"));
        for mount in ["", "/"] {
            assert!(matches!(
                c.kv2(mount).path("data", "a"),
                Err(Error::InvalidInput(_))
            ));
        }
        for mount in ["secret", "/secret/", "team/kv"] {
            let kv = c.kv2(mount);
            for kind in ["data", "metadata", "destroy"] {
                for path in ["a", "/a/b/", "a b/c"] {
                    let p = path.trim_matches('/');
                    assert_eq!(
                        kv.path(kind, path).unwrap_or_else(|e| panic!("{e}")),
                        join_path(&[mount, kind, p]),
                        "{mount:?} {kind} {path:?}"
                    );
                }
                assert!(kv.path(kind, "//").is_err());
            }
            for path in ["", "/", "a", "/a/b/"] {
                let old = format!(
                    "{}/",
                    join_path(&[mount, "metadata", path.trim_matches('/')])
                );
                assert_eq!(kv.join("metadata", path.trim_matches('/'), true), old);
            }
            assert_eq!(kv.join("config", "", false), join_path(&[mount, "config"]));
        }
    }

    #[test]
    fn write_bodies_match_the_old_json() {
        let data = json!({"username": "app", "port": 5432});
        let plain = serde_json::to_value(WriteBody {
            data: &data,
            options: None,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plain, json!({"data": data}));
        let cas = serde_json::to_value(WriteBody {
            data: &data,
            options: Some(CasOption { cas: 7 }),
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cas, json!({"data": data, "options": {"cas": 7}}));
    }

    #[test]
    fn read_envelopes() {
        #[derive(Debug, Deserialize, PartialEq)]
        struct Db {
            user: String,
        }
        let ok: DataOnly<ReadData<Db>> = serde_json::from_str(
            r#"{"request_id":"r","data":{"data":{"user":"app"},"metadata":{"version":3}},"warnings":null}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok.data.data, Some(Db { user: "app".into() }));
        assert_eq!(ok.data.metadata.map(|m| m.version), Some(3));
        let deleted: DataOnly<ReadData<IgnoredAny>> = serde_json::from_str(
            r#"{"data":{"data":null,"metadata":{"version":2,"deletion_time":"2024-02-01T00:00:00Z"}}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(deleted.data.data.is_none());
        assert_eq!(deleted.data.metadata.map(|m| m.version), Some(2));
        assert!(
            serde_json::from_str::<DataOnly<ReadData<IgnoredAny>>>(r#"{"errors":[]}"#).is_err()
        );
    }
}
