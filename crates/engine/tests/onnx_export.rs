//! ONNX export of integer programs: the graph's structure read back from the bytes (one
//! `QuantizeLinear` per integer tensor, weights and biases as stored, the batch axis symbolic),
//! every output — codes and logits — equal on ONNX Runtime and the interpreter, for programs
//! with every exportable op at 8, 4 and 2 bits, and ops without an ONNX form refused by name.

mod common;
#[path = "common/onnxruntime.rs"]
mod onnxruntime;

use engine::onnx::OnnxWeights;
use engine::onnx::proto::{ModelProto, TensorProto};
use engine::{Interpreter, Op, Value};
use prost::Message;

fn initializer<'a>(model: &'a ModelProto, name: &str) -> &'a TensorProto {
    let graph = model.graph.as_ref().unwrap();
    graph
        .initializer
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no initializer {name}"))
}

#[test]
fn every_integer_tensor_is_one_quantize_linear_and_weights_are_stored_as_chosen() {
    for (bits, act_bits) in [(8, 8), (4, 4), (2, 8)] {
        let artifact = common::cnn(3, bits, act_bits);
        for weights in [OnnxWeights::Uint8, OnnxWeights::Int8] {
            let bytes = artifact.to_onnx(weights).unwrap();
            let model = ModelProto::decode(bytes.as_slice()).unwrap();
            assert_eq!(model.opset_import[0].version, engine::onnx::ONNX_OPSET);
            let graph = model.graph.as_ref().unwrap();
            let program = &artifact.program;
            // Codes made by arithmetic (not moved by a pool or a flatten) come from one
            // QuantizeLinear each, and nothing else is quantized.
            let quantizing = program
                .ops
                .iter()
                .filter(|op| !matches!(op, Op::MaxPool2d { .. } | Op::Flatten { .. }))
                .filter(|op| program.values[op.output()].quant.is_some())
                .count();
            let count = |ty: &str| graph.node.iter().filter(|n| n.op_type == ty).count();
            assert_eq!(count("QuantizeLinear"), quantizing, "{bits}/{act_bits}");
            // A 4-bit grid keeps its codes with a Clip; a full byte grid needs none unless a
            // ReLU lifts its floor above code 0.
            let clipped = program
                .ops
                .iter()
                .filter(|op| match op {
                    Op::Conv2d { relu, output, .. }
                    | Op::Linear { relu, output, .. }
                    | Op::Add { relu, output, .. } => program.values[*output]
                        .quant
                        .is_some_and(|q| q.qmin > 0 || q.qmax < 255 || (*relu && q.zero_point > 0)),
                    Op::Quantize { output, .. } | Op::GlobalAvgPool { output, .. } => {
                        program.values[*output].quant.is_some_and(|q| q.qmax < 255)
                    }
                    _ => false,
                })
                .count();
            assert_eq!(count("Clip"), clipped, "{bits}/{act_bits}");
            assert_eq!(graph.output.len(), program.outputs.len());
            let batch = &graph.input[0].r#type.as_ref().unwrap().tensor_type;
            let first = &batch.as_ref().unwrap().shape.as_ref().unwrap().dim[0];
            assert_eq!(
                first.value,
                Some(engine::onnx::proto::DimensionValue::DimParam(
                    "batch".into()
                ))
            );
            // The weight codes and biases are the artifact's, byte for byte (shifted by 128
            // as uint8).
            let stored = artifact.tensors["conv1.weight"].as_codes().unwrap();
            let onnx = &initializer(&model, "conv1.weight").raw_data;
            let shift = if weights == OnnxWeights::Uint8 {
                128
            } else {
                0
            };
            assert!(
                stored
                    .iter()
                    .zip(onnx)
                    .all(|(&c, &b)| (c as i32 + shift) as u8 == b)
            );
            let bias = artifact.tensors["conv1.bias"].as_i32().unwrap();
            let onnx_bias: Vec<i32> = initializer(&model, "conv1.bias")
                .raw_data
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            assert_eq!(bias, onnx_bias.as_slice());
        }
    }
}

#[test]
fn onnxruntime_computes_every_output_of_the_program() {
    for (seed, bits, act_bits) in [(1, 8, 8), (2, 4, 4), (3, 2, 8), (4, 8, 4)] {
        let artifact = common::cnn(seed, bits, act_bits);
        let n = 6;
        let x = common::inputs(seed + 100, n * 3 * 13 * 11);
        let ours = Interpreter::new(&artifact).unwrap().run(n, &[&x]).unwrap();
        let name = format!("cnn w{bits}a{act_bits}");
        let onnx = artifact.to_onnx(OnnxWeights::Uint8).unwrap();
        let Some(run) = onnxruntime::run(&name, &onnx, &[&x], n) else {
            return;
        };
        assert_eq!(run.report["checker"], "ok", "{name}");
        for (level, outputs) in [("optimized", &run.optimized), ("reference", &run.reference)] {
            assert_eq!(outputs.len(), ours.len(), "{name} {level}");
            for (k, (theirs, ours)) in outputs.iter().zip(&ours).enumerate() {
                let v = artifact.program.outputs[k];
                let info = &artifact.program.values[v];
                // Codes compared as codes (ONNX returns them dequantized); logits as floats.
                let (mismatched, total) = match (ours, info.quant) {
                    (Value::Codes(codes), Some(q)) => {
                        let theirs = theirs
                            .iter()
                            .map(|r| (r / q.scale).round() as i32 + q.zero_point);
                        let off = codes.iter().zip(theirs).filter(|(a, b)| **a != *b).count();
                        (off, codes.len())
                    }
                    (Value::Float(ours), None) => {
                        let span = ours.iter().fold(0f32, |m, v| m.max(v.abs()));
                        let off = ours
                            .iter()
                            .zip(theirs)
                            .filter(|(a, b)| (*a - *b).abs() > 1e-4 * span.max(1.0))
                            .count();
                        (off, ours.len())
                    }
                    _ => unreachable!("outputs are codes exactly when integer"),
                };
                eprintln!(
                    "{name} {level} output {k} ({}): {mismatched}/{total} off",
                    info.name
                );
                // One rounding tie may move a code, and what reads it; a wrong op moves most.
                assert!(
                    mismatched * 50 <= total.max(50),
                    "{name} {level}: output {k} ({}) differs in {mismatched}/{total}",
                    info.name
                );
            }
        }
    }
}

/// The LSTM unrolled: six quantizers a frame (gates, σ of i/f/o, tanh of g, cell, tanh of the
/// cell, hidden state; a 16-bit cell state quantized in float instead), and on ONNX Runtime the
/// hidden state's codes after every frame — padded frames holding it — are the engine's.
#[test]
fn an_lstm_unrolls_to_the_engines_step_and_onnxruntime_runs_it() {
    let time = 7;
    for (seed, bits, act_bits, cell_bits) in [(1, 8, 8, 8), (2, 4, 4, 4), (3, 8, 8, 16)] {
        let artifact = common::lstm(seed, time, bits, act_bits, cell_bits);
        let onnx = artifact.to_onnx(OnnxWeights::Uint8).unwrap();
        let model = ModelProto::decode(onnx.as_slice()).unwrap();
        let graph = model.graph.as_ref().unwrap();
        let count = |ty: &str| graph.node.iter().filter(|n| n.op_type == ty).count();
        let per_frame = if cell_bits > 8 { 5 } else { 6 };
        assert_eq!(
            count("QuantizeLinear"),
            1 + per_frame * time,
            "w{bits}a{act_bits}"
        );
        assert_eq!(count("Round"), if cell_bits > 8 { time } else { 0 });
        assert_eq!(count("Where"), 2 * time);

        let n = 5;
        let x = common::inputs(seed, n * time * 3);
        // Sequences of lengths 7, 6, 3, 1 and 5: padding at the end, as the trainer batches.
        let lengths = [7, 6, 3, 1, 5];
        let mask: Vec<f32> = lengths
            .iter()
            .flat_map(|&l| (0..time).map(move |t| if t < l { 1.0 } else { 0.0 }))
            .collect();
        let ours = Interpreter::new(&artifact)
            .unwrap()
            .run(n, &[&x, &mask])
            .unwrap();
        let Value::Codes(ours) = &ours[0] else {
            panic!("the states are codes")
        };
        let name = format!("lstm w{bits}a{act_bits} cell{cell_bits}");
        let Some(run) = onnxruntime::run(&name, &onnx, &[&x, &mask], n) else {
            return;
        };
        assert_eq!(run.report["checker"], "ok", "{name}");
        let q = artifact.program.values[artifact.program.outputs[0]]
            .quant
            .unwrap();
        for (level, outputs) in [("optimized", &run.optimized), ("reference", &run.reference)] {
            let theirs: Vec<i32> = outputs[0]
                .iter()
                .map(|r| (r / q.scale).round() as i32 + q.zero_point)
                .collect();
            let off = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
            eprintln!(
                "{name} {level}: {off}/{} hidden-state codes off",
                ours.len()
            );
            assert!(
                off * 20 <= ours.len(),
                "{name} {level}: {off}/{} codes differ",
                ours.len()
            );
        }
    }
}

#[test]
fn ops_without_an_onnx_form_are_refused_by_name() {
    let err = common::dynamic(1)
        .to_onnx(OnnxWeights::Uint8)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Linear dense") && err.contains("float input") && err.contains("Conv2d"),
        "{err}"
    );
    let err = common::transformer(1, 5, 8, 2, 11)
        .to_onnx(OnnxWeights::Uint8)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("op 0 (Embed word)") && err.contains("no ONNX form"),
        "{err}"
    );
}
