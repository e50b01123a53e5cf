//! Where the engine reads the time. Serving uses the system clock; a simulation drives a
//! [`ManualClock`] so that decisions, deadlines, SLA measurements and daily caps follow
//! simulated time. Timers (acceptance time-outs, the queue sweep) still wait in real time for
//! the difference the clock reports, so a simulation sends its brokers' answers itself.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: DateTime<Utc>) -> Arc<Self> {
        Arc::new(Self { now: Mutex::new(start) })
    }

    /// Moves the clock to `t`; it never goes backwards.
    pub fn set(&self, t: DateTime<Utc>) {
        let mut now = self.now.lock();
        if t > *now {
            *now = t;
        }
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: chrono::Duration) {
        let mut now = self.now.lock();
        *now += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock()
    }
}

/// The clock every part of one engine shares.
pub type SharedClock = Arc<dyn Clock>;

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_manual_clock_moves_only_forward_and_only_when_told() {
        let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap();
        let c = ManualClock::new(t0);
        assert_eq!(c.now(), t0);
        c.advance(chrono::Duration::minutes(90));
        assert_eq!(c.now(), t0 + chrono::Duration::minutes(90));
        c.set(t0);
        assert_eq!(c.now(), t0 + chrono::Duration::minutes(90), "never backwards");
        let shared: SharedClock = c;
        assert_eq!(shared.now(), t0 + chrono::Duration::minutes(90));
    }
}
