//! What the backend check reports: one `Agreement` per compared quantity, the `CheckReport` of a network.

use super::*;

/// One compared quantity.
#[derive(Clone, Debug)]
pub struct Agreement {
    pub what: String,
    /// ‖candidate − reference‖₂ / ‖reference‖₂ (absolute when the reference is zero).
    pub relative_l2: f64,
    pub max_abs: f64,
    /// ‖reference‖₂, so an all-zero comparison is visible.
    pub reference_norm: f64,
}

impl Agreement {
    pub fn of(what: impl Into<String>, reference: &[f32], candidate: &[f32]) -> Self {
        let what = what.into();
        if reference.len() != candidate.len() {
            return Self {
                what: format!("{what} (length {} vs {})", reference.len(), candidate.len()),
                relative_l2: f64::INFINITY,
                max_abs: f64::INFINITY,
                reference_norm: 0.0,
            };
        }
        let (mut diff2, mut ref2, mut max_abs) = (0.0f64, 0.0f64, 0.0f64);
        for (r, c) in reference.iter().zip(candidate) {
            let (r, c) = (*r as f64, *c as f64);
            let d = if r.is_finite() && c.is_finite() {
                c - r
            } else {
                f64::INFINITY
            };
            diff2 += d * d;
            ref2 += r * r;
            max_abs = max_abs.max(d.abs());
        }
        let reference_norm = ref2.sqrt();
        let relative_l2 = if reference_norm > 0.0 {
            diff2.sqrt() / reference_norm
        } else {
            diff2.sqrt()
        };
        Self {
            what,
            relative_l2,
            max_abs,
            reference_norm,
        }
    }

    pub fn agrees(&self) -> bool {
        self.relative_l2 <= TOLERANCE
    }
}

/// The result of one network on one pair of devices.
#[derive(Clone, Debug)]
pub struct CheckReport {
    pub network: String,
    pub size: usize,
    pub batch: usize,
    pub rows: Vec<Agreement>,
    /// The candidate run twice on identical input: its own repeatability (relative L2 of the
    /// gradients of all parameters together).
    pub repeatability: Agreement,
    pub parameters_compared: usize,
    /// Trainable parameters the reference's main loss gave no gradient (so none was compared).
    pub parameters_without_gradient: Vec<String>,
}

impl CheckReport {
    pub fn worst(&self) -> Option<&Agreement> {
        self.rows
            .iter()
            .max_by(|a, b| a.relative_l2.total_cmp(&b.relative_l2))
    }

    pub fn agrees(&self) -> bool {
        self.rows.iter().all(Agreement::agrees) && self.repeatability.agrees()
    }

    pub fn text(&self) -> String {
        let mut s = format!(
            "{} at {}², batch {}: {} parameter gradients compared\n",
            self.network, self.size, self.batch, self.parameters_compared
        );
        if !self.parameters_without_gradient.is_empty() {
            s += &format!(
                "  no gradient from the main loss: {}\n",
                self.parameters_without_gradient.join(", ")
            );
        }
        let grads: Vec<&Agreement> = self
            .rows
            .iter()
            .filter(|a| a.what.starts_with("grad "))
            .collect();
        for a in self.rows.iter().filter(|a| !a.what.starts_with("grad ")) {
            s += &format!(
                "  {:<34} rel L2 {:>9.2e}  max |Δ| {:>9.2e}  {}\n",
                a.what,
                a.relative_l2,
                a.max_abs,
                if a.agrees() { "ok" } else { "DISAGREES" }
            );
        }
        if let Some(worst) = grads
            .iter()
            .max_by(|a, b| a.relative_l2.total_cmp(&b.relative_l2))
        {
            let mut sorted: Vec<f64> = grads.iter().map(|a| a.relative_l2).collect();
            sorted.sort_by(f64::total_cmp);
            s += &format!(
                "  parameter gradients: median rel L2 {:.2e}, worst {:.2e} ({}) {}\n",
                sorted[sorted.len() / 2],
                worst.relative_l2,
                worst.what,
                if grads.iter().all(|a| a.agrees()) {
                    "ok"
                } else {
                    "DISAGREES"
                }
            );
            for a in grads.iter().filter(|a| !a.agrees()) {
                s += &format!("    {:<40} rel L2 {:.2e}\n", a.what, a.relative_l2);
            }
        }
        s += &format!(
            "  candidate repeatability (same input twice): rel L2 {:.2e} {}\n",
            self.repeatability.relative_l2,
            if self.repeatability.agrees() {
                "ok"
            } else {
                "NOT REPEATABLE"
            }
        );
        s
    }
}
