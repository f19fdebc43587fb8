//! Runnable programs, one per daily Vault operation (see `src/bin/`).
//!
//! This library only exists so that the README's code blocks are compiled as doc tests:
#![doc = include_str!("../../README.md")]
