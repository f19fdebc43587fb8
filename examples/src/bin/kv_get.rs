//! `vault kv get [-version=N] MOUNT/PATH`.
//!
//! `cargo run -p vault-ops-examples --bin kv_get -- secret/database/main-db [version]`

use vault_ops_cli::output::{rfc3339_date, value_text};
use vault_ops_cli::report::exit_on_error;
use vault_ops_cli::CliError;
use vault_ops_core::VaultClient;

#[tokio::main]
async fn main() {
    exit_on_error(run().await)
}

async fn run() -> Result<(), CliError> {
    let mut args = std::env::args().skip(1);
    let full = args
        .next()
        .ok_or_else(|| CliError::Usage("usage: kv_get MOUNT/PATH [VERSION]".into()))?;
    let (mount, path) = full
        .split_once('/')
        .ok_or_else(|| CliError::Usage("give MOUNT/PATH, e.g. secret/app/config".into()))?;
    let client = VaultClient::from_env()?;
    let kv = client.kv2(mount);
    let secret = match args.next() {
        Some(v) => {
            let version = v
                .parse()
                .map_err(|_| CliError::Usage(format!("the version {v:?} is not a number")))?;
            kv.get_version(path, version).await
        }
        None => kv.get_json(path).await,
    };
    let s = match secret {
        Ok(s) => s,
        Err(e) if e.is_not_found() => {
            return Err(CliError::NotFound(format!("no value found at {full}")))
        }
        Err(e) => return Err(e.into()),
    };
    println!(
        "== Metadata ==\nversion {}  created {}",
        s.metadata.version,
        rfc3339_date(&s.metadata.created_time)
    );
    println!("== Data ==");
    for (k, v) in &s.data {
        println!("{k:<20} {}", value_text(v));
    }
    Ok(())
}
