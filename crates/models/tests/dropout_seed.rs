//! The Flex dropout kernel's mask follows the device's random generator: the same seed draws the
//! same mask, another seed or the next call another one. Alone in this test binary because the
//! generator is shared by the whole process: a test drawing from it in parallel (as the unit
//! tests beside the kernel do) would move it between the seed and the draw.

use burn::nn::DropoutConfig;
use burn::tensor::{Device, Tensor};
use models::kernels::dropout;

#[test]
fn dropout_masks_follow_the_device_seed() {
    let device = Device::flex().autodiff();
    let layer = DropoutConfig::new(0.1).init();
    let mask = || {
        let x = Tensor::<2>::ones([400, 500], &device).require_grad();
        dropout(&layer, x)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap()
    };
    device.seed(11);
    let first = mask();
    let next = mask();
    device.seed(11);
    assert_eq!(mask(), first, "same seed, same mask");
    assert_ne!(next, first, "the next call, another mask");
    device.seed(12);
    assert_ne!(mask(), first, "another seed, another mask");
}
