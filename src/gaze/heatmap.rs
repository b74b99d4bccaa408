//! Static gaze heatmaps, by each dataset's published recipe, at image resolution:
//!
//! - **EGD-CXR** (`create_heatmap_images_and_or_videos.py`): a count of fixations per pixel
//!   (not weighted by duration) blurred by `scipy.ndimage.gaussian_filter(sigma=150)`, i.e. a
//!   normalised Gaussian kernel truncated at 4σ with `reflect` borders. The sum of the map equals
//!   the number of fixations on the image.
//! - **REFLACX** (`generate_heatmaps.py`): per fixation a Gaussian with σ = 1° of visual angle
//!   (σx, σy = the fixation's pixels per degree), evaluated only inside the part of the image shown
//!   at that moment, weighted by the fixation's duration; the sum is normalised to 1. Tails beyond
//!   5σ (< 4·10⁻⁶ of the peak) are dropped.
//!
//! Both are sums of separable Gaussians, so the map is built row by row as Σᵢ wᵢ·gyᵢ(y)·gxᵢ(x)
//! over the fixations that reach the row: no full-image convolution, fast enough to follow a σ
//! slider on a 3k×3k image (`cargo bench --bench gaze`).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{GazeFormat, GazeRecording};
use crate::imaging::ScalarImage;

/// How to turn fixations into a map.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Recipe {
    /// Fixation counts blurred with σ pixels (EGD-CXR: 150 at DICOM resolution).
    EgdCxr { sigma_px: f32 },
    /// Duration-weighted Gaussians of `sigma_degrees` of visual angle (REFLACX: 1°);
    /// `fallback_sigma_px` when a fixation has no angular resolution.
    Reflacx {
        sigma_degrees: f32,
        fallback_sigma_px: f32,
    },
}

/// Blur widths accepted in pixels: a kernel of 4σ each side stays a few thousand taps at most.
pub const SIGMA_PX_RANGE: std::ops::RangeInclusive<f32> = 0.5..=2000.0;
/// Blur widths accepted in degrees of visual angle (REFLACX uses 1°).
pub const SIGMA_DEGREES_RANGE: std::ops::RangeInclusive<f32> = 0.05..=10.0;

impl Recipe {
    /// The dataset's published parameters.
    pub fn published(format: GazeFormat) -> Self {
        match format {
            GazeFormat::EgdCxr => Recipe::EgdCxr { sigma_px: 150.0 },
            GazeFormat::Reflacx => Recipe::Reflacx {
                sigma_degrees: 1.0,
                fallback_sigma_px: 50.0,
            },
        }
    }

    /// Refuses a blur the heatmap cannot be built with: σ must be finite and within
    /// `SIGMA_PX_RANGE` pixels (EGD-CXR, REFLACX's fallback) or `SIGMA_DEGREES_RANGE` degrees.
    pub fn check(&self) -> Result<(), String> {
        let within = |v: f32, r: &std::ops::RangeInclusive<f32>, unit: &str| {
            if v.is_finite() && r.contains(&v) {
                Ok(())
            } else {
                Err(format!(
                    "σ = {v} {unit} is outside {}–{} {unit}",
                    r.start(),
                    r.end()
                ))
            }
        };
        match *self {
            Recipe::EgdCxr { sigma_px } => within(sigma_px, &SIGMA_PX_RANGE, "px"),
            Recipe::Reflacx {
                sigma_degrees,
                fallback_sigma_px,
            } => within(sigma_degrees, &SIGMA_DEGREES_RANGE, "°")
                .and_then(|_| within(fallback_sigma_px, &SIGMA_PX_RANGE, "px")),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Recipe::EgdCxr { sigma_px } => {
                format!("EGD-CXR: fixation counts, Gaussian σ = {sigma_px:.0} px")
            }
            Recipe::Reflacx { sigma_degrees, .. } => {
                format!("REFLACX: duration-weighted Gaussians, σ = {sigma_degrees:.2}°")
            }
        }
    }
}

/// A 1-D profile that is zero outside `start .. start + values.len()`.
struct Span {
    start: usize,
    values: Vec<f32>,
}

impl Span {
    fn at(&self, i: usize) -> f32 {
        i.checked_sub(self.start)
            .and_then(|k| self.values.get(k))
            .copied()
            .unwrap_or(0.0)
    }
}

/// σ in pixels clamped to `SIGMA_PX_RANGE` (NaN to its lower end).
fn bounded_sigma(sigma: f32) -> f32 {
    if sigma.is_nan() {
        *SIGMA_PX_RANGE.start()
    } else {
        sigma.clamp(*SIGMA_PX_RANGE.start(), *SIGMA_PX_RANGE.end())
    }
}

/// scipy's Gaussian kernel: exp(−k²/2σ²) for |k| ≤ ⌊4σ + 0.5⌋, normalised to sum 1.
/// σ is held to `SIGMA_PX_RANGE` here too (callers check it with `Recipe::check` first), so no
/// value can ask for a kernel of unbounded length.
fn scipy_kernel(sigma: f32) -> Vec<f64> {
    let sigma = bounded_sigma(sigma) as f64;
    let radius = (4.0 * sigma + 0.5).floor() as i64;
    let mut k: Vec<f64> = (-radius..=radius)
        .map(|i| (-0.5 * (i * i) as f64 / (sigma * sigma)).exp())
        .collect();
    let sum: f64 = k.iter().sum();
    for v in &mut k {
        *v /= sum;
    }
    k
}

/// The response of `gaussian_filter1d(mode="reflect")` to a unit impulse at `p` on `n` samples.
/// Reflect mode is periodic with period 2n: the impulse has images at p + 2nm and 2n − 1 − p + 2nm.
fn reflected_impulse(p: usize, n: usize, kernel: &[f64]) -> Span {
    let r = (kernel.len() / 2) as i64;
    let (n_i, p_i) = (n as i64, p as i64);
    let period = 2 * n_i;
    let mut values = vec![0.0_f64; n];
    let mut m = (-r - p_i).div_euclid(period) - 1;
    loop {
        let base = m * period;
        if base - r > n_i - 1 {
            break;
        }
        for q in [p_i + base, period - 1 - p_i + base] {
            if q + r < 0 || q - r > n_i - 1 {
                continue;
            }
            for x in (q - r).max(0)..=(q + r).min(n_i - 1) {
                values[x as usize] += kernel[(q - x + r) as usize];
            }
        }
        m += 1;
    }
    trim(values)
}

fn trim(values: Vec<f64>) -> Span {
    let first = values
        .iter()
        .position(|v| *v != 0.0)
        .unwrap_or(values.len());
    let last = values
        .iter()
        .rposition(|v| *v != 0.0)
        .map_or(first, |l| l + 1);
    Span {
        start: first,
        values: values[first..last].iter().map(|v| *v as f32).collect(),
    }
}

/// exp(−(i − c)²/2σ²) for i in [lo, hi] ∩ [c − 5σ, c + 5σ], zero elsewhere.
fn gaussian_span(center: f32, sigma: f32, lo: f32, hi: f32, n: usize) -> Span {
    let sigma = bounded_sigma(sigma);
    let a = (center - 5.0 * sigma).max(lo).max(0.0).ceil() as i64;
    let b = (center + 5.0 * sigma).min(hi).min(n as f32 - 1.0).floor() as i64;
    if b < a {
        return Span {
            start: 0,
            values: Vec::new(),
        };
    }
    let values = (a..=b)
        .map(|i| {
            let d = i as f32 - center;
            (-0.5 * d * d / (sigma * sigma)).exp()
        })
        .collect();
    Span {
        start: a as usize,
        values,
    }
}

/// Σᵢ wᵢ · gyᵢ(y) · gxᵢ(x), row-parallel.
fn separable_sum(width: u32, height: u32, terms: &[(f32, Span, Span)]) -> ScalarImage {
    let (w, h) = (width as usize, height as usize);
    let mut values = vec![0.0_f32; w * h];
    values
        .par_chunks_mut(w.max(1))
        .enumerate()
        .for_each(|(y, row)| {
            for (weight, gx, gy) in terms {
                let c = weight * gy.at(y);
                if c == 0.0 {
                    continue;
                }
                let end = (gx.start + gx.values.len()).min(w);
                for (out, g) in row[gx.start.min(end)..end].iter_mut().zip(&gx.values) {
                    *out += c * g;
                }
            }
        });
    ScalarImage {
        width,
        height,
        values,
    }
}

/// The static heatmap of `recording` on a `width`×`height` image (unnormalised for EGD-CXR,
/// sum 1 for REFLACX; an empty recording gives an all-zero map).
pub fn heatmap(recording: &GazeRecording, width: u32, height: u32, recipe: Recipe) -> ScalarImage {
    let (w, h) = (width as usize, height as usize);
    let inside = |x: f32, y: f32| x >= 0.0 && y >= 0.0 && (x as usize) < w && (y as usize) < h;
    match recipe {
        Recipe::EgdCxr { sigma_px } => {
            let kernel = scipy_kernel(sigma_px);
            // record[y, x] += 1 at integer pixels; equal pixels share one term.
            let mut counts: Vec<((usize, usize), f32)> = Vec::new();
            for f in recording.fixations.iter().filter(|f| inside(f.x, f.y)) {
                let p = (f.x.floor() as usize, f.y.floor() as usize);
                match counts.iter_mut().find(|c| c.0 == p) {
                    Some(c) => c.1 += 1.0,
                    None => counts.push((p, 1.0)),
                }
            }
            let terms: Vec<(f32, Span, Span)> = counts
                .into_iter()
                .map(|((x, y), n)| {
                    (
                        n,
                        reflected_impulse(x, w, &kernel),
                        reflected_impulse(y, h, &kernel),
                    )
                })
                .collect();
            separable_sum(width, height, &terms)
        }
        Recipe::Reflacx {
            sigma_degrees,
            fallback_sigma_px,
        } => {
            let terms: Vec<(f32, Span, Span)> = recording
                .fixations
                .iter()
                .filter(|f| inside(f.x, f.y) && f.duration_s > 0.0)
                .map(|f| {
                    let [sx, sy] = f.px_per_degree.map_or([fallback_sigma_px; 2], |p| {
                        [p[0] * sigma_degrees, p[1] * sigma_degrees]
                    });
                    let (x0, y0, x1, y1) = f
                        .shown
                        .map_or((0.0, 0.0, w as f32 - 1.0, h as f32 - 1.0), |r| {
                            (r.xmin, r.ymin, r.xmax, r.ymax)
                        });
                    (
                        f.duration_s as f32,
                        gaussian_span(f.x, sx, x0, x1, w),
                        gaussian_span(f.y, sy, y0, y1, h),
                    )
                })
                .collect();
            let mut map = separable_sum(width, height, &terms);
            let sum: f64 = map.values.iter().map(|v| *v as f64).sum();
            if sum > 0.0 {
                for v in &mut map.values {
                    *v = (*v as f64 / sum) as f32;
                }
            }
            map
        }
    }
}

/// Scales a map to [0, 1] by its maximum, for display (all-zero stays zero).
pub fn normalised_for_display(mut map: ScalarImage) -> ScalarImage {
    let max = map.values.iter().copied().fold(0.0_f32, f32::max);
    if max > 0.0 {
        for v in &mut map.values {
            *v = (*v / max).max(0.0);
        }
    }
    map
}

#[cfg(test)]
mod tests {
    #[test]
    fn unusable_blurs_are_refused_and_never_reach_the_kernel() {
        use super::*;
        for bad in [f32::INFINITY, f32::NAN, 1e9, 0.0, -3.0] {
            assert!(Recipe::EgdCxr { sigma_px: bad }.check().is_err(), "{bad}");
            assert!(
                Recipe::Reflacx {
                    sigma_degrees: bad,
                    fallback_sigma_px: 50.0
                }
                .check()
                .is_err(),
                "{bad}"
            );
        }
        assert!(Recipe::published(GazeFormat::EgdCxr).check().is_ok());
        assert!(Recipe::published(GazeFormat::Reflacx).check().is_ok());
        // Even unchecked, an infinite σ gives a bounded kernel (it used to overflow capacity).
        assert!(scipy_kernel(f32::INFINITY).len() <= 2 * 8001 + 1);
        assert!(!scipy_kernel(f32::NAN).is_empty());
    }

    use super::*;

    /// Direct 1-D `gaussian_filter1d(mode="reflect")` of an impulse, for comparison.
    fn direct(p: usize, n: usize, kernel: &[f64]) -> Vec<f64> {
        let r = (kernel.len() / 2) as i64;
        let refl = |q: i64| {
            let period = 2 * n as i64;
            let m = q.rem_euclid(period);
            if m < n as i64 { m } else { period - 1 - m }
        };
        (0..n as i64)
            .map(|x| {
                (-r..=r)
                    .map(|k| {
                        if refl(x + k) == p as i64 {
                            kernel[(k + r) as usize]
                        } else {
                            0.0
                        }
                    })
                    .sum()
            })
            .collect()
    }

    #[test]
    fn reflected_impulse_matches_a_direct_reflect_convolution() {
        for (p, n, sigma) in [
            (0, 50, 3.0),
            (10, 50, 3.0),
            (49, 50, 6.0),
            (3, 7, 4.0),
            (0, 1, 2.0),
        ] {
            let kernel = scipy_kernel(sigma);
            let span = reflected_impulse(p, n, &kernel);
            let want = direct(p, n, &kernel);
            for (x, w) in want.iter().enumerate() {
                assert!(
                    (span.at(x) as f64 - w).abs() < 1e-6,
                    "p {p} n {n} x {x}: {} vs {w}",
                    span.at(x)
                );
            }
            // Reflect borders keep the mass.
            let total: f64 = (0..n).map(|x| span.at(x) as f64).sum();
            assert!((total - 1.0).abs() < 1e-5, "mass {total}");
        }
    }

    #[test]
    fn scipy_kernel_has_the_truncation_radius() {
        assert_eq!(scipy_kernel(150.0).len(), 2 * 600 + 1);
        assert_eq!(scipy_kernel(1.0).len(), 9);
    }
}
