//! What the database rotator's tests share across engines (tests/it/database.rs for PostgreSQL,
//! tests/it/mysql.rs for MariaDB): reading `C` and `S`, the fault hook, result assertions, and
//! the kill-and-resume guarantee written once.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use vault_ops_core::VaultClient;
use vault_ops_rotation::state::{HistoryOutcome, RotationState, StateStore, Step};
use vault_ops_rotation::{
    DatabaseCredentialRotator, FaultHook, FaultPoint, RotationError, RotationResult,
    RotationStatus, Strategy,
};

pub const MOUNT: &str = "secret";

/// The credential in `C`.
pub struct Cred {
    pub version: u64,
    pub created_time: String,
    pub username: String,
    pub password: String,
    pub data: Map<String, Value>,
}

/// Reads `C` of `name` (`secret/database/<name>`).
pub async fn credential(client: &VaultClient, name: &str) -> Cred {
    let secret = client
        .kv2(MOUNT)
        .get_json(&format!("database/{name}"))
        .await
        .expect("read C");
    Cred {
        version: secret.metadata.version,
        created_time: secret.metadata.created_time.clone(),
        username: secret.data["username"]
            .as_str()
            .expect("username")
            .to_string(),
        password: secret.data["password"]
            .as_str()
            .expect("password")
            .to_string(),
        data: secret.data,
    }
}

/// `C`'s current version, `None` when it does not exist.
pub async fn credential_version(client: &VaultClient, name: &str) -> Option<u64> {
    client
        .kv2(MOUNT)
        .read_metadata(&format!("database/{name}"))
        .await
        .expect("metadata")
        .map(|m| m.current_version)
}

/// `S` of `name` and its version (0: never written).
pub async fn state(client: &VaultClient, name: &str) -> (u64, RotationState<Value>) {
    let snap = StateStore::new(client.clone(), MOUNT, "rotation-state/database")
        .load::<Value>(name)
        .await
        .expect("load S");
    (snap.version, snap.state)
}

/// A fault hook that stops the run at `point`.
pub fn stop_at(point: FaultPoint) -> FaultHook {
    Arc::new(move |p| Box::pin(async move { p == point }))
}

pub fn assert_status(r: &RotationResult, status: RotationStatus) {
    assert_eq!(r.status, status, "unexpected result: {r:?}");
}

/// Neither Display nor Debug of the result (and its error) contains any of the secrets.
pub fn assert_no_secret_in(r: &RotationResult, secrets: &[String]) {
    let text = format!(
        "{r:?} {}",
        r.error.as_ref().map(|e| e.to_string()).unwrap_or_default()
    );
    for s in secrets {
        assert!(
            !text.contains(s.as_str()),
            "a password leaked into a result: {text}"
        );
    }
}

/// A Vault and a database server of one engine, as the shared tests need them.
#[allow(async_fn_in_trait)]
pub trait DbFixture {
    fn client(&self) -> &VaultClient;
    /// A rotator with the fixture's secure defaults, claiming as `owner`.
    fn rotator(&self, owner: &str) -> DatabaseCredentialRotator;
    /// Whether a fresh login as `user` with `password` works (`false`: rejected).
    async fn logs_in(&self, user: &str, password: &str) -> bool;

    /// `C` of `name`.
    async fn credential(&self, name: &str) -> Cred {
        credential(self.client(), name).await
    }

    /// `C`'s current version.
    async fn credential_version(&self, name: &str) -> Option<u64> {
        credential_version(self.client(), name).await
    }

    /// `S` of `name` and its version.
    async fn state(&self, name: &str) -> (u64, RotationState<Value>) {
        state(self.client(), name).await
    }

    async fn assert_logs_in(&self, cred: &Cred) {
        assert!(
            self.logs_in(&cred.username, &cred.password).await,
            "the credential in C (version {}) must log in as {:?}",
            cred.version,
            cred.username
        );
    }
}

/// One rotation of [alternating users](Strategy::alternating_users) of `name`, after the
/// credentials in `creds` (oldest first; the new one is pushed): the user alternates, the new
/// credential logs in, the previous one still does (a whole period), and the one from two
/// rotations ago — the same user — no longer does.
pub async fn alternating_round(
    fx: &impl DbFixture,
    rotator: &DatabaseCredentialRotator,
    name: &str,
    creds: &mut Vec<Cred>,
) {
    let round = creds.len();
    let r = rotator.rotate(name).await;
    assert_status(&r, RotationStatus::Success);
    let cur = credential(fx.client(), name).await;
    let prev = creds.last().expect("a first credential");
    assert_ne!(
        cur.username, prev.username,
        "round {round}: the user alternates"
    );
    fx.assert_logs_in(&cur).await;
    assert!(
        fx.logs_in(&prev.username, &prev.password).await,
        "round {round}: the previous credential stays valid for a whole period"
    );
    if creds.len() >= 2 {
        let old = &creds[creds.len() - 2];
        assert_eq!(old.username, cur.username);
        assert!(
            !fx.logs_in(&old.username, &old.password).await,
            "round {round}: the password of two rotations ago is gone"
        );
    }
    creds.push(cur);
}

/// The kill-and-resume guarantee: a run stopped at every step boundary (the same stable
/// owner id as the run that resumes it, like a restarted process) is finished by the next
/// run with exactly one new version of `C`, the recorded password, no new epoch, `S` idle.
/// `user` must exist. Returns every password `C` held.
pub async fn crash_at_every_boundary_then_resume(
    fx: &impl DbFixture,
    user: &str,
    name: &str,
) -> Vec<String> {
    let client = fx.client();
    let base = fx
        .rotator("bootstrap")
        .strategy(Strategy::single_user(user));
    assert_status(&base.rotate(name).await, RotationStatus::Success);
    let mut passwords = vec![credential(client, name).await.password];

    let points = [
        FaultPoint::AfterClaim,
        FaultPoint::AfterApply,
        FaultPoint::AfterVerify,
        FaultPoint::AfterCommit,
        FaultPoint::AfterClose,
    ];
    for (i, point) in points.into_iter().enumerate() {
        let before = credential(client, name).await;
        let (_, s_before) = state(client, name).await;
        let owner = format!("replica-{i}");
        let crashing = fx
            .rotator(&owner)
            .strategy(Strategy::single_user(user))
            .fault_hook(stop_at(point));
        let r = crashing.rotate(name).await;
        assert_status(&r, RotationStatus::Failed);
        assert!(
            matches!(r.error, Some(RotationError::Interrupted(p)) if p == point),
            "{:?}",
            r.error
        );

        let (_, s_mid) = state(client, name).await;
        let c_mid = credential(client, name).await;
        if point == FaultPoint::AfterClose {
            assert!(s_mid.pending().is_none());
            assert_eq!(c_mid.version, before.version + 1);
        } else {
            let p = s_mid.pending().expect("pending after a crash");
            assert_eq!(p.epoch, s_before.epoch + 1);
            let expected_step = match point {
                FaultPoint::AfterClaim | FaultPoint::AfterApply => Step::Claimed,
                _ => Step::Applied,
            };
            assert_eq!(p.step, expected_step, "{point:?}");
            let expected_c = if point == FaultPoint::AfterCommit {
                before.version + 1
            } else {
                before.version
            };
            assert_eq!(c_mid.version, expected_c);
        }
        // The credential in C works at every boundary except between apply and commit,
        // where the database already has the pending password (which S holds).
        let pending_password = s_mid
            .pending()
            .map(|p| p.payload["password"].as_str().unwrap().to_string());
        let c_works = fx.logs_in(&c_mid.username, &c_mid.password).await;
        match point {
            FaultPoint::AfterClaim | FaultPoint::AfterCommit | FaultPoint::AfterClose => {
                assert!(c_works, "{point:?}")
            }
            _ => {
                assert!(!c_works, "{point:?}");
                assert!(fx.logs_in(user, pending_password.as_deref().unwrap()).await);
            }
        }

        let resumer = fx.rotator(&owner).strategy(Strategy::single_user(user));
        let resumed = resumer.rotate_if_due(name, Duration::from_secs(3600)).await;
        let expected = if point == FaultPoint::AfterClose {
            RotationStatus::SkippedNotDue
        } else {
            RotationStatus::Success
        };
        assert_status(&resumed, expected);
        // Every boundary but the last leaves S pending: the next run says it resumed it.
        assert_eq!(
            resumed.resumed,
            point != FaultPoint::AfterClose,
            "{point:?}: {resumed:?}"
        );

        let after = credential(client, name).await;
        assert_eq!(
            after.version,
            before.version + 1,
            "exactly one new version for {point:?}"
        );
        assert!(
            fx.logs_in(&after.username, &after.password).await,
            "{point:?}"
        );
        assert!(!fx.logs_in(user, &before.password).await, "{point:?}");
        if let Some(p) = pending_password {
            assert_eq!(
                after.password, p,
                "the resume finishes the recorded rotation"
            );
        }
        let (_, s_after) = state(client, name).await;
        assert!(s_after.pending().is_none());
        assert_eq!(s_after.epoch, s_before.epoch + 1, "no new epoch on resume");
        assert_eq!(s_after.rotations, s_before.rotations + 1);
        assert_eq!(s_after.credential_version, Some(after.version));
        assert_eq!(
            s_after.last_rotated_at.as_deref(),
            Some(after.created_time.as_str())
        );
        let last = s_after.history.last().unwrap();
        assert_eq!(last.outcome, HistoryOutcome::Rotated);
        assert_eq!(last.credential_version, Some(after.version));
        assert_eq!(last.epoch, s_after.epoch);
        passwords.push(after.password);
    }
    let (_, state) = state(client, name).await;
    assert_eq!(state.rotations, 6);
    assert!(state
        .history
        .iter()
        .all(|h| h.outcome == HistoryOutcome::Rotated));
    passwords
}
