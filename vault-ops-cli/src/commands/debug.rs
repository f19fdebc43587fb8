//! `debug`: a support bundle like `vault debug`, as a `.tar.gz` with no secret in it.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use vault_ops_core::backup::utc_timestamp;
use vault_ops_core::config::parse_duration;
use vault_ops_core::{Request, TokenChoice};

use super::Ctx;
use crate::cli::DebugArgs;
use crate::output::bytes_text;
use crate::report::CliError;

/// The longest capture.
const MAX_DURATION: Duration = Duration::from_secs(3600);
/// The most metrics samples.
const MAX_SAMPLES: u64 = 360;

/// Field names whose values are never written to the bundle.
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k == "key"
        || k == "keys"
        || k.contains("token")
        || k.contains("password")
        || k.contains("secret")
        || k.contains("hmac")
        || k.contains("private")
        || k.contains("credential")
}

/// `value` with every secret-looking field replaced by `[redacted]`.
fn redact(value: Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    if is_secret_key(&k) && !v.is_null() {
                        (k, Value::String("[redacted]".into()))
                    } else {
                        (k, redact(v))
                    }
                })
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        other => other,
    }
}

/// A minimal tar (ustar) writer: regular files only, mode 0600.
struct Tar {
    out: Vec<u8>,
    mtime: u64,
}

impl Tar {
    fn add(&mut self, name: &str, data: &[u8]) {
        let mut h = [0u8; 512];
        let name = name.as_bytes();
        let n = name.len().min(99);
        h[..n].copy_from_slice(&name[..n]);
        let octal = |field: &mut [u8], value: u64| {
            let s = format!("{value:0width$o}", width = field.len() - 1);
            field[..s.len()].copy_from_slice(s.as_bytes());
        };
        octal(&mut h[100..108], 0o600);
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], data.len() as u64);
        octal(&mut h[136..148], self.mtime);
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        self.out.extend_from_slice(&h);
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
    }

    fn finish(mut self) -> Vec<u8> {
        self.out.extend(std::iter::repeat_n(0u8, 1024));
        self.out
    }
}

fn duration_arg(flag: &str, v: &str) -> Result<Duration, CliError> {
    parse_duration(v)
        .filter(|d| !d.is_zero() && *d <= MAX_DURATION)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "--{flag} {v:?} is not a duration from 1s to 1h (e.g. 30s, 2m)"
            ))
        })
}

/// What could not be collected: the note for the bundle, and whether the token was refused.
struct Missing {
    note: String,
    denied: bool,
}

/// GET `path` as JSON (redacted), or why not.
async fn get_json(ctx: &Ctx, path: &str) -> Result<Value, Missing> {
    let req = Request::get(path).token(TokenChoice::ClientIfSet);
    match ctx.client.execute(req).await {
        Ok(resp) => resp.json::<Value>().map(redact).map_err(|e| Missing {
            note: format!("{path}: {e}"),
            denied: false,
        }),
        Err(e) => Err(Missing {
            note: format!("{path}: {e}"),
            denied: e.is_permission_denied(),
        }),
    }
}

/// `debug --duration D --interval I --output DIR`.
pub(crate) async fn debug(ctx: &Ctx, a: DebugArgs) -> Result<(), CliError> {
    let duration = duration_arg("duration", &a.duration)?;
    let interval = duration_arg("interval", &a.interval)?;
    let samples = (duration.as_secs_f64() / interval.as_secs_f64()).floor() as u64 + 1;
    if samples > MAX_SAMPLES {
        return Err(CliError::Usage(format!(
            "{samples} metrics samples: at most {MAX_SAMPLES}; raise --interval"
        )));
    }
    // A server that cannot be reached (or is not Vault) is reported now, with its address and
    // a hint, instead of an empty bundle. seal-status needs no token and answers when sealed.
    ctx.client.sys().seal_status().await?;
    create_dir(&a.output)?;
    let now = SystemTime::now();
    let stamp = utc_timestamp(now);
    let top = format!("vault-ops-debug-{stamp}");
    let file = a.output.join(format!("{top}.tar.gz"));
    // Created before anything is collected, so a name clash fails at once.
    let out = super::create_private_file(&file)
        .map_err(CliError::local(format!("creating {}", file.display())))?;
    let mut tar = Tar {
        out: Vec::new(),
        mtime: now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    };
    let mut notes: Vec<String> = Vec::new();
    let mut denied: Vec<&str> = Vec::new();
    let mut files: Vec<String> = Vec::new();
    let sources = [
        ("host-info.json", "sys/host-info"),
        ("seal-status.json", "sys/seal-status"),
        ("leader.json", "sys/leader"),
        ("config-sanitized.json", "sys/config/state/sanitized"),
        ("raft-configuration.json", "sys/storage/raft/configuration"),
        ("autopilot-state.json", "sys/storage/raft/autopilot/state"),
        ("in-flight-requests.json", "sys/in-flight-req"),
        ("audit-devices.json", "sys/audit"),
    ];
    for (name, path) in sources {
        match get_json(ctx, path).await {
            Ok(v) => {
                let text = serde_json::to_string_pretty(&v).unwrap_or_default();
                tar.add(&format!("{top}/{name}"), text.as_bytes());
                files.push(name.into());
            }
            Err(m) => {
                if m.denied {
                    denied.push(path);
                }
                notes.push(m.note);
            }
        }
    }
    let bar = crate::progress::steps("metrics samples", samples);
    let started = Instant::now();
    for i in 0..samples {
        if i > 0 {
            let due = interval.saturating_mul(u32::try_from(i).unwrap_or(u32::MAX));
            tokio::time::sleep(due.saturating_sub(started.elapsed())).await;
        }
        let req = Request::get("sys/metrics")
            .query("format", "prometheus")
            .token(TokenChoice::ClientIfSet);
        match ctx.client.execute(req).await {
            Ok(resp) => {
                let name = format!("metrics-{:03}.prom", i + 1);
                tar.add(&format!("{top}/{name}"), resp.bytes());
                files.push(name);
                bar.inc(1);
            }
            Err(e) => {
                if e.is_permission_denied() {
                    denied.push("sys/metrics");
                }
                notes.push(format!("metrics sample {}: {e}", i + 1));
                break;
            }
        }
    }
    bar.finish_and_clear();
    let index = json!({
        "address": ctx.client.current_address(),
        "collected_at": stamp,
        "duration_seconds": duration.as_secs(),
        "interval_seconds": interval.as_secs(),
        "files": files,
        "not_collected": notes,
    });
    tar.add(
        &format!("{top}/index.json"),
        serde_json::to_string_pretty(&index)
            .unwrap_or_default()
            .as_bytes(),
    );
    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    let written = gz
        .write_all(&tar.finish())
        .and_then(|_| gz.finish())
        .and_then(|f| {
            f.sync_all()?;
            f.metadata()
        })
        .map_err(CliError::local(format!("writing {}", file.display())))?;
    ctx.out.key_values(
        &[
            ("Bundle", file.display().to_string()),
            ("Size", bytes_text(written.len())),
            ("Files", files.len().to_string()),
            ("Not Collected", if notes.is_empty() { "-".into() } else { notes.join("; ") }),
        ],
        &json!({"bundle": file.display().to_string(), "bytes": written.len(), "files": files, "not_collected": notes}),
    );
    if !denied.is_empty() {
        eprintln!(
            "warning: the token may not read {}: the bundle lacks them. Check with \
             `vault-ops token capabilities self {}` (VAULT_TOKEN)",
            denied.join(", "),
            denied.join(" ")
        );
    }
    Ok(())
}

fn create_dir(dir: &Path) -> Result<(), CliError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
        .map_err(CliError::local(format!("creating {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_fields_are_redacted_at_any_depth() {
        let v = redact(json!({
            "listeners": [{"config": {"tls_key_file": "/k", "token": "s.abc"}}],
            "seal": {"password": "p", "hmac_key": "h"},
            "api_addr": "http://x",
        }));
        let text = v.to_string();
        for secret in ["s.abc", "\"p\"", "\"h\""] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(text.contains("http://x") && text.contains("/k"), "{text}");
    }
}
