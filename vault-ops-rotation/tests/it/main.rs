//! Integration tests of vault-ops-rotation against real OpenBao, PostgreSQL and MariaDB servers
//! (started by the testkit) and wiremock for what a real server cannot do on demand.
//!
//! One test binary: each module is one area's tests (the files were one binary each).
//! Transitional step of the move: `#[path]` makes each file's own `mod common;` resolve to
//! `tests/it/common` (the next commit shares one `common`).

#[path = "api_key.rs"]
mod api_key;
#[path = "database.rs"]
mod database;
#[path = "mysql.rs"]
mod mysql;
#[path = "pool.rs"]
mod pool;
#[path = "scheduler.rs"]
mod scheduler;
#[path = "state.rs"]
mod state;
#[path = "watcher.rs"]
mod watcher;
