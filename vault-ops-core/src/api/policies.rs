//! ACL policies: `vault policy list/read/write/delete` on `sys/policies/acl`.
//!
//! ```no_run
//! # async fn run(client: vault_ops_core::VaultClient) -> Result<(), vault_ops_core::Error> {
//! let policies = client.policies();
//! policies
//!     .write("app-read", r#"path "secret/data/app/*" { capabilities = ["read"] }"#)
//!     .await?;
//! if let Some(p) = policies.read("app-read").await? {
//!     println!("{}:\n{}", p.name, p.policy);
//! }
//! println!("{:?}", policies.list().await?);
//! policies.delete("app-read").await?;
//! # Ok(()) }
//! ```
//!
//! Vault lower-cases policy names; an HCL text it cannot parse is rejected with HTTP 400 and
//! its parser's message, kept in [`Error::Api`]. A name is one path segment: empty names and
//! names with `/` are refused; any other character (`?`, `#`, `%`, `\`) is part of the name
//! and sent encoded, as the `vault` CLI sends it.

use serde::Deserialize;
use serde_json::json;

use crate::api::generic::{list_keys, read_data_opt, send};
use crate::api::single_segment;
use crate::client::VaultClient;
use crate::error::{Error, Result};
use crate::http::Request;

/// ACL policy operations. Get it with [`VaultClient::policies`].
#[derive(Debug, Clone, Copy)]
pub struct Policies<'a> {
    client: &'a VaultClient,
}

impl VaultClient {
    /// ACL policies (`vault policy ...`) on `sys/policies/acl`.
    pub fn policies(&self) -> Policies<'_> {
        Policies { client: self }
    }
}

/// An ACL policy: its name and its HCL (or JSON) text.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Policy {
    /// The policy name (as Vault stores it: lower-case).
    #[serde(default)]
    pub name: String,
    /// The policy text (HCL or JSON), exactly as written.
    #[serde(default)]
    pub policy: String,
    /// The policy's version (OpenBao counts writes; `None` when the server does not say).
    #[serde(default)]
    pub version: Option<u64>,
    /// When the policy was last written (RFC 3339), when the server says.
    #[serde(default)]
    pub modified: Option<String>,
}

const ACL: &str = "sys/policies/acl";

/// `sys/policies/acl/<name>` for a trimmed name that is one segment (any other character is
/// percent-encoded when sent, so the name is exactly the policy's).
fn policy_path(name: &str) -> Result<String> {
    let name = single_segment("policy name", name.trim())?;
    Ok(format!("{ACL}/{name}"))
}

impl Policies<'_> {
    /// `vault policy list`: the names of all ACL policies (including `default` and `root`).
    pub async fn list(&self) -> Result<Vec<String>> {
        list_keys(self.client, ACL).await
    }

    /// `vault policy read NAME`: the policy, or `None` when there is none by that name.
    pub async fn read(&self, name: &str) -> Result<Option<Policy>> {
        read_data_opt(self.client, Request::get(policy_path(name)?)).await
    }

    /// `vault policy write NAME POLICY`: creates or replaces the policy. `policy` is HCL or
    /// JSON text; Vault checks it and answers 400 with its parser's message when it is invalid.
    pub async fn write(&self, name: &str, policy: &str) -> Result<()> {
        let path = policy_path(name)?;
        if policy.trim().is_empty() {
            return Err(Error::InvalidInput(format!(
                "the text of policy {:?} is empty",
                name.trim()
            )));
        }
        let req = Request::put(path).json(&json!({ "policy": policy }))?;
        send(self.client, req).await
    }

    /// `vault policy delete NAME`. Deleting a policy that does not exist succeeds (as in Vault).
    pub async fn delete(&self, name: &str) -> Result<()> {
        send(self.client, Request::delete(policy_path(name)?)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(policy_path("app").unwrap(), "sys/policies/acl/app");
        assert_eq!(policy_path(" app ").unwrap(), "sys/policies/acl/app");
        assert!(matches!(policy_path(""), Err(Error::InvalidInput(_))));
        assert!(matches!(policy_path("  "), Err(Error::InvalidInput(_))));
        assert!(matches!(policy_path("a/b"), Err(Error::InvalidInput(_))));
        assert!(matches!(policy_path("/"), Err(Error::InvalidInput(_))));
        // Other characters are the name's own: the send path encodes them.
        assert_eq!(
            policy_path(r"..\..\..\sys\mounts\secret").unwrap(),
            r"sys/policies/acl/..\..\..\sys\mounts\secret"
        );
    }
}
