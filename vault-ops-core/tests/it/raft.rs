//! Raft API on a real 3-node OpenBao cluster on loopback: peers, join, autopilot, snapshots,
//! restore, step-down, remove-peer and re-join.

use crate::common;

use std::io::Write as _;
use std::time::{Duration, Instant};

use common::{eventually, read_v};
use serde_json::json;
use vault_ops_core::api::raft::{
    verify_snapshot_file, verify_snapshot_reader, AutopilotConfigUpdate, JoinRequest, RestoreMode,
};
use vault_ops_core::api::tokens::TokenCreateRequest;
use vault_ops_core::health_report::{Severity, Thresholds};
use vault_ops_core::{Error, SecretString, VaultClient};
use vault_ops_testkit::{BaoConfigServer, BaoInit};

/// Joins `node` to the cluster led by `leader_addr` with the client's join call, then unseals it.
async fn join_and_unseal(node: &BaoConfigServer, leader_addr: &str, init: &BaoInit) {
    let new_node = VaultClient::new(node.addr()).unwrap();
    let joined = new_node
        .raft()
        .join(&JoinRequest::new(leader_addr))
        .await
        .unwrap();
    assert!(joined, "{} did not join", node.addr());
    let key = SecretString::from(init.keys_base64[0].clone());
    new_node.sys().unseal(&key).await.unwrap();
    node.wait_for_health(&[200, 429], Duration::from_secs(60))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_node_cluster_operations() {
    let (n1, n2, n3) = tokio::join!(
        BaoConfigServer::start_raft_node("node1"),
        BaoConfigServer::start_raft_node("node2"),
        BaoConfigServer::start_raft_node("node3"),
    );
    let init = n1.init_and_unseal().await;
    let c1 = common::client_at(&n1.addr(), &init.root_token);

    // Promote joined nodes quickly, and check the autopilot config round trip.
    let mut update = AutopilotConfigUpdate::default();
    update.server_stabilization_time = Some("1s".into());
    update.max_trailing_logs = Some(500);
    c1.raft().set_autopilot_config(&update).await.unwrap();
    let cfg = c1.raft().autopilot_config().await.unwrap();
    assert_eq!(cfg.server_stabilization_time, "1s");
    assert_eq!(cfg.max_trailing_logs, 500);
    assert_eq!(
        cfg.last_contact_threshold, "10s",
        "untouched fields keep their value"
    );

    // Join errors: an empty leader address is refused locally; a node that is not a raft
    // member answers an error that keeps Vault's status.
    let e = VaultClient::new(n2.addr())
        .unwrap()
        .raft()
        .join(&JoinRequest::new(" "))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e}");

    join_and_unseal(&n2, &n1.addr(), &init).await;
    join_and_unseal(&n3, &n1.addr(), &init).await;

    // list-peers: 3 nodes, one leader (node1); wait until autopilot made all three voters.
    let peers = eventually("3 voters", Duration::from_secs(40), || async {
        let c = c1.raft().configuration().await.ok()?;
        (c.servers.len() == 3 && c.voters() == 3).then_some(c)
    })
    .await;
    assert_eq!(peers.servers.iter().filter(|p| p.leader).count(), 1);
    assert_eq!(peers.leader().unwrap().node_id, "node1");
    let p2 = peers.peer("node2").unwrap();
    assert_eq!(p2.address, format!("127.0.0.1:{}", n2.cluster_port()));
    assert_eq!(p2.protocol_version, "3");

    let state = eventually(
        "autopilot healthy with 3 voters",
        Duration::from_secs(30),
        || async {
            let s = c1.raft().autopilot_state().await.ok()?;
            (s.healthy && s.voters.len() == 3 && s.failure_tolerance == 1).then_some(s)
        },
    )
    .await;
    assert_eq!(state.leader, "node1");
    assert_eq!(state.servers.len(), 3);
    assert_eq!(state.servers["node1"].status, "leader");
    assert!(state
        .servers
        .values()
        .all(|s| s.healthy && s.node_status == "alive"));

    // A token without the right policy gets Vault's 403, kept.
    let narrow_client =
        common::narrow_client(&c1, "kv-only", r#"path "kv/*" { capabilities = ["read"] }"#).await;
    let e = narrow_client.raft().configuration().await.unwrap_err();
    assert!(e.is_permission_denied(), "{e}");
    let mut sink = Vec::new();
    let e = narrow_client
        .raft()
        .snapshot_to_writer(&mut sink)
        .await
        .unwrap_err();
    assert!(e.is_permission_denied(), "{e}");

    // Data and a token that exist at snapshot time.
    c1.generic()
        .write_raw("sys/mounts/kv", &json!({"type": "kv"}))
        .await
        .unwrap();
    c1.generic()
        .write_raw("kv/app", &json!({"v": "at-snapshot"}))
        .await
        .unwrap();
    let old_token = c1
        .tokens()
        .create(&TokenCreateRequest::default().ttl("1h"))
        .await
        .unwrap()
        .client_token;

    // Snapshot to a file: complete, checked, nothing left behind but the file.
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("cluster.snap");
    let info = c1.raft().snapshot_to_file(&snap).await.unwrap();
    assert!(info.index > 0);
    assert!(info.term > 0);
    for f in ["meta.json", "state.bin", "SHA256SUMS"] {
        assert!(info.files.iter().any(|x| x == f), "{f} in {:?}", info.files);
    }
    let on_disk = std::fs::metadata(&snap).unwrap().len();
    assert_eq!(on_disk, info.bytes);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no .partial left"
    );
    let checked = verify_snapshot_file(&snap).await.unwrap();
    assert_eq!(checked, info, "re-reading the file finds the same archive");

    // Snapshot into any AsyncWrite (here a Vec), also from a standby.
    let mut buf: Vec<u8> = Vec::new();
    let c2 = common::client_at(&n2.addr(), &init.root_token);
    let info2 = c2.raft().snapshot_to_writer(&mut buf).await.unwrap();
    assert_eq!(buf.len() as u64, info2.bytes);
    assert_eq!(
        verify_snapshot_reader(&buf[..]).await.unwrap().sha256,
        info2.sha256
    );

    // Change things after the snapshot, then restore it: the old value is back, the new
    // secret is gone, and the token from snapshot time still works.
    c1.generic()
        .write_raw("kv/app", &json!({"v": "after"}))
        .await
        .unwrap();
    c1.generic()
        .write_raw("kv/later", &json!({"v": "later"}))
        .await
        .unwrap();
    c1.tokens().revoke(&old_token).await.unwrap();
    assert!(c1
        .with_token(old_token.clone())
        .tokens()
        .lookup_self()
        .await
        .is_err());

    let restored = c1
        .raft()
        .timeout(Duration::from_secs(120))
        .snapshot_restore_from_file(&snap, RestoreMode::Normal)
        .await
        .unwrap();
    assert_eq!(restored.sha256, info.sha256);
    eventually(
        "the snapshot's data is back",
        Duration::from_secs(30),
        || async { (read_v(&c1, "kv/app").await.as_deref() == Some("at-snapshot")).then_some(()) },
    )
    .await;
    assert_eq!(
        c1.generic()
            .read::<serde_json::Value>("kv/later")
            .await
            .unwrap()
            .map(|r| r.data),
        None,
        "data written after the snapshot is gone"
    );
    let looked_up = c1
        .with_token(old_token.clone())
        .tokens()
        .lookup_self()
        .await
        .unwrap();
    assert!(looked_up.ttl > 0);

    // Garbage is refused by Vault with its own message kept; a garbage *file* is refused
    // locally before anything is sent.
    let e = c1
        .raft()
        .snapshot_restore_from_reader(
            std::io::Cursor::new(b"garbage".to_vec()),
            RestoreMode::Normal,
        )
        .await
        .unwrap_err();
    let api = e.api().unwrap_or_else(|| panic!("an API error: {e}"));
    assert_eq!(api.status, 500);
    assert!(api.mentions("failed to decompress snapshot"), "{e}");
    assert!(!e.is_snapshot_from_another_cluster());
    let garbage = dir.path().join("garbage.snap");
    std::fs::write(&garbage, b"\x1f\x8b garbage").unwrap();
    let e = c1
        .raft()
        .snapshot_restore_from_file(&garbage, RestoreMode::Normal)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidInput(m) if m.contains("garbage.snap")),
        "{e}"
    );
    let truncated = dir.path().join("truncated.snap");
    let bytes = std::fs::read(&snap).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 20]).unwrap();
    let e = verify_snapshot_file(&truncated).await.unwrap_err();
    assert!(e.to_string().contains("cut short"), "{e}");
    // The cluster still has the restored data (nothing was applied).
    assert_eq!(read_v(&c1, "kv/app").await.as_deref(), Some("at-snapshot"));

    // Step-down: another node becomes leader and the client (talking to node1) keeps working.
    c1.sys().step_down().await.unwrap();
    let new_leader = eventually("a new leader", Duration::from_secs(30), || async {
        let c = c1.raft().configuration().await.ok()?;
        c.leader()
            .filter(|l| l.node_id != "node1")
            .map(|l| l.node_id.clone())
    })
    .await;
    assert!(new_leader == "node2" || new_leader == "node3");
    c1.generic()
        .write_raw("kv/after-step-down", &json!({"v": "ok"}))
        .await
        .unwrap();
    let leader_client = if new_leader == "node2" {
        common::client_at(&n2.addr(), &init.root_token)
    } else {
        common::client_at(&n3.addr(), &init.root_token)
    };
    assert_eq!(
        read_v(&leader_client, "kv/after-step-down")
            .await
            .as_deref(),
        Some("ok")
    );

    // Remove a follower other than node1.
    let victim = if new_leader == "node3" {
        "node2"
    } else {
        "node3"
    };
    leader_client.raft().remove_peer(victim).await.unwrap();
    let after = eventually("2 peers", Duration::from_secs(20), || async {
        let c = leader_client.raft().configuration().await.ok()?;
        (c.servers.len() == 2).then_some(c)
    })
    .await;
    assert!(after.peer(victim).is_none());
    let e = leader_client.raft().remove_peer("").await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e}");

    // Re-join as the guide does for a lost node: stop it, bring up a fresh node with the same
    // id, join it, unseal it.
    let (mut n2, mut n3) = (n2, n3);
    if victim == "node2" {
        n2.kill().await;
    } else {
        n3.kill().await;
    }
    let fresh = BaoConfigServer::start_raft_node(victim).await;
    join_and_unseal(&fresh, &leader_client_addr(&new_leader, &n2, &n3), &init).await;
    let rejoined = eventually("3 peers again", Duration::from_secs(30), || async {
        let c = leader_client.raft().configuration().await.ok()?;
        (c.servers.len() == 3).then_some(c)
    })
    .await;
    assert_eq!(
        rejoined.peer(victim).unwrap().address,
        format!("127.0.0.1:{}", fresh.cluster_port())
    );
    // The fresh node serves the cluster's data (its reads are local: allow it to catch up).
    let cf = common::client_at(&fresh.addr(), &init.root_token);
    eventually(
        "the re-joined node has the data",
        Duration::from_secs(30),
        || async { (read_v(&cf, "kv/app").await.as_deref() == Some("at-snapshot")).then_some(()) },
    )
    .await;

    // Health report on the healthy cluster: raft state gathered, nothing critical.
    let thresholds = Thresholds::default();
    let report = leader_client.health_report(&thresholds).await;
    assert!(!report.is_critical(), "{report}");
    let raft = report
        .raft
        .as_ref()
        .unwrap_or_else(|| panic!("raft state: {report}"));
    assert_eq!(raft.peers.len(), 3, "{report}");
    assert!(
        report.to_string().contains("raft:    peers 3, voters"),
        "{report}"
    );

    // A sealed node (restarted, so sealed) is critical.
    let mut fresh = fresh;
    fresh.restart().await;
    let report = common::client_at(&fresh.addr(), &init.root_token)
        .health_report(&thresholds)
        .await;
    assert!(report.finding("sealed").is_some(), "{report}");
    assert_eq!(report.exit_code(), 2);

    // Kill the leader: with the third node sealed, node1 is alone and has no leader.
    if new_leader == "node2" {
        n2.kill().await;
    } else {
        n3.kill().await;
    }
    let quick = VaultClient::builder()
        .address(n1.addr())
        .token(init.root_token.as_str())
        .timeout(Duration::from_secs(5))
        .max_retries(0)
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let report = loop {
        let r = quick.health_report(&thresholds).await;
        if r.finding("no_leader").is_some() {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "no leader finding on node1: {r}\n{}",
            r.to_json()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let f = report.finding("no_leader").unwrap();
    assert_eq!(f.severity, Severity::Critical, "{report}");
    assert_eq!(report.exit_code(), 2);
}

fn leader_client_addr(leader: &str, n2: &BaoConfigServer, n3: &BaoConfigServer) -> String {
    if leader == "node2" {
        n2.addr()
    } else {
        n3.addr()
    }
}

/// A snapshot of one cluster restored into another: refused with an explanation, then forced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_from_another_cluster() {
    let (a, b) = tokio::join!(
        BaoConfigServer::start_raft_node("a1"),
        BaoConfigServer::start_raft_node("b1"),
    );
    let (init_a, init_b) = tokio::join!(a.init_and_unseal(), b.init_and_unseal());
    let ca = common::client_at(&a.addr(), &init_a.root_token);
    let cb = common::client_at(&b.addr(), &init_b.root_token);

    ca.generic()
        .write_raw("sys/mounts/kv", &json!({"type": "kv"}))
        .await
        .unwrap();
    ca.generic()
        .write_raw("kv/origin", &json!({"v": "cluster-a"}))
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("a.snap");
    ca.raft().snapshot_to_file(&snap).await.unwrap();

    let e = cb
        .raft()
        .snapshot_restore_from_file(&snap, RestoreMode::Normal)
        .await
        .unwrap_err();
    assert!(e.is_snapshot_from_another_cluster(), "{e}");
    assert_eq!(e.status(), Some(400));
    let text = e.to_string();
    assert!(
        text.contains("could not verify hash file"),
        "Vault's message kept: {text}"
    );
    assert!(text.contains("other unseal keys"), "explained: {text}");
    assert!(
        text.contains("RestoreMode::Force"),
        "says how to force: {text}"
    );

    // Forced: cluster B now holds A's data and seals; A's key unseals it after a restart.
    cb.raft()
        .snapshot_restore_from_file(&snap, RestoreMode::Force)
        .await
        .unwrap();
    b.wait_for_health(&[503], Duration::from_secs(30)).await;
    let mut b = b;
    b.restart().await;
    b.unseal(&init_a.keys_base64[0]).await;
    b.wait_for_health(&[200], Duration::from_secs(60)).await;
    let cb_with_a_token = common::client_at(&b.addr(), &init_a.root_token);
    let v = eventually("A's data on B", Duration::from_secs(30), || async {
        read_v(&cb_with_a_token, "kv/origin").await
    })
    .await;
    assert_eq!(v, "cluster-a");
}

/// Raft calls against a server without raft storage keep Vault's error.
#[tokio::test]
async fn raft_calls_on_a_dev_server_keep_vaults_error() {
    let bao = vault_ops_testkit::BaoServer::start().await;
    let c = common::client_at(&bao.addr(), bao.root_token());
    let mut sink = Vec::new();
    let e = c.raft().snapshot_to_writer(&mut sink).await.unwrap_err();
    assert!(e.status().is_some(), "an API error with a status: {e}");
    let e = c.raft().configuration().await.unwrap_err();
    assert!(e.status().is_some(), "{e}");
    // No token: refused locally.
    let no_token = VaultClient::new(bao.addr()).unwrap();
    let e = no_token
        .raft()
        .snapshot_to_writer(&mut sink)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::MissingToken), "{e}");
    assert!(sink.is_empty());
}

/// A ustar header for a regular file `name` of `size` bytes.
fn tar_header(name: &str, size: usize) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000600");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    h
}

/// A gzip'd tar stream written entry by entry (never held uncompressed): `(name, size, fill)`
/// makes an entry of `size` bytes of `fill`.
fn crafted_snapshot<N: AsRef<str>>(entries: impl IntoIterator<Item = (N, usize, u8)>) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let zeros = [0u8; 1024];
    for (name, size, fill) in entries {
        gz.write_all(&tar_header(name.as_ref(), size)).unwrap();
        let data = vec![fill; 64 * 1024];
        let mut left = size;
        while left > 0 {
            let n = left.min(data.len());
            gz.write_all(&data[..n]).unwrap();
            left -= n;
        }
        gz.write_all(&zeros[..(512 - size % 512) % 512]).unwrap();
    }
    gz.write_all(&zeros).unwrap();
    gz.finish().unwrap()
}

/// A small snapshot archive that passes the local check (Vault would refuse it).
fn checkable_snapshot() -> Vec<u8> {
    let sha = |d: &[u8]| -> String {
        use sha2::Digest;
        sha2::Sha256::digest(d)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let meta = br#"{"Index":7,"Term":2}"#;
    let state = b"state".as_slice();
    let sums = format!("{}  meta.json\n{}  state.bin\n", sha(meta), sha(state));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for (name, data) in [
        ("meta.json", &meta[..]),
        ("state.bin", state),
        ("SHA256SUMS", sums.as_bytes()),
    ] {
        gz.write_all(&tar_header(name, data.len())).unwrap();
        gz.write_all(data).unwrap();
        gz.write_all(&[0u8; 512][..(512 - data.len() % 512) % 512])
            .unwrap();
    }
    gz.write_all(&[0u8; 1024]).unwrap();
    gz.finish().unwrap()
}

/// The process's peak resident memory in KiB (`VmHWM`), where the OS reports it.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A small crafted archive must not cost much memory: entries are not kept twice, what is
/// kept is capped, and so is the number of entries; each is refused with a clear reason.
#[tokio::test]
async fn crafted_snapshots_are_refused_without_keeping_their_entries() {
    // 4096 entries named meta.json of 64 KiB each: ~1.2 MiB of gzip whose entries used to be
    // kept whole (256 MiB in memory).
    let duplicates = crafted_snapshot((0..4096).map(|_| ("meta.json", 64 * 1024, b' ')));
    assert!(duplicates.len() < 2 * 1024 * 1024, "{}", duplicates.len());
    let before = peak_rss_kib();
    let started = Instant::now();
    let e = verify_snapshot_reader(&duplicates[..]).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(e, Error::InvalidInput(_)), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("more than once") && text.contains("meta.json"),
        "{text}"
    );
    if let (Some(before), Some(after)) = (before, peak_rss_kib()) {
        assert!(
            after.saturating_sub(before) < 64 * 1024,
            "checking a {} byte file raised the peak memory from {before} KiB to {after} KiB",
            duplicates.len()
        );
    }
    eprintln!("refused the duplicates in {elapsed:?}");

    // One meta.json far larger than any real one (a snapshot's is ~100 bytes).
    let huge_meta = crafted_snapshot([("meta.json", 8 * 1024 * 1024, b' ')]);
    let e = verify_snapshot_reader(&huge_meta[..]).await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("meta.json") && text.contains("larger than"),
        "{text}"
    );
    // Likewise SHA256SUMS.
    let huge_sums = crafted_snapshot([("SHA256SUMS", 2 * 1024 * 1024, b'a')]);
    let text = verify_snapshot_reader(&huge_sums[..])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("SHA256SUMS") && text.contains("larger than"),
        "{text}"
    );

    // Many small entries with distinct names: refused once past the entry cap.
    let many = crafted_snapshot((0..5000).map(|i| (format!("f{i}"), 1, b'x')));
    let text = verify_snapshot_reader(&many[..])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("more than") && text.contains("entries"),
        "{text}"
    );

    // A duplicate state.bin (hashed, not kept) is refused too: which copy would Vault use?
    let twice = crafted_snapshot([("state.bin", 10, b's'), ("state.bin", 10, b't')]);
    let text = verify_snapshot_reader(&twice[..])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("more than once") && text.contains("state.bin"),
        "{text}"
    );
}

/// Where a restore goes, against loopback fakes: to the configured active node only (asked of
/// the node in use with `sys/leader`), never to a standby; a file with its length; a redirect
/// is reported with where it pointed.
#[tokio::test]
async fn restores_go_to_the_active_node_or_nowhere() {
    use common::{fast, hits, mount};
    use wiremock::{MockServer, ResponseTemplate};

    const TOKEN: &str = "s.RESTORETEST-1";
    const SNAP: &str = "/v1/sys/storage/raft/snapshot";
    let leader = |is_self: bool, address: &str| {
        ResponseTemplate::new(200).set_body_json(json!({
            "ha_enabled": true, "is_self": is_self, "leader_address": address,
        }))
    };
    let standby = MockServer::start().await;
    let active = MockServer::start().await;
    mount(
        &standby,
        "GET",
        "/v1/sys/leader",
        leader(false, &active.uri()),
    )
    .await;
    mount(
        &active,
        "GET",
        "/v1/sys/leader",
        leader(true, &active.uri()),
    )
    .await;
    for server in [&standby, &active] {
        for p in [SNAP, "/v1/sys/storage/raft/snapshot-force"] {
            mount(server, "POST", p, ResponseTemplate::new(204)).await;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.snap");
    let snapshot = checkable_snapshot();
    std::fs::write(&file, &snapshot).unwrap();

    // Only the standby is configured: nothing is sent; the error names the active node.
    let c = fast([standby.uri()], TOKEN).build().unwrap();
    let e = c
        .raft()
        .snapshot_restore_from_file(&file, RestoreMode::Normal)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains(&active.uri()), "{text}");
    assert!(
        text.contains("not one of the configured addresses"),
        "{text}"
    );
    assert!(!text.contains(TOKEN), "{text}");
    assert_eq!(hits(&standby, SNAP).await, 0);
    assert_eq!(hits(&active, SNAP).await, 0);

    // Both configured, the standby in use: the file goes to the active node, with its length.
    let c = fast([standby.uri(), active.uri()], TOKEN).build().unwrap();
    assert_eq!(c.current_address(), standby.uri());
    let info = c
        .raft()
        .snapshot_restore_from_file(&file, RestoreMode::Normal)
        .await
        .unwrap();
    assert_eq!(info.index, 7);
    let got = active.received_requests().await.unwrap();
    let post = got.iter().find(|r| r.url.path() == SNAP).unwrap();
    assert_eq!(post.body, snapshot);
    let header = |name: &str| {
        post.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(header("content-length"), Some(snapshot.len().to_string()));
    assert_eq!(header("transfer-encoding"), None);
    assert_eq!(header("x-vault-token").as_deref(), Some(TOKEN));
    assert_eq!(hits(&standby, SNAP).await, 0);
    // A reader too (chunked, since its length is unknown).
    c.raft()
        .snapshot_restore_from_reader(std::io::Cursor::new(snapshot.clone()), RestoreMode::Force)
        .await
        .unwrap();
    assert_eq!(hits(&standby, SNAP).await, 0);
    assert_eq!(
        hits(&standby, "/v1/sys/storage/raft/snapshot-force").await,
        0
    );
    assert_eq!(
        hits(&active, "/v1/sys/storage/raft/snapshot-force").await,
        1
    );

    // The node asked is the active node but answers the restore with a redirect (it lost
    // the leadership meanwhile): the status and where it pointed.
    let lost = MockServer::start().await;
    mount(&lost, "GET", "/v1/sys/leader", leader(true, "")).await;
    let elsewhere = "http://10.255.0.9:8200/v1/sys/storage/raft/snapshot";
    mount(
        &lost,
        "POST",
        SNAP,
        ResponseTemplate::new(307).insert_header("Location", elsewhere),
    )
    .await;
    let e = fast([lost.uri()], TOKEN)
        .build()
        .unwrap()
        .raft()
        .snapshot_restore_from_file(&file, RestoreMode::Normal)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(307), "{e}");
    assert!(e.to_string().contains(elsewhere), "{e}");
}
