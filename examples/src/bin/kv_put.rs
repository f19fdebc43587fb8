//! `vault kv put [-cas=N] MOUNT/PATH key=value...`.
//!
//! `cargo run -p vault-ops-examples --bin kv_put -- secret/app/config mode=blue replicas=3`
//! Set `CAS=N` in the environment for a check-and-set write.

use vault_ops_core::VaultClient;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let full = args.next().ok_or("usage: kv_put MOUNT/PATH key=value...")?;
    let (mount, path) = full
        .split_once('/')
        .ok_or("give MOUNT/PATH, e.g. secret/app/config")?;
    let mut data = serde_json::Map::new();
    for pair in args {
        let (k, v) = pair.split_once('=').ok_or("arguments are key=value")?;
        data.insert(k.to_string(), serde_json::Value::String(v.to_string()));
    }
    if data.is_empty() {
        return Err("give at least one key=value".into());
    }
    let client = VaultClient::from_env()?;
    let written = match std::env::var("CAS") {
        Ok(cas) => client.kv2(mount).put_cas(path, &data, cas.parse()?).await?,
        Err(_) => client.kv2(mount).put(path, &data).await?,
    };
    println!(
        "Success! {full} is now at version {} ({})",
        written.version, written.created_time
    );
    Ok(())
}
