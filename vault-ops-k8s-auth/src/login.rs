//! The [`AuthMethod`] trait every login method implements. A login returns core's
//! [`AuthInfo`] (the token, policies, metadata, TTL as a clamped `Duration` and the reply's
//! warnings), the same type a token create or renewal returns.

use std::path::Path;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use vault_ops_core::{AuthInfo, Request, VaultClient, VaultResponse};

use crate::error::{Error, Result};

/// A way to log in to Vault. The [token lifecycle](crate::TokenLifecycle) works with any of them.
///
/// Implemented by [`KubernetesAuth`](crate::KubernetesAuth), [`AppRoleAuth`](crate::AppRoleAuth)
/// and [`UserpassAuth`](crate::UserpassAuth); implement it for other methods by sending a login
/// request with [`Request::without_token`] and returning the reply's `auth` block, an
/// [`AuthInfo`] (see [`login_request`]).
///
/// ```no_run
/// # async fn run() -> Result<(), vault_ops_k8s_auth::Error> {
/// use vault_ops_core::VaultClient;
/// use vault_ops_k8s_auth::{AuthMethod, KubernetesAuth};
///
/// let client = VaultClient::from_env()?;
/// let login = KubernetesAuth::new("my-app").login(&client).await?;
/// client.set_token(login.client_token.clone());
/// println!(
///     "logged in with policies {}, TTL {} s",
///     login.policies.join(", "),
///     login.lease_duration.as_secs()
/// );
/// # Ok(()) }
/// ```
#[async_trait::async_trait]
pub trait AuthMethod: Send + Sync {
    /// Logs in and returns the new token. Does not change the client's token.
    async fn login(&self, client: &VaultClient) -> Result<AuthInfo>;

    /// A short description for logs and events, e.g. `kubernetes role "app" at auth/kubernetes`.
    /// Never contains a secret.
    fn description(&self) -> String;

    /// Logs in and makes the new token the client's token (for every clone of the client).
    async fn login_and_set(&self, client: &VaultClient) -> Result<AuthInfo> {
        let login = self.login(client).await?;
        client.set_token(login.client_token.clone());
        Ok(login)
    }
}

#[async_trait::async_trait]
impl<T: AuthMethod + ?Sized> AuthMethod for Arc<T> {
    async fn login(&self, client: &VaultClient) -> Result<AuthInfo> {
        (**self).login(client).await
    }

    fn description(&self) -> String {
        (**self).description()
    }
}

#[async_trait::async_trait]
impl<T: AuthMethod + ?Sized> AuthMethod for Box<T> {
    async fn login(&self, client: &VaultClient) -> Result<AuthInfo> {
        (**self).login(client).await
    }

    fn description(&self) -> String {
        (**self).description()
    }
}

/// Sends a login request (without a token) to `path` with a JSON `body` and reads the `auth`
/// block (with the reply's warnings in [`AuthInfo::warnings`]). A 400 or 403 becomes [`Error::LoginRefused`] for `method`, `mount` and `role`.
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
) -> Result<AuthInfo> {
    let req = Request::post(path)
        .without_token()
        .json(body)?
        .not_idempotent();
    let resp = client
        .execute(req)
        .await
        .map_err(|e| Error::from_login(method, mount, role, e))?;
    let reply: VaultResponse<serde_json::Value> = resp.json()?;
    reply.auth.ok_or_else(|| {
        resp.decode_error("the login reply has no auth block")
            .into()
    })
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
