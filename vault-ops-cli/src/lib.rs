//! # vault-ops-cli
//!
//! The `vault-ops` command-line tool: the operations guide's `vault ...` commands and scripts as
//! one binary, each subcommand a thin layer over [`vault_ops_core`].
//!
//! ```text
//! vault-ops status                       vault-ops kv get secret/app/config
//! vault-ops policy write app app.hcl     vault-ops token capabilities self secret/data/a secret/data/b
//! vault-ops health --probe readiness     vault-ops backup --dir /var/backups/vault --keep 7
//! vault-ops init --output keys.json      vault-ops unseal --key-file keys.json
//! vault-ops rotate api-key secret/x/key  vault-ops scheduler run --config schedule.json
//! vault-ops debug --duration 30s --output /tmp/bundles
//! ```
//!
//! Commands: `status`, `kv get/put/patch/list/delete/undelete/destroy/metadata`,
//! `policy list/read/write/delete`, `auth list`, `secrets list`, `audit list`,
//! `token lookup/capabilities`, `read/write/list`, `config-state`, `health`, `init`, `seal`,
//! `unseal`, `step-down`, `raft peers/join/remove/autopilot`, `backup`, `restore`,
//! `rotate api-key/database`, `scheduler run/resume`, `debug`. `vault-ops help COMMAND` describes each.
//! Nothing changes a server's state without a confirmation (`--yes`, `--force`) except the
//! commands whose purpose is the change (`kv put`, `policy write`, `rotate`, ...); unseal keys
//! and passwords are read from stdin or files, never from the command line.
//!
//! ## Settings
//! The client is configured like the `vault` CLI: `BAO_*` then `VAULT_*` environment variables
//! (`ADDR`, `TOKEN` or `~/.vault-token`, `NAMESPACE`, `CACERT`, `CAPATH`, `CLIENT_CERT`,
//! `CLIENT_KEY`, `SKIP_VERIFY`, `TLS_SERVER_NAME`, `CLIENT_TIMEOUT`, `MAX_RETRIES`), read by
//! [`vault_ops_core::ClientBuilder::from_env`]. `--address` and `--namespace` override them;
//! `--format table|json` picks the output (default: `BAO_FORMAT`, then `VAULT_FORMAT`, then
//! table). The `vault` CLI's single-dash spellings
//! (`-address=...`, `-namespace`, `-format`) are accepted too. Logs go to stderr
//! (`--log-format text|json`, `--log-level`), without colour codes unless stderr is a terminal
//! (and `NO_COLOR` is unset). `backup`, `restore` and `debug` draw a progress bar on stderr
//! only when it is a terminal.
//!
//! In a Kubernetes pod, `--k8s-role ROLE` logs in with Kubernetes auth (the service-account JWT
//! from `--k8s-token-file`, default the pod's token; mount `--k8s-mount`, default `kubernetes`)
//! before the command instead of using a token from the environment. The token is kept fresh by
//! `vault_ops_k8s_auth::TokenLifecycle` while the command runs (the scheduler daemon) and revoked
//! when it ends. The scheduler's `/metrics` then carries the lifecycle's own counts:
//! `vault_ops_token_lifecycle_state{state="active"|"retrying"|...}`,
//! `vault_ops_token_renewals_total`, `vault_ops_token_renewal_failures_total`,
//! `vault_ops_token_logins_total` (the first login included), `vault_ops_token_login_failures_total`,
//! `vault_ops_token_consecutive_failures` and `vault_ops_token_expiry_timestamp_seconds`. It is a flag only, so health probes in the same container never log in.
//!
//! ## Errors
//! Every failure is printed by one reporter, [`report`]: the readable message, the address tried
//! (and whether `VAULT_ADDR` was unset, so a default was used), and a hint for the common cases
//! (a sealed or uninitialised server, a missing permission, nothing listening, http vs https,
//! no raft storage). No Rust `Debug` output reaches the user.
//!
//! ## Exit codes
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the operation failed: Vault answered with an error, could not be reached, or a local file could not be used |
//! | 2 | usage: a bad flag or argument, or a confirmation (`--yes`, `--force`) that was not given |
//! | 3 | the client configuration is not usable (address, TLS files, environment variables) |
//! | 4 | not found: no secret, path or mount where one was asked for |
//! | 5 | the server is sealed or not initialised (any command; `unseal` while key shares are still missing) |
//!
//! `health` has its own codes, safe for Kubernetes probes: `--probe liveness` and
//! `--probe readiness` exit 0 when the probe passes and 1 when it fails; `--probe report` exits
//! 0 (ok), 1 (warning) or 2 (critical), as [`HealthReport::exit_code`](vault_ops_core::health_report::HealthReport::exit_code).

pub mod cli;
mod commands;
pub mod output;
mod progress;
pub mod report;

use std::ffi::OsString;

use clap::Parser;

pub use report::{CliError, Target};

/// Exit codes (see the [crate docs](crate#exit-codes)).
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// The operation failed.
    pub const FAILED: i32 = 1;
    /// A usage error or a missing confirmation.
    pub const USAGE: i32 = 2;
    /// The client configuration is not usable.
    pub const CONFIG: i32 = 3;
    /// Nothing found at the path asked for.
    pub const NOT_FOUND: i32 = 4;
    /// The server is sealed or not initialised.
    pub const SEALED: i32 = 5;
}

/// Runs `vault-ops` with `args` (the program name first) and returns the exit code. Output
/// goes to stdout, errors and logs to stderr.
pub fn main_with_args<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let args = cli::vault_style_flags(args.into_iter().map(Into::into));
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            // clap's own help, version and usage messages (never Debug output).
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    exit::OK
                }
                _ => exit::USAGE,
            };
        }
    };
    output::init_logging(cli.log_format, &cli.log_level);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return exit::FAILED;
        }
    };
    runtime.block_on(commands::run(cli))
}
