//! The configured port range and its validation.

use std::fmt;

/// Relay ports `min..=max`; pairs start at `min` (even) and the last is the highest whose RTCP
/// port is `<= max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PortRange {
    pub min: u16,
    pub max: u16,
}

impl PortRange {
    /// 30000-39999: 5000 pairs.
    pub const DEFAULT: PortRange = PortRange {
        min: 30000,
        max: 39999,
    };

    /// Validates: min <= max, port 0 excluded, at least one full even/odd pair inside; rounds
    /// min up to even.
    pub fn new(min: u16, max: u16) -> Result<PortRange, RangeError> {
        if min == 0 {
            return Err(RangeError::PortZero { max });
        }
        if min > max {
            return Err(RangeError::Inverted { min, max });
        }
        let first = u32::from(min).next_multiple_of(2);
        if first + 1 > u32::from(max) {
            return Err(RangeError::NoPair { min, max });
        }
        // first + 1 <= max <= 65535, so first fits.
        Ok(PortRange {
            min: first as u16,
            max,
        })
    }

    /// Number of even/odd pairs in the range (0 for a hand-built invalid range).
    pub fn pairs(&self) -> u32 {
        let first = self.first_rtp();
        let max = u32::from(self.max);
        if first + 1 > max {
            0
        } else {
            // Ports first..=max, two per pair; a trailing even port is not a pair.
            (max - first).div_ceil(2)
        }
    }

    /// Whether `rtp` is the RTP port of a pair in the range.
    pub fn contains(&self, rtp: u16) -> bool {
        self.index(rtp).is_some()
    }

    /// RTP port of the first pair. The fields are public, so a hand-built range may have an odd
    /// or zero `min`: round it the way `new` would, and never hand out port 0 (bind would pick an
    /// ephemeral port instead).
    pub(super) fn first_rtp(&self) -> u32 {
        u32::from(self.min).next_multiple_of(2).max(2)
    }

    pub(super) fn index(&self, rtp: u16) -> Option<u32> {
        let rtp = u32::from(rtp);
        let first = self.first_rtp();
        if rtp < first || !(rtp - first).is_multiple_of(2) {
            return None;
        }
        let idx = (rtp - first) / 2;
        (idx < self.pairs()).then_some(idx)
    }

    pub(super) fn rtp(&self, idx: u32) -> u16 {
        // idx < pairs(), so the port is <= max - 1.
        (self.first_rtp() + 2 * idx) as u16
    }
}

impl Default for PortRange {
    fn default() -> PortRange {
        PortRange::DEFAULT
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

/// Why a port range was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeError {
    PortZero { max: u16 },
    Inverted { min: u16, max: u16 },
    NoPair { min: u16, max: u16 },
}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RangeError::PortZero { max } => write!(
                f,
                "relay port range 0-{max}: port 0 is not a port (set --port-min to 1 or more)"
            ),
            RangeError::Inverted { min, max } => write!(
                f,
                "relay port range {min}-{max}: the minimum is above the maximum"
            ),
            RangeError::NoPair { min, max } => write!(
                f,
                "relay port range {min}-{max} holds no RTP/RTCP pair (an even port and the odd \
                 port after it): widen it"
            ),
        }
    }
}

impl std::error::Error for RangeError {}
