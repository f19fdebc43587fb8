//! [`VaultClient`]: cheap to clone, every clone shares the connection pool and the token.
//!
//! One direction, as kube-client's `Config` → `ClientBuilder` → `Client`: the
//! [`ClientBuilder`] (`config.rs`, plain settings) is checked into
//! `Settings` (`settings.rs`, with the TLS material `tls.rs` loads), the transport is built
//! from those (`transport.rs`, with the redirect policy of `redirect.rs`), and the client
//! holds the result plus the state its clones share (`ha.rs`: the node in use, the newest
//! `X-Vault-Index`). Nothing downstream reaches back into the builder.

mod ha;
mod redirect;
mod settings;
mod tls;
mod transport;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::ExposeSecret;
use url::Url;

use self::ha::HaState;
use self::settings::Settings;
use crate::config::{ClientBuilder, RetryPolicy};
use crate::error::{ConfigError, Result};
use crate::http::request::{encoded_path_len, push_encoded_path, CallOptions, INDEX_HEADER};
use crate::secret::VaultToken;

impl ClientBuilder {
    /// Builds the client: checks every setting (one [`ConfigError`] names every problem
    /// found), loads the TLS material, then builds the transport.
    pub fn build(self) -> Result<VaultClient, ConfigError> {
        let settings = Settings::try_from(self)?;
        let http = transport::build(&settings)?;
        Ok(VaultClient::from_settings(settings, http))
    }
}

/// An async client for Vault and OpenBao.
///
/// Cloning is cheap: clones share the connection pool and the token cell, so a token swapped in
/// with [`set_token`](Self::set_token) (for example by a login lifecycle) is used by every clone
/// from its next request on.
///
/// A client may know several node addresses of one cluster
/// ([`ClientBuilder::addresses`]): requests then move on to the next node when one cannot be
/// reached, and clones share the node in use. With
/// [`ClientBuilder::read_your_writes`], clones also share the newest `X-Vault-Index`.
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
    /// Per-call options of this handle (see [`with_options`](Self::with_options)).
    options: CallOptions,
}

struct Inner {
    http: reqwest::Client,
    /// One URL per configured address, the primary first: its scheme, host and port with a
    /// placeholder path below `/v1/` that each request's path replaces (see `url_at`).
    bases: Vec<Url>,
    /// The configured addresses as shown to users, in the same order.
    addresses: Vec<String>,
    ha: Arc<HaState>,
    /// Read-your-writes on: kept here, beside the other per-request fields, rather than
    /// behind `ha`, so the check on every request and reply touches no other memory.
    read_your_writes: bool,
    token: RwLock<Option<TokenCell>>,
    namespace: Option<HeaderValue>,
    namespace_text: Option<String>,
    retry: RetryPolicy,
    timeout: Duration,
    /// The largest successful reply body read (see [`ClientBuilder::max_response_bytes`]).
    max_body: usize,
    /// The longest one call may take (see [`ClientBuilder::max_call_duration`]).
    max_call: Duration,
}

// Hand-written: the handle holds the HTTP client and locks (token cell, HA state), which do
// not derive `Debug`; it says whether a token is set, never the token.
impl std::fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultClient")
            .field("address", &self.address())
            .field("current_address", &self.current_address())
            .field("addresses", &self.inner.addresses.len())
            .field("read_your_writes", &self.inner.read_your_writes)
            .field("namespace", &self.inner.namespace_text)
            .field("has_token", &self.has_token())
            .field("retry", &self.inner.retry)
            .field("timeout", &self.inner.timeout)
            .field("max_response_bytes", &self.inner.max_body)
            .field("max_call_duration", &self.inner.max_call)
            .field("call_options", &self.options)
            .finish_non_exhaustive()
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

    /// The client for checked settings and the transport built from them.
    fn from_settings(settings: Settings, http: reqwest::Client) -> VaultClient {
        let (namespace, namespace_text) = settings.namespace.unzip();
        VaultClient {
            options: CallOptions::default(),
            inner: Arc::new(Inner {
                http,
                bases: settings.request_bases.iter().map(url_template).collect(),
                addresses: settings.addresses,
                ha: Arc::new(HaState::new()),
                read_your_writes: settings.read_your_writes,
                token: RwLock::new(settings.token.map(TokenCell::new)),
                namespace,
                namespace_text,
                retry: settings.retry,
                timeout: settings.timeout,
                max_body: settings.max_body,
                max_call: settings.max_call,
            }),
        }
    }

    /// The (primary) server address, e.g. `http://127.0.0.1:8200`: the one given to
    /// [`ClientBuilder::address`], or the first given to [`ClientBuilder::addresses`].
    /// See [`current_address`](Self::current_address) for the node in use.
    pub fn address(&self) -> &str {
        self.inner.addresses.first().map_or("", String::as_str)
    }

    /// The address requests go to now: the primary until it could not be reached, then the
    /// node that answered last. Shared by every clone.
    pub fn current_address(&self) -> &str {
        self.inner
            .addresses
            .get(self.current_index())
            .map_or("", String::as_str)
    }

    /// Every configured address, the primary first.
    pub fn addresses(&self) -> &[String] {
        &self.inner.addresses
    }

    /// `true` when read-your-writes consistency is on (see
    /// [`ClientBuilder::read_your_writes`]).
    pub fn read_your_writes(&self) -> bool {
        self.inner.read_your_writes
    }

    /// The namespace, when one is set.
    pub fn namespace(&self) -> Option<&str> {
        self.inner.namespace_text.as_deref()
    }

    /// The current token, if any (a clone of the secret).
    pub fn token(&self) -> Option<VaultToken> {
        self.inner
            .token
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|cell| cell.secret.clone())
    }

    /// The token's `X-Vault-Token` value, built (and marked sensitive) once when the token
    /// was set: `None` without a token, `Some(None)` when the token cannot be sent in a
    /// header.
    pub(crate) fn token_header(&self) -> Option<Option<HeaderValue>> {
        self.inner
            .token
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|cell| cell.header.clone())
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
    pub fn set_token(&self, token: impl Into<VaultToken>) {
        *self
            .inner
            .token
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(TokenCell::new(token.into()));
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
    /// (for acting as another identity without touching this client's token). It shares
    /// the node in use and the read-your-writes index with this client.
    pub fn with_token(&self, token: impl Into<VaultToken>) -> VaultClient {
        let namespace = self
            .inner
            .namespace
            .clone()
            .zip(self.inner.namespace_text.clone());
        self.derived(Some(TokenCell::new(token.into())), namespace)
    }

    /// A client sharing this one's settings, pool, node in use and index, with its own token
    /// cell and namespace.
    fn derived(
        &self,
        token: Option<TokenCell>,
        namespace: Option<(HeaderValue, String)>,
    ) -> VaultClient {
        let (namespace, namespace_text) = namespace.unzip();
        VaultClient {
            options: self.options,
            inner: Arc::new(Inner {
                http: self.inner.http.clone(),
                bases: self.inner.bases.clone(),
                addresses: self.inner.addresses.clone(),
                ha: self.inner.ha.clone(),
                read_your_writes: self.inner.read_your_writes,
                token: RwLock::new(token),
                namespace,
                namespace_text,
                retry: self.inner.retry.clone(),
                timeout: self.inner.timeout,
                max_body: self.inner.max_body,
                max_call: self.inner.max_call,
            }),
        }
    }

    /// A new client with the same settings and connection pool, its own copy of the current
    /// token, that sends `namespace` as `X-Vault-Namespace`. It shares the node in use and
    /// the read-your-writes index with this client.
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
        let token = self
            .inner
            .token
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        Ok(self.derived(token, header.map(|h| (h, ns))))
    }

    /// The newest `X-Vault-Index` remembered for read-your-writes (shared by clones), for
    /// handing to another client with [`observe_index`](Self::observe_index). `None` when
    /// read-your-writes is off or no reply carried one yet. It is a cluster position, not a
    /// secret.
    pub fn consistency_index(&self) -> Option<String> {
        self.index_to_send()
            .and_then(|v| v.to_str().ok().map(str::to_string))
    }

    /// Takes an `X-Vault-Index` seen elsewhere (another client's
    /// [`consistency_index`](Self::consistency_index), another process) into account: it
    /// replaces the remembered one when newer, so this client's next requests see at least
    /// that state, e.g. a reader on a standby after a writer on the active node.
    ///
    /// Fails with [`Error::InvalidInput`](crate::Error::InvalidInput) when read-your-writes
    /// is off (the index would never be sent) or the value cannot be sent in a header.
    pub fn observe_index(&self, index: &str) -> Result<()> {
        if !self.inner.read_your_writes {
            return Err(crate::Error::InvalidInput(
                "read-your-writes is off for this client: enable ClientBuilder::read_your_writes"
                    .into(),
            ));
        }
        let value = HeaderValue::from_str(index.trim())
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                crate::Error::InvalidInput("the index cannot be sent in a header".into())
            })?;
        let mut headers = HeaderMap::new();
        headers.insert(INDEX_HEADER, value);
        self.record_index(&headers);
        Ok(())
    }

    /// A handle on the same client (token, connection pool, node in use: all shared) whose
    /// calls use `options`, through any API handler: e.g. a renewal sent once within 5 s,
    /// `client.with_options(CallOptions::new().no_retry().timeout(d)).tokens().renew_self(None)`.
    /// Replaces the options of this handle; cheap (no new connection pool).
    pub fn with_options(&self, options: CallOptions) -> VaultClient {
        VaultClient {
            inner: self.inner.clone(),
            options,
        }
    }

    /// The per-call options of this handle (none unless made by
    /// [`with_options`](Self::with_options)).
    pub fn call_options(&self) -> CallOptions {
        self.options
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The largest successful reply body read into memory (see
    /// [`ClientBuilder::max_response_bytes`]).
    pub fn max_response_bytes(&self) -> usize {
        self.inner.max_body
    }

    /// The longest one call may take, retries and waits included (see
    /// [`ClientBuilder::max_call_duration`]).
    pub fn max_call_duration(&self) -> Duration {
        self.inner.max_call
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    pub(crate) fn namespace_header(&self) -> Option<&HeaderValue> {
        self.inner.namespace.as_ref()
    }

    /// How many addresses the client knows.
    pub(crate) fn address_count(&self) -> usize {
        self.inner.bases.len()
    }

    /// The index of the address in use.
    pub(crate) fn current_index(&self) -> usize {
        self.inner.ha.current(self.inner.bases.len())
    }

    /// The address at `index`, for messages.
    pub(crate) fn address_at(&self, index: usize) -> &str {
        self.inner.addresses.get(index).map_or("", String::as_str)
    }

    /// Address `failed` could not be reached: unless another request already moved on, the
    /// next address becomes the one in use. Returns the address to try next.
    pub(crate) fn move_past(&self, failed: usize, why: &crate::Error) -> usize {
        let (next, switched) = self.inner.ha.move_past(failed, self.inner.bases.len());
        if switched {
            tracing::warn!(
                from = %self.address_at(failed),
                to = %self.address_at(next),
                error = %why,
                "Vault address failed; switching to the next address"
            );
        }
        next
    }

    /// Address `index` answered: it becomes (stays) the one in use.
    pub(crate) fn stick_to(&self, index: usize) {
        if self.inner.ha.stick_to(index) && self.inner.bases.len() > 1 {
            tracing::info!(address = %self.address_at(index), "Vault address in use");
        }
    }

    /// Remembers the reply's `X-Vault-Index` when read-your-writes is on and it is newer
    /// than the one remembered.
    pub(crate) fn record_index(&self, headers: &HeaderMap) {
        if !self.inner.read_your_writes {
            return;
        }
        if let Some(value) = headers.get(INDEX_HEADER) {
            self.inner.ha.record_index(value);
        }
    }

    /// The remembered `X-Vault-Index`, when read-your-writes is on and one was seen.
    pub(crate) fn index_to_send(&self) -> Option<HeaderValue> {
        if !self.inner.read_your_writes {
            return None;
        }
        self.inner.ha.index()
    }

    /// [`url_at`](Self::url_at) on the address in use.
    #[cfg(test)]
    pub(crate) fn url_for(&self, path: &str) -> Result<Url> {
        self.url_at(self.current_index(), path, "")
    }

    /// The URL of `path` below `/v1/` on the address at `index`: the path is percent-encoded
    /// exactly as the `vault` CLI encodes it (`%` → `%25`, `?` → `%3F`, `#` → `%23`, `\` →
    /// `%5C`, space → `%20`, non-ASCII as UTF-8 bytes; see `http::push_encoded_path`), so
    /// the server decodes it back to exactly `path`: a name can never become path structure,
    /// a query or a fragment. A URL whose path is not exactly `/v1/` followed by the encoded
    /// path (a `.` or `..` segment the URL parser resolved) is refused, so the request goes
    /// nowhere else than asked. The send paths build every URL here, once per address tried
    /// and before anything is sent.
    pub(crate) fn url_at(&self, index: usize, path: &str, query: &str) -> Result<Url> {
        let base = self.inner.bases.get(index).ok_or_else(|| {
            crate::Error::InvalidInput(format!("no configured address number {index}"))
        })?;
        // The address's scheme, host and port were parsed once at build time; only the path
        // and the query are set here, on a clone of the address's template URL, whose
        // placeholder path leaves room for them (see `url_template`). The encoded path is
        // written straight into the one string `set_path` reads (copied as it is when there
        // is nothing to encode): no allocation beyond that string.
        let mut full_path = String::with_capacity(API_PATH.len() + encoded_path_len(path));
        full_path.push_str(API_PATH);
        push_encoded_path(&mut full_path, path);
        let mut url = base.clone();
        url.set_path(&full_path);
        if !query.is_empty() {
            url.set_query(Some(query));
        }
        // The encoded path holds no character `set_path` changes, so anything it did change
        // (resolved a `.` or `..` segment) means the request would reach another path.
        if url.path() != full_path {
            return Err(crate::Error::InvalidInput(format!(
                "the path {path:?} would not be sent as it is (as {:?}): refusing it",
                url.path()
            )));
        }
        Ok(url)
    }
}

/// The path every request goes below.
const API_PATH: &str = "/v1/";

/// Room for a request's path and query in the URLs `url_at` builds.
const URL_ROOM: usize = 200;

/// `base` (`scheme://host:port/v1/`) with a placeholder path of [`URL_ROOM`] bytes below
/// `/v1/`. A URL's clone is exactly as long as the URL, so a clone of the bare base would
/// grow (be reallocated) when `url_at` sets the path and again for the query; a `realloc`
/// always takes glibc's arena lock, which the runtime's workers contend for when they free
/// each other's memory (measured: ~30 % more futex calls per KV list at 32 requests in
/// flight). A clone of this template is truncated to its host and refilled in place.
/// (Parsing one exactly sized string instead avoids the growth too, but re-parses the host
/// on every request: ~5 % more instructions.)
fn url_template(base: &Url) -> Url {
    let mut template = base.clone();
    let mut path = String::with_capacity(API_PATH.len() + URL_ROOM);
    path.push_str(API_PATH);
    path.extend(std::iter::repeat_n('x', URL_ROOM));
    template.set_path(&path);
    template
}

/// The token and its `X-Vault-Token` header value, built once when the token is set so
/// requests neither clone the secret nor validate it again. `Debug` shows neither: the
/// token's is redacted, the header value is marked sensitive.
#[derive(Clone, Debug)]
struct TokenCell {
    secret: VaultToken,
    /// `None` when the token cannot be sent in a header (requests needing it then fail
    /// with [`Error::InvalidInput`](crate::Error::InvalidInput)).
    header: Option<HeaderValue>,
}

impl TokenCell {
    fn new(secret: VaultToken) -> TokenCell {
        let header = HeaderValue::from_str(secret.expose_secret())
            .ok()
            .map(|mut value| {
                value.set_sensitive(true);
                value
            });
        TokenCell { secret, header }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_cell_keeps_a_sensitive_header_and_redacts() {
        let c = VaultClient::new("http://127.0.0.1:1").unwrap_or_else(|e| panic!("{e}"));
        assert!(c.token_header().is_none());
        c.set_token(VaultToken::from("s.CELLTOKEN"));
        let header = c.token_header().flatten();
        let header = header.unwrap_or_else(|| panic!("no header"));
        assert!(header.is_sensitive());
        assert_eq!(header, "s.CELLTOKEN");
        assert_eq!(
            c.token().map(|t| t.expose_secret().to_string()).as_deref(),
            Some("s.CELLTOKEN")
        );
        let cell = c
            .inner
            .token
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let shown = format!("{cell:?} {c:?}");
        assert!(!shown.contains("CELLTOKEN"), "{shown}");

        // A token that cannot be a header value is kept, but has no header.
        c.set_token(VaultToken::from("s.bad\ntoken"));
        assert!(matches!(c.token_header(), Some(None)));
        assert!(c.has_token());

        // with_token builds its own cell; with_namespace copies the current one.
        let other = c.with_token(VaultToken::from("s.OTHER"));
        assert_eq!(
            other
                .token_header()
                .flatten()
                .as_ref()
                .map(|h| h.as_bytes()),
            Some(&b"s.OTHER"[..])
        );
        assert!(matches!(c.token_header(), Some(None)));
        let ns = other
            .with_namespace("team")
            .unwrap_or_else(|e| panic!("{e}"));
        let h = ns
            .token_header()
            .flatten()
            .unwrap_or_else(|| panic!("no header"));
        assert!(h.is_sensitive());
        assert_eq!(h, "s.OTHER");
        c.clear_token();
        assert!(c.token_header().is_none());
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
        // Whatever a path holds, it stays on the configured server below /v1/, and every
        // character that could be read as structure is encoded.
        for (hostile, sent) in [
            ("http://evil.example/v1/x", "/v1/http://evil.example/v1/x"),
            ("//evil.example/x", "/v1///evil.example/x"),
            ("\\\\evil.example\\x", "/v1/%5C%5Cevil.example%5Cx"),
            ("%2e%2e/sys/seal", "/v1/%252e%252e/sys/seal"),
            ("a/%2E%2e/%2e%2e/x", "/v1/a/%252E%252e/%252e%252e/x"),
            (r"..\..\sys\seal-status", "/v1/..%5C..%5Csys%5Cseal-status"),
            ("secret/data/per%41", "/v1/secret/data/per%2541"),
            ("secret/data/a?b#c", "/v1/secret/data/a%3Fb%23c"),
            ("secret/data/ü\n\u{7f}", "/v1/secret/data/%C3%BC%0A%7F"),
        ] {
            let url = c
                .url_for(hostile)
                .unwrap_or_else(|e| panic!("{hostile}: {e}"));
            assert_eq!(url.host_str(), Some("127.0.0.1"), "{hostile}");
            assert_eq!(url.path(), sent, "{hostile}");
            assert_eq!(url.query(), None, "{hostile}");
            assert_eq!(url.fragment(), None, "{hostile}");
        }
        // Literal dot segments would be resolved by the URL parser: refused, not sent elsewhere.
        for dots in [
            "../sys/seal",
            "secret/../sys/seal",
            "a/./b",
            "secret/data/..",
        ] {
            let e = c.url_for(dots).unwrap_err();
            assert!(matches!(e, crate::Error::InvalidInput(_)), "{dots}: {e:?}");
        }
        // Spaces are encoded wherever they are, also at the end (which a URL parser trims).
        assert_eq!(
            ok("secret/data/a b  ").ok().as_deref(),
            Some("http://127.0.0.1:8200/v1/secret/data/a%20b%20%20")
        );
        let listed = c.url_at(0, "secret/metadata/a ", "list=true");
        assert_eq!(
            listed.map(|u| u.to_string()).ok().as_deref(),
            Some("http://127.0.0.1:8200/v1/secret/metadata/a%20?list=true")
        );
        let listed = c.url_at(0, "secret/metadata/a?b/", "list=true");
        assert_eq!(
            listed.map(|u| u.to_string()).ok().as_deref(),
            Some("http://127.0.0.1:8200/v1/secret/metadata/a%3Fb/?list=true")
        );
    }

    proptest::proptest! {
        /// Any path without dot or empty segments becomes a URL on the configured server whose
        /// path decodes (once, as the server does) to exactly `/v1/` and that path: nothing
        /// in a name is ever structure, query or fragment.
        #[test]
        fn any_path_is_sent_as_itself(segments in proptest::collection::vec(
            "\\PC{1,12}|[%./\\\\?#. ]{1,6}|[\\x00-\\x1f\\x7f]{1,3}|.{1,4}",
            1..6,
        )) {
            let path = segments.join("/");
            let c = VaultClient::new("http://127.0.0.1:8200").unwrap_or_else(|e| panic!("{e}"));
            let valid = path
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != "..");
            match c.url_at(0, &path, "") {
                Ok(url) => {
                    proptest::prop_assert_eq!(url.host_str(), Some("127.0.0.1"));
                    proptest::prop_assert_eq!(url.query(), None);
                    proptest::prop_assert_eq!(url.fragment(), None);
                    let mut want = b"/v1/".to_vec();
                    want.extend_from_slice(path.as_bytes());
                    proptest::prop_assert_eq!(crate::test_support::percent_decode(url.path()), want);
                }
                Err(e) => {
                    // Only a dot segment is refused here (empty ones are refused by the send
                    // path's `validate_path`).
                    proptest::prop_assert!(!valid, "{path:?} refused: {e}");
                    proptest::prop_assert!(matches!(e, crate::Error::InvalidInput(_)));
                }
            }
        }
    }
}
