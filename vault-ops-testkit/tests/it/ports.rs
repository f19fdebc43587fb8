//! Tests for the port helpers.

use std::collections::HashSet;
use std::net::TcpListener;

use vault_ops_testkit::{free_port, free_port_pair};

#[test]
fn port_pairs_are_free_and_never_repeated() {
    let mut seen = HashSet::new();
    for _ in 0..20 {
        let p = free_port_pair();
        assert!(seen.insert(p), "port {p} handed out twice");
        assert!(seen.insert(p + 1), "port {} handed out twice", p + 1);
        TcpListener::bind(("127.0.0.1", p)).expect("P is free");
        TcpListener::bind(("127.0.0.1", p + 1)).expect("P+1 is free");
    }
    for _ in 0..20 {
        let p = free_port();
        assert!(seen.insert(p), "port {p} handed out twice");
    }
}
