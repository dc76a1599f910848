//! rtpengine with its kernel fast path (xt_RTPENGINE, loaded by the guest's init): the
//! iptables rule that hands UDP to the module's table, the daemon with that table, N calls
//! offered and answered over ng, each stream primed until the module forwards it, and the
//! module's own per-target counters read from `/proc/rtpengine/<table>/list`.
use std::{
    collections::HashSet,
    fs,
    net::SocketAddrV4,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use relay_testbed::Netns;

use super::{Flavor, Incumbent};
use crate::{
    ng,
    rtpengine::Rtpengine,
    topo::{GEN_IP, RELAY_A, RELAY_B, SINK_IP, Topo},
    tput,
};

/// The module's table the daemon drives (`--table`, `-j RTPENGINE --id`).
pub const TABLE: u32 = 0;
const NG_PORT: u16 = 22_232;
/// Four ports per stream (RTP and RTCP on each side): 45000 ports hold 10k streams.
const PORTS: (u16, u16) = (20_000, 65_000);

/// `iptables-legacy -I INPUT -p udp -j RTPENGINE --id <table>` in a namespace, deleted on drop.
/// Legacy iptables because the module is an xtables target (nft's compat layer would also
/// work, but the legacy tool is what rtpengine's own packaging documents).
pub struct Rule<'a> {
    ns: &'a Netns,
    spec: Vec<String>,
}

impl<'a> Rule<'a> {
    pub fn add(ns: &'a Netns, table: u32) -> Result<Rule<'a>> {
        let spec: Vec<String> = [
            "INPUT",
            "-p",
            "udp",
            "-j",
            "RTPENGINE",
            "--id",
            &table.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut args = vec!["-w", "-I"];
        args.extend(spec.iter().map(String::as_str));
        ns.exec("iptables-legacy", &args)
            .context("iptables-legacy -j RTPENGINE (xt_RTPENGINE and rtpengine-iptables)")?;
        Ok(Rule { ns, spec })
    }
}

impl Drop for Rule<'_> {
    fn drop(&mut self) {
        let mut args = vec!["-w", "-D"];
        args.extend(self.spec.iter().map(String::as_str));
        let _ = self.ns.exec("iptables-legacy", &args);
    }
}

/// rtpengine 26.x's nftables chain, removed on drop (after the daemon was killed, which
/// leaves it): its `rtpengine` expression would otherwise keep taking the old calls' ports
/// from the stack, and our daemon, measured next, may be given one of them.
pub struct NftChain<'a> {
    ns: &'a Netns,
    bin: String,
}

impl Drop for NftChain<'_> {
    fn drop(&mut self) {
        let table = format!("--table={TABLE}");
        let _ = self.ns.exec(
            &self.bin,
            &[
                "--config-file=none",
                &table,
                "--nftables-family=ip",
                "--nftables-stop",
            ],
        );
    }
}

/// One forwarding target of the module's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub local: SocketAddrV4,
    /// False while the daemon has not filled every output ("outputs not fully filled"): the
    /// module then passes the stream's packets up to userspace.
    pub forwarding: bool,
    pub packets: u64,
    pub errors: u64,
    stats_seen: bool,
}

/// Parses `/proc/rtpengine/<id>/list`: a `local inet4 A:P` line per target, then indented
/// details including `stats: <n> bytes, <n> packets, <n> errors`.
pub fn parse_list(text: &str) -> Vec<Target> {
    let mut out: Vec<Target> = vec![];
    // Detail lines belong to the last `local` line, if that one was an IPv4 target.
    let mut current = false;
    for line in text.lines() {
        if let Some(addr) = line.strip_prefix("local ") {
            current = false;
            if let Some(Ok(local)) = addr.strip_prefix("inet4 ").map(|a| a.trim().parse()) {
                out.push(Target {
                    local,
                    forwarding: true,
                    packets: 0,
                    errors: 0,
                    stats_seen: false,
                });
                current = true;
            }
            continue;
        }
        let Some(t) = out.last_mut().filter(|_| current) else {
            continue;
        };
        let l = line.trim();
        if l.starts_with("outputs not fully filled") {
            t.forwarding = false;
        } else if let Some(rest) = l.strip_prefix("stats:").filter(|_| !t.stats_seen) {
            // The target's own line comes first; 26.x then lists each output's counters
            // with the same `stats:` (an RTCP output's zeros would overwrite the target's).
            t.stats_seen = true;
            // "<n> bytes, <n> packets, <n> errors"
            for part in rest.split(',') {
                let mut w = part.split_whitespace();
                if let (Some(n), Some(what)) = (w.next(), w.next()) {
                    let n = n.parse().unwrap_or(0);
                    match what {
                        "packets" => t.packets = n,
                        "errors" => t.errors = n,
                        _ => {}
                    }
                }
            }
        }
    }
    out
}

pub fn list(table: u32) -> Result<Vec<Target>> {
    let path = format!("/proc/rtpengine/{table}/list");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Ok(parse_list(&text))
}

/// rtpengine relaying `streams` calls through the module: what the measurements need.
pub struct Kernelized<'a> {
    pub rtpengine: Rtpengine,
    /// xt_RTPENGINE's iptables rule; none for nft_rtpengine, whose daemon adds its own.
    _rule: Option<Rule<'a>>,
    /// nft_rtpengine's chain, removed after the daemon (fields drop in order).
    _chain: Option<NftChain<'a>>,
    module: &'static str,
    /// (generator source port, rtpengine's port for the caller's media) per stream.
    pub flows: Vec<(u16, u16)>,
}

impl Kernelized<'_> {
    /// Packets the module forwarded so far on the measured streams' targets.
    pub fn forwarded(&self) -> Result<u64> {
        let ports: HashSet<u16> = self.flows.iter().map(|f| f.1).collect();
        Ok(list(TABLE)?
            .iter()
            .filter(|t| *t.local.ip() == RELAY_A && ports.contains(&t.local.port()))
            .map(|t| t.packets)
            .sum())
    }
}

/// Rule, daemon, `streams` calls, and priming until every stream's target forwards in the
/// kernel and has forwarded a primed packet.
pub fn start<'a>(
    t: &'a Topo,
    streams: u32,
    inc: &Incumbent,
    log: fn(&str),
) -> Result<Kernelized<'a>> {
    let module = inc.flavor.module();
    ensure!(
        fs::metadata("/proc/rtpengine/control").is_ok(),
        "{module} is not loaded (/proc/rtpengine/control missing)"
    );
    let (rule, extra): (_, &[&str]) = match inc.flavor {
        Flavor::Xt => (Some(Rule::add(&t.relay, TABLE)?), &[]),
        // 26.x adds table `filter`, base chain INPUT (hook input) jumping to its chain
        // rtpengine_<table> with the `rtpengine` expression, and refuses to start without
        // them (--no-fallback). IPv4 only, like the streams.
        Flavor::Nft => (None, &["--nftables-family=ip"]),
    };
    let rtpengine = Rtpengine::start_bin(
        &inc.bin,
        extra,
        &t.relay,
        &RELAY_A.to_string(),
        &RELAY_B.to_string(),
        NG_PORT,
        PORTS,
        Some(TABLE),
    )?;
    let t0 = Instant::now();
    let flows = t.relay.run(|| -> Result<Vec<(u16, u16)>> {
        let mut c = ng::Client::new(([127, 0, 0, 1], NG_PORT).into())?;
        let mut flows = vec![];
        for i in 0..streams {
            let from = SocketAddrV4::new(GEN_IP, 10_000 + i as u16);
            let to = SocketAddrV4::new(SINK_IP, 20_000 + i as u16);
            let (for_from, _) =
                c.offer_answer(&format!("kmod-{i}"), from, to, Some(("pub", "priv")))?;
            ensure!(
                *for_from.ip() == RELAY_A,
                "rtpengine offered {for_from} to the caller"
            );
            flows.push((from.port(), for_from.port()));
        }
        Ok(flows)
    })??;
    log(&format!(
        "kmod: {streams} calls offered+answered in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    let k = Kernelized {
        rtpengine,
        _rule: rule,
        _chain: (inc.flavor == Flavor::Nft).then(|| NftChain {
            ns: &t.relay,
            bin: inc.bin.clone(),
        }),
        module,
        flows,
    };
    prime(t, &k, streams)?;
    log(&format!(
        "kmod: {streams} streams forwarding in the module after {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    Ok(k)
}

/// Sends a few RTP packets per stream (the same SSRC the load carries), re-sending to the
/// streams whose target is missing, incomplete or has not forwarded yet.
fn prime(t: &Topo, k: &Kernelized<'_>, streams: u32) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30 + u64::from(streams) / 50);
    let mut waiting = k.flows.clone();
    loop {
        tput::latch(t, &waiting, 2)?;
        std::thread::sleep(Duration::from_millis(500));
        let ready: HashSet<u16> = list(TABLE)?
            .iter()
            .filter(|t| *t.local.ip() == RELAY_A && t.forwarding && t.packets > 0)
            .map(|t| t.local.port())
            .collect();
        waiting.retain(|f| !ready.contains(&f.1));
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} of {streams} streams not forwarding in {} in time (first: {:?}); the module's list (head):\n{}\nrtpengine log:\n{}",
                waiting.len(),
                k.module,
                waiting.first(),
                fs::read_to_string(format!("/proc/rtpengine/{TABLE}/list"))
                    .unwrap_or_else(|e| format!("({e})"))
                    .lines()
                    .take(40)
                    .collect::<Vec<_>>()
                    .join("\n"),
                k.rtpengine.log()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_modules_list() {
        let text = "local inet4 198.18.10.1:20000\n    expect inet4 198.18.10.2:10000\n    stats:                  1720 bytes,                   10 packets,                    0 errors\n        RTP payload type   0:                  1720 bytes,                   10 packets\n    SSRC in: 1\n    output #0\n        src inet4 198.18.20.1:20002\n        dst inet4 198.18.20.2:20000\nlocal inet4 198.18.10.1:20001\n    outputs not fully filled (1 missing)\nlocal inet6 [2001:db8::1]:5\n    stats: 9 bytes, 9 packets, 9 errors\n";
        let l = parse_list(text);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].local, "198.18.10.1:20000".parse().unwrap());
        assert!(l[0].forwarding);
        assert_eq!((l[0].packets, l[0].errors), (10, 0));
        assert!(!l[1].forwarding);
        assert_eq!(l[1].packets, 0);
        assert!(parse_list("garbage\nlocal inet4 nonsense\n").is_empty());
    }

    #[test]
    fn parses_26s_list_with_output_counters() {
        // nft_rtpengine 26.3: each output has its own `stats:` line after the target's.
        let text = "local inet4 198.18.10.1:60212\n    stats:                 1440 bytes,                  120 packets,                    0 errors\n        RTP payload type   0:                 1440 bytes,                  120 packets   [group #0]\n    last packet: 1796517286\n    SSRC in: 1 [seq 1/0]\n    options: RTP SSRC-tracking forward-RTCP\n    output groups: [0]=(0->1/1->2)\n    output #0 (media #0)\n       src inet4 198.18.20.1:39494\n       dst inet4 198.18.20.2:20000\n       stats:                 1440 bytes,                  120 packets,                    0 errors\n       SSRC out: 0 [seq 1+0/0]\n    output #1 (media #0, RTCP)\n       src inet4 198.18.20.1:39495\n       dst inet4 198.18.20.2:20001\n       stats:                    0 bytes,                    0 packets,                    0 errors\n";
        let l = parse_list(text);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].local, "198.18.10.1:60212".parse().unwrap());
        assert!(l[0].forwarding);
        assert_eq!((l[0].packets, l[0].errors), (120, 0));
    }
}
