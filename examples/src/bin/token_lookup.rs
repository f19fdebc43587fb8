//! `vault token lookup`: the client's own token (never printing the token itself).
//!
//! `cargo run -p vault-ops-examples --bin token_lookup`

use vault_ops_core::VaultClient;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
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
            format!("{} s", t.ttl)
        }
    );
    println!("renewable         {}", t.renewable);
    println!(
        "expire_time       {}",
        t.expire_time.as_deref().unwrap_or("-")
    );
    println!("path              {}", t.path);
    if t.ttl > 0 && t.ttl < 3600 {
        println!("warning: the token expires in under an hour");
    }
    Ok(())
}
