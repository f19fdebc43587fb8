//! The transport: the HTTP client (connection pool, TLS, redirect policy, user agent) built
//! from validated [`Settings`]. It reads the settings and nothing else.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderValue;

use super::redirect::{origin, redirect_policy};
use super::settings::Settings;
use crate::error::{error_chain, ConfigError};

/// Builds the HTTP client for `settings`. The settings were checked already, so this fails
/// only when the TLS stack refuses the material ([`ConfigError::Http`]).
pub(crate) fn build(settings: &Settings) -> Result<reqwest::Client, ConfigError> {
    let allowed = settings.request_bases.iter().map(origin).collect();
    // No client-wide `timeout`: `execute` times each attempt itself, and
    // `execute_streaming` sets one per request.
    let mut http = reqwest::Client::builder()
        .connect_timeout(settings.timeout.min(Duration::from_secs(30)))
        .pool_idle_timeout(Duration::from_secs(90))
        // A static value: reqwest clones its default headers into every request, and
        // cloning a `from_str` value bumps one reference count shared by every worker.
        .user_agent(HeaderValue::from_static(concat!(
            "vault-ops/",
            env!("CARGO_PKG_VERSION")
        )))
        .redirect(redirect_policy(allowed));
    #[cfg(feature = "native-tls")]
    {
        http = http.use_native_tls();
    }
    #[cfg(all(feature = "rustls", not(feature = "native-tls")))]
    {
        http = http.use_rustls_tls();
    }
    let tls = &settings.tls;
    for root in &tls.roots {
        http = http.add_root_certificate(root.clone());
    }
    if let Some(identity) = &tls.identity {
        http = http.identity(identity.clone());
    }
    if tls.skip_verify {
        http = http.danger_accept_invalid_certs(true);
    }
    if let Some(resolver) = &tls.server_name {
        // Connect to the configured host, but use the name for SNI and certificate checks.
        http = http.dns_resolver(Arc::new(resolver.clone()));
    }
    http.build().map_err(|e| ConfigError::Http(error_chain(&e)))
}
