//! Integrated storage (raft): peers, join, remove-peer, autopilot and snapshots
//! (`vault operator raft ...`).
//!
//! ```no_run
//! # async fn run() -> Result<(), vault_ops_core::Error> {
//! use vault_ops_core::api::raft::{JoinRequest, RestoreMode};
//! use vault_ops_core::VaultClient;
//!
//! let client = VaultClient::from_env()?;
//!
//! // `vault operator raft list-peers`
//! for peer in client.raft().configuration().await?.servers {
//!     println!("{} {} leader={} voter={}", peer.node_id, peer.address, peer.leader, peer.voter);
//! }
//!
//! // `vault operator raft join` is sent to the NEW node (no token needed), then unseal it.
//! let new_node = VaultClient::new("http://vault-2.vault-internal:8200")?;
//! new_node
//!     .raft()
//!     .join(&JoinRequest::new("http://vault-0.vault-internal:8200").retry(true))
//!     .await?;
//!
//! // `vault operator raft snapshot save` — streamed to disk, checked to be a complete archive.
//! let info = client.raft().snapshot_to_file("/backups/vault.snap").await?;
//! println!("{} bytes, raft index {}", info.bytes, info.index);
//!
//! // `vault operator raft snapshot restore` (add `RestoreMode::Force` only for a snapshot of
//! // a cluster with other unseal keys).
//! client
//!     .raft()
//!     .snapshot_restore_from_file("/backups/vault.snap", RestoreMode::Normal)
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Leadership calls live on [`Sys`](crate::api::sys::Sys): [`leader`](crate::api::sys::Sys::leader)
//! and [`step_down`](crate::api::sys::Sys::step_down).
//!
//! # Snapshots
//!
//! A snapshot is never held in memory: [`Raft::snapshot_to_writer`] copies the reply chunk by
//! chunk to any [`AsyncWrite`] while a [`SnapshotVerifier`] decompresses it on the fly, walks
//! the tar entries and checks the `SHA256SUMS` inside against `meta.json` and `state.bin`. A
//! snapshot that is cut short, not gzip, or whose sums do not match is an error, so a backup
//! that returns `Ok` is a complete archive. The check keeps little whatever it is fed: an
//! entry that appears twice, more than 64 entries, or a `meta.json` or `SHA256SUMS` over
//! 64 KiB is refused.
//!
//! A snapshot holds every secret in Vault. [`Raft::snapshot_to_file`] writes it to a new file
//! created exclusively under a random name in the target's directory (mode 0600 on Unix, so
//! nothing planted at a predictable name, such as a symlink, is ever opened), syncs it and
//! names it only when the archive checked out, never replacing an existing file.
//!
//! # Restores
//!
//! Every restore goes to the active node. OpenBao 2.7.2 applies a restore sent to a standby
//! on the standby itself, where it fails ("node is not the leader"): the standby seals itself
//! and still answers 204. So a restore first asks the node in use for the leader
//! (`sys/leader`) and sends the snapshot to the configured address of the active node; when
//! the active node is not a configured address, nothing is sent and the error names it. A
//! file goes with its length ([`Raft::snapshot_restore_from_file`]). Should Vault still
//! answer with a redirect, the error says where it pointed (a streamed body is not sent
//! twice).
//!
//! A snapshot taken on a cluster with other unseal keys (another cluster, or this one before
//! it was re-initialised) is refused by Vault with HTTP 400; the error then says why and how
//! to force it ([`Error::is_snapshot_from_another_cluster`]). Forcing needs
//! [`RestoreMode::Force`]: every node then seals and must be unsealed with the keys of the
//! cluster the snapshot came from.
//!
//! Snapshot transfers use the client's timeout for the whole transfer unless
//! [`Raft::timeout`] sets another (large stores may need minutes).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flate2::write::GzDecoder;
use reqwest::header::{HeaderValue, CONTENT_LENGTH, LOCATION};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use tempfile::TempPath;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::api::generic::{read_data, send};
use crate::client::VaultClient;
use crate::error::{ApiError, Error, Result};
use crate::files;
use crate::http::Request;
use crate::response::null_default;

/// The raft API. Get it with [`VaultClient::raft`].
#[derive(Debug, Clone)]
pub struct Raft<'a> {
    client: &'a VaultClient,
    timeout: Option<Duration>,
    progress: Option<OnProgress>,
}

/// How far a snapshot transfer has got, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransferProgress {
    /// Bytes transferred so far.
    pub bytes: u64,
    /// The whole size, when known (a restore from a file; a download is chunked).
    pub total: Option<u64>,
}

/// A callback told after every chunk of a snapshot transfer (see [`Raft::on_progress`]). It
/// runs on the transfer's task: keep it cheap (update a counter or a progress bar).
#[derive(Clone)]
pub struct OnProgress(Arc<dyn Fn(TransferProgress) + Send + Sync>);

impl OnProgress {
    /// Wraps `f`.
    pub fn new(f: impl Fn(TransferProgress) + Send + Sync + 'static) -> Self {
        OnProgress(Arc::new(f))
    }

    fn report(&self, bytes: u64, total: Option<u64>) {
        (self.0)(TransferProgress { bytes, total });
    }
}

impl std::fmt::Debug for OnProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnProgress(..)")
    }
}

impl VaultClient {
    /// The integrated storage (raft) API: peers, join, remove-peer, autopilot, snapshots.
    pub fn raft(&self) -> Raft<'_> {
        Raft {
            client: self,
            timeout: None,
            progress: None,
        }
    }
}

const SNAPSHOT_PATH: &str = "sys/storage/raft/snapshot";
const SNAPSHOT_FORCE_PATH: &str = "sys/storage/raft/snapshot-force";
/// Size of the chunks read from a local snapshot when uploading or verifying it.
const CHUNK: usize = 64 * 1024;

/// `sys/storage/raft/configuration`: the raft peer set.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[non_exhaustive]
pub struct RaftConfiguration {
    /// The peers.
    #[serde(default, deserialize_with = "null_default")]
    pub servers: Vec<RaftPeer>,
    /// The raft index of this configuration.
    #[serde(default)]
    pub index: u64,
}

impl RaftConfiguration {
    /// The peer that is the leader, if there is one.
    pub fn leader(&self) -> Option<&RaftPeer> {
        self.servers.iter().find(|s| s.leader)
    }

    /// The peer with this node id.
    pub fn peer(&self, node_id: &str) -> Option<&RaftPeer> {
        self.servers.iter().find(|s| s.node_id == node_id)
    }

    /// How many peers vote.
    pub fn voters(&self) -> usize {
        self.servers.iter().filter(|s| s.voter).count()
    }
}

/// One raft peer (`vault operator raft list-peers`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[non_exhaustive]
pub struct RaftPeer {
    /// The node id (`node_id` in the storage stanza).
    pub node_id: String,
    /// The cluster address, `host:port`.
    #[serde(default)]
    pub address: String,
    /// Whether this peer is the leader.
    #[serde(default)]
    pub leader: bool,
    /// Whether this peer votes (new nodes join as non-voters until autopilot promotes them).
    #[serde(default)]
    pub voter: bool,
    /// The raft protocol version (Vault sends it as a string, e.g. `"3"`).
    #[serde(default, deserialize_with = "string_or_number")]
    pub protocol_version: String,
}

/// Options for [`Raft::join`] (`vault operator raft join`).
///
/// The client key is a secret: `Debug` redacts it.
#[derive(Clone)]
#[non_exhaustive]
pub struct JoinRequest {
    /// The API address of a node of the cluster to join, e.g. `https://vault-0.vault-internal:8200`.
    pub leader_api_addr: String,
    /// PEM CA certificate to verify the leader's TLS certificate.
    pub leader_ca_cert: Option<String>,
    /// PEM client certificate for TLS client authentication to the leader.
    pub leader_client_cert: Option<String>,
    /// PEM private key of the client certificate.
    pub leader_client_key: Option<SecretString>,
    /// Keep retrying the join in the background until it succeeds.
    pub retry: bool,
    /// Join as a permanent non-voter.
    pub non_voter: bool,
}

impl fmt::Debug for JoinRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinRequest")
            .field("leader_api_addr", &self.leader_api_addr)
            .field(
                "leader_ca_cert",
                &self.leader_ca_cert.as_ref().map(|_| "(PEM)"),
            )
            .field(
                "leader_client_cert",
                &self.leader_client_cert.as_ref().map(|_| "(PEM)"),
            )
            .field(
                "leader_client_key",
                &self.leader_client_key.as_ref().map(|_| "[REDACTED]"),
            )
            .field("retry", &self.retry)
            .field("non_voter", &self.non_voter)
            .finish()
    }
}

impl JoinRequest {
    /// Join the cluster that the node at `leader_api_addr` belongs to.
    pub fn new(leader_api_addr: impl Into<String>) -> Self {
        JoinRequest {
            leader_api_addr: leader_api_addr.into(),
            leader_ca_cert: None,
            leader_client_cert: None,
            leader_client_key: None,
            retry: false,
            non_voter: false,
        }
    }

    /// The PEM CA certificate that signed the leader's certificate.
    pub fn ca_cert(mut self, pem: impl Into<String>) -> Self {
        self.leader_ca_cert = Some(pem.into());
        self
    }

    /// A PEM client certificate and its key, for a leader that asks for one.
    pub fn client_cert(mut self, cert_pem: impl Into<String>, key_pem: SecretString) -> Self {
        self.leader_client_cert = Some(cert_pem.into());
        self.leader_client_key = Some(key_pem);
        self
    }

    setters! {
        /// Keep retrying in the background until the join succeeds.
        fn retry(bool);
        /// Join as a permanent non-voter.
        fn non_voter(bool);
    }
}

/// `sys/storage/raft/autopilot/state`: autopilot's view of the cluster's health.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[non_exhaustive]
pub struct AutopilotState {
    /// Whether every server is healthy.
    #[serde(default)]
    pub healthy: bool,
    /// How many voters can fail without losing quorum.
    #[serde(default)]
    pub failure_tolerance: u32,
    /// The leader's node id.
    #[serde(default)]
    pub leader: String,
    /// The voters' node ids.
    #[serde(default, deserialize_with = "null_default")]
    pub voters: Vec<String>,
    /// The non-voters' node ids (when reported).
    #[serde(default, deserialize_with = "null_default")]
    pub non_voters: Vec<String>,
    /// Every server by node id.
    #[serde(default, deserialize_with = "null_default")]
    pub servers: BTreeMap<String, AutopilotServer>,
}

/// One server in [`AutopilotState`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[non_exhaustive]
pub struct AutopilotServer {
    /// The node id.
    #[serde(default)]
    pub id: String,
    /// The node name.
    #[serde(default)]
    pub name: String,
    /// The cluster address.
    #[serde(default)]
    pub address: String,
    /// `alive`, `left`, `failed`, ...
    #[serde(default)]
    pub node_status: String,
    /// Time since the leader last heard from it, e.g. `1.2ms`.
    #[serde(default)]
    pub last_contact: String,
    /// The last raft term it has.
    #[serde(default)]
    pub last_term: u64,
    /// The last raft index it has.
    #[serde(default)]
    pub last_index: u64,
    /// Whether autopilot considers it healthy.
    #[serde(default)]
    pub healthy: bool,
    /// Since when it has been stable (RFC 3339).
    #[serde(default)]
    pub stable_since: String,
    /// `leader`, `voter`, `non-voter`, ...
    #[serde(default)]
    pub status: String,
    /// The server's version.
    #[serde(default)]
    pub version: String,
    /// `voter` or `non-voter` (when reported).
    #[serde(default)]
    pub node_type: String,
}

/// `sys/storage/raft/autopilot/configuration`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct AutopilotConfig {
    /// Remove dead servers automatically.
    #[serde(default)]
    pub cleanup_dead_servers: bool,
    /// How long a server must be unreachable to count as dead, e.g. `24h0m0s`.
    #[serde(default)]
    pub dead_server_last_contact_threshold: String,
    /// How long without contact makes a server unhealthy, e.g. `10s`.
    #[serde(default)]
    pub last_contact_threshold: String,
    /// How many log entries a server may trail by and still be healthy.
    #[serde(default)]
    pub max_trailing_logs: u64,
    /// The number of voters dead-server cleanup never goes below.
    #[serde(default)]
    pub min_quorum: u64,
    /// How long a new server must be healthy before it is promoted to voter, e.g. `10s`.
    #[serde(default)]
    pub server_stabilization_time: String,
}

/// Changes for [`Raft::set_autopilot_config`]: only the fields that are set are sent.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct AutopilotConfigUpdate {
    /// Remove dead servers automatically (needs `min_quorum`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup_dead_servers: Option<bool>,
    /// e.g. `24h`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_server_last_contact_threshold: Option<String>,
    /// e.g. `10s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_contact_threshold: Option<String>,
    /// Log entries a healthy server may trail by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_trailing_logs: Option<u64>,
    /// The number of voters dead-server cleanup never goes below.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_quorum: Option<u64>,
    /// e.g. `10s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_stabilization_time: Option<String>,
}

/// How a snapshot restore treats a snapshot from a cluster with other unseal keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreMode {
    /// `POST sys/storage/raft/snapshot`: Vault refuses a snapshot whose keyring does not
    /// match this cluster's (HTTP 400 "could not verify hash file").
    Normal,
    /// `POST sys/storage/raft/snapshot-force` (`vault operator raft snapshot restore -force`):
    /// restores even a snapshot of another cluster. Every node then seals and must be unsealed
    /// with the keys of the cluster the snapshot came from (a restart of each process may be
    /// needed first). Use only for disaster recovery into a new cluster.
    Force,
}

/// What a checked snapshot contains.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// Size of the archive in bytes.
    pub bytes: u64,
    /// SHA-256 of the whole archive, lower-case hex.
    pub sha256: String,
    /// The raft index the snapshot was taken at (from `meta.json`).
    pub index: u64,
    /// The raft term (from `meta.json`).
    pub term: u64,
    /// The entries of the tar archive, in order.
    pub files: Vec<String>,
}

impl Raft<'_> {
    /// Uses `timeout` for snapshot transfers instead of the client's timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Calls `progress` after every chunk of a snapshot save or restore.
    pub fn on_progress(mut self, progress: OnProgress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// `vault operator raft list-peers`: `sys/storage/raft/configuration`.
    pub async fn configuration(&self) -> Result<RaftConfiguration> {
        #[derive(Deserialize)]
        struct Data {
            config: RaftConfiguration,
        }
        let data: Data =
            read_data(self.client, Request::get("sys/storage/raft/configuration")).await?;
        Ok(data.config)
    }

    /// `vault operator raft join`: asks the node this client talks to (the NEW node, not yet
    /// part of the cluster) to join the cluster of `request.leader_api_addr`. Sent without a
    /// token. Returns Vault's `joined` flag. The node still has to be unsealed afterwards; it
    /// starts as a non-voter until autopilot promotes it.
    pub async fn join(&self, request: &JoinRequest) -> Result<bool> {
        #[derive(Deserialize)]
        struct Joined {
            #[serde(default)]
            joined: bool,
        }
        if request.leader_api_addr.trim().is_empty() {
            return Err(Error::InvalidInput(
                "the leader API address to join is empty".into(),
            ));
        }
        let mut body = json!({
            "leader_api_addr": request.leader_api_addr,
            "retry": request.retry,
            "non_voter": request.non_voter,
        });
        if let Some(ca) = &request.leader_ca_cert {
            body["leader_ca_cert"] = json!(ca);
        }
        if let Some(cert) = &request.leader_client_cert {
            body["leader_client_cert"] = json!(cert);
        }
        if let Some(key) = &request.leader_client_key {
            body["leader_client_key"] = json!(key.expose_secret());
        }
        let req = Request::post("sys/storage/raft/join")
            .without_token()
            .json(&body)?
            .no_retry();
        let resp = self.client.execute(req).await?;
        Ok(resp.json_opt::<Joined>()?.is_some_and(|j| j.joined))
    }

    /// `vault operator raft remove-peer NODE_ID`. Vault answers success for an unknown id too.
    pub async fn remove_peer(&self, node_id: &str) -> Result<()> {
        if node_id.trim().is_empty() {
            return Err(Error::InvalidInput("the node id to remove is empty".into()));
        }
        let req =
            Request::post("sys/storage/raft/remove-peer").json(&json!({ "server_id": node_id }))?;
        send(self.client, req).await
    }

    /// `vault operator raft autopilot state`.
    pub async fn autopilot_state(&self) -> Result<AutopilotState> {
        let req = Request::get("sys/storage/raft/autopilot/state");
        read_data(self.client, req).await
    }

    /// `vault operator raft autopilot get-config`.
    pub async fn autopilot_config(&self) -> Result<AutopilotConfig> {
        let req = Request::get("sys/storage/raft/autopilot/configuration");
        read_data(self.client, req).await
    }

    /// `vault operator raft autopilot set-config`: changes the fields that are set.
    pub async fn set_autopilot_config(&self, update: &AutopilotConfigUpdate) -> Result<()> {
        let req = Request::post("sys/storage/raft/autopilot/configuration").json(update)?;
        send(self.client, req).await
    }

    /// `vault operator raft snapshot save`, streamed into `writer` chunk by chunk, checked on
    /// the fly ([`SnapshotVerifier`]) and flushed.
    ///
    /// When the archive turns out incomplete or corrupt the call fails with
    /// [`Error::Decode`] after `writer` has received what arrived: discard it.
    pub async fn snapshot_to_writer<W>(&self, writer: &mut W) -> Result<SnapshotInfo>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let req = Request::get(SNAPSHOT_PATH).no_retry();
        let mut resp = self
            .client
            .execute_streaming(req, None, self.timeout, None)
            .await?;
        let status = resp.status().as_u16();
        let total = resp.content_length();
        let mut done = 0u64;
        let mut verifier = SnapshotVerifier::new();
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => return Err(self.body_error("GET", SNAPSHOT_PATH, &e)),
            };
            verifier.update(&chunk);
            writer
                .write_all(&chunk)
                .await
                .map_err(|e| Error::io("writing the raft snapshot", e))?;
            done += chunk.len() as u64;
            if let Some(p) = &self.progress {
                p.report(done, total);
            }
        }
        writer
            .flush()
            .await
            .map_err(|e| Error::io("flushing the raft snapshot", e))?;
        verifier.finish().map_err(|message| Error::Decode {
            method: "GET".into(),
            path: SNAPSHOT_PATH.into(),
            status,
            message: format!("the snapshot is not a complete raft snapshot archive: {message}"),
        })
    }

    /// `vault operator raft snapshot save FILE`: streams the snapshot into a new file in
    /// `path`'s directory, checks the archive, syncs it to disk and only then names it `path`.
    ///
    /// A snapshot holds every secret in Vault: the file is created exclusively under a random
    /// name (nothing planted there, such as a symlink, is ever opened) and readable by its
    /// owner only (mode 0600 on Unix). `path` itself is never replaced: when anything is there
    /// (a file, a directory, a symlink, even a dangling one) the call fails with an
    /// [`Error::Io`] of kind [`AlreadyExists`](std::io::ErrorKind::AlreadyExists) and leaves
    /// it as it was (checked before the download, and again, atomically, when the file is
    /// named). On any failure the temporary file is removed.
    pub async fn snapshot_to_file(&self, path: impl AsRef<Path>) -> Result<SnapshotInfo> {
        let path = path.as_ref();
        if files::is_taken(path).await {
            return Err(Error::io(
                "saving the raft snapshot",
                files::exists_error(path),
            ));
        }
        let (info, temp) = self.snapshot_to_temp_in(&files::parent_dir(path)).await?;
        files::publish(temp, path)
            .await
            .map_err(|e| Error::io("saving the raft snapshot", e))?;
        Ok(info)
    }

    /// Takes a snapshot into a new private file in `dir` under a random name (see
    /// [`snapshot_to_file`](Self::snapshot_to_file)), checked and synced. Dropping the
    /// returned path removes the file; [`files::publish`] names it.
    pub(crate) async fn snapshot_to_temp_in(&self, dir: &Path) -> Result<(SnapshotInfo, TempPath)> {
        let (mut file, temp) = files::create_temp_in(dir)
            .await
            .map_err(|e| Error::io(format!("creating a temporary file in {}", dir.display()), e))?;
        let info = self.snapshot_to_writer(&mut file).await?;
        file.sync_all()
            .await
            .map_err(|e| Error::io(format!("syncing {}", temp.display()), e))?;
        Ok((info, temp))
    }

    /// `vault operator raft snapshot restore`, the body streamed from `reader` as is (no local
    /// check: Vault refuses a body that is not a snapshot, and that error is returned). Sent to
    /// the active node, as every restore is (see [the module docs](self#restores)).
    ///
    /// Data written after the snapshot is lost; tokens from snapshot time are valid again.
    /// The leader stalls for a few seconds while it restores. See [`RestoreMode`] for
    /// snapshots of another cluster.
    pub async fn snapshot_restore_from_reader<R>(&self, reader: R, mode: RestoreMode) -> Result<()>
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        let progress = self.progress.clone();
        let stream = futures_util::stream::unfold(Some((reader, 0u64)), move |state| {
            let progress = progress.clone();
            async move {
                let (mut reader, done) = state?;
                let mut buf = vec![0u8; CHUNK];
                match reader.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        let done = done + n as u64;
                        if let Some(p) = &progress {
                            p.report(done, None);
                        }
                        Some((
                            Ok::<Bytes, std::io::Error>(Bytes::from(buf)),
                            Some((reader, done)),
                        ))
                    }
                    Err(e) => Some((Err(e), None)),
                }
            }
        });
        self.restore_body(reqwest::Body::wrap_stream(stream), None, mode)
            .await
    }

    /// `vault operator raft snapshot restore FILE`: checks first that the file is a complete
    /// raft snapshot archive (an [`Error::InvalidInput`] otherwise, and nothing is sent), then
    /// sends it to the active node with its length. Returns what the check found.
    ///
    /// The bytes sent are the bytes checked: they are hashed on the way, and when the file
    /// changed in the meantime its end is not sent (the upload breaks off with an error), so
    /// Vault never receives a whole body that was not checked.
    pub async fn snapshot_restore_from_file(
        &self,
        path: impl AsRef<Path>,
        mode: RestoreMode,
    ) -> Result<SnapshotInfo> {
        let path = path.as_ref();
        let info = verify_snapshot_file(path).await?;
        self.restore_checked_file(path, &info, mode).await?;
        Ok(info)
    }

    /// Restores the file at `path`, already checked to hold `info` (see
    /// [`snapshot_restore_from_file`](Self::snapshot_restore_from_file)).
    pub(crate) async fn restore_checked_file(
        &self,
        path: &Path,
        info: &SnapshotInfo,
        mode: RestoreMode,
    ) -> Result<()> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let len = file
            .metadata()
            .await
            .map_err(|e| Error::io(format!("reading the size of {}", path.display()), e))?
            .len();
        if len != info.bytes {
            return Err(Error::InvalidInput(format!(
                "{} changed after it was checked ({} bytes then, {len} now); nothing was sent",
                path.display(),
                info.bytes
            )));
        }
        let body =
            checked_file_stream(file, info.bytes, info.sha256.clone(), self.progress.clone());
        self.restore_body(reqwest::Body::wrap_stream(body), Some(len), mode)
            .await
    }

    /// Sends a restore body (of `len` bytes, when known) to the active node.
    async fn restore_body(
        &self,
        body: reqwest::Body,
        len: Option<u64>,
        mode: RestoreMode,
    ) -> Result<()> {
        let path = match mode {
            RestoreMode::Normal => SNAPSHOT_PATH,
            RestoreMode::Force => SNAPSHOT_FORCE_PATH,
        };
        let active = self.active_node(path).await?;
        // A redirect is an answer here (a streamed body cannot follow it): reported below
        // with where it pointed.
        let mut req = Request::post(path)
            .no_retry()
            .accept_statuses(&[301, 302, 303, 307, 308]);
        if let Some(len) = len {
            req = req.header(CONTENT_LENGTH, HeaderValue::from(len));
        }
        let result = self
            .client
            .execute_streaming(req, Some(body), self.timeout, Some(active))
            .await;
        match result {
            Ok(resp) if resp.status().is_redirection() => Err(redirect_error(path, &resp)),
            Ok(_) => Ok(()),
            Err(Error::Api(e)) if mode == RestoreMode::Normal && is_foreign_snapshot(&e) => {
                let mut e = *e;
                e.errors.push(FOREIGN_SNAPSHOT_HINT.into());
                Err(Error::Api(Box::new(e)))
            }
            Err(e) => Err(e),
        }
    }

    /// The index of the configured address of the active node, which a restore must reach:
    /// OpenBao 2.7.2 applies a restore sent to a standby on that standby, where it fails
    /// ("node is not the leader"), seals the standby and still answers 204.
    ///
    /// Asks the node in use (`sys/leader`): the active node is the configured address that
    /// its `leader_address` names, or the node in use when it is the active node itself (or
    /// has no HA). Otherwise nothing is sent: the error names the active node, which the
    /// token must not go to unless it is configured.
    async fn active_node(&self, path: &str) -> Result<usize> {
        let leader = self.client.sys().leader().await?;
        if let Some(index) = configured_index(self.client, &leader.leader_address) {
            return Ok(index);
        }
        if leader.is_self || !leader.ha_enabled {
            return Ok(self.client.current_index());
        }
        let message = if leader.leader_address.trim().is_empty() {
            format!(
                "the node in use ({}) is a standby and knows no active node; a snapshot \
                 restore must go to the active node (a standby seals itself), so nothing was \
                 sent",
                self.client.current_address()
            )
        } else {
            format!(
                "the node in use ({}) is a standby, and the active node, {}, is not one of the \
                 configured addresses (the token would go along); a snapshot restore must go \
                 to the active node (a standby seals itself), so nothing was sent: list every \
                 node with ClientBuilder::addresses or restore through the active node",
                self.client.current_address(),
                shown(&leader.leader_address)
            )
        };
        Err(Error::Transport {
            method: "POST".into(),
            path: path.into(),
            message,
            tls: false,
        })
    }

    fn body_error(&self, method: &str, path: &str, e: &reqwest::Error) -> Error {
        if e.is_timeout() {
            return Error::Timeout {
                method: method.into(),
                path: path.into(),
                timeout: self.timeout.unwrap_or_else(|| self.client.timeout()),
            };
        }
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        Error::Transport {
            method: method.into(),
            path: path.into(),
            message: format!("the snapshot download broke off: {message}"),
            tls: false,
        }
    }
}

const FOREIGN_SNAPSHOT_HINT: &str = "this snapshot was taken on a cluster with other unseal keys \
    (another cluster, or this one before it was re-initialised); to restore it anyway use \
    RestoreMode::Force (`vault operator raft snapshot restore -force`): every node then seals \
    and must be unsealed with the keys of the cluster the snapshot came from";

fn is_foreign_snapshot(e: &ApiError) -> bool {
    e.status == 400
        && e.errors
            .iter()
            .any(|m| m.contains("could not verify hash file"))
}

impl Error {
    /// `true` when Vault refused a snapshot restore because the snapshot comes from a cluster
    /// with other unseal keys (HTTP 400 "could not verify hash file"); see
    /// [`RestoreMode::Force`].
    pub fn is_snapshot_from_another_cluster(&self) -> bool {
        self.api().is_some_and(is_foreign_snapshot)
    }
}

/// The index of the configured address with the same scheme, host and port as `address`
/// (an address a server named, e.g. `leader_address`).
fn configured_index(client: &VaultClient, address: &str) -> Option<usize> {
    let origin = |u: &url::Url| {
        (
            u.scheme().to_ascii_lowercase(),
            u.host_str().map(str::to_ascii_lowercase),
            u.port_or_known_default(),
        )
    };
    let wanted = origin(&url::Url::parse(address.trim()).ok()?);
    client
        .addresses()
        .iter()
        .position(|a| url::Url::parse(a).is_ok_and(|u| origin(&u) == wanted))
}

/// A value a server sent, for an error message: at most 200 characters, no control
/// characters.
fn shown(value: &str) -> String {
    let mut s: String = value
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    if value.chars().count() > 200 {
        s.push_str("...");
    }
    s
}

/// The error for a restore answered with a redirect: the status, and where it pointed.
fn redirect_error(path: &str, resp: &reqwest::Response) -> Error {
    let target = resp
        .headers()
        .get(LOCATION)
        .map(|v| crate::http::redirect_target(&String::from_utf8_lossy(v.as_bytes())))
        .filter(|t| !t.is_empty());
    let shown = target
        .clone()
        .unwrap_or_else(|| "nowhere (no Location header)".into());
    Error::Api(Box::new(ApiError {
        status: resp.status().as_u16(),
        method: "POST".into(),
        path: path.into(),
        errors: vec![format!(
            "Vault redirected the snapshot restore to {shown}, which was not followed (a \
             streamed body cannot be sent twice); send the restore to that node"
        )],
        warnings: Vec::new(),
        request_id: None,
        retry_after: None,
        location: target,
    }))
}

/// The body of a restore from a checked file: exactly `len` bytes, hashed on the way. The
/// last chunk is held back until the hash is known and replaced by an error when the bytes
/// are not the ones checked, so a file that changed after the check never reaches Vault whole
/// (its `Content-Length` says `len`, so a body that breaks off is incomplete to Vault).
fn checked_file_stream(
    file: tokio::fs::File,
    len: u64,
    sha256: String,
    progress: Option<OnProgress>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    struct State {
        file: tokio::fs::File,
        left: u64,
        sha: Sha256,
        expected: String,
        progress: Option<OnProgress>,
        len: u64,
    }
    let state = State {
        file,
        len,
        left: len,
        sha: Sha256::new(),
        expected: sha256,
        progress,
    };
    futures_util::stream::unfold(Some(state), |state| async move {
        let mut st = state?;
        if st.left == 0 {
            return None;
        }
        let want = usize::try_from(st.left).map_or(CHUNK, |left| left.min(CHUNK));
        let mut buf = vec![0u8; want];
        let mut filled = 0;
        while filled < want {
            match st.file.read(&mut buf[filled..]).await {
                Ok(0) => {
                    let e = std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the snapshot file became shorter after it was checked",
                    );
                    return Some((Err(e), None));
                }
                Ok(n) => filled += n,
                Err(e) => return Some((Err(e), None)),
            }
        }
        st.sha.update(&buf);
        st.left -= want as u64;
        if let Some(p) = &st.progress {
            p.report(st.len - st.left, Some(st.len));
        }
        if st.left == 0 && hex(&st.sha.finalize_reset()) != st.expected {
            let e = std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the snapshot file changed after it was checked; its end was not sent",
            );
            return Some((Err(e), None));
        }
        Some((Ok(Bytes::from(buf)), Some(st)))
    })
}

/// Checks that the file at `path` is a complete raft snapshot archive (see
/// [`SnapshotVerifier`]), reading it in chunks. A file that is not is an
/// [`Error::InvalidInput`] naming the path and what is wrong.
pub async fn verify_snapshot_file(path: impl AsRef<Path>) -> Result<SnapshotInfo> {
    let path = path.as_ref();
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    verify_snapshot_reader(file).await.map_err(|e| match e {
        Error::InvalidInput(m) => Error::InvalidInput(format!("{}: {m}", path.display())),
        Error::Io { context, source } => Error::Io {
            context: format!("{context} {}", path.display()),
            source,
        },
        other => other,
    })
}

/// Checks that what `reader` yields is a complete raft snapshot archive (see
/// [`SnapshotVerifier`]). A stream that is not is an [`Error::InvalidInput`].
pub async fn verify_snapshot_reader<R: AsyncRead + Unpin>(mut reader: R) -> Result<SnapshotInfo> {
    let mut verifier = SnapshotVerifier::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = reader
            .read(&mut buf)
            .await
            .map_err(|e| Error::io("reading the snapshot", e))?;
        if n == 0 {
            break;
        }
        verifier.update(&buf[..n]);
    }
    verifier
        .finish()
        .map_err(|m| Error::InvalidInput(format!("not a complete raft snapshot archive: {m}")))
}

/// Checks a raft snapshot as its bytes go by, without keeping it: gunzips it (the gzip
/// trailer's CRC and length must match, so a cut-off download fails), walks the tar headers
/// (checksums included), requires `meta.json`, `state.bin` and `SHA256SUMS`, checks the
/// SHA-256 of every entry listed in `SHA256SUMS`, and reads the raft index and term from
/// `meta.json`. Also hashes the whole archive.
///
/// What it keeps is bounded whatever it is fed: an archive with an entry name twice, more
/// than 64 entries, or a `meta.json` or `SHA256SUMS` over 64 KiB is refused (a raft snapshot
/// has four entries, the two text files a few hundred bytes), and nothing more is
/// decompressed once the archive is known to be bad.
pub struct SnapshotVerifier {
    gz: GzDecoder<TarWalker>,
    archive_sha: Sha256,
    bytes: u64,
    error: Option<String>,
}

impl fmt::Debug for SnapshotVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotVerifier")
            .field("bytes", &self.bytes)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl Default for SnapshotVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl SnapshotVerifier {
    /// A verifier that has seen nothing yet.
    pub fn new() -> Self {
        SnapshotVerifier {
            gz: GzDecoder::new(TarWalker::default()),
            archive_sha: Sha256::new(),
            bytes: 0,
            error: None,
        }
    }

    /// Feeds the next chunk of the archive.
    pub fn update(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        self.archive_sha.update(chunk);
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.gz.write_all(chunk) {
            self.error = Some(match e.kind() {
                std::io::ErrorKind::WriteZero => "data after the end of the gzip stream".into(),
                _ => e.to_string(),
            });
        }
        // Once the tar walk failed, decompressing the rest is wasted work.
        if let Some(e) = &self.gz.get_ref().error {
            self.error = Some(e.clone());
        }
    }

    /// The number of bytes fed so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Finishes the check: what the archive holds, or why it is not a complete snapshot.
    pub fn finish(mut self) -> std::result::Result<SnapshotInfo, String> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if self.bytes == 0 {
            return Err("it is empty".into());
        }
        if let Err(e) = self.gz.try_finish() {
            return Err(match e.kind() {
                std::io::ErrorKind::InvalidInput | std::io::ErrorKind::UnexpectedEof => {
                    format!("the gzip stream is cut short or corrupt ({e})")
                }
                _ => e.to_string(),
            });
        }
        let sha256 = hex(&self.archive_sha.finalize());
        let walker = self.gz.get_ref();
        let (index, term) = walker.finish()?;
        Ok(SnapshotInfo {
            bytes: self.bytes,
            sha256,
            index,
            term,
            files: walker.files_seen.clone(),
        })
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// Entries whose content the walker keeps (small text files).
const KEPT: [&str; 2] = ["meta.json", "SHA256SUMS"];
/// The largest such entry accepted: a snapshot's `meta.json` is a few hundred bytes, its
/// `SHA256SUMS` a few lines. A larger one is refused, so what is kept stays below 128 KiB.
const KEPT_MAX: u64 = 64 * 1024;
/// The most tar entries (headers) accepted: a raft snapshot has four. Every regular entry's
/// name and hash are kept, so this bounds them.
const MAX_ENTRIES: usize = 64;
const BLOCK: usize = 512;

/// Walks a tar stream written to it: headers, entry data (hashed), padding, end blocks.
#[derive(Default)]
struct TarWalker {
    header: Vec<u8>,
    /// The entry being read: name, bytes left, padding left after it.
    current: Option<Entry>,
    padding: u64,
    zero_blocks: u32,
    ended: bool,
    entries: Vec<(String, String)>,
    kept: BTreeMap<String, Vec<u8>>,
    /// The names of the regular entries, in order (at most [`MAX_ENTRIES`], no duplicates).
    files_seen: Vec<String>,
    /// Every header walked, regular entries or not.
    headers_seen: usize,
    error: Option<String>,
}

struct Entry {
    name: String,
    left: u64,
    sha: Option<Sha256>,
    keep: bool,
}

impl TarWalker {
    fn header_block(&mut self) -> std::result::Result<(), String> {
        let h = std::mem::take(&mut self.header);
        if h.iter().all(|&b| b == 0) {
            self.zero_blocks += 1;
            if self.zero_blocks >= 2 {
                self.ended = true;
            }
            return Ok(());
        }
        if self.zero_blocks > 0 {
            return Err("a tar header after an end-of-archive block".into());
        }
        let stored = parse_octal(&h[148..156]).ok_or("a tar header with an unreadable checksum")?;
        let computed: u64 = h
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(b)
                }
            })
            .sum();
        if stored != computed {
            return Err("a tar header whose checksum does not match (not a tar archive?)".into());
        }
        let size = parse_octal(&h[124..136]).ok_or("a tar header with an unreadable size")?;
        let mut name = cstr(&h[0..100]);
        if &h[257..262] == b"ustar" {
            let prefix = cstr(&h[345..500]);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        self.headers_seen += 1;
        if self.headers_seen > MAX_ENTRIES {
            return Err(format!(
                "the archive has more than {MAX_ENTRIES} entries (a raft snapshot has 4)"
            ));
        }
        let typeflag = h[156];
        let regular = typeflag == b'0' || typeflag == 0;
        let name = name.trim_start_matches("./").to_string();
        if regular {
            // Which copy would Vault use? Refused rather than guessed (and never kept twice).
            if self.files_seen.contains(&name) {
                return Err(format!("the archive holds {name} more than once"));
            }
            self.files_seen.push(name.clone());
        }
        let keep = regular && KEPT.contains(&name.as_str());
        if keep && size > KEPT_MAX {
            return Err(format!(
                "its {name} is {size} bytes, larger than the {KEPT_MAX} bytes a raft snapshot's \
                 {name} can be"
            ));
        }
        self.padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        self.current = Some(Entry {
            name,
            left: size,
            sha: regular.then(Sha256::new),
            keep,
        });
        if size == 0 {
            self.end_entry();
        }
        Ok(())
    }

    fn end_entry(&mut self) {
        if let Some(entry) = self.current.take() {
            if let Some(sha) = entry.sha {
                self.entries.push((entry.name, hex(&sha.finalize())));
            }
        }
    }

    fn feed(&mut self, mut buf: &[u8]) -> std::result::Result<(), String> {
        while !buf.is_empty() {
            if self.ended {
                // Trailing zero padding up to the record size is allowed; nothing else.
                if buf.iter().any(|&b| b != 0) {
                    return Err("data after the end of the tar archive".into());
                }
                return Ok(());
            }
            if let Some(entry) = self.current.as_mut() {
                let n = usize::try_from(entry.left)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                let (data, rest) = buf.split_at(n);
                if let Some(sha) = entry.sha.as_mut() {
                    sha.update(data);
                }
                if entry.keep {
                    self.kept
                        .entry(entry.name.clone())
                        .or_default()
                        .extend_from_slice(data);
                }
                entry.left -= n as u64;
                buf = rest;
                if entry.left == 0 {
                    self.end_entry();
                }
                continue;
            }
            if self.padding > 0 {
                let n = usize::try_from(self.padding)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                self.padding -= n as u64;
                buf = &buf[n..];
                continue;
            }
            let n = (BLOCK - self.header.len()).min(buf.len());
            self.header.extend_from_slice(&buf[..n]);
            buf = &buf[n..];
            if self.header.len() == BLOCK {
                self.header_block()?;
            }
        }
        Ok(())
    }

    /// Checks the walked archive; returns `(index, term)` from `meta.json`.
    fn finish(&self) -> std::result::Result<(u64, u64), String> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.current.is_some() || self.padding > 0 || !self.header.is_empty() {
            return Err("the tar archive ends in the middle of an entry".into());
        }
        for required in ["meta.json", "state.bin", "SHA256SUMS"] {
            if !self.files_seen.iter().any(|f| f == required) {
                return Err(format!(
                    "it has no {required} (entries: {})",
                    self.files_seen.join(", ")
                ));
            }
        }
        let sums = self
            .kept
            .get("SHA256SUMS")
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        let mut checked = 0;
        for line in sums.lines().filter(|l| !l.trim().is_empty()) {
            let mut parts = line.split_whitespace();
            let (Some(sum), Some(file)) = (parts.next(), parts.next()) else {
                return Err("SHA256SUMS has a malformed line".into());
            };
            let file = file.trim_start_matches('*');
            match self.entries.iter().find(|(name, _)| name == file) {
                Some((_, actual)) if actual.eq_ignore_ascii_case(sum) => checked += 1,
                Some(_) => return Err(format!("the SHA-256 of {file} does not match SHA256SUMS")),
                None => {
                    return Err(format!(
                        "SHA256SUMS lists {file}, which is not in the archive"
                    ))
                }
            }
        }
        for required in ["meta.json", "state.bin"] {
            if !sums
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some(required))
            {
                return Err(format!("SHA256SUMS does not list {required}"));
            }
        }
        if checked == 0 {
            return Err("SHA256SUMS is empty".into());
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Meta {
            #[serde(default)]
            index: u64,
            #[serde(default)]
            term: u64,
        }
        let meta: Meta = self
            .kept
            .get("meta.json")
            .and_then(|b| serde_json::from_slice(b).ok())
            .ok_or("meta.json is not the JSON of a raft snapshot")?;
        Ok((meta.index, meta.term))
    }
}

impl std::io::Write for TarWalker {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.error.is_none() {
            if let Err(e) = self.feed(buf) {
                self.error = Some(e);
            }
        }
        // Keep accepting (so gzip keeps checking its trailer); the error is reported at the end.
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    // GNU base-256 for large sizes: high bit set on the first byte.
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let text = cstr(field);
    let text = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::String(s)) => s,
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::VaultResponse;

    /// A minimal tar.gz with the given entries, built by hand (ustar headers).
    pub(crate) fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut tar = Vec::new();
        for (name, data) in entries {
            let mut h = [0u8; 512];
            h[..name.len()].copy_from_slice(name.as_bytes());
            h[100..107].copy_from_slice(b"0000600");
            h[108..115].copy_from_slice(b"0000000");
            h[116..123].copy_from_slice(b"0000000");
            let size = format!("{:011o}", data.len());
            h[124..135].copy_from_slice(size.as_bytes());
            h[136..147].copy_from_slice(b"00000000000");
            h[156] = b'0';
            h[257..263].copy_from_slice(b"ustar\0");
            h[263..265].copy_from_slice(b"00");
            h[148..156].copy_from_slice(b"        ");
            let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
            h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
            tar.extend_from_slice(&h);
            tar.extend_from_slice(data);
            let pad = (512 - data.len() % 512) % 512;
            tar.resize(tar.len() + pad, 0);
        }
        tar.extend([0u8; 1024]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    }

    fn sha(data: &[u8]) -> String {
        hex(&Sha256::digest(data))
    }

    fn good_snapshot() -> Vec<u8> {
        let meta = br#"{"Version":1,"ID":"bolt-snapshot","Index":29,"Term":3,"Size":5}"#;
        let state = b"state";
        let sums = format!("{}  meta.json\n{}  state.bin\n", sha(meta), sha(state));
        tar_gz(&[
            ("meta.json", meta),
            ("state.bin", state),
            ("SHA256SUMS", sums.as_bytes()),
            ("SHA256SUMS.sealed", b"sealed"),
        ])
    }

    fn check(data: &[u8], chunk: usize) -> std::result::Result<SnapshotInfo, String> {
        let mut v = SnapshotVerifier::new();
        for c in data.chunks(chunk.max(1)) {
            v.update(c);
        }
        v.finish()
    }

    #[test]
    fn accepts_a_complete_snapshot_in_any_chunking() {
        let data = good_snapshot();
        for chunk in [1, 7, 511, 512, 513, 4096, data.len()] {
            let info = check(&data, chunk).unwrap();
            assert_eq!(info.index, 29);
            assert_eq!(info.term, 3);
            assert_eq!(info.bytes, data.len() as u64);
            assert_eq!(info.sha256, sha(&data));
            assert_eq!(
                info.files,
                vec!["meta.json", "state.bin", "SHA256SUMS", "SHA256SUMS.sealed"]
            );
        }
    }

    #[test]
    fn refuses_truncated_corrupt_and_incomplete_archives() {
        let data = good_snapshot();
        for cut in [0, 5, 10, data.len() / 2, data.len() - 8, data.len() - 1] {
            let e = check(&data[..cut], 100).unwrap_err();
            assert!(!e.is_empty(), "cut at {cut}");
        }
        assert!(check(b"garbage that is not gzip at all", 8)
            .unwrap_err()
            .contains("gzip"));
        let mut trailing = data.clone();
        trailing.extend_from_slice(b"xx");
        assert!(check(&trailing, 64).is_err());

        // Missing state.bin.
        let meta = br#"{"Index":1,"Term":1}"#;
        let sums = format!("{}  meta.json\n", sha(meta));
        let e = check(
            &tar_gz(&[("meta.json", meta), ("SHA256SUMS", sums.as_bytes())]),
            64,
        )
        .unwrap_err();
        assert!(e.contains("state.bin"), "{e}");

        // A state.bin whose hash does not match.
        let sums = format!("{}  meta.json\n{}  state.bin\n", sha(meta), sha(b"other"));
        let e = check(
            &tar_gz(&[
                ("meta.json", meta),
                ("state.bin", b"state"),
                ("SHA256SUMS", sums.as_bytes()),
            ]),
            64,
        )
        .unwrap_err();
        assert!(e.contains("does not match"), "{e}");

        // A gzip of something that is not tar.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&[7u8; 2000]).unwrap();
        let e = check(&gz.finish().unwrap(), 64).unwrap_err();
        assert!(e.contains("checksum"), "{e}");
    }

    #[test]
    fn keeps_little_whatever_the_archive_holds() {
        let good = good_snapshot();
        assert!(check(&good, 4096).is_ok());
        let meta = br#"{"Index":1,"Term":1}"#;
        let sums = format!("{}  meta.json\n{}  state.bin\n", sha(meta), sha(b"s"));
        let base = [
            ("meta.json", &meta[..]),
            ("state.bin", &b"s"[..]),
            ("SHA256SUMS", sums.as_bytes()),
        ];

        // Any entry twice, also after a complete snapshot: refused, naming it.
        for dup in ["meta.json", "state.bin", "SHA256SUMS", "other"] {
            let mut entries = base.to_vec();
            entries.push((dup, b"x"));
            entries.push((dup, b"y"));
            let e = check(&tar_gz(&entries), 512).unwrap_err();
            assert!(e.contains(dup) && e.contains("more than once"), "{e}");
        }

        // meta.json or SHA256SUMS over the cap: refused before any of it is kept.
        let big = vec![b' '; KEPT_MAX as usize + 1];
        for name in ["meta.json", "SHA256SUMS"] {
            let entries: Vec<(&str, &[u8])> = base
                .iter()
                .map(|&(n, d)| if n == name { (n, &big[..]) } else { (n, d) })
                .collect();
            let e = check(&tar_gz(&entries), 4096).unwrap_err();
            assert!(e.contains(name) && e.contains("larger than"), "{e}");
        }
        // At the cap it is read (and then found not to be JSON).
        let at_cap = vec![b' '; KEPT_MAX as usize];
        let e = check(
            &tar_gz(&[("state.bin", b"s"), ("meta.json", &at_cap[..])]),
            4096,
        )
        .unwrap_err();
        assert!(!e.contains("larger than"), "{e}");

        // More entries than a snapshot could have.
        let names: Vec<String> = (0..=MAX_ENTRIES).map(|i| format!("f{i}")).collect();
        let many: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
        let e = check(&tar_gz(&many), 4096).unwrap_err();
        assert!(e.contains("more than 64 entries"), "{e}");
        let names: Vec<String> = (0..MAX_ENTRIES - 3).map(|i| format!("f{i}")).collect();
        let mut entries = base.to_vec();
        entries.extend(names.iter().map(|n| (n.as_str(), &b"x"[..])));
        assert_eq!(
            check(&tar_gz(&entries), 4096).unwrap().files.len(),
            MAX_ENTRIES
        );
    }

    /// The stream of `data` from a file through `checked_file_stream`, checked against `sha`.
    async fn stream_file(data: &[u8], len: u64, sha: String) -> Vec<std::io::Result<Bytes>> {
        use futures_util::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, data).unwrap();
        let file = tokio::fs::File::open(&path).await.unwrap();
        checked_file_stream(file, len, sha, None).collect().await
    }

    #[tokio::test]
    async fn a_restore_stream_reports_progress_per_chunk() {
        use futures_util::StreamExt;
        use std::sync::Mutex;
        let data: Vec<u8> = (0..2 * CHUNK + 7).map(|i| (i % 251) as u8).collect();
        let len = data.len() as u64;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, &data).unwrap();
        let file = tokio::fs::File::open(&path).await.unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let hook = OnProgress::new(move |p| log.lock().unwrap().push(p));
        let items: Vec<_> = checked_file_stream(file, len, sha(&data), Some(hook))
            .collect()
            .await;
        assert!(items.iter().all(Result::is_ok));
        let seen = seen.lock().unwrap().clone();
        let bytes: Vec<u64> = seen.iter().map(|p| p.bytes).collect();
        assert_eq!(bytes, vec![CHUNK as u64, 2 * CHUNK as u64, len]);
        assert!(seen.iter().all(|p| p.total == Some(len)));
    }

    #[tokio::test]
    async fn a_checked_file_is_sent_only_as_it_was_checked() {
        let data: Vec<u8> = (0..3 * CHUNK + 100).map(|i| (i % 251) as u8).collect();
        let len = data.len() as u64;
        let sent = |items: &[std::io::Result<Bytes>]| -> Vec<u8> {
            items
                .iter()
                .filter_map(|r| r.as_ref().ok())
                .flat_map(|b| b.to_vec())
                .collect()
        };

        let items = stream_file(&data, len, sha(&data)).await;
        assert!(items.iter().all(Result::is_ok));
        assert_eq!(sent(&items), data);

        // Changed after the check: everything but the last chunk, then an error.
        let mut changed = data.clone();
        changed[10] ^= 1;
        let items = stream_file(&changed, len, sha(&data)).await;
        let last = items.last().unwrap().as_ref().unwrap_err();
        assert!(last.to_string().contains("changed"), "{last}");
        assert!(sent(&items).len() < data.len());

        // Shorter than checked: an error, never a short body that looks complete.
        let items = stream_file(&data[..CHUNK], len, sha(&data)).await;
        assert!(items.last().unwrap().is_err());
        // Longer than checked: only the checked length is sent.
        let mut longer = data.clone();
        longer.extend_from_slice(b"appended");
        let items = stream_file(&longer, len, sha(&data)).await;
        assert_eq!(sent(&items), data);
    }

    #[test]
    fn server_values_in_messages_are_bounded() {
        assert_eq!(shown("http://a:8200"), "http://a:8200");
        let long = "x".repeat(1000);
        assert_eq!(shown(&long).len(), 203);
        assert_eq!(shown("a\nb\u{1b}[31mc"), "ab[31mc");
    }

    #[test]
    fn join_request_debug_redacts_the_key() {
        let r = JoinRequest::new("http://a:8200").client_cert(
            "CERT",
            SecretString::from("-----BEGIN PRIVATE KEY----- s3cr3t"),
        );
        let d = format!("{r:?}");
        assert!(!d.contains("s3cr3t"), "{d}");
        assert!(d.contains("[REDACTED]"));
    }

    #[test]
    fn peers_decode() {
        let body = br#"{"data":{"config":{"servers":[{"node_id":"node1","address":"127.0.0.1:8201","leader":true,"protocol_version":"3","voter":true},{"node_id":"node2","address":"x","leader":false,"protocol_version":3,"voter":false}],"index":0}}}"#;
        #[derive(Deserialize)]
        struct Data {
            config: RaftConfiguration,
        }
        let c = serde_json::from_slice::<VaultResponse<Data>>(body)
            .unwrap()
            .data
            .config;
        assert_eq!(c.servers.len(), 2);
        assert_eq!(c.leader().unwrap().node_id, "node1");
        assert_eq!(c.servers[1].protocol_version, "3");
        assert_eq!(c.voters(), 1);
    }
}
