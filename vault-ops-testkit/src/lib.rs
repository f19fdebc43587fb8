//! Test support for vault-ops: throwaway OpenBao servers, PostgreSQL clusters and MariaDB
//! servers on loopback.
//!
//! Everything here is meant for tests and examples only:
//!
//! - [`bao_bin`] finds the OpenBao binary (installed by `./dev install` into `.tools/openbao`).
//! - [`BaoServer`] runs `bao server -dev` on a free loopback port and stops it on drop.
//! - [`BaoConfigServer`] runs `bao server -config=...` (non-dev, e.g. a raft node).
//! - [`PgCluster`] runs a throwaway PostgreSQL cluster with SCRAM password authentication and
//!   TLS (a certificate from [`make_tls_certificates`]).
//! - [`MariaDb`] runs a throwaway MariaDB server with an admin account, TLS (same certificates)
//!   and the general and binary logs on; [`mariadb_bin`] finds its programs.
//! - [`PrometheusServer`] runs a throwaway Prometheus; [`promtool_bin`] finds `promtool`.
//! - [`S3Server`] runs an S3 server that checks SigV4 signatures (`s3s-fs`); [`AzuriteServer`]
//!   runs Azure's blob storage emulator (Azurite).
//! - [`free_port_pair`] / [`free_port`] hand out free loopback ports.
//!
//! Nothing here skips silently: when a binary is missing the helpers panic and tell the user to
//! run `./dev test`, which installs what is needed.

mod azurite;
mod bao;
pub mod k8s;
mod loopback;
mod mariadb;
mod pg;
mod ports;
mod prom;
mod s3;
mod util;

pub use azurite::{azurite_bin, AzuriteServer, AZURITE_ACCOUNT, AZURITE_KEY};
pub use bao::{bao_bin, BaoConfigServer, BaoInit, BaoServer};
pub use mariadb::{mariadb_bin, MariaDb, MariaDbOptions};
pub use pg::{make_tls_certificates, pg_bin_dir, PgCluster};
pub use ports::{free_port, free_port_pair};
pub use prom::{prometheus_bin, promtool_bin, PrometheusServer};
pub use s3::{s3s_fs_bin, S3Server};
pub use util::process_gone;
