//! `vault policy list`.
//!
//! `cargo run -p vault-ops-examples --bin policy_list`

use vault_ops_cli::report::exit_on_error;
use vault_ops_cli::CliError;
use vault_ops_core::VaultClient;

#[tokio::main]
async fn main() {
    exit_on_error(run().await)
}

async fn run() -> Result<(), CliError> {
    let client = VaultClient::from_env()?;
    for name in client.policies().list().await? {
        println!("{name}");
    }
    Ok(())
}
