//! `vault policy read NAME`.
//!
//! `cargo run -p vault-ops-examples --bin policy_read -- default`

use vault_ops_cli::report::exit_on_error;
use vault_ops_cli::CliError;
use vault_ops_core::VaultClient;

#[tokio::main]
async fn main() {
    exit_on_error(run().await)
}

async fn run() -> Result<(), CliError> {
    let name = std::env::args()
        .nth(1)
        .ok_or_else(|| CliError::Usage("usage: policy_read NAME".into()))?;
    let client = VaultClient::from_env()?;
    match client.policies().read(&name).await? {
        Some(p) => println!("{}", p.policy),
        None => return Err(CliError::NotFound(format!("no policy named {name}"))),
    }
    Ok(())
}
