//! The controller's receive path: every packet XDP passes up on a relay port is steered to the
//! one receive socket of its relay address (`dataplane/steer.rs`) and lands here, with the
//! port it was sent to. It latches (per the session's policy), updates the kernel legs when a
//! latch changes, and forwards the packet itself from the other side's relay port, so nothing
//! is lost before XDP takes over.
use std::{net::SocketAddr, sync::Weak, time::Duration};

use tokio::{io::Interest, net::UdpSocket};

use super::{Controller, Inner, kernel, latch::Decision, model::SIDE_NAMES};
use crate::{
    clock::now_ns,
    events::Event,
    udp::{self, Received},
};

thread_local! {
    /// One receive buffer per runtime thread: a packet is copied out at its own length.
    static RX: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 65_536]);
}

/// The next datagram on `sock`, with where it was sent to.
async fn recv(sock: &UdpSocket) -> std::io::Result<(Vec<u8>, Received)> {
    sock.async_io(Interest::READABLE, || {
        RX.with(|b| {
            let mut b = b.borrow_mut();
            udp::recv_with_dst(sock, &mut b).map(|r| (b[..r.len].to_vec(), r))
        })
    })
    .await
}

pub(super) async fn serve_socket(ctl: Weak<Controller>, sock: UdpSocket) {
    let local = sock.local_addr().ok();
    loop {
        let (pkt, got) = match recv(&sock).await {
            Ok(r) => r,
            Err(e) => {
                log::debug!("receive socket {local:?}: {e}");
                // Errors here are transient (ICMP feedback, memory); do not spin on them.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Some(ctl) = ctl.upgrade() else { return };
        let Some(relay) = got.dst else {
            ctl.lock().count(Event::UserDropUnknownPort);
            continue;
        };
        // A TURN relayed address (no session owns it): the TURN server relays it.
        if let Some(sink) = ctl.relayed_sink()
            && sink.on_relayed(relay, got.src, &pkt)
        {
            continue;
        }
        let n = pkt.len();
        let Some((out_relay, dest)) = ctl.on_packet(relay, got.src, n) else {
            continue;
        };
        // Counted once sent: a peer signalled at an unroutable (private) address is a drop.
        let result = udp::send_from(out_relay, dest, &pkt);
        let mut inner = ctl.lock();
        match result {
            Ok(_) => {
                inner.count(Event::UserForwardedPackets);
                inner.count_by(Event::UserForwardedBytes, n as u64);
            }
            Err(e) => {
                log::debug!("{out_relay}: forwarding to {dest}: {e}");
                inner.count(Event::UserDropSendError);
            }
        }
    }
}
impl Controller {
    /// A packet of `len` payload bytes from `src` arrived at relay port `relay`. Returns the
    /// relay port to send it from and where to, if it is to be forwarded.
    pub(super) fn on_packet(
        &self,
        relay: SocketAddr,
        src: SocketAddr,
        len: usize,
    ) -> Option<(SocketAddr, SocketAddr)> {
        let mut guard = self.lock();
        let inner: &mut Inner = &mut guard;
        let Some(owner) = inner.owners.get(&relay).cloned() else {
            inner.count(Event::UserDropUnknownPort);
            return None;
        };
        let holdoff = self.cfg.holdoff.as_nanos() as u64;
        let now = now_ns();
        let Some(session) = inner.sessions.get_mut(&owner.call_id) else {
            inner.count(Event::UserDropUnknownPort);
            return None;
        };
        let policy = session.policy;
        let stream = &mut session.streams[owner.stream];
        let shared = stream.shared;
        let comp = &mut stream.comps[owner.comp];
        let (x, decision) = match owner.side {
            None => comp.latch.alternate(src, now, holdoff),
            Some(x) => (
                Some(x),
                comp.latch.channels[x].on_packet(policy, src, now, holdoff),
            ),
        };
        let what = if owner.comp == 0 { "RTP" } else { "RTCP" };
        let mut changed = false;
        match decision {
            Decision::Reject(r) => {
                inner.count(r.event());
                log::debug!(
                    call_id = owner.call_id.as_str(), stream = owner.stream, peer:% = src;
                    "{relay}: {src} refused ({})", r.event().name()
                );
                return None;
            }
            Decision::Accept => {}
            Decision::Latch => {
                changed = true;
                log::info!(
                    call_id = owner.call_id.as_str(), stream = owner.stream,
                    side = x.map_or("?", |x| SIDE_NAMES[x]), peer:% = src;
                    "session {}: stream {} {what} side {} latched to {src} (policy {policy})",
                    owner.call_id,
                    owner.stream,
                    x.map_or("?", |x| SIDE_NAMES[x])
                );
            }
            Decision::Relatch(old) => {
                changed = true;
                log::info!(
                    call_id = owner.call_id.as_str(), stream = owner.stream,
                    side = x.map_or("?", |x| SIDE_NAMES[x]), peer:% = src, old_peer:% = old;
                    "session {}: stream {} {what} side {} re-latched {old} -> {src} (handover)",
                    owner.call_id,
                    owner.stream,
                    x.map_or("?", |x| SIDE_NAMES[x])
                );
            }
        }
        let x = x?;
        let y = 1 - x;
        let side = &mut comp.sides[x];
        side.user_packets += 1;
        side.user_bytes += len as u64;
        side.user_last_ns = now;
        let dest = comp.latch.channels[y].destination();
        let out_relay = comp.sides[y].relay();
        if changed {
            let errors = kernel::apply(&mut inner.dp, comp, shared, false, &owner.call_id);
            inner.count(match decision {
                Decision::Relatch(_) => Event::Relatch,
                _ => Event::Latch,
            });
            inner.count_by(Event::KernelErrors, errors);
            self.latch_changed.notify_one();
        }
        inner.dirty = true;
        let Some(dest) = dest else {
            inner.count(Event::UserDropNoDestination);
            return None;
        };
        Some((out_relay, dest))
    }
}
