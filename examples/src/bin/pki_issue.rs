//! Certificate renewal from the operations guide: issue a certificate from a PKI role and write
//! the certificate, chain and key to files (the key with mode 0600).
//!
//! `cargo run -p vault-ops-examples --bin pki_issue -- pki_int web app.example.com out/`

use std::io::Write;

use vault_ops_cli::output::unix_date;
use vault_ops_cli::report::exit_on_error;
use vault_ops_cli::CliError;
use vault_ops_core::api::pki::IssueRequest;
use vault_ops_core::{ExposeSecret, VaultClient};

#[tokio::main]
async fn main() {
    exit_on_error(run().await)
}

async fn run() -> Result<(), CliError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mount, role, cn, dir] = args.as_slice() else {
        return Err(CliError::Usage(
            "usage: pki_issue MOUNT ROLE COMMON_NAME OUT_DIR".into(),
        ));
    };
    let client = VaultClient::from_env()?;
    let cert = client
        .pki(mount.as_str())
        .issue(role, &IssueRequest::new(cn.as_str()).ttl("720h"))
        .await?;
    std::fs::create_dir_all(dir).map_err(CliError::local(format!("creating {dir}")))?;
    let dir = std::path::Path::new(dir);
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(CliError::local(format!("writing {}", path.display())))
    };
    write("tls.crt", format!("{}\n", cert.certificate))?;
    write("ca.crt", format!("{}\n", cert.ca_chain.join("\n")))?;
    let key_path = dir.join("tls.key");
    let mut key = std::fs::OpenOptions::new();
    // A new file only (never through a planted symlink, never an existing file with other modes).
    key.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut key, 0o600);
    key.open(&key_path)
        .and_then(|mut f| f.write_all(cert.private_key.expose_secret().as_bytes()))
        .map_err(CliError::local(format!("writing {}", key_path.display())))?;
    println!(
        "issued serial {} for {cn}, expires {}; wrote tls.crt, ca.crt, tls.key to {}",
        cert.serial_number,
        unix_date(cert.expiration),
        dir.display()
    );
    Ok(())
}
