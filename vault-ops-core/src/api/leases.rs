//! Leases: `vault lease lookup/renew/revoke` and listing on `sys/leases`.
//!
//! Every dynamic secret (database credentials, ...) and every token from an auth method's login
//! has a lease, named by its lease id: the path that created it plus a unique suffix, e.g.
//! `database/creds/app/8bJ3...` or `auth/approle/login/h27b...`.
//!
//! ```no_run
//! # async fn run(client: vault_ops_core::VaultClient) -> Result<(), vault_ops_core::Error> {
//! use std::time::Duration;
//!
//! let leases = client.leases();
//! // LIST sys/leases/lookup/database/creds/app/ → the suffixes of the live leases.
//! for key in leases.list("database/creds/app").await? {
//!     let id = format!("database/creds/app/{key}");
//!     let info = leases.lookup(&id).await?;
//!     println!("{id}: {}s left, renewable: {}", info.ttl, info.renewable);
//! }
//! let renewed = leases.renew("database/creds/app/8bJ3", Some(Duration::from_secs(3600))).await?;
//! println!("now valid for {}s", renewed.lease_duration);
//! leases.revoke_prefix("database/creds/app").await?; // every lease of that role
//! # Ok(()) }
//! ```
//!
//! Vault's answers worth knowing: looking up an unknown lease is HTTP 400 `invalid lease`
//! ([`Leases::lookup_opt`] turns that into `None`); renewing one is 400 `lease not found`;
//! revoking one succeeds. Token leases (`auth/...`) cannot be renewed here (400 `tokens cannot
//! be renewed through this endpoint`): renew the token with [`tokens`](VaultClient::tokens).

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use crate::api::generic::{list_keys, read_data, send};
use crate::client::VaultClient;
use crate::error::{Error, Result};
use crate::http::{join_path, Request};
use crate::response::null_default;

/// Lease operations. Get it with [`VaultClient::leases`].
#[derive(Debug, Clone, Copy)]
pub struct Leases<'a> {
    client: &'a VaultClient,
}

impl VaultClient {
    /// Lease operations (`vault lease ...`) on `sys/leases`.
    pub fn leases(&self) -> Leases<'_> {
        Leases { client: self }
    }
}

/// What `sys/leases/lookup` tells about a lease.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct LeaseInfo {
    /// The lease id.
    #[serde(default)]
    pub id: String,
    /// When the lease was created (RFC 3339).
    #[serde(default)]
    pub issue_time: Option<String>,
    /// When the lease expires (RFC 3339); `None` for a lease without expiry.
    #[serde(default)]
    pub expire_time: Option<String>,
    /// When the lease was last renewed (RFC 3339); `None` if never.
    #[serde(default)]
    pub last_renewal: Option<String>,
    /// Whether the lease can be renewed.
    #[serde(default)]
    pub renewable: bool,
    /// Seconds left.
    #[serde(default)]
    pub ttl: i64,
}

/// The answer of a renewal: the lease's new duration.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct RenewedLease {
    /// The lease id.
    #[serde(default)]
    pub lease_id: String,
    /// The new duration in seconds, from now. It can be less than asked for when the lease
    /// reaches its maximum TTL.
    #[serde(default)]
    pub lease_duration: u64,
    /// Whether the lease can be renewed again.
    #[serde(default)]
    pub renewable: bool,
    /// Warnings Vault attached (for example that the TTL was capped).
    #[serde(default, deserialize_with = "null_default")]
    pub warnings: Vec<String>,
}

fn check_lease_id(lease_id: &str) -> Result<&str> {
    let id = lease_id.trim();
    if id.is_empty() {
        return Err(Error::InvalidInput("the lease id is empty".into()));
    }
    Ok(id)
}

impl Leases<'_> {
    /// `vault lease lookup ID`. An unknown lease is Vault's HTTP 400 `invalid lease`.
    pub async fn lookup(&self, lease_id: &str) -> Result<LeaseInfo> {
        let id = check_lease_id(lease_id)?;
        let req = Request::put("sys/leases/lookup").json(&json!({ "lease_id": id }))?;
        read_data(self.client, req).await
    }

    /// Like [`lookup`](Self::lookup), but `None` when Vault says the lease does not exist
    /// (HTTP 400 `invalid lease`, e.g. because it expired or was revoked).
    pub async fn lookup_opt(&self, lease_id: &str) -> Result<Option<LeaseInfo>> {
        match self.lookup(lease_id).await {
            Ok(info) => Ok(Some(info)),
            Err(e)
                if e.status() == Some(400)
                    && e.api().is_some_and(|a| a.mentions("invalid lease")) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// `vault lease renew [-increment=N] ID`: asks for `increment` more time from now (Vault's
    /// default for the lease when `None`). Returns the lease's new duration.
    pub async fn renew(&self, lease_id: &str, increment: Option<Duration>) -> Result<RenewedLease> {
        let id = check_lease_id(lease_id)?;
        let mut body = serde_json::Map::new();
        body.insert("lease_id".into(), json!(id));
        if let Some(i) = increment {
            body.insert("increment".into(), json!(i.as_secs()));
        }
        let req = Request::put("sys/leases/renew").json(&body)?;
        self.client.execute(req).await?.json()
    }

    /// `vault lease revoke ID`: revokes one lease (and the secret it stands for) now.
    /// Revoking an unknown lease succeeds, as in Vault.
    pub async fn revoke(&self, lease_id: &str) -> Result<()> {
        let id = check_lease_id(lease_id)?;
        let req = Request::put("sys/leases/revoke").json(&json!({ "lease_id": id }))?;
        send(self.client, req).await
    }

    /// `vault lease revoke -prefix PREFIX`: revokes every lease whose id starts with `prefix`
    /// (e.g. `database/creds/app`, or `auth/approle/login` for every token from that login).
    /// Needs `sudo` on `sys/leases/revoke-prefix`. An empty prefix is refused here rather than
    /// sent, since it would mean every lease.
    pub async fn revoke_prefix(&self, prefix: &str) -> Result<()> {
        let prefix = prefix.trim_matches('/');
        if prefix.trim().is_empty() {
            return Err(Error::InvalidInput(
                "the lease prefix to revoke is empty (that would revoke every lease)".into(),
            ));
        }
        let path = join_path(&["sys/leases/revoke-prefix", prefix]);
        send(self.client, Request::put(path)).await
    }

    /// `vault list sys/leases/lookup/PREFIX`: the keys below `prefix`. Keys ending in `/` are
    /// further prefixes; the others are lease id suffixes (`PREFIX/KEY` is the lease id).
    /// Empty when there is nothing there. An empty `prefix` lists the top level (`auth/`,
    /// `database/`, ...). Needs `sudo` on `sys/leases/lookup`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let prefix = prefix.trim_matches('/');
        let path = if prefix.is_empty() {
            "sys/leases/lookup/".to_string()
        } else {
            format!("{}/", join_path(&["sys/leases/lookup", prefix]))
        };
        list_keys(self.client, &path).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::VaultResponse;

    #[test]
    fn lease_ids() {
        assert_eq!(check_lease_id(" a/b ").unwrap(), "a/b");
        assert!(matches!(check_lease_id(" "), Err(Error::InvalidInput(_))));
    }

    #[test]
    fn decodes_lookup() {
        let body = r#"{"request_id":"r","lease_id":"","renewable":false,"lease_duration":0,
            "data":{"expire_time":"2026-11-28T18:46:40Z","id":"auth/approle/login/h27",
            "issue_time":"2026-11-28T17:46:40Z","last_renewal":null,"path":"auth/approle/login",
            "renewable":true,"ttl":3597},"warnings":null,"auth":null}"#;
        let info = serde_json::from_str::<VaultResponse<LeaseInfo>>(body)
            .unwrap()
            .data;
        assert_eq!(info.id, "auth/approle/login/h27");
        assert_eq!(info.ttl, 3597);
        assert!(info.renewable);
        assert!(info.last_renewal.is_none());
        assert_eq!(info.expire_time.as_deref(), Some("2026-11-28T18:46:40Z"));
    }
}
