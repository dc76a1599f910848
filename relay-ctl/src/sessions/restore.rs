//! Adopting sessions after a restart: re-reserve their port pairs and slots, read back what
//! the pinned leg table holds (latched sources, installed entries), remove entries no
//! session owns, and install what is missing. Entries that are already right are never
//! rewritten, so XDP's counters and forwarding carry on untouched.
use std::{collections::HashMap, time::Instant};

use relay_common::{LegKey, LegValue, leg::LEG_F_SHARED};

use super::{Controller, Inner, kernel, state::StateFile};
use crate::events::Event;

pub(super) fn restore(inner: &mut Inner, st: StateFile) {
    let now = Instant::now();
    let table: Vec<(LegKey, LegValue)> = match inner.dp.legs() {
        Ok(t) => t,
        Err(e) => {
            log::warn!("reading the pinned leg table: {e:#}");
            vec![]
        }
    };
    let mut claimed = vec![false; table.len()];
    let by_slot: HashMap<u32, usize> = table
        .iter()
        .enumerate()
        .filter(|(_, (_, v))| v.flags & LEG_F_SHARED == 0)
        .map(|(i, (_, v))| (v.slot, i))
        .collect();
    let (mut adopted, mut dropped) = (0, 0);
    let mono_now = crate::clock::now_ns();
    'session: for mut session in st.sessions {
        // Monotonic times from another boot (a state file kept on disk across a reboot) lie
        // in the future: restart the clocks rather than never expiring the session.
        if session.created_ns > mono_now {
            session.created_ns = mono_now;
            session.answered_ns = session.answered_ns.map(|_| mono_now);
            for comp in session.streams.iter_mut().flat_map(|s| s.comps.iter_mut()) {
                for side in &mut comp.sides {
                    side.user_last_ns = side.user_last_ns.min(mono_now);
                    side.retired_last_ns = side.retired_last_ns.min(mono_now);
                }
                for ch in &mut comp.latch.channels {
                    ch.changed_ns = ch.changed_ns.map(|t| t.min(mono_now));
                }
            }
        }
        // Ports and slots first: if another process took a port meanwhile, the session
        // cannot be served and is dropped (its kernel entries become orphans, removed below).
        let mut reserved = vec![];
        for stream in &session.streams {
            for pair in &stream.pairs {
                match inner.ports.reserve(*pair, now) {
                    Ok(a) => reserved.push(a.pair),
                    Err(e) => {
                        log::error!(
                            call_id = session.call_id.as_str();
                            "session {}: cannot re-reserve {pair}: {e}; dropping it",
                            session.call_id
                        );
                        for p in reserved {
                            inner.ports.release(p, now);
                        }
                        dropped += 1;
                        continue 'session;
                    }
                }
            }
        }
        for stream in &session.streams {
            for comp in &stream.comps {
                for side in &comp.sides {
                    if !inner.slots.take(side.slot) {
                        log::warn!(
                            call_id = session.call_id.as_str();
                            "session {}: stats slot {} unusable",
                            session.call_id,
                            side.slot
                        );
                    }
                }
            }
        }
        for stream in &mut session.streams {
            for comp in &mut stream.comps {
                let mut installed = vec![];
                for x in 0..2 {
                    let relay = comp.sides[x].relay();
                    let Some(&i) = by_slot.get(&comp.sides[x].slot) else {
                        continue;
                    };
                    let (k, v) = table[i];
                    if k.relay.to_socket_addr() != Some(relay) {
                        continue;
                    }
                    // The kernel holds the newest latch (the state file may lag by a sweep).
                    comp.latch.channels[x].latched = v.latched.to_socket_addr();
                    claimed[i] = true;
                    installed.push((k, v));
                }
                if stream.shared {
                    let relay = comp.sides[0].relay();
                    if let Some(i) = table.iter().position(|(k, v)| {
                        v.flags & LEG_F_SHARED != 0 && k.relay.to_socket_addr() == Some(relay)
                    }) {
                        claimed[i] = true;
                        installed.push(table[i]);
                    }
                }
                comp.installed = installed;
            }
        }
        Controller::own_ports(inner, &session);
        adopted += 1;
        inner.sessions.insert(session.call_id.clone(), session);
    }
    for (i, (k, _)) in table.iter().enumerate() {
        if !claimed[i] {
            log::info!("removing kernel leg {} (no session owns it)", k.relay);
            if inner.dp.remove_leg(k).is_ok() {
                inner.count(Event::OrphanLegsRemoved);
            }
        }
    }
    // Whatever the kernel lacks (or the state file knows better) goes in now.
    let mut errors = 0;
    for session in inner.sessions.values_mut() {
        for stream in &mut session.streams {
            let shared = stream.shared;
            for comp in &mut stream.comps {
                errors += kernel::apply(&mut inner.dp, comp, shared, false, &session.call_id);
            }
        }
    }
    inner.count_by(Event::KernelErrors, errors);
    inner.dirty = true;
    log::info!("adopted {adopted} session(s) from the state file ({dropped} dropped)");
}
