//! The driver with a third, minimal target (an in-memory "system" holding one password)
//! against a real OpenBao dev server: a target with no protocol code of its own gets the
//! crash-resume guarantees, the record checks and the out-of-band-change decision.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use vault_ops_testkit::BaoServer;

use super::*;

/// The system the toy target rotates: one password, and how often it was set.
#[derive(Clone, Default)]
struct System {
    password: Arc<Mutex<String>>,
    applies: Arc<AtomicUsize>,
}

impl System {
    fn password(&self) -> String {
        self.password.lock().expect("not poisoned").clone()
    }

    fn set(&self, password: &str) {
        *self.password.lock().expect("not poisoned") = password.to_string();
    }
}

#[derive(Clone, Serialize, Deserialize)]
struct ToyPayload {
    password: String,
}

struct Toy {
    client: VaultClient,
    system: System,
    fault: Option<FaultHook>,
}

fn password_of(data: &Map<String, Value>) -> Option<&str> {
    data.get("password").and_then(Value::as_str)
}

#[async_trait]
impl Target for Toy {
    type Payload = ToyPayload;
    type Cx = ();

    fn kind(&self) -> &'static str {
        "toy"
    }
    fn new_cx(&self) {}
    fn client(&self) -> &VaultClient {
        &self.client
    }
    fn mount(&self) -> &str {
        "secret"
    }
    fn store(&self) -> StateStore {
        StateStore::new(self.client.clone(), "secret", "rotation-state/toy")
    }
    fn claim_options(&self) -> ClaimOptions {
        ClaimOptions::new("toy-owner", Duration::from_secs(60))
    }
    fn fault_hook(&self) -> Option<FaultHook> {
        self.fault.clone()
    }
    fn keep_versions(&self) -> KeepVersions {
        KeepVersions {
            at_least: 2,
            raise_to: 5,
            when_unset: 5,
        }
    }
    fn remedy(&self) -> &'static str {
        "delete the record"
    }
    fn conflict_recheck(&self) -> Duration {
        Duration::from_millis(10)
    }
    fn subject(&self, name: &str) -> Result<Subject, RotationError> {
        Ok(Subject {
            name: name.into(),
            key: name.into(),
            path: format!("toy/{name}"),
        })
    }
    fn check_credential(&self, _: &Subject, c: &Credential) -> Result<(), RotationError> {
        match password_of(&c.data) {
            Some(_) => Ok(()),
            None => Err(RotationError::Config("no password".into())),
        }
    }
    fn holds(&self, data: &Map<String, Value>, payload: &ToyPayload) -> bool {
        password_of(data) == Some(payload.password.as_str())
    }
    fn commit_data(
        &self,
        _: &Subject,
        _: Option<&Credential>,
        payload: &ToyPayload,
    ) -> Result<Map<String, Value>, Failure> {
        let mut data = Map::new();
        data.insert("password".into(), Value::String(payload.password.clone()));
        Ok(data)
    }
    async fn check_pending(
        &self,
        _: &mut Run,
        _: &Subject,
        pending: &Pending<ToyPayload>,
        _: Option<&Credential>,
    ) -> RecordCheck {
        if pending.payload.password.starts_with("toy-") {
            RecordCheck::Matches
        } else {
            RecordCheck::Disagrees("its password is not one the toy makes".into())
        }
    }
    async fn prepare(
        &self,
        _: &mut Run,
        _: &Subject,
        current: Option<&Credential>,
    ) -> Result<Prepared<ToyPayload>, Failure> {
        if let Some(c) = current {
            if password_of(&c.data) != Some(self.system.password().as_str()) {
                return Ok(Prepared::Rejected("is not the system's password".into()));
            }
        }
        Ok(Prepared::Claim(ToyPayload {
            password: format!("toy-{:016x}", rand::random::<u64>()),
        }))
    }
    async fn still_rejected(&self, _: &mut Run, c: &Credential) -> Result<bool, Failure> {
        Ok(password_of(&c.data) != Some(self.system.password().as_str()))
    }
    async fn apply(
        &self,
        _: &mut Run,
        _: &Subject,
        claim: &Claim<ToyPayload>,
    ) -> Result<Applied<ToyPayload>, ApplyError> {
        self.system.set(&claim.payload().password);
        self.system.applies.fetch_add(1, Ordering::SeqCst);
        Ok(Applied::Done)
    }
    async fn verify(&self, _: &mut Run, claim: &Claim<ToyPayload>) -> Verified {
        if self.system.password() == claim.payload().password {
            Verified::Works
        } else {
            Verified::Failed(RotationError::Config("not set".into()))
        }
    }
    async fn roll_back(
        &self,
        _: &mut Run,
        _: &Claim<ToyPayload>,
    ) -> Result<HistoryOutcome, RotationError> {
        Ok(HistoryOutcome::Failed)
    }
    async fn resume_from(
        &self,
        _: &mut Run,
        _: &Subject,
        claim: &Claim<ToyPayload>,
        _: Option<&Credential>,
    ) -> Result<ResumeFrom, Failure> {
        Ok(if self.system.password() == claim.payload().password {
            ResumeFrom::Verify
        } else {
            ResumeFrom::Apply
        })
    }
}

/// A hook that stops the run (once) at `at`.
fn stop_once_at(at: FaultPoint) -> FaultHook {
    let fired = Arc::new(AtomicUsize::new(0));
    Arc::new(move |point| {
        let fire = point == at && fired.fetch_add(1, Ordering::SeqCst) == 0;
        Box::pin(async move { fire })
    })
}

async fn server() -> (BaoServer, VaultClient) {
    let bao = BaoServer::start().await;
    let client = VaultClient::builder()
        .address(bao.addr())
        .token(bao.root_token())
        .build()
        .expect("client");
    (bao, client)
}

#[derive(Deserialize)]
struct Data {
    password: String,
}

async fn committed(client: &VaultClient, name: &str) -> (u64, String) {
    let c = client
        .kv2("secret")
        .get::<Data>(&format!("toy/{name}"))
        .await
        .expect("C");
    (c.metadata.version, c.data.password)
}

#[tokio::test]
async fn a_target_without_protocol_code_resumes_after_a_crash_at_every_point() {
    let (_bao, client) = server().await;
    let system = System::default();
    let toy = |fault| Toy {
        client: client.clone(),
        system: system.clone(),
        fault,
    };
    let first = drive(&toy(None), "app", None).await;
    assert!(first.is_success(), "{first:?}");
    assert_eq!(first.version_after, Some(1));

    let points = [
        FaultPoint::AfterRead,
        FaultPoint::AfterClaim,
        FaultPoint::AfterApply,
        FaultPoint::AfterVerify,
        FaultPoint::AfterCommit,
    ];
    for (i, point) in points.into_iter().enumerate() {
        let version = 1 + i as u64;
        let applies = system.applies.load(Ordering::SeqCst);
        let stopped = drive(&toy(Some(stop_once_at(point))), "app", None).await;
        assert_eq!(stopped.status, RotationStatus::Failed, "{point:?}");
        assert!(
            matches!(stopped.error, Some(RotationError::Interrupted(p)) if p == point),
            "{point:?}: {stopped:?}"
        );
        let resumed = drive(&toy(None), "app", None).await;
        assert!(resumed.is_success(), "{point:?}: {resumed:?}");
        // Stopped before the claim: a fresh rotation; after it: the crashed one finished.
        assert_eq!(resumed.resumed, point != FaultPoint::AfterRead, "{point:?}");
        // Exactly one new version of `C`, holding the password the system has.
        let (now, password) = committed(&client, "app").await;
        assert_eq!(now, version + 1, "{point:?}");
        assert_eq!(resumed.version_after, Some(now), "{point:?}");
        assert_eq!(password, system.password(), "{point:?}");
        // Applied once: a resume after the apply does not apply again.
        assert_eq!(
            system.applies.load(Ordering::SeqCst) - applies,
            1,
            "{point:?}"
        );
        let state = toy(None)
            .store()
            .load::<ToyPayload>("app")
            .await
            .expect("S");
        assert!(state.pending().is_none(), "{point:?}");
    }
}

#[tokio::test]
async fn a_target_gets_the_record_check_and_the_out_of_band_decision() {
    let (_bao, client) = server().await;
    let system = System::default();
    let toy = Toy {
        client: client.clone(),
        system: system.clone(),
        fault: None,
    };
    assert!(drive(&toy, "app", None).await.is_success());

    // The password changed outside the rotation: a conflict after a second look, C kept.
    system.set("changed-by-hand");
    let r = drive(&toy, "app", None).await;
    assert_eq!(r.status, RotationStatus::Conflict, "{r:?}");
    assert_eq!(committed(&client, "app").await.0, 1);
    assert_eq!(system.applies.load(Ordering::SeqCst), 1, "nothing applied");

    // A pending record the target would not have claimed: a conflict, never acted on.
    let (_, c) = committed(&client, "app").await;
    system.set(&c);
    let hook = stop_once_at(FaultPoint::AfterClaim);
    let stopped = drive(
        &Toy {
            client: client.clone(),
            system: system.clone(),
            fault: Some(hook),
        },
        "app",
        None,
    )
    .await;
    assert_eq!(stopped.status, RotationStatus::Failed);
    let store = toy.store();
    let snap = store.load::<ToyPayload>("app").await.expect("S");
    let mut claim = store
        .take_over(&snap, &toy.claim_options())
        .await
        .expect("take over");
    claim.pending_mut().payload.password = "attacker-chosen".into();
    store.save(&mut claim).await.expect("tamper");
    let r = drive(&toy, "app", None).await;
    assert_eq!(r.status, RotationStatus::Conflict, "{r:?}");
    assert_ne!(system.password(), "attacker-chosen");
    assert_eq!(committed(&client, "app").await.0, 1, "C untouched");
}
