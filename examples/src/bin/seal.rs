//! `vault operator seal` (needs a token allowed on `sys/seal`).
//!
//! `cargo run -p vault-ops-examples --bin seal`

use vault_ops_core::VaultClient;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = VaultClient::from_env()?;
    client.sys().seal().await?;
    println!("Success! Vault is sealed.");
    Ok(())
}
