//! The metrics the operations guide alerts on, read as numbers from `sys/metrics`.
//!
//! `cargo run -p vault-ops-examples --bin metrics` (add `all` to print every sample)

use vault_ops_cli::output::{bytes_text, number_text};
use vault_ops_cli::report::exit_on_error;
use vault_ops_cli::CliError;
use vault_ops_core::VaultClient;

#[tokio::main]
async fn main() {
    exit_on_error(run().await)
}

/// A metric that may be absent: `-` then.
fn or_dash(v: Option<f64>, text: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".into(), text)
}

async fn run() -> Result<(), CliError> {
    let client = VaultClient::from_env()?;
    let m = client.sys().metrics().await?;
    if std::env::args().nth(1).as_deref() == Some("all") {
        for s in m.samples() {
            let labels: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect();
            let labels = if labels.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", labels.join(","))
            };
            println!("{}{labels} {}", s.name, number_text(s.value));
        }
        return Ok(());
    }
    let unsealed = m.max("vault_core_unsealed").unwrap_or(0.0) >= 1.0;
    println!("unsealed                 {unsealed}");
    println!(
        "leases                   {}",
        or_dash(m.first("vault_expire_num_leases"), number_text)
    );
    println!(
        "allocated memory         {}",
        or_dash(m.first("vault_runtime_alloc_bytes"), |b| {
            bytes_text(b.max(0.0) as u64)
        })
    );
    println!(
        "request p99 (ms)         {}",
        or_dash(m.quantile("vault_core_handle_request", 0.99), number_text)
    );
    println!(
        "requests handled         {}",
        or_dash(m.sum("vault_core_handle_request_count"), number_text)
    );
    Ok(())
}
