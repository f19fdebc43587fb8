//! The login result and the [`AuthMethod`] trait every login method implements.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use vault_ops_core::{AuthInfo, Request, VaultClient, VaultResponse, VaultToken};

use crate::error::{Error, Result};

/// A successful login: the Vault token and what Vault said about it.
///
/// `Debug` never shows the token.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Login {
    /// The Vault token.
    pub token: VaultToken,
    /// The token's accessor (not a secret: it can look up and revoke the token, not use it).
    pub accessor: String,
    /// All policies of the token.
    pub policies: Vec<String>,
    /// Policies attached to the token itself.
    pub token_policies: Vec<String>,
    /// Policies that come from the identity (entity and groups).
    pub identity_policies: Vec<String>,
    /// Metadata the auth method attached; for Kubernetes `service_account_name`,
    /// `service_account_namespace`, `service_account_uid`, `service_account_secret_name`, `role`.
    pub metadata: HashMap<String, String>,
    /// The token's TTL as granted (zero for a token that never expires), at most
    /// [`MAX_TTL`]: a longer one from the server is clamped, so adding it to an `Instant` or
    /// `SystemTime` cannot overflow.
    pub lease_duration: Duration,
    /// Whether the token can be renewed.
    pub renewable: bool,
    /// The identity entity id.
    pub entity_id: String,
    /// `service` or `batch`.
    pub token_type: String,
    /// Whether the token is an orphan.
    pub orphan: bool,
    /// Warnings Vault attached to the reply.
    pub warnings: Vec<String>,
}

impl Login {
    /// Builds a login from the `auth` block of a reply and the reply's warnings.
    pub fn from_auth(auth: AuthInfo, warnings: Vec<String>) -> Self {
        Login {
            token: auth.client_token,
            accessor: auth.accessor,
            policies: auth.policies,
            token_policies: auth.token_policies,
            identity_policies: auth.identity_policies,
            metadata: auth.metadata,
            lease_duration: ttl_from_secs(auth.lease_duration),
            renewable: auth.renewable,
            entity_id: auth.entity_id,
            token_type: auth.token_type,
            orphan: auth.orphan,
            warnings,
        }
    }

    /// `true` when the token has the policy `name`.
    pub fn has_policy(&self, name: &str) -> bool {
        self.policies.iter().any(|p| p == name)
    }
}

/// The longest token TTL this crate works with (100 years). A server's `lease_duration` above
/// it (say `18446744073709551615`) is taken as this, which is far enough to mean "does not
/// expire soon" and near enough that every deadline computed from it stays representable.
pub const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A TTL in seconds from a server reply, clamped to [`MAX_TTL`].
pub(crate) fn ttl_from_secs(secs: u64) -> Duration {
    Duration::from_secs(secs).min(MAX_TTL)
}

/// A way to log in to Vault. The [token lifecycle](crate::TokenLifecycle) works with any of them.
///
/// Implemented by [`KubernetesAuth`](crate::KubernetesAuth), [`AppRoleAuth`](crate::AppRoleAuth)
/// and [`UserpassAuth`](crate::UserpassAuth); implement it for other methods by sending a login
/// request with [`Request::without_token`] and turning the reply's `auth` block into a
/// [`Login`] (see [`login_request`]).
///
/// ```no_run
/// # async fn run() -> Result<(), vault_ops_k8s_auth::Error> {
/// use vault_ops_core::VaultClient;
/// use vault_ops_k8s_auth::{AuthMethod, KubernetesAuth};
///
/// let client = VaultClient::from_env()?;
/// let login = KubernetesAuth::new("my-app").login(&client).await?;
/// client.set_token(login.token.clone());
/// println!("logged in with policies {:?}, TTL {:?}", login.policies, login.lease_duration);
/// # Ok(()) }
/// ```
#[async_trait::async_trait]
pub trait AuthMethod: Send + Sync {
    /// Logs in and returns the new token. Does not change the client's token.
    async fn login(&self, client: &VaultClient) -> Result<Login>;

    /// A short description for logs and events, e.g. `kubernetes role "app" at auth/kubernetes`.
    /// Never contains a secret.
    fn description(&self) -> String;

    /// Logs in and makes the new token the client's token (for every clone of the client).
    async fn login_and_set(&self, client: &VaultClient) -> Result<Login> {
        let login = self.login(client).await?;
        client.set_token(login.token.clone());
        Ok(login)
    }
}

#[async_trait::async_trait]
impl<T: AuthMethod + ?Sized> AuthMethod for Arc<T> {
    async fn login(&self, client: &VaultClient) -> Result<Login> {
        (**self).login(client).await
    }

    fn description(&self) -> String {
        (**self).description()
    }
}

#[async_trait::async_trait]
impl<T: AuthMethod + ?Sized> AuthMethod for Box<T> {
    async fn login(&self, client: &VaultClient) -> Result<Login> {
        (**self).login(client).await
    }

    fn description(&self) -> String {
        (**self).description()
    }
}

/// Sends a login request (without a token) to `path` with a JSON `body` and reads the `auth`
/// block. A 400 or 403 becomes [`Error::LoginRefused`] for `method`, `mount` and `role`.
///
/// A login is not idempotent (it creates a token, and may use up a single-use AppRole secret
/// ID), so it is sent as [`Request::not_idempotent`]: repeated only when Vault certainly did not
/// act on it (no connection could be made, or 412, 429 or 503), never after a 500, a connection
/// lost after sending or a timeout. Such a failure is returned as it is; whoever logs in (the
/// [token lifecycle](crate::TokenLifecycle) does) decides whether to try a fresh login.
///
/// The body is never logged (the core client traces method, path and status only).
pub async fn login_request(
    client: &VaultClient,
    method: &'static str,
    mount: &str,
    role: Option<&str>,
    path: &str,
    body: &serde_json::Value,
) -> Result<Login> {
    let req = Request::post(path)
        .without_token()
        .json(body)?
        .not_idempotent();
    let resp = client
        .execute(req)
        .await
        .map_err(|e| Error::from_login(method, mount, role, e))?;
    let reply: VaultResponse<serde_json::Value> = resp.json()?;
    let auth = reply
        .auth
        .ok_or_else(|| resp.decode_error("the login reply has no auth block"))?;
    Ok(Login::from_auth(auth, reply.warnings))
}

/// A mount path without leading or trailing slashes (the core client checks the rest).
pub(crate) fn clean_mount(mount: &str) -> String {
    mount.trim_matches('/').to_string()
}

/// Reads a file holding one secret (a JWT, a secret ID): trimmed, non-empty UTF-8. The
/// errors never quote the content.
pub(crate) async fn read_secret_file(path: &Path) -> std::io::Result<SecretString> {
    let bytes = tokio::fs::read(path).await?;
    let text = String::from_utf8(bytes).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the file is not UTF-8 text",
        )
    })?;
    let secret = SecretString::from(text.trim());
    drop(text);
    if secret.expose_secret().is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the file is empty",
        ));
    }
    Ok(secret)
}
