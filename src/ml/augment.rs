//! Training-time augmentation on the model grid: small rotation (≤ 10°), scale and shift (one
//! affine map applied to image, mask and weight alike), brightness/contrast and Gaussian noise.
//! No flips: a chest radiograph is not left–right symmetric (heart, aortic knob, gastric bubble).

use super::data::MaskOnGrid;
use super::metrics::SplitMix64;

/// Augmentation strengths.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct AugmentConfig {
    pub max_rotation_deg: f32,
    pub max_scale: f32,
    pub max_shift_fraction: f32,
    pub max_contrast: f32,
    pub max_brightness: f32,
    pub noise_std: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            max_rotation_deg: 10.0,
            max_scale: 0.08,
            max_shift_fraction: 0.06,
            max_contrast: 0.2,
            max_brightness: 0.1,
            noise_std: 0.02,
        }
    }
}

/// Apply a random augmentation to an input (values in [-1, 1], `size × size`) and its mask.
pub fn augment(
    values: &[f32],
    mask: Option<&MaskOnGrid>,
    size: usize,
    cfg: &AugmentConfig,
    rng: &mut SplitMix64,
) -> (Vec<f32>, Option<MaskOnGrid>) {
    let sym = |rng: &mut SplitMix64, m: f32| ((rng.unit() as f32) * 2.0 - 1.0) * m;
    let angle = sym(rng, cfg.max_rotation_deg).to_radians();
    let scale = 1.0 + sym(rng, cfg.max_scale);
    let (tx, ty) = (
        sym(rng, cfg.max_shift_fraction) * size as f32,
        sym(rng, cfg.max_shift_fraction) * size as f32,
    );
    let contrast = 1.0 + sym(rng, cfg.max_contrast);
    let brightness = sym(rng, cfg.max_brightness);
    let (sin, cos) = angle.sin_cos();
    let c = (size as f32 - 1.0) / 2.0;
    // Output pixel p samples the source at R⁻¹(p − c − t)/scale + c.
    let source = |x: usize, y: usize| -> (f32, f32) {
        let (dx, dy) = (x as f32 - c - tx, y as f32 - c - ty);
        (
            (cos * dx + sin * dy) / scale + c,
            (-sin * dx + cos * dy) / scale + c,
        )
    };
    let mut out = vec![-1.0_f32; size * size];
    let mut target = mask.map(|_| vec![0.0_f32; size * size]);
    let mut weight = mask.map(|_| vec![1.0_f32; size * size]);
    let last = (size - 1) as f32;
    for y in 0..size {
        for x in 0..size {
            let (sx, sy) = source(x, y);
            let i = y * size + x;
            if sx >= 0.0 && sy >= 0.0 && sx <= last && sy <= last {
                let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
                let (x1, y1) = ((x0 + 1).min(size - 1), (y0 + 1).min(size - 1));
                let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
                let v = |xx: usize, yy: usize| values[yy * size + xx];
                let top = v(x0, y0) + (v(x1, y0) - v(x0, y0)) * fx;
                let bottom = v(x0, y1) + (v(x1, y1) - v(x0, y1)) * fx;
                out[i] = top + (bottom - top) * fy;
                if let (Some(m), Some(t), Some(w)) = (mask, target.as_mut(), weight.as_mut()) {
                    let j = (sy.round() as usize).min(size - 1) * size
                        + (sx.round() as usize).min(size - 1);
                    t[i] = m.target[j];
                    w[i] = m.weight[j];
                }
            }
        }
    }
    for v in &mut out {
        let noisy = *v * contrast + brightness + rng.normal() as f32 * cfg.noise_std;
        *v = noisy.clamp(-1.5, 1.5);
    }
    let mask = target
        .zip(weight)
        .map(|(target, weight)| MaskOnGrid { target, weight });
    (out, mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_strengths_leave_the_image_unchanged() {
        let cfg = AugmentConfig {
            max_rotation_deg: 0.0,
            max_scale: 0.0,
            max_shift_fraction: 0.0,
            max_contrast: 0.0,
            max_brightness: 0.0,
            noise_std: 0.0,
        };
        let values: Vec<f32> = (0..64).map(|i| i as f32 / 64.0).collect();
        let mask = MaskOnGrid {
            target: (0..64).map(|i| (i % 2) as f32).collect(),
            weight: vec![1.0; 64],
        };
        let (out, m) = augment(&values, Some(&mask), 8, &cfg, &mut SplitMix64::new(3));
        for (a, b) in out.iter().zip(&values) {
            assert!((a - b).abs() < 1e-5);
        }
        assert_eq!(m.unwrap().target, mask.target);
    }

    #[test]
    fn mask_moves_with_the_image() {
        // A bright square and its mask; after a random shift/rotation, the mask still covers the
        // bright pixels.
        let size = 32;
        let mut values = vec![-1.0_f32; size * size];
        let mut target = vec![0.0_f32; size * size];
        for y in 10..22 {
            for x in 10..22 {
                values[y * size + x] = 1.0;
                target[y * size + x] = 1.0;
            }
        }
        let cfg = AugmentConfig {
            max_contrast: 0.0,
            max_brightness: 0.0,
            noise_std: 0.0,
            ..Default::default()
        };
        let mask = MaskOnGrid {
            target: target.clone(),
            weight: vec![1.0; size * size],
        };
        let (out, m) = augment(&values, Some(&mask), size, &cfg, &mut SplitMix64::new(11));
        let m = m.unwrap();
        // The transform did something (an identity would trivially keep them aligned).
        let moved = m
            .target
            .iter()
            .zip(&target)
            .filter(|(a, b)| (**a > 0.5) != (**b > 0.5))
            .count();
        assert!(moved >= 8, "the mask moved by only {moved} pixels");
        let agree = out
            .iter()
            .zip(&m.target)
            .filter(|(v, t)| (**v > 0.0) == (**t > 0.5))
            .count();
        assert!(agree as f32 / (size * size) as f32 > 0.97, "{agree}");
    }
}
