//! The rotation protocol, written once: the [`driver`] runs claim → apply → verify → commit →
//! close (and the take-over and resume of a crashed run) for every [`driver::Target`]; this
//! module holds what a run is — step timings, fault points, the "record disagrees with the
//! configuration" decision, logging and the rules that turn a run into a [`RotationResult`].
//!
//! The targets ([`DatabaseCredentialRotator`](crate::DatabaseCredentialRotator),
//! [`ApiKeyRotator`](crate::ApiKeyRotator)) only perform side effects; what a result says (its
//! status, its versions, whether it resumed a crashed run, when the secret is next due) and
//! what is logged about it is decided here, once, for all of them.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::rotator::{RotationResult, RotationStatus, StepTiming};
use crate::state::{Pending, Snapshot, StateStore};
use crate::{fault_fires, FaultHook, FaultPoint, RotationError};

pub(crate) mod driver;

/// A run that did not succeed: how it ended and why.
pub(crate) type Failure = (RotationStatus, RotationError);

/// How a run ended: a status, or a status with its error. The one outcome type of every
/// rotator.
pub(crate) type Outcome = Result<RotationStatus, Failure>;

/// `Failed` with this error.
pub(crate) fn failed(e: impl Into<RotationError>) -> Failure {
    (RotationStatus::Failed, e.into())
}

/// `Conflict` on `name` with this reason.
pub(crate) fn conflict(name: &str, reason: impl Into<String>) -> Failure {
    (
        RotationStatus::Conflict,
        RotationError::Conflict {
            name: name.to_string(),
            reason: reason.into(),
        },
    )
}

/// One run of one rotator on one secret. `X` is the rotator's own per-run context (the
/// database rotator keeps its admin session there).
pub(crate) struct Run<X = ()> {
    /// What is rotated, for logs: `database credential`, `API key`.
    kind: &'static str,
    /// The secret's name as given to the rotator.
    pub(crate) name: String,
    started: Instant,
    started_at: SystemTime,
    steps: Vec<StepTiming>,
    fault: Option<FaultHook>,
    /// The period of `rotate_if_due`, `None` for `rotate`.
    pub(crate) every: Option<Duration>,
    /// `C`'s version when the run started (or the base version of the resumed rotation).
    pub(crate) version_before: Option<u64>,
    /// The version of `C` this run wrote, or found written by the rotation it resumed.
    pub(crate) version_after: Option<u64>,
    /// When the secret is next due, when known.
    pub(crate) next_due_at: Option<SystemTime>,
    /// The run took over a rotation a crashed (or stopped) run left pending in `S`.
    pub(crate) resumed: bool,
    /// The rotator's per-run context.
    pub(crate) cx: X,
}

impl<X> Run<X> {
    /// A run of `kind` on `name`.
    pub(crate) fn new(
        kind: &'static str,
        name: impl Into<String>,
        every: Option<Duration>,
        fault: Option<FaultHook>,
        cx: X,
    ) -> Self {
        Run {
            kind,
            name: name.into(),
            started: Instant::now(),
            started_at: SystemTime::now(),
            steps: Vec::new(),
            fault,
            every,
            version_before: None,
            version_after: None,
            next_due_at: None,
            resumed: false,
            cx,
        }
    }

    /// Records that `step` ran from `started` until now.
    pub(crate) fn step(&mut self, step: &'static str, started: Instant) {
        self.steps.push(StepTiming {
            step,
            duration: started.elapsed(),
        });
    }

    /// Awaits `fut` as the step `step`.
    pub(crate) async fn timed<T>(&mut self, step: &'static str, fut: impl Future<Output = T>) -> T {
        let t = Instant::now();
        let out = fut.await;
        self.step(step, t);
        out
    }

    /// The fault point `point`: `Err` (the run stops as if the process had died) when the
    /// fault-injection hook says so.
    pub(crate) async fn fault(&self, point: FaultPoint) -> Result<(), Failure> {
        if fault_fires(self.fault.as_ref(), point).await {
            return Err(failed(RotationError::Interrupted(point)));
        }
        Ok(())
    }

    /// The run takes over the pending rotation of epoch `epoch` a crashed run left in `S`.
    pub(crate) fn resuming<P>(&mut self, pending: &Pending<P>) {
        self.resumed = true;
        tracing::info!(name = %self.name, kind = self.kind, epoch = pending.epoch, step = ?pending.step, "resuming an unfinished rotation");
    }

    /// The result of the run, logged once:
    ///
    /// - `version_after` is the version this run committed (or found committed by the
    ///   rotation it resumed), else `version_before`;
    /// - the error is kept for every status but `Success` and `SkippedNotDue`.
    pub(crate) fn finish(self, outcome: Outcome) -> RotationResult {
        let (status, error) = match outcome {
            Ok(status) => (status, None),
            Err((status, error)) => (status, Some(error)),
        };
        let name = &self.name;
        match (&status, &error) {
            (RotationStatus::Success, _) => tracing::info!(
                name = %name,
                kind = self.kind,
                version_before = ?self.version_before,
                version_after = ?self.version_after,
                resumed = self.resumed,
                "rotated"
            ),
            (RotationStatus::SkippedNotDue, _) => {
                tracing::debug!(name = %name, kind = self.kind, "rotation skipped")
            }
            (s, Some(e)) => {
                tracing::warn!(name = %name, kind = self.kind, status = ?s, resumed = self.resumed, error = %e, "rotation did not succeed")
            }
            (s, None) => {
                tracing::warn!(name = %name, kind = self.kind, status = ?s, resumed = self.resumed, "rotation did not succeed")
            }
        }
        RotationResult {
            name: self.name,
            status,
            version_before: self.version_before,
            version_after: self.version_after.or(self.version_before),
            started_at: self.started_at,
            duration: self.started.elapsed(),
            steps: self.steps,
            error,
            next_due_at: self.next_due_at,
            resumed: self.resumed,
        }
    }
}

/// What a rotator finds when it checks a pending rotation read from `S` against its own
/// configuration and `C` (see [`reject_record`]).
pub(crate) enum RecordCheck {
    /// The record is one this rotator could have claimed: it may be resumed.
    Matches,
    /// The record disagrees with the configuration: what disagrees (never a secret).
    Disagrees(String),
    /// The check itself could not be made.
    Failed(Failure),
}

/// The one place where a pending rotation read from `S` that disagrees with the rotator's
/// configuration is decided: it is a [`RotationStatus::Conflict`], noted once in `S`'s
/// history, and nothing acts on it. `remedy` tells a human how to clear it. A conflict the
/// check itself found (`C` disagrees with the configuration) is noted the same way.
pub(crate) async fn reject_record<P, X>(
    run: &mut Run<X>,
    store: &StateStore,
    snap: &Snapshot<P>,
    owner: &str,
    conflict_name: &str,
    check: RecordCheck,
    remedy: &str,
) -> Result<(), Failure>
where
    P: Serialize + DeserializeOwned + Clone,
{
    let (reason, failure) = match check {
        RecordCheck::Matches => return Ok(()),
        RecordCheck::Failed((RotationStatus::Conflict, error)) => {
            (error.to_string(), (RotationStatus::Conflict, error))
        }
        RecordCheck::Failed(failure) => return Err(failure),
        RecordCheck::Disagrees(what) => {
            let epoch = snap.pending().map_or(0, |p| p.epoch);
            let reason = format!(
                "the pending rotation (epoch {epoch}) in the state record does not match this rotator: {what}; nothing was done ({remedy})"
            );
            (reason.clone(), conflict(conflict_name, reason))
        }
    };
    tracing::error!(name = %run.name, kind = run.kind, reason = %reason, "the state record disagrees with the configuration");
    if let Err(e) = store.note_conflict(snap, owner, reason).await {
        tracing::warn!(name = %run.name, error = %e, "could not record the conflict in the state record");
    }
    Err(failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> Run {
        let mut run = Run::new("test", "main-db", None, None, ());
        run.version_before = Some(4);
        run
    }

    #[test]
    fn version_after_is_what_the_run_wrote_else_before() {
        // Nothing written: the credential stays at its version, whatever the status.
        for outcome in [
            Ok(RotationStatus::SkippedNotDue),
            Err(failed(RotationError::Config("x".into()))),
            Err(conflict("main-db", "changed")),
        ] {
            let r = run().finish(outcome);
            assert_eq!(r.version_after, Some(4), "{r:?}");
            assert!(!r.resumed);
        }
        // Written, then stopped before the close: the result still names the new version.
        let mut written = run();
        written.version_after = Some(5);
        let r = written.finish(Err(failed(RotationError::Interrupted(
            FaultPoint::AfterCommit,
        ))));
        assert_eq!((r.version_before, r.version_after), (Some(4), Some(5)));
        assert_eq!(r.status, RotationStatus::Failed);
        assert!(r.error.is_some());
    }

    #[test]
    fn a_resumed_run_says_so_and_errors_are_kept() {
        let mut resumed = run();
        let pending: Pending<()> = serde_json::from_value(serde_json::json!({
            "epoch": 7, "owner": "a",
            "lease_ms": 60000, "base_version": 4, "step": "claimed", "payload": null
        }))
        .expect("a pending record");
        resumed.resuming(&pending);
        resumed.version_after = Some(5);
        let r = resumed.finish(Ok(RotationStatus::Success));
        assert!(r.resumed && r.is_success() && r.error.is_none());
        assert_eq!(r.version_after, Some(5));
        let r = run().finish(Err(conflict("main-db", "a human must look")));
        assert_eq!(r.status, RotationStatus::Conflict);
        assert!(r.error.as_ref().is_some_and(RotationError::is_conflict));
    }

    #[tokio::test]
    async fn a_fault_hook_stops_the_run_at_its_point() {
        let hook: FaultHook =
            std::sync::Arc::new(|p| Box::pin(async move { p == FaultPoint::AfterApply }));
        let run: Run = Run::new("test", "x", None, Some(hook), ());
        assert!(run.fault(FaultPoint::AfterClaim).await.is_ok());
        assert!(matches!(
            run.fault(FaultPoint::AfterApply).await,
            Err((
                RotationStatus::Failed,
                RotationError::Interrupted(FaultPoint::AfterApply)
            ))
        ));
    }
}
