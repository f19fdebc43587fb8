//! [`VaultClient`]: cheap to clone, every clone shares the connection pool and the token.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::header::HeaderValue;
use secrecy::SecretString;
use url::Url;

use crate::config::{CaSource, ClientBuilder, RetryPolicy, DEFAULT_TIMEOUT};
use crate::error::{ConfigError, Result};
use crate::http::error_chain;

/// An async client for Vault and OpenBao.
///
/// Cloning is cheap: clones share the connection pool and the token cell, so a token swapped in
/// with [`set_token`](Self::set_token) (for example by a login lifecycle) is used by every clone
/// from its next request on.
///
/// ```no_run
/// # async fn run() -> Result<(), vault_ops_core::Error> {
/// use vault_ops_core::VaultClient;
///
/// let client = VaultClient::from_env()?;
/// let status = client.connect().await?;
/// println!("{status}");
/// let secret: serde_json::Value = client.kv2("secret").get("database/main-db").await?.data;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct VaultClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    address: String,
    token: RwLock<Option<SecretString>>,
    namespace: Option<HeaderValue>,
    namespace_text: Option<String>,
    retry: RetryPolicy,
    timeout: Duration,
}

impl std::fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultClient")
            .field("address", &self.inner.address)
            .field("namespace", &self.inner.namespace_text)
            .field(
                "token",
                &if self.has_token() {
                    "[REDACTED]"
                } else {
                    "(none)"
                },
            )
            .field("retry", &self.inner.retry)
            .field("timeout", &self.inner.timeout)
            .finish()
    }
}

impl VaultClient {
    /// A client for this address with every default: no token (set one with
    /// [`set_token`](Self::set_token) or use the [`builder`](Self::builder)).
    ///
    /// ```no_run
    /// let client = vault_ops_core::VaultClient::new("https://vault.vault.svc:8200")?;
    /// # Ok::<(), vault_ops_core::ConfigError>(())
    /// ```
    pub fn new(address: impl Into<String>) -> Result<Self, ConfigError> {
        ClientBuilder::new().address(address).build()
    }

    /// A builder for every setting.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    /// A client configured from `BAO_*` / `VAULT_*` environment variables; see
    /// [`config::env`](crate::config::env) for the names.
    pub fn from_env() -> Result<Self, ConfigError> {
        ClientBuilder::from_env().build()
    }

    pub(crate) fn from_builder(b: ClientBuilder) -> Result<Self, ConfigError> {
        let mut b = b;
        let mut errors = std::mem::take(&mut b.errors);
        let base = match b.parsed_address() {
            Ok(u) => Some(u),
            Err(e) => {
                errors.push(e);
                None
            }
        };
        let timeout = b.timeout.unwrap_or(DEFAULT_TIMEOUT);
        if timeout.is_zero() {
            errors.push(ConfigError::InvalidValue {
                name: "timeout".into(),
                reason: "must be more than zero".into(),
            });
        }
        if let Some(t) = b.token_ref() {
            if HeaderValue::from_str(t).is_err() {
                errors.push(ConfigError::InvalidValue {
                    name: "token".into(),
                    reason: "contains characters that cannot be sent in a header".into(),
                });
            }
        }
        let namespace = match &b.namespace {
            Some(ns) => match HeaderValue::from_str(ns) {
                Ok(v) => Some(v),
                Err(_) => {
                    errors.push(ConfigError::InvalidValue {
                        name: "namespace".into(),
                        reason: format!("{ns:?} cannot be sent in a header"),
                    });
                    None
                }
            },
            None => None,
        };
        let http = match &base {
            Some(base) => match build_http(&b, base, timeout) {
                Ok(h) => Some(h),
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
            None => None,
        };
        let address = base
            .as_ref()
            .map(|u| u.as_str().trim_end_matches("/v1/").to_string());
        let base = match (base, &b.tls_server_name) {
            (Some(base), Some(name)) => match rewrite_host(&base, name) {
                Ok(u) => Some(u),
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
            (base, _) => base,
        };
        match (base, http, address) {
            (Some(base), Some(http), Some(address)) if errors.is_empty() => Ok(VaultClient {
                inner: Arc::new(Inner {
                    http,
                    base,
                    address,
                    token: RwLock::new(b.token),
                    namespace,
                    namespace_text: b.namespace,
                    retry: b.retry,
                    timeout,
                }),
            }),
            _ if errors.len() == 1 => Err(errors.remove(0)),
            _ => Err(ConfigError::Many(errors)),
        }
    }

    /// The server address, e.g. `http://127.0.0.1:8200`.
    pub fn address(&self) -> &str {
        &self.inner.address
    }

    /// The namespace, when one is set.
    pub fn namespace(&self) -> Option<&str> {
        self.inner.namespace_text.as_deref()
    }

    /// The current token, if any (a clone of the secret).
    pub fn token(&self) -> Option<SecretString> {
        self.inner
            .token
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// `true` when a token is set.
    pub fn has_token(&self) -> bool {
        self.inner
            .token
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }

    /// Replaces the token for this client and every clone of it.
    pub fn set_token(&self, token: SecretString) {
        *self
            .inner
            .token
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(token);
    }

    /// Removes the token (requests that need one then fail with
    /// [`Error::MissingToken`](crate::Error::MissingToken)).
    pub fn clear_token(&self) {
        *self
            .inner
            .token
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// A new client with the same settings and connection pool but its own token cell
    /// (for acting as another identity without touching this client's token).
    pub fn with_token(&self, token: SecretString) -> VaultClient {
        VaultClient {
            inner: Arc::new(Inner {
                http: self.inner.http.clone(),
                base: self.inner.base.clone(),
                address: self.inner.address.clone(),
                token: RwLock::new(Some(token)),
                namespace: self.inner.namespace.clone(),
                namespace_text: self.inner.namespace_text.clone(),
                retry: self.inner.retry.clone(),
                timeout: self.inner.timeout,
            }),
        }
    }

    /// A new client with the same settings and connection pool, its own copy of the current
    /// token, that sends `namespace` as `X-Vault-Namespace`.
    pub fn with_namespace(&self, namespace: impl Into<String>) -> Result<VaultClient, ConfigError> {
        let ns: String = namespace.into().trim_matches('/').to_string();
        let header = if ns.is_empty() {
            None
        } else {
            Some(
                HeaderValue::from_str(&ns).map_err(|_| ConfigError::InvalidValue {
                    name: "namespace".into(),
                    reason: format!("{ns:?} cannot be sent in a header"),
                })?,
            )
        };
        Ok(VaultClient {
            inner: Arc::new(Inner {
                http: self.inner.http.clone(),
                base: self.inner.base.clone(),
                address: self.inner.address.clone(),
                token: RwLock::new(self.token()),
                namespace: header,
                namespace_text: (!ns.is_empty()).then_some(ns),
                retry: self.inner.retry.clone(),
                timeout: self.inner.timeout,
            }),
        })
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    pub(crate) fn namespace_header(&self) -> Option<&HeaderValue> {
        self.inner.namespace.as_ref()
    }

    /// The URL of `path` below `/v1/`. A path that would leave the configured server or
    /// `/v1/` (an absolute URL, `\\host`, `%2e%2e`) is refused, so the token goes nowhere else.
    pub(crate) fn url_for(&self, path: &str) -> Result<Url> {
        let base = &self.inner.base;
        // "./" keeps a first segment with a colon (`a:b`) relative instead of a URL scheme.
        let url = base.join(&format!("./{path}")).map_err(|e| {
            crate::Error::InvalidInput(format!("cannot make a URL of the path {path:?}: {e}"))
        })?;
        if url.scheme() != base.scheme()
            || url.host() != base.host()
            || url.port_or_known_default() != base.port_or_known_default()
            || !url.path().starts_with(base.path())
        {
            return Err(crate::Error::InvalidInput(format!(
                "the path {path:?} does not stay below /v1/ on the configured server"
            )));
        }
        Ok(url)
    }
}

fn read_file(what: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|source| ConfigError::File {
        what: what.into(),
        path: path.display().to_string(),
        source,
    })
}

fn tls_err(what: &str, e: impl std::fmt::Display) -> ConfigError {
    ConfigError::Tls {
        what: what.into(),
        reason: e.to_string(),
    }
}

fn add_ca_pem(
    mut http: reqwest::ClientBuilder,
    pem: &[u8],
    origin: &str,
) -> Result<reqwest::ClientBuilder, ConfigError> {
    let certs = reqwest::Certificate::from_pem_bundle(pem)
        .map_err(|e| tls_err(&format!("CA certificate ({origin})"), e))?;
    if certs.is_empty() {
        return Err(tls_err(
            &format!("CA certificate ({origin})"),
            "no PEM certificate found",
        ));
    }
    for c in certs {
        http = http.add_root_certificate(c);
    }
    Ok(http)
}

fn build_http(
    b: &ClientBuilder,
    base: &Url,
    timeout: Duration,
) -> Result<reqwest::Client, ConfigError> {
    let https = base.scheme() == "https";
    if https && !cfg!(any(feature = "rustls", feature = "native-tls")) {
        return Err(ConfigError::InvalidAddress {
            address: base.to_string(),
            reason: "https needs a TLS stack: enable the `rustls` or `native-tls` feature".into(),
        });
    }
    let mut http = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(30)))
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("vault-ops/", env!("CARGO_PKG_VERSION")))
        .redirect(redirect_policy());
    #[cfg(feature = "native-tls")]
    {
        http = http.use_native_tls();
    }
    #[cfg(all(feature = "rustls", not(feature = "native-tls")))]
    {
        http = http.use_rustls_tls();
    }
    for ca in &b.ca {
        match ca {
            CaSource::File(p) => {
                let pem = read_file("CA certificate", p)?;
                http = add_ca_pem(http, &pem, &p.display().to_string())?;
            }
            CaSource::Dir(dir) => {
                let entries = std::fs::read_dir(dir).map_err(|source| ConfigError::File {
                    what: "CA certificate directory".into(),
                    path: dir.display().to_string(),
                    source,
                })?;
                let mut found = 0;
                let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
                paths.sort();
                for p in paths.into_iter().filter(|p| p.is_file()) {
                    let pem = read_file("CA certificate", &p)?;
                    if let Ok(certs) = reqwest::Certificate::from_pem_bundle(&pem) {
                        found += certs.len();
                        for c in certs {
                            http = http.add_root_certificate(c);
                        }
                    }
                }
                if found == 0 {
                    return Err(tls_err(
                        &format!("CA certificate directory ({})", dir.display()),
                        "no PEM certificate found",
                    ));
                }
            }
            CaSource::Pem(pem) => http = add_ca_pem(http, pem, "PEM text")?,
        }
    }
    let identity_pem: Option<Vec<u8>> =
        match (&b.client_cert, &b.client_key, &b.client_identity_pem) {
            (Some(c), Some(k), _) => {
                let mut pem = read_file("client certificate", c)?;
                pem.push(b'\n');
                pem.extend(read_file("client key", k)?);
                Some(pem)
            }
            (_, _, Some(p)) => Some(secrecy::ExposeSecret::expose_secret(p).as_bytes().to_vec()),
            _ => None,
        };
    if let Some(pem) = identity_pem {
        http = http.identity(make_identity(&pem)?);
    }
    if b.skip_verify {
        http = http.danger_accept_invalid_certs(true);
    }
    if let Some(name) = &b.tls_server_name {
        // Connect to the configured host, but use `name` for SNI and certificate checks.
        let host = base
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_string();
        let port = base.port_or_known_default().unwrap_or(8200);
        http = http.dns_resolver(Arc::new(ServerNameResolver {
            server_name: name.clone(),
            host,
            port,
        }));
    }
    http.build().map_err(|e| ConfigError::Http(error_chain(&e)))
}

#[cfg(any(feature = "rustls", feature = "native-tls"))]
fn make_identity(pem: &[u8]) -> Result<reqwest::Identity, ConfigError> {
    #[cfg(feature = "native-tls")]
    {
        let text = String::from_utf8_lossy(pem);
        let key_start = text
            .find("-----BEGIN")
            .and_then(|_| text.find("PRIVATE KEY-----"))
            .and_then(|i| text[..i].rfind("-----BEGIN"))
            .ok_or_else(|| tls_err("client key", "no PEM private key found"))?;
        let (certs, key) = text.split_at(key_start);
        reqwest::Identity::from_pkcs8_pem(certs.as_bytes(), key.as_bytes())
            .map_err(|e| tls_err("client certificate", error_chain(&e)))
    }
    #[cfg(not(feature = "native-tls"))]
    {
        let id = reqwest::Identity::from_pem(pem)
            .map_err(|e| tls_err("client certificate", error_chain(&e)))?;
        // rustls checks the key only when the TLS config is built: do that now, so a bad key
        // is a TLS error naming the cause rather than an opaque "builder error" later.
        reqwest::Client::builder()
            .use_rustls_tls()
            .identity(id.clone())
            .build()
            .map_err(|e| tls_err("client certificate or key", error_chain(&e)))?;
        Ok(id)
    }
}

#[cfg(not(any(feature = "rustls", feature = "native-tls")))]
fn make_identity(_pem: &[u8]) -> Result<reqwest::Identity, ConfigError> {
    Err(tls_err("client certificate", "no TLS stack is enabled"))
}

/// Resolves the TLS server name to the configured host, so a request to
/// `https://<server name>/` reaches the configured address.
struct ServerNameResolver {
    server_name: String,
    host: String,
    port: u16,
}

impl reqwest::dns::Resolve for ServerNameResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let target = if name.as_str() == self.server_name {
            self.host.clone()
        } else {
            name.as_str().to_string()
        };
        let port = self.port;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.as_str(), port))
                .await?
                .collect();
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        match check_redirect(attempt.previous(), attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(why) => attempt.error(why),
        }
    })
}

/// Whether a redirect to `next` may be followed, given the URLs visited so far (the first is
/// the request's own): at most one redirect (a standby pointing at the active node), and
/// never from https to anything else.
fn check_redirect(previous: &[Url], next: &Url) -> Result<(), &'static str> {
    if previous.len() > 1 {
        return Err("Vault redirected more than once");
    }
    let from_https = previous.last().is_some_and(|u| u.scheme() == "https");
    if from_https && next.scheme() != "https" {
        return Err("refusing a redirect from https to http");
    }
    Ok(())
}

fn rewrite_host(base: &Url, name: &str) -> Result<Url, ConfigError> {
    let mut u = base.clone();
    u.set_host(Some(name))
        .map_err(|e| ConfigError::InvalidValue {
            name: "TLS server name".into(),
            reason: format!("{name:?} is not a host name: {e}"),
        })?;
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn redirects() {
        let https = u("https://vault-0:8200/v1/secret/data/a");
        let http = u("http://vault-0:8200/v1/secret/data/a");
        assert_eq!(
            check_redirect(
                std::slice::from_ref(&https),
                &u("https://vault-1:8200/v1/x")
            ),
            Ok(())
        );
        assert_eq!(
            check_redirect(std::slice::from_ref(&http), &u("http://vault-1:8200/v1/x")),
            Ok(())
        );
        assert_eq!(
            check_redirect(std::slice::from_ref(&http), &u("https://vault-1:8200/v1/x")),
            Ok(())
        );
        assert_eq!(
            check_redirect(std::slice::from_ref(&https), &u("http://vault-1:8200/v1/x")),
            Err("refusing a redirect from https to http")
        );
        assert_eq!(
            check_redirect(&[http.clone(), https], &u("https://vault-2:8200/v1/x")),
            Err("Vault redirected more than once")
        );
    }

    #[test]
    fn urls_stay_below_v1() {
        let c = VaultClient::new("http://127.0.0.1:8200").unwrap_or_else(|e| panic!("{e}"));
        let ok = |p: &str| c.url_for(p).map(|u| u.to_string());
        assert_eq!(
            ok("sys/health").ok().as_deref(),
            Some("http://127.0.0.1:8200/v1/sys/health")
        );
        assert_eq!(
            ok("kv:1/data/a").ok().as_deref(),
            Some("http://127.0.0.1:8200/v1/kv:1/data/a")
        );
        for hostile in [
            "http://evil.example/v1/x",
            "//evil.example/x",
            "\\\\evil.example\\x",
            "%2e%2e/x",
        ] {
            if let Ok(url) = c.url_for(hostile) {
                assert_eq!(url.host_str(), Some("127.0.0.1"), "{hostile}");
                assert!(url.path().starts_with("/v1/"), "{hostile} -> {url}");
            }
        }
        assert!(c.url_for("%2e%2e/sys/seal").is_err());
        assert!(c.url_for("a/%2E%2e/%2e%2e/x").is_err());
    }
}
