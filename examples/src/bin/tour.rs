//! The guided tour (being written).
fn main() {}
