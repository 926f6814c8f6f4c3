//! [`TrainerError`]: every way a run can fail, each printed as one line naming the file, field
//! or option at fault.

use std::path::PathBuf;

/// A trainer failure, printed as a one-line message by `main`.
#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    /// A config file or `--set` override is invalid.
    #[error("{origin}: {message}")]
    Config {
        /// The file (or `--set key=value`) at fault.
        origin: String,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{}: {message}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// A dataset file is malformed or missing.
    #[error("{0}")]
    Data(#[from] data::DataError),
    /// A model or quantizer could not be built.
    #[error("model: {0}")]
    Model(#[from] quant::QuantError),
    /// A BERT could not be built or its checkpoint loaded.
    #[error("model: {0}")]
    Bert(#[from] models::BertError),
    /// The requested backend is not compiled in or not usable here.
    #[error("{0}")]
    Backend(String),
    /// An integer artifact could not be read, checked or run.
    #[error("{0}")]
    Engine(#[from] engine::EngineError),
    /// What the command asks is not built for this task or model yet.
    #[error("{0}")]
    Unsupported(String),
    /// A checkpoint is missing or does not match the model.
    #[error("checkpoint {}: {message}", path.display())]
    Checkpoint {
        /// The checkpoint file or folder.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The user stopped a stage (TUI quit or Ctrl-C) before its last epoch.
    #[error("{stage} interrupted after epoch {epoch}; its checkpoints are in {}; continue with --resume", dir.display())]
    Interrupted {
        /// The stage.
        stage: String,
        /// The last epoch with a checkpoint.
        epoch: usize,
        /// The stage folder.
        dir: PathBuf,
    },
    /// Training stopped with an error inside burn-train.
    #[error("training: {0}")]
    Training(String),
}

impl TrainerError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, error: impl std::fmt::Display) -> Self {
        TrainerError::Io {
            path: path.into(),
            message: error.to_string(),
        }
    }
}
