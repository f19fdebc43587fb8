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
//! Secrets (tokens, passwords, private keys, secret values in typed replies) are
//! [`secrecy::SecretString`]s or redacting types: no `Debug`, `Display`, error or trace
//! contains them.

pub mod api;
pub mod client;
pub mod config;
pub mod error;
pub mod http;
pub mod response;

pub use client::VaultClient;
pub use config::{ClientBuilder, RetryPolicy};
pub use error::{ApiError, ConfigError, Error, Result};
pub use http::{Request, Response, TokenChoice};
pub use response::{AuthInfo, VaultResponse};
pub use secrecy::{ExposeSecret, SecretString};
