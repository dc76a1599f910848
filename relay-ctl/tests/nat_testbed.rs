//! The NAT testbed on its own, with plain sockets and no relay daemon: each end host reaches
//! the relay only through its NAT's outside address, replies come back through the mapping,
//! only the remote address:port the host sent to gets in (port-restricted cone), and dropping
//! the topology deletes every namespace.
use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket},
    path::Path,
    process::Command,
    time::Duration,
};

use relay_testbed::{
    CALLEE_IP, CALLER_IP, NAT_A_OUT_IP, NAT_B_OUT_IP, NatTopology, Netns, RELAY_A_IP, RELAY_B_IP,
};

/// How long a filtered datagram gets to show up anyway.
const FILTERED_WAIT: Duration = Duration::from_millis(300);

fn recv(sock: &UdpSocket, what: &str) -> (String, SocketAddr) {
    let mut buf = [0u8; 256];
    let (len, from) = sock
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    (String::from_utf8_lossy(&buf[..len]).into_owned(), from)
}

/// `host` at `inside` talks to the relay at `relay_ip` through a NAT whose outside address is
/// `nat_out`; returns the NAT mapping the relay saw.
fn check_side(
    host: &Netns,
    inside: SocketAddrV4,
    relay: &Netns,
    relay_ip: Ipv4Addr,
    nat_out: Ipv4Addr,
) -> SocketAddr {
    let side = host.name();
    let h = host.udp_socket(inside.into()).expect("inside socket");
    let r = relay
        .udp_socket(SocketAddrV4::new(relay_ip, 40000).into())
        .expect("relay socket");
    let stranger = relay
        .udp_socket(SocketAddrV4::new(relay_ip, 40002).into())
        .expect("second relay socket");

    // Outbound: the relay sees the NAT's outside address, never the inside one.
    h.send_to(b"hello", r.local_addr().expect("addr"))
        .expect("send");
    let (msg, mapping) = recv(&r, &format!("{side}: relay receives"));
    assert_eq!(msg, "hello");
    assert_eq!(mapping.ip(), nat_out, "{side}: source seen by the relay");

    // The reply from the address:port the host sent to comes back through the mapping.
    r.send_to(b"reply", mapping).expect("send");
    let (msg, from) = recv(&h, &format!("{side}: reply through the NAT"));
    assert_eq!(
        (msg.as_str(), from),
        ("reply", r.local_addr().expect("addr"))
    );

    // Port-restricted: the same relay address from another port does not get in...
    stranger.send_to(b"stranger", mapping).expect("send");
    h.set_read_timeout(Some(FILTERED_WAIT)).expect("timeout");
    let mut buf = [0u8; 64];
    if let Ok((len, from)) = h.recv_from(&mut buf) {
        panic!(
            "{side}: {:?} from {from} passed the NAT unsolicited",
            String::from_utf8_lossy(&buf[..len])
        );
    }
    h.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    // ...while the mapping itself still works (and nothing filtered was queued before this).
    r.send_to(b"again", mapping).expect("send");
    assert_eq!(recv(&h, &format!("{side}: mapping still open")).0, "again");

    // Endpoint-independent mapping: sending to a third relay port reuses it and opens that
    // port. (Not the stranger's port: its unsolicited datagram left a conntrack entry that
    // would clash, so the NAT would pick another port: "when possible".)
    let third = relay
        .udp_socket(SocketAddrV4::new(relay_ip, 40004).into())
        .expect("third relay socket");
    h.send_to(b"to-third", third.local_addr().expect("addr"))
        .expect("send");
    let (msg, from) = recv(&third, &format!("{side}: third relay port receives"));
    assert_eq!(
        (msg.as_str(), from),
        ("to-third", mapping),
        "{side}: same mapping"
    );
    third.send_to(b"now-ok", mapping).expect("send");
    let (msg, from) = recv(&h, &format!("{side}: third port now allowed"));
    assert_eq!(
        (msg.as_str(), from),
        ("now-ok", third.local_addr().expect("addr"))
    );
    mapping
}

/// The relay namespace's neighbour entry for `ip` has a MAC (what XDP forwarding needs).
fn has_neighbour(relay: &Netns, ip: Ipv4Addr) -> bool {
    let out = Command::new("ip")
        .args(["-n", relay.name(), "neigh", "show", &ip.to_string()])
        .output()
        .expect("ip neigh");
    String::from_utf8_lossy(&out.stdout).contains("lladdr")
}

#[test]
fn nat_topology_maps_filters_and_cleans_up() {
    let topo = NatTopology::build(&format!("nat{}", std::process::id())).expect("topology");
    let names: Vec<String> = [
        &topo.caller,
        &topo.callee,
        &topo.nat_a,
        &topo.nat_b,
        &topo.relay,
    ]
    .iter()
    .map(|ns| ns.name().to_owned())
    .collect();

    topo.prime_neighbours().expect("neighbours");
    for ip in [NAT_A_OUT_IP, NAT_B_OUT_IP] {
        assert!(has_neighbour(&topo.relay, ip), "relay knows {ip}'s MAC");
    }

    check_side(
        &topo.caller,
        SocketAddrV4::new(CALLER_IP, 5004),
        &topo.relay,
        RELAY_A_IP,
        NAT_A_OUT_IP,
    );
    check_side(
        &topo.callee,
        SocketAddrV4::new(CALLEE_IP, 6004),
        &topo.relay,
        RELAY_B_IP,
        NAT_B_OUT_IP,
    );

    drop(topo);
    for name in &names {
        assert!(
            !Path::new("/run/netns").join(name).exists(),
            "namespace {name} left behind"
        );
    }
}
