//! Runnable programs, one per daily Vault operation (see `src/bin/`).
//!
//! This library only exists so that the README's code blocks are compiled as doc tests:
#![doc = include_str!("../../README.md")]
// The README's links are relative paths in the repository (`[examples](examples)`), not items.
#![allow(rustdoc::broken_intra_doc_links)]
