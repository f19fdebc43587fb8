//! What the rotation examples share. Not an example itself (a folder without `main.rs`).

use vault_ops_core::VaultClient;
use vault_ops_testkit::BaoServer;

/// The client from `VAULT_ADDR`/`BAO_ADDR` and the rest of the environment when set;
/// otherwise a throwaway OpenBao dev server (returned too: it stops when dropped) and a root
/// client for it.
pub async fn client_or_throwaway_server(
) -> Result<(VaultClient, Option<BaoServer>), Box<dyn std::error::Error>> {
    if std::env::var_os("VAULT_ADDR").is_some() || std::env::var_os("BAO_ADDR").is_some() {
        return Ok((VaultClient::from_env()?, None));
    }
    let bao = BaoServer::start().await;
    let client = VaultClient::builder()
        .address(bao.addr())
        .token(bao.root_token())
        .build()?;
    println!("started a throwaway OpenBao at {}", bao.addr());
    Ok((client, Some(bao)))
}
