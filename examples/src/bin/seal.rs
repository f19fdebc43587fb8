//! `vault operator seal` (needs a token allowed on `sys/seal`). Sealing stops every client of
//! the server, so it asks for `--yes`.
//!
//! `cargo run -p vault-ops-examples --bin seal -- --yes`

use vault_ops_cli::report::exit_on_error;
use vault_ops_cli::CliError;
use vault_ops_core::VaultClient;

#[tokio::main]
async fn main() {
    exit_on_error(run().await)
}

async fn run() -> Result<(), CliError> {
    if !std::env::args().skip(1).any(|a| a == "--yes") {
        return Err(CliError::Usage(
            "sealing stops every client of the server until it is unsealed: re-run with --yes"
                .into(),
        ));
    }
    let client = VaultClient::from_env()?;
    client.sys().seal().await?;
    println!("Success! Vault is sealed.");
    Ok(())
}
