//! Typed errors.
//!
//! Two enums: [`ConfigError`] for what is wrong with the client's configuration (found before any
//! request is sent) and [`Error`] for everything a request can run into. A reply from Vault that is
//! an error becomes [`Error::Api`], which keeps the HTTP status and Vault's own `errors` and
//! `warnings` in full. No error ever contains a token, a password or a response body.

use std::fmt;
use std::time::Duration;

/// The result type of every fallible call in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a request to Vault can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Vault answered with an error status. Keeps the status and Vault's messages.
    #[error(transparent)]
    Api(Box<ApiError>),

    /// The server could not be reached, the connection broke, or TLS failed.
    #[error("cannot reach Vault for {method} {path}: {message}")]
    Transport {
        /// The HTTP method of the request.
        method: String,
        /// The request path below `/v1/`.
        path: String,
        /// What went wrong, with its causes (never a header or a body).
        message: String,
        /// Whether the failure was in TLS certificate verification (never retried).
        tls: bool,
    },

    /// The request did not finish within the configured timeout.
    #[error("{method} {path} timed out after {timeout:?}")]
    Timeout {
        /// The HTTP method of the request.
        method: String,
        /// The request path below `/v1/`.
        path: String,
        /// The timeout that ran out.
        timeout: Duration,
    },

    /// Vault answered with success, but the body was not what the call expects.
    #[error("unexpected reply to {method} {path} (HTTP {status}): {message}")]
    Decode {
        /// The HTTP method of the request.
        method: String,
        /// The request path below `/v1/`.
        path: String,
        /// The HTTP status of the reply.
        status: u16,
        /// What did not fit (serde's message; never the body itself).
        message: String,
    },

    /// The reply's body is larger than the client reads into memory
    /// ([`ClientBuilder::max_response_bytes`](crate::ClientBuilder::max_response_bytes)). The
    /// body was not read past the limit and the connection was closed. Not retried.
    #[error("the reply to {method} {path} (HTTP {status}) is larger than the limit of {limit} bytes; it was not read (raise ClientBuilder::max_response_bytes if such replies are expected)")]
    BodyTooLarge {
        /// The HTTP method of the request.
        method: String,
        /// The request path below `/v1/`.
        path: String,
        /// The HTTP status of the reply.
        status: u16,
        /// The limit, in bytes.
        limit: usize,
    },

    /// A KV v2 version exists but has been soft-deleted (it can be undeleted).
    #[error("version {version} of {mount}/{path} is deleted (since {deletion_time}); undelete it to read it again")]
    SecretVersionDeleted {
        /// The KV mount.
        mount: String,
        /// The secret path inside the mount.
        path: String,
        /// The deleted version.
        version: u64,
        /// When it was deleted (RFC 3339, as Vault reports it).
        deletion_time: String,
    },

    /// A KV v2 version exists but has been destroyed for good.
    #[error("version {version} of {mount}/{path} is destroyed and cannot be read")]
    SecretVersionDestroyed {
        /// The KV mount.
        mount: String,
        /// The secret path inside the mount.
        path: String,
        /// The destroyed version.
        version: u64,
    },

    /// The client's configuration is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// An argument given to a call cannot be sent (for example an empty path).
    #[error("invalid argument: {0}")]
    InvalidInput(String),

    /// The client has no token, but the call needs one.
    #[error("no Vault token is set: give one to the builder, set VAULT_TOKEN or BAO_TOKEN, or log in first")]
    MissingToken,

    /// Writing or reading a local file or stream failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, and with which path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The Vault error, when this is one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(e) => Some(e),
            _ => None,
        }
    }

    /// The HTTP status, when Vault answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api(e) => Some(e.status),
            Error::Decode { status, .. } => Some(*status),
            Error::BodyTooLarge { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// `true` for a 404 (the path or secret does not exist).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// `true` for a 403: a missing, expired or revoked token, or a policy that denies the path.
    pub fn is_permission_denied(&self) -> bool {
        self.status() == Some(403)
    }

    /// `true` when Vault said it is sealed.
    pub fn is_sealed(&self) -> bool {
        self.api().is_some_and(ApiError::is_sealed)
    }

    /// `true` when a KV v2 check-and-set did not match the current version.
    pub fn is_cas_mismatch(&self) -> bool {
        self.api().is_some_and(ApiError::is_cas_mismatch)
    }

    /// `true` for connection failures and timeouts: Vault may not have seen the request,
    /// or its reply was lost.
    pub fn is_transport(&self) -> bool {
        matches!(self, Error::Transport { .. } | Error::Timeout { .. })
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        Error::Api(Box::new(e))
    }
}

/// An error reply from Vault: status, the request it answered, and Vault's messages in full.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// The HTTP method of the request.
    pub method: String,
    /// The request path below `/v1/`.
    pub path: String,
    /// Vault's `errors` array (empty when Vault sent none, as for a plain 404).
    pub errors: Vec<String>,
    /// Vault's `warnings` array.
    pub warnings: Vec<String>,
    /// Vault's `X-Vault-Request-Id`-style request id, when the body carried one.
    pub request_id: Option<String>,
    /// The reply's `Retry-After` (delay-seconds form), when it had one. When it is set on the
    /// error a call returns, the wait it asked for was past what retries remained or past
    /// the call's deadline ([`ClientBuilder::max_call_duration`](crate::ClientBuilder::max_call_duration)).
    pub retry_after: Option<Duration>,
    /// For a redirect (3xx) that was not followed: where it pointed (its `Location`, without
    /// credentials, query or fragment).
    pub location: Option<String>,
}

impl ApiError {
    /// `true` when Vault said it is sealed (503 with "Vault is sealed").
    pub fn is_sealed(&self) -> bool {
        self.status == 503 && self.errors.iter().any(|e| e.contains("is sealed"))
    }

    /// `true` when a KV v2 check-and-set did not match.
    pub fn is_cas_mismatch(&self) -> bool {
        self.status == 400
            && self
                .errors
                .iter()
                .any(|e| e.contains("check-and-set parameter"))
    }

    /// `true` when any of Vault's messages contains `needle`.
    pub fn mentions(&self, needle: &str) -> bool {
        self.errors.iter().any(|e| e.contains(needle))
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Vault answered {} {} with HTTP {}",
            self.method, self.path, self.status
        )?;
        let errors: Vec<String> = self
            .errors
            .iter()
            .flat_map(|e| flatten_multierror(e))
            .collect();
        if errors.is_empty() {
            if self.location.is_none() {
                write!(f, " ({})", status_reason(self.status))?;
            }
        } else {
            write!(f, ": {}", errors.join("; "))?;
        }
        if !self.warnings.is_empty() {
            write!(f, " (warnings: {})", self.warnings.join("; "))?;
        }
        if let Some(location) = &self.location {
            write!(f, " (a redirect to {location}, not followed)")?;
        }
        if let Some(wait) = self.retry_after {
            write!(f, " (it asked to retry after {} s)", wait.as_secs())?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// An error and its sources, joined with `: ` (repeats dropped).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(errors: &[&str]) -> ApiError {
        ApiError {
            status: 403,
            method: "GET".into(),
            path: "secret/data/x".into(),
            errors: errors.iter().map(|e| e.to_string()).collect(),
            warnings: vec![],
            request_id: None,
            retry_after: None,
            location: None,
        }
    }

    #[test]
    fn display_keeps_vaults_messages() {
        assert_eq!(
            api(&["1 error occurred:\n\t* permission denied\n\n"]).to_string(),
            "Vault answered GET secret/data/x with HTTP 403: permission denied"
        );
        assert_eq!(
            api(&["2 errors occurred:\n\t* a\n\t* b\n\n"]).to_string(),
            "Vault answered GET secret/data/x with HTTP 403: a; b"
        );
        assert_eq!(
            api(&[]).to_string(),
            "Vault answered GET secret/data/x with HTTP 403 (permission denied)"
        );
        assert_eq!(
            api(&["no handler for route \"x/y\". route entry not found."]).to_string(),
            "Vault answered GET secret/data/x with HTTP 403: no handler for route \"x/y\". route entry not found."
        );
    }
}

/// Vault wraps some messages as `1 error occurred:\n\t* permission denied\n\n`: keep the items.
fn flatten_multierror(message: &str) -> Vec<String> {
    let text = message.trim();
    let (head, rest) = text.split_once('\n').unwrap_or((text, ""));
    let is_wrapper = head.ends_with("occurred:")
        && head
            .split_whitespace()
            .next()
            .is_some_and(|n| n.parse::<u32>().is_ok());
    let items: Vec<String> = if is_wrapper {
        rest.lines()
            .map(|l| l.trim().trim_start_matches("* ").trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    } else {
        vec![text.replace('\n', " ")]
    };
    items.into_iter().filter(|l| !l.is_empty()).collect()
}

fn status_reason(status: u16) -> &'static str {
    match status {
        400 => "bad request",
        403 => "permission denied",
        404 => "not found",
        405 => "method not supported",
        412 => "precondition failed: the node has not caught up",
        429 => "too many requests, or a standby node",
        473 => "performance standby",
        500 => "internal server error",
        501 => "not initialised",
        502 => "bad gateway",
        503 => "sealed or unavailable",
        504 => "gateway timeout",
        _ => "no message",
    }
}

/// What is wrong with the client's configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The Vault address is not a usable URL.
    #[error("invalid Vault address {address:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// Why it is not usable.
        reason: String,
    },
    /// An environment variable holds a value that cannot be used.
    #[error("environment variable {name} has an invalid value: {reason}")]
    InvalidEnv {
        /// The variable's name.
        name: String,
        /// Why the value cannot be used (the value itself is shown only when it is not a secret).
        reason: String,
    },
    /// A file named in the configuration cannot be read.
    #[error("cannot read {what} from {path}: {source}")]
    File {
        /// What the file was for ("CA certificate", "client key", ...).
        what: String,
        /// The path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// TLS material (certificate, key) could not be parsed or used.
    #[error("invalid TLS {what}: {reason}")]
    Tls {
        /// What was being loaded.
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// A value given to the builder is out of range or malformed.
    #[error("invalid {name}: {reason}")]
    InvalidValue {
        /// Which setting.
        name: String,
        /// Why it is invalid.
        reason: String,
    },
    /// Several configuration sources failed; each is listed.
    #[error("{} configuration errors: {}", .0.len(), .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Many(Vec<ConfigError>),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}
