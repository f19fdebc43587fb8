//! Rotates a PostgreSQL credential kept in Vault.
//!
//! ```text
//! VAULT_ADDR=http://127.0.0.1:8200 VAULT_TOKEN=... \
//! PGHOST=127.0.0.1 PGPORT=5432 PGDATABASE=postgres \
//! PGADMIN_USER=postgres PGADMIN_PASSWORD=... \
//!   cargo run -p vault-ops-rotation --example rotate_database -- main-db --user app
//! ```
//!
//! Arguments: `NAME` (the credential at `secret/database/NAME`), then one of `--user ROLE`
//! (single user) or `--alternate ROLE_A ROLE_B` (alternating users); optionally
//! `--every-days N` (rotate only when due), `--mount MOUNT`, `--tls require|prefer|disable`
//! (default `require`: TLS with a verified certificate; `prefer` and `disable` may send the
//! session in plain text and also need `--allow-insecure-local-dev`, for a local test server
//! only, which permits cleartext/MD5 password authentication too).
//! Without `--user`/`--alternate`, the role named in the existing credential is rotated.
//!
//! Environment: Vault as for `VaultClient::from_env` (`VAULT_ADDR`/`BAO_ADDR`, `VAULT_TOKEN`,
//! ...); PostgreSQL: `PGHOST` (default `127.0.0.1`), `PGPORT` (5432), `PGDATABASE`
//! (`postgres`), `PGADMIN_USER` (or `PGUSER`, default `postgres`) and `PGADMIN_PASSWORD` (or
//! `PGPASSWORD`, required), `PGSSLROOTCERT` (a CA certificate file to trust for TLS).

use std::time::Duration;

use vault_ops_cli::output::{rotation_status_text, unix_date};
use vault_ops_cli::report::exit_on_error;
use vault_ops_cli::CliError;
use vault_ops_core::{SecretString, VaultClient};
use vault_ops_rotation::state::StateError;
use vault_ops_rotation::{
    DatabaseCredentialRotator, RotationError, RotationStatus, Strategy, TlsMode,
};

fn env_or(names: &[&str], default: &str) -> String {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| default.to_string())
}

fn usage(message: &str) -> Result<i32, CliError> {
    Err(CliError::Usage(format!(
        "{message}\nusage: rotate_database NAME [--user ROLE | --alternate ROLE_A ROLE_B] \
         [--every-days N] [--mount MOUNT] [--tls require|prefer|disable] \
         [--allow-insecure-local-dev]"
    )))
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    std::process::exit(exit_on_error(run().await))
}

async fn run() -> Result<i32, CliError> {
    let mut args = std::env::args().skip(1);
    let Some(name) = args.next().filter(|a| !a.starts_with("--")) else {
        return usage("the credential NAME is missing");
    };
    let mut strategy = None;
    let mut every = None;
    let mut mount = None;
    let mut tls = TlsMode::Require;
    let mut insecure_local_dev = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--user" => match args.next() {
                Some(u) => strategy = Some(Strategy::single_user(u)),
                None => return usage("--user needs a role"),
            },
            "--alternate" => match (args.next(), args.next()) {
                (Some(a), Some(b)) => strategy = Some(Strategy::alternating_users(a, b)),
                _ => return usage("--alternate needs two roles"),
            },
            "--every-days" => match args.next().and_then(|d| d.parse::<u64>().ok()) {
                Some(days) => every = Some(Duration::from_secs(days * 86_400)),
                None => return usage("--every-days needs a number"),
            },
            "--mount" => match args.next() {
                Some(m) => mount = Some(m),
                None => return usage("--mount needs a mount"),
            },
            "--tls" => match args.next().as_deref() {
                Some("disable") => tls = TlsMode::Disable,
                Some("prefer") => tls = TlsMode::Prefer,
                Some("require") => tls = TlsMode::Require,
                _ => return usage("--tls is require, prefer or disable"),
            },
            "--allow-insecure-local-dev" => insecure_local_dev = true,
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }

    let client = VaultClient::from_env()?;
    let host = env_or(&["PGHOST"], "127.0.0.1");
    let port = match env_or(&["PGPORT"], "5432").parse::<u16>() {
        Ok(p) => p,
        Err(_) => return usage("PGPORT is not a port number"),
    };
    let database = env_or(&["PGDATABASE"], "postgres");
    let admin = env_or(&["PGADMIN_USER", "PGUSER"], "postgres");
    let admin_password = env_or(&["PGADMIN_PASSWORD", "PGPASSWORD"], "");
    if admin_password.is_empty() {
        return usage("set PGADMIN_PASSWORD (or PGPASSWORD) to the admin role's password");
    }

    let mut rotator =
        DatabaseCredentialRotator::new(client, host, admin, SecretString::from(admin_password))
            .port(port)
            .database(database)
            .tls(tls);
    if let Some(s) = strategy {
        rotator = rotator.strategy(s);
    }
    if insecure_local_dev {
        rotator = rotator.allow_insecure_local_dev();
    }
    if let Ok(path) = std::env::var("PGSSLROOTCERT") {
        let pem = std::fs::read(&path)
            .map_err(CliError::local(format!("reading PGSSLROOTCERT {path}")))?;
        rotator = rotator.tls_ca_pem(pem);
    }
    if let Some(m) = mount {
        rotator = rotator.mount(m);
    }

    let result = match every {
        Some(every) => rotator.rotate_if_due(&name, every).await,
        None => rotator.rotate(&name).await,
    };
    let secs = |d: Duration| vault_ops_cli::output::duration_text(d.as_secs_f64());
    let version = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    println!(
        "{name}: {}, credential version {} -> {}, took {}",
        rotation_status_text(result.status),
        version(result.version_before),
        version(result.version_after),
        secs(result.duration)
    );
    for step in &result.steps {
        println!("  {:<16} {}", step.step, secs(step.duration));
    }
    if let Some(due) = result.next_due_at {
        if let Ok(d) = due.duration_since(std::time::UNIX_EPOCH) {
            println!(
                "  next due at {}",
                unix_date(i64::try_from(d.as_secs()).unwrap_or(0))
            );
        }
    }
    // A failure goes through the reporter: Vault's errors with the address and a hint.
    match (result.status, result.error) {
        (RotationStatus::Success | RotationStatus::SkippedNotDue, _) => Ok(0),
        (_, Some(RotationError::Vault(e)))
        | (_, Some(RotationError::State(StateError::Vault(e)))) => Err(e.into()),
        (_, Some(e)) => Err(CliError::Other(e.to_string())),
        (status, None) => Err(CliError::Other(rotation_status_text(status).into())),
    }
}
