//! The one send path: [`VaultClient::execute`] (and the streamed variant raft snapshots
//! use) adds the headers, the token and the namespace, retries with backoff within the call's
//! deadline, moves on to the next node when one cannot be reached, bounds every body and maps
//! every reply. The request and reply types are in [`request`](super::request).

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use secrecy::ExposeSecret;

use super::request::{
    api_error, retry_after, validate_path, Request, Response, TokenChoice, FORWARD_ACTIVE_NODE,
    INCONSISTENT_HEADER_NAME, INDEX_HEADER, INDEX_HEADER_NAME, NAMESPACE_HEADER_NAME,
    REQUEST_HEADER_NAME, TOKEN_HEADER_NAME,
};
use crate::client::VaultClient;
use crate::config::MAX_ERROR_BODY_BYTES;
use crate::error::{error_chain, Error, Result};

fn is_retryable_status(status: u16) -> bool {
    status == 412 || status == 429 || (status >= 500 && status != 501)
}

/// The longest `Retry-After` honoured per retry (a longer one is waited for this long).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Whether a reqwest error is a TLS certificate problem (never retried).
fn is_tls_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string().to_ascii_lowercase();
        if text.contains("certificate")
            || text.contains("unknownissuer")
            || text.contains("invalid peer")
            || text.contains("tls handshake")
            || text.contains("handshake failure")
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// A reply with a success status (or one the request accepts), before it becomes a
/// [`Response`]: `execute` moves the request's path into that, rather than copying it per
/// attempt.
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

/// Why an exchange ended without a whole reply.
enum Failed {
    Send(reqwest::Error),
    Body(reqwest::Error),
    /// A successful reply (this status) whose body is over the client's limit.
    TooLarge(u16),
}

enum Attempt {
    Done(Reply),
    Retry {
        error: Error,
        wait: Option<Duration>,
        /// Vault certainly did not act on the request (nothing was sent, or the status
        /// says so), so even a [`Request::not_idempotent`] request may be repeated.
        not_processed: bool,
    },
    Fail(Error),
    /// No connection could be made, so nothing was sent: safe to try another address.
    Unreachable(Error),
}

impl VaultClient {
    /// Sends a request: the one send path every API area uses.
    ///
    /// Adds `X-Vault-Request`, the token (marked sensitive) and the namespace; retries
    /// connection errors and HTTP 412, 429 and 5xx except 501 with jittered linear backoff,
    /// honouring `Retry-After` up to 300 s; maps error replies to [`Error::Api`]. Tracing
    /// records the method, path, status and latency, never headers or bodies.
    ///
    /// Bounded: the whole call, attempts and waits, ends by
    /// [`ClientBuilder::max_call_duration`](crate::ClientBuilder::max_call_duration) (no wait
    /// is started that would end past it; the last error is returned instead), a successful
    /// reply's body is read up to
    /// [`ClientBuilder::max_response_bytes`](crate::ClientBuilder::max_response_bytes)
    /// ([`Error::BodyTooLarge`] past it, not retried) and an error reply's up to
    /// [`MAX_ERROR_BODY_BYTES`].
    ///
    /// With several addresses ([`ClientBuilder::addresses`](crate::ClientBuilder::addresses)),
    /// a connection that cannot be made moves the request on to the next address at once
    /// (also for [`no_retry`](Request::no_retry) requests, since nothing was sent); a round
    /// through every address counts as one attempt. With read-your-writes on, the newest
    /// `X-Vault-Index` goes along with `X-Vault-Inconsistent: forward-active-node`. One
    /// redirect (a standby's 307 to the active node) is followed when it points to a
    /// configured address or the same host, and refused otherwise, since the token would go
    /// along.
    ///
    /// (A plain function returning an `async move` block rather than an `async fn`: an
    /// `async fn` keeps its by-value argument twice in its future, and with many requests in
    /// flight every byte of a request's future is memory the CPU cache must hold.)
    #[allow(clippy::manual_async_fn)] // on purpose, see above
    pub fn execute(&self, req: Request) -> impl Future<Output = Result<Response>> + Send + '_ {
        async move {
            validate_path(&req.path)?;
            // No URL pre-check: each attempt builds the URL on the address it uses with `url_at`,
            // which refuses a path that would leave the configured server or `/v1/` before
            // anything is sent (so a bad path fails on the first address, as before).
            let retry = self.retry_policy();
            let options = self.call_options();
            let max_retries = if req.retry && !options.no_retry {
                retry.max_retries
            } else {
                0
            };
            // The whole call, waits included, ends by this deadline (one clock read per
            // call; `None` when it is too far away to represent, i.e. never).
            let max_call = options.timeout.map_or(self.max_call_duration(), |t| {
                t.min(self.max_call_duration())
            });
            let deadline = Instant::now().checked_add(max_call);
            let mut limit = self.timeout().min(max_call);
            let mut attempt: u32 = 0;
            loop {
                match self.attempt_round(&req, limit, deadline).await {
                    Attempt::Done(reply) => {
                        return Ok(Response {
                            method: req.method,
                            path: req.path,
                            status: reply.status,
                            headers: reply.headers,
                            body: reply.body,
                        })
                    }
                    Attempt::Fail(e) | Attempt::Unreachable(e) => return Err(e),
                    Attempt::Retry {
                        error,
                        wait,
                        not_processed,
                    } => {
                        if attempt >= max_retries || (req.not_idempotent && !not_processed) {
                            return Err(error);
                        }
                        attempt += 1;
                        let Some((wait, left)) =
                            retry_wait(&req, retry, attempt, wait, &error, deadline)
                        else {
                            return Err(error);
                        };
                        tokio::time::sleep(wait).await;
                        limit = self.timeout().min(left);
                    }
                }
            }
        }
    }

    /// One attempt of `req` in the failover sense: starting at the address in use, on to the
    /// next one while no connection can be made, at most once through every address. The
    /// address that answers becomes the one in use; a 503 (e.g. a sealed node) makes the
    /// next address the one the retry goes to.
    ///
    /// Each try may take `limit`; a try after an unreachable address gets what is left
    /// before `deadline`, at most `limit`.
    async fn attempt_round(
        &self,
        req: &Request,
        limit: Duration,
        deadline: Option<Instant>,
    ) -> Attempt {
        let count = self.address_count().max(1);
        let mut index = self.current_index();
        let mut tried = 0;
        let mut limit = limit;
        loop {
            match self.attempt(req, index, limit).await {
                Attempt::Unreachable(error) => {
                    tried += 1;
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    if tried >= count || left.is_some_and(|left| left.is_zero()) {
                        self.move_past(index, &error);
                        return Attempt::Retry {
                            error,
                            wait: None,
                            not_processed: true,
                        };
                    }
                    limit = left.map_or(limit, |left| limit.min(left));
                    index = self.move_past(index, &error);
                }
                Attempt::Retry {
                    error,
                    wait,
                    not_processed,
                } if count > 1 && is_unavailable(&error) => {
                    self.move_past(index, &error);
                    return Attempt::Retry {
                        error,
                        wait,
                        not_processed,
                    };
                }
                other => {
                    self.stick_to(index);
                    return other;
                }
            }
        }
    }

    /// Builds the HTTP request for `req`: `X-Vault-Request`, the token (marked sensitive), the
    /// namespace, the read-your-writes index, the request's own headers and its body. Shared by [`execute`](Self::execute)
    /// and [`execute_streaming`](Self::execute_streaming).
    fn build_request(&self, req: &Request, url: url::Url) -> Result<reqwest::Request> {
        fn bad_token() -> Error {
            Error::InvalidInput(
                "the token contains characters that cannot be sent in a header".into(),
            )
        }
        // The client's token header was built (and marked sensitive) when the token was set.
        let token = match &req.token {
            TokenChoice::Client => match self.token_header() {
                Some(header) => Some(header.ok_or_else(bad_token)?),
                None => return Err(Error::MissingToken),
            },
            TokenChoice::ClientIfSet => match self.token_header() {
                Some(header) => Some(header.ok_or_else(bad_token)?),
                None => None,
            },
            TokenChoice::None => None,
            TokenChoice::Explicit(t) => {
                let mut v = HeaderValue::from_str(t.expose_secret()).map_err(|_| bad_token())?;
                v.set_sensitive(true);
                Some(v)
            }
        };
        let mut request = reqwest::Request::new(req.method.clone(), url);
        let headers = request.headers_mut();
        // Not reserved: the map's first insert sizes it for 6 entries, enough for these and
        // reqwest's defaults (accept, user agent), in ~600 bytes. Reserving room for 7 took
        // ~1.2 KB, past glibc's per-thread cache (1,032 bytes) and into its "large" class,
        // whose every allocation takes the arena lock and consolidates the fast bins:
        // measured as +1 locked malloc and +0.8 consolidations per request, and ~30 % more
        // futex calls at 32 in flight.
        headers.insert(REQUEST_HEADER_NAME, HeaderValue::from_static("true"));
        if let Some(token) = token {
            headers.insert(TOKEN_HEADER_NAME, token);
        }
        if let Some(ns) = self.namespace_header() {
            headers.insert(NAMESPACE_HEADER_NAME, ns.clone());
        }
        // The caller's own index header wins over the remembered one; node-local requests
        // (health, seal status, metrics) must be answered by the node they reach.
        if !req.node_local && !req.headers.iter().any(|(name, _)| name == INDEX_HEADER) {
            if let Some(index) = self.index_to_send() {
                headers.insert(INDEX_HEADER_NAME, index);
                headers.insert(
                    INCONSISTENT_HEADER_NAME,
                    HeaderValue::from_static(FORWARD_ACTIVE_NODE),
                );
            }
        }
        for (name, value) in &req.headers {
            headers.append(name.clone(), value.clone());
        }
        if let Some(body) = &req.body {
            if !headers.contains_key(CONTENT_TYPE) {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            *request.body_mut() = Some(body.clone().into());
        }
        Ok(request)
    }

    /// Sends a request whose reply body is left unread for the caller to stream (raft
    /// snapshots), with an optional streamed request body (sent as
    /// `application/octet-stream` unless the request sets a content type) and an optional
    /// timeout replacing the client's for this request. Headers, token and namespace as in
    /// [`execute`](Self::execute); never retried, but a request without a streamed body
    /// moves on to the next address when no connection can be made (nothing was sent); an
    /// error status is read and mapped to [`Error::Api`] as there. `at` sends it to the
    /// configured address with that index only (a raft restore must reach the active node).
    pub(crate) async fn execute_streaming(
        &self,
        req: Request,
        body: Option<reqwest::Body>,
        timeout: Option<Duration>,
        at: Option<usize>,
    ) -> Result<reqwest::Response> {
        validate_path(&req.path)?;
        // The URL (checked by `url_at`) is built per address in the loop, before sending.
        // A streamed body cannot be sent twice: such a request gets one address only.
        let rounds = if body.is_some() || at.is_some() {
            1
        } else {
            self.address_count().max(1)
        };
        let mut body = body;
        let mut index = at.unwrap_or_else(|| self.current_index());
        let mut tried = 0;
        let started = Instant::now();
        let resp = loop {
            let url = self.url_at(index, &req.path, &req.query)?;
            let mut request = self.build_request(&req, url)?;
            if let Some(body) = body.take() {
                if !request.headers().contains_key(CONTENT_TYPE) {
                    request.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    );
                }
                *request.body_mut() = Some(body);
            }
            // reqwest's own per-request timer here: the body is streamed by the caller.
            *request.timeout_mut() = Some(
                timeout
                    .or(self.call_options().timeout)
                    .unwrap_or_else(|| self.timeout()),
            );
            match self.http().execute(request).await {
                Ok(resp) => {
                    self.stick_to(index);
                    break resp;
                }
                Err(e) => {
                    let error = self.transport_error(&req, &e);
                    tried += 1;
                    if !is_unreachable(&e, &error) || tried >= rounds {
                        if is_unreachable(&e, &error) {
                            self.move_past(index, &error);
                        }
                        return Err(error);
                    }
                    index = self.move_past(index, &error);
                }
            }
        };
        self.record_index(resp.headers());
        let status = resp.status().as_u16();
        let latency_ms = started.elapsed().as_millis() as u64;
        tracing::debug!(method = %req.method, path = %req.path, status, latency_ms, "Vault request (streamed)");
        if (200..300).contains(&status) || req.ok_statuses.contains(status) {
            return Ok(resp);
        }
        let mut resp = resp;
        let body = read_error_body(&mut resp)
            .await
            .map_err(|e| self.transport_error(&req, &e))?;
        Err(api_error(
            &req.method,
            &req.path,
            status,
            resp.headers(),
            &body,
        ))
    }

    /// One try of `req` at the address at `index`, within `limit`.
    async fn attempt(&self, req: &Request, index: usize, limit: Duration) -> Attempt {
        // The URL is built (and checked) here, not passed in: a by-value argument of an
        // `async fn` would stay in its future for the whole request.
        let request = match self
            .url_at(index, &req.path, &req.query)
            .and_then(|url| self.build_request(req, url))
        {
            Ok(request) => request,
            Err(error) => return Attempt::Fail(error),
        };

        // The clock is read only when the latency will be logged.
        let started = tracing::enabled!(tracing::Level::DEBUG).then(Instant::now);
        let exchange = async {
            let mut resp = self.http().execute(request).await.map_err(Failed::Send)?;
            let status = resp.status().as_u16();
            // Taken, not cloned: the body is all that is read from `resp` afterwards.
            let headers = std::mem::take(resp.headers_mut());
            // Bounded: a successful reply by the client's limit (over it is an error), an
            // error reply by MAX_ERROR_BODY_BYTES (the rest is not read).
            let body = if (200..300).contains(&status) || req.ok_statuses.contains(status) {
                read_body(&mut resp, self.max_response_bytes())
                    .await
                    .map_err(Failed::Body)?
                    .ok_or(Failed::TooLarge(status))?
            } else {
                read_error_body(&mut resp).await.map_err(Failed::Body)?
            };
            Ok((status, headers, body))
        };
        // The timeout covers sending and the whole body. It is this future's own timer,
        // not reqwest's, which would add a boxed timer and a body wrapper per request.
        let (status, headers, body) = match tokio::time::timeout(limit, exchange).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(Failed::Send(e))) => return self.send_failed(req, &e, started),
            Ok(Err(Failed::Body(e))) => return self.body_failed(req, &e),
            Ok(Err(Failed::TooLarge(status))) => return self.too_large(req, status),
            Err(_) => return self.timed_out(req, limit, started),
        };
        self.record_index(&headers);
        if started.is_some() {
            log_reply(req, status, started);
        }
        if (200..300).contains(&status) || req.ok_statuses.contains(status) {
            return Attempt::Done(Reply {
                status,
                headers,
                body,
            });
        }
        error_reply(req, status, &headers, &body)
    }

    /// A successful reply whose body is over the limit: deterministic, so not retried. Its
    /// connection is closed with the unread rest when the reply is dropped.
    #[cold]
    #[inline(never)]
    fn too_large(&self, req: &Request, status: u16) -> Attempt {
        let error = Error::BodyTooLarge {
            method: req.method.to_string(),
            path: req.path.clone(),
            status,
            limit: self.max_response_bytes(),
        };
        tracing::debug!(method = %req.method, path = %req.path, status, error = %error, "Vault request failed");
        Attempt::Fail(error)
    }

    // The failure paths below are out of line (and marked cold) so the path every successful
    // request takes stays compact in the instruction cache.

    /// The send failed: no reply at all.
    #[cold]
    #[inline(never)]
    fn send_failed(&self, req: &Request, e: &reqwest::Error, started: Option<Instant>) -> Attempt {
        let error = self.transport_error(req, e);
        let latency_ms = started.map_or(0, |t| t.elapsed().as_millis() as u64);
        tracing::debug!(method = %req.method, path = %req.path, latency_ms, error = %error, "Vault request failed");
        // TLS certificate failures, refused redirects and unbuildable requests are
        // deterministic: repeating them only delays the error.
        match &error {
            Error::Transport { tls: true, .. } => Attempt::Fail(error),
            _ if e.is_redirect() || e.is_builder() => Attempt::Fail(error),
            _ if is_unreachable(e, &error) => Attempt::Unreachable(error),
            _ => Attempt::Retry {
                error,
                wait: None,
                not_processed: false,
            },
        }
    }

    /// No complete reply within the attempt's time (the client's timeout, or less when the
    /// call's deadline is nearer). Retried like a lost reply: the request may have reached
    /// Vault.
    #[cold]
    #[inline(never)]
    fn timed_out(&self, req: &Request, limit: Duration, started: Option<Instant>) -> Attempt {
        let error = Error::Timeout {
            method: req.method.to_string(),
            path: req.path.clone(),
            timeout: limit,
        };
        let latency_ms = started.map_or(0, |t| t.elapsed().as_millis() as u64);
        tracing::debug!(method = %req.method, path = %req.path, latency_ms, error = %error, "Vault request failed");
        Attempt::Retry {
            error,
            wait: None,
            not_processed: false,
        }
    }

    /// The reply's body could not be read (the connection broke after the request was sent).
    #[cold]
    #[inline(never)]
    fn body_failed(&self, req: &Request, e: &reqwest::Error) -> Attempt {
        Attempt::Retry {
            error: self.transport_error(req, e),
            wait: None,
            not_processed: false,
        }
    }

    fn transport_error(&self, req: &Request, e: &reqwest::Error) -> Error {
        if e.is_timeout() {
            return Error::Timeout {
                method: req.method.to_string(),
                path: req.path.clone(),
                timeout: self.timeout(),
            };
        }
        let mut message = error_chain(e);
        // reqwest prints the URL; it holds no secret, but keep messages short and stable.
        if let Some(url) = e.url() {
            message = message.replace(&format!(" ({url})"), "");
        }
        Error::Transport {
            method: req.method.to_string(),
            path: req.path.clone(),
            tls: is_tls_error(e),
            message,
        }
    }
}

/// The wait before retry number `attempt` (the reply's `Retry-After` up to
/// [`MAX_RETRY_AFTER`], else the backoff) and the time left after it before `deadline`,
/// logged with the error that caused it; `None` when the wait would not end before the
/// deadline, so the call is to fail now rather than sleep past it.
#[cold]
#[inline(never)]
fn retry_wait(
    req: &Request,
    retry: &crate::RetryPolicy,
    attempt: u32,
    retry_after: Option<Duration>,
    error: &Error,
    deadline: Option<Instant>,
) -> Option<(Duration, Duration)> {
    let wait = retry_after.map_or_else(|| retry.backoff(attempt), |w| w.min(MAX_RETRY_AFTER));
    let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
    let left = match deadline {
        None => Duration::MAX,
        Some(deadline) => {
            let now = Instant::now();
            match now.checked_add(wait).filter(|end| *end < deadline) {
                Some(end) => deadline.saturating_duration_since(end),
                None => {
                    tracing::debug!(
                        method = %req.method,
                        path = %req.path,
                        attempt,
                        wait_ms,
                        retry_after_s = retry_after.map(|w| w.as_secs()),
                        error = %error,
                        "not retrying Vault request: the wait would pass the call's deadline"
                    );
                    return None;
                }
            }
        }
    };
    tracing::debug!(
        method = %req.method,
        path = %req.path,
        attempt,
        wait_ms,
        error = %error,
        "retrying Vault request"
    );
    Some((wait, left))
}

/// Logs a reply at `debug` (method, path, status, latency; never headers or bodies).
#[inline(never)]
fn log_reply(req: &Request, status: u16, started: Option<Instant>) {
    let latency_ms = started.map_or(0, |t| t.elapsed().as_millis() as u64);
    tracing::debug!(method = %req.method, path = %req.path, status, latency_ms, "Vault request");
}

/// An error status: [`Error::Api`] with Vault's messages, retried when the status allows.
#[cold]
#[inline(never)]
fn error_reply(req: &Request, status: u16, headers: &HeaderMap, body: &[u8]) -> Attempt {
    let error = api_error(&req.method, &req.path, status, headers, body);
    if is_retryable_status(status) {
        Attempt::Retry {
            error,
            wait: retry_after(headers),
            // Index not reached, rate limited, sealed or no active node: not acted on.
            not_processed: matches!(status, 412 | 429 | 503),
        }
    } else {
        Attempt::Fail(error)
    }
}

/// The whole reply body, or `None` as soon as it is known to be longer than `limit` bytes
/// (from its `Content-Length`, or chunk by chunk), with the rest left unread. A body that
/// arrives in one chunk (Vault's replies mostly do) is returned as it is, without a copy.
/// Chunk by chunk rather than `Response::bytes`, whose future is several times larger: with
/// many requests in flight every byte of a request's future is memory the CPU cache must
/// hold.
async fn read_body(resp: &mut reqwest::Response, limit: usize) -> reqwest::Result<Option<Bytes>> {
    if resp
        .content_length()
        .is_some_and(|len| len > u64::try_from(limit).unwrap_or(u64::MAX))
    {
        return Ok(None);
    }
    let Some(first) = resp.chunk().await? else {
        return Ok(Some(Bytes::new()));
    };
    if first.len() > limit {
        return Ok(None);
    }
    let Some(second) = resp.chunk().await? else {
        return Ok(Some(first));
    };
    let mut len = first.len().saturating_add(second.len());
    if len > limit {
        return Ok(None);
    }
    let mut body = bytes::BytesMut::with_capacity(len);
    body.extend_from_slice(&first);
    body.extend_from_slice(&second);
    while let Some(chunk) = resp.chunk().await? {
        len = len.saturating_add(chunk.len());
        if len > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body.freeze()))
}

/// The start of an error reply's body: at most [`MAX_ERROR_BODY_BYTES`] + 1 bytes (the one
/// more tells [`api_error`] the body was longer), the rest left unread.
async fn read_error_body(resp: &mut reqwest::Response) -> reqwest::Result<Bytes> {
    let mut body = bytes::BytesMut::new();
    while body.len() <= MAX_ERROR_BODY_BYTES {
        let Some(chunk) = resp.chunk().await? else {
            break;
        };
        let room = MAX_ERROR_BODY_BYTES + 1 - body.len();
        body.extend_from_slice(chunk.get(..room).unwrap_or(&chunk));
    }
    Ok(body.freeze())
}

/// Whether a send failed before a connection existed (refused, unreachable, DNS, connect
/// timeout), so the request was not sent and may go to another node. TLS certificate
/// failures are not: they are configuration errors, reported at once.
fn is_unreachable(e: &reqwest::Error, error: &Error) -> bool {
    e.is_connect() && !matches!(error, Error::Transport { tls: true, .. })
}

/// A 503 reply: the node cannot serve now (sealed, or a standby without an active node).
fn is_unavailable(error: &Error) -> bool {
    matches!(error, Error::Api(api) if api.status == 503)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::RETRY_AFTER;

    #[test]
    fn retryable_statuses() {
        for s in [412, 429, 500, 502, 503, 504] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [400, 401, 403, 404, 405, 501] {
            assert!(!is_retryable_status(s), "{s}");
        }
    }

    #[tokio::test]
    async fn bad_tokens_and_paths_fail_before_sending() {
        let c = VaultClient::new("http://127.0.0.1:1").unwrap_or_else(|e| panic!("{e}"));
        let e = c.execute(Request::get("sys/mounts")).await;
        assert!(matches!(e, Err(Error::MissingToken)), "{e:?}");
        c.set_token(crate::VaultToken::from("s.bad\ntoken"));
        for choice in [TokenChoice::Client, TokenChoice::ClientIfSet] {
            let e = c.execute(Request::get("sys/mounts").token(choice)).await;
            assert!(
                matches!(&e, Err(Error::InvalidInput(m)) if m.contains("token")),
                "{e:?}"
            );
        }
        let explicit = TokenChoice::Explicit(crate::VaultToken::from("s.bad\rx"));
        let e = c.execute(Request::get("sys/mounts").token(explicit)).await;
        assert!(
            matches!(&e, Err(Error::InvalidInput(m)) if m.contains("token")),
            "{e:?}"
        );
        c.set_token(crate::VaultToken::from("s.good"));
        for hostile in [
            "secret/../sys/seal",
            "../sys/seal",
            "secret/./data/a",
            "secret/data/..",
            "secret//data/a",
            "secret/data/a//",
            "",
        ] {
            let e = c.execute(Request::get(hostile).no_retry()).await;
            assert!(matches!(e, Err(Error::InvalidInput(_))), "{hostile}: {e:?}");
        }
        // A good path and token do get sent (and find nobody listening).
        let e = c.execute(Request::get("sys/mounts").no_retry()).await;
        assert!(matches!(e, Err(Error::Transport { .. })), "{e:?}");
    }

    #[test]
    fn retry_waits_are_clamped_and_kept_before_the_deadline() {
        let req = Request::get("sys/x");
        let policy = crate::RetryPolicy::default();
        let e = Error::InvalidInput("x".into());
        // Retry-After is honoured up to 300 s, and a huge one neither panics nor overflows.
        let far = Instant::now().checked_add(Duration::from_secs(3600));
        let (wait, left) = retry_wait(&req, &policy, 1, Some(Duration::MAX), &e, far)
            .unwrap_or_else(|| panic!("300 s fits in an hour"));
        assert_eq!(wait, MAX_RETRY_AFTER);
        assert!(left <= Duration::from_secs(3300) && left > Duration::from_secs(3290));
        // Past the deadline: no wait at all.
        let near = Instant::now().checked_add(Duration::from_secs(10));
        assert!(retry_wait(&req, &policy, 1, Some(Duration::from_secs(11)), &e, near).is_none());
        let huge_backoff = crate::RetryPolicy {
            max_retries: 1,
            min_wait: Duration::MAX,
            max_wait: Duration::MAX,
        };
        assert!(retry_wait(&req, &huge_backoff, u32::MAX, None, &e, near).is_none());
        // No deadline: the wait as computed, all the time in the world after it.
        let (wait, left) = retry_wait(&req, &huge_backoff, u32::MAX, None, &e, None)
            .unwrap_or_else(|| panic!("no deadline"));
        assert_eq!(
            (wait, left),
            (Duration::from_nanos(u64::MAX), Duration::MAX)
        );
        // Only the delay-seconds form is read.
        let mut h = HeaderMap::new();
        for (v, want) in [
            ("120", Some(Duration::from_secs(120))),
            ("18446744073709551615", Some(Duration::from_secs(u64::MAX))),
            ("18446744073709551616", None),
            ("Wed, 21 Oct 2015 07:28:00 GMT", None),
            ("-1", None),
        ] {
            h.insert(RETRY_AFTER, HeaderValue::from_static(v));
            assert_eq!(retry_after(&h), want, "{v}");
        }
    }
}
