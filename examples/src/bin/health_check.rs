//! A health check with the guide's alert rules, for a Kubernetes probe or a cron job: sealed or
//! no leader → critical; p99 latency > 1 s, leases > 10 000, memory > 80 % of the limit, token
//! expiring within an hour → warning. Prints a readable report (or JSON with `--json`) and exits
//! 0 (ok), 1 (warning) or 2 (critical).
//!
//! `cargo run -p vault-ops-examples --bin health_check -- [--json] [--memory-limit BYTES]
//! [--max-leases N] [--p99-ms MS] [--min-token-ttl SECONDS]` (reads VAULT_ADDR / VAULT_TOKEN /
//! ...; the memory limit defaults to `$VAULT_MEMORY_LIMIT_BYTES`).

use std::time::Duration;

use vault_ops_cli::report::exit_on_error;
use vault_ops_cli::CliError;
use vault_ops_core::health_report::Thresholds;
use vault_ops_core::VaultClient;

fn number(flag: &str, v: Option<String>) -> Result<u64, String> {
    let v = v.ok_or_else(|| format!("{flag} needs a number"))?;
    v.parse()
        .map_err(|_| format!("{flag} {v:?} is not a number"))
}

#[tokio::main]
async fn main() {
    let mut json = false;
    let mut t = Thresholds::default();
    if let Ok(v) = std::env::var("VAULT_MEMORY_LIMIT_BYTES") {
        match v.parse() {
            Ok(n) => t = t.memory_limit_bytes(n),
            Err(_) => {
                exit_on_error::<()>(Err(CliError::Usage(format!(
                    "VAULT_MEMORY_LIMIT_BYTES={v:?} is not a number"
                ))));
            }
        }
    }
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let parsed = match arg.as_str() {
            "--json" => {
                json = true;
                Ok(())
            }
            "--memory-limit" => {
                number(&arg, args.next()).map(|n| t = t.clone().memory_limit_bytes(n))
            }
            "--max-leases" => number(&arg, args.next()).map(|n| t = t.clone().max_leases(n)),
            "--p99-ms" => number(&arg, args.next())
                .map(|n| t = t.clone().p99_latency(Duration::from_millis(n))),
            "--min-token-ttl" => number(&arg, args.next())
                .map(|n| t = t.clone().min_token_ttl(Duration::from_secs(n))),
            other => Err(format!("unknown argument {other}")),
        };
        exit_on_error(parsed.map_err(CliError::Usage));
    }
    let client = exit_on_error(VaultClient::from_env().map_err(CliError::from));
    let report = client.health_report(&t).await;
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{report}");
    }
    std::process::exit(report.exit_code());
}
