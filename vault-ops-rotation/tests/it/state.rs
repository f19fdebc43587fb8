//! The rotation state record against a real OpenBao dev server.

use std::time::Duration;

use serde_json::{json, Value};
use vault_ops_core::VaultClient;
use vault_ops_rotation::state::{
    vault_time, ClaimOptions, Close, HistoryOutcome, StateError, StateStore, Step,
};
use vault_ops_testkit::BaoServer;

use crate::common;
use common::{Proxy, ProxyMode};

fn client(bao: &BaoServer) -> VaultClient {
    common::root_client(bao)
}

fn store(client: &VaultClient) -> StateStore {
    StateStore::new(client.clone(), "secret", "rotation-state/test")
}

#[tokio::test]
async fn claim_advance_close_and_fencing() {
    let bao = BaoServer::start().await;
    let client = client(&bao);
    common::wait_for_kv(&client).await;
    let store = store(&client);
    let a = ClaimOptions::new("a", Duration::from_secs(60));
    let b = ClaimOptions::new("b", Duration::from_secs(60));

    let empty = store.load::<Value>("k").await.unwrap();
    assert_eq!(empty.version, 0);
    assert!(empty.is_idle());
    assert!(empty.is_due(Duration::from_secs(1)), "never rotated: due");
    assert!(empty.vault_now.is_some(), "Vault's Date header is read");

    let mut claim = store.claim(&empty, &a, 4, json!({"k": "v"})).await.unwrap();
    assert_eq!(claim.version(), 1);
    assert_eq!(claim.pending().epoch, 1);
    assert_eq!(claim.pending().base_version, 4);
    assert!(!claim.resumed());
    let meta = client
        .kv2("secret")
        .read_metadata("rotation-state/test/k")
        .await
        .unwrap()
        .unwrap();
    assert!(meta.cas_required);

    // The stale snapshot loses the race.
    let raced = store.claim(&empty, &b, 4, json!({})).await.unwrap_err();
    assert!(
        matches!(
            raced,
            StateError::Fenced {
                expected_version: 0,
                ..
            }
        ),
        "{raced}"
    );
    assert!(raced.is_contended());

    let snap = store.load::<Value>("k").await.unwrap();
    assert_eq!(snap.version, 1);
    assert_eq!(snap.pending().unwrap().owner, "a");
    assert!(!snap.lease_expired());
    let lease_end = snap.lease_expires_at().unwrap();
    let written = vault_time::parse_rfc3339(&snap.created_time).unwrap();
    assert_eq!(lease_end, written + Duration::from_secs(60));
    // Another owner: held (a new claim or a takeover).
    assert!(matches!(
        store.claim(&snap, &b, 4, json!({})).await,
        Err(StateError::Held { .. })
    ));
    assert!(matches!(
        store.take_over(&snap, &b).await,
        Err(StateError::Held { .. })
    ));
    // The same owner: must take over, not claim anew.
    assert!(matches!(
        store.claim(&snap, &a, 4, json!({})).await,
        Err(StateError::Unfinished { epoch: 1, .. })
    ));

    store.advance(&mut claim, Step::Applied).await.unwrap();
    assert_eq!(claim.version(), 2);
    let snap = store.load::<Value>("k").await.unwrap();
    assert_eq!(snap.pending().unwrap().step, Step::Applied);
    assert_eq!(snap.pending().unwrap().payload, json!({"k": "v"}));

    let mut again = store.take_over(&snap, &a).await.unwrap();
    assert!(again.resumed());
    assert_eq!(again.pending().takeovers, 0, "own takeover");
    assert_eq!(again.version(), 3);
    // The first claim is fenced off now.
    let fenced = store.advance(&mut claim, Step::Verified).await.unwrap_err();
    assert!(
        matches!(
            fenced,
            StateError::Fenced {
                expected_version: 2,
                ..
            }
        ),
        "{fenced}"
    );

    store
        .mark_conflict(&mut again, "something odd")
        .await
        .unwrap();
    let snap = store.load::<Value>("k").await.unwrap();
    assert_eq!(
        snap.pending().unwrap().conflict.as_deref(),
        Some("something odd")
    );
    assert_eq!(snap.state.last_error.as_deref(), Some("something odd"));

    let created = "2030-01-02T03:04:05.5Z";
    let closed = store
        .close(
            again,
            Close::rotated(5, created).every(Some(Duration::from_secs(86_400))),
        )
        .await
        .unwrap();
    assert_eq!(closed.version, 5);
    let snap = store.load::<Value>("k").await.unwrap();
    assert!(snap.is_idle());
    assert_eq!(snap.state.rotations, 1);
    assert_eq!(snap.state.credential_version, Some(5));
    assert_eq!(snap.state.last_rotated_at.as_deref(), Some(created));
    assert_eq!(
        snap.state.next_due_at.as_deref(),
        Some("2030-01-03T03:04:05.5Z")
    );
    assert!(snap.state.last_error.is_none());
    assert!(
        !snap.is_due(Duration::from_secs(86_400)),
        "rotated 'in 2030'"
    );
    let outcomes: Vec<_> = snap.state.history.iter().map(|h| h.outcome).collect();
    assert_eq!(
        outcomes,
        vec![HistoryOutcome::Conflict, HistoryOutcome::Rotated]
    );
    assert!(matches!(
        store.take_over(&snap, &a).await,
        Err(StateError::NotPending { .. })
    ));

    // A note keeps the phase and records the outcome.
    let noted = store
        .note(
            &snap,
            "b",
            Close::with_outcome(HistoryOutcome::Failed, "db down"),
        )
        .await
        .unwrap();
    assert_eq!(noted.version, 6);
    assert_eq!(noted.state.last_error.as_deref(), Some("db down"));
    assert_eq!(noted.state.history.last().unwrap().owner, "b");
}

#[tokio::test]
async fn expired_lease_is_taken_over_and_history_is_bounded() {
    let bao = BaoServer::start().await;
    let client = client(&bao);
    common::wait_for_kv(&client).await;
    let store = store(&client).history_limit(3);
    let a = ClaimOptions::new("a", Duration::ZERO);
    let b = ClaimOptions::new("b", Duration::from_secs(60));

    let snap = store.load::<Value>("x").await.unwrap();
    store.claim(&snap, &a, 0, json!(1)).await.unwrap();
    // Vault's Date header has one-second resolution (rounded down): a zero lease is seen
    // expired within about a second, never before its time.
    let mut snap = store.load::<Value>("x").await.unwrap();
    for _ in 0..12 {
        if snap.lease_expired() {
            break;
        }
        assert!(snap.now() < snap.lease_expires_at().unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
        snap = store.load::<Value>("x").await.unwrap();
    }
    assert!(snap.lease_expired(), "a zero lease expires");
    let claim = store.take_over(&snap, &b).await.unwrap();
    assert_eq!(claim.pending().owner, "b");
    assert_eq!(claim.pending().takeovers, 1);
    store
        .close(
            claim,
            Close::with_outcome(HistoryOutcome::Abandoned, "test"),
        )
        .await
        .unwrap();

    for i in 0..4 {
        let snap = store.load::<Value>("x").await.unwrap();
        let claim = store.claim(&snap, &b, i, json!(i)).await.unwrap();
        store
            .close(
                claim,
                Close::with_outcome(HistoryOutcome::Failed, format!("run {i}")),
            )
            .await
            .unwrap();
    }
    let snap = store.load::<Value>("x").await.unwrap();
    assert_eq!(snap.state.history.len(), 3);
    assert_eq!(
        snap.state.history.last().unwrap().detail.as_deref(),
        Some("run 3")
    );
    assert_eq!(snap.state.epoch, 5);
}

#[tokio::test]
async fn corrupt_record_and_bad_name() {
    let bao = BaoServer::start().await;
    let client = client(&bao);
    common::wait_for_kv(&client).await;
    let store = store(&client);
    client
        .kv2("secret")
        .put(
            "rotation-state/test/bad",
            &json!({"phase": {"state": "pending", "epoch": "secret-ish"}}),
        )
        .await
        .unwrap();
    let err = store.load::<Value>("bad").await.unwrap_err();
    assert!(
        matches!(err, StateError::Corrupt { version: 1, .. }),
        "{err}"
    );
    assert!(!err.to_string().contains("secret-ish"), "{err}");
    assert!(store.load::<Value>("").await.is_err());
}

/// A write whose reply is lost and whose retry then hits a CAS mismatch is recognised as
/// landed (by its write id), not reported as fenced.
#[tokio::test]
async fn lost_reply_of_a_state_write_is_resolved_by_reading() {
    let bao = BaoServer::start().await;
    common::wait_for_kv(&client(&bao)).await;
    let proxy = Proxy::start(bao.port()).await;
    // Retries on: the lost reply's retry finds the CAS version already taken (by itself).
    let retrying = VaultClient::builder()
        .address(&proxy.addr)
        .token(bao.root_token())
        .retry_wait(Duration::from_millis(50), Duration::from_millis(60))
        .build()
        .unwrap();
    let store = store(&retrying);
    let opts = ClaimOptions::new("a", Duration::from_secs(60));
    let snap = store.load::<Value>("lost").await.unwrap();
    let mut claim = store.claim(&snap, &opts, 0, json!("p")).await.unwrap();
    let version = claim.version();

    proxy.set(ProxyMode::DropOnce);
    store
        .advance(&mut claim, Step::Applied)
        .await
        .expect("the landed write is recognised");
    assert_eq!(claim.version(), version + 1);
    let snap = store.load::<Value>("lost").await.unwrap();
    assert_eq!(snap.version, version + 1, "written once");
    assert_eq!(snap.pending().unwrap().step, Step::Applied);

    // Without retries the same loss is resolved by the re-read.
    let once = StateStore::new(
        proxy.client(bao.root_token()),
        "secret",
        "rotation-state/test",
    );
    proxy.set(ProxyMode::DropOnce);
    once.advance(&mut claim, Step::Verified)
        .await
        .expect("resolved by reading");
    assert_eq!(claim.version(), version + 2);

    // A real loss (nothing reaches Vault) is an error, and the claim stays usable.
    proxy.set(ProxyMode::Refuse);
    let err = once.advance(&mut claim, Step::Committed).await.unwrap_err();
    assert!(err.vault().is_some_and(|e| e.is_transport()), "{err}");
    proxy.set(ProxyMode::Pass);
    once.advance(&mut claim, Step::Committed).await.unwrap();
    assert_eq!(claim.version(), version + 3);
}

/// Writes `record` as the next version of `rotation-state/test/<name>` with the raw KV API
/// (as anyone with write access to `S` could), returning the version written.
async fn write_raw(client: &VaultClient, name: &str, record: Value) -> u64 {
    let kv = client.kv2("secret");
    let path = format!("rotation-state/test/{name}");
    let current = kv
        .read_metadata(&path)
        .await
        .expect("metadata")
        .map_or(0, |m| m.current_version);
    kv.put_cas(&path, &record, current)
        .await
        .expect("raw write")
        .version
}

/// Records a rotation store did not write, or whose timestamps do not parse, are reported as
/// corrupt: never read as "never rotated" (which would make a run rotate), never a panic.
#[tokio::test]
async fn tampered_or_undecodable_records_are_corrupt() {
    let bao = BaoServer::start().await;
    let client = client(&bao);
    common::wait_for_kv(&client).await;
    let store = store(&client);

    for (name, record, why) in [
        (
            "bad-offset",
            json!({"write_id": "w", "last_rotated_at": "2026-01-01T00:00:00+0é00"}),
            "last_rotated_at",
        ),
        (
            "bad-due",
            json!({"write_id": "w", "next_due_at": "soon"}),
            "next_due_at",
        ),
        ("empty", json!({}), "write_id"),
        (
            "epochs",
            json!({"write_id": "w", "epoch": 2, "phase": {"state": "pending", "epoch": 7,
                "owner": "x", "lease_ms": 1, "step": "claimed", "base_version": 0, "payload": 1}}),
            "epoch",
        ),
    ] {
        let version = write_raw(&client, name, record).await;
        let err = store.load::<Value>(name).await.unwrap_err();
        match &err {
            StateError::Corrupt {
                version: v,
                message,
                ..
            } => {
                assert_eq!(*v, version, "{name}");
                assert!(message.contains(why), "{name}: {message}");
                assert!(!message.contains('é'), "no value is quoted: {message}");
            }
            other => panic!("{name}: expected Corrupt, got {other}"),
        }
    }

    // Out-of-range numbers are clamped, never a panic (an overflow). OpenBao keeps JSON
    // numbers as float64, so 2^63 is about the largest integer a record can hold.
    const HUGE: u64 = 1 << 63;
    write_raw(
        &client,
        "huge",
        json!({"write_id": "w", "epoch": HUGE, "rotations": HUGE, "period_ms": HUGE,
            "last_rotated_at": "9999-12-31T23:59:59Z"}),
    )
    .await;
    let snap = store.load::<Value>("huge").await.unwrap();
    assert!(!snap.is_due(Duration::MAX));
    assert_eq!(snap.due_at(Duration::MAX), Some(vault_time::max_time()));
    assert_eq!(
        snap.state.period(),
        Some(vault_ops_rotation::state::MAX_PERIOD)
    );
    let noted = store
        .note(
            &snap,
            "a",
            Close::rotated(1, "9999-12-31T23:59:59Z").every(Some(Duration::MAX)),
        )
        .await
        .unwrap();
    assert_eq!(noted.state.rotations, snap.state.rotations + 1);
    assert_eq!(
        noted.state.next_due_at.as_deref(),
        Some("9999-12-31T23:59:59Z")
    );
    assert_eq!(
        noted.state.period(),
        Some(vault_ops_rotation::state::MAX_PERIOD)
    );
    let snap = store.load::<Value>("huge").await.unwrap();
    let claim = store
        .claim(&snap, &ClaimOptions::new("a", Duration::MAX), 0, json!(1))
        .await
        .unwrap();
    assert!(snap.state.epoch >= HUGE);
    assert_eq!(claim.pending().epoch, snap.state.epoch + 1);
    assert_eq!(
        claim.pending().lease(),
        vault_ops_rotation::state::MAX_LEASE
    );

    write_raw(
        &client,
        "lease",
        json!({"write_id": "w", "epoch": 1, "phase": {"state": "pending", "epoch": 1,
            "owner": "x", "lease_ms": HUGE, "step": "claimed", "base_version": 0,
            "takeovers": u32::MAX, "payload": 1}}),
    )
    .await;
    let snap = store.load::<Value>("lease").await.unwrap();
    let written = vault_time::parse_rfc3339(&snap.created_time).unwrap();
    assert_eq!(
        snap.lease_expires_at(),
        Some(written + vault_ops_rotation::state::MAX_LEASE),
        "a recorded lease counts as MAX_LEASE at most"
    );
    let claim = store
        .take_over(&snap, &ClaimOptions::new("x", Duration::MAX))
        .await
        .unwrap();
    assert_eq!(claim.pending().takeovers, u32::MAX);
    assert_eq!(
        claim.pending().lease(),
        vault_ops_rotation::state::MAX_LEASE
    );

    // Another owner's takeover counts on without overflowing.
    write_raw(
        &client,
        "takeovers",
        json!({"write_id": "w", "epoch": 1, "phase": {"state": "pending", "epoch": 1,
            "owner": "x", "lease_ms": 0, "step": "claimed", "base_version": 0,
            "takeovers": u32::MAX, "payload": 1}}),
    )
    .await;
    let mut snap = store.load::<Value>("takeovers").await.unwrap();
    for _ in 0..12 {
        if snap.lease_expired() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        snap = store.load::<Value>("takeovers").await.unwrap();
    }
    let claim = store
        .take_over(&snap, &ClaimOptions::new("y", Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(claim.pending().takeovers, u32::MAX);
    assert_eq!(claim.pending().owner, "y");
}

/// A `Date` header with a 13-digit year (this overflowed in the date arithmetic) is not
/// Vault's clock: the read succeeds and the local clock stands in.
#[tokio::test]
async fn unreadable_date_header_is_not_a_panic() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/secret/data/rotation-state/test/x"))
        .respond_with(
            ResponseTemplate::new(404)
                .insert_header("date", "Sat, 28 Nov 1234567890123 17:49:16 GMT")
                .set_body_json(json!({"errors": []})),
        )
        .mount(&server)
        .await;
    let client = VaultClient::builder()
        .address(server.uri())
        .token("t")
        .max_retries(0)
        .build()
        .unwrap();
    let snap = tokio::time::timeout(Duration::from_secs(10), store(&client).load::<Value>("x"))
        .await
        .expect("bounded")
        .expect("a missing record");
    assert_eq!(snap.version, 0);
    assert_eq!(snap.vault_now, None);
}
