//! The anatomy check: what the predicted lung mask says about an image — a frontal chest
//! radiograph shows two lungs, one each side of the midline, of plausible size and height.

use super::*;

/// What the lung mask says about the image (on the model grid, after the clean-up).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnatomyCheck {
    /// Lung pixels as a fraction of the image.
    pub lung_fraction: f64,
    /// Lung regions of at least 1 % of the image.
    pub regions: usize,
    /// Problems found, in words; empty when the mask is plausible.
    pub problems: Vec<String>,
}

impl AnatomyCheck {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Plausibility of a lung probability map (`p ≥ ½` is lung) for a frontal chest radiograph: two
/// lung regions of 1 % of the image or more, one in each half; together 6–60 % of the image;
/// each at least a fifth of the image tall; centres not at the very top or bottom. The bounds are
/// wide: every held-out image of the training sets passes them (tested); they catch images whose
/// "lungs" are noise, one blob, or a sliver.
pub fn anatomy_check(probability: &[f32], width: usize, height: usize) -> AnatomyCheck {
    let inside: Vec<bool> = probability.iter().map(|&p| p >= 0.5).collect();
    let total = (width * height).max(1) as f64;
    let regions = components(&inside, width, height);
    let lung = inside.iter().filter(|&&v| v).count() as f64 / total;
    let big: Vec<&Region> = regions
        .iter()
        .filter(|r| r.pixels as f64 >= 0.01 * total)
        .collect();
    let mut problems = Vec::new();
    if !(0.06..=0.60).contains(&lung) {
        problems.push(format!(
            "lung area {:.0} % of the image (a frontal chest radiograph shows 6–60 %)",
            100.0 * lung
        ));
    }
    if big.len() != 2 {
        problems.push(format!("{} lung regions (expected two lungs)", big.len()));
    } else {
        let cx: Vec<f64> = big.iter().map(|r| r.cx / width as f64).collect();
        if !((cx[0] < 0.5) ^ (cx[1] < 0.5)) {
            problems.push("both lung regions on one side of the image".into());
        }
        for r in &big {
            let tall = (r.y_max - r.y_min + 1) as f64 / height as f64;
            if tall < 0.2 {
                problems.push(format!(
                    "a lung region only {:.0} % of the image tall",
                    100.0 * tall
                ));
            }
            let cy = r.cy / height as f64;
            if !(0.15..=0.85).contains(&cy) {
                problems.push(format!(
                    "a lung region centred at {:.0} % of the image height",
                    100.0 * cy
                ));
            }
        }
    }
    AnatomyCheck {
        lung_fraction: lung,
        regions: big.len(),
        problems,
    }
}

pub(crate) struct Region {
    pixels: usize,
    cx: f64,
    cy: f64,
    y_min: usize,
    y_max: usize,
}

/// 4-connected regions of `inside`.
pub(crate) fn components(inside: &[bool], w: usize, h: usize) -> Vec<Region> {
    let mut seen = vec![false; inside.len()];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..inside.len().min(w * h) {
        if seen[start] || !inside[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let mut r = Region {
            pixels: 0,
            cx: 0.0,
            cy: 0.0,
            y_min: usize::MAX,
            y_max: 0,
        };
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            r.pixels += 1;
            r.cx += x as f64;
            r.cy += y as f64;
            r.y_min = r.y_min.min(y);
            r.y_max = r.y_max.max(y);
            for j in crate::imaging::image::neighbours4(i, w, h) {
                if !seen[j] && inside[j] {
                    seen[j] = true;
                    stack.push(j);
                }
            }
        }
        r.cx /= r.pixels as f64;
        r.cy /= r.pixels as f64;
        out.push(r);
    }
    out
}
