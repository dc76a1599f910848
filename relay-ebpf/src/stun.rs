//! STUN Binding answered in XDP (docs/stun.md): a Binding request with no attribute, or only
//! FINGERPRINT, to the STUN port of one of our addresses gets its success response built in
//! place and sent back out (XDP_TX). Anything else on that port goes to the stack, for the
//! userspace server, with its own pass reason.
use aya_ebpf::{
    helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail, bpf_xdp_get_buff_len},
    programs::XdpContext,
};
use relay_common::{
    Counter, csum,
    stun::{FINGERPRINT_LEN, HEADER_LEN, MAX_RESPONSE_LEN, Request, binding_response, classify},
};

use crate::{
    egress::{Fwd, Kind, Out},
    parse::{ETH_HLEN, Frame, IPV4_HLEN, UDP_HLEN, VLAN_HLEN, headers_at, mut_at, ref_at},
};

const RESPONSE_TTL: u8 = 64;
const SHORT_RESPONSE_LEN: usize = MAX_RESPONSE_LEN - FINGERPRINT_LEN;

/// Make room for `grow` more bytes at the head when the tail has none (a veth's buffer for a
/// small frame ends right after it; XDP guarantees 256 bytes of headroom), moving the
/// Ethernet (+ 802.1Q), IPv4 and UDP headers to the new start. The message after them is
/// rewritten whole anyway. False leaves the frame as it was.
#[inline(always)]
fn grow_at_head(ctx: &XdpContext, l3: usize, grow: i32) -> bool {
    // An answer is at most 20 bytes longer than the shortest request.
    if grow <= 0 || grow > (MAX_RESPONSE_LEN - HEADER_LEN) as i32 {
        return false;
    }
    if l3 != ETH_HLEN && l3 != ETH_HLEN + VLAN_HLEN {
        return false;
    }
    // SAFETY: the helper checks the new head itself (no frame reference is in use here).
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -grow) } != 0 {
        return false;
    }
    let n = grow as usize;
    let moved = if l3 == ETH_HLEN {
        move_headers::<{ ETH_HLEN + IPV4_HLEN + UDP_HLEN }>(ctx, n)
    } else {
        move_headers::<{ ETH_HLEN + VLAN_HLEN + IPV4_HLEN + UDP_HLEN }>(ctx, n)
    };
    if !moved {
        // Cannot happen for a frame that held a whole request; undo rather than send junk.
        // SAFETY: as above; this undoes the move, which the helper just allowed.
        unsafe { bpf_xdp_adjust_head(ctx.ctx, grow) };
    }
    moved
}

/// Copy the `N` header bytes at offset `from` to offset 0 (through the stack: they overlap).
#[inline(always)]
fn move_headers<const N: usize>(ctx: &XdpContext, from: usize) -> bool {
    // SAFETY: byte arrays, bounds checked; read into a copy before the (overlapping) write
    // reference is taken, and no other reference into the frame is in use.
    let Ok(h) = (unsafe { ref_at::<[u8; N]>(ctx, from) }).copied() else {
        return false;
    };
    // SAFETY: as above.
    let Ok(dst) = (unsafe { mut_at::<[u8; N]>(ctx, 0) }) else {
        return false;
    };
    *dst = h;
    true
}

/// Answer a Binding request. `Err` is the pass reason.
#[inline(always)]
pub fn answer(ctx: &XdpContext, f: &Frame) -> Result<Fwd, Counter> {
    let len = f.payload_len as usize;
    let at = f.l3 + IPV4_HLEN + UDP_HLEN;
    // The first 28 bytes (zero-padded) are all `classify` needs.
    let mut head = [0u8; HEADER_LEN + FINGERPRINT_LEN];
    if len >= HEADER_LEN + FINGERPRINT_LEN {
        // SAFETY: bytes after the UDP header, copied out at once (no reference kept).
        let p: &[u8; HEADER_LEN + FINGERPRINT_LEN] =
            unsafe { ref_at(ctx, at) }.map_err(|_| Counter::PassStunMalformed)?;
        head = *p;
    } else if len >= HEADER_LEN {
        // SAFETY: as above.
        let p: &[u8; HEADER_LEN] =
            unsafe { ref_at(ctx, at) }.map_err(|_| Counter::PassStunMalformed)?;
        let h = *p;
        let mut i = 0;
        while i < HEADER_LEN {
            head[i] = h[i];
            i += 1;
        }
    }
    let fingerprint = match classify(&head, len) {
        Request::Plain => false,
        Request::WithFingerprint => true,
        Request::Unsupported => return Err(Counter::PassStunUnsupported),
        Request::Malformed => return Err(Counter::PassStunMalformed),
    };
    let (saddr, daddr, sport, dport) = (f.ip.saddr, f.ip.daddr, f.udp.source, f.udp.dest);
    let mut txid = [0u8; 12];
    let mut i = 0;
    while i < 12 {
        txid[i] = head[8 + i];
        i += 1;
    }
    let (resp, rlen) =
        binding_response(&txid, saddr.to_ne_bytes(), u16::from_be(sport), fingerprint);
    let udp_len = ((UDP_HLEN + rlen) as u16).to_be();
    let tot_len = ((IPV4_HLEN + UDP_HLEN + rlen) as u16).to_be();

    // UDP checksum over the whole response, from us (daddr:dport) back to the sender (the
    // buffer's unused tail is zero, so summing all of it is the same).
    let check = csum::udp4(daddr, saddr, dport, sport, udp_len, &resp);

    // First write: resize the frame to exactly the response (drops any trailer). On failure
    // the frame is untouched and the userspace server answers.
    let l3 = f.l3;
    let want = l3 + IPV4_HLEN + UDP_HLEN + rlen;
    // From the helper (5.18+), not data_end - data: LLVM folds that subtraction into
    // arithmetic on pkt_end, which the verifier refuses.
    // SAFETY: a helper reading the context XDP handed us.
    let have = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as usize;
    let grow = want as i32 - have as i32;
    // SAFETY: the helper checks the new tail itself; the headers of `f` are not used after
    // it (parse.rs contract: they are taken again below).
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, grow) } != 0 && !grow_at_head(ctx, l3, grow) {
        return Err(Counter::PassStunUnsupported);
    }
    // The frame is now exactly `want` bytes, so these checks (the verifier's) cannot fail.
    // SAFETY: l3 is 14 or 18, and the references of `f` are dead (see above).
    let (eth, ip, udp) = unsafe { headers_at(ctx, l3) }.map_err(|_| Counter::PassStunMalformed)?;
    // The message after the UDP header (no header reference covers it).
    if fingerprint {
        // SAFETY: a byte array, bounds checked, nothing else refers to it.
        let m: &mut [u8; MAX_RESPONSE_LEN] =
            unsafe { mut_at(ctx, at) }.map_err(|_| Counter::PassStunMalformed)?;
        *m = resp;
    } else {
        // SAFETY: as for the long one.
        let m: &mut [u8; SHORT_RESPONSE_LEN] =
            unsafe { mut_at(ctx, at) }.map_err(|_| Counter::PassStunMalformed)?;
        // The response's first bytes, read in place from the full buffer.
        let Some(short) = resp.first_chunk() else {
            return Err(Counter::PassStunMalformed);
        };
        *m = *short;
    }
    core::mem::swap(&mut eth.src, &mut eth.dst);
    ip.tot_len = tot_len;
    ip.ttl = RESPONSE_TTL;
    ip.saddr = daddr;
    ip.daddr = saddr;
    ip.check = 0;
    ip.check = csum::ipv4_header(ip.words());
    udp.source = dport;
    udp.dest = sport;
    udp.len = udp_len;
    udp.check = check;
    Ok(Fwd {
        out: Out::Tx,
        payload_len: 0,
        kind: Kind::Stun,
    })
}
