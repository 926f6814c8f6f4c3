//! The engine equals the interpreter bit for bit — every value of random programs, every
//! kernel family this CPU supports, batches 1 and 5 (CNN ops, dynamic rows, a transformer
//! layer, an LSTM).

mod common;

use engine::{Engine, Interpreter, Isa, Value};

fn compare(artifact: &engine::Artifact, input_len: usize) {
    compare_with(artifact, |batch| {
        vec![common::inputs(batch as u64, batch * input_len)]
    });
}

/// Each engine runs batch 1, 5, then 1 again: the later runs take their buffers from the pool
/// holding the earlier runs' values, so nothing may depend on what a buffer held.
fn compare_with(artifact: &engine::Artifact, make: impl Fn(usize) -> Vec<Vec<f32>>) {
    let interpreter = Interpreter::new(artifact).unwrap();
    let engines: Vec<(Isa, Engine)> = Isa::available()
        .into_iter()
        .map(|isa| (isa, Engine::with_isa(artifact, isa).unwrap()))
        .collect();
    for batch in [1usize, 5, 1] {
        let inputs = make(batch);
        let x: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
        let want = interpreter.run(batch, &x).unwrap();
        for (isa, engine) in &engines {
            let got = engine.run(batch, &x).unwrap();
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                match (g, w) {
                    (Value::Codes(g), Value::Codes(w)) => {
                        assert_eq!(g, w, "{} output {k} batch {batch}", isa.name())
                    }
                    (Value::Float(g), Value::Float(w)) => {
                        let same = g.iter().zip(w).all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(
                            same && g.len() == w.len(),
                            "{} output {k} batch {batch}: {g:?} vs {w:?}",
                            isa.name()
                        );
                    }
                    _ => panic!("output {k}: kinds differ"),
                }
            }
        }
    }
}

#[test]
fn engine_equals_interpreter_on_every_op_and_width() {
    for (seed, bits, act_bits) in [(1, 8, 8), (2, 4, 8), (3, 4, 4), (4, 2, 8), (5, 8, 8)] {
        compare(&common::cnn(seed, bits, act_bits), 3 * 13 * 11);
    }
}

/// Convolution shapes whose kernel rows span every copy width of the engine's im2col (1–3,
/// 4–7, 8–15, 16–64 and over 64 bytes): LeNet's 5 × 5 over one channel, ResNet's 3 × 3 over 16
/// and 32, odd channel counts, strides and one-sided padding, windows reaching past the image;
/// products of one block of patches, of several, and large enough for threads. Those whose
/// kernel rows are whole depth groups (`kw · c` a multiple of 4) are read in place from the
/// padded input instead (implicit GEMM), blocks of output pixels crossing images at batch 5.
#[test]
fn engine_equals_interpreter_on_convolution_shapes() {
    let cases = [
        ([1, 12, 10], 5, [5, 5], [1, 1], [2, 2, 2, 2]),
        ([1, 9, 9], 3, [3, 1], [2, 1], [1, 0, 1, 0]),
        ([2, 7, 8], 4, [1, 3], [1, 1], [0, 1, 0, 1]),
        ([16, 9, 7], 8, [3, 3], [1, 1], [1, 1, 1, 1]),
        ([16, 9, 9], 16, [3, 3], [2, 2], [1, 1, 1, 1]),
        ([32, 6, 5], 8, [3, 3], [1, 1], [1, 1, 1, 1]),
        ([3, 6, 6], 5, [4, 4], [3, 2], [3, 0, 0, 3]),
        ([8, 5, 6], 8, [1, 1], [1, 1], [0, 0, 0, 0]),
        // Read in place: a 1 × 1 stride-2 shortcut straight from the input (no padding), and a
        // 2 × 3 window over 4 channels, padded on three sides, reaching past the image.
        ([8, 9, 9], 16, [1, 1], [2, 2], [0, 0, 0, 0]),
        ([4, 7, 6], 6, [2, 3], [2, 1], [0, 2, 1, 1]),
        // ResNet-20's first stage: at batch 5, 9 M multiply-adds, so the blocks of patches run
        // on rayon's threads (and, where the CPU has AMX, on AMX: patch rows laid 192 codes
        // apart instead of 144, a last block on the vector kernels at that stride, and the
        // scratch switching layouts between batches 1, 5 and 1).
        ([16, 28, 28], 16, [3, 3], [1, 1], [1, 1, 1, 1]),
        // Its second stage's shape at batch 5: 32 columns, depth 288 (rows 320 apart on AMX).
        ([32, 14, 14], 32, [3, 3], [1, 1], [1, 1, 1, 1]),
    ];
    for (seed, (input, out, kernel, stride, padding)) in cases.into_iter().enumerate() {
        let artifact = common::conv(seed as u64, input, out, kernel, stride, padding);
        compare(&artifact, input.iter().product());
    }
}

#[test]
fn engine_equals_interpreter_on_dynamic_rows() {
    compare(&common::dynamic(7), 5 * 19);
}

#[test]
fn engine_equals_interpreter_on_a_transformer_layer() {
    // Odd sizes: 13 tokens (not a multiple of 4), 3 heads of 8; padding in every sequence.
    for (seed, s, hidden, heads) in [(1, 13, 24, 3), (2, 32, 64, 4), (3, 5, 8, 1)] {
        let vocab = 40;
        let artifact = common::transformer(seed, s, hidden, heads, vocab);
        compare_with(&artifact, |batch| {
            let (ids, mask) = common::token_inputs(seed + batch as u64, batch, s, vocab, 3);
            vec![ids, mask]
        });
    }
}

/// The LSTM on the GEMM (sequences in lockstep, blocks split across threads) against the
/// interpreter's loops: odd widths (rows padded to the packing depth), 2-, 4- and 8-bit weights,
/// a 16-bit cell, and padding — sequences of every length, one of none.
#[test]
fn engine_equals_interpreter_on_an_lstm() {
    let cases = [
        (1, [7, 3, 4], 8, 8, 8),
        (2, [6, 7, 5], 4, 4, 4),
        (3, [5, 8, 16], 8, 8, 16),
        (4, [9, 13, 33], 2, 8, 8),
    ];
    for (seed, [time, d_in, h], bits, act_bits, cell_bits) in cases {
        let artifact = common::lstm_sized(seed, [time, d_in, h], bits, act_bits, cell_bits);
        compare_with(&artifact, |batch| {
            let x = common::inputs(seed + batch as u64, batch * time * d_in);
            let mask = (0..batch)
                .flat_map(|b| {
                    let len = (b * 3 + seed as usize) % (time + 1);
                    (0..time).map(move |t| if t < len { 1.0 } else { 0.0 })
                })
                .collect();
            vec![x, mask]
        });
    }
}

#[test]
fn ids_outside_the_table_are_an_error_naming_the_input() {
    let artifact = common::transformer(1, 6, 8, 2, 40);
    let (mut ids, mask) = common::token_inputs(1, 2, 6, 40, 1);
    ids[7] = 40.0;
    for err in [
        Engine::new(&artifact)
            .unwrap()
            .run(2, &[&ids, &mask])
            .unwrap_err(),
        Interpreter::new(&artifact)
            .unwrap()
            .run(2, &[&ids, &mask])
            .unwrap_err(),
    ] {
        let m = err.to_string();
        assert!(m.contains("input_ids") && m.contains("id 40"), "{m}");
    }
    ids[7] = 1.5;
    assert!(
        Engine::new(&artifact)
            .unwrap()
            .run(2, &[&ids, &mask])
            .is_err()
    );
}

#[test]
fn a_wrong_input_length_is_an_error_naming_the_input() {
    let artifact = common::cnn(1, 8, 8);
    let err = Engine::new(&artifact)
        .unwrap()
        .run(2, &[&[0.0; 10]])
        .unwrap_err();
    assert!(err.to_string().contains("input `image`"), "{err}");
}
