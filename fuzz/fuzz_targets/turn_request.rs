//! The TURN server's message handling (`relay_ctl::turn::handler::Core`): an authenticated
//! client holds an allocation with a permission and a channel, then the input is cut into
//! messages (a length byte, a direction byte, the bytes) fed as the client's datagrams or as
//! peer packets to the relayed address, with sweeps in between.
#![no_main]
use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
};

use libfuzzer_sys::fuzz_target;
use relay_ctl::{
    error::Result,
    stun::message::{
        self, ATTR_NONCE, ATTR_REALM, ATTR_USERNAME, Builder, Class,
    },
    turn::{
        TurnStats,
        allocation::{FiveTuple, NS, Transport},
        attrs::*,
        auth::{Credentials, Nonces, long_term_key},
        deny::DenyList,
        handler::{Core, Now, Out, Resources, Settings},
        offload::Recorder,
    },
};

/// Ports from 30000 up; slots from 1 up.
struct Fake(Mutex<(u16, u32)>);

impl Resources for Fake {
    fn reserve(&self, ip: IpAddr) -> Result<SocketAddr> {
        let mut g = self.0.lock().expect("lock");
        g.0 += 2;
        Ok(SocketAddr::new(ip, 30000 + g.0))
    }
    fn release(&self, _: SocketAddr) {}
    fn alloc_slot(&self) -> Option<u32> {
        let mut g = self.0.lock().expect("lock");
        g.1 += 1;
        Some(g.1)
    }
    fn free_slot(&self, _: u32) {}
    fn slot_packets(&self, _: u32) -> u64 {
        0
    }
}

fn request(method: u16, txid: u8, nonce: &[u8], extra: impl FnOnce(&mut Builder)) -> Vec<u8> {
    let mut b = Builder::new(method, Class::Request, [txid; 12]);
    extra(&mut b);
    b.attr(ATTR_USERNAME, b"alice")
        .attr(ATTR_REALM, b"r")
        .attr(ATTR_NONCE, nonce)
        .integrity(&long_term_key("alice", "r", "pw"), false);
    b.finish(true)
}

fuzz_target!(|data: &[u8]| {
    let stats = Arc::new(TurnStats::default());
    let relay: IpAddr = "198.18.1.1".parse().expect("address");
    let mut core = Core::new(
        Credentials {
            realm: "r".into(),
            users: [("alice".to_string(), "pw".to_string())].into(),
            secret: Some(b"s".to_vec()),
        },
        Nonces::new([1; 32], 600),
        DenyList {
            own: vec![relay],
            prefixes: vec![],
        },
        Settings {
            relay_addrs: vec![relay],
            max_lifetime_secs: 3600,
            user_quota: 4,
            bandwidth: 0,
        },
        Arc::new(Fake(Mutex::new((0, 0)))),
        Arc::new(Recorder::default()),
        stats,
    );
    let five = FiveTuple {
        client: "198.18.1.2:5000".parse().expect("address"),
        server: "198.18.1.1:3478".parse().expect("address"),
        transport: Transport::Udp,
    };
    let peer: SocketAddr = "198.18.2.2:3480".parse().expect("address");
    let mut now = Now {
        ns: 1000 * NS,
        unix: 1_700_000_000,
    };
    let nonce = core.nonces.mint(five.client.ip(), now.unix);
    let n = nonce.as_bytes();
    for req in [
        request(METHOD_ALLOCATE, 1, n, |b| {
            b.attr(ATTR_REQUESTED_TRANSPORT, &[TRANSPORT_UDP, 0, 0, 0]);
        }),
        request(METHOD_CHANNEL_BIND, 2, n, |b| {
            b.attr(ATTR_CHANNEL_NUMBER, &channel_attr(0x4001))
                .xor_address(ATTR_XOR_PEER_ADDRESS, peer);
        }),
    ] {
        core.from_client(five, &req, now);
    }
    let relayed = core.table.get(&five).map(|a| a.relayed.clone()).unwrap_or_default();
    let mut rest = data;
    while let [len, dir, tail @ ..] = rest {
        let take = usize::from(*len).min(tail.len());
        let (msg, next) = tail.split_at(take);
        rest = next;
        let out = match dir % 4 {
            0 | 1 => core.from_client(five, msg, now),
            2 => relayed
                .first()
                .and_then(|r| core.from_peer(*r, peer, msg, now).ok().flatten()),
            _ => {
                now.ns += u64::from(*dir) * NS;
                core.sweep(now);
                None
            }
        };
        match out {
            // Whatever goes to the client is STUN or ChannelData.
            Some(Out::Client { bytes, .. }) => assert!(
                message::parse(&bytes).is_ok() || parse_channel_data(&bytes).is_some(),
                "an answer that is neither STUN nor ChannelData"
            ),
            // Nothing leaves but from a relayed address, and never to the box or loopback.
            Some(Out::Peer { from, to, .. }) => {
                assert!(relayed.contains(&from), "sent from {from}");
                assert!(!to.ip().is_loopback() && !to.ip().is_unspecified(), "sent to {to}");
                assert!(to.ip() != relay || core.table.is_relayed(to), "sent to the box: {to}");
            }
            None => {}
        }
    }
});
