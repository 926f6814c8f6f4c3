//! [`Scheme`]: a named quantization plan, from a preset name or a `QuantMapping` TOML file.

use std::path::Path;

use quant::QuantMapping;

use super::run_config::one_line;
use crate::TrainerError;

/// A quantization scheme as reports name it (`W8A8`) and the mapping that applies it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheme {
    /// Display name, e.g. `W4A4` (a preset's name upper-cased, or a file's stem).
    pub name: String,
    /// The quantizers.
    pub mapping: QuantMapping,
}

impl Scheme {
    /// A preset (`w8a8`, `w4a8`, `w4a4`, `w2a8`) or a path ending in `.toml`.
    pub fn resolve(reference: &str) -> Result<Self, TrainerError> {
        if reference.ends_with(".toml") {
            let path = Path::new(reference);
            let text = std::fs::read_to_string(path).map_err(|e| TrainerError::Io {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            let config_error = |message: String| TrainerError::Config {
                origin: reference.to_string(),
                message,
            };
            let mapping: QuantMapping =
                toml::from_str(&text).map_err(|e| config_error(one_line(&e.to_string())))?;
            mapping
                .validate()
                .map_err(|e| config_error(e.to_string()))?;
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().to_uppercase())
                .unwrap_or_default();
            return Ok(Scheme {
                name: stem,
                mapping,
            });
        }
        let mapping = QuantMapping::preset(reference).map_err(|e| TrainerError::Config {
            origin: "scheme".into(),
            message: e.to_string(),
        })?;
        Ok(Scheme {
            name: reference.to_uppercase(),
            mapping,
        })
    }

    /// Folder-safe lower-case name, e.g. `w4a4`.
    pub fn slug(&self) -> String {
        self.name
            .to_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "-")
    }
}
