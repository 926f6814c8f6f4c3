//! [`DataError`]: what went wrong reading which file.

use std::path::PathBuf;

use thiserror::Error;

/// A dataset file that could not be read or parsed.
#[derive(Debug, Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file was read but its content is not in the expected format.
    #[error("{path}{}: {reason}", .line.map(|l| format!(":{l}")).unwrap_or_default())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number, for text formats.
        line: Option<usize>,
        /// What is wrong.
        reason: String,
    },
}

impl DataError {
    /// A format error in `path`, at `line` if known.
    pub fn malformed(
        path: impl Into<PathBuf>,
        line: Option<usize>,
        reason: impl Into<String>,
    ) -> Self {
        DataError::Malformed {
            path: path.into(),
            line,
            reason: reason.into(),
        }
    }
}
