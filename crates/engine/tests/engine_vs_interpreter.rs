//! The engine equals the interpreter bit for bit — every value of random programs, every
//! kernel family this CPU supports, batches 1 and 5.

mod common;

use engine::{Engine, Interpreter, Isa, Value};

fn compare(artifact: &engine::Artifact, input_len: usize) {
    let interpreter = Interpreter::new(artifact).unwrap();
    for batch in [1usize, 5] {
        let x = common::inputs(batch as u64, batch * input_len);
        let want = interpreter.run(batch, &[&x]).unwrap();
        for isa in Isa::available() {
            let got = Engine::with_isa(artifact, isa)
                .unwrap()
                .run(batch, &[&x])
                .unwrap();
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

#[test]
fn engine_equals_interpreter_on_dynamic_rows() {
    compare(&common::dynamic(7), 5 * 19);
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
