//! Tests for the config-mode (raft) OpenBao server helper.

use std::time::Duration;

use vault_ops_testkit::BaoConfigServer;

#[tokio::test]
async fn single_raft_node_inits_unseals_and_restarts() {
    let mut node = BaoConfigServer::start_raft_node("node1").await;
    assert!(node
        .config()
        .contains(&format!("127.0.0.1:{}", node.port())));
    assert!(node
        .config()
        .contains(&format!("127.0.0.1:{}", node.cluster_port())));
    assert!(!node.config().contains("{{"));
    assert_eq!(node.health_status().await, Some(501), "uninitialised");

    let init = node.init_and_unseal().await;
    assert_eq!(init.keys_base64.len(), 1);
    assert!(!init.root_token.is_empty());
    assert_eq!(node.health_status().await, Some(200));

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let cfg: serde_json::Value = http
        .get(format!("{}/v1/sys/storage/raft/configuration", node.addr()))
        .header("X-Vault-Token", &init.root_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let servers = cfg["data"]["config"]["servers"]
        .as_array()
        .expect("servers");
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0]["node_id"], "node1");
    assert_eq!(servers[0]["leader"], true);

    // Same data after a restart: sealed, then active again with the same key.
    let old_pid = node.pid().unwrap();
    node.restart().await;
    assert_ne!(node.pid(), Some(old_pid));
    assert_eq!(
        node.health_status().await,
        Some(503),
        "sealed after restart"
    );
    node.unseal(&init.keys_base64[0]).await;
    node.wait_for_health(&[200], Duration::from_secs(60)).await;

    node.kill().await;
    assert_eq!(node.health_status().await, None);
    assert!(std::fs::metadata(format!("/proc/{old_pid}")).is_err());
    node.stop().await;
}
