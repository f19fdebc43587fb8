//! `vault auth list`.
//!
//! `cargo run -p vault-ops-examples --bin auth_list`

use vault_ops_cli::report::exit_on_error;
use vault_ops_cli::CliError;
use vault_ops_core::VaultClient;

#[tokio::main]
async fn main() {
    exit_on_error(run().await)
}

async fn run() -> Result<(), CliError> {
    let client = VaultClient::from_env()?;
    println!(
        "{:<16} {:<12} {:<24} Description",
        "Path", "Type", "Accessor"
    );
    for (path, m) in client.sys().list_auth().await? {
        println!(
            "{path:<16} {:<12} {:<24} {}",
            m.mount_type, m.accessor, m.description
        );
    }
    Ok(())
}
