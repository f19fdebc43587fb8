//! `vault kv get [-version=N] MOUNT/PATH`.
//!
//! `cargo run -p vault-ops-examples --bin kv_get -- secret/database/main-db [version]`

use vault_ops_core::{Error, VaultClient};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let full = args.next().ok_or("usage: kv_get MOUNT/PATH [VERSION]")?;
    let (mount, path) = full
        .split_once('/')
        .ok_or("give MOUNT/PATH, e.g. secret/app/config")?;
    let client = VaultClient::from_env()?;
    let kv = client.kv2(mount);
    let secret = match args.next() {
        Some(v) => kv.get_version(path, v.parse()?).await,
        None => kv.get_json(path).await,
    };
    match secret {
        Ok(s) => {
            println!(
                "== Metadata ==\nversion {}  created {}",
                s.metadata.version, s.metadata.created_time
            );
            println!("== Data ==");
            for (k, v) in &s.data {
                println!(
                    "{k:<20} {}",
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                );
            }
        }
        Err(e @ Error::SecretVersionDeleted { .. })
        | Err(e @ Error::SecretVersionDestroyed { .. }) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
        Err(e) if e.is_not_found() => {
            eprintln!("No value found at {full}");
            std::process::exit(2);
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
