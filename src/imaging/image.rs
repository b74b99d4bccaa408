//! A single-channel image in modality units (after the modality LUT), row-major, f32.
//!
//! f32 represents every integer up to 2^24 exactly, so 16-bit stored values pass through unchanged:
//! there is no 8-bit quantisation anywhere before display.

/// A single-channel image in modality space (Rescale Slope/Intercept already applied).
#[derive(Clone, Debug, PartialEq)]
pub struct ScalarImage {
    pub width: u32,
    pub height: u32,
    /// Row-major, `width * height` values.
    pub values: Vec<f32>,
}

/// A colour image in modality units, row-major, interleaved R, G, B (`3 * width * height` values).
/// Kept beside the luminance `ScalarImage` of the same image: the viewer shows this one, the models
/// and measurements use the luminance.
#[derive(Clone, Debug, PartialEq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub values: Vec<f32>,
}

impl RgbImage {
    /// Builds a colour image, checking that the value count is three per pixel.
    pub fn new(width: u32, height: u32, values: Vec<f32>) -> Option<Self> {
        (width as usize)
            .checked_mul(height as usize)
            .and_then(|n| n.checked_mul(3))
            .filter(|&n| n == values.len() && n > 0)?;
        Some(Self {
            width,
            height,
            values,
        })
    }

    /// R, G, B at integer pixel (x, y); `None` outside the image.
    pub fn get(&self, x: i64, y: i64) -> Option<[f32; 3]> {
        if x < 0 || y < 0 || x >= self.width as i64 || y >= self.height as i64 {
            return None;
        }
        let i = 3 * (y as usize * self.width as usize + x as usize);
        self.values.get(i..i + 3).map(|c| [c[0], c[1], c[2]])
    }

    /// Rec. 601 luminance (0.299 R + 0.587 G + 0.114 B), what the models and measurements see.
    pub fn luminance(&self) -> ScalarImage {
        use rayon::prelude::*;
        let values = self
            .values
            .par_chunks_exact(3)
            .map(|c| 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2])
            .collect();
        ScalarImage {
            width: self.width,
            height: self.height,
            values,
        }
    }

    /// True when every pixel has R = G = B (a grey image stored as colour).
    pub fn is_grey(&self) -> bool {
        use rayon::prelude::*;
        self.values
            .par_chunks_exact(3)
            .all(|c| c[0] == c[1] && c[1] == c[2])
    }
}

/// Summary statistics used for default windows and presets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ValueStats {
    pub min: f32,
    pub max: f32,
    /// 1st and 99th percentiles (robust window for images without a stored window).
    pub p01: f32,
    pub p99: f32,
}

impl ScalarImage {
    /// Builds an image, checking that the value count matches the size.
    pub fn new(width: u32, height: u32, values: Vec<f32>) -> Option<Self> {
        (width as usize)
            .checked_mul(height as usize)
            .filter(|&n| n == values.len() && n > 0)?;
        Some(Self {
            width,
            height,
            values,
        })
    }

    /// Value at integer pixel (x, y); `None` outside the image.
    pub fn get(&self, x: i64, y: i64) -> Option<f32> {
        if x < 0 || y < 0 || x >= self.width as i64 || y >= self.height as i64 {
            return None;
        }
        self.values
            .get(y as usize * self.width as usize + x as usize)
            .copied()
    }

    /// Min, max and 1st/99th percentiles from a 4096-bin histogram over finite values.
    pub fn stats(&self) -> ValueStats {
        use rayon::prelude::*;
        // Chunks of 64 k values in parallel: min/max, then one 4096-bin histogram per chunk, summed.
        const CHUNK: usize = 1 << 16;
        let (min, max) = self
            .values
            .par_chunks(CHUNK)
            .map(|c| {
                let (lo, hi) = min_max_ignoring_nan(c);
                if lo.is_finite() && hi.is_finite() {
                    (lo, hi)
                } else {
                    // Infinities are dropped (rare: float pixel data).
                    c.iter()
                        .filter(|v| v.is_finite())
                        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                            (lo.min(v), hi.max(v))
                        })
                }
            })
            .reduce(
                || (f32::INFINITY, f32::NEG_INFINITY),
                |a, b| (a.0.min(b.0), a.1.max(b.1)),
            );
        if !min.is_finite() {
            return ValueStats::NO_VALUES;
        }
        let span = (max - min).max(f32::MIN_POSITIVE);
        let scale = (BINS - 1) as f32 / span;
        let hist = self
            .values
            .par_chunks(CHUNK)
            .map(|c| histogram::<BINS>(c, min, max, scale))
            .reduce(
                || vec![0u64; BINS],
                |mut a, b| {
                    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                    a
                },
            );
        percentiles(min, max, &hist)
    }
}

/// Bins of the statistics histogram.
const BINS: usize = 4096;

/// 1st and 99th percentiles (bin centres) of a `BINS`-bin histogram over `[min, max]`.
fn percentiles(min: f32, max: f32, hist: &[u64]) -> ValueStats {
    let span = (max - min).max(f32::MIN_POSITIVE);
    let count: u64 = hist.iter().sum();
    let value_at = |fraction: f64| -> f32 {
        let target = (fraction * count as f64).ceil().max(1.0) as u64;
        let mut acc = 0u64;
        for (i, &h) in hist.iter().enumerate() {
            acc += h;
            if acc >= target {
                return min + span * (i as f32 + 0.5) / (BINS - 1) as f32;
            }
        }
        max
    };
    ValueStats {
        min,
        max,
        p01: value_at(0.01).clamp(min, max),
        p99: value_at(0.99).clamp(min, max),
    }
}

impl ValueStats {
    /// The statistics of an image without a finite value: a unit range, so windows stay valid.
    pub const NO_VALUES: ValueStats = ValueStats {
        min: 0.0,
        max: 1.0,
        p01: 0.0,
        p99: 1.0,
    };

    /// The statistics `ScalarImage::stats` gives for an image holding each `value` `count` times:
    /// for images whose values come from a lookup table, counted by table entry while converting.
    pub fn from_counts(counts: &[(f32, u64)]) -> Self {
        let present = || {
            counts
                .iter()
                .filter(|(v, n)| *n > 0 && v.is_finite())
                .copied()
        };
        let (min, max) = present().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), (v, _)| {
            (lo.min(v), hi.max(v))
        });
        if !min.is_finite() {
            return ValueStats::NO_VALUES;
        }
        let span = (max - min).max(f32::MIN_POSITIVE);
        let scale = (BINS - 1) as f32 / span;
        let mut hist = vec![0u64; BINS];
        for (v, n) in present() {
            hist[(((v - min) * scale) as usize).min(BINS - 1)] += n;
        }
        percentiles(min, max, &hist)
    }
}

/// The 4-neighbours (left, right, up, down) of pixel index `i` in a `w` × `h` row-major grid that lie
/// inside it: the step of every flood fill over masks.
pub fn neighbours4(i: usize, w: usize, h: usize) -> impl Iterator<Item = usize> {
    let (x, y) = (i % w, i / w);
    [
        (x > 0).then(|| i - 1),
        (x + 1 < w).then(|| i + 1),
        (y > 0).then(|| i - w),
        (y + 1 < h).then(|| i + w),
    ]
    .into_iter()
    .flatten()
}

/// Smallest and largest value of `c`, NaN skipped (`f32::min`/`max` return the other operand), in
/// 16 independent lanes so the loop vectorises.
fn min_max_ignoring_nan(c: &[f32]) -> (f32, f32) {
    const LANES: usize = 16;
    let mut lo = [f32::INFINITY; LANES];
    let mut hi = [f32::NEG_INFINITY; LANES];
    let chunks = c.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for i in 0..LANES {
            lo[i] = lo[i].min(chunk[i]);
            hi[i] = hi[i].max(chunk[i]);
        }
    }
    let mut out = (f32::INFINITY, f32::NEG_INFINITY);
    for (&l, &h) in lo.iter().zip(&hi) {
        out = (out.0.min(l), out.1.max(h));
    }
    for &v in rest {
        out = (out.0.min(v), out.1.max(v));
    }
    out
}

/// Counts of `c`'s values in `[min, max]` (finite bounds, so NaN and infinities fall out) over
/// `BINS` equal bins. Four interleaved sub-histograms, so runs of one value (common in radiographs:
/// collimation, background) do not serialise on one counter.
fn histogram<const BINS: usize>(c: &[f32], min: f32, max: f32, scale: f32) -> Vec<u64> {
    let mut h = vec![[0u32; 4]; BINS];
    let bin = |v: f32| (((v - min) * scale) as usize).min(BINS - 1);
    let chunks = c.chunks_exact(4);
    let rest = chunks.remainder();
    for q in chunks {
        for (k, &v) in q.iter().enumerate() {
            if v >= min && v <= max {
                h[bin(v)][k] += 1;
            }
        }
    }
    for &v in rest {
        if v >= min && v <= max {
            h[bin(v)][0] += 1;
        }
    }
    h.iter()
        .map(|b| b.iter().map(|&n| n as u64).sum())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgb_luminance_uses_rec601_weights_and_grey_is_detected() {
        assert!(RgbImage::new(2, 1, vec![0.0; 5]).is_none());
        let rgb = RgbImage::new(2, 1, vec![255.0, 0.0, 0.0, 10.0, 10.0, 10.0]).unwrap();
        let lum = rgb.luminance();
        assert!((lum.values[0] - 76.245).abs() < 1e-3);
        assert!((lum.values[1] - 10.0).abs() < 1e-4);
        assert_eq!(rgb.get(0, 0), Some([255.0, 0.0, 0.0]));
        assert_eq!(rgb.get(2, 0), None);
        assert!(!rgb.is_grey());
        assert!(RgbImage::new(1, 1, vec![7.0; 3]).unwrap().is_grey());
    }

    #[test]
    fn stats_from_counts_equal_stats_of_the_expanded_image() {
        // A skewed 15-bit-like distribution with repeats, negatives and a long tail.
        let counts: Vec<(f32, u64)> = (0..3000u64)
            .map(|i| {
                (
                    i as f32 * 1.5 - 700.0,
                    (i * 7919) % 13 + u64::from(i % 97 == 0) * 500,
                )
            })
            .collect();
        let expanded: Vec<f32> = counts
            .iter()
            .flat_map(|&(v, n)| std::iter::repeat_n(v, n as usize))
            .collect();
        let n = expanded.len() as u32;
        let image = ScalarImage::new(n, 1, expanded).unwrap();
        assert_eq!(ValueStats::from_counts(&counts), image.stats());
        // Entries that never occur do not widen the range.
        let mut with_unused = counts.clone();
        with_unused.push((1e6, 0));
        assert_eq!(ValueStats::from_counts(&with_unused).max, image.stats().max);
    }

    #[test]
    fn neighbours_stay_inside_the_grid() {
        // 3 × 2: index 0 is a corner, 4 is on the bottom edge.
        assert_eq!(neighbours4(0, 3, 2).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(neighbours4(4, 3, 2).collect::<Vec<_>>(), vec![3, 5, 1]);
    }

    #[test]
    fn new_rejects_wrong_length_and_empty() {
        assert!(ScalarImage::new(2, 2, vec![0.0; 3]).is_none());
        assert!(ScalarImage::new(0, 0, vec![]).is_none());
        assert!(ScalarImage::new(2, 2, vec![0.0; 4]).is_some());
    }

    #[test]
    fn stats_leave_out_nan_and_infinities() {
        let mut values: Vec<f32> = (1..=200_000).map(|v| (v % 100 + 1) as f32).collect();
        values[7] = f32::NAN;
        values[70_000] = f32::INFINITY;
        values[140_000] = f32::NEG_INFINITY;
        let s = ScalarImage::new(1000, 200, values).unwrap().stats();
        assert_eq!((s.min, s.max), (1.0, 100.0));
        // 2,000 of the 199,997 finite values are 1 (the 1st percentile) and 2,000 are 100; the 99th
        // percentile falls at the 99/100 boundary (hand count: 197,997 values ≤ 99, target 197,998).
        assert!((s.p01 - 1.0).abs() < 0.1, "p01 = {}", s.p01);
        assert!((99.9..=100.0).contains(&s.p99), "p99 = {}", s.p99);
        let all_nan = ScalarImage::new(2, 1, vec![f32::NAN, f32::INFINITY])
            .unwrap()
            .stats();
        assert_eq!((all_nan.min, all_nan.max), (0.0, 1.0));
    }

    #[test]
    fn stats_of_a_ramp() {
        let values: Vec<f32> = (0..1000).map(|v| v as f32).collect();
        let img = ScalarImage::new(100, 10, values).unwrap();
        let s = img.stats();
        assert_eq!((s.min, s.max), (0.0, 999.0));
        assert!((s.p01 - 10.0).abs() < 2.0, "p01 = {}", s.p01);
        assert!((s.p99 - 989.0).abs() < 2.0, "p99 = {}", s.p99);
        assert_eq!(img.get(5, 3), Some(305.0));
        assert_eq!(img.get(100, 0), None);
        assert_eq!(img.get(-1, 0), None);
    }
}
