//! The incident and DR half of the guide: health probes, init, seal/unseal, step-down, raft,
//! backup and restore. Nothing here changes a server unless told to (`--yes`, `--force`).

use std::io::Write;
use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;
use serde_json::{json, Value};
use vault_ops_core::api::raft::JoinRequest;
use vault_ops_core::api::sys::{HealthState, InitRequest};
use vault_ops_core::backup::remote::{is_remote_url, split_object_url, RemoteBackup, RemoteStore};
use vault_ops_core::backup::{Backups, RestoreOptions};
use vault_ops_core::config::parse_duration;
use vault_ops_core::health_report::Thresholds;
use vault_ops_core::UnsealKey;

use super::{read_file, read_stdin, Ctx};
use crate::cli::{
    BackupArgs, BackupCommand, BackupListArgs, HealthArgs, InitArgs, Probe, RaftCommand,
    RestoreArgs, UnsealArgs,
};
use crate::exit;
use crate::output::{bytes_text, println_out, rfc3339_date};
use crate::report::{render, CliError};

/// The most unseal keys read from one input.
const MAX_KEYS: usize = 100;
/// The longest unseal key line accepted.
const MAX_KEY_LEN: usize = 1024;
/// How long `unseal` waits for a node that accepted enough keys but still reports sealed.
const UNSEAL_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// `health --probe ...`: see the command's help for the exit codes.
pub(crate) async fn health(ctx: &Ctx, a: HealthArgs) -> Result<i32, CliError> {
    let json = a.json || ctx.out.json();
    let address = ctx.client.current_address().to_string();
    let probe = match a.probe {
        Probe::Liveness => "liveness",
        Probe::Readiness => "readiness",
        Probe::Report => {
            let mut t = Thresholds::default();
            if let Some(m) = a.memory_limit {
                t = t.memory_limit_bytes(m);
            }
            if let Some(n) = a.max_leases {
                t = t.max_leases(n);
            }
            if let Some(days) = a.cert_warn_days {
                t = t.min_cert_validity(std::time::Duration::from_secs(u64::from(days) * 86_400));
            }
            if let Some(d) = &a.min_token_ttl {
                let d = parse_duration(d).ok_or_else(|| {
                    CliError::Usage(format!(
                        "--min-token-ttl {d:?} is not a duration (e.g. 1h, 30m)"
                    ))
                })?;
                t = t.min_token_ttl(d);
            }
            let report = ctx.client.health_report(&t).await;
            if json {
                println_out(&report.to_json());
            } else {
                print!("{report}");
            }
            return Ok(report.exit_code());
        }
    };
    let (ok, detail) = match ctx.client.sys().health().await {
        // Liveness: the process answers. Sealed, standby or an expiring token never fail it:
        // restarting the pod would not fix any of them.
        Ok(h) if a.probe == Probe::Liveness => (true, format!("answers ({})", h.state)),
        Ok(h) => {
            let ready = h.state.is_serving() && h.state != HealthState::StandbyActiveUnreachable;
            (ready, format!("{}", h.state))
        }
        Err(e) => {
            let msg = render(&CliError::Vault(e), &ctx.target);
            (
                false,
                msg.trim_end().trim_start_matches("Error: ").to_string(),
            )
        }
    };
    if json {
        ctx.out
            .print_json(&json!({"probe": probe, "ok": ok, "address": address, "detail": detail}));
    } else {
        println_out(&format!(
            "{probe}: {} — {address} {detail}",
            if ok { "ok" } else { "FAILED" }
        ));
    }
    Ok(if ok { exit::OK } else { exit::FAILED })
}

/// Creates `path` for secrets: a new file (never an existing one, never through a symlink),
/// mode 0600.
fn create_secret_file(path: &Path) -> Result<std::fs::File, CliError> {
    super::create_private_file(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            CliError::Usage(format!(
                "{} already exists: init never overwrites a file; choose a new --output path",
                path.display()
            ))
        } else {
            CliError::Local {
                context: format!("creating {}", path.display()),
                source: e,
            }
        }
    })
}

/// `init`: the keys go to a new 0600 file, or to stdout only with `--stdout`.
pub(crate) async fn init(ctx: &Ctx, a: InitArgs) -> Result<(), CliError> {
    if a.output.is_none() && !a.stdout {
        return Err(CliError::Usage(
            "init prints unseal keys and the root token: choose where they go with \
             --output FILE (a new 0600 file) or --stdout"
                .into(),
        ));
    }
    if a.threshold == 0 || a.shares == 0 || a.threshold > a.shares || a.shares > 255 {
        return Err(CliError::Usage(format!(
            "--threshold {} of --shares {}: need 1 <= threshold <= shares <= 255",
            a.threshold, a.shares
        )));
    }
    // The file first: keys that cannot be stored must never be generated.
    let mut file = match &a.output {
        Some(p) => Some((create_secret_file(p)?, p.clone())),
        None => None,
    };
    let reply = match ctx
        .client
        .sys()
        .init(&InitRequest::new(a.shares, a.threshold))
        .await
    {
        Ok(r) => r,
        Err(e) => {
            if let Some((f, p)) = file.take() {
                drop(f);
                let _ = std::fs::remove_file(&p);
            }
            return Err(e.into());
        }
    };
    let expose = |v: &[UnsealKey]| -> Vec<String> {
        v.iter().map(|k| k.expose_secret().to_string()).collect()
    };
    let doc = json!({
        "unseal_keys_b64": expose(&reply.keys_base64),
        "unseal_keys_hex": expose(&reply.keys),
        "unseal_shares": a.shares,
        "unseal_threshold": a.threshold,
        "root_token": reply.root_token.expose_secret(),
    });
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    match file {
        Some((mut f, p)) => {
            f.write_all(text.as_bytes())
                .and_then(|_| f.write_all(b"\n"))
                .and_then(|_| f.sync_all())
                .map_err(|e| CliError::Local {
                    context: format!(
                        "writing the keys to {} (the server IS initialised now: do not lose \
                         this file's partial content)",
                        p.display()
                    ),
                    source: e,
                })?;
            ctx.out.done(
                &format!(
                    "Initialised with {} key shares, threshold {}. Unseal keys and the root \
                     token are in {} (mode 0600): move them somewhere safe.\nNext: vault-ops \
                     unseal --key-file {}",
                    a.shares,
                    a.threshold,
                    p.display(),
                    p.display()
                ),
                &json!({"initialized": true, "output": p.display().to_string()}),
            );
        }
        None => println_out(&text),
    }
    Ok(())
}

/// `seal --yes`.
pub(crate) async fn seal(ctx: &Ctx, yes: bool) -> Result<(), CliError> {
    if !yes {
        return Err(CliError::Usage(format!(
            "sealing {} stops it serving every client until it is unseal with the unseal keys: \
             confirm with --yes",
            ctx.client.current_address()
        )));
    }
    ctx.client.sys().seal().await?;
    ctx.out.done(
        &format!("Success! {} is sealed.", ctx.client.current_address()),
        &json!({"sealed": true}),
    );
    Ok(())
}

/// Unseal keys from `text`: the JSON `init --output` writes, or one key per line.
fn parse_keys(text: &str) -> Result<Vec<UnsealKey>, CliError> {
    let keys: Vec<String> = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => {
            let list = ["unseal_keys_b64", "unseal_keys_hex", "keys_base64", "keys"]
                .iter()
                .find_map(|k| m.get(*k).and_then(Value::as_array))
                .ok_or_else(|| {
                    CliError::Usage("the JSON key file has no unseal_keys_b64 list".into())
                })?;
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        }
        _ => text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect(),
    };
    if keys.is_empty() {
        return Err(CliError::Usage("no unseal key given".into()));
    }
    if keys.len() > MAX_KEYS || keys.iter().any(|k| k.len() > MAX_KEY_LEN) {
        return Err(CliError::Usage(format!(
            "at most {MAX_KEYS} keys of at most {MAX_KEY_LEN} characters"
        )));
    }
    Ok(keys.into_iter().map(UnsealKey::new).collect())
}

/// `unseal`: keys from stdin or `--key-file`, submitted until the server is unsealed. Exit 5
/// when keys are still missing.
pub(crate) async fn unseal(ctx: &Ctx, a: UnsealArgs) -> Result<i32, CliError> {
    let sys = ctx.client.sys();
    let status = sys.seal_status().await?;
    if !status.initialized {
        return Err(CliError::NotInitialized(
            "the server is not initialised, so there is nothing to unseal".into(),
        ));
    }
    if !status.sealed {
        ctx.out
            .done("The server is already unsealed.", &json!({"sealed": false}));
        return Ok(exit::OK);
    }
    let text = match &a.key_file {
        Some(p) => read_file(p, "the key file")?,
        None => read_stdin("the unseal key", true)?,
    };
    let keys = parse_keys(&text)?;
    let mut last = status;
    for key in &keys {
        last = sys.unseal(key).await?;
        if !last.sealed {
            break;
        }
    }
    // Progress back at 0 after a key: the threshold was met and the node is still unsealing
    // (a raft node that just joined fetches the keyring from the leader first). Wait for it,
    // bounded.
    let deadline = std::time::Instant::now() + UNSEAL_WAIT;
    while last.sealed && last.progress == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        last = sys.seal_status().await?;
    }
    if last.sealed {
        let msg = format!(
            "still sealed: {} of {} key shares given; give the remaining ones",
            last.progress, last.threshold
        );
        if ctx.out.json() {
            ctx.out.print_json(
                &json!({"sealed": true, "progress": last.progress, "threshold": last.threshold}),
            );
        } else {
            println_out(&msg);
        }
        return Ok(exit::SEALED);
    }
    ctx.out.done(
        &format!("Success! {} is unsealed.", ctx.client.current_address()),
        &json!({"sealed": false}),
    );
    Ok(exit::OK)
}

/// `step-down --yes`.
pub(crate) async fn step_down(ctx: &Ctx, yes: bool) -> Result<(), CliError> {
    if !yes {
        return Err(CliError::Usage(format!(
            "step-down makes the active node {} give up leadership (clients see a short \
             failover): confirm with --yes",
            ctx.client.current_address()
        )));
    }
    // Vault answers a step-down with 204 without doing anything (or checking the token) on a
    // sealed node, a standby, or a server without HA: say which instead of "Success!".
    let addr = ctx.client.current_address().to_string();
    let sys = ctx.client.sys();
    let seal = sys.seal_status().await?;
    if !seal.initialized {
        return Err(CliError::NotInitialized(format!(
            "{addr} is not initialised: there is no active node to step down"
        )));
    }
    if seal.sealed {
        return Err(CliError::Sealed(format!(
            "{addr} is sealed, so it is not the active node: nothing was stepped down"
        )));
    }
    let leader = sys.leader().await?;
    if !leader.ha_enabled {
        return Err(CliError::Other(format!(
            "{addr} does not run in HA mode (storage {}): there is no other node to take \
             over, so nothing was stepped down",
            seal.storage_type.as_deref().unwrap_or("unknown")
        )));
    }
    if !leader.is_self {
        return Err(CliError::Other(format!(
            "{addr} is a standby, not the active node: nothing was stepped down; run it \
             against the active node: --address {}",
            leader.leader_address
        )));
    }
    sys.step_down().await?;
    ctx.out.done(
        &format!("Success! {} stepped down.", ctx.client.current_address()),
        &json!({"stepped_down": true}),
    );
    Ok(())
}

/// `raft ...`.
pub(crate) async fn raft(ctx: &Ctx, cmd: RaftCommand) -> Result<(), CliError> {
    let raft = ctx.client.raft();
    match cmd {
        RaftCommand::Peers => {
            let c = raft.configuration().await?;
            let rows = c
                .servers
                .iter()
                .map(|p| {
                    vec![
                        p.node_id.clone(),
                        p.address.clone(),
                        if p.leader { "leader" } else { "follower" }.to_string(),
                        p.voter.to_string(),
                    ]
                })
                .collect();
            let json: Vec<Value> = c
                .servers
                .iter()
                .map(|p| json!({"node_id": p.node_id, "address": p.address, "leader": p.leader, "voter": p.voter}))
                .collect();
            ctx.out
                .rows(&["Node", "Address", "State", "Voter"], rows, &json!(json));
        }
        RaftCommand::Join {
            leader,
            non_voter,
            retry,
            leader_ca_cert,
        } => {
            let mut req = JoinRequest::new(leader.clone());
            if let Some(p) = leader_ca_cert {
                req = req.ca_cert(read_file(&p, "the leader CA certificate")?);
            }
            req.non_voter = non_voter;
            req.retry = retry;
            let joined = raft.join(&req).await?;
            if !joined {
                return Err(CliError::Usage(format!(
                    "{} did not join {leader} (Vault answered joined=false)",
                    ctx.client.current_address()
                )));
            }
            ctx.out.done(
                &format!(
                    "Success! {} joined {leader}. Unseal it next: vault-ops --address {} unseal",
                    ctx.client.current_address(),
                    ctx.client.current_address()
                ),
                &json!({"joined": true}),
            );
        }
        RaftCommand::Remove { node_id, yes } => {
            let c = raft.configuration().await?;
            let Some(peer) = c.peer(&node_id) else {
                let known: Vec<&str> = c.servers.iter().map(|p| p.node_id.as_str()).collect();
                return Err(CliError::NotFound(format!(
                    "{node_id:?} is not a raft peer (peers: {})",
                    known.join(", ")
                )));
            };
            if peer.leader {
                return Err(CliError::Usage(format!(
                    "{node_id:?} is the leader: run `vault-ops step-down --yes` on it first"
                )));
            }
            if !yes {
                return Err(CliError::Usage(format!(
                    "removing {node_id:?} ({}) shrinks the raft cluster: confirm with --yes",
                    peer.address
                )));
            }
            raft.remove_peer(&node_id).await?;
            ctx.out.done(
                &format!("Success! {node_id} removed from the raft cluster."),
                &json!({"removed": node_id}),
            );
        }
        RaftCommand::Autopilot => {
            let s = raft.autopilot_state().await?;
            let json = json!({
                "healthy": s.healthy, "failure_tolerance": s.failure_tolerance,
                "leader": s.leader, "voters": s.voters, "non_voters": s.non_voters,
                "servers": s.servers.values().map(|v| json!({
                    "id": v.id, "address": v.address, "node_status": v.node_status,
                    "status": v.status, "healthy": v.healthy, "last_contact": v.last_contact,
                    "last_index": v.last_index, "stable_since": v.stable_since, "version": v.version,
                })).collect::<Vec<_>>(),
            });
            if ctx.out.json() {
                ctx.out.print_json(&json);
                return Ok(());
            }
            println_out(&format!(
                "Healthy: {}    Failure tolerance: {}    Leader: {}",
                s.healthy, s.failure_tolerance, s.leader
            ));
            let rows = s
                .servers
                .values()
                .map(|v| {
                    vec![
                        v.id.clone(),
                        v.address.clone(),
                        v.status.clone(),
                        v.healthy.to_string(),
                        if v.last_contact.is_empty() {
                            "-".into()
                        } else {
                            v.last_contact.clone()
                        },
                        v.last_index.to_string(),
                        rfc3339_date(&v.stable_since),
                    ]
                })
                .collect();
            ctx.out.rows(
                &[
                    "Node",
                    "Address",
                    "Status",
                    "Healthy",
                    "Last Contact",
                    "Last Index",
                    "Stable Since",
                ],
                rows,
                &Value::Null,
            );
        }
    }
    Ok(())
}

/// `backup --dir DIR --keep N [--upload URL --keep-remote N]`, `backup list`, `backup upload`.
pub(crate) async fn backup(ctx: &Ctx, a: BackupArgs) -> Result<(), CliError> {
    match a.command {
        Some(BackupCommand::List(l)) => return backup_list(ctx, l).await,
        Some(BackupCommand::Upload(u)) => {
            let remote = remote_store(&u.to)?.keep(u.keep_remote);
            let (up, removed) = upload_and_prune(&remote, &u.file).await?;
            ctx.out.key_values(
                &upload_rows(&up, &removed),
                &json!({"uploaded": up.url, "bytes": up.bytes, "sha256": up.sha256,
                        "already_there": up.already_there, "removed_remote": removed}),
            );
            return Ok(());
        }
        None => {}
    }
    let dir = a
        .dir
        .ok_or_else(|| CliError::Usage("backup needs --dir DIR".into()))?;
    // The store first: a bad URL or configuration fails before a snapshot is taken.
    let remote = match &a.upload {
        Some(url) => Some(remote_store(url)?.keep(a.keep_remote.unwrap_or(a.keep))),
        None => None,
    };
    let mut backups = Backups::new(&dir).keep(a.keep);
    let bar = crate::progress::transfer("snapshot save").map(|(bar, hook)| {
        backups = backups.clone().on_progress(hook);
        bar
    });
    let made = backups.create(&ctx.client).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let made = made?;
    let uploaded = match &remote {
        Some(remote) => Some(upload_and_prune(remote, &made.path).await?),
        None => None,
    };
    let removed: Vec<String> = made
        .removed
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut rows = vec![
        ("Backup", made.path.display().to_string()),
        ("Checksum File", made.checksum_path.display().to_string()),
        ("Size", bytes_text(made.info.bytes)),
        ("Raft Index", made.info.index.to_string()),
        ("Removed (retention)", list_text(&removed)),
    ];
    if let Some((up, removed_remote)) = &uploaded {
        rows.extend(upload_rows(up, removed_remote));
    }
    ctx.out.key_values(
        &rows,
        &json!({
            "path": made.path.display().to_string(),
            "checksum_path": made.checksum_path.display().to_string(),
            "bytes": made.info.bytes, "index": made.info.index, "removed": removed,
            "uploaded": uploaded.as_ref().map(|(u, _)| u.url.clone()),
            "removed_remote": uploaded.as_ref().map(|(_, r)| r.clone()).unwrap_or_default(),
        }),
    );
    Ok(())
}

/// The object store at `url` (credentials from the environment).
fn remote_store(url: &str) -> Result<RemoteStore, CliError> {
    if !is_remote_url(url) {
        return Err(CliError::Usage(format!(
            "{url} is not an object storage URL: use s3://BUCKET/PREFIX, gs://BUCKET/PREFIX \
             or az://CONTAINER/PREFIX"
        )));
    }
    Ok(RemoteStore::from_url(url)?)
}

/// Uploads `path`, then applies the bucket's retention. A failed upload keeps the local
/// backup and says so.
async fn upload_and_prune(
    remote: &RemoteStore,
    path: &Path,
) -> Result<(RemoteBackup, Vec<String>), CliError> {
    let upload_failed = |source| CliError::Upload {
        url: remote.url().to_string(),
        kept: path.to_path_buf(),
        source: Box::new(source),
    };
    let up = remote.upload(path).await.map_err(upload_failed)?;
    let removed = remote.prune().await?;
    Ok((up, removed))
}

fn upload_rows(up: &RemoteBackup, removed: &[String]) -> Vec<(&'static str, String)> {
    vec![
        (
            "Uploaded",
            if up.already_there {
                format!("{} (already there, identical)", up.url)
            } else {
                up.url.clone()
            },
        ),
        (
            "Verified",
            format!("{}, sha256 {}", bytes_text(up.bytes), up.sha256),
        ),
        ("Removed from Store (retention)", list_text(removed)),
    ]
}

fn list_text(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

/// `backup list --dir DIR | --remote URL`.
async fn backup_list(ctx: &Ctx, l: BackupListArgs) -> Result<(), CliError> {
    let headers = ["Backup", "Size", "Taken (UTC)"];
    if let Some(url) = &l.remote {
        let found = remote_store(url)?.list().await?;
        let rows = found
            .iter()
            .map(|o| vec![o.url.clone(), bytes_text(o.bytes), stamp_text(&o.timestamp)])
            .collect();
        let json: Vec<Value> = found
            .iter()
            .map(|o| json!({"name": o.name, "url": o.url, "bytes": o.bytes, "timestamp": o.timestamp}))
            .collect();
        if found.is_empty() && !ctx.out.json() {
            println_out(&format!("No backups under {url}."));
            return Ok(());
        }
        ctx.out.rows(&headers, rows, &Value::Array(json));
        return Ok(());
    }
    let dir = l
        .dir
        .ok_or_else(|| CliError::Usage("backup list needs --dir DIR or --remote URL".into()))?;
    let found = Backups::new(&dir).list().await?;
    let mut rows = Vec::new();
    let mut json = Vec::new();
    for b in &found {
        let bytes = std::fs::metadata(&b.path).map(|m| m.len()).unwrap_or(0);
        rows.push(vec![
            b.path.display().to_string(),
            bytes_text(bytes),
            stamp_text(&b.timestamp),
        ]);
        json.push(
            json!({"path": b.path.display().to_string(), "bytes": bytes, "timestamp": b.timestamp}),
        );
    }
    if found.is_empty() && !ctx.out.json() {
        println_out(&format!("No backups in {}.", dir.display()));
        return Ok(());
    }
    ctx.out.rows(&headers, rows, &Value::Array(json));
    Ok(())
}

/// `20250101_020000` → `2025-01-01 02:00:00`.
fn stamp_text(stamp: &str) -> String {
    let b = stamp.as_bytes();
    if b.len() != 15 {
        return stamp.to_string();
    }
    format!(
        "{}-{}-{} {}:{}:{}",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13],
        &stamp[13..15]
    )
}

/// `restore FILE --force` (FILE may be an object storage URL).
pub(crate) async fn restore(ctx: &Ctx, a: RestoreArgs) -> Result<(), CliError> {
    let options = RestoreOptions::new()
        .force(a.force)
        .from_another_cluster(a.from_another_cluster);
    let shown = a.file.display().to_string();
    let remote = match a.file.to_str().filter(|f| is_remote_url(f)) {
        Some(url) => {
            let (base, name) = split_object_url(url)?;
            Some((remote_store(base)?, name.to_string()))
        }
        None => None,
    };
    let mut backups = match &remote {
        Some(_) => Backups::new(std::env::temp_dir()),
        None => {
            let dir = a
                .file
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            Backups::new(dir)
        }
    };
    let bar = crate::progress::transfer("snapshot restore").map(|(bar, hook)| {
        backups = backups.clone().on_progress(hook);
        bar
    });
    let info = match &remote {
        Some((store, name)) => {
            backups
                .restore_remote(&ctx.client, store, name, options)
                .await
        }
        None => {
            let name = a
                .file
                .file_name()
                .map(PathBuf::from)
                .ok_or_else(|| CliError::Usage(format!("{shown} is not a file name")))?;
            backups.restore(&ctx.client, &name, options).await
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let info = info?;
    ctx.out.done(
        &format!(
            "Success! {shown} restored ({}, raft index {}).",
            bytes_text(info.bytes),
            info.index
        ),
        &json!({"restored": shown, "bytes": info.bytes, "index": info.index}),
    );
    Ok(())
}
