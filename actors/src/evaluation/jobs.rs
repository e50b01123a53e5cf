//! Evaluation jobs: each runs on a background thread of lowered priority and is kept in memory
//! (the last [`KEPT`]) for its owner to poll; a restart forgets them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::Serialize;

use super::{Evaluation, Progress};

/// Jobs kept, finished or not.
pub const KEPT: usize = 64;

/// Jobs running at once (each takes a core while it replays).
pub const MAX_RUNNING: usize = 2;

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = JobStatus)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Replaying the journal.
    Running,
    /// Finished: the result is there.
    Done,
    /// Stopped with an error.
    Failed,
}

/// A job as its owner sees it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    /// Job id.
    pub id: String,
    /// Where it is.
    pub status: Status,
    /// Share of the journal read, 0–1.
    pub progress: f64,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The result, once done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Box<Evaluation>>,
}

/// A running job's progress counters.
#[derive(Default)]
pub struct Counter {
    total: AtomicU64,
    done: AtomicU64,
}

impl Progress for Counter {
    fn total(&self, records: u64) {
        self.total.store(records, Ordering::Relaxed);
    }
    fn done(&self, records: u64) {
        self.done.store(records, Ordering::Relaxed);
    }
}

struct Job {
    view: JobView,
    counter: Arc<Counter>,
}

/// The jobs of one engine.
#[derive(Default)]
pub struct Jobs {
    jobs: Mutex<BTreeMap<String, Job>>,
    next: AtomicU64,
}

impl Jobs {
    /// Registers a new running job and returns its id and progress counter; the oldest finished
    /// job goes when more than [`KEPT`] are held.
    pub fn start(&self, now: DateTime<Utc>) -> (String, Arc<Counter>) {
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let id = format!("eval-{}-{n}", now.format("%Y%m%d%H%M%S"));
        let counter = Arc::new(Counter::default());
        let mut jobs = self.jobs.lock();
        if jobs.len() >= KEPT {
            let oldest = jobs
                .iter()
                .filter(|(_, j)| j.view.status != Status::Running)
                .min_by_key(|(_, j)| j.view.started_at)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                jobs.remove(&k);
            }
        }
        let view = JobView {
            id: id.clone(),
            status: Status::Running,
            progress: 0.0,
            started_at: now,
            finished_at: None,
            error: None,
            result: None,
        };
        jobs.insert(id.clone(), Job { view, counter: counter.clone() });
        (id, counter)
    }

    /// Whether another job may start: fewer than [`MAX_RUNNING`] are running.
    pub fn has_room(&self) -> bool {
        self.jobs.lock().values().filter(|j| j.view.status == Status::Running).count() < MAX_RUNNING
    }

    /// Records a job's end.
    pub fn finish(&self, id: &str, now: DateTime<Utc>, result: std::result::Result<Evaluation, String>) {
        if let Some(j) = self.jobs.lock().get_mut(id) {
            j.view.finished_at = Some(now);
            j.view.progress = 1.0;
            match result {
                Ok(e) => {
                    j.view.status = Status::Done;
                    j.view.result = Some(Box::new(e));
                }
                Err(e) => {
                    j.view.status = Status::Failed;
                    j.view.error = Some(e);
                }
            }
        }
    }

    /// A job as it is now.
    pub fn get(&self, id: &str) -> Option<JobView> {
        let jobs = self.jobs.lock();
        let j = jobs.get(id)?;
        let mut v = j.view.clone();
        if v.status == Status::Running {
            let (t, d) = (j.counter.total.load(Ordering::Relaxed), j.counter.done.load(Ordering::Relaxed));
            v.progress = if t > 0 { (d as f64 / t as f64).min(1.0) } else { 0.0 };
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_report_progress_then_their_end_and_make_room() {
        let jobs = Jobs::default();
        let t = chrono::DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let (a, counter) = jobs.start(t);
        counter.total(200);
        counter.done(50);
        assert_eq!(jobs.get(&a).unwrap().progress, 0.25);
        let (b, _) = jobs.start(t);
        assert!(!jobs.has_room(), "{MAX_RUNNING} running");
        jobs.finish(&b, t, Err("journal corrupt".into()));
        let v = jobs.get(&b).unwrap();
        assert_eq!((v.status, v.error.as_deref(), v.progress), (Status::Failed, Some("journal corrupt"), 1.0));
        assert!(jobs.has_room());
        assert!(jobs.get("eval-none").is_none());
        // Finished jobs give way to new ones past the limit; running ones stay.
        for _ in 0..KEPT {
            let (id, _) = jobs.start(t);
            jobs.finish(&id, t, Err("x".into()));
        }
        assert!(jobs.get(&a).is_some(), "a running job is never dropped");
        assert!(jobs.jobs.lock().len() <= KEPT);
    }
}
