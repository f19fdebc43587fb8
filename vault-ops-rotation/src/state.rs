//! The rotation state record: one KV v2 secret per rotated credential, fenced by check-and-set.
//!
//! Every rotated credential has two KV v2 paths:
//!
//! - **`C`, the credential** that consumers read (e.g. `secret/database/main-db`). The rotation
//!   writes it exactly once per rotation (the new credential, with check-and-set against the
//!   version the rotation started from) and never for bookkeeping.
//! - **`S`, the state record** (e.g. `secret/rotation-state/database/main-db`), which consumers
//!   need not be able to read. It holds a [`RotationState`]: the phase (idle, or a pending
//!   rotation with its owner, lease and pending secret), the epoch, when the credential was
//!   last rotated and is next due, the last error and a bounded history.
//!
//! Both paths have `cas_required`. Every write to `S` is a check-and-set against the version
//! last read, so **the version of `S` is the fencing token**: whoever holds a [`Claim`] at
//! version `v` can write only while nobody else has written `S` since. Two replicas that both
//! try to claim the same idle record race on one CAS write: exactly one wins, the other gets
//! [`StateError::Fenced`] (or [`StateError::Held`] once it re-reads). No lock service is needed.
//!
//! ## Time comes from Vault
//!
//! No local clock decides anything:
//!
//! - A version's `created_time` is Vault's clock at the write. The rotation's time
//!   (`last_rotated_at`) is the `created_time` of the credential version it committed.
//! - The lease of a pending rotation runs from the `created_time` of the version of `S` that
//!   holds it: every write of `S` by the owner ([`StateStore::advance`]) renews it, so
//!   [`Snapshot::lease_expires_at`] is `created_time + lease` and cannot drift.
//! - "Now" is Vault's `Date` reply header of the read ([`Snapshot::vault_now`], one-second
//!   resolution, rounded down — so a due time or a lease expiry is never seen early). Only if
//!   the header is missing (or is not an HTTP date) does the local clock stand in.
//!
//! ## Lost replies
//!
//! Every write of `S` carries a random `write_id`. When a write fails in a way that leaves its
//! fate unknown (a connection error, a timeout, or a CAS mismatch after the client retried a
//! write that had in fact landed), the store re-reads `S`: if the version is the expected one
//! and carries our `write_id`, the write happened. Never a guess.
//!
//! ## Records are input, not truth
//!
//! Anyone with write access to `S` can write any record, so [`StateStore::load`] reports one it
//! cannot decode, or one a store cannot have written (a timestamp that does not parse, a
//! pending epoch that is not the record's, no `write_id`), as [`StateError::Corrupt`] — never
//! as "never rotated". Durations read from `S` are clamped ([`MAX_LEASE`], [`MAX_PERIOD`]) and
//! times computed from them saturate ([`vault_time::later`]). The rotators check the pending
//! payload against their configuration before acting on it (see their module docs).
//!
//! ## Generic payload
//!
//! The pending rotation carries a payload `P` chosen by the rotator (for databases: the role and
//! the pending password; for API keys: the pending key and the issue request). It is stored in
//! Vault, so it must serialize its secrets in clear: use [`secret_serde`] on `SecretString`
//! fields, the one place where they are exposed. `P`'s `Debug` must redact them (a
//! `SecretString` does).
//!
//! ```no_run
//! # async fn run(client: vault_ops_core::VaultClient) -> Result<(), vault_ops_rotation::state::StateError> {
//! use std::time::Duration;
//! use vault_ops_rotation::state::{ClaimOptions, Close, Step, StateStore};
//! use vault_ops_core::SecretString;
//!
//! #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
//! struct Key {
//!     #[serde(with = "vault_ops_rotation::state::secret_serde")]
//!     key: SecretString,
//! }
//!
//! let store = StateStore::new(client, "secret", "rotation-state/api-keys");
//! let opts = ClaimOptions::new("replica-1", Duration::from_secs(120));
//! let snapshot = store.load::<Key>("stripe").await?;
//! if snapshot.is_due(Duration::from_secs(30 * 86400)) {
//!     let mut claim = store
//!         .claim(&snapshot, &opts, 7, Key { key: SecretString::from("sk_new".to_string()) })
//!         .await?;
//!     // ... apply the new key, then:
//!     store.advance(&mut claim, Step::Applied).await?;
//!     // ... commit the credential path with CAS against version 7, getting version 8 at `created`:
//!     # let created = String::new();
//!     store.close(claim, Close::rotated(8, created)).await?;
//! }
//! # Ok(()) }
//! ```

use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use vault_ops_core::api::kv2::{MetadataUpdate, VersionMetadata};
use vault_ops_core::http::join_path;
use vault_ops_core::{Request, VaultClient, VaultResponse};

/// How many history entries [`RotationState::history`] keeps by default.
pub const DEFAULT_HISTORY_LIMIT: usize = 20;

/// How many versions of `S` Vault keeps by default (they are the audit trail of the protocol).
pub const DEFAULT_STATE_MAX_VERSIONS: u64 = 20;

/// The longest lease a claim records, and the longest one read from `S` is taken for: a
/// larger value (a tampered record) counts as this long.
pub const MAX_LEASE: Duration = Duration::from_secs(24 * 60 * 60);

/// The longest rotation period recorded in `S` ([`RotationState::period_ms`]); a larger value
/// read from `S` counts as this long.
pub const MAX_PERIOD: Duration = Duration::from_secs(100 * 366 * 24 * 60 * 60);

/// `serde(with = ...)` for a secret that must be stored in Vault: the one place a pending
/// secret is exposed for serialization. Works for every secret kind of `vault_ops_core`
/// ([`Password`](vault_ops_core::Password), [`ApiKey`](vault_ops_core::ApiKey), ...) and for a
/// plain `SecretString`.
pub mod secret_serde {
    use secrecy::ExposeSecret;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes the secret's text.
    pub fn serialize<T, S>(secret: &T, s: S) -> Result<S::Ok, S::Error>
    where
        T: ExposeSecret<str>,
        S: Serializer,
    {
        s.serialize_str(secret.expose_secret())
    }

    /// Deserializes a string into the secret kind `T`.
    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: From<String>,
        D: Deserializer<'de>,
    {
        String::deserialize(d).map(T::from)
    }
}

/// `serde(with = ...)` for an optional secret stored in Vault (`null` or absent: `None`); the
/// same kinds as [`secret_serde`].
pub mod opt_secret_serde {
    use secrecy::ExposeSecret;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes the secret's text, or `null`.
    pub fn serialize<T, S>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error>
    where
        T: ExposeSecret<str>,
        S: Serializer,
    {
        match v {
            Some(secret) => s.serialize_some(secret.expose_secret()),
            None => s.serialize_none(),
        }
    }

    /// Deserializes an optional string into an optional secret of kind `T`.
    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: From<String>,
        D: Deserializer<'de>,
    {
        Ok(Option::<String>::deserialize(d)?.map(T::from))
    }
}

/// `<prefix>/<name>` (just `name` with an empty prefix), `name` without surrounding slashes:
/// how every rotator maps a name to its paths in a KV mount.
pub(crate) fn join_name(prefix: &str, name: &str) -> String {
    let name = name.trim_matches('/');
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

/// `true` when a failed KV write may have landed all the same (a lost reply, or a retry of a
/// write that had landed and now fails its check-and-set): read back before deciding.
pub(crate) fn outcome_unknown(e: &vault_ops_core::Error) -> bool {
    e.is_cas_mismatch() || e.is_transport() || e.status().is_some_and(|s| s >= 500)
}

/// The state of one rotated credential, as stored at `S`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(serialize = "P: Serialize", deserialize = "P: DeserializeOwned"))]
#[non_exhaustive]
pub struct RotationState<P> {
    /// Idle, or a rotation in progress.
    #[serde(default = "Phase::idle")]
    pub phase: Phase<P>,
    /// The number of the latest rotation attempt (incremented by every [`StateStore::claim`]).
    #[serde(default)]
    pub epoch: u64,
    /// How many rotations succeeded.
    #[serde(default)]
    pub rotations: u64,
    /// The credential's KV version written by the last successful rotation.
    #[serde(default)]
    pub credential_version: Option<u64>,
    /// When the last successful rotation committed (Vault's `created_time` of that credential
    /// version, RFC 3339).
    #[serde(default)]
    pub last_rotated_at: Option<String>,
    /// The rotation period last used by a scheduled run ([`Close::every`]), in milliseconds.
    #[serde(default)]
    pub period_ms: Option<u64>,
    /// `last_rotated_at + period` (RFC 3339), when both are known.
    #[serde(default)]
    pub next_due_at: Option<String>,
    /// The last failure or conflict, cleared by a successful rotation.
    #[serde(default)]
    pub last_error: Option<String>,
    /// The latest outcomes, oldest first, at most [`DEFAULT_HISTORY_LIMIT`] by default.
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
    /// A random id of the write that produced this version (see the module docs).
    #[serde(default)]
    pub write_id: String,
    /// Scheduled attempts that failed in a row, over all replicas
    /// ([`StateStore::record_failed_attempt`]); reset by a rotation and by
    /// [`StateStore::resume`].
    #[serde(default)]
    pub failed_attempts: u32,
    /// Set when the scheduler stopped trying after its policy's maximum of failed attempts
    /// (Vault's "orphaned"): no scheduler rotates the credential until
    /// [`StateStore::resume`] or a successful rotation clears it.
    #[serde(default)]
    pub held: Option<HeldState>,
}

/// Why and since when a credential is held (see [`RotationState::held`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HeldState {
    /// When it was held (RFC 3339, Vault's clock).
    pub since: String,
    /// The failed attempts in a row that led to it.
    pub attempts: u32,
    /// The last error (never a secret).
    pub last_error: String,
    /// The replica that held it.
    pub owner: String,
}

impl<P> Default for RotationState<P> {
    fn default() -> Self {
        RotationState {
            phase: Phase::Idle,
            epoch: 0,
            rotations: 0,
            credential_version: None,
            last_rotated_at: None,
            period_ms: None,
            next_due_at: None,
            last_error: None,
            history: Vec::new(),
            write_id: String::new(),
            failed_attempts: 0,
            held: None,
        }
    }
}

impl<P> RotationState<P> {
    /// The pending rotation, if any.
    pub fn pending(&self) -> Option<&Pending<P>> {
        match &self.phase {
            Phase::Pending(p) => Some(p),
            Phase::Idle => None,
        }
    }

    /// `last_rotated_at` parsed.
    pub fn last_rotated_time(&self) -> Option<SystemTime> {
        self.last_rotated_at
            .as_deref()
            .and_then(vault_time::parse_rfc3339)
    }

    /// `next_due_at` parsed.
    pub fn next_due_time(&self) -> Option<SystemTime> {
        self.next_due_at
            .as_deref()
            .and_then(vault_time::parse_rfc3339)
    }

    /// When the credential is next due: `last_rotated_at + every` with a period, else the
    /// recorded `next_due_at`.
    pub fn due_time(&self, every: Option<Duration>) -> Option<SystemTime> {
        match every {
            Some(every) => self
                .last_rotated_time()
                .map(|t| vault_time::later(t, every)),
            None => self.next_due_time(),
        }
    }

    /// The recorded period ([`period_ms`](Self::period_ms)), at most [`MAX_PERIOD`].
    pub fn period(&self) -> Option<Duration> {
        self.period_ms
            .map(|ms| Duration::from_millis(ms).min(MAX_PERIOD))
    }

    /// Why this record cannot be what a [`StateStore`] wrote, if it cannot: a timestamp that
    /// does not parse (read as "never rotated", it would make a run rotate), a pending epoch
    /// that is not the record's, no `write_id`. Never quotes a value.
    fn defect(&self) -> Option<String> {
        if self.write_id.is_empty() {
            return Some(
                "it has no write_id (it was not written by a rotation state store)".into(),
            );
        }
        for (field, value) in [
            ("last_rotated_at", &self.last_rotated_at),
            ("next_due_at", &self.next_due_at),
        ] {
            if value
                .as_deref()
                .is_some_and(|v| vault_time::parse_rfc3339(v).is_none())
            {
                return Some(format!("its {field} is not an RFC 3339 time"));
            }
        }
        match self.pending() {
            Some(p) if p.epoch != self.epoch => Some(format!(
                "its pending epoch {} is not the record's epoch {}",
                p.epoch, self.epoch
            )),
            _ => None,
        }
    }
}

/// The phase of a [`RotationState`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[serde(bound(serialize = "P: Serialize", deserialize = "P: DeserializeOwned"))]
pub enum Phase<P> {
    /// No rotation in progress.
    Idle,
    /// A rotation was claimed and has not been closed.
    Pending(Pending<P>),
}

impl<P> Phase<P> {
    fn idle() -> Self {
        Phase::Idle
    }
}

impl<P> Pending<P> {
    /// The recorded lease, at most [`MAX_LEASE`].
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms).min(MAX_LEASE)
    }
}

/// A rotation in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(serialize = "P: Serialize", deserialize = "P: DeserializeOwned"))]
#[non_exhaustive]
pub struct Pending<P> {
    /// The rotation attempt's number.
    pub epoch: u64,
    /// Who holds it (a replica id, see [`ClaimOptions`]).
    pub owner: String,
    /// How long the lease runs after each write of `S`, in milliseconds (read as at most
    /// [`MAX_LEASE`], see [`lease`](Self::lease)).
    pub lease_ms: u64,
    /// The last step recorded.
    pub step: Step,
    /// The credential's KV version this rotation started from (0: it did not exist). The
    /// commit is a check-and-set against it.
    pub base_version: u64,
    /// How many times another run took the rotation over ([`StateStore::take_over`]).
    #[serde(default)]
    pub takeovers: u32,
    /// Set when the rotation hit something it must not resolve alone (an out-of-band change,
    /// a concurrent edit of the credential): runs report a conflict until this is cleared.
    #[serde(default)]
    pub conflict: Option<String>,
    /// The rotator's pending data (e.g. the pending password).
    pub payload: P,
}

/// The steps a pending rotation records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Claimed: the pending secret is recorded, nothing applied yet.
    Claimed,
    /// The new secret was (or may have been) applied to the target system.
    Applied,
    /// The new secret was verified against the target system.
    Verified,
    /// The credential path was written with the new secret.
    Committed,
    /// A rollback of the target system to the credential's secret is under way.
    RollingBack,
}

/// What a history entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryOutcome {
    /// The credential was rotated.
    Rotated,
    /// Verification failed and the target was restored to the credential's secret.
    RolledBack,
    /// The run failed; nothing was committed.
    Failed,
    /// A conflict that needs a human was found.
    Conflict,
    /// A conflict was found resolved (the credential works again) and the pending rotation
    /// was dropped.
    Resolved,
    /// The pending rotation was abandoned (nothing was applied).
    Abandoned,
}

/// One entry of [`RotationState::history`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HistoryEntry {
    /// The rotation attempt.
    pub epoch: u64,
    /// What happened.
    pub outcome: HistoryOutcome,
    /// When (RFC 3339, Vault's clock: the newest `created_time` the run knew when it wrote).
    pub at: String,
    /// Who wrote it.
    pub owner: String,
    /// The credential version after it (for `rotated`: the new one).
    #[serde(default)]
    pub credential_version: Option<u64>,
    /// Details (an error message, never a secret).
    #[serde(default)]
    pub detail: Option<String>,
}

/// Why a state operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Another run holds a live lease on this rotation.
    #[error("rotation state {name}: epoch {epoch} is held by {owner} until {lease_expires_at}")]
    Held {
        /// The credential's name.
        name: String,
        /// The holder.
        owner: String,
        /// Its rotation attempt.
        epoch: u64,
        /// When its lease expires (RFC 3339, Vault's clock).
        lease_expires_at: String,
    },
    /// `S` changed since it was read: someone else wrote it (the CAS fencing check failed).
    #[error("rotation state {name} changed since version {expected_version} was read (another run wrote it)")]
    Fenced {
        /// The credential's name.
        name: String,
        /// The version this run expected.
        expected_version: u64,
    },
    /// A new claim was attempted while a rotation is pending (take it over instead).
    #[error("rotation state {name}: epoch {epoch} is still pending; take it over to finish it")]
    Unfinished {
        /// The credential's name.
        name: String,
        /// The pending attempt.
        epoch: u64,
    },
    /// A takeover was attempted while no rotation is pending.
    #[error("rotation state {name}: nothing is pending")]
    NotPending {
        /// The credential's name.
        name: String,
    },
    /// The record at `S` cannot be decoded, or cannot have been written by a
    /// [`StateStore`] (a timestamp that does not parse, an inconsistent epoch, no
    /// `write_id`). Nothing is done with it: a human must look (fix or delete it).
    #[error("rotation state {name} at version {version} cannot be decoded: {message}")]
    Corrupt {
        /// The credential's name.
        name: String,
        /// The version read.
        version: u64,
        /// serde's message or the field that is wrong (never the record's content).
        message: String,
    },
    /// Vault failed or refused.
    #[error("rotation state: {0}")]
    Vault(#[from] vault_ops_core::Error),
}

impl StateError {
    /// `true` when another run holds the rotation or won the race for it: this run should
    /// stand back (not an error of the credential).
    pub fn is_contended(&self) -> bool {
        matches!(self, StateError::Held { .. } | StateError::Fenced { .. })
    }

    /// The Vault error, when this is one.
    pub fn vault(&self) -> Option<&vault_ops_core::Error> {
        match self {
            StateError::Vault(e) => Some(e),
            _ => None,
        }
    }
}

/// Who claims, and for how long.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClaimOptions {
    /// The replica's id, recorded as the owner. A run with the same id may take over its own
    /// pending rotation at once (a restarted process with a stable id); others wait for the
    /// lease to expire.
    pub owner: String,
    /// How long a claim stays valid after each write of `S` (at most [`MAX_LEASE`]; a longer
    /// lease is recorded as `MAX_LEASE`).
    pub lease: Duration,
}

impl ClaimOptions {
    /// Options with this owner and lease.
    pub fn new(owner: impl Into<String>, lease: Duration) -> Self {
        ClaimOptions {
            owner: owner.into(),
            lease,
        }
    }
}

/// A random owner id: `<hostname or "host">-<pid>-<8 hex digits>`.
pub fn default_owner() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "host".to_string());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// `S` as read: the record, its version (the fencing token) and Vault's clock.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Snapshot<P> {
    /// The credential's name.
    pub name: String,
    /// The version of `S` read (0: `S` does not exist yet).
    pub version: u64,
    /// The record (the default idle record when `S` does not exist or its latest version is
    /// deleted).
    pub state: RotationState<P>,
    /// `created_time` of this version (RFC 3339), empty when `S` does not exist.
    pub created_time: String,
    /// Vault's clock at the read (its `Date` header), when it sent one.
    pub vault_now: Option<SystemTime>,
}

impl<P> Snapshot<P> {
    /// What [`StateStore::load`] returns for a record that does not exist: version 0, the
    /// idle default record, Vault's clock `vault_now`.
    pub(crate) fn absent(name: &str, vault_now: Option<SystemTime>) -> Self {
        Snapshot {
            name: name.to_string(),
            version: 0,
            state: RotationState::default(),
            created_time: String::new(),
            vault_now,
        }
    }

    /// The pending rotation, if any.
    pub fn pending(&self) -> Option<&Pending<P>> {
        self.state.pending()
    }

    /// `true` when no rotation is pending.
    pub fn is_idle(&self) -> bool {
        self.pending().is_none()
    }

    /// Vault's clock at the read; the local clock only when Vault sent no `Date` header.
    pub fn now(&self) -> SystemTime {
        self.vault_now.unwrap_or_else(SystemTime::now)
    }

    /// When the pending rotation's lease expires: this version's `created_time` + the lease.
    pub fn lease_expires_at(&self) -> Option<SystemTime> {
        let pending = self.pending()?;
        let written = vault_time::parse_rfc3339(&self.created_time)?;
        Some(vault_time::later(written, pending.lease()))
    }

    /// `true` when a rotation is pending and its lease has expired by Vault's clock (a record
    /// without a readable `created_time` counts as expired).
    pub fn lease_expired(&self) -> bool {
        match (self.pending(), self.lease_expires_at()) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(_), Some(at)) => self.now() >= at,
        }
    }

    /// `true` when `owner` may take the pending rotation over now: it is its own, or the
    /// lease expired.
    pub fn can_take_over(&self, owner: &str) -> bool {
        match self.pending() {
            None => false,
            Some(p) => p.owner == owner || self.lease_expired(),
        }
    }

    /// When the credential is due with this period: `last_rotated_at + every`; `None` when it
    /// was never rotated (due now).
    pub fn due_at(&self, every: Duration) -> Option<SystemTime> {
        self.state.due_time(Some(every))
    }

    /// When a run should look at this record again: the lease expiry while a rotation is
    /// pending; else the due time with the period `every`, or the recorded `next_due_at`
    /// without one.
    pub fn next_check_at(&self, every: Option<Duration>) -> Option<SystemTime> {
        match self.pending() {
            Some(_) => self.lease_expires_at(),
            None => self.state.due_time(every),
        }
    }

    /// `true` when the credential is due with this period by Vault's clock (never rotated:
    /// due).
    pub fn is_due(&self, every: Duration) -> bool {
        match self.due_at(every) {
            None => true,
            Some(at) => self.now() >= at,
        }
    }
}

/// A claimed rotation: the pending record and the version of `S` that fences it.
///
/// Obtained from [`StateStore::claim`] or [`StateStore::take_over`]; every later write goes
/// through [`StateStore::advance`], [`StateStore::save`], [`StateStore::mark_conflict`] or
/// [`StateStore::close`], each a check-and-set against [`Claim::version`].
///
/// After one of those fails, the write may still have landed unseen (when even the re-read
/// failed): do not keep writing with the same claim; stop, and let the next run
/// [`load`](StateStore::load) and [`take_over`](StateStore::take_over) (the same owner may do so at
/// once).
#[derive(Debug)]
pub struct Claim<P> {
    name: String,
    version: u64,
    created_time: String,
    resumed: bool,
    state: RotationState<P>,
    pending: Pending<P>,
}

impl<P> Claim<P> {
    /// The credential's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version of `S` this claim wrote last (the fencing token).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// `created_time` of that version (Vault's clock at the last write).
    pub fn created_time(&self) -> &str {
        &self.created_time
    }

    /// `true` when this claim took over an unfinished rotation.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// The pending rotation.
    pub fn pending(&self) -> &Pending<P> {
        &self.pending
    }

    /// The pending rotation, to change before [`StateStore::save`].
    pub fn pending_mut(&mut self) -> &mut Pending<P> {
        &mut self.pending
    }

    /// The pending payload.
    pub fn payload(&self) -> &P {
        &self.pending.payload
    }

    /// The rest of the record (its `phase` is not meaningful while claimed).
    pub fn state(&self) -> &RotationState<P> {
        &self.state
    }
}

/// How [`StateStore::close`] ends a rotation.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Close {
    /// The history outcome.
    pub outcome: HistoryOutcome,
    /// For `rotated`: the credential version written.
    pub credential_version: Option<u64>,
    /// For `rotated`: that version's `created_time`, which becomes `last_rotated_at`.
    pub rotated_at: Option<String>,
    /// The rotation period, to record `next_due_at` (kept from the record when `None`).
    pub every: Option<Duration>,
    /// An error message for the history and `last_error` (never a secret).
    pub detail: Option<String>,
}

impl Close {
    /// A successful rotation that wrote credential version `version` at `created_time`.
    pub fn rotated(version: u64, created_time: impl Into<String>) -> Self {
        Close {
            outcome: HistoryOutcome::Rotated,
            credential_version: Some(version),
            rotated_at: Some(created_time.into()),
            every: None,
            detail: None,
        }
    }

    /// Any other outcome, with a message.
    pub fn with_outcome(outcome: HistoryOutcome, detail: impl Into<String>) -> Self {
        Close {
            outcome,
            credential_version: None,
            rotated_at: None,
            every: None,
            detail: Some(detail.into()),
        }
    }

    /// Records the rotation period (for `next_due_at`).
    pub fn every(mut self, every: Option<Duration>) -> Self {
        self.every = every;
        self
    }

    /// Records the credential version the outcome leaves in place.
    pub fn credential_version(mut self, version: Option<u64>) -> Self {
        self.credential_version = version;
        self
    }
}

/// What [`StateStore::close`] wrote.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Closed<P> {
    /// The new version of `S`.
    pub version: u64,
    /// Its `created_time`.
    pub created_time: String,
    /// The record as written.
    pub state: RotationState<P>,
}

/// Reads and writes rotation state records under `<mount>/<prefix>/<name>`.
#[derive(Debug, Clone)]
pub struct StateStore {
    client: VaultClient,
    mount: String,
    prefix: String,
    history_limit: usize,
    max_versions: u64,
}

#[derive(Deserialize)]
struct ReadData {
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    metadata: Option<VersionMetadata>,
}

impl StateStore {
    /// A store for records at `<mount>/<prefix>/<name>` on the KV v2 mount `mount`.
    pub fn new(client: VaultClient, mount: impl Into<String>, prefix: impl Into<String>) -> Self {
        StateStore {
            client,
            mount: mount.into().trim_matches('/').to_string(),
            prefix: prefix.into().trim_matches('/').to_string(),
            history_limit: DEFAULT_HISTORY_LIMIT,
            max_versions: DEFAULT_STATE_MAX_VERSIONS,
        }
    }

    /// Keeps at most `limit` history entries (at least 1).
    pub fn history_limit(mut self, limit: usize) -> Self {
        self.history_limit = limit.max(1);
        self
    }

    /// How many versions of `S` Vault keeps (set when `S` is created; at least 2).
    pub fn max_versions(mut self, n: u64) -> Self {
        self.max_versions = n.max(2);
        self
    }

    /// The KV mount.
    pub fn mount(&self) -> &str {
        &self.mount
    }

    /// The client.
    pub fn client(&self) -> &VaultClient {
        &self.client
    }

    /// The path of `name`'s record inside the mount.
    pub fn path(&self, name: &str) -> String {
        join_name(&self.prefix, name)
    }

    /// Reads `name`'s record. A missing `S` is the default idle record at version 0.
    pub async fn load<P: DeserializeOwned>(&self, name: &str) -> Result<Snapshot<P>, StateError> {
        let path = self.path(name);
        if name.trim_matches('/').is_empty() {
            return Err(
                vault_ops_core::Error::InvalidInput("the credential name is empty".into()).into(),
            );
        }
        let req = Request::get(join_path(&[&self.mount, "data", &path])).accept_statuses(&[404]);
        let resp = self.client.execute(req).await?;
        let date = resp.header("date");
        let vault_now = date.and_then(vault_time::parse_http_date);
        if date.is_some() && vault_now.is_none() {
            tracing::warn!(
                name,
                "Vault's Date header is not an HTTP date; the local clock stands in"
            );
        }
        let body: Option<VaultResponse<ReadData>> = if resp.status() == 404 {
            // A deleted latest version answers 404 with its metadata; a missing secret with
            // `{"errors":[]}`.
            resp.json().ok()
        } else {
            Some(resp.json()?)
        };
        let (data, metadata) = match body {
            Some(b) => (b.data.data, b.data.metadata),
            None => (None, None),
        };
        let Some(metadata) = metadata else {
            return Ok(Snapshot::absent(name, vault_now));
        };
        let corrupt = |message: String| StateError::Corrupt {
            name: name.to_string(),
            version: metadata.version,
            message,
        };
        let state = match data {
            Some(v) if !v.is_null() => {
                let state: RotationState<P> =
                    serde_json::from_value(v).map_err(|e| corrupt(redact(&e.to_string())))?;
                if let Some(defect) = state.defect() {
                    return Err(corrupt(defect));
                }
                state
            }
            _ => {
                tracing::warn!(name, version = metadata.version, "the latest version of the rotation state is deleted; starting from an empty record");
                RotationState::default()
            }
        };
        Ok(Snapshot {
            name: name.to_string(),
            version: metadata.version,
            state,
            created_time: metadata.created_time,
            vault_now,
        })
    }

    /// Claims a new rotation: writes a pending record (epoch + 1, owner, lease, `base_version`
    /// of the credential, `payload`) with check-and-set against `snapshot.version`.
    ///
    /// Fails with [`StateError::Held`] when another run holds a live lease,
    /// [`StateError::Unfinished`] when a rotation is pending that this run may take over
    /// ([`take_over`](Self::take_over) it), and [`StateError::Fenced`] when `S` changed since the
    /// snapshot (another run won the race).
    pub async fn claim<P>(
        &self,
        snapshot: &Snapshot<P>,
        opts: &ClaimOptions,
        base_version: u64,
        payload: P,
    ) -> Result<Claim<P>, StateError>
    where
        P: Serialize + DeserializeOwned + Clone,
    {
        if let Some(p) = snapshot.pending() {
            return Err(if snapshot.can_take_over(&opts.owner) {
                StateError::Unfinished {
                    name: snapshot.name.clone(),
                    epoch: p.epoch,
                }
            } else {
                held(snapshot, p)
            });
        }
        let mut state = snapshot.state.clone();
        state.epoch = state
            .epoch
            .checked_add(1)
            .ok_or_else(|| StateError::Corrupt {
                name: snapshot.name.clone(),
                version: snapshot.version,
                message: "its epoch cannot be incremented".into(),
            })?;
        let pending = Pending {
            epoch: state.epoch,
            owner: opts.owner.clone(),
            lease_ms: duration_ms(opts.lease.min(MAX_LEASE)),
            step: Step::Claimed,
            base_version,
            takeovers: 0,
            conflict: None,
            payload,
        };
        if snapshot.version == 0 {
            self.ensure_metadata(&snapshot.name).await?;
        }
        let mut claim = Claim {
            name: snapshot.name.clone(),
            version: snapshot.version,
            created_time: snapshot.created_time.clone(),
            resumed: false,
            state,
            pending,
        };
        self.write_claim(&mut claim).await?;
        tracing::info!(name = %claim.name, epoch = claim.pending.epoch, owner = %claim.pending.owner, version = claim.version, "rotation claimed");
        Ok(claim)
    }

    /// Takes over the pending rotation in `snapshot` (own, or with an expired lease), keeping
    /// its epoch and payload: a CAS write that makes `opts.owner` the owner and renews the lease.
    ///
    /// Fails with [`StateError::NotPending`], [`StateError::Held`] (a live lease of another
    /// owner) or [`StateError::Fenced`].
    pub async fn take_over<P>(
        &self,
        snapshot: &Snapshot<P>,
        opts: &ClaimOptions,
    ) -> Result<Claim<P>, StateError>
    where
        P: Serialize + DeserializeOwned + Clone,
    {
        let Some(p) = snapshot.pending() else {
            return Err(StateError::NotPending {
                name: snapshot.name.clone(),
            });
        };
        if !snapshot.can_take_over(&opts.owner) {
            return Err(held(snapshot, p));
        }
        let mut pending = p.clone();
        if pending.owner != opts.owner {
            pending.takeovers = pending.takeovers.saturating_add(1);
        }
        pending.owner = opts.owner.clone();
        pending.lease_ms = duration_ms(opts.lease.min(MAX_LEASE));
        let mut claim = Claim {
            name: snapshot.name.clone(),
            version: snapshot.version,
            created_time: snapshot.created_time.clone(),
            resumed: true,
            state: snapshot.state.clone(),
            pending,
        };
        self.write_claim(&mut claim).await?;
        tracing::info!(name = %claim.name, epoch = claim.pending.epoch, owner = %claim.pending.owner, step = ?claim.pending.step, "pending rotation taken over");
        Ok(claim)
    }

    /// Records `step` (and renews the lease) with check-and-set.
    pub async fn advance<P: Serialize + DeserializeOwned>(
        &self,
        claim: &mut Claim<P>,
        step: Step,
    ) -> Result<(), StateError> {
        claim.pending.step = step;
        self.write_claim(claim).await
    }

    /// Writes the claim as it is (after changing [`Claim::pending_mut`]), renewing the lease.
    pub async fn save<P: Serialize + DeserializeOwned>(
        &self,
        claim: &mut Claim<P>,
    ) -> Result<(), StateError> {
        self.write_claim(claim).await
    }

    /// Marks the pending rotation as in conflict: it stays pending (its payload may be what
    /// the target system now holds) and `last_error` and the history say why. Later runs
    /// report the conflict until it is resolved.
    pub async fn mark_conflict<P: Serialize + DeserializeOwned>(
        &self,
        claim: &mut Claim<P>,
        reason: impl Into<String>,
    ) -> Result<(), StateError> {
        let reason = reason.into();
        let at = claim.created_time.clone();
        let entry = HistoryEntry {
            epoch: claim.pending.epoch,
            outcome: HistoryOutcome::Conflict,
            at,
            owner: claim.pending.owner.clone(),
            credential_version: claim.state.credential_version,
            detail: Some(reason.clone()),
        };
        let first = claim.pending.conflict.is_none();
        claim.pending.conflict = Some(reason.clone());
        claim.state.last_error = Some(reason);
        if first {
            push_history(&mut claim.state.history, entry, self.history_limit);
        }
        self.write_claim(claim).await
    }

    /// Ends the rotation: writes the idle record with the outcome in the history (and, for a
    /// rotation, `last_rotated_at`, `credential_version` and `next_due_at`), with
    /// check-and-set.
    pub async fn close<P: Serialize + DeserializeOwned + Clone>(
        &self,
        claim: Claim<P>,
        close: Close,
    ) -> Result<Closed<P>, StateError> {
        let Claim {
            name,
            version,
            created_time,
            mut state,
            pending,
            ..
        } = claim;
        let at = close.rotated_at.clone().unwrap_or(created_time);
        apply_close(
            &mut state,
            &close,
            pending.epoch,
            &pending.owner,
            at,
            self.history_limit,
        );
        state.phase = Phase::Idle;
        let (version, created_time) = self.cas_write(&name, &mut state, version).await?;
        tracing::info!(name = %name, epoch = pending.epoch, outcome = ?close.outcome, version, "rotation closed");
        Ok(Closed {
            version,
            created_time,
            state,
        })
    }

    /// Records an outcome on the record in `snapshot` without claiming (e.g. a conflict found
    /// before anything was claimed), with check-and-set. The phase is kept.
    pub async fn note<P: Serialize + DeserializeOwned + Clone>(
        &self,
        snapshot: &Snapshot<P>,
        owner: &str,
        close: Close,
    ) -> Result<Closed<P>, StateError> {
        let mut state = snapshot.state.clone();
        let at = close
            .rotated_at
            .clone()
            .or_else(|| snapshot.vault_now.map(vault_time::format_rfc3339))
            .unwrap_or_else(|| snapshot.created_time.clone());
        let epoch = state.epoch;
        apply_close(&mut state, &close, epoch, owner, at, self.history_limit);
        if snapshot.version == 0 {
            self.ensure_metadata(&snapshot.name).await?;
        }
        let (version, created_time) = self
            .cas_write(&snapshot.name, &mut state, snapshot.version)
            .await?;
        Ok(Closed {
            version,
            created_time,
            state,
        })
    }

    /// Records a conflict found before anything was claimed ([`note`](Self::note) with the
    /// outcome `conflict`), once: `Ok(None)` without writing when the last history entry
    /// already reports the same.
    pub async fn note_conflict<P: Serialize + DeserializeOwned + Clone>(
        &self,
        snapshot: &Snapshot<P>,
        owner: &str,
        detail: impl Into<String>,
    ) -> Result<Option<Closed<P>>, StateError> {
        let detail = detail.into();
        let repeated = snapshot.state.history.last().is_some_and(|h| {
            h.outcome == HistoryOutcome::Conflict && h.detail.as_deref() == Some(detail.as_str())
        });
        if repeated {
            return Ok(None);
        }
        self.note(
            snapshot,
            owner,
            Close::with_outcome(HistoryOutcome::Conflict, detail),
        )
        .await
        .map(Some)
    }

    /// Counts one failed scheduled attempt of `name` in its record (check-and-set, retried a
    /// few times when another replica wrote in between) with `error` as `last_error`, and
    /// holds the credential once `max_attempts` failures in a row are counted. Nothing is
    /// written while a rotation is pending (its owner's fencing token must stay valid) or when
    /// the credential is already held. Returns the record as it stands.
    pub async fn record_failed_attempt(
        &self,
        name: &str,
        owner: &str,
        error: &str,
        max_attempts: u32,
    ) -> Result<RotationState<Value>, StateError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let snapshot = self.load::<Value>(name).await?;
            let mut state = snapshot.state;
            if !matches!(state.phase, Phase::Idle) || state.held.is_some() {
                return Ok(state);
            }
            state.failed_attempts = state.failed_attempts.saturating_add(1);
            state.last_error = Some(error.to_string());
            if state.failed_attempts >= max_attempts.max(1) {
                let since = snapshot
                    .vault_now
                    .map(vault_time::format_rfc3339)
                    .unwrap_or_else(|| snapshot.created_time.clone());
                state.held = Some(HeldState {
                    since,
                    attempts: state.failed_attempts,
                    last_error: error.to_string(),
                    owner: owner.to_string(),
                });
            }
            if snapshot.version == 0 {
                self.ensure_metadata(name).await?;
            }
            match self.cas_write(name, &mut state, snapshot.version).await {
                Ok(_) => {
                    if state.held.is_some() {
                        tracing::error!(name, attempts = state.failed_attempts, "rotation held after its maximum of failed attempts: a human must resume it");
                    }
                    return Ok(state);
                }
                Err(StateError::Fenced { .. }) if tries < 5 => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Clears a hold (and the count of failed attempts) with check-and-set, so schedulers try
    /// again. `Ok(false)` when `name` was not held.
    pub async fn resume(&self, name: &str) -> Result<bool, StateError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let snapshot = self.load::<Value>(name).await?;
            let mut state = snapshot.state;
            if state.held.is_none() && state.failed_attempts == 0 {
                return Ok(false);
            }
            let was_held = state.held.take().is_some();
            state.failed_attempts = 0;
            match self.cas_write(name, &mut state, snapshot.version).await {
                Ok(_) => {
                    tracing::info!(name, "rotation resumed");
                    return Ok(was_held);
                }
                Err(StateError::Fenced { .. }) if tries < 5 => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The prefix of the records inside the mount.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Lists the records directly in `folder` (a path below the prefix, `""` for the prefix
    /// itself) with KV v2 LIST, `page` keys a page (OpenBao's `limit` and `after`), and keeps
    /// the keys `wanted` accepts. (OpenBao 2.7 pays for the whole folder on every page: a page
    /// of 1,000 keys of a 20,000-key folder took as long as all 20,000, ~70 ms. So callers ask
    /// for large pages.)
    ///
    /// The reply is untrusted and only ever used to skip reads: keys longer than
    /// [`MAX_LISTED_KEY`], folders (`x/`) and keys `wanted` refuses are dropped, at most
    /// `max_keys` keys are looked at, and a page that does not go on from the last one (a key
    /// not after the previous page's last, as a server that ignores `after` would send) ends
    /// the listing. Any of these leaves the listing incomplete ([`Listing::complete`]):
    /// absent keys then prove nothing. A server that ignores `limit` (Vault) answers
    /// everything at once, which is complete. An empty or missing folder (a bare 404) is a
    /// complete, empty listing; a refused LIST (no `list` capability) is an error.
    pub(crate) async fn list_folder(
        &self,
        folder: &str,
        wanted: &(dyn Fn(&str) -> bool + Sync),
        page: usize,
        max_keys: usize,
    ) -> Result<Listing, StateError> {
        let page = page.clamp(1, MAX_LIST_PAGE);
        #[derive(Deserialize)]
        struct Keys {
            #[serde(default)]
            keys: Vec<String>,
        }
        let path = join_path(&[&self.mount, "metadata", &join_name(&self.prefix, folder)]);
        let mut listing = Listing::default();
        let mut after: Option<String> = None;
        let mut seen = 0usize;
        loop {
            let mut req = Request::list(format!("{path}/"))
                .query("limit", page.to_string())
                .accept_statuses(&[404]);
            if let Some(a) = &after {
                req = req.query("after", a);
            }
            let resp = self.client.execute(req).await?;
            listing.pages += 1;
            if listing.pages == 1 {
                listing.vault_now = resp.header("date").and_then(vault_time::parse_http_date);
            }
            if resp.status() == 404 {
                // `{"errors":[]}`: nothing there. A 404 with messages (an unknown mount) is not.
                let body: vault_ops_core::Result<ErrorsOnly> = resp.json();
                match body {
                    Ok(b) if b.errors.is_empty() => {
                        listing.complete = true;
                        return Ok(listing);
                    }
                    _ => {
                        return Err(resp
                            .decode_error("the LIST of the rotation state records failed")
                            .into())
                    }
                }
            }
            let keys = resp.json::<VaultResponse<Keys>>()?.data.keys;
            let n = keys.len();
            if let Some(a) = &after {
                if keys.iter().any(|k| k.as_str() <= a.as_str()) {
                    tracing::debug!(path = %path, "the LIST did not go on after the last page; reading each record instead");
                    return Ok(listing);
                }
            }
            let room = max_keys.saturating_sub(seen);
            for key in keys.iter().take(room) {
                if key.len() <= MAX_LISTED_KEY && !key.ends_with('/') && wanted(key) {
                    listing.keys.insert(key.clone());
                }
            }
            seen = seen.saturating_add(n);
            if seen > max_keys || (n == page && seen >= max_keys) {
                tracing::debug!(path = %path, keys = seen, "too many keys to list; reading each record instead");
                return Ok(listing);
            }
            if n != page {
                // The last page; or, from a server that ignores `limit` (Vault), every key at
                // once, which is complete only as the first page.
                listing.complete = n < page || after.is_none();
                return Ok(listing);
            }
            after = keys.into_iter().next_back();
        }
    }

    async fn ensure_metadata(&self, name: &str) -> Result<(), StateError> {
        let update = MetadataUpdate::new()
            .cas_required(true)
            .max_versions(self.max_versions);
        self.client
            .kv2(&self.mount)
            .write_metadata(&self.path(name), &update)
            .await?;
        Ok(())
    }

    async fn write_claim<P: Serialize + DeserializeOwned>(
        &self,
        claim: &mut Claim<P>,
    ) -> Result<(), StateError> {
        // Serialize the claim as a pending record without cloning the payload.
        let mut record =
            serde_json::to_value(&claim.state).map_err(|e| encode_error(&claim.name, e))?;
        let pending =
            serde_json::to_value(&claim.pending).map_err(|e| encode_error(&claim.name, e))?;
        if let (Value::Object(rec), Value::Object(p)) = (&mut record, pending) {
            let mut phase = p;
            phase.insert("state".into(), Value::String("pending".into()));
            rec.insert("phase".into(), Value::Object(phase));
        }
        let (version, created_time) = self
            .cas_write_value(&claim.name, record, claim.version)
            .await?;
        claim.version = version;
        claim.created_time = created_time;
        Ok(())
    }

    async fn cas_write<P: Serialize>(
        &self,
        name: &str,
        state: &mut RotationState<P>,
        expected: u64,
    ) -> Result<(u64, String), StateError> {
        let record = serde_json::to_value(&*state).map_err(|e| encode_error(name, e))?;
        let (version, created) = self.cas_write_value(name, record, expected).await?;
        Ok((version, created))
    }

    /// One CAS write of `record` (its `write_id` replaced by a fresh one); an ambiguous
    /// failure is resolved by re-reading `S`.
    async fn cas_write_value(
        &self,
        name: &str,
        mut record: Value,
        expected: u64,
    ) -> Result<(u64, String), StateError> {
        let write_id = format!("{:016x}", rand::random::<u64>());
        if let Value::Object(map) = &mut record {
            map.insert("write_id".into(), Value::String(write_id.clone()));
        }
        let path = self.path(name);
        let kv = self.client.kv2(&self.mount);
        match kv.put_cas(&path, &record, expected).await {
            Ok(meta) => Ok((meta.version, meta.created_time)),
            Err(e) if outcome_unknown(&e) => {
                // Did the write land (a lost reply, or a retry of a write that had landed)?
                match self.load::<Value>(name).await {
                    Ok(s)
                        if Some(s.version) == expected.checked_add(1)
                            && s.state.write_id == write_id =>
                    {
                        tracing::debug!(
                            name,
                            version = s.version,
                            "state write landed despite the error"
                        );
                        Ok((s.version, s.created_time))
                    }
                    Ok(_) if e.is_cas_mismatch() => Err(StateError::Fenced {
                        name: name.to_string(),
                        expected_version: expected,
                    }),
                    Ok(s) if s.version != expected => Err(StateError::Fenced {
                        name: name.to_string(),
                        expected_version: expected,
                    }),
                    // Unchanged: the write did not happen; report the original error.
                    _ => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The most keys a page of [`StateStore::list_folder`] asks for (~3 MB of reply with
/// 30-byte names, far below the client's default bound on a reply of 32 MiB).
pub(crate) const MAX_LIST_PAGE: usize = 100_000;

/// The longest listed key [`StateStore::list_folder`] looks at (longer ones are skipped).
pub(crate) const MAX_LISTED_KEY: usize = 512;

/// What [`StateStore::list_folder`] found.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// The keys found that the caller wanted.
    pub(crate) keys: std::collections::HashSet<String>,
    /// `true` when every key of the folder was seen: a wanted key that is not in
    /// [`keys`](Self::keys) has no record.
    pub(crate) complete: bool,
    /// LIST requests sent.
    pub(crate) pages: u32,
    /// Vault's clock at the first page (its `Date` header).
    pub(crate) vault_now: Option<SystemTime>,
}

#[derive(Deserialize)]
struct ErrorsOnly {
    #[serde(default)]
    errors: Vec<String>,
}

fn held<P>(snapshot: &Snapshot<P>, p: &Pending<P>) -> StateError {
    StateError::Held {
        name: snapshot.name.clone(),
        owner: p.owner.clone(),
        epoch: p.epoch,
        lease_expires_at: snapshot
            .lease_expires_at()
            .map(vault_time::format_rfc3339)
            .unwrap_or_else(|| "unknown".into()),
    }
}

fn apply_close<P>(
    state: &mut RotationState<P>,
    close: &Close,
    epoch: u64,
    owner: &str,
    at: String,
    limit: usize,
) {
    if let Some(every) = close.every {
        state.period_ms = Some(duration_ms(every.min(MAX_PERIOD)));
    }
    match close.outcome {
        HistoryOutcome::Rotated => {
            state.rotations = state.rotations.saturating_add(1);
            state.credential_version = close.credential_version.or(state.credential_version);
            state.last_rotated_at = close.rotated_at.clone().or(state.last_rotated_at.take());
            state.last_error = None;
            state.failed_attempts = 0;
            state.held = None;
        }
        HistoryOutcome::Resolved => {
            state.last_error = None;
        }
        _ => {
            if close.detail.is_some() {
                state.last_error = close.detail.clone();
            }
        }
    }
    state.next_due_at = match (state.last_rotated_time(), state.period()) {
        (Some(t), Some(period)) => Some(vault_time::format_rfc3339(vault_time::later(t, period))),
        _ => state.next_due_at.take(),
    };
    let entry = HistoryEntry {
        epoch,
        outcome: close.outcome,
        at,
        owner: owner.to_string(),
        credential_version: close.credential_version.or(state.credential_version),
        detail: close.detail.clone(),
    };
    push_history(&mut state.history, entry, limit);
}

fn push_history(history: &mut Vec<HistoryEntry>, entry: HistoryEntry, limit: usize) {
    history.push(entry);
    if history.len() > limit {
        let excess = history.len() - limit;
        history.drain(..excess);
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn encode_error(name: &str, e: serde_json::Error) -> StateError {
    StateError::Vault(vault_ops_core::Error::InvalidInput(format!(
        "rotation state {name}: cannot encode the record: {}",
        redact(&e.to_string())
    )))
}

/// serde messages quote values (`invalid type: string "..."`); drop quoted parts, which may be
/// secrets.
fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut in_quote = false;
    for c in message.chars() {
        match c {
            '"' | '`' => {
                if !in_quote {
                    out.push_str("\"…\"");
                }
                in_quote = !in_quote;
            }
            _ if in_quote => {}
            _ => out.push(c),
        }
    }
    out
}

/// Vault's timestamps, now in core: [`vault_ops_core::time`] (this path is kept for
/// existing users).
pub use vault_ops_core::time as vault_time;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Payload {
        #[serde(with = "secret_serde")]
        secret: secrecy::SecretString,
    }

    #[test]
    fn pending_record_round_trips_and_debug_redacts() {
        let state: RotationState<Payload> = RotationState {
            epoch: 3,
            phase: Phase::Pending(Pending {
                epoch: 3,
                owner: "r1".into(),
                lease_ms: 1000,
                step: Step::Applied,
                base_version: 2,
                takeovers: 0,
                conflict: None,
                payload: Payload {
                    secret: secrecy::SecretString::from("p4ss-w0rd-xyz".to_string()),
                },
            }),
            ..RotationState::default()
        };
        let v = serde_json::to_value(&state).unwrap();
        assert_eq!(v["phase"]["state"], "pending");
        assert_eq!(v["phase"]["payload"]["secret"], "p4ss-w0rd-xyz");
        let back: RotationState<Payload> = serde_json::from_value(v).unwrap();
        assert_eq!(back.pending().unwrap().step, Step::Applied);
        assert!(!format!("{back:?}").contains("p4ss-w0rd-xyz"));
        let idle: RotationState<Payload> = serde_json::from_value(serde_json::json!({})).unwrap();
        assert!(idle.pending().is_none());
    }

    /// A LIST server over `keys` (sorted) that honours `limit` and, when `honour_after`,
    /// `after`; it records nothing, wiremock does.
    struct Pager {
        keys: Vec<String>,
        honour_after: bool,
    }

    impl wiremock::Respond for Pager {
        fn respond(&self, req: &wiremock::Request) -> wiremock::ResponseTemplate {
            let param = |name: &str| {
                req.url
                    .query_pairs()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.into_owned())
            };
            let limit: usize = param("limit").and_then(|l| l.parse().ok()).unwrap_or(1);
            let after = param("after").filter(|_| self.honour_after);
            let keys: Vec<&String> = self
                .keys
                .iter()
                .filter(|k| after.as_ref().is_none_or(|a| *k > a))
                .take(limit)
                .collect();
            wiremock::ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"data": {"keys": keys}}))
        }
    }

    async fn list_with(
        server: &wiremock::MockServer,
        page: usize,
        max_keys: usize,
    ) -> (Result<Listing, StateError>, usize) {
        let client = VaultClient::builder()
            .address(server.uri())
            .token("t")
            .build()
            .expect("client");
        let store = StateStore::new(client, "secret", "state");
        let listed = store
            .list_folder("f", &|k| k.starts_with("want"), page, max_keys)
            .await;
        let requests = server.received_requests().await.unwrap_or_default().len();
        (listed, requests)
    }

    #[tokio::test]
    async fn list_folder_pages_and_stops_on_a_page_that_does_not_go_on() {
        use wiremock::matchers::{method, path};
        let mut keys: Vec<String> = (0..2_500).map(|i| format!("k{i:05}")).collect();
        keys.extend(["want-a", "want-b", "want-c/"].map(String::from));
        keys.sort();
        for (honour_after, requests, complete) in [(true, 3, true), (false, 2, false)] {
            let server = wiremock::MockServer::start().await;
            wiremock::Mock::given(method("GET"))
                .and(path("/v1/secret/metadata/state/f/"))
                .respond_with(Pager {
                    keys: keys.clone(),
                    honour_after,
                })
                .mount(&server)
                .await;
            let (listed, sent) = list_with(&server, 1_000, 100_000).await;
            let listing = listed.expect("listing");
            assert_eq!((sent, listing.complete), (requests, complete));
            assert_eq!(listing.pages as usize, requests);
            if complete {
                // The wanted keys (not the folder `want-c/`), from the last page.
                let mut got: Vec<&String> = listing.keys.iter().collect();
                got.sort();
                assert_eq!(got, ["want-a", "want-b"]);
            }
        }
        // The bound on keys looked at: two pages of 1,000, then incomplete.
        let server = wiremock::MockServer::start().await;
        wiremock::Mock::given(method("GET"))
            .respond_with(Pager {
                keys,
                honour_after: true,
            })
            .mount(&server)
            .await;
        let (listed, sent) = list_with(&server, 1_000, 2_000).await;
        assert!(!listed.expect("listing").complete);
        assert_eq!(sent, 2);
    }

    #[tokio::test]
    async fn list_folder_tells_an_empty_folder_from_a_refusal() {
        use wiremock::ResponseTemplate;
        for (status, body, ok) in [
            (404, r#"{"errors":[]}"#, true),
            (404, r#"{"errors":["no handler for route \"x\""]}"#, false),
            (403, r#"{"errors":["permission denied"]}"#, false),
            (200, r#"{"data":{"keys":"not a list"}}"#, false),
        ] {
            let server = wiremock::MockServer::start().await;
            wiremock::Mock::given(wiremock::matchers::any())
                .respond_with(ResponseTemplate::new(status).set_body_string(body))
                .mount(&server)
                .await;
            let (listed, _) = list_with(&server, 10, 10).await;
            match listed {
                Ok(l) => {
                    assert!(ok, "{status} {body}");
                    assert!(l.complete && l.keys.is_empty());
                }
                Err(e) => {
                    assert!(!ok, "{status} {body}: {e}");
                    if status == 403 {
                        assert!(e.to_string().contains("permission denied"), "{e}");
                    }
                }
            }
        }
    }

    #[test]
    fn redact_drops_quoted_values() {
        assert_eq!(
            redact("invalid type: string \"hunter2\", expected u64"),
            "invalid type: string \"…\", expected u64"
        );
    }
}
