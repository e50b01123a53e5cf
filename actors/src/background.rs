//! Background threads (the snapshotter, training runs) yield the CPU to requests: on Linux each
//! lowers its own scheduling priority when it starts.

/// The nice value background threads take (0 is the default, 19 the lowest priority).
pub const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority to [`BACKGROUND_NICE`], so that on a busy
/// machine request threads get the CPU first. Threads it starts later inherit the value. A
/// refusal is logged; elsewhere than Linux nothing changes.
pub(crate) fn lower_priority(thread: &str) {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), BACKGROUND_NICE) {
        tracing::warn!(thread, error = %e, "could not lower the thread's scheduling priority");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = thread;
}
