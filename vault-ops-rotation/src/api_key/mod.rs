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
//!    [`SkippedNotDue`](RotationStatus::SkippedNotDue).
//! 4. **Commit** `C` with check-and-set against `b`.
//! 5. **Close** `S`: idle, `last_rotated_at` = Vault's `created_time` of the new version,
//!    `next_due_at`.
//!
//! A crash after 3 leaves the pending key in `S`; the next run (after the lease, or at once with
//! the same [`owner`](ApiKeyOptions::owner)) finishes it with **that** key. A lost reply at 4 is
//! resolved by reading `C` back (is version `b + 1` our key?), never by guessing. If `C` moved
//! on to something that is not our key, the rotation is marked as a
//! [`Conflict`](RotationStatus::Conflict) in `S` and nothing is overwritten; runs report the
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
//!   [`Conflict`](RotationStatus::Conflict) and nothing is revoked in that run.
//! - A pending rotation is resumed only when it is one this rotator could have claimed:
//!   without an issuer, a key of the configured [`KeyFormat`] and no key ids; with one, an
//!   idempotency key of this rotator's form and, as the key to replace (and later revoke), the
//!   id in `C` at the rotation's base version. A provider answering with the key being
//!   replaced (a reused idempotency key) is a conflict too. A record that disagrees is a
//!   conflict, noted in `S`'s history; [`ApiKeyRotator::resolve_conflict`] drops it.
//!
//! # Secrets
//!
//! Keys are [`SecretString`]s; no `Debug` output, error, tracing event or [`RotationResult`]
//! contains one. The pending key is stored in `S` in clear (that is the point of `S`), which is
//! why consumers must not be able to read `S`.

mod format;
mod issuer;
mod revocations;

pub use format::{Alphabet, KeyFormat, MIN_KEY_BITS};
pub use issuer::{IssueRequest, IssuedKey, IssuerError, KeyIssuer, RevokeRequest};
pub use revocations::{RetiredKey, MAX_RETIRED_KEYS};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::Instrument;
use vault_ops_core::api::kv2::KvSecret;
use vault_ops_core::VaultClient;

use crate::protocol::{conflict, failed, reject_record, skipped, Outcome, RecordCheck, Run};
use crate::rotator::{RotationResult, RotationStatus, Rotator};
use crate::state::{
    self, default_owner, Claim, ClaimOptions, Close, HistoryOutcome, Snapshot, StateError,
    StateStore, Step,
};
use crate::{FaultHook, FaultPoint, RotationError};

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
struct KeyPayload {
    /// The new key: generated at claim time, or issued (recorded after the issue call).
    #[serde(
        default,
        with = "state::opt_secret_serde",
        skip_serializing_if = "Option::is_none"
    )]
    key: Option<SecretString>,
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
            .finish()
    }
}

/// The moment Vault's `Date` header (whole seconds, rounded down) shows `t` or later.
fn ceil_second(t: SystemTime) -> SystemTime {
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
    /// and `C` were read for a fresh rotation ([`FaultPoint::AfterRead`]), after the
    /// claim ([`FaultPoint::AfterClaim`]), after the provider issued a key and before that is
    /// recorded ([`FaultPoint::AfterApply`], issuer mode), after the issued key was recorded in
    /// `S` ([`FaultPoint::AfterVerify`], issuer mode), after `C` was written
    /// ([`FaultPoint::AfterCommit`]) and after `S` was closed ([`FaultPoint::AfterClose`]).
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
        self.run(path, path, None, None).await
    }

    /// Like [`rotate_generic_api_key`](Self::rotate_generic_api_key), but only when the last
    /// rotation is at least `every` ago by Vault's clock.
    pub async fn rotate_generic_api_key_if_due(
        &self,
        path: &str,
        every: Duration,
    ) -> RotationResult {
        self.run(path, path, Some(every), None).await
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
    ) -> RotationResult {
        let mut run = Run::new("API key", name, every, self.fault_hook.clone(), ());
        let span = tracing::info_span!("api_key_rotation", name, path, issuer = issuer.is_some());
        let outcome = self
            .run_inner(&mut run, name, path, every, issuer.as_ref())
            .instrument(span.clone())
            .await;
        span.in_scope(|| run.finish(outcome))
    }

    async fn run_inner(
        &self,
        run: &mut Run,
        name: &str,
        path: &str,
        every: Option<Duration>,
        issuer: Option<&Arc<dyn KeyIssuer>>,
    ) -> Outcome {
        let path = path.trim_matches('/');
        if path.is_empty() {
            return Err(failed(RotationError::Config(
                "the credential path is empty".into(),
            )));
        }
        if path.ends_with(REVOCATIONS_SUFFIX) {
            // Its `S` would be another credential's revocation list.
            return Err(failed(RotationError::Config(format!(
                "a credential path must not end with {REVOCATIONS_SUFFIX:?}"
            ))));
        }
        if let Err(e) = self.options.validate() {
            return Err(failed(e));
        }
        let snap = match run.timed("load", self.store.load::<KeyPayload>(path)).await {
            Ok(s) => s,
            Err(e) => return Err(failed(e)),
        };
        run.version_before = snap.state.credential_version;

        let now = snap.now();
        let outcome = self
            .rotate_phase(run, name, path, every, issuer, snap)
            .await;
        let Some(issuer) = issuer else {
            return outcome;
        };
        if matches!(&outcome, Err((_, RotationError::Interrupted(_)))) {
            // Stopped as if the process had died: no further step.
            return outcome;
        }
        // Revocation, a step after the rotation (due by Vault's clock when `S` was read,
        // independently of the rotation's own outcome).
        match (
            outcome,
            self.revoke_due(run, name, path, now, issuer.as_ref()).await,
        ) {
            (outcome, Ok(next)) => {
                run.next_due_at = min_time(run.next_due_at, next.map(ceil_second));
                outcome
            }
            (Ok(RotationStatus::Success), Err(e)) => {
                // The rotation itself worked; report it, the revocation is retried later.
                tracing::warn!(error = %e, "revoking a replaced key failed; a later run retries");
                Ok(RotationStatus::Success)
            }
            (Ok(RotationStatus::SkippedNotDue), Err(e)) if e.is_conflict() => {
                Err((RotationStatus::Conflict, e))
            }
            (Ok(RotationStatus::SkippedNotDue), Err(e)) => Err(failed(e)),
            (outcome, Err(e)) => {
                tracing::warn!(error = %e, "revoking a replaced key failed; a later run retries");
                outcome
            }
        }
    }

    async fn rotate_phase(
        &self,
        run: &mut Run,
        name: &str,
        path: &str,
        every: Option<Duration>,
        issuer: Option<&Arc<dyn KeyIssuer>>,
        snap: Snapshot<KeyPayload>,
    ) -> Outcome {
        let opts = self.claim_options();

        if let Some(p) = snap.pending() {
            if let Some(reason) = &p.conflict {
                return Err(conflict(
                    path,
                    format!("a pending rotation is in conflict: {reason}"),
                ));
            }
            if !snap.can_take_over(&opts.owner) {
                tracing::debug!(owner = %p.owner, epoch = p.epoch, "another run holds the rotation");
                return skipped(run, snap.next_check_at(every).map(ceil_second));
            }
            // `S` is input, not truth: check the pending rotation before acting on it.
            let check = self
                .check_pending(run, name, path, issuer.is_some(), p)
                .await;
            reject_record(
                run,
                &self.store,
                &snap,
                &opts.owner,
                path,
                check,
                "resolve_conflict drops it",
            )
            .await?;
            let claim = match run.timed("claim", self.store.take_over(&snap, &opts)).await {
                Ok(c) => c,
                Err(e) if e.is_contended() => return self.contended(run, path, every).await,
                Err(e) => return Err(failed(e)),
            };
            run.resuming(claim.pending());
            return self
                .finish(run, name, path, every, issuer, claim, None)
                .await;
        }

        if let Some(every) = every {
            if !snap.is_due(every) {
                return skipped(run, snap.next_check_at(Some(every)).map(ceil_second));
            }
        }

        // Read C: its version is the base of the check-and-set.
        let kv = self.client.kv2(&self.options.mount);
        let current = match run
            .timed("read", kv.get_opt::<Map<String, Value>>(path))
            .await
        {
            Ok(c) => c,
            Err(e @ vault_ops_core::Error::SecretVersionDeleted { .. })
            | Err(e @ vault_ops_core::Error::SecretVersionDestroyed { .. }) => {
                let reason = format!("the latest version of the credential is not readable ({e}); not rotating over it");
                if let Err(e) = self
                    .store
                    .note_conflict(&snap, &opts.owner, reason.clone())
                    .await
                {
                    tracing::warn!(error = %e, "could not record the conflict in the state record");
                }
                return Err(conflict(path, reason));
            }
            Err(e) => return Err(failed(e)),
        };
        let base = current.as_ref().map_or(0, |c| c.metadata.version);
        run.version_before = Some(base).filter(|b| *b > 0);
        run.fault(FaultPoint::AfterRead).await?;

        let payload = match issuer {
            None => KeyPayload {
                key: Some(self.options.format.generate()),
                key_id: None,
                idempotency_key: None,
                previous_key_id: None,
            },
            Some(_) => KeyPayload {
                key: None,
                key_id: None,
                idempotency_key: Some(format!("{:032x}", rand::random::<u128>())),
                previous_key_id: current
                    .as_ref()
                    .and_then(|c| field_str(&c.data, &self.options.key_id_field))
                    .map(str::to_string),
            },
        };
        let claim = match run
            .timed("claim", self.store.claim(&snap, &opts, base, payload))
            .await
        {
            Ok(c) => c,
            Err(e) if e.is_contended() => return self.contended(run, path, every).await,
            Err(StateError::Unfinished { .. }) => return self.contended(run, path, every).await,
            Err(e) => return Err(failed(e)),
        };
        run.fault(FaultPoint::AfterClaim).await?;
        self.finish(run, name, path, every, issuer, claim, current)
            .await
    }

    /// Another run won the race or holds the rotation: report when to look again.
    async fn contended(&self, run: &mut Run, path: &str, every: Option<Duration>) -> Outcome {
        match run.timed("load", self.store.load::<KeyPayload>(path)).await {
            Ok(s) => skipped(run, s.next_check_at(every).map(ceil_second)),
            Err(_) => skipped(run, None),
        }
    }

    /// Finishes a claimed rotation: issue (if needed), commit `C`, list the replaced key for
    /// revocation, close `S`.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        run: &mut Run,
        name: &str,
        path: &str,
        every: Option<Duration>,
        issuer: Option<&Arc<dyn KeyIssuer>>,
        mut claim: Claim<KeyPayload>,
        current: Option<KvSecret<Map<String, Value>>>,
    ) -> Outcome {
        let base = claim.pending().base_version;
        run.version_before = Some(base).filter(|b| *b > 0);
        let mut payload = claim.payload().clone();

        // Issuer mode: get the key from the provider, with the recorded idempotency key.
        if payload.key.is_none() {
            let Some(issuer) = issuer else {
                return Err(failed(no_issuer(name)));
            };
            let Some(idempotency_key) = payload.idempotency_key.clone() else {
                return Err(failed(RotationError::Config(
                    "the pending rotation has neither a key nor an idempotency key".into(),
                )));
            };
            let request = IssueRequest {
                name: name.to_string(),
                path: path.to_string(),
                idempotency_key,
                previous_key_id: payload.previous_key_id.clone(),
            };
            let issued = match run.timed("issue", issuer.issue(&request)).await {
                Ok(k) => k,
                Err(source) => {
                    // The claim stays pending: the next run retries with the same key.
                    return Err(failed(RotationError::KeyIssuer {
                        name: name.to_string(),
                        source,
                    }));
                }
            };
            tracing::info!(key_id = %issued.key_id, "provider issued a key");
            if payload.previous_key_id.as_deref() == Some(issued.key_id.as_str()) {
                // A reused idempotency key: the provider answered with the key in use.
                let reason = format!(
                    "the provider answered the issue request with the key being replaced ({}); not committed",
                    shown_id(&issued.key_id)
                );
                return self.conflict(run, &mut claim, path, reason).await;
            }
            run.fault(FaultPoint::AfterApply).await?;
            payload.key = Some(issued.key);
            payload.key_id = Some(issued.key_id);
            claim.pending_mut().payload = payload.clone();
            match run
                .timed("record", self.store.advance(&mut claim, Step::Applied))
                .await
            {
                Ok(()) => {}
                Err(e) if e.is_contended() => return self.contended(run, path, every).await,
                Err(e) => return Err(failed(e)),
            }
            run.fault(FaultPoint::AfterVerify).await?;
        }
        let Some(key) = payload.key.clone() else {
            return Err(failed(RotationError::Config(
                "the pending rotation has no key".into(),
            )));
        };

        // Commit C with CAS against the base version (or find that it was committed already).
        let kv = self.client.kv2(&self.options.mount);
        let current = match current {
            Some(c) if c.metadata.version == base => Some(c),
            _ => match run
                .timed("read", kv.get_opt::<Map<String, Value>>(path))
                .await
            {
                Ok(c) => c,
                Err(e @ vault_ops_core::Error::SecretVersionDeleted { .. })
                | Err(e @ vault_ops_core::Error::SecretVersionDestroyed { .. }) => {
                    return self
                        .conflict(
                            run,
                            &mut claim,
                            path,
                            format!("the credential's latest version is not readable: {e}"),
                        )
                        .await;
                }
                Err(e) => return Err(failed(e)),
            },
        };
        let current_version = current.as_ref().map_or(0, |c| c.metadata.version);
        let committed = if current_version == base {
            let mut data = current.map(|c| c.data).unwrap_or_default();
            data.insert(
                self.options.field.clone(),
                Value::String(key.expose_secret().to_string()),
            );
            if let Some(id) = &payload.key_id {
                data.insert(self.options.key_id_field.clone(), Value::String(id.clone()));
            }
            if let Err(e) = run.timed("metadata", self.ensure_metadata(path)).await {
                return Err(failed(e));
            }
            match run.timed("commit", kv.put_cas(path, &data, base)).await {
                Ok(meta) => Some((meta.version, meta.created_time)),
                Err(e) if state::outcome_unknown(&e) => {
                    // Did our write land (a lost reply, or a retried write that had landed)?
                    match self.find_commit(run, path, base, &key).await {
                        Ok(Some(found)) => Some(found),
                        Ok(None) if !e.is_cas_mismatch() => return Err(failed(e)),
                        Ok(None) => {
                            return self
                                .conflict(run, &mut claim, path, format!("the credential was changed concurrently (it is no longer at version {base}); not overwriting it"))
                                .await
                        }
                        Err(e2) => return Err(failed(e2)),
                    }
                }
                Err(e) => return Err(failed(e)),
            }
        } else if current_version > base {
            match self.find_commit(run, path, base, &key).await {
                Ok(Some(found)) => Some(found),
                Ok(None) => {
                    return self
                        .conflict(
                            run,
                            &mut claim,
                            path,
                            format!("the credential moved from version {base} to {current_version} without this rotation"),
                        )
                        .await
                }
                Err(e) => return Err(failed(e)),
            }
        } else {
            None
        };
        let Some((version, created_time)) = committed else {
            return self
                .conflict(
                    run,
                    &mut claim,
                    path,
                    format!("the credential is at version {current_version}, behind the rotation's base version {base} (deleted and re-created?)"),
                )
                .await;
        };
        run.version_after = Some(version);
        run.fault(FaultPoint::AfterCommit).await?;

        // Issuer mode: list the replaced key for revocation after the grace period.
        if let Some(old) = payload.previous_key_id.as_deref() {
            if let Err(e) = run
                .timed("retire", self.retire(path, old, version, &created_time))
                .await
            {
                // The claim stays pending; the next run resumes (C is committed) and retries.
                return Err(failed(e));
            }
        }

        let close = Close::rotated(version, created_time).every(every);
        match run.timed("close", self.store.close(claim, close)).await {
            Ok(closed) => {
                run.fault(FaultPoint::AfterClose).await?;
                run.next_due_at = closed.state.due_time(every).map(ceil_second);
                Ok(RotationStatus::Success)
            }
            // Another run finished the same rotation (same key) after our lease ran out.
            Err(e) if e.is_contended() => self.contended(run, path, every).await,
            Err(e) => Err(failed(e)),
        }
    }

    async fn conflict(
        &self,
        run: &mut Run,
        claim: &mut Claim<KeyPayload>,
        path: &str,
        reason: String,
    ) -> Outcome {
        tracing::error!(reason = %reason, "API key rotation conflict");
        if let Err(e) = run
            .timed("conflict", self.store.mark_conflict(claim, reason.clone()))
            .await
        {
            tracing::warn!(error = %e, "could not record the conflict in the state record");
        }
        Err(conflict(path, reason))
    }

    /// Looks for our key at version `base + 1`: `(version, created_time)` if it is there.
    async fn find_commit(
        &self,
        run: &mut Run,
        path: &str,
        base: u64,
        key: &SecretString,
    ) -> Result<Option<(u64, String)>, vault_ops_core::Error> {
        let kv = self.client.kv2(&self.options.mount);
        let Some(next) = base.checked_add(1) else {
            return Ok(None);
        };
        let read = run
            .timed("probe", kv.get_version::<Map<String, Value>>(path, next))
            .await;
        match read {
            Ok(v) => {
                let ours = field_str(&v.data, &self.options.field) == Some(key.expose_secret());
                Ok(ours.then_some((v.metadata.version, v.metadata.created_time)))
            }
            Err(e) if e.is_not_found() => Ok(None),
            // Deleted or destroyed since: we cannot tell; a human must look.
            Err(vault_ops_core::Error::SecretVersionDeleted { .. })
            | Err(vault_ops_core::Error::SecretVersionDestroyed { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `cas_required` and enough kept versions on `C`. A secret that follows the mount's
    /// setting (`max_versions` 0) gets KV's default of 10 (or `min_versions` if larger) made
    /// explicit, so a mount configured to keep a single version cannot drop the previous key.
    async fn ensure_metadata(&self, path: &str) -> Result<(), RotationError> {
        let min = self.options.min_versions.max(2);
        let keep = state::KeepVersions {
            at_least: min,
            raise_to: min,
            when_unset: min.max(10),
        };
        state::ensure_credential_metadata(&self.client, &self.options.mount, path, keep).await?;
        Ok(())
    }

    /// Checks a pending rotation read from `S` against the options, the issuer registered for
    /// the name and `C` before anything acts on it. What disagrees is reported to the protocol,
    /// which makes it a conflict:
    ///
    /// - without an issuer, the pending key must have the configured [`KeyFormat`] and no key
    ///   ids (a record of an issuer run fails: no issuer is registered);
    /// - with one, an idempotency key of this rotator's form, and a recorded key with its id;
    /// - the id of the key to be replaced (and revoked later) must be the one in `C` at the
    ///   rotation's base version.
    async fn check_pending(
        &self,
        run: &mut Run,
        name: &str,
        path: &str,
        with_issuer: bool,
        pending: &state::Pending<KeyPayload>,
    ) -> RecordCheck {
        let p = &pending.payload;
        let mismatch = |what: &str| RecordCheck::Disagrees(what.to_string());
        if !with_issuer {
            if p.idempotency_key.is_some() {
                return RecordCheck::Failed(failed(no_issuer(name)));
            }
            let generated = p
                .key
                .as_ref()
                .is_some_and(|k| self.options.format.matches(k.expose_secret()));
            if !generated {
                return mismatch("its key does not have the configured key format");
            }
            if p.key_id.is_some() || p.previous_key_id.is_some() {
                return mismatch("it records key ids, but no issuer is configured");
            }
            return RecordCheck::Matches;
        }
        let idempotency_ok = p.idempotency_key.as_deref().is_some_and(|k| {
            k.len() == 32 && k.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        });
        if !idempotency_ok {
            return mismatch("it has no idempotency key of this rotator's form");
        }
        if p.key.is_some() != p.key_id.is_some() {
            return mismatch("it records a key without its id, or an id without a key");
        }
        let base = pending.base_version;
        let in_base = match base {
            0 => None,
            _ => match run.timed("check", self.read_version(path, base)).await {
                Err(e) => return RecordCheck::Failed(failed(e)),
                Ok(Some(c)) => field_str(&c.data, &self.options.key_id_field).map(str::to_string),
                Ok(None) if p.previous_key_id.is_some() => {
                    return mismatch(&format!(
                    "version {base} of the credential, whose key it would revoke, is not readable"
                ))
                }
                Ok(None) => None,
            },
        };
        if p.previous_key_id != in_base {
            return mismatch(&format!(
                "the key it replaces is not the one in version {base} of the credential"
            ));
        }
        RecordCheck::Matches
    }

    /// Version `version` of `C`; `None` when it does not exist or was deleted or destroyed.
    async fn read_version(
        &self,
        path: &str,
        version: u64,
    ) -> Result<Option<KvSecret<Map<String, Value>>>, RotationError> {
        let kv = self.client.kv2(&self.options.mount);
        match kv.get_version::<Map<String, Value>>(path, version).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(vault_ops_core::Error::SecretVersionDeleted { .. })
            | Err(vault_ops_core::Error::SecretVersionDestroyed { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[async_trait]
impl Rotator for ApiKeyRotator {
    /// Rotates the key of `name` (at [`path_for(name)`](ApiKeyRotator::path_for)), with its
    /// issuer if one is registered, else with a generated key.
    async fn rotate(&self, name: &str) -> RotationResult {
        let path = self.path_for(name);
        self.run(name, &path, None, self.issuers.get(name).cloned())
            .await
    }

    /// Like [`rotate`](Rotator::rotate), only when due by Vault's clock; also revokes replaced
    /// keys whose grace period has passed.
    async fn rotate_if_due(&self, name: &str, every: Duration) -> RotationResult {
        let path = self.path_for(name);
        self.run(name, &path, Some(every), self.issuers.get(name).cloned())
            .await
    }
    fn schedule_state(&self, name: &str) -> Option<(StateStore, String)> {
        Some((self.store.clone(), self.path_for(name)))
    }
}
