//! `vault operator unseal`: enters unseal key shares read from standard input, one per line
//! (never from the command line, where they would land in the shell history).
//!
//! `cargo run -p vault-ops-examples --bin unseal < keys.txt`

use std::io::BufRead;

use vault_ops_cli::report::exit_on_error;
use vault_ops_cli::CliError;
use vault_ops_core::{UnsealKey, VaultClient};

#[tokio::main]
async fn main() {
    exit_on_error(run().await)
}

async fn run() -> Result<(), CliError> {
    let client = VaultClient::from_env()?;
    let mut status = client.sys().seal_status().await?;
    if !status.sealed {
        println!("Vault is already unsealed.");
        return Ok(());
    }
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(CliError::local("reading key shares from stdin"))?;
        let key = UnsealKey::new(line.trim());
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
        return Err(CliError::Sealed(format!(
            "still sealed: {} more key share(s) needed",
            status.threshold.saturating_sub(status.progress)
        )));
    }
    Ok(())
}
