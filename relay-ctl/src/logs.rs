//! Rate-limited logging for lines that bad or heavy traffic can repeat (a refused request per
//! packet, a full port pool per call attempt): at most `BURST` lines per site per `WINDOW`,
//! then one line saying how many were suppressed. Counters, not logs, carry the totals.
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Lines a site may log per window before it is suppressed.
pub const BURST: u32 = 10;
pub const WINDOW: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Site {
    start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

/// Per-site log budgets; sites are `'static` strings (the call site's name).
#[derive(Default)]
pub struct Limiter {
    sites: Mutex<HashMap<&'static str, Site>>,
}

/// What to do with a line: log it (with the number suppressed since the last logged one), or
/// drop it.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Log { suppressed: u64 },
    Suppress,
}

impl Limiter {
    pub fn check(&self, site: &'static str, now: Instant) -> Verdict {
        let mut sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        let s = sites.entry(site).or_default();
        let fresh = s.start.is_none_or(|t| now.duration_since(t) >= WINDOW);
        if fresh {
            s.start = Some(now);
            s.logged = 0;
        }
        if s.logged < BURST {
            s.logged += 1;
            Verdict::Log {
                suppressed: std::mem::take(&mut s.suppressed),
            }
        } else {
            s.suppressed += 1;
            Verdict::Suppress
        }
    }
}

/// The daemon's one limiter.
pub fn limiter() -> &'static Limiter {
    static L: std::sync::OnceLock<Limiter> = std::sync::OnceLock::new();
    L.get_or_init(Limiter::default)
}

/// `log::log!` at `$level`, limited per call site (`$site`, a string literal naming it).
#[macro_export]
macro_rules! log_limited {
    ($level:expr, $site:literal, $($arg:tt)+) => {
        match $crate::logs::limiter().check($site, std::time::Instant::now()) {
            $crate::logs::Verdict::Log { suppressed: 0 } => log::log!($level, $($arg)+),
            $crate::logs::Verdict::Log { suppressed } => {
                log::log!($level, $($arg)+);
                log::log!($level, "({suppressed} similar lines suppressed: {})", $site);
            }
            $crate::logs::Verdict::Suppress => {}
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_logs_a_burst_per_window_and_then_the_count() {
        let l = Limiter::default();
        let t0 = Instant::now();
        let logged = (0..4001)
            .filter(|_| l.check("pool", t0) != Verdict::Suppress)
            .count();
        assert_eq!(logged, BURST as usize);
        // Another site has its own budget.
        assert_eq!(l.check("other", t0), Verdict::Log { suppressed: 0 });
        // The next window's first line says how many were dropped.
        assert_eq!(
            l.check("pool", t0 + WINDOW),
            Verdict::Log {
                suppressed: 4001 - u64::from(BURST)
            }
        );
        assert_eq!(l.check("pool", t0 + WINDOW), Verdict::Log { suppressed: 0 });
    }
}
