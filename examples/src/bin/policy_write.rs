//! `vault policy write NAME FILE` (`-` reads the HCL from standard input).
//!
//! `cargo run -p vault-ops-examples --bin policy_write -- app-read app-read.hcl`

use std::io::Read;

use vault_ops_cli::report::exit_on_error;
use vault_ops_cli::CliError;
use vault_ops_core::VaultClient;

#[tokio::main]
async fn main() {
    exit_on_error(run().await)
}

async fn run() -> Result<(), CliError> {
    let mut args = std::env::args().skip(1);
    let (name, file) = match (args.next(), args.next()) {
        (Some(n), Some(f)) => (n, f),
        _ => return Err(CliError::Usage("usage: policy_write NAME FILE|-".into())),
    };
    let hcl = if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(CliError::local("reading the policy from stdin"))?;
        s
    } else {
        std::fs::read_to_string(&file).map_err(CliError::local(format!("reading {file}")))?
    };
    let client = VaultClient::from_env()?;
    client.policies().write(&name, &hcl).await?;
    println!("Success! Uploaded policy: {name}");
    Ok(())
}
