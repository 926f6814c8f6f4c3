//! What the export tests share: the logits an artifact returns, and the check that they are the
//! fake-quant model's.
#![allow(dead_code)]

use engine::Value;

/// The float logits an artifact's first output holds.
pub fn logits(values: &[Value]) -> Vec<f32> {
    match &values[0] {
        Value::Float(v) => v.clone(),
        Value::Codes(_) => panic!("logits are float"),
    }
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0
}

/// Asserts the engine's `reference` logits are the fake-quant model's `fake` for `n` items: the
/// same prediction on at least `agree_percent`% of them, and no logit further off than
/// `gap_share` of the largest logit.
pub fn assert_parity(
    name: &str,
    fake: &[f32],
    reference: &[f32],
    n: usize,
    agree_percent: usize,
    gap_share: f32,
) {
    let classes = fake.len() / n;
    let agree = (0..n)
        .filter(|&i| {
            argmax(&fake[i * classes..][..classes]) == argmax(&reference[i * classes..][..classes])
        })
        .count();
    let span = fake.iter().fold(0f32, |m, v| m.max(v.abs()));
    let gap = fake
        .iter()
        .zip(reference)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!(
        "{name}: {agree}/{n} predictions agree, max |Δlogit| {gap:.2e} (logits up to {span:.2})"
    );
    assert!(
        agree * 100 >= n * agree_percent,
        "{name}: only {agree}/{n} predictions agree"
    );
    assert!(
        gap <= gap_share * span,
        "{name}: logits differ by {gap} (span {span})"
    );
}

/// How many of the `n` items have some logit further than `tolerance` from the fake-quant
/// model's: the items whose integer program took a different rounding somewhere.
pub fn items_off(fake: &[f32], reference: &[f32], n: usize, tolerance: f32) -> usize {
    let classes = fake.len() / n;
    (0..n)
        .filter(|&i| {
            fake[i * classes..][..classes]
                .iter()
                .zip(&reference[i * classes..][..classes])
                .any(|(a, b)| (a - b).abs() > tolerance)
        })
        .count()
}
