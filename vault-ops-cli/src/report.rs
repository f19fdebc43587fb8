//! The one error reporter of `vault-ops` (and of the example programs): a readable message,
//! the address that was tried, and a hint a person can act on.
//!
//! ```
//! use vault_ops_cli::report::{render_core, Target};
//!
//! let target = Target::from_lookup(None, |_| None); // no --address, VAULT_ADDR unset
//! let err = vault_ops_core::Error::MissingToken;
//! let text = render_core(&err, &target);
//! assert!(text.contains("VAULT_ADDR is unset"));
//! assert!(text.contains("hint: set VAULT_TOKEN"));
//! ```

use std::fmt;

use vault_ops_core::backup::remote::split_object_url;
use vault_ops_core::backup::BackupError;
use vault_ops_core::config::DEFAULT_ADDR;
use vault_ops_core::{ConfigError, Error};

use crate::exit;

/// Where requests went, and where that address came from.
#[derive(Debug, Clone)]
pub struct Target {
    /// The address tried (the configured one, or the node the client last used).
    pub address: String,
    /// Where the address came from.
    pub source: AddressSource,
}

/// Where the address came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressSource {
    /// The `--address` flag.
    Flag,
    /// An environment variable (its name).
    Env(String),
    /// Nothing was set: the default address.
    Default,
    /// A local server the program started itself (the tour and the examples without
    /// `VAULT_ADDR`).
    Started,
}

impl Target {
    /// The address the client will use: `flag` (`--address`) first, then `BAO_ADDR`, then
    /// `VAULT_ADDR`, else [`DEFAULT_ADDR`].
    pub fn from_env(flag: Option<&str>) -> Self {
        Self::from_lookup(flag, |n| std::env::var(n).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`.
    pub fn from_lookup(flag: Option<&str>, lookup: impl Fn(&str) -> Option<String>) -> Self {
        if let Some(a) = flag.filter(|a| !a.trim().is_empty()) {
            return Target {
                address: a.to_string(),
                source: AddressSource::Flag,
            };
        }
        for name in ["BAO_ADDR", "VAULT_ADDR"] {
            if let Some(v) = lookup(name).filter(|v| !v.trim().is_empty()) {
                return Target {
                    address: v,
                    source: AddressSource::Env(name.into()),
                };
            }
        }
        Target {
            address: DEFAULT_ADDR.to_string(),
            source: AddressSource::Default,
        }
    }

    fn describe(&self) -> String {
        match &self.source {
            AddressSource::Flag => format!("{} (from --address)", self.address),
            AddressSource::Env(name) => format!("{} (from {name})", self.address),
            AddressSource::Started => {
                format!("{} (a local server this program started)", self.address)
            }
            AddressSource::Default => format!(
                "{} (VAULT_ADDR is unset, and so is BAO_ADDR: this is the default; set VAULT_ADDR or pass --address)",
                self.address
            ),
        }
    }

    fn is_https(&self) -> bool {
        self.address
            .trim()
            .to_ascii_lowercase()
            .starts_with("https://")
    }

    /// The address with its scheme swapped (http ↔ https).
    fn other_scheme(&self) -> String {
        let a = self.address.trim();
        match a.split_once("://") {
            Some((s, rest)) if s.eq_ignore_ascii_case("https") => format!("http://{rest}"),
            Some((_, rest)) => format!("https://{rest}"),
            None => a.to_string(),
        }
    }
}

/// Everything a `vault-ops` command can fail with.
#[derive(Debug)]
#[non_exhaustive]
pub enum CliError {
    /// A request to Vault failed.
    Vault(Error),
    /// The client configuration is not usable.
    Config(ConfigError),
    /// A backup or restore failed.
    Backup(BackupError),
    /// A backup was made but its upload to object storage failed; the local backup is kept.
    Upload {
        /// The object storage prefix URL.
        url: String,
        /// The local backup, kept.
        kept: std::path::PathBuf,
        /// Why the upload failed.
        source: Box<BackupError>,
    },
    /// A bad argument, or a confirmation that was not given.
    Usage(String),
    /// Nothing at the path asked for.
    NotFound(String),
    /// The server is sealed and the command cannot go on.
    Sealed(String),
    /// The server is not initialised.
    NotInitialized(String),
    /// A login (`--k8s-role`) failed.
    Login(Box<vault_ops_k8s_auth::Error>),
    /// Another failure, with its readable message (e.g. an example program's own checks).
    Other(String),
    /// A local file or stream could not be used.
    Local {
        /// What was being done, with the path.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl CliError {
    /// The process exit code for this error (see [`exit`]).
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => exit::USAGE,
            CliError::Config(_) | CliError::Vault(Error::Config(_)) => exit::CONFIG,
            CliError::NotFound(_) => exit::NOT_FOUND,
            CliError::Sealed(_) | CliError::NotInitialized(_) => exit::SEALED,
            CliError::Vault(e) if e.is_sealed() => exit::SEALED,
            CliError::Backup(BackupError::ForceRequired { .. }) => exit::USAGE,
            _ => exit::FAILED,
        }
    }

    /// A local I/O error with what was being done.
    pub fn local(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
        let context = context.into();
        move |source| CliError::Local { context, source }
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError::Vault(e)
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        CliError::Config(e)
    }
}

impl From<BackupError> for CliError {
    fn from(e: BackupError) -> Self {
        match e {
            BackupError::Client(e) => CliError::Vault(e),
            other => CliError::Backup(other),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Vault(e) => f.write_str(&core_message(e)),
            CliError::Config(e) => write!(f, "{e}"),
            CliError::Backup(e) => write!(f, "{e}"),
            CliError::Upload { url, kept, source } => {
                write!(f, "uploading {} to {url} failed: {source}", kept.display())
            }
            CliError::Usage(m)
            | CliError::NotFound(m)
            | CliError::Sealed(m)
            | CliError::NotInitialized(m)
            | CliError::Other(m) => f.write_str(m),
            CliError::Local { context, source } => write!(f, "{context}: {source}"),
            CliError::Login(e) => write!(f, "{e}"),
        }
    }
}

/// The readable message of a core error (the error's own text, with durations in words).
fn core_message(e: &Error) -> String {
    match e {
        Error::Timeout {
            method,
            path,
            timeout,
        } => format!(
            "{method} {path} got no answer within {}",
            crate::output::duration_text(timeout.as_secs_f64())
        ),
        other => other.to_string(),
    }
}

/// The full report for `err`: `Error: ...`, the address line when a server was involved, and
/// a hint when one applies. Ends with a newline.
pub fn render(err: &CliError, target: &Target) -> String {
    let mut out = format!("Error: {err}\n");
    let involves_server = match err {
        CliError::Vault(Error::InvalidInput(_) | Error::Io { .. }) => false,
        CliError::Vault(_)
        | CliError::Sealed(_)
        | CliError::NotInitialized(_)
        | CliError::NotFound(_) => true,
        CliError::Config(_) => true,
        CliError::Login(e) => e.vault_error().is_some(),
        _ => false,
    };
    if involves_server {
        out.push_str(&format!("  address: {}\n", target.describe()));
    }
    if let CliError::Upload { kept, .. } = err {
        out.push_str(&format!(
            "  kept: {} and its checksum file stay in the backup directory\n",
            kept.display()
        ));
    }
    let hint = match err {
        CliError::Vault(e) => hint_for(e, target),
        CliError::Login(e) if e.is_login_refused() => Some(
            "check the Kubernetes auth role: its bound_service_account_names and \
             bound_service_account_namespaces must name this pod's service account \
             (`vault-ops read auth/<mount>/role/<role>`)"
                .into(),
        ),
        CliError::Login(e) => e.vault_error().and_then(|v| hint_for(v, target)),
        CliError::Sealed(_) => Some(SEALED_HINT.to_string()),
        CliError::NotInitialized(_) => Some(INIT_HINT.to_string()),
        CliError::Backup(
            BackupError::ChecksumMismatch { file, .. } | BackupError::InvalidSnapshot { file, .. },
        ) => match file.to_str().and_then(|f| split_object_url(f).ok()) {
            Some((prefix, _)) => Some(format!(
                "the object in the store is damaged; nothing was sent to Vault. Restore another \
                 backup: `vault-ops backup list --remote {prefix}` lists them"
            )),
            None => Some("restore another backup: `ls` the backup directory for older ones".into()),
        },
        CliError::Backup(e) => remote_hint(e, None),
        CliError::Upload {
            url, kept, source, ..
        } => remote_hint(source, Some((url, kept))),
        _ => None,
    };
    if let Some(h) = hint {
        out.push_str(&format!("  hint: {h}\n"));
    }
    out
}

/// The hint for an object storage failure; `upload` is the prefix URL and the kept file of
/// a failed upload.
fn remote_hint(e: &BackupError, upload: Option<(&String, &std::path::PathBuf)>) -> Option<String> {
    let again = upload.map(|(url, kept)| {
        format!(
            "; then upload the kept backup: `vault-ops backup upload {} --to {url}`",
            kept.display()
        )
    });
    let again = again.as_deref().unwrap_or("");
    match e {
        BackupError::Remote { message, .. } => {
            let m = message.to_ascii_lowercase();
            let refused = [
                "signaturedoesnotmatch",
                "invalidaccesskeyid",
                "accessdenied",
                "authenticationfailed",
                "authorizationfailure",
                "403 forbidden",
                "401 unauthorized",
            ];
            if refused.iter().any(|r| m.contains(r)) {
                Some(format!(
                    "the store refused the credentials: check AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY (GOOGLE_APPLICATION_CREDENTIALS, \
                     AZURE_STORAGE_ACCOUNT_KEY for gs://, az://){again}"
                ))
            } else if m.contains("scheme is not allowed") {
                Some(
                    "the endpoint is plain http: use https, or allow it explicitly with \
                     AWS_ALLOW_HTTP=true (GOOGLE_ALLOW_HTTP, AZURE_ALLOW_HTTP)"
                        .into(),
                )
            } else if m.contains("nosuchbucket") || m.contains("containernotfound") {
                Some(format!(
                    "check that the bucket (container) exists and the URL names it{again}"
                ))
            } else {
                let what = if m.contains("connection refused") {
                    "nothing answers at the store's endpoint"
                } else {
                    "the store did not answer as expected"
                };
                Some(format!(
                    "{what}: check the endpoint (AWS_ENDPOINT for S3-compatible servers) and the \
                     network to it{again}"
                ))
            }
        }
        BackupError::RemoteInvalid { .. } if upload.is_none() => {
            Some("restore another backup: `vault-ops backup list --remote URL` lists them".into())
        }
        BackupError::RemoteConflict { .. } => Some(
            "a different backup of that name is in the store: compare them, or upload to \
             another prefix"
                .into(),
        ),
        _ if !again.is_empty() => Some(again.trim_start_matches("; then ").to_string()),
        _ => None,
    }
}

/// Ends a program built on this reporter (every example program does): on `Err`, prints
/// [`render`]'s report for the address from the environment ([`Target::from_env`]) to stderr
/// and exits with the error's [exit code](CliError::exit_code); on `Ok`, returns the value.
pub fn exit_on_error<T>(result: Result<T, CliError>) -> T {
    match result {
        Ok(v) => v,
        Err(e) => {
            eprint!("{}", render(&e, &Target::from_env(None)));
            std::process::exit(e.exit_code());
        }
    }
}

/// [`render`] for an error of the core library (for the example programs).
pub fn render_core(err: &Error, target: &Target) -> String {
    let mut out = format!("Error: {}\n", core_message(err));
    out.push_str(&format!("  address: {}\n", target.describe()));
    if let Some(h) = hint_for(err, target) {
        out.push_str(&format!("  hint: {h}\n"));
    }
    out
}

const INIT_HINT: &str = "the server is not initialised: run `vault-ops init`";

const SEALED_HINT: &str =
    "the server is sealed: unseal it with `vault-ops unseal` (keys on stdin or --key-file)";

/// The hint for the common failures, if one applies.
pub fn hint_for(e: &Error, target: &Target) -> Option<String> {
    match e {
        Error::Api(api) => {
            let raft_path = api.path.starts_with("sys/storage/raft");
            match api.status {
                // A server with other storage: 404 `unsupported path`, or 500 `raft backend
                // not in use` (raft join).
                404 | 500
                    if raft_path
                        && (api.status == 404 || api.mentions("raft backend not in use")) =>
                {
                    Some(
                        "the server has no raft (integrated) storage: raft commands need a node \
                     whose storage is \"raft\" (see `vault-ops status`, Storage Type)"
                            .into(),
                    )
                }
                501 => Some(INIT_HINT.into()),
                503 if api.is_sealed() => Some(SEALED_HINT.into()),
                503 => Some(
                    "the node cannot serve now (sealed, or a standby without an active node): \
                     see `vault-ops status`"
                        .into(),
                ),
                403 => {
                    // `kv` commands look up the mount first: name the user's path.
                    let path = api
                        .path
                        .strip_prefix("sys/internal/ui/mounts/")
                        .unwrap_or(&api.path);
                    let mount = if api.mentions("preflight capability check") {
                        " (or nothing is mounted there: see `vault-ops secrets list`)"
                    } else {
                        ""
                    };
                    Some(format!(
                        "check that the token (VAULT_TOKEN) is valid, then what it may do on \
                         the path: `vault-ops token capabilities self {path}`{mount}"
                    ))
                }
                400 if api.mentions("HTTP request to an HTTPS server") => Some(format!(
                    "the server speaks https: use {}",
                    target.other_scheme()
                )),
                404 if api.mentions("no handler for route") => {
                    Some("no secrets engine is mounted there: see `vault-ops secrets list`".into())
                }
                _ => None,
            }
        }
        Error::Decode { .. } if !target.is_https() => Some(format!(
            "the reply was not Vault's: if the server uses TLS, use {}",
            target.other_scheme()
        )),
        Error::Transport { message, tls, .. } => {
            let m = message.to_ascii_lowercase();
            if m.contains("connection refused") {
                Some(format!(
                    "nothing listens at {}: check the host and port, and whether the server \
                     uses {} (try {})",
                    target.address,
                    if target.is_https() {
                        "http rather than https"
                    } else {
                        "https rather than http"
                    },
                    target.other_scheme()
                ))
            } else if *tls
                || m.contains("tls")
                || m.contains("certificate")
                || m.contains("corrupt message")
            {
                if m.contains("certificate") && !m.contains("corrupt") {
                    Some(
                        "the server's TLS certificate was not accepted: set VAULT_CACERT to \
                          the CA that signed it"
                            .into(),
                    )
                } else {
                    Some(format!(
                        "the TLS handshake failed: if the server listens without TLS, use {}",
                        target.other_scheme()
                    ))
                }
            } else if target.is_https() && (m.contains("invalid") || m.contains("handshake")) {
                Some(format!(
                    "if the server listens without TLS, use {}",
                    target.other_scheme()
                ))
            } else if m.contains("dns") || m.contains("resolve") {
                Some("the host name does not resolve: check the address".into())
            } else {
                None
            }
        }
        Error::Timeout { .. } => Some(
            "the server did not answer in time: check that it runs, or raise \
             VAULT_CLIENT_TIMEOUT"
                .into(),
        ),
        Error::MissingToken => {
            Some("set VAULT_TOKEN (or BAO_TOKEN), or write the token to ~/.vault-token".into())
        }
        _ => None,
    }
}
