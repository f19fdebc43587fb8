//! Telemetry: `sys/metrics` in the Prometheus text format (0.0.4), parsed, or as Vault's JSON.
//!
//! ```no_run
//! # async fn run(client: vault_ops_core::VaultClient) -> Result<(), vault_ops_core::Error> {
//! let m = client.sys().metrics().await?;
//! // Gauges and counters: one number, or one per label set.
//! let unsealed = m.value("vault_core_unsealed", &[]).unwrap_or(0.0); // first series
//! let leases = m.first("vault_expire_num_leases");
//! let heap = m.sum("vault_runtime_alloc_bytes");
//! // Summaries: quantiles, plus `_sum` and `_count`.
//! let p99 = m.quantile("vault_core_handle_request", 0.99);
//! let requests = m.first("vault_core_handle_request_count");
//! println!("unsealed={unsealed} leases={leases:?} heap={heap:?} p99={p99:?}ms n={requests:?}");
//! // Histograms: cumulative buckets by upper bound.
//! for b in m.buckets("http_request_duration_seconds", &[("method", "GET")]) {
//!     println!("<= {}: {}", b.le, b.count);
//! }
//! # Ok(()) }
//! ```
//!
//! # Parsing
//!
//! The reply is parsed by [`crate::prometheus`] (leniently: one odd line from a newer server
//! does not hide every other number); its types are re-exported here.

pub use crate::prometheus::{
    Bucket, MetricFamily, MetricType, Metrics, MetricsParseError, Sample, MAX_KEPT_ISSUES,
};

use crate::api::sys::Sys;
use crate::error::Result;
use crate::http::{Request, TokenChoice};

impl Sys<'_> {
    /// `GET sys/metrics?format=prometheus`, parsed (leniently: see [`crate::prometheus`]).
    ///
    /// Sends the client's token when one is set (servers may allow unauthenticated metrics).
    /// A server without Prometheus retention answers HTTP 400 `prometheus is not enabled`,
    /// which is an [`Error::Api`](crate::Error::Api) keeping that message. A successful reply
    /// that is JSON, or in which no line is a sample but some are malformed, is an
    /// [`Error::Decode`](crate::Error::Decode).
    pub async fn metrics(&self) -> Result<Metrics> {
        let req = Request::get("sys/metrics")
            .query("format", "prometheus")
            .token(TokenChoice::ClientIfSet);
        let resp = self.client.execute(req).await?;
        if resp
            .header("content-type")
            .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"))
        {
            return Err(resp.decode_error("expected Prometheus text, the reply is JSON"));
        }
        let metrics = Metrics::parse_lenient(&resp.text());
        if metrics.is_empty() {
            if let Some(first) = metrics.parse_issues().first() {
                return Err(resp.decode_error(format!(
                    "the reply is not Prometheus text ({} malformed lines; first: {first})",
                    metrics.skipped_lines()
                )));
            }
        }
        Ok(metrics)
    }

    /// `GET sys/metrics`: Vault's own JSON format (`Gauges`, `Counters`, `Samples`, ...).
    pub async fn metrics_json(&self) -> Result<serde_json::Value> {
        let req = Request::get("sys/metrics").token(TokenChoice::ClientIfSet);
        self.client.execute(req).await?.json()
    }
}
