//! Latency histograms and the summary printed for each run.

use hdrhistogram::Histogram;
use serde::Serialize;

/// A latency histogram in microseconds, 1 µs to 60 s, three significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// What one run measured.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// What was measured, e.g. `healthz` or `decide`.
    pub name: String,
    /// Requests answered as expected.
    pub ok: u64,
    /// Requests that failed or got an unexpected status.
    pub errors: u64,
    /// Of the decisions, how many were queued (202) rather than assigned.
    pub queued: u64,
    /// Wall-clock seconds of the measured window.
    pub seconds: f64,
    /// Answered requests per second.
    pub throughput: f64,
    /// Latency percentiles in milliseconds.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest latency.
    pub max_ms: f64,
    /// Open loop: how late the client sent the requests after their intended times.
    pub send_lateness: Option<Percentiles>,
    /// Decisions: the engine's own time per decision, from the answers (`decisionMicros` +
    /// `journalMicros`).
    pub engine_time: Option<Percentiles>,
}

/// Percentiles of a histogram in microseconds, given in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Percentiles {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest value.
    pub max_ms: f64,
}

impl Percentiles {
    /// The percentiles of `h`, shifted down by `offset` µs; none when `h` is empty.
    pub fn of(h: &Histogram<u64>, offset: u64) -> Option<Self> {
        let ms = |q: f64| h.value_at_quantile(q).saturating_sub(offset) as f64 / 1000.0;
        (!h.is_empty()).then(|| Self {
            p50_ms: ms(0.50),
            p90_ms: ms(0.90),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: h.max().saturating_sub(offset) as f64 / 1000.0,
        })
    }

    /// `p50 … / p90 … / p99 … / p99.9 … / max … ms`.
    pub fn line(&self) -> String {
        format!(
            "p50 {:.3} / p90 {:.3} / p99 {:.3} / p99.9 {:.3} / max {:.3} ms",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms
        )
    }
}

impl Summary {
    /// Summarises a histogram of `ok` answered requests over `seconds`.
    pub fn of(name: &str, h: &Histogram<u64>, ok: u64, errors: u64, queued: u64, seconds: f64) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            name: name.to_string(),
            ok,
            errors,
            queued,
            seconds,
            throughput: ok as f64 / seconds.max(1e-9),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            send_lateness: None,
            engine_time: None,
        }
    }

    /// Adds the send lateness (open loop; stored one up, the histogram's lowest value being
    /// 1 µs) and the engine's time (decisions) that a run recorded.
    pub fn timed(mut self, late: &Histogram<u64>, engine: &Histogram<u64>) -> Self {
        self.send_lateness = Percentiles::of(late, 1);
        self.engine_time = Percentiles::of(engine, 0);
        self
    }

    /// The header of [`Summary::row`].
    pub fn header() -> String {
        format!(
            "{:<10} {:>10} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "run", "req/s", "errors", "queued", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        )
    }

    /// One table row.
    pub fn row(&self) -> String {
        format!(
            "{:<10} {:>10.0} {:>8} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            self.name, self.throughput, self.errors, self.queued, self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut h = histogram();
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap(); // 1 ms .. 1000 ms
        }
        let s = Summary::of("x", &h, 1000, 2, 0, 10.0);
        assert_eq!(s.throughput, 100.0);
        assert!((s.p50_ms - 500.0).abs() < 1.0, "{}", s.p50_ms);
        assert!((s.p99_ms - 990.0).abs() < 1.0, "{}", s.p99_ms);
        assert!((s.max_ms - 1000.0).abs() < 1.0, "{}", s.max_ms);
        assert!(s.row().starts_with("x "));
    }

    #[test]
    fn percentiles_shift_by_the_offset_and_are_none_when_empty() {
        assert_eq!(Percentiles::of(&histogram(), 1), None);
        let mut h = histogram();
        for us in 1..=1000u64 {
            h.record(us + 1).unwrap(); // 1 µs late .. 1000 µs late, stored one up
        }
        let p = Percentiles::of(&h, 1).unwrap();
        assert!((p.p50_ms - 0.5).abs() < 0.001 && (p.p99_ms - 0.99).abs() < 0.001, "{p:?}");
        assert!((p.max_ms - 1.0).abs() < 0.002, "{p:?}");
        assert!(p.line().starts_with("p50 0.500 / p90 0.900 / p99 0.990"), "{}", p.line());
    }
}
