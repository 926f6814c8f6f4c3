//! Helpers for the crate's unit tests: the devices numeric tests run on, and tensor values.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::{LayerKind, QuantLinear, QuantLinearConfig, QuantMapping};

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

/// Two linear layers, the first with a fused ReLU and the second fed through the first's output
/// quantizer: the smallest model whose layers read each other's quantized outputs (the whole-model
/// passes of `qat` are tested on it).
#[derive(Module, Debug)]
pub(crate) struct Mlp {
    pub(crate) fc1: QuantLinear,
    pub(crate) fc2: QuantLinear,
}

impl Mlp {
    /// A float MLP `[d_in, hidden, d_out]`.
    pub(crate) fn new([d_in, hidden, d_out]: [usize; 3], device: &Device) -> Self {
        Mlp {
            fc1: QuantLinearConfig::new(d_in, hidden)
                .with_relu(true)
                .init(device),
            fc2: QuantLinearConfig::new(hidden, d_out).init(device),
        }
    }

    /// A copy with `mapping`'s quantizers (paths `fc1`, `fc2`).
    pub(crate) fn quantized(&self, mapping: &QuantMapping) -> Self {
        let layer = |l: &QuantLinear, path| {
            l.clone()
                .with_quantizers(&mapping.layer(path, LayerKind::Linear, 2, 2))
                .unwrap()
        };
        Mlp {
            fc1: layer(&self.fc1, "fc1"),
            fc2: layer(&self.fc2, "fc2"),
        }
    }

    pub(crate) fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let h = self.fc1.forward(x);
        self.fc2.forward_from(h, self.fc1.output_quant.as_ref())
    }
}
