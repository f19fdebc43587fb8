//! Client configuration: the builder and the environment variables it reads.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use secrecy::ExposeSecret;
use url::Url;

use crate::error::ConfigError;
use crate::secret::{PrivateKey, VaultToken};

/// Environment variable names read by [`ClientBuilder::from_env`], without their prefix.
///
/// Each is looked up as `BAO_<NAME>` first, then `VAULT_<NAME>`.
pub mod env {
    /// The server address, e.g. `https://vault.vault.svc:8200`.
    pub const ADDR: &str = "ADDR";
    /// The token. When unset, `~/.vault-token` is read.
    pub const TOKEN: &str = "TOKEN";
    /// The namespace sent as `X-Vault-Namespace`.
    pub const NAMESPACE: &str = "NAMESPACE";
    /// A PEM file with CA certificates to trust.
    pub const CACERT: &str = "CACERT";
    /// A directory of PEM files with CA certificates to trust.
    pub const CAPATH: &str = "CAPATH";
    /// A PEM file with the client certificate (for TLS client auth).
    pub const CLIENT_CERT: &str = "CLIENT_CERT";
    /// A PEM file with the client certificate's private key.
    pub const CLIENT_KEY: &str = "CLIENT_KEY";
    /// `true`/`1` to skip server certificate verification (never in production).
    pub const SKIP_VERIFY: &str = "SKIP_VERIFY";
    /// The name to verify the server certificate against (and send as SNI).
    pub const TLS_SERVER_NAME: &str = "TLS_SERVER_NAME";
    /// Request timeout: seconds (`30`) or a duration (`500ms`, `30s`, `2m`).
    pub const CLIENT_TIMEOUT: &str = "CLIENT_TIMEOUT";
    /// How many times a failed request is retried (`0` disables retries).
    pub const MAX_RETRIES: &str = "MAX_RETRIES";
    /// The prefixes, in the order they are tried.
    pub const PREFIXES: [&str; 2] = ["BAO_", "VAULT_"];
}

/// The default request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The default number of retries after the first attempt.
pub const DEFAULT_MAX_RETRIES: u32 = 2;
/// The default address when none is configured (as the `vault` CLI).
pub const DEFAULT_ADDR: &str = "https://127.0.0.1:8200";
/// The default limit on the body of a successful reply (32 MiB); see
/// [`ClientBuilder::max_response_bytes`].
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// How much of an error reply's body (a status that is neither 2xx nor accepted) is read:
/// enough for Vault's `errors` array, not a proxy's error page. The rest is not read.
pub const MAX_ERROR_BODY_BYTES: usize = 8 * 1024;

/// How failed requests are retried.
///
/// A request is retried on connection errors and on HTTP 412, 429 and 5xx other than 501,
/// never on TLS certificate errors or other 4xx. The wait before retry `n` (1-based) is
/// `n × random(min_wait..=max_wait)` unless the server sent `Retry-After` (honoured up to
/// 300 s). No wait goes past the call's deadline,
/// [`ClientBuilder::max_call_duration`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Lower bound of the jittered wait unit.
    pub min_wait: Duration,
    /// Upper bound of the jittered wait unit.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: DEFAULT_MAX_RETRIES,
            min_wait: Duration::from_millis(1000),
            max_wait: Duration::from_millis(1500),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// The wait before retry number `attempt` (1-based), without `Retry-After`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let (lo, hi) = (nanos(self.min_wait), nanos(self.max_wait));
        let unit = if hi > lo {
            rand::random_range(lo..=hi)
        } else {
            lo
        };
        Duration::from_nanos(unit.saturating_mul(u64::from(attempt.max(1))))
    }
}

/// The default of [`ClientBuilder::max_call_duration`]: every attempt's `timeout` plus the
/// longest backoff before each retry (`n × max_wait` before retry `n`). Saturates rather
/// than overflows.
pub(crate) fn default_call_limit(timeout: Duration, retry: &RetryPolicy) -> Duration {
    let retries = u64::from(retry.max_retries);
    // 1 + 2 + ... + max_retries units of the longest backoff.
    let units = retries.saturating_mul(retries.saturating_add(1)) / 2;
    let times = |d: Duration, n: u64| d.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX));
    times(timeout, retries.saturating_add(1)).saturating_add(times(retry.max_wait, units))
}

/// Where to find CA certificates.
#[derive(Debug, Clone)]
pub(crate) enum CaSource {
    File(PathBuf),
    Dir(PathBuf),
    /// `Bytes`, so `Debug` shows the PEM text, not a list of numbers.
    Pem(Bytes),
}

/// Builds a [`VaultClient`](crate::VaultClient).
///
/// ```no_run
/// # async fn run() -> Result<(), vault_ops_core::Error> {
/// use std::time::Duration;
/// use vault_ops_core::VaultClient;
///
/// let client = VaultClient::builder()
///     .address("https://vault.vault.svc:8200")
///     .token("s.example")
///     .ca_cert_file("/etc/vault/tls/ca.crt")
///     .timeout(Duration::from_secs(10))
///     .build()?;
/// let status = client.connect().await?;
/// println!("{status}");
/// # Ok(()) }
/// ```
///
/// Derives `Debug`: the token and the client key are secret types that never show.
#[derive(Debug, Default)]
#[must_use]
pub struct ClientBuilder {
    pub(crate) address: Option<String>,
    /// Further node addresses after `address` (see [`ClientBuilder::addresses`]).
    pub(crate) more_addresses: Vec<String>,
    pub(crate) read_your_writes: bool,
    pub(crate) token: Option<VaultToken>,
    pub(crate) namespace: Option<String>,
    pub(crate) ca: Vec<CaSource>,
    pub(crate) client_cert: Option<PathBuf>,
    pub(crate) client_key: Option<PathBuf>,
    pub(crate) client_identity_pem: Option<PrivateKey>,
    pub(crate) skip_verify: bool,
    pub(crate) tls_server_name: Option<String>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) retry: RetryPolicy,
    pub(crate) max_response_bytes: Option<usize>,
    pub(crate) max_call_duration: Option<Duration>,
    pub(crate) errors: Vec<ConfigError>,
}

impl ClientBuilder {
    /// A builder with the defaults: no address (the build fails without one), no token,
    /// 60 s timeout, 2 retries, replies up to 32 MiB, calls bounded by what the retry policy
    /// takes.
    pub fn new() -> Self {
        Self::default()
    }

    /// The server address, e.g. `https://vault.vault.svc:8200`. Replaces any list given to
    /// [`addresses`](Self::addresses).
    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.address = Some(address.into());
        self.more_addresses.clear();
        self
    }

    /// Several node addresses of one cluster, e.g. the pods of a StatefulSet
    /// (`http://vault-0.vault-internal:8200`, `http://vault-1.vault-internal:8200`, ...).
    /// The first is the primary ([`VaultClient::address`](crate::VaultClient::address)).
    /// Replaces an address set before; each is checked like [`address`](Self::address), and
    /// an address listed twice is kept once.
    ///
    /// Requests go to one address at a time and stay there while it answers. When a
    /// connection to it cannot be made (refused, unreachable, connect timeout: the request
    /// was never sent), the same request moves on at once to the next address, so a dead
    /// node costs no backoff; only when every address failed in one round does the retry
    /// policy's backoff apply, and that round counts as one attempt. A reply of 503 (e.g. a
    /// sealed node) sends the next retry to the next address. Errors after the request was
    /// sent (a reset before the reply, a timeout) are never moved to another node, since
    /// the first node may have applied a write: they are retried like on a single address.
    /// Clones share the address in use
    /// ([`VaultClient::current_address`](crate::VaultClient::current_address)).
    ///
    /// ```no_run
    /// let client = vault_ops_core::VaultClient::builder()
    ///     .addresses([
    ///         "http://vault-0.vault-internal:8200",
    ///         "http://vault-1.vault-internal:8200",
    ///         "http://vault-2.vault-internal:8200",
    ///     ])
    ///     .read_your_writes(true)
    ///     .build()?;
    /// # Ok::<(), vault_ops_core::ConfigError>(())
    /// ```
    pub fn addresses<I, S>(mut self, addresses: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut all = addresses.into_iter().map(Into::into);
        self.address = all.next();
        self.more_addresses = all.collect();
        self
    }

    /// Read-your-writes consistency (off by default): remember the newest `X-Vault-Index`
    /// seen on replies (shared by every clone), and send it back with every request as
    /// `X-Vault-Index` together with `X-Vault-Inconsistent: forward-active-node`. A standby
    /// that has not yet caught up with that index then forwards the request to the active
    /// node instead of answering from its stale copy, so a read after a write never sees
    /// older data, whichever node it reaches.
    ///
    /// Requests about the node itself (`sys/health`, `sys/seal-status`, `sys/metrics`, ...;
    /// see [`Request::node_local`](crate::Request::node_local)) go without these headers, so
    /// a standby still answers them for itself.
    ///
    /// Index values are compared (OpenBao's `{"cluster","value"}` form and Vault's
    /// `v1:cluster:local:replicated` form) and only a newer one replaces the remembered one;
    /// an index from another cluster or of an unknown form replaces it.
    pub fn read_your_writes(mut self, enabled: bool) -> Self {
        self.read_your_writes = enabled;
        self
    }

    /// The token to send. It can be replaced later with [`VaultClient::set_token`](crate::VaultClient::set_token).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(VaultToken::new(token));
        self
    }

    /// The token, already wrapped as a secret.
    pub fn secret_token(mut self, token: impl Into<VaultToken>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The namespace sent as `X-Vault-Namespace` (Vault Enterprise, OpenBao namespaces).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        let ns = namespace.into();
        let ns = ns.trim_matches('/').to_string();
        self.namespace = (!ns.is_empty()).then_some(ns);
        self
    }

    /// Trust the CA certificates in this PEM file (in addition to the built-in roots).
    pub fn ca_cert_file(mut self, path: impl AsRef<Path>) -> Self {
        self.ca.push(CaSource::File(path.as_ref().to_path_buf()));
        self
    }

    /// Trust every PEM file in this directory.
    pub fn ca_cert_dir(mut self, path: impl AsRef<Path>) -> Self {
        self.ca.push(CaSource::Dir(path.as_ref().to_path_buf()));
        self
    }

    /// Trust the CA certificates in this PEM text.
    pub fn ca_cert_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca.push(CaSource::Pem(Bytes::from(pem.into())));
        self
    }

    /// Present this client certificate and key (PEM files) for TLS client authentication.
    pub fn client_cert_files(mut self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        self.client_cert = Some(cert.as_ref().to_path_buf());
        self.client_key = Some(key.as_ref().to_path_buf());
        self
    }

    /// Present this client certificate and key, given as PEM text (certificate then key).
    pub fn client_cert_pem(mut self, cert_and_key_pem: impl Into<PrivateKey>) -> Self {
        self.client_identity_pem = Some(cert_and_key_pem.into());
        self
    }

    /// Skip server certificate verification. For throwaway test servers only.
    pub fn skip_verify(mut self, skip: bool) -> Self {
        self.skip_verify = skip;
        self
    }

    /// Verify the server certificate against this name (and send it as SNI), while still
    /// connecting to the configured address.
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.tls_server_name = (!name.is_empty()).then_some(name);
        self
    }

    /// The timeout of one request attempt, from sending it to the last byte of the reply's
    /// body (default 60 s, as the Vault CLI's). An attempt that runs out is retried like a
    /// lost reply and ends as [`Error::Timeout`](crate::Error::Timeout). Connecting has its
    /// own limit: this timeout, at most 30 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Retries after the first attempt (default 2; 0 disables retries).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.retry.max_retries = retries;
        self
    }

    /// The bounds of the jittered linear backoff (default 1 s to 1.5 s).
    pub fn retry_wait(mut self, min: Duration, max: Duration) -> Self {
        self.retry.min_wait = min;
        self.retry.max_wait = max.max(min);
        self
    }

    /// The whole retry policy at once.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The largest reply body read into memory (default [`DEFAULT_MAX_RESPONSE_BYTES`],
    /// 32 MiB). A successful reply that is larger fails with
    /// [`Error::BodyTooLarge`](crate::Error::BodyTooLarge) as soon as the limit is passed (at
    /// once when its `Content-Length` says so), and its connection is closed rather than
    /// drained. Error replies are read up to [`MAX_ERROR_BODY_BYTES`] (8 KiB) whatever this
    /// says. Raft snapshots are streamed and not limited by it.
    pub fn max_response_bytes(mut self, limit: usize) -> Self {
        self.max_response_bytes = Some(limit);
        self
    }

    /// The longest one call may take, all its attempts and the waits between them together.
    /// By default it is what the retry policy itself can take without `Retry-After`:
    /// `(max_retries + 1) × timeout` plus the longest backoff waits.
    ///
    /// No wait goes past it: when the next wait (the backoff, or the server's `Retry-After`,
    /// honoured up to 300 s) would end after it, the call fails at once with the last error
    /// (an [`ApiError`](crate::ApiError) says which `Retry-After` the server asked for), and
    /// an attempt that starts late gets only the time left as its timeout.
    pub fn max_call_duration(mut self, limit: Duration) -> Self {
        self.max_call_duration = Some(limit);
        self
    }

    /// A builder filled from the environment: each of [`mod@env`]'s names read as `BAO_*`, then
    /// `VAULT_*`. The token falls back to `~/.vault-token`. Invalid values are collected and
    /// reported by [`build`](Self::build), never ignored.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup` (for tests and
    /// for services that keep their settings elsewhere).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| -> Option<(String, String)> {
            env::PREFIXES.iter().find_map(|p| {
                let full = format!("{p}{name}");
                lookup(&full)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (full, v))
            })
        };
        let mut b = ClientBuilder::new();
        b.address = Some(
            get(env::ADDR)
                .map(|(_, v)| v)
                .unwrap_or_else(|| DEFAULT_ADDR.to_string()),
        );
        match get(env::TOKEN) {
            Some((_, v)) => b.token = Some(VaultToken::new(v.trim())),
            None => {
                let home = lookup("HOME");
                if let Some(home) = home {
                    let path = Path::new(&home).join(".vault-token");
                    match std::fs::read_to_string(&path) {
                        Ok(t) if !t.trim().is_empty() => b.token = Some(VaultToken::new(t.trim())),
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => b.errors.push(ConfigError::File {
                            what: "token".into(),
                            path: path.display().to_string(),
                            source: e,
                        }),
                    }
                }
            }
        }
        if let Some((_, v)) = get(env::NAMESPACE) {
            b = b.namespace(v);
        }
        if let Some((_, v)) = get(env::CACERT) {
            b = b.ca_cert_file(v);
        }
        if let Some((_, v)) = get(env::CAPATH) {
            b = b.ca_cert_dir(v);
        }
        match (get(env::CLIENT_CERT), get(env::CLIENT_KEY)) {
            (Some((_, c)), Some((_, k))) => b = b.client_cert_files(c, k),
            (None, None) => {}
            (Some((name, _)), None) | (None, Some((name, _))) => {
                b.errors.push(ConfigError::InvalidEnv {
                    name,
                    reason: "a client certificate and its key must be set together (CLIENT_CERT and CLIENT_KEY)".into(),
                })
            }
        }
        if let Some((name, v)) = get(env::SKIP_VERIFY) {
            match parse_bool(&v) {
                Some(skip) => b.skip_verify = skip,
                None => b.errors.push(ConfigError::InvalidEnv {
                    name,
                    reason: format!("{v:?} is not a boolean (use true/false/1/0)"),
                }),
            }
        }
        if let Some((_, v)) = get(env::TLS_SERVER_NAME) {
            b = b.tls_server_name(v);
        }
        if let Some((name, v)) = get(env::CLIENT_TIMEOUT) {
            match parse_duration(&v) {
                Some(d) if !d.is_zero() => b.timeout = Some(d),
                _ => b.errors.push(ConfigError::InvalidEnv {
                    name,
                    reason: format!("{v:?} is not a positive duration (e.g. 30, 30s, 500ms, 2m)"),
                }),
            }
        }
        if let Some((name, v)) = get(env::MAX_RETRIES) {
            match v.trim().parse::<i64>() {
                // The vault CLI treats -1 as "no retries" too.
                Ok(n) if n < 0 => b.retry.max_retries = 0,
                Ok(n) if n <= 100 => b.retry.max_retries = n as u32,
                _ => b.errors.push(ConfigError::InvalidEnv {
                    name,
                    reason: format!("{v:?} is not a whole number from 0 to 100"),
                }),
            }
        }
        b
    }

    /// Every configured address, parsed, the primary first, duplicates removed; or the
    /// error of each bad one.
    pub(crate) fn parsed_addresses(&self) -> Result<Vec<Url>, Vec<ConfigError>> {
        let primary = self.parsed_address();
        let rest = self.more_addresses.iter().map(|a| parse_address(a));
        let mut urls: Vec<Url> = Vec::new();
        let mut errors = Vec::new();
        for parsed in std::iter::once(primary).chain(rest) {
            match parsed {
                Ok(u) if urls.contains(&u) => {}
                Ok(u) => urls.push(u),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(urls)
        } else {
            Err(errors)
        }
    }

    pub(crate) fn parsed_address(&self) -> Result<Url, ConfigError> {
        let raw = self
            .address
            .as_deref()
            .ok_or_else(|| ConfigError::InvalidAddress {
                address: String::new(),
                reason: "no address given".into(),
            })?;
        parse_address(raw)
    }

    pub(crate) fn token_ref(&self) -> Option<&str> {
        self.token.as_ref().map(|t| t.expose_secret())
    }
}

/// Parses and checks a Vault address. Only `http` and `https` are accepted; the path must be
/// empty (the client adds `/v1/`).
pub(crate) fn parse_address(raw: &str) -> Result<Url, ConfigError> {
    let bad = |reason: &str| ConfigError::InvalidAddress {
        address: redact_userinfo(raw),
        reason: reason.to_string(),
    };
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(bad("it is empty"));
    }
    let url = Url::parse(trimmed).map_err(|e| bad(&e.to_string()))?;
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(bad(&format!("scheme {other:?} is not http or https"))),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("credentials in the address are not supported"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it must not have a query or fragment"));
    }
    let path = url.path().trim_end_matches('/');
    if !path.is_empty() && path != "/v1" {
        return Err(bad("it must not have a path (the client adds /v1/)"));
    }
    let mut base = url.clone();
    base.set_path("/v1/");
    Ok(base)
}

/// The address with any `user:password@` replaced, for error messages.
fn redact_userinfo(raw: &str) -> String {
    let start = raw.find("://").map_or(0, |i| i + 3);
    let authority_end = raw[start..]
        .find(['/', '?', '#'])
        .map_or(raw.len(), |i| start + i);
    match raw[start..authority_end].rfind('@') {
        Some(at) => format!("{}[REDACTED]@{}", &raw[..start], &raw[start + at + 1..]),
        None => raw.to_string(),
    }
}

pub(crate) fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "t" | "yes" | "y" | "on" => Some(true),
        "0" | "false" | "f" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

/// Parses `30`, `30s`, `500ms`, `2m`, `1h`, `1.5s`.
pub fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_limits_and_backoffs_saturate() {
        let policy = RetryPolicy::default();
        // 3 × 60 s, then 1 × 1.5 s + 2 × 1.5 s of backoff.
        assert_eq!(
            default_call_limit(DEFAULT_TIMEOUT, &policy),
            Duration::from_millis(184_500)
        );
        assert_eq!(
            default_call_limit(Duration::from_secs(1), &RetryPolicy::none()),
            Duration::from_secs(1)
        );
        let extreme = RetryPolicy {
            max_retries: u32::MAX,
            min_wait: Duration::MAX,
            max_wait: Duration::MAX,
        };
        assert_eq!(default_call_limit(Duration::MAX, &extreme), Duration::MAX);
        assert_eq!(extreme.backoff(u32::MAX), Duration::from_nanos(u64::MAX));
    }
}
