//! [`EngineError`]: why an artifact cannot be read or a program cannot run, naming the place.

use std::path::PathBuf;

/// Everything that can go wrong between an artifact's bytes and a model's outputs.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The bytes are not a valid artifact (truncated, corrupted, wrong magic, bad header).
    #[error("{origin}: {what}")]
    Format {
        /// The file (or `<bytes>`).
        origin: String,
        /// What is wrong, with the offset or field where known.
        what: String,
    },
    /// The artifact was written by a newer format version than this build reads.
    #[error(
        "{origin}: format version {found} is newer than this build reads (up to {supported}); upgrade the engine"
    )]
    NewerVersion {
        /// The file (or `<bytes>`).
        origin: String,
        /// Version in the file.
        found: u32,
        /// Newest version this build reads.
        supported: u32,
    },
    /// The program does not match its tensors or is malformed; `at` names the op or tensor.
    #[error("{at}: {what}")]
    Graph {
        /// `op 3 (Conv2d conv1)`, `tensor fc1.weight`, `value 5`.
        at: String,
        /// What is inconsistent.
        what: String,
    },
    /// An input given to [`crate::Engine::run`] or [`crate::Interpreter::run`] has the wrong shape.
    #[error("input `{name}`: {what}")]
    Input {
        /// The program's input name.
        name: String,
        /// What is wrong.
        what: String,
    },
}

impl EngineError {
    /// A graph error at `at`.
    pub fn graph(at: impl Into<String>, what: impl Into<String>) -> Self {
        EngineError::Graph {
            at: at.into(),
            what: what.into(),
        }
    }
}
