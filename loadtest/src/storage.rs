//! The server's storage during a run, from its `GET /metrics` read just before and just after
//! the run: how many journal fsyncs it made, how long they took on average and how many were
//! slow, and the snapshots it wrote. With `fsync` durability every answer waits for an fsync, so
//! a latency tail can be set beside the disk's own.

use std::time::Duration;

use serde::Serialize;

use crate::error::LoadError;

/// The server's fsync latency histogram (seconds).
const FSYNC: &str = "leadrouter_journal_fsync_seconds";
/// The server's snapshot write time histogram (seconds).
const SNAPSHOT: &str = "leadrouter_snapshot_seconds";
/// Fsyncs slower than these (milliseconds) are counted, when the server has a bucket bound there.
const SLOW_MS: [f64; 3] = [5.0, 25.0, 100.0];

/// One Prometheus histogram as the server exposed it.
#[derive(Clone, Debug, Default, PartialEq)]
struct Hist {
    /// (upper bound in seconds, cumulative count), in the order given; the last bound is +Inf.
    buckets: Vec<(f64, u64)>,
    count: u64,
    sum: f64,
}

impl Hist {
    /// The cumulative count at bound `le` (seconds), if the histogram has that bound.
    fn at(&self, le: f64) -> Option<u64> {
        self.buckets.iter().find(|&&(b, _)| b == le || (le.is_finite() && (b - le).abs() <= le * 1e-9)).map(|&(_, c)| c)
    }
}

/// The two histograms at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reading {
    fsync: Hist,
    snapshot: Hist,
}

impl Reading {
    /// Reads both histograms from Prometheus text; fails naming the one that is missing (the
    /// target is not a LeadRouter server, or one that does not export it).
    pub fn parse(text: &str) -> Result<Self, LoadError> {
        let mut r = Self::default();
        // A histogram counts as present when its `_count` is.
        let (mut fsync_seen, mut snapshot_seen) = (false, false);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let (hist, seen, rest) = if let Some(rest) = series.strip_prefix(FSYNC) {
                (&mut r.fsync, &mut fsync_seen, rest)
            } else if let Some(rest) = series.strip_prefix(SNAPSHOT) {
                (&mut r.snapshot, &mut snapshot_seen, rest)
            } else {
                continue;
            };
            let bad = |reason: String| LoadError::Body { what: "GET /metrics", reason };
            let number = || value.parse::<f64>().map_err(|_| bad(format!("{series} is not a number: {value}")));
            if let Some(labels) = rest.strip_prefix("_bucket{") {
                let le = labels
                    .split(',')
                    .find_map(|l| l.strip_prefix("le=\""))
                    .and_then(|l| l.strip_suffix('}').unwrap_or(l).strip_suffix('"'))
                    .ok_or_else(|| bad(format!("{series} has no le label")))?;
                let le = if le == "+Inf" { f64::INFINITY } else { le.parse().map_err(|_| bad(format!("{series}: bad bound")))? };
                hist.buckets.push((le, number()? as u64));
            } else if rest == "_count" {
                hist.count = number()? as u64;
                *seen = true;
            } else if rest == "_sum" {
                hist.sum = number()?;
            }
        }
        for (seen, name) in [(fsync_seen, FSYNC), (snapshot_seen, SNAPSHOT)] {
            if !seen {
                return Err(LoadError::Body { what: "GET /metrics", reason: format!("no {name} histogram") });
            }
        }
        Ok(r)
    }
}

/// Reads the server's histograms now.
pub fn read(target: &str, api_key: Option<&str>) -> Result<Reading, LoadError> {
    actix_rt::System::new().block_on(async {
        let client = awc::Client::builder().timeout(Duration::from_secs(10)).finish();
        let mut req = client.get(format!("{target}/metrics"));
        if let Some(k) = api_key {
            req = req.insert_header(("X-Api-Key", k));
        }
        let mut resp = req.send().await.map_err(|e| LoadError::Send(e.to_string()))?;
        if resp.status() != 200 {
            return Err(LoadError::Status { status: resp.status().as_u16(), what: "GET /metrics" });
        }
        let body = resp.body().limit(16 << 20).await.map_err(|e| LoadError::Body { what: "GET /metrics", reason: e.to_string() })?;
        Reading::parse(&String::from_utf8_lossy(&body))
    })
}

/// Seconds as milliseconds, to the microsecond (a bound of 0.1 s reads 100, not 100.00000000000001).
fn ms(seconds: f64) -> f64 {
    (seconds * 1e6).round() / 1000.0
}

/// Where the slowest fsync of a run fell: above `above_ms`, at most `at_most_ms` (none: beyond
/// the server's largest bound).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bounds {
    /// The bucket's lower bound, ms.
    pub above_ms: f64,
    /// Its upper bound, ms.
    pub at_most_ms: Option<f64>,
}

/// What the server's storage did during one run.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageUsage {
    /// Journal fsyncs: with `fsync` durability one per group of appends, with `batch` one per
    /// interval that had writes.
    pub fsyncs: u64,
    /// Their mean time, ms; none without fsyncs.
    pub fsync_mean_ms: Option<f64>,
    /// Fsyncs slower than 5, 25 and 100 ms, as `[ms, count]` (a bound the server's histogram
    /// does not have is left out).
    pub fsyncs_slower_than: Vec<(f64, u64)>,
    /// The bucket of the slowest fsync; none without fsyncs.
    pub slowest_fsync: Option<Bounds>,
    /// Snapshots written.
    pub snapshots: u64,
    /// Their time in all, seconds.
    pub snapshot_seconds: f64,
}

impl StorageUsage {
    /// What happened between two readings of the same server.
    pub fn between(before: &Reading, after: &Reading) -> Self {
        let (b, a) = (&before.fsync, &after.fsync);
        let fsyncs = a.count.saturating_sub(b.count);
        let delta = |le: f64| Some(a.at(le)?.saturating_sub(b.at(le).unwrap_or(0)));
        let fsyncs_slower_than = SLOW_MS.iter().filter_map(|&ms| Some((ms, fsyncs.saturating_sub(delta(ms / 1000.0)?)))).collect();
        let mut lower = 0.0;
        let mut slowest = None;
        if fsyncs > 0 {
            for &(le, _) in &a.buckets {
                if delta(le).is_some_and(|n| n >= fsyncs) {
                    slowest = Some(Bounds { above_ms: ms(lower), at_most_ms: le.is_finite().then(|| ms(le)) });
                    break;
                }
                lower = le;
            }
        }
        let (sb, sa) = (&before.snapshot, &after.snapshot);
        Self {
            fsyncs,
            fsync_mean_ms: (fsyncs > 0).then(|| (a.sum - b.sum) * 1000.0 / fsyncs as f64),
            fsyncs_slower_than,
            slowest_fsync: slowest,
            snapshots: sa.count.saturating_sub(sb.count),
            snapshot_seconds: (sa.sum - sb.sum).max(0.0),
        }
    }

    /// `1234 journal fsyncs, mean 0.210 ms, slower than 5 ms: 3, …, slowest 50–100 ms; 2 snapshots, 5.31 s`.
    pub fn line(&self) -> String {
        let mut s = format!("{} journal fsyncs", self.fsyncs);
        if let Some(m) = self.fsync_mean_ms {
            s += &format!(", mean {m:.3} ms");
        }
        for (ms, n) in &self.fsyncs_slower_than {
            s += &format!(", slower than {ms} ms: {n}");
        }
        match &self.slowest_fsync {
            Some(Bounds { above_ms, at_most_ms: Some(hi) }) => s += &format!(", slowest {above_ms}–{hi} ms"),
            Some(Bounds { above_ms, at_most_ms: None }) => s += &format!(", slowest over {above_ms} ms"),
            None => {}
        }
        s + &format!("; {} snapshots, {:.2} s", self.snapshots, self.snapshot_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The histograms as the server's Prometheus encoder writes them, with bounds in seconds.
    fn text(fsync: &[(&str, u64)], count: u64, sum: f64, snapshots: u64, snapshot_sum: f64) -> String {
        let mut t = String::from("# HELP leadrouter_journal_fsync_seconds Journal fsync latency\n");
        t += "# TYPE leadrouter_journal_fsync_seconds histogram\n";
        for (le, n) in fsync {
            t += &format!("leadrouter_journal_fsync_seconds_bucket{{le=\"{le}\"}} {n}\n");
        }
        t += &format!("leadrouter_journal_fsync_seconds_sum {sum}\nleadrouter_journal_fsync_seconds_count {count}\n");
        // A metric whose name starts like the other one, which must not be taken for it.
        t += "leadrouter_snapshot_seconds_total_bogus 99\n";
        t += &format!("leadrouter_snapshot_seconds_bucket{{le=\"+Inf\"}} {snapshots}\n");
        t += &format!("leadrouter_snapshot_seconds_sum {snapshot_sum}\nleadrouter_snapshot_seconds_count {snapshots}\n");
        t + "leadrouter_journal_append_seconds_count 5000\n"
    }

    const BOUNDS: [&str; 7] = ["0.001", "0.005", "0.01", "0.025", "0.1", "0.25", "+Inf"];

    fn reading(counts: [u64; 7], sum: f64, snapshots: u64, snapshot_sum: f64) -> Reading {
        let fsync: Vec<_> = BOUNDS.iter().copied().zip(counts).collect();
        Reading::parse(&text(&fsync, counts[6], sum, snapshots, snapshot_sum)).expect("parses")
    }

    #[test]
    fn a_run_counts_the_fsyncs_and_snapshots_between_two_readings() {
        let before = reading([90, 98, 99, 100, 100, 100, 100], 0.05, 1, 2.0);
        // 1,000 more fsyncs: 900 under 1 ms, 80 of 1–5 ms, 12 of 5–10, 5 of 10–25, 3 of 100–250.
        let after = reading([990, 1078, 1091, 1097, 1097, 1100, 1100], 0.45, 3, 7.5);
        let u = StorageUsage::between(&before, &after);
        assert_eq!(u.fsyncs, 1000);
        assert!((u.fsync_mean_ms.unwrap() - 0.4).abs() < 1e-9, "{u:?}");
        assert_eq!(u.fsyncs_slower_than, vec![(5.0, 20), (25.0, 3), (100.0, 3)]);
        assert_eq!(u.slowest_fsync, Some(Bounds { above_ms: 100.0, at_most_ms: Some(250.0) }));
        assert_eq!((u.snapshots, u.snapshot_seconds), (2, 5.5));
        assert_eq!(
            u.line(),
            "1000 journal fsyncs, mean 0.400 ms, slower than 5 ms: 20, slower than 25 ms: 3, slower than 100 ms: 3, \
             slowest 100–250 ms; 2 snapshots, 5.50 s"
        );
    }

    #[test]
    fn the_slowest_fsync_can_be_beyond_the_last_bound_or_absent() {
        let before = reading([0; 7], 0.0, 0, 0.0);
        let after = reading([1, 1, 1, 1, 1, 1, 2], 3.0, 0, 0.0);
        let u = StorageUsage::between(&before, &after);
        assert_eq!(u.slowest_fsync, Some(Bounds { above_ms: 250.0, at_most_ms: None }));
        assert!(u.line().contains("slowest over 250 ms; 0 snapshots"), "{}", u.line());
        // Durability `none`: no fsync, no mean, no slowest.
        let idle = StorageUsage::between(&after, &after);
        assert_eq!((idle.fsyncs, idle.fsync_mean_ms, idle.slowest_fsync), (0, None, None));
        assert_eq!(idle.fsyncs_slower_than, vec![(5.0, 0), (25.0, 0), (100.0, 0)]);
    }

    #[test]
    fn bounds_the_server_lacks_are_left_out() {
        let fsync = [("0.01", 4), ("+Inf", 5)];
        let r = Reading::parse(&text(&fsync, 5, 0.1, 0, 0.0)).unwrap();
        let u = StorageUsage::between(&Reading::default(), &r);
        assert_eq!(u.fsyncs_slower_than, vec![]);
        assert_eq!(u.slowest_fsync, Some(Bounds { above_ms: 10.0, at_most_ms: None }));
    }

    #[test]
    fn text_without_the_histograms_or_with_bad_numbers_is_refused() {
        let err = Reading::parse("leadrouter_journal_append_seconds_count 1\n").unwrap_err().to_string();
        assert!(err.contains("no leadrouter_journal_fsync_seconds histogram"), "{err}");
        let only_fsync = "leadrouter_journal_fsync_seconds_count 1\n";
        let err = Reading::parse(only_fsync).unwrap_err().to_string();
        assert!(err.contains("no leadrouter_snapshot_seconds histogram"), "{err}");
        let bad = text(&[("+Inf", 1)], 1, 0.1, 0, 0.0).replace("_count 1\n", "_count one\n");
        let err = Reading::parse(&bad).unwrap_err().to_string();
        assert!(err.contains("leadrouter_journal_fsync_seconds_count is not a number: one"), "{err}");
    }
}
