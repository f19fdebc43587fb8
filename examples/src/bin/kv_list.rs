//! `vault kv list MOUNT/PATH`.
//!
//! `cargo run -p vault-ops-examples --bin kv_list -- secret/`

use vault_ops_core::VaultClient;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let full = std::env::args()
        .nth(1)
        .ok_or("usage: kv_list MOUNT[/PATH]")?;
    let (mount, path) = full.split_once('/').unwrap_or((full.as_str(), ""));
    let client = VaultClient::from_env()?;
    let keys = client.kv2(mount).list(path).await?;
    if keys.is_empty() {
        println!("No keys under {full}");
    }
    for k in keys {
        println!("{k}");
    }
    Ok(())
}
