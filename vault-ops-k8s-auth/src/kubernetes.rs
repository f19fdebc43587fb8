//! Login with a Kubernetes service-account token (`auth/kubernetes/login`).

use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;
use serde_json::json;
use vault_ops_core::http::join_path;
use vault_ops_core::{AuthInfo, Jwt, VaultClient};

use crate::error::{Error, Result};
use crate::login::{clean_mount, login_request, read_secret_file, AuthMethod};

/// Where the service-account JWT comes from. Derives `Debug`: a fixed JWT is a [`Jwt`],
/// which never shows.
#[derive(Debug, Clone)]
pub enum JwtSource {
    /// A file, read again at every login (projected tokens are rotated by the kubelet).
    File(PathBuf),
    /// A fixed JWT.
    Jwt(Jwt),
}

/// Kubernetes auth: logs in to `auth/<mount>/login` as `role` with the pod's service-account
/// token.
///
/// By default the mount is `kubernetes` and the token is read from
/// `/var/run/secrets/kubernetes.io/serviceaccount/token` at every login.
///
/// ```no_run
/// # async fn run() -> Result<(), vault_ops_k8s_auth::Error> {
/// use vault_ops_core::VaultClient;
/// use vault_ops_k8s_auth::{AuthMethod, KubernetesAuth};
///
/// let client = VaultClient::from_env()?;
/// let auth = KubernetesAuth::new("payments").with_mount("k8s-prod");
/// let login = auth.login_and_set(&client).await?;
/// let account = login.metadata.get("service_account_name");
/// println!("logged in as {}", account.map_or("(unknown)", String::as_str));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct KubernetesAuth {
    role: String,
    mount: String,
    source: JwtSource,
}

impl KubernetesAuth {
    /// The default mount path.
    pub const DEFAULT_MOUNT: &'static str = "kubernetes";
    /// Where Kubernetes mounts the service-account token in a pod.
    pub const DEFAULT_TOKEN_PATH: &'static str =
        "/var/run/secrets/kubernetes.io/serviceaccount/token";

    /// Logs in as `role` on the `kubernetes` mount with the pod's token file.
    pub fn new(role: impl Into<String>) -> Self {
        KubernetesAuth {
            role: role.into(),
            mount: Self::DEFAULT_MOUNT.into(),
            source: JwtSource::File(PathBuf::from(Self::DEFAULT_TOKEN_PATH)),
        }
    }

    /// Uses another mount path (below `auth/`).
    pub fn with_mount(mut self, mount: impl AsRef<str>) -> Self {
        self.mount = clean_mount(mount.as_ref());
        self
    }

    /// Reads the JWT from this file (at every login).
    pub fn with_token_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.source = JwtSource::File(path.into());
        self
    }

    /// Uses this JWT instead of a file (a [`Jwt`], or a `SecretString` or `String` made
    /// into one).
    pub fn with_jwt(mut self, jwt: impl Into<Jwt>) -> Self {
        self.source = JwtSource::Jwt(jwt.into());
        self
    }

    /// The role.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// The mount path below `auth/`.
    pub fn mount(&self) -> &str {
        &self.mount
    }

    /// Where the JWT comes from.
    pub fn jwt_source(&self) -> &JwtSource {
        &self.source
    }

    /// The JWT the next login would send: the file's content (trimmed) or the fixed JWT.
    ///
    /// A file that cannot be read, is not UTF-8 or is empty gives [`Error::TokenFile`] with the
    /// path and the reason.
    pub async fn read_jwt(&self) -> Result<Jwt> {
        match &self.source {
            JwtSource::Jwt(jwt) => Ok(jwt.clone()),
            JwtSource::File(path) => read_jwt_file(path).await,
        }
    }
}

/// Reads a JWT file: trimmed, non-empty UTF-8.
pub(crate) async fn read_jwt_file(path: &Path) -> Result<Jwt> {
    read_secret_file(path)
        .await
        .map(Jwt::from)
        .map_err(|source| Error::TokenFile {
            path: path.to_path_buf(),
            source,
        })
}

#[async_trait::async_trait]
impl AuthMethod for KubernetesAuth {
    async fn login(&self, client: &VaultClient) -> Result<AuthInfo> {
        let jwt = self.read_jwt().await?;
        kubernetes_login(client, &self.mount, &self.role, &jwt).await
    }

    fn description(&self) -> String {
        format!("kubernetes role {:?} at auth/{}", self.role, self.mount)
    }
}

/// `POST auth/<mount>/login {"role", "jwt"}`: the guide's
/// `curl --request POST --data '{"jwt": "...", "role": "..."}' $VAULT_ADDR/v1/auth/kubernetes/login`.
pub(crate) async fn kubernetes_login(
    client: &VaultClient,
    mount: &str,
    role: &str,
    jwt: &Jwt,
) -> Result<AuthInfo> {
    let path = join_path(&["auth", mount, "login"]);
    let body = json!({"role": role, "jwt": jwt.expose_secret()});
    login_request(client, "kubernetes", mount, Some(role), &path, &body).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use vault_ops_core::SecretString;

    #[test]
    fn debug_hides_the_jwt() {
        let auth =
            KubernetesAuth::new("app").with_jwt(SecretString::from("eyJhbGciOi.secret-jwt.sig"));
        let text = format!("{auth:?} {auth:#?}");
        assert!(!text.contains("secret-jwt"), "{text}");
        assert!(text.contains("Jwt(Jwt([REDACTED]))"), "{text}");
        assert_eq!(auth.mount(), "kubernetes");
        assert_eq!(
            KubernetesAuth::new("x").with_mount("/k8s/prod/").mount(),
            "k8s/prod"
        );
    }

    #[tokio::test]
    async fn reads_and_trims_the_file() {
        let dir = std::env::temp_dir().join(format!("vo-k8s-jwt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "  abc.def.ghi\n").unwrap();
        let auth = KubernetesAuth::new("app").with_token_file(&path);
        assert_eq!(
            auth.read_jwt().await.unwrap().expose_secret(),
            "abc.def.ghi"
        );

        std::fs::write(&path, "\n").unwrap();
        let e = auth.read_jwt().await.unwrap_err();
        assert!(
            matches!(&e, Error::TokenFile { path: p, .. } if p == &path),
            "{e}"
        );
        assert!(e.to_string().contains("is empty"), "{e}");

        let missing = dir.join("missing");
        let e = KubernetesAuth::new("app")
            .with_token_file(&missing)
            .read_jwt()
            .await
            .unwrap_err();
        match e {
            Error::TokenFile { path, source } => {
                assert_eq!(path, missing);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("unexpected {other}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
