//! `sys/`: health, seal state, init, unseal, leader, step-down, and (in submodules) mounts,
//! auth methods, audit devices and the sanitized configuration.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::api::generic::send;
use crate::api::tokens::TokenInfo;
use crate::client::VaultClient;
use crate::error::{ApiError, Error, Result};
use crate::http::Request;
use crate::response::null_default;
use crate::secret::{UnsealKey, UnsealKeySecret, VaultToken};

pub mod mounts;

/// The `sys/` API. Get it with [`VaultClient::sys`].
#[derive(Debug, Clone, Copy)]
pub struct Sys<'a> {
    pub(crate) client: &'a VaultClient,
}

impl VaultClient {
    /// The `sys/` API: health, seal, init, mounts, auth methods, audit, metrics.
    pub fn sys(&self) -> Sys<'_> {
        Sys { client: self }
    }
}

/// What `sys/health`'s status code says about the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HealthState {
    /// 200: initialised, unsealed, active.
    Active,
    /// 429: unsealed standby.
    Standby,
    /// 472: disaster-recovery secondary.
    DrSecondary,
    /// 473: performance standby.
    PerformanceStandby,
    /// 474: standby that cannot reach the active node.
    StandbyActiveUnreachable,
    /// 501: not initialised.
    NotInitialized,
    /// 503: sealed.
    Sealed,
    /// 530: removed from the cluster.
    RemovedFromCluster,
    /// Any other status.
    Other(u16),
}

impl HealthState {
    /// The state for a `sys/health` status code.
    pub fn from_status(status: u16) -> Self {
        match status {
            200 => HealthState::Active,
            429 => HealthState::Standby,
            472 => HealthState::DrSecondary,
            473 => HealthState::PerformanceStandby,
            474 => HealthState::StandbyActiveUnreachable,
            501 => HealthState::NotInitialized,
            503 => HealthState::Sealed,
            530 => HealthState::RemovedFromCluster,
            other => HealthState::Other(other),
        }
    }

    /// `true` when the node serves requests (active or any standby).
    pub fn is_serving(self) -> bool {
        matches!(
            self,
            HealthState::Active
                | HealthState::Standby
                | HealthState::PerformanceStandby
                | HealthState::StandbyActiveUnreachable
        )
    }
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HealthState::Active => f.write_str("active"),
            HealthState::Standby => f.write_str("standby"),
            HealthState::DrSecondary => f.write_str("DR secondary"),
            HealthState::PerformanceStandby => f.write_str("performance standby"),
            HealthState::StandbyActiveUnreachable => {
                f.write_str("standby (active node unreachable)")
            }
            HealthState::NotInitialized => f.write_str("not initialised"),
            HealthState::Sealed => f.write_str("sealed"),
            HealthState::RemovedFromCluster => f.write_str("removed from the cluster"),
            HealthState::Other(s) => write!(f, "unknown (HTTP {s})"),
        }
    }
}

/// `sys/health`: the node's state from its status code, plus the body's fields.
///
/// `initialized`, `sealed`, `standby` and `version` must be in the reply (Vault and OpenBao
/// always send them): a body without them is not a health reply.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Health {
    /// The state the status code says.
    #[serde(skip_deserializing, default = "unknown_state")]
    pub state: HealthState,
    /// Initialised.
    pub initialized: bool,
    /// Sealed.
    pub sealed: bool,
    /// A standby node.
    pub standby: bool,
    /// A performance standby.
    #[serde(default)]
    pub performance_standby: bool,
    /// Server version, e.g. `2.7.2`.
    pub version: String,
    /// Cluster name.
    #[serde(default)]
    pub cluster_name: String,
    /// Cluster id.
    #[serde(default)]
    pub cluster_id: String,
    /// Server time, Unix seconds.
    #[serde(default)]
    pub server_time_utc: i64,
    /// Whether the standby's connection to the active node is healthy (when reported).
    #[serde(default)]
    pub ha_connection_healthy: Option<bool>,
}

fn unknown_state() -> HealthState {
    HealthState::Other(0)
}

/// `sys/seal-status` (and the reply to an unseal).
///
/// `type`, `initialized`, `sealed`, `t`, `n`, `progress` and `version` must be in the reply
/// (Vault and OpenBao always send them): a body without them is not a seal status.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[non_exhaustive]
pub struct SealStatus {
    /// Seal type, e.g. `shamir`.
    #[serde(rename = "type")]
    pub seal_type: String,
    /// Initialised.
    pub initialized: bool,
    /// Sealed.
    pub sealed: bool,
    /// Key threshold.
    #[serde(rename = "t")]
    pub threshold: u32,
    /// Number of key shares.
    #[serde(rename = "n")]
    pub shares: u32,
    /// Unseal keys entered so far.
    pub progress: u32,
    /// The nonce of the unseal in progress.
    #[serde(default)]
    pub nonce: String,
    /// Server version.
    pub version: String,
    /// Build date.
    #[serde(default)]
    pub build_date: String,
    /// Cluster name (when unsealed).
    #[serde(default)]
    pub cluster_name: Option<String>,
    /// Cluster id (when unsealed).
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// Storage backend, e.g. `raft`, `inmem`.
    #[serde(default)]
    pub storage_type: Option<String>,
}

/// `sys/leader`.
///
/// `ha_enabled` must be in the reply, and with HA enabled `is_self` and `leader_address`
/// too ([`Sys::leader`] checks): OpenBao without HA sends `ha_enabled` alone.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[non_exhaustive]
pub struct LeaderStatus {
    /// HA is enabled.
    pub ha_enabled: bool,
    /// This node is the leader.
    #[serde(default)]
    pub is_self: bool,
    /// The leader's API address.
    #[serde(default)]
    pub leader_address: String,
    /// The leader's cluster address.
    #[serde(default)]
    pub leader_cluster_address: String,
    /// The node is a performance standby.
    #[serde(default)]
    pub performance_standby: bool,
    /// Raft: last committed index.
    #[serde(default)]
    pub raft_committed_index: u64,
    /// Raft: last applied index.
    #[serde(default)]
    pub raft_applied_index: u64,
    /// When this node became active (RFC 3339), if it is.
    #[serde(default)]
    pub active_time: Option<String>,
}

/// Options for [`Sys::init`] (`vault operator init`).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct InitRequest {
    /// Number of unseal key shares.
    pub secret_shares: u32,
    /// Shares needed to unseal.
    pub secret_threshold: u32,
    /// PGP keys to encrypt the shares with (base64 or `keybase:` names).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pgp_keys: Vec<String>,
    /// PGP key to encrypt the root token with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_token_pgp_key: Option<String>,
}

impl InitRequest {
    /// `shares` key shares, `threshold` of them needed to unseal.
    pub fn new(shares: u32, threshold: u32) -> Self {
        InitRequest {
            secret_shares: shares,
            secret_threshold: threshold,
            pgp_keys: Vec::new(),
            root_token_pgp_key: None,
        }
    }
}

/// The result of `vault operator init`: unseal keys and the root token, all secret.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct InitResponse {
    /// Unseal key shares (hex).
    #[serde(default, deserialize_with = "null_default")]
    pub keys: Vec<UnsealKey>,
    /// Unseal key shares (base64).
    #[serde(default, deserialize_with = "null_default")]
    pub keys_base64: Vec<UnsealKey>,
    /// The initial root token.
    pub root_token: VaultToken,
}

/// What [`VaultClient::connect`] found: the server's state and the token's.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ConnectionStatus {
    /// The address connected to.
    pub address: String,
    /// The server's health.
    pub health: Health,
    /// The token's lookup-self, when a token is set.
    pub token: Option<TokenSummary>,
}

/// The token part of [`ConnectionStatus`].
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct TokenSummary {
    /// Display name.
    pub display_name: String,
    /// Policies.
    pub policies: Vec<String>,
    /// Remaining TTL in seconds, 0 for never expiring.
    pub ttl_seconds: i64,
    /// Renewable.
    pub renewable: bool,
    /// Accessor.
    pub accessor: String,
}

impl From<TokenInfo> for TokenSummary {
    fn from(t: TokenInfo) -> Self {
        TokenSummary {
            display_name: t.display_name,
            policies: t.policies,
            ttl_seconds: t.ttl,
            renewable: t.renewable,
            accessor: t.accessor,
        }
    }
}

impl fmt::Display for ConnectionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.health;
        write!(
            f,
            "{} — OpenBao/Vault {} ({}), cluster {}",
            self.address,
            if h.version.is_empty() {
                "?"
            } else {
                &h.version
            },
            h.state,
            if h.cluster_name.is_empty() {
                "?"
            } else {
                &h.cluster_name
            }
        )?;
        match &self.token {
            Some(t) => {
                let ttl = if t.ttl_seconds == 0 {
                    "never expires".to_string()
                } else {
                    format!("expires in {}", human_duration(t.ttl_seconds))
                };
                write!(
                    f,
                    "; token {} [{}], {}{}",
                    t.display_name,
                    t.policies.join(", "),
                    ttl,
                    if t.renewable { ", renewable" } else { "" }
                )
            }
            None => write!(f, "; no token"),
        }
    }
}

/// `3725` → `1h 2m 5s`.
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m, sec) = (s / 86400, (s % 86400) / 3600, (s % 3600) / 60, s % 60);
    let mut parts = Vec::new();
    if d > 0 {
        parts.push(format!("{d}d"));
    }
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    if sec > 0 || parts.is_empty() {
        parts.push(format!("{sec}s"));
    }
    parts.join(" ")
}

const HEALTH_STATUSES: [u16; 8] = [200, 429, 472, 473, 474, 501, 503, 530];

impl Sys<'_> {
    /// `sys/health`. Every documented status code is an answer, not an error.
    ///
    /// The body must be a health reply that agrees with the status: a 200 whose body is
    /// empty, is not a health reply, or says sealed, uninitialised or standby is an
    /// [`Error::Decode`] (never an active node with no version); so is a 429, 501 or 503
    /// whose body says otherwise. Another accepted status (429, 472, 473, 474, 501, 503, 530)
    /// whose body is not a health reply, as from a proxy, is the [`Error::Api`] for that
    /// status with the body's messages.
    pub async fn health(&self) -> Result<Health> {
        let req = Request::get("sys/health")
            .without_token()
            .accept_statuses(&HEALTH_STATUSES)
            .no_retry();
        let resp = self.client.execute(req).await?;
        let status = resp.status();
        let mut health: Health = match resp.json() {
            Ok(health) => health,
            Err(e) if status == 200 => return Err(e),
            Err(_) => return Err(resp.api_error()),
        };
        health.state = HealthState::from_status(status);
        let disagrees = match health.state {
            HealthState::Active => (!health.initialized || health.sealed || health.standby)
                .then_some("not an initialised, unsealed, active node"),
            HealthState::Standby => (!health.standby).then_some("not a standby"),
            HealthState::NotInitialized => health.initialized.then_some("initialised"),
            HealthState::Sealed => (!health.sealed).then_some("unsealed"),
            _ => None,
        };
        match disagrees {
            Some(what) => Err(resp.decode_error(format!(
                "the status says {} but the body says {what}",
                health.state
            ))),
            None => Ok(health),
        }
    }

    /// `vault status`: `sys/seal-status` (no token needed).
    pub async fn seal_status(&self) -> Result<SealStatus> {
        let req = Request::get("sys/seal-status").token(crate::TokenChoice::ClientIfSet);
        self.client.execute(req).await?.json()
    }

    /// `vault operator seal`.
    pub async fn seal(&self) -> Result<()> {
        send(self.client, Request::post("sys/seal")).await
    }

    /// `vault operator unseal KEY`: enters one key share, returns the progress.
    pub async fn unseal(&self, key: &impl UnsealKeySecret) -> Result<SealStatus> {
        let req = Request::post("sys/unseal")
            .without_token()
            .json(&json!({"key": key.key_text()}))?;
        self.client.execute(req).await?.json()
    }

    /// `vault operator unseal -reset`: discards the keys entered so far.
    pub async fn unseal_reset(&self) -> Result<SealStatus> {
        let req = Request::post("sys/unseal")
            .without_token()
            .json(&json!({"reset": true}))?;
        self.client.execute(req).await?.json()
    }

    /// `vault operator init`.
    pub async fn init(&self, request: &InitRequest) -> Result<InitResponse> {
        let req = Request::post("sys/init")
            .without_token()
            .json(request)?
            .no_retry();
        self.client.execute(req).await?.json()
    }

    /// Whether the server is initialised (`sys/init`).
    pub async fn is_initialized(&self) -> Result<bool> {
        #[derive(Deserialize)]
        struct Init {
            initialized: bool,
        }
        let req = Request::get("sys/init").without_token();
        Ok(self.client.execute(req).await?.json::<Init>()?.initialized)
    }

    /// `vault operator step-down`: the active node gives up leadership.
    pub async fn step_down(&self) -> Result<()> {
        send(self.client, Request::put("sys/step-down")).await
    }

    /// `sys/leader`. With HA enabled, a reply without `is_self` or `leader_address` is an
    /// [`Error::Decode`], not "not the leader, no leader known".
    pub async fn leader(&self) -> Result<LeaderStatus> {
        /// Which of the fields that [`LeaderStatus`] defaults the reply really has.
        #[derive(Deserialize)]
        struct Present {
            is_self: Option<serde::de::IgnoredAny>,
            leader_address: Option<serde::de::IgnoredAny>,
        }
        let req = Request::get("sys/leader").token(crate::TokenChoice::ClientIfSet);
        let resp = self.client.execute(req).await?;
        let leader: LeaderStatus = resp.json()?;
        if leader.ha_enabled {
            let present: Present = resp.json()?;
            if present.is_self.is_none() || present.leader_address.is_none() {
                return Err(resp.decode_error(
                    "HA is enabled but the reply lacks `is_self` or `leader_address`",
                ));
            }
        }
        Ok(leader)
    }
}

impl VaultClient {
    /// Checks the server (health: initialised, unsealed, version) and the token
    /// (lookup-self: policies, TTL), and reports both.
    ///
    /// A sealed or uninitialised server is an [`Error::Api`] with status 503 / 501 whose
    /// predicates say so ([`Error::is_sealed`]); a bad token is the 403 from lookup-self
    /// ([`Error::is_permission_denied`]).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), vault_ops_core::Error> {
    /// let client = vault_ops_core::VaultClient::from_env()?;
    /// match client.connect().await {
    ///     Ok(status) => println!("{status}"),
    ///     Err(e) if e.is_sealed() => eprintln!("Vault is sealed: unseal it first"),
    ///     Err(e) if e.is_permission_denied() => eprintln!("the token is not valid: {e}"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn connect(&self) -> Result<ConnectionStatus> {
        let health = self.sys().health().await?;
        let not_ready = |status: u16, msg: &str| {
            Error::from(ApiError {
                status,
                method: "GET".into(),
                path: "sys/health".into(),
                errors: vec![msg.to_string()],
                warnings: Vec::new(),
                request_id: None,
                retry_after: None,
                location: None,
            })
        };
        match health.state {
            HealthState::Sealed => return Err(not_ready(503, "Vault is sealed")),
            HealthState::NotInitialized => return Err(not_ready(501, "Vault is not initialized")),
            _ => {}
        }
        let token = if self.has_token() {
            Some(self.tokens().lookup_self().await?.into())
        } else {
            None
        };
        Ok(ConnectionStatus {
            address: self.address().to_string(),
            health,
            token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states() {
        assert_eq!(HealthState::from_status(429), HealthState::Standby);
        assert_eq!(
            HealthState::from_status(530),
            HealthState::RemovedFromCluster
        );
        assert!(!HealthState::Sealed.is_serving());
        assert_eq!(human_duration(3725), "1h 2m 5s");
        assert_eq!(human_duration(0), "0s");
    }
}
