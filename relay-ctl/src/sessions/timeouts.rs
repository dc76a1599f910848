//! When a session expires (rtpengine's defaults as a starting point): an answered call with
//! no media from either side for `no_media`, or with one side silent for `silent`; a call
//! never answered within `offer`. Pure: the sweeper passes the clock and last-seen times.
use std::time::Duration;

use crate::{api::SessionState, events::Event};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub no_media: Duration,
    pub silent: Duration,
    pub offer: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            no_media: Duration::from_secs(60),
            silent: Duration::from_secs(3600),
            offer: Duration::from_secs(3600),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Answered, and nothing from either side for the no-media timeout.
    NoMedia,
    /// Answered, and one side (0 = A, 1 = B) silent for the one-sided timeout.
    Silent(usize),
    /// Never answered within the offer timeout.
    Unanswered,
}

impl Expiry {
    pub fn event(self) -> Event {
        match self {
            Expiry::NoMedia => Event::ExpiredNoMedia,
            Expiry::Silent(_) => Event::ExpiredSilent,
            Expiry::Unanswered => Event::ExpiredUnanswered,
        }
    }
}

/// `last_seen[side]`: CLOCK_MONOTONIC ns of the last packet from that side (0 = never).
/// Silence is counted from the answer at the earliest, so a call is not expired for the
/// ringing time before it.
pub fn expiry(
    state: SessionState,
    created_ns: u64,
    answered_ns: Option<u64>,
    last_seen: [u64; 2],
    now_ns: u64,
    t: &Timeouts,
) -> Option<Expiry> {
    let older = |since: u64, d: Duration| now_ns.saturating_sub(since) >= d.as_nanos() as u64;
    match state {
        SessionState::Offered => older(created_ns, t.offer).then_some(Expiry::Unanswered),
        SessionState::Answered => {
            let base = answered_ns.unwrap_or(created_ns);
            let seen = last_seen.map(|s| s.max(base));
            if older(seen[0].max(seen[1]), t.no_media) {
                return Some(Expiry::NoMedia);
            }
            (0..2)
                .find(|&s| older(seen[s], t.silent))
                .map(Expiry::Silent)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const S: u64 = 1_000_000_000;

    fn t() -> Timeouts {
        Timeouts {
            no_media: Duration::from_secs(60),
            silent: Duration::from_secs(3600),
            offer: Duration::from_secs(3600),
        }
    }

    #[test]
    fn offered_expires_only_by_offer_timeout() {
        let off = SessionState::Offered;
        assert_eq!(expiry(off, 0, None, [0, 0], 3599 * S, &t()), None);
        assert_eq!(
            expiry(off, 0, None, [0, 0], 3600 * S, &t()),
            Some(Expiry::Unanswered)
        );
    }

    #[test]
    fn answered_no_media_counts_from_answer_or_last_packet() {
        let ans = SessionState::Answered;
        // Rang for an hour, answered at 3600 s: not expired at 3650 s.
        assert_eq!(expiry(ans, 0, Some(3600 * S), [0, 0], 3650 * S, &t()), None);
        assert_eq!(
            expiry(ans, 0, Some(3600 * S), [0, 0], 3660 * S, &t()),
            Some(Expiry::NoMedia)
        );
        // Media until 100 s: expires at 160 s.
        assert_eq!(
            expiry(ans, 0, Some(0), [100 * S, 90 * S], 159 * S, &t()),
            None
        );
        assert_eq!(
            expiry(ans, 0, Some(0), [100 * S, 90 * S], 160 * S, &t()),
            Some(Expiry::NoMedia)
        );
    }

    #[test]
    fn one_sided_silence() {
        let ans = SessionState::Answered;
        // B never sent; A keeps sending.
        assert_eq!(expiry(ans, 0, Some(0), [3599 * S, 0], 3599 * S, &t()), None);
        assert_eq!(
            expiry(ans, 0, Some(0), [3600 * S, 0], 3600 * S, &t()),
            Some(Expiry::Silent(1))
        );
        assert_eq!(
            expiry(ans, 0, Some(0), [0, 3600 * S], 3600 * S, &t()),
            Some(Expiry::Silent(0))
        );
    }

    proptest::proptest! {
        /// What lets the sweeper skip reading statistics (sessions/mod.rs): a later (larger)
        /// last-seen reading never expires a session that an earlier one kept alive.
        #[test]
        fn more_recent_media_never_expires_sooner(
            offered in proptest::bool::ANY,
            created in 0u64..10_000 * S,
            answered in proptest::option::of(0u64..10_000 * S),
            early in proptest::array::uniform2(0u64..10_000 * S),
            later in proptest::array::uniform2(0u64..1_000 * S),
            now in 0u64..20_000 * S,
            secs in proptest::array::uniform3(1u64..5_000),
        ) {
            let state = if offered { SessionState::Offered } else { SessionState::Answered };
            let t = Timeouts {
                no_media: Duration::from_secs(secs[0]),
                silent: Duration::from_secs(secs[1]),
                offer: Duration::from_secs(secs[2]),
            };
            let grown = [early[0] + later[0], early[1] + later[1]];
            if expiry(state, created, answered, early, now, &t).is_none() {
                proptest::prop_assert!(expiry(state, created, answered, grown, now, &t).is_none());
            }
        }
    }
}
