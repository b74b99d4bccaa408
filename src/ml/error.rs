//! Errors of the ML core.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum MlError {
    #[error("bad input: {0}")]
    Input(String),
    #[error("cannot read model file: {message} ({path})")]
    ModelFile { message: String, path: PathBuf },
    #[error("model weights do not match the architecture: {0}")]
    Weights(String),
    #[error("model configuration is invalid: {0}")]
    Config(String),
    #[error("tensor data: {0}")]
    Data(String),
    #[error("no compute device: {0}")]
    Device(String),
    #[error("dataset: {0}")]
    Dataset(String),
    #[error("training options: {0}")]
    Options(String),
    #[error("settings: {0}")]
    Settings(String),
    #[error("{0}")]
    Internal(String),
    #[error("cancelled")]
    Cancelled,
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}
