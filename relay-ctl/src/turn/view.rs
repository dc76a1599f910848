//! `GET /v1/turn/allocations` and `relay-ctl turn allocations`: every allocation with its
//! user, 5-tuple, relayed addresses, permissions, channels, age and packets (userspace, and
//! kernel from the channels' stats slots).
use serde::{Deserialize, Serialize};

use super::{allocation::Allocation, handler::Resources};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelView {
    pub number: u16,
    pub peer: String,
    pub expires_in_secs: u64,
    /// Whether XDP has stats slots for it (so it can be relayed in the kernel).
    pub offloaded: bool,
    pub kernel_packets: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionView {
    pub peer: String,
    pub expires_in_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationView {
    pub user: String,
    pub transport: String,
    pub client: String,
    pub server: String,
    pub relayed: Vec<String>,
    pub age_secs: u64,
    pub expires_in_secs: u64,
    pub permissions: Vec<PermissionView>,
    pub channels: Vec<ChannelView>,
    /// Relayed in userspace: client -> peers, peers -> client.
    pub user_packets_to_peers: u64,
    pub user_packets_to_client: u64,
    /// Relayed by XDP (sum over the channels' slots).
    pub kernel_packets: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TurnView {
    pub allocations: Vec<AllocationView>,
}

fn secs_left(at: u64, now_ns: u64) -> u64 {
    at.saturating_sub(now_ns) / super::allocation::NS
}

pub fn allocation_view(a: &Allocation, res: &dyn Resources, now_ns: u64) -> AllocationView {
    let mut perms: Vec<PermissionView> = a
        .permissions
        .iter()
        .map(|(ip, e)| PermissionView {
            peer: ip.to_string(),
            expires_in_secs: secs_left(*e, now_ns),
        })
        .collect();
    perms.sort_by(|x, y| x.peer.cmp(&y.peer));
    let channels: Vec<ChannelView> = a
        .channels
        .iter()
        .map(|(n, c)| ChannelView {
            number: *n,
            peer: c.peer.to_string(),
            expires_in_secs: secs_left(c.expires_ns, now_ns),
            offloaded: c.slots.is_some(),
            kernel_packets: c
                .slots
                .map_or(0, |s| res.slot_packets(s[0]) + res.slot_packets(s[1])),
        })
        .collect();
    AllocationView {
        user: a.user.clone(),
        transport: a.five.transport.as_str().to_string(),
        client: a.five.client.to_string(),
        server: a.five.server.to_string(),
        relayed: a.relayed.iter().map(|r| r.to_string()).collect(),
        age_secs: a.age_secs(now_ns),
        expires_in_secs: secs_left(a.expires_ns, now_ns),
        kernel_packets: channels.iter().map(|c| c.kernel_packets).sum(),
        permissions: perms,
        channels,
        user_packets_to_peers: a.to_peer.packets,
        user_packets_to_client: a.to_client.packets,
    }
}

/// The table as `relay-ctl turn allocations` prints it.
pub fn render_table(v: &TurnView) -> String {
    let mut out = format!(
        "{:<20} {:<4} {:<26} {:<26} {:>6} {:>6} {:>9} {:>9} {:>9}  {}\n",
        "USER",
        "TR",
        "CLIENT",
        "RELAYED",
        "AGE",
        "LEFT",
        "U->PEER",
        "U->CLI",
        "KERNEL",
        "PEERS / CHANNELS"
    );
    for a in &v.allocations {
        let peers: Vec<String> = a.permissions.iter().map(|p| p.peer.clone()).collect();
        let chans: Vec<String> = a
            .channels
            .iter()
            .map(|c| format!("{:#06x}={}", c.number, c.peer))
            .collect();
        out.push_str(&format!(
            "{:<20} {:<4} {:<26} {:<26} {:>6} {:>6} {:>9} {:>9} {:>9}  {} / {}\n",
            a.user,
            a.transport,
            a.client,
            a.relayed.join(","),
            a.age_secs,
            a.expires_in_secs,
            a.user_packets_to_peers,
            a.user_packets_to_client,
            a.kernel_packets,
            if peers.is_empty() {
                "-".to_string()
            } else {
                peers.join(",")
            },
            if chans.is_empty() {
                "-".to_string()
            } else {
                chans.join(",")
            },
        ));
    }
    if v.allocations.is_empty() {
        out.push_str("(no allocations)\n");
    }
    out
}
