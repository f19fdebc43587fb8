//! Shared by the benches: the canned server, the real-server setup, the client arms, the
//! concurrent driver and where reports are written.
//!
//! The canned server runs in its own process (this bench binary re-executed with
//! [`ROLE_ENV`] set), so the client's CPU and memory can be measured apart from it and its
//! work does not run on the client's tokio runtime.

#![allow(dead_code)] // each bench binary uses a different subset

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Set to [`ROLE_SERVER`] to make a bench binary run the canned server instead of benches.
pub const ROLE_ENV: &str = "VAULT_OPS_BENCH_ROLE";
/// The value of [`ROLE_ENV`] for the canned server.
pub const ROLE_SERVER: &str = "canned-server";

/// The KV v2 mount.
pub const MOUNT: &str = "secret";
/// The secret read by the read benches.
pub const READ_PATH: &str = "bench/app";
/// The folder listed by the list benches (holds [`LIST_KEYS`] secrets).
pub const LIST_PATH: &str = "bench/list";
/// How many secrets the list folder holds.
pub const LIST_KEYS: usize = 5;
/// Writes cycle over this many secrets.
pub const WRITE_PATHS: u64 = 64;

/// The secret: 5 string fields (plain `String`s in every arm, so each decodes the same).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
    /// Host.
    pub host: String,
    /// Port.
    pub port: String,
    /// Database.
    pub database: String,
}

impl Secret {
    /// The value stored in both servers.
    pub fn sample() -> Secret {
        Secret {
            username: "app-user".into(),
            password: "9f3b2c7e1d4a8f6b0c5e7d9a".into(),
            host: "db.internal.example".into(),
            port: "5432".into(),
            database: "orders".into(),
        }
    }
}

/// The path of the `i`-th write.
pub fn write_path(i: u64) -> String {
    format!("bench/write/k{}", i % WRITE_PATHS)
}

// ---------------------------------------------------------------------------------------------
// The canned server
// ---------------------------------------------------------------------------------------------

/// Bodies copied from OpenBao 2.7.2 dev server replies.
const READ_BODY: &str = r#"{"request_id":"dd00800b-20cc-b5c2-550d-d1ccb7de98d8","lease_id":"","renewable":false,"lease_duration":0,"data":{"data":{"database":"orders","host":"db.internal.example","password":"9f3b2c7e1d4a8f6b0c5e7d9a","port":"5432","username":"app-user"},"metadata":{"created_time":"2026-11-28T17:56:49.842719266Z","custom_metadata":null,"deletion_time":"","destroyed":false,"version":1}},"wrap_info":null,"warnings":null,"auth":null}"#;
const KV_MOUNT_BODY: &str = r#"{"request_id":"0e4b8a36-52b0-7a3c-3f7c-64a3c1f1a0d2","lease_id":"","renewable":false,"lease_duration":0,"data":{"options":{"version":"2"},"path":"secret/","type":"kv"},"wrap_info":null,"warnings":null,"auth":null}"#;
const WRITE_BODY: &str = r#"{"request_id":"b7304b9c-7c0a-37c6-23af-04d74c6c57f8","lease_id":"","renewable":false,"lease_duration":0,"data":{"created_time":"2026-11-28T17:56:49.842719266Z","custom_metadata":null,"deletion_time":"","destroyed":false,"version":1},"wrap_info":null,"warnings":null,"auth":null}"#;
const LIST_BODY: &str = r#"{"request_id":"bf6c1b04-3a86-b07f-3e99-ef48cb63cd71","lease_id":"","renewable":false,"lease_duration":0,"data":{"keys":["key-1","key-2","key-3","key-4","key-5"]},"wrap_info":null,"warnings":null,"auth":null}"#;
const LOOKUP_BODY: &str = r#"{"request_id":"4f38ac90-afb4-b9b0-1fa6-a2b54cb15d4c","lease_id":"","renewable":false,"lease_duration":0,"data":{"accessor":"NY8Dk1UR6LOruUy4EXSjnbxF","creation_time":1795888608,"creation_ttl":0,"display_name":"token","entity_id":"","expire_time":null,"explicit_max_ttl":0,"id":"canned-token","issue_time":"2026-11-28T17:56:48.503155997Z","meta":null,"num_uses":0,"orphan":true,"path":"auth/token/create","policies":["root"],"renewable":false,"ttl":0,"type":"service"},"wrap_info":null,"warnings":null,"auth":null}"#;
const NOT_FOUND_BODY: &str = r#"{"errors":[]}"#;

/// Whole HTTP/1.1 replies (head and body), built once.
struct Replies {
    read: Vec<u8>,
    write: Vec<u8>,
    list: Vec<u8>,
    lookup: Vec<u8>,
    kv_mount: Vec<u8>,
    not_found: Vec<u8>,
    bad_request: Vec<u8>,
}

fn reply(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nCache-Control: no-store\r\nContent-Type: application/json\r\n\
         Date: Sat, 28 Nov 2026 17:56:49 GMT\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl Replies {
    fn new() -> Replies {
        Replies {
            read: reply("200 OK", READ_BODY),
            write: reply("200 OK", WRITE_BODY),
            list: reply("200 OK", LIST_BODY),
            lookup: reply("200 OK", LOOKUP_BODY),
            kv_mount: reply("200 OK", KV_MOUNT_BODY),
            not_found: reply("404 Not Found", NOT_FOUND_BODY),
            bad_request: reply(
                "400 Bad Request",
                r#"{"errors":["canned server: unsupported request"]}"#,
            ),
        }
    }

    /// The reply for a request head (request line and headers, without the blank line).
    fn route(&self, head: &[u8]) -> &[u8] {
        let line_end = head.iter().position(|&b| b == b'\r').unwrap_or(head.len());
        let mut parts = head[..line_end].split(|&b| b == b' ');
        let method = parts.next().unwrap_or_default();
        let target = parts.next().unwrap_or_default();
        let (path, query) = match target.iter().position(|&b| b == b'?') {
            Some(q) => (&target[..q], &target[q + 1..]),
            None => (target, &target[target.len()..]),
        };
        let is_list = method == b"LIST" || query.windows(9).any(|w| w == b"list=true");
        if is_list && path.starts_with(b"/v1/secret/metadata/") {
            &self.list
        } else if path.starts_with(b"/v1/secret/data/") {
            match method {
                b"GET" => &self.read,
                b"POST" | b"PUT" => &self.write,
                _ => &self.bad_request,
            }
        } else if path == b"/v1/auth/token/lookup-self" {
            &self.lookup
        } else if path.starts_with(b"/v1/sys/internal/ui/mounts/secret") {
            // The `bao kv` CLI asks which KV version a path has before each command.
            &self.kv_mount
        } else {
            &self.not_found
        }
    }
}

/// The value of the `Content-Length` header in a request head (0 when absent); `None` for a
/// chunked body, which the canned server does not support.
fn body_length(head: &[u8]) -> Option<usize> {
    let mut len = 0;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            len = std::str::from_utf8(value).ok()?.trim().parse().ok()?;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return None;
        }
    }
    Some(len)
}

/// One keep-alive connection: answer every complete request in the buffer, then read more.
async fn serve_connection(mut stream: TcpStream, replies: Arc<Replies>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    loop {
        let mut start = 0;
        while let Some(end) = buf[start..].windows(4).position(|w| w == b"\r\n\r\n") {
            let head = &buf[start..start + end];
            let Some(body) = body_length(head) else {
                stream.write_all(&replies.bad_request).await?;
                return Ok(());
            };
            let total = end + 4 + body;
            if buf.len() - start < total {
                break;
            }
            stream.write_all(replies.route(head)).await?;
            start += total;
        }
        buf.drain(..start);
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

/// Runs the canned server when this process was started as one (never returns then);
/// returns otherwise. Call first thing in `main`.
pub fn serve_if_server() {
    if std::env::var(ROLE_ENV).as_deref() != Ok(ROLE_SERVER) {
        return;
    }
    // Exit when the parent goes away (it holds our stdin).
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap_or_else(|e| panic!("canned server: runtime: {e}"));
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("canned server: bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("canned server: local_addr: {e}"));
        println!("LISTENING http://{addr}");
        let replies = Arc::new(Replies::new());
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let replies = replies.clone();
                    tokio::spawn(async move {
                        let _ = serve_connection(stream, replies).await;
                    });
                }
                Err(e) => eprintln!("canned server: accept: {e}"),
            }
        }
    });
    std::process::exit(0);
}

/// The canned server, in a child process (this bench binary re-executed); killed on drop.
pub struct CannedServer {
    child: Child,
    addr: String,
}

impl CannedServer {
    /// Starts it and waits for its address.
    pub fn start() -> CannedServer {
        let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
        let mut child = Command::new(exe)
            .env(ROLE_ENV, ROLE_SERVER)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting the canned server: {e}"));
        let stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("canned server: no stdout"));
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("canned server: reading its address: {e}"));
        let addr = line
            .trim()
            .strip_prefix("LISTENING ")
            .unwrap_or_else(|| panic!("canned server: unexpected first line {line:?}"))
            .to_string();
        CannedServer { child, addr }
    }

    /// `http://127.0.0.1:P`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for CannedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server the arms are measured against.
pub struct Target {
    /// `canned` or `bao`, as in the bench ids.
    pub name: &'static str,
    /// Its address.
    pub addr: String,
    /// The token to send.
    pub token: String,
}

/// The two servers of the `kv` and `report` benches, running until dropped.
pub struct Servers {
    canned: CannedServer,
    bao: vault_ops_testkit::BaoServer,
}

impl Servers {
    /// Starts the canned server and an OpenBao dev server, and seeds the latter.
    pub fn start(rt: &tokio::runtime::Runtime) -> Servers {
        let canned = CannedServer::start();
        let bao = rt.block_on(vault_ops_testkit::BaoServer::start());
        rt.block_on(seed_real_server(&bao.addr(), bao.root_token()));
        Servers { canned, bao }
    }

    /// Both, canned first.
    pub fn targets(&self) -> [Target; 2] {
        [
            Target {
                name: "canned",
                addr: self.canned.addr().to_string(),
                token: CANNED_TOKEN.to_string(),
            },
            Target {
                name: "bao",
                addr: self.bao.addr(),
                token: self.bao.root_token().to_string(),
            },
        ]
    }
}

impl Servers {
    /// The servers' process ids (the canned server's, OpenBao's).
    pub fn pids(&self) -> [u32; 2] {
        [self.canned.pid(), self.bao.pid()]
    }
}

/// Where the client and the servers run. At 1 request in flight, unpinned, throughput on a
/// 2-vCPU VM is bimodal (~10 k/s or ~38 k/s on the canned server, for every arm alike),
/// depending on whether the scheduler puts client and server on the same CPU, and each
/// request pays cross-CPU wake-ups that dwarf the client's own cost; so at 1 in flight this
/// process (and every process it starts from then on: the client children, hvac, the `bao`
/// CLI) runs on the first allowed CPU and the servers on the last. At 32 in flight
/// everything may run anywhere (the client needs both CPUs). Uses `taskset` (util-linux);
/// without it, or with `VAULT_OPS_BENCH_PIN=0` or a single CPU, nothing is pinned.
pub struct Placement {
    /// The CPUs this process may use at start (`Cpus_allowed_list`), and the first and
    /// last of them; `None` when pinning is off.
    cpus: Option<(String, usize, usize)>,
    servers: Vec<u32>,
    pinned: std::cell::Cell<Option<bool>>,
}

impl Placement {
    /// Placement for this process and the servers `servers` (process ids).
    pub fn new(servers: &[u32]) -> Placement {
        let allowed = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                    .map(|l| l.trim().to_string())
            })
            .unwrap_or_default();
        let cpus: Vec<usize> = allowed
            .split(',')
            .flat_map(|part| {
                let (a, b) = part.split_once('-').unwrap_or((part, part));
                let a: usize = a.trim().parse().unwrap_or(usize::MAX);
                let b: usize = b.trim().parse().unwrap_or(0);
                (a..=b).collect::<Vec<_>>()
            })
            .collect();
        let off = std::env::var("VAULT_OPS_BENCH_PIN").is_ok_and(|v| v == "0");
        let have_taskset = Command::new("taskset")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        let cpus = match (cpus.first(), cpus.last()) {
            (Some(&first), Some(&last)) if first != last && !off && have_taskset => {
                Some((allowed, first, last))
            }
            _ => {
                if !off {
                    eprintln!(
                        "placement: not pinning at 1 in flight (CPUs {allowed:?}, taskset {})",
                        if have_taskset { "found" } else { "missing" }
                    );
                }
                None
            }
        };
        Placement {
            cpus,
            servers: servers.to_vec(),
            pinned: std::cell::Cell::new(None),
        }
    }

    /// Pins (at 1 in flight) or unpins (otherwise) this process and the servers.
    pub fn apply(&self, in_flight: usize) {
        let Some((all, first, last)) = &self.cpus else {
            return;
        };
        let pin = in_flight == 1;
        if self.pinned.get() == Some(pin) {
            return;
        }
        let (mine, theirs) = if pin {
            (first.to_string(), last.to_string())
        } else {
            (all.clone(), all.clone())
        };
        set_affinity(std::process::id(), &mine);
        for &pid in &self.servers {
            set_affinity(pid, &theirs);
        }
        self.pinned.set(Some(pin));
    }
}

/// Every thread of process `pid` may run on `cpus` (a `taskset` CPU list) only.
fn set_affinity(pid: u32, cpus: &str) {
    let out = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .output()
        .unwrap_or_else(|e| panic!("running taskset: {e}"));
    assert!(
        out.status.success(),
        "taskset -a -p -c {cpus} {pid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The target directory: `CARGO_TARGET_DIR`, else the one holding this binary
/// (`<target>/<profile>/deps/<exe>`); reports are written below it.
pub fn target_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return dir.into();
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.ancestors().nth(3).map(Into::into))
        .unwrap_or_else(|| "target".into())
}

/// The token the canned server is used with (it checks none).
pub const CANNED_TOKEN: &str = "canned-token";

// ---------------------------------------------------------------------------------------------
// The real server
// ---------------------------------------------------------------------------------------------

/// Writes what the benches read and list into a real server.
pub async fn seed_real_server(addr: &str, token: &str) {
    let client = vault_ops_core::VaultClient::builder()
        .address(addr)
        .token(token)
        .build()
        .unwrap_or_else(|e| panic!("client for seeding: {e}"));
    let kv = client.kv2(MOUNT);
    kv.put(READ_PATH, &Secret::sample())
        .await
        .unwrap_or_else(|e| panic!("seeding {READ_PATH}: {e}"));
    for i in 1..=LIST_KEYS {
        kv.put(
            &format!("{LIST_PATH}/key-{i}"),
            &serde_json::json!({"a": "b"}),
        )
        .await
        .unwrap_or_else(|e| panic!("seeding the list folder: {e}"));
    }
}

// ---------------------------------------------------------------------------------------------
// The arms
// ---------------------------------------------------------------------------------------------

/// What is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// KV v2 read of [`READ_PATH`] into [`Secret`].
    Read,
    /// KV v2 write of [`Secret`] to [`write_path`].
    Write,
    /// KV v2 list of [`LIST_PATH`].
    List,
    /// `auth/token/lookup-self`.
    Lookup,
}

impl Op {
    /// Every op.
    pub const ALL: [Op; 4] = [Op::Read, Op::Write, Op::List, Op::Lookup];

    /// Its name in bench ids.
    pub fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::List => "list",
            Op::Lookup => "lookup",
        }
    }

    /// Parses [`name`](Self::name).
    pub fn parse(s: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|o| o.name() == s)
    }

    /// The arms compared for this op (vaultrs only for reads).
    pub fn arms(self) -> &'static [Arm] {
        match self {
            Op::Read => &[Arm::VaultOps, Arm::Raw, Arm::Vaultrs],
            _ => &[Arm::VaultOps, Arm::Raw],
        }
    }
}

/// A client under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arm {
    /// `vault_ops_core::VaultClient` with every default on.
    VaultOps,
    /// reqwest + serde by hand: the limit.
    Raw,
    /// vaultrs 0.8.
    Vaultrs,
    /// Diagnostic, not in the tables: `VaultClient::execute` with a typed decode of the reply,
    /// i.e. vault-ops without its KV v2 layer (reads only).
    VaultOpsExec,
    /// Diagnostic, not in the tables: the raw arm on a `reqwest::Client` configured as
    /// vault-ops configures its own (connect and idle-pool timeouts, a static user agent, a
    /// custom redirect policy) plus a 60 s request timeout, to tell the client's settings
    /// from its code.
    RawConfigured,
}

impl Arm {
    /// Every arm.
    pub const ALL: [Arm; 5] = [
        Arm::VaultOps,
        Arm::Raw,
        Arm::Vaultrs,
        Arm::VaultOpsExec,
        Arm::RawConfigured,
    ];

    /// Its name in bench ids.
    pub fn name(self) -> &'static str {
        match self {
            Arm::VaultOps => "vault-ops",
            Arm::Raw => "reqwest",
            Arm::Vaultrs => "vaultrs",
            Arm::VaultOpsExec => "vault-ops-exec",
            Arm::RawConfigured => "reqwest-cfg",
        }
    }

    /// Parses [`name`](Self::name).
    pub fn parse(s: &str) -> Option<Arm> {
        Arm::ALL.into_iter().find(|a| a.name() == s)
    }
}

/// Vault's reply envelope, as a raw-reqwest user would declare it.
#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Deserialize)]
struct RawRead {
    data: Secret,
    metadata: RawVersion,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct RawVersion {
    version: u64,
    #[serde(default)]
    created_time: String,
    #[serde(default)]
    deletion_time: String,
    #[serde(default)]
    destroyed: bool,
    #[serde(default)]
    custom_metadata: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct RawKeys {
    keys: Vec<String>,
}

/// The fields `vault_ops_core::api::tokens::TokenInfo` keeps, so both arms decode the same.
#[derive(Deserialize)]
#[allow(dead_code)]
struct RawTokenInfo {
    #[serde(default)]
    accessor: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    policies: Option<Vec<String>>,
    #[serde(default)]
    identity_policies: Option<Vec<String>>,
    #[serde(default)]
    ttl: i64,
    #[serde(default)]
    creation_ttl: i64,
    #[serde(default)]
    explicit_max_ttl: i64,
    #[serde(default)]
    renewable: bool,
    #[serde(default)]
    orphan: bool,
    #[serde(default)]
    creation_time: i64,
    #[serde(default)]
    expire_time: Option<String>,
    #[serde(default)]
    issue_time: Option<String>,
    #[serde(default)]
    path: String,
    #[serde(default)]
    meta: Option<std::collections::HashMap<String, String>>,
    #[serde(default)]
    num_uses: i64,
    #[serde(default)]
    entity_id: String,
    #[serde(default, rename = "type")]
    token_type: String,
}

#[derive(Serialize)]
struct RawWrite<'a> {
    data: &'a Secret,
}

/// The raw arm: one `reqwest::Client` with reqwest's defaults, URLs built once.
pub struct Raw {
    http: reqwest::Client,
    token: HeaderValue,
    read_url: String,
    list_url: String,
    lookup_url: String,
    write_urls: Vec<String>,
}

impl Raw {
    fn new(addr: &str, token: &str) -> Raw {
        Raw::with_http(addr, token, reqwest::Client::new())
    }

    /// The settings `vault_ops_core::ClientBuilder::build` gives its `reqwest::Client`, plus
    /// reqwest's own 60 s request timeout standing in for the one vault-ops applies itself.
    fn configured(addr: &str, token: &str) -> Raw {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(HeaderValue::from_static("vault-ops/bench"))
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                if attempt.previous().len() > 1 {
                    attempt.error("too many redirects")
                } else {
                    attempt.follow()
                }
            }))
            .build()
            .unwrap_or_else(|e| panic!("reqwest client: {e}"));
        Raw::with_http(addr, token, http)
    }

    fn with_http(addr: &str, token: &str, http: reqwest::Client) -> Raw {
        let mut token = HeaderValue::from_str(token).unwrap_or_else(|e| panic!("token: {e}"));
        token.set_sensitive(true);
        Raw {
            http,
            token,
            read_url: format!("{addr}/v1/{MOUNT}/data/{READ_PATH}"),
            list_url: format!("{addr}/v1/{MOUNT}/metadata/{LIST_PATH}/?list=true"),
            lookup_url: format!("{addr}/v1/auth/token/lookup-self"),
            write_urls: (0..WRITE_PATHS)
                .map(|i| format!("{addr}/v1/{MOUNT}/data/{}", write_path(i)))
                .collect(),
        }
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, String> {
        let resp = req
            .header("x-vault-token", self.token.clone())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status()));
        }
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        serde_json::from_slice::<Envelope<T>>(&body)
            .map(|e| e.data)
            .map_err(|e| e.to_string())
    }
}

/// One client under test.
pub enum Client {
    /// vault-ops.
    VaultOps(vault_ops_core::VaultClient),
    /// raw reqwest.
    Raw(Raw),
    /// vaultrs (boxed: it is much bigger than the others).
    Vaultrs(Box<vaultrs::client::VaultClient>),
    /// vault-ops' send path without the KV layer (a diagnostic arm, reads only).
    VaultOpsExec(vault_ops_core::VaultClient),
}

/// What one op returned, kept small: enough to check it and to keep it from being optimised out.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A read: the password and the version.
    Read(String, u64),
    /// A write: the version.
    Write(u64),
    /// A list: the number of keys.
    List(usize),
    /// A lookup: the number of policies.
    Lookup(usize),
}

/// A `VaultClient` with every default (retries, timeout, tracing, the shared token cell).
fn vault_ops_client(addr: &str, token: &str) -> vault_ops_core::VaultClient {
    vault_ops_core::VaultClient::builder()
        .address(addr)
        .token(token)
        .build()
        .unwrap_or_else(|e| panic!("vault-ops client: {e}"))
}

impl Client {
    /// A client of this arm for `addr` with `token`.
    pub fn new(arm: Arm, addr: &str, token: &str) -> Client {
        match arm {
            Arm::VaultOps => Client::VaultOps(vault_ops_client(addr, token)),
            Arm::Raw => Client::Raw(Raw::new(addr, token)),
            Arm::Vaultrs => {
                let settings = vaultrs::client::VaultClientSettingsBuilder::default()
                    .address(addr)
                    .token(token)
                    .build()
                    .unwrap_or_else(|e| panic!("vaultrs settings: {e}"));
                Client::Vaultrs(Box::new(
                    vaultrs::client::VaultClient::new(settings)
                        .unwrap_or_else(|e| panic!("vaultrs client: {e}")),
                ))
            }
            Arm::VaultOpsExec => Client::VaultOpsExec(vault_ops_client(addr, token)),
            Arm::RawConfigured => Client::Raw(Raw::configured(addr, token)),
        }
    }

    /// Runs the `i`-th op of this kind.
    pub async fn op(&self, op: Op, i: u64) -> Result<Outcome, String> {
        match (self, op) {
            (Client::VaultOps(c), Op::Read) => {
                let s = c
                    .kv2(MOUNT)
                    .get::<Secret>(READ_PATH)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Outcome::Read(s.data.password, s.metadata.version))
            }
            (Client::VaultOps(c), Op::Write) => {
                let m = c
                    .kv2(MOUNT)
                    .put(&write_path(i), &Secret::sample())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Outcome::Write(m.version))
            }
            (Client::VaultOps(c), Op::List) => {
                let keys = c
                    .kv2(MOUNT)
                    .list(LIST_PATH)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Outcome::List(keys.len()))
            }
            (Client::VaultOps(c), Op::Lookup) => {
                let info = c.tokens().lookup_self().await.map_err(|e| e.to_string())?;
                Ok(Outcome::Lookup(info.policies.len()))
            }
            (Client::Raw(r), Op::Read) => {
                let s: RawRead = r.send(r.http.get(&r.read_url)).await?;
                Ok(Outcome::Read(s.data.password, s.metadata.version))
            }
            (Client::Raw(r), Op::Write) => {
                let url = &r.write_urls[(i % WRITE_PATHS) as usize];
                let secret = Secret::sample();
                let m: RawVersion = r
                    .send(r.http.post(url).json(&RawWrite { data: &secret }))
                    .await?;
                Ok(Outcome::Write(m.version))
            }
            (Client::Raw(r), Op::List) => {
                let k: RawKeys = r.send(r.http.get(&r.list_url)).await?;
                Ok(Outcome::List(k.keys.len()))
            }
            (Client::Raw(r), Op::Lookup) => {
                let t: RawTokenInfo = r.send(r.http.get(&r.lookup_url)).await?;
                Ok(Outcome::Lookup(t.policies.map_or(0, |p| p.len())))
            }
            (Client::Vaultrs(c), Op::Read) => {
                let s: Secret = vaultrs::kv2::read(&**c, MOUNT, READ_PATH)
                    .await
                    .map_err(|e| e.to_string())?;
                // vaultrs returns the data only; the version is not part of its answer.
                Ok(Outcome::Read(s.password, 0))
            }
            (Client::Vaultrs(c), Op::Write) => {
                let m = vaultrs::kv2::set(&**c, MOUNT, &write_path(i), &Secret::sample())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Outcome::Write(m.version))
            }
            (Client::Vaultrs(c), Op::List) => {
                let keys = vaultrs::kv2::list(&**c, MOUNT, LIST_PATH)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Outcome::List(keys.len()))
            }
            (Client::VaultOpsExec(c), Op::Read) => {
                let req = vault_ops_core::Request::get(format!("{MOUNT}/data/{READ_PATH}"));
                let s = c
                    .execute(req)
                    .await
                    .and_then(|r| r.json::<vault_ops_core::VaultResponse<RawRead>>())
                    .map_err(|e| e.to_string())?
                    .data;
                Ok(Outcome::Read(s.data.password, s.metadata.version))
            }
            (Client::VaultOpsExec(_), op) => Err(format!("{op:?} is not measured in this arm")),
            (Client::Vaultrs(c), Op::Lookup) => {
                let info = vaultrs::token::lookup_self(&**c)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Outcome::Lookup(info.policies.len()))
            }
        }
    }

    /// Runs one op and panics unless its answer is the expected one (outside any timing).
    pub async fn check(&self, op: Op) {
        let got = self
            .op(op, 0)
            .await
            .unwrap_or_else(|e| panic!("{op:?} failed: {e}"));
        let ok = match &got {
            Outcome::Read(password, version) => {
                *password == Secret::sample().password
                    && (*version >= 1 || matches!(self, Client::Vaultrs(_)))
            }
            Outcome::Write(version) => *version >= 1,
            Outcome::List(n) => *n == LIST_KEYS,
            Outcome::Lookup(n) => *n >= 1,
        };
        assert!(ok, "{op:?}: unexpected answer {got:?}");
    }
}

/// Runs `n` ops with `in_flight` tasks each looping over a shared counter; returns the wall
/// time. Panics on the first failed op.
pub async fn run(client: &Arc<Client>, op: Op, n: u64, in_flight: usize) -> Duration {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..in_flight.min(n.max(1) as usize))
        .map(|_| {
            let client = client.clone();
            let next = next.clone();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    match client.op(op, i).await {
                        Ok(out) => drop(std::hint::black_box(out)),
                        Err(e) => panic!("{op:?} #{i} failed: {e}"),
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        if let Err(e) = t.await {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    started.elapsed()
}

/// The client's tokio runtime: multi-threaded with tokio's default worker count.
pub fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"))
}

/// Peak resident set size of this process in KiB (`VmHWM`).
pub fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
