//! Requests as plain data ([`Request`], [`TokenChoice`]) and replies ([`Response`]): how a
//! path is checked and percent-encoded, which statuses a request accepts, and how an error
//! reply becomes [`Error::Api`]. Nothing here does IO; [`send`](super::send) sends them.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::MAX_ERROR_BODY_BYTES;
use crate::error::{ApiError, Error, Result};
use crate::secret::VaultToken;

/// The header that carries the token.
pub const TOKEN_HEADER: &str = "x-vault-token";
/// The header that carries the namespace.
pub const NAMESPACE_HEADER: &str = "x-vault-namespace";
/// Marks API requests so Vault's CSRF protection accepts them.
pub const REQUEST_HEADER: &str = "x-vault-request";
/// Carries a raft index: on replies, the state the request saw; on requests (with
/// [`ClientBuilder::read_your_writes`](crate::ClientBuilder::read_your_writes)), the state
/// the answering node must have reached.
pub const INDEX_HEADER: &str = "x-vault-index";
/// Tells a standby what to do when it has not reached the requested index.
pub const INCONSISTENT_HEADER: &str = "x-vault-inconsistent";
/// The [`INCONSISTENT_HEADER`] value that makes a lagging standby forward the request to the
/// active node.
pub const FORWARD_ACTIVE_NODE: &str = "forward-active-node";

// The header names above as `HeaderName`s, so no request parses (and allocates) them again.
pub(crate) const TOKEN_HEADER_NAME: HeaderName = HeaderName::from_static(TOKEN_HEADER);
pub(crate) const NAMESPACE_HEADER_NAME: HeaderName = HeaderName::from_static(NAMESPACE_HEADER);
pub(crate) const REQUEST_HEADER_NAME: HeaderName = HeaderName::from_static(REQUEST_HEADER);
pub(crate) const INDEX_HEADER_NAME: HeaderName = HeaderName::from_static(INDEX_HEADER);
pub(crate) const INCONSISTENT_HEADER_NAME: HeaderName =
    HeaderName::from_static(INCONSISTENT_HEADER);

/// Which token a request carries.
#[derive(Debug, Clone, Default)]
pub enum TokenChoice {
    /// The client's current token (the default). Fails with [`Error::MissingToken`] when unset.
    #[default]
    Client,
    /// The client's token when one is set, none otherwise (for endpoints that work either way).
    ClientIfSet,
    /// No token (login endpoints, `sys/health`, `sys/seal-status`, unseal, init).
    None,
    /// This token instead of the client's.
    Explicit(VaultToken),
}

/// Options for the calls made through one client handle, whatever the API area: get a handle
/// with them from [`VaultClient::with_options`](crate::VaultClient::with_options), then use
/// any handler on it. The send path applies them to every request, on top of the request's
/// own settings (a request that is never retried stays so).
///
/// ```no_run
/// # async fn run(client: vault_ops_core::VaultClient) -> Result<(), vault_ops_core::Error> {
/// use std::time::Duration;
/// use vault_ops_core::CallOptions;
///
/// // Sent once, and the whole call (connecting included) ends within 5 s.
/// let once = CallOptions::new().no_retry().timeout(Duration::from_secs(5));
/// let auth = client.with_options(once).tokens().renew_self(None).await?;
/// println!("renewed for {} s", auth.lease_duration.as_secs());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct CallOptions {
    pub(crate) no_retry: bool,
    pub(crate) timeout: Option<Duration>,
}

impl CallOptions {
    /// No options: the client's settings apply.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends each request once: no retry after an error status, a timeout or a lost
    /// connection (moving on to another node when none could be reached still happens,
    /// since nothing was sent).
    pub fn no_retry(mut self) -> Self {
        self.no_retry = true;
        self
    }

    /// The longest each call may take, every attempt and wait included (at most the
    /// client's [`max_call_duration`](crate::ClientBuilder::max_call_duration)); each
    /// attempt gets at most this too. A call that runs out fails with
    /// [`Error::Timeout`]. For a streamed raft snapshot it replaces the client's timeout
    /// unless [`Raft::timeout`](crate::api::raft::Raft::timeout) sets one.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Whether [`no_retry`](Self::no_retry) is set.
    pub fn is_no_retry(&self) -> bool {
        self.no_retry
    }

    /// The call timeout, when set.
    pub fn call_timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

/// One request to Vault, as plain data. Build it, then send it with [`VaultClient::execute`](crate::VaultClient::execute).
///
/// **Paths.** The path is plain text below `/v1/`, as the `vault` CLI takes it (a name
/// returned by a LIST is used as it is, never escaped by the caller). When the request is
/// sent, every byte other than ASCII letters and digits, `-._~` and `$&+,/:;=@` is
/// percent-encoded exactly as the CLI encodes it (`%` → `%25`, `?` → `%3F`, `#` → `%23`,
/// `\` → `%5C`, space → `%20`, `ü` → `%C3%BC`), so the server sees exactly this path: `%2e%2e`
/// and `\` are characters of a name, never path structure, and `?` never starts a query (add
/// parameters with [`query`](Self::query)). A path that is empty or has a `.`, `..` or empty
/// segment (`a//b`; a trailing `/` is fine) is refused with [`Error::InvalidInput`] before
/// anything is sent (the server would redirect it to another path), and so is one with a
/// control character (OpenBao refuses those in any path).
///
/// ```no_run
/// # async fn run(client: vault_ops_core::VaultClient) -> Result<(), vault_ops_core::Error> {
/// use vault_ops_core::Request;
/// let reply = client
///     .execute(Request::get("sys/mounts"))
///     .await?
///     .json::<serde_json::Value>()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct Request {
    pub(crate) method: Method,
    pub(crate) path: String,
    /// Already encoded (`list=true&version=3`): borrowed for the fixed queries (LIST), so
    /// most requests allocate nothing for it.
    pub(crate) query: Cow<'static, str>,
    pub(crate) body: Option<Bytes>,
    pub(crate) token: TokenChoice,
    pub(crate) ok_statuses: StatusSet,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) retry: bool,
    pub(crate) not_idempotent: bool,
    pub(crate) node_local: bool,
}

// Hand-written: the body may hold passwords, keys or tokens, and header values may hold a
// token; only their size and names are shown.
impl std::fmt::Debug for Request {
    /// Shows the method, path, query and header names; never the body or header values,
    /// which may hold passwords, keys or tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("body_len", &self.body.as_ref().map(Bytes::len))
            .field("token", &self.token)
            .field("ok_statuses", &self.ok_statuses)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("retry", &self.retry)
            .field("not_idempotent", &self.not_idempotent)
            .field("node_local", &self.node_local)
            .finish()
    }
}

impl Request {
    /// A request with this method to `path` (below `/v1/`, with or without a leading `/`;
    /// plain text, encoded when sent: see [`Request`]).
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        let mut path: String = path.into();
        // Strip leading slashes in place: no new allocation for a path that is already owned.
        let leading = path.len() - path.trim_start_matches('/').len();
        if leading > 0 {
            path.drain(..leading);
        }
        Request {
            method,
            node_local: is_node_local_path(&path),
            path,
            query: Cow::Borrowed(""),
            body: None,
            token: TokenChoice::Client,
            ok_statuses: StatusSet::default(),
            headers: Vec::new(),
            retry: true,
            not_idempotent: false,
        }
    }

    /// A `GET`.
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }

    /// A `POST`.
    pub fn post(path: impl Into<String>) -> Self {
        Self::new(Method::POST, path)
    }

    /// A `PUT`.
    pub fn put(path: impl Into<String>) -> Self {
        Self::new(Method::PUT, path)
    }

    /// A `PATCH`; the body is sent as `application/merge-patch+json`.
    pub fn patch(path: impl Into<String>) -> Self {
        Self::new(Method::PATCH, path).header(
            CONTENT_TYPE,
            HeaderValue::from_static("application/merge-patch+json"),
        )
    }

    /// A `DELETE`.
    pub fn delete(path: impl Into<String>) -> Self {
        Self::new(Method::DELETE, path)
    }

    /// A `LIST`, sent as `GET ...?list=true` (accepted by every proxy).
    pub fn list(path: impl Into<String>) -> Self {
        let mut req = Self::new(Method::GET, path);
        req.query = Cow::Borrowed("list=true");
        req
    }

    /// Adds a query parameter.
    pub fn query(mut self, key: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        let query = self.query.to_mut();
        if !query.is_empty() {
            query.push('&');
        }
        query.extend(url::form_urlencoded::byte_serialize(
            key.as_ref().as_bytes(),
        ));
        query.push('=');
        query.extend(url::form_urlencoded::byte_serialize(
            value.as_ref().as_bytes(),
        ));
        self
    }

    /// Sets a JSON body.
    pub fn json(mut self, body: &impl Serialize) -> Result<Self> {
        // Most bodies fit in 256 bytes: one allocation instead of serde_json's 128 and a regrow.
        let mut bytes = Vec::with_capacity(256);
        serde_json::to_writer(&mut bytes, body)
            .map_err(|e| Error::InvalidInput(format!("cannot encode the request body: {e}")))?;
        self.body = Some(Bytes::from(bytes));
        Ok(self)
    }

    /// Sets a raw body (e.g. a raft snapshot).
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Chooses which token the request carries.
    pub fn token(mut self, token: TokenChoice) -> Self {
        self.token = token;
        self
    }

    /// Sends no token.
    pub fn without_token(self) -> Self {
        self.token(TokenChoice::None)
    }

    /// Treats these statuses as answers rather than errors (e.g. `sys/health`'s 429, 503).
    pub fn accept_statuses(mut self, statuses: &[u16]) -> Self {
        for &status in statuses {
            self.ok_statuses.insert(status);
        }
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Turns off retries for this request (for calls that must not be repeated blindly).
    pub fn no_retry(mut self) -> Self {
        self.retry = false;
        self
    }

    /// Marks a request that must not take effect twice (it creates something, such as a
    /// token): it is retried only when Vault certainly did not act on it — no connection could
    /// be made, or the reply was 412, 429 or 503 — and not after a 500, 502 or 504, a
    /// connection lost after sending, or a timeout, where the first try may have gone
    /// through.
    pub fn not_idempotent(mut self) -> Self {
        self.not_idempotent = true;
        self
    }

    /// Marks a request about the node it reaches (its health, seal state, metrics): the
    /// read-your-writes headers are not sent, so a lagging standby answers for itself rather
    /// than forwarding to the active node. Set already for `sys/health`, `sys/seal-status`,
    /// `sys/leader`, `sys/init`, `sys/unseal`, `sys/metrics`, `sys/host-info`,
    /// `sys/in-flight-req`, `sys/pprof`, `sys/config/state` and `sys/storage/raft/join`.
    pub fn node_local(mut self) -> Self {
        self.node_local = true;
        self
    }

    /// The path below `/v1/`, as given (not percent-encoded).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }
}

/// A reply from Vault with a success status (or one the request accepted).
pub struct Response {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

// Hand-written: the body may hold secrets (a login's token, KV data); only its size shows.
impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl Response {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// A header's value, when present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The raw body.
    pub fn bytes(&self) -> &Bytes {
        &self.body
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `true` when the body is empty (as for 204).
    pub fn is_empty(&self) -> bool {
        self.body.iter().all(u8::is_ascii_whitespace)
    }

    /// Decodes the JSON body.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| self.decode_error(e.to_string()))
    }

    /// Decodes the JSON body, or `None` when it is empty.
    pub fn json_opt<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        if self.is_empty() {
            Ok(None)
        } else {
            self.json().map(Some)
        }
    }

    /// A decode error for this reply. Values that serde quotes in its messages (strings,
    /// numbers, variants) are redacted, since they come from the body and may be secrets.
    pub fn decode_error(&self, message: impl Into<String>) -> Error {
        Error::Decode {
            method: self.method.to_string(),
            path: self.path.clone(),
            status: self.status,
            message: redact_serde_message(&message.into()),
        }
    }

    /// This reply as the [`Error::Api`] the send path makes of an error status (status,
    /// Vault's messages, never the body): for an accepted status whose body is not the
    /// answer the call expects, but an error.
    pub(crate) fn api_error(&self) -> Error {
        api_error(
            &self.method,
            &self.path,
            self.status,
            &self.headers,
            &self.body,
        )
    }

    /// Turns a raw reply into a [`Response`], or into [`Error::Api`] (status and Vault's
    /// messages kept, never the body) when the status is not 2xx and not in `accepted`.
    ///
    /// This is what the send path does with every reply; it is public so the mapping can be
    /// tested without a server.
    #[doc(hidden)]
    pub fn from_parts(
        method: Method,
        path: impl Into<String>,
        status: u16,
        headers: HeaderMap,
        body: impl Into<Bytes>,
        accepted: &[u16],
    ) -> Result<Response> {
        let path = path.into();
        let body = body.into();
        if (200..300).contains(&status) || accepted.contains(&status) {
            return Ok(Response {
                method,
                path,
                status,
                headers,
                body,
            });
        }
        Err(api_error(&method, &path, status, &headers, &body))
    }
}

/// The [`Error::Api`] for an error reply: its status and Vault's messages, never the body;
/// its `Retry-After`, and for a 3xx where it pointed. A body longer than
/// [`MAX_ERROR_BODY_BYTES`] (the send path reads one byte more than that, to tell) is not
/// decoded: the error says it was cut.
pub(crate) fn api_error(
    method: &Method,
    path: &str,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> Error {
    let (errors, warnings, request_id) = if body.len() > MAX_ERROR_BODY_BYTES {
        let cut = format!(
            "(an error body of more than {MAX_ERROR_BODY_BYTES} bytes, not read past that)"
        );
        (vec![cut], Vec::new(), None)
    } else {
        parse_error_body(body)
    };
    let location = (300..400)
        .contains(&status)
        .then(|| headers.get(reqwest::header::LOCATION))
        .flatten()
        .map(|v| {
            v.to_str()
                .map_or_else(|_| "(an unreadable Location)".into(), redirect_target)
        });
    Error::from(ApiError {
        status,
        method: method.to_string(),
        path: path.to_string(),
        errors,
        warnings,
        request_id,
        retry_after: retry_after(headers),
        location,
    })
}

/// Where a redirect points, for messages: the URL without credentials, query or fragment,
/// at most 300 characters. `location` may be relative (`/v1/x`, `//host/x`).
pub(crate) fn redirect_target(location: &str) -> String {
    const MAX_CHARS: usize = 300;
    let location = location.trim();
    let parsed = if location.starts_with("//") {
        // Scheme-relative: parsed with a scheme, shown without it.
        url::Url::parse(&format!("http:{location}")).map(|u| (u, "http:"))
    } else {
        url::Url::parse(location).map(|u| (u, ""))
    };
    let shown = match parsed {
        Ok((mut url, added)) => {
            // Cannot fail for URLs with a host; a URL without one has no credentials.
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            let text: String = url.into();
            text.strip_prefix(added).unwrap_or(&text).to_string()
        }
        // A path: everything before the query or fragment.
        Err(_) => location
            .split(['?', '#'])
            .next()
            .unwrap_or_default()
            .to_string(),
    };
    if shown.chars().count() > MAX_CHARS {
        let mut cut: String = shown.chars().take(MAX_CHARS).collect();
        cut.push('…');
        cut
    } else {
        shown
    }
}

/// The statuses a request accepts as answers besides 2xx: one bit per code from 100 to 611
/// (HTTP status codes in use are 100–599), so requests carry them without allocating.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StatusSet([u64; 8]);

impl StatusSet {
    const FIRST: u16 = 100;

    fn bit(status: u16) -> Option<(usize, u64)> {
        let i = status.checked_sub(Self::FIRST)?;
        (i < 512).then(|| (usize::from(i / 64), 1 << (i % 64)))
    }

    fn insert(&mut self, status: u16) {
        if let Some((word, mask)) = Self::bit(status) {
            self.0[word] |= mask;
        }
    }

    pub(crate) fn contains(&self, status: u16) -> bool {
        Self::bit(status).is_some_and(|(word, mask)| self.0[word] & mask != 0)
    }
}

// Hand-written for reading, not for secrecy: the statuses as a list, not the bit words.
impl std::fmt::Debug for StatusSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries((Self::FIRST..Self::FIRST + 512).filter(|s| self.contains(*s)))
            .finish()
    }
}

/// Maps a raw reply to `T` exactly as the send path followed by [`Response::json`] does: a
/// non-2xx status is [`Error::Api`] keeping the status and Vault's messages, a 2xx body that
/// does not decode is [`Error::Decode`] keeping the status. Never panics.
pub fn decode_reply<T: DeserializeOwned>(
    method: Method,
    path: &str,
    status: u16,
    body: &[u8],
) -> Result<T> {
    Response::from_parts(
        method,
        path,
        status,
        HeaderMap::new(),
        Bytes::copy_from_slice(body),
        &[],
    )?
    .json()
}

/// Redacts the values serde quotes in its messages (`string "..."`, ``integer `5` ``,
/// ``unknown variant `x` ``), keeping field names and positions.
fn redact_serde_message(msg: &str) -> String {
    const BACKTICK_VALUES: [&str; 4] = ["integer ", "floating point ", "character ", "variant "];
    let mut out = String::with_capacity(msg.len());
    let mut i = 0;
    while let Some(c) = msg[i..].chars().next() {
        let rest = &msg[i..];
        if c == '"' {
            let mut escaped = false;
            let mut end = None;
            for (j, ch) in rest.char_indices().skip(1) {
                match ch {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => {
                        end = Some(j);
                        break;
                    }
                    _ => {}
                }
            }
            out.push_str("\"[redacted]\"");
            match end {
                Some(j) => i += j + 1,
                None => break,
            }
            continue;
        }
        if c == '`' && BACKTICK_VALUES.iter().any(|p| out.ends_with(p)) {
            out.push_str("`[redacted]`");
            match rest[1..].find('`') {
                Some(j) => i += j + 2,
                None => break,
            }
            continue;
        }
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Reads Vault's error body into `(errors, warnings, request_id)`. Never fails: a body that
/// is not Vault's JSON still yields the status, and a short plain-text line is kept.
pub(crate) fn parse_error_body(body: &[u8]) -> (Vec<String>, Vec<String>, Option<String>) {
    fn strings(v: Option<&serde_json::Value>) -> Vec<String> {
        match v {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|i| match i {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        }
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(map)) => (
            strings(map.get("errors")),
            strings(map.get("warnings")),
            map.get("request_id")
                .and_then(|v| v.as_str())
                .map(str::to_string),
        ),
        Ok(_) => (Vec::new(), Vec::new(), None),
        Err(_) => {
            // Keep a short single-line plain-text message (e.g. "prometheus is not enabled");
            // anything longer or multi-line is not repeated, since bodies may hold secrets.
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if !text.is_empty()
                && text.len() <= 200
                && !text.contains('\n')
                && !text.contains('{')
                && !text.starts_with('<')
            {
                (vec![text.to_string()], Vec::new(), None)
            } else if text.is_empty() {
                (Vec::new(), Vec::new(), None)
            } else {
                (
                    vec![format!("(a non-JSON body of {} bytes)", body.len())],
                    Vec::new(),
                    None,
                )
            }
        }
    }
}

/// Endpoints that answer about the node itself; see [`Request::node_local`].
const NODE_LOCAL_PATHS: [&str; 11] = [
    "sys/health",
    "sys/seal-status",
    "sys/leader",
    "sys/init",
    "sys/unseal",
    "sys/metrics",
    "sys/host-info",
    "sys/in-flight-req",
    "sys/pprof",
    "sys/config/state",
    "sys/storage/raft/join",
];

fn is_node_local_path(path: &str) -> bool {
    let path = path.trim_start_matches('/');
    if !path.starts_with("sys/") {
        return false;
    }
    let path = path.trim_end_matches('/');
    NODE_LOCAL_PATHS.iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// The reply's `Retry-After` as sent (delay-seconds form only; an HTTP date, or a number too
/// large for a `u64`, is ignored and the backoff applies).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let secs: u64 = v.parse().ok()?;
    Some(Duration::from_secs(secs))
}

/// Refuses, before anything is sent, a request path the server would not take as it is:
/// empty, with a `.` or `..` segment, or with an empty segment (`a//b`; only a trailing `/`
/// is allowed), which Vault's HTTP server answers with a redirect to a cleaned path, so they
/// would address something other than what was asked for; or with a control character, which
/// OpenBao refuses in any path (400), so no stored name has one, and which would reach logs
/// and error messages as it is.
///
/// Every other character is allowed: it is percent-encoded when the URL is built (see
/// [`push_encoded_path`]), so `%2e%2e`, `\`, `?` or `#` are key characters, never path
/// structure or a query.
pub(crate) fn validate_path(path: &str) -> Result<()> {
    if path.is_empty() {
        return Err(Error::InvalidInput("the request path is empty".into()));
    }
    if path.chars().any(char::is_control) {
        return Err(Error::InvalidInput(format!(
            "the path {path:?} has a control character"
        )));
    }
    let segments = path.strip_suffix('/').unwrap_or(path);
    for seg in segments.split('/') {
        if seg == ".." || seg == "." {
            return Err(Error::InvalidInput(format!(
                "the path {path:?} has a '.' or '..' segment"
            )));
        }
        if seg.is_empty() {
            return Err(Error::InvalidInput(format!(
                "the path {path:?} has an empty segment ('//')"
            )));
        }
    }
    Ok(())
}

/// Which bytes of a path are sent as they are: ASCII letters and digits, `-._~` and
/// `$&+,/:;=@`. These are the bytes Go's `url.URL.EscapedPath` leaves alone, so a path is
/// sent exactly as the `vault` and `bao` CLIs send it; every other byte (`%`, `?`, `#`, `\`,
/// space, control characters, each byte of a non-ASCII character) becomes `%XX`.
const PATH_KEEP: [bool; 256] = {
    let mut keep = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        keep[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'$'
                    | b'&'
                    | b'+'
                    | b','
                    | b'/'
                    | b':'
                    | b';'
                    | b'='
                    | b'@'
            );
        b += 1;
    }
    keep
};

/// The length of `path` once percent-encoded by [`push_encoded_path`].
pub(crate) fn encoded_path_len(path: &str) -> usize {
    path.len() + 2 * path.bytes().filter(|&b| !PATH_KEEP[usize::from(b)]).count()
}

/// Appends `path` to `out`, percent-encoded as the `vault` CLI encodes a request path (see
/// [`PATH_KEEP`]). A path with nothing to encode is copied as it is. `out` should have room
/// for [`encoded_path_len`] more bytes, so it is not reallocated.
pub(crate) fn push_encoded_path(out: &mut String, path: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    if path.bytes().all(|b| PATH_KEEP[usize::from(b)]) {
        out.push_str(path);
        return;
    }
    for b in path.bytes() {
        if PATH_KEEP[usize::from(b)] {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

/// Joins path segments with `/`, trimming slashes at the joins. Empty segments are skipped.
pub fn join_path(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies() {
        let (e, w, _) = parse_error_body(br#"{"errors":["permission denied"],"warnings":["w1"]}"#);
        assert_eq!(e, vec!["permission denied"]);
        assert_eq!(w, vec!["w1"]);
        let (e, _, _) = parse_error_body(b"prometheus is not enabled\n");
        assert_eq!(e, vec!["prometheus is not enabled"]);
        let (e, _, _) = parse_error_body(b"<html>\n<body>oops</body></html>");
        assert_eq!(e, vec!["(a non-JSON body of 31 bytes)"]);
        let (e, _, _) = parse_error_body(b"");
        assert!(e.is_empty());
        let (e, _, _) = parse_error_body(br#"{"errors":[1, {"a":2}]}"#);
        assert_eq!(e, vec!["1", r#"{"a":2}"#]);
    }

    #[test]
    fn accepted_statuses() {
        let req = Request::get("sys/health").accept_statuses(&[429, 472, 503, 599, 100, 99, 700]);
        for s in [100, 429, 472, 503, 599] {
            assert!(req.ok_statuses.contains(s), "{s}");
        }
        for s in [99, 101, 200, 404, 501, 600, 700, 0, u16::MAX] {
            assert!(!req.ok_statuses.contains(s), "{s}");
        }
        assert_eq!(
            format!("{:?}", req.ok_statuses),
            "[100, 429, 472, 503, 599]"
        );
    }

    #[test]
    fn queries_are_encoded() {
        let req = Request::list("secret/metadata/a")
            .query("version", "3")
            .query("a b", "c&d=é");
        assert_eq!(req.query, "list=true&version=3&a+b=c%26d%3D%C3%A9");
        assert_eq!(Request::get("x").query("k", "v").query, "k=v");
    }

    #[test]
    fn serde_values_redacted() {
        let m = redact_serde_message(
            r#"invalid type: string "s.sec\"ret", expected u64 at line 1 column 9"#,
        );
        assert_eq!(
            m,
            r#"invalid type: string "[redacted]", expected u64 at line 1 column 9"#
        );
        let m = redact_serde_message("invalid type: integer `424242`, expected a string");
        assert_eq!(m, "invalid type: integer `[redacted]`, expected a string");
        let m = redact_serde_message("unknown variant `hunter2`, expected `a` or `b`");
        assert_eq!(m, "unknown variant `[redacted]`, expected `a` or `b`");
        assert_eq!(
            redact_serde_message("missing field `data`"),
            "missing field `data`"
        );
        assert_eq!(
            redact_serde_message(r#"string "unterminated"#),
            r#"string "[redacted]""#
        );
    }

    #[test]
    fn node_local_paths() {
        for p in [
            "sys/health",
            "/sys/seal-status",
            "sys/metrics",
            "sys/storage/raft/join",
            "sys/pprof/goroutine",
        ] {
            assert!(Request::get(p).node_local, "{p}");
        }
        for p in [
            "sys/healthy",
            "sys/mounts",
            "secret/data/sys/health",
            "sys/storage/raft/configuration",
            "sys/leases/lookup",
        ] {
            assert!(!Request::get(p).node_local, "{p}");
        }
        assert!(Request::get("secret/data/a").node_local().node_local);
    }

    #[test]
    fn request_paths_lose_leading_slashes_only() {
        assert_eq!(Request::get("//secret/data/a/").path(), "secret/data/a/");
        assert_eq!(
            Request::get(String::from("secret/data/a")).path(),
            "secret/data/a"
        );
        assert_eq!(Request::get("/").path(), "");
        assert!(Request::get("///sys/health").node_local);
    }

    /// Token and path problems fail before anything is sent: the address is not listening,
    /// so anything sent would be a transport error instead.
    #[test]
    fn redirect_targets_lose_credentials_query_and_fragment() {
        for (location, shown) in [
            (
                "https://u:p@vault-1:8200/v1/x?t=s.X#f",
                "https://vault-1:8200/v1/x",
            ),
            ("http://vault-1/v1/x", "http://vault-1/v1/x"),
            ("//u@vault-2:8200/v1/y?z", "//vault-2:8200/v1/y"),
            ("/v1/sys/a?list=true#x", "/v1/sys/a"),
            ("  relative/path  ", "relative/path"),
            ("", ""),
        ] {
            assert_eq!(redirect_target(location), shown, "{location}");
        }
        let long = format!("http://h/{}", "é".repeat(1000));
        let shown = redirect_target(&long);
        assert_eq!(shown.chars().count(), 301, "{shown}");
        assert!(shown.ends_with('…'));
    }

    #[test]
    fn error_bodies_past_the_limit_are_not_decoded() {
        let mut body = br#"{"errors":["#.to_vec();
        body.resize(MAX_ERROR_BODY_BYTES + 1, b'a');
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        let e = api_error(&Method::GET, "sys/x", 500, &headers, &body);
        let api = e.api().unwrap_or_else(|| panic!("{e:?}"));
        assert_eq!(
            api.errors,
            vec!["(an error body of more than 8192 bytes, not read past that)"]
        );
        assert_eq!(api.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(api.location, None, "not a 3xx");
        assert!(
            e.to_string().ends_with("(it asked to retry after 7 s)"),
            "{e}"
        );
        // At the limit it is still decoded.
        let mut body = br#"{"errors":["a"]}"#.to_vec();
        body.resize(MAX_ERROR_BODY_BYTES, b' ');
        let e = api_error(&Method::GET, "sys/x", 500, &HeaderMap::new(), &body);
        assert_eq!(
            e.api().map(|a| a.errors.clone()),
            Some(vec!["a".to_string()])
        );
    }

    #[test]
    fn paths() {
        for ok in [
            "secret/data/a b",
            "secret/metadata/",
            "secret/data/x?list=true",
            "secret/data/%2e%2e/%2e%2e/sys",
            r"secret/data/..\..\sys",
            "secret/data/.../..a/a..",
            "secret/data/ü€ a",
        ] {
            assert!(validate_path(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "",
            "secret/data/a\nb",
            "secret/data/\u{0}",
            "secret/data/\u{1b}[31m",
            "secret/data/\u{7f}",
            "secret/data/\u{85}",
            "secret/../sys/seal",
            "..",
            ".",
            "./a",
            "a/.",
            "a/../",
            "a//b",
            "a//",
            "/",
        ] {
            assert!(
                matches!(validate_path(bad), Err(Error::InvalidInput(_))),
                "{bad:?}"
            );
        }
        assert_eq!(join_path(&["/secret/", "data", "/a/b/"]), "secret/data/a/b");
    }

    fn encode(path: &str) -> String {
        let mut out = String::with_capacity(encoded_path_len(path));
        let capacity = out.capacity();
        push_encoded_path(&mut out, path);
        assert_eq!(out.len(), encoded_path_len(path), "{path:?}");
        assert_eq!(out.capacity(), capacity, "{path:?} grew the string");
        out
    }

    /// The bytes Go's `url.URL.EscapedPath` (what the `vault` CLI sends) keeps, the others as
    /// `%XX` with upper-case hex.
    #[test]
    fn paths_are_encoded_as_the_cli_does() {
        let kept = "AZaz09-._~$&+,/:;=@";
        assert_eq!(encode(kept), kept);
        for (raw, sent) in [
            ("per%41", "per%2541"),
            ("a?b", "a%3Fb"),
            ("c#d", "c%23d"),
            (r"back\slash", "back%5Cslash"),
            ("%2e%2e", "%252e%252e"),
            ("sp ace", "sp%20ace"),
            ("ü", "%C3%BC"),
            ("\n\t\u{0}\u{7f}", "%0A%09%00%7F"),
            (
                "\"'<>`{}|^[]!*()",
                "%22%27%3C%3E%60%7B%7D%7C%5E%5B%5D%21%2A%28%29",
            ),
            ("€", "%E2%82%AC"),
            ("", ""),
        ] {
            assert_eq!(encode(raw), sent, "{raw:?}");
        }
    }

    proptest::proptest! {
        /// Any string's encoding decodes back to it, has only the kept bytes and `%XX`, and
        /// never a raw `?`, `#`, `\`, space, control character or a `%` that is not an
        /// escape it made.
        #[test]
        fn encoding_round_trips(raw in "\\PC{0,24}|[%.?#\\\\/ a]{0,12}|[\\x00-\\x1f\\x7f-\\u{10ffff}]{0,8}") {
            let sent = encode(&raw);
            proptest::prop_assert_eq!(crate::test_support::percent_decode(&sent), raw.as_bytes().to_vec());
            proptest::prop_assert!(!sent.contains(['?', '#', '\\', ' ']), "{sent}");
            let bytes = sent.as_bytes();
            for (i, &b) in bytes.iter().enumerate() {
                if b == b'%' {
                    let hex = bytes.get(i + 1..i + 3).unwrap_or_default();
                    proptest::prop_assert!(
                        hex.len() == 2 && hex.iter().all(|h| matches!(h, b'0'..=b'9' | b'A'..=b'F')),
                        "{sent}"
                    );
                } else {
                    proptest::prop_assert!(PATH_KEEP[usize::from(b)], "{sent}");
                }
            }
            // Nothing to encode: the very same text.
            if raw.bytes().all(|b| PATH_KEEP[usize::from(b)]) {
                proptest::prop_assert_eq!(&sent, &raw);
            }
        }
    }
}
