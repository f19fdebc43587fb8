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
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderValue, CONTENT_LENGTH, LOCATION};
use secrecy::ExposeSecret;
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
use crate::secret::PrivateKey;
use crate::snapshot::{hex, CHUNK};
pub use crate::snapshot::{
    verify_snapshot_file, verify_snapshot_reader, SnapshotInfo, SnapshotVerifier,
};

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

// Hand-written: a closure has no `Debug`.
impl std::fmt::Debug for OnProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnProgress").finish_non_exhaustive()
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
/// Derives `Debug`: the client key is a [`PrivateKey`], which never shows; the certificates
/// are public.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JoinRequest {
    /// The API address of a node of the cluster to join, e.g. `https://vault-0.vault-internal:8200`.
    pub leader_api_addr: String,
    /// PEM CA certificate to verify the leader's TLS certificate.
    pub leader_ca_cert: Option<String>,
    /// PEM client certificate for TLS client authentication to the leader.
    pub leader_client_cert: Option<String>,
    /// PEM private key of the client certificate.
    pub leader_client_key: Option<PrivateKey>,
    /// Keep retrying the join in the background until it succeeds.
    pub retry: bool,
    /// Join as a permanent non-voter.
    pub non_voter: bool,
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
    pub fn client_cert(
        mut self,
        cert_pem: impl Into<String>,
        key_pem: impl Into<PrivateKey>,
    ) -> Self {
        self.leader_client_cert = Some(cert_pem.into());
        self.leader_client_key = Some(key_pem.into());
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

    fn sha(data: &[u8]) -> String {
        hex(&Sha256::digest(data))
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
            crate::SecretString::from("-----BEGIN PRIVATE KEY----- s3cr3t"),
        );
        let d = format!("{r:?} {r:#?}");
        assert!(!d.contains("s3cr3t"), "{d}");
        assert!(d.contains("PrivateKey([REDACTED])"), "{d}");
        assert!(d.contains("CERT"), "{d}");
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
