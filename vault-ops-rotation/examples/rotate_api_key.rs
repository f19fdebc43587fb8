//! Rotate an API key kept in KV v2, then one issued by a provider.
//!
//! `cargo run -p vault-ops-rotation --example rotate_api_key`
//!
//! Starts a throwaway OpenBao dev server (installed by `./dev install`) unless
//! `VAULT_ADDR`/`BAO_ADDR` is set; then it uses that Vault (with `VAULT_TOKEN`) only when given
//! `--yes`. Everything it writes (the keys and the rotation state) lives below
//! `secret/vault-ops-example/` and is removed at the end; in production the paths are the
//! guide's, e.g. `secret/proxy/api-keys/stripe`.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{json, Map, Value};
use vault_ops_cli::output::rotation_status_text;
use vault_ops_cli::report::exit_on_error;
use vault_ops_cli::CliError;
use vault_ops_core::{ApiKey, VaultClient};
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
        Ok(IssuedKey::new(id, ApiKey::new(key)))
    }

    async fn revoke(&self, req: &RevokeRequest) -> Result<(), IssuerError> {
        println!("  provider: revoke {}", req.key_id);
        Ok(())
    }
}

#[tokio::main]
async fn main() {
    let (client, _server) = exit_on_error(common::client_or_throwaway_server().await);
    let result = run(&client).await;
    common::cleanup(&client).await;
    exit_on_error(result)
}

/// Options keeping keys and state below `secret/vault-ops-example/`.
fn options() -> ApiKeyOptions {
    ApiKeyOptions::new()
        .key_prefix(format!("{}/api-keys", common::PREFIX))
        .state_prefix(format!("{}/rotation-state/api-key", common::PREFIX))
}

async fn run(client: &VaultClient) -> Result<(), CliError> {
    let kv = client.kv2("secret");

    // 1. A generated key: a new KV version, the previous one still readable.
    let path = format!("{}/proxy/api-keys/stripe", common::PREFIX);
    let path = path.as_str();
    if kv.get_opt::<Value>(path).await?.is_none() {
        kv.put(
            path,
            &json!({"api_key": "sk_live_initial_0000000000", "account": "acct_1"}),
        )
        .await?;
    }
    let rotator = ApiKeyRotator::new(client.clone()).with_options(
        options().format(KeyFormat::new(40, Alphabet::alphanumeric()).prefix("sk_live_")),
    );
    let result = rotator.rotate_generic_api_key(path).await;
    println!(
        "secret/{path}: {}, version {} -> {} in {}",
        rotation_status_text(result.status),
        common::ver(result.version_before),
        common::ver(result.version_after),
        common::dur(result.duration)
    );
    if let Some(e) = &result.error {
        println!("  error: {e}");
    }
    for step in &result.steps {
        println!("  {:<10} {}", step.step, common::dur(step.duration));
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

    // 2. A key issued by a provider, through the `Rotator` trait: `stripe` →
    //    secret/vault-ops-example/api-keys/stripe (the key prefix set in `options`).
    let issuing = ApiKeyRotator::new(client.clone())
        .with_options(options())
        .with_issuer("stripe", DemoProvider::default());
    for _ in 0..2 {
        let r = issuing.rotate("stripe").await;
        println!(
            "rotate(\"stripe\") with a provider: {}, version {}",
            rotation_status_text(r.status),
            common::ver(r.version_after)
        );
        if let Some(e) = &r.error {
            println!("  error: {e}");
        }
    }
    for k in issuing
        .pending_revocations("stripe")
        .await
        .map_err(|e| CliError::Other(e.to_string()))?
    {
        println!(
            "  {} will be revoked after {}",
            k.key_id,
            vault_ops_cli::output::rfc3339_date(&k.revoke_after)
        );
    }
    Ok(())
}
