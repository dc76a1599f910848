//! XDP fixture table through BPF_PROG_TEST_RUN: each case installs its legs, runs one frame
//! through the real verified program, and checks the verdict, the exact output bytes, the
//! global counters and the leg's counters.
//!
//! The program runs with `ingress_ifindex` set to a veth in a namespace made here, so
//! `bpf_fib_lookup` answers from a real FIB with permanent neighbours (deterministic MACs).
mod adversarial;
mod cases;
mod nexthop;
mod reflect_cases;
mod relay6_cases;
mod stun_cases;
mod turn_cases;

use std::collections::HashMap;

use aya::programs::{TestRun, TestRunOptions};
use cases::*;
use relay_common::Counter;
use relay_ctl::{
    dataplane::{DataPlane, EgressMap, NextHops, Reflector, TurnMaps, load, relay_program},
    netlink::ifindex,
};
use relay_testbed::{Netns, frames};

const XDP_DROP: u32 = 1;
pub(crate) const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
pub(crate) const XDP_REDIRECT: u32 = 4;

/// The fixture namespace: three relay links with a peer each, permanent neighbours.
fn fixture_netns() -> Netns {
    let ns = Netns::add(&format!("mr-fx-{}", std::process::id())).expect("netns");
    let links = [
        ("fx0", FX0_MAC, "198.18.1.1/24", "2001:db8:1::1/64"),
        ("fx1", FX1_MAC, "198.18.2.1/24", "2001:db8:2::1/64"),
        ("fx2", FX2_MAC, "198.18.3.1/24", "2001:db8:3::1/64"),
    ];
    for (i, (name, m, cidr, cidr6)) in links.into_iter().enumerate() {
        ns.stub_link(name, m, &format!("fxp{i}"), &[cidr, cidr6])
            .expect("link");
    }
    // `ip neigh` takes the family from the address.
    let v4 = [
        (CALLER, CALLER_MAC, "fx0"),
        (TX_PEER, TX_PEER_MAC, "fx0"),
        (CALLEE, CALLEE_MAC, "fx1"),
        (FX2_HOST, FX2_HOST_MAC, "fx2"),
    ]
    .map(|(ip, m, dev)| (std::net::IpAddr::from(ip), m, dev));
    let v6 = relay6_cases::NEIGHBOURS6.map(|(ip, m, dev)| (std::net::IpAddr::from(ip), m, dev));
    for (ip, m, dev) in v4.into_iter().chain(v6) {
        ns.neigh_permanent(ip, m, dev).expect("neigh");
    }
    // bpf_fib_lookup needs forwarding on the ingress link (the daemon turns it on); fx2 keeps
    // it off to exercise that refusal.
    for dev in ["fx0", "fx1"] {
        for family in ["ipv4", "ipv6"] {
            ns.exec(
                "sysctl",
                &["-qw", &format!("net.{family}.conf.{dev}.forwarding=1")],
            )
            .expect("sysctl");
        }
    }
    ns
}

/// `struct xdp_md` for BPF_PROG_TEST_RUN: data, data_end, data_meta, ingress_ifindex,
/// rx_queue_index, egress_ifindex.
pub(crate) fn xdp_md(len: usize, ingress: u32) -> Vec<u8> {
    [0u32, len as u32, 0, ingress, 0, 0]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect()
}

#[test]
fn xdp_fixture_table() {
    let ns = fixture_netns();
    let failures = ns
        .run(|| {
            let mut ebpf = load(MAX_LEGS).expect("program loads and passes the verifier");
            let mut dp = DataPlane::from_ebpf(&mut ebpf).expect("maps");
            let mut egress = EgressMap::from_ebpf(&mut ebpf).expect("devmap");
            for dev in ["fx0", "fx1"] {
                egress
                    .add(ifindex(dev).expect("ifindex"))
                    .expect("devmap insert");
            }
            let mut rfl = Reflector::from_ebpf(&mut ebpf).expect("reflector maps");
            let mut nh = NextHops::from_ebpf(&mut ebpf).expect("next-hop maps");
            let mut turn = TurnMaps::from_ebpf(&mut ebpf).expect("TURN maps");
            setup_reflector(&mut rfl);
            let prog = relay_program(&mut ebpf).expect("program");
            check_verifier_budget(prog);

            let mut failures = vec![];
            let mut all = cases::all();
            all.extend(reflect_cases::all());
            all.extend(stun_cases::all());
            all.extend(relay6_cases::all());
            all.extend(turn_cases::all());
            for c in &all {
                if let Err(e) = rfl
                    .set_config(&c.config)
                    .map_err(|e| e.to_string())
                    // Each case starts with an empty next-hop cache, so what it expects of the
                    // FIB is what it gets (nexthop.rs checks the cache itself).
                    .and_then(|()| nh.clear().map_err(|e| e.to_string()))
                    .and_then(|()| run_case(prog, &mut dp, &mut turn, c))
                {
                    failures.push(format!("[{}] {e}", c.name));
                }
            }
            eprintln!("{} fixture cases, {} failed", all.len(), failures.len());
            if let Err(e) = turn_cases::api_checks(&mut turn) {
                failures.push(format!("[turn maps api] {e}"));
            }
            // Then the adversarial frames, with the table's reflector config (no rate limit:
            // a reflector frame is dropped for its ticket, never for its rate) and the TURN
            // port on (shared with STUN).
            let adversarial = turn_cases::clear(&mut turn)
                .and_then(|()| {
                    rfl.set_config(&relay_common::reflector::DataPlaneConfig {
                        turn_port: reflect_cases::STUN_PORT,
                        ..reflect_cases::CONFIG
                    })
                    .map_err(|e| e.to_string())
                })
                .and_then(|()| ifindex("fx0").map_err(|e| e.to_string()))
                .and_then(|fx0| adversarial::run(prog, &mut dp, &mut turn, fx0));
            if let Err(e) = adversarial {
                failures.push(format!("[adversarial] {e}"));
            }
            // Last: it changes the namespace's neighbours, routes and links.
            match nexthop::run(prog, &mut dp, &mut egress, &mut nh, &ns) {
                Ok(n) => eprintln!("next-hop cache: {n} steps"),
                Err(e) => failures.push(format!("[nexthop] {e}")),
            }
            failures
        })
        .expect("run in fixture netns");
    assert!(
        failures.is_empty(),
        "fixture failures:\n{}",
        failures.join("\n")
    );
}

/// Instructions the verifier processed (kernel 5.16+ reports it): the budget keeps the
/// reflector's SipHash and STUN's CRC-32 cheap to verify, far below the 1M limit of 6.1, and
/// catches a change that makes verification materially dearer: 37.6k on 6.18 with the
/// next-hop cache (27.5k before it); 106k with the TURN ChannelData paths (four more paths
/// with a next hop each, the IPv6 ones dearest; docs/dataplane.md, "Verifier cost"); about
/// 1.2x that.
const VERIFIER_BUDGET: u32 = 130_000;

fn check_verifier_budget(prog: &aya::programs::Xdp) {
    let info = prog.info().expect("program info");
    let n = info.verified_instruction_count().expect("verified_insns");
    eprintln!("verifier processed {n} instructions (budget {VERIFIER_BUDGET})");
    assert!(n < VERIFIER_BUDGET, "verifier processed {n} instructions");
}

/// Reflector state shared by every case: one key, the clock, our addresses, a deny prefix.
fn setup_reflector(rfl: &mut Reflector) {
    use reflect_cases::*;
    rfl.set_key(KEY_ID, KEY).expect("key");
    // A second key id that is installed then removed: its tickets must be refused.
    rfl.set_key(9, [0x99; 16]).expect("key 9");
    assert!(rfl.remove_key(9).expect("remove key 9"));
    rfl.set_clock(NOW).expect("clock");
    for a in OWN {
        rfl.add_own_addr(a.into()).expect("own address");
    }
    // IPv6 own addresses: the TURN port is answered on them too.
    for a in turn_cases::OWN6 {
        rfl.add_own_addr(a.into()).expect("own IPv6 address");
    }
    rfl.set_deny_prefixes(&[(DENY_NET.0.into(), DENY_NET.1)])
        .expect("deny prefixes");
    assert_eq!(rfl.key_ids().expect("key ids"), vec![KEY_ID]);
    assert_eq!(rfl.clock().expect("clock"), NOW);
    assert_eq!(
        rfl.own_addrs().expect("own").len(),
        OWN.len() + turn_cases::OWN6.len()
    );
}

fn run_case(
    prog: &aya::programs::Xdp,
    dp: &mut DataPlane,
    turn: &mut TurnMaps,
    c: &Case,
) -> Result<(), String> {
    // Map state: exactly this case's legs and TURN channels.
    turn_cases::clear(turn)?;
    for (k, v) in &c.turn_channels {
        turn.set_unchecked(Some((k, v)), None)
            .map_err(|e| format!("install TURN channel: {e}"))?;
    }
    for (k, v) in &c.turn_peers {
        turn.set_unchecked(None, Some((k, v)))
            .map_err(|e| format!("install TURN peer: {e}"))?;
    }
    for (k, _) in dp.legs().map_err(|e| e.to_string())? {
        dp.remove_leg(&k).map_err(|e| e.to_string())?;
    }
    for (k, v) in &c.legs {
        if v.slot < MAX_LEGS {
            dp.install_leg(k, v)
        } else {
            dp.install_leg_unchecked(k, v)
        }
        .map_err(|e| format!("install: {e:#}"))?;
    }
    let stats_before = match c.leg_stats {
        Some((slot, _)) => Some(dp.leg_stats(slot).map_err(|e| e.to_string())?),
        None => None,
    };

    let ingress = ifindex(c.ingress).map_err(|e| e.to_string())?;
    let ctx = xdp_md(c.input.len(), ingress);
    for _ in 0..c.runs_before {
        let mut out = vec![0u8; c.input.len() + 256];
        prog.test_run(TestRunOptions {
            data_in: Some(&c.input),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..Default::default()
        })
        .map_err(|e| format!("test_run (before): {e}"))?;
    }
    // Counters are read after the warm-up runs: the deltas are the checked run's alone.
    let before: HashMap<Counter, u64> = dp
        .counters()
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    let mut out = vec![0u8; c.input.len() + 256];
    let res = prog
        .test_run(TestRunOptions {
            data_in: Some(&c.input),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..Default::default()
        })
        .map_err(|e| format!("test_run: {e}"))?;
    out.truncate(res.data_size_out as usize);

    // Verdict and exact bytes.
    let (want_rc, want_frame, mut want_counts) = match &c.expect {
        Expect::Pass(reason) => (XDP_PASS, &c.input, vec![Counter::VerdictPass, *reason]),
        Expect::Tx(f) => (XDP_TX, f, vec![Counter::VerdictTx]),
        Expect::Redirect(f) => (XDP_REDIRECT, f, vec![Counter::VerdictRedirect]),
        Expect::Drop(reason) => (XDP_DROP, &c.input, vec![Counter::VerdictDrop, *reason]),
    };
    if res.return_value != want_rc {
        return Err(format!("verdict {} want {want_rc}", res.return_value));
    }
    // A dropped frame's bytes do not matter; every other verdict's do.
    if !matches!(c.expect, Expect::Drop(_)) && &out != want_frame {
        return Err(format!(
            "output frame differs: {}",
            frames::diff(&out, want_frame)
        ));
    }

    // Global counters: exactly the expected ones went up by one; `fwd_bytes` (not a per-packet
    // counter) by the payload of a forwarded packet, 0 for a passed one.
    want_counts.extend(&c.also_counts);
    let want_fwd_bytes = match &c.expect {
        Expect::Pass(_) | Expect::Drop(_) => 0,
        Expect::Tx(f) | Expect::Redirect(f) => {
            c.fwd_bytes.unwrap_or_else(|| frames::udp_payload_len(f))
        }
    };
    let after = dp.counters().map_err(|e| e.to_string())?;
    let deltas: Vec<(Counter, u64)> = after
        .into_iter()
        .map(|(counter, v)| (counter, v - before[&counter]))
        .collect();
    for &(counter, delta) in &deltas {
        let want = match counter {
            Counter::FwdBytes => want_fwd_bytes,
            // Whether a case fills the cache depends on its warm-up runs; the next-hop
            // fixtures (`nexthop.rs`) count these exactly.
            Counter::NextHopFill | Counter::NextHopStale => continue,
            _ => want_counts.iter().filter(|&&w| w == counter).count() as u64,
        };
        if delta != want {
            return Err(format!(
                "counter {} went up by {delta}, want {want}",
                counter.name()
            ));
        }
    }
    // The documented invariants, on the measured deltas: one verdict per packet, and
    // verdict_pass = sum of pass reasons, verdict_drop = sum of drop reasons (fwd_bytes,
    // leg_slot_invalid, reflected and stun_answered are in no sum).
    let sum = |pick: fn(Counter) -> bool| -> u64 {
        deltas
            .iter()
            .filter(|(c, _)| pick(*c))
            .map(|(_, d)| d)
            .sum()
    };
    let delta_of = |which: Counter| {
        deltas
            .iter()
            .find(|(c, _)| *c == which)
            .map_or(0, |(_, d)| *d)
    };
    if sum(Counter::is_verdict) != 1
        || sum(Counter::is_pass_reason) != delta_of(Counter::VerdictPass)
        || sum(Counter::is_drop_reason) != delta_of(Counter::VerdictDrop)
    {
        return Err(format!("counter invariants broken: {deltas:?}"));
    }

    // Per-leg counters for forwarded packets.
    if let (Some((slot, bytes)), Some(b)) = (c.leg_stats, stats_before) {
        let a = dp.leg_stats(slot).map_err(|e| e.to_string())?;
        if a.packets != b.packets + 1 || a.bytes != b.bytes + bytes || a.last_seen_ns == 0 {
            return Err(format!(
                "leg slot {slot} stats {a:?} (before {b:?}), want +1 packet +{bytes} bytes"
            ));
        }
    }
    Ok(())
}
