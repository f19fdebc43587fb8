//! The command line: global flags and every subcommand (clap derive).
//!
//! The doc comments below are the `--help` text, written for a terminal (`DIR/name-<time>`,
//! bare addresses), not rustdoc markup.
#![allow(rustdoc::invalid_html_tags, rustdoc::bare_urls)]

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::output::{Format, LogFormat};

/// vault-ops: the operations guide's `vault ...` commands and scripts in one tool.
///
/// Settings come from BAO_* then VAULT_* environment variables (VAULT_ADDR, VAULT_TOKEN or
/// ~/.vault-token, VAULT_NAMESPACE, VAULT_CACERT, ...); the flags below override them.
/// Exit codes: 0 ok, 1 failed, 2 usage or missing confirmation, 3 configuration,
/// 4 not found, 5 sealed or not initialised (health has its own, see `vault-ops health -h`).
#[derive(Debug, Parser)]
#[command(name = "vault-ops", version, max_term_width = 100)]
pub struct Cli {
    /// The Vault address (overrides BAO_ADDR / VAULT_ADDR).
    #[arg(long, global = true, value_name = "URL")]
    pub address: Option<String>,
    /// The namespace (overrides BAO_NAMESPACE / VAULT_NAMESPACE).
    #[arg(long, global = true, value_name = "NS")]
    pub namespace: Option<String>,
    /// Output format (default: BAO_FORMAT, then VAULT_FORMAT, then table).
    #[arg(long, global = true, value_enum)]
    pub format: Option<Format>,
    /// Log format (logs go to stderr).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log level or filter (error, warn, info, debug, trace; or `vault_ops_core=debug`).
    #[arg(long, global = true, default_value = "warn", value_name = "LEVEL")]
    pub log_level: String,
    /// Logs in with Kubernetes auth as ROLE before the command (with the pod's
    /// service-account token, see --k8s-token-file) instead of using VAULT_TOKEN; the token is
    /// renewed, or replaced by a new login, while the command runs and revoked when it ends.
    /// A flag only (no environment variable), so probes run in the same container do not log in.
    #[arg(long, global = true, value_name = "ROLE")]
    pub k8s_role: Option<String>,
    /// The Kubernetes auth mount (below auth/) for --k8s-role.
    #[arg(long, global = true, value_name = "PATH", default_value = "kubernetes")]
    pub k8s_mount: String,
    /// The service-account token (JWT) file for --k8s-role, re-read at every login.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )]
    pub k8s_token_file: PathBuf,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The output format: `--format`, else `BAO_FORMAT`, else `VAULT_FORMAT` (like the `vault`
    /// CLI), else table. A variable set to anything but `table` or `json` (any case) is an
    /// error naming it.
    pub fn output_format(&self) -> Result<Format, String> {
        if let Some(f) = self.format {
            return Ok(f);
        }
        for name in ["BAO_FORMAT", "VAULT_FORMAT"] {
            let Some(value) = std::env::var_os(name) else {
                continue;
            };
            let value = value.to_string_lossy();
            return match value.trim().to_ascii_lowercase().as_str() {
                "table" => Ok(Format::Table),
                "json" => Ok(Format::Json),
                _ => Err(format!(
                    "{name}={value:?}: vault-ops prints `table` or `json`"
                )),
            };
        }
        Ok(Format::Table)
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Server state: seal, version, storage, HA, and the token (exit 5 when sealed).
    Status,
    /// Key/value secrets; KV v1 or v2 is detected from the mount, like `vault kv`.
    #[command(subcommand)]
    Kv(KvCommand),
    /// ACL policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Auth methods.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Secrets engines.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Audit devices.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Tokens: lookup and capabilities.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Reads any path (`vault read`).
    Read(ReadArgs),
    /// Writes any path (`vault write`): KEY=VALUE pairs, KEY=@FILE, or `-` for a JSON object
    /// on stdin.
    Write(WriteArgs),
    /// Lists any path (`vault list`).
    List(PathArg),
    /// The server's configuration as Vault reports it, sanitized (sys/config/state/sanitized).
    ConfigState,
    /// Health probes and the health report (the guide's alert rules).
    ///
    /// Exit codes: liveness and readiness exit 0 when the probe passes, 1 when it fails;
    /// report exits 0 ok, 1 warning, 2 critical.
    /// Liveness fails only when the server does not answer at all: a sealed node, a standby
    /// or an expiring token never fails it (restarting the pod would not help).
    /// Readiness fails when the node cannot serve requests (sealed, not initialised, removed,
    /// DR secondary, unreachable).
    Health(HealthArgs),
    /// Initialises a new server; keys go to a new 0600 file (--output) or, only when asked,
    /// to stdout (--stdout).
    Init(InitArgs),
    /// Seals the server (needs --yes).
    Seal(YesArg),
    /// Unseals the server with keys read from stdin (one per line) or --key-file, never from
    /// the command line.
    Unseal(UnsealArgs),
    /// Makes the active node step down (needs --yes).
    ///
    /// Refused on a sealed node, a standby and a server without HA storage, where Vault
    /// answers "success" without doing anything.
    StepDown(YesArg),
    /// Raft (integrated storage) cluster operations.
    #[command(subcommand)]
    Raft(RaftCommand),
    /// The guide's backup.sh: a timestamped raft snapshot in DIR, its sha256 checksum file,
    /// and retention; with --upload URL also to object storage (S3, GCS, Azure Blob).
    /// `backup list` lists backups, locally or in a bucket.
    Backup(BackupArgs),
    /// The guide's restore.sh: checks FILE against its checksum and as a snapshot, then
    /// restores it (needs --force: it replaces all of Vault's data).
    Restore(RestoreArgs),
    /// Secret rotation over vault-ops-rotation (crash-safe, safe to run in many replicas).
    #[command(subcommand)]
    Rotate(RotateCommand),
    /// The rotation scheduler as a daemon.
    #[command(subcommand)]
    Scheduler(SchedulerCommand),
    /// Like `vault debug`: collects host info, metrics samples, the sanitized configuration,
    /// raft configuration and autopilot state, seal status, in-flight requests and audit
    /// devices into DIR/vault-ops-debug-<time>.tar.gz (0600). Secret-looking fields are
    /// redacted; no token or secret value is collected.
    ///
    /// A server that cannot be reached is an error (no bundle); what the token may not read
    /// is listed in the bundle's index and in a warning on stderr.
    Debug(DebugArgs),
}

/// `kv` subcommands. PATH is the full path, mount included (`secret/app/config`).
#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Reads a secret.
    Get(KvGetArgs),
    /// Writes a secret (replaces all its keys): KEY=VALUE, KEY=@FILE, or `-` for JSON on stdin.
    Put(KvWriteArgs),
    /// Updates some keys of a secret (KV v2).
    Patch(KvWriteArgs),
    /// Lists the keys under a path.
    List(PathArg),
    /// Deletes the latest version (or --versions) of a secret.
    Delete(KvVersionsArgs),
    /// Undeletes versions of a secret (KV v2).
    Undelete(KvVersionsRequired),
    /// Destroys versions of a secret for good (KV v2).
    Destroy(KvVersionsRequired),
    /// A secret's metadata (KV v2).
    #[command(subcommand)]
    Metadata(KvMetadataCommand),
}

/// `kv metadata` subcommands.
#[derive(Debug, Subcommand)]
pub enum KvMetadataCommand {
    /// Reads the metadata and version history.
    Get(PathArg),
    /// Sets metadata fields.
    Put(KvMetadataPut),
    /// Deletes the metadata and every version of the secret.
    Delete(PathArg),
}

/// A path.
#[derive(Debug, Args)]
pub struct PathArg {
    /// The path, mount included.
    pub path: String,
}

/// `kv get`.
#[derive(Debug, Args)]
pub struct KvGetArgs {
    /// The secret's path, mount included.
    pub path: String,
    /// A version to read (KV v2).
    #[arg(long)]
    pub version: Option<u64>,
    /// Prints only this field's value.
    #[arg(long)]
    pub field: Option<String>,
}

/// `kv put` / `kv patch`.
#[derive(Debug, Args)]
pub struct KvWriteArgs {
    /// The secret's path, mount included.
    pub path: String,
    /// KEY=VALUE pairs; KEY=@FILE reads the value from a file; a single `-` reads a JSON
    /// object from stdin.
    #[arg(required = true)]
    pub data: Vec<String>,
    /// Check-and-set: write only if the current version is this (0: only if absent).
    #[arg(long)]
    pub cas: Option<u64>,
}

/// `kv delete`.
#[derive(Debug, Args)]
pub struct KvVersionsArgs {
    /// The secret's path, mount included.
    pub path: String,
    /// Versions to delete (comma-separated); default: the latest.
    #[arg(long, value_delimiter = ',')]
    pub versions: Vec<u64>,
}

/// `kv undelete` / `kv destroy`.
#[derive(Debug, Args)]
pub struct KvVersionsRequired {
    /// The secret's path, mount included.
    pub path: String,
    /// The versions (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    pub versions: Vec<u64>,
}

/// `kv metadata put`.
#[derive(Debug, Args)]
pub struct KvMetadataPut {
    /// The secret's path, mount included.
    pub path: String,
    /// How many versions to keep.
    #[arg(long)]
    pub max_versions: Option<u64>,
    /// Whether writes must use check-and-set.
    #[arg(long)]
    pub cas_required: Option<bool>,
    /// Deletes versions this long after they are written (e.g. `720h`).
    #[arg(long)]
    pub delete_version_after: Option<String>,
    /// Custom metadata KEY=VALUE (repeatable; replaces all custom metadata).
    #[arg(long = "custom-metadata", value_name = "KEY=VALUE")]
    pub custom_metadata: Vec<String>,
}

/// `policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Lists the ACL policies.
    List,
    /// Prints a policy.
    Read {
        /// The policy name.
        name: String,
    },
    /// Writes a policy from FILE (`-` for stdin).
    Write {
        /// The policy name.
        name: String,
        /// The HCL file, or `-` for stdin.
        file: String,
    },
    /// Deletes a policy.
    Delete {
        /// The policy name.
        name: String,
    },
}

/// `auth` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Lists the enabled auth methods.
    List,
}

/// `secrets` subcommands.
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Lists the mounted secrets engines.
    List,
}

/// `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Lists the enabled audit devices.
    List,
}

/// `token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Looks up a token: TOKEN is `self` (default), `-` (read it from stdin), or the token;
    /// or use --accessor.
    Lookup {
        /// `self`, `-` for stdin, or a token.
        #[arg(default_value = "self")]
        token: String,
        /// Looks up by accessor instead.
        #[arg(long, conflicts_with = "token")]
        accessor: Option<String>,
    },
    /// What TOKEN may do on every PATH: TOKEN is `self`, `-` (read from stdin) or the token.
    Capabilities {
        /// `self`, `-` for stdin, or a token.
        token: String,
        /// One or more paths.
        #[arg(required = true)]
        paths: Vec<String>,
    },
}

/// `read`.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// The path.
    pub path: String,
    /// Prints only this field of the data.
    #[arg(long)]
    pub field: Option<String>,
}

/// `write`.
#[derive(Debug, Args)]
pub struct WriteArgs {
    /// The path.
    pub path: String,
    /// KEY=VALUE pairs, KEY=@FILE, or `-` for a JSON object on stdin.
    pub data: Vec<String>,
}

/// Which health check to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Probe {
    /// Passes while the server answers at all.
    Liveness,
    /// Passes while the node can serve requests.
    Readiness,
    /// The full report with the guide's rules.
    Report,
}

/// `health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The check.
    #[arg(long, value_enum, default_value_t = Probe::Report)]
    pub probe: Probe,
    /// Prints JSON (same as --format json).
    #[arg(long)]
    pub json: bool,
    /// The memory limit for the memory rule, in bytes (e.g. the container's limit).
    #[arg(long, value_name = "BYTES")]
    pub memory_limit: Option<u64>,
    /// Remaining token TTL below which the report warns (e.g. 1h, 30m).
    #[arg(long, value_name = "DURATION")]
    pub min_token_ttl: Option<String>,
    /// Lease count above which the report warns.
    #[arg(long)]
    pub max_leases: Option<u64>,
    /// Warns when a certificate of the server's TLS chain or a PKI issuer expires within N
    /// days (default 30).
    #[arg(long, value_name = "N")]
    pub cert_warn_days: Option<u32>,
}

/// `init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Number of key shares.
    #[arg(long, default_value_t = 5)]
    pub shares: u32,
    /// Number of shares needed to unseal.
    #[arg(long, default_value_t = 3)]
    pub threshold: u32,
    /// Writes the keys and root token to this new file (0600; an existing file is never
    /// overwritten).
    #[arg(long, value_name = "FILE", conflicts_with = "stdout")]
    pub output: Option<PathBuf>,
    /// Prints the keys and root token on stdout.
    #[arg(long)]
    pub stdout: bool,
}

/// `unseal`.
#[derive(Debug, Args)]
pub struct UnsealArgs {
    /// Reads keys from this file: one per line, or the JSON `init --output` wrote.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
}

/// A confirmation flag.
#[derive(Debug, Args)]
pub struct YesArg {
    /// Confirms the change.
    #[arg(long)]
    pub yes: bool,
}

/// `raft` subcommands.
#[derive(Debug, Subcommand)]
pub enum RaftCommand {
    /// Lists the raft peers.
    Peers,
    /// Joins the node at --address to the cluster led by LEADER.
    Join {
        /// The leader's API address (e.g. https://vault-0.vault-internal:8200).
        leader: String,
        /// Joins as a non-voter.
        #[arg(long)]
        non_voter: bool,
        /// Keeps retrying the join.
        #[arg(long)]
        retry: bool,
        /// The leader's CA certificate (PEM file).
        #[arg(long, value_name = "FILE")]
        leader_ca_cert: Option<PathBuf>,
    },
    /// Removes a peer from the cluster (needs --yes).
    Remove {
        /// The peer's node id.
        node_id: String,
        /// Confirms the change.
        #[arg(long)]
        yes: bool,
    },
    /// Autopilot state: health, failure tolerance, each server.
    Autopilot,
}

/// `backup`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BackupArgs {
    /// Lists or uploads existing backups instead of making one.
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
    /// The backup directory.
    #[arg(long, value_name = "DIR", required = true)]
    pub dir: Option<PathBuf>,
    /// Keeps the newest N backups (0 keeps all).
    #[arg(long, default_value_t = 7)]
    pub keep: usize,
    /// Also uploads the new backup and its checksum to object storage: s3://BUCKET/PREFIX,
    /// gs://BUCKET/PREFIX or az://CONTAINER/PREFIX (the guide's --upload-s3 --s3-bucket).
    /// Credentials come from the environment only (AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT, ...; GOOGLE_*; AZURE_*). Plain http endpoints
    /// need AWS_ALLOW_HTTP=true (GOOGLE_/AZURE_ALLOW_HTTP).
    #[arg(long, value_name = "URL")]
    pub upload: Option<String>,
    /// Keeps the newest N backups in object storage (default: --keep; 0 keeps all).
    #[arg(long, value_name = "N", requires = "upload")]
    pub keep_remote: Option<usize>,
}

/// `backup` subcommands.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Lists the backups in DIR (--dir) or in object storage (--remote URL), newest first.
    List(BackupListArgs),
    /// Uploads an existing backup FILE (its .sha256 file beside it) to object storage, e.g.
    /// one kept locally when an upload failed.
    Upload(BackupUploadArgs),
}

/// `backup list`.
#[derive(Debug, Args)]
pub struct BackupListArgs {
    /// The backup directory.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "remote",
        conflicts_with = "remote"
    )]
    pub dir: Option<PathBuf>,
    /// The object storage prefix: s3://BUCKET/PREFIX, gs://..., az://...
    #[arg(long, value_name = "URL")]
    pub remote: Option<String>,
}

/// `backup upload`.
#[derive(Debug, Args)]
pub struct BackupUploadArgs {
    /// The backup file (vault-backup-YYYYMMDD_HHMMSS.snap).
    pub file: PathBuf,
    /// Where to: s3://BUCKET/PREFIX, gs://..., az://...
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// Keeps the newest N backups in object storage (0 keeps all).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_remote: usize,
}

/// `rotate` subcommands.
#[derive(Debug, Subcommand)]
pub enum RotateCommand {
    /// Rotates the API key in the KV v2 secret PATH (mount included, e.g.
    /// `secret/proxy/api-keys/stripe`) with a generated key: one new version, the other fields
    /// kept, the previous key readable as the previous version. The key is never printed.
    ApiKey(RotateApiKeyArgs),
    /// Rotates the PostgreSQL password of credential NAME (kept at `secret/database/NAME`):
    /// a new password set as the admin, verified by a fresh login, then written to Vault. The
    /// admin password is read from a file or stdin, never from the command line.
    Database(RotateDatabaseArgs),
}

/// TLS towards PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbTls {
    /// Never (needs `--allow-insecure-local-dev`).
    Disable,
    /// When the server offers it (needs `--allow-insecure-local-dev`).
    Prefer,
    /// Always (verified).
    Require,
}

/// `rotate database`.
#[derive(Debug, Args)]
pub struct RotateDatabaseArgs {
    /// The credential's name (e.g. `main-db`).
    pub name: String,
    /// The PostgreSQL host.
    #[arg(long)]
    pub db_host: String,
    /// The PostgreSQL port.
    #[arg(long, default_value_t = 5432)]
    pub db_port: u16,
    /// The database to connect to.
    #[arg(long, default_value = "postgres")]
    pub database: String,
    /// The role that changes passwords (a superuser, or one with CREATEROLE).
    #[arg(long)]
    pub admin_user: String,
    /// A file holding the admin's password (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub admin_password_file: String,
    /// TLS towards PostgreSQL: `require` (the default) verifies the server's certificate;
    /// `disable`/`prefer` also need `--allow-insecure-local-dev`.
    #[arg(long, value_enum, default_value_t = DbTls::Require)]
    pub tls: DbTls,
    /// A PEM file of CA certificates to trust for PostgreSQL's server certificate (a private
    /// CA), besides the system's roots.
    #[arg(long, value_name = "FILE")]
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Allows plain text towards PostgreSQL and cleartext/MD5 password authentication: for a
    /// local development server only, never across a network.
    #[arg(long)]
    pub allow_insecure_local_dev: bool,
    /// The one role whose password changes (default: the user named in the credential).
    #[arg(long, conflicts_with = "alternate")]
    pub user: Option<String>,
    /// Two roles with the same grants, used in turn (`A,B`).
    #[arg(long, value_delimiter = ',', num_args = 2, value_name = "A,B")]
    pub alternate: Vec<String>,
    /// The KV v2 mount of the credential and the state.
    #[arg(long, default_value = "secret")]
    pub mount: String,
    /// Where credentials live inside the mount.
    #[arg(long, default_value = "database")]
    pub credential_prefix: String,
    /// The query run after logging in with the new password.
    #[arg(long)]
    pub verify_query: Option<String>,
    /// Rotates only when the last rotation is at least this long ago (e.g. `7d`).
    #[arg(long, value_name = "DURATION")]
    pub if_due: Option<String>,
}

/// Which characters a generated key uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyAlphabet {
    /// A-Z, a-z, 0-9.
    Alphanumeric,
    /// 0-9, a-f.
    Hex,
    /// A-Z, a-z, 0-9, `-`, `_`.
    Base64url,
}

/// `rotate api-key`.
#[derive(Debug, Args)]
pub struct RotateApiKeyArgs {
    /// The secret's path, mount included.
    pub path: String,
    /// The data field holding the key.
    #[arg(long, default_value = "api_key")]
    pub field: String,
    /// Length of the generated key (without --key-prefix).
    #[arg(long, default_value_t = 40)]
    pub length: usize,
    /// Characters of the generated key.
    #[arg(long, value_enum, default_value_t = KeyAlphabet::Alphanumeric)]
    pub alphabet: KeyAlphabet,
    /// A fixed prefix of every key (e.g. `pk_live_`).
    #[arg(long, default_value = "")]
    pub key_prefix: String,
    /// Versions of the secret kept at least (at least 2).
    #[arg(long, default_value_t = 5)]
    pub min_versions: u64,
    /// Where the rotation state records live, inside the mount.
    #[arg(long, default_value = "rotation-state")]
    pub state_prefix: String,
    /// Rotates only when the last rotation is at least this long ago (e.g. `7d`, `24h`);
    /// otherwise reports "not due" and exits 0.
    #[arg(long, value_name = "DURATION")]
    pub if_due: Option<String>,
}

/// `scheduler` subcommands.
#[derive(Debug, Subcommand)]
pub enum SchedulerCommand {
    /// Runs the schedule in FILE until SIGTERM or Ctrl-C (rotations in flight finish), serving
    /// Prometheus metrics at /metrics and a health check at /healthz. Safe to run in several
    /// replicas: exactly one rotates each secret per period. With --k8s-role, /metrics also
    /// shows the token lifecycle: vault_ops_token_lifecycle_state, _renewals_total,
    /// _renewal_failures_total, _logins_total, _login_failures_total, _consecutive_failures
    /// and _expiry_timestamp_seconds.
    ///
    /// FILE is JSON, e.g.
    /// {"listen": "127.0.0.1:9102",
    ///  "secrets": [{"name": "main-db", "kind": "database", "every": "7d"},
    ///              {"name": "stripe", "kind": "api_key", "every": "30d"}],
    ///  "database": {"host": "db", "admin_user": "vault_admin",
    ///               "admin_password_file": "/run/secrets/pg", "user": "app"},
    ///  "api_keys": {"mount": "secret", "key_prefix": "api-keys"}}
    ///
    /// Instead of "every", a secret may give "cron" (five fields, UTC, e.g. "30 3 * * SUN")
    /// and an optional "window" ("1h": a slot missed by more than that waits for the next).
    /// "policy": {"max_attempts": 5, "backoff_initial": "2s", "backoff_max": "5m"} holds a
    /// secret after that many failures in a row (see `scheduler resume`).
    Run {
        /// The schedule (JSON).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Overrides the file's `listen` address for /metrics and /healthz.
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Clears the hold on NAME: with a "policy" in FILE, a secret whose rotation failed
    /// `max_attempts` times in a row is held (no replica tries again) until this runs. The hold
    /// lives in the secret's state record in Vault, so one call resumes every replica.
    Resume {
        /// The schedule (JSON), as given to `scheduler run`.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The scheduled secret's name.
        name: String,
    },
}

/// `debug`.
#[derive(Debug, Args)]
pub struct DebugArgs {
    /// How long to sample metrics (at most 1h).
    #[arg(long, default_value = "30s")]
    pub duration: String,
    /// Time between metrics samples.
    #[arg(long, default_value = "10s")]
    pub interval: String,
    /// The directory for the bundle (created 0700 if missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub output: PathBuf,
}

/// `restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup file (its `.sha256` file must be beside it), or a backup in object storage:
    /// s3://BUCKET/PREFIX/vault-backup-YYYYMMDD_HHMMSS.snap (gs://, az:// too), downloaded to
    /// a private temporary file and checked against its .sha256 object before anything is
    /// sent to Vault.
    pub file: PathBuf,
    /// Confirms replacing all of Vault's data.
    #[arg(long)]
    pub force: bool,
    /// The snapshot comes from another cluster (snapshot-force; every node seals afterwards).
    #[arg(long)]
    pub from_another_cluster: bool,
}

/// The `vault` CLI's single-dash global flags (`-address=URL`, `-address URL`, `-namespace`,
/// `-format`) rewritten to their `--` form; everything else unchanged.
pub fn vault_style_flags(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    args.map(|a| match a.to_str() {
        Some(s) => {
            for name in ["address", "namespace", "format"] {
                let flag = format!("-{name}");
                if s == flag || s.starts_with(&format!("{flag}=")) {
                    return OsString::from(format!("-{s}"));
                }
            }
            a
        }
        None => a,
    })
    .collect()
}
