//! The TURN server (RFC 8656): allocations with relayed transport addresses from the relay's
//! port range, permissions, channels, Send/Data indications and ChannelData, long-term and
//! TURN REST API credentials. docs/turn.md has the whole picture.
//!
//! The files by concern: `attrs.rs` (TURN's attributes and ChannelData framing, on top of the
//! STUN codec in `stun/message.rs`), `auth.rs` (credentials, nonces, MESSAGE-INTEGRITY),
//! `allocation.rs` (the allocation table and its lifetimes), `deny.rs` (peers the relay must
//! not reach), `quota.rs` (allocations per user, bandwidth per allocation), `handler.rs` (what
//! each request gets, a pure function of the table and the clock), `offload.rs` (the kernel
//! entries of bound channels and the trait that installs them), `server.rs` (sockets and
//! tasks), `config.rs` (flags and file keys), `view.rs` (`relay-ctl turn allocations`).
pub mod allocation;
pub mod attrs;
pub mod auth;
pub mod config;
pub mod deny;
pub mod handler;
pub mod offload;
pub mod quota;
pub mod server;
pub mod stats;
pub mod tls;
pub mod view;

pub use stats::{TurnEvent, TurnStats};
#[cfg(test)]
mod tests;
