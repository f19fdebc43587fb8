//! # vault-ops-core
//!
//! A typed async client for HashiCorp Vault and OpenBao, built for operations work: the daily
//! tasks the `vault` CLI does (status, seal/unseal, kv, policies, auth methods, tokens, leases,
//! PKI, metrics), with retries, TLS, namespaces and errors that keep Vault's own messages.
//!
//! ```no_run
//! # async fn run() -> Result<(), vault_ops_core::Error> {
//! use vault_ops_core::VaultClient;
//!
//! // VAULT_ADDR / BAO_ADDR, VAULT_TOKEN (or ~/.vault-token), VAULT_CACERT, ...
//! let client = VaultClient::from_env()?;
//! let status = client.connect().await?; // health, seal state, version, token TTL
//! println!("{status}");
//!
//! client.kv2("secret").put("app/config", &serde_json::json!({"mode": "blue"})).await?;
//! let current = client.kv2("secret").get::<serde_json::Value>("app/config").await?;
//! println!("version {}: {}", current.metadata.version, current.data);
//! # Ok(()) }
//! ```
//!
//! One handler per API area, each borrowed from the client:
//! [`sys`](VaultClient::sys), [`kv2`](VaultClient::kv2), [`kv1`](VaultClient::kv1),
//! [`policies`](VaultClient::policies), [`tokens`](VaultClient::tokens),
//! [`leases`](VaultClient::leases), [`pki`](VaultClient::pki), [`generic`](VaultClient::generic).
//! Every request goes through one send path, [`VaultClient::execute`].
//!
//! **Names and paths.** Secret paths, mount paths and policy or role names are plain text, as
//! the `vault` CLI takes them: the send path percent-encodes every request path exactly as the
//! CLI does (`%` → `%25`, `?` → `%3F`, `#` → `%23`, `\` → `%5C`, space and non-ASCII
//! characters as `%XX` bytes), so a name returned by a `list()` addresses exactly that entry,
//! also for keys the CLI wrote, and no name can reach a path outside its handler's prefix:
//! `%2e%2e` and `\` are characters of the name, and a `.`, `..` or empty (`a//b`) segment or a
//! control character (which OpenBao refuses in paths) is refused with [`Error::InvalidInput`]
//! before anything is sent. Names that are one segment
//! (policies, PKI roles) must not contain `/`; mounts and keys may, for nesting.
//!
//! **HA clusters.** Give the client every node of a raft cluster with
//! [`ClientBuilder::addresses`]: when the node in use cannot be reached (connection refused,
//! unreachable; nothing was sent), the request moves on to the next node at once, and the
//! client stays with the node that answered ([`VaultClient::current_address`]). Errors after a
//! request was sent (a reset, a timeout) are not moved to another node, since a write may have
//! been applied. Standbys forward writes; `sys/health` on a standby is
//! [`HealthState::Standby`](api::sys::HealthState::Standby), not an error; a standby's 307 is
//! followed only to a configured address (or the same host), since the token goes along.
//! Standbys answer reads from their own copy, which may lag: with
//! [`ClientBuilder::read_your_writes`] the client sends back the newest `X-Vault-Index` it saw,
//! with `X-Vault-Inconsistent: forward-active-node`, so a read after a write is never stale.
//!
//! **Untrusted replies.** Reply bodies are bounded
//! ([`ClientBuilder::max_response_bytes`], 32 MiB by default; error bodies 8 KiB; raft
//! snapshots stream), one call with its retries and `Retry-After` waits ends by
//! [`ClientBuilder::max_call_duration`], and a reply that lacks the fields it always carries
//! is an [`Error::Decode`], not a value made of defaults.
//!
//! **Cargo features.** `rustls` (default): TLS through rustls; `native-tls`: the platform's
//! TLS stack; `object-store` (off by default): backups in S3, Google Cloud Storage and Azure
//! Blob through the `object_store` crate ([`backup::remote`]: multipart uploads with bounded
//! memory, verification, retention in the bucket, checked restores).
//!
//! **Secrets** have a type per kind ([`VaultToken`], [`UnsealKey`], [`SecretId`], [`Password`],
//! [`ApiKey`], [`PrivateKey`], [`Jwt`]; see [`secret`] and the exported [`secret_type!`] macro): no
//! `Debug`, `Display`, error or trace contains them, and one kind does not compile where
//! another is expected. Secret values in typed replies are redacted too.
//!
//! **Tokens and logins.** Every reply that makes or renews a token comes back as one type,
//! [`AuthInfo`] (`tokens().create()`, `renew_self()`, and every login of
//! `vault-ops-k8s-auth`): the token as a [`VaultToken`], policies, metadata, the TTL as a
//! `Duration` clamped to [`MAX_TTL`] when the reply is read, and the reply's warnings.
//!
//! **Per-call options.** [`VaultClient::with_options`] gives a handle whose calls, through any
//! handler, follow [`CallOptions`] (sent once, a time limit for the whole call).
//!
//! **Layout.** Dependencies among the files flow one way, from settings to the client:
//! [`config`] (the [`ClientBuilder`]) → `client/settings.rs` (checked settings, with the TLS
//! material of `client/tls.rs`) → `client/transport.rs` (the HTTP client and the redirect
//! policy of `client/redirect.rs`) → [`client`] (the handle; `client/ha.rs` holds the node in
//! use and the read-your-writes index). [`http`] holds the request data (`http/request.rs`,
//! no IO) and the one send loop (`http/send.rs`); [`api`] one handler per API area;
//! [`prometheus`] and [`snapshot`] the parsers and checkers of server data that need no IO.
//! `./dev cycles` checks that no import cycle comes back.

#[macro_use]
mod macros;

pub mod api;
pub mod backup;
mod certs;
pub mod client;
pub mod config;
pub mod error;
mod files;
pub mod health_report;
pub mod http;
pub mod prometheus;
pub mod response;
pub mod secret;
pub mod snapshot;
#[cfg(test)]
mod test_support;
pub mod time;

pub use client::VaultClient;
pub use config::{ClientBuilder, RetryPolicy};
pub use error::{ApiError, ConfigError, Error, Result};
pub use http::{CallOptions, Request, Response, TokenChoice};
pub use response::{AuthInfo, VaultResponse, WrapInfo, MAX_TTL};
pub use secrecy::{ExposeSecret, SecretString};
pub use secret::{
    ApiKey, Jwt, Password, PrivateKey, SecretId, TokenSecret, UnsealKey, UnsealKeySecret,
    VaultToken,
};

/// Not public API: what the exported macros expand to.
#[doc(hidden)]
pub mod __private {
    pub use serde;
}
