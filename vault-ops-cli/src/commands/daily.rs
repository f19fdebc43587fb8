//! The daily half of the guide: status, kv, policies, mounts, tokens, generic paths.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Map, Value};
use vault_ops_core::api::kv2::{KvSecret, MetadataUpdate, VersionMetadata};
use vault_ops_core::api::sys::mounts::MountInfo;
use vault_ops_core::api::sys::HealthState;

use super::{check_path, parse_data, read_file, read_stdin, token_arg, Ctx};
use crate::cli::{KvCommand, KvMetadataCommand, PolicyCommand, ReadArgs, TokenCommand, WriteArgs};
use crate::exit;
use crate::output::{println_out, rfc3339_date, ttl_text, unix_date, value_text};
use crate::report::CliError;

/// `status`: exit 0 when unsealed, 5 when sealed or not initialised.
pub(crate) async fn status(ctx: &Ctx) -> Result<i32, CliError> {
    let sys = ctx.client.sys();
    let health = sys.health().await?;
    let seal = sys.seal_status().await?;
    let serving = health.state.is_serving();
    let leader = if serving {
        sys.leader().await.ok()
    } else {
        None
    };
    let token = if serving && ctx.client.has_token() {
        Some(ctx.client.tokens().lookup_self().await)
    } else {
        None
    };
    let mut rows: Vec<(&str, String)> = vec![
        ("Address", ctx.client.current_address().to_string()),
        ("Seal Type", seal.seal_type.clone()),
        ("Initialized", seal.initialized.to_string()),
        ("Sealed", seal.sealed.to_string()),
        ("Total Shares", seal.shares.to_string()),
        ("Threshold", seal.threshold.to_string()),
    ];
    if seal.sealed && seal.initialized {
        rows.push((
            "Unseal Progress",
            format!("{}/{}", seal.progress, seal.threshold),
        ));
    }
    rows.push(("Version", or_dash(&seal.version)));
    rows.push((
        "Storage Type",
        seal.storage_type.clone().unwrap_or_else(|| "-".into()),
    ));
    rows.push((
        "Cluster Name",
        seal.cluster_name
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "-".into()),
    ));
    rows.push(("Node State", health.state.to_string()));
    if let Some(l) = &leader {
        rows.push(("HA Enabled", l.ha_enabled.to_string()));
        if l.ha_enabled {
            rows.push(("Active Node Address", or_dash(&l.leader_address)));
            if l.raft_committed_index > 0 {
                rows.push(("Raft Committed Index", l.raft_committed_index.to_string()));
            }
        }
    }
    let mut token_json = Value::Null;
    match &token {
        Some(Ok(t)) => {
            rows.push((
                "Token",
                format!("{} [{}]", t.display_name, t.policies.join(", ")),
            ));
            rows.push(("Token TTL", ttl_text(t.ttl)));
            token_json = json!({"display_name": t.display_name, "policies": t.policies, "ttl_seconds": t.ttl, "renewable": t.renewable});
        }
        Some(Err(e)) => rows.push(("Token", format!("lookup failed: {e}"))),
        None if !ctx.client.has_token() => rows.push(("Token", "none set".into())),
        None => {}
    }
    let json = json!({
        "address": ctx.client.current_address(),
        "initialized": seal.initialized,
        "sealed": seal.sealed,
        "seal_type": seal.seal_type,
        "shares": seal.shares,
        "threshold": seal.threshold,
        "progress": seal.progress,
        "version": seal.version,
        "storage_type": seal.storage_type,
        "cluster_name": seal.cluster_name,
        "node_state": health.state.to_string(),
        "ha_enabled": leader.as_ref().map(|l| l.ha_enabled),
        "active_node_address": leader.as_ref().map(|l| l.leader_address.clone()),
        "token": token_json,
    });
    ctx.out.key_values(&rows, &json);
    Ok(match health.state {
        HealthState::Sealed | HealthState::NotInitialized => exit::SEALED,
        _ => exit::OK,
    })
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

/// A KV path split into its mount and the path inside it.
pub(crate) struct KvPath {
    pub(crate) mount: String,
    pub(crate) inner: String,
    pub(crate) version: u8,
}

/// Finds the mount of `path` and its KV version, as `vault kv` does, from
/// `sys/internal/ui/mounts/<path>`.
pub(crate) async fn kv_path(ctx: &Ctx, path: &str) -> Result<KvPath, CliError> {
    let path = check_path(path)?;
    let reply = ctx
        .client
        .generic()
        .read::<Value>(&format!("sys/internal/ui/mounts/{path}"))
        .await?;
    let Some(reply) = reply else {
        return Err(CliError::NotFound(format!(
            "no secrets engine is mounted at {path:?}: see `vault-ops secrets list`"
        )));
    };
    let data = &reply.data;
    let mount = data
        .get("path")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim_matches('/')
        .to_string();
    let kind = data.get("type").and_then(Value::as_str).unwrap_or("");
    if mount.is_empty() || !path.starts_with(&mount) {
        return Err(CliError::NotFound(format!(
            "no secrets engine is mounted at {path:?}: see `vault-ops secrets list`"
        )));
    }
    if kind != "kv" && kind != "generic" {
        return Err(CliError::Usage(format!(
            "{path:?} is in the {kind:?} engine mounted at {mount}/, not a KV engine: use \
             `vault-ops read/write/list`"
        )));
    }
    let version = match data.pointer("/options/version").and_then(Value::as_str) {
        Some("2") => 2,
        _ => 1,
    };
    let inner = path[mount.len()..].trim_matches('/').to_string();
    Ok(KvPath {
        mount,
        inner,
        version,
    })
}

pub(crate) fn need_inner(p: &KvPath) -> Result<(), CliError> {
    if p.inner.is_empty() {
        return Err(CliError::Usage(format!(
            "give the secret's path inside the mount, e.g. {}/app/config",
            p.mount
        )));
    }
    Ok(())
}

pub(crate) fn v2_only(p: &KvPath, what: &str) -> Result<(), CliError> {
    if p.version != 2 {
        return Err(CliError::Usage(format!(
            "{what} needs KV version 2, but {}/ is KV version 1 (no versions)",
            p.mount
        )));
    }
    Ok(())
}

fn not_found(p: &KvPath) -> CliError {
    CliError::NotFound(format!("no secret at {}/{}", p.mount, p.inner))
}

/// `kv ...`.
pub(crate) async fn kv(ctx: &Ctx, cmd: KvCommand) -> Result<(), CliError> {
    match cmd {
        KvCommand::Get(a) => {
            let p = kv_path(ctx, &a.path).await?;
            need_inner(&p)?;
            if p.version == 1 {
                if a.version.is_some() {
                    v2_only(&p, "--version")?;
                }
                let data = ctx
                    .client
                    .kv1(&p.mount)
                    .get_json(&p.inner)
                    .await?
                    .ok_or_else(|| not_found(&p))?;
                let Value::Object(map) = data else {
                    return Err(not_found(&p));
                };
                return print_secret(ctx, &map, None, a.field.as_deref(), &p);
            }
            let kv = ctx.client.kv2(p.mount.as_str());
            let read = match a.version {
                Some(v) => kv.get_version::<Map<String, Value>>(&p.inner, v).await,
                None => kv.get_json(&p.inner).await,
            };
            let secret: KvSecret<Map<String, Value>> = match read {
                Err(e) if e.is_not_found() => return Err(not_found(&p)),
                other => other?,
            };
            print_secret(
                ctx,
                &secret.data,
                Some(&secret.metadata),
                a.field.as_deref(),
                &p,
            )
        }
        KvCommand::Put(a) | KvCommand::Patch(a) if a.data.is_empty() => {
            Err(CliError::Usage(format!("no data given for {}", a.path)))
        }
        KvCommand::Put(a) => {
            let p = kv_path(ctx, &a.path).await?;
            need_inner(&p)?;
            let data = parse_data(&a.data)?;
            if p.version == 1 {
                if a.cas.is_some() {
                    v2_only(&p, "--cas")?;
                }
                ctx.client.kv1(&p.mount).put(&p.inner, &data).await?;
                ctx.out.done(
                    &format!("Success! Data written to: {}/{}", p.mount, p.inner),
                    &json!({"path": format!("{}/{}", p.mount, p.inner)}),
                );
                return Ok(());
            }
            let kv = ctx.client.kv2(p.mount.as_str());
            let meta = match a.cas {
                Some(cas) => kv.put_cas(&p.inner, &data, cas).await?,
                None => kv.put(&p.inner, &data).await?,
            };
            print_written(ctx, &p, &meta);
            Ok(())
        }
        KvCommand::Patch(a) => {
            let p = kv_path(ctx, &a.path).await?;
            need_inner(&p)?;
            v2_only(&p, "kv patch")?;
            let data = parse_data(&a.data)?;
            let kv = ctx.client.kv2(p.mount.as_str());
            let meta = match a.cas {
                Some(cas) => kv.patch_cas(&p.inner, &data, cas).await,
                None => kv.patch(&p.inner, &data).await,
            };
            let meta = match meta {
                Err(e) if e.is_not_found() => return Err(not_found(&p)),
                other => other?,
            };
            print_written(ctx, &p, &meta);
            Ok(())
        }
        KvCommand::List(a) => {
            let p = kv_path(ctx, &a.path).await?;
            let keys = if p.version == 2 {
                ctx.client.kv2(p.mount.as_str()).list(&p.inner).await?
            } else {
                ctx.client.kv1(&p.mount).list(&p.inner).await?
            };
            print_keys(ctx, keys, &format!("{}/{}", p.mount, p.inner))
        }
        KvCommand::Delete(a) => {
            let p = kv_path(ctx, &a.path).await?;
            need_inner(&p)?;
            if p.version == 1 {
                if !a.versions.is_empty() {
                    v2_only(&p, "--versions")?;
                }
                ctx.client.kv1(&p.mount).delete(&p.inner).await?;
            } else if a.versions.is_empty() {
                ctx.client
                    .kv2(p.mount.as_str())
                    .delete_latest(&p.inner)
                    .await?;
            } else {
                ctx.client
                    .kv2(p.mount.as_str())
                    .delete_versions(&p.inner, &a.versions)
                    .await?;
            }
            done(ctx, "deleted", &p, &a.versions);
            Ok(())
        }
        KvCommand::Undelete(a) => {
            let p = kv_path(ctx, &a.path).await?;
            need_inner(&p)?;
            v2_only(&p, "kv undelete")?;
            ctx.client
                .kv2(p.mount.as_str())
                .undelete(&p.inner, &a.versions)
                .await?;
            done(ctx, "undeleted", &p, &a.versions);
            Ok(())
        }
        KvCommand::Destroy(a) => {
            let p = kv_path(ctx, &a.path).await?;
            need_inner(&p)?;
            v2_only(&p, "kv destroy")?;
            ctx.client
                .kv2(p.mount.as_str())
                .destroy(&p.inner, &a.versions)
                .await?;
            done(ctx, "destroyed", &p, &a.versions);
            Ok(())
        }
        KvCommand::Metadata(m) => kv_metadata(ctx, m).await,
    }
}

fn done(ctx: &Ctx, what: &str, p: &KvPath, versions: &[u64]) {
    let list: Vec<String> = versions.iter().map(u64::to_string).collect();
    let which = if versions.is_empty() {
        "the latest version".to_string()
    } else {
        format!("version(s) {}", list.join(", "))
    };
    ctx.out.done(
        &format!("Success! {which} of {}/{} {what}", p.mount, p.inner),
        &json!({"path": format!("{}/{}", p.mount, p.inner), what: versions}),
    );
}

async fn kv_metadata(ctx: &Ctx, cmd: KvMetadataCommand) -> Result<(), CliError> {
    match cmd {
        KvMetadataCommand::Get(a) => {
            let p = kv_path(ctx, &a.path).await?;
            need_inner(&p)?;
            v2_only(&p, "kv metadata")?;
            let m = ctx
                .client
                .kv2(p.mount.as_str())
                .read_metadata(&p.inner)
                .await?
                .ok_or_else(|| not_found(&p))?;
            let custom: Vec<String> = m
                .custom_metadata
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let rows = vec![
                ("Current Version", m.current_version.to_string()),
                ("Oldest Version", m.oldest_version.to_string()),
                (
                    "Max Versions",
                    if m.max_versions == 0 {
                        "unlimited (mount default)".into()
                    } else {
                        m.max_versions.to_string()
                    },
                ),
                ("CAS Required", m.cas_required.to_string()),
                ("Delete Version After", m.delete_version_after.clone()),
                ("Created", rfc3339_date(&m.created_time)),
                ("Updated", rfc3339_date(&m.updated_time)),
                (
                    "Custom Metadata",
                    if custom.is_empty() {
                        "-".into()
                    } else {
                        custom.join(", ")
                    },
                ),
            ];
            let versions: Vec<Value> = m
                .versions
                .iter()
                .map(|(v, s)| json!({"version": v, "created_time": s.created_time, "deletion_time": s.deletion_time, "destroyed": s.destroyed}))
                .collect();
            let json = json!({
                "current_version": m.current_version,
                "oldest_version": m.oldest_version,
                "max_versions": m.max_versions,
                "cas_required": m.cas_required,
                "delete_version_after": m.delete_version_after,
                "created_time": m.created_time,
                "updated_time": m.updated_time,
                "custom_metadata": m.custom_metadata,
                "versions": versions,
            });
            if ctx.out.json() {
                ctx.out.print_json(&json);
                return Ok(());
            }
            ctx.out.key_values(&rows, &json);
            println_out("");
            let rows: Vec<Vec<String>> = m
                .versions
                .iter()
                .rev()
                .map(|(v, s)| {
                    let state = if s.destroyed {
                        "destroyed".to_string()
                    } else if !s.deletion_time.is_empty() {
                        format!("deleted {}", rfc3339_date(&s.deletion_time))
                    } else {
                        "current".to_string()
                    };
                    vec![v.to_string(), rfc3339_date(&s.created_time), state]
                })
                .collect();
            ctx.out
                .rows(&["Version", "Created", "State"], rows, &Value::Null);
            Ok(())
        }
        KvMetadataCommand::Put(a) => {
            let p = kv_path(ctx, &a.path).await?;
            need_inner(&p)?;
            v2_only(&p, "kv metadata")?;
            let mut update = MetadataUpdate::new();
            if let Some(n) = a.max_versions {
                update = update.max_versions(n);
            }
            if let Some(b) = a.cas_required {
                update = update.cas_required(b);
            }
            if let Some(d) = a.delete_version_after {
                update = update.delete_version_after(d);
            }
            for kv in &a.custom_metadata {
                let (k, v) = kv.split_once('=').ok_or_else(|| {
                    CliError::Usage(format!("--custom-metadata {kv:?} is not KEY=VALUE"))
                })?;
                update = update.custom(k, v);
            }
            ctx.client
                .kv2(p.mount.as_str())
                .write_metadata(&p.inner, &update)
                .await?;
            ctx.out.done(
                &format!("Success! Metadata of {}/{} written", p.mount, p.inner),
                &json!({"path": format!("{}/{}", p.mount, p.inner)}),
            );
            Ok(())
        }
        KvMetadataCommand::Delete(a) => {
            let p = kv_path(ctx, &a.path).await?;
            need_inner(&p)?;
            v2_only(&p, "kv metadata")?;
            ctx.client
                .kv2(p.mount.as_str())
                .delete_metadata(&p.inner)
                .await?;
            ctx.out.done(
                &format!(
                    "Success! {}/{} and all its versions deleted",
                    p.mount, p.inner
                ),
                &json!({"path": format!("{}/{}", p.mount, p.inner)}),
            );
            Ok(())
        }
    }
}

fn print_secret(
    ctx: &Ctx,
    data: &Map<String, Value>,
    meta: Option<&VersionMetadata>,
    field: Option<&str>,
    p: &KvPath,
) -> Result<(), CliError> {
    if let Some(f) = field {
        let v = data.get(f).ok_or_else(|| {
            CliError::NotFound(format!(
                "the secret {}/{} has no field {f:?}",
                p.mount, p.inner
            ))
        })?;
        if ctx.out.json() {
            ctx.out.print_json(v);
        } else {
            println_out(&value_text(v));
        }
        return Ok(());
    }
    if ctx.out.json() {
        let mut out = json!({"data": data});
        if let Some(m) = meta {
            out["metadata"] = json!({"version": m.version, "created_time": m.created_time, "custom_metadata": m.custom_metadata});
        }
        ctx.out.print_json(&out);
        return Ok(());
    }
    if let Some(m) = meta {
        println_out(&format!(
            "== Secret {}/{} (version {}, created {}) ==",
            p.mount,
            p.inner,
            m.version,
            rfc3339_date(&m.created_time)
        ));
    }
    let rows: Vec<Vec<String>> = data
        .iter()
        .map(|(k, v)| vec![k.clone(), value_text(v)])
        .collect();
    ctx.out.rows(&["Key", "Value"], rows, &Value::Null);
    Ok(())
}

fn print_written(ctx: &Ctx, p: &KvPath, m: &VersionMetadata) {
    let rows = vec![
        ("Path", format!("{}/{}", p.mount, p.inner)),
        ("Version", m.version.to_string()),
        ("Created", rfc3339_date(&m.created_time)),
    ];
    ctx.out.key_values(
        &rows,
        &json!({"path": format!("{}/{}", p.mount, p.inner), "version": m.version, "created_time": m.created_time}),
    );
}

fn print_keys(ctx: &Ctx, keys: Vec<String>, at: &str) -> Result<(), CliError> {
    if keys.is_empty() {
        return Err(CliError::NotFound(format!(
            "no entries under {}",
            at.trim_end_matches('/')
        )));
    }
    if ctx.out.json() {
        ctx.out.print_json(&json!(keys));
    } else {
        let rows = keys.into_iter().map(|k| vec![k]).collect();
        ctx.out.rows(&["Keys"], rows, &Value::Null);
    }
    Ok(())
}

/// `policy ...`.
pub(crate) async fn policy(ctx: &Ctx, cmd: PolicyCommand) -> Result<(), CliError> {
    let policies = ctx.client.policies();
    match cmd {
        PolicyCommand::List => {
            let names = policies.list().await?;
            if ctx.out.json() {
                ctx.out.print_json(&json!(names));
            } else {
                names.iter().for_each(|n| println_out(n));
            }
        }
        PolicyCommand::Read { name } => {
            let p = policies
                .read(&name)
                .await?
                .ok_or_else(|| CliError::NotFound(format!("no policy named {name:?}")))?;
            if ctx.out.json() {
                ctx.out
                    .print_json(&json!({"name": p.name, "policy": p.policy}));
            } else {
                println_out(p.policy.trim_end());
            }
        }
        PolicyCommand::Write { name, file } => {
            let text = if file == "-" {
                read_stdin("the policy", false)?
            } else {
                read_file(Path::new(&file), "the policy file")?
            };
            if text.trim().is_empty() {
                return Err(CliError::Usage(format!("the policy in {file} is empty")));
            }
            policies.write(&name, &text).await?;
            ctx.out.done(
                &format!("Success! Uploaded policy: {name}"),
                &json!({"name": name}),
            );
        }
        PolicyCommand::Delete { name } => {
            policies.delete(&name).await?;
            ctx.out.done(
                &format!("Success! Deleted policy: {name}"),
                &json!({"name": name}),
            );
        }
    }
    Ok(())
}

fn mount_rows(mounts: &BTreeMap<String, MountInfo>) -> (Vec<Vec<String>>, Value) {
    let rows = mounts
        .iter()
        .map(|(path, m)| {
            let kind = match m.kv_version() {
                Some(v) if m.mount_type == "kv" => format!("kv (v{v})"),
                _ => m.mount_type.clone(),
            };
            vec![
                path.clone(),
                kind,
                m.accessor.clone(),
                or_dash(&m.description),
            ]
        })
        .collect();
    let json: Map<String, Value> = mounts
        .iter()
        .map(|(p, m)| (p.clone(), serde_json::to_value(m).unwrap_or(Value::Null)))
        .collect();
    (rows, Value::Object(json))
}

/// `auth list`.
pub(crate) async fn auth_list(ctx: &Ctx) -> Result<(), CliError> {
    let (rows, json) = mount_rows(&ctx.client.sys().list_auth().await?);
    ctx.out
        .rows(&["Path", "Type", "Accessor", "Description"], rows, &json);
    Ok(())
}

/// `secrets list`.
pub(crate) async fn secrets_list(ctx: &Ctx) -> Result<(), CliError> {
    let (rows, json) = mount_rows(&ctx.client.sys().list_mounts().await?);
    ctx.out
        .rows(&["Path", "Type", "Accessor", "Description"], rows, &json);
    Ok(())
}

/// `audit list`.
pub(crate) async fn audit_list(ctx: &Ctx) -> Result<(), CliError> {
    let devices = ctx.client.sys().list_audit().await?;
    if devices.is_empty() && !ctx.out.json() {
        println_out("No audit devices are enabled.");
        return Ok(());
    }
    let rows = devices
        .iter()
        .map(|(path, d)| {
            let opts: Vec<String> = d.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
            vec![
                path.clone(),
                d.device_type.clone(),
                or_dash(&d.description),
                opts.join(", "),
            ]
        })
        .collect();
    let json: Map<String, Value> = devices
        .iter()
        .map(|(p, d)| (p.clone(), serde_json::to_value(d).unwrap_or(Value::Null)))
        .collect();
    ctx.out.rows(
        &["Path", "Type", "Description", "Options"],
        rows,
        &Value::Object(json),
    );
    Ok(())
}

/// `token ...`.
pub(crate) async fn token(ctx: &Ctx, cmd: TokenCommand) -> Result<(), CliError> {
    let tokens = ctx.client.tokens();
    match cmd {
        TokenCommand::Lookup { token, accessor } => {
            let t = match (accessor, token_arg(&token)?) {
                (Some(a), _) => tokens.lookup_accessor(&a).await?,
                (None, Some(t)) => tokens.lookup(&t).await?,
                (None, None) => tokens.lookup_self().await?,
            };
            let rows = vec![
                ("Display Name", t.display_name.clone()),
                ("Accessor", t.accessor.clone()),
                ("Policies", t.policies.join(", ")),
                (
                    "Identity Policies",
                    if t.identity_policies.is_empty() {
                        "-".into()
                    } else {
                        t.identity_policies.join(", ")
                    },
                ),
                ("TTL", ttl_text(t.ttl)),
                (
                    "Expires",
                    t.expire_time
                        .as_deref()
                        .map_or_else(|| "never".into(), rfc3339_date),
                ),
                ("Created", unix_date(t.creation_time)),
                ("Renewable", t.renewable.to_string()),
                ("Orphan", t.orphan.to_string()),
                ("Type", or_dash(&t.token_type)),
                ("Path", or_dash(&t.path)),
                (
                    "Uses Left",
                    if t.num_uses == 0 {
                        "unlimited".into()
                    } else {
                        t.num_uses.to_string()
                    },
                ),
            ];
            let json = json!({
                "display_name": t.display_name, "accessor": t.accessor, "policies": t.policies,
                "identity_policies": t.identity_policies, "ttl_seconds": t.ttl,
                "expire_time": t.expire_time, "creation_time": t.creation_time,
                "renewable": t.renewable, "orphan": t.orphan, "type": t.token_type,
                "path": t.path, "num_uses": t.num_uses, "meta": t.meta,
            });
            ctx.out.key_values(&rows, &json);
        }
        TokenCommand::Capabilities { token, paths } => {
            let token = token_arg(&token)?;
            let mut rows = Vec::new();
            let mut json = Map::new();
            for path in &paths {
                let path = check_path(path)?;
                let caps = match &token {
                    Some(t) => tokens.capabilities(t, &path).await?,
                    None => tokens.capabilities_self(&path).await?,
                };
                rows.push(vec![path.clone(), caps.join(", ")]);
                json.insert(path, json!(caps));
            }
            ctx.out
                .rows(&["Path", "Capabilities"], rows, &Value::Object(json));
        }
    }
    Ok(())
}

/// `read PATH`.
pub(crate) async fn read(ctx: &Ctx, a: ReadArgs) -> Result<(), CliError> {
    let path = check_path(&a.path)?;
    let reply = ctx
        .client
        .generic()
        .read::<Value>(&path)
        .await?
        .ok_or_else(|| CliError::NotFound(format!("no value at {path}")))?;
    if let Some(f) = a.field.as_deref() {
        let v = reply
            .data
            .get(f)
            .ok_or_else(|| CliError::NotFound(format!("{path} has no field {f:?}")))?;
        if ctx.out.json() {
            ctx.out.print_json(v);
        } else {
            println_out(&value_text(v));
        }
        return Ok(());
    }
    if ctx.out.json() {
        ctx.out.print_json(&json!({
            "data": reply.data, "lease_id": reply.lease_id,
            "lease_duration": reply.lease_duration, "renewable": reply.renewable,
            "warnings": reply.warnings,
        }));
        return Ok(());
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    if !reply.lease_id.is_empty() {
        rows.push(vec!["lease_id".into(), reply.lease_id.clone()]);
        rows.push(vec![
            "lease_duration".into(),
            ttl_text(reply.lease_duration as i64),
        ]);
        rows.push(vec!["lease_renewable".into(), reply.renewable.to_string()]);
    }
    match &reply.data {
        Value::Object(m) => rows.extend(m.iter().map(|(k, v)| vec![k.clone(), value_text(v)])),
        other => rows.push(vec!["data".into(), value_text(other)]),
    }
    ctx.out.rows(&["Key", "Value"], rows, &Value::Null);
    for w in &reply.warnings {
        eprintln!("Warning: {w}");
    }
    Ok(())
}

/// `write PATH KEY=VALUE...`.
pub(crate) async fn write(ctx: &Ctx, a: WriteArgs) -> Result<(), CliError> {
    let path = check_path(&a.path)?;
    let data = if a.data.is_empty() {
        Map::new()
    } else {
        parse_data(&a.data)?
    };
    let reply = ctx.client.generic().write_raw(&path, &data).await?;
    let body = reply.get("data").cloned().unwrap_or(Value::Null);
    if ctx.out.json() {
        ctx.out.print_json(&reply);
        return Ok(());
    }
    match body {
        Value::Object(m) if !m.is_empty() => {
            let rows = m
                .iter()
                .map(|(k, v)| vec![k.clone(), value_text(v)])
                .collect();
            ctx.out.rows(&["Key", "Value"], rows, &Value::Null);
        }
        _ => println_out(&format!("Success! Data written to: {path}")),
    }
    Ok(())
}

/// `list PATH`.
pub(crate) async fn list(ctx: &Ctx, path: &str) -> Result<(), CliError> {
    let path = check_path(path)?;
    let keys = match ctx.client.generic().list(&path).await {
        Err(e) if e.is_not_found() => Vec::new(),
        other => other?,
    };
    print_keys(ctx, keys, &path)
}

/// `config-state`.
pub(crate) async fn config_state(ctx: &Ctx) -> Result<(), CliError> {
    let c = ctx.client.sys().config_state_sanitized().await?;
    if ctx.out.json() {
        ctx.out.print_json(&c.raw);
        return Ok(());
    }
    let rows = match &c.raw {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| vec![k.clone(), value_text(v)])
            .collect(),
        other => vec![vec!["config".into(), value_text(other)]],
    };
    ctx.out.rows(&["Key", "Value"], rows, &Value::Null);
    Ok(())
}
