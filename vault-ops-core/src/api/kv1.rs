//! KV version 1: `vault kv get/put/list/delete` on a mount of `kv` with `version = 1`.
//!
//! KV v1 keeps one unversioned value per path, a JSON object. Reads of a missing path are
//! `None`; LIST of a folder with nothing in it is an empty list. A mount that does not exist is
//! not "missing": Vault's 404 `no handler for route ...` stays an [`Error::Api`].
//!
//! ```no_run
//! # async fn run(client: vault_ops_core::VaultClient) -> Result<(), vault_ops_core::Error> {
//! use serde::Deserialize;
//! use serde_json::json;
//!
//! #[derive(Deserialize)]
//! struct Db { host: String, user: String }
//!
//! let kv = client.kv1("kv");
//! kv.put("app/db", &json!({"host": "db1", "user": "app"})).await?;
//! if let Some(db) = kv.get::<Db>("app/db").await? {
//!     println!("{}@{}", db.user, db.host);
//! }
//! println!("{:?}", kv.list("app").await?); // ["db"]
//! kv.delete("app/db").await?;
//! # Ok(()) }
//! ```
//!
//! A secret with a `ttl` key is read back with that `lease_duration` (a hint for how long to
//! cache it; KV v1 creates no lease): see [`Kv1::read`].

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::api::generic::{is_bare_not_found, list_keys, send};
use crate::client::VaultClient;
use crate::error::{Error, Result};
use crate::http::{join_path, Request};
use crate::response::VaultResponse;

/// A KV v1 mount. Get it with [`VaultClient::kv1`].
#[derive(Debug, Clone)]
pub struct Kv1<'a> {
    client: &'a VaultClient,
    mount: &'a str,
}

impl VaultClient {
    /// The KV version 1 engine mounted at `mount` (e.g. `"kv"`).
    pub fn kv1<'a>(&'a self, mount: &'a str) -> Kv1<'a> {
        Kv1 {
            client: self,
            mount: mount.trim_matches('/'),
        }
    }
}

/// A KV v1 secret with what the reply says besides the data. `Debug` does not print the data.
#[derive(Clone)]
#[non_exhaustive]
pub struct Kv1Secret<T> {
    /// The secret's data.
    pub data: T,
    /// The `lease_duration` of the reply in seconds: the secret's `ttl` key when it has one,
    /// otherwise the mount's default (KV v1 creates no lease; it is a caching hint).
    pub lease_duration: u64,
    /// Warnings Vault attached to the reply.
    pub warnings: Vec<String>,
}

// Hand-written: `data` is KV data, which holds secret values a derive would print.
impl<T> fmt::Debug for Kv1Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kv1Secret")
            .field("data", &"[REDACTED]")
            .field("lease_duration", &self.lease_duration)
            .field("warnings", &self.warnings)
            .finish()
    }
}

impl Kv1<'_> {
    /// The mount path this handler works on.
    pub fn mount(&self) -> &str {
        self.mount
    }

    fn check_mount(&self) -> Result<()> {
        if self.mount.is_empty() {
            return Err(Error::InvalidInput("the KV v1 mount is empty".into()));
        }
        Ok(())
    }

    /// The full path of a secret; `path` must not be empty.
    fn secret_path(&self, path: &str) -> Result<String> {
        self.check_mount()?;
        let path = path.trim_matches('/');
        if path.is_empty() {
            return Err(Error::InvalidInput(format!(
                "the secret path in KV v1 mount {:?} is empty",
                self.mount
            )));
        }
        Ok(join_path(&[self.mount, path]))
    }

    /// `vault kv get`: the secret with its lease duration, or `None` when there is none at `path`.
    pub async fn read<T: DeserializeOwned>(&self, path: &str) -> Result<Option<Kv1Secret<T>>> {
        let full = self.secret_path(path)?;
        match self.client.execute(Request::get(full)).await {
            Ok(resp) => {
                let r = resp.json::<VaultResponse<T>>()?;
                Ok(Some(Kv1Secret {
                    data: r.data,
                    lease_duration: r.lease_duration,
                    warnings: r.warnings,
                }))
            }
            Err(e) if is_bare_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `vault kv get`: the secret's data decoded as `T`, or `None` when there is none at `path`.
    ///
    /// A secret that does not fit `T` is an [`Error::Decode`] (which never contains the data).
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        Ok(self.read::<T>(path).await?.map(|s| s.data))
    }

    /// `vault kv get`: the secret's data as JSON, or `None` when there is none at `path`.
    pub async fn get_json(&self, path: &str) -> Result<Option<Value>> {
        self.get::<Value>(path).await
    }

    /// `vault kv put`: replaces the whole secret at `path` with `data`, which must serialize to a
    /// non-empty JSON object (Vault answers 400 otherwise, and its message is kept). A `ttl` key
    /// sets the lease duration readers are told.
    pub async fn put(&self, path: &str, data: &impl Serialize) -> Result<()> {
        let full = self.secret_path(path)?;
        send(self.client, Request::post(full).json(data)?).await
    }

    /// `vault kv list`: the keys below `path` (folders end in `/`); empty when there are none.
    /// An empty `path` lists the mount's top level.
    pub async fn list(&self, path: &str) -> Result<Vec<String>> {
        self.check_mount()?;
        let path = path.trim_matches('/');
        let full = if path.is_empty() {
            format!("{}/", self.mount)
        } else {
            format!("{}/", join_path(&[self.mount, path]))
        };
        list_keys(self.client, &full).await
    }

    /// `vault kv delete`: removes the secret at `path`. Deleting a missing path succeeds
    /// (as in Vault).
    pub async fn delete(&self, path: &str) -> Result<()> {
        send(self.client, Request::delete(self.secret_path(path)?)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let client = VaultClient::new("http://127.0.0.1:1").unwrap();
        let kv = client.kv1("/kv/");
        assert_eq!(kv.mount(), "kv");
        assert_eq!(kv.secret_path("/a/b/").unwrap(), "kv/a/b");
        assert!(matches!(kv.secret_path("/"), Err(Error::InvalidInput(_))));
        let none = client.kv1("");
        assert!(matches!(none.secret_path("a"), Err(Error::InvalidInput(_))));
    }

    #[test]
    fn debug_redacts() {
        let s = Kv1Secret {
            data: "hunter2-secret".to_string(),
            lease_duration: 5,
            warnings: vec![],
        };
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("REDACTED"));
    }
}
