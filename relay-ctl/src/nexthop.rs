//! Keeps XDP's next-hop cache honest (`relay_common::nexthop`): the watcher follows the
//! kernel's route, rule, address, link and neighbour events over netlink and
//! bumps the cache's generation, which makes every cached entry unusable from the next packet
//! on. So a changed route or MAC is honoured as soon as its event is processed, never served
//! stale; the entries' bounded age is the second guard, for events lost in an overrun.
//!
//! Neighbour events are frequent (every ARP/ND state change: REACHABLE -> STALE -> DELAY ...)
//! and most change nothing XDP uses, so only a neighbour whose link-layer address or
//! usability changed (or that was deleted, or was not seen before) bumps; `Neighbours` is
//! that decision, pure and unit-tested. Everything else bumps. Events already queued are
//! handled as one batch: one bump for all of them.
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Weak},
    time::Duration,
};

use futures::TryStreamExt;
use rtnetlink::{
    MulticastGroup,
    packet_core::{NetlinkMessage, NetlinkPayload},
    packet_route::{
        RouteNetlinkMessage,
        neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
    },
    sys::AsyncSocket,
};
use tokio::task::JoinHandle;

use crate::{dataplane::NextHops, events::Event, sessions::Controller};

/// Nexthop objects (`ip nexthop`) have no messages in our netlink crate: a route that uses
/// them still changes by route events, and a nexthop object replaced in place is covered by
/// the entries' age only (docs/dataplane.md).
const GROUPS: [MulticastGroup; 8] = [
    MulticastGroup::Link,
    MulticastGroup::Neigh,
    MulticastGroup::Ipv4Ifaddr,
    MulticastGroup::Ipv6Ifaddr,
    MulticastGroup::Ipv4Route,
    MulticastGroup::Ipv6Route,
    MulticastGroup::Ipv4Rule,
    MulticastGroup::Ipv6Rule,
];

/// Room for a burst of route events (a routing daemon converging) before the kernel drops.
const NETLINK_RX_BUFFER: usize = 8 << 20;

/// What XDP could have taken from a neighbour: its MAC, and whether it was usable then.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    lladdr: Option<Vec<u8>>,
    usable: bool,
}

/// Neighbours as last seen, to tell the events that matter to the cache from the churn.
#[derive(Default, Debug)]
pub struct Neighbours {
    seen: HashMap<(u32, IpAddr), Seen>,
}

impl Neighbours {
    /// Record a neighbour from the start-up dump (no bump: the watcher bumps once at start).
    pub fn learn(&mut self, ifindex: u32, ip: IpAddr, lladdr: Option<Vec<u8>>, usable: bool) {
        self.seen.insert((ifindex, ip), Seen { lladdr, usable });
    }

    /// A neighbour event. True if cached next hops may be wrong now: the neighbour was
    /// deleted, is new to us, or its MAC or usability changed.
    pub fn on_event(
        &mut self,
        deleted: bool,
        ifindex: u32,
        ip: IpAddr,
        lladdr: Option<Vec<u8>>,
        usable: bool,
    ) -> bool {
        if deleted {
            self.seen.remove(&(ifindex, ip));
            return true;
        }
        // An event without a MAC (e.g. INCOMPLETE) keeps the one we knew for the comparison.
        let now = Seen { lladdr, usable };
        match self.seen.get_mut(&(ifindex, ip)) {
            Some(before) => {
                let lladdr = now.lladdr.clone().or_else(|| before.lladdr.clone());
                let changed = lladdr != before.lladdr || now.usable != before.usable;
                *before = Seen {
                    lladdr,
                    usable: now.usable,
                };
                changed
            }
            None => {
                self.seen.insert((ifindex, ip), now);
                true
            }
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// The states in which the kernel's FIB lookup hands out the neighbour's MAC (NUD_VALID).
fn usable(state: NeighbourState) -> bool {
    matches!(
        state,
        NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent
            | NeighbourState::Noarp
    )
}

fn neighbour_fields(n: &NeighbourMessage) -> Option<(u32, IpAddr, Option<Vec<u8>>, bool)> {
    let mut ip = None;
    let mut lladdr = None;
    for a in &n.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => ip = Some((*v4).into()),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => ip = Some((*v6).into()),
            NeighbourAttribute::LinkLayerAddress(mac) => lladdr = Some(mac.clone()),
            _ => {}
        }
    }
    Some((n.header.ifindex, ip?, lladdr, usable(n.header.state)))
}

/// Whether `msg` may make a cached next hop wrong.
fn needs_bump(neigh: &mut Neighbours, msg: &NetlinkMessage<RouteNetlinkMessage>) -> bool {
    match &msg.payload {
        NetlinkPayload::InnerMessage(m) => match m {
            RouteNetlinkMessage::NewNeighbour(n) | RouteNetlinkMessage::DelNeighbour(n) => {
                let deleted = matches!(m, RouteNetlinkMessage::DelNeighbour(_));
                match neighbour_fields(n) {
                    Some((ifindex, ip, lladdr, ok)) => {
                        neigh.on_event(deleted, ifindex, ip, lladdr, ok)
                    }
                    // Not an IP neighbour (bridge FDB and the like): nothing XDP uses.
                    None => false,
                }
            }
            RouteNetlinkMessage::NewRoute(_)
            | RouteNetlinkMessage::DelRoute(_)
            | RouteNetlinkMessage::NewRule(_)
            | RouteNetlinkMessage::DelRule(_)
            | RouteNetlinkMessage::NewAddress(_)
            | RouteNetlinkMessage::DelAddress(_)
            | RouteNetlinkMessage::NewLink(_)
            | RouteNetlinkMessage::DelLink(_) => true,
            _ => false,
        },
        // Lost events: assume the worst.
        NetlinkPayload::Overrun(_) | NetlinkPayload::Error(_) => true,
        _ => false,
    }
}

/// The running watcher; dropping it stops it.
pub struct Watcher {
    task: JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Start following the network for `nh` (turning the cache on or off per `enabled` first).
pub fn start(mut nh: NextHops, enabled: bool, ctl: &Arc<Controller>) -> anyhow::Result<Watcher> {
    nh.set_enabled(enabled)?;
    let ctl = Arc::downgrade(ctl);
    let task = tokio::spawn(async move {
        if !enabled {
            log::info!("next-hop cache off: XDP looks up the FIB for every forwarded packet");
            return;
        }
        loop {
            match watch(&mut nh, &ctl).await {
                Ok(()) => return,
                Err(e) => {
                    log::warn!("next-hop watcher: {e:#}; reconnecting in 1 s");
                    count(&ctl, Event::NextHopNetlinkErrors);
                    bump(&mut nh, &ctl);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok(Watcher { task })
}

fn count(ctl: &Weak<Controller>, e: Event) {
    if let Some(c) = ctl.upgrade() {
        c.count_event(e, 1);
    }
}

fn bump(nh: &mut NextHops, ctl: &Weak<Controller>) {
    match nh.bump() {
        Ok(_) => count(ctl, Event::NextHopBumps),
        Err(e) => {
            // The age guard still bounds staleness; say so loudly.
            crate::log_limited!(
                log::Level::Error,
                "nexthop bump",
                "cannot bump the next-hop generation ({e:#}): cached next hops live out their age"
            );
            count(ctl, Event::KernelErrors);
        }
    }
}

/// Subscribe, learn the neighbours, bump once (entries from before we listened), then bump
/// per batch of events that need it. Returns Ok when the controller is gone.
async fn watch(nh: &mut NextHops, ctl: &Weak<Controller>) -> anyhow::Result<()> {
    let (mut conn, handle, mut messages) = rtnetlink::new_multicast_connection(&GROUPS)?;
    if let Err(e) = conn
        .socket_mut()
        .socket_mut()
        .set_rx_buf_sz(NETLINK_RX_BUFFER)
    {
        log::debug!("next-hop watcher: netlink receive buffer: {e}");
    }
    let conn_task = tokio::spawn(conn);
    let _stop_conn = AbortOnDrop(conn_task);
    let mut neigh = Neighbours::default();
    let mut dump = handle.neighbours().get().execute();
    while let Some(n) = dump.try_next().await? {
        if let Some((ifindex, ip, lladdr, ok)) = neighbour_fields(&n) {
            neigh.learn(ifindex, ip, lladdr, ok);
        }
    }
    bump(nh, ctl);
    log::info!(
        "next-hop cache on: following netlink (routes, rules, addresses, links, {} neighbours)",
        neigh.len()
    );
    while let Ok((msg, _)) = messages.recv().await {
        if ctl.upgrade().is_none() {
            return Ok(());
        }
        let mut need = needs_bump(&mut neigh, &msg);
        while let Ok((msg, _)) = messages.try_recv() {
            need |= needs_bump(&mut neigh, &msg);
        }
        if need {
            bump(nh, ctl);
        }
    }
    anyhow::bail!("the netlink connection closed")
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC1: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MAC2: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn neighbour_churn_does_not_bump_but_changes_do() {
        let mut n = Neighbours::default();
        let a = ip("198.18.1.2");
        n.learn(3, a, Some(MAC1.to_vec()), true);
        // REACHABLE -> STALE -> DELAY -> REACHABLE with the same MAC: nothing XDP uses.
        for _ in 0..3 {
            assert!(!n.on_event(false, 3, a, Some(MAC1.to_vec()), true));
        }
        // The MAC moved (a failover, a replaced router).
        assert!(n.on_event(false, 3, a, Some(MAC2.to_vec()), true));
        assert!(!n.on_event(false, 3, a, Some(MAC2.to_vec()), true));
        // FAILED (no MAC in the message): unusable now.
        assert!(n.on_event(false, 3, a, None, false));
        // Back with the same MAC: usable again.
        assert!(n.on_event(false, 3, a, Some(MAC2.to_vec()), true));
        // Deleted.
        assert!(n.on_event(true, 3, a, None, false));
        assert!(n.is_empty());
    }

    #[test]
    fn unknown_neighbours_and_other_interfaces_bump() {
        let mut n = Neighbours::default();
        let a = ip("2001:db8:1::2");
        assert!(
            n.on_event(false, 3, a, Some(MAC1.to_vec()), true),
            "first sight"
        );
        assert!(
            n.on_event(false, 4, a, Some(MAC1.to_vec()), true),
            "same IP on another interface is another neighbour"
        );
        assert!(!n.on_event(false, 3, a, Some(MAC1.to_vec()), true));
        assert!(
            n.on_event(true, 9, ip("198.18.9.9"), None, false),
            "unknown delete"
        );
        assert_eq!(n.len(), 2);
    }

    #[test]
    fn usable_states_are_the_kernels_nud_valid() {
        for s in [
            NeighbourState::Reachable,
            NeighbourState::Stale,
            NeighbourState::Delay,
            NeighbourState::Probe,
            NeighbourState::Permanent,
            NeighbourState::Noarp,
        ] {
            assert!(usable(s), "{s:?}");
        }
        for s in [
            NeighbourState::Incomplete,
            NeighbourState::Failed,
            NeighbourState::None,
        ] {
            assert!(!usable(s), "{s:?}");
        }
    }
}
