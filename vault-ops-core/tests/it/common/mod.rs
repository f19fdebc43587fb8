//! Helpers shared by the integration tests: each test module says `use crate::common;` and
//! uses the part it needs.
#![allow(dead_code)]

use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::json;
use vault_ops_core::api::tokens::TokenCreateRequest;
use vault_ops_core::{ApiError, AuthInfo, ClientBuilder, Error, VaultClient};
use vault_ops_testkit::BaoServer;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------------------------------------
// Clients for real servers
// ---------------------------------------------------------------------------------------------

/// A client for `addr` with `token` and the default retry policy.
pub fn client_at(addr: &str, token: &str) -> VaultClient {
    VaultClient::builder()
        .address(addr)
        .token(token)
        .build()
        .unwrap_or_else(|e| panic!("building a client for {addr}: {e}"))
}

/// A new raft node, initialised and unsealed, with a `kv` (v1) mount holding `kv/app` =
/// `{"v": v}`, and a root client for it.
pub async fn raft_node_with_kv(v: &str) -> (vault_ops_testkit::BaoConfigServer, VaultClient) {
    let node = vault_ops_testkit::BaoConfigServer::start_raft_node("node1").await;
    let init = node.init_and_unseal().await;
    let c = client_at(&node.addr(), &init.root_token);
    c.generic()
        .write_raw("sys/mounts/kv", &json!({"type": "kv"}))
        .await
        .unwrap();
    c.generic()
        .write_raw("kv/app", &json!({ "v": v }))
        .await
        .unwrap();
    (node, c)
}

/// A client for a dev server, with its root token.
pub fn root_client(bao: &BaoServer) -> VaultClient {
    client_at(&bao.addr(), bao.root_token())
}

/// A new dev server and a client for it with its root token.
pub async fn dev_server() -> (BaoServer, VaultClient) {
    let bao = BaoServer::start().await;
    let c = root_client(&bao);
    (bao, c)
}

/// Writes the ACL policy `name` with the HCL text `hcl`.
pub async fn write_policy(c: &VaultClient, name: &str, hcl: &str) {
    c.generic()
        .write_raw(
            &format!("sys/policies/acl/{name}"),
            &json!({ "policy": hcl }),
        )
        .await
        .unwrap_or_else(|e| panic!("writing policy {name}: {e}"));
}

/// The TTL of the tokens [`narrow_auth`] creates.
pub const NARROW_TTL_SECS: u64 = 600;

/// Writes policy `name` (`hcl`) and creates a child token of `c`'s token with that policy
/// (and `default`), valid for [`NARROW_TTL_SECS`].
pub async fn narrow_auth(c: &VaultClient, name: &str, hcl: &str) -> AuthInfo {
    write_policy(c, name, hcl).await;
    c.tokens()
        .create(&TokenCreateRequest::with_policies([name]).ttl(format!("{NARROW_TTL_SECS}s")))
        .await
        .unwrap_or_else(|e| panic!("creating a token with policy {name}: {e}"))
}

/// Like [`narrow_auth`], returning a client that uses the new token.
pub async fn narrow_client(c: &VaultClient, name: &str, hcl: &str) -> VaultClient {
    c.with_token(narrow_auth(c, name, hcl).await.client_token)
}

/// The API error inside `e` (panics with `e` when it is another kind of error).
pub fn api_error(e: &Error) -> &ApiError {
    e.api()
        .unwrap_or_else(|| panic!("expected an API error, got {e:?}"))
}

/// The string field `v` of what `c` reads at `path` (e.g. a KV v1 secret); `None` when there
/// is nothing there or the read fails (e.g. while a node restores a snapshot).
pub async fn read_v(c: &VaultClient, path: &str) -> Option<String> {
    c.generic()
        .read::<serde_json::Value>(path)
        .await
        .ok()
        .flatten()
        .and_then(|r| r.data["v"].as_str().map(str::to_string))
}

/// Polls `check` every 200 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        tokio::time::sleep(ms(200)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// wiremock servers and clients for them
// ---------------------------------------------------------------------------------------------

/// A builder for `addresses` with `token` and fast retries (5-10 ms apart).
pub fn fast<I, S>(addresses: I, token: &str) -> ClientBuilder
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    VaultClient::builder()
        .addresses(addresses)
        .token(token)
        .retry_wait(ms(5), ms(10))
}

/// A loopback listener that accepts connections and closes each at once (a node that dies
/// before replying), counting them; bounded to `max` connections, the task ends with the
/// test's runtime. Returns its port and the count.
pub async fn dropping_listener(max: usize) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        for _ in 0..max {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(sock);
        }
    });
    (port, count)
}

/// A loopback port with nothing listening on it.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}

/// A loopback address with nothing listening on it.
pub fn dead_addr() -> String {
    format!("http://127.0.0.1:{}", closed_port())
}

/// Makes `server` answer `m p` (a path starting with `/v1/`) with `resp`.
pub async fn mount(server: &MockServer, m: &str, p: &str, resp: ResponseTemplate) {
    Mock::given(method(m))
        .and(path(p))
        .respond_with(resp)
        .mount(server)
        .await;
}

/// Vault's reply while sealed: 503 `{"errors":["Vault is sealed"]}`.
pub fn sealed_reply() -> ResponseTemplate {
    ResponseTemplate::new(503).set_body_json(json!({"errors": ["Vault is sealed"]}))
}

/// Makes `server` answer `m p` with `first` once, then with `then`.
pub async fn mount_then(
    server: &MockServer,
    m: &str,
    p: &str,
    first: ResponseTemplate,
    then: ResponseTemplate,
) {
    Mock::given(method(m))
        .and(path(p))
        .respond_with(first)
        .up_to_n_times(1)
        .with_priority(1)
        .mount(server)
        .await;
    mount(server, m, p, then).await;
}

/// How many requests the server received for `p` (a path starting with `/v1/`).
pub async fn hits(server: &MockServer, p: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == p)
        .count()
}

/// A header of a request the mock server received, when it is text.
pub fn header<'a>(r: &'a wiremock::Request, name: &str) -> Option<&'a str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

// ---------------------------------------------------------------------------------------------
// Configuration lookups and captured logs
// ---------------------------------------------------------------------------------------------

/// A lookup over a fixed map, for `ClientBuilder::from_lookup` (no process environment).
pub fn lookup<K: ToString, V: ToString>(pairs: &[(K, V)]) -> impl Fn(&str) -> Option<String> {
    let map: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

/// A buffer the tracing subscriber writes into.
#[derive(Clone, Default)]
pub struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
    type Writer = LogBuf;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl LogBuf {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(
            &self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
        .into_owned()
    }
}

/// Installs (once, for the whole test binary) a subscriber with the env-filter `filter`
/// writing into a buffer, and returns the buffer. It is global: every test running in the
/// binary meanwhile logs into it too. The first call's filter is the one installed.
pub fn logs(filter: &str) -> &'static LogBuf {
    static LOGS: OnceLock<LogBuf> = OnceLock::new();
    LOGS.get_or_init(|| {
        use tracing_subscriber::util::SubscriberInitExt;
        let buf = LogBuf::default();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(buf.clone())
            .with_ansi(false)
            .finish()
            .try_init()
            .unwrap_or_else(|e| panic!("installing the tracing subscriber: {e}"));
        buf
    })
}
