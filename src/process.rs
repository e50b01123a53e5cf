//! Settings of the whole process: whether the kernel may back its memory with transparent huge
//! pages.

/// Lets the kernel back this process's memory with transparent huge pages (2 MB), or not
/// (`server.transparent_huge_pages`, off by default). The allocator asks for huge pages for its
/// segments, and on Linux each first touch of one then zeroes 2 MB inside a request; on the
/// development machine that put tens of milliseconds into the open loop's p99 (PERFORMANCE.md).
/// Process-wide (`prctl(PR_SET_THP_DISABLE)`), for memory touched from now on; elsewhere than
/// Linux it does nothing.
pub fn transparent_huge_pages(enabled: bool) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    rustix::thread::disable_transparent_huge_pages(!enabled)?;
    #[cfg(not(target_os = "linux"))]
    let _ = enabled;
    Ok(())
}
