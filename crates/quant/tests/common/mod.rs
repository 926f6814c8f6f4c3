//! Shared test helpers: the devices every numeric test runs on, and comparisons with tolerances.
#![allow(dead_code)]

use burn::tensor::{Device, Tensor};

/// Every device compiled in: Flex always, wgpu (Vulkan through Mesa lavapipe on CPU-only
/// machines) with the `wgpu` feature. Numeric tests loop over these and must agree.
pub fn devices() -> Vec<(&'static str, Device)> {
    #[allow(unused_mut)]
    let mut devices = vec![("flex", Device::flex())];
    #[cfg(feature = "wgpu")]
    devices.push((
        "wgpu",
        Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
    ));
    devices
}

/// Values of a tensor as `f32`s.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Asserts `actual ≈ expected` elementwise within `atol + rtol · |expected|`, naming the case.
pub fn assert_close(
    case: &str,
    what: &str,
    actual: &[f32],
    expected: &[f32],
    atol: f32,
    rtol: f32,
) {
    assert_eq!(actual.len(), expected.len(), "{case}: {what} length");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let tol = atol + rtol * e.abs();
        assert!(
            (a - e).abs() <= tol,
            "{case}: {what}[{i}] = {a}, expected {e} (tolerance {tol})"
        );
    }
}
