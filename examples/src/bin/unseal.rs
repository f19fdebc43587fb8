//! `vault operator unseal`: enters unseal key shares read from standard input, one per line
//! (never from the command line, where they would land in the shell history).
//!
//! `cargo run -p vault-ops-examples --bin unseal < keys.txt`

use std::io::BufRead;

use vault_ops_core::{SecretString, VaultClient};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = VaultClient::from_env()?;
    let mut status = client.sys().seal_status().await?;
    if !status.sealed {
        println!("Vault is already unsealed.");
        return Ok(());
    }
    for line in std::io::stdin().lock().lines() {
        let key = SecretString::from(line?.trim().to_string());
        status = client.sys().unseal(&key).await?;
        println!(
            "Unseal progress {}/{}, sealed: {}",
            status.progress, status.threshold, status.sealed
        );
        if !status.sealed {
            break;
        }
    }
    if status.sealed {
        eprintln!("Still sealed: more key shares are needed.");
        std::process::exit(2);
    }
    Ok(())
}
