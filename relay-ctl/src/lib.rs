//! The media relay controller as a library: the binary (`main.rs`), the tests and the demo all
//! drive the data plane through these modules.
pub mod api;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod docs;
pub mod error;
pub mod events;
pub mod logfmt;
pub mod logs;
pub mod metrics;
pub mod netlink;
pub mod nexthop;
pub mod ng;
pub mod ports;
pub mod prefix;
pub mod ratelimit;
pub mod reflector;
pub mod sdp;
pub mod sessions;
pub mod sip;
pub mod stun;
pub mod udp;
pub mod version;
