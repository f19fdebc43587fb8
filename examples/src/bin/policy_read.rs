//! `vault policy read NAME`.
//!
//! `cargo run -p vault-ops-examples --bin policy_read -- default`

use vault_ops_core::VaultClient;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args().nth(1).ok_or("usage: policy_read NAME")?;
    let client = VaultClient::from_env()?;
    match client.policies().read(&name).await? {
        Some(p) => println!("{}", p.policy),
        None => {
            eprintln!("No policy named {name}");
            std::process::exit(2);
        }
    }
    Ok(())
}
