//! The LSTM classifier exported to the integer engine: round trip through the file, the engine
//! equal to the interpreter bit for bit, and the interpreter agreeing with the fake-quant model
//! on real Japanese Vowels utterances (variable lengths, padded and masked) for every preset.

use burn::tensor::{Bool, Device, Tensor, TensorData};
mod common;

use common::{
    assert_parity, calibrated_lstm, cell16, items_off, logits, sequence_batch, utterances,
};
use engine::{Artifact, Engine, Interpreter};
use models::LstmClassifierConfig;
use quant::QuantMapping;

#[test]
fn lstm_exports_for_every_preset_and_the_engine_reproduces_it() {
    let device = Device::flex();
    let n = 120;
    let (frames, mask, time) = utterances(n);
    let (x, keep) = sequence_batch(&frames, &mask, n, time, &device);
    let presets =
        ["w8a8", "w4a8", "w4a4", "w2a8"].map(|p| (p.to_string(), QuantMapping::preset(p).unwrap()));
    for (preset, mapping) in presets
        .into_iter()
        .chain([("w4a4, 16-bit cell".into(), cell16())])
    {
        let name = format!("lstm {preset}");
        let model = calibrated_lstm(mapping, &x, &keep, &device);
        let fake: Vec<f32> = model
            .forward(x.clone(), &keep)
            .into_data()
            .try_into_vec()
            .unwrap();
        // Exported for longer sequences than this batch's: padding is masked.
        let artifact = model
            .to_artifact(time + 3, serde_json::json!({ "preset": preset }))
            .unwrap();
        let artifact = Artifact::from_bytes(&artifact.to_bytes(), &name).unwrap();
        let cell_codes = artifact.program.ops.iter().find_map(|op| match op {
            engine::Op::Lstm { grids, .. } => Some(grids.cell.qmax),
            _ => None,
        });
        let cell_codes = cell_codes.expect("an LSTM op");
        if preset.contains("16-bit") {
            assert_eq!(cell_codes, 65_535, "{name}: the cell state on 16 bits");
        } else {
            assert!(cell_codes <= 255, "{name}: {cell_codes}");
        }
        let (mut padded, mut padded_mask) =
            (vec![0f32; n * (time + 3) * 12], vec![0f32; n * (time + 3)]);
        for b in 0..n {
            padded[b * (time + 3) * 12..][..time * 12]
                .copy_from_slice(&frames[b * time * 12..][..time * 12]);
            padded_mask[b * (time + 3)..][..time].copy_from_slice(&mask[b * time..][..time]);
        }
        let inputs = [padded.as_slice(), padded_mask.as_slice()];
        let reference = logits(
            &Interpreter::new(&artifact)
                .unwrap()
                .run(n, &inputs)
                .unwrap(),
        );
        let engine = logits(&Engine::new(&artifact).unwrap().run(n, &inputs).unwrap());
        assert!(
            engine
                .iter()
                .zip(&reference)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{name}: engine differs from the interpreter"
        );
        // Float and integer arithmetic agree to float rounding but for a rare rounding tie (0-3 of
        // 120 items in 750 draws). A tie moves one code of a state, and the recurrence carries it
        // on, so a diverged item's logits can move a fair share of an untrained model's small
        // span: the tight check is how few items diverge, a wrong op diverges nearly all.
        assert_parity(&name, &fake, &reference, n, 98, 0.25);
        let off = items_off(&fake, &reference, n, 1e-5);
        eprintln!("{name}: {off}/{n} items off beyond float rounding");
        assert!(off * 100 <= n * 5, "{name}: {off}/{n} items differ");
    }
}

/// An LSTM without one of its step's quantizers cannot run on the engine: the export names it.
#[test]
fn an_lstm_missing_a_quantizer_is_refused_by_path() {
    let device = Device::flex();
    let mut mapping = QuantMapping::w8a8();
    mapping.rules.push(quant::QuantRule {
        pattern: Some(r"lstm\.0\.cell_quant$".into()),
        layer: None,
        rank: None,
        weight: None,
        activation: None,
        float: true,
    });
    let model = LstmClassifierConfig::new(12, 9)
        .with_d_hidden(8)
        .with_mapping(mapping)
        .init(&device);
    let (frames, mask, time) = utterances(4);
    let x = Tensor::<3>::from_data(TensorData::new(frames, [4, time, 12]), &device);
    let keep = Tensor::<2, Bool>::from_data(
        TensorData::new(mask.iter().map(|&m| m > 0.0).collect::<Vec<_>>(), [4, time]),
        &device,
    );
    let model = quant::qat::calibrate(model, [(x, keep)], |m, (x, k)| {
        m.forward(x, &k);
    });
    let err = model
        .to_artifact(time, serde_json::json!({}))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("lstm.0.cell_quant") && err.contains("no quantizer"),
        "{err}"
    );
}
