//! `vault policy list`.
//!
//! `cargo run -p vault-ops-examples --bin policy_list`

use vault_ops_core::VaultClient;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = VaultClient::from_env()?;
    for name in client.policies().list().await? {
        println!("{name}");
    }
    Ok(())
}
