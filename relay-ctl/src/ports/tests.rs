//! Tests bind real sockets on 127.0.0.x. They run in parallel in one process, so each test has
//! its own port window (BASE + 20 * n), below Linux's ephemeral range (32768-60999) so that
//! outgoing sockets elsewhere cannot take the test ports.

use super::*;
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

const BASE: u16 = 24000;

const LO1: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const LO2: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const Q: Duration = Duration::from_secs(30);

/// `pairs` pairs in test window `n`.
fn window(n: u16, pairs: u16) -> PortRange {
    assert!(pairs <= 10, "a window holds 10 pairs");
    let min = BASE + 20 * n;
    PortRange::new(min, min + 2 * pairs - 1).unwrap()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn range_validation() {
    let r = PortRange::new(30000, 39999).unwrap();
    assert_eq!((r.min, r.max, r.pairs()), (30000, 39999, 5000));
    assert_eq!(PortRange::default(), r);
    assert_eq!(r.to_string(), "30000-39999");

    // Odd min rounds up; a trailing even port is not a pair.
    let r = PortRange::new(30001, 30006).unwrap();
    assert_eq!((r.min, r.pairs()), (30002, 2));
    assert!(r.contains(30002) && r.contains(30004));
    assert!(!r.contains(30003) && !r.contains(30006) && !r.contains(30000));

    let r = PortRange::new(65534, 65535).unwrap();
    assert_eq!(r.pairs(), 1);

    assert_eq!(
        PortRange::new(30001, 30002),
        Err(RangeError::NoPair {
            min: 30001,
            max: 30002
        })
    );
    assert!(matches!(
        PortRange::new(30000, 30000),
        Err(RangeError::NoPair { .. })
    ));
    assert!(matches!(
        PortRange::new(65535, 65535),
        Err(RangeError::NoPair { .. })
    ));
    assert_eq!(
        PortRange::new(40000, 30000),
        Err(RangeError::Inverted {
            min: 40000,
            max: 30000
        })
    );
    assert_eq!(
        PortRange::new(0, 100),
        Err(RangeError::PortZero { max: 100 })
    );

    let msg = PortRange::new(40000, 30000).unwrap_err().to_string();
    assert!(
        msg.contains("40000-30000") && msg.contains("above"),
        "{msg}"
    );
    let msg = PortRange::new(30001, 30002).unwrap_err().to_string();
    assert!(msg.contains("no RTP/RTCP pair"), "{msg}");
    let _: &dyn std::error::Error = &RangeError::PortZero { max: 1 };

    // Hand-built invalid ranges have no pairs rather than wrapping, and never port 0.
    assert_eq!(PortRange { min: 9, max: 3 }.pairs(), 0);
    assert_eq!(PortRange { min: 0, max: 3 }.pairs(), 1);
    assert!(!PortRange { min: 0, max: 3 }.contains(0));
}

#[test]
fn pair_rtcp_and_display() {
    let p = PortPair::new(IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1)), 30000);
    assert_eq!(p.rtcp(), 30001);
    assert_eq!(p.to_string(), "198.18.1.1:30000/30001");
    assert_eq!(p.rtcp_addr(), "198.18.1.1:30001".parse().unwrap());
    let p = PortPair::new("2001:db8::1".parse().unwrap(), 30002);
    assert_eq!(p.to_string(), "[2001:db8::1]:30002/30003");
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(serde_json::from_str::<PortPair>(&json).unwrap(), p);
}

#[test]
fn allocates_even_odd_pairs_and_holds_no_socket() {
    let range = window(0, 4);
    let mut a = PortAllocator::new(&[LO1], range, Q);
    let now = Instant::now();
    let mut got = Vec::new();
    for _ in 0..4 {
        let al = a.allocate(LO1, now).unwrap();
        assert_eq!(al.pair.rtp % 2, 0);
        assert_eq!(al.pair.rtcp(), al.pair.rtp + 1);
        // The probe closed its sockets: the ports are free to bind (steering delivers them).
        drop(std::net::UdpSocket::bind(al.pair.rtp_addr()).unwrap());
        drop(std::net::UdpSocket::bind(al.pair.rtcp_addr()).unwrap());
        got.push(al);
    }
    // Never-used pairs go out in port order.
    let ports: Vec<u16> = got.iter().map(|al| al.pair.rtp).collect();
    assert_eq!(
        ports,
        vec![range.min, range.min + 2, range.min + 4, range.min + 6]
    );
    assert_eq!(
        a.stats(now),
        vec![PoolStats {
            addr: LO1,
            total_pairs: 4,
            used_pairs: 4,
            free_pairs: 0,
            quarantined_pairs: 0
        }]
    );
}

#[test]
fn exhaustion_then_reuse_only_after_quarantine() {
    let range = window(1, 1);
    let mut a = PortAllocator::new(&[LO1], range, Q);
    let t0 = Instant::now();
    let first = a.allocate(LO1, t0).unwrap();
    let e = a.allocate(LO1, t0).unwrap_err();
    assert!(
        matches!(e, AllocError::Exhausted { addr, pairs: 1, quarantined: 0 } if addr == LO1),
        "{e:?}"
    );
    assert_eq!(a.exhausted(), 1);

    let pair = first.pair;
    assert!(a.release(pair, t0));
    let e = a.allocate(LO1, t0 + secs(29)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "no free relay port pair on 127.0.0.1 (1 pairs in range, 1 in quarantine): widen \
         --port-min/--port-max or wait for the quarantine"
    );
    assert_eq!(a.exhausted(), 2);
    let s = &a.stats(t0 + secs(29))[0];
    assert_eq!((s.used_pairs, s.free_pairs, s.quarantined_pairs), (0, 0, 1));
    // Quarantine over exactly at release + quarantine.
    let s = &a.stats(t0 + Q)[0];
    assert_eq!((s.used_pairs, s.free_pairs, s.quarantined_pairs), (0, 1, 0));
    let again = a.allocate(LO1, t0 + Q).unwrap();
    assert_eq!(again.pair, pair);
    assert_eq!(a.exhausted(), 2);
}

#[test]
fn least_recently_freed_first() {
    let range = window(2, 3);
    let mut a = PortAllocator::new(&[LO1], range, Q);
    let t0 = Instant::now();
    let p: Vec<PortPair> = (0..3).map(|_| a.allocate(LO1, t0).unwrap().pair).collect();
    // Sockets are dropped already; release p1 before p0.
    assert!(a.release(p[1], t0));
    assert!(a.release(p[0], t0 + secs(1)));
    let later = t0 + secs(100);
    assert_eq!(a.allocate(LO1, later).unwrap().pair, p[1]);
    assert_eq!(a.allocate(LO1, later).unwrap().pair, p[0]);

    // A freed pair queues behind pairs that were free already.
    let mut b = PortAllocator::new(&[LO1], window(3, 3), Duration::ZERO);
    let x = b.allocate(LO1, t0).unwrap().pair;
    assert!(b.release(x, t0));
    let y = b.allocate(LO1, t0).unwrap().pair;
    assert_ne!(x, y);
}

#[test]
fn reserve_exact_pairs() {
    let range = window(4, 3);
    let mut a = PortAllocator::new(&[LO1], range, Q);
    let t0 = Instant::now();
    let p0 = PortPair::new(LO1, range.min);
    let p1 = PortPair::new(LO1, range.min + 2);

    // From the free list, out of order.
    let r1 = a.reserve(p1, t0).unwrap();
    assert_eq!(r1.pair, p1);
    assert!(matches!(a.reserve(p1, t0), Err(AllocError::InUse(p)) if p == p1));

    let odd = PortPair::new(LO1, range.min + 1);
    assert!(matches!(a.reserve(odd, t0), Err(AllocError::OutOfRange(p)) if p == odd));
    let above = PortPair::new(LO1, range.min + 6);
    assert!(matches!(
        a.reserve(above, t0),
        Err(AllocError::OutOfRange(_))
    ));
    let below = PortPair::new(LO1, range.min - 2);
    assert!(matches!(
        a.reserve(below, t0),
        Err(AllocError::OutOfRange(_))
    ));
    assert!(matches!(
        a.reserve(PortPair::new(LO2, range.min), t0),
        Err(AllocError::UnknownAddr(addr)) if addr == LO2
    ));

    // allocate skips the reserved pair even though it was in the middle of the free list.
    let x0 = a.allocate(LO1, t0).unwrap();
    assert_eq!(x0.pair, p0);

    // From quarantine, long before it ends.
    assert!(a.release(p0, t0));
    let r0 = a.reserve(p0, t0 + secs(1)).unwrap();
    assert_eq!(r0.pair, p0);
    let s = &a.stats(t0 + secs(100))[0];
    assert_eq!((s.used_pairs, s.free_pairs, s.quarantined_pairs), (2, 1, 0));
    // The stale quarantine entry of p0 does not free it when its time comes.
    let x2 = a.allocate(LO1, t0 + secs(100)).unwrap();
    assert_eq!(x2.pair.rtp, range.min + 4);
    assert!(matches!(
        a.allocate(LO1, t0 + secs(100)),
        Err(AllocError::Exhausted { quarantined: 0, .. })
    ));
}

#[test]
fn bind_conflict_is_skipped_counted_and_retried_last() {
    let range = window(5, 3);
    let mut a = PortAllocator::new(&[LO1], range, Q);
    let t0 = Instant::now();
    // Someone else holds the RTCP port of the first pair.
    let foreign = UdpSocket::bind((LO1, range.min + 1)).unwrap();
    let x = a.allocate(LO1, t0).unwrap();
    assert_eq!(x.pair.rtp, range.min + 2);
    assert_eq!(a.bind_conflicts(), 1);
    drop(foreign);
    assert_eq!(a.allocate(LO1, t0).unwrap().pair.rtp, range.min + 4);
    assert_eq!(a.allocate(LO1, t0).unwrap().pair.rtp, range.min);
    assert_eq!(a.bind_conflicts(), 1);
    assert_eq!(a.exhausted(), 0);
}

#[test]
fn all_pairs_held_by_others_is_exhaustion_not_a_loop() {
    let range = window(6, 1);
    let mut a = PortAllocator::new(&[LO1], range, Q);
    let t0 = Instant::now();
    let _foreign = UdpSocket::bind((LO1, range.min)).unwrap();
    let e = a.allocate(LO1, t0).unwrap_err();
    assert!(matches!(e, AllocError::Exhausted { pairs: 1, .. }), "{e:?}");
    assert_eq!((a.bind_conflicts(), a.exhausted()), (1, 1));
    // The pair stays free (it is ours to hand out once the other socket goes).
    let s = &a.stats(t0)[0];
    assert_eq!((s.used_pairs, s.free_pairs), (0, 1));

    // reserve of a held pair is an error, counted as a conflict.
    let e = a.reserve(PortPair::new(LO1, range.min), t0).unwrap_err();
    assert!(matches!(e, AllocError::Bind { .. }), "{e:?}");
    assert_eq!(a.bind_conflicts(), 2);
    assert!(std::error::Error::source(&e).is_some());
}

#[test]
fn other_bind_errors_are_returned_and_the_pair_stays_free() {
    // TEST-NET-1 is on no interface here: EADDRNOTAVAIL, not a conflict.
    let addr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let range = window(7, 2);
    let mut a = PortAllocator::new(&[addr], range, Q);
    let t0 = Instant::now();
    let e = a.allocate(addr, t0).unwrap_err();
    match &e {
        AllocError::Bind { pair, source } => {
            assert_eq!(pair.rtp, range.min);
            assert_eq!(source.raw_os_error(), Some(libc::EADDRNOTAVAIL));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        e.to_string()
            .starts_with("cannot bind relay port pair 192.0.2.1:"),
        "{e}"
    );
    assert_eq!((a.bind_conflicts(), a.exhausted()), (0, 0));
    assert_eq!(a.stats(t0)[0].free_pairs, 2);
}

#[test]
fn double_release_and_foreign_release_are_ignored() {
    let range = window(8, 2);
    let mut a = PortAllocator::new(&[LO1], range, Q);
    let t0 = Instant::now();
    let p = a.allocate(LO1, t0).unwrap().pair;
    assert!(a.release(p, t0));
    assert!(!a.release(p, t0 + secs(1)));
    // Never handed out, odd, out of range, unknown address.
    assert!(!a.release(PortPair::new(LO1, range.min + 2), t0));
    assert!(!a.release(PortPair::new(LO1, range.min + 1), t0));
    assert!(!a.release(PortPair::new(LO1, range.min + 20), t0));
    assert!(!a.release(PortPair::new(LO2, range.min), t0));
    let s = &a.stats(t0 + secs(1))[0];
    assert_eq!((s.used_pairs, s.free_pairs, s.quarantined_pairs), (0, 1, 1));
    // The second release did not push the quarantine back.
    assert_eq!(a.stats(t0 + Q)[0].quarantined_pairs, 0);
}

#[test]
fn two_addresses_are_independent() {
    let range = window(9, 1);
    let mut a = PortAllocator::new(&[LO2, LO1], range, Q);
    assert_eq!(a.addrs(), vec![LO2, LO1]);
    let t0 = Instant::now();
    let x1 = a.allocate(LO1, t0).unwrap();
    let x2 = a.allocate(LO2, t0).unwrap();
    assert_eq!(x1.pair.rtp, x2.pair.rtp);
    assert_eq!(x2.pair.addr, LO2);
    assert!(matches!(a.allocate(LO1, t0), Err(AllocError::Exhausted { addr, .. }) if addr == LO1));

    assert!(a.release(PortPair::new(LO1, range.min), t0));
    let s = a.stats(t0);
    assert_eq!(s.len(), 2);
    assert_eq!(
        (s[0].addr, s[0].used_pairs, s[0].quarantined_pairs),
        (LO2, 1, 0)
    );
    assert_eq!(
        (s[1].addr, s[1].used_pairs, s[1].quarantined_pairs),
        (LO1, 0, 1)
    );
    assert!(matches!(
        a.allocate(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)), t0),
        Err(AllocError::UnknownAddr(_))
    ));
}

#[test]
fn ipv6_loopback() {
    let range = window(10, 1);
    let lo6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let mut a = PortAllocator::new(&[lo6], range, Q);
    let x = a.allocate(lo6, Instant::now()).unwrap();
    assert_eq!(x.pair.rtcp_addr(), SocketAddr::new(lo6, range.min + 1));
    assert_eq!(
        x.pair.to_string(),
        format!("[::1]:{}/{}", range.min, range.min + 1)
    );
}

#[test]
fn new_drops_wildcard_and_repeated_addrs_and_caps_quarantine() {
    let any4 = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let any6 = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    let a = PortAllocator::new(&[any4, LO1, any6, LO1], window(11, 1), secs(u64::MAX));
    assert_eq!(a.addrs(), vec![LO1]);
    assert_eq!(a.quarantine(), MAX_QUARANTINE);
    assert_eq!(a.range(), window(11, 1));
}

#[test]
fn clock_stepping_back_never_shortens_a_quarantine() {
    let range = window(12, 2);
    let mut a = PortAllocator::new(&[LO1], range, Q);
    let t0 = Instant::now();
    let p0 = a.allocate(LO1, t0).unwrap().pair;
    let p1 = a.allocate(LO1, t0).unwrap().pair;
    assert!(a.release(p0, t0 + secs(10)));
    // Released "earlier" than p0: waits until p0's deadline too, keeping the queue ordered.
    assert!(a.release(p1, t0));
    assert!(matches!(
        a.allocate(LO1, t0 + secs(35)),
        Err(AllocError::Exhausted { quarantined: 2, .. })
    ));
    assert_eq!(a.allocate(LO1, t0 + secs(40)).unwrap().pair, p0);
    assert_eq!(a.allocate(LO1, t0 + secs(40)).unwrap().pair, p1);
}

#[test]
fn repeated_reserve_keeps_queues_bounded() {
    let range = window(13, 2);
    let mut a = PortAllocator::new(&[LO1], range, Duration::ZERO);
    let t0 = Instant::now();
    let p = PortPair::new(LO1, range.min + 2);
    for i in 0..500 {
        let t = t0 + Duration::from_millis(i);
        assert_eq!(a.reserve(p, t).unwrap().pair, p);
        assert!(a.release(p, t));
    }
    let (free, quarantine) = a.pools[0].1.queue_lens();
    assert!(
        free + quarantine <= 2 * (2 * 2 + 16),
        "{free} + {quarantine}"
    );
    let s = &a.stats(t0 + secs(1))[0];
    assert_eq!((s.used_pairs, s.free_pairs, s.quarantined_pairs), (0, 2, 0));
}

#[test]
fn bookkeeping_of_5000_pairs_is_cheap() {
    // Pool alone (no sockets: 10000 of them would exceed the fd limit).
    let mut pool = Pool::new(PortRange::DEFAULT.pairs());
    let t0 = Instant::now();
    let started = Instant::now();
    for round in 0..20u64 {
        let t = t0 + secs(round * 100);
        pool.promote(t);
        while let Some(idx) = pool.front_free() {
            pool.take(idx);
        }
        assert_eq!(pool.used(), 5000);
        for idx in 0..5000 {
            pool.quarantine(idx, t + Q);
        }
    }
    assert!(started.elapsed() < secs(5), "{:?}", started.elapsed());
    let (free, quarantine) = pool.queue_lens();
    assert!(free <= 2 * 5000 + 16 && quarantine <= 2 * 5000 + 16);
}

#[derive(Clone, Debug)]
enum Op {
    Allocate(bool),
    Release(usize),
    ReleaseUnknown(u16),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<bool>().prop_map(Op::Allocate),
        3 => any::<usize>().prop_map(Op::Release),
        1 => (0u16..12).prop_map(Op::ReleaseUnknown),
        2 => (0u64..20).prop_map(Op::Advance),
    ]
}

proptest! {
    // No regression files: they would land outside this module's files.
    #![proptest_config(ProptestConfig { cases: 50, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn allocator_keeps_its_invariants(ops in proptest::collection::vec(op(), 1..30)) {
        let range = window(14, 6);
        let addrs = [LO1, LO2];
        let mut a = PortAllocator::new(&addrs, range, Q);
        let mut now = Instant::now();
        // The model: pairs in use and when each pair was last released.
        let mut in_use: BTreeMap<PortPair, Allocation> = BTreeMap::new();
        let mut released: HashMap<PortPair, Instant> = HashMap::new();
        let model_free = |in_use: &BTreeMap<PortPair, Allocation>, released: &HashMap<PortPair, Instant>, addr: IpAddr, now: Instant| {
            (0..range.pairs())
                .map(|i| PortPair::new(addr, range.rtp(i)))
                .filter(|p| !in_use.contains_key(p))
                .filter(|p| released.get(p).is_none_or(|&t| now >= t + Q))
                .count() as u32
        };
        for op in ops {
            match op {
                Op::Allocate(second) => {
                    let addr = if second { LO2 } else { LO1 };
                    let conflicts = a.bind_conflicts();
                    match a.allocate(addr, now) {
                        Ok(al) => {
                            prop_assert_eq!(al.pair.addr, addr);
                            prop_assert!(range.contains(al.pair.rtp));
                            prop_assert!(!in_use.contains_key(&al.pair), "{} handed out twice", al.pair);
                            if let Some(&t) = released.get(&al.pair) {
                                prop_assert!(now >= t + Q, "{} reused during its quarantine", al.pair);
                            }
                            in_use.insert(al.pair, al);
                        }
                        Err(AllocError::Exhausted { addr: ea, pairs, .. }) => {
                            prop_assert_eq!(ea, addr);
                            prop_assert_eq!(pairs, 6);
                            // A foreign socket on a test port could also cause it; say so.
                            prop_assert!(
                                model_free(&in_use, &released, addr, now) == 0 || a.bind_conflicts() > conflicts,
                                "exhausted with free pairs"
                            );
                        }
                        Err(e) => prop_assert!(false, "unexpected error {}", e),
                    }
                }
                Op::Release(pick) => {
                    if in_use.is_empty() {
                        continue;
                    }
                    let pair = *in_use.keys().nth(pick % in_use.len()).unwrap();
                    in_use.remove(&pair);
                    prop_assert!(a.release(pair, now));
                    released.insert(pair, now);
                }
                Op::ReleaseUnknown(k) => {
                    let pair = PortPair::new(LO1, range.min + k);
                    if !in_use.contains_key(&pair) {
                        prop_assert!(!a.release(pair, now));
                    }
                }
                Op::Advance(s) => now += secs(s),
            }
            for (s, &addr) in a.stats(now).iter().zip(&addrs) {
                prop_assert_eq!(s.addr, addr);
                prop_assert_eq!(s.total_pairs, 6);
                prop_assert_eq!(s.used_pairs + s.free_pairs + s.quarantined_pairs, s.total_pairs);
                let used = in_use.keys().filter(|p| p.addr == addr).count() as u32;
                prop_assert_eq!(s.used_pairs, used);
                prop_assert_eq!(s.free_pairs, model_free(&in_use, &released, addr, now));
            }
        }
    }
}
