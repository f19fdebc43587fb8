//! API key rotation against a real OpenBao dev server.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use secrecy::ExposeSecret;
use serde_json::{json, Map, Value};
use vault_ops_core::api::kv2::MetadataUpdate;
use vault_ops_core::api::tokens::TokenCreateRequest;
use vault_ops_core::{ApiKey, VaultClient};
use vault_ops_rotation::api_key::{
    Alphabet, ApiKeyOptions, ApiKeyRotator, IssueRequest, IssuedKey, IssuerError, KeyFormat,
    KeyIssuer, RevokeRequest,
};
use vault_ops_rotation::{FaultHook, FaultPoint, RotationError, RotationStatus, Rotator};
use vault_ops_testkit::BaoServer;

use crate::common;

type Res = Result<(), Box<dyn std::error::Error>>;

async fn server() -> (BaoServer, VaultClient) {
    let bao = BaoServer::start().await;
    let client = common::root_client(&bao);
    (bao, client)
}

fn rotator(client: &VaultClient, owner: &str) -> ApiKeyRotator {
    ApiKeyRotator::new(client.clone()).with_options(ApiKeyOptions::new().owner(owner))
}

fn stop_at(point: FaultPoint) -> FaultHook {
    Arc::new(move |p| Box::pin(async move { p == point }))
}

async fn key_at(client: &VaultClient, path: &str, version: u64) -> String {
    let v = client
        .kv2("secret")
        .get_version::<Map<String, Value>>(path, version)
        .await
        .expect("read version");
    v.data["api_key"].as_str().expect("api_key").to_string()
}

async fn state(client: &VaultClient, path: &str) -> Value {
    Value::Object(
        client
            .kv2("secret")
            .get_json(&format!("rotation-state/api-key/{path}"))
            .await
            .expect("state record")
            .data,
    )
}

#[tokio::test]
async fn rotation_writes_a_new_version_and_keeps_the_old_one() -> Res {
    let (_bao, client) = server().await;
    let kv = client.kv2("secret");
    let path = "proxy/api-keys/stripe";
    // A secret that keeps a single version: the rotation raises that first.
    kv.write_metadata(path, &MetadataUpdate::new().max_versions(1))
        .await?;
    kv.put(
        path,
        &json!({"api_key": "initial-key-0001", "account": "acct_1"}),
    )
    .await?;

    let r = rotator(&client, "r1");
    let result = r.rotate_generic_api_key(path).await;
    assert_eq!(result.status, RotationStatus::Success, "{:?}", result.error);
    assert_eq!(result.version_before, Some(1));
    assert_eq!(result.version_after, Some(2));
    assert!(!result.resumed, "a fresh rotation resumed nothing");
    assert!(result.error.is_none());
    assert!(result.steps.iter().any(|s| s.step == "commit"));

    let new = kv.get_json(path).await?;
    assert_eq!(new.metadata.version, 2);
    let key = new.data["api_key"].as_str().unwrap_or_default().to_string();
    assert!(
        KeyFormat::default().matches(&key),
        "default format: {}",
        key.len()
    );
    assert_ne!(key, "initial-key-0001");
    assert_eq!(new.data["account"], "acct_1", "other fields are kept");
    assert_eq!(key_at(&client, path, 1).await, "initial-key-0001");

    // C now requires CAS and keeps enough versions.
    let meta = kv.read_metadata(path).await?.expect("metadata");
    assert!(meta.cas_required);
    assert_eq!(meta.max_versions, 5, "raised to min_versions");

    // S is idle and records the rotation at Vault's created_time of version 2.
    let s = state(&client, path).await;
    assert_eq!(s["phase"]["state"], "idle");
    assert_eq!(s["credential_version"], 2);
    assert_eq!(s["last_rotated_at"], new.metadata.created_time.as_str());
    assert!(!s.to_string().contains(&key), "an idle record holds no key");

    // Again: version 3, version 2 readable.
    let again = r.rotate_generic_api_key(path).await;
    assert_eq!(again.status, RotationStatus::Success);
    assert_eq!(again.version_after, Some(3));
    assert_eq!(key_at(&client, path, 2).await, key);
    assert_ne!(key_at(&client, path, 3).await, key);

    // Nothing printed contains a key.
    let k3 = key_at(&client, path, 3).await;
    let shown = format!("{again:?} {r:?}");
    assert!(!shown.contains(&k3) && !shown.contains(&key));
    Ok(())
}

#[tokio::test]
async fn key_format_follows_the_options() -> Res {
    let (_bao, client) = server().await;
    let format = KeyFormat::new(32, Alphabet::hex_lower()).prefix("sk_test_");
    let r = ApiKeyRotator::new(client.clone())
        .with_options(ApiKeyOptions::new().format(format.clone()).field("token"));
    let result = r.rotate_generic_api_key("svc/hex").await;
    assert!(result.is_success(), "{:?}", result.error);
    assert_eq!(result.version_before, None, "created");
    let meta = client
        .kv2("secret")
        .read_metadata("svc/hex")
        .await?
        .expect("metadata");
    assert_eq!(meta.max_versions, 10, "the mount's default, made explicit");
    assert!(meta.cas_required);
    assert_eq!(result.version_after, Some(1));
    let data = client.kv2("secret").get_json("svc/hex").await?.data;
    let key = data["token"].as_str().unwrap_or_default();
    assert!(key.starts_with("sk_test_"), "prefix");
    assert_eq!(key.len(), 8 + 32);
    assert!(key[8..]
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert!(format.matches(key));
    assert!(data.get("api_key").is_none());

    let custom = KeyFormat::new(60, Alphabet::custom("abcdefgh234567XY")?);
    let keys: Vec<ApiKey> = (0..300).map(|_| custom.generate()).collect();
    let distinct: HashSet<&str> = keys.iter().map(|k| k.expose_secret()).collect();
    assert_eq!(distinct.len(), 300);
    let used: HashSet<char> = keys
        .iter()
        .flat_map(|k| k.expose_secret().chars())
        .collect();
    assert_eq!(used.len(), 16, "every character of the alphabet is used");
    assert!(keys.iter().all(|k| custom.matches(k.expose_secret())));
    assert!(!custom.matches("abc"));

    // Bad alphabets and weak formats are refused, and nothing is written.
    assert!(Alphabet::custom("a").is_err());
    assert!(Alphabet::custom("abca").is_err());
    assert!(Alphabet::custom("ab c").is_err());
    let weak = ApiKeyRotator::new(client.clone())
        .with_options(ApiKeyOptions::new().format(KeyFormat::new(16, Alphabet::hex_lower())));
    let result = weak.rotate_generic_api_key("svc/weak").await;
    assert_eq!(result.status, RotationStatus::Failed);
    assert!(
        matches!(&result.error, Some(RotationError::Config(m)) if m.contains("entropy")),
        "{:?}",
        result.error
    );
    assert!(client
        .kv2("secret")
        .get_opt::<Value>("svc/weak")
        .await?
        .is_none());
    let prefixed = ApiKeyRotator::new(client.clone())
        .with_options(ApiKeyOptions::new().format(KeyFormat::default().prefix("bad prefix")));
    assert_eq!(
        prefixed.rotate_generic_api_key("svc/weak").await.status,
        RotationStatus::Failed
    );
    let empty = r.rotate_generic_api_key("/").await;
    assert!(matches!(empty.error, Some(RotationError::Config(_))));
    Ok(())
}

#[tokio::test]
async fn rotator_names_map_to_paths() -> Res {
    let (_bao, client) = server().await;
    let r = rotator(&client, "r1");
    assert_eq!(r.path_for("stripe"), "api-keys/stripe");
    // Its own S prefix, apart from the database rotator's rotation-state/database.
    assert_eq!(
        r.state_store().path("api-keys/stripe"),
        "rotation-state/api-key/api-keys/stripe"
    );
    // A credential path whose S would be another credential's revocation list.
    let refused = r.rotate_generic_api_key("svc/x.revocations").await;
    assert_eq!(refused.status, RotationStatus::Failed);
    assert!(
        matches!(refused.error, Some(RotationError::Config(_))),
        "{:?}",
        refused.error
    );
    let result = r.rotate("stripe").await;
    assert!(result.is_success(), "{:?}", result.error);
    assert_eq!(result.name, "stripe");
    assert!(client
        .kv2("secret")
        .get_json("api-keys/stripe")
        .await
        .is_ok());

    let flat = ApiKeyRotator::new(client.clone())
        .with_options(ApiKeyOptions::new().key_prefix("").owner("r2"));
    assert_eq!(
        flat.path_for("proxy/api-keys/github"),
        "proxy/api-keys/github"
    );
    assert!(flat.rotate("proxy/api-keys/github").await.is_success());
    assert!(client
        .kv2("secret")
        .get_json("proxy/api-keys/github")
        .await
        .is_ok());

    // rotate_if_due: due (never rotated) → rotated; then not due → skipped with the due time.
    let due = r.rotate_if_due("github", Duration::from_secs(3600)).await;
    assert!(due.is_success());
    let skipped = r.rotate_if_due("github", Duration::from_secs(3600)).await;
    assert_eq!(skipped.status, RotationStatus::SkippedNotDue);
    assert_eq!(skipped.version_after, Some(1));
    let next = skipped.next_due_at.expect("next due");
    let ahead = next.duration_since(SystemTime::now())?;
    assert!(
        ahead > Duration::from_secs(3590) && ahead < Duration::from_secs(3610),
        "{ahead:?}"
    );
    Ok(())
}

#[tokio::test]
async fn permission_denied_is_a_typed_failure() -> Res {
    let (_bao, client) = server().await;
    client
        .kv2("secret")
        .put("api-keys/ro", &json!({"api_key": "k-0001"}))
        .await?;
    let hcl = r#"path "secret/data/*" { capabilities = ["read"] }
path "secret/metadata/*" { capabilities = ["read"] }"#;
    client
        .generic()
        .write_raw("sys/policies/acl/read-only", &json!({ "policy": hcl }))
        .await?;
    let auth = client
        .tokens()
        .create(&TokenCreateRequest::with_policies(["read-only"]))
        .await?;
    let narrow = client.with_token(auth.client_token.clone());
    let result = rotator(&narrow, "r1").rotate("ro").await;
    assert_eq!(result.status, RotationStatus::Failed);
    let err = result.error.expect("error");
    let denied = match &err {
        RotationError::State(e) => e.vault().is_some_and(|v| v.is_permission_denied()),
        RotationError::Vault(v) => v.is_permission_denied(),
        _ => false,
    };
    assert!(denied, "{err}");
    assert_eq!(
        client
            .kv2("secret")
            .get_json("api-keys/ro")
            .await?
            .metadata
            .version,
        1
    );
    Ok(())
}

#[tokio::test]
async fn concurrent_rotations_never_lose_an_update() -> Res {
    let (_bao, client) = server().await;
    let path = "api-keys/race";
    client
        .kv2("secret")
        .put(path, &json!({"api_key": "k-0001"}))
        .await?;

    // rotate_if_due from eight replicas at once: exactly one rotation.
    let rotators: Vec<ApiKeyRotator> = (0..8).map(|i| rotator(&client, &format!("r{i}"))).collect();
    let every = Duration::from_secs(3600);
    let results = futures_join(rotators.iter().map(|r| r.rotate_if_due("race", every))).await;
    let ok = results.iter().filter(|r| r.is_success()).count();
    let skipped = results
        .iter()
        .filter(|r| r.status == RotationStatus::SkippedNotDue)
        .count();
    assert_eq!(
        ok,
        1,
        "{:?}",
        results.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(skipped, 7);
    assert_eq!(
        client.kv2("secret").get_json(path).await?.metadata.version,
        2
    );

    // Unconditional rotate from eight replicas: every success is one version, no lost update.
    let results = futures_join(rotators.iter().map(|r| r.rotate("race"))).await;
    let successes: Vec<u64> = results
        .iter()
        .filter(|r| r.is_success())
        .filter_map(|r| r.version_after)
        .collect();
    assert!(!successes.is_empty());
    for r in &results {
        assert!(
            matches!(
                r.status,
                RotationStatus::Success | RotationStatus::SkippedNotDue | RotationStatus::Conflict
            ),
            "{:?} {:?}",
            r.status,
            r.error
        );
    }
    let distinct: HashSet<u64> = successes.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        successes.len(),
        "two successes claim one version"
    );
    let current = client.kv2("secret").get_json(path).await?.metadata.version;
    assert_eq!(
        current,
        2 + successes.len() as u64,
        "one version per success"
    );
    let s = state(&client, path).await;
    assert_eq!(s["phase"]["state"], "idle");
    assert_eq!(s["credential_version"], current);
    Ok(())
}

async fn futures_join<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    futures_util::future::join_all(futs).await
}

#[tokio::test]
async fn a_crash_after_the_claim_is_finished_with_the_recorded_key() -> Res {
    let (_bao, client) = server().await;
    let path = "api-keys/crash";
    client
        .kv2("secret")
        .put(path, &json!({"api_key": "k-0001"}))
        .await?;
    let opts = ApiKeyOptions::new()
        .owner("r1")
        .lease(Duration::from_secs(2));

    let crashing = ApiKeyRotator::new(client.clone())
        .with_options(opts.clone())
        .with_fault_hook(stop_at(FaultPoint::AfterClaim));
    let r = crashing.rotate("crash").await;
    assert_eq!(r.status, RotationStatus::Failed);
    assert!(matches!(
        r.error,
        Some(RotationError::Interrupted(FaultPoint::AfterClaim))
    ));
    let s = state(&client, path).await;
    assert_eq!(s["phase"]["state"], "pending");
    let pending_key = s["phase"]["payload"]["key"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(KeyFormat::default().matches(&pending_key));
    assert_eq!(
        client.kv2("secret").get_json(path).await?.metadata.version,
        1
    );

    // Another replica must wait for the lease...
    let other = ApiKeyRotator::new(client.clone()).with_options(opts.clone().owner("r2"));
    let held = other.rotate("crash").await;
    assert_eq!(held.status, RotationStatus::SkippedNotDue);
    let lease_end = held.next_due_at.expect("lease expiry");
    assert!(lease_end > SystemTime::now());
    assert!(lease_end < SystemTime::now() + Duration::from_secs(4));

    // ...then finishes the rotation with the recorded key.
    tokio::time::sleep(
        lease_end
            .duration_since(SystemTime::now())
            .unwrap_or_default(),
    )
    .await;
    let mut resumed = other.rotate("crash").await;
    for _ in 0..20 {
        if resumed.status != RotationStatus::SkippedNotDue {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        resumed = other.rotate("crash").await;
    }
    assert_eq!(
        resumed.status,
        RotationStatus::Success,
        "{:?}",
        resumed.error
    );
    assert_eq!(resumed.version_after, Some(2));
    assert_eq!(key_at(&client, path, 2).await, pending_key);
    let s = state(&client, path).await;
    assert_eq!(s["phase"]["state"], "idle");
    assert_eq!(s["credential_version"], 2);
    Ok(())
}

#[tokio::test]
async fn a_crash_after_the_commit_does_not_rotate_twice() -> Res {
    let (_bao, client) = server().await;
    let path = "api-keys/commit";
    let opts = ApiKeyOptions::new().owner("r1");
    let crashing = ApiKeyRotator::new(client.clone())
        .with_options(opts.clone())
        .with_fault_hook(stop_at(FaultPoint::AfterCommit));
    let r = crashing
        .rotate_if_due("commit", Duration::from_secs(3600))
        .await;
    assert!(matches!(
        r.error,
        Some(RotationError::Interrupted(FaultPoint::AfterCommit))
    ));
    assert_eq!(
        client.kv2("secret").get_json(path).await?.metadata.version,
        1
    );
    assert_eq!(state(&client, path).await["phase"]["state"], "pending");

    // The same owner (a restarted process) resumes at once: closes, no second version.
    let resumed = rotator(&client, "r1")
        .rotate_if_due("commit", Duration::from_secs(3600))
        .await;
    assert_eq!(
        resumed.status,
        RotationStatus::Success,
        "{:?}",
        resumed.error
    );
    assert_eq!(resumed.version_after, Some(1));
    assert!(resumed.resumed, "{resumed:?}");
    assert_eq!(
        client.kv2("secret").get_json(path).await?.metadata.version,
        1
    );
    let s = state(&client, path).await;
    assert_eq!(s["phase"]["state"], "idle");
    assert_eq!(s["credential_version"], 1);
    let next = rotator(&client, "r1")
        .rotate_if_due("commit", Duration::from_secs(3600))
        .await;
    assert_eq!(next.status, RotationStatus::SkippedNotDue);
    Ok(())
}

#[tokio::test]
async fn a_concurrent_edit_is_a_conflict_not_an_overwrite() -> Res {
    let (_bao, client) = server().await;
    let path = "api-keys/edit";
    client
        .kv2("secret")
        .put(path, &json!({"api_key": "k-0001"}))
        .await?;
    let editor = client.clone();
    let hook: FaultHook = Arc::new(move |p| {
        let editor = editor.clone();
        Box::pin(async move {
            if p == FaultPoint::AfterClaim {
                editor
                    .kv2("secret")
                    .put_cas("api-keys/edit", &json!({"api_key": "edited-by-hand"}), 1)
                    .await
                    .expect("out-of-band edit");
            }
            false
        })
    });
    let r = rotator(&client, "r1")
        .with_fault_hook(hook)
        .rotate("edit")
        .await;
    assert_eq!(r.status, RotationStatus::Conflict, "{:?}", r.error);
    assert!(r.error.as_ref().is_some_and(RotationError::is_conflict));
    assert_eq!(key_at(&client, path, 2).await, "edited-by-hand");
    assert_eq!(
        client.kv2("secret").get_json(path).await?.metadata.version,
        2
    );

    // Later runs report the conflict until someone resolves it.
    let again = rotator(&client, "r2").rotate("edit").await;
    assert_eq!(again.status, RotationStatus::Conflict);
    assert_eq!(
        client.kv2("secret").get_json(path).await?.metadata.version,
        2
    );
    assert_eq!(rotator(&client, "r1").resolve_conflict("edit").await?, None);
    let after = rotator(&client, "r1").rotate("edit").await;
    assert!(after.is_success(), "{:?}", after.error);
    assert_eq!(after.version_after, Some(3));
    assert_eq!(key_at(&client, path, 2).await, "edited-by-hand");

    // A deleted latest version is not rotated over.
    client.kv2("secret").delete_latest(path).await?;
    let deleted = rotator(&client, "r1").rotate("edit").await;
    assert_eq!(deleted.status, RotationStatus::Conflict);
    Ok(())
}

/// A provider that de-duplicates on the idempotency key, like Stripe.
#[derive(Default)]
struct FakeProvider {
    issued: Mutex<HashMap<String, (String, String)>>,
    issue_calls: Mutex<Vec<String>>,
    revoked: Mutex<Vec<(String, Instant)>>,
    next_id: AtomicU32,
    fail_issue: AtomicBool,
}

#[async_trait::async_trait]
impl KeyIssuer for FakeProvider {
    async fn issue(&self, req: &IssueRequest) -> Result<IssuedKey, IssuerError> {
        self.issue_calls
            .lock()
            .expect("lock")
            .push(req.idempotency_key.clone());
        if self.fail_issue.load(Ordering::SeqCst) {
            return Err(IssuerError::new("provider unavailable (HTTP 503)"));
        }
        let mut issued = self.issued.lock().expect("lock");
        let (id, key) = issued
            .entry(req.idempotency_key.clone())
            .or_insert_with(|| {
                let n = self.next_id.fetch_add(1, Ordering::SeqCst) + 1;
                (
                    format!("key_{n}"),
                    format!("sk_live_{n}_{:032x}", rand::random::<u128>()),
                )
            })
            .clone();
        Ok(IssuedKey::new(id, ApiKey::new(key)))
    }

    async fn revoke(&self, req: &RevokeRequest) -> Result<(), IssuerError> {
        self.revoked
            .lock()
            .expect("lock")
            .push((req.key_id.clone(), Instant::now()));
        Ok(())
    }
}

impl FakeProvider {
    fn calls(&self) -> Vec<String> {
        self.issue_calls.lock().expect("lock").clone()
    }
    fn keys_issued(&self) -> usize {
        self.issued.lock().expect("lock").len()
    }
    fn revoked_ids(&self) -> Vec<String> {
        self.revoked
            .lock()
            .expect("lock")
            .iter()
            .map(|(id, _)| id.clone())
            .collect()
    }
}

fn issuing(
    client: &VaultClient,
    provider: &Arc<FakeProvider>,
    opts: ApiKeyOptions,
) -> ApiKeyRotator {
    ApiKeyRotator::new(client.clone())
        .with_options(opts)
        .with_shared_issuer("stripe", provider.clone())
}

#[tokio::test]
async fn an_issuer_crash_reuses_the_idempotency_key() -> Res {
    let (_bao, client) = server().await;
    let provider = Arc::new(FakeProvider::default());
    let opts = ApiKeyOptions::new().owner("r1");
    let path = "api-keys/stripe";

    // 1. Crash after the claim, before the provider is called.
    let r = issuing(&client, &provider, opts.clone())
        .with_fault_hook(stop_at(FaultPoint::AfterClaim))
        .rotate("stripe")
        .await;
    assert!(matches!(
        r.error,
        Some(RotationError::Interrupted(FaultPoint::AfterClaim))
    ));
    assert!(provider.calls().is_empty());
    let s = state(&client, path).await;
    let idem = s["phase"]["payload"]["idempotency_key"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(idem.len(), 32);

    // 2. The retry calls the provider with the recorded key, then crashes before recording
    //    the issued key (the provider issued; the reply was "lost").
    let r = issuing(&client, &provider, opts.clone())
        .with_fault_hook(stop_at(FaultPoint::AfterApply))
        .rotate("stripe")
        .await;
    assert!(matches!(
        r.error,
        Some(RotationError::Interrupted(FaultPoint::AfterApply))
    ));
    assert_eq!(provider.calls(), vec![idem.clone()]);
    assert_eq!(provider.keys_issued(), 1);
    assert!(state(&client, path).await["phase"]["payload"]
        .get("key")
        .is_none());

    // 3. Crash after the issued key is recorded, before C is written.
    let r = issuing(&client, &provider, opts.clone())
        .with_fault_hook(stop_at(FaultPoint::AfterVerify))
        .rotate("stripe")
        .await;
    assert!(matches!(
        r.error,
        Some(RotationError::Interrupted(FaultPoint::AfterVerify))
    ));
    assert_eq!(
        provider.calls(),
        vec![idem.clone(), idem.clone()],
        "same idempotency key"
    );
    assert_eq!(provider.keys_issued(), 1, "no duplicate key issued");
    assert_eq!(
        state(&client, path).await["phase"]["payload"]["key_id"],
        "key_1"
    );

    // 4. The next run does not call the provider again and commits the recorded key.
    let done = issuing(&client, &provider, opts.clone())
        .rotate("stripe")
        .await;
    assert_eq!(done.status, RotationStatus::Success, "{:?}", done.error);
    assert_eq!(provider.calls().len(), 2);
    let c = client.kv2("secret").get_json(path).await?;
    assert_eq!(c.metadata.version, 1);
    assert_eq!(c.data["key_id"], "key_1");
    let issued_key = provider.issued.lock().expect("lock")[&idem].1.clone();
    assert_eq!(c.data["api_key"], issued_key.as_str());
    assert!(!format!("{done:?}").contains(&issued_key));

    // A provider failure leaves the rotation pending; the retry reuses its idempotency key.
    provider.fail_issue.store(true, Ordering::SeqCst);
    let failed = issuing(&client, &provider, opts.clone())
        .rotate("stripe")
        .await;
    assert_eq!(failed.status, RotationStatus::Failed);
    match &failed.error {
        Some(e @ RotationError::KeyIssuer { name, source }) => {
            assert_eq!(name, "stripe");
            assert_eq!(source.message(), "provider unavailable (HTTP 503)");
            assert_eq!(
                e.to_string(),
                "key issuer for stripe: provider unavailable (HTTP 503)"
            );
        }
        other => panic!("expected a key issuer error, got {other:?}"),
    }
    provider.fail_issue.store(false, Ordering::SeqCst);
    let ok = issuing(&client, &provider, opts).rotate("stripe").await;
    assert_eq!(ok.status, RotationStatus::Success, "{:?}", ok.error);
    let calls = provider.calls();
    assert_eq!(calls.len(), 4);
    assert_eq!(calls[2], calls[3], "the retry reuses the idempotency key");
    assert_ne!(calls[2], idem, "a new rotation gets a new idempotency key");
    assert_eq!(provider.keys_issued(), 2);
    assert_eq!(
        client.kv2("secret").get_json(path).await?.data["key_id"],
        "key_2"
    );
    Ok(())
}

#[tokio::test]
async fn replaced_keys_are_revoked_only_after_the_grace_period() -> Res {
    let (_bao, client) = server().await;
    let provider = Arc::new(FakeProvider::default());
    let grace = Duration::from_secs(3);
    let r = issuing(
        &client,
        &provider,
        ApiKeyOptions::new().owner("r1").grace_period(grace),
    );
    let every = Duration::from_secs(3600);

    assert!(r.rotate("stripe").await.is_success());
    assert!(
        r.pending_revocations("stripe").await?.is_empty(),
        "nothing replaced yet"
    );
    let second = r.rotate("stripe").await;
    assert!(second.is_success(), "{:?}", second.error);
    let rotated_at = SystemTime::now();
    let pending = r.pending_revocations("stripe").await?;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].key_id, "key_1");

    // Before the grace period: nothing revoked, and the next due time is the revocation.
    let early = r.rotate_if_due("stripe", every).await;
    assert_eq!(
        early.status,
        RotationStatus::SkippedNotDue,
        "{:?}",
        early.error
    );
    assert!(provider.revoked_ids().is_empty());
    let due = early.next_due_at.expect("revocation due");
    let until = due.duration_since(rotated_at).unwrap_or_default();
    assert!(until <= grace + Duration::from_secs(2), "{until:?}");
    assert!(until >= grace - Duration::from_secs(1), "{until:?}");

    // After it (by Vault's clock, whole seconds): revoked once, the current key never.
    let deadline = Instant::now() + Duration::from_secs(10);
    while provider.revoked_ids().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let run = r.rotate_if_due("stripe", every).await;
        assert_eq!(run.status, RotationStatus::SkippedNotDue, "{:?}", run.error);
    }
    let revoked_after = rotated_at.elapsed()?;
    assert_eq!(provider.revoked_ids(), vec!["key_1".to_string()]);
    assert!(
        revoked_after >= grace - Duration::from_millis(500),
        "{revoked_after:?}"
    );
    assert!(r.pending_revocations("stripe").await?.is_empty());
    for _ in 0..3 {
        r.rotate_if_due("stripe", every).await;
    }
    assert_eq!(provider.revoked_ids().len(), 1, "revoked exactly once");

    // Revocation is a step after the rotation: a run that rotates and finds a replaced key
    // due closes `S` first, then revokes.
    assert!(r.rotate("stripe").await.is_success());
    tokio::time::sleep(grace + Duration::from_millis(1100)).await;
    let both = r.rotate("stripe").await;
    assert!(both.is_success(), "{:?}", both.error);
    let steps: Vec<&str> = both.steps.iter().map(|s| s.step).collect();
    let close = steps.iter().position(|s| *s == "close");
    let revoke = steps.iter().position(|s| *s == "revoke");
    assert!(
        close.is_some() && revoke.is_some() && close < revoke,
        "{steps:?}"
    );
    assert_eq!(
        provider.revoked_ids().len(),
        2,
        "the key replaced before is revoked"
    );
    Ok(())
}

/// Writes `data` as the next version of `path` with the raw KV API, as anyone with write
/// access to `rotation-state/*` could.
async fn write_raw(client: &VaultClient, path: &str, data: &Value) -> Res {
    let kv = client.kv2("secret");
    let version = kv
        .read_metadata(path)
        .await?
        .map_or(0, |m| m.current_version);
    kv.put_cas(path, data, version).await?;
    Ok(())
}

/// Only keys this rotator replaced in `C` are revoked: an id planted in the revocation list
/// (foreign, the key in use, not tied to a version of `C`) is a conflict and nothing is
/// revoked; a revocation time moved earlier does not make a key due.
#[tokio::test]
async fn tampered_revocation_list_revokes_nothing() -> Res {
    let (_bao, client) = server().await;
    let provider = Arc::new(FakeProvider::default());
    let grace = Duration::from_secs(3600);
    let r = issuing(
        &client,
        &provider,
        ApiKeyOptions::new().owner("r1").grace_period(grace),
    );
    let every = Duration::from_secs(3600);
    assert!(r.rotate("stripe").await.is_success());
    assert!(r.rotate("stripe").await.is_success());
    let listed = r.pending_revocations("stripe").await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key_id, "key_1");
    assert_eq!(listed[0].replaced_in, Some(2));
    let list_path = r.revocations_path("api-keys/stripe");
    assert_eq!(
        list_path,
        "rotation-state/api-key/api-keys/stripe.revocations"
    );
    let original = serde_json::to_value(&listed[0])?;
    let planted = |key_id: &str, replaced_in: Option<u64>| {
        let mut entry = original.clone();
        entry["key_id"] = json!(key_id);
        entry["revoke_after"] = json!("2000-01-01T00:00:00Z");
        match replaced_in {
            Some(v) => entry["replaced_in"] = json!(v),
            None => {
                entry.as_object_mut().map(|e| e.remove("replaced_in"));
            }
        }
        entry
    };
    for (case, entry) in [
        ("a foreign key id", planted("key_foreign", Some(2))),
        ("the key in use", planted("key_2", Some(3))),
        ("an entry not tied to C", planted("key_9", None)),
        (
            "the replaced key, tied to the wrong version",
            planted("key_1", Some(3)),
        ),
    ] {
        write_raw(&client, &list_path, &json!({"keys": [original, entry]})).await?;
        let run = r.rotate_if_due("stripe", every).await;
        assert_eq!(
            run.status,
            RotationStatus::Conflict,
            "{case}: {:?}",
            run.error
        );
        let reason = match &run.error {
            Some(RotationError::Conflict { reason, .. }) => reason.clone(),
            other => panic!("{case}: {other:?}"),
        };
        assert!(reason.contains("nothing was revoked"), "{case}: {reason}");
        assert!(provider.revoked_ids().is_empty(), "{case}: nothing revoked");
    }

    // The genuine entry with its revocation time moved earlier: C's created_time plus the
    // grace period decides, so nothing is due yet.
    write_raw(
        &client,
        &list_path,
        &json!({"keys": [planted("key_1", Some(2))]}),
    )
    .await?;
    let run = r.rotate_if_due("stripe", every).await;
    assert_eq!(run.status, RotationStatus::SkippedNotDue, "{:?}", run.error);
    assert!(provider.revoked_ids().is_empty());
    let next = run.next_due_at.expect("next look");
    assert!(
        next.duration_since(SystemTime::now())? > Duration::from_secs(3500),
        "due with the grace period from C, not the planted time"
    );
    assert_eq!(
        client.kv2("secret").get_json("api-keys/stripe").await?.data["key_id"],
        "key_2"
    );
    Ok(())
}

/// A pending rotation planted in `S` is a conflict, never committed: a generated key of
/// another format, a replaced key id that is not the one in `C` (it would be revoked later),
/// a reused idempotency key that makes the provider answer with the key in use.
#[tokio::test]
async fn tampered_pending_rotation_is_a_conflict() -> Res {
    let (_bao, client) = server().await;
    let provider = Arc::new(FakeProvider::default());
    let issuer = issuing(&client, &provider, ApiKeyOptions::new().owner("r1"));
    let generated = rotator(&client, "r1");
    assert!(issuer.rotate("stripe").await.is_success());
    assert!(generated.rotate("plain").await.is_success());
    let first_idempotency_key = provider.calls()[0].clone();

    let plant = |path: &str, payload: Value| {
        let client = client.clone();
        let path = format!("rotation-state/api-key/api-keys/{path}");
        async move {
            let s = client.kv2("secret").get_json(&path).await?.data;
            let epoch = s["epoch"].as_u64().unwrap_or(0) + 1;
            let record = json!({
                "write_id": "planted", "epoch": epoch, "rotations": s["rotations"],
                "credential_version": 1, "last_rotated_at": s["last_rotated_at"],
                "phase": {"state": "pending", "epoch": epoch, "owner": "r1", "lease_ms": 60_000,
                    "step": "claimed", "base_version": 1, "payload": payload}
            });
            write_raw(&client, &path, &record).await
        }
    };
    let cases = [
        ("plain", json!({"key": "attacker-chosen"}), "key format"),
        (
            "stripe",
            json!({"idempotency_key": "0123456789abcdef0123456789abcdef", "key": "sk_planted",
                "key_id": "key_planted", "previous_key_id": "key_foreign"}),
            "the key it replaces",
        ),
        ("stripe", json!({"key": "sk_planted"}), "idempotency key"),
    ];
    for (name, payload, why) in cases {
        plant(name, payload).await?;
        let rotator = if name == "stripe" {
            &issuer
        } else {
            &generated
        };
        for _ in 0..2 {
            let run = rotator.rotate(name).await;
            assert_eq!(
                run.status,
                RotationStatus::Conflict,
                "{why}: {:?}",
                run.error
            );
            let reason = match &run.error {
                Some(RotationError::Conflict { reason, .. }) => reason.clone(),
                other => panic!("{why}: {other:?}"),
            };
            assert!(reason.contains(why), "{reason}");
            assert!(!format!("{run:?}").contains("attacker-chosen"));
        }
        let c = client
            .kv2("secret")
            .get_json(&format!("api-keys/{name}"))
            .await?;
        assert_eq!(c.metadata.version, 1, "{why}: C is not written");
        assert_eq!(
            rotator.resolve_conflict(name).await?.is_some(),
            name == "stripe" && why != "idempotency key"
        );
    }
    assert_eq!(provider.calls().len(), 1, "the provider was not called");
    assert!(issuer.pending_revocations("stripe").await?.is_empty());

    // The first rotation's idempotency key again: the provider answers with the key in use.
    plant(
        "stripe",
        json!({"idempotency_key": first_idempotency_key, "previous_key_id": "key_1"}),
    )
    .await?;
    let run = issuer.rotate("stripe").await;
    assert_eq!(run.status, RotationStatus::Conflict, "{:?}", run.error);
    let c = client.kv2("secret").get_json("api-keys/stripe").await?;
    assert_eq!(c.metadata.version, 1, "C is not written");
    assert!(
        issuer.pending_revocations("stripe").await?.is_empty(),
        "key_1 is not retired"
    );
    assert_eq!(issuer.resolve_conflict("stripe").await?, None);

    // Resolved: both rotate again.
    assert!(issuer.rotate("stripe").await.is_success());
    assert!(generated.rotate("plain").await.is_success());
    assert_eq!(
        client.kv2("secret").get_json("api-keys/stripe").await?.data["key_id"],
        "key_2"
    );
    Ok(())
}
