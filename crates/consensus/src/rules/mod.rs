//! Consensus rules, one function per rule. Each quotes its line of `docs/protocol.md`.

pub mod block;
pub mod header;
pub mod tx;
