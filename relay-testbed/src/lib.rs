//! Test support for the relay: throw-away network namespaces and veths, the two-NAT topology,
//! the `relay-ctl daemon` process guard, neighbour and frame helpers. Used by relay-ctl's
//! integration tests and demo (as a dev-dependency) and by the benchmark harness; never by the
//! daemon, which is why it is a crate of its own and not part of relay-ctl's library.
//!
//! Everything is created in namespaces this process makes, with addresses from the
//! documentation and benchmarking ranges only (198.18.0.0/15, 192.0.2.0/24, 198.51.100.0/24,
//! 203.0.113.0/24, 2001:db8::/32), and removed on drop (also when a test fails or panics).
//!
//! - [`Netns`], [`veth`], [`in_netns`], neighbours: `netns.rs`
//! - [`Topology`], end hosts directly on the relay's links: `topology.rs`
//! - [`NatTopology`], each end host behind its own masquerading NAT: `nat.rs`
//! - [`DaemonProcess`], a `relay-ctl daemon` in a namespace with kill -9 and restart: `daemon.rs`
//! - [`browser`]: headless Chromium making a WebRTC call, and its signalling server
//! - [`frames`]: Ethernet/IP/UDP frames built by etherparse, independent of the code under test
pub mod browser;
mod daemon;
pub mod frames;
mod nat;
mod netns;
mod topology;
mod xdp_pass;

pub use daemon::DaemonProcess;
pub use nat::{
    CALLEE_IF, CALLEE_IP, CALLEE_IP6, CALLER_IF, CALLER_IP, CALLER_IP6, NAT_A_IN_IF, NAT_A_IN_IP,
    NAT_A_OUT_IF, NAT_A_OUT_IP, NAT_A_OUT_IP6, NAT_B_IN_IF, NAT_B_IN_IP, NAT_B_OUT_IF,
    NAT_B_OUT_IP, NAT_B_OUT_IP6, NatTopology, RELAY_A_IP6, RELAY_B_IP6,
};
pub use netns::{Netns, in_netns, mac, netns_path, prime_neighbours, run, veth, veth_queues};
pub use topology::{
    RECEIVER_IP, RELAY_A_IP, RELAY_B_IP, RELAY_IF_A, RELAY_IF_B, SENDER_IP, Topology,
};
