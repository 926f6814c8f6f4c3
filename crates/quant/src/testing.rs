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

/// A tensor's values as `f32`s.
pub(crate) fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.to_data().try_to_vec::<f32>().unwrap()
}
