//! `vault kv list MOUNT/PATH`.
//!
//! `cargo run -p vault-ops-examples --bin kv_list -- secret/`

use vault_ops_cli::report::exit_on_error;
use vault_ops_cli::CliError;
use vault_ops_core::VaultClient;

#[tokio::main]
async fn main() {
    exit_on_error(run().await)
}

async fn run() -> Result<(), CliError> {
    let full = std::env::args()
        .nth(1)
        .ok_or_else(|| CliError::Usage("usage: kv_list MOUNT[/PATH]".into()))?;
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
