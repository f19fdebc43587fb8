//! `vault token capabilities [TOKEN] PATH`: what a token may do on a path.
//!
//! `cargo run -p vault-ops-examples --bin token_capabilities -- secret/data/app/config`
//! (the client's own token), or set `CHECK_TOKEN` to ask about another token.

use vault_ops_core::{SecretString, VaultClient};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: token_capabilities PATH")?;
    let client = VaultClient::from_env()?;
    let caps = match std::env::var("CHECK_TOKEN") {
        Ok(t) => {
            client
                .tokens()
                .capabilities(&SecretString::from(t), &path)
                .await?
        }
        Err(_) => client.tokens().capabilities_self(&path).await?,
    };
    println!("{}", caps.join(", "));
    Ok(())
}
