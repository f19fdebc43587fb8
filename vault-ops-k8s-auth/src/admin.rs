//! Administration of a Kubernetes auth mount: its config and roles (the guide's
//! troubleshooting: "read the config", "list roles", "test a login").

use std::time::Duration;

use secrecy::ExposeSecret;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use vault_ops_core::api::sys::mounts::EnableAuth;
use vault_ops_core::http::join_path;
use vault_ops_core::response::null_default;
use vault_ops_core::{AuthInfo, Jwt, Request, VaultClient, VaultResponse};

use crate::error::Result as LoginResult;
use crate::kubernetes::kubernetes_login;
use crate::login::clean_mount;

/// `auth/<mount>/config` of a Kubernetes auth mount.
///
/// A write replaces the whole config (fields left at their default are reset), so change a read
/// config rather than building a new one when only one field should change. The
/// `token_reviewer_jwt` is never returned by Vault: a read sets
/// [`token_reviewer_jwt_set`](Self::token_reviewer_jwt_set) instead, and a write without one
/// clears it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KubernetesConfig {
    /// The Kubernetes API server, e.g. `https://kubernetes.default.svc:443`.
    pub kubernetes_host: String,
    /// The PEM CA certificate of the API server (empty: the pod's CA file, unless
    /// `disable_local_ca_jwt`).
    #[serde(default)]
    pub kubernetes_ca_cert: String,
    /// The JWT Vault authenticates its TokenReview calls with (empty: the login's own JWT, or the
    /// pod's token when Vault runs in Kubernetes). Write-only.
    #[serde(
        default,
        skip_deserializing,
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_opt"
    )]
    pub token_reviewer_jwt: Option<Jwt>,
    /// Whether a reviewer JWT is configured (read-only).
    #[serde(default, skip_serializing)]
    pub token_reviewer_jwt_set: bool,
    /// PEM public keys or certificates to verify JWT signatures with locally (none: only the
    /// TokenReview decides).
    #[serde(default, deserialize_with = "null_default")]
    pub pem_keys: Vec<String>,
    /// The expected `iss` claim (deprecated in Vault; ignored unless `disable_iss_validation` is
    /// false).
    #[serde(default)]
    pub issuer: String,
    /// Skip the issuer check (deprecated; Vault's default is `true`).
    #[serde(default = "yes")]
    pub disable_iss_validation: bool,
    /// Do not use the local CA and service-account JWT of a Vault that runs in a pod.
    #[serde(default)]
    pub disable_local_ca_jwt: bool,
}

fn yes() -> bool {
    true
}

fn expose_opt<S: Serializer>(v: &Option<Jwt>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(secret) => s.serialize_str(secret.expose_secret()),
        None => s.serialize_none(),
    }
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            kubernetes_host: String::new(),
            kubernetes_ca_cert: String::new(),
            token_reviewer_jwt: None,
            token_reviewer_jwt_set: false,
            pem_keys: Vec::new(),
            issuer: String::new(),
            disable_iss_validation: true,
            disable_local_ca_jwt: false,
        }
    }
}

impl KubernetesConfig {
    /// A config for this API server; everything else at Vault's defaults.
    pub fn new(kubernetes_host: impl Into<String>) -> Self {
        KubernetesConfig {
            kubernetes_host: kubernetes_host.into(),
            ..Default::default()
        }
    }

    /// Sets the API server's CA certificate (PEM).
    pub fn ca_cert(mut self, pem: impl Into<String>) -> Self {
        self.kubernetes_ca_cert = pem.into();
        self
    }

    /// Sets the JWT Vault uses for its TokenReview calls (a [`Jwt`], or a `SecretString` or
    /// `String` made into one).
    pub fn token_reviewer_jwt(mut self, jwt: impl Into<Jwt>) -> Self {
        self.token_reviewer_jwt = Some(jwt.into());
        self
    }

    /// Adds a PEM public key (or certificate) for local signature checks.
    pub fn pem_key(mut self, pem: impl Into<String>) -> Self {
        self.pem_keys.push(pem.into());
        self
    }

    /// Sets `disable_local_ca_jwt` (needed when Vault does not run in the cluster it checks).
    pub fn disable_local_ca_jwt(mut self, disable: bool) -> Self {
        self.disable_local_ca_jwt = disable;
        self
    }
}

/// A role of a Kubernetes auth mount (`auth/<mount>/role/<name>`).
///
/// [`write_role`](KubernetesAdmin::write_role) sends every field, so the stored role is exactly
/// this one. Durations are whole seconds; zero means "the mount's default".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KubernetesRole {
    /// Service account names that may log in (`*` for any).
    #[serde(default, deserialize_with = "null_default")]
    pub bound_service_account_names: Vec<String>,
    /// Namespaces that may log in (`*` for any).
    #[serde(default, deserialize_with = "null_default")]
    pub bound_service_account_namespaces: Vec<String>,
    /// A label selector for namespaces that may log in (instead of or besides the list).
    #[serde(default, deserialize_with = "null_default")]
    pub bound_service_account_namespace_selector: String,
    /// The audience the JWT must carry and the TokenReview is asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// What names the identity alias: `serviceaccount_uid` (default) or `serviceaccount_name`.
    #[serde(default = "default_alias_source")]
    pub alias_name_source: String,
    /// Policies of the tokens it issues.
    #[serde(default, deserialize_with = "null_default")]
    pub token_policies: Vec<String>,
    /// TTL of the tokens it issues.
    #[serde(default, with = "secs")]
    pub token_ttl: Duration,
    /// Maximum TTL of the tokens it issues (renewals stop there; a new login is needed).
    #[serde(default, with = "secs")]
    pub token_max_ttl: Duration,
    /// A hard maximum TTL set on the token itself.
    #[serde(default, with = "secs")]
    pub token_explicit_max_ttl: Duration,
    /// Makes the tokens periodic: renewable by this period without a maximum TTL.
    #[serde(default, with = "secs")]
    pub token_period: Duration,
    /// CIDR blocks the tokens may be used from.
    #[serde(default, deserialize_with = "null_default")]
    pub token_bound_cidrs: Vec<String>,
    /// Leave the `default` policy out.
    #[serde(default)]
    pub token_no_default_policy: bool,
    /// Uses per token, 0 for unlimited.
    #[serde(default)]
    pub token_num_uses: u64,
    /// `default`, `service`, `batch`, `default-service` or `default-batch`.
    #[serde(default = "default_token_type")]
    pub token_type: String,
    /// OpenBao: bind the token to the login's IP address.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub token_strictly_bind_ip: bool,
}

fn default_alias_source() -> String {
    "serviceaccount_uid".into()
}

fn default_token_type() -> String {
    "default".into()
}

impl Default for KubernetesRole {
    fn default() -> Self {
        KubernetesRole {
            bound_service_account_names: Vec::new(),
            bound_service_account_namespaces: Vec::new(),
            bound_service_account_namespace_selector: String::new(),
            audience: None,
            alias_name_source: default_alias_source(),
            token_policies: Vec::new(),
            token_ttl: Duration::ZERO,
            token_max_ttl: Duration::ZERO,
            token_explicit_max_ttl: Duration::ZERO,
            token_period: Duration::ZERO,
            token_bound_cidrs: Vec::new(),
            token_no_default_policy: false,
            token_num_uses: 0,
            token_type: default_token_type(),
            token_strictly_bind_ip: false,
        }
    }
}

fn strings<S: Into<String>>(v: impl IntoIterator<Item = S>) -> Vec<String> {
    v.into_iter().map(Into::into).collect()
}

impl KubernetesRole {
    /// A role for these service account names in these namespaces.
    pub fn new<A: Into<String>, B: Into<String>>(
        service_accounts: impl IntoIterator<Item = A>,
        namespaces: impl IntoIterator<Item = B>,
    ) -> Self {
        KubernetesRole {
            bound_service_account_names: strings(service_accounts),
            bound_service_account_namespaces: strings(namespaces),
            ..Default::default()
        }
    }

    /// Sets the token policies.
    pub fn token_policies<S: Into<String>>(
        mut self,
        policies: impl IntoIterator<Item = S>,
    ) -> Self {
        self.token_policies = strings(policies);
        self
    }

    /// Sets the token TTL.
    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = ttl;
        self
    }

    /// Sets the token maximum TTL.
    pub fn token_max_ttl(mut self, ttl: Duration) -> Self {
        self.token_max_ttl = ttl;
        self
    }

    /// Sets the token period (periodic tokens).
    pub fn token_period(mut self, period: Duration) -> Self {
        self.token_period = period;
        self
    }

    /// Sets the audience.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Sets the token type.
    pub fn token_type(mut self, token_type: impl Into<String>) -> Self {
        self.token_type = token_type.into();
        self
    }
}

/// Durations as whole seconds; reads accept numbers and Vault duration strings (`1h`).
mod secs {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Float(f64),
            Text(String),
        }
        match Option::<Raw>::deserialize(d)? {
            None => Ok(Duration::ZERO),
            Some(Raw::Int(n)) => Ok(Duration::from_secs(n)),
            Some(Raw::Float(f)) => Duration::try_from_secs_f64(f)
                .map_err(|_| serde::de::Error::custom(format!("invalid duration {f}"))),
            Some(Raw::Text(t)) => vault_ops_core::config::parse_duration(&t)
                .ok_or_else(|| serde::de::Error::custom(format!("invalid duration {t:?}"))),
        }
    }
}

/// Admin calls on a Kubernetes auth mount. Get it with
/// [`KubernetesAuthExt::kubernetes_auth`] or [`KubernetesAdmin::new`].
///
/// ```no_run
/// # async fn run() -> Result<(), vault_ops_core::Error> {
/// use std::time::Duration;
/// use vault_ops_core::VaultClient;
/// use vault_ops_k8s_auth::{KubernetesAuthExt, KubernetesConfig, KubernetesRole};
///
/// let client = VaultClient::from_env()?;
/// let k8s = client.kubernetes_auth("kubernetes");
/// k8s.enable().await?;
/// k8s.write_config(
///     &KubernetesConfig::new("https://kubernetes.default.svc:443")
///         .ca_cert(std::fs::read_to_string("ca.crt").unwrap_or_default()),
/// )
/// .await?;
/// k8s.write_role(
///     "app",
///     &KubernetesRole::new(["app-sa"], ["prod"])
///         .token_policies(["app-read"])
///         .token_ttl(Duration::from_secs(3600)),
/// )
/// .await?;
/// println!("{:?}", k8s.list_roles().await?);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct KubernetesAdmin<'a> {
    client: &'a VaultClient,
    mount: String,
}

/// Adds [`kubernetes_auth`](KubernetesAuthExt::kubernetes_auth) to [`VaultClient`].
pub trait KubernetesAuthExt {
    /// Admin calls on the Kubernetes auth method mounted at `auth/<mount>`.
    fn kubernetes_auth(&self, mount: &str) -> KubernetesAdmin<'_>;
}

impl KubernetesAuthExt for VaultClient {
    fn kubernetes_auth(&self, mount: &str) -> KubernetesAdmin<'_> {
        KubernetesAdmin::new(self, mount)
    }
}

impl<'a> KubernetesAdmin<'a> {
    /// Admin calls on `auth/<mount>`.
    pub fn new(client: &'a VaultClient, mount: &str) -> Self {
        KubernetesAdmin {
            client,
            mount: clean_mount(mount),
        }
    }

    /// The mount path below `auth/`.
    pub fn mount(&self) -> &str {
        &self.mount
    }

    fn path(&self, rest: &[&str]) -> String {
        let mut parts = vec!["auth", self.mount.as_str()];
        parts.extend_from_slice(rest);
        join_path(&parts)
    }

    /// `vault auth enable -path=<mount> kubernetes`.
    pub async fn enable(&self) -> vault_ops_core::Result<()> {
        self.client
            .sys()
            .enable_auth(&self.mount, &EnableAuth::new("kubernetes"))
            .await
    }

    /// `vault write auth/<mount>/config` (replaces the whole config).
    pub async fn write_config(&self, config: &KubernetesConfig) -> vault_ops_core::Result<()> {
        self.client
            .execute(Request::post(self.path(&["config"])).json(config)?)
            .await?;
        Ok(())
    }

    /// `vault read auth/<mount>/config`; `None` when the mount has no config yet or does not
    /// exist.
    pub async fn read_config_opt(&self) -> vault_ops_core::Result<Option<KubernetesConfig>> {
        match self.read_config().await {
            Ok(c) => Ok(Some(c)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `vault read auth/<mount>/config`. A missing mount or config is an error (404).
    pub async fn read_config(&self) -> vault_ops_core::Result<KubernetesConfig> {
        read_data(self.client, self.path(&["config"])).await
    }

    /// `vault write auth/<mount>/role/<name>` with every field of `role`.
    pub async fn write_role(
        &self,
        name: &str,
        role: &KubernetesRole,
    ) -> vault_ops_core::Result<()> {
        check_name(name)?;
        self.client
            .execute(Request::post(self.path(&["role", name])).json(role)?)
            .await?;
        Ok(())
    }

    /// `vault read auth/<mount>/role/<name>`; `None` when there is no such role.
    pub async fn read_role_opt(
        &self,
        name: &str,
    ) -> vault_ops_core::Result<Option<KubernetesRole>> {
        match self.read_role(name).await {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `vault read auth/<mount>/role/<name>`. A missing role is an error (404).
    pub async fn read_role(&self, name: &str) -> vault_ops_core::Result<KubernetesRole> {
        check_name(name)?;
        read_data(self.client, self.path(&["role", name])).await
    }

    /// `vault list auth/<mount>/role`: the role names (empty when there are none).
    pub async fn list_roles(&self) -> vault_ops_core::Result<Vec<String>> {
        self.client.generic().list(&self.path(&["role"])).await
    }

    /// `vault delete auth/<mount>/role/<name>` (no error when it does not exist).
    pub async fn delete_role(&self, name: &str) -> vault_ops_core::Result<()> {
        check_name(name)?;
        self.client
            .execute(Request::delete(self.path(&["role", name])))
            .await?;
        Ok(())
    }

    /// Tests a login as `role` with this JWT (the guide's `curl .../auth/kubernetes/login`).
    /// Does not change the client's token.
    pub async fn login(&self, role: &str, jwt: &Jwt) -> LoginResult<AuthInfo> {
        kubernetes_login(self.client, &self.mount, role, jwt).await
    }
}

/// GETs `path` and decodes its `data`; an empty reply or `data: null` is an error that keeps
/// the status.
async fn read_data<T: serde::de::DeserializeOwned>(
    client: &VaultClient,
    path: String,
) -> vault_ops_core::Result<T> {
    let resp = client.execute(Request::get(path)).await?;
    resp.json_opt::<VaultResponse<Option<T>>>()?
        .and_then(|r| r.data)
        .ok_or_else(|| resp.decode_error("the reply has no data"))
}

fn check_name(name: &str) -> vault_ops_core::Result<()> {
    if name.is_empty() || name.contains('/') {
        return Err(vault_ops_core::Error::InvalidInput(format!(
            "the role name {name:?} is empty or has a '/'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_round_trips_vault_json() {
        let json = serde_json::json!({
            "alias_name_source": "serviceaccount_uid",
            "bound_service_account_names": ["sa1"],
            "bound_service_account_namespace_selector": "",
            "bound_service_account_namespaces": ["ns1"],
            "token_bound_cidrs": [],
            "token_explicit_max_ttl": 0,
            "token_max_ttl": 0,
            "token_no_default_policy": false,
            "token_num_uses": 0,
            "token_period": 0,
            "token_policies": ["app-read"],
            "token_strictly_bind_ip": false,
            "token_ttl": 3600,
            "token_type": "default"
        });
        let role: KubernetesRole = serde_json::from_value(json).unwrap();
        assert_eq!(role.token_ttl, Duration::from_secs(3600));
        assert_eq!(role.audience, None);
        assert_eq!(
            role,
            KubernetesRole::new(["sa1"], ["ns1"])
                .token_policies(["app-read"])
                .token_ttl(Duration::from_secs(3600))
        );
        let out = serde_json::to_value(&role).unwrap();
        assert_eq!(out["token_ttl"], 3600);
        assert!(out.get("audience").is_none());
        assert!(out.get("token_strictly_bind_ip").is_none());
        let r: KubernetesRole =
            serde_json::from_value(serde_json::json!({"token_ttl": "1h", "token_max_ttl": null}))
                .unwrap();
        assert_eq!(r.token_ttl, Duration::from_secs(3600));
        assert_eq!(r.token_max_ttl, Duration::ZERO);
        assert!(
            serde_json::from_value::<KubernetesRole>(serde_json::json!({"token_ttl": "soon"}))
                .is_err()
        );
    }

    #[test]
    fn config_never_shows_or_reads_the_reviewer_jwt() {
        let cfg = KubernetesConfig::new("https://k8s:443")
            .token_reviewer_jwt(vault_ops_core::SecretString::from("reviewer-jwt-secret"));
        assert!(!format!("{cfg:?}").contains("reviewer-jwt-secret"));
        let out = serde_json::to_value(&cfg).unwrap();
        assert_eq!(out["token_reviewer_jwt"], "reviewer-jwt-secret");
        assert!(out.get("token_reviewer_jwt_set").is_none());
        let back: KubernetesConfig = serde_json::from_value(serde_json::json!({
            "kubernetes_host": "h", "token_reviewer_jwt": "x", "token_reviewer_jwt_set": true,
            "pem_keys": null
        }))
        .unwrap();
        assert!(back.token_reviewer_jwt.is_none());
        assert!(back.token_reviewer_jwt_set);
        assert!(back.disable_iss_validation);
        let plain = serde_json::to_value(KubernetesConfig::new("h")).unwrap();
        assert!(plain.get("token_reviewer_jwt").is_none());
    }
}
