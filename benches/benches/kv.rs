//! KV v2 read, write, list and token lookup through `VaultClient` (every default on), raw
//! reqwest + serde (the limit) and vaultrs 0.8 (reads), at 1 and 32 requests in flight,
//! against a canned loopback server and a real OpenBao dev server.
//!
//! One criterion iteration is one request, so criterion's time per iteration is the inverse
//! of the throughput. Groups are named `<op>_<server>_c<in flight>`, functions by arm
//! (`vault-ops`, `reqwest`, `vaultrs`); `report` reads their `estimates.json`.
//!
//! Run with `./dev bench` (or `cargo bench -p vault-ops-benches --bench kv -- --warm-up-time 1
//! --measurement-time 3`). Under `cargo test` every bench runs once, as a smoke test.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Client, Op, Placement, Target};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};

/// Requests in flight.
const IN_FLIGHT: [usize; 2] = [1, 32];

fn bench_all(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    targets: &[Target],
    placement: &Placement,
) {
    let mut groups = 0;
    for op in Op::ALL {
        for target in targets {
            for in_flight in IN_FLIGHT {
                placement.apply(in_flight);
                groups += 1;
                let mut group =
                    c.benchmark_group(format!("{}_{}_c{in_flight}", op.name(), target.name));
                group.throughput(Throughput::Elements(1));
                // Every sample runs many requests, so 32 are really in flight.
                group.sampling_mode(SamplingMode::Flat);
                group.sample_size(20);
                // The arms take turns at going first (a server's state drifts during a run).
                let arms = op.arms();
                for k in 0..arms.len() {
                    let arm = arms[(k + groups) % arms.len()];
                    let client = Arc::new(Client::new(arm, &target.addr, &target.token));
                    rt.block_on(client.check(op));
                    group.bench_function(BenchmarkId::from_parameter(arm.name()), |b| {
                        b.iter_custom(|iters| {
                            rt.block_on(common::run(&client, op, iters, in_flight))
                        })
                    });
                }
                group.finish();
            }
        }
    }
}

fn main() {
    common::serve_if_server();
    let rt = common::client_runtime();
    let servers = common::Servers::start(&rt);
    let targets = servers.targets();
    let placement = Placement::new(&servers.pids());
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .without_plots()
        .configure_from_args();
    bench_all(&mut c, &rt, &targets, &placement);
    c.final_summary();
}
