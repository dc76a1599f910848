//! The adversarial half of the table: random and mutated frames against random leg tables,
//! through the same verified program, with invariants instead of expected bytes:
//!
//! - a passed frame comes back byte for byte;
//! - only the reflector drops, and only frames to its port on our own addresses;
//! - nothing is forwarded unless its (destination, source) matches a latched leg (or, on a
//!   shared port, a latched channel), or it is a STUN Binding answer to its own sender; no
//!   forged reflector ticket gets through;
//! - a forwarded frame carries the leg's new addresses and ports, one TTL less, the same
//!   payload, and IPv4 and UDP checksums that verify with etherparse (independent of our
//!   arithmetic);
//! - the counters add up: one verdict per frame, pass and drop reasons sum to their verdicts.
//!
//! The TURN port is the STUN port here, with a few random Strip channels bound: ChannelData
//! -shaped frames to it (some well-formed, most damaged) come back untouched unless their
//! (server, client, channel) has an entry, and then leave with the entry's addresses, the
//! data alone, one TTL less and checksums exactly as valid as they came.
//!
//! Frames are built from a small pool of addresses and ports so that many hit a leg, then
//! mutated (byte flips, truncation, trailing bytes) so the parser sees every kind of damage.
//! Deterministic: a fixed seed per table, so a failure names a reproducible case.
use std::collections::HashMap;

use aya::programs::{TestRun, TestRunOptions, Xdp};
use etherparse::{Ipv4Header, UdpHeader};
use relay_common::{
    Counter, Endpoint, LegKey, LegValue,
    leg::{Direction, shared_port_flag},
    turn::{ChannelKey, TurnAction, TurnValue},
};
use relay_ctl::dataplane::{DataPlane, TurnMaps};
use relay_testbed::frames::Udp4;

use crate::{
    XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX,
    cases::*,
    reflect_cases::{OWN, REFLECT_PORT, STUN_PORT},
    xdp_md,
};

const TABLES: u64 = 12;
const FRAMES_PER_TABLE: usize = 400;
/// Relay ports the tables use (a few, so random frames hit them).
const PORTS: [u16; 4] = [30000, 30002, 30004, 30006];
/// Sources: the hosts the FIB knows plus one it has no route to.
const HOSTS: [[u8; 4]; 5] = [CALLER, TX_PEER, CALLEE, FX2_HOST, NO_ROUTE_HOST];
const SRC_PORTS: [u16; 3] = [5004, 5005, 6004];
/// Channel numbers the TURN entries and ChannelData-shaped frames use.
const CHANNELS: [u16; 2] = [0x4000, 0x4001];

/// splitmix64: a small deterministic generator, so a failing table and frame index is
/// enough to reproduce a case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..hi` (hi > lo).
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo) as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
}

fn pick<T: Copy>(rng: &mut Rng, xs: &[T]) -> T {
    xs[rng.range(0, xs.len())]
}

fn ep(a: [u8; 4], p: u16) -> Endpoint {
    Endpoint::v4(a, p)
}

/// A random leg table: per relay port, a plain leg (latched or not) or a shared port with
/// one or two latched channels.
fn random_legs(rng: &mut Rng) -> Vec<(LegKey, LegValue)> {
    let mut legs = vec![];
    let mut slot = 1;
    let mut dir = |rng: &mut Rng, relay: Endpoint, latched: Endpoint| {
        slot += 1;
        Direction {
            relay,
            latched,
            new_src: ep(pick(rng, &[RELAY_A, RELAY_B]), pick(rng, &PORTS)),
            new_dst: ep(pick(rng, &HOSTS), pick(rng, &SRC_PORTS)),
            slot,
        }
    };
    for port in PORTS {
        let relay = ep(pick(rng, &[RELAY_A, RELAY_B]), port);
        match rng.range(0, 4) {
            0 => legs.push(dir(rng, relay, Endpoint::NONE).port_leg()),
            1 | 2 => {
                let src = ep(pick(rng, &HOSTS), pick(rng, &SRC_PORTS));
                legs.push(dir(rng, relay, src).port_leg());
            }
            _ => {
                for _ in 0..rng.range(1, 3) {
                    let src = ep(pick(rng, &HOSTS), pick(rng, &SRC_PORTS));
                    legs.push(dir(rng, relay, src).channel_leg());
                }
                legs.push(shared_port_flag(relay));
            }
        }
    }
    legs
}

/// Random Strip channels on the TURN (= STUN) port of relay A or B, from the pool's sources.
fn random_channels(rng: &mut Rng) -> Vec<(ChannelKey, TurnValue)> {
    (0..rng.range(8, 17))
        .map(|i| {
            (
                ChannelKey {
                    server: ep(pick(rng, &[RELAY_A, RELAY_B]), STUN_PORT),
                    client: ep(
                        pick(rng, &HOSTS),
                        if rng.range(0, 4) != 0 {
                            SRC_PORTS[0]
                        } else {
                            pick(rng, &SRC_PORTS)
                        },
                    ),
                    channel_be: pick(rng, &CHANNELS).to_be(),
                    _pad: 0,
                },
                TurnValue {
                    new_src: ep(pick(rng, &[RELAY_A, RELAY_B]), pick(rng, &PORTS)),
                    new_dst: ep(pick(rng, &HOSTS), pick(rng, &SRC_PORTS)),
                    expires_ns: u64::MAX,
                    slot: 20 + i as u32,
                    channel_be: 0,
                    action: TurnAction::Strip as u16,
                },
            )
        })
        .collect()
}

/// A frame from the pool, then damaged (or not).
fn random_frame(rng: &mut Rng) -> Vec<u8> {
    let dst_ip = pick(rng, &[RELAY_A, RELAY_B, RELAY_C, CALLEE]);
    let dport = match rng.range(0, 6) {
        0 => REFLECT_PORT,
        1 => STUN_PORT,
        _ => pick(rng, &PORTS),
    };
    let mut f = Udp4::new(
        (pick(rng, &HOSTS), pick(rng, &SRC_PORTS)),
        (dst_ip, dport),
        CALLER_MAC,
        FX0_MAC,
    );
    f.ttl = pick(rng, &[64, 2, 1, 0]);
    f.zero_udp_csum = rng.range(0, 8) == 0;
    if rng.range(0, 10) == 0 {
        f.vlan = Some(rng.range(1, 4095) as u16);
    }
    let len = rng.range(0, 300);
    f.payload = rng.bytes(len);
    let stun_kind = rng.range(0, 4);
    if dport == STUN_PORT && stun_kind == 0 {
        // A STUN Binding request head so the STUN path, not just its refusals, is reached.
        let mut stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        stun.extend(rng.bytes(12));
        f.payload = stun;
    } else if dport == STUN_PORT && stun_kind >= 2 {
        // ChannelData-shaped (the TURN port is the STUN port here): a channel number and a
        // length field near the payload's, so the TURN path's length checks are reached. No
        // channel is bound: none of it may be forwarded.
        let data = rng.range(0, 64);
        // Mostly to a TURN server and channel the entries use, so some hit one.
        f.dst = pick(rng, &[RELAY_A, RELAY_B]);
        if rng.range(0, 4) != 0 {
            f.sport = SRC_PORTS[0];
            f.ttl = 64;
        }
        let mut m = if rng.range(0, 4) != 0 {
            pick(rng, &CHANNELS).to_be_bytes().to_vec()
        } else {
            vec![0x40 | (rng.byte() & 0x0f), rng.byte()]
        };
        let claimed = (data + rng.range(0, 6)).saturating_sub(2) as u16;
        m.extend_from_slice(&claimed.to_be_bytes());
        m.extend(rng.bytes(data));
        f.payload = m;
    }
    let mut bytes = match f.try_bytes() {
        Ok(b) => b,
        Err(_) => return vec![0; 14],
    };
    match rng.range(0, 5) {
        0 => {}
        1 => {
            for _ in 0..rng.range(1, 4) {
                let i = rng.range(0, bytes.len());
                bytes[i] = rng.byte();
            }
        }
        2 => bytes.truncate(rng.range(0, bytes.len())),
        3 => {
            let n = rng.range(1, 40);
            bytes.extend(rng.bytes(n));
        }
        _ => {
            let n = rng.range(0, 200);
            bytes = rng.bytes(n);
        }
    }
    bytes
}

/// What XDP's parser sees of a frame (Ethernet, one optional VLAN tag, IPv4, the UDP
/// header's bytes), read loosely: the UDP length field is not trusted, the IP total length is.
#[derive(Clone)]
struct Seen<'a> {
    ip: Ipv4Header,
    /// The IPv4 header's bytes as sent (etherparse's struct drops the reserved flag bit).
    ip_raw: &'a [u8],
    udp: UdpHeader,
    /// UDP payload by the IP total length.
    payload: &'a [u8],
}

fn seen(frame: &[u8]) -> Option<Seen<'_>> {
    let l3 = match frame.get(12..14)? {
        [0x08, 0x00] => 14,
        [0x81, 0x00] if frame.get(16..18)? == [0x08, 0x00] => 18,
        _ => return None,
    };
    let (ip, _) = Ipv4Header::from_slice(frame.get(l3..)?).ok()?;
    if ip.protocol != etherparse::IpNumber::UDP || ip.is_fragmenting_payload() {
        return None;
    }
    let l4 = l3 + ip.header_len();
    let end = l3 + usize::from(ip.total_len);
    let (udp, payload) = UdpHeader::from_slice(frame.get(l4..end)?).ok()?;
    let ip_raw = frame.get(l3..l4)?;
    Some(Seen {
        ip,
        ip_raw,
        udp,
        payload,
    })
}

/// Whether the frame's IPv4 and UDP checksums verify with etherparse (independent of our
/// arithmetic); a zero UDP checksum means none (RFC 768).
fn checksums(s: &Seen) -> (bool, bool) {
    // Over the raw bytes: a valid header sums to 0xffff, checksum included.
    let sum = s
        .ip_raw
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum::<u32>();
    let folded = (sum & 0xffff) + (sum >> 16);
    let ip_ok = (folded & 0xffff) + (folded >> 16) == 0xffff;
    let udp_ok = s.udp.checksum == 0
        || s.udp
            .calc_checksum_ipv4(&s.ip, s.payload)
            .is_ok_and(|c| c == s.udp.checksum);
    (ip_ok, udp_ok)
}

/// The leg value a frame from `src` to `dst` may be forwarded by, if any.
fn matching_leg(legs: &[(LegKey, LegValue)], dst: Endpoint, src: Endpoint) -> Option<LegValue> {
    let port = legs.iter().find(|(k, _)| *k == LegKey::port(dst))?.1;
    let leg = if port.flags & relay_common::leg::LEG_F_SHARED != 0 {
        legs.iter()
            .find(|(k, _)| *k == LegKey::channel(dst, src))?
            .1
    } else {
        port
    };
    (leg.latched == src).then_some(leg)
}

/// Check one verdict against the invariants.
fn check(
    legs: &[(LegKey, LegValue)],
    channels: &[(ChannelKey, TurnValue)],
    input: &[u8],
    rc: u32,
    out: &[u8],
) -> Result<(), String> {
    let parsed = seen(input);
    let own_port = |port: u16| {
        parsed
            .as_ref()
            .is_some_and(|s| s.udp.destination_port == port && OWN.contains(&s.ip.destination))
    };
    match rc {
        XDP_PASS if out == input => Ok(()),
        XDP_PASS => Err("a passed frame was changed".into()),
        XDP_DROP if own_port(REFLECT_PORT) => Ok(()),
        XDP_DROP => Err("dropped, but not a reflector packet".into()),
        XDP_TX | XDP_REDIRECT => {
            let inp = parsed
                .clone()
                .ok_or("forwarded a frame that is not IPv4/UDP")?;
            if own_port(REFLECT_PORT) {
                return Err("a forged reflector ticket was forwarded".into());
            }
            let got = seen(out).ok_or("the output is not IPv4/UDP")?;
            if own_port(STUN_PORT) && inp.payload.first().is_some_and(|b| b & 0xc0 == 0x40) {
                return check_strip(channels, &inp, &got);
            }
            if own_port(STUN_PORT) {
                // A Binding answer, built from scratch: back to its sender, checksums good.
                if (got.ip.destination, got.udp.destination_port)
                    != (inp.ip.source, inp.udp.source_port)
                {
                    return Err("a STUN answer went somewhere else".into());
                }
                if checksums(&got) != (true, true) {
                    return Err("a STUN answer's checksums do not verify".into());
                }
                return Ok(());
            }
            let src_in = ep(inp.ip.source, inp.udp.source_port);
            let dst_in = ep(inp.ip.destination, inp.udp.destination_port);
            let leg = matching_leg(legs, dst_in, src_in)
                .ok_or("forwarded without a latched leg for its source")?;
            let got_src = ep(got.ip.source, got.udp.source_port);
            let got_dst = ep(got.ip.destination, got.udp.destination_port);
            if got_src != leg.new_src || got_dst != leg.new_dst {
                return Err(format!(
                    "rewritten to {got_src:?} -> {got_dst:?}, leg says {:?} -> {:?}",
                    leg.new_src, leg.new_dst
                ));
            }
            if got.ip.time_to_live + 1 != inp.ip.time_to_live {
                return Err(format!(
                    "TTL {} after {}",
                    got.ip.time_to_live, inp.ip.time_to_live
                ));
            }
            if got.payload != inp.payload || got.udp.length != inp.udp.length {
                return Err("the payload or UDP length changed".into());
            }
            // Incremental updates keep a checksum exactly as valid as it came in: a good
            // frame leaves good, a damaged one is not laundered; a zero UDP checksum stays 0.
            if checksums(&got) != checksums(&inp) {
                return Err(format!(
                    "checksums verify {:?} after {:?}",
                    checksums(&got),
                    checksums(&inp)
                ));
            }
            if (inp.udp.checksum == 0) != (got.udp.checksum == 0) {
                return Err("a zero UDP checksum did not stay zero (or became zero)".into());
            }
            Ok(())
        }
        other => Err(format!("verdict {other}")),
    }
}

/// A forwarded ChannelData frame: its channel entry's rewrite, the data alone.
fn check_strip(channels: &[(ChannelKey, TurnValue)], inp: &Seen, got: &Seen) -> Result<(), String> {
    let p = inp.payload;
    let (channel, len) = match p {
        [a, b, c, d, ..] => (
            u16::from_be_bytes([*a, *b]),
            usize::from(u16::from_be_bytes([*c, *d])),
        ),
        _ => return Err("forwarded ChannelData shorter than its header".into()),
    };
    let key = ChannelKey {
        server: ep(inp.ip.destination, inp.udp.destination_port),
        client: ep(inp.ip.source, inp.udp.source_port),
        channel_be: channel.to_be(),
        _pad: 0,
    };
    // The last entry of a key is the one in the map (a random table may repeat a key).
    let v = channels
        .iter()
        .rev()
        .find(|(k, _)| *k == key)
        .ok_or("forwarded ChannelData without a channel entry")?
        .1;
    let got_src = ep(got.ip.source, got.udp.source_port);
    let got_dst = ep(got.ip.destination, got.udp.destination_port);
    if got_src != v.new_src || got_dst != v.new_dst {
        return Err(format!(
            "ChannelData rewritten to {got_src:?} -> {got_dst:?}"
        ));
    }
    if got.ip.time_to_live + 1 != inp.ip.time_to_live {
        return Err("ChannelData TTL not decremented by one".into());
    }
    if p.len() < 4 + len || p.len() - 4 - len > 3 {
        return Err(format!(
            "forwarded ChannelData of length {len} in {} bytes",
            p.len()
        ));
    }
    if got.payload != &p[4..4 + len] || usize::from(got.udp.length) != 8 + len {
        return Err("the stripped payload or its UDP length is wrong".into());
    }
    if checksums(got) != checksums(inp) {
        return Err(format!(
            "stripped checksums verify {:?} after {:?}",
            checksums(got),
            checksums(inp)
        ));
    }
    if (inp.udp.checksum == 0) != (got.udp.checksum == 0) {
        return Err("a zero UDP checksum did not stay zero (or became zero)".into());
    }
    Ok(())
}

pub fn run(
    prog: &Xdp,
    dp: &mut DataPlane,
    turn: &mut TurnMaps,
    ingress: u32,
) -> Result<usize, String> {
    let mut frames = 0;
    let mut forwarded = 0;
    let before: HashMap<Counter, u64> = dp
        .counters()
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    for table in 0..TABLES {
        // A fixed seed per table: a failure is reproducible from its table and frame index.
        let mut rng = Rng(table.wrapping_mul(0x1234_5678_9abc_def1));
        for (k, _) in dp.legs().map_err(|e| e.to_string())? {
            dp.remove_leg(&k).map_err(|e| e.to_string())?;
        }
        let legs = random_legs(&mut rng);
        for (k, v) in &legs {
            dp.install_leg(k, v)
                .map_err(|e| format!("install: {e:#}"))?;
        }
        // Their own generator, so the leg tables stay what they were before TURN.
        let channels = random_channels(&mut Rng(table ^ 0x7475_726e));
        crate::turn_cases::clear(turn)?;
        for (k, v) in &channels {
            turn.set_channel(k, v)
                .map_err(|e| format!("install: {e}"))?;
        }
        for i in 0..FRAMES_PER_TABLE {
            let input = random_frame(&mut rng);
            if input.len() < 14 {
                // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header.
                continue;
            }
            let ctx = xdp_md(input.len(), ingress);
            let mut out = vec![0u8; input.len() + 256];
            let res = prog
                .test_run(TestRunOptions {
                    data_in: Some(&input),
                    data_out: Some(&mut out),
                    ctx_in: Some(&ctx),
                    ..Default::default()
                })
                .map_err(|e| format!("table {table} frame {i}: test_run: {e}"))?;
            out.truncate(res.data_size_out as usize);
            check(&legs, &channels, &input, res.return_value, &out).map_err(|e| {
                format!(
                    "table {table} frame {i}: {e}\n  legs {legs:?}\n  input {input:02x?}\n  \
                     output {out:02x?}"
                )
            })?;
            frames += 1;
            if matches!(res.return_value, XDP_TX | XDP_REDIRECT) {
                forwarded += 1;
            }
        }
    }
    // The counters add up over the whole run.
    let after = dp.counters().map_err(|e| e.to_string())?;
    let delta = |pick: &dyn Fn(Counter) -> bool| -> u64 {
        after
            .iter()
            .filter(|(c, _)| pick(*c))
            .map(|(c, v)| v - before[c])
            .sum()
    };
    let of = |which: Counter| delta(&|c| c == which);
    let verdicts = delta(&Counter::is_verdict);
    if verdicts != frames as u64 {
        return Err(format!("{verdicts} verdicts counted for {frames} frames"));
    }
    if delta(&Counter::is_pass_reason) != of(Counter::VerdictPass)
        || delta(&Counter::is_drop_reason) != of(Counter::VerdictDrop)
    {
        return Err("pass or drop reasons do not add up to their verdicts".into());
    }
    if of(Counter::VerdictTx) + of(Counter::VerdictRedirect) != forwarded {
        return Err("forwarded frames and tx/redirect verdicts differ".into());
    }
    let refused = of(Counter::PassTurnUnknownChannel) + of(Counter::PassTurnBadLength);
    let stripped = of(Counter::TurnChannelToPeer);
    eprintln!(
        "adversarial: {frames} frames over {TABLES} leg tables, {forwarded} forwarded \
         ({stripped} ChannelData stripped), {refused} refused by the TURN path"
    );
    if refused == 0 || stripped == 0 {
        return Err("the generator no longer reaches both sides of the TURN path".into());
    }
    if forwarded == 0 {
        return Err(
            "no frame was forwarded: the generator no longer reaches the relay path".into(),
        );
    }
    Ok(frames)
}
