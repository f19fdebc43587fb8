//! Backups and restores (the guide's backup.sh / restore.sh) on a real raft node.

use crate::common;

use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};
use vault_ops_core::backup::{parse_backup_name, BackupError, Backups, RestoreOptions};
use vault_ops_core::VaultClient;
use vault_ops_testkit::{BaoConfigServer, BaoServer};

fn sha_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn value(c: &VaultClient) -> Option<String> {
    common::read_v(c, "kv/app").await
}

async fn set_value(c: &VaultClient, v: &str) {
    c.generic()
        .write_raw("kv/app", &json!({ "v": v }))
        .await
        .unwrap();
}

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_retention_checksum_and_restore_on_a_raft_node() {
    let (_node, c) = common::raft_node_with_kv("backed-up").await;

    let dir = tempfile::tempdir().unwrap();
    let backup_dir = dir.path().join("backups"); // created by the first backup
                                                 // Older backups (by name), an unrelated file and a look-alike: retention must only
                                                 // remove the old backups and their checksum files.
    std::fs::create_dir_all(&backup_dir).unwrap();
    for stamp in ["20200101_000000", "20210101_000000", "20220101_000000"] {
        let name = format!("vault-backup-{stamp}.snap");
        std::fs::write(backup_dir.join(&name), b"old").unwrap();
        std::fs::write(backup_dir.join(format!("{name}.sha256")), sha_hex(b"old")).unwrap();
    }
    std::fs::write(backup_dir.join("notes.txt"), b"keep me").unwrap();
    std::fs::write(backup_dir.join("vault-backup-latest.snap"), b"keep me").unwrap();

    let backups = Backups::new(&backup_dir)
        .keep(3)
        .timeout(Duration::from_secs(120));
    let first = backups.create(&c).await.unwrap();
    let second = backups.create(&c).await.unwrap();

    // Names: vault-backup-YYYYMMDD_HHMMSS(.snap | -N.snap), distinct, with checksum files.
    for b in [&first, &second] {
        let name = b.path.file_name().unwrap().to_str().unwrap();
        assert!(parse_backup_name(name).is_some(), "{name}");
        let bytes = std::fs::read(&b.path).unwrap();
        assert_eq!(bytes.len() as u64, b.info.bytes);
        let sum = std::fs::read_to_string(&b.checksum_path).unwrap();
        assert_eq!(
            sum,
            format!("{}  {name}\n", sha_hex(&bytes)),
            "sha256sum format"
        );
        assert_eq!(b.info.sha256, sha_hex(&bytes));
        assert!(b.info.index > 0);
    }
    assert_ne!(first.path, second.path);

    // Retention: the two new ones and the newest old one remain.
    assert_eq!(first.removed.len(), 1, "{:?}", first.removed);
    assert!(first.removed[0].ends_with("vault-backup-20200101_000000.snap"));
    assert_eq!(second.removed.len(), 1);
    assert!(second.removed[0].ends_with("vault-backup-20210101_000000.snap"));
    let listed = backups.list().await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0].path, second.path, "newest first");
    assert_eq!(listed[1].path, first.path);
    assert_eq!(listed[2].timestamp, "20220101_000000");
    assert_eq!(backups.latest().await.unwrap().unwrap().path, second.path);
    let left = names(&backup_dir);
    assert!(left.contains(&"notes.txt".to_string()));
    assert!(left.contains(&"vault-backup-latest.snap".to_string()));
    assert!(
        !left
            .iter()
            .any(|n| n.contains("2020") || n.contains("2021")),
        "{left:?}"
    );
    assert!(!left.iter().any(|n| n.ends_with(".partial")), "{left:?}");
    assert_eq!(left.len(), 2 + 3 * 2, "{left:?}");

    // Restore: checked, then refused without --force; Vault's data is untouched.
    set_value(&c, "changed-later").await;
    let name = first
        .path
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let e = backups
        .restore(&c, &name, RestoreOptions::new())
        .await
        .unwrap_err();
    match &e {
        BackupError::ForceRequired { file, info } => {
            assert_eq!(file, &first.path);
            assert_eq!(info, &first.info);
        }
        other => panic!("expected ForceRequired, got {other}"),
    }
    assert!(e.to_string().contains("--force"), "{e}");
    assert_eq!(value(&c).await.as_deref(), Some("changed-later"));

    // A damaged copy (one byte flipped) with the original checksum: refused even with force.
    let damaged = backup_dir.join("vault-backup-20300101_000000.snap");
    let mut bytes = std::fs::read(&first.path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&damaged, &bytes).unwrap();
    std::fs::copy(
        &first.checksum_path,
        backup_dir.join("vault-backup-20300101_000000.snap.sha256"),
    )
    .unwrap();
    let e = backups
        .restore(&c, &damaged, RestoreOptions::new().force(true))
        .await
        .unwrap_err();
    // The checksum file names the original file: reported as such.
    assert!(matches!(e, BackupError::InvalidChecksumFile { .. }), "{e}");
    std::fs::write(
        backup_dir.join("vault-backup-20300101_000000.snap.sha256"),
        format!("{}  vault-backup-20300101_000000.snap\n", first.info.sha256),
    )
    .unwrap();
    let e = backups
        .restore(&c, &damaged, RestoreOptions::new().force(true))
        .await
        .unwrap_err();
    match &e {
        BackupError::ChecksumMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &first.info.sha256);
            assert_eq!(actual, &sha_hex(&bytes));
        }
        other => panic!("expected ChecksumMismatch, got {other}"),
    }
    // Matching checksum but not a snapshot: refused before anything is sent.
    let fake = backup_dir.join("vault-backup-20300102_000000.snap");
    std::fs::write(&fake, b"not a snapshot").unwrap();
    std::fs::write(
        backup_dir.join("vault-backup-20300102_000000.snap.sha256"),
        sha_hex(b"not a snapshot"),
    )
    .unwrap();
    let e = backups
        .restore(&c, &fake, RestoreOptions::new().force(true))
        .await
        .unwrap_err();
    assert!(matches!(e, BackupError::InvalidSnapshot { .. }), "{e}");
    // No checksum file at all.
    std::fs::remove_file(backup_dir.join("vault-backup-20300102_000000.snap.sha256")).unwrap();
    let e = backups.verify(&fake).await.unwrap_err();
    assert!(matches!(e, BackupError::ChecksumMissing { .. }), "{e}");
    // A missing file.
    let e = backups
        .verify("vault-backup-19990101_000000.snap")
        .await
        .unwrap_err();
    assert!(matches!(e, BackupError::Io { .. }), "{e}");
    assert_eq!(
        value(&c).await.as_deref(),
        Some("changed-later"),
        "nothing was restored"
    );

    // With --force: the backed-up value is back.
    let info = backups
        .restore(&c, &name, RestoreOptions::new().force(true))
        .await
        .unwrap();
    assert_eq!(info.sha256, first.info.sha256);
    common::eventually(
        "the restore brings the backed-up value back",
        Duration::from_secs(30),
        || async { (value(&c).await.as_deref() == Some("backed-up")).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn backup_of_a_server_without_raft_fails_and_leaves_nothing() {
    let bao = BaoServer::start().await;
    let c = common::client_at(&bao.addr(), bao.root_token());
    let dir = tempfile::tempdir().unwrap();
    let e = Backups::new(dir.path())
        .keep(2)
        .create(&c)
        .await
        .unwrap_err();
    match &e {
        BackupError::Client(inner) => assert!(inner.status().is_some(), "{inner}"),
        other => panic!("expected a client error, got {other}"),
    }
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));

    // A token without access: Vault's 403 is kept.
    let no_access = c.with_token("s.not-a-token");
    let e = Backups::new(dir.path())
        .create(&no_access)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, BackupError::Client(inner) if inner.is_permission_denied()),
        "{e}"
    );

    // An empty directory lists no backups; a missing one too.
    assert!(Backups::new(dir.path()).list().await.unwrap().is_empty());
    assert!(Backups::new(dir.path().join("missing"))
        .list()
        .await
        .unwrap()
        .is_empty());
}

#[cfg(unix)]
fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
fn is_symlink(p: &std::path::Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

/// Snapshots hold every secret: files are 0600, directories the library creates 0700, and
/// no predictable name (the final one, a `.partial` beside it) is ever followed or clobbered.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_backup_files_are_private_and_never_follow_a_planted_symlink() {
    use std::os::unix::fs::symlink;

    let node = BaoConfigServer::start_raft_node("node1").await;
    let init = node.init_and_unseal().await;
    let c = common::client_at(&node.addr(), &init.root_token);
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    let victim = base.join("victim.txt");
    std::fs::write(&victim, b"untouched").unwrap();
    let untouched = || {
        assert!(
            std::fs::read(&victim).unwrap() == b"untouched",
            "the target of a planted symlink was written to"
        )
    };

    // snapshot_to_file with a symlink planted at the old fixed temporary name.
    let snaps = base.join("snaps");
    std::fs::create_dir(&snaps).unwrap();
    let snap = snaps.join("s.snap");
    symlink(&victim, snaps.join("s.snap.partial")).unwrap();
    let info = c.raft().snapshot_to_file(&snap).await.unwrap();
    untouched();
    assert!(is_symlink(&snaps.join("s.snap.partial")));
    assert_eq!(mode(&snap), 0o600);
    assert_eq!(std::fs::metadata(&snap).unwrap().len(), info.bytes);

    // The final name is a symlink (dangling or not) or an existing file: refused, left alone.
    let to_victim = snaps.join("linked.snap");
    symlink(&victim, &to_victim).unwrap();
    let e = c.raft().snapshot_to_file(&to_victim).await.unwrap_err();
    assert!(e.to_string().contains("exists"), "{e}");
    untouched();
    assert!(is_symlink(&to_victim));
    let nowhere = base.join("created-through-a-symlink");
    let dangling = snaps.join("dangling.snap");
    symlink(&nowhere, &dangling).unwrap();
    let e = c.raft().snapshot_to_file(&dangling).await.unwrap_err();
    assert!(e.to_string().contains("exists"), "{e}");
    assert!(!nowhere.exists());
    let existing = snaps.join("existing.snap");
    std::fs::write(&existing, b"precious").unwrap();
    let e = c.raft().snapshot_to_file(&existing).await.unwrap_err();
    assert!(e.to_string().contains("exists"), "{e}");
    assert_eq!(std::fs::read(&existing).unwrap(), b"precious");
    // Nothing else was left behind (no temporary files).
    assert_eq!(
        names(&snaps),
        [
            "dangling.snap",
            "existing.snap",
            "linked.snap",
            "s.snap",
            "s.snap.partial"
        ]
    );

    // Backups: the directories created are 0700, the backup and its checksum file 0600.
    let created = base.join("new").join("backups");
    let made = Backups::new(&created).create(&c).await.unwrap();
    assert_eq!(mode(&base.join("new")), 0o700);
    assert_eq!(mode(&created), 0o700);
    assert_eq!(mode(&made.path), 0o600);
    assert_eq!(mode(&made.checksum_path), 0o600);

    // Symlinks planted at every name a backup in the next minute could use or write through:
    // the final names (dangling, so they look free), the checksum files and the old `.partial`
    // names (to the victim).
    let planted = base.join("planted");
    std::fs::create_dir(&planted).unwrap();
    let now = std::time::SystemTime::now();
    for s in 0..60 {
        let stamp = vault_ops_core::backup::utc_timestamp(now + Duration::from_secs(s));
        for seq in 1..=2 {
            let name = vault_ops_core::backup::backup_name(&stamp, seq);
            if seq == 1 {
                symlink(&nowhere, planted.join(&name)).unwrap();
            }
            for suffix in [".partial", ".sha256.partial"] {
                symlink(&victim, planted.join(format!("{name}{suffix}"))).unwrap();
            }
            if seq == 2 {
                symlink(&victim, planted.join(format!("{name}.sha256"))).unwrap();
            }
        }
    }
    let before = names(&planted);
    let made = Backups::new(&planted).create(&c).await.unwrap();
    untouched();
    assert!(
        !nowhere.exists(),
        "a file was created through a dangling symlink"
    );
    assert!(!is_symlink(&made.path));
    assert_eq!(mode(&made.path), 0o600);
    assert_eq!(mode(&made.checksum_path), 0o600);
    let made_name = made.path.file_name().unwrap().to_str().unwrap().to_string();
    assert!(!before.contains(&made_name), "{made_name}");
    let mut expected = before.clone();
    expected.push(made_name.clone());
    expected.push(format!("{made_name}.sha256"));
    expected.sort();
    assert_eq!(names(&planted), expected, "only the backup was added");
    assert!(before.iter().all(|n| is_symlink(&planted.join(n))));
    // It is a sound backup.
    assert_eq!(
        Backups::new(&planted).verify(&made.path).await.unwrap(),
        made.info
    );
}

/// A snapshot saved by `bao operator raft snapshot save` has no checksum file: the restore
/// refuses it with a message naming `--no-checksum`, and restores it with that option, which
/// still checks the archive itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_saved_by_the_cli_restores_with_no_checksum() {
    let node = BaoConfigServer::start_raft_node("node1").await;
    let init = node.init_and_unseal().await;
    let c = common::client_at(&node.addr(), &init.root_token);
    c.generic()
        .write_raw("sys/mounts/kv", &json!({"type": "kv"}))
        .await
        .unwrap();
    set_value(&c, "in-the-cli-snapshot").await;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cli.snap");
    let saved = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(vault_ops_testkit::bao_bin())
            .args(["operator", "raft", "snapshot", "save"])
            .arg(&file)
            .env("HOME", dir.path())
            .env("BAO_ADDR", node.addr())
            .env("BAO_TOKEN", &init.root_token)
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("bao operator raft snapshot save took over 120 s")
    .unwrap();
    assert!(
        saved.status.success(),
        "bao operator raft snapshot save: {}",
        String::from_utf8_lossy(&saved.stderr)
    );
    assert!(!dir.path().join("cli.snap.sha256").exists());
    set_value(&c, "changed-later").await;

    // Without the option: refused, saying how to go on.
    let backups = Backups::new(dir.path()).timeout(Duration::from_secs(120));
    let e = backups
        .restore(&c, "cli.snap", RestoreOptions::new().force(true))
        .await
        .unwrap_err();
    assert!(matches!(e, BackupError::ChecksumMissing { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("--no-checksum"), "{text}");
    assert!(text.contains("snapshot save"), "{text}");
    assert!(text.contains("SHA256SUMS"), "{text}");

    // The archive itself is still checked: a damaged copy is refused, nothing is sent.
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(dir.path().join("damaged.snap"), &bytes).unwrap();
    let e = backups
        .restore(
            &c,
            "damaged.snap",
            RestoreOptions::new().force(true).no_checksum(true),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, BackupError::InvalidSnapshot { .. }), "{e}");
    // Unconfirmed, it is checked and refused for want of --force.
    let e = backups
        .restore(&c, "cli.snap", RestoreOptions::new().no_checksum(true))
        .await
        .unwrap_err();
    assert!(matches!(e, BackupError::ForceRequired { .. }), "{e}");
    assert_eq!(value(&c).await.as_deref(), Some("changed-later"));

    // With the option: restored.
    let info = backups
        .restore(
            &c,
            "cli.snap",
            RestoreOptions::new().force(true).no_checksum(true),
        )
        .await
        .unwrap();
    assert!(info.index > 0);
    assert_eq!(info.bytes, std::fs::metadata(&file).unwrap().len());
    common::eventually(
        "the CLI snapshot's value is back",
        Duration::from_secs(30),
        || async { (value(&c).await.as_deref() == Some("in-the-cli-snapshot")).then_some(()) },
    )
    .await;
}
