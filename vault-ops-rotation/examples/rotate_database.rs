//! Rotates a PostgreSQL or MariaDB credential kept in Vault.
//!
//! ```text
//! VAULT_ADDR=http://127.0.0.1:8200 VAULT_TOKEN=... \
//! PGHOST=127.0.0.1 PGPORT=5432 PGDATABASE=postgres \
//! PGADMIN_USER=postgres PGADMIN_PASSWORD=... \
//!   cargo run -p vault-ops-rotation --example rotate_database -- main-db --user app
//!
//! VAULT_ADDR=... VAULT_TOKEN=... MARIADB_HOST=db.internal MARIADB_ADMIN_USER=vault_admin \
//! MARIADB_ADMIN_PASSWORD=... MARIADB_SSL_CA=/etc/ssl/db-ca.pem \
//!   cargo run -p vault-ops-rotation --example rotate_database -- main-db --engine mariadb --user app
//! ```
//!
//! Arguments: `NAME` (the credential at `secret/database/NAME`), then one of `--user ROLE`
//! (single user) or `--alternate ROLE_A ROLE_B` (alternating users); optionally
//! `--every-days N` (rotate only when due), `--mount MOUNT`, `--tls require|prefer|disable`
//! (default `require`: TLS with a verified certificate; `prefer` and `disable` may send the
//! session in plain text and also need `--allow-insecure-local-dev`, for a local test server
//! only, which permits cleartext/MD5 password authentication too).
//! Without `--user`/`--alternate`, the role named in the existing credential is rotated.
//! `--engine postgres|mariadb` (default `postgres`) picks the server; with `mariadb`,
//! `--account-host HOST` is the host part of the managed accounts (default `%`).
//!
//! Environment: Vault as for `VaultClient::from_env` (`VAULT_ADDR`/`BAO_ADDR`, `VAULT_TOKEN`,
//! ...); PostgreSQL: `PGHOST` (default `127.0.0.1`), `PGPORT` (5432), `PGDATABASE`
//! (`postgres`), `PGADMIN_USER` (or `PGUSER`, default `postgres`) and `PGADMIN_PASSWORD` (or
//! `PGPASSWORD`, required), `PGSSLROOTCERT` (a CA certificate file to trust for TLS).
//! MariaDB: `MARIADB_HOST` (default `127.0.0.1`), `MARIADB_PORT` (3306), `MARIADB_DATABASE`
//! (none), `MARIADB_ADMIN_USER` (`root`), `MARIADB_ADMIN_PASSWORD` (required) and
//! `MARIADB_SSL_CA` (a CA certificate file to trust for TLS).

use std::time::Duration;

use vault_ops_cli::output::{rotation_status_text, unix_date};
use vault_ops_cli::report::exit_on_error;
use vault_ops_cli::CliError;
use vault_ops_core::{Password, VaultClient};
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Engine {
    Postgres,
    MariaDb,
}

/// Where each engine's settings come from (environment variable names) and their defaults.
struct ServerEnv {
    host: &'static str,
    port: &'static str,
    default_port: &'static str,
    database: &'static str,
    default_database: &'static str,
    admin_user: &'static [&'static str],
    default_admin: &'static str,
    admin_password: &'static [&'static str],
    ca_file: &'static str,
}

impl Engine {
    fn settings(self) -> ServerEnv {
        match self {
            Engine::Postgres => ServerEnv {
                host: "PGHOST",
                port: "PGPORT",
                default_port: "5432",
                database: "PGDATABASE",
                default_database: "postgres",
                admin_user: &["PGADMIN_USER", "PGUSER"],
                default_admin: "postgres",
                admin_password: &["PGADMIN_PASSWORD", "PGPASSWORD"],
                ca_file: "PGSSLROOTCERT",
            },
            Engine::MariaDb => ServerEnv {
                host: "MARIADB_HOST",
                port: "MARIADB_PORT",
                default_port: "3306",
                database: "MARIADB_DATABASE",
                default_database: "",
                admin_user: &["MARIADB_ADMIN_USER"],
                default_admin: "root",
                admin_password: &["MARIADB_ADMIN_PASSWORD"],
                ca_file: "MARIADB_SSL_CA",
            },
        }
    }
}

fn usage(message: &str) -> Result<i32, CliError> {
    Err(CliError::Usage(format!(
        "{message}\nusage: rotate_database NAME [--user ROLE | --alternate ROLE_A ROLE_B] \
         [--engine postgres|mariadb] [--account-host HOST] [--every-days N] [--mount MOUNT] \
         [--tls require|prefer|disable] [--allow-insecure-local-dev]"
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
    let mut engine = Engine::Postgres;
    let mut account_host = None;
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
            "--engine" => match args.next().as_deref() {
                Some("postgres") => engine = Engine::Postgres,
                Some("mariadb") => engine = Engine::MariaDb,
                _ => return usage("--engine is postgres or mariadb"),
            },
            "--account-host" => match args.next() {
                Some(h) => account_host = Some(h),
                None => return usage("--account-host needs a host (e.g. %)"),
            },
            "--allow-insecure-local-dev" => insecure_local_dev = true,
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }

    if account_host.is_some() && engine != Engine::MariaDb {
        return usage("--account-host needs --engine mariadb");
    }
    let client = VaultClient::from_env()?;
    let server = engine.settings();
    let host = env_or(&[server.host], "127.0.0.1");
    let port = match env_or(&[server.port], server.default_port).parse::<u16>() {
        Ok(p) => p,
        Err(_) => return usage(&format!("{} is not a port number", server.port)),
    };
    let database = env_or(&[server.database], server.default_database);
    let admin = env_or(server.admin_user, server.default_admin);
    let admin_password = env_or(server.admin_password, "");
    if admin_password.is_empty() {
        let names = server.admin_password.join(" or ");
        return usage(&format!("set {names} to the admin's password"));
    }

    let admin_password = Password::new(admin_password);
    let mut rotator = match engine {
        Engine::Postgres => DatabaseCredentialRotator::new(client, host, admin, admin_password),
        Engine::MariaDb => DatabaseCredentialRotator::mariadb(client, host, admin, admin_password),
    }
    .port(port)
    .database(database)
    .tls(tls);
    if let Some(h) = account_host {
        rotator = rotator.account_host(h);
    }
    if let Some(s) = strategy {
        rotator = rotator.strategy(s);
    }
    if insecure_local_dev {
        rotator = rotator.allow_insecure_local_dev();
    }
    if let Ok(path) = std::env::var(server.ca_file) {
        let pem = std::fs::read(&path).map_err(CliError::local(format!(
            "reading {} {path}",
            server.ca_file
        )))?;
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
