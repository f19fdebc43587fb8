//! `vault status` + `vault token lookup`: connect, show the server's state and the token's.
//!
//! `cargo run -p vault-ops-examples --bin status` (reads VAULT_ADDR / VAULT_TOKEN / ...).

use vault_ops_cli::report::exit_on_error;
use vault_ops_cli::CliError;
use vault_ops_core::VaultClient;

#[tokio::main]
async fn main() {
    exit_on_error(run().await)
}

async fn run() -> Result<(), CliError> {
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
        seal.storage_type.as_deref().unwrap_or("-")
    );
    if !seal.initialized {
        return Err(CliError::NotInitialized(
            "the server is not initialised".into(),
        ));
    }
    if seal.sealed {
        return Err(CliError::Sealed("the server is sealed".into()));
    }
    println!("{}", client.connect().await?);
    Ok(())
}
