//! The run configuration: TOML files in `configs/`, `--set key=value` overrides, validation.
mod overrides;
mod run_config;
mod scheme;

pub use overrides::*;
pub use run_config::*;
pub use scheme::*;
