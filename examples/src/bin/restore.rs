//! The guide's `restore.sh`: restores a backup made by the `backup` example. Checks the checksum
//! file and the archive first; without `--force` it stops there, since a restore replaces all of
//! Vault's current data.
//!
//! `cargo run -p vault-ops-examples --bin restore -- FILE|latest [--force] [--dir DIR] [--another-cluster] [--no-checksum]`
//! (FILE is a path or a name in DIR; DIR defaults to `$BACKUP_DIR` or `./vault-backups`).
//! `--another-cluster` restores a snapshot of a cluster with other unseal keys: every node then
//! seals and must be unsealed with that cluster's keys. `--no-checksum` restores a snapshot
//! without a `.sha256` file beside it, such as one saved by `bao operator raft snapshot save`
//! (the archive's own SHA256SUMS is still checked). A restore must reach the active node: when
//! VAULT_ADDR names a standby, nothing is sent and the error names the active node to use.
//! Exit codes: 0 restored, 1 error, 3 checked but not confirmed.

use std::time::Duration;

use vault_ops_cli::output::bytes_text;
use vault_ops_cli::report::{exit_on_error, render, Target};
use vault_ops_cli::CliError;
use vault_ops_core::backup::{BackupError, Backups, RestoreOptions};
use vault_ops_core::VaultClient;

#[tokio::main]
async fn main() {
    std::process::exit(exit_on_error(run().await))
}

async fn run() -> Result<i32, CliError> {
    let mut dir = std::env::var("BACKUP_DIR").unwrap_or_else(|_| "./vault-backups".into());
    let mut file = None;
    let mut options = RestoreOptions::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--force" => options = options.force(true),
            "--another-cluster" => options = options.from_another_cluster(true),
            "--no-checksum" => options = options.no_checksum(true),
            "--dir" => {
                dir = args
                    .next()
                    .ok_or_else(|| CliError::Usage("--dir needs a directory".into()))?
            }
            "-h" | "--help" => {
                println!(
                    "usage: restore FILE|latest [--force] [--dir DIR] [--another-cluster] [--no-checksum]"
                );
                return Ok(0);
            }
            other if other.starts_with('-') => {
                return Err(CliError::Usage(format!("unknown option {other}")))
            }
            other => file = Some(other.to_string()),
        }
    }
    let backups = Backups::new(&dir).timeout(Duration::from_secs(30 * 60));
    let file = match file.as_deref() {
        None => {
            eprintln!("usage: restore FILE|latest [--force] [--dir DIR]\nBackups in {dir}:");
            for b in backups.list().await? {
                eprintln!("  {}", b.path.display());
            }
            return Ok(1);
        }
        Some("latest") => {
            backups
                .latest()
                .await?
                .ok_or_else(|| CliError::NotFound(format!("no backups in {dir}")))?
                .path
        }
        Some(name) => name.into(),
    };

    let client = VaultClient::from_env()?;
    match backups.restore(&client, &file, options).await {
        Ok(info) => {
            println!(
                "Restored {} (raft index {}, {}). Data written after the backup is gone.",
                file.display(),
                info.index,
                bytes_text(info.bytes)
            );
            Ok(0)
        }
        Err(BackupError::ForceRequired { file, info }) => {
            println!(
                "{} checked: checksum and archive are sound (raft index {}, {}).",
                file.display(),
                info.index,
                bytes_text(info.bytes)
            );
            println!("Restoring replaces ALL current Vault data. Re-run with --force to restore.");
            Ok(3)
        }
        Err(BackupError::Client(e)) if e.is_snapshot_from_another_cluster() => {
            eprint!("{}", render(&e.into(), &Target::from_env(None)));
            eprintln!("If this is intended (disaster recovery into a new cluster), add --another-cluster.");
            Ok(1)
        }
        Err(e) => Err(e.into()),
    }
}
