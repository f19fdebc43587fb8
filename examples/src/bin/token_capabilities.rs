//! `vault token capabilities [TOKEN] PATH...`: what a token may do on each path given.
//!
//! `cargo run -p vault-ops-examples --bin token_capabilities -- secret/data/app/config sys/seal`
//! (the client's own token), or set `CHECK_TOKEN` to ask about another token.

use vault_ops_cli::report::exit_on_error;
use vault_ops_cli::CliError;
use vault_ops_core::{SecretString, VaultClient};

#[tokio::main]
async fn main() {
    exit_on_error(run().await)
}

async fn run() -> Result<(), CliError> {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        return Err(CliError::Usage("usage: token_capabilities PATH...".into()));
    }
    let client = VaultClient::from_env()?;
    let other = std::env::var("CHECK_TOKEN").ok().map(SecretString::from);
    let width = paths.iter().map(|p| p.len()).max().unwrap_or(0);
    for path in &paths {
        let caps = match &other {
            Some(t) => client.tokens().capabilities(t, path).await?,
            None => client.tokens().capabilities_self(path).await?,
        };
        println!("{path:<width$}  {}", caps.join(", "));
    }
    Ok(())
}
