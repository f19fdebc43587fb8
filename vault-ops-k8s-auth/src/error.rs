//! Errors of logins, token files and the token lifecycle.
//!
//! A refused login becomes [`Error::LoginRefused`], which says which method, mount and role it was,
//! classifies Vault's reason as a [`LoginFailure`] and keeps Vault's own error (status and messages)
//! as its source. Every other failure of a request to Vault is [`Error::Vault`], unchanged.

use std::fmt;
use std::path::PathBuf;

/// The result type of this crate's logins and lifecycle calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a login, a token file or the token lifecycle can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Vault refused the login (HTTP 400 or 403 from `auth/<mount>/login`).
    #[error("{method} login{} at auth/{mount} was refused: {kind}: {source}", role_text(.role))]
    LoginRefused {
        /// The auth method type, e.g. `kubernetes`, `approle`, `userpass`.
        method: &'static str,
        /// The mount path below `auth/`.
        mount: String,
        /// The role (or user name) the login was for, when there is one.
        role: Option<String>,
        /// Vault's reason, classified.
        kind: LoginFailure,
        /// Vault's error as the core client reported it (status and Vault's messages).
        #[source]
        source: vault_ops_core::Error,
    },

    /// Any other failure of a request to Vault (transport, timeout, 5xx, unexpected reply).
    #[error(transparent)]
    Vault(#[from] vault_ops_core::Error),

    /// The service-account token (JWT) file could not be read, or is empty.
    #[error("cannot read the service account token from {}: {source}", .path.display())]
    TokenFile {
        /// The path that was read.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },

    /// The AppRole secret ID file ([`AppRoleAuth::with_secret_id_file`](crate::AppRoleAuth::with_secret_id_file))
    /// could not be read, or is empty.
    #[error("cannot read the AppRole secret ID from {}: {source}", .path.display())]
    SecretIdFile {
        /// The path that was read.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },

    /// The token file sink could not write the Vault token.
    #[error("cannot write the Vault token to {}: {source}", .path.display())]
    TokenSink {
        /// The file that was to be written.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },

    /// The token lifecycle was shut down.
    #[error("the token lifecycle has been shut down")]
    Stopped,

    /// The token lifecycle's background task died (it panicked, or its runtime shut down): the
    /// token is no longer renewed or replaced, so [`TokenLifecycle::call`](crate::TokenLifecycle::call)
    /// refuses to go on with it.
    #[error("the token lifecycle's background task died: {reason}")]
    TaskFailed {
        /// Why, e.g. the panic message.
        reason: String,
    },

    /// No login was tried: the last one failed moments ago and the lifecycle is backing off
    /// before the next ([`TokenLifecycle::call`](crate::TokenLifecycle::call) shares one login
    /// attempt among concurrent callers and respects the background task's backoff).
    /// [`status`](Error::status) and [`login_failure`](Error::login_failure) are those of the
    /// last login's error.
    #[error("not logging in again for another {retry_in:?}: the last login failed: {last_error}")]
    LoginBackoff {
        /// How long until a login may be tried again (zero when the backoff is over but the
        /// failed attempt was the one this caller waited for).
        retry_in: std::time::Duration,
        /// The last login's error, as text (with Vault's messages; never a secret).
        last_error: String,
        /// The last login's HTTP status, when Vault answered.
        status: Option<u16>,
        /// The last login's classified reason, when Vault refused it.
        failure: Option<LoginFailure>,
    },
}

fn role_text(role: &Option<String>) -> String {
    match role {
        Some(r) => format!(" as {r:?}"),
        None => String::new(),
    }
}

impl Error {
    /// Vault's error, when this failure is an answer from (or a request to) Vault.
    pub fn vault_error(&self) -> Option<&vault_ops_core::Error> {
        match self {
            Error::LoginRefused { source, .. } => Some(source),
            Error::Vault(e) => Some(e),
            _ => None,
        }
    }

    /// The HTTP status, when Vault answered (for [`Error::LoginBackoff`], the last login's).
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::LoginBackoff { status, .. } => *status,
            _ => self.vault_error().and_then(vault_ops_core::Error::status),
        }
    }

    /// The classified reason of a refused login (for [`Error::LoginBackoff`], the last
    /// login's).
    pub fn login_failure(&self) -> Option<LoginFailure> {
        match self {
            Error::LoginRefused { kind, .. } => Some(*kind),
            Error::LoginBackoff { failure, .. } => *failure,
            _ => None,
        }
    }

    /// `true` when Vault refused a login.
    pub fn is_login_refused(&self) -> bool {
        matches!(self, Error::LoginRefused { .. })
    }

    /// `true` for an HTTP 403 from Vault (a refused login or a denied request).
    pub fn is_permission_denied(&self) -> bool {
        self.status() == Some(403)
    }

    /// Turns an error from a login request into [`Error::LoginRefused`] when Vault refused it
    /// (HTTP 400 or 403), and into [`Error::Vault`] otherwise.
    pub fn from_login(
        method: &'static str,
        mount: &str,
        role: Option<&str>,
        error: vault_ops_core::Error,
    ) -> Self {
        match error.api() {
            Some(api) if api.status == 400 || api.status == 403 => Error::LoginRefused {
                method,
                mount: mount.to_string(),
                role: role.map(str::to_string),
                kind: LoginFailure::classify(api.status, &api.errors),
                source: error,
            },
            _ => Error::Vault(error),
        }
    }
}

impl From<vault_ops_core::ConfigError> for Error {
    fn from(e: vault_ops_core::ConfigError) -> Self {
        Error::Vault(vault_ops_core::Error::Config(e))
    }
}

/// Why Vault refused a login, read from its status and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LoginFailure {
    /// The service account's namespace is not in the role's `bound_service_account_namespaces`
    /// (Vault: `namespace not authorized`).
    NamespaceNotAuthorized,
    /// The service account is not in the role's `bound_service_account_names`
    /// (Vault: `service account name not authorized`).
    ServiceAccountNotAuthorized,
    /// The role does not exist or was not given (Vault: `invalid role name "x"`, `missing role`).
    InvalidRole,
    /// The JWT's audience does not match the role's `audience`.
    AudienceMismatch,
    /// The JWT has expired (its `exp` claim is past; OpenBao: `invalid expiration time (exp)
    /// claim: token is expired`): the service-account token file was not refreshed, or a fixed
    /// JWT outlived its lifetime. Rejected before any TokenReview.
    JwtExpired,
    /// The JWT is not valid yet (`nbf` or `iat` in the future; OpenBao: `invalid not before
    /// (nbf) claim: token not yet valid`): usually clock skew between the issuer and Vault.
    JwtNotYetValid,
    /// Wrong credentials for AppRole or userpass (`invalid role or secret ID`,
    /// `invalid username or password`).
    InvalidCredentials,
    /// A bare 403 `permission denied`: the JWT was rejected (TokenReview said
    /// `authenticated: false`, the uid did not match, the signature or algorithm is wrong), the
    /// TokenReview API could not be reached, or the auth mount does not exist.
    PermissionDenied,
    /// Any other refusal; Vault's messages are in the error's source.
    Other,
}

impl LoginFailure {
    /// Classifies a refused login by its status and Vault's messages.
    pub fn classify(status: u16, errors: &[String]) -> Self {
        let text = errors.join("\n").to_ascii_lowercase();
        if text.contains("(exp) claim") || text.contains("token is expired") {
            LoginFailure::JwtExpired
        } else if text.contains("(nbf) claim")
            || text.contains("(iat) claim")
            || text.contains("token not yet valid")
            || text.contains("token used before issued")
        {
            LoginFailure::JwtNotYetValid
        } else if text.contains("namespace not authorized") {
            LoginFailure::NamespaceNotAuthorized
        } else if text.contains("service account name not authorized") {
            LoginFailure::ServiceAccountNotAuthorized
        } else if text.contains("invalid role name")
            || text.contains("missing role")
            || (text.contains("role") && text.contains("not found"))
        {
            LoginFailure::InvalidRole
        } else if text.contains("aud") && (text.contains("audience") || text.contains("(aud)")) {
            LoginFailure::AudienceMismatch
        } else if text.contains("invalid role or secret id")
            || text.contains("invalid secret id")
            || text.contains("invalid username or password")
            || text.contains("invalid credentials")
        {
            LoginFailure::InvalidCredentials
        } else if status == 403 && (text.is_empty() || text.contains("permission denied")) {
            LoginFailure::PermissionDenied
        } else {
            LoginFailure::Other
        }
    }
}

impl fmt::Display for LoginFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LoginFailure::NamespaceNotAuthorized => "namespace not authorized by the role",
            LoginFailure::ServiceAccountNotAuthorized => {
                "service account name not authorized by the role"
            }
            LoginFailure::InvalidRole => "no such role",
            LoginFailure::AudienceMismatch => "audience does not match the role",
            LoginFailure::JwtExpired => "the JWT has expired",
            LoginFailure::JwtNotYetValid => "the JWT is not valid yet (clock skew?)",
            LoginFailure::InvalidCredentials => "invalid credentials",
            LoginFailure::PermissionDenied => "permission denied (token rejected)",
            LoginFailure::Other => "refused",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn classifies_vault_messages() {
        use LoginFailure::*;
        assert_eq!(
            LoginFailure::classify(403, &s(&["namespace not authorized"])),
            NamespaceNotAuthorized
        );
        assert_eq!(
            LoginFailure::classify(403, &s(&["service account name not authorized"])),
            ServiceAccountNotAuthorized
        );
        assert_eq!(
            LoginFailure::classify(400, &s(&["invalid role name \"x\""])),
            InvalidRole
        );
        assert_eq!(
            LoginFailure::classify(400, &s(&["missing role"])),
            InvalidRole
        );
        assert_eq!(
            LoginFailure::classify(400, &s(&["invalid role or secret ID"])),
            InvalidCredentials
        );
        assert_eq!(
            LoginFailure::classify(400, &s(&["invalid username or password"])),
            InvalidCredentials
        );
        assert_eq!(
            LoginFailure::classify(403, &s(&["permission denied"])),
            PermissionDenied
        );
        assert_eq!(LoginFailure::classify(403, &[]), PermissionDenied);
        assert_eq!(LoginFailure::classify(400, &s(&["something new"])), Other);
        assert_eq!(
            LoginFailure::classify(
                403,
                &s(&["invalid expiration time (exp) claim: token is expired"])
            ),
            JwtExpired
        );
        assert_eq!(
            LoginFailure::classify(
                403,
                &s(&["invalid not before (nbf) claim: token not yet valid"])
            ),
            JwtNotYetValid
        );
        assert_eq!(
            LoginFailure::classify(
                403,
                &s(&["invalid audience (aud) claim: audience not found"])
            ),
            AudienceMismatch
        );
    }
}
