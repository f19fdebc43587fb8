//! kv1 (being written)
