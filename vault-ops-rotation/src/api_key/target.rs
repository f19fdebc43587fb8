//! The API-key rotator as a [`Target`] of the driver: the key to claim (generated, or an
//! idempotency key for a provider), the provider's `issue` call as the apply step, the data
//! of the new version of `C`, and — as steps around the close — listing the replaced key for
//! revocation and revoking what is due. No claim, commit or close here: the driver owns them.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde_json::{Map, Value};
use vault_ops_core::api::kv2::KvSecret;
use vault_ops_core::VaultClient;

use super::{
    ceil_second, field_str, min_time, no_issuer, shown_id, ApiKeyRotator, IssueRequest, KeyIssuer,
    KeyPayload, REVOCATIONS_SUFFIX,
};
use crate::protocol::driver::{
    Applied, ApplyError, Credential, KeepVersions, Prepared, ResumeFrom, Subject, Target, Verified,
};
use crate::protocol::{failed, Failure, Outcome, RecordCheck, Run};
use crate::rotator::RotationStatus;
use crate::state::{self, Claim, ClaimOptions, HistoryOutcome, Pending, StateStore};
use crate::{FaultHook, RotationError};

/// One run's target: the rotator, the path of `C` and the issuer registered for the name.
pub(super) struct ApiKeyTarget<'r> {
    pub(super) rotator: &'r ApiKeyRotator,
    pub(super) path: String,
    pub(super) issuer: Option<Arc<dyn KeyIssuer>>,
}

#[async_trait]
impl Target for ApiKeyTarget<'_> {
    type Payload = KeyPayload;
    type Cx = ();

    fn kind(&self) -> &'static str {
        "API key"
    }

    fn new_cx(&self) {}

    fn client(&self) -> &VaultClient {
        &self.rotator.client
    }

    fn mount(&self) -> &str {
        &self.rotator.options.mount
    }

    fn store(&self) -> StateStore {
        self.rotator.store.clone()
    }

    fn claim_options(&self) -> ClaimOptions {
        self.rotator.claim_options()
    }

    fn fault_hook(&self) -> Option<FaultHook> {
        self.rotator.fault_hook.clone()
    }

    /// `cas_required` and enough kept versions on `C`. A secret that follows the mount's
    /// setting (`max_versions` 0) gets KV's default of 10 (or `min_versions` if larger) made
    /// explicit, so a mount configured to keep a single version cannot drop the previous key.
    fn keep_versions(&self) -> KeepVersions {
        let min = self.rotator.options.min_versions.max(2);
        KeepVersions {
            at_least: min,
            raise_to: min,
            when_unset: min.max(10),
        }
    }

    fn remedy(&self) -> &'static str {
        "resolve_conflict drops it"
    }

    /// Vault's `Date` header has whole seconds: a due time is reported as the first second
    /// at which Vault shows it.
    fn round_due(&self, t: SystemTime) -> SystemTime {
        ceil_second(t)
    }

    fn subject(&self, name: &str) -> Result<Subject, RotationError> {
        let path = self.path.trim_matches('/');
        if path.is_empty() {
            return Err(RotationError::Config("the credential path is empty".into()));
        }
        if path.ends_with(REVOCATIONS_SUFFIX) {
            // Its `S` would be another credential's revocation list.
            return Err(RotationError::Config(format!(
                "a credential path must not end with {REVOCATIONS_SUFFIX:?}"
            )));
        }
        self.rotator.options.validate()?;
        Ok(Subject {
            name: name.to_string(),
            key: path.to_string(),
            path: path.to_string(),
        })
    }

    fn check_credential(&self, _subject: &Subject, _c: &Credential) -> Result<(), RotationError> {
        Ok(())
    }

    fn holds(&self, data: &Map<String, Value>, payload: &KeyPayload) -> bool {
        let key = payload.key.as_ref().map(|k| k.expose_secret());
        key.is_some() && field_str(data, &self.rotator.options.field) == key
    }

    /// The previous version's data with the key (and, with an issuer, its id) replaced.
    fn commit_data(
        &self,
        _subject: &Subject,
        current: Option<&Credential>,
        payload: &KeyPayload,
    ) -> Result<Map<String, Value>, Failure> {
        let Some(key) = &payload.key else {
            return Err(failed(RotationError::Config(
                "the pending rotation has no key".into(),
            )));
        };
        let options = &self.rotator.options;
        let mut data = current.map(|c| c.data.clone()).unwrap_or_default();
        data.insert(
            options.field.clone(),
            Value::String(key.expose_secret().to_string()),
        );
        if let Some(id) = &payload.key_id {
            data.insert(options.key_id_field.clone(), Value::String(id.clone()));
        }
        Ok(data)
    }

    async fn check_pending(
        &self,
        run: &mut Run,
        subject: &Subject,
        pending: &Pending<KeyPayload>,
        _current: Option<&Credential>,
    ) -> RecordCheck {
        self.rotator
            .check_pending(
                run,
                &subject.name,
                &subject.path,
                self.issuer.is_some(),
                pending,
            )
            .await
    }

    /// The key to claim: a generated one, or (with an issuer) an idempotency key and the id
    /// of the key being replaced.
    async fn prepare(
        &self,
        _run: &mut Run,
        _subject: &Subject,
        current: Option<&Credential>,
    ) -> Result<Prepared<KeyPayload>, Failure> {
        let options = &self.rotator.options;
        Ok(Prepared::Claim(match self.issuer {
            None => KeyPayload {
                key: Some(options.format.generate()),
                key_id: None,
                idempotency_key: None,
                previous_key_id: None,
            },
            Some(_) => KeyPayload {
                key: None,
                key_id: None,
                idempotency_key: Some(format!("{:032x}", rand::random::<u128>())),
                previous_key_id: current
                    .and_then(|c| field_str(&c.data, &options.key_id_field))
                    .map(str::to_string),
            },
        }))
    }

    async fn still_rejected(&self, _run: &mut Run, _c: &Credential) -> Result<bool, Failure> {
        // `prepare` never reports a rejected credential.
        Ok(true)
    }

    /// Issuer mode: asks the provider for the key, with the recorded idempotency key (a
    /// retry after a crash sends the same one). A generated key needs nothing.
    async fn apply(
        &self,
        run: &mut Run,
        subject: &Subject,
        claim: &Claim<KeyPayload>,
    ) -> Result<Applied<KeyPayload>, ApplyError> {
        let mut payload = claim.payload().clone();
        if payload.key.is_some() {
            return Ok(Applied::Nothing);
        }
        let Some(issuer) = &self.issuer else {
            return Err(ApplyError::Unknown(no_issuer(&subject.name)));
        };
        let Some(idempotency_key) = payload.idempotency_key.clone() else {
            return Err(ApplyError::Unknown(RotationError::Config(
                "the pending rotation has neither a key nor an idempotency key".into(),
            )));
        };
        let request = IssueRequest {
            name: subject.name.clone(),
            path: subject.path.clone(),
            idempotency_key,
            previous_key_id: payload.previous_key_id.clone(),
        };
        let issued = run
            .timed("issue", issuer.issue(&request))
            .await
            // The claim stays pending: the next run retries with the same key.
            .map_err(|source| {
                ApplyError::Unknown(RotationError::KeyIssuer {
                    name: subject.name.clone(),
                    source,
                })
            })?;
        tracing::info!(key_id = %issued.key_id, "provider issued a key");
        if payload.previous_key_id.as_deref() == Some(issued.key_id.as_str()) {
            // A reused idempotency key: the provider answered with the key in use.
            return Err(ApplyError::Conflict(format!(
                "the provider answered the issue request with the key being replaced ({}); not committed",
                shown_id(&issued.key_id)
            )));
        }
        payload.key = Some(issued.key);
        payload.key_id = Some(issued.key_id);
        Ok(Applied::Payload(payload))
    }

    /// The provider's key is taken as issued.
    async fn verify(&self, _run: &mut Run, _claim: &Claim<KeyPayload>) -> Verified {
        Verified::Works
    }

    async fn roll_back(
        &self,
        _run: &mut Run,
        _claim: &Claim<KeyPayload>,
    ) -> Result<HistoryOutcome, RotationError> {
        // `verify` never fails: there is nothing to undo.
        Ok(HistoryOutcome::Failed)
    }

    /// A recorded key is committed; without one the provider is asked (again, with the same
    /// idempotency key).
    async fn resume_from(
        &self,
        _run: &mut Run,
        _subject: &Subject,
        claim: &Claim<KeyPayload>,
        _current: Option<&Credential>,
    ) -> Result<ResumeFrom, Failure> {
        Ok(match claim.payload().key {
            Some(_) => ResumeFrom::Commit,
            None => ResumeFrom::Apply,
        })
    }

    /// Issuer mode: lists the replaced key for revocation after the grace period.
    async fn after_commit(
        &self,
        run: &mut Run,
        subject: &Subject,
        claim: &Claim<KeyPayload>,
        version: u64,
        created_time: &str,
    ) -> Result<(), RotationError> {
        let Some(old) = claim.payload().previous_key_id.as_deref() else {
            return Ok(());
        };
        run.timed(
            "retire",
            self.rotator
                .retire(&subject.path, old, version, created_time),
        )
        .await
    }

    /// Issuer mode: revocation, a step after the rotation (due by Vault's clock when `S` was
    /// read, independently of the rotation's own outcome).
    async fn after_run(
        &self,
        run: &mut Run,
        subject: &Subject,
        now: SystemTime,
        outcome: Outcome,
    ) -> Outcome {
        let Some(issuer) = &self.issuer else {
            return outcome;
        };
        let revoked = self
            .rotator
            .revoke_due(run, &subject.name, &subject.path, now, issuer.as_ref())
            .await;
        match (outcome, revoked) {
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
}

impl ApiKeyRotator {
    /// Checks a pending rotation read from `S` against the options, the issuer registered for
    /// the name and `C` before anything acts on it. What disagrees is reported to the protocol,
    /// which makes it a conflict:
    ///
    /// - without an issuer, the pending key must have the configured [`KeyFormat`](super::KeyFormat) and no key
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
    pub(super) async fn read_version(
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
