//! The next-hop cache through BPF_PROG_TEST_RUN, in order, on the fixture namespace (it
//! changes neighbours, routes and links, so it runs last): miss then fill, hit, a neighbour
//! whose MAC changed (the cache keeps answering the old MAC until the generation is bumped:
//! that is the cache at work, and why the controller bumps), a stale generation, a route to
//! an interface the relay is not attached to (cached as such), then attached, the entry's age and length guards, the cache turned off, and a link
//! removed. Each step checks the verdict, the exact output frame and the cache's counters.
use std::collections::HashMap;

use aya::programs::{TestRun, TestRunOptions, Xdp};
use relay_common::{
    Counter,
    nexthop::{NEXTHOP_MAX_AGE_NS, NextHopKey},
};
use relay_ctl::{
    dataplane::{DataPlane, EgressMap, NextHops},
    netlink::ifindex,
};
use relay_testbed::Netns;

use crate::{XDP_PASS, XDP_REDIRECT, cases::*, xdp_md};

const NEW_CALLEE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xb2, 0x99];

struct Step<'a> {
    name: &'a str,
    input: Vec<u8>,
    /// Verdict and output frame (a passed frame must come out as it went in).
    verdict: u32,
    output: Vec<u8>,
    fill: u64,
    stale: u64,
}

fn run_step(prog: &Xdp, dp: &DataPlane, ingress: u32, s: &Step) -> Result<(), String> {
    let before: HashMap<Counter, u64> = dp
        .counters()
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    let mut out = vec![0u8; s.input.len() + 256];
    let ctx = xdp_md(s.input.len(), ingress);
    let res = prog
        .test_run(TestRunOptions {
            data_in: Some(&s.input),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..Default::default()
        })
        .map_err(|e| format!("[{}] test_run: {e}", s.name))?;
    out.truncate(res.data_size_out as usize);
    if res.return_value != s.verdict {
        return Err(format!(
            "[{}] verdict {} want {}",
            s.name, res.return_value, s.verdict
        ));
    }
    if out != s.output {
        return Err(format!(
            "[{}] output differs: {}",
            s.name,
            relay_testbed::frames::diff(&out, &s.output)
        ));
    }
    let after: HashMap<Counter, u64> = dp
        .counters()
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    let d = |c: Counter| after[&c] - before[&c];
    if (d(Counter::NextHopFill), d(Counter::NextHopStale)) != (s.fill, s.stale) {
        return Err(format!(
            "[{}] nexthop_fill +{} nexthop_stale +{}, want +{} +{}",
            s.name,
            d(Counter::NextHopFill),
            d(Counter::NextHopStale),
            s.fill,
            s.stale
        ));
    }
    Ok(())
}

/// CLOCK_MONOTONIC_COARSE, the clock the program stamps entries with.
fn coarse_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn the_entry(nh: &NextHops) -> Result<(NextHopKey, relay_common::nexthop::NextHopValue), String> {
    let e = nh.entries();
    match e.as_slice() {
        [one] => Ok(*one),
        _ => Err(format!("{} cache entries, want 1", e.len())),
    }
}

pub fn run(
    prog: &Xdp,
    dp: &mut DataPlane,
    egress: &mut EgressMap,
    nh: &mut NextHops,
    ns: &Netns,
) -> Result<usize, String> {
    let e = |r: anyhow::Result<()>| r.map_err(|e| format!("{e:#}"));
    for (k, _) in dp.legs().map_err(|e| e.to_string())? {
        dp.remove_leg(&k).map_err(|e| e.to_string())?;
    }
    let (k, v) = leg_redirect();
    e(dp.install_leg(&k, &v))?;
    e(nh.clear())?;
    e(nh.set_enabled(true))?;
    let fx0 = ifindex("fx0").map_err(|e| e.to_string())?;
    let input = from_caller(30000);
    let frame = input.bytes();
    let via = |smac, dmac| relayed(&input, smac, dmac, (RELAY_B, 30002), (CALLEE, 6004));
    let old = via(FX1_MAC, CALLEE_MAC);
    let new = via(FX1_MAC, NEW_CALLEE_MAC);
    let step = |name, verdict, output: &Vec<u8>, fill, stale| Step {
        name,
        input: frame.clone(),
        verdict,
        output: output.clone(),
        fill,
        stale,
    };
    let mut steps = 0;
    let mut go = |s: Step| {
        steps += 1;
        run_step(prog, dp, fx0, &s)
    };

    go(step("miss, then fill", XDP_REDIRECT, &old, 1, 0))?;
    let (_, entry) = the_entry(nh)?;
    let fx1 = ifindex("fx1").map_err(|e| e.to_string())?;
    if (entry.ifindex, entry.smac, entry.dmac) != (fx1, FX1_MAC, CALLEE_MAC) {
        return Err(format!("[fill] entry {entry:?}"));
    }
    go(step("hit", XDP_REDIRECT, &old, 0, 0))?;

    // The neighbour's MAC changes. Until the generation moves the cache answers (the FIB
    // would say the new MAC): this is what the controller's watcher exists for.
    let callee = std::net::IpAddr::from(CALLEE);
    e(ns.neigh_permanent(callee, NEW_CALLEE_MAC, "fx1"))?;
    go(step(
        "neighbour changed, no event yet: cached",
        XDP_REDIRECT,
        &old,
        0,
        0,
    ))?;
    e(nh.bump().map(|_| ()))?;
    go(step(
        "neighbour changed, generation bumped: new MAC",
        XDP_REDIRECT,
        &new,
        1,
        1,
    ))?;
    go(step("hit after refill", XDP_REDIRECT, &new, 0, 0))?;

    // A more specific route through fx2's host: the next hop moves to another interface,
    // one the relay is not attached to yet (not in the egress devmap): passed, and that too
    // is cached (a hit needs no devmap lookup).
    e(ns.ip(&[
        "route",
        "add",
        &format!("{}/32", std::net::Ipv4Addr::from(CALLEE)),
        "via",
        &std::net::Ipv4Addr::from(FX2_HOST).to_string(),
        "dev",
        "fx2",
    ]))?;
    e(nh.bump().map(|_| ()))?;
    go(step(
        "route to an interface the relay is not on",
        XDP_PASS,
        &frame,
        1,
        1,
    ))?;
    go(step("not attached, from the cache", XDP_PASS, &frame, 0, 0))?;
    // The relay attaches there (the controller's attach is followed by a bump).
    e(egress.add(ifindex("fx2").map_err(|e| e.to_string())?))?;
    e(nh.bump().map(|_| ()))?;
    let via_fx2 = via(FX2_MAC, FX2_HOST_MAC);
    go(step(
        "route to another interface",
        XDP_REDIRECT,
        &via_fx2,
        1,
        1,
    ))?;

    // Age: an entry older than the bound is looked up again even in its generation.
    let (key, mut value) = the_entry(nh)?;
    // Wrapping, not saturating: a guest booted seconds ago has a clock below the age,
    // and the program compares with wrapping arithmetic too.
    value.filled_ns = coarse_now_ns().wrapping_sub(NEXTHOP_MAX_AGE_NS + 1_000_000_000);
    value.dmac = [0x02, 0, 0, 0, 0xde, 0xad];
    e(nh.put(&key, &value))?;
    go(step("entry too old", XDP_REDIRECT, &via_fx2, 1, 1))?;

    // Length: the FIB checked a shorter packet against the MTU; a longer one asks again.
    let (key, mut value) = the_entry(nh)?;
    value.max_len = 40;
    value.dmac = [0x02, 0, 0, 0, 0xde, 0xad];
    e(nh.put(&key, &value))?;
    go(step(
        "packet longer than the entry allows",
        XDP_REDIRECT,
        &via_fx2,
        1,
        1,
    ))?;

    // Off: every packet asks the FIB, nothing is filled or used.
    e(nh.set_enabled(false))?;
    go(step("cache off", XDP_REDIRECT, &via_fx2, 0, 1))?;
    e(nh.set_enabled(true))?;

    // The link goes away (its routes with it): back to the connected route on fx1.
    e(ns.ip(&["link", "del", "fx2"]))?;
    e(nh.bump().map(|_| ()))?;
    go(step("link removed", XDP_REDIRECT, &new, 1, 1))?;

    // And a destination with no neighbour at all: passed, nothing cached.
    e(ns.ip(&["neigh", "del", &callee.to_string(), "dev", "fx1"]))?;
    e(nh.bump().map(|_| ()))?;
    go(step("neighbour gone", XDP_PASS, &frame, 0, 1))?;
    Ok(steps)
}
