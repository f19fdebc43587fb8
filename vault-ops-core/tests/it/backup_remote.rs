//! Backups in object storage (feature `object-store`) against real servers on loopback: an S3
//! server that checks SigV4 signatures (`s3s-fs`) and Azurite, with snapshots of a real raft
//! node.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use serde_json::json;
use sha2::{Digest, Sha256};
use vault_ops_core::backup::remote::{split_object_url, RemoteStore};
use vault_ops_core::backup::{BackupError, Backups, RestoreOptions};
use vault_ops_core::VaultClient;
use vault_ops_testkit::{free_port, AzuriteServer, S3Server, AZURITE_ACCOUNT, AZURITE_KEY};

const BUCKET: &str = "vault-backups";

fn quick_retry() -> RetryConfig {
    RetryConfig {
        max_retries: 1,
        retry_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

/// An object_store client for `s3` with `secret` (the right one or not); no environment.
fn s3_store(s3: &S3Server, secret: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(s3.endpoint())
            .with_region("us-east-1")
            .with_bucket_name(BUCKET)
            .with_access_key_id(s3.access_key())
            .with_secret_access_key(secret)
            .with_allow_http(true)
            .with_retry(quick_retry())
            .build()
            .unwrap(),
    )
}

fn s3_remote(s3: &S3Server, prefix: &str) -> RemoteStore {
    RemoteStore::new(
        s3_store(s3, s3.secret_key()),
        format!("s3://{BUCKET}/{prefix}"),
        prefix,
    )
    .unwrap()
}

async fn s3_server() -> S3Server {
    let s3 = S3Server::start().await;
    s3.create_bucket(BUCKET);
    s3
}

async fn set_value(c: &VaultClient, v: &str) {
    c.generic()
        .write_raw("kv/app", &json!({ "v": v }))
        .await
        .unwrap();
}

async fn read_object(store: &Arc<dyn ObjectStore>, key: &str) -> Vec<u8> {
    let got = store.get(&ObjectPath::from(key)).await.unwrap();
    got.bytes().await.unwrap().to_vec()
}

fn sha_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A local backup that is not a raft snapshot, with a correct checksum file.
fn fake_backup(dir: &Path, stamp: &str, content: &[u8]) -> std::path::PathBuf {
    let name = format!("vault-backup-{stamp}.snap");
    let path = dir.join(&name);
    std::fs::write(&path, content).unwrap();
    std::fs::write(
        dir.join(format!("{name}.sha256")),
        format!("{}  {name}\n", sha_hex(content)),
    )
    .unwrap();
    path
}

/// Upload, verify, list, retention in the bucket and a restore from it, against `remote`
/// (a prefix in S3 or Azurite); `other` puts an unrelated object that must be left alone.
async fn round_trip(remote: RemoteStore, raw: Arc<dyn ObjectStore>, prefix: &str) {
    let (_node, c) = common::raft_node_with_kv("backed-up").await;
    let dir = tempfile::tempdir().unwrap();
    let backups = Backups::new(dir.path().join("local"))
        .keep(10)
        .timeout(Duration::from_secs(120));

    // Older backups already in the bucket (by name), an unrelated object, and a backup in a
    // nested "directory": retention must only delete the old backups and their checksums.
    let old_content = b"an old backup".to_vec();
    for stamp in ["20200101_000000", "20210101_000000"] {
        let name = format!("vault-backup-{stamp}.snap");
        raw.put(
            &ObjectPath::from(format!("{prefix}/{name}")),
            PutPayload::from(old_content.clone()),
        )
        .await
        .unwrap();
        raw.put(
            &ObjectPath::from(format!("{prefix}/{name}.sha256")),
            PutPayload::from(format!("{}  {name}\n", sha_hex(&old_content))),
        )
        .await
        .unwrap();
    }
    for other in [
        format!("{prefix}/notes.txt"),
        format!("{prefix}/nested/vault-backup-20190101_000000.snap"),
    ] {
        raw.put(&ObjectPath::from(other), PutPayload::from("keep me"))
            .await
            .unwrap();
    }

    let mut uploaded = Vec::new();
    for _ in 0..3 {
        let made = backups.create(&c).await.unwrap();
        let up = remote.upload(&made.path).await.unwrap();
        assert!(!up.already_there);
        assert_eq!(up.bytes, made.info.bytes);
        assert_eq!(up.sha256, made.info.sha256);
        assert_eq!(
            up.url,
            format!(
                "{}/{}",
                remote.url(),
                made.path.file_name().unwrap().to_str().unwrap()
            )
        );
        // The bucket holds the same bytes and a sha256sum-format checksum object.
        let name = up.name.clone();
        let stored = read_object(&raw, &format!("{prefix}/{name}")).await;
        assert_eq!(stored, std::fs::read(&made.path).unwrap());
        let sum = read_object(&raw, &format!("{prefix}/{name}.sha256")).await;
        assert_eq!(sum, format!("{}  {name}\n", made.info.sha256).into_bytes());
        // Uploading the same backup again sends nothing and succeeds.
        assert!(remote.upload(&made.path).await.unwrap().already_there);
        uploaded.push(up);
    }

    // Listed newest first, only direct children that are backups.
    let listed = remote.list().await.unwrap();
    let names: Vec<&str> = listed.iter().map(|o| o.name.as_str()).collect();
    let mut expected: Vec<&str> = uploaded.iter().rev().map(|u| u.name.as_str()).collect();
    expected.extend([
        "vault-backup-20210101_000000.snap",
        "vault-backup-20200101_000000.snap",
    ]);
    assert_eq!(names, expected);
    assert_eq!(listed[0].bytes, uploaded[2].bytes);

    // Retention: keep 3 deletes the two old ones (and their checksums), never the newest 3.
    let removed = remote.clone().keep(3).prune().await.unwrap();
    assert_eq!(
        removed,
        vec![
            format!("{}/vault-backup-20210101_000000.snap", remote.url()),
            format!("{}/vault-backup-20200101_000000.snap", remote.url()),
        ]
    );
    let after: Vec<String> = remote
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(after, expected[..3]);
    for gone in [
        "vault-backup-20210101_000000.snap.sha256",
        "vault-backup-20200101_000000.snap.sha256",
    ] {
        let r = raw
            .head(&ObjectPath::from(format!("{prefix}/{gone}")))
            .await;
        assert!(
            matches!(r, Err(object_store::Error::NotFound { .. })),
            "{gone}"
        );
    }
    for kept in ["notes.txt", "nested/vault-backup-20190101_000000.snap"] {
        raw.head(&ObjectPath::from(format!("{prefix}/{kept}")))
            .await
            .unwrap_or_else(|e| panic!("{kept} was deleted: {e}"));
    }
    // keep 1 then: only the newest stays; keep larger than the count deletes nothing.
    assert!(remote.clone().keep(5).prune().await.unwrap().is_empty());
    assert_eq!(remote.clone().keep(1).prune().await.unwrap().len(), 2);
    let newest = remote.list().await.unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0].name, uploaded[2].name);

    // A checked download: a private file under a random name, removed when dropped.
    let down_dir = tempfile::tempdir().unwrap();
    let d = remote
        .download(&newest[0].name, down_dir.path())
        .await
        .unwrap();
    assert_eq!(d.info.sha256, uploaded[2].sha256);
    let p = d.path.to_path_buf();
    assert!(p.starts_with(down_dir.path()));
    assert!(!p
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .contains("vault-backup"));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    drop(d);
    assert!(!p.exists(), "the download is removed when dropped");

    // Restore from the bucket: refused without force (after checking), then done.
    set_value(&c, "changed-after-backup").await;
    let e = backups
        .restore_remote(&c, &remote, &newest[0].name, RestoreOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(e, BackupError::ForceRequired { .. }), "{e}");
    assert!(e.to_string().contains(&newest[0].url), "{e}");
    assert_eq!(
        common::read_v(&c, "kv/app").await.as_deref(),
        Some("changed-after-backup")
    );
    let info = backups
        .restore_remote(
            &c,
            &remote,
            &newest[0].name,
            RestoreOptions::new().force(true),
        )
        .await
        .unwrap();
    assert_eq!(info.sha256, uploaded[2].sha256);
    let back = common::eventually("the restored value", Duration::from_secs(30), || async {
        common::read_v(&c, "kv/app")
            .await
            .filter(|v| v == "backed-up")
    })
    .await;
    assert_eq!(back, "backed-up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_upload_verify_list_retention_and_restore() {
    let s3 = s3_server().await;
    round_trip(
        s3_remote(&s3, "cluster-a/daily"),
        s3_store(&s3, s3.secret_key()),
        "cluster-a/daily",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_upload_verify_list_retention_and_restore() {
    let azurite = AzuriteServer::start().await;
    azurite.create_container("backups").await;
    let store: Arc<dyn ObjectStore> = Arc::new(
        MicrosoftAzureBuilder::new()
            .with_account(AZURITE_ACCOUNT)
            .with_access_key(AZURITE_KEY)
            .with_container_name("backups")
            .with_endpoint(format!("{}/{AZURITE_ACCOUNT}", azurite.endpoint()))
            .with_allow_http(true)
            .with_retry(quick_retry())
            .build()
            .unwrap(),
    );
    let remote = RemoteStore::new(store.clone(), "az://backups/vault", "vault").unwrap();
    round_trip(remote, store, "vault").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_or_truncated_object_is_refused_before_vault_is_contacted() {
    let s3 = s3_server().await;
    let remote = s3_remote(&s3, "p");
    let dir = tempfile::tempdir().unwrap();
    let content: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let a = fake_backup(dir.path(), "20250101_000000", &content);
    let b = fake_backup(dir.path(), "20250102_000000", &content);
    let c = fake_backup(dir.path(), "20250103_000000", &content);
    for p in [&a, &b, &c] {
        remote.upload(p).await.unwrap();
    }
    // Nothing listens here: a restore that got as far as Vault would fail with a transport
    // error, not with the checks below.
    let vault = common::client_at(&format!("http://127.0.0.1:{}", free_port()), "t");
    let backups = Backups::new(dir.path());
    let force = RestoreOptions::new().force(true);

    // One byte changed in the bucket.
    let file = s3.object_file(BUCKET, "p/vault-backup-20250101_000000.snap");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let e = backups
        .restore_remote(&vault, &remote, "vault-backup-20250101_000000.snap", force)
        .await
        .unwrap_err();
    match &e {
        BackupError::ChecksumMismatch { expected, .. } => assert_eq!(expected, &sha_hex(&content)),
        other => panic!("expected a checksum mismatch, got {other}"),
    }
    assert!(
        e.to_string()
            .contains("s3://vault-backups/p/vault-backup-20250101_000000.snap"),
        "{e}"
    );

    // Truncated in the bucket.
    let file = s3.object_file(BUCKET, "p/vault-backup-20250102_000000.snap");
    std::fs::write(&file, &content[..content.len() / 2]).unwrap();
    let e = backups
        .restore_remote(&vault, &remote, "vault-backup-20250102_000000.snap", force)
        .await
        .unwrap_err();
    assert!(matches!(e, BackupError::ChecksumMismatch { .. }), "{e}");

    // Sound checksum, but not a raft snapshot.
    let e = backups
        .restore_remote(&vault, &remote, "vault-backup-20250103_000000.snap", force)
        .await
        .unwrap_err();
    assert!(matches!(e, BackupError::InvalidSnapshot { .. }), "{e}");

    // The checksum object gone: refused.
    std::fs::remove_file(s3.object_file(BUCKET, "p/vault-backup-20250103_000000.snap.sha256"))
        .unwrap();
    let e = backups
        .restore_remote(&vault, &remote, "vault-backup-20250103_000000.snap", force)
        .await
        .unwrap_err();
    assert!(matches!(e, BackupError::RemoteInvalid { .. }), "{e}");
    assert!(e.to_string().contains("no checksum object"), "{e}");

    // A name that is not a backup's never reaches the store.
    for bad in [
        "../vault-backup-20250101_000000.snap",
        "notes.txt",
        "a/b.snap",
    ] {
        let e = remote.download(bad, dir.path()).await.unwrap_err();
        assert!(matches!(e, BackupError::RemoteInvalid { .. }), "{bad}: {e}");
    }

    // Nothing was left behind in the download directory but the backups themselves.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_key_is_refused_and_never_shown() {
    let s3 = s3_server().await;
    let wrong = "wrong-secret-key-0123456789abcdef";
    let remote = RemoteStore::new(s3_store(&s3, wrong), format!("s3://{BUCKET}/p"), "p").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = fake_backup(dir.path(), "20250101_000000", b"data");

    let e = remote.upload(&path).await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, BackupError::Remote { .. }), "{text}");
    assert!(
        text.contains("s3://vault-backups/p/vault-backup-20250101_000000.snap"),
        "{text}"
    );
    assert!(
        text.contains("SignatureDoesNotMatch") || text.contains("403"),
        "the server refused the signature: {text}"
    );
    let e = remote.list().await.unwrap_err();
    assert!(matches!(e, BackupError::Remote { .. }), "{e}");
    // Nothing was stored.
    let stored: Vec<_> = std::fs::read_dir(s3.data_dir().join(BUCKET))
        .unwrap()
        .collect();
    assert!(stored.is_empty(), "{stored:?}");

    // Neither the store's Debug output nor an error shows a secret key.
    for shown in [format!("{remote:?}"), format!("{e:?}"), e.to_string()] {
        assert!(!shown.contains(wrong), "{shown}");
        assert!(!shown.contains(s3.secret_key()), "{shown}");
    }
    // The right key works (the refusal was about the signature).
    s3_remote(&s3, "p").upload(&path).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_down_during_an_upload_fails_clearly_and_keeps_the_local_backup() {
    let mut s3 = s3_server().await;
    let remote = s3_remote(&s3, "p").part_size(5 * 1024 * 1024);
    let dir = tempfile::tempdir().unwrap();
    let content = vec![7u8; 11 * 1024 * 1024]; // three parts
    let path = fake_backup(dir.path(), "20250101_000000", &content);
    s3.kill().await;
    let started = Instant::now();
    let e = remote.upload(&path).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "bounded retries"
    );
    assert!(matches!(e, BackupError::Remote { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("s3://vault-backups/p/vault-backup-20250101_000000.snap"),
        "{text}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        content,
        "the local backup is kept"
    );
}

#[tokio::test]
async fn urls_that_escape_or_name_no_backup_are_refused() {
    for bad in [
        "s3://bucket/a/../b",
        "s3://bucket/a//b",
        "s3://bucket/./b",
        "s3://bucket/a?x=1",
        "s3:///prefix",
        "ftp://bucket/prefix",
        "bucket/prefix",
    ] {
        let e = RemoteStore::from_url(bad).unwrap_err();
        assert!(matches!(e, BackupError::RemoteInvalid { .. }), "{bad}: {e}");
        assert!(e.to_string().contains(bad), "{e}");
    }
    assert_eq!(
        split_object_url("s3://b/p/q/vault-backup-20250101_000000.snap").unwrap(),
        ("s3://b/p/q", "vault-backup-20250101_000000.snap")
    );
    for bad in [
        "s3://b/p/notes.txt",
        "s3://b",
        "s3://b/p/vault-backup-20250101_000000.snap.sha256",
    ] {
        assert!(split_object_url(bad).is_err(), "{bad}");
    }
}
