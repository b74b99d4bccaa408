//! The saliency recipe's checkpoint record (`ml::checkpoint`): decoder, optional classifier, their
//! optimizer states.

use super::*;

/// The saliency recipe's commit record (`ml::checkpoint`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct Checkpoint {
    pub(super) fingerprint: serde_json::Value,
    pub(super) epochs_done: usize,
    pub(super) weights: String,
    pub(super) classifier_weights: Option<String>,
    pub(super) optimizer: String,
    pub(super) classifier_optimizer: Option<String>,
    pub(super) rng: u64,
    pub(super) history: Vec<(usize, f64, Evaluation)>,
    pub(super) seconds: f64,
}

impl checkpoint::Record for Checkpoint {
    fn files(&self) -> Vec<&str> {
        [
            Some(&self.weights),
            self.classifier_weights.as_ref(),
            Some(&self.optimizer),
            self.classifier_optimizer.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect()
    }
}

pub(super) fn read_checkpoint(out_dir: &Path) -> Result<Option<Checkpoint>, MlError> {
    checkpoint::read(out_dir)
}

pub(super) fn read_optimizer(path: &Path) -> Result<burn::optim::OptimizerRecord, MlError> {
    let bytes = std::fs::read(path)?;
    burn::optim::OptimizerRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| MlError::Weights(format!("optimizer state: {e:?}")))
}

pub(super) fn write_checkpoint(
    out_dir: &Path,
    net: &SaliencyNet,
    classifier: Option<&crate::ml::classifier::Classifier>,
    optimizer: &burn::optim::ModuleOptimizer,
    classifier_optimizer: Option<&burn::optim::ModuleOptimizer>,
    mut state: Checkpoint,
) -> Result<(), MlError> {
    let previous = read_checkpoint(out_dir);
    let n = state.epochs_done;
    let optim = |o: &burn::optim::ModuleOptimizer, name: String| -> Result<String, MlError> {
        let bytes = o
            .to_record()
            .into_bytes()
            .map_err(|e| MlError::Weights(format!("optimizer state: {e:?}")))?;
        write_atomically(&out_dir.join(&name), &bytes)?;
        Ok(name)
    };
    state.weights = checkpoint::file_name(n, "bpk");
    save_module(net.clone(), &out_dir.join(&state.weights))?;
    state.optimizer = optim(optimizer, checkpoint::file_name(n, "optim.bpk"))?;
    if let (Some(c), Some(o)) = (classifier, classifier_optimizer) {
        let w = checkpoint::file_name(n, "classifier.bpk");
        c.save(&out_dir.join(&w))?;
        state.classifier_weights = Some(w);
        state.classifier_optimizer =
            Some(optim(o, checkpoint::file_name(n, "classifier.optim.bpk"))?);
    }
    checkpoint::commit(out_dir, previous, &state)
}
