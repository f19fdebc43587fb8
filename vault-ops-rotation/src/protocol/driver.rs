//! The driver: the one implementation of claim → apply → verify → commit → close, of the
//! take-over and resume of a crashed run, and of the rules for `S` and `C`. A [`Target`]
//! only performs the side effects.
//!
//! The shape follows kube-runtime's `Controller`/`applier`: the framework owns the loop,
//! the plug-in owns the side effects. What the driver does with each answer of the target:
//!
//! 1. **Load** `S`. A pending rotation: a recorded conflict is reported (or dropped when
//!    [`Target::drops_pending`] says `C` works again); another owner's live lease makes the
//!    run stand back; otherwise `C` is read, the record checked
//!    ([`Target::check_pending`], a disagreement is a conflict noted in `S`), taken over and
//!    resumed from where [`Target::resume_from`] says. An idle `S` that is not due is skipped.
//! 2. **Read** `C` (a version that is deleted or destroyed: conflict), [`FaultPoint::AfterRead`].
//! 3. **Prepare** ([`Target::prepare`]): the target's checks and the payload to claim. A `C`
//!    whose credential is rejected is judged by the driver: if `S` changed meanwhile another
//!    run is at work (stand back); if `S` and `C` stay the same after a second look, it is an
//!    out-of-band change (conflict, nothing touched).
//! 4. **Claim** `S` with check-and-set (an existing `C` first gets `cas_required` and enough
//!    kept versions, [`Target::keep_versions`]), [`FaultPoint::AfterClaim`].
//! 5. **Apply** ([`Target::apply`]), [`FaultPoint::AfterApply`], `S` records `applied` (a
//!    target with nothing to apply, like a generated API key, goes straight to the commit).
//! 6. **Verify** ([`Target::verify`]), [`FaultPoint::AfterVerify`]; a failure rolls back
//!    ([`Target::roll_back`]) and closes `S`.
//! 7. **Commit** `C` with check-and-set against the base version ([`Target::commit_data`]);
//!    an error that may hide a landed write is resolved by reading version `base + 1` back
//!    ([`Target::holds`]); a `C` that moved on without this rotation is a conflict, never
//!    overwritten. [`FaultPoint::AfterCommit`], then [`Target::after_commit`].
//! 8. **Close** `S` (idle, `last_rotated_at` = Vault's `created_time` of the new version),
//!    [`FaultPoint::AfterClose`]; then [`Target::after_run`] (e.g. revocations).

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use tracing::Instrument;
use vault_ops_core::api::kv2::MetadataUpdate;
use vault_ops_core::VaultClient;

use super::{conflict, failed, reject_record, Failure, Outcome, RecordCheck, Run};
use crate::rotator::{KnownState, RotationResult, RotationStatus};
use crate::state::{
    self, Claim, ClaimOptions, Close, HistoryOutcome, Pending, Snapshot, StateError, StateStore,
    Step,
};
use crate::{FaultHook, FaultPoint, RotationError};

/// One version of the credential `C` as read from KV v2. Its data holds the secret: it has
/// no `Debug`.
pub(crate) struct Credential {
    pub(crate) version: u64,
    /// Vault's `created_time` of this version (RFC 3339).
    pub(crate) created_time: String,
    pub(crate) data: Map<String, Value>,
}

/// Where one rotation lives: the run's name, `S`'s name and `C`'s path.
#[derive(Debug, Clone)]
pub(crate) struct Subject {
    /// The name the caller gave (results and logs).
    pub(crate) name: String,
    /// The name of `S` in the state store; also the name a conflict is reported on.
    pub(crate) key: String,
    /// The path of `C` inside the KV v2 mount.
    pub(crate) path: String,
}

/// What a target found before the claim ([`Target::prepare`]).
pub(crate) enum Prepared<P> {
    /// Claim `S` with this payload.
    Claim(P),
    /// `C`'s credential is rejected by the system it is for: why (never a secret), e.g.
    /// `does not log in as "app" (password authentication failed)`.
    Rejected(String),
}

/// What [`Target::apply`] did.
pub(crate) enum Applied<P> {
    /// Nothing to apply (the payload is the new secret, e.g. a generated key): the driver
    /// goes straight to the commit.
    Nothing,
    /// Applied; `S` records `applied`.
    Done,
    /// Applied, and the payload learnt something (e.g. the key a provider issued): `S`
    /// records it with `applied`.
    Payload(P),
}

/// Why [`Target::apply`] failed.
pub(crate) enum ApplyError {
    /// It certainly did not take effect: `S` is closed as failed.
    NotApplied(RotationError),
    /// It may have (or may still): `S` stays pending and the next run resumes.
    Unknown(RotationError),
    /// A conflict (the reason): marked in `S` for a human.
    Conflict(String),
}

/// What [`Target::verify`] found.
pub(crate) enum Verified {
    Works,
    /// The new secret does not work: roll back.
    Failed(RotationError),
    /// Could not tell (the system went away): `S` stays pending.
    Unknown(RotationError),
}

/// Where a taken-over rotation goes on ([`Target::resume_from`]).
pub(crate) enum ResumeFrom {
    /// Not applied: apply the recorded payload.
    Apply,
    /// Applied: verify, then commit.
    Verify,
    /// Nothing to apply or verify: commit.
    Commit,
    /// Finish a rollback (this error is the run's).
    RollBack(RotationError),
    /// A conflict (the reason): marked in `S`.
    Conflict(String),
}

/// The side effects of one kind of rotation. Implementations never claim, write `S` or `C`,
/// or decide a run's status: they answer the driver.
#[async_trait]
pub(crate) trait Target: Send + Sync {
    /// The pending payload recorded in `S` (the new secret and whatever a resume needs).
    type Payload: Serialize + DeserializeOwned + Clone + Send + Sync;
    /// Per-run context (the database target keeps its admin session there).
    type Cx: Send + Sync;

    /// What is rotated, for logs: `database credential`, `API key`.
    fn kind(&self) -> &'static str;
    /// A new per-run context.
    fn new_cx(&self) -> Self::Cx;
    /// The Vault client (for `C`).
    fn client(&self) -> &VaultClient;
    /// The KV v2 mount of `C`.
    fn mount(&self) -> &str;
    /// The store of `S`.
    fn store(&self) -> StateStore;
    /// This replica's owner id and lease.
    fn claim_options(&self) -> ClaimOptions;
    /// The fault-injection hook, for tests.
    fn fault_hook(&self) -> Option<FaultHook>;
    /// How many versions of `C` are kept (set before the commit when missing).
    fn keep_versions(&self) -> KeepVersions;
    /// What a human does about a record that disagrees with the configuration.
    fn remedy(&self) -> &'static str;
    /// How long to wait before a second look at a rejected `C` ([`Prepared::Rejected`]).
    fn conflict_recheck(&self) -> Duration {
        Duration::from_secs(1)
    }
    /// Due times as reported (the API-key target rounds up to Vault's whole seconds).
    fn round_due(&self, t: SystemTime) -> SystemTime {
        t
    }

    /// The subject of a run on `name`, after checking the settings; `Err` before anything
    /// is read.
    fn subject(&self, name: &str) -> Result<Subject, RotationError>;
    /// `C` as read has the form this target needs (`Err`: the run fails, nothing done).
    fn check_credential(&self, subject: &Subject, c: &Credential) -> Result<(), RotationError>;
    /// `data` (a version of `C`) holds the secret of `payload`.
    fn holds(&self, data: &Map<String, Value>, payload: &Self::Payload) -> bool;
    /// The data of the new version of `C` (keeping `current`'s other keys). A conflict here
    /// is reported without writing anything.
    fn commit_data(
        &self,
        subject: &Subject,
        current: Option<&Credential>,
        payload: &Self::Payload,
    ) -> Result<Map<String, Value>, Failure>;

    /// Checks a pending record of `S` against the configuration and `C` before anything acts
    /// on it (`S` is input, not truth).
    async fn check_pending(
        &self,
        run: &mut Run<Self::Cx>,
        subject: &Subject,
        pending: &Pending<Self::Payload>,
        current: Option<&Credential>,
    ) -> RecordCheck;
    /// The checks before a fresh claim and the payload to claim.
    async fn prepare(
        &self,
        run: &mut Run<Self::Cx>,
        subject: &Subject,
        current: Option<&Credential>,
    ) -> Result<Prepared<Self::Payload>, Failure>;
    /// Whether `c`'s credential is still rejected (a second look after
    /// [`Prepared::Rejected`]): `Ok(true)` rejected, `Ok(false)` it works now.
    async fn still_rejected(
        &self,
        run: &mut Run<Self::Cx>,
        c: &Credential,
    ) -> Result<bool, Failure>;
    /// Applies the claimed payload.
    async fn apply(
        &self,
        run: &mut Run<Self::Cx>,
        subject: &Subject,
        claim: &Claim<Self::Payload>,
    ) -> Result<Applied<Self::Payload>, ApplyError>;
    /// Verifies the applied payload.
    async fn verify(&self, run: &mut Run<Self::Cx>, claim: &Claim<Self::Payload>) -> Verified;
    /// Undoes the applied payload after a failed verification: how the rotation ends
    /// ([`HistoryOutcome::RolledBack`], or [`HistoryOutcome::Failed`] when there is nothing
    /// to go back to). `Err`: `S` stays rolling back and the next run tries again.
    async fn roll_back(
        &self,
        run: &mut Run<Self::Cx>,
        claim: &Claim<Self::Payload>,
    ) -> Result<HistoryOutcome, RotationError>;
    /// Where a taken-over rotation (with `C` still at its base version) goes on.
    async fn resume_from(
        &self,
        run: &mut Run<Self::Cx>,
        subject: &Subject,
        claim: &Claim<Self::Payload>,
        current: Option<&Credential>,
    ) -> Result<ResumeFrom, Failure>;
    /// `C` (changed by someone else, or named in a recorded conflict) works, so the pending
    /// rotation may be dropped. `false` keeps it for a human.
    async fn drops_pending(&self, _run: &mut Run<Self::Cx>, _c: Option<&Credential>) -> bool {
        false
    }
    /// After the commit of `version`, before the close (`Err`: `S` stays pending and the next
    /// run, finding the commit, tries again).
    async fn after_commit(
        &self,
        _run: &mut Run<Self::Cx>,
        _subject: &Subject,
        _claim: &Claim<Self::Payload>,
        _version: u64,
        _created_time: &str,
    ) -> Result<(), RotationError> {
        Ok(())
    }
    /// A step after the rotation, whatever its outcome (not after a fault point fired):
    /// `now` is Vault's clock when `S` was first read.
    async fn after_run(
        &self,
        _run: &mut Run<Self::Cx>,
        _subject: &Subject,
        _now: SystemTime,
        outcome: Outcome,
    ) -> Outcome {
        outcome
    }
}

/// Rotates `name` with `target`: `every` is the period of `rotate_if_due` (`None`: now).
pub(crate) async fn drive<T: Target>(
    target: &T,
    name: &str,
    every: Option<Duration>,
) -> RotationResult {
    drive_known(target, name, every, KnownState::Unknown).await
}

/// [`drive`], starting from what the caller knows about `S`: with [`KnownState::Absent`] the
/// first pass takes `S` as never written (version 0, the idle default record) instead of
/// loading it. Nothing else changes: the claim is a check-and-set against version 0, a create,
/// so a record written since (another replica's claim) fences it and the run stands back.
pub(crate) async fn drive_known<T: Target>(
    target: &T,
    name: &str,
    every: Option<Duration>,
    known: KnownState,
) -> RotationResult {
    let subject = match target.subject(name) {
        Ok(s) => s,
        Err(e) => {
            let run = Run::new(target.kind(), name, every, None, target.new_cx());
            return run.finish(Err(failed(e)));
        }
    };
    let mut run = Run::new(
        target.kind(),
        subject.name.clone(),
        every,
        target.fault_hook(),
        target.new_cx(),
    );
    let span = tracing::info_span!("rotation", kind = target.kind(), name = %subject.name);
    let driver = Driver {
        target,
        store: target.store(),
        subject,
    };
    let outcome = driver.run(&mut run, known).instrument(span.clone()).await;
    span.in_scope(|| run.finish(outcome))
}

struct Driver<'t, T: Target> {
    target: &'t T,
    store: StateStore,
    subject: Subject,
}

/// What a pass ended with.
enum Pass {
    Done(Outcome),
    /// Load `S` again and decide anew.
    Reload,
}

type TRun<T> = Run<<T as Target>::Cx>;
type TClaim<T> = Claim<<T as Target>::Payload>;

impl<T: Target> Driver<'_, T> {
    async fn run(&self, run: &mut TRun<T>, known: KnownState) -> Outcome {
        let mut now = None;
        let outcome = self.passes(run, &mut now, known).await;
        if matches!(&outcome, Err((_, RotationError::Interrupted(_)))) {
            // Stopped as if the process had died: no further step.
            return outcome;
        }
        match now {
            Some(now) => {
                self.target
                    .after_run(run, &self.subject, now, outcome)
                    .await
            }
            None => outcome,
        }
    }

    async fn passes(
        &self,
        run: &mut TRun<T>,
        now: &mut Option<SystemTime>,
        known: KnownState,
    ) -> Outcome {
        let mut known = Some(known);
        // At most three passes: a resolved conflict closes `S` and goes on with a fresh
        // rotation; a fresh rotation that finds `S` changed by another run looks again.
        for _ in 0..3 {
            let snap = match known.take() {
                // Seen absent by the caller's LIST: the first pass starts from the record a
                // load would have returned then. Later passes load.
                Some(KnownState::Absent { listed_at }) => {
                    Snapshot::absent(&self.subject.key, listed_at)
                }
                _ => run
                    .timed("load", self.store.load::<T::Payload>(&self.subject.key))
                    .await
                    .map_err(failed)?,
            };
            now.get_or_insert(snap.now());
            if run.version_before.is_none() {
                run.version_before = snap.state.credential_version;
            }
            run.next_due_at = self.due(snap.state.due_time(run.every));
            let pass = if snap.pending().is_some() {
                self.pending(run, snap).await?
            } else if run.every.is_some_and(|every| !snap.is_due(every)) {
                run.next_due_at = self.due(snap.next_check_at(run.every));
                Pass::Done(Ok(RotationStatus::SkippedNotDue))
            } else {
                self.fresh(run, snap).await?
            };
            match pass {
                Pass::Done(outcome) => return outcome,
                Pass::Reload => continue,
            }
        }
        Err(failed(RotationError::Config(
            "the rotation state changed while it was being resolved; try again".into(),
        )))
    }

    fn due(&self, t: Option<SystemTime>) -> Option<SystemTime> {
        t.map(|t| self.target.round_due(t))
    }

    fn conflict(&self, reason: impl Into<String>) -> Failure {
        conflict(&self.subject.key, reason)
    }

    /// Reads the latest version of `C`.
    async fn read(&self, run: &mut TRun<T>) -> Result<Option<Credential>, ReadError> {
        let kv = self.target.client().kv2(self.target.mount());
        let read = run
            .timed("read", kv.get_opt::<Map<String, Value>>(&self.subject.path))
            .await;
        let c = match read {
            Ok(Some(s)) => Credential {
                version: s.metadata.version,
                created_time: s.metadata.created_time,
                data: s.data,
            },
            Ok(None) => return Ok(None),
            Err(e @ vault_ops_core::Error::SecretVersionDeleted { .. })
            | Err(e @ vault_ops_core::Error::SecretVersionDestroyed { .. }) => {
                return Err(ReadError::Unreadable(format!(
                    "the latest version of {}/{} is not readable ({e}); not rotating over it",
                    self.target.mount(),
                    self.subject.path
                )))
            }
            Err(e) => return Err(ReadError::Failed(failed(e))),
        };
        self.target
            .check_credential(&self.subject, &c)
            .map_err(|e| ReadError::Failed(failed(e)))?;
        Ok(Some(c))
    }

    /// Reads `C`; an unreadable latest version is a conflict noted in `S`.
    async fn read_or_note(
        &self,
        run: &mut TRun<T>,
        snap: &Snapshot<T::Payload>,
    ) -> Result<Option<Credential>, Failure> {
        match self.read(run).await {
            Ok(c) => Ok(c),
            Err(ReadError::Failed(f)) => Err(f),
            Err(ReadError::Unreadable(reason)) => {
                self.note_conflict(run, snap, &reason).await;
                Err(self.conflict(reason))
            }
        }
    }

    async fn note_conflict(&self, run: &TRun<T>, snap: &Snapshot<T::Payload>, reason: &str) {
        let owner = self.target.claim_options().owner;
        if let Err(e) = self.store.note_conflict(snap, &owner, reason).await {
            tracing::warn!(name = %run.name, error = %e, "could not record the conflict in the state record");
        }
    }

    /// A pending rotation in `S`.
    async fn pending(
        &self,
        run: &mut TRun<T>,
        snap: Snapshot<T::Payload>,
    ) -> Result<Pass, Failure> {
        let opts = self.target.claim_options();
        let Some(p) = snap.pending() else {
            return Ok(Pass::Reload);
        };
        if let Some(reason) = p.conflict.clone() {
            // A recorded conflict: dropped once `C` works again (where the target can tell),
            // else reported until a human resolves it.
            if snap.can_take_over(&opts.owner) {
                let current = self.read_or_note(run, &snap).await?;
                if self.target.drops_pending(run, current.as_ref()).await {
                    let claim = match run
                        .timed("take_over", self.store.take_over(&snap, &opts))
                        .await
                    {
                        Ok(c) => c,
                        Err(e) if e.is_contended() => return self.contended(run).await,
                        Err(e) => return Err(failed(e)),
                    };
                    let close =
                        Close::with_outcome(HistoryOutcome::Resolved, "the credential works again");
                    self.store.close(claim, close).await.map_err(failed)?;
                    return Ok(Pass::Reload);
                }
            }
            return Err(self.conflict(format!("a pending rotation is in conflict: {reason}")));
        }
        if !snap.can_take_over(&opts.owner) {
            tracing::info!(name = %run.name, owner = %p.owner, epoch = p.epoch, "another run holds this rotation; standing back");
            run.next_due_at = self.due(snap.next_check_at(run.every));
            return Ok(Pass::Done(Ok(RotationStatus::SkippedNotDue)));
        }
        // `S` is input, not truth: before anything acts on the pending rotation, it must be
        // one this target could have claimed.
        let current = self.read_or_note(run, &snap).await?;
        let check = self
            .target
            .check_pending(run, &self.subject, p, current.as_ref())
            .await;
        reject_record(
            run,
            &self.store,
            &snap,
            &opts.owner,
            &self.subject.key,
            check,
            self.target.remedy(),
        )
        .await?;
        let claim = match run
            .timed("take_over", self.store.take_over(&snap, &opts))
            .await
        {
            Ok(c) => c,
            Err(e) if e.is_contended() => return self.contended(run).await,
            Err(e) => return Err(failed(e)),
        };
        self.resume(run, Claimed { claim, current })
            .await
            .map(Pass::Done)
    }

    /// Finishes or undoes a pending rotation taken over from `S`.
    async fn resume(&self, run: &mut TRun<T>, c: Claimed<T::Payload>) -> Result<Outcome, Failure> {
        let Claimed { mut claim, current } = c;
        run.resuming(claim.pending());
        let base = claim.pending().base_version;
        run.version_before = Some(base).filter(|v| *v != 0);
        let current_version = current.as_ref().map_or(0, |c| c.version);
        if current_version != base {
            // Nothing is applied any more: the commit landed, or `C` changed under it.
            return Ok(self
                .after_base(run, Claimed { claim, current }, false)
                .await);
        }
        let from = self
            .target
            .resume_from(run, &self.subject, &claim, current.as_ref())
            .await?;
        Ok(match from {
            ResumeFrom::Apply => self.apply_and_finish(run, Claimed { claim, current }).await,
            ResumeFrom::Verify => {
                if claim.pending().step == Step::Claimed {
                    self.store
                        .advance(&mut claim, Step::Applied)
                        .await
                        .map_err(failed)?;
                }
                self.verify_and_finish(run, Claimed { claim, current })
                    .await
            }
            ResumeFrom::Commit => self.commit(run, Claimed { claim, current }).await,
            ResumeFrom::RollBack(error) => self.roll_back(run, claim, error).await,
            ResumeFrom::Conflict(reason) => self.mark_conflict(run, &mut claim, reason).await,
        })
    }

    /// A fresh rotation from an idle `S`.
    async fn fresh(&self, run: &mut TRun<T>, snap: Snapshot<T::Payload>) -> Result<Pass, Failure> {
        let current = self.read_or_note(run, &snap).await?;
        run.version_before = current.as_ref().map(|c| c.version);
        run.fault(FaultPoint::AfterRead).await?;
        let prepared = self
            .target
            .prepare(run, &self.subject, current.as_ref())
            .await?;
        let payload = match (prepared, &current) {
            (Prepared::Claim(payload), _) => payload,
            (Prepared::Rejected(why), Some(c)) => {
                // Another replica may have claimed `S` and changed the secret since this run
                // read `S`: only a stable `S` (and `C`) is an out-of-band change.
                let snap = match self.recheck_rejected(run, &snap, c).await? {
                    Recheck::Confirmed(latest) => *latest,
                    Recheck::StandBack => return Ok(Pass::Done(Ok(RotationStatus::SkippedNotDue))),
                    Recheck::Reload => return Ok(Pass::Reload),
                };
                let reason = format!(
                    "the credential in {}/{} (version {}) {why}: the password was changed outside the rotation; nothing was changed",
                    self.target.mount(),
                    self.subject.path,
                    c.version,
                );
                self.note_conflict(run, &snap, &reason).await;
                return Err(self.conflict(reason));
            }
            (Prepared::Rejected(why), None) => {
                return Err(failed(RotationError::Config(format!(
                    "no credential to check, yet the target reports it {why}"
                ))))
            }
        };
        let base = current.as_ref().map_or(0, |c| c.version);
        if base != 0 {
            // Before the claim, so that the commit is one write.
            self.ensure_metadata(run).await?;
        }
        let opts = self.target.claim_options();
        let claim = match run
            .timed("claim", self.store.claim(&snap, &opts, base, payload))
            .await
        {
            Ok(c) => c,
            Err(e) if e.is_contended() || matches!(e, StateError::Unfinished { .. }) => {
                tracing::info!(name = %run.name, error = %e, "another run claimed this rotation first");
                return self.contended(run).await;
            }
            Err(e) => return Err(failed(e)),
        };
        run.fault(FaultPoint::AfterClaim).await?;
        Ok(Pass::Done(
            self.apply_and_finish(run, Claimed { claim, current }).await,
        ))
    }

    /// `C`'s credential was rejected before this run claimed anything. Tells a race from an
    /// out-of-band change:
    ///
    /// - `S` changed since this run read it: another run claimed (and is changing, or has
    ///   changed, the secret) or closed a rotation meanwhile. Stand back (or, when its
    ///   pending rotation may be taken over, look again).
    /// - `S` stayed the same: wait [`Target::conflict_recheck`] (a lagging replica of Vault,
    ///   a reply in flight), read `S` and `C` again and check once more. Only an unchanged
    ///   `S` and `C` whose credential is still rejected is an out-of-band change.
    async fn recheck_rejected(
        &self,
        run: &mut TRun<T>,
        snap: &Snapshot<T::Payload>,
        current: &Credential,
    ) -> Result<Recheck<T::Payload>, Failure> {
        let latest = run
            .timed("recheck", self.store.load::<T::Payload>(&self.subject.key))
            .await
            .map_err(failed)?;
        if latest.version != snap.version {
            return Ok(self.changed_under_us(run, &latest));
        }
        tokio::time::sleep(self.target.conflict_recheck()).await;
        let latest = run
            .timed("recheck", self.store.load::<T::Payload>(&self.subject.key))
            .await
            .map_err(failed)?;
        if latest.version != snap.version {
            return Ok(self.changed_under_us(run, &latest));
        }
        match self.read(run).await {
            Ok(Some(c)) if c.version == current.version => {}
            // `C` changed outside the protocol (`S` did not): start over from what it holds.
            Ok(_) | Err(ReadError::Unreadable(_)) => return Ok(Recheck::Reload),
            Err(ReadError::Failed(f)) => return Err(f),
        }
        if self.target.still_rejected(run, current).await? {
            Ok(Recheck::Confirmed(Box::new(latest)))
        } else {
            // It works now: whatever rejected it has passed; start over.
            Ok(Recheck::Reload)
        }
    }

    /// `S` changed while this run was checking: another run is at work (or just finished).
    fn changed_under_us(
        &self,
        run: &mut TRun<T>,
        latest: &Snapshot<T::Payload>,
    ) -> Recheck<T::Payload> {
        if latest.can_take_over(&self.target.claim_options().owner) {
            // A pending rotation whose lease already expired: the next pass resumes it.
            return Recheck::Reload;
        }
        tracing::info!(name = %run.name, version = latest.version, "another run changed the rotation state while this one checked; standing back");
        run.next_due_at = self.due(latest.next_check_at(run.every));
        Recheck::StandBack
    }

    /// Makes `C` fit for the protocol: `cas_required` and enough versions kept
    /// ([`Target::keep_versions`]).
    async fn ensure_metadata(&self, run: &mut TRun<T>) -> Result<(), Failure> {
        let client = self.target.client();
        let keep = self.target.keep_versions();
        let ensured =
            ensure_credential_metadata(client, self.target.mount(), &self.subject.path, keep);
        run.timed("metadata", ensured).await.map_err(failed)
    }

    /// Another run won the race or holds the rotation: report when to look again.
    async fn contended(&self, run: &mut TRun<T>) -> Result<Pass, Failure> {
        let latest = run
            .timed("load", self.store.load::<T::Payload>(&self.subject.key))
            .await;
        run.next_due_at = latest
            .ok()
            .and_then(|s| self.due(s.next_check_at(run.every)));
        Ok(Pass::Done(Ok(RotationStatus::SkippedNotDue)))
    }

    /// Applies the claimed payload, then verifies, commits and closes.
    async fn apply_and_finish(&self, run: &mut TRun<T>, c: Claimed<T::Payload>) -> Outcome {
        let Claimed { mut claim, current } = c;
        let applied = match self.target.apply(run, &self.subject, &claim).await {
            Ok(applied) => applied,
            Err(ApplyError::NotApplied(error)) => {
                let close = Close::with_outcome(HistoryOutcome::Failed, error.to_string());
                self.close_or_warn(run, claim, close).await;
                return Err(failed(error));
            }
            Err(ApplyError::Unknown(error)) => return Err(failed(error)),
            Err(ApplyError::Conflict(reason)) => {
                return self.mark_conflict(run, &mut claim, reason).await
            }
        };
        match applied {
            Applied::Nothing => return self.commit(run, Claimed { claim, current }).await,
            Applied::Done => {}
            Applied::Payload(payload) => claim.pending_mut().payload = payload,
        }
        run.fault(FaultPoint::AfterApply).await?;
        match run
            .timed("record", self.store.advance(&mut claim, Step::Applied))
            .await
        {
            Ok(()) => {}
            Err(e) if e.is_contended() => {
                return self
                    .contended(run)
                    .await
                    .map(|_| RotationStatus::SkippedNotDue)
            }
            Err(e) => return Err(failed(e)),
        }
        self.verify_and_finish(run, Claimed { claim, current })
            .await
    }

    /// Verifies the applied payload; commits and closes, or rolls back.
    async fn verify_and_finish(&self, run: &mut TRun<T>, c: Claimed<T::Payload>) -> Outcome {
        let Claimed { claim, current } = c;
        match self.target.verify(run, &claim).await {
            Verified::Works => {}
            Verified::Failed(error) => return self.roll_back(run, claim, error).await,
            // The system went away between apply and verify: leave the claim pending.
            Verified::Unknown(error) => return Err(failed(error)),
        }
        run.fault(FaultPoint::AfterVerify).await?;
        self.commit(run, Claimed { claim, current }).await
    }

    /// Writes `C` with check-and-set against the base version (reading back whatever may
    /// have landed), then closes `S`.
    async fn commit(&self, run: &mut TRun<T>, c: Claimed<T::Payload>) -> Outcome {
        let Claimed { claim, current } = c;
        let base = claim.pending().base_version;
        let current = match current {
            Some(c) if c.version == base => Some(c),
            None if base == 0 => None,
            // `C` may have moved since it was read: read it again.
            _ => match self.read(run).await {
                Ok(c) => c,
                Err(ReadError::Failed(f)) => return Err(f),
                Err(ReadError::Unreadable(reason)) => {
                    let mut claim = claim;
                    return self.mark_conflict(run, &mut claim, reason).await;
                }
            },
        };
        if current.as_ref().map_or(0, |c| c.version) != base {
            return self.after_base(run, Claimed { claim, current }, true).await;
        }
        let data = self
            .target
            .commit_data(&self.subject, current.as_ref(), claim.payload())?;
        if base == 0 {
            // `C` is created by this commit: with `cas_required` and its versions kept.
            self.ensure_metadata(run).await?;
        }
        let client = self.target.client();
        let (mount, path) = (self.target.mount(), self.subject.path.as_str());
        let written = run
            .timed("commit", client.kv2(mount).put_cas(path, &data, base))
            .await;
        match written {
            Ok(meta) => {
                self.committed(run, claim, meta.version, meta.created_time, true)
                    .await
            }
            Err(e) if state::outcome_unknown(&e) => {
                // Did it land (a lost reply, or a retried write)? Or did someone else write `C`?
                match self.find_commit(run, &claim, None).await {
                    Ok(Some((version, created))) => {
                        self.committed(run, claim, version, created, true).await
                    }
                    Ok(None) if e.is_cas_mismatch() => match self.read(run).await {
                        Ok(latest) => self.changed(run, claim, latest, base).await,
                        Err(ReadError::Failed(f)) => Err(f),
                        Err(ReadError::Unreadable(reason)) => {
                            let mut claim = claim;
                            self.mark_conflict(run, &mut claim, reason).await
                        }
                    },
                    Ok(None) => Err(failed(e)),
                    Err(e2) => Err(failed(e2)),
                }
            }
            Err(e) => Err(failed(e)),
        }
    }

    /// `C` is no longer at the rotation's base version: the commit landed (only the close is
    /// missing), or `C` changed under the rotation (a conflict, never overwritten).
    async fn after_base(&self, run: &mut TRun<T>, c: Claimed<T::Payload>, fault: bool) -> Outcome {
        let Claimed { claim, current } = c;
        let base = claim.pending().base_version;
        match self.find_commit(run, &claim, current.as_ref()).await {
            Ok(Some((version, created))) => {
                self.committed(run, claim, version, created, fault).await
            }
            Ok(None) => self.changed(run, claim, current, base).await,
            Err(e) => Err(failed(e)),
        }
    }

    /// Looks for the rotation's secret at version `base + 1` of `C` (`latest` when it is
    /// that version): `(version, created_time)` if it is there.
    async fn find_commit(
        &self,
        run: &mut TRun<T>,
        claim: &TClaim<T>,
        latest: Option<&Credential>,
    ) -> Result<Option<(u64, String)>, vault_ops_core::Error> {
        let Some(next) = claim.pending().base_version.checked_add(1) else {
            return Ok(None);
        };
        if let Some(c) = latest.filter(|c| c.version == next) {
            let ours = self.target.holds(&c.data, claim.payload());
            return Ok(ours.then(|| (c.version, c.created_time.clone())));
        }
        if latest.is_some_and(|c| c.version < next) {
            return Ok(None);
        }
        let kv = self.target.client().kv2(self.target.mount());
        let read = run
            .timed(
                "probe",
                kv.get_version::<Map<String, Value>>(&self.subject.path, next),
            )
            .await;
        match read {
            Ok(v) => {
                let ours = self.target.holds(&v.data, claim.payload());
                Ok(ours.then_some((v.metadata.version, v.metadata.created_time)))
            }
            Err(e) if e.is_not_found() => Ok(None),
            // Deleted or destroyed since: it cannot be told; a human must look.
            Err(vault_ops_core::Error::SecretVersionDeleted { .. })
            | Err(vault_ops_core::Error::SecretVersionDestroyed { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `C` changed under a pending rotation: never overwrite it. When the target says `C`
    /// works, the pending rotation is dropped; else it stays, marked, for a human.
    async fn changed(
        &self,
        run: &mut TRun<T>,
        mut claim: TClaim<T>,
        changed: Option<Credential>,
        base: u64,
    ) -> Outcome {
        let at = format!("{}/{}", self.target.mount(), self.subject.path);
        let reason = match &changed {
            Some(c) if c.version > base => format!(
                "{at} changed during the rotation (version {} instead of {base}) and does not hold its secret; it was not overwritten",
                c.version
            ),
            Some(c) => format!(
                "{at} is at version {}, behind the rotation's base version {base} (deleted and re-created?); it was not overwritten",
                c.version
            ),
            None => format!("{at} was deleted during the rotation"),
        };
        if self.target.drops_pending(run, changed.as_ref()).await {
            // Whoever changed `C` left it working: drop the pending rotation.
            tracing::error!(name = %run.name, reason = %reason, "rotation conflict");
            let close = Close::with_outcome(HistoryOutcome::Conflict, reason.clone());
            self.close_or_warn(run, claim, close).await;
            return Err(self.conflict(reason));
        }
        self.mark_conflict(run, &mut claim, reason).await
    }

    /// Marks the claim as in conflict for a human (the next runs report it).
    async fn mark_conflict(
        &self,
        run: &mut TRun<T>,
        claim: &mut TClaim<T>,
        reason: String,
    ) -> Outcome {
        tracing::error!(name = %run.name, reason = %reason, "rotation conflict");
        if let Err(e) = run
            .timed("conflict", self.store.mark_conflict(claim, reason.clone()))
            .await
        {
            tracing::warn!(name = %run.name, error = %e, "could not record the conflict in the state record");
        }
        Err(self.conflict(reason))
    }

    /// The commit of `version` landed: [`FaultPoint::AfterCommit`] (when this run wrote it),
    /// the target's step after the commit, then the close.
    async fn committed(
        &self,
        run: &mut TRun<T>,
        claim: TClaim<T>,
        version: u64,
        created_time: String,
        fault: bool,
    ) -> Outcome {
        run.version_after = Some(version);
        if fault {
            run.fault(FaultPoint::AfterCommit).await?;
        }
        self.target
            .after_commit(run, &self.subject, &claim, version, &created_time)
            .await
            .map_err(failed)?;
        let every = run.every;
        let closed = run
            .timed(
                "close",
                self.store.close(
                    claim,
                    Close::rotated(version, created_time.clone()).every(every),
                ),
            )
            .await;
        let rotated_at = state::vault_time::parse_rfc3339(&created_time);
        let from_commit = rotated_at.zip(every).map(|(t, e)| t + e);
        match closed {
            Ok(c) => run.next_due_at = self.due(c.state.due_time(every).or(from_commit)),
            // Another run finished the same rotation (the same secret) after this run's lease
            // ran out: that run reports it.
            Err(e) if e.is_contended() => {
                return self
                    .contended(run)
                    .await
                    .map(|_| RotationStatus::SkippedNotDue)
            }
            Err(e) => {
                // The secret is rotated (and verified); the next run closes `S`.
                run.next_due_at = self.due(from_commit);
                tracing::warn!(name = %run.name, error = %e, "rotated, but the state record could not be closed; the next run closes it");
            }
        }
        run.fault(FaultPoint::AfterClose).await?;
        Ok(RotationStatus::Success)
    }

    /// Undoes the applied payload after a failed verification and closes `S`.
    async fn roll_back(
        &self,
        run: &mut TRun<T>,
        mut claim: TClaim<T>,
        error: RotationError,
    ) -> Outcome {
        let t = std::time::Instant::now();
        if let Err(e) = self.store.advance(&mut claim, Step::RollingBack).await {
            run.step("rollback", t);
            return Err(failed(e));
        }
        let outcome = match self.target.roll_back(run, &claim).await {
            Ok(outcome) => outcome,
            Err(e) => {
                run.step("rollback", t);
                // `S` stays pending (rolling back): the next run finishes the rollback.
                return Err(failed(e));
            }
        };
        let closed = self
            .store
            .close(claim, Close::with_outcome(outcome, error.to_string()))
            .await;
        run.step("rollback", t);
        if let Err(e) = closed {
            tracing::warn!(name = %run.name, error = %e, "rolled back, but the state record could not be closed");
        }
        let status = if outcome == HistoryOutcome::RolledBack {
            RotationStatus::RolledBack
        } else {
            RotationStatus::Failed
        };
        Err((status, error))
    }

    /// Closes `S` with `close` when the rotation ends without a new secret in use. A failure
    /// to close is only logged: the run's own outcome is what the caller reports, and an open
    /// claim is taken over after its lease.
    async fn close_or_warn(&self, run: &TRun<T>, claim: TClaim<T>, close: Close) {
        if let Err(e) = self.store.close(claim, close).await {
            tracing::warn!(name = %run.name, error = %e, "could not close the state record");
        }
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;

/// A claimed rotation and `C` as this run last read it.
struct Claimed<P> {
    claim: Claim<P>,
    current: Option<Credential>,
}

enum ReadError {
    /// The latest version of `C` is deleted or destroyed (why).
    Unreadable(String),
    Failed(Failure),
}

/// What a second look after a rejected `C` found.
enum Recheck<P> {
    /// `S` and `C` stayed the same and `C` is still rejected (`S` as last read).
    Confirmed(Box<Snapshot<P>>),
    /// Another run holds or just finished the rotation.
    StandBack,
    /// Something moved; load `S` again.
    Reload,
}

/// How many versions of a credential path `C` must be kept
/// ([`ensure_credential_metadata`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeepVersions {
    /// Fewer than this explicitly (`max_versions` > 0) is raised to `raise_to`.
    pub(crate) at_least: u64,
    /// What a too small `max_versions` becomes.
    pub(crate) raise_to: u64,
    /// What `max_versions` 0 (follow the mount's setting) or a missing `C` becomes.
    pub(crate) when_unset: u64,
}

/// Makes `C` fit for the protocol: `cas_required`, and enough versions kept that the
/// previous credential stays readable. Metadata writes create no version of `C`, so consumers
/// see nothing; nothing is written when both are in place already.
pub(crate) async fn ensure_credential_metadata(
    client: &VaultClient,
    mount: &str,
    path: &str,
    keep: KeepVersions,
) -> Result<(), vault_ops_core::Error> {
    let kv = client.kv2(mount);
    let meta = kv.read_metadata(path).await?;
    let versions = match &meta {
        Some(m) if m.max_versions >= keep.at_least => None,
        Some(m) if m.max_versions != 0 => Some(keep.raise_to),
        _ => Some(keep.when_unset),
    };
    let need_cas = !matches!(&meta, Some(m) if m.cas_required);
    if need_cas || versions.is_some() {
        let mut update = MetadataUpdate::new().cas_required(true);
        if let Some(n) = versions {
            update = update.max_versions(n);
        }
        kv.write_metadata(path, &update).await?;
    }
    Ok(())
}
