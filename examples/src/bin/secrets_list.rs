//! `vault secrets list -detailed`.
//!
//! `cargo run -p vault-ops-examples --bin secrets_list`

use vault_ops_core::VaultClient;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = VaultClient::from_env()?;
    println!(
        "{:<16} {:<10} {:<10} {:<24} Description",
        "Path", "Type", "Version", "Accessor"
    );
    for (path, m) in client.sys().list_mounts().await? {
        let version = m
            .kv_version()
            .map(|v| v.to_string())
            .unwrap_or_else(|| "-".into());
        println!(
            "{path:<16} {:<10} {version:<10} {:<24} {}",
            m.mount_type, m.accessor, m.description
        );
    }
    Ok(())
}
