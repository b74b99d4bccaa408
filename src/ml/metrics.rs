//! Evaluation metrics: Dice, ROC AUC (with ties), a seeded bootstrap 95 % CI, accuracy.

/// Dice = 2|A∩B| / (|A|+|B|) over pixels where `weight > 0`; both empty counts as 1.
pub fn dice(prediction: &[bool], target: &[bool], weight: &[f32]) -> f64 {
    let (mut both, mut p, mut t) = (0usize, 0usize, 0usize);
    for ((&a, &b), &w) in prediction.iter().zip(target).zip(weight) {
        if w <= 0.0 {
            continue;
        }
        both += usize::from(a && b);
        p += usize::from(a);
        t += usize::from(b);
    }
    if p + t == 0 {
        1.0
    } else {
        2.0 * both as f64 / (p + t) as f64
    }
}

/// Area under the ROC curve of `scores` for `positive` labels (Mann–Whitney U; ties count ½).
/// `None` when one class is absent.
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let mut pairs: Vec<(f64, bool)> = scores
        .iter()
        .copied()
        .zip(positive.iter().copied())
        .collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n_pos = pairs.iter().filter(|p| p.1).count();
    let n_neg = pairs.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    // Sum of average ranks of positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j + 1 < pairs.len() && pairs[j + 1].0 == pairs[i].0 {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += avg_rank * pairs[i..=j].iter().filter(|p| p.1).count() as f64;
        i = j + 1;
    }
    let u = rank_sum - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos * n_neg) as f64)
}

pub use crate::rng::SplitMix64;

/// AUC with a percentile bootstrap 95 % CI (resampling cases with replacement; resamples with one
/// class absent are skipped).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AucWithCi {
    pub auc: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub resamples: usize,
}

pub fn auc_bootstrap(
    scores: &[f64],
    positive: &[bool],
    resamples: usize,
    seed: u64,
) -> Option<AucWithCi> {
    let auc = roc_auc(scores, positive)?;
    let mut rng = SplitMix64::new(seed);
    let n = scores.len();
    let mut values = Vec::with_capacity(resamples);
    let (mut s, mut p) = (vec![0.0; n], vec![false; n]);
    for _ in 0..resamples {
        for k in 0..n {
            let i = rng.below(n);
            s[k] = scores[i];
            p[k] = positive[i];
        }
        if let Some(a) = roc_auc(&s, &p) {
            values.push(a);
        }
    }
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    Some(AucWithCi {
        auc,
        ci_low: at(0.025),
        ci_high: at(0.975),
        resamples: values.len(),
    })
}

/// Fraction of `predicted == actual`.
pub fn accuracy(predicted: &[usize], actual: &[usize]) -> f64 {
    if actual.is_empty() {
        return 0.0;
    }
    predicted.iter().zip(actual).filter(|(a, b)| a == b).count() as f64 / actual.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_by_hand() {
        // A = {0,1,2}, B = {1,2,3}: |A∩B| = 2 → 2·2/(3+3).
        let a = [true, true, true, false, false];
        let b = [false, true, true, true, false];
        assert!((dice(&a, &b, &[1.0; 5]) - 4.0 / 6.0).abs() < 1e-12);
        // Ignoring pixel 0 and 3 leaves A∩B = {1,2}: Dice 1.
        assert!((dice(&a, &b, &[0.0, 1.0, 1.0, 0.0, 1.0]) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn auc_by_hand_with_ties() {
        // Positives 0.8, 0.4; negatives 0.4, 0.1. Pairs: (0.8>0.4)=1, (0.8>0.1)=1, (0.4=0.4)=½,
        // (0.4>0.1)=1 → 3.5/4.
        let auc = roc_auc(&[0.8, 0.4, 0.4, 0.1], &[true, true, false, false]).unwrap();
        assert!((auc - 0.875).abs() < 1e-12);
        assert!(roc_auc(&[0.1, 0.2], &[true, true]).is_none());
    }

    #[test]
    fn bootstrap_ci_brackets_the_auc_and_is_reproducible() {
        let mut rng = SplitMix64::new(7);
        let positive: Vec<bool> = (0..200).map(|i| i % 2 == 0).collect();
        let scores: Vec<f64> = positive
            .iter()
            .map(|&p| if p { 0.6 } else { 0.4 } + rng.normal() * 0.2)
            .collect();
        let a = auc_bootstrap(&scores, &positive, 500, 1).unwrap();
        let b = auc_bootstrap(&scores, &positive, 500, 1).unwrap();
        assert_eq!(a, b);
        assert!(a.ci_low < a.auc && a.auc < a.ci_high, "{a:?}");
        assert!(a.ci_high - a.ci_low < 0.25, "{a:?}");
    }
}
