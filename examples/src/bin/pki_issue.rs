//! Certificate renewal from the operations guide: issue a certificate from a PKI role and write
//! the certificate, chain and key to files (the key with mode 0600).
//!
//! `cargo run -p vault-ops-examples --bin pki_issue -- pki_int web app.example.com out/`

use std::io::Write;

use vault_ops_core::api::pki::IssueRequest;
use vault_ops_core::{ExposeSecret, VaultClient};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mount, role, cn, dir] = args.as_slice() else {
        return Err("usage: pki_issue MOUNT ROLE COMMON_NAME OUT_DIR".into());
    };
    let client = VaultClient::from_env()?;
    let cert = client
        .pki(mount.as_str())
        .issue(role, &IssueRequest::new(cn.as_str()).ttl("720h"))
        .await?;
    std::fs::create_dir_all(dir)?;
    let dir = std::path::Path::new(dir);
    std::fs::write(dir.join("tls.crt"), format!("{}\n", cert.certificate))?;
    std::fs::write(
        dir.join("ca.crt"),
        format!("{}\n", cert.ca_chain.join("\n")),
    )?;
    let mut key = std::fs::OpenOptions::new();
    key.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut key, 0o600);
    key.open(dir.join("tls.key"))?
        .write_all(cert.private_key.expose_secret().as_bytes())?;
    println!(
        "issued serial {} for {cn}, expires at {} (unix); wrote tls.crt, ca.crt, tls.key to {}",
        cert.serial_number,
        cert.expiration,
        dir.display()
    );
    Ok(())
}
