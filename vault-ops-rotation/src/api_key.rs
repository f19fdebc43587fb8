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
//! clock. A revocation is marked in progress (with a lease) before the call and removed from the
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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::Instrument;
use vault_ops_core::api::kv2::{KvSecret, MetadataUpdate};
use vault_ops_core::VaultClient;

use crate::rotator::{RotationResult, RotationStatus, Rotator, StepTiming};
use crate::state::{
    self, default_owner, vault_time, Claim, ClaimOptions, Close, HistoryOutcome, Snapshot,
    StateError, StateStore, Step,
};
use crate::{fault_fires, FaultHook, FaultPoint, RotationError};

/// The smallest key entropy [`KeyFormat`] accepts, in bits.
pub const MIN_KEY_BITS: f64 = 128.0;

/// The default [`ApiKeyOptions::state_prefix`]: this rotator's own prefix for `S`, apart from
/// the database rotator's (`rotation-state/database`).
pub const DEFAULT_STATE_PREFIX: &str = "rotation-state/api-key";

/// The most keys a revocation list may hold; a longer list is a conflict (nothing revoked).
pub const MAX_RETIRED_KEYS: usize = 64;

/// Why an API key operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiKeyError {
    /// The options or an argument are not usable (an empty path, a weak key format...).
    #[error("invalid API key rotation input: {0}")]
    InvalidInput(String),
    /// The provider failed to issue or revoke a key.
    #[error("key issuer for {name}: {source}")]
    Issuer {
        /// The secret's name.
        name: String,
        /// The provider's error.
        #[source]
        source: IssuerError,
    },
    /// `C` changed outside the rotation, or a pending rotation is in conflict: a human must look.
    #[error("conflict on {path}: {reason}")]
    Conflict {
        /// The credential path.
        path: String,
        /// What was found (never a secret).
        reason: String,
    },
    /// The pending rotation was started by an issuer run, but no issuer is registered now.
    #[error("{name}: the pending rotation needs a key issuer, but none is registered for it")]
    NoIssuer {
        /// The secret's name.
        name: String,
    },
    /// A fault-injection hook stopped the run here (tests of crash recovery).
    #[error("the run was stopped after {0:?} by a fault-injection hook")]
    Interrupted(FaultPoint),
    /// Vault failed or refused.
    #[error("vault: {0}")]
    Vault(#[from] vault_ops_core::Error),
    /// The rotation state could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
}

impl From<ApiKeyError> for RotationError {
    fn from(e: ApiKeyError) -> Self {
        match e {
            ApiKeyError::Vault(e) => RotationError::Vault(e),
            ApiKeyError::State(e) => RotationError::State(e),
            ApiKeyError::Conflict { path, reason } => {
                RotationError::Conflict { name: path, reason }
            }
            ApiKeyError::Interrupted(point) => RotationError::Interrupted(point),
            e @ (ApiKeyError::InvalidInput(_) | ApiKeyError::NoIssuer { .. }) => {
                RotationError::Config(e.to_string())
            }
            ApiKeyError::Issuer { name, source } => RotationError::KeyIssuer { name, source },
        }
    }
}

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
    /// The secret's name (as given to [`Rotator::rotate`]).
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
    pub key: SecretString,
}

impl IssuedKey {
    /// A key with its id.
    pub fn new(key_id: impl Into<String>, key: SecretString) -> Self {
        IssuedKey {
            key_id: key_id.into(),
            key,
        }
    }
}

/// A provider that issues and revokes API keys itself (a payment API, a SaaS admin API).
///
/// ```no_run
/// use vault_ops_rotation::api_key::{IssueRequest, IssuedKey, IssuerError, KeyIssuer, RevokeRequest};
///
/// struct MyProvider;
///
/// #[async_trait::async_trait]
/// impl KeyIssuer for MyProvider {
///     async fn issue(&self, req: &IssueRequest) -> Result<IssuedKey, IssuerError> {
///         // POST /v1/keys with header `Idempotency-Key: {req.idempotency_key}` ...
///         # let _ = req;
///         Ok(IssuedKey::new("key_123", "sk_live_...".to_string().into()))
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

/// The characters a generated key is made of (no duplicates, no whitespace or control
/// characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alphabet(Vec<char>);

impl Alphabet {
    /// `A-Z a-z 0-9` (62 characters, ~5.95 bits each). The default.
    pub fn alphanumeric() -> Self {
        Alphabet(('A'..='Z').chain('a'..='z').chain('0'..='9').collect())
    }

    /// `0-9 a-f` (4 bits each).
    pub fn hex_lower() -> Self {
        Alphabet(('0'..='9').chain('a'..='f').collect())
    }

    /// The URL-safe base64 alphabet `A-Z a-z 0-9 - _` (6 bits each).
    pub fn base64url() -> Self {
        let mut v = Self::alphanumeric().0;
        v.extend(['-', '_']);
        Alphabet(v)
    }

    /// These characters. At least 2, no duplicates, no whitespace or control characters.
    pub fn custom(chars: &str) -> Result<Self, ApiKeyError> {
        let v: Vec<char> = chars.chars().collect();
        if v.len() < 2 {
            return Err(ApiKeyError::InvalidInput(
                "an alphabet needs at least 2 characters".into(),
            ));
        }
        if v.iter().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ApiKeyError::InvalidInput(
                "an alphabet must not contain whitespace or control characters".into(),
            ));
        }
        let mut sorted = v.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != v.len() {
            return Err(ApiKeyError::InvalidInput(
                "an alphabet must not repeat a character (it would bias the keys)".into(),
            ));
        }
        Ok(Alphabet(v))
    }

    /// The characters.
    pub fn chars(&self) -> &[char] {
        &self.0
    }

    /// Bits of entropy per character.
    pub fn bits_per_char(&self) -> f64 {
        (self.0.len() as f64).log2()
    }
}

/// The format of a generated key: `prefix` + `length` characters drawn uniformly from the
/// alphabet with the thread-local CSPRNG of `rand` (ChaCha, seeded from the OS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFormat {
    prefix: String,
    length: usize,
    alphabet: Alphabet,
}

impl Default for KeyFormat {
    /// 40 alphanumeric characters (~238 bits), no prefix.
    fn default() -> Self {
        KeyFormat::new(40, Alphabet::alphanumeric())
    }
}

impl KeyFormat {
    /// `length` characters from `alphabet`, no prefix.
    pub fn new(length: usize, alphabet: Alphabet) -> Self {
        KeyFormat {
            prefix: String::new(),
            length,
            alphabet,
        }
    }

    /// A fixed prefix (e.g. `sk_live_`), not counted in the length.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The random part's length.
    pub fn length(&self) -> usize {
        self.length
    }

    /// The alphabet.
    pub fn alphabet(&self) -> &Alphabet {
        &self.alphabet
    }

    /// The prefix.
    pub fn get_prefix(&self) -> &str {
        &self.prefix
    }

    /// Entropy of a key, in bits.
    pub fn bits(&self) -> f64 {
        self.length as f64 * self.alphabet.bits_per_char()
    }

    /// Checks that keys have at least [`MIN_KEY_BITS`] of entropy and a prefix without
    /// whitespace or control characters.
    pub fn validate(&self) -> Result<(), ApiKeyError> {
        if self.bits() < MIN_KEY_BITS {
            return Err(ApiKeyError::InvalidInput(format!(
                "keys of {} characters from an alphabet of {} have {:.0} bits of entropy; at least {MIN_KEY_BITS} are required",
                self.length,
                self.alphabet.0.len(),
                self.bits()
            )));
        }
        if self
            .prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ApiKeyError::InvalidInput(
                "the key prefix must not contain whitespace or control characters".into(),
            ));
        }
        Ok(())
    }

    /// A new random key.
    pub fn generate(&self) -> SecretString {
        let mut rng = rand::rng();
        let n = self.alphabet.0.len();
        let mut key = String::with_capacity(self.prefix.len() + self.length * 4);
        key.push_str(&self.prefix);
        for _ in 0..self.length {
            key.push(self.alphabet.0[rng.random_range(0..n)]);
        }
        SecretString::from(key)
    }

    /// `true` when `key` has this format.
    pub fn matches(&self, key: &str) -> bool {
        match key.strip_prefix(self.prefix.as_str()) {
            Some(rest) => {
                rest.chars().count() == self.length
                    && rest.chars().all(|c| self.alphabet.0.contains(&c))
            }
            None => false,
        }
    }
}

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

    fn validate(&self) -> Result<(), ApiKeyError> {
        self.format.validate()?;
        if self.field.is_empty() || self.key_id_field.is_empty() || self.field == self.key_id_field
        {
            return Err(ApiKeyError::InvalidInput(
                "the key field and the key id field must be non-empty and different".into(),
            ));
        }
        if self.mount.trim_matches('/').is_empty() {
            return Err(ApiKeyError::InvalidInput("the KV mount is empty".into()));
        }
        if self.owner.is_empty() {
            return Err(ApiKeyError::InvalidInput("the owner id is empty".into()));
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

/// A replaced key waiting for revocation (issuer mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RetiredKey {
    /// The provider's key id.
    pub key_id: String,
    /// When it was replaced (Vault's `created_time` of the new version, RFC 3339).
    pub retired_at: String,
    /// When it may be revoked (RFC 3339, Vault's clock).
    pub revoke_after: String,
    /// A revocation in progress: who, and since when (RFC 3339, Vault's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoking: Option<(String, String)>,
    /// The version of `C` that replaced the key (its previous version held it): what ties the
    /// entry to `C` before the key is revoked. An entry without it is never revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_in: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Revocations {
    #[serde(default)]
    keys: Vec<RetiredKey>,
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

/// Collects timings and builds the [`RotationResult`].
struct Run {
    name: String,
    started_at: SystemTime,
    start: Instant,
    steps: Vec<StepTiming>,
    version_before: Option<u64>,
    version_after: Option<u64>,
}

impl Run {
    fn new(name: &str) -> Self {
        Run {
            name: name.to_string(),
            started_at: SystemTime::now(),
            start: Instant::now(),
            steps: Vec::new(),
            version_before: None,
            version_after: None,
        }
    }

    async fn step<T>(
        &mut self,
        step: &'static str,
        fut: impl std::future::Future<Output = T>,
    ) -> T {
        let t = Instant::now();
        let out = fut.await;
        self.steps.push(StepTiming {
            step,
            duration: t.elapsed(),
        });
        out
    }

    fn finish(
        self,
        status: RotationStatus,
        error: Option<ApiKeyError>,
        next_due_at: Option<SystemTime>,
    ) -> RotationResult {
        let version_after = if status == RotationStatus::Success {
            self.version_after
        } else {
            self.version_before
        };
        RotationResult {
            name: self.name,
            status,
            version_before: self.version_before,
            version_after,
            started_at: self.started_at,
            duration: self.start.elapsed(),
            steps: self.steps,
            error: error.map(RotationError::from),
            next_due_at,
        }
    }
}

/// How a run ended, before it becomes a [`RotationResult`].
struct Outcome {
    status: RotationStatus,
    error: Option<ApiKeyError>,
    next_due_at: Option<SystemTime>,
}

impl Outcome {
    fn skipped(next_due_at: Option<SystemTime>) -> Self {
        Outcome {
            status: RotationStatus::SkippedNotDue,
            error: None,
            next_due_at,
        }
    }
    fn failed(e: impl Into<ApiKeyError>) -> Self {
        Outcome {
            status: RotationStatus::Failed,
            error: Some(e.into()),
            next_due_at: None,
        }
    }
    fn conflict(path: &str, reason: impl Into<String>) -> Self {
        Outcome {
            status: RotationStatus::Conflict,
            error: Some(ApiKeyError::Conflict {
                path: path.to_string(),
                reason: reason.into(),
            }),
            next_due_at: None,
        }
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

    async fn fault(&self, point: FaultPoint) -> Result<(), ApiKeyError> {
        if fault_fires(self.fault_hook.as_ref(), point).await {
            return Err(ApiKeyError::Interrupted(point));
        }
        Ok(())
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
    pub async fn pending_revocations(&self, name: &str) -> Result<Vec<RetiredKey>, ApiKeyError> {
        let path = self.path_for(name);
        Ok(self.load_revocations(&path).await?.1.keys)
    }

    /// Clears a conflict on `name` (a [`Rotator`] name) after a human has looked: the pending
    /// rotation is dropped (its key was never written to `C`) and the next run starts afresh.
    /// Returns the provider's id of the dropped key, if one was issued: it was never published,
    /// so revoke it by hand if the provider still has it.
    pub async fn resolve_conflict(&self, name: &str) -> Result<Option<String>, ApiKeyError> {
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
        let mut run = Run::new(name);
        let span = tracing::info_span!("api_key_rotation", name, path, issuer = issuer.is_some());
        let outcome = self
            .run_inner(&mut run, name, path, every, issuer.as_ref())
            .instrument(span.clone())
            .await;
        span.in_scope(|| match outcome.status {
            RotationStatus::Success => tracing::info!(
                version_before = run.version_before,
                version_after = run.version_after,
                "API key rotated"
            ),
            RotationStatus::SkippedNotDue => tracing::debug!("API key rotation skipped"),
            _ => tracing::warn!(
                status = ?outcome.status,
                error = outcome.error.as_ref().map(|e| e.to_string()),
                "API key rotation did not succeed"
            ),
        });
        run.finish(outcome.status, outcome.error, outcome.next_due_at)
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
            return Outcome::failed(ApiKeyError::InvalidInput(
                "the credential path is empty".into(),
            ));
        }
        if path.ends_with(REVOCATIONS_SUFFIX) {
            // Its `S` would be another credential's revocation list.
            return Outcome::failed(ApiKeyError::InvalidInput(format!(
                "a credential path must not end with {REVOCATIONS_SUFFIX:?}"
            )));
        }
        if let Err(e) = self.options.validate() {
            return Outcome::failed(e);
        }
        let snap = match run.step("load", self.store.load::<KeyPayload>(path)).await {
            Ok(s) => s,
            Err(e) => return Outcome::failed(e),
        };
        run.version_before = snap.state.credential_version;

        // Revocations first: they are due independently of the rotation.
        let mut revocation_error = None;
        let mut next_revocation = None;
        if let Some(issuer) = issuer {
            match self
                .revoke_due(run, name, path, &snap, issuer.as_ref())
                .await
            {
                Ok(next) => next_revocation = next,
                Err(e) => revocation_error = Some(e),
            }
        }
        let mut outcome = self
            .rotate_phase(run, name, path, every, issuer, snap)
            .await;
        if outcome.status == RotationStatus::SkippedNotDue
            || outcome.status == RotationStatus::Success
        {
            if let Some(e) = revocation_error {
                outcome.status = if outcome.status == RotationStatus::Success {
                    // The rotation itself worked; report it, the revocation is retried later.
                    tracing::warn!(error = %e, "revoking a replaced key failed; a later run retries");
                    RotationStatus::Success
                } else if matches!(e, ApiKeyError::Conflict { .. }) {
                    outcome.error = Some(e);
                    RotationStatus::Conflict
                } else {
                    outcome.error = Some(e);
                    RotationStatus::Failed
                };
            }
        }
        outcome.next_due_at = min_time(outcome.next_due_at, next_revocation.map(ceil_second));
        outcome
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
                return Outcome::conflict(
                    path,
                    format!("a pending rotation is in conflict: {reason}"),
                );
            }
            if !snap.can_take_over(&opts.owner) {
                tracing::debug!(owner = %p.owner, epoch = p.epoch, "another run holds the rotation");
                return Outcome::skipped(snap.next_check_at(every).map(ceil_second));
            }
            // `S` is input, not truth: check the pending rotation before acting on it.
            match self
                .check_pending(run, name, path, issuer.is_some(), p)
                .await
            {
                Ok(()) => {}
                Err(ApiKeyError::Conflict { reason, .. }) => {
                    tracing::error!(reason = %reason, "the pending rotation does not match this rotator");
                    if let Err(e) = self
                        .store
                        .note_conflict(&snap, &opts.owner, reason.clone())
                        .await
                    {
                        tracing::warn!(error = %e, "could not record the conflict in the state record");
                    }
                    return Outcome::conflict(path, reason);
                }
                Err(e) => return Outcome::failed(e),
            }
            let claim = match run.step("claim", self.store.take_over(&snap, &opts)).await {
                Ok(c) => c,
                Err(e) if e.is_contended() => return self.contended(run, path, every).await,
                Err(e) => return Outcome::failed(e),
            };
            tracing::info!(epoch = claim.pending().epoch, step = ?claim.pending().step, "resuming a pending rotation");
            return self
                .finish(run, name, path, every, issuer, claim, None)
                .await;
        }

        if let Some(every) = every {
            if !snap.is_due(every) {
                return Outcome::skipped(snap.next_check_at(Some(every)).map(ceil_second));
            }
        }

        // Read C: its version is the base of the check-and-set.
        let kv = self.client.kv2(&self.options.mount);
        let current = match run
            .step("read", kv.get_opt::<Map<String, Value>>(path))
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
                return Outcome::conflict(path, reason);
            }
            Err(e) => return Outcome::failed(e),
        };
        let base = current.as_ref().map_or(0, |c| c.metadata.version);
        run.version_before = Some(base).filter(|b| *b > 0);
        if let Err(e) = self.fault(FaultPoint::AfterRead).await {
            return Outcome::failed(e);
        }

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
            .step("claim", self.store.claim(&snap, &opts, base, payload))
            .await
        {
            Ok(c) => c,
            Err(e) if e.is_contended() => return self.contended(run, path, every).await,
            Err(StateError::Unfinished { .. }) => return self.contended(run, path, every).await,
            Err(e) => return Outcome::failed(e),
        };
        if let Err(e) = self.fault(FaultPoint::AfterClaim).await {
            return Outcome::failed(e);
        }
        self.finish(run, name, path, every, issuer, claim, current)
            .await
    }

    /// Another run won the race or holds the rotation: report when to look again.
    async fn contended(&self, run: &mut Run, path: &str, every: Option<Duration>) -> Outcome {
        match run.step("load", self.store.load::<KeyPayload>(path)).await {
            Ok(s) => Outcome::skipped(s.next_check_at(every).map(ceil_second)),
            Err(_) => Outcome::skipped(None),
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
                return Outcome::failed(ApiKeyError::NoIssuer {
                    name: name.to_string(),
                });
            };
            let Some(idempotency_key) = payload.idempotency_key.clone() else {
                return Outcome::failed(ApiKeyError::InvalidInput(
                    "the pending rotation has neither a key nor an idempotency key".into(),
                ));
            };
            let request = IssueRequest {
                name: name.to_string(),
                path: path.to_string(),
                idempotency_key,
                previous_key_id: payload.previous_key_id.clone(),
            };
            let issued = match run.step("issue", issuer.issue(&request)).await {
                Ok(k) => k,
                Err(source) => {
                    // The claim stays pending: the next run retries with the same key.
                    return Outcome::failed(ApiKeyError::Issuer {
                        name: name.to_string(),
                        source,
                    });
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
            if let Err(e) = self.fault(FaultPoint::AfterApply).await {
                return Outcome::failed(e);
            }
            payload.key = Some(issued.key);
            payload.key_id = Some(issued.key_id);
            claim.pending_mut().payload = payload.clone();
            match run
                .step("record", self.store.advance(&mut claim, Step::Applied))
                .await
            {
                Ok(()) => {}
                Err(e) if e.is_contended() => return self.contended(run, path, every).await,
                Err(e) => return Outcome::failed(e),
            }
            if let Err(e) = self.fault(FaultPoint::AfterVerify).await {
                return Outcome::failed(e);
            }
        }
        let Some(key) = payload.key.clone() else {
            return Outcome::failed(ApiKeyError::InvalidInput(
                "the pending rotation has no key".into(),
            ));
        };

        // Commit C with CAS against the base version (or find that it was committed already).
        let kv = self.client.kv2(&self.options.mount);
        let current = match current {
            Some(c) if c.metadata.version == base => Some(c),
            _ => match run
                .step("read", kv.get_opt::<Map<String, Value>>(path))
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
                Err(e) => return Outcome::failed(e),
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
            if let Err(e) = run.step("metadata", self.ensure_metadata(path)).await {
                return Outcome::failed(e);
            }
            match run.step("commit", kv.put_cas(path, &data, base)).await {
                Ok(meta) => Some((meta.version, meta.created_time)),
                Err(e) if state::outcome_unknown(&e) => {
                    // Did our write land (a lost reply, or a retried write that had landed)?
                    match self.find_commit(run, path, base, &key).await {
                        Ok(Some(found)) => Some(found),
                        Ok(None) if !e.is_cas_mismatch() => return Outcome::failed(e),
                        Ok(None) => {
                            return self
                                .conflict(run, &mut claim, path, format!("the credential was changed concurrently (it is no longer at version {base}); not overwriting it"))
                                .await
                        }
                        Err(e2) => return Outcome::failed(e2),
                    }
                }
                Err(e) => return Outcome::failed(e),
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
                Err(e) => return Outcome::failed(e),
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
        if let Err(e) = self.fault(FaultPoint::AfterCommit).await {
            return Outcome::failed(e);
        }

        // Issuer mode: list the replaced key for revocation after the grace period.
        if let Some(old) = payload.previous_key_id.as_deref() {
            if let Err(e) = run
                .step("retire", self.retire(path, old, version, &created_time))
                .await
            {
                // The claim stays pending; the next run resumes (C is committed) and retries.
                return Outcome::failed(e);
            }
        }

        let close = Close::rotated(version, created_time).every(every);
        match run.step("close", self.store.close(claim, close)).await {
            Ok(closed) => {
                if let Err(e) = self.fault(FaultPoint::AfterClose).await {
                    return Outcome::failed(e);
                }
                Outcome {
                    status: RotationStatus::Success,
                    error: None,
                    next_due_at: closed.state.due_time(every).map(ceil_second),
                }
            }
            // Another run finished the same rotation (same key) after our lease ran out.
            Err(e) if e.is_contended() => self.contended(run, path, every).await,
            Err(e) => Outcome::failed(e),
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
            .step("conflict", self.store.mark_conflict(claim, reason.clone()))
            .await
        {
            tracing::warn!(error = %e, "could not record the conflict in the state record");
        }
        Outcome::conflict(path, reason)
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
            .step("probe", kv.get_version::<Map<String, Value>>(path, next))
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
    async fn ensure_metadata(&self, path: &str) -> Result<(), ApiKeyError> {
        let min = self.options.min_versions.max(2);
        let keep = state::KeepVersions {
            at_least: min,
            raise_to: min,
            when_unset: min.max(10),
        };
        state::ensure_credential_metadata(&self.client, &self.options.mount, path, keep).await?;
        Ok(())
    }

    async fn load_revocations(&self, path: &str) -> Result<(u64, Revocations), ApiKeyError> {
        let kv = self.client.kv2(&self.options.mount);
        let rpath = self.revocations_path(path);
        match kv.get_opt::<Revocations>(&rpath).await {
            Ok(Some(s)) => Ok((s.metadata.version, s.data)),
            Ok(None) => Ok((0, Revocations::default())),
            Err(vault_ops_core::Error::SecretVersionDeleted { version, .. }) => {
                Ok((version, Revocations::default()))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn save_revocations(
        &self,
        path: &str,
        list: &Revocations,
        cas: u64,
    ) -> Result<(), vault_ops_core::Error> {
        let kv = self.client.kv2(&self.options.mount);
        let rpath = self.revocations_path(path);
        if cas == 0 {
            kv.write_metadata(
                &rpath,
                &MetadataUpdate::new().cas_required(true).max_versions(10),
            )
            .await?;
        }
        kv.put_cas(&rpath, list, cas).await.map(|_| ())
    }

    /// Adds `key_id`, replaced by version `replaced_in` of `C` written at `retired_at`, to the
    /// revocation list (idempotent), due `grace_period` after `retired_at`.
    async fn retire(
        &self,
        path: &str,
        key_id: &str,
        replaced_in: u64,
        retired_at: &str,
    ) -> Result<(), ApiKeyError> {
        let revoke_after = vault_time::parse_rfc3339(retired_at)
            .map(|t| vault_time::format_rfc3339(vault_time::later(t, self.options.grace_period)))
            .ok_or_else(|| {
                ApiKeyError::InvalidInput(format!(
                    "Vault's created_time {retired_at:?} is not RFC 3339"
                ))
            })?;
        for _ in 0..5 {
            let (version, mut list) = self.load_revocations(path).await?;
            if list.keys.iter().any(|k| k.key_id == key_id) {
                return Ok(());
            }
            list.keys.push(RetiredKey {
                key_id: key_id.to_string(),
                retired_at: retired_at.to_string(),
                revoke_after: revoke_after.clone(),
                revoking: None,
                replaced_in: Some(replaced_in),
            });
            match self.save_revocations(path, &list, version).await {
                Ok(()) => {
                    tracing::info!(key_id, revoke_after = %revoke_after, "replaced key listed for revocation");
                    return Ok(());
                }
                Err(e) if e.is_cas_mismatch() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiKeyError::Vault(vault_ops_core::Error::InvalidInput(
            "the revocation list kept changing; giving up for now".into(),
        )))
    }

    /// Checks a pending rotation read from `S` against the options, the issuer registered for
    /// the name and `C` before anything acts on it. A record that disagrees is an
    /// [`ApiKeyError::Conflict`]:
    ///
    /// - without an issuer, the pending key must have the configured [`KeyFormat`] and no key
    ///   ids (a record of an issuer run is [`ApiKeyError::NoIssuer`]);
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
    ) -> Result<(), ApiKeyError> {
        let p = &pending.payload;
        let mismatch = |what: &str| {
            ApiKeyError::Conflict {
            path: path.to_string(),
            reason: format!(
                "the pending rotation (epoch {}) in the state record does not match this rotator: {what}; nothing was done (resolve_conflict drops it)",
                pending.epoch
            ),
        }
        };
        if !with_issuer {
            if p.idempotency_key.is_some() {
                return Err(ApiKeyError::NoIssuer {
                    name: name.to_string(),
                });
            }
            let generated = p
                .key
                .as_ref()
                .is_some_and(|k| self.options.format.matches(k.expose_secret()));
            if !generated {
                return Err(mismatch("its key does not have the configured key format"));
            }
            if p.key_id.is_some() || p.previous_key_id.is_some() {
                return Err(mismatch("it records key ids, but no issuer is configured"));
            }
            return Ok(());
        }
        let idempotency_ok = p.idempotency_key.as_deref().is_some_and(|k| {
            k.len() == 32 && k.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        });
        if !idempotency_ok {
            return Err(mismatch("it has no idempotency key of this rotator's form"));
        }
        if p.key.is_some() != p.key_id.is_some() {
            return Err(mismatch(
                "it records a key without its id, or an id without a key",
            ));
        }
        let base = pending.base_version;
        let in_base = match base {
            0 => None,
            _ => match run.step("check", self.read_version(path, base)).await? {
                Some(c) => field_str(&c.data, &self.options.key_id_field).map(str::to_string),
                None if p.previous_key_id.is_some() => {
                    return Err(mismatch(&format!(
                    "version {base} of the credential, whose key it would revoke, is not readable"
                )))
                }
                None => None,
            },
        };
        if p.previous_key_id != in_base {
            return Err(mismatch(&format!(
                "the key it replaces is not the one in version {base} of the credential"
            )));
        }
        Ok(())
    }

    /// Version `version` of `C`; `None` when it does not exist or was deleted or destroyed.
    async fn read_version(
        &self,
        path: &str,
        version: u64,
    ) -> Result<Option<KvSecret<Map<String, Value>>>, ApiKeyError> {
        let kv = self.client.kv2(&self.options.mount);
        match kv.get_version::<Map<String, Value>>(path, version).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(vault_ops_core::Error::SecretVersionDeleted { .. })
            | Err(vault_ops_core::Error::SecretVersionDestroyed { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Ties a key listed for revocation to `C`: version `replaced_in - 1` held it, version
    /// `replaced_in` (written at `retired_at`) replaced it, and the latest version
    /// (`current_key_id`) does not hold it. Returns when it may be revoked (Vault's
    /// `created_time` of `replaced_in` plus the grace period); an entry that cannot be tied is
    /// an [`ApiKeyError::Conflict`].
    async fn check_retired(
        &self,
        run: &mut Run,
        path: &str,
        entry: &RetiredKey,
        current_key_id: Option<&str>,
    ) -> Result<SystemTime, ApiKeyError> {
        let conflict = |why: String| {
            ApiKeyError::Conflict {
            path: path.to_string(),
            reason: format!(
                "the revocation list names key id {}, which {why}; nothing was revoked (fix {} after checking it)",
                shown_id(&entry.key_id),
                self.revocations_path(path)
            ),
        }
        };
        let Some(replaced_in) = entry.replaced_in.filter(|v| *v >= 2) else {
            return Err(conflict(
                "is not tied to the version of the credential that replaced it".into(),
            ));
        };
        if current_key_id == Some(entry.key_id.as_str()) {
            return Err(conflict("is the key in the credential now".into()));
        }
        let key_id = |c: &KvSecret<Map<String, Value>>| {
            field_str(&c.data, &self.options.key_id_field).map(str::to_string)
        };
        let held = run
            .step("check", self.read_version(path, replaced_in - 1))
            .await?;
        if held.as_ref().and_then(key_id).as_deref() != Some(entry.key_id.as_str()) {
            return Err(conflict(format!(
                "version {} of the credential does not hold",
                replaced_in - 1
            )));
        }
        let replacing = run
            .step("check", self.read_version(path, replaced_in))
            .await?;
        let Some(replacing) = replacing else {
            return Err(conflict(format!(
                "was replaced by version {replaced_in} of the credential, which is not readable"
            )));
        };
        if key_id(&replacing).as_deref() == Some(entry.key_id.as_str()) {
            return Err(conflict(format!(
                "version {replaced_in} of the credential still holds"
            )));
        }
        let written = vault_time::parse_rfc3339(&replacing.metadata.created_time);
        let Some(written) = written else {
            return Err(ApiKeyError::Vault(vault_ops_core::Error::InvalidInput(
                format!("Vault's created_time of version {replaced_in} of {path} is not RFC 3339"),
            )));
        };
        if vault_time::parse_rfc3339(&entry.retired_at) != Some(written) {
            return Err(conflict(format!(
                "was not replaced when version {replaced_in} of the credential was written"
            )));
        }
        Ok(vault_time::later(written, self.options.grace_period))
    }

    /// Revokes the keys whose grace period has passed (by Vault's clock in `snap`). Returns the
    /// earliest revocation still ahead.
    ///
    /// The list is part of `S`, so it is input, not truth: a key is revoked only when it is
    /// due and [`check_retired`](Self::check_retired) ties it to `C`. A list naming a key that
    /// cannot be tied (or longer than [`MAX_RETIRED_KEYS`]) is a conflict, and nothing is
    /// revoked in that run.
    async fn revoke_due(
        &self,
        run: &mut Run,
        name: &str,
        path: &str,
        snap: &Snapshot<KeyPayload>,
        issuer: &dyn KeyIssuer,
    ) -> Result<Option<SystemTime>, ApiKeyError> {
        let (mut version, mut list) = run.step("revocations", self.load_revocations(path)).await?;
        if list.keys.len() > MAX_RETIRED_KEYS {
            return Err(ApiKeyError::Conflict {
                path: path.to_string(),
                reason: format!(
                    "the revocation list holds {} keys, more than {MAX_RETIRED_KEYS}; nothing was revoked",
                    list.keys.len()
                ),
            });
        }
        let now = snap.now();
        let lease = self.options.lease;
        let mut next: Option<SystemTime> = None;
        let mut current_key_id: Option<Option<String>> = None;
        let mut due = Vec::new();
        for entry in &list.keys {
            // The recorded time only says when to look (unreadable: look now); `C` decides.
            let listed = vault_time::parse_rfc3339(&entry.revoke_after);
            if let Some(after) = listed.filter(|after| now < *after) {
                next = min_time(next, Some(after));
                continue;
            }
            if current_key_id.is_none() {
                let kv = self.client.kv2(&self.options.mount);
                let current = run
                    .step("check", kv.get_opt::<Map<String, Value>>(path))
                    .await?;
                current_key_id = Some(current.and_then(|c| {
                    field_str(&c.data, &self.options.key_id_field).map(str::to_string)
                }));
            }
            let current = current_key_id.as_ref().and_then(|c| c.as_deref());
            let after = self.check_retired(run, path, entry, current).await?;
            let after = listed.map_or(after, |listed| listed.max(after));
            if now < after {
                next = min_time(next, Some(after));
                continue;
            }
            due.push(entry.key_id.clone());
        }
        for id in due {
            let Some(entry) = list.keys.iter_mut().find(|k| k.key_id == id) else {
                continue;
            };
            if let Some((owner, since)) = &entry.revoking {
                // A marker from the future counts from now: it holds for one lease at most.
                if let Some(since) = vault_time::parse_rfc3339(since) {
                    let until = vault_time::later(since.min(now), lease);
                    if now < until && owner != &self.options.owner {
                        next = min_time(next, Some(until));
                        continue;
                    }
                }
            }
            // Mark it in progress (fenced by CAS), revoke, then remove it.
            entry.revoking = Some((self.options.owner.clone(), vault_time::format_rfc3339(now)));
            match run
                .step("revoke_mark", self.save_revocations(path, &list, version))
                .await
            {
                Ok(()) => version = version.saturating_add(1),
                Err(e) if e.is_cas_mismatch() => return Ok(next),
                Err(e) => return Err(e.into()),
            }
            let request = RevokeRequest {
                name: name.to_string(),
                path: path.to_string(),
                key_id: id.clone(),
            };
            run.step("revoke", issuer.revoke(&request))
                .await
                .map_err(|source| ApiKeyError::Issuer {
                    name: name.to_string(),
                    source,
                })?;
            tracing::info!(key_id = %id, "replaced key revoked");
            list.keys.retain(|k| k.key_id != id);
            match run
                .step("revoke_done", self.save_revocations(path, &list, version))
                .await
            {
                Ok(()) => version = version.saturating_add(1),
                Err(e) if e.is_cas_mismatch() => return Ok(next),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(next)
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
