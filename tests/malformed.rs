//! A generated malformed corpus, replayed through the app's load-from-bytes function
//! (`io::load_image_bytes`, the fuzz target's entry point): every file of `../shared/data/dicom` and
//! `dicom-zoo` truncated at 100+ offsets, with bytes flipped, with absurd Rows / Columns / Number of
//! Frames, and with a wrong transfer syntax; plus the minimised crashers of the fuzzing runs
//! (`tests/fixtures/fuzz-crashers/`). Each input must give an image or a `LoadError` — never a panic
//! (a caught codec panic still counts as a failure here), and no single allocation above a fixed cap.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use cxrlens::io::{LoadError, load_image_bytes};

/// Largest single allocation any input may cause: the 1 GiB pixel-data cap of `io` plus slack for
/// the f32 frame of a 100-megapixel image is far below this; a declared 4 GB element is not.
const ALLOCATION_CAP: usize = 1_200_000_000;

struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);
/// Where the first allocation over the cap came from (with CXRLENS_ALLOC_TRACE=1).
static TRACE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
static TRACING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

thread_local! {
    static INSIDE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn record(size: usize) {
    LARGEST.fetch_max(size, Ordering::Relaxed);
    if size > ALLOCATION_CAP && TRACING.load(Ordering::Relaxed) && !INSIDE.with(|i| i.replace(true))
    {
        let trace = std::backtrace::Backtrace::force_capture().to_string();
        if let Ok(mut t) = TRACE.lock() {
            t.get_or_insert(trace);
        }
        INSIDE.with(|i| i.set(false));
    }
}

// SAFETY: forwards to the system allocator; only records the largest request.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for folder in ["dicom", "dicom-zoo"] {
        let dir = common::shared_data().join(folder);
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
            .collect();
        names.sort();
        for p in names {
            let name = format!("{folder}/{}", p.file_name().unwrap().to_string_lossy());
            out.push((name, std::fs::read(&p).unwrap()));
        }
    }
    assert!(out.len() >= 40, "every shared DICOM is a seed");
    out
}

/// A small deterministic generator (xorshift64*), so a failure names a reproducible input.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Position of an element's value in an explicit-VR-LE header (tag bytes then VR), if present.
fn find_element(bytes: &[u8], group: u16, element: u16, vr: &[u8; 2]) -> Option<usize> {
    let mut key = Vec::new();
    key.extend(group.to_le_bytes());
    key.extend(element.to_le_bytes());
    key.extend(vr);
    bytes
        .windows(6)
        .position(|w| w == key.as_slice())
        .map(|p| p + 8)
}

/// Same-length replacements for a transfer syntax UID (so the meta group's lengths stay valid).
const SWAPS: [&[&str]; 2] = [
    &[
        "1.2.840.10008.1.2.1\0",
        "1.2.840.10008.1.2.2\0",
        "1.2.840.10008.1.2.5\0",
    ],
    &[
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80",
        "1.2.840.10008.1.2.4.81",
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.91",
    ],
];

fn mutations(seed: &[u8], rng: &mut Rng) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    // Truncation at 120 offsets spread over the file, plus the first 64 bytes one by one.
    let len = seed.len();
    let mut cuts: Vec<usize> = (0..120).map(|i| i * len / 120).collect();
    cuts.extend(0..64.min(len));
    cuts.sort_unstable();
    cuts.dedup();
    for cut in cuts {
        out.push((format!("truncated at {cut}"), seed[..cut].to_vec()));
    }
    // Bit flips: in the header region and anywhere (fewer for the big radiographs).
    let flips = if len > 1_000_000 { 6 } else { 40 };
    for i in 0..flips {
        let mut m = seed.to_vec();
        let n = 1 + rng.below(8);
        for _ in 0..n {
            let at = if i % 2 == 0 {
                rng.below(len.min(4096))
            } else {
                rng.below(len)
            };
            m[at] ^= 1 << rng.below(8);
        }
        out.push((format!("bit flips #{i}"), m));
    }
    // Absurd sizes.
    for (group, element, vr, value) in [
        (
            0x0028u16,
            0x0010u16,
            b"US",
            0xFFFFu16.to_le_bytes().to_vec(),
        ),
        (0x0028, 0x0011, b"US", 0xFFFFu16.to_le_bytes().to_vec()),
        (0x0028, 0x0010, b"US", 0u16.to_le_bytes().to_vec()),
        (0x0028, 0x0100, b"US", 64u16.to_le_bytes().to_vec()),
        (0x0028, 0x0002, b"US", 4u16.to_le_bytes().to_vec()),
    ] {
        if let Some(at) = find_element(seed, group, element, vr) {
            let mut m = seed.to_vec();
            m[at..at + value.len()].copy_from_slice(&value);
            out.push((format!("({group:04X},{element:04X}) = {value:?}"), m));
        }
    }
    if let Some(at) = find_element(seed, 0x0028, 0x0008, b"IS") {
        let vlen = u16::from_le_bytes([seed[at - 2], seed[at - 1]]) as usize;
        for text in ["9999999999999", "-3", "0", "2147483647"] {
            let mut m = seed.to_vec();
            let mut v = text.as_bytes().to_vec();
            v.resize(vlen, b' ');
            m[at..at + vlen].copy_from_slice(&v[..vlen]);
            out.push((format!("NumberOfFrames {text}"), m));
        }
    }
    // A wrong transfer syntax of the same length.
    if let Some(at) = find_element(seed, 0x0002, 0x0010, b"UI") {
        let vlen = u16::from_le_bytes([seed[at - 2], seed[at - 1]]) as usize;
        for group in SWAPS {
            if group[0].len() != vlen {
                continue;
            }
            for uid in group {
                if &seed[at..at + vlen] != uid.as_bytes() {
                    let mut m = seed.to_vec();
                    m[at..at + vlen].copy_from_slice(uid.as_bytes());
                    out.push((format!("transfer syntax {}", uid.trim_end_matches('\0')), m));
                }
            }
        }
    }
    out
}

fn replay(label: &str, bytes: &[u8], failures: &mut Vec<String>) -> bool {
    LARGEST.store(0, Ordering::Relaxed);
    let result = std::panic::catch_unwind(|| load_image_bytes(bytes, "malformed.dcm", 0));
    let largest = LARGEST.load(Ordering::Relaxed);
    match &result {
        Err(_) => failures.push(format!("{label}: panicked")),
        Ok(Err(LoadError::Decode { detail, .. })) if detail.contains("decoder failed") => {
            failures.push(format!("{label}: a codec panicked (caught): {detail}"))
        }
        Ok(Err(e)) if e.to_string().trim().is_empty() => {
            failures.push(format!("{label}: an error without a message"))
        }
        Ok(_) => {}
    }
    if largest > ALLOCATION_CAP {
        let trace = TRACE
            .lock()
            .ok()
            .and_then(|mut t| t.take())
            .unwrap_or_default();
        failures.push(format!("{label}: allocated {largest} bytes at once{trace}"));
    }
    result.is_ok_and(|r| r.is_ok())
}

#[test]
fn the_malformed_corpus_gives_errors_not_panics_or_huge_allocations() {
    // One test in this binary, so the allocation counter sees only this work.
    TRACING.store(
        std::env::var_os("CXRLENS_ALLOC_TRACE").is_some(),
        Ordering::Relaxed,
    );
    let mut rng = Rng(0x5EED_C0FF_EE15_600D);
    let mut failures = Vec::new();
    let (mut inputs, mut decoded) = (0usize, 0usize);
    for (name, seed) in seeds() {
        for (what, bytes) in mutations(&seed, &mut rng) {
            inputs += 1;
            decoded += replay(&format!("{name}, {what}"), &bytes, &mut failures) as usize;
        }
    }
    let crashers = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz-crashers");
    if let Ok(entries) = std::fs::read_dir(&crashers) {
        for e in entries.flatten() {
            inputs += 1;
            let bytes = std::fs::read(e.path()).unwrap();
            replay(
                &format!("crasher {}", e.file_name().to_string_lossy()),
                &bytes,
                &mut failures,
            );
        }
    }
    eprintln!("{inputs} malformed inputs replayed, {decoded} still decoded to an image");
    assert!(inputs > 5000, "only {inputs} inputs");
    assert!(
        failures.is_empty(),
        "{} of {inputs} inputs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
