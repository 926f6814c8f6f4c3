//! Where the fused kernels run: Flex, and CubeCL devices for `f32` tensors, unless
//! `QUANT_FUSED=off`.

use burn::backend::{DType, DispatchDevice};
use burn::tensor::{Device, Tensor};

/// Whether `x` lives where the fused kernels run (with or without autodiff): on Flex, and on
/// CubeCL devices for `f32` tensors. `QUANT_FUSED=off` turns them off everywhere (the composite
/// ops then run), so benchmarks can measure what the kernels buy.
pub(super) fn has_kernels(x: &Tensor<4>) -> bool {
    kernel_host(&x.device(), x.dtype()).is_some()
}

/// Which kernel set runs for tensors of `dtype` on `device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KernelHost {
    /// The CPU kernels (`flex`).
    Flex,
    /// The CubeCL kernels (`cube`): wgpu, CUDA.
    #[cfg(feature = "cube")]
    Cube,
}

/// Where the fused kernels run for tensors of `dtype` on `device` (with or without autodiff),
/// `None` where they do not: other devices, other dtypes on CubeCL, or `QUANT_FUSED=off`.
pub(super) fn kernel_host(device: &Device, dtype: DType) -> Option<KernelHost> {
    if !fused_enabled() {
        return None;
    }
    match device.clone().without_autodiff().as_dispatch() {
        DispatchDevice::Flex(_) => Some(KernelHost::Flex),
        #[cfg(feature = "cube")]
        DispatchDevice::Cube(_) if dtype == DType::F32 => Some(KernelHost::Cube),
        _ => {
            let _ = dtype;
            None
        }
    }
}

/// `false` when the environment variable `QUANT_FUSED` is `off` (read once).
pub fn fused_enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("QUANT_FUSED").map_or(true, |v| v != "off"))
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Tensor};

    use super::super::entry::{fused_lsq, fused_max_abs, fused_min_max};

    /// The fused kernels are what keeps QAT cheap on Flex: a refactor that silently fell back to
    /// the composite ops would pass every numeric test and double the step time.
    #[test]
    fn flex_and_wgpu_take_the_fused_path() {
        let check = |device: Device, expected: bool| {
            let x = Tensor::<4>::ones([2, 3, 1, 1], &device);
            let scale = Tensor::<1>::ones([3], &device);
            let zp = Tensor::<1>::zeros([3], &device);
            let fused = fused_lsq(
                &x,
                scale.clone(),
                None,
                zp.clone(),
                None,
                (-8, 7),
                false,
                false,
                1.0,
            );
            assert_eq!(fused.is_some(), expected, "fused_lsq on {device:?}");
            assert_eq!(fused_max_abs(&x, false, 3).is_some(), expected);
            assert_eq!(fused_min_max(&x, false, 3).is_some(), expected);
        };
        check(Device::flex(), true);
        check(Device::flex().autodiff(), true);
        #[cfg(feature = "wgpu")]
        check(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice), true);
        #[cfg(feature = "wgpu")]
        check(
            Device::wgpu(burn::tensor::DeviceKind::DefaultDevice).autodiff(),
            true,
        );
    }
}
