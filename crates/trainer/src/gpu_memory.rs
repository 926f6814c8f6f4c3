//! How CubeCL's wgpu runtime pools device memory, chosen with the environment variable
//! `QAT_GPU_MEMORY` before the device's first use: burn's default (`adaptive`: sub-allocated
//! pages) or `exclusive` (a page per allocation, in size buckets). Exclusive pages cost the host
//! far less per allocation: CubeCL's sub-allocating pool scans and coalesces a page's slices at
//! every reservation, which was a third of its runtime thread's work per training step on
//! lavapipe (README, *Host work*), and a step on a GPU whose host is the bottleneck pays it.

use crate::TrainerError;

/// The environment variable that picks the pool.
pub const GPU_MEMORY_VAR: &str = "QAT_GPU_MEMORY";

/// How the wgpu runtime pools device memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuMemory {
    /// Burn's default: small allocations sliced from shared pages, the rest from pages sized
    /// to the largest allocation so far.
    Adaptive,
    /// One page per allocation, in exponentially spaced size buckets: no slices to scan.
    Exclusive,
}

impl GpuMemory {
    /// Parses a value of [`GPU_MEMORY_VAR`], with an error that names the variable.
    pub fn parse(value: &str) -> Result<Self, TrainerError> {
        match value {
            "adaptive" => Ok(Self::Adaptive),
            "exclusive" => Ok(Self::Exclusive),
            other => Err(TrainerError::Backend(format!(
                "{GPU_MEMORY_VAR}=`{other}`: expected `adaptive` or `exclusive`"
            ))),
        }
    }

    /// The pool [`GPU_MEMORY_VAR`] asks for, `None` when it is unset.
    pub fn from_env() -> Result<Option<Self>, TrainerError> {
        std::env::var(GPU_MEMORY_VAR)
            .ok()
            .map(|value| Self::parse(&value))
            .transpose()
    }
}

/// Sets up the wgpu runtime's default device (the one `--backend wgpu` trains on) with `memory`,
/// once per process: a runtime already set up keeps its pool.
#[cfg(feature = "wgpu")]
pub(crate) fn set_up_wgpu(memory: GpuMemory) -> Result<(), TrainerError> {
    use burn::backend::wgpu::{
        MemoryConfiguration, RuntimeOptions, WgpuDevice, graphics::AutoGraphicsApi, try_init_setup,
    };
    static SET_UP: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    SET_UP
        .get_or_init(|| {
            let memory_config = match memory {
                GpuMemory::Adaptive => MemoryConfiguration::Adaptive,
                GpuMemory::Exclusive => MemoryConfiguration::ExclusivePages,
            };
            let options = RuntimeOptions {
                memory_config,
                ..Default::default()
            };
            try_init_setup::<AutoGraphicsApi>(&WgpuDevice::default(), options)
                .map(|_| ())
                .map_err(|err| err.to_string())
        })
        .clone()
        .map_err(|err| {
            TrainerError::Backend(format!("{GPU_MEMORY_VAR}: could not set up wgpu: {err}"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_and_a_bad_one_names_the_variable() {
        assert_eq!(GpuMemory::parse("exclusive").unwrap(), GpuMemory::Exclusive);
        assert_eq!(GpuMemory::parse("adaptive").unwrap(), GpuMemory::Adaptive);
        let err = GpuMemory::parse("sliced").unwrap_err().to_string();
        assert!(
            err.contains(GPU_MEMORY_VAR) && err.contains("sliced") && err.contains("exclusive"),
            "{err}"
        );
    }
}
