//! Picking the Burn device from `--backend`, with a clear error for one that is not compiled in
//! or has no usable adapter on this machine.

use burn::tensor::{Device, DeviceKind, Tensor};

use crate::TrainerError;
use crate::gpu_memory::{GPU_MEMORY_VAR, GpuMemory};

/// Every backend name the CLI knows, compiled in or not.
pub const ALL_BACKENDS: [&str; 6] = ["flex", "ndarray", "wgpu", "vulkan", "metal", "cuda"];

/// The backends compiled into this binary (cargo features of the `trainer` crate).
pub fn compiled_backends() -> Vec<&'static str> {
    let mut names = Vec::new();
    if cfg!(feature = "flex") {
        names.push("flex");
    }
    if cfg!(feature = "ndarray") {
        names.push("ndarray");
    }
    if cfg!(feature = "wgpu") {
        names.push("wgpu");
    }
    if cfg!(feature = "vulkan") {
        names.push("vulkan");
    }
    if cfg!(feature = "metal") {
        names.push("metal");
    }
    if cfg!(feature = "cuda") {
        names.push("cuda");
    }
    names
}

fn construct(name: &str) -> Option<Device> {
    match name {
        #[cfg(feature = "flex")]
        "flex" => Some(Device::flex()),
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        "ndarray" => Some(Device::ndarray()),
        #[cfg(feature = "wgpu")]
        "wgpu" => Some(Device::wgpu(DeviceKind::DefaultDevice)),
        #[cfg(feature = "vulkan")]
        "vulkan" => Some(Device::vulkan(DeviceKind::DefaultDevice)),
        #[cfg(feature = "metal")]
        "metal" => Some(Device::metal(DeviceKind::DefaultDevice)),
        #[cfg(feature = "cuda")]
        "cuda" => Some(Device::cuda(0)),
        _ => {
            let _ = DeviceKind::DefaultDevice;
            None
        }
    }
}

/// Sets up `name`'s runtime with the memory pool `memory` (see [`GpuMemory`]): only wgpu's.
fn set_up_memory(name: &str, memory: GpuMemory) -> Result<(), TrainerError> {
    match name {
        #[cfg(feature = "wgpu")]
        "wgpu" => crate::gpu_memory::set_up_wgpu(memory),
        _ => Err(TrainerError::Backend(format!(
            "{GPU_MEMORY_VAR} ({memory:?}) applies to `--backend wgpu` only, not `{name}`; unset it"
        ))),
    }
}

/// The device for `name`, after checking it can run a tensor op here (GPU backends panic inside
/// Burn when no adapter exists; that panic is caught and reported as an error).
pub fn select_device(name: &str) -> Result<Device, TrainerError> {
    let compiled = compiled_backends().join(", ");
    if !ALL_BACKENDS.contains(&name) {
        return Err(TrainerError::Backend(format!(
            "unknown backend `{name}`; known: {}; compiled into this binary: {compiled}",
            ALL_BACKENDS.join(", ")
        )));
    }
    // Before the device's first use, and only for a compiled backend (else the error below).
    if let Some(memory) = GpuMemory::from_env()?
        && compiled_backends().contains(&name)
    {
        set_up_memory(name, memory)?;
    }
    let Some(device) = construct(name) else {
        return Err(TrainerError::Backend(format!(
            "backend `{name}` is not compiled into this binary (rebuild with `--features {name}`); compiled: {compiled}"
        )));
    };
    let probe_device = device.clone();
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let probe = std::panic::catch_unwind(move || {
        let x = Tensor::<1>::from_floats([1.0, 2.0], &probe_device);
        x.sum().into_scalar::<f32>()
    });
    std::panic::set_hook(previous_hook);
    match probe {
        Ok(sum) if sum == 3.0 => Ok(device),
        Ok(sum) => Err(TrainerError::Backend(format!(
            "backend `{name}` computed 1 + 2 = {sum}; refusing to train on it"
        ))),
        Err(panic) => {
            let reason = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "no usable adapter".into());
            Err(TrainerError::Backend(format!(
                "backend `{name}` is compiled in but not available on this machine ({}); compiled: {compiled}",
                reason.lines().next().unwrap_or_default()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_missing_backends_list_the_compiled_ones() {
        let err = select_device("tpu").unwrap_err().to_string();
        assert!(
            err.contains("unknown backend `tpu`") && err.contains("flex"),
            "{err}"
        );
        if !cfg!(feature = "cuda") {
            let err = select_device("cuda").unwrap_err().to_string();
            assert!(
                err.contains("not compiled") && err.contains("--features cuda"),
                "{err}"
            );
        }
        assert!(select_device("flex").is_ok());
    }
}
