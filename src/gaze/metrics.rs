//! Saliency metrics, as the chest X-ray gaze papers and the MIT saliency benchmark compute them.
//!
//! Map-vs-map (P = the model's map, Q = the gaze map, both normalised to sum 1 first):
//! - **KL** = Σ Q · ln(ε + Q / (P + ε)), ε = 2.2204·10⁻¹⁶ (MATLAB `eps`, as in the MIT code);
//!   0 for identical maps, larger is worse.
//! - **CC** = Pearson correlation of the two maps.
//! - **HS** = Σ min(P, Q) (histogram similarity / intersection; 1 for identical maps).
//! - **SIM** (MIT) = Σ min(P', Q') where each map is first min–max scaled to [0, 1], then to sum 1.
//!
//! Map-vs-fixations (the fixation map is binary: a pixel fixated once or more counts once):
//! - **NSS** = mean of the standardised map (mean 0, sample standard deviation 1) at fixated pixels.
//! - **AUC-Judd**: thresholds at the map's values on fixated pixels; true positives = fixated pixels
//!   above threshold / fixated pixels, false positives = other pixels above threshold / other
//!   pixels; trapezoidal area with (0,0) and (1,1) added. The map is min–max scaled first. (The MIT
//!   code can jitter ties by 10⁻⁷; this one does not, so results are deterministic.)
//!
//! Heatmap-vs-region (the map scaled to [0, 1] by its maximum; region = lung mask or drawn box):
//! - **Diff_GradCAM** = mean heat inside the region − mean heat outside.
//! - **EHR-AUC**: the effective heat ratio at threshold t is the heat of the pixels above t that lie
//!   inside the region divided by the heat of all pixels above t; EHR-AUC is its mean over
//!   t = 0, 0.01, …, 0.99 (the area under the EHR curve on [0, 1), left Riemann sum). 1 means all
//!   heat at every threshold is inside the region.

use std::fmt;

/// MATLAB's `eps`, used by the MIT benchmark's KL.
pub const EPS: f64 = 2.220_446_049_250_313e-16;

/// Thresholds used by EHR-AUC.
pub const EHR_STEPS: usize = 100;

#[derive(Clone, Debug, PartialEq)]
pub enum MetricError {
    SizeMismatch(usize, usize),
    /// A map with no positive mass (cannot be normalised to sum 1).
    EmptyMap,
    /// A map with the same value everywhere (no correlation, no standardisation).
    ConstantMap,
    NoFixations,
    /// The region is empty or covers the whole image.
    DegenerateRegion,
}

impl fmt::Display for MetricError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricError::SizeMismatch(a, b) => write!(f, "maps differ in size ({a} vs {b} pixels)"),
            MetricError::EmptyMap => write!(f, "the map is all zero"),
            MetricError::ConstantMap => write!(f, "the map is constant"),
            MetricError::NoFixations => write!(f, "no fixations on the image"),
            MetricError::DegenerateRegion => {
                write!(f, "the region is empty or covers the whole image")
            }
        }
    }
}

impl std::error::Error for MetricError {}

fn same_size(a: &[f32], b: &[f32]) -> Result<(), MetricError> {
    if a.len() != b.len() {
        return Err(MetricError::SizeMismatch(a.len(), b.len()));
    }
    Ok(())
}

/// Map normalised to sum 1 (negative values clamp to 0).
pub fn sum_normalised(map: &[f32]) -> Result<Vec<f64>, MetricError> {
    let sum: f64 = map.iter().map(|v| v.max(0.0) as f64).sum();
    if sum <= 0.0 || !sum.is_finite() {
        return Err(MetricError::EmptyMap);
    }
    Ok(map.iter().map(|v| v.max(0.0) as f64 / sum).collect())
}

fn min_max(map: &[f32]) -> Result<Vec<f64>, MetricError> {
    let (lo, hi) = map
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return Err(MetricError::ConstantMap);
    }
    Ok(map.iter().map(|v| ((v - lo) / (hi - lo)) as f64).collect())
}

/// KL divergence of the gaze map `q` from the model's map `p`.
pub fn kl(p: &[f32], q: &[f32]) -> Result<f64, MetricError> {
    same_size(p, q)?;
    let (p, q) = (sum_normalised(p)?, sum_normalised(q)?);
    Ok(p.iter()
        .zip(&q)
        .map(|(p, q)| q * (EPS + q / (p + EPS)).ln())
        .sum())
}

/// Pearson correlation.
pub fn cc(a: &[f32], b: &[f32]) -> Result<f64, MetricError> {
    same_size(a, b)?;
    let n = a.len() as f64;
    if a.is_empty() {
        return Err(MetricError::EmptyMap);
    }
    let ma = a.iter().map(|v| *v as f64).sum::<f64>() / n;
    let mb = b.iter().map(|v| *v as f64).sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (dx, dy) = (*x as f64 - ma, *y as f64 - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa <= 0.0 || sbb <= 0.0 {
        return Err(MetricError::ConstantMap);
    }
    Ok(sab / (saa * sbb).sqrt())
}

/// Histogram similarity: Σ min(P, Q) after normalising both to sum 1.
pub fn hs(a: &[f32], b: &[f32]) -> Result<f64, MetricError> {
    same_size(a, b)?;
    let (a, b) = (sum_normalised(a)?, sum_normalised(b)?);
    Ok(a.iter().zip(&b).map(|(x, y)| x.min(*y)).sum())
}

/// MIT SIM: min–max scale each map, normalise to sum 1, Σ min.
pub fn sim(a: &[f32], b: &[f32]) -> Result<f64, MetricError> {
    same_size(a, b)?;
    let to_f32 = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
    hs(&to_f32(min_max(a)?), &to_f32(min_max(b)?))
}

/// Fixated pixels (row-major indices, each once) of fixations on a `width`×`height` image.
pub fn fixated_pixels(points: &[(f32, f32)], width: u32, height: u32) -> Vec<usize> {
    let mut idx: Vec<usize> = points
        .iter()
        .filter(|(x, y)| *x >= 0.0 && *y >= 0.0 && (*x as u32) < width && (*y as u32) < height)
        .map(|(x, y)| y.floor() as usize * width as usize + x.floor() as usize)
        .collect();
    idx.sort_unstable();
    idx.dedup();
    idx
}

/// Normalised scanpath saliency of `map` at the fixated pixels.
pub fn nss(map: &[f32], fixated: &[usize]) -> Result<f64, MetricError> {
    let fixated: Vec<usize> = fixated.iter().copied().filter(|&i| i < map.len()).collect();
    if fixated.is_empty() {
        return Err(MetricError::NoFixations);
    }
    let n = map.len() as f64;
    let mean = map.iter().map(|v| *v as f64).sum::<f64>() / n;
    let var = map.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    if var <= 0.0 {
        return Err(MetricError::ConstantMap);
    }
    let sd = var.sqrt();
    Ok(fixated
        .iter()
        .map(|&i| (map[i] as f64 - mean) / sd)
        .sum::<f64>()
        / fixated.len() as f64)
}

/// AUC-Judd of `map` against the fixated pixels.
pub fn auc_judd(map: &[f32], fixated: &[usize]) -> Result<f64, MetricError> {
    let fixated: Vec<usize> = fixated.iter().copied().filter(|&i| i < map.len()).collect();
    if fixated.is_empty() {
        return Err(MetricError::NoFixations);
    }
    let s = min_max(map)?;
    let mut at_fix: Vec<f64> = fixated.iter().map(|&i| s[i]).collect();
    at_fix.sort_by(|a, b| b.total_cmp(a));
    // Pixels with value ≥ each threshold, in one pass: each pixel counts for every threshold it
    // reaches, i.e. for the thresholds ≤ its value (a prefix of the ascending list).
    let mut ascending = at_fix.clone();
    ascending.reverse();
    let mut reach = vec![0usize; ascending.len() + 1];
    for v in &s {
        reach[ascending.partition_point(|t| t <= v)] += 1;
    }
    // above[j] = pixels ≥ ascending[j] = Σ reach[k] for k > j
    let mut above_asc = vec![0usize; ascending.len()];
    let mut acc = 0;
    for j in (0..ascending.len()).rev() {
        acc += reach[j + 1];
        above_asc[j] = acc;
    }
    let (nf, np) = (fixated.len() as f64, s.len() as f64);
    let mut tp = vec![0.0];
    let mut fp = vec![0.0];
    for i in 0..at_fix.len() {
        let above = above_asc[at_fix.len() - 1 - i] as f64;
        tp.push((i + 1) as f64 / nf);
        fp.push((above - (i + 1) as f64) / (np - nf).max(1.0));
    }
    tp.push(1.0);
    fp.push(1.0);
    Ok(fp
        .windows(2)
        .zip(tp.windows(2))
        .map(|(f, t)| (f[1] - f[0]) * (t[1] + t[0]) / 2.0)
        .sum())
}

fn scaled_by_max(map: &[f32]) -> Result<Vec<f64>, MetricError> {
    let max = map.iter().copied().fold(0.0_f32, f32::max);
    if max <= 0.0 {
        return Err(MetricError::EmptyMap);
    }
    Ok(map.iter().map(|v| (v / max).max(0.0) as f64).collect())
}

/// Mean heat inside the region minus mean heat outside it.
pub fn diff_gradcam(heat: &[f32], region: &[bool]) -> Result<f64, MetricError> {
    if heat.len() != region.len() {
        return Err(MetricError::SizeMismatch(heat.len(), region.len()));
    }
    let h = scaled_by_max(heat)?;
    let inside = region.iter().filter(|r| **r).count();
    if inside == 0 || inside == region.len() {
        return Err(MetricError::DegenerateRegion);
    }
    let (mut si, mut so) = (0.0, 0.0);
    for (v, r) in h.iter().zip(region) {
        if *r {
            si += v;
        } else {
            so += v;
        }
    }
    Ok(si / inside as f64 - so / (region.len() - inside) as f64)
}

/// The effective heat ratio at each threshold k / EHR_STEPS, and their mean (EHR-AUC).
pub fn ehr_curve(heat: &[f32], region: &[bool]) -> Result<(Vec<f64>, f64), MetricError> {
    if heat.len() != region.len() {
        return Err(MetricError::SizeMismatch(heat.len(), region.len()));
    }
    if !region.iter().any(|r| *r) {
        return Err(MetricError::DegenerateRegion);
    }
    let h = scaled_by_max(heat)?;
    // Bucket each pixel by how many thresholds t_k = k / EHR_STEPS lie strictly below it; the heat
    // above t_k is then a suffix sum over buckets (one pass, no sort).
    let threshold = |k: usize| k as f64 / EHR_STEPS as f64;
    let mut all_by = vec![0.0_f64; EHR_STEPS + 1];
    let mut inside_by = vec![0.0_f64; EHR_STEPS + 1];
    for (v, r) in h.iter().zip(region) {
        let mut b = ((v * EHR_STEPS as f64).ceil().max(0.0) as usize).min(EHR_STEPS);
        while b > 0 && threshold(b - 1) >= *v {
            b -= 1;
        }
        while b < EHR_STEPS && threshold(b) < *v {
            b += 1;
        }
        all_by[b] += v;
        if *r {
            inside_by[b] += v;
        }
    }
    let mut curve = vec![0.0; EHR_STEPS];
    let (mut all, mut inside) = (0.0, 0.0);
    for k in (0..EHR_STEPS).rev() {
        // pixels counted for threshold k are those in buckets b > k
        all += all_by[k + 1];
        inside += inside_by[k + 1];
        // The maximum is 1 > t, so `all` is positive.
        curve[k] = inside / all;
    }
    let auc = curve.iter().sum::<f64>() / EHR_STEPS as f64;
    Ok((curve, auc))
}

pub fn ehr_auc(heat: &[f32], region: &[bool]) -> Result<f64, MetricError> {
    ehr_curve(heat, region).map(|(_, a)| a)
}
