//! Errors for configuration and shape checks at the crate's boundaries.
//!
//! Forward passes follow Burn and panic on rank misuse; everything a user writes in a config file
//! (bits, granularity, regex rules) is checked up front and reported as a [`QuantError`] that names
//! the offending field and the reason.

use thiserror::Error;

/// A configuration or shape that cannot be quantized as asked.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum QuantError {
    /// A config field holds a value outside its allowed set.
    #[error("invalid `{field}`: {reason}")]
    InvalidField {
        /// Dotted path of the field, e.g. `spec.bits` or `rules[2].pattern`.
        field: String,
        /// Why the value is rejected and what is allowed.
        reason: String,
    },
}

impl QuantError {
    /// Builds an [`QuantError::InvalidField`] for `field` with a human-readable `reason`.
    pub fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Prefixes the field path with `parent`, so nested configs report their full path.
    pub fn within(self, parent: &str) -> Self {
        match self {
            Self::InvalidField { field, reason } => Self::InvalidField {
                field: format!("{parent}.{field}"),
                reason,
            },
        }
    }
}
