//! Free loopback ports.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, OnceLock};

/// Ports already handed out by this process (never handed out twice).
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static SET: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    SET.get_or_init(|| Mutex::new(HashSet::new()))
}

fn bindable(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

fn take(count: u16) -> u16 {
    const ATTEMPTS: usize = 500;
    let mut set = handed_out().lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..ATTEMPTS {
        let listener = match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) {
            Ok(l) => l,
            Err(_) => continue,
        };
        let port = match listener.local_addr() {
            Ok(a) => a.port(),
            Err(_) => continue,
        };
        let Some(last) = port.checked_add(count - 1) else {
            continue;
        };
        if (port..=last).any(|p| set.contains(&p)) {
            continue;
        }
        // `port` is held by `listener`; check the following ones.
        if !(port + 1..=last).all(bindable) {
            continue;
        }
        drop(listener);
        for p in port..=last {
            set.insert(p);
        }
        return port;
    }
    panic!("vault-ops-testkit: could not find {count} consecutive free loopback port(s) after {ATTEMPTS} attempts");
}

/// Returns a loopback port `P` such that both `P` and `P + 1` are free right now.
///
/// OpenBao uses `P + 1` as its cluster port, so both are reserved. Within one process the same
/// port is never handed out twice. Panics after a bounded number of attempts.
pub fn free_port_pair() -> u16 {
    take(2)
}

/// Returns one free loopback port, never handed out before by this process.
pub fn free_port() -> u16 {
    take(1)
}
