//! policies (being written)
