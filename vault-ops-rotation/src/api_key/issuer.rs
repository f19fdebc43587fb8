//! Keys issued and revoked by a provider: [`KeyIssuer`] and what it is asked and answers.

use async_trait::async_trait;
use vault_ops_core::ApiKey;

/// An error from a [`KeyIssuer`]. Its message must not contain a key.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct IssuerError {
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl IssuerError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        IssuerError {
            message: message.into(),
            source: None,
        }
    }

    /// An error with a message and its cause.
    pub fn with_source(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        IssuerError {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// What [`KeyIssuer::issue`] is asked for.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IssueRequest {
    /// The secret's name (as given to [`Rotator::rotate`](crate::Rotator::rotate)).
    pub name: String,
    /// The credential path in the KV mount.
    pub path: String,
    /// The idempotency key: the same for every retry of one rotation (also across crashes and
    /// replicas), different for the next rotation. Pass it to the provider's idempotency
    /// mechanism; a repeated request must return the key issued the first time.
    pub idempotency_key: String,
    /// The id of the key being replaced, if known.
    pub previous_key_id: Option<String>,
}

/// What [`KeyIssuer::revoke`] is asked for.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RevokeRequest {
    /// The secret's name.
    pub name: String,
    /// The credential path in the KV mount.
    pub path: String,
    /// The id of the key to revoke.
    pub key_id: String,
}

/// A key issued by a provider. `Debug` does not show the key.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IssuedKey {
    /// The provider's id of the key (not a secret; used to revoke it later).
    pub key_id: String,
    /// The key.
    pub key: ApiKey,
}

impl IssuedKey {
    /// A key with its id.
    pub fn new(key_id: impl Into<String>, key: impl Into<ApiKey>) -> Self {
        IssuedKey {
            key_id: key_id.into(),
            key: key.into(),
        }
    }
}

/// A provider that issues and revokes API keys itself (a payment API, a SaaS admin API).
///
/// ```no_run
/// use vault_ops_core::ApiKey;
/// use vault_ops_rotation::api_key::{IssueRequest, IssuedKey, IssuerError, KeyIssuer, RevokeRequest};
///
/// struct MyProvider;
///
/// #[async_trait::async_trait]
/// impl KeyIssuer for MyProvider {
///     async fn issue(&self, req: &IssueRequest) -> Result<IssuedKey, IssuerError> {
///         // POST /v1/keys with header `Idempotency-Key: {req.idempotency_key}` ...
///         # let _ = req;
///         Ok(IssuedKey::new("key_123", ApiKey::new("sk_live_...")))
///     }
///     async fn revoke(&self, req: &RevokeRequest) -> Result<(), IssuerError> {
///         // DELETE /v1/keys/{req.key_id}; an already revoked key is fine.
///         # let _ = req;
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait KeyIssuer: Send + Sync {
    /// Issues a new key. Must be idempotent on [`IssueRequest::idempotency_key`]: a repeated
    /// call with the same key returns the same issued key and issues nothing new.
    async fn issue(&self, request: &IssueRequest) -> Result<IssuedKey, IssuerError>;

    /// Revokes a key. Must succeed for a key that is already revoked (a retry after a crash).
    async fn revoke(&self, request: &RevokeRequest) -> Result<(), IssuerError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use vault_ops_core::ExposeSecret;

    #[test]
    fn issued_key_debug_shows_the_id_not_the_key() {
        let issued = IssuedKey::new("key_7", ApiKey::new("sk_live_Zq9-issued"));
        assert_eq!(issued.key.expose_secret(), "sk_live_Zq9-issued");
        let shown = format!("{issued:?}");
        assert!(!shown.contains("Zq9"), "{shown}");
        assert!(
            shown.contains("key_7") && shown.contains("ApiKey([REDACTED])"),
            "{shown}"
        );
    }
}
