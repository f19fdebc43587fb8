//! The metrics the operations guide alerts on, read as numbers from `sys/metrics`.
//!
//! `cargo run -p vault-ops-examples --bin metrics` (add `all` to print every sample)

use vault_ops_core::VaultClient;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = VaultClient::from_env()?;
    let m = client.sys().metrics().await?;
    if std::env::args().nth(1).as_deref() == Some("all") {
        for s in m.samples() {
            println!("{} {:?} {}", s.name, s.labels, s.value);
        }
        return Ok(());
    }
    let unsealed = m.max("vault_core_unsealed").unwrap_or(0.0) >= 1.0;
    println!("unsealed                 {unsealed}");
    println!(
        "leases                   {:?}",
        m.first("vault_expire_num_leases")
    );
    println!(
        "allocated bytes          {:?}",
        m.first("vault_runtime_alloc_bytes")
    );
    println!(
        "request p99 (ms)         {:?}",
        m.quantile("vault_core_handle_request", 0.99)
    );
    println!(
        "requests handled         {:?}",
        m.sum("vault_core_handle_request_count")
    );
    Ok(())
}
