//! The saliency recipe's validation pass.

use super::*;

/// What `validate` needs besides the networks and the samples.
#[derive(Clone, Copy)]
pub(super) struct Validation {
    pub(super) size: usize,
    /// The heatmap-generator recipe: also score the classifier's guided-backprop map.
    pub(super) generator: bool,
    pub(super) seed: u64,
}

/// One validation pass: KL, CC and HS of the predicted maps against the gaze targets, the fusion
/// head's classification figures, and (with the generator loss) the KL of the classifier's
/// guided-backprop map.
pub(super) fn validate(
    net: &SaliencyNet,
    classifier: &crate::ml::classifier::Classifier,
    val_set: &[Sample],
    class_names: &[String],
    v: Validation,
    device: &Device,
) -> Result<Evaluation, MlError> {
    let Validation {
        size,
        generator,
        seed,
    } = v;
    let batch_of =
        |set: &[Sample], chunk: &[usize], device: &Device| batch(set, chunk, size, device);
    let inner = device.clone().inner();
    let valid = net.valid();
    let cvalid = classifier.valid();
    let (mut kl, mut cc, mut hs) = (0.0, 0.0, 0.0);
    let mut generator_kl = 0.0;
    let mut probs = Vec::new();
    let mut actual = Vec::new();
    for chunk in (0..val_set.len()).collect::<Vec<_>>().chunks(8) {
        let (x, _) = batch_of(val_set, chunk, &inner);
        let f = cvalid.features(x.clone());
        if generator {
            // KL of the gaze map from the classifier's guided-backprop map (|map| summed to 1).
            let frozen = classifier.clone().freeze();
            let x_ad = batch_of(val_set, chunk, device).0;
            let classes: Vec<usize> = chunk
                .iter()
                .map(|&i| val_set[i].class.unwrap_or(0))
                .collect();
            let gb = tensor_to_vec(frozen.guided_backprop_map(x_ad, &classes)?.abs().detach())?;
            for (j, &i) in chunk.iter().enumerate() {
                let m = &gb[j * size * size..(j + 1) * size * size];
                generator_kl += crate::gaze::metrics::kl(m, &val_set[i].target).unwrap_or(f64::NAN);
            }
        }
        let pred = tensor_to_vec(valid.forward(x.clone(), f.clone()))?;
        let cls = tensor_to_vec(softmax(valid.classify(x, f), 1))?;
        let k = class_names.len();
        for (j, &i) in chunk.iter().enumerate() {
            let p = &pred[j * size * size..(j + 1) * size * size];
            let q = &val_set[i].target;
            let m = |r: Result<f64, crate::gaze::metrics::MetricError>| r.unwrap_or(f64::NAN);
            kl += m(crate::gaze::metrics::kl(p, q));
            cc += m(crate::gaze::metrics::cc(p, q));
            hs += m(crate::gaze::metrics::hs(p, q));
            if let Some(c) = val_set[i].class {
                probs.push(cls[j * k..(j + 1) * k].to_vec());
                actual.push(c);
            }
        }
    }
    let n = val_set.len() as f64;
    let mut e = classification_evaluation(&probs, &actual, class_names, seed, None);
    e.saliency = Some(SaliencyScores {
        kl: kl / n,
        cc: cc / n,
        hs: hs / n,
        images: val_set.len(),
        generator_kl: generator.then_some(generator_kl / n),
    });
    Ok(e)
}
