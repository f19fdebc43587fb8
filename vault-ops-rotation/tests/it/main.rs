//! Integration tests of vault-ops-rotation against real OpenBao, PostgreSQL and MariaDB servers
//! (started by the testkit) and wiremock for what a real server cannot do on demand.
//!
//! One test binary: each module is one area's tests (the files were one binary each); the
//! shared helpers in `common` compile and link once. libtest runs the modules' tests in
//! parallel (as many at once as there are CPUs): tests that must not overlap share a lock
//! (`pool::SERIAL`), never process-wide state.

mod api_key;
mod common;
mod database;
mod mysql;
mod pool;
mod scheduler;
mod state;
mod watcher;
