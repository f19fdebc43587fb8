//! `vault status` + `vault token lookup`: connect, show the server's state and the token's.
//!
//! `cargo run -p vault-ops-examples --bin status` (reads VAULT_ADDR / VAULT_TOKEN / ...).

use vault_ops_core::VaultClient;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = VaultClient::from_env()?;
    let seal = client.sys().seal_status().await?;
    println!(
        "Seal type {}, initialized {}, sealed {}, threshold {}/{}, version {}, storage {}",
        seal.seal_type,
        seal.initialized,
        seal.sealed,
        seal.threshold,
        seal.shares,
        seal.version,
        seal.storage_type.as_deref().unwrap_or("?")
    );
    match client.connect().await {
        Ok(status) => println!("{status}"),
        Err(e) if e.is_sealed() => {
            eprintln!("Vault is sealed: unseal it with `cargo run --bin unseal` (or `vault operator unseal`).");
            std::process::exit(2);
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
