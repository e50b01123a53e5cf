//! The open loop's send times, with sub-millisecond precision.
//!
//! tokio's timer has a granularity of one millisecond: a `sleep_until` ends up to a millisecond
//! after its deadline, and since open-loop latency counts from the intended send time, that
//! lateness showed up in every percentile as if the server had caused it. A [`Pacer`] is a
//! thread of its own that sleeps with the operating system's timer until each intended time and
//! then wakes the worker's runtime through a channel. How late that still is, the report gives
//! (about 0.14 ms at the median in the decide runs on the project's 2-core machine,
//! PERFORMANCE.md).

use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// Ticks at `start + k × interval` for k = 0, 1, … while that is before `end`.
pub struct Pacer {
    ticks: mpsc::UnboundedReceiver<u64>,
    /// Dropped with the pacer: tells the thread to stop early.
    _stop: std_mpsc::Sender<()>,
}

impl Pacer {
    /// Starts the pacing thread.
    pub fn start(start: Instant, interval: Duration, end: Instant) -> std::io::Result<Self> {
        let (tx, ticks) = mpsc::unbounded_channel();
        let (stop, stopped) = std_mpsc::channel::<()>();
        std::thread::Builder::new().name("loadtest-pacer".into()).spawn(move || {
            for k in 0u64.. {
                let at = intended(start, interval, k);
                if at >= end {
                    break;
                }
                // Sleeps until `at` unless the pacer is dropped first.
                match stopped.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
                }
                // recv_timeout may return a little early: never tick before the time.
                while Instant::now() < at {
                    std::thread::sleep(at.saturating_duration_since(Instant::now()));
                }
                if tx.send(k).is_err() {
                    break;
                }
            }
        })?;
        Ok(Self { ticks, _stop: stop })
    }

    /// The next tick's number; none once the schedule has ended.
    pub async fn next(&mut self) -> Option<u64> {
        self.ticks.recv().await
    }
}

/// When the k-th request is meant to leave.
pub fn intended(start: Instant, interval: Duration, k: u64) -> Instant {
    start + interval.mul_f64(k as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    // How late the ticks come is measured by the load generator itself (its send-lateness
    // figures), not asserted here: that depends on how busy the machine is.
    #[actix_rt::test]
    async fn ticks_in_order_never_early_and_stops_at_the_end() {
        let start = Instant::now() + Duration::from_millis(2);
        let interval = Duration::from_micros(250);
        let end = start + Duration::from_millis(10);
        let mut pacer = Pacer::start(start, interval, end).unwrap();
        let mut seen = Vec::new();
        while let Some(k) = pacer.next().await {
            assert!(Instant::now() >= intended(start, interval, k), "tick {k} came early");
            seen.push(k);
        }
        assert_eq!(seen, (0..40).collect::<Vec<_>>());
    }

    #[actix_rt::test]
    async fn a_dropped_pacer_stops_its_thread() {
        let start = Instant::now();
        let mut pacer = Pacer::start(start, Duration::from_secs(3600), start + Duration::from_secs(7200)).unwrap();
        assert_eq!(pacer.next().await, Some(0));
        // The thread now waits an hour for tick 1. Dropping the stop handle (what dropping the
        // pacer does) ends that wait, and the thread's end closes the tick channel.
        let Pacer { mut ticks, _stop } = pacer;
        drop(_stop);
        let closed = tokio::time::timeout(Duration::from_secs(5), ticks.recv()).await;
        assert_eq!(closed, Ok(None), "the pacing thread did not stop");
    }
}
