//! TLS material, loaded and checked when the client is built: the CA certificates to trust
//! (files, directories, PEM text), the client identity, and the resolver that sends a request
//! for the TLS server name to the configured host. A file that cannot be read or holds no
//! certificate is a [`ConfigError`], never skipped.

use std::net::SocketAddr;
use std::path::Path;

use url::Url;

use crate::config::{CaSource, ClientBuilder};
use crate::error::{error_chain, ConfigError};

/// What the transport needs for TLS, read and parsed from the builder's settings.
pub(crate) struct TlsMaterial {
    /// CA certificates trusted in addition to the built-in roots.
    pub(crate) roots: Vec<reqwest::Certificate>,
    /// The client certificate and key, for TLS client authentication.
    pub(crate) identity: Option<reqwest::Identity>,
    pub(crate) skip_verify: bool,
    /// Connect to the configured host, but verify (and send as SNI) this name.
    pub(crate) server_name: Option<ServerNameResolver>,
}

impl TlsMaterial {
    /// Reads the CA certificates and the client identity `b` names; `base` is the (only)
    /// address a TLS server name applies to.
    pub(crate) fn load(b: &ClientBuilder, base: &Url) -> Result<TlsMaterial, ConfigError> {
        let mut roots = Vec::new();
        for ca in &b.ca {
            match ca {
                CaSource::File(p) => {
                    let pem = read_file("CA certificate", p)?;
                    add_ca_pem(&mut roots, &pem, &p.display().to_string())?;
                }
                CaSource::Dir(dir) => add_ca_dir(&mut roots, dir)?,
                CaSource::Pem(pem) => add_ca_pem(&mut roots, pem, "PEM text")?,
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
                (_, _, Some(p)) => {
                    Some(secrecy::ExposeSecret::expose_secret(p).as_bytes().to_vec())
                }
                _ => None,
            };
        let identity = identity_pem.map(|pem| make_identity(&pem)).transpose()?;
        let server_name = b.tls_server_name.as_ref().map(|name| ServerNameResolver {
            server_name: name.clone(),
            host: base
                .host_str()
                .unwrap_or_default()
                .trim_matches(['[', ']'])
                .to_string(),
            port: base.port_or_known_default().unwrap_or(8200),
        });
        Ok(TlsMaterial {
            roots,
            identity,
            skip_verify: b.skip_verify,
            server_name,
        })
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
    roots: &mut Vec<reqwest::Certificate>,
    pem: &[u8],
    origin: &str,
) -> Result<(), ConfigError> {
    let certs = reqwest::Certificate::from_pem_bundle(pem)
        .map_err(|e| tls_err(&format!("CA certificate ({origin})"), e))?;
    if certs.is_empty() {
        return Err(tls_err(
            &format!("CA certificate ({origin})"),
            "no PEM certificate found",
        ));
    }
    roots.extend(certs);
    Ok(())
}

/// Every PEM certificate in the files of `dir` (files that are not PEM are skipped; none at
/// all is an error).
fn add_ca_dir(roots: &mut Vec<reqwest::Certificate>, dir: &Path) -> Result<(), ConfigError> {
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
            roots.extend(certs);
        }
    }
    if found == 0 {
        return Err(tls_err(
            &format!("CA certificate directory ({})", dir.display()),
            "no PEM certificate found",
        ));
    }
    Ok(())
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
#[derive(Clone)]
pub(crate) struct ServerNameResolver {
    pub(crate) server_name: String,
    pub(crate) host: String,
    pub(crate) port: u16,
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
