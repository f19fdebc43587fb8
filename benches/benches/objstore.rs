//! A snapshot-sized file (256 MiB) uploaded to the loopback S3 server (`s3s-fs` via
//! `vault_ops_testkit::S3Server`, which checks SigV4 signatures): vault-ops'
//! `RemoteStore::upload` (multipart from the file in parts, SHA-256 of what is sent checked
//! against the `.sha256` file, then the size and the checksum object read back) beside
//! object_store used directly (`put_multipart` + `WriteMultipart` from the same file, same
//! part size and concurrency, nothing else).
//!
//! Each run is a fresh child process (this binary re-executed), so its peak RSS (`VmHWM`) is
//! the upload's alone. The arms alternate, `VAULT_OPS_BENCH_ROUNDS` rounds (default 3); the
//! report gives the median throughput of each arm, the ratio and the peak RSS. Goals (issue
//! #14): ratio >= 0.9x, peak RSS < 64 MiB. Without `--bench` (under `cargo test`,
//! as `./dev test` runs it) a smoke run uploads a 6 MiB file once per arm.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use vault_ops_core::backup::remote::{RemoteStore, DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE};
use vault_ops_testkit::S3Server;

use common::peak_rss_kib;

const BUCKET: &str = "bench";
/// Set in a child: the arm to run.
const ARM_ENV: &str = "VAULT_OPS_OBJSTORE_ARM";
const ARMS: [&str; 2] = ["vault-ops", "object_store"];
const RSS_GOAL_MIB: f64 = 64.0;
const RATIO_GOAL: f64 = 0.9;

fn need(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

fn store() -> Arc<dyn ObjectStore> {
    Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(need("BENCH_S3_ENDPOINT"))
            .with_region("us-east-1")
            .with_bucket_name(BUCKET)
            .with_access_key_id(need("BENCH_S3_ACCESS_KEY"))
            .with_secret_access_key(need("BENCH_S3_SECRET_KEY"))
            .with_allow_http(true)
            .build()
            .expect("building the S3 client"),
    )
}

/// The child: one upload of `BENCH_FILE` to the prefix `BENCH_PREFIX`; prints
/// `seconds rss_kib`.
async fn child(arm: &str) {
    let file = PathBuf::from(need("BENCH_FILE"));
    let prefix = need("BENCH_PREFIX");
    let store = store();
    let started = Instant::now();
    match arm {
        "vault-ops" => {
            let remote = RemoteStore::new(store, format!("s3://{BUCKET}/{prefix}"), &prefix)
                .expect("remote store");
            let up = remote.upload(&file).await.expect("upload");
            assert!(!up.already_there);
        }
        "object_store" => {
            let name = file.file_name().unwrap().to_str().unwrap();
            let location = ObjectPath::from(format!("{prefix}/{name}"));
            let upload = store.put_multipart(&location).await.expect("start");
            let mut w = WriteMultipart::new_with_chunk_size(upload, DEFAULT_PART_SIZE);
            let mut f = tokio::fs::File::open(&file).await.expect("open");
            let mut buf = vec![0u8; 1024 * 1024];
            loop {
                w.wait_for_capacity(DEFAULT_CONCURRENCY)
                    .await
                    .expect("part");
                let n = f.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                w.write(&buf[..n]);
            }
            w.finish().await.expect("finish");
        }
        other => panic!("unknown arm {other}"),
    }
    let secs = started.elapsed().as_secs_f64();
    println!("{secs} {}", peak_rss_kib());
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Writes a backup-named file of `size` bytes (not compressible, so nothing flatters a
/// store) with its `.sha256` file.
fn make_file(dir: &Path, size: usize) -> PathBuf {
    let name = "vault-backup-20250101_000000.snap";
    let path = dir.join(name);
    let mut hash = Sha256::new();
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut chunk = vec![0u8; 1024 * 1024];
    let mut left = size;
    while left > 0 {
        for b in chunk.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
        }
        let n = left.min(chunk.len());
        hash.update(&chunk[..n]);
        std::io::Write::write_all(&mut out, &chunk[..n]).expect("write");
        left -= n;
    }
    std::io::Write::flush(&mut out).expect("flush");
    let hex: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(
        dir.join(format!("{name}.sha256")),
        format!("{hex}  {name}\n"),
    )
    .expect("checksum");
    path
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if let Ok(arm) = std::env::var(ARM_ENV) {
        rt.block_on(child(&arm));
        return;
    }
    let smoke = !std::env::args().any(|a| a == "--bench");
    let size: usize = if smoke { 6 << 20 } else { 256 << 20 };
    let rounds: usize = if smoke {
        1
    } else {
        std::env::var("VAULT_OPS_BENCH_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3)
    };
    let s3 = rt.block_on(S3Server::start());
    s3.create_bucket(BUCKET);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = make_file(dir.path(), size);
    let exe = std::env::current_exe().expect("current exe");
    let mut results: Vec<(Vec<f64>, Vec<u64>)> = vec![(Vec::new(), Vec::new()); ARMS.len()];
    for round in 0..rounds {
        for i in 0..ARMS.len() {
            // Take turns at going first.
            let i = (i + round) % ARMS.len();
            let prefix = format!("r{round}-{i}");
            let out = Command::new(&exe)
                .env(ARM_ENV, ARMS[i])
                .env("BENCH_S3_ENDPOINT", s3.endpoint())
                .env("BENCH_S3_ACCESS_KEY", s3.access_key())
                .env("BENCH_S3_SECRET_KEY", s3.secret_key())
                .env("BENCH_FILE", &file)
                .env("BENCH_PREFIX", &prefix)
                .output()
                .expect("running a child");
            assert!(
                out.status.success(),
                "{} child failed: {}",
                ARMS[i],
                String::from_utf8_lossy(&out.stderr)
            );
            let line = String::from_utf8_lossy(&out.stdout);
            let mut parts = line.split_whitespace();
            let secs: f64 = parts.next().and_then(|v| v.parse().ok()).expect("seconds");
            let rss: u64 = parts.next().and_then(|v| v.parse().ok()).expect("rss");
            results[i].0.push(secs);
            results[i].1.push(rss);
            // Free the disk of the loopback server between runs.
            let _ = std::fs::remove_dir_all(s3.data_dir().join(BUCKET).join(&prefix));
        }
    }
    let mib = size as f64 / (1024.0 * 1024.0);
    let mut lines = vec![format!(
        "Upload of a {mib:.0} MiB snapshot to the loopback S3 server (s3s-fs), median of \
         {rounds} runs, part size {} MiB, {} parts in flight",
        DEFAULT_PART_SIZE >> 20,
        DEFAULT_CONCURRENCY
    )];
    lines.push(format!(
        "{:<14} {:>12} {:>14}",
        "arm", "MiB/s", "peak RSS MiB"
    ));
    let mut rates = Vec::new();
    for (i, arm) in ARMS.iter().enumerate() {
        let rate = mib / median(results[i].0.clone());
        let rss = results[i].1.iter().copied().max().unwrap_or(0) as f64 / 1024.0;
        rates.push((rate, rss));
        lines.push(format!("{arm:<14} {rate:>12.1} {rss:>14.1}"));
    }
    let ratio = rates[0].0 / rates[1].0;
    lines.push(format!(
        "vault-ops / object_store throughput: {ratio:.2}x (goal >= {RATIO_GOAL}x: {}); \
         vault-ops peak RSS {:.1} MiB (goal < {RSS_GOAL_MIB} MiB: {})",
        if ratio >= RATIO_GOAL {
            "met"
        } else {
            "NOT met"
        },
        rates[0].1,
        if rates[0].1 < RSS_GOAL_MIB {
            "met"
        } else {
            "NOT met"
        }
    ));
    let report = lines.join("\n");
    println!("{report}");
    if smoke {
        eprintln!("smoke run done (run with `cargo bench -p vault-ops-benches --bench objstore` to measure)");
    } else {
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion");
        let _ = std::fs::create_dir_all(&out);
        let _ = std::fs::write(out.join("vault-ops-objstore.md"), format!("{report}\n"));
    }
}
