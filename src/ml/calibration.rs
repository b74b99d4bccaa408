//! Calibration and operating points of a classifier, from held-out predictions: temperature
//! scaling (Guo et al. 2017, one scalar fitted by minimising the negative log-likelihood on the
//! validation split), the expected calibration error, and the threshold on the positive-class
//! probability chosen on validation by Youden's J (sensitivity + specificity − 1), with the
//! sensitivity and specificity it gives on another split.

use serde::{Deserialize, Serialize};

/// Softmax of `logits / temperature`.
pub fn softmax_t(logits: &[f32], temperature: f64) -> Vec<f64> {
    let t = temperature.max(1e-6);
    let max = logits
        .iter()
        .map(|&z| z as f64 / t)
        .fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = logits.iter().map(|&z| (z as f64 / t - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// Mean negative log-likelihood of the true classes at `temperature`.
pub fn nll(logits: &[Vec<f32>], labels: &[usize], temperature: f64) -> f64 {
    let n = logits.len().max(1) as f64;
    logits
        .iter()
        .zip(labels)
        .map(|(z, &y)| -softmax_t(z, temperature)[y].max(1e-300).ln())
        .sum::<f64>()
        / n
}

/// The temperature in [0.05, 20] that minimises the validation NLL. The NLL is convex in 1/T,
/// so a golden-section search on 1/T finds the minimum.
pub fn fit_temperature(logits: &[Vec<f32>], labels: &[usize]) -> f64 {
    if logits.is_empty() {
        return 1.0;
    }
    let f = |beta: f64| nll(logits, labels, 1.0 / beta);
    let (mut a, mut b) = (1.0 / 20.0, 1.0 / 0.05);
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let mut c = b - ratio * (b - a);
    let mut d = a + ratio * (b - a);
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..100 {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - ratio * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + ratio * (b - a);
            fd = f(d);
        }
        if (b - a).abs() < 1e-7 {
            break;
        }
    }
    2.0 / (a + b)
}

/// Expected calibration error with `bins` equal-width confidence bins: Σ_b (n_b / N)·|accuracy_b −
/// mean confidence_b|, confidence = the largest class probability (Guo et al.).
pub fn expected_calibration_error(probs: &[Vec<f64>], labels: &[usize], bins: usize) -> f64 {
    let bins = bins.max(1);
    let mut count = vec![0usize; bins];
    let mut correct = vec![0usize; bins];
    let mut confidence = vec![0.0f64; bins];
    for (p, &y) in probs.iter().zip(labels) {
        let (k, &conf) = p
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap_or((0, &0.0));
        // Bin b holds confidences in (b/bins, (b+1)/bins]; 0 goes to the first.
        let b = ((conf * bins as f64).ceil() as usize).clamp(1, bins) - 1;
        count[b] += 1;
        confidence[b] += conf;
        if k == y {
            correct[b] += 1;
        }
    }
    let n = probs.len().max(1) as f64;
    (0..bins)
        .filter(|&b| count[b] > 0)
        .map(|b| {
            let nb = count[b] as f64;
            (nb / n) * (correct[b] as f64 / nb - confidence[b] / nb).abs()
        })
        .sum()
}

/// Sensitivity and specificity when `score ≥ threshold` calls positive. `None` when a class is
/// absent.
pub fn sensitivity_specificity(
    scores: &[f64],
    positive: &[bool],
    threshold: f64,
) -> Option<(f64, f64)> {
    let (mut tp, mut p, mut tn, mut n) = (0usize, 0usize, 0usize, 0usize);
    for (&s, &pos) in scores.iter().zip(positive) {
        if pos {
            p += 1;
            tp += usize::from(s >= threshold);
        } else {
            n += 1;
            tn += usize::from(s < threshold);
        }
    }
    (p > 0 && n > 0).then(|| (tp as f64 / p as f64, tn as f64 / n as f64))
}

/// The threshold that maximises Youden's J on these scores: the midpoint between two adjacent
/// distinct scores (so it generalises no closer to either), or `None` when a class is absent.
pub fn youden_threshold(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let mut distinct: Vec<f64> = scores.to_vec();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    let mut best: Option<(f64, f64)> = None;
    let candidates = distinct
        .windows(2)
        .map(|w| 0.5 * (w[0] + w[1]))
        .chain(distinct.first().map(|&s| s - 1e-9));
    for t in candidates {
        let (sens, spec) = sensitivity_specificity(scores, positive, t)?;
        let j = sens + spec - 1.0;
        if best.is_none_or(|(bj, _)| j > bj) {
            best = Some((j, t));
        }
    }
    best.map(|(_, t)| t)
}

/// What the card records about a two-class classifier's calibration and operating point.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Divide the logits by this before the softmax (fitted on validation).
    pub temperature: f64,
    /// The class whose probability the operating point thresholds.
    pub positive_class: String,
    /// Calibrated probability of `positive_class` at or above which the model calls it
    /// (Youden's J on validation).
    pub threshold: f64,
    /// Expected calibration error (15 bins) on the reported split, before and after scaling.
    pub ece_before: f64,
    pub ece_after: f64,
    /// Sensitivity and specificity at `threshold` on the reported split.
    pub sensitivity: f64,
    pub specificity: f64,
    /// Which split the figures above were measured on ("test" or "validation").
    pub measured_on: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_at_temperature_two_halves_the_logits() {
        // softmax([0, ln 9] / 2) = softmax([0, ln 3]) = [1/4, 3/4].
        let p = softmax_t(&[0.0, 9f32.ln()], 2.0);
        assert!(
            (p[0] - 0.25).abs() < 1e-6 && (p[1] - 0.75).abs() < 1e-6,
            "{p:?}"
        );
    }

    #[test]
    fn fitted_temperature_minimises_the_nll() {
        // Logits ±4 whose sign is right 3 times in 4: calibrated p(correct) = 3/4 needs
        // sigmoid(8/T) = 3/4, i.e. T = 8 / ln 3.
        let logits = vec![
            vec![0.0, 8.0],
            vec![0.0, 8.0],
            vec![0.0, 8.0],
            vec![8.0, 0.0],
        ];
        let labels = [1, 1, 1, 1];
        let t = fit_temperature(&logits, &labels);
        let expected = 8.0 / 3f64.ln();
        assert!((t - expected).abs() < 1e-3, "{t} vs {expected}");
        assert!(nll(&logits, &labels, t) <= nll(&logits, &labels, 1.0));
    }

    #[test]
    fn ece_by_hand() {
        // Two bins used (10 bins): conf 0.95 ×2, one right → |0.5 − 0.95| · 2/4; conf 0.65 ×2,
        // both right → |1 − 0.65| · 2/4. ECE = 0.225 + 0.175 = 0.4.
        let probs = vec![
            vec![0.95, 0.05],
            vec![0.95, 0.05],
            vec![0.35, 0.65],
            vec![0.35, 0.65],
        ];
        let labels = [0, 1, 1, 1];
        let e = expected_calibration_error(&probs, &labels, 10);
        assert!((e - 0.4).abs() < 1e-9, "{e}");
    }

    #[test]
    fn youden_threshold_separates_when_it_can() {
        let scores = [0.1, 0.2, 0.35, 0.4, 0.8, 0.9];
        let positive = [false, false, false, true, true, true];
        let t = youden_threshold(&scores, &positive).unwrap();
        assert!((t - 0.375).abs() < 1e-12, "{t}");
        assert_eq!(
            sensitivity_specificity(&scores, &positive, t),
            Some((1.0, 1.0))
        );
        // One positive below a negative: best J = 2/3 (sens 2/3 at 0.6, spec 1) vs
        // threshold 0.15 (sens 1, spec 1/2, J 1/2) → 0.6.
        let scores = [0.1, 0.2, 0.5, 0.7, 0.9];
        let positive = [false, true, false, true, true];
        let t = youden_threshold(&scores, &positive).unwrap();
        assert!((t - 0.6).abs() < 1e-12, "{t}");
        assert_eq!(youden_threshold(&[0.3, 0.4], &[true, true]), None);
    }
}
