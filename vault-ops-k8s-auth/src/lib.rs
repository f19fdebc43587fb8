//! # vault-ops-k8s-auth
//!
//! Kubernetes login for Vault and OpenBao, and a token lifecycle that never lets a service run
//! on an expired token.
//!
//! - **Login** ([`AuthMethod`]): [`KubernetesAuth`] logs in with the pod's service-account token
//!   (re-read at every login, since projected tokens rotate); [`AppRoleAuth`] (with a fixed
//!   secret ID or one re-read from a file at every login) and [`UserpassAuth`] give services
//!   outside Kubernetes the same shape. A login returns an [`AuthInfo`], the one type core
//!   also returns from `tokens().create()` and `renew_self()`: the token
//!   (a [`VaultToken`](vault_ops_core::VaultToken), never printed), policies, metadata, TTL as
//!   a `Duration`, renewable flag, accessor, entity and the reply's warnings. (Until 0.1 this
//!   crate had its own `Login` type with the same fields; it is gone, and its `token` field
//!   is `AuthInfo::client_token`, Vault's own name.) A refused login is [`Error::LoginRefused`] with a
//!   [`LoginFailure`] (`NamespaceNotAuthorized`, `ServiceAccountNotAuthorized`, `InvalidRole`,
//!   `JwtExpired`, `PermissionDenied`, ...) and Vault's own messages. A login is never re-sent
//!   after Vault may have processed it (a 500, a timeout, a connection lost after sending): it
//!   creates a token and may use up a single-use secret ID. A `lease_duration` above
//!   [`MAX_TTL`] is clamped to it when the reply is read.
//! - **Lifecycle** ([`TokenLifecycle`]): renews at about 2/3 of the remaining TTL with jitter,
//!   logs in again when the token is not renewable, reaches its max TTL or a renewal is refused,
//!   backs off exponentially with jitter on failures, swaps the token for every clone of the
//!   client at once, retries a request once after a fresh login when it failed because the token
//!   just became invalid ([`TokenLifecycle::call`]; concurrent callers share one login and its
//!   backoff, so an outage of the login path costs a few logins, not one per request), reports
//!   its state (including a `Failed` phase if its task dies) through a
//!   [`watch`](tokio::sync::watch) of [`LifecycleStatus`] and a stream of [`LifecycleEvent`]s, and
//!   can write each new token to a file (mode `0600`, atomically) for sidecar use.
//! - **Admin** ([`KubernetesAuthExt::kubernetes_auth`]): typed [`KubernetesConfig`] and
//!   [`KubernetesRole`] read/write, role list/delete, and a test login, for the troubleshooting
//!   steps of the Kubernetes auth guide.
//!
//! ```no_run
//! # async fn run() -> Result<(), vault_ops_k8s_auth::Error> {
//! use vault_ops_core::VaultClient;
//! use vault_ops_k8s_auth::{KubernetesAuth, LifecycleConfig, TokenLifecycle};
//!
//! // VAULT_ADDR (or BAO_ADDR), VAULT_CACERT, ...; no token needed, the lifecycle logs in.
//! let client = VaultClient::from_env()?;
//! let lifecycle = TokenLifecycle::start(
//!     client.clone(),
//!     // role "payments" on auth/kubernetes, JWT from
//!     // /var/run/secrets/kubernetes.io/serviceaccount/token
//!     KubernetesAuth::new("payments"),
//!     LifecycleConfig::default().token_file("/vault/secrets/.vault-token"),
//! )
//! .await?;
//!
//! // `client` (and every clone of it) now always carries a fresh token.
//! let config = client
//!     .kv2("secret")
//!     .get::<serde_json::Value>("payments/config")
//!     .await?;
//! println!("{}", config.data);
//!
//! let status = lifecycle.status();
//! let remaining = status.remaining().map_or(0, |d| d.as_secs());
//! println!(
//!     "token expires in {remaining} s; {} renewals, {} logins, {} failures in a row",
//!     status.renewals,
//!     status.logins,
//!     status.consecutive_failures
//! );
//! lifecycle.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Examples: `cargo run -p vault-ops-k8s-auth --example k8s_login`, `k8s_read_config`,
//! `k8s_list_roles` (they read `VAULT_ADDR`, `VAULT_TOKEN` and friends from the environment).

mod admin;
mod error;
mod kubernetes;
pub mod lifecycle;
mod login;
mod methods;
mod sink;

pub use admin::{KubernetesAdmin, KubernetesAuthExt, KubernetesConfig, KubernetesRole};
pub use error::{Error, LoginFailure, Result};
pub use kubernetes::{JwtSource, KubernetesAuth};
pub use lifecycle::{
    LifecycleConfig, LifecycleEvent, LifecyclePhase, LifecycleStatus, LoginReason, NextAction,
    TokenLifecycle,
};
pub use login::{login_request, AuthMethod};
pub use methods::{AppRoleAuth, UserpassAuth};
pub use sink::{write_token_file, TOKEN_FILE_MODE};
/// What a login returns (core's type, re-exported) and the longest TTL it carries.
pub use vault_ops_core::{AuthInfo, MAX_TTL};
