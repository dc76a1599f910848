//! Bookkeeping of the pairs on one relay address, without sockets: which pairs are free, in use
//! or in quarantine, and in which order free pairs are handed out.
//!
//! Every transition is O(1) amortised. Taking a pair out of the middle of the free list or the
//! quarantine (`reserve`) does not search those queues: each pair carries a generation that
//! changes on every transition, queue entries record the generation they were queued with, and an
//! entry whose generation no longer matches is stale and skipped (and dropped when it reaches the
//! front or when the queue is compacted).

use std::collections::VecDeque;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    Free,
    Used,
    Quarantined,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    state: State,
    generation: u32,
}

#[derive(Clone, Copy, Debug)]
struct Queued {
    idx: u32,
    generation: u32,
}

#[derive(Clone, Copy, Debug)]
struct InQuarantine {
    idx: u32,
    generation: u32,
    until: Instant,
}

fn current(slots: &[Slot], idx: u32, generation: u32) -> bool {
    slots
        .get(idx as usize)
        .is_some_and(|s| s.generation == generation)
}

/// Pair indices 0..total on one address; the caller maps them to ports.
#[derive(Debug)]
pub(super) struct Pool {
    slots: Vec<Slot>,
    /// Free pairs, least recently freed at the front (may hold stale entries).
    free: VecDeque<Queued>,
    /// Quarantined pairs ordered by `until` (may hold stale entries).
    quarantine: VecDeque<InQuarantine>,
    used: u32,
    free_count: u32,
    quarantined: u32,
}

impl Pool {
    pub(super) fn new(total: u32) -> Pool {
        let slots = vec![
            Slot {
                state: State::Free,
                generation: 0,
            };
            total as usize
        ];
        let free = (0..total)
            .map(|idx| Queued { idx, generation: 0 })
            .collect();
        Pool {
            slots,
            free,
            quarantine: VecDeque::new(),
            used: 0,
            free_count: total,
            quarantined: 0,
        }
    }

    pub(super) fn total(&self) -> u32 {
        self.slots.len() as u32
    }

    pub(super) fn used(&self) -> u32 {
        self.used
    }

    pub(super) fn free_count(&self) -> u32 {
        self.free_count
    }

    pub(super) fn quarantined(&self) -> u32 {
        self.quarantined
    }

    pub(super) fn state(&self, idx: u32) -> Option<State> {
        self.slots.get(idx as usize).map(|s| s.state)
    }

    fn is_current(&self, idx: u32, generation: u32) -> bool {
        current(&self.slots, idx, generation)
    }

    /// Moves `idx` to `state` and invalidates any queue entry made for its previous state.
    fn set(&mut self, idx: u32, state: State) -> u32 {
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            return 0;
        };
        match slot.state {
            State::Free => self.free_count -= 1,
            State::Used => self.used -= 1,
            State::Quarantined => self.quarantined -= 1,
        }
        match state {
            State::Free => self.free_count += 1,
            State::Used => self.used += 1,
            State::Quarantined => self.quarantined += 1,
        }
        slot.state = state;
        slot.generation = slot.generation.wrapping_add(1);
        slot.generation
    }

    /// Quarantined pairs whose time has passed (`now >= until`) join the back of the free list.
    pub(super) fn promote(&mut self, now: Instant) {
        while let Some(&q) = self.quarantine.front() {
            if q.until > now {
                break;
            }
            self.quarantine.pop_front();
            if self.is_current(q.idx, q.generation) {
                let generation = self.set(q.idx, State::Free);
                self.free.push_back(Queued {
                    idx: q.idx,
                    generation,
                });
            }
        }
    }

    /// Quarantined pairs whose time has passed by `now`, without promoting them (for `&self`).
    pub(super) fn expired(&self, now: Instant) -> u32 {
        self.quarantine
            .iter()
            .take_while(|q| q.until <= now)
            .filter(|q| self.is_current(q.idx, q.generation))
            .count() as u32
    }

    /// The least recently freed free pair, left in place until `take` or `requeue`.
    pub(super) fn front_free(&mut self) -> Option<u32> {
        while let Some(&q) = self.free.front() {
            if self.is_current(q.idx, q.generation) {
                return Some(q.idx);
            }
            self.free.pop_front();
        }
        None
    }

    /// Marks a free or quarantined pair used.
    pub(super) fn take(&mut self, idx: u32) {
        self.set(idx, State::Used);
        self.compact();
    }

    /// A free pair goes to the back of the free list (its ports are held by someone else).
    pub(super) fn requeue(&mut self, idx: u32) {
        let generation = self.set(idx, State::Free);
        self.free.push_back(Queued { idx, generation });
        self.compact();
    }

    /// A used pair goes to quarantine until `until`, or later if an earlier release got a later
    /// deadline (callers' clocks may step back), so the queue stays ordered and no pair is
    /// reused early.
    pub(super) fn quarantine(&mut self, idx: u32, until: Instant) {
        let until = match self.quarantine.back() {
            Some(last) if last.until > until => last.until,
            _ => until,
        };
        let generation = self.set(idx, State::Quarantined);
        self.quarantine.push_back(InQuarantine {
            idx,
            generation,
            until,
        });
    }

    /// Drops stale entries once they could make a queue outgrow twice the pool, which bounds
    /// memory when `reserve` keeps taking pairs out of the middle.
    fn compact(&mut self) {
        let limit = 2 * self.slots.len() + 16;
        if self.free.len() > limit {
            let slots = &self.slots;
            self.free.retain(|q| current(slots, q.idx, q.generation));
        }
        if self.quarantine.len() > limit {
            let slots = &self.slots;
            self.quarantine
                .retain(|q| current(slots, q.idx, q.generation));
        }
    }

    #[cfg(test)]
    pub(super) fn queue_lens(&self) -> (usize, usize) {
        (self.free.len(), self.quarantine.len())
    }
}
