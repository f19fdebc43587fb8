//! Helpers shared by the test modules of the one test binary: each says `use crate::common;`.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use vault_ops_core::{ClientBuilder, VaultClient};
use vault_ops_testkit::BaoServer;

pub mod db;

/// A client builder for the dev server `bao` with its root token.
pub fn root_builder(bao: &BaoServer) -> ClientBuilder {
    VaultClient::builder()
        .address(bao.addr())
        .token(bao.root_token())
}

/// A client for the dev server `bao` with its root token.
pub fn root_client(bao: &BaoServer) -> VaultClient {
    root_builder(bao)
        .build()
        .unwrap_or_else(|e| panic!("a client for {}: {e}", bao.addr()))
}

/// [`root_client`], once the dev server's KV v2 mount is usable ([`wait_for_kv`]).
pub async fn ready_client(bao: &BaoServer) -> VaultClient {
    let client = root_client(bao);
    wait_for_kv(&client).await;
    client
}

/// Waits (at most 10 s) until the dev server's KV v2 mount has finished its upgrade to
/// versioned data (until then reads answer 400 "Upgrading from non-versioned to versioned
/// data").
pub async fn wait_for_kv(client: &VaultClient) {
    for _ in 0..100 {
        match client
            .kv2("secret")
            .get_opt::<serde_json::Value>("vault-ops-test-probe")
            .await
        {
            Ok(_) => return,
            Err(e) if e.status() == Some(400) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("KV v2 is not usable: {e}"),
        }
    }
    panic!("KV v2 did not become usable within 10 s");
}

/// A loopback TCP proxy in front of Vault that can pass traffic, drop Vault's replies (the
/// request reaches Vault and is applied, the client sees the connection close: a lost reply),
/// or refuse connections (Vault unreachable).
#[derive(Clone)]
pub struct Proxy {
    pub addr: String,
    mode: Arc<Mutex<ProxyMode>>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ProxyMode {
    /// Forward both ways.
    Pass,
    /// Forward requests, lose every reply.
    DropReplies,
    /// Forward requests, lose the next reply, then pass again.
    DropOnce,
    /// Close new connections at once.
    Refuse,
    /// Keep every connection open but forward nothing either way (a peer that stopped
    /// answering).
    Stall,
}

impl Proxy {
    pub async fn start(upstream_port: u16) -> Proxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let mode = Arc::new(Mutex::new(ProxyMode::Pass));
        let m = mode.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *m.lock().unwrap() == ProxyMode::Refuse {
                    drop(client);
                    continue;
                }
                let Ok(upstream) =
                    tokio::net::TcpStream::connect(("127.0.0.1", upstream_port)).await
                else {
                    continue;
                };
                let m = m.clone();
                tokio::spawn(async move {
                    let (mut cr, mut cw) = client.into_split();
                    let (mut ur, mut uw) = upstream.into_split();
                    let m_up = m.clone();
                    let up = tokio::spawn(async move {
                        // Requests on connections opened earlier are not forwarded either
                        // while refusing: nothing reaches Vault.
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            match *m_up.lock().unwrap() {
                                ProxyMode::Refuse => break,
                                ProxyMode::Stall => continue,
                                _ => {}
                            }
                            if uw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match ur.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        {
                            let mut mode = m.lock().unwrap();
                            match *mode {
                                ProxyMode::Pass => {}
                                ProxyMode::Stall => continue,
                                ProxyMode::DropOnce => {
                                    // Vault has answered: the request was applied. Lose the reply.
                                    *mode = ProxyMode::Pass;
                                    break;
                                }
                                _ => break,
                            }
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    up.abort();
                });
            }
        });
        Proxy { addr, mode }
    }

    pub fn port(&self) -> u16 {
        self.addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("proxy port")
    }

    pub fn set(&self, mode: ProxyMode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn client(&self, token: &str) -> VaultClient {
        VaultClient::builder()
            .address(&self.addr)
            .token(token)
            .max_retries(0)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    }
}
