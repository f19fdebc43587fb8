//! `vault secrets list -detailed`.
//!
//! `cargo run -p vault-ops-examples --bin secrets_list`

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
