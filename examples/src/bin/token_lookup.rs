//! `vault token lookup`: the client's own token (never printing the token itself).
//!
//! `cargo run -p vault-ops-examples --bin token_lookup`

use vault_ops_cli::output::{rfc3339_date, ttl_text};
use vault_ops_cli::report::exit_on_error;
use vault_ops_cli::CliError;
use vault_ops_core::VaultClient;

#[tokio::main]
async fn main() {
    exit_on_error(run().await)
}

async fn run() -> Result<(), CliError> {
    let client = VaultClient::from_env()?;
    let t = client.tokens().lookup_self().await?;
    println!("display_name      {}", t.display_name);
    println!("accessor          {}", t.accessor);
    println!("policies          {}", t.policies.join(", "));
    println!(
        "ttl               {}",
        if t.never_expires() {
            "never expires".into()
        } else {
            ttl_text(t.ttl)
        }
    );
    println!("renewable         {}", t.renewable);
    println!(
        "expire_time       {}",
        t.expire_time
            .as_deref()
            .map_or_else(|| "-".into(), rfc3339_date)
    );
    println!("path              {}", t.path);
    if t.ttl > 0 && t.ttl < 3600 {
        println!("warning: the token expires in under an hour");
    }
    Ok(())
}
