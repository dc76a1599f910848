//! IPv6 media end to end: caller and callee on IPv6 behind their routers' stateful firewalls
//! (only replies get in, so neither can reach the other directly), a session through the
//! daemon's API on the relay's IPv6 addresses, media both ways in XDP's IPv6 fast path.
mod common;

use std::{net::SocketAddr, time::Duration};

use common::*;
use relay_ctl::api::{CreateSession, LatchPolicy, SideRequest, StreamRequest};
use relay_testbed::{CALLEE_IP6, CALLER_IP6, RELAY_A_IP6, RELAY_B_IP6};

const N: usize = 100;

#[test]
fn ipv6_call_through_two_firewalls_goes_to_xdp() {
    let rig = Rig::start_prepared("v6", &[], |t| {
        t.add_ipv6().expect("ipv6");
        t.prime_neighbours6().expect("ipv6 neighbours");
    });
    let v = rig
        .create(CreateSession {
            call_id: "v6-1".into(),
            policy: Some(LatchPolicy::Immediate),
            answered: Some(true),
            streams: vec![StreamRequest {
                media: Some("audio".into()),
                a: SideRequest {
                    peer: Some(SocketAddr::from((CALLER_IP6, CALLER_PORT))),
                    rtcp_peer: None,
                    relay_addr: Some(RELAY_A_IP6.into()),
                },
                b: SideRequest {
                    peer: Some(SocketAddr::from((CALLEE_IP6, CALLEE_PORT))),
                    rtcp_peer: None,
                    relay_addr: Some(RELAY_B_IP6.into()),
                },
            }],
        })
        .expect("create");
    let (ra, rb) = relays(&v);
    assert!(ra.is_ipv6() && rb.is_ipv6(), "{ra} {rb}");
    let caller = rig
        .topo
        .caller
        .udp_socket(SocketAddr::from((CALLER_IP6, CALLER_PORT)))
        .expect("caller socket");
    let callee = rig
        .topo
        .callee
        .udp_socket(SocketAddr::from((CALLEE_IP6, CALLEE_PORT)))
        .expect("callee socket");

    // The firewalls: the callee cannot be reached directly from outside.
    caller
        .send_to(b"direct", SocketAddr::from((CALLEE_IP6, CALLEE_PORT)))
        .expect("send");
    assert!(recv_n(&callee, 1, Duration::from_millis(300)).is_empty());

    open_call(&rig, &caller, &callee, &v);
    let s = rig.session("v6-1");
    // IPv6 is routed, not translated: the relay latches the hosts' own addresses.
    assert_eq!(
        s.streams[0].legs[0].latched,
        Some(SocketAddr::from((CALLER_IP6, CALLER_PORT)))
    );
    assert!(
        s.streams[0].legs.iter().all(|l| l.kernel),
        "{s:?}\n{}",
        rig.log()
    );

    let before = rig.stats();
    send_n(&caller, ra, "c", N);
    let got = recv_n(&callee, N, Duration::from_secs(2));
    assert_eq!(tags(&got), expect_tags("c", N));
    assert!(
        got.iter().all(|(_, from)| *from == rb),
        "from the relay's B side"
    );
    send_n(&callee, rb, "e", N);
    let got = recv_n(&caller, N, Duration::from_secs(2));
    assert_eq!(tags(&got), expect_tags("e", N));
    assert!(
        got.iter().all(|(_, from)| *from == ra),
        "from the relay's A side"
    );
    let after = rig.stats();
    assert_eq!(
        after.forwarded_kernel_packets - before.forwarded_kernel_packets,
        2 * N as u64,
        "{}",
        rig.log()
    );
    assert_eq!(
        after.forwarded_user_packets, before.forwarded_user_packets,
        "nothing more through the controller"
    );
}
