//! [`BertError`]: what can go wrong building or loading a BERT, with the file and field named.

use std::fmt::Display;
use std::path::{Path, PathBuf};

use quant::QuantError;

/// An error building a BERT or loading a checkpoint into it.
#[derive(Debug, thiserror::Error)]
pub enum BertError {
    /// A config field has a value this implementation cannot use.
    #[error("invalid `{field}`: {reason}")]
    Field {
        /// The field, e.g. `hidden_act` or `mapping.rules[0].pattern`.
        field: String,
        /// Why.
        reason: String,
    },
    /// A file could not be read or does not hold what it should.
    #[error("{}: {message}", path.display())]
    File {
        /// The file (or folder).
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A quantizer of the mapping is invalid for the tensor it is placed on.
    #[error(transparent)]
    Quant(#[from] QuantError),
}

impl BertError {
    /// A bad config field.
    pub fn field(field: impl Into<String>, reason: impl Display) -> Self {
        BertError::Field {
            field: field.into(),
            reason: reason.to_string(),
        }
    }

    /// A file that cannot be used.
    pub fn file(path: &Path, message: impl Display) -> Self {
        BertError::File {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }

    /// The same error, said of `path` (a field error becomes a file error naming the field).
    pub fn in_file(self, path: &Path) -> Self {
        match self {
            BertError::Field { field, reason } => {
                BertError::file(path, format!("invalid `{field}`: {reason}"))
            }
            other => other,
        }
    }
}
