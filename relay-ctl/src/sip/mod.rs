//! Seed 003's relay interface: a SIP proxy that finds a client behind a NAT asks the relay
//! for a resource with a "relay server invite" (a SIP INVITE with the session id and the
//! client's SDP) and gets a SIP 302 whose SDP names the relay address and one port per media
//! kind (docs/sip-relay.md).
//!
//! - `admission`: which sources may use the interface, and at what rate;
//! - `message`: SIP parsing (rsip) and the responses we build;
//! - `media`: the SDP read from invites and OKs, and the 302's SDP;
//! - `routable`: which SDP addresses are kept as an IP channel;
//! - `setup`: the seed's session set-up steps, on the session controller;
//! - `server`: the UDP listener.
pub mod admission;
pub mod media;
pub mod message;
pub mod routable;
pub mod server;
pub mod setup;

pub use routable::Prefix;
pub use setup::{SessionSetup, SetupConfig};
