//! [`ApiKeyRotator`]: rotates API keys kept in KV v2, either generating them (a random key from
//! the system's CSPRNG) or having a provider issue and revoke them ([`KeyIssuer`]).
//!
//! ```no_run
//! # async fn run(client: vault_ops_core::VaultClient) -> Result<(), Box<dyn std::error::Error>> {
//! use vault_ops_rotation::api_key::{Alphabet, ApiKeyOptions, ApiKeyRotator, KeyFormat};
//!
//! let rotator = ApiKeyRotator::new(client.clone()).with_options(
//!     ApiKeyOptions::new().format(KeyFormat::new(40, Alphabet::alphanumeric()).prefix("pk_live_")),
//! );
//! // A new version of secret/proxy/api-keys/stripe with a new `api_key` field:
//! let result = rotator.rotate_generic_api_key("proxy/api-keys/stripe").await;
//! assert!(result.is_success(), "{:?}", result.error);
//! println!("now at version {:?}", result.version_after);
//! # Ok(()) }
//! ```
//!
//! # Paths
//!
//! - **The credential `C`** is a KV v2 secret on [`ApiKeyOptions::mount`] (default `secret`).
//!   [`rotate_generic_api_key(path)`](ApiKeyRotator::rotate_generic_api_key) takes its path
//!   inside the mount. Through the [`Rotator`] trait (and so the scheduler), a **name** maps to
//!   `<key_prefix>/<name>`: with the default prefix `api-keys`, `rotate("stripe")` rotates
//!   `secret/api-keys/stripe`. Set [`ApiKeyOptions::key_prefix`] to `""` to use names as paths
//!   (`rotate("proxy/api-keys/stripe")`).
//! - **The state record `S`** of the shared rotation protocol ([`crate::state`]) lives at
//!   `<state_prefix>/<path of C>` (default [`DEFAULT_STATE_PREFIX`], so
//!   `secret/rotation-state/api-key/api-keys/stripe`): a prefix of its own, apart from the
//!   database rotator's `rotation-state/database`, so a policy can give each rotator its own
//!   `S` (see the crate docs' security notes). Consumers need no access to it. (Before this
//!   prefix was the default, `S` lived at `rotation-state/<path of C>`; set
//!   [`ApiKeyOptions::state_prefix`] to `rotation-state` to keep using those records.)
//! - **Keys waiting for revocation** (issuer mode only) are listed at
//!   `<state_prefix>/<path of C>.revocations` (so a credential path must not end with
//!   `.revocations`).
//!
//! # What a rotation writes
//!
//! Exactly one new version of `C`: the previous version's data with the key field
//! ([`ApiKeyOptions::field`], default `api_key`) replaced (and, with an issuer, the key id field
//! [`ApiKeyOptions::key_id_field`], default `key_id`); other fields are kept. The write is a
//! check-and-set against the version the rotation started from, so a concurrent edit is never
//! overwritten. `C` gets `cas_required` and an explicit `max_versions` of at least
//! [`ApiKeyOptions::min_versions`] (default 5, at least 2; a secret following the mount's
//! setting gets 10), so the previous key stays readable with
//! `vault kv get -version=N`. A secret that does not exist yet is created.
//!
//! # The protocol (generated keys)
//!
//! 1. Read `S` (idle, or a rotation left pending by a crashed run; Vault's clock from its `Date`).
//! 2. Read `C` and its metadata (base version `b`).
//! 3. **Claim** `S` with check-and-set: phase pending, owner, lease, `b`, and the new key. Of
//!    several replicas racing, exactly one wins; the others report
//!    [`SkippedNotDue`](crate::RotationStatus::SkippedNotDue).
//! 4. **Commit** `C` with check-and-set against `b`.
//! 5. **Close** `S`: idle, `last_rotated_at` = Vault's `created_time` of the new version,
//!    `next_due_at`.
//!
//! A crash after 3 leaves the pending key in `S`; the next run (after the lease, or at once with
//! the same [`owner`](ApiKeyOptions::owner)) finishes it with **that** key. A lost reply at 4 is
//! resolved by reading `C` back (is version `b + 1` our key?), never by guessing. If `C` moved
//! on to something that is not our key, the rotation is marked as a
//! [`Conflict`](crate::RotationStatus::Conflict) in `S` and nothing is overwritten; runs report the
//! conflict until [`ApiKeyRotator::resolve_conflict`] is called.
//!
//! **Requests per rotation** (generated key): 6 to Vault: read `S`, read `C`, claim `S`, read
//! `C`'s metadata, write `C`, close `S` (plus up to two metadata writes the first time). A run
//! that is not due costs 1 (read `S`). With an issuer: 10 to Vault (also: read the revocation
//! list, record the issued key in `S`, read and update the revocation list) and 1 `issue` call
//! to the provider; a run that is not due costs 2; a revocation that is due adds 3 Vault reads
//! (tying it to `C`, below), 2 writes and 1 `revoke` call; resuming a pending rotation adds 1
//! read (issuer mode: `C` at its base version).
//!
//! # Keys issued by a provider ([`KeyIssuer`])
//!
//! Register an issuer for a name with [`ApiKeyRotator::with_issuer`]. Then step 3 records a
//! random **idempotency key** in `S` *before* the provider is called; the provider is asked to
//! [`issue`](KeyIssuer::issue) with it, and the issued key is recorded in `S` before `C` is
//! written. A crash before or during the call is retried with the **same** idempotency key, so a
//! provider that de-duplicates on it (as Stripe, and most payment APIs, do) never issues twice; a
//! crash after the key was recorded does not call the provider again at all.
//!
//! The replaced key is not revoked at once: consumers may still hold it. It is listed for
//! revocation after [`ApiKeyOptions::grace_period`] (default 24 h, counted from Vault's
//! `created_time` of the new version), and a later run (any replica, any scheduled run of this
//! secret, due or not) calls [`revoke`](KeyIssuer::revoke) when that time has passed by Vault's
//! clock (as read with `S`). Revocation is a step after the rotation: a run first finishes its
//! rotation (up to closing `S`), then revokes what is due, whatever the rotation's outcome
//! (except a run stopped by a fault hook). A revocation is marked in progress (with a lease) before the call and removed from the
//! list after it, so replicas do not call it twice; after a crash it is retried, so `revoke`
//! must accept a key that is already revoked. Only keys whose id is in `C` (the
//! [`key_id_field`](ApiKeyOptions::key_id_field)) can be revoked: a key written by hand without
//! an id is replaced but left for you to revoke.
//!
//! # The state record is input, not truth
//!
//! `S` and the revocation list can be written by anyone with write access to the state prefix,
//! so nothing in them is acted on unchecked:
//!
//! - A key is revoked only when the list ties it to `C`: the version of `C` that replaced it
//!   ([`RetiredKey::replaced_in`]) was written at the recorded time, the version before it held
//!   that key id, and the latest version does not. It is due at that version's
//!   `created_time` plus [`grace_period`](ApiKeyOptions::grace_period), whatever the list says.
//!   A list naming any key that cannot be tied (or longer than [`MAX_RETIRED_KEYS`]) is a
//!   [`Conflict`](crate::RotationStatus::Conflict) and nothing is revoked in that run.
//! - A pending rotation is resumed only when it is one this rotator could have claimed:
//!   without an issuer, a key of the configured [`KeyFormat`] and no key ids; with one, an
//!   idempotency key of this rotator's form and, as the key to replace (and later revoke), the
//!   id in `C` at the rotation's base version. A provider answering with the key being
//!   replaced (a reused idempotency key) is a conflict too. A record that disagrees is a
//!   conflict, noted in `S`'s history; [`ApiKeyRotator::resolve_conflict`] drops it.
//!
//! # Secrets
//!
//! Keys are [`ApiKey`]s (a password does not compile where one is
//! expected); no `Debug` output, error, tracing event or [`RotationResult`] contains one. The
//! pending key is stored in `S` in clear (that is the point of `S`), which is why consumers
//! must not be able to read `S`.

mod format;
mod issuer;
mod revocations;
mod target;

pub use format::{Alphabet, KeyFormat, MIN_KEY_BITS};
pub use issuer::{IssueRequest, IssuedKey, IssuerError, KeyIssuer, RevokeRequest};
pub use revocations::{RetiredKey, MAX_RETIRED_KEYS};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use vault_ops_core::ApiKey;
use vault_ops_core::VaultClient;

use crate::protocol::driver::drive_known;
use crate::rotator::{KnownState, RotationResult, Rotator};
use crate::state::{self, default_owner, ClaimOptions, Close, HistoryOutcome, StateStore};
use crate::{FaultHook, RotationError};

use target::ApiKeyTarget;

/// The default [`ApiKeyOptions::state_prefix`]: this rotator's own prefix for `S`, apart from
/// the database rotator's (`rotation-state/database`).
pub const DEFAULT_STATE_PREFIX: &str = "rotation-state/api-key";

/// Settings of an [`ApiKeyRotator`]. Build with [`ApiKeyOptions::new`] and the setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ApiKeyOptions {
    /// The KV v2 mount of `C` and `S` (default `secret`).
    pub mount: String,
    /// Where [`Rotator`] names live: a name maps to `<key_prefix>/<name>` (default `api-keys`;
    /// empty: the name is the path).
    pub key_prefix: String,
    /// Where state records live: `<state_prefix>/<path of C>` (default
    /// [`DEFAULT_STATE_PREFIX`], `rotation-state/api-key`). Keep it apart from other rotators'
    /// prefixes: write access to `S` chooses the next key (see the module docs).
    pub state_prefix: String,
    /// The data field holding the key (default `api_key`).
    pub field: String,
    /// The data field holding the provider's key id, issuer mode only (default `key_id`).
    pub key_id_field: String,
    /// The format of generated keys.
    pub format: KeyFormat,
    /// At least this many versions of `C` are kept (default 5, at least 2).
    pub min_versions: u64,
    /// Issuer mode: how long a replaced key stays valid before it is revoked (default 24 h).
    pub grace_period: Duration,
    /// How long a claim (or a revocation in progress) is held before another replica may take
    /// it over (default 2 minutes).
    pub lease: Duration,
    /// This replica's id in the state record (default: host, pid and a random suffix). A
    /// restarted process with the same id may finish its own pending rotation at once.
    pub owner: String,
}

impl Default for ApiKeyOptions {
    fn default() -> Self {
        ApiKeyOptions {
            mount: "secret".into(),
            key_prefix: "api-keys".into(),
            state_prefix: DEFAULT_STATE_PREFIX.into(),
            field: "api_key".into(),
            key_id_field: "key_id".into(),
            format: KeyFormat::default(),
            min_versions: 5,
            grace_period: Duration::from_secs(24 * 60 * 60),
            lease: Duration::from_secs(120),
            owner: default_owner(),
        }
    }
}

impl ApiKeyOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }
    vault_ops_core::setters! {
        /// Sets [`mount`](Self::mount).
        fn mount(string);
        /// Sets [`key_prefix`](Self::key_prefix).
        fn key_prefix(string);
        /// Sets [`state_prefix`](Self::state_prefix).
        fn state_prefix(string);
        /// Sets [`field`](Self::field).
        fn field(string);
        /// Sets [`key_id_field`](Self::key_id_field).
        fn key_id_field(string);
        /// Sets [`format`](Self::format).
        fn format(KeyFormat);
        /// Sets [`grace_period`](Self::grace_period).
        fn grace_period(Duration);
        /// Sets [`lease`](Self::lease).
        fn lease(Duration);
        /// Sets [`owner`](Self::owner).
        fn owner(string);
    }
    /// Sets [`min_versions`](Self::min_versions) (at least 2).
    pub fn min_versions(mut self, n: u64) -> Self {
        self.min_versions = n.max(2);
        self
    }

    fn validate(&self) -> Result<(), RotationError> {
        self.format.validate()?;
        if self.field.is_empty() || self.key_id_field.is_empty() || self.field == self.key_id_field
        {
            return Err(RotationError::Config(
                "the key field and the key id field must be non-empty and different".into(),
            ));
        }
        if self.mount.trim_matches('/').is_empty() {
            return Err(RotationError::Config("the KV mount is empty".into()));
        }
        if self.owner.is_empty() {
            return Err(RotationError::Config("the owner id is empty".into()));
        }
        Ok(())
    }
}

/// The pending payload in `S`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct KeyPayload {
    /// The new key: generated at claim time, or issued (recorded after the issue call).
    #[serde(
        default,
        with = "state::opt_secret_serde",
        skip_serializing_if = "Option::is_none"
    )]
    key: Option<ApiKey>,
    /// The provider's id of the new key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
    /// Issuer mode: the idempotency key of the issue request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<String>,
    /// Issuer mode: the id of the key being replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous_key_id: Option<String>,
}

/// Rotates API keys in KV v2; see the [module docs](self) for paths, protocol and issuers.
#[derive(Clone)]
pub struct ApiKeyRotator {
    client: VaultClient,
    options: ApiKeyOptions,
    store: StateStore,
    issuers: HashMap<String, Arc<dyn KeyIssuer>>,
    fault_hook: Option<FaultHook>,
}

impl std::fmt::Debug for ApiKeyRotator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyRotator")
            .field("options", &self.options)
            .field("issuers", &self.issuers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The moment Vault's `Date` header (whole seconds, rounded down) shows `t` or later.
pub(crate) fn ceil_second(t: SystemTime) -> SystemTime {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    if d.subsec_nanos() == 0 {
        t
    } else {
        UNIX_EPOCH + Duration::from_secs(d.as_secs() + 1)
    }
}

fn min_time(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<SystemTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// A pending rotation started by an issuer run, with no issuer registered now.
fn no_issuer(name: &str) -> RotationError {
    RotationError::Config(format!(
        "{name}: the pending rotation needs a key issuer, but none is registered for it"
    ))
}

/// What [`ApiKeyRotator::revocations_path`] appends to the path of `S`.
const REVOCATIONS_SUFFIX: &str = ".revocations";

/// A key id read from `S` for a message: quoted, at most 64 characters.
fn shown_id(id: &str) -> String {
    let mut shown: String = id.chars().take(64).collect();
    if shown.len() < id.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}

fn field_str<'a>(data: &'a Map<String, Value>, field: &str) -> Option<&'a str> {
    data.get(field).and_then(Value::as_str)
}

impl ApiKeyRotator {
    /// A rotator with the default [`ApiKeyOptions`].
    pub fn new(client: VaultClient) -> Self {
        let options = ApiKeyOptions::default();
        let store = StateStore::new(client.clone(), &options.mount, &options.state_prefix);
        ApiKeyRotator {
            client,
            options,
            store,
            issuers: HashMap::new(),
            fault_hook: None,
        }
    }

    /// Replaces the options.
    pub fn with_options(mut self, options: ApiKeyOptions) -> Self {
        self.store = StateStore::new(self.client.clone(), &options.mount, &options.state_prefix);
        self.options = options;
        self
    }

    /// Has `issuer` issue and revoke the key of the secret `name` (as given to
    /// [`Rotator::rotate`]) instead of generating it.
    pub fn with_issuer(
        mut self,
        name: impl Into<String>,
        issuer: impl KeyIssuer + 'static,
    ) -> Self {
        self.issuers.insert(name.into(), Arc::new(issuer));
        self
    }

    /// Like [`with_issuer`](Self::with_issuer) with a shared issuer.
    pub fn with_shared_issuer(
        mut self,
        name: impl Into<String>,
        issuer: Arc<dyn KeyIssuer>,
    ) -> Self {
        self.issuers.insert(name.into(), issuer);
        self
    }

    /// Installs a fault-injection hook (for tests of crash recovery): it is called after `S`
    /// and `C` were read for a fresh rotation ([`FaultPoint::AfterRead`](crate::FaultPoint::AfterRead)), after the
    /// claim ([`FaultPoint::AfterClaim`](crate::FaultPoint::AfterClaim)), after the provider issued a key and before that is
    /// recorded ([`FaultPoint::AfterApply`](crate::FaultPoint::AfterApply), issuer mode), after the issued key was recorded in
    /// `S` ([`FaultPoint::AfterVerify`](crate::FaultPoint::AfterVerify), issuer mode), after `C` was written
    /// ([`FaultPoint::AfterCommit`](crate::FaultPoint::AfterCommit)) and after `S` was closed ([`FaultPoint::AfterClose`](crate::FaultPoint::AfterClose)).
    pub fn with_fault_hook(mut self, hook: FaultHook) -> Self {
        self.fault_hook = Some(hook);
        self
    }

    /// The options.
    pub fn options(&self) -> &ApiKeyOptions {
        &self.options
    }

    /// The state store (to inspect `S`).
    pub fn state_store(&self) -> &StateStore {
        &self.store
    }

    /// The credential path (in the mount) of the [`Rotator`] name `name`.
    pub fn path_for(&self, name: &str) -> String {
        state::join_name(&self.options.key_prefix, name)
    }

    /// The path (in the mount) of the revocation list of the credential at `path`.
    pub fn revocations_path(&self, path: &str) -> String {
        format!(
            "{}{REVOCATIONS_SUFFIX}",
            self.store.path(path.trim_matches('/'))
        )
    }

    /// Rotates the key at `path` (inside the mount) now with a generated key, first finishing
    /// a rotation a crashed run left pending.
    pub async fn rotate_generic_api_key(&self, path: &str) -> RotationResult {
        self.run(path, path, None, None, KnownState::Unknown).await
    }

    /// Like [`rotate_generic_api_key`](Self::rotate_generic_api_key), but only when the last
    /// rotation is at least `every` ago by Vault's clock.
    pub async fn rotate_generic_api_key_if_due(
        &self,
        path: &str,
        every: Duration,
    ) -> RotationResult {
        self.run(path, path, Some(every), None, KnownState::Unknown)
            .await
    }

    /// The keys of `name` (a [`Rotator`] name) waiting for revocation.
    pub async fn pending_revocations(&self, name: &str) -> Result<Vec<RetiredKey>, RotationError> {
        let path = self.path_for(name);
        Ok(self.load_revocations(&path).await?.1.keys)
    }

    /// Clears a conflict on `name` (a [`Rotator`] name) after a human has looked: the pending
    /// rotation is dropped (its key was never written to `C`) and the next run starts afresh.
    /// Returns the provider's id of the dropped key, if one was issued: it was never published,
    /// so revoke it by hand if the provider still has it.
    pub async fn resolve_conflict(&self, name: &str) -> Result<Option<String>, RotationError> {
        let path = self.path_for(name);
        let snap = self.store.load::<KeyPayload>(&path).await?;
        let Some(p) = snap.pending() else {
            return Ok(None);
        };
        let dropped = p.payload.key_id.clone();
        let claim = self.store.take_over(&snap, &self.claim_options()).await?;
        self.store
            .close(
                claim,
                Close::with_outcome(HistoryOutcome::Resolved, "conflict resolved by an operator"),
            )
            .await?;
        tracing::info!(name, path = %path, "rotation conflict resolved");
        Ok(dropped)
    }

    fn claim_options(&self) -> ClaimOptions {
        ClaimOptions::new(self.options.owner.clone(), self.options.lease)
    }

    async fn run(
        &self,
        name: &str,
        path: &str,
        every: Option<Duration>,
        issuer: Option<Arc<dyn KeyIssuer>>,
        known: KnownState,
    ) -> RotationResult {
        let target = ApiKeyTarget {
            rotator: self,
            path: path.to_string(),
            issuer,
        };
        drive_known(&target, name, every, known).await
    }
}

#[async_trait]
impl Rotator for ApiKeyRotator {
    /// Rotates the key of `name` (at [`path_for(name)`](ApiKeyRotator::path_for)), with its
    /// issuer if one is registered, else with a generated key.
    async fn rotate(&self, name: &str) -> RotationResult {
        let path = self.path_for(name);
        self.run(
            name,
            &path,
            None,
            self.issuers.get(name).cloned(),
            KnownState::Unknown,
        )
        .await
    }

    /// Like [`rotate`](Rotator::rotate), only when due by Vault's clock; also revokes replaced
    /// keys whose grace period has passed.
    async fn rotate_if_due(&self, name: &str, every: Duration) -> RotationResult {
        self.rotate_if_due_known(name, every, KnownState::Unknown)
            .await
    }

    async fn rotate_if_due_known(
        &self,
        name: &str,
        every: Duration,
        known: KnownState,
    ) -> RotationResult {
        let path = self.path_for(name);
        self.run(
            name,
            &path,
            Some(every),
            self.issuers.get(name).cloned(),
            known,
        )
        .await
    }
    fn schedule_state(&self, name: &str) -> Option<(StateStore, String)> {
        Some((self.store.clone(), self.path_for(name)))
    }
}
