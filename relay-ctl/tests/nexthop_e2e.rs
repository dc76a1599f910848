//! The next-hop cache end to end: the real daemon relays a call through XDP while the
//! callee-side next hop changes under it, first its MAC (NAT B's outside interface gets a new
//! address, as after a router failover, and the relay's neighbour entry follows), then the
//! route (a more specific route leaves by a third interface). Once the daemon has processed
//! the event (its generation-bump counter moved), every packet reaches the callee: a packet
//! sent to the old MAC would be dropped by NAT B, and one sent the old way would not show on
//! the new interface.
mod common;

use std::time::Duration;

use common::*;
use relay_ctl::api::LatchPolicy;
use relay_testbed::{NAT_B_OUT_IF, NAT_B_OUT_IP, Netns, RELAY_IF_B, prime_neighbours, veth};

const N: usize = 100;
const R2: &str = "r2";
const M2: &str = "m2";
const R2_CIDR: &str = "198.18.4.1/24";
const M2_IP: &str = "198.18.4.2";
const NEW_M1_MAC: &str = "02:00:00:12:00:99";

fn rx_packets(ns: &Netns, ifname: &str) -> u64 {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns.name(), "cat"])
        .arg(format!("/sys/class/net/{ifname}/statistics/rx_packets"))
        .output()
        .expect("ip netns exec cat");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("rx_packets")
}

#[test]
fn media_follows_a_new_next_hop_mac_and_a_new_route_mid_call() {
    let rig = Rig::start_prepared("nh", &["--iface", R2], |t| {
        // A second path from the relay to NAT B.
        veth(
            (&t.relay, R2, R2_CIDR, "02:00:00:14:00:01"),
            (&t.nat_b, M2, &format!("{M2_IP}/24"), "02:00:00:14:00:02"),
        )
        .expect("veth r2-m2");
        // NAPI on the receiving veth for redirected frames (see NatTopology::build).
        t.nat_b
            .exec("ethtool", &["-K", M2, "gro", "off"])
            .expect("ethtool");
        t.nat_b
            .exec("ethtool", &["-K", M2, "gro", "on", "tx", "off"])
            .expect("ethtool");
        // Media for NAT B's outside address arriving on m2 is accepted (asymmetric path).
        for key in ["all", "default", M2, NAT_B_OUT_IF] {
            t.nat_b
                .exec(
                    "sysctl",
                    &["-qw", &format!("net.ipv4.conf.{key}.rp_filter=0")],
                )
                .expect("rp_filter");
        }
        prime_neighbours(&t.relay, &[(&t.nat_b, M2_IP.parse().expect("ip"))])
            .expect("neighbour via r2");
    });
    let v = rig
        .create(call("nh-1", LatchPolicy::Immediate))
        .expect("create");
    let (ra, rb) = relays(&v);
    let caller = rig.caller(CALLER_PORT);
    let callee = rig.callee(CALLEE_PORT);
    open_call(&rig, &caller, &callee, &v);
    let relay = &rig.topo.relay;
    let nat_b = &rig.topo.nat_b;

    let burst = |tag: &str| {
        let before = rig.stats();
        send_n(&caller, ra, tag, N);
        let got = recv_n(&callee, N, Duration::from_secs(2));
        let after = rig.stats();
        assert_eq!(
            tags(&got),
            expect_tags(tag, N),
            "{tag}: every packet reached the callee\n{}",
            rig.log()
        );
        assert!(got.iter().all(|(_, from)| *from == rb));
        assert_eq!(
            after.forwarded_kernel_packets - before.forwarded_kernel_packets,
            N as u64,
            "{tag}: all by XDP"
        );
    };
    let bumps = || rig.ctl("nexthop_generation_bumps");
    assert!(bumps() >= 1, "the watcher bumped at start");
    // Let the fresh links settle (IPv6 link-local addresses finishing DAD bump too), so the
    // bumps below are the ones this test causes.
    let settled = |quiet: Duration| {
        let mut last = bumps();
        wait_for(Duration::from_secs(10), || {
            std::thread::sleep(quiet);
            let now = bumps();
            std::mem::replace(&mut last, now) == now
        })
    };
    assert!(settled(Duration::from_millis(1500)), "the network settles");
    // Entries live at most NEXTHOP_MAX_AGE_NS (10 s) and settling took a while: an unrelated
    // route makes the cache start over, so the entry the next burst fills is young and would
    // still be served when the MAC changes unless the watcher bumps.
    let b = bumps();
    relay
        .ip(&["route", "add", "203.0.113.0/24", "dev", R2])
        .expect("unrelated route");
    assert!(wait_for(Duration::from_secs(5), || bumps() > b));
    burst("before");

    // 1. NAT B's outside interface takes a new MAC; the relay's neighbour entry follows (what
    //    a gratuitous ARP does). The cache still holds the old MAC until the event is seen.
    let b0 = bumps();
    nat_b
        .ip(&["link", "set", NAT_B_OUT_IF, "address", NEW_M1_MAC])
        .expect("new MAC");
    relay
        .ip(&[
            "neigh",
            "replace",
            &NAT_B_OUT_IP.to_string(),
            "lladdr",
            NEW_M1_MAC,
            "dev",
            RELAY_IF_B,
            "nud",
            "reachable",
        ])
        .expect("neighbour replaced");
    assert!(
        wait_for(Duration::from_secs(5), || bumps() > b0),
        "the neighbour event bumped the generation\n{}",
        rig.log()
    );
    let m1_before = rx_packets(nat_b, NAT_B_OUT_IF);
    burst("new-mac");
    assert!(rx_packets(nat_b, NAT_B_OUT_IF) - m1_before >= N as u64);

    // 2. A more specific route to NAT B leaves by r2.
    let b1 = bumps();
    relay
        .ip(&[
            "route",
            "add",
            &format!("{NAT_B_OUT_IP}/32"),
            "via",
            M2_IP,
            "dev",
            R2,
        ])
        .expect("route via r2");
    assert!(
        wait_for(Duration::from_secs(5), || bumps() > b1),
        "the route event bumped the generation\n{}",
        rig.log()
    );
    let (m1_before, m2_before) = (rx_packets(nat_b, NAT_B_OUT_IF), rx_packets(nat_b, M2));
    burst("new-route");
    assert!(
        rx_packets(nat_b, M2) - m2_before >= N as u64,
        "the media left by r2"
    );
    assert!(
        rx_packets(nat_b, NAT_B_OUT_IF) - m1_before < N as u64,
        "and not by r1"
    );

    // The cache is real: the steady state filled a handful of entries, not one per packet.
    let fills = rig
        .stats()
        .dataplane
        .get("nexthop_fill")
        .copied()
        .unwrap_or(0);
    assert!(
        (1..=20).contains(&fills),
        "{fills} fills for {} forwarded packets",
        3 * N
    );
}
