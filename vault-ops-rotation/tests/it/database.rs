//! DatabaseCredentialRotator against a real PostgreSQL (SCRAM-SHA-256, `log_statement=all`)
//! and a real OpenBao dev server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use postgres_protocol::escape::{escape_identifier, escape_literal};
use serde_json::{json, Value};
use vault_ops_core::{SecretString, VaultClient};
use vault_ops_rotation::state::{HistoryOutcome, StateStore, Step};
use vault_ops_rotation::{
    DatabaseCredentialRotator, FaultHook, FaultPoint, PasswordPolicy, RotationError,
    RotationResult, RotationStatus, Rotator, Strategy, TlsMode,
};
use vault_ops_testkit::{BaoServer, PgCluster};

use crate::common;
use common::db::{self, assert_no_secret_in, assert_status, stop_at, DbFixture, MOUNT};
use common::{Proxy, ProxyMode};

struct Env {
    bao: BaoServer,
    pg: Arc<PgCluster>,
    client: VaultClient,
}

async fn env() -> Env {
    let (bao, pg) = tokio::join!(BaoServer::start(), PgCluster::start());
    let client = common::ready_client(&bao).await;
    Env {
        bao,
        pg: Arc::new(pg),
        client,
    }
}

impl Env {
    fn rotator_with(&self, client: VaultClient, owner: &str) -> DatabaseCredentialRotator {
        DatabaseCredentialRotator::new(
            client,
            self.pg.host(),
            self.pg.superuser(),
            SecretString::from(self.pg.superuser_password().to_string()),
        )
        .port(self.pg.port())
        // The secure default: verified TLS (the cluster's own CA), SCRAM only.
        .tls_ca_pem(self.pg.ca_pem())
        .connect_timeout(Duration::from_secs(5))
        .owner(owner)
    }

    async fn superuser(&self) -> tokio_postgres::Client {
        connect(&self.pg, self.pg.superuser(), self.pg.superuser_password())
            .await
            .expect("superuser login")
    }

    async fn sql(&self, statement: &str) {
        self.superuser()
            .await
            .batch_execute(statement)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{statement}: {e} {:?}",
                    e.as_db_error().map(|d| d.message())
                )
            });
    }

    /// Creates a login role with a random password nobody keeps (set as a SCRAM verifier).
    async fn create_role(&self, name: &str) {
        let verifier = postgres_protocol::password::scram_sha_256(b"initial-unknown-password");
        self.sql(&format!(
            "CREATE ROLE {} LOGIN PASSWORD {}",
            escape_identifier(name),
            escape_literal(&verifier)
        ))
        .await;
    }

    /// No password in the server log; `pg.log()` is non-empty and shows the ALTER ROLE
    /// statements (with verifiers only).
    fn assert_not_in_pg_log(&self, passwords: &[String]) {
        let log = self.pg.log();
        assert!(
            log.contains("ALTER ROLE"),
            "log_statement=all must show the ALTER ROLE statements"
        );
        assert!(
            log.contains("SCRAM-SHA-256$4096:"),
            "the log shows verifiers"
        );
        for p in passwords {
            assert!(p.len() >= 16);
            assert!(
                !log.contains(p.as_str()),
                "a password leaked into the PostgreSQL log"
            );
        }
    }
}

impl DbFixture for Env {
    fn client(&self) -> &VaultClient {
        &self.client
    }

    fn rotator(&self, owner: &str) -> DatabaseCredentialRotator {
        self.rotator_with(self.client.clone(), owner)
    }

    async fn logs_in(&self, user: &str, password: &str) -> bool {
        match connect(&self.pg, user, password).await {
            Ok(c) => c.simple_query("SELECT 1").await.is_ok(),
            Err(_) => false,
        }
    }
}

async fn connect(
    pg: &PgCluster,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(pg.host())
        .port(pg.port())
        .user(user)
        .password(password)
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(5));
    let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

#[tokio::test]
async fn bootstrap_then_rotate_single_user() {
    let env = env().await;
    env.create_role("app").await;
    let rotator = env.rotator("r1").strategy(Strategy::single_user("app"));
    assert_eq!(env.credential_version("main-db").await, None);

    let first = rotator.rotate("main-db").await;
    assert_status(&first, RotationStatus::Success);
    assert_eq!(first.version_before, None);
    assert_eq!(first.version_after, Some(1));
    assert!(!first.resumed, "a fresh rotation resumed nothing");
    let steps: Vec<&str> = first.steps.iter().map(|s| s.step).collect();
    for step in [
        "load", "read", "check", "claim", "apply", "verify", "commit", "close",
    ] {
        assert!(steps.contains(&step), "missing step {step} in {steps:?}");
    }
    let c1 = env.credential("main-db").await;
    assert_eq!(c1.version, 1);
    assert_eq!(c1.username, "app");
    assert_eq!(c1.password.len(), 32);
    assert!(c1.password.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(c1.data["host"], json!("127.0.0.1"));
    assert_eq!(c1.data["port"], json!(env.pg.port().to_string()));
    assert_eq!(c1.data["database"], json!("postgres"));
    env.assert_logs_in(&c1).await;
    assert!(!env.logs_in("app", "initial-unknown-password").await);

    let meta = env
        .client
        .kv2(MOUNT)
        .read_metadata("database/main-db")
        .await
        .unwrap()
        .unwrap();
    assert!(meta.cas_required);
    assert!(meta.max_versions >= 2);
    let s_meta = env
        .client
        .kv2(MOUNT)
        .read_metadata("rotation-state/database/main-db")
        .await
        .unwrap()
        .unwrap();
    assert!(s_meta.cas_required);

    // Extra keys in C survive; host/port/database are not overwritten.
    env.client
        .kv2(MOUNT)
        .put_cas(
            "database/main-db",
            &json!({"username": "app", "password": c1.password, "host": "pooler.internal", "port": "6432", "database": "postgres", "sslmode": "disable"}),
            1,
        )
        .await
        .unwrap();

    let second = rotator.rotate("main-db").await;
    assert_status(&second, RotationStatus::Success);
    assert_eq!(second.version_before, Some(2));
    assert_eq!(second.version_after, Some(3));
    let c3 = env.credential("main-db").await;
    assert_ne!(c3.password, c1.password);
    assert_eq!(c3.data["host"], json!("pooler.internal"));
    assert_eq!(c3.data["sslmode"], json!("disable"));
    env.assert_logs_in(&c3).await;
    assert!(
        !env.logs_in("app", &c1.password).await,
        "the old password must be gone"
    );
    // The previous version stays readable.
    let prev = env
        .client
        .kv2(MOUNT)
        .get_version::<Value>("database/main-db", 2)
        .await
        .unwrap();
    assert_eq!(prev.data["password"], json!(c1.password));

    let (_, state) = env.state("main-db").await;
    assert!(state.pending().is_none());
    assert_eq!(state.rotations, 2);
    assert_eq!(state.credential_version, Some(3));
    assert_eq!(
        state.last_rotated_at.as_deref(),
        Some(c3.created_time.as_str())
    );
    let outcomes: Vec<_> = state
        .history
        .iter()
        .map(|h| (h.outcome, h.credential_version))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (HistoryOutcome::Rotated, Some(1)),
            (HistoryOutcome::Rotated, Some(3))
        ]
    );
    assert_eq!(state.history[0].epoch, 1);
    assert_eq!(state.history[1].epoch, 2);
    assert!(state.last_error.is_none());

    let passwords = vec![c1.password.clone(), c3.password.clone()];
    assert_no_secret_in(&first, &passwords);
    assert_no_secret_in(&second, &passwords);
    assert!(!format!("{rotator:?}").contains(env.pg.superuser_password()));
    env.assert_not_in_pg_log(&passwords);
}

#[tokio::test]
async fn rotate_if_due_uses_vault_time() {
    let env = env().await;
    env.create_role("app").await;
    let rotator = env.rotator("r1").strategy(Strategy::single_user("app"));
    let hour = Duration::from_secs(3600);

    let first = rotator.rotate_if_due("due-db", hour).await;
    assert_status(&first, RotationStatus::Success);
    let c1 = env.credential("due-db").await;
    let rotated_at =
        vault_ops_rotation::state::vault_time::parse_rfc3339(&c1.created_time).unwrap();
    assert_eq!(first.next_due_at, Some(rotated_at + hour));

    let second = rotator.rotate_if_due("due-db", hour).await;
    assert_status(&second, RotationStatus::SkippedNotDue);
    assert!(second.error.is_none());
    assert_eq!(second.next_due_at, Some(rotated_at + hour));
    assert_eq!(env.credential("due-db").await.version, 1);
    let (_, state) = env.state("due-db").await;
    assert_eq!(state.next_due_time(), Some(rotated_at + hour));
    assert_eq!(state.period_ms, Some(3_600_000));

    // A one-second period is due within ~2 s (Vault's Date header has second resolution).
    let mut rotated = false;
    for _ in 0..8 {
        let r = rotator
            .rotate_if_due("due-db", Duration::from_secs(1))
            .await;
        match r.status {
            RotationStatus::Success => {
                rotated = true;
                break;
            }
            RotationStatus::SkippedNotDue => tokio::time::sleep(Duration::from_millis(400)).await,
            _ => panic!("unexpected {r:?}"),
        }
    }
    assert!(rotated, "a one-second period must become due");
    assert_eq!(env.credential("due-db").await.version, 2);
    // ... and not twice.
    let again = rotator.rotate_if_due("due-db", hour).await;
    assert_status(&again, RotationStatus::SkippedNotDue);
}

#[tokio::test]
async fn concurrent_replicas_rotate_once() {
    let env = env().await;
    env.create_role("app").await;
    let a = env
        .rotator("replica-a")
        .strategy(Strategy::single_user("app"));
    let b = env
        .rotator("replica-b")
        .strategy(Strategy::single_user("app"));
    let c = env
        .rotator("replica-c")
        .strategy(Strategy::single_user("app"));
    assert_status(&a.rotate("race-db").await, RotationStatus::Success);
    let every = Duration::from_millis(1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (ra, rb, rc) = tokio::join!(
        a.rotate_if_due("race-db", every),
        b.rotate_if_due("race-db", every),
        c.rotate_if_due("race-db", every)
    );
    let statuses = [ra.status, rb.status, rc.status];
    let _as_trait: &dyn Rotator = &a;
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == RotationStatus::Success)
            .count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == RotationStatus::SkippedNotDue)
            .count(),
        2,
        "{statuses:?}"
    );
    let cred = env.credential("race-db").await;
    assert_eq!(cred.version, 2);
    env.assert_logs_in(&cred).await;
    let (_, state) = env.state("race-db").await;
    assert_eq!(state.rotations, 2);
}

/// Runs `x.rotate_if_due(name, every)` with a hook that holds it at
/// [`FaultPoint::AfterRead`] (it has read `S` and `C`, nothing more) until `meanwhile` has
/// finished; returns both results. Bounded: 20 s for X to get there, 30 s to finish.
async fn while_paused_after_read<T>(
    x: &DatabaseCredentialRotator,
    name: &str,
    every: Duration,
    meanwhile: impl std::future::Future<Output = T>,
) -> (RotationResult, T) {
    let (read_tx, read_rx) = tokio::sync::oneshot::channel::<()>();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let parts = Arc::new(Mutex::new(Some((read_tx, go_rx))));
    let hook: FaultHook = Arc::new(move |p| {
        let parts = parts.clone();
        Box::pin(async move {
            let taken = match p {
                FaultPoint::AfterRead => parts.lock().unwrap().take(),
                _ => None,
            };
            if let Some((read, go)) = taken {
                let _ = read.send(());
                let _ = tokio::time::timeout(Duration::from_secs(20), go).await;
            }
            false
        })
    });
    let (x, name) = (x.clone().fault_hook(hook), name.to_string());
    let paused = tokio::spawn(async move { x.rotate_if_due(&name, every).await });
    tokio::time::timeout(Duration::from_secs(20), read_rx)
        .await
        .expect("X reached AfterRead in time")
        .expect("X's hook signals");
    let other = meanwhile.await;
    go_tx.send(()).expect("X is waiting");
    let x_result = tokio::time::timeout(Duration::from_secs(30), paused)
        .await
        .expect("X finishes in time")
        .expect("X did not panic");
    (x_result, other)
}

/// Two replicas wake at the same due time; X reads `S` (idle) and `C`, then Y claims, changes
/// the password and commits before X logs in with the old credential. X must stand back, not
/// report (or record) an out-of-band change.
#[tokio::test]
async fn a_replica_that_read_idle_state_stands_back_when_another_rotates_meanwhile() {
    let env = env().await;
    env.create_role("app").await;
    let y = env
        .rotator("replica-y")
        .strategy(Strategy::single_user("app"));
    let x = env
        .rotator("replica-x")
        .strategy(Strategy::single_user("app"))
        .conflict_recheck(Duration::from_millis(200));
    assert_status(&y.rotate("race2-db").await, RotationStatus::Success);
    let old = env.credential("race2-db").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let every = Duration::from_millis(1);

    // 1. Y finishes a whole rotation while X is paused after its reads.
    let (rx, ry) = while_paused_after_read(&x, "race2-db", every, async {
        let ry = y.rotate_if_due("race2-db", every).await;
        assert!(
            !env.logs_in("app", &old.password).await,
            "the credential X read no longer logs in"
        );
        ry
    })
    .await;
    assert_status(&ry, RotationStatus::Success);
    assert_status(&rx, RotationStatus::SkippedNotDue);
    assert!(rx.error.is_none(), "{:?}", rx.error);
    let new = env.credential("race2-db").await;
    assert_eq!(new.version, old.version + 1, "exactly one rotation");
    env.assert_logs_in(&new).await;
    let rotated_at = vault_ops_rotation::state::vault_time::parse_rfc3339(&new.created_time)
        .expect("created_time");
    assert_eq!(
        rx.next_due_at,
        Some(rotated_at + every),
        "X reports the due time of Y's rotation"
    );
    let (_, state) = env.state("race2-db").await;
    assert!(state.pending().is_none());
    assert!(state.last_error.is_none(), "{:?}", state.last_error);
    assert!(
        state
            .history
            .iter()
            .all(|h| h.outcome == HistoryOutcome::Rotated),
        "{:?}",
        state.history
    );
    assert_eq!(state.history.last().unwrap().owner, "replica-y");

    // 2. Y stops between ALTER ROLE and the commit (S pending, its lease live) while X is
    //    paused: X stands back until the lease expires and writes nothing; Y finishes later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let y_stopping = y.clone().fault_hook(stop_at(FaultPoint::AfterApply));
    let (rx, stopped) = while_paused_after_read(
        &x,
        "race2-db",
        every,
        y_stopping.rotate_if_due("race2-db", every),
    )
    .await;
    assert!(
        matches!(
            stopped.error,
            Some(RotationError::Interrupted(FaultPoint::AfterApply))
        ),
        "{stopped:?}"
    );
    assert_status(&rx, RotationStatus::SkippedNotDue);
    let lease_end = rx.next_due_at.expect("the lease expiry");
    assert!(lease_end > std::time::SystemTime::now() + Duration::from_secs(60));
    let (_, state) = env.state("race2-db").await;
    let pending = state.pending().expect("Y's rotation is still pending");
    assert_eq!(pending.owner, "replica-y");
    assert_eq!(
        pending.step,
        Step::Claimed,
        "nobody wrote S after Y's claim"
    );
    assert!(pending.conflict.is_none(), "{:?}", pending.conflict);
    assert!(state.last_error.is_none(), "{:?}", state.last_error);

    let resumed = y.rotate_if_due("race2-db", every).await;
    assert_status(&resumed, RotationStatus::Success);
    let last = env.credential("race2-db").await;
    assert_eq!(last.version, new.version + 1);
    env.assert_logs_in(&last).await;
    let (_, state) = env.state("race2-db").await;
    assert!(state
        .history
        .iter()
        .all(|h| h.outcome == HistoryOutcome::Rotated));
}

#[tokio::test]
async fn failed_verification_rolls_back() {
    let env = env().await;
    env.create_role("app").await;
    env.sql("CREATE TABLE audit_only (x int)").await;
    let rotator = env.rotator("r1").strategy(Strategy::single_user("app"));
    assert_status(&rotator.rotate("rb-db").await, RotationStatus::Success);
    let before = env.credential("rb-db").await;

    // The role cannot read the table the verification query needs.
    let strict = rotator
        .clone()
        .verify_query("SELECT count(*) FROM audit_only");
    let r = strict.rotate("rb-db").await;
    assert_status(&r, RotationStatus::RolledBack);
    match &r.error {
        Some(RotationError::VerificationFailed { username, message }) => {
            assert_eq!(username, "app");
            assert!(message.contains("permission denied"), "{message}");
        }
        other => panic!("expected VerificationFailed, got {other:?}"),
    }
    assert_eq!(r.version_after, Some(before.version));
    let after = env.credential("rb-db").await;
    assert_eq!(after.version, before.version);
    env.assert_logs_in(&after).await;
    assert!(r.steps.iter().any(|s| s.step == "rollback"));

    let (_, state) = env.state("rb-db").await;
    assert!(state.pending().is_none());
    let last = state.history.last().unwrap();
    assert_eq!(last.outcome, HistoryOutcome::RolledBack);
    assert!(state
        .last_error
        .as_deref()
        .unwrap()
        .contains("permission denied"));

    // Granting the access makes the next run succeed.
    env.sql("GRANT SELECT ON audit_only TO app").await;
    let ok = strict.rotate("rb-db").await;
    assert_status(&ok, RotationStatus::Success);
    env.assert_logs_in(&env.credential("rb-db").await).await;
    assert!(env.state("rb-db").await.1.last_error.is_none());
}

#[tokio::test]
async fn postgres_stopped_fails_without_changes_then_recovers() {
    let env = env().await;
    env.create_role("app").await;
    let rotator = env.rotator("r1").strategy(Strategy::single_user("app"));
    assert_status(&rotator.rotate("down-db").await, RotationStatus::Success);
    let before = env.credential("down-db").await;
    let (s_version, _) = env.state("down-db").await;

    env.pg.stop().await;
    let r = rotator.rotate("down-db").await;
    assert_status(&r, RotationStatus::Failed);
    assert!(
        matches!(&r.error, Some(RotationError::Database { code: None, .. })),
        "{:?}",
        r.error
    );
    assert_eq!(
        env.credential_version("down-db").await,
        Some(before.version)
    );
    let (s_after, state) = env.state("down-db").await;
    assert_eq!(s_after, s_version, "nothing was claimed");
    assert!(state.pending().is_none());

    // PostgreSQL stops right after the claim: the run fails; nothing is committed, and the
    // next run (once PostgreSQL is back) completes one rotation.
    env.pg.start_again().await;
    let pg = env.pg.clone();
    let hook: FaultHook = Arc::new(move |p| {
        let pg = pg.clone();
        Box::pin(async move {
            if p == FaultPoint::AfterClaim {
                pg.stop().await;
            }
            false
        })
    });
    let r = rotator.clone().fault_hook(hook).rotate("down-db").await;
    assert_status(&r, RotationStatus::Failed);
    assert!(
        matches!(&r.error, Some(RotationError::Database { .. })),
        "{:?}",
        r.error
    );
    assert_eq!(
        env.credential_version("down-db").await,
        Some(before.version)
    );
    env.pg.start_again().await;
    env.assert_logs_in(&env.credential("down-db").await).await;
    let ok = rotator.rotate("down-db").await;
    assert_status(&ok, RotationStatus::Success);
    let after = env.credential("down-db").await;
    assert_eq!(after.version, before.version + 1);
    env.assert_logs_in(&after).await;
    let (_, state) = env.state("down-db").await;
    assert!(state.pending().is_none());
}

#[tokio::test]
async fn out_of_band_password_change_is_a_conflict() {
    let env = env().await;
    env.create_role("app").await;
    let rotator = env.rotator("r1").strategy(Strategy::single_user("app"));
    assert_status(&rotator.rotate("oob-db").await, RotationStatus::Success);
    let before = env.credential("oob-db").await;

    let manual = "Manually-Set-Password-42";
    let verifier = postgres_protocol::password::scram_sha_256(manual.as_bytes());
    env.sql(&format!(
        "ALTER ROLE app PASSWORD {}",
        escape_literal(&verifier)
    ))
    .await;

    let r = rotator.rotate("oob-db").await;
    assert_status(&r, RotationStatus::Conflict);
    assert!(
        r.error.as_ref().is_some_and(RotationError::is_conflict),
        "{:?}",
        r.error
    );
    assert!(r
        .error
        .as_ref()
        .unwrap()
        .to_string()
        .contains("outside the rotation"));
    assert_eq!(
        env.credential("oob-db").await.version,
        before.version,
        "C is not touched"
    );
    assert!(
        env.logs_in("app", manual).await,
        "the database is not touched"
    );
    let (_, state) = env.state("oob-db").await;
    assert!(state.pending().is_none());
    assert_eq!(
        state.history.last().unwrap().outcome,
        HistoryOutcome::Conflict
    );
    assert!(state.last_error.is_some());
    assert_no_secret_in(&r, &[before.password.clone(), manual.to_string()]);

    // Still a conflict on the next run (nothing was guessed).
    assert_status(&rotator.rotate("oob-db").await, RotationStatus::Conflict);
}

#[tokio::test]
async fn concurrent_edit_of_the_credential_is_a_conflict_until_resolved() {
    let env = env().await;
    env.create_role("app").await;
    let rotator = env.rotator("r1").strategy(Strategy::single_user("app"));
    assert_status(&rotator.rotate("edit-db").await, RotationStatus::Success);
    let before = env.credential("edit-db").await;

    // Someone writes C while the rotation is between verify and commit.
    let client = env.client.clone();
    let hook: FaultHook = Arc::new(move |p| {
        let client = client.clone();
        Box::pin(async move {
            if p == FaultPoint::AfterVerify {
                client
                    .kv2(MOUNT)
                    .put_cas(
                        "database/edit-db",
                        &json!({"username": "app", "password": "Human-Edited-Password-1"}),
                        1,
                    )
                    .await
                    .expect("concurrent edit");
            }
            false
        })
    });
    let r = rotator.clone().fault_hook(hook).rotate("edit-db").await;
    assert_status(&r, RotationStatus::Conflict);
    assert!(r
        .error
        .as_ref()
        .unwrap()
        .to_string()
        .contains("not overwritten"));
    let c = env.credential("edit-db").await;
    assert_eq!(c.version, before.version + 1);
    assert_eq!(
        c.password, "Human-Edited-Password-1",
        "the concurrent edit is kept"
    );

    // The role now has the pending password, which S keeps; the conflict persists.
    let (_, state) = env.state("edit-db").await;
    let pending = state.pending().expect("still pending").clone();
    assert!(pending.conflict.is_some());
    let pending_password = pending.payload["password"].as_str().unwrap().to_string();
    assert!(env.logs_in("app", &pending_password).await);
    assert_status(&rotator.rotate("edit-db").await, RotationStatus::Conflict);

    // A human fixes C (here: to the password the role has); the next run resolves the
    // conflict and rotates.
    env.client
        .kv2(MOUNT)
        .put_cas(
            "database/edit-db",
            &json!({"username": "app", "password": pending_password}),
            c.version,
        )
        .await
        .unwrap();
    let fixed = rotator.rotate("edit-db").await;
    assert_status(&fixed, RotationStatus::Success);
    let after = env.credential("edit-db").await;
    assert_eq!(after.version, c.version + 2);
    env.assert_logs_in(&after).await;
    let (_, state) = env.state("edit-db").await;
    let outcomes: Vec<_> = state.history.iter().map(|h| h.outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            HistoryOutcome::Rotated,
            HistoryOutcome::Conflict,
            HistoryOutcome::Resolved,
            HistoryOutcome::Rotated
        ]
    );
}

#[tokio::test]
async fn usernames_that_need_quoting() {
    let env = env().await;
    let names = [
        "Mixed Case",
        "we\"ird user",
        "o'brien; DROP TABLE x",
        "ÜnïcødéRole",
    ];
    let mut passwords = Vec::new();
    for (i, role) in names.iter().enumerate() {
        env.create_role(role).await;
        let rotator = env.rotator("r1").strategy(Strategy::single_user(*role));
        let name = format!("quoted-{i}");
        for round in 0..2 {
            let r = rotator.rotate(&name).await;
            assert_status(&r, RotationStatus::Success);
            let c = env.credential(&name).await;
            assert_eq!(c.username, *role);
            assert_eq!(c.version, round + 1);
            env.assert_logs_in(&c).await;
            passwords.push(c.password);
        }
    }
    env.assert_not_in_pg_log(&passwords);
}

#[tokio::test]
async fn passwords_never_reach_pg_stat_activity_or_logs() {
    let env = env().await;
    env.create_role("app").await;
    let rotator = env.rotator("r1").strategy(Strategy::single_user("app"));
    assert_status(&rotator.rotate("leak-db").await, RotationStatus::Success);

    // While the rotation's admin session is open (right after ALTER ROLE), look at every
    // session's current or last query.
    let seen: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let pending: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let (pg_host, pg_port, su, su_pw) = (
        env.pg.host().to_string(),
        env.pg.port(),
        env.pg.superuser().to_string(),
        env.pg.superuser_password().to_string(),
    );
    let client = env.client.clone();
    let (seen2, pending2) = (seen.clone(), pending.clone());
    let hook: FaultHook = Arc::new(move |p| {
        let (seen, pending, client) = (seen2.clone(), pending2.clone(), client.clone());
        let (pg_host, su, su_pw) = (pg_host.clone(), su.clone(), su_pw.clone());
        Box::pin(async move {
            if p == FaultPoint::AfterApply {
                let snap = StateStore::new(client, MOUNT, "rotation-state/database")
                    .load::<Value>("leak-db")
                    .await
                    .unwrap();
                let pw = snap.pending().unwrap().payload["password"]
                    .as_str()
                    .unwrap()
                    .to_string();
                *pending.lock().unwrap() = Some(pw);
                let mut config = tokio_postgres::Config::new();
                config
                    .host(&pg_host)
                    .port(pg_port)
                    .user(&su)
                    .password(&su_pw)
                    .dbname("postgres");
                let (c, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                let rows = c
                    .query("SELECT coalesce(query, '') FROM pg_stat_activity", &[])
                    .await
                    .unwrap();
                let mut seen = seen.lock().unwrap();
                for row in rows {
                    seen.push(row.get::<_, String>(0));
                }
            }
            false
        })
    });
    let r = rotator.clone().fault_hook(hook).rotate("leak-db").await;
    assert_status(&r, RotationStatus::Success);
    let pw = pending
        .lock()
        .unwrap()
        .clone()
        .expect("the hook saw the pending password");
    let cred = env.credential("leak-db").await;
    assert_eq!(cred.password, pw);
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|q| q.contains("ALTER ROLE")),
        "the rotation's session shows its ALTER ROLE: {seen:?}"
    );
    for q in &seen {
        assert!(
            !q.contains(&pw),
            "the password is visible in pg_stat_activity"
        );
    }
    assert_no_secret_in(&r, std::slice::from_ref(&pw));

    // A failing run's error and Debug do not contain passwords either.
    env.pg.stop().await;
    let failed = rotator.rotate("leak-db").await;
    assert_status(&failed, RotationStatus::Failed);
    assert_no_secret_in(
        &failed,
        &[pw.clone(), env.pg.superuser_password().to_string()],
    );
    env.pg.start_again().await;
    env.assert_not_in_pg_log(&[pw, env.pg.superuser_password().to_string()]);
}

/// A crash at every step boundary, then a fresh rotator (another replica) finishes it.
#[tokio::test]
async fn crash_at_every_boundary_then_resume() {
    let env = env().await;
    env.create_role("app").await;
    let passwords = db::crash_at_every_boundary_then_resume(&env, "app", "crash-db").await;
    env.assert_not_in_pg_log(&passwords);
}

#[tokio::test]
async fn another_replica_waits_for_the_lease_then_takes_over() {
    let env = env().await;
    env.create_role("app").await;
    let a = env
        .rotator("replica-a")
        .strategy(Strategy::single_user("app"))
        .lease(Duration::from_secs(2));
    assert_status(&a.rotate("lease-db").await, RotationStatus::Success);
    let before = env.credential("lease-db").await;
    let r = a
        .clone()
        .fault_hook(stop_at(FaultPoint::AfterApply))
        .rotate("lease-db")
        .await;
    assert_status(&r, RotationStatus::Failed);

    let b = env
        .rotator("replica-b")
        .strategy(Strategy::single_user("app"));
    let held = b.rotate("lease-db").await;
    assert_status(&held, RotationStatus::SkippedNotDue);
    assert!(held.next_due_at.is_some(), "reports when the lease expires");
    assert_eq!(env.credential("lease-db").await.version, before.version);

    let mut done = None;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = b.rotate("lease-db").await;
        if r.status != RotationStatus::SkippedNotDue {
            done = Some(r);
            break;
        }
    }
    let done = done.expect("the lease expires within 5 s");
    assert_status(&done, RotationStatus::Success);
    let after = env.credential("lease-db").await;
    assert_eq!(after.version, before.version + 1);
    env.assert_logs_in(&after).await;
    let (_, state) = env.state("lease-db").await;
    assert_eq!(state.history.last().unwrap().owner, "replica-b");
}

async fn unseal_key(bao: &BaoServer) -> String {
    let log = bao.log();
    log.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Unseal Key:")
                .map(|k| k.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no unseal key in the dev server log"))
}

#[tokio::test]
async fn vault_sealed_mid_rotation_then_resume() {
    let env = env().await;
    env.create_role("app").await;
    let key = unseal_key(&env.bao).await;
    // No retries: a sealed Vault fails at once.
    let quick = common::root_builder(&env.bao)
        .max_retries(0)
        .build()
        .unwrap();
    let bootstrap = env.rotator("boot").strategy(Strategy::single_user("app"));
    assert_status(&bootstrap.rotate("seal-db").await, RotationStatus::Success);

    for point in [
        FaultPoint::AfterClaim,
        FaultPoint::AfterApply,
        FaultPoint::AfterVerify,
    ] {
        let before = env.credential("seal-db").await;
        let sealer = env.client.clone();
        let hook: FaultHook = Arc::new(move |p| {
            let sealer = sealer.clone();
            Box::pin(async move {
                if p == point {
                    sealer
                        .execute(vault_ops_core::Request::put("sys/seal"))
                        .await
                        .expect("seal");
                }
                false
            })
        });
        let r = env
            .rotator_with(quick.clone(), "sealed-replica")
            .strategy(Strategy::single_user("app"))
            .fault_hook(hook)
            .rotate("seal-db")
            .await;
        assert_status(&r, RotationStatus::Failed);
        let vault_error = match &r.error {
            Some(RotationError::Vault(e)) => e,
            Some(RotationError::State(e)) => e.vault().expect("a Vault error"),
            other => panic!("expected a Vault error, got {other:?}"),
        };
        assert!(vault_error.is_sealed(), "{vault_error}");

        env.client
            .execute(
                vault_ops_core::Request::put("sys/unseal")
                    .json(&json!({"key": key}))
                    .unwrap(),
            )
            .await
            .expect("unseal");
        let resumed = env
            .rotator("sealed-replica")
            .strategy(Strategy::single_user("app"))
            .rotate("seal-db")
            .await;
        assert_status(&resumed, RotationStatus::Success);
        let after = env.credential("seal-db").await;
        assert_eq!(after.version, before.version + 1, "{point:?}");
        env.assert_logs_in(&after).await;
        assert!(env.state("seal-db").await.1.pending().is_none());
    }
}

/// Vault applies the commit of C but its reply is lost (and so is the re-read). The next run
/// finds C committed with the pending password and only closes S: no second rotation.
#[tokio::test]
async fn lost_reply_of_the_commit_is_resolved_by_reading() {
    let env = env().await;
    env.create_role("app").await;
    let rotator = env.rotator("r1").strategy(Strategy::single_user("app"));
    assert_status(&rotator.rotate("lost-db").await, RotationStatus::Success);
    let before = env.credential("lost-db").await;

    let proxy = Proxy::start(env.bao.port()).await;
    let p = proxy.clone();
    let hook: FaultHook = Arc::new(move |point| {
        let p = p.clone();
        Box::pin(async move {
            if point == FaultPoint::AfterVerify {
                p.set(ProxyMode::DropReplies);
            }
            false
        })
    });
    let r = env
        .rotator_with(proxy.client(env.bao.root_token()), "r1")
        .strategy(Strategy::single_user("app"))
        .fault_hook(hook)
        .rotate("lost-db")
        .await;
    assert_status(&r, RotationStatus::Failed);
    assert!(
        matches!(&r.error, Some(RotationError::Vault(e)) if e.is_transport()),
        "{:?}",
        r.error
    );
    // Vault did apply it.
    let landed = env.credential("lost-db").await;
    assert_eq!(landed.version, before.version + 1);
    let (_, state) = env.state("lost-db").await;
    let pending = state.pending().expect("S still pending");
    assert_eq!(
        pending.payload["password"].as_str(),
        Some(landed.password.as_str())
    );

    proxy.set(ProxyMode::Pass);
    let resumed = env
        .rotator_with(proxy.client(env.bao.root_token()), "r1")
        .strategy(Strategy::single_user("app"))
        .rotate_if_due("lost-db", Duration::from_secs(3600))
        .await;
    assert_status(&resumed, RotationStatus::Success);
    let steps: Vec<&str> = resumed.steps.iter().map(|s| s.step).collect();
    // No second ALTER ROLE, no second write of C: only S is closed (C is read first, to
    // check the pending record before taking it over).
    assert_eq!(steps, ["load", "read", "take_over", "close"], "{resumed:?}");
    // The result says it finished a crashed run's rotation.
    assert!(resumed.resumed, "{resumed:?}");
    let after = env.credential("lost-db").await;
    assert_eq!(after.version, landed.version, "one rotation, not two");
    env.assert_logs_in(&after).await;
    let (_, state) = env.state("lost-db").await;
    assert!(state.pending().is_none());
    assert_eq!(state.credential_version, Some(after.version));
    assert_eq!(
        state.history.last().unwrap().outcome,
        HistoryOutcome::Rotated
    );
}

/// Vault becomes unreachable right after the new password is applied: the run fails with a
/// transport error; when Vault is back, the next run verifies, commits and closes.
#[tokio::test]
async fn vault_unreachable_mid_rotation_then_resume() {
    let env = env().await;
    env.create_role("app").await;
    let rotator = env.rotator("r1").strategy(Strategy::single_user("app"));
    assert_status(&rotator.rotate("gone-db").await, RotationStatus::Success);
    let before = env.credential("gone-db").await;

    let proxy = Proxy::start(env.bao.port()).await;
    let p = proxy.clone();
    let hook: FaultHook = Arc::new(move |point| {
        let p = p.clone();
        Box::pin(async move {
            if point == FaultPoint::AfterApply {
                p.set(ProxyMode::Refuse);
            }
            false
        })
    });
    let r = env
        .rotator_with(proxy.client(env.bao.root_token()), "r1")
        .strategy(Strategy::single_user("app"))
        .fault_hook(hook)
        .rotate("gone-db")
        .await;
    assert_status(&r, RotationStatus::Failed);
    let e = match &r.error {
        Some(RotationError::State(e)) => e.vault().expect("vault error"),
        other => panic!("expected a state write failure, got {other:?}"),
    };
    assert!(e.is_transport(), "{e}");
    assert_eq!(env.credential("gone-db").await.version, before.version);
    // The database has the pending password, which S holds.
    let (_, state) = env.state("gone-db").await;
    assert_eq!(
        state.pending().unwrap().step,
        Step::Claimed,
        "the write of `applied` never reached Vault"
    );
    let pending_password = state.pending().unwrap().payload["password"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(env.logs_in("app", &pending_password).await);

    proxy.set(ProxyMode::Pass);
    let resumed = env
        .rotator_with(proxy.client(env.bao.root_token()), "r1")
        .strategy(Strategy::single_user("app"))
        .rotate("gone-db")
        .await;
    assert_status(&resumed, RotationStatus::Success);
    let steps: Vec<&str> = resumed.steps.iter().map(|s| s.step).collect();
    assert!(
        steps.contains(&"probe") && steps.contains(&"verify") && !steps.contains(&"apply"),
        "{steps:?}"
    );
    let after = env.credential("gone-db").await;
    assert_eq!(after.version, before.version + 1);
    assert_eq!(after.password, pending_password);
    env.assert_logs_in(&after).await;
}

#[tokio::test]
async fn database_rejects_the_new_password() {
    let env = env().await;
    // The managed role is a superuser; the rotation's admin only has CREATEROLE, so PostgreSQL
    // refuses the ALTER ROLE.
    env.create_role("su_app").await;
    env.sql("ALTER ROLE su_app SUPERUSER").await;
    let full = env.rotator("r1").strategy(Strategy::single_user("su_app"));
    assert_status(&full.rotate("rej-db").await, RotationStatus::Success);
    let before = env.credential("rej-db").await;

    env.sql("CREATE ROLE rot_admin LOGIN CREATEROLE PASSWORD 'Rot-Admin-Password-77'")
        .await;
    let limited = DatabaseCredentialRotator::new(
        env.client.clone(),
        env.pg.host(),
        "rot_admin",
        SecretString::from("Rot-Admin-Password-77".to_string()),
    )
    .port(env.pg.port())
    .tls_ca_pem(env.pg.ca_pem())
    .owner("r2")
    .strategy(Strategy::single_user("su_app"));
    let r = limited.rotate("rej-db").await;
    assert_status(&r, RotationStatus::Failed);
    match &r.error {
        Some(RotationError::Database {
            operation,
            code,
            message,
        }) => {
            assert_eq!(operation, "alter role");
            assert_eq!(code.as_deref(), Some("42501"), "{message}");
        }
        other => panic!("expected a database error, got {other:?}"),
    }
    let after = env.credential("rej-db").await;
    assert_eq!(after.version, before.version);
    env.assert_logs_in(&after).await;
    let (_, state) = env.state("rej-db").await;
    assert!(
        state.pending().is_none(),
        "a refused ALTER ROLE closes the claim"
    );
    assert_eq!(
        state.history.last().unwrap().outcome,
        HistoryOutcome::Failed
    );
    assert_no_secret_in(&r, std::slice::from_ref(&before.password));
}

#[tokio::test]
async fn alternating_users_keep_a_connection_pool_working() {
    let env = env().await;
    env.sql("CREATE TABLE orders (id int); INSERT INTO orders VALUES (1), (2), (3)")
        .await;
    for role in ["app_blue", "app_green"] {
        env.create_role(role).await;
        env.sql(&format!("GRANT SELECT ON orders TO {role}")).await;
    }
    let rotator = env
        .rotator("r1")
        .strategy(Strategy::alternating_users("app_blue", "app_green"))
        .verify_query("SELECT count(*) FROM orders");
    assert_status(&rotator.rotate("alt-db").await, RotationStatus::Success);
    let first = env.credential("alt-db").await;
    assert_eq!(first.username, "app_blue");

    // A long-lived pool: a few connections opened with the credential read at start-up.
    let mut pool = Vec::new();
    for _ in 0..3 {
        pool.push(
            connect(&env.pg, &first.username, &first.password)
                .await
                .unwrap(),
        );
    }
    let mut creds = vec![first];
    for _ in 0..4 {
        db::alternating_round(&env, &rotator, "alt-db", &mut creds).await;
        let cur = creds.last().unwrap();
        for conn in &pool {
            let n: i64 = conn
                .query_one("SELECT count(*) FROM orders", &[])
                .await
                .expect("held connection")
                .get(0);
            assert_eq!(n, 3);
        }
        // The pool refreshes its credential each period, replacing one connection.
        pool.remove(0);
        pool.push(
            connect(&env.pg, &cur.username, &cur.password)
                .await
                .unwrap(),
        );
    }

    // The database refuses logins of the next role: verification fails, rolled back, and the
    // credential in C is untouched.
    let next_role = if creds.last().unwrap().username == "app_blue" {
        "app_green"
    } else {
        "app_blue"
    };
    env.sql(&format!("ALTER ROLE {next_role} CONNECTION LIMIT 0"))
        .await;
    let r = rotator.rotate("alt-db").await;
    assert_status(&r, RotationStatus::RolledBack);
    assert!(
        matches!(r.error, Some(RotationError::VerificationFailed { .. })),
        "{:?}",
        r.error
    );
    let cur = env.credential("alt-db").await;
    assert_eq!(cur.version, creds.last().unwrap().version);
    env.assert_logs_in(&cur).await;
    // The rolled-back role has its previous password again (from C's previous version).
    env.sql(&format!("ALTER ROLE {next_role} CONNECTION LIMIT -1"))
        .await;
    let prev = &creds[creds.len() - 2];
    assert_eq!(prev.username, next_role);
    assert!(env.logs_in(&prev.username, &prev.password).await);
    for conn in &pool {
        conn.query_one("SELECT 1", &[])
            .await
            .expect("held connection");
    }
    assert_status(&rotator.rotate("alt-db").await, RotationStatus::Success);
    let passwords: Vec<String> = creds.iter().map(|c| c.password.clone()).collect();
    env.assert_not_in_pg_log(&passwords);
}

#[tokio::test]
async fn bad_input_and_missing_role() {
    let env = env().await;
    let rotator = env.rotator("r1").strategy(Strategy::single_user("nobody"));
    let r = rotator.rotate("missing-role").await;
    assert_status(&r, RotationStatus::Failed);
    assert!(
        matches!(&r.error, Some(RotationError::RoleMissing { username }) if username == "nobody")
    );
    assert_eq!(env.state("missing-role").await.0, 0, "nothing claimed");
    assert_eq!(env.credential_version("missing-role").await, None);

    let r = rotator.rotate("").await;
    assert!(
        matches!(r.error, Some(RotationError::Config(_))),
        "{:?}",
        r.error
    );

    env.create_role("app").await;
    let weak = env
        .rotator("r1")
        .strategy(Strategy::single_user("app"))
        .password_policy(PasswordPolicy::new(8, "ab"));
    let r = weak.rotate("weak").await;
    assert!(
        matches!(r.error, Some(RotationError::Config(_))),
        "{:?}",
        r.error
    );

    // No strategy and no credential: nothing to rotate.
    let bare = env.rotator("r1");
    let r = bare.rotate("nothing-here").await;
    assert!(
        matches!(r.error, Some(RotationError::Config(_))),
        "{:?}",
        r.error
    );

    // A credential naming another role than the strategy: conflict, nothing touched.
    env.client
        .kv2(MOUNT)
        .put(
            "database/other",
            &json!({"username": "someone_else", "password": "x-long-enough-password"}),
        )
        .await
        .unwrap();
    let r = env
        .rotator("r1")
        .strategy(Strategy::single_user("app"))
        .rotate("other")
        .await;
    assert_status(&r, RotationStatus::Conflict);
    // A credential without a password.
    env.client
        .kv2(MOUNT)
        .put("database/broken", &json!({"username": "app"}))
        .await
        .unwrap();
    let r = env.rotator("r1").rotate("broken").await;
    assert!(
        matches!(r.error, Some(RotationError::InvalidCredential { .. })),
        "{:?}",
        r.error
    );

    // Symbols policy works.
    let sym = env
        .rotator("r1")
        .strategy(Strategy::single_user("app"))
        .password_policy(PasswordPolicy::with_symbols(40));
    assert_status(&sym.rotate("sym").await, RotationStatus::Success);
    let c = env.credential("sym").await;
    assert_eq!(c.password.chars().count(), 40);
    env.assert_logs_in(&c).await;
}

/// Writes `record` as the next version of `S` of `name` with the raw KV API, as anyone with
/// write access to `rotation-state/*` could.
async fn write_state_raw(env: &Env, name: &str, record: &Value) {
    let kv = env.client.kv2(MOUNT);
    let path = format!("rotation-state/database/{name}");
    let version = kv
        .read_metadata(&path)
        .await
        .expect("metadata of S")
        .map_or(0, |m| m.current_version);
    kv.put_cas(&path, record, version)
        .await
        .expect("raw write of S");
}

/// A pending rotation planted in `S` (the superuser with a chosen password, a chosen rollback
/// password, a password the policy cannot make) is a conflict: nothing is applied to the
/// database, `C` is not written, and the record stays for a human.
#[tokio::test]
async fn tampered_state_record_is_a_conflict_and_never_acted_on() {
    let env = env().await;
    env.create_role("app").await;
    let single = env.rotator("r1").strategy(Strategy::single_user("app"));
    // The same owner id without a strategy: it manages the user named in C.
    let bare = env.rotator("r1");
    assert_status(&single.rotate("main-db").await, RotationStatus::Success);
    let before = env.credential("main-db").await;
    let superuser = env.pg.superuser().to_string();
    let chosen = "Ch0senByAnAttacker0123456789abcd"; // 32 alphanumerics: the policy's form
    let (_, state) = env.state("main-db").await;
    let epoch = state.epoch + 1;
    let planted = |username: &str, password: &str, step: &str, rollback: Option<&str>| {
        json!({
            "write_id": "planted", "epoch": epoch, "rotations": state.rotations,
            "credential_version": before.version, "last_rotated_at": before.created_time,
            "phase": {"state": "pending", "epoch": epoch, "owner": "r1", "lease_ms": 60_000,
                "step": step, "base_version": before.version,
                "payload": {"username": username, "password": password,
                    "rollback_password": rollback}}
        })
    };
    let cases = [
        (
            "the superuser",
            planted(&superuser, chosen, "claimed", None),
        ),
        (
            "the superuser, verified",
            planted(&superuser, chosen, "verified", Some(&before.password)),
        ),
        (
            "a chosen rollback password",
            planted("app", chosen, "rolling_back", Some(chosen)),
        ),
        (
            "a password the policy cannot make",
            planted("app", "hunter2", "claimed", None),
        ),
    ];
    for (case, record) in &cases {
        write_state_raw(&env, "main-db", record).await;
        for rotator in [&single, &bare] {
            let r = rotator.rotate("main-db").await;
            assert_status(&r, RotationStatus::Conflict);
            match &r.error {
                Some(RotationError::Conflict { reason, .. }) => assert!(
                    reason.contains("does not match this rotator"),
                    "{case}: {reason}"
                ),
                other => panic!("{case}: {other:?}"),
            }
            assert_no_secret_in(&r, &[chosen.to_string(), before.password.clone()]);
        }
        // Nothing acted on it: the superuser keeps its password, C and the role are as before.
        assert!(
            env.logs_in(&superuser, env.pg.superuser_password()).await,
            "{case}: the superuser's password is unchanged"
        );
        assert!(!env.logs_in(&superuser, chosen).await, "{case}");
        let after = env.credential("main-db").await;
        assert_eq!(after.version, before.version, "{case}: C is not written");
        assert_eq!(after.username, "app");
        assert_eq!(after.password, before.password);
        env.assert_logs_in(&after).await;
        assert!(!env.logs_in("app", chosen).await, "{case}");
        // The record stays pending for a human, with the conflict in its history.
        let (_, s) = env.state("main-db").await;
        assert_eq!(s.pending().map(|p| p.epoch), Some(epoch), "{case}");
        assert_eq!(
            s.history.last().map(|h| h.outcome),
            Some(HistoryOutcome::Conflict),
            "{case}"
        );
    }

    // A human deletes the planted version: the next run rotates the configured role.
    env.client
        .kv2(MOUNT)
        .delete_latest("rotation-state/database/main-db")
        .await
        .unwrap();
    assert_status(&single.rotate("main-db").await, RotationStatus::Success);
    let rotated = env.credential("main-db").await;
    assert_eq!(rotated.username, "app");
    env.assert_logs_in(&rotated).await;
    assert!(env.logs_in(&superuser, env.pg.superuser_password()).await);
}

/// A state record that cannot be decoded, or cannot have been written by the rotation (a
/// timestamp that does not parse, no write id), fails the run: it is never read as "never
/// rotated" and acted on.
#[tokio::test]
async fn undecodable_state_record_fails_and_nothing_is_rotated() {
    let env = env().await;
    env.create_role("app").await;
    let rotator = env.rotator("r1").strategy(Strategy::single_user("app"));
    assert_status(&rotator.rotate("main-db").await, RotationStatus::Success);
    let before = env.credential("main-db").await;
    for record in [
        json!({"write_id": "w", "last_rotated_at": "2026-01-01T00:00:00+0é00"}),
        json!({"write_id": "w", "next_due_at": "tomorrow", "period_ms": 1000}),
        json!({}),
        json!({"write_id": "w", "phase": "pending"}),
    ] {
        write_state_raw(&env, "main-db", &record).await;
        for r in [
            rotator.rotate("main-db").await,
            rotator
                .rotate_if_due("main-db", Duration::from_secs(3600))
                .await,
        ] {
            assert_status(&r, RotationStatus::Failed);
            assert!(
                matches!(
                    &r.error,
                    Some(RotationError::State(
                        vault_ops_rotation::state::StateError::Corrupt { .. }
                    ))
                ),
                "{record}: {:?}",
                r.error
            );
        }
        let after = env.credential("main-db").await;
        assert_eq!(after.version, before.version, "{record}: nothing rotated");
        env.assert_logs_in(&after).await;
    }
}

/// The policies of the crate docs' security notes: each rotator can rotate with its own, and
/// neither can write the other's state records.
#[tokio::test]
async fn documented_policies_keep_the_rotators_apart() {
    let env = env().await;
    env.create_role("app").await;
    let policies = [
        (
            "db-rotator",
            r#"path "secret/data/database/*"                     { capabilities = ["create", "read", "update"] }
path "secret/metadata/database/*"                 { capabilities = ["create", "read", "update"] }
path "secret/data/rotation-state/database/*"      { capabilities = ["create", "read", "update"] }
path "secret/metadata/rotation-state/database/*"  { capabilities = ["create", "read", "update"] }"#,
        ),
        (
            "api-key-rotator",
            r#"path "secret/data/api-keys/*"                     { capabilities = ["create", "read", "update"] }
path "secret/metadata/api-keys/*"                 { capabilities = ["create", "read", "update"] }
path "secret/data/rotation-state/api-key/*"       { capabilities = ["create", "read", "update"] }
path "secret/metadata/rotation-state/api-key/*"   { capabilities = ["create", "read", "update"] }"#,
        ),
    ];
    let mut tokens = Vec::new();
    for (name, hcl) in policies {
        env.client.policies().write(name, hcl).await.unwrap();
        let token = env
            .client
            .tokens()
            .create(&vault_ops_core::api::tokens::TokenCreateRequest::with_policies([name]))
            .await
            .unwrap();
        tokens.push(env.client.with_token(token.client_token.clone()));
    }
    let (db, api) = (&tokens[0], &tokens[1]);
    for _ in 0..2 {
        let r = env
            .rotator_with(db.clone(), "r1")
            .strategy(Strategy::single_user("app"))
            .rotate("main-db")
            .await;
        assert_status(&r, RotationStatus::Success);
        let r = vault_ops_rotation::ApiKeyRotator::new(api.clone())
            .rotate("stripe")
            .await;
        assert_status(&r, RotationStatus::Success);
    }
    env.assert_logs_in(&env.credential("main-db").await).await;
    for (token, other) in [
        (db, "rotation-state/api-key/api-keys/stripe"),
        (api, "rotation-state/database/main-db"),
    ] {
        let e = token
            .kv2(MOUNT)
            .put(other, &json!({"write_id": "x"}))
            .await
            .unwrap_err();
        assert!(e.is_permission_denied(), "{other}: {e}");
    }
}

#[tokio::test]
async fn narrow_token_cannot_rotate() {
    let env = env().await;
    env.create_role("app").await;
    assert_status(
        &env.rotator("r1")
            .strategy(Strategy::single_user("app"))
            .rotate("acl-db")
            .await,
        RotationStatus::Success,
    );
    let before = env.credential("acl-db").await;
    // A token that can read C and S but write neither.
    env.client
        .generic()
        .write_raw(
            "sys/policies/acl/read-only",
            &json!({"policy": "path \"secret/data/*\" { capabilities = [\"read\"] }\npath \"secret/metadata/*\" { capabilities = [\"read\"] }"}),
        )
        .await
        .unwrap();
    let token = env
        .client
        .tokens()
        .create(&vault_ops_core::api::tokens::TokenCreateRequest::with_policies(["read-only"]))
        .await
        .unwrap();
    let narrow = env.client.with_token(token.client_token.clone());
    let r = env
        .rotator_with(narrow, "r2")
        .strategy(Strategy::single_user("app"))
        .rotate("acl-db")
        .await;
    assert_status(&r, RotationStatus::Failed);
    let e = match &r.error {
        Some(RotationError::State(e)) => e.vault().unwrap(),
        Some(RotationError::Vault(e)) => e,
        other => panic!("{other:?}"),
    };
    assert!(e.is_permission_denied(), "{e}");
    let after = env.credential("acl-db").await;
    assert_eq!(after.version, before.version);
    env.assert_logs_in(&after).await;
    assert!(
        env.logs_in("app", &before.password).await,
        "the database is not touched"
    );
}

/// The rotator's sessions in the server log (`log_connections`): (with TLS, in plain text).
fn rotator_sessions(log: &str) -> (usize, usize) {
    let sessions: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("connection authorized") && l.contains("application_name=vault-ops-rotation")
        })
        .collect();
    let tls = sessions
        .iter()
        .filter(|l| l.contains("SSL enabled"))
        .count();
    (tls, sessions.len() - tls)
}

#[tokio::test]
async fn tls_is_required_and_verified_by_default() {
    let env = env().await;
    env.create_role("app").await;
    let password = SecretString::from(env.pg.superuser_password().to_string());
    let bare = |host: &str| {
        DatabaseCredentialRotator::new(
            env.client.clone(),
            host,
            env.pg.superuser(),
            password.clone(),
        )
        .port(env.pg.port())
        .connect_timeout(Duration::from_secs(5))
        .owner("r1")
        .strategy(Strategy::single_user("app"))
    };
    let ca = env.pg.ca_pem().to_vec();

    // The default verifies the server's certificate: the cluster's CA is not trusted yet.
    let r = bare(env.pg.host()).rotate("tls-db").await;
    assert_status(&r, RotationStatus::Failed);
    let text = r.error.as_ref().unwrap().to_string();
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    assert_eq!(env.state("tls-db").await.0, 0, "nothing claimed");
    assert_eq!(env.credential_version("tls-db").await, None);

    // Trusting the CA: every session of the rotator uses TLS.
    let secure = bare(env.pg.host()).tls_ca_pem(ca.clone());
    assert_status(&secure.rotate("tls-db").await, RotationStatus::Success);
    let (tls, plain) = rotator_sessions(&env.pg.log());
    assert!(tls >= 2, "admin and verify sessions: {tls}");
    assert_eq!(plain, 0, "no session in plain text");
    let first = env.credential("tls-db").await;
    env.assert_logs_in(&first).await;

    // Plain text must be asked for: Prefer (downgradable) and Disable are refused before
    // anything is read, claimed or connected.
    for mode in [TlsMode::Prefer, TlsMode::Disable] {
        let r = secure.clone().tls(mode).rotate("tls-db").await;
        assert_status(&r, RotationStatus::Failed);
        match &r.error {
            Some(RotationError::Config(message)) => {
                assert!(message.contains("allow_insecure_local_dev"), "{message}")
            }
            other => panic!("{mode:?}: expected a configuration error, got {other:?}"),
        }
        assert!(r.steps.is_empty(), "{mode:?}: {:?}", r.steps);
    }
    assert_eq!(rotator_sessions(&env.pg.log()), (tls, 0));
    assert_eq!(env.credential("tls-db").await.version, first.version);

    // ... and then it is plain text.
    let dev = bare(env.pg.host())
        .tls(TlsMode::Disable)
        .allow_insecure_local_dev();
    assert_status(&dev.rotate("tls-db").await, RotationStatus::Success);
    let (_, plain) = rotator_sessions(&env.pg.log());
    assert!(plain >= 3, "{plain}");

    // A Unix-domain socket needs no TLS and no opt-in: nothing crosses a network.
    let socket_dir = env.pg.dir().to_str().unwrap().to_string();
    let socket = bare(&socket_dir).tls(TlsMode::Disable);
    assert_status(&socket.rotate("tls-db").await, RotationStatus::Success);

    // A server that does not offer TLS gets nothing from the default.
    env.sql("ALTER SYSTEM SET ssl = off").await;
    env.sql("SELECT pg_reload_conf()").await;
    let mut off = false;
    for _ in 0..50 {
        let ssl: String = env
            .superuser()
            .await
            .query_one("SHOW ssl", &[])
            .await
            .unwrap()
            .get(0);
        if ssl == "off" {
            off = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(off, "PostgreSQL did not switch TLS off");
    let before = env.credential("tls-db").await;
    let sessions_before = rotator_sessions(&env.pg.log());
    let r = secure.rotate("tls-db").await;
    assert_status(&r, RotationStatus::Failed);
    let text = r.error.as_ref().unwrap().to_string();
    assert!(text.contains("TLS"), "{text}");
    assert_eq!(rotator_sessions(&env.pg.log()), sessions_before);
    assert_eq!(env.credential("tls-db").await.version, before.version);
    assert!(env.state("tls-db").await.1.pending().is_none());

    // A CA PEM that holds nothing is a configuration error.
    let r = bare(env.pg.host())
        .tls_ca_pem(b"not a certificate".to_vec())
        .rotate("tls-db")
        .await;
    assert!(
        matches!(&r.error, Some(RotationError::Config(message)) if message.contains("CA certificate")),
        "{:?}",
        r.error
    );
}

/// A fake PostgreSQL server on loopback: answers the SSLRequest with `S` (and TLS) or `N`,
/// reads the startup message, sends `request`, and records what the client sends before the
/// request (`startup`, decrypted) and after it (`answered`).
struct FakePg {
    port: u16,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    startup: Arc<Mutex<Vec<u8>>>,
    answered: Arc<Mutex<Vec<u8>>>,
}

const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
/// `AuthenticationCleartextPassword`.
const ASK_CLEARTEXT: &[u8] = &[b'R', 0, 0, 0, 8, 0, 0, 0, 3];
/// `AuthenticationMD5Password` with a salt.
const ASK_MD5: &[u8] = &[b'R', 0, 0, 0, 12, 0, 0, 0, 5, 1, 2, 3, 4];

impl FakePg {
    async fn start(tls: Option<tokio_rustls::TlsAcceptor>, request: &'static [u8]) -> FakePg {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakePg {
            port: listener.local_addr().unwrap().port(),
            connections: Default::default(),
            startup: Default::default(),
            answered: Default::default(),
        };
        let (connections, startup, answered) = (
            fake.connections.clone(),
            fake.startup.clone(),
            fake.answered.clone(),
        );
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (tls, startup, answered) = (tls.clone(), startup.clone(), answered.clone());
                tokio::spawn(tokio::time::timeout(
                    Duration::from_secs(10),
                    Self::serve(tcp, tls, request, startup, answered),
                ));
            }
        });
        fake
    }

    async fn serve(
        mut tcp: tokio::net::TcpStream,
        tls: Option<tokio_rustls::TlsAcceptor>,
        request: &'static [u8],
        startup: Arc<Mutex<Vec<u8>>>,
        answered: Arc<Mutex<Vec<u8>>>,
    ) -> std::io::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut first = [0u8; 8];
        tcp.read_exact(&mut first).await?;
        startup.lock().unwrap().extend_from_slice(&first);
        if first != SSL_REQUEST {
            return Self::talk(tcp, Some(first), request, startup, answered).await;
        }
        match tls {
            Some(acceptor) => {
                tcp.write_all(b"S").await?;
                let stream = acceptor.accept(tcp).await?;
                Self::talk(stream, None, request, startup, answered).await
            }
            None => {
                tcp.write_all(b"N").await?;
                Self::talk(tcp, None, request, startup, answered).await
            }
        }
    }

    async fn talk<S>(
        mut stream: S,
        read_already: Option<[u8; 8]>,
        request: &'static [u8],
        startup: Arc<Mutex<Vec<u8>>>,
        answered: Arc<Mutex<Vec<u8>>>,
    ) -> std::io::Result<()>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // The startup message: its length, then the rest.
        let rest = match read_already {
            Some(first) => {
                u32::from_be_bytes([first[0], first[1], first[2], first[3]]) as usize - 8
            }
            None => {
                let mut length = [0u8; 4];
                stream.read_exact(&mut length).await?;
                startup.lock().unwrap().extend_from_slice(&length);
                u32::from_be_bytes(length) as usize - 4
            }
        };
        let mut body = vec![0u8; rest.min(64 * 1024)];
        stream.read_exact(&mut body).await?;
        startup.lock().unwrap().extend_from_slice(&body);
        stream.write_all(request).await?;
        stream.flush().await?;
        // Whatever the client sends next (a password message, if it answers).
        let mut buf = [0u8; 4096];
        while let Ok(Ok(n @ 1..)) =
            tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await
        {
            answered.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        Ok(())
    }

    fn startup(&self) -> Vec<u8> {
        self.startup.lock().unwrap().clone()
    }

    fn answered(&self) -> Vec<u8> {
        self.answered.lock().unwrap().clone()
    }

    fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A Vault dev server only (the PostgreSQL side is a fake).
async fn vault_only() -> (BaoServer, VaultClient) {
    let bao = BaoServer::start().await;
    let client = common::ready_client(&bao).await;
    (bao, client)
}

const FAKE_ADMIN_PASSWORD: &str = "Adm1n-Fake-Pg-Secret-9431";

fn fake_rotator(client: &VaultClient, port: u16) -> DatabaseCredentialRotator {
    DatabaseCredentialRotator::new(
        client.clone(),
        "127.0.0.1",
        "vault_admin",
        SecretString::from(FAKE_ADMIN_PASSWORD.to_string()),
    )
    .port(port)
    .connect_timeout(Duration::from_secs(2))
    .owner("r1")
    .strategy(Strategy::single_user("app"))
}

/// A TLS acceptor with a certificate for 127.0.0.1 from a throwaway CA; and the CA.
async fn fake_tls() -> (tokio_rustls::TlsAcceptor, Vec<u8>, tempfile::TempDir) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let ca = vault_ops_testkit::make_tls_certificates(&tls).await;
    let cert_pem = std::fs::read(tls.join("server.crt")).unwrap();
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key =
        PrivateKeyDer::from_pem_slice(&std::fs::read(tls.join("server.key")).unwrap()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), ca, dir)
}

#[tokio::test]
async fn cleartext_and_md5_password_requests_are_refused_before_the_password_is_sent() {
    let ((_bao, client), (acceptor, ca, _dir)) = tokio::join!(vault_only(), fake_tls());
    for (what, request) in [("cleartext", ASK_CLEARTEXT), ("MD5", ASK_MD5)] {
        // A server with a valid certificate that asks for the password in a weak form.
        let fake = FakePg::start(Some(acceptor.clone()), request).await;
        let rotator = fake_rotator(&client, fake.port).tls_ca_pem(ca.clone());
        let r = rotator.rotate("fake-db").await;
        assert_status(&r, RotationStatus::Failed);
        match &r.error {
            Some(RotationError::Database {
                operation, message, ..
            }) => {
                assert_eq!(operation, "connect as the admin");
                assert!(
                    message.contains(what) && message.contains("refused"),
                    "{message}"
                );
            }
            other => panic!("{what}: expected a database error, got {other:?}"),
        }
        assert!(
            contains(&fake.startup(), b"vault_admin"),
            "{what}: the startup message reached the fake over TLS"
        );
        assert!(
            fake.answered().is_empty(),
            "{what}: the client answered the request: {:?}",
            fake.answered()
        );
        assert!(!contains(&fake.startup(), FAKE_ADMIN_PASSWORD.as_bytes()));
        assert_eq!(
            StateStore::new(client.clone(), MOUNT, "rotation-state/database")
                .load::<Value>("fake-db")
                .await
                .unwrap()
                .version,
            0,
            "nothing claimed"
        );

        // Only the explicit opt-in answers it (with the password, or its MD5 hash): the
        // check above is what keeps it from doing so.
        let fake = FakePg::start(Some(acceptor.clone()), request).await;
        let r = rotator
            .clone()
            .port(fake.port)
            .allow_insecure_local_dev()
            .rotate("fake-db")
            .await;
        assert_status(&r, RotationStatus::Failed);
        let answered = fake.answered();
        assert_eq!(answered.first(), Some(&b'p'), "{what}: {answered:?}");
        if what == "cleartext" {
            assert!(contains(&answered, FAKE_ADMIN_PASSWORD.as_bytes()));
        }
    }
}

#[tokio::test]
async fn a_server_without_tls_gets_nothing_and_plain_text_must_be_asked_for() {
    let (_bao, client) = vault_only().await;
    // A server (or an on-path attacker) that answers "no TLS" and asks for the password in
    // cleartext.
    let fake = FakePg::start(None, ASK_CLEARTEXT).await;
    let r = fake_rotator(&client, fake.port).rotate("plain-db").await;
    assert_status(&r, RotationStatus::Failed);
    let text = r.error.as_ref().unwrap().to_string();
    assert!(text.contains("TLS"), "{text}");
    assert_eq!(fake.connections(), 1);
    assert_eq!(
        fake.startup(),
        SSL_REQUEST.to_vec(),
        "only the SSLRequest: no startup message, no user name, no password"
    );
    assert!(fake.answered().is_empty());

    // Prefer (which would fall back to plain text) and Disable are refused without a
    // connection.
    for mode in [TlsMode::Prefer, TlsMode::Disable] {
        let r = fake_rotator(&client, fake.port)
            .tls(mode)
            .rotate("plain-db")
            .await;
        assert!(
            matches!(&r.error, Some(RotationError::Config(m)) if m.contains("plain text")),
            "{mode:?}: {:?}",
            r.error
        );
    }
    assert_eq!(fake.connections(), 1, "no further connection");
}

#[tokio::test]
async fn a_locked_role_fails_within_the_lock_timeout_and_a_later_run_rotates() {
    let env = env().await;
    env.create_role("app").await;
    let rotator = env
        .rotator("r1")
        .strategy(Strategy::single_user("app"))
        .statement_timeout(Duration::from_secs(5))
        .lock_timeout(Duration::from_secs(1));
    assert_status(&rotator.rotate("lock-db").await, RotationStatus::Success);
    let before = env.credential("lock-db").await;

    // Another session altered the role in a transaction it keeps open: its row in pg_authid
    // is locked until that transaction ends.
    let blocker = env.superuser().await;
    blocker
        .batch_execute("BEGIN; ALTER ROLE app CONNECTION LIMIT 7")
        .await
        .unwrap();

    for r in [
        // lock_timeout
        &rotator,
        // statement_timeout (the lock timeout is never longer than the statement timeout)
        &rotator
            .clone()
            .statement_timeout(Duration::from_secs(1))
            .lock_timeout(Duration::from_secs(60)),
    ] {
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(60), r.rotate("lock-db"))
            .await
            .expect("rotate must not wait for the lock forever");
        let took = started.elapsed();
        assert_status(&result, RotationStatus::Failed);
        let error = result.error.as_ref().unwrap();
        assert!(error.is_timeout(), "{error:?}");
        match error {
            RotationError::Database {
                operation, code, ..
            } => {
                assert_eq!(operation, "alter role");
                assert!(
                    matches!(code.as_deref(), Some("55P03" | "57014")),
                    "{code:?}"
                );
            }
            other => panic!("expected the server's timeout error, got {other:?}"),
        }
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(20),
            "{took:?}"
        );
        // The server cancelled the statement: nothing changed, and `S` is closed (not left
        // claimed).
        let (_, state) = env.state("lock-db").await;
        assert!(state.pending().is_none(), "{state:?}");
        assert_eq!(env.credential("lock-db").await.version, before.version);
        env.assert_logs_in(&before).await;
    }

    blocker.batch_execute("ROLLBACK").await.unwrap();
    assert_status(&rotator.rotate("lock-db").await, RotationStatus::Success);
    let after = env.credential("lock-db").await;
    assert_eq!(after.version, before.version + 1);
    env.assert_logs_in(&after).await;
}

#[tokio::test]
async fn a_statement_without_reply_times_out_and_the_next_run_resumes() {
    let env = env().await;
    env.create_role("app").await;
    let direct = env.rotator("r1").strategy(Strategy::single_user("app"));
    assert_status(&direct.rotate("stall-db").await, RotationStatus::Success);
    let before = env.credential("stall-db").await;

    // PostgreSQL behind a proxy that stops forwarding right after the claim: `ALTER ROLE`
    // is sent and no reply ever comes (nor does the server's own timeout error).
    let proxy = Proxy::start(env.pg.port()).await;
    let p = proxy.clone();
    let hook: FaultHook = Arc::new(move |point| {
        let p = p.clone();
        Box::pin(async move {
            if point == FaultPoint::AfterClaim {
                p.set(ProxyMode::Stall);
            }
            false
        })
    });
    let stalled = env
        .rotator("r1")
        .port(proxy.port())
        .strategy(Strategy::single_user("app"))
        .statement_timeout(Duration::from_secs(1))
        .fault_hook(hook);
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(60), stalled.rotate("stall-db"))
        .await
        .expect("rotate must not wait for a reply forever");
    let took = started.elapsed();
    assert_status(&r, RotationStatus::Failed);
    match r.error.as_ref().unwrap() {
        RotationError::TimedOut { operation, after } => {
            assert_eq!(operation, "alter role");
            assert_eq!(*after, Duration::from_secs(3), "statement timeout + 2 s");
        }
        other => panic!("expected a client-side timeout, got {other:?}"),
    }
    assert!(r.error.as_ref().unwrap().is_timeout());
    assert!(took < Duration::from_secs(20), "{took:?}");
    // The statement may still land: `S` stays pending with the password it would set.
    let (_, state) = env.state("stall-db").await;
    assert_eq!(state.pending().unwrap().step, Step::Claimed);
    let pending_password = state.pending().unwrap().payload["password"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(env.credential("stall-db").await.version, before.version);
    env.assert_logs_in(&before).await;

    // The next run (same owner: at once) probes, applies the recorded password and commits.
    proxy.set(ProxyMode::Pass);
    let resumed = direct.rotate("stall-db").await;
    assert_status(&resumed, RotationStatus::Success);
    let after = env.credential("stall-db").await;
    assert_eq!(after.version, before.version + 1);
    assert_eq!(after.password, pending_password);
    env.assert_logs_in(&after).await;
}

impl Env {
    /// Replaces the `host` line of pg_hba.conf with `method` and waits until the server has
    /// reloaded it.
    async fn host_auth_method(&self, method: &str) {
        let reloads = |log: &str| log.matches("reloading configuration files").count();
        let before = reloads(&self.pg.log());
        std::fs::write(
            self.pg.dir().join("data/pg_hba.conf"),
            format!("local all all scram-sha-256\nhost all all 127.0.0.1/32 {method}\n"),
        )
        .unwrap();
        self.sql("SELECT pg_reload_conf()").await;
        for _ in 0..100 {
            if reloads(&self.pg.log()) > before {
                // The log line comes first, the new rules right after it.
                tokio::time::sleep(Duration::from_millis(300)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("PostgreSQL did not reload pg_hba.conf");
    }
}

#[tokio::test]
async fn a_real_server_asking_for_a_cleartext_or_md5_password_is_refused() {
    let env = env().await;
    env.create_role("app").await;
    env.sql(
        "SET password_encryption = 'md5'; \
         CREATE ROLE md5_admin LOGIN CREATEROLE PASSWORD 'Md5-Admin-Password-4417'",
    )
    .await;
    let md5_admin = |owner: &str| {
        DatabaseCredentialRotator::new(
            env.client.clone(),
            env.pg.host(),
            "md5_admin",
            SecretString::from("Md5-Admin-Password-4417".to_string()),
        )
        .port(env.pg.port())
        .tls_ca_pem(env.pg.ca_pem())
        .owner(owner)
        .strategy(Strategy::single_user("app"))
    };
    // `password`: PostgreSQL asks for the password in cleartext (inside the verified TLS
    // session here, but still the password itself).
    env.host_auth_method("password").await;
    let r = env
        .rotator("r1")
        .strategy(Strategy::single_user("app"))
        .rotate("weak-db")
        .await;
    assert_status(&r, RotationStatus::Failed);
    let text = r.error.as_ref().unwrap().to_string();
    assert!(
        text.contains("cleartext") && text.contains("refused"),
        "{text}"
    );
    // `md5` with a role whose password is stored as MD5: PostgreSQL asks for the MD5 hash.
    env.host_auth_method("md5").await;
    let r = md5_admin("r1").rotate("weak-db").await;
    assert_status(&r, RotationStatus::Failed);
    let text = r.error.as_ref().unwrap().to_string();
    assert!(text.contains("MD5") && text.contains("refused"), "{text}");
    assert_eq!(env.state("weak-db").await.0, 0, "nothing claimed");
    assert_eq!(env.credential_version("weak-db").await, None);
    let log = env.pg.log();
    assert!(
        !log.contains("connection authorized: user=md5_admin"),
        "the refused logins never completed"
    );

    // Allowed explicitly for a local test server, the same logins work.
    assert_status(
        &md5_admin("r1")
            .allow_insecure_local_dev()
            .rotate("weak-db")
            .await,
        RotationStatus::Success,
    );
    env.host_auth_method("password").await;
    assert_status(
        &env.rotator("r1")
            .strategy(Strategy::single_user("app"))
            .allow_insecure_local_dev()
            .rotate("weak-db")
            .await,
        RotationStatus::Success,
    );
    let c = env.credential("weak-db").await;
    assert_eq!(c.version, 2);
    env.assert_logs_in(&c).await;
}
