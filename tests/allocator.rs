//! glibc's malloc as `ml::memory::keep_freed_buffers` sets it, seen from a thread other than the
//! main one (the trainers drive their networks from a pool thread, `ml::device::on_compute_threads`).
//! A file of its own: one test in its own process, so no other test's threads have made arenas
//! after the settings were applied.

/// Allocates a 96 MiB buffer (more than a glibc thread heap's 64 MiB), writes it and frees it;
/// returns the page faults taken.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn cycle(fill: u8) -> i64 {
    let faults = || cxrlens::ml::memory::thread_minor_faults().expect("getrusage");
    let before = faults();
    let buffer = std::hint::black_box(vec![fill; 96 << 20]);
    assert_eq!(buffer[buffer.len() - 1], fill);
    drop(buffer);
    faults() - before
}

/// With glibc's defaults a new thread gets an arena of its own, whose heaps hold at most 64 MiB:
/// a larger buffer is mapped afresh and unmapped when freed, so every round faults in all of its
/// 24,576 pages again (measured: 24,577 in the third round). With one arena the thread allocates
/// from the main heap, which keeps the freed buffer for the next round.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn a_worker_thread_reuses_a_freed_buffer_larger_than_a_thread_heap() {
    assert!(cxrlens::ml::memory::keep_freed_buffers());
    let faults = std::thread::Builder::new()
        .name("allocator-test".into())
        .spawn(|| {
            cycle(1);
            cycle(2);
            cycle(3)
        })
        .expect("spawn")
        .join()
        .expect("join");
    let pages = (96 << 20) / 4096;
    assert!(
        faults < pages / 10,
        "{faults} page faults in the third round for {pages} pages"
    );
}
