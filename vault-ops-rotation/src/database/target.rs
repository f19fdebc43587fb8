//! The database rotator as a [`Target`] of the driver: which role, which password, and the
//! side effects on the server through its [`Engine`](super::engine::Engine) — set the password, log in to check it,
//! set it back. No claim, commit or close here: the driver owns them.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};
use vault_ops_core::VaultClient;
use vault_ops_core::{ExposeSecret, Password};

use super::engine::{AdminSession, Probe, ProbeError, SqlFailure};
use super::password::policy_allows;
use super::{DatabaseCredentialRotator, DbPending, Strategy};
use crate::protocol::driver::{
    Applied, ApplyError, Credential, KeepVersions, Prepared, ResumeFrom, Subject, Target, Verified,
};
use crate::protocol::{failed, Failure, RecordCheck, Run};
use crate::rotator::RotationStatus;
use crate::state::{self, Claim, ClaimOptions, HistoryOutcome, Pending, StateStore};
use crate::{FaultHook, RotationError};

/// The database target's part of a [`Run`]: its admin session, opened once per run.
pub(crate) struct DbCx {
    admin: Option<Box<dyn AdminSession>>,
}

/// A run of the database rotator.
type DbRun = Run<DbCx>;

/// The credential in `C` (checked by [`Target::check_credential`]).
struct Current {
    version: u64,
    username: String,
    password: Password,
}

impl Current {
    fn of(c: &Credential) -> Option<Current> {
        Some(Current {
            version: c.version,
            username: nonempty(&c.data, "username")?.to_string(),
            password: Password::new(nonempty(&c.data, "password")?),
        })
    }
}

fn nonempty<'a>(data: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    data.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

#[async_trait]
impl Target for DatabaseCredentialRotator {
    type Payload = DbPending;
    type Cx = DbCx;

    fn kind(&self) -> &'static str {
        "database credential"
    }

    fn new_cx(&self) -> DbCx {
        DbCx { admin: None }
    }

    fn client(&self) -> &VaultClient {
        &self.client
    }

    fn mount(&self) -> &str {
        &self.mount
    }

    fn store(&self) -> StateStore {
        self.state_store()
    }

    fn claim_options(&self) -> ClaimOptions {
        ClaimOptions::new(self.owner.clone(), self.lease)
    }

    fn fault_hook(&self) -> Option<FaultHook> {
        self.fault.clone()
    }

    fn keep_versions(&self) -> KeepVersions {
        KeepVersions {
            at_least: 2,
            raise_to: self.credential_max_versions,
            when_unset: self.credential_max_versions,
        }
    }

    fn remedy(&self) -> &'static str {
        "fix or delete the state record after checking it"
    }

    fn conflict_recheck(&self) -> Duration {
        self.conflict_recheck
    }

    fn subject(&self, name: &str) -> Result<Subject, RotationError> {
        let name = name.trim_matches('/');
        if name.is_empty() {
            return Err(RotationError::Config("the credential name is empty".into()));
        }
        self.policy.validate()?;
        self.server.check_transport()?;
        Ok(Subject {
            name: name.to_string(),
            key: name.to_string(),
            path: self.credential_path(name),
        })
    }

    fn check_credential(&self, subject: &Subject, c: &Credential) -> Result<(), RotationError> {
        let invalid = |reason: &str| RotationError::InvalidCredential {
            path: format!("{}/{}", self.mount, subject.path),
            reason: reason.to_string(),
        };
        if nonempty(&c.data, "username").is_none() {
            return Err(invalid("it has no non-empty string \"username\""));
        }
        if nonempty(&c.data, "password").is_none() {
            return Err(invalid("it has no non-empty string \"password\""));
        }
        Ok(())
    }

    fn holds(&self, data: &Map<String, Value>, payload: &DbPending) -> bool {
        nonempty(data, "username") == Some(payload.username.as_str())
            && nonempty(data, "password") == Some(payload.password.expose_secret())
    }

    /// `C`'s new data: the old keys, the new username and password; host, port and database
    /// from the settings when missing. `C`'s username comes from the configuration (and
    /// `C`), never from `S`.
    fn commit_data(
        &self,
        subject: &Subject,
        current: Option<&Credential>,
        payload: &DbPending,
    ) -> Result<Map<String, Value>, Failure> {
        let username =
            self.target_username(&subject.key, current.and_then(Current::of).as_ref())?;
        if username != payload.username {
            return Err((
                RotationStatus::Conflict,
                RotationError::Conflict {
                    name: subject.key.clone(),
                    reason: format!(
                        "the pending rotation changes role {:?}, but the credential is for {username:?}; not committed",
                        payload.username
                    ),
                },
            ));
        }
        let mut data = current.map(|c| c.data.clone()).unwrap_or_default();
        data.insert("username".into(), Value::String(username));
        data.insert(
            "password".into(),
            Value::String(payload.password.expose_secret().to_string()),
        );
        data.entry("host")
            .or_insert_with(|| Value::String(self.server.host.clone()));
        data.entry("port")
            .or_insert_with(|| Value::String(self.server.port.to_string()));
        if !self.server.database.is_empty() {
            data.entry("database")
                .or_insert_with(|| Value::String(self.server.database.clone()));
        }
        Ok(data)
    }

    /// Checks a pending rotation read from `S` against the configuration and `C` (read
    /// before the takeover) before anything acts on it: a record that disagrees is a
    /// conflict, never resumed.
    ///
    /// - While `C` is still at the rotation's base version, the role must be the one this
    ///   rotator would change now ([`Strategy`], or the user in `C` without one), the
    ///   pending password must have the form of the [`PasswordPolicy`](super::PasswordPolicy),
    ///   and a recorded rollback password must be the one this rotator would restore (from `C`).
    /// - When `C` has moved on, nothing is applied to the database any more (the commit
    ///   landed, or it is a conflict); the role must still be one the strategy manages.
    async fn check_pending(
        &self,
        _run: &mut DbRun,
        subject: &Subject,
        pending: &Pending<DbPending>,
        current: Option<&Credential>,
    ) -> RecordCheck {
        let current = current.and_then(Current::of);
        let current = current.as_ref();
        let payload = &pending.payload;
        let base = pending.base_version;
        let mismatch = RecordCheck::Disagrees;
        let at_base = match current {
            Some(c) => c.version == base,
            None => base == 0,
        };
        if !at_base {
            let managed = match &self.strategy {
                Some(Strategy::SingleUser { username }) => &payload.username == username,
                Some(Strategy::AlternatingUsers { a, b }) => {
                    &payload.username == a || &payload.username == b
                }
                None => current.is_some_and(|c| c.username == payload.username),
            };
            if !managed {
                return mismatch(format!(
                    "it names role {:?}, which this rotator does not manage",
                    payload.username
                ));
            }
            return RecordCheck::Matches;
        }
        let expected = match self.target_username(&subject.key, current) {
            Ok(expected) => expected,
            Err(failure) => return RecordCheck::Failed(failure),
        };
        if payload.username != expected {
            return mismatch(format!(
                "it names role {:?}, but this rotator changes {expected:?}",
                payload.username
            ));
        }
        if !policy_allows(&self.policy, &payload.password) {
            return mismatch("its password does not have the form of the password policy".into());
        }
        if let Some(recorded) = &payload.rollback_password {
            let restore = self.rollback_password(subject, &expected, current).await;
            if restore.is_none_or(|r| r.expose_secret() != recorded.expose_secret()) {
                return mismatch(format!(
                    "its rollback password is not the password of {expected:?} in the credential"
                ));
            }
        }
        RecordCheck::Matches
    }

    /// Before claiming: the role to change, the admin can connect, the role exists, `C`
    /// still logs in; then a new password from the policy and the one to roll back to.
    async fn prepare(
        &self,
        run: &mut DbRun,
        subject: &Subject,
        current: Option<&Credential>,
    ) -> Result<Prepared<DbPending>, Failure> {
        let current = current.and_then(Current::of);
        let username = self.target_username(&subject.key, current.as_ref())?;
        let t = std::time::Instant::now();
        let checked = self.precheck(run, &username, current.as_ref()).await;
        run.step("check", t);
        if let (Some(message), Some(c)) = (checked?, &current) {
            return Ok(Prepared::Rejected(format!(
                "does not log in as {:?} ({message})",
                c.username
            )));
        }
        let rollback_password = self
            .rollback_password(subject, &username, current.as_ref())
            .await;
        let password = self.policy.generate().map_err(failed)?;
        Ok(Prepared::Claim(DbPending {
            username,
            password,
            rollback_password,
        }))
    }

    async fn still_rejected(&self, run: &mut DbRun, c: &Credential) -> Result<bool, Failure> {
        let Some(c) = Current::of(c) else {
            return Ok(true);
        };
        let probe = self.timed_probe(run, &c.username, &c.password).await;
        match probe {
            Probe::Rejected(_) => Ok(true),
            Probe::Works => Ok(false),
            Probe::Error(e) => Err(failed(e.into_error("log in with the current credential"))),
        }
    }

    /// `ALTER ROLE` (through the engine). A lost reply is resolved by logging in with the
    /// new password.
    async fn apply(
        &self,
        run: &mut DbRun,
        _subject: &Subject,
        claim: &Claim<DbPending>,
    ) -> Result<Applied<DbPending>, ApplyError> {
        let payload = claim.payload();
        let t = std::time::Instant::now();
        let applied = self
            .alter_password(run, &payload.username, &payload.password)
            .await;
        run.step("apply", t);
        match applied {
            Ok(()) => Ok(Applied::Done),
            // The server refused or was never reached: nothing changed.
            Err(SqlFailure::Definite(error)) => Err(ApplyError::NotApplied(error)),
            // The statement may still be waiting on the server (a lock) and land later:
            // leave `S` pending so that whatever lands is the recorded password, and the
            // next run probes and resumes.
            Err(SqlFailure::TimedOut(error)) => Err(ApplyError::Unknown(error)),
            Err(SqlFailure::Unknown(error)) => {
                // The reply was lost: probe instead of guessing.
                let probe = self
                    .timed_probe(run, &payload.username, &payload.password)
                    .await;
                match probe {
                    Probe::Works => Ok(Applied::Done),
                    Probe::Rejected(_) => Err(ApplyError::NotApplied(error)),
                    Probe::Error(_) => Err(ApplyError::Unknown(error)),
                }
            }
        }
    }

    /// A fresh login with the new password plus the verification query.
    async fn verify(&self, run: &mut DbRun, claim: &Claim<DbPending>) -> Verified {
        let payload = claim.payload();
        let username = payload.username.clone();
        let verified = run
            .timed(
                "verify",
                self.probe(&username, &payload.password, Some(&self.verify_query)),
            )
            .await;
        match verified {
            Probe::Works => Verified::Works,
            Probe::Rejected(message)
            | Probe::Error(ProbeError {
                message,
                server_answered: true,
                ..
            }) => Verified::Failed(RotationError::VerificationFailed { username, message }),
            Probe::Error(e) => Verified::Unknown(e.into_error("verify")),
        }
    }

    /// Sets the role back to the password in `C`.
    async fn roll_back(
        &self,
        run: &mut DbRun,
        claim: &Claim<DbPending>,
    ) -> Result<HistoryOutcome, RotationError> {
        match claim.payload().rollback_password.clone() {
            Some(old) => self
                .alter_password(run, &claim.payload().username, &old)
                .await
                .map(|()| HistoryOutcome::RolledBack)
                .map_err(SqlFailure::into_error),
            // Alternating users: the role is not the one in `C`, which still works.
            None if claim.pending().base_version != 0 => Ok(HistoryOutcome::RolledBack),
            // Bootstrap: there is nothing to go back to.
            None => Ok(HistoryOutcome::Failed),
        }
    }

    /// Was the pending password applied? Probes: pending first, then the one in `C`.
    async fn resume_from(
        &self,
        run: &mut DbRun,
        subject: &Subject,
        claim: &Claim<DbPending>,
        current: Option<&Credential>,
    ) -> Result<ResumeFrom, Failure> {
        let payload = claim.payload();
        if claim.pending().step == state::Step::RollingBack {
            return Ok(ResumeFrom::RollBack(RotationError::VerificationFailed {
                username: payload.username.clone(),
                message: "an earlier run's verification failed; finishing its rollback".into(),
            }));
        }
        let pending_probe = self
            .timed_probe(run, &payload.username, &payload.password)
            .await;
        match pending_probe {
            Probe::Works => Ok(ResumeFrom::Verify),
            Probe::Rejected(_) => {
                // Not applied (or undone): check that the credential in `C` still works.
                let Some(c) = current.and_then(Current::of) else {
                    return Ok(ResumeFrom::Apply);
                };
                let probe = self.timed_probe(run, &c.username, &c.password).await;
                match probe {
                    Probe::Works => Ok(ResumeFrom::Apply),
                    Probe::Rejected(message) => Ok(ResumeFrom::Conflict(format!(
                        "neither the pending password nor the one in {}/{} logs in as {:?} ({message}): the password was changed outside the rotation",
                        self.mount, subject.path, c.username
                    ))),
                    Probe::Error(e) => Err(failed(e.into_error("probe"))),
                }
            }
            Probe::Error(e) => Err(failed(e.into_error("probe"))),
        }
    }

    /// `C`'s credential logs in.
    async fn drops_pending(&self, run: &mut DbRun, c: Option<&Credential>) -> bool {
        let Some(c) = c.and_then(Current::of) else {
            return false;
        };
        let probe = self.timed_probe(run, &c.username, &c.password).await;
        matches!(probe, Probe::Works)
    }
}

impl DatabaseCredentialRotator {
    /// Which role this rotation changes.
    fn target_username(&self, name: &str, current: Option<&Current>) -> Result<String, Failure> {
        let conflict = |reason: String| {
            Err((
                RotationStatus::Conflict,
                RotationError::Conflict {
                    name: name.to_string(),
                    reason,
                },
            ))
        };
        match (&self.strategy, current) {
            (None, Some(c)) => Ok(c.username.clone()),
            (None, None) => Err(failed(RotationError::Config(format!(
                "{}/{} does not exist and no strategy names the role to create it for",
                self.mount,
                self.credential_path(name)
            )))),
            (Some(Strategy::SingleUser { username }), None) => Ok(username.clone()),
            (Some(Strategy::SingleUser { username }), Some(c)) if &c.username == username => {
                Ok(username.clone())
            }
            (Some(Strategy::SingleUser { username }), Some(c)) => conflict(format!(
                "the credential names role {:?}, but the rotator manages {username:?}",
                c.username
            )),
            (Some(Strategy::AlternatingUsers { a, .. }), None) => Ok(a.clone()),
            (Some(Strategy::AlternatingUsers { a, b }), Some(c)) if &c.username == a => {
                Ok(b.clone())
            }
            (Some(Strategy::AlternatingUsers { a, b }), Some(c)) if &c.username == b => {
                Ok(a.clone())
            }
            (Some(Strategy::AlternatingUsers { a, b }), Some(c)) => conflict(format!(
                "the credential names role {:?}, which is neither {a:?} nor {b:?}",
                c.username
            )),
        }
    }

    /// Before claiming: the admin can connect, the role exists, `C` still logs in. `Some`:
    /// the server's message when it rejected `C`'s credential (judged by the driver).
    async fn precheck(
        &self,
        run: &mut DbRun,
        username: &str,
        current: Option<&Current>,
    ) -> Result<Option<String>, Failure> {
        let admin = self.admin(run).await.map_err(failed)?;
        let exists = match admin.user_exists(username).await {
            Ok(exists) => exists,
            Err(e) => {
                if !matches!(e, SqlFailure::Definite(_)) {
                    run.cx.admin = None;
                }
                return Err(failed(e.into_error()));
            }
        };
        if !exists {
            return Err(failed(RotationError::RoleMissing {
                username: username.to_string(),
            }));
        }
        let Some(c) = current else {
            return Ok(None);
        };
        match self.probe(&c.username, &c.password, None).await {
            Probe::Works => Ok(None),
            Probe::Rejected(message) => Ok(Some(message)),
            Probe::Error(e) => Err(failed(e.into_error("log in with the current credential"))),
        }
    }

    /// The password to restore when verification fails: `C`'s for the same role; for
    /// alternating users the previous version's, when that named the target role.
    async fn rollback_password(
        &self,
        subject: &Subject,
        username: &str,
        current: Option<&Current>,
    ) -> Option<Password> {
        let c = current?;
        if c.username == username {
            return Some(c.password.clone());
        }
        if c.version < 2 {
            return None;
        }
        let prev = self
            .client
            .kv2(&self.mount)
            .get_version::<Map<String, Value>>(&subject.path, c.version - 1)
            .await
            .ok()?;
        match (
            nonempty(&prev.data, "username"),
            nonempty(&prev.data, "password"),
        ) {
            (Some(u), Some(p)) if u == username => Some(Password::new(p)),
            _ => None,
        }
    }

    /// Logs in as `user` with `password` (see [`Engine::login`](super::engine::Engine::login)).
    async fn probe(&self, user: &str, password: &Password, query: Option<&str>) -> Probe {
        self.engine.login(&self.server, user, password, query).await
    }

    /// [`probe`](Self::probe) with the default query, timed as the step `probe`.
    async fn timed_probe(&self, run: &mut DbRun, user: &str, password: &Password) -> Probe {
        run.timed("probe", self.probe(user, password, None)).await
    }

    /// The run's admin session (opened once, and again after it broke).
    async fn admin<'r>(
        &self,
        run: &'r mut DbRun,
    ) -> Result<&'r mut (dyn AdminSession + 'static), RotationError> {
        if run.cx.admin.as_ref().is_some_and(|s| s.is_closed()) {
            run.cx.admin = None;
        }
        let session = match run.cx.admin.take() {
            Some(session) => session,
            None => self.engine.connect_admin(&self.server).await?,
        };
        Ok(run.cx.admin.insert(session).as_mut())
    }

    /// Sets `username`'s password as the admin; a session whose statement may still be in
    /// flight (or broke) is dropped.
    async fn alter_password(
        &self,
        run: &mut DbRun,
        username: &str,
        password: &Password,
    ) -> Result<(), SqlFailure> {
        let admin = self.admin(run).await.map_err(SqlFailure::Definite)?;
        let set = admin.set_password(username, password).await;
        if matches!(set, Err(SqlFailure::Unknown(_) | SqlFailure::TimedOut(_))) {
            run.cx.admin = None;
        }
        set
    }
}
