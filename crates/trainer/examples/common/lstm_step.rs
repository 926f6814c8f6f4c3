//! The LSTM training-step variants `bench_qat_step --model lstm` times: float, QAT W8A8 and QAT
//! W4A4 (LSQ) of one `LstmClassifier` from the same float weights, each calibrated on the batch
//! as PTQ / QAT start does, on a batch of real Japanese Vowels utterances (padded to the
//! longest, masked).
#![allow(dead_code)]

use burn::data::dataloader::batcher::Batcher;
use burn::module::Module;
use burn::tensor::Device;
use data::{SequenceBatch, SequenceBatcher, SequenceItem, read_ts};
use models::{LstmClassifier, LstmClassifierConfig};
use quant::QuantMapping;
use trainer::Trainee;
use trainer::task::TaskNet;

use super::cnn_step::{Variant, variant};

/// `batch_size` training utterances (cycling through the 270), on `device`.
pub fn batch(batch_size: usize, device: &Device) -> SequenceBatch {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../datasets/embedded/japanese-vowels/JapaneseVowels_TRAIN.ts"
    );
    let file = read_ts(std::path::Path::new(path)).expect("committed data");
    let items = file
        .sequences
        .iter()
        .cycle()
        .take(batch_size)
        .map(|s| SequenceItem {
            frames: s.frames.clone(),
            len: s.len,
            label: s.label.parse::<usize>().expect("speakers 1–9") - 1,
        })
        .collect();
    SequenceBatcher { dims: file.dims }.batch(items, device)
}

/// Float, QAT W8A8 and QAT W4A4 variants of an LSTM of `layers` × `hidden` on `device` (with
/// autodiff).
pub fn variants(
    hidden: usize,
    layers: usize,
    batch: &SequenceBatch,
    device: &Device,
) -> [Variant<LstmClassifier>; 3] {
    let config = LstmClassifierConfig::new(12, 9)
        .with_d_hidden(hidden)
        .with_layers(layers);
    let float = config.init(device);
    let quantized = |mapping: QuantMapping| {
        let net = config
            .init(device)
            .load_record(float.clone().into_record())
            .quantized(&mapping)
            .unwrap();
        net.calibration_step(batch.clone());
        Trainee::new(net, None)
    };
    [
        variant("float", Trainee::new(float.clone(), None)),
        variant("qat_w8a8", quantized(QuantMapping::w8a8())),
        variant("qat_w4a4", quantized(QuantMapping::w4a4())),
    ]
}

/// Waits for `v`'s queued work by reading back its inference loss on `batch`.
pub fn read_back(v: &Variant<LstmClassifier>, batch: &SequenceBatch) {
    let net = v.model.as_ref().unwrap().valid().net;
    let output = net.step(batch.clone().without_autodiff());
    let _ = LstmClassifier::loss(&output).into_data();
}
