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
        let (mut min, mut max) = (f32::INFINITY, f32::NEG_INFINITY);
        for &v in self.values.iter().filter(|v| v.is_finite()) {
            min = min.min(v);
            max = max.max(v);
        }
        if !min.is_finite() {
            return ValueStats {
                min: 0.0,
                max: 1.0,
                p01: 0.0,
                p99: 1.0,
            };
        }
        const BINS: usize = 4096;
        let span = (max - min).max(f32::MIN_POSITIVE);
        let mut hist = vec![0u64; BINS];
        let mut count = 0u64;
        for &v in self.values.iter().filter(|v| v.is_finite()) {
            let bin = (((v - min) / span) * (BINS - 1) as f32) as usize;
            hist[bin.min(BINS - 1)] += 1;
            count += 1;
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_rejects_wrong_length_and_empty() {
        assert!(ScalarImage::new(2, 2, vec![0.0; 3]).is_none());
        assert!(ScalarImage::new(0, 0, vec![]).is_none());
        assert!(ScalarImage::new(2, 2, vec![0.0; 4]).is_some());
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
