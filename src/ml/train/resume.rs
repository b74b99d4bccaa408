//! The training loop's checkpoint record (`ml::checkpoint`) and what a resumed run must agree with.

use super::*;

/// What a checkpoint must agree with to be resumed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Fingerprint {
    pub(crate) options: serde_json::Value,
    pub(crate) class_names: Vec<String>,
    pub(crate) train_images: usize,
    pub(crate) validation_images: usize,
}

/// The options that change a run (not the command line, the resume flag or the run's name).
pub(crate) fn comparable(options: &TrainOptions) -> serde_json::Value {
    let mut o = options.clone();
    o.command.clear();
    o.resume = false;
    serde_json::to_value(&o).unwrap_or_default()
}

/// `checkpoint.json`: the commit record of the last complete epoch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct CheckpointState {
    pub(crate) fingerprint: Fingerprint,
    pub(crate) epochs_done: usize,
    /// File names (in the output folder) of the weights and the optimizer state.
    pub(crate) weights: String,
    pub(crate) optimizer: String,
    pub(crate) rng: u64,
    pub(crate) history: Vec<(usize, f64, Evaluation)>,
    pub(crate) seconds: f64,
}

/// The best epoch's weights so far (with `keep_best`).
pub(crate) const BEST: &str = "best.bpk";

impl checkpoint::Record for CheckpointState {
    fn files(&self) -> Vec<&str> {
        vec![&self.weights, &self.optimizer]
    }
}

/// Writes this epoch's weights and optimizer state under new names, then commits them
/// (`ml::checkpoint`).
pub(crate) fn write_checkpoint(
    out_dir: &Path,
    net: &Net,
    optimizer: &burn::optim::ModuleOptimizer,
    state: &CheckpointState,
) -> Result<(), MlError> {
    let previous = read_checkpoint(out_dir);
    let mut state = state.clone();
    state.weights = checkpoint::file_name(state.epochs_done, "bpk");
    state.optimizer = checkpoint::file_name(state.epochs_done, "optim.bpk");
    match net {
        Net::Lung(m) => save_module(m.clone(), &out_dir.join(&state.weights))?,
        Net::Classifier(m) => m.save(&out_dir.join(&state.weights))?,
    }
    let bytes = optimizer
        .to_record()
        .into_bytes()
        .map_err(|e| MlError::Weights(format!("optimizer state: {e:?}")))?;
    write_atomically(&out_dir.join(&state.optimizer), &bytes)?;
    checkpoint::commit(out_dir, previous, &state)
}

pub(crate) fn read_checkpoint(out_dir: &Path) -> Result<Option<CheckpointState>, MlError> {
    checkpoint::read(out_dir)
}

/// After a finished run: the checkpoint files are no longer needed.
pub(crate) fn remove_checkpoint(out_dir: &Path) -> Result<(), MlError> {
    checkpoint::remove::<CheckpointState>(out_dir)
}
