//! The envelope Vault wraps most replies in.

use std::collections::HashMap;

use serde::{Deserialize, Deserializer};

use crate::secret::VaultToken;

/// Vault's reply envelope: `data` plus lease, auth, wrapping and warning fields.
///
/// `Debug` never prints `data` (it may be a dynamic credential, a private key, a secret's
/// values), the `auth` token or the `wrap_info` token: it shows `data` as `[REDACTED]` and
/// the rest of the envelope as it is.
#[derive(Clone, Deserialize)]
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

/// The `auth` block of a login, token create or renew reply.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct AuthInfo {
    /// The token. Never printed by `Debug`.
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
    /// Metadata the auth method attached (e.g. the service account name).
    #[serde(default, deserialize_with = "null_default")]
    pub metadata: HashMap<String, String>,
    /// TTL in seconds.
    #[serde(default)]
    pub lease_duration: u64,
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
