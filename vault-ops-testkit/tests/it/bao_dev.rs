//! Tests for the OpenBao dev server helper.

use std::path::Path;
use std::time::{Duration, Instant};

use vault_ops_testkit::{bao_bin, process_gone, BaoServer};

async fn wait_gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if process_gone(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[test]
fn bao_bin_exists() {
    let bin = bao_bin();
    assert!(Path::new(&bin).is_file(), "{}", bin.display());
}

#[tokio::test]
async fn dev_server_starts_answers_and_stops() {
    let server = BaoServer::start().await;
    let addr = server.addr();
    assert_eq!(addr, format!("http://127.0.0.1:{}", server.port()));
    assert!(server.root_token().starts_with("root-"));
    assert!(server.dir().is_dir());

    let http = client();
    let health = http
        .get(format!("{addr}/v1/sys/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);

    let me = http
        .get(format!("{addr}/v1/auth/token/lookup-self"))
        .header("X-Vault-Token", server.root_token())
        .send()
        .await
        .unwrap();
    assert_eq!(me.status().as_u16(), 200);
    let body: serde_json::Value = me.json().await.unwrap();
    assert_eq!(body["data"]["id"], server.root_token());

    let denied = http
        .get(format!("{addr}/v1/auth/token/lookup-self"))
        .header("X-Vault-Token", "not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status().as_u16(), 403);

    assert!(!server.log().is_empty(), "the dev server logs something");

    let pid = server.pid();
    assert!(!process_gone(pid));
    let home = server.dir().to_path_buf();
    server.stop().await;
    assert!(process_gone(pid), "process {pid} still running after stop");
    assert!(!home.exists(), "temp dir removed after stop");
    assert!(
        http.get(format!("{addr}/v1/sys/health"))
            .send()
            .await
            .is_err(),
        "nothing answers after stop"
    );
}

#[tokio::test]
async fn dropping_the_server_kills_it() {
    let server = BaoServer::start_with_args(&["-log-level=debug"]).await;
    let pid = server.pid();
    drop(server);
    assert!(
        wait_gone(pid).await,
        "process {pid} still running after drop"
    );
}

#[test]
fn panicking_test_leaves_no_process_behind() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async {
            let server = BaoServer::start().await;
            tx.send(server.pid()).unwrap();
            panic!("simulated test failure");
        })
    }));
    assert!(result.is_err());
    let pid = rx.recv().unwrap();
    rt.block_on(async { assert!(wait_gone(pid).await, "process {pid} survived a panic") });
}

#[tokio::test]
async fn two_servers_run_side_by_side() {
    let (a, b) = tokio::join!(BaoServer::start(), BaoServer::start());
    assert_ne!(a.port(), b.port());
    assert_ne!(a.root_token(), b.root_token());
    let http = client();
    for s in [&a, &b] {
        let r = http
            .get(format!("{}/v1/sys/health", s.addr()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
}
