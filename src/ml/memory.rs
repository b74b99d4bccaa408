//! How the C allocator treats tensor-sized buffers.
//!
//! A training step allocates and frees hundreds of buffers of 1–100 MB (activations, im2col
//! columns, gradients). glibc's defaults map each one large enough freshly from the kernel and
//! return free memory at the top of the heap as soon as it exceeds a few tens of MB, so the next
//! step takes a page fault on every 4 KiB page it touches again and the kernel zeroes each page:
//! `perf` put 10 % of a lung-network training step on the CPU backend in page faults. Raising the
//! mmap and trim thresholds keeps freed buffers in the process for the next step, as PyTorch's
//! and burn's GPU allocators do with their pools. The cost: up to [`TRIM_THRESHOLD`] bytes of
//! freed memory may stay with the process instead of going back to the system.

/// Buffers up to this size come from the heap (and are reused) instead of their own mapping.
pub const MMAP_THRESHOLD: usize = 256 << 20;
/// Free memory at the top of the heap is returned to the system only beyond this.
pub const TRIM_THRESHOLD: usize = 512 << 20;

/// Every thread allocates from the main heap, where the thresholds above hold. A thread's own
/// arena (glibc gives each new thread one, up to eight per core) grows in heaps of at most 64 MiB,
/// maps larger buffers afresh, and hands freed pages back: `perf` showed a training step driven
/// from a pool thread (`ml::device::on_compute_threads`) spending 4.7 % of its samples in the
/// TLB-flush interrupts of copy-on-write faults on freshly mapped zero pages. Alternated runs, lung
/// U-Net 128² batch 8 on flex, 2 threads: step 149 → 143 ms (driven from the main thread) and
/// 160 → 142 ms (from a pool thread). Buffers are allocated per tensor operation, not per element,
/// so the one lock is not contended.
pub const ARENAS: usize = 1;

/// Applies the settings above; call once at start-up, before worker threads exist. Returns
/// whether the allocator accepted them (always false where the C library is not glibc).
pub fn keep_freed_buffers() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes glibc's malloc parameters; called before other threads
        // allocate.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int) == 1
                && libc::mallopt(libc::M_ARENA_MAX, ARENAS as libc::c_int) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Minor page faults the calling thread has taken so far (`getrusage(RUSAGE_THREAD)`); `None`
/// where that is not available. For tests and measurements of the settings above.
pub fn thread_minor_faults() -> Option<i64> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getrusage writes into the zeroed struct it is given.
        unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            (libc::getrusage(libc::RUSAGE_THREAD, &mut usage) == 0).then_some(usage.ru_minflt)
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minor page faults taken by this thread so far.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn page_faults() -> i64 {
        thread_minor_faults().expect("getrusage")
    }

    /// Allocates four 6 MiB buffers, writes them and frees them; returns the page faults taken.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn cycle() -> i64 {
        let before = page_faults();
        let buffers: Vec<Vec<u8>> = (0..4u8)
            .map(|i| std::hint::black_box(vec![i + 1; 6 << 20]))
            .collect();
        assert!(buffers.iter().all(|b| b[b.len() - 1] != 0));
        drop(buffers);
        page_faults() - before
    }

    /// What a training step does to the allocator, in small: buffers of several MiB allocated,
    /// written and freed, again and again. With glibc's defaults every round maps and faults in
    /// its pages afresh (measured here: 4,576–6,144 faults of 6,144 pages in the third round, on
    /// a main and a worker thread); with the thresholds set, the third round reuses the memory
    /// of the first (0–1 faults).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_tensor_sized_buffers_are_reused_without_page_faults() {
        assert!(keep_freed_buffers());
        cycle();
        cycle();
        let faults = cycle();
        let pages = 4 * (6 << 20) / 4096;
        assert!(
            faults < pages / 10,
            "{faults} page faults for {pages} pages"
        );
    }
}
