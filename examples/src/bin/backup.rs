//! The guide's `backup.sh`: a raft snapshot into `DIR/vault-backup-YYYYMMDD_HHMMSS.snap` with a
//! `.sha256` checksum file beside it, keeping the newest N backups.
//!
//! `cargo run -p vault-ops-examples --bin backup -- [DIR] [--keep N]`
//! (DIR defaults to `$BACKUP_DIR` or `./vault-backups`, N to `$BACKUP_RETENTION` or 7; reads
//! VAULT_ADDR / VAULT_TOKEN / ...). Exits 1 when the backup fails, for cron.

use std::time::Duration;

use vault_ops_cli::output::bytes_text;
use vault_ops_cli::report::exit_on_error;
use vault_ops_cli::CliError;
use vault_ops_core::backup::Backups;
use vault_ops_core::VaultClient;

#[tokio::main]
async fn main() {
    exit_on_error(run().await)
}

async fn run() -> Result<(), CliError> {
    let mut dir = std::env::var("BACKUP_DIR").unwrap_or_else(|_| "./vault-backups".into());
    let mut keep: usize = match std::env::var("BACKUP_RETENTION") {
        Ok(v) => v
            .parse()
            .map_err(|_| CliError::Usage(format!("BACKUP_RETENTION={v:?} is not a number")))?,
        Err(_) => 7,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--keep" => {
                let v = args
                    .next()
                    .ok_or_else(|| CliError::Usage("--keep needs a number".into()))?;
                keep = v
                    .parse()
                    .map_err(|_| CliError::Usage(format!("--keep {v:?} is not a number")))?;
            }
            "-h" | "--help" => {
                println!("usage: backup [DIR] [--keep N]");
                return Ok(());
            }
            other if other.starts_with('-') => {
                return Err(CliError::Usage(format!("unknown option {other}")))
            }
            other => dir = other.to_string(),
        }
    }

    let client = VaultClient::from_env()?;
    let backups = Backups::new(&dir)
        .keep(keep)
        .timeout(Duration::from_secs(30 * 60));
    let made = backups.create(&client).await?;
    println!(
        "Backup written: {} ({}, raft index {}, sha256 {})",
        made.path.display(),
        bytes_text(made.info.bytes),
        made.info.index,
        made.info.sha256
    );
    println!("Checksum file:  {}", made.checksum_path.display());
    for old in &made.removed {
        println!("Removed (retention {keep}): {}", old.display());
    }
    let count = backups.list().await?.len();
    println!("{count} backup(s) in {dir}");
    Ok(())
}
