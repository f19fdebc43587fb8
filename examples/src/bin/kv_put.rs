//! `vault kv put [-cas=N] MOUNT/PATH key=value...`.
//!
//! `cargo run -p vault-ops-examples --bin kv_put -- secret/app/config mode=blue replicas=3`
//! Set `CAS=N` in the environment for a check-and-set write.

use vault_ops_cli::output::rfc3339_date;
use vault_ops_cli::report::exit_on_error;
use vault_ops_cli::CliError;
use vault_ops_core::VaultClient;

#[tokio::main]
async fn main() {
    exit_on_error(run().await)
}

async fn run() -> Result<(), CliError> {
    let usage = || CliError::Usage("usage: kv_put MOUNT/PATH key=value...".into());
    let mut args = std::env::args().skip(1);
    let full = args.next().ok_or_else(usage)?;
    let (mount, path) = full
        .split_once('/')
        .ok_or_else(|| CliError::Usage("give MOUNT/PATH, e.g. secret/app/config".into()))?;
    let mut data = serde_json::Map::new();
    for pair in args {
        let (k, v) = pair.split_once('=').ok_or_else(usage)?;
        data.insert(k.to_string(), serde_json::Value::String(v.to_string()));
    }
    if data.is_empty() {
        return Err(usage());
    }
    let client = VaultClient::from_env()?;
    let written = match std::env::var("CAS") {
        Ok(cas) => {
            let cas = cas
                .parse()
                .map_err(|_| CliError::Usage(format!("CAS={cas:?} is not a version number")))?;
            client.kv2(mount).put_cas(path, &data, cas).await?
        }
        Err(_) => client.kv2(mount).put(path, &data).await?,
    };
    println!(
        "Success! {full} is now at version {} (created {})",
        written.version,
        rfc3339_date(&written.created_time)
    );
    Ok(())
}
