//! SDP for the signalling front ends (the ng protocol, and the seed's SIP relay interface):
//! `parse` validates a body with the `sdp-types` crate and records where each line sits,
//! `rewrite` edits only the lines that must change (connection addresses, media ports,
//! a=rtcp, ICE attributes, the origin), so everything else goes out byte for byte.
#[cfg(test)]
mod fixtures;
pub mod parse;
pub mod rewrite;

pub use parse::{MediaInfo, Sdp, SdpError};
pub use rewrite::{MediaPlan, Plan};
