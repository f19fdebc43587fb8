//! kv2 (being written)
