//! Integration tests of vault-ops-testkit: each module starts the real servers it checks
//! (OpenBao dev and raft, PostgreSQL, MariaDB) on loopback.
//!
//! One test binary: each module is one helper's tests (the files were one binary each).

mod bao_dev;
mod bao_raft;
mod mariadb;
mod pg;
mod ports;
