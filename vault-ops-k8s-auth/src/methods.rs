//! Logins for services outside Kubernetes: AppRole and userpass.

use std::path::PathBuf;

use secrecy::ExposeSecret;
use serde_json::json;
use vault_ops_core::http::join_path;
use vault_ops_core::{AuthInfo, Password, SecretId, VaultClient};

use crate::error::{Error, Result};
use crate::login::{clean_mount, login_request, read_secret_file, AuthMethod};

/// AppRole auth: logs in to `auth/<mount>/login` with a role id and (usually) a secret id.
///
/// ```no_run
/// # async fn run() -> Result<(), vault_ops_k8s_auth::Error> {
/// use vault_ops_core::{SecretString, VaultClient};
/// use vault_ops_k8s_auth::{AppRoleAuth, AuthMethod};
///
/// let client = VaultClient::from_env()?;
/// let secret_id = SecretString::from(std::env::var("APPROLE_SECRET_ID").unwrap_or_default());
/// AppRoleAuth::new("0f4c-role-id", secret_id).login_and_set(&client).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AppRoleAuth {
    mount: String,
    role_id: String,
    secret_id: SecretIdSource,
}

/// Where the secret ID comes from.
#[derive(Debug, Clone)]
enum SecretIdSource {
    None,
    Fixed(SecretId),
    /// Read at every login, so a rotated secret ID is picked up.
    File(PathBuf),
}

impl AppRoleAuth {
    /// The default mount path.
    pub const DEFAULT_MOUNT: &'static str = "approle";

    /// Logs in with this role id and secret id on the `approle` mount.
    pub fn new(role_id: impl Into<String>, secret_id: impl Into<SecretId>) -> Self {
        AppRoleAuth {
            mount: Self::DEFAULT_MOUNT.into(),
            role_id: role_id.into(),
            secret_id: SecretIdSource::Fixed(secret_id.into()),
        }
    }

    /// Logs in with this role id and the secret ID in a file, read (and trimmed) at every
    /// login, as Vault Agent's `secret_id_file_path`: a secret ID rotated into the file (a
    /// re-mounted Kubernetes Secret, a deployment tool) is used from the next login on,
    /// including the [`TokenLifecycle`](crate::TokenLifecycle)'s re-logins. The file is never
    /// changed or deleted. A file that cannot be read or is empty fails the login with
    /// [`Error::SecretIdFile`](crate::Error::SecretIdFile), naming the path.
    pub fn with_secret_id_file(role_id: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        AppRoleAuth {
            mount: Self::DEFAULT_MOUNT.into(),
            role_id: role_id.into(),
            secret_id: SecretIdSource::File(path.into()),
        }
    }

    /// Logs in with a role id alone (for roles with `bind_secret_id = false`).
    pub fn without_secret_id(role_id: impl Into<String>) -> Self {
        AppRoleAuth {
            mount: Self::DEFAULT_MOUNT.into(),
            role_id: role_id.into(),
            secret_id: SecretIdSource::None,
        }
    }

    /// Uses another mount path (below `auth/`).
    pub fn with_mount(mut self, mount: impl AsRef<str>) -> Self {
        self.mount = clean_mount(mount.as_ref());
        self
    }

    /// The mount path below `auth/`.
    pub fn mount(&self) -> &str {
        &self.mount
    }

    /// The role id.
    pub fn role_id(&self) -> &str {
        &self.role_id
    }
}

#[async_trait::async_trait]
impl AuthMethod for AppRoleAuth {
    async fn login(&self, client: &VaultClient) -> Result<AuthInfo> {
        let path = join_path(&["auth", &self.mount, "login"]);
        let from_file;
        let secret_id = match &self.secret_id {
            SecretIdSource::None => None,
            SecretIdSource::Fixed(s) => Some(s),
            SecretIdSource::File(path) => {
                from_file = read_secret_file(path)
                    .await
                    .map(SecretId::from)
                    .map_err(|source| Error::SecretIdFile {
                        path: path.clone(),
                        source,
                    })?;
                Some(&from_file)
            }
        };
        let body = match secret_id {
            Some(s) => json!({"role_id": self.role_id, "secret_id": s.expose_secret()}),
            None => json!({"role_id": self.role_id}),
        };
        login_request(client, "approle", &self.mount, None, &path, &body).await
    }

    fn description(&self) -> String {
        format!("approle at auth/{}", self.mount)
    }
}

/// Userpass auth: logs in to `auth/<mount>/login/<username>` with a password.
#[derive(Debug, Clone)]
pub struct UserpassAuth {
    mount: String,
    username: String,
    password: Password,
}

impl UserpassAuth {
    /// The default mount path.
    pub const DEFAULT_MOUNT: &'static str = "userpass";

    /// Logs in as `username` with `password` on the `userpass` mount.
    pub fn new(username: impl Into<String>, password: impl Into<Password>) -> Self {
        UserpassAuth {
            mount: Self::DEFAULT_MOUNT.into(),
            username: username.into(),
            password: password.into(),
        }
    }

    /// Uses another mount path (below `auth/`).
    pub fn with_mount(mut self, mount: impl AsRef<str>) -> Self {
        self.mount = clean_mount(mount.as_ref());
        self
    }

    /// The mount path below `auth/`.
    pub fn mount(&self) -> &str {
        &self.mount
    }

    /// The user name.
    pub fn username(&self) -> &str {
        &self.username
    }
}

#[async_trait::async_trait]
impl AuthMethod for UserpassAuth {
    async fn login(&self, client: &VaultClient) -> Result<AuthInfo> {
        if self.username.is_empty() || self.username.contains('/') {
            return Err(vault_ops_core::Error::InvalidInput(format!(
                "the userpass user name {:?} is empty or has a '/'",
                self.username
            ))
            .into());
        }
        let path = join_path(&["auth", &self.mount, "login", &self.username]);
        let body = json!({"password": self.password.expose_secret()});
        login_request(
            client,
            "userpass",
            &self.mount,
            Some(&self.username),
            &path,
            &body,
        )
        .await
    }

    fn description(&self) -> String {
        format!("userpass user {:?} at auth/{}", self.username, self.mount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let a = AppRoleAuth::new("rid", vault_ops_core::SecretString::from("sid-very-secret"));
        let u = UserpassAuth::new("alice", "pw-very-secret");
        for (text, kind) in [
            (format!("{a:?}"), "SecretId([REDACTED])"),
            (format!("{u:?}"), "Password([REDACTED])"),
        ] {
            assert!(!text.contains("very-secret"), "{text}");
            assert!(text.contains(kind), "{text}");
        }
        assert!(format!("{:?}", AppRoleAuth::without_secret_id("r")).contains("secret_id: None"));
    }
}
