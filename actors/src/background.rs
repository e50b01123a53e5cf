//! Background threads (the snapshotter, training runs) yield the CPU to requests: on Linux each
//! lowers its own scheduling priority when it starts, and the snapshotter lowers sled's IO
//! threads' too.

/// The nice value background threads take (0 is the default, 19 the lowest priority).
pub const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority to [`BACKGROUND_NICE`], so that on a busy
/// machine request threads get the CPU first. Threads it starts later inherit the value. A
/// refusal is logged; elsewhere than Linux nothing changes.
pub fn lower_priority(thread: &str) {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), BACKGROUND_NICE) {
        tracing::warn!(thread, error = %e, "could not lower the thread's scheduling priority");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = thread;
}

/// Lowers to [`BACKGROUND_NICE`] the scheduling priority of this process's threads whose name
/// starts with `prefix` and that are not there yet, and returns how many it lowered. For threads
/// a library starts itself, such as sled's IO threads, which take the priority of whichever
/// thread first used the library (at start-up, the main thread). A thread that ends meanwhile is
/// skipped; other refusals are logged. Elsewhere than Linux nothing changes.
pub(crate) fn lower_priority_of_threads(prefix: &str) -> usize {
    #[cfg(target_os = "linux")]
    {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
        let mut lowered = 0;
        for task in tasks.flatten() {
            let named = std::fs::read_to_string(task.path().join("comm")).is_ok_and(|name| name.starts_with(prefix));
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()).and_then(rustix::process::Pid::from_raw) else {
                continue;
            };
            if !named || rustix::process::getpriority_process(Some(tid)).is_ok_and(|nice| nice >= BACKGROUND_NICE) {
                continue;
            }
            match rustix::process::setpriority_process(Some(tid), BACKGROUND_NICE) {
                Ok(()) => lowered += 1,
                Err(rustix::io::Errno::SRCH) => {}
                Err(e) => tracing::warn!(prefix, error = %e, "could not lower a thread's scheduling priority"),
            }
        }
        lowered
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = prefix;
        0
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn nice_of(tid: rustix::process::Pid) -> i32 {
        rustix::process::getpriority_process(Some(tid)).unwrap()
    }

    #[test]
    fn threads_named_with_the_prefix_are_lowered_and_others_are_left_alone() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let stop_rx = std::sync::Arc::new(std::sync::Mutex::new(stop_rx));
        let spawn = |name: &str| {
            let (tx, stop_rx) = (tx.clone(), stop_rx.clone());
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    tx.send(rustix::thread::gettid()).unwrap();
                    let _ = stop_rx.lock().unwrap().recv();
                })
                .unwrap()
        };
        let threads = [spawn("bg-test-io-0"), spawn("bg-test-io-1"), spawn("bg-test-other")];
        let tids: Vec<_> = (0..3).map(|_| rx.recv().unwrap()).collect();
        // A thread's name is set from inside it, before it reports its id.
        let mut by_name: Vec<(String, rustix::process::Pid)> =
            tids.iter().map(|&t| (std::fs::read_to_string(format!("/proc/self/task/{}/comm", t.as_raw_nonzero())).unwrap(), t)).collect();
        by_name.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(lower_priority_of_threads("bg-test-io"), 2);
        assert_eq!(by_name.iter().map(|(_, t)| nice_of(*t)).collect::<Vec<_>>(), [BACKGROUND_NICE, BACKGROUND_NICE, 0], "{by_name:?}");
        assert_eq!(lower_priority_of_threads("bg-test-io"), 0, "already lowered");
        drop(stop_tx);
        for t in threads {
            t.join().unwrap();
        }
    }
}
