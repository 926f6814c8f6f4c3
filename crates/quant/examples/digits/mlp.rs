//! A 64-128-64-10 MLP on the UCI digits, trained in float, post-training quantized, then
//! QAT-fine-tuned. Shared by the `digits_qat` example and the crate's accuracy test.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use data::{ImageDataset, read_digits_csv, split_every_kth};
use quant::{
    LayerKind, QuantError, QuantLinear, QuantLinearConfig, QuantMapping, QuantStub, QuantStubConfig,
};

/// The classifier: input quantizer, then three Linear layers (ReLU fused into the first two,
/// whose outputs are quantized; the logits are dequantized accumulators).
#[derive(Module, Debug)]
pub struct Mlp {
    pub input_quant: QuantStub,
    pub fc1: QuantLinear,
    pub fc2: QuantLinear,
    pub fc3: QuantLinear,
}

impl Mlp {
    /// A float MLP (no quantizers).
    pub fn new(device: &Device) -> Self {
        let layer = |i, o, relu| QuantLinearConfig::new(i, o).with_relu(relu).init(device);
        Mlp {
            input_quant: QuantStubConfig::new(64).init(device),
            fc1: layer(64, 128, true),
            fc2: layer(128, 64, true),
            fc3: layer(64, 10, false),
        }
    }

    /// Gives every tensor the quantizer `mapping` has for its path.
    pub fn quantized(self, mapping: &QuantMapping) -> Result<Self, QuantError> {
        let layer = |path: &str| mapping.layer(path, LayerKind::Linear, 2, 2);
        let input = mapping.activation_for("input_quant.quant", LayerKind::Activation, 2);
        let device = self.fc1.weight.lazy_device();
        Ok(Mlp {
            input_quant: QuantStubConfig::new(64)
                .with_quant(input.cloned())
                .try_init(&device)?,
            fc1: self.fc1.with_quantizers(&layer("fc1"))?,
            fc2: self.fc2.with_quantizers(&layer("fc2"))?,
            fc3: self.fc3.with_quantizers(&layer("fc3").without_output())?,
        })
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = self.input_quant.forward(x);
        self.fc3.forward(self.fc2.forward(self.fc1.forward(x)))
    }
}

/// The digits split 80/20 (every fifth image is a test image).
pub fn load_digits() -> (ImageDataset, ImageDataset) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../datasets/embedded/digits/digits.csv.gz"
    );
    let data = read_digits_csv(path).expect("the digits fixture ships with the repository");
    split_every_kth(data, 5, 0)
}

fn batch(data: &ImageDataset, indices: &[usize], device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    let pixels: Vec<f32> = indices
        .iter()
        .flat_map(|&i| data.items[i].pixels.iter().copied())
        .collect();
    let labels: Vec<i64> = indices
        .iter()
        .map(|&i| data.items[i].label as i64)
        .collect();
    let x = Tensor::from_data(TensorData::new(pixels, [indices.len(), 64]), device);
    let y = Tensor::from_data(TensorData::new(labels, [indices.len()]), device);
    (x, y)
}

/// Trains `model` for `epochs` with Adam at `lr`, shuffling with a fixed seed.
pub fn train(mut model: Mlp, data: &ImageDataset, epochs: usize, lr: f64, device: &Device) -> Mlp {
    let device = device.clone().autodiff();
    let mut optim = AdamConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut order: Vec<usize> = (0..data.items.len()).collect();
    let mut state = 0x9E3779B97F4A7C15u64;
    for _ in 0..epochs {
        for i in (1..order.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            order.swap(i, (state >> 33) as usize % (i + 1));
        }
        for chunk in order.chunks(32) {
            let (x, y) = batch(data, chunk, &device);
            let loss = loss_fn.forward(model.forward(x), y);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
        }
    }
    model
}

/// Post-training calibration over the whole of `data` ([`quant::qat::calibrate`]), then observers
/// back on for QAT.
pub fn calibrate(model: Mlp, data: &ImageDataset, device: &Device) -> Mlp {
    let indices: Vec<usize> = (0..data.items.len()).collect();
    let batches = indices
        .chunks(128)
        .map(|chunk| batch(data, chunk, device).0);
    let model = quant::qat::calibrate(model, batches, |m, x| {
        m.forward(x);
    });
    quant::control::set_observers(model, true)
}

/// Top-1 accuracy of `model` (in validation mode, fake quantization on) on `data`.
pub fn accuracy(model: &Mlp, data: &ImageDataset, device: &Device) -> f64 {
    let model = model.valid();
    let indices: Vec<usize> = (0..data.items.len()).collect();
    let mut correct = 0i64;
    for chunk in indices.chunks(256) {
        let (x, y) = batch(data, chunk, device);
        let predicted = model.forward(x).argmax(1).reshape([chunk.len()]);
        correct += predicted.equal(y).int().sum().into_scalar::<i64>();
    }
    correct as f64 / data.items.len() as f64
}

/// Float, PTQ and QAT accuracy of the MLP on the digits for one scheme.
pub struct DigitsResult {
    pub float: f64,
    pub ptq: f64,
    pub qat: f64,
}

/// The whole workflow: float training, PTQ (calibrate + evaluate), QAT fine-tuning.
pub fn float_ptq_qat(
    mapping: &QuantMapping,
    device: &Device,
    float_epochs: usize,
    qat_epochs: usize,
) -> DigitsResult {
    device.seed(7);
    let (train_set, test_set) = load_digits();
    let float_model = train(
        Mlp::new(&device.clone().autodiff()),
        &train_set,
        float_epochs,
        2e-3,
        device,
    );
    let float = accuracy(&float_model, &test_set, device);
    let ptq_model = calibrate(
        float_model.quantized(mapping).expect("valid mapping"),
        &train_set,
        device,
    );
    let ptq = accuracy(&ptq_model, &test_set, device);
    let qat_model = train(ptq_model, &train_set, qat_epochs, 5e-4, device);
    let qat = accuracy(&qat_model, &test_set, device);
    DigitsResult { float, ptq, qat }
}
