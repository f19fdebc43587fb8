//! Rotate an API key kept in KV v2, then one issued by a provider.
//!
//! `cargo run -p vault-ops-rotation --example rotate_api_key`
//!
//! Uses the Vault in `VAULT_ADDR`/`BAO_ADDR` (with `VAULT_TOKEN`) when set; otherwise starts a
//! throwaway OpenBao dev server (installed by `./dev install`). Writes below
//! `secret/proxy/api-keys/` and `secret/api-keys/`.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{json, Map, Value};
use vault_ops_core::SecretString;
use vault_ops_rotation::api_key::{
    Alphabet, ApiKeyOptions, ApiKeyRotator, IssueRequest, IssuedKey, IssuerError, KeyFormat,
    KeyIssuer, RevokeRequest,
};
use vault_ops_rotation::Rotator;

/// Shows the start of a key only.
fn masked(key: &str) -> String {
    let head: String = key.chars().take(10).collect();
    format!("{head}… ({} chars)", key.chars().count())
}

/// A stand-in for a provider API that de-duplicates on the idempotency key.
#[derive(Default)]
struct DemoProvider {
    issued: Mutex<HashMap<String, (String, String)>>,
}

#[async_trait::async_trait]
impl KeyIssuer for DemoProvider {
    async fn issue(&self, req: &IssueRequest) -> Result<IssuedKey, IssuerError> {
        let mut issued = self
            .issued
            .lock()
            .map_err(|_| IssuerError::new("provider state poisoned"))?;
        let n = issued.len() + 1;
        let (id, key) = issued
            .entry(req.idempotency_key.clone())
            .or_insert_with(|| {
                let key = KeyFormat::new(32, Alphabet::alphanumeric()).prefix("sk_demo_");
                (
                    format!("key_{n}"),
                    secrecy::ExposeSecret::expose_secret(&key.generate()).to_string(),
                )
            })
            .clone();
        println!(
            "  provider: issue (idempotency key {}) -> {id}",
            req.idempotency_key
        );
        Ok(IssuedKey::new(id, SecretString::from(key)))
    }

    async fn revoke(&self, req: &RevokeRequest) -> Result<(), IssuerError> {
        println!("  provider: revoke {}", req.key_id);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (client, _server) = common::client_or_throwaway_server().await?;
    let kv = client.kv2("secret");

    // 1. A generated key: a new KV version, the previous one still readable.
    let path = "proxy/api-keys/stripe";
    if kv.get_opt::<Value>(path).await?.is_none() {
        kv.put(
            path,
            &json!({"api_key": "sk_live_initial_0000000000", "account": "acct_1"}),
        )
        .await?;
    }
    let rotator = ApiKeyRotator::new(client.clone()).with_options(
        ApiKeyOptions::new()
            .format(KeyFormat::new(40, Alphabet::alphanumeric()).prefix("sk_live_")),
    );
    let result = rotator.rotate_generic_api_key(path).await;
    println!(
        "rotated secret/{path}: {:?}, version {:?} -> {:?} in {:?}",
        result.status, result.version_before, result.version_after, result.duration
    );
    if let Some(e) = &result.error {
        println!("  error: {e}");
    }
    for step in &result.steps {
        println!("  {:<10} {:?}", step.step, step.duration);
    }
    if let (Some(before), Some(after)) = (result.version_before, result.version_after) {
        for v in [before, after] {
            let s = kv.get_version::<Map<String, Value>>(path, v).await?;
            let key = s
                .data
                .get("api_key")
                .and_then(Value::as_str)
                .unwrap_or_default();
            println!("  version {v}: {}", masked(key));
        }
    }

    // 2. A key issued by a provider, through the `Rotator` trait: `stripe` → secret/api-keys/stripe.
    let issuing = ApiKeyRotator::new(client.clone()).with_issuer("stripe", DemoProvider::default());
    for _ in 0..2 {
        let r = issuing.rotate("stripe").await;
        println!(
            "rotate(\"stripe\") with a provider: {:?}, version {:?}",
            r.status, r.version_after
        );
    }
    for k in issuing.pending_revocations("stripe").await? {
        println!("  {} will be revoked after {}", k.key_id, k.revoke_after);
    }
    Ok(())
}
