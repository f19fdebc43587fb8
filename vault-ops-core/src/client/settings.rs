//! Validated settings: what a [`ClientBuilder`] holds, checked once and turned into plain data
//! (parsed addresses, header values, limits, loaded TLS material). Every problem found is
//! collected, so one [`ConfigError`] names them all. Nothing here builds the transport.

use std::time::Duration;

use reqwest::header::HeaderValue;
use url::Url;

use super::tls::TlsMaterial;
use crate::config::{
    default_call_limit, ClientBuilder, RetryPolicy, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT,
};
use crate::error::ConfigError;
use crate::secret::VaultToken;

/// A client's settings, checked.
pub(crate) struct Settings {
    /// Where requests go: the parsed addresses (`scheme://host:port/v1/`, the primary
    /// first), with the TLS server name as host when one is set.
    pub(crate) request_bases: Vec<Url>,
    /// The addresses as shown to users, in the same order.
    pub(crate) addresses: Vec<String>,
    pub(crate) tls: TlsMaterial,
    pub(crate) read_your_writes: bool,
    pub(crate) token: Option<VaultToken>,
    /// The namespace as a header value, and as text.
    pub(crate) namespace: Option<(HeaderValue, String)>,
    pub(crate) retry: RetryPolicy,
    pub(crate) timeout: Duration,
    pub(crate) max_body: usize,
    pub(crate) max_call: Duration,
}

impl TryFrom<ClientBuilder> for Settings {
    type Error = ConfigError;

    fn try_from(mut b: ClientBuilder) -> Result<Settings, ConfigError> {
        let mut errors = std::mem::take(&mut b.errors);
        let bases = match b.parsed_addresses() {
            Ok(urls) => Some(urls),
            Err(mut errs) => {
                errors.append(&mut errs);
                None
            }
        };
        if b.tls_server_name.is_some() && bases.as_ref().is_some_and(|u| u.len() > 1) {
            errors.push(ConfigError::InvalidValue {
                name: "TLS server name".into(),
                reason: "it cannot be combined with several addresses: list addresses whose \
                         names the certificates cover instead"
                    .into(),
            });
        }
        let timeout = b.timeout.unwrap_or(DEFAULT_TIMEOUT);
        if timeout.is_zero() {
            errors.push(positive("timeout"));
        }
        let max_body = b.max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE_BYTES);
        if max_body == 0 {
            errors.push(positive("maximum response size"));
        }
        let max_call = b
            .max_call_duration
            .unwrap_or_else(|| default_call_limit(timeout, &b.retry));
        if max_call.is_zero() {
            errors.push(positive("maximum call duration"));
        }
        if let Some(t) = b.token_ref() {
            if HeaderValue::from_str(t).is_err() {
                errors.push(ConfigError::InvalidValue {
                    name: "token".into(),
                    reason: "contains characters that cannot be sent in a header".into(),
                });
            }
        }
        let namespace = match b.namespace.take() {
            Some(ns) => match HeaderValue::from_str(&ns) {
                Ok(v) => Some((v, ns)),
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
        let bases = bases.filter(|b| !b.is_empty());
        // With a TLS server name, requests go to that name (resolved to the configured host).
        let request_bases: Option<Vec<Url>> = match (&bases, &b.tls_server_name) {
            (Some(bases), Some(name)) => {
                match bases.iter().map(|base| rewrite_host(base, name)).collect() {
                    Ok(urls) => Some(urls),
                    Err(e) => {
                        errors.push(e);
                        None
                    }
                }
            }
            (bases, _) => bases.clone(),
        };
        let addresses: Option<Vec<String>> = bases.as_ref().map(|urls| {
            urls.iter()
                .map(|u| u.as_str().trim_end_matches("/v1/").to_string())
                .collect()
        });
        let tls = match (&bases, &request_bases, &addresses) {
            (Some(bases), Some(_), Some(addresses)) => {
                match check_tls_stack(bases, addresses)
                    .and_then(|()| TlsMaterial::load(&b, &bases[0]))
                {
                    Ok(tls) => Some(tls),
                    Err(e) => {
                        errors.push(e);
                        None
                    }
                }
            }
            _ => None,
        };
        match (bases, request_bases, addresses, tls) {
            (Some(_), Some(request_bases), Some(addresses), Some(tls)) if errors.is_empty() => {
                Ok(Settings {
                    request_bases,
                    addresses,
                    tls,
                    read_your_writes: b.read_your_writes,
                    token: b.token,
                    namespace,
                    retry: b.retry,
                    timeout,
                    max_body,
                    max_call,
                })
            }
            _ if errors.len() == 1 => Err(errors.remove(0)),
            // No address at all (no error recorded for it): say so.
            _ if errors.is_empty() => Err(ConfigError::InvalidAddress {
                address: String::new(),
                reason: "no address given".into(),
            }),
            _ => Err(ConfigError::Many(errors)),
        }
    }
}

fn positive(name: &str) -> ConfigError {
    ConfigError::InvalidValue {
        name: name.into(),
        reason: "must be more than zero".into(),
    }
}

/// An `https` address needs a TLS stack compiled in.
fn check_tls_stack(bases: &[Url], addresses: &[String]) -> Result<(), ConfigError> {
    for (base, address) in bases.iter().zip(addresses) {
        if base.scheme() == "https" && !cfg!(any(feature = "rustls", feature = "native-tls")) {
            return Err(ConfigError::InvalidAddress {
                address: address.clone(),
                reason: "https needs a TLS stack: enable the `rustls` or `native-tls` feature"
                    .into(),
            });
        }
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
