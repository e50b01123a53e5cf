//! The server's CPU time, read from /proc when it runs on this machine, so each run can say
//! what one request cost the server whatever the client cost and however many cores there are.

use anyhow::{bail, Context};
use serde::Serialize;

/// Clock ticks per second of /proc's utime and stime (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// A server process on this machine.
pub struct Server {
    stat: String,
}

impl Server {
    /// Checks that the process exists and its CPU time can be read.
    pub fn new(pid: u32) -> anyhow::Result<Self> {
        let s = Self { stat: format!("/proc/{pid}/stat") };
        s.cpu_seconds().with_context(|| format!("--server-pid {pid}"))?;
        Ok(s)
    }

    /// User plus system CPU seconds of every thread the process has had.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let text = std::fs::read_to_string(&self.stat).with_context(|| format!("reading {}", self.stat))?;
        parse_stat(&text)
    }
}

/// utime + stime from the text of /proc/PID/stat, in seconds.
fn parse_stat(text: &str) -> anyhow::Result<f64> {
    // The command name is in parentheses and may hold spaces; fields count from after it.
    let Some(rest) = text.rfind(')').map(|i| &text[i + 1..]) else { bail!("no command name in /proc stat") };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the stat line (utime, stime) are the 12th and 13th after the name.
    let tick = |i: usize| -> anyhow::Result<u64> {
        fields.get(i).context("short /proc stat line")?.parse::<u64>().context("a CPU time in /proc stat is not a number")
    };
    Ok((tick(11)? + tick(12)?) as f64 / TICKS_PER_SECOND)
}

/// The server's CPU use over one run.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Which run.
    pub name: String,
    /// CPU seconds the server used during the run.
    pub cpu_seconds: f64,
    /// Requests sent in the run (for a lifecycle, decisions and events).
    pub requests: u64,
    /// Server CPU microseconds per request.
    pub micros_per_request: f64,
    /// Cores the server kept busy on average.
    pub cores: f64,
}

impl Usage {
    /// `cpu` seconds for `requests` requests over `seconds` of wall time.
    pub fn of(name: &str, cpu: f64, requests: u64, seconds: f64) -> Self {
        Self {
            name: name.to_string(),
            cpu_seconds: cpu,
            requests,
            micros_per_request: cpu * 1e6 / requests.max(1) as f64,
            cores: cpu / seconds.max(1e-9),
        }
    }

    /// One line of the table output.
    pub fn line(&self) -> String {
        format!(
            "server CPU, {}: {:.2} s for {} requests = {:.1} µs per request ({:.2} cores busy)",
            self.name, self.cpu_seconds, self.requests, self.micros_per_request, self.cores
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utime_and_stime_come_after_the_command_name() {
        // A real line of /proc/PID/stat, with a command name holding a space and a parenthesis.
        let line = "4242 (my (srv) x) S 1 4242 4242 0 -1 4194560 2135 0 0 0 250 75 0 0 20 0 9 0 123 1234567 890 18446744073709551615";
        assert_eq!(parse_stat(line).unwrap(), 3.25);
        assert!(parse_stat("4242 (x) S 1").is_err());
        assert!(parse_stat("no name").is_err());
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        let me = Server::new(std::process::id()).unwrap();
        let mut x = 0u64;
        let start = me.cpu_seconds().unwrap();
        while me.cpu_seconds().unwrap() < start + 0.02 {
            x = x.wrapping_add(1);
        }
        assert!(x > 0);
        assert!(Server::new(u32::MAX).is_err());
    }

    #[test]
    fn usage_divides_by_requests_and_wall_time() {
        let u = Usage::of("lifecycle", 2.0, 4000, 4.0);
        assert_eq!(u.micros_per_request, 500.0);
        assert_eq!(u.cores, 0.5);
        assert!(u.line().contains("500.0 µs per request"));
    }
}
