//! The envelope Vault wraps most replies in.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::secret::VaultToken;

/// The longest TTL this crate works with (100 years). A server's `lease_duration` above it
/// (say `18446744073709551615`) is read as this, which is far enough to mean "does not expire
/// soon" and near enough that every deadline computed from it (`Instant + ttl`,
/// `SystemTime + ttl`) stays representable.
pub const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Vault's reply envelope: `data` plus lease, auth, wrapping and warning fields.
///
/// `Debug` never prints `data` (it may be a dynamic credential, a private key, a secret's
/// values), the `auth` token or the `wrap_info` token: it shows `data` as `[REDACTED]` and
/// the rest of the envelope as it is.
///
/// The reply's `warnings` are also copied into [`AuthInfo::warnings`] when there is an `auth`
/// block, so a token or login handed on alone keeps them.
#[derive(Clone, Deserialize)]
#[serde(from = "Envelope<T>")]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
#[non_exhaustive]
pub struct VaultResponse<T> {
    /// Vault's request id.
    #[serde(default)]
    pub request_id: String,
    /// The lease id of a dynamic secret (empty for static ones).
    #[serde(default)]
    pub lease_id: String,
    /// Whether the lease can be renewed.
    #[serde(default)]
    pub renewable: bool,
    /// The lease duration in seconds.
    #[serde(default)]
    pub lease_duration: u64,
    /// The payload.
    pub data: T,
    /// Warnings Vault attached to the reply.
    #[serde(default, deserialize_with = "null_default")]
    pub warnings: Vec<String>,
    /// Set when the request created or renewed a token.
    #[serde(default)]
    pub auth: Option<AuthInfo>,
    /// Set when the reply was response-wrapped (`X-Vault-Wrap-TTL`): the wrapping token.
    #[serde(default)]
    pub wrap_info: Option<WrapInfo>,
    /// The mount type that answered (e.g. `kv`).
    #[serde(default)]
    pub mount_type: Option<String>,
}

/// What Vault sends: [`VaultResponse`] before the warnings are copied into its `auth` block.
#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    request_id: String,
    #[serde(default)]
    lease_id: String,
    #[serde(default)]
    renewable: bool,
    #[serde(default)]
    lease_duration: u64,
    data: T,
    #[serde(default, deserialize_with = "null_default")]
    warnings: Vec<String>,
    #[serde(default)]
    auth: Option<AuthInfo>,
    #[serde(default)]
    wrap_info: Option<WrapInfo>,
    #[serde(default)]
    mount_type: Option<String>,
}

impl<T> From<Envelope<T>> for VaultResponse<T> {
    fn from(e: Envelope<T>) -> Self {
        let mut auth = e.auth;
        if let Some(auth) = &mut auth {
            auth.warnings.clone_from(&e.warnings);
        }
        VaultResponse {
            request_id: e.request_id,
            lease_id: e.lease_id,
            renewable: e.renewable,
            lease_duration: e.lease_duration,
            data: e.data,
            warnings: e.warnings,
            auth,
            wrap_info: e.wrap_info,
            mount_type: e.mount_type,
        }
    }
}

// Hand-written: `data` is generic and usually holds secret values (KV data, dynamic
// credentials), which a derive would print.
impl<T> std::fmt::Debug for VaultResponse<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultResponse")
            .field("request_id", &self.request_id)
            .field("lease_id", &self.lease_id)
            .field("renewable", &self.renewable)
            .field("lease_duration", &self.lease_duration)
            .field("data", &"[REDACTED]")
            .field("warnings", &self.warnings)
            .field("auth", &self.auth)
            .field("wrap_info", &self.wrap_info)
            .field("mount_type", &self.mount_type)
            .finish()
    }
}

/// The `wrap_info` block of a response-wrapped reply.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct WrapInfo {
    /// The wrapping token (unwraps the reply once). Never printed by `Debug`.
    pub token: VaultToken,
    /// The wrapping token's accessor.
    #[serde(default)]
    pub accessor: String,
    /// The wrapping token's TTL in seconds.
    #[serde(default)]
    pub ttl: u64,
    /// When it was created (RFC 3339).
    #[serde(default)]
    pub creation_time: String,
    /// The path whose reply was wrapped.
    #[serde(default)]
    pub creation_path: String,
    /// The accessor of the wrapped token, when the wrapped reply is a token.
    #[serde(default)]
    pub wrapped_accessor: String,
}

/// The `auth` block of a reply that made or renewed a token: a login (any auth method), a
/// token create or a renewal. The one type for "a Vault token and what Vault said about it",
/// returned by [`Tokens::create`](crate::api::tokens::Tokens::create) and
/// [`renew_self`](crate::api::tokens::Tokens::renew_self) here and by every login of
/// `vault-ops-k8s-auth`.
///
/// Derives `Debug`, which never shows the token ([`VaultToken`] redacts itself).
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct AuthInfo {
    /// The token.
    pub client_token: VaultToken,
    /// The token's accessor (not a secret: it can look up and revoke, not use, the token).
    #[serde(default)]
    pub accessor: String,
    /// All policies of the token.
    #[serde(default, deserialize_with = "null_default")]
    pub policies: Vec<String>,
    /// Policies attached to the token itself.
    #[serde(default, deserialize_with = "null_default")]
    pub token_policies: Vec<String>,
    /// Policies that come from the identity (entity and groups).
    #[serde(default, deserialize_with = "null_default")]
    pub identity_policies: Vec<String>,
    /// Metadata the auth method attached; for Kubernetes `service_account_name`,
    /// `service_account_namespace`, `service_account_uid`, `service_account_secret_name`,
    /// `role`.
    #[serde(default, deserialize_with = "null_default")]
    pub metadata: HashMap<String, String>,
    /// The token's TTL as granted (zero for a token that never expires), at most [`MAX_TTL`]:
    /// a longer one from the server is clamped when the reply is read, so adding it to an
    /// `Instant` or `SystemTime` cannot overflow. A value that is not a whole number of
    /// seconds in `u64` is a decode error.
    #[serde(default, deserialize_with = "clamped_ttl")]
    pub lease_duration: Duration,
    /// Whether the token can be renewed.
    #[serde(default)]
    pub renewable: bool,
    /// The identity entity id.
    #[serde(default)]
    pub entity_id: String,
    /// `service` or `batch`.
    #[serde(default)]
    pub token_type: String,
    /// Whether the token is an orphan.
    #[serde(default)]
    pub orphan: bool,
    /// Remaining uses, 0 for unlimited.
    #[serde(default)]
    pub num_uses: u64,
    /// The warnings Vault attached to the reply (they sit beside the `auth` block, not in
    /// it): filled whenever the block is read from a whole reply, by [`VaultResponse`] and
    /// every handler that returns an `AuthInfo`; empty when the block alone was decoded.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

impl AuthInfo {
    /// `true` when the token has the policy `name`.
    pub fn has_policy(&self, name: &str) -> bool {
        self.policies.iter().any(|p| p == name)
    }
}

/// A TTL in whole seconds, clamped to [`MAX_TTL`].
fn ttl_from_secs(secs: u64) -> Duration {
    Duration::from_secs(secs).min(MAX_TTL)
}

/// Deserializes a TTL in seconds (`u64`) as a [`Duration`] clamped to [`MAX_TTL`].
fn clamped_ttl<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(ttl_from_secs)
}

/// Deserializes `null` as the type's default (Vault often sends `null` for empty lists and maps).
pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The `data` of Vault's reply envelope and nothing else: what the handlers that return only
/// the payload decode, so the envelope's other strings (request id, mount type) are skipped
/// rather than allocated.
#[derive(Deserialize)]
pub(crate) struct DataOnly<T> {
    pub data: T,
}

/// The `data.keys` of a LIST reply.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ListData {
    #[serde(default, deserialize_with = "null_default")]
    pub keys: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_clamped_to_max_ttl() {
        assert_eq!(ttl_from_secs(u64::MAX), MAX_TTL);
        assert_eq!(ttl_from_secs(MAX_TTL.as_secs() + 1), MAX_TTL);
        assert_eq!(ttl_from_secs(7), Duration::from_secs(7));
        assert_eq!(ttl_from_secs(0), Duration::ZERO);
    }

    #[test]
    fn auth_block_reads_the_ttl_as_a_clamped_duration() {
        let auth: AuthInfo = serde_json::from_value(serde_json::json!({
            "client_token": "s.x", "lease_duration": u64::MAX, "policies": null,
        }))
        .unwrap();
        assert_eq!(auth.lease_duration, MAX_TTL);
        assert!(auth.policies.is_empty());
        assert!(auth.warnings.is_empty());
        for bad in [
            serde_json::json!(-1),
            serde_json::json!(1.5),
            serde_json::json!("60"),
        ] {
            let r = serde_json::from_value::<AuthInfo>(
                serde_json::json!({"client_token": "s.x", "lease_duration": bad}),
            );
            assert!(r.is_err(), "lease_duration {bad} was accepted");
        }
    }

    #[test]
    fn the_replys_warnings_reach_the_auth_block() {
        let reply: VaultResponse<serde_json::Value> = serde_json::from_value(serde_json::json!({
            "data": null,
            "warnings": ["TTL of \"768h\" exceeded the effective max_ttl of \"1h\""],
            "auth": {"client_token": "s.x", "lease_duration": 3600, "policies": ["default"]},
        }))
        .unwrap();
        let auth = reply.auth.as_ref().unwrap();
        assert_eq!(auth.warnings, reply.warnings);
        assert_eq!(auth.warnings.len(), 1);
        assert_eq!(auth.lease_duration, Duration::from_secs(3600));
        assert!(auth.has_policy("default"));
        assert!(!auth.has_policy("root"));

        let no_warnings: VaultResponse<serde_json::Value> = serde_json::from_value(
            serde_json::json!({"data": null, "warnings": null, "auth": {"client_token": "s.x"}}),
        )
        .unwrap();
        assert!(no_warnings.auth.unwrap().warnings.is_empty());
    }
}
