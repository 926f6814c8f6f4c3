//! Helpers for the crate's unit tests: the devices numeric tests run on, and tensor values.

use burn::tensor::{Device, Tensor};

/// Every device with fused kernels, with autodiff: Flex always, wgpu (lavapipe on CPU-only
/// machines) with the `wgpu` feature.
pub(crate) fn kernel_devices() -> Vec<Device> {
    #[allow(unused_mut)]
    let mut devices = vec![Device::flex().autodiff()];
    #[cfg(feature = "wgpu")]
    devices.push(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice).autodiff());
    devices
}

/// Asserts `got` equals `want` to a relative 1e-5 (with an absolute floor of 1e-5): for values
/// that reach the same sums in another order (another kernel, another blocking).
pub(crate) fn assert_close(name: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "{name}[{i}]: {g} against {w}"
        );
    }
}

/// A tensor's values as `f32`s.
pub(crate) fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.to_data().try_to_vec::<f32>().unwrap()
}
