//! Benchmark: deployment — the integer engine running an exported model vs the float model on
//! Flex, side by side in one process: latency at batch 1 and throughput at batch 64 for LeNet-BN
//! and ResNet-20 (W8A8, calibrated on real Fashion-MNIST images) and the LSTM (on Japanese
//! Vowels), MiniLM when fetched, and the engine's int8 GEMM at 1024³ against this machine's
//! measured int8 peak.
//!
//! Run through `cargo xtask bench deploy [--model lenet|resnet|lstm|minilm|all] [--rounds R] [--threads T] [--gemm no] [--onnx DIR] [--profile yes]`.
//! `--profile yes` also prints the engine's time by op kind (MiniLM; the CNNs at batch 64 and 1).
//! With `--onnx DIR` the CNNs' artifacts are also written as `DIR/<model>.onnx` with the timed
//! inputs (`DIR/<model>.batch<N>.f32`), for ONNX Runtime to time beside the engine
//! (`xtask/scripts/side_by_side_cnn.sh`).
//! Variants alternate within each round (machine noise hits all alike); medians are compared.
//! Prints tables and, as its last line, one JSON object with the medians and the ratios.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

#[path = "common/bench_args.rs"]
mod bench_args;

use bench_args::{arg, median, number};
use burn::data::dataloader::batcher::Batcher;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use data::{ImageBatcher, read_idx_images};
use engine::gemm::{Isa, PackedWeights, gemm, peak_ops_per_second};
use quant::QuantMapping;
use serde_json::json;
use trainer::{ModelConfig, Net};

/// Seconds per call of `f`, the median over `rounds` rounds of `reps` calls.
fn time_per_call(rounds: usize, reps: usize, mut f: impl FnMut()) -> Vec<f64> {
    f(); // warm up
    (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..reps {
                f();
            }
            start.elapsed().as_secs_f64() / reps as f64
        })
        .collect()
}

/// Medians of `float` and `engine`, each timed `reps` calls a round, alternating within every
/// round (machine noise hits both alike). `--float no` leaves the float model out (NaN), so that a
/// profiler sees the engine alone.
fn side_by_side(
    rounds: usize,
    reps: usize,
    mut float: impl FnMut(),
    mut engine: impl FnMut(),
) -> (f64, f64) {
    let (mut f_s, mut e_s) = (Vec::new(), Vec::new());
    let with_float = arg("--float", "yes") != "no";
    for _ in 0..rounds {
        if with_float {
            f_s.extend(time_per_call(1, reps, &mut float));
        } else {
            f_s.push(f64::NAN);
        }
        e_s.extend(time_per_call(1, reps, &mut engine));
    }
    (median(&f_s), median(&e_s))
}

/// Prints one table row (`| label | batch | float | engine | ratio |`) and records the medians
/// under `batch<N>` in `row`, with `extra` fields.
fn record_row(
    row: &mut serde_json::Map<String, serde_json::Value>,
    [label, batch_label]: [&str; 2],
    batch: usize,
    (f, e): (f64, f64),
    items: &str,
    extra: serde_json::Value,
) {
    println!(
        "| {label} | {batch_label} | {} | {} | {:.2}× |",
        shown(batch, f, items),
        shown(batch, e, items),
        f / e
    );
    let mut fields = json!({ "float_s": f, "engine_s": e, "speedup": f / e });
    if let (Some(fields), serde_json::Value::Object(extra)) = (fields.as_object_mut(), extra) {
        fields.extend(extra);
    }
    row.insert(format!("batch{batch}"), fields);
}

/// A batch's time as the tables show it: latency in ms at batch 1, else items per second.
fn shown(batch: usize, seconds: f64, items: &str) -> String {
    if batch == 1 {
        format!("{:.3} ms", 1e3 * seconds)
    } else {
        format!("{:.0} {items}/s", batch as f64 / seconds)
    }
}

/// MiniLM (BERT) with a token head, W8A8: the float model on Flex vs the engine at 32 × 128 and
/// 1 × 128 tokens (ONNX Runtime's `../shared/peers/ort_minilm.py` times the same shapes).
fn minilm(dir: &str, rounds: usize, isa: Isa) -> Option<serde_json::Value> {
    use burn::tensor::{Bool, Int, TensorData};
    use models::{BertArtifact, BertHeadConfig, BertInput, HfCheckpoint, Target};
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let path = std::path::Path::new(root).join(dir);
    let checkpoint = HfCheckpoint::open(&path).ok()?;
    let device = Device::flex();
    let seq = 128;
    let config = checkpoint.config.clone();
    let vocab = config.vocab_size;
    let tokens = |batch: usize, seed: usize| -> (Vec<i64>, Vec<bool>) {
        let ids = (0..batch * seq)
            .map(|i| (1000 + (i * 7919 + seed * 104_729) % (vocab - 1000)) as i64)
            .collect();
        (ids, vec![true; batch * seq])
    };
    let input = |(ids, mask): &(Vec<i64>, Vec<bool>), batch: usize| BertInput {
        input_ids: Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [batch, seq]), &device),
        attention_mask: Tensor::<2, Bool>::from_data(
            TensorData::new(mask.clone(), [batch, seq]),
            &device,
        ),
        token_type_ids: None,
    };
    let mut float = BertHeadConfig::new(2).init_token(&config, &device).ok()?;
    checkpoint
        .load_into(&mut float.bert, Target::Encoder)
        .ok()?;
    let mapping = QuantMapping::w8a8();
    let net = float.clone().quantized(&mapping).unwrap();
    let calibration: Vec<BertInput> = (0..2).map(|s| input(&tokens(8, s), 8)).collect();
    let net = quant::qat::calibrate(net, calibration, |n, x| {
        n.forward(x);
    });
    let artifact = net
        .to_artifact(seq, config.layer_norm_eps, json!({}))
        .unwrap();
    let bytes = artifact.to_bytes();
    let artifact = engine::Artifact::from_bytes(&bytes, "minilm").unwrap();
    let engine = engine::Engine::with_isa(&artifact, isa).unwrap();
    let mut row = serde_json::Map::new();
    for batch in [32usize, 1] {
        let t = tokens(batch, 3);
        let x = input(&t, batch);
        let ids: Vec<f32> = t.0.iter().map(|&i| i as f32).collect();
        let mask = vec![1f32; batch * seq];
        let reps = if batch == 1 { 20 } else { 1 };
        let (f, e) = side_by_side(
            rounds,
            reps,
            || {
                std::hint::black_box(float.forward(x.clone()).into_data());
            },
            || {
                std::hint::black_box(engine.run(batch, &[&ids, &mask]).unwrap());
            },
        );
        println!(
            "| minilm | {batch} × {seq} tokens | {:.1} ms | {:.1} ms | {:.2}× |",
            1e3 * f,
            1e3 * e,
            f / e
        );
        row.insert(
            format!("batch{batch}x{seq}"),
            json!({ "float_ms": 1e3 * f, "engine_ms": 1e3 * e, "speedup": f / e }),
        );
    }
    if arg("--profile", "no") == "yes" {
        for batch in [32, 1] {
            let t = tokens(batch, 3);
            let ids: Vec<f32> = t.0.iter().map(|&i| i as f32).collect();
            let mask = vec![1f32; batch * seq];
            engine.run(batch, &[&ids, &mask]).unwrap();
            let (_, times) = engine.profile(batch, &[&ids, &mask]).unwrap();
            let times: Vec<String> = times
                .iter()
                .map(|(k, s)| format!("{k} {:.2} ms", 1e3 * s))
                .collect();
            println!("engine time by op at {batch} × {seq}: {}", times.join(", "));
        }
    }
    row.insert("artifact_bytes".into(), json!(bytes.len()));
    Some(serde_json::Value::Object(row))
}

/// The LSTM classifier (1 × 64, W8A8 calibrated on the Japanese Vowels test utterances): the
/// float model on Flex vs the engine at batch 1 and 64, every sequence padded to the longest (29
/// frames) as an export takes them.
fn lstm(rounds: usize, isa: Isa) -> serde_json::Value {
    use burn::tensor::{Bool, TensorData};
    use models::LstmClassifierConfig;
    let device = Device::flex();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../datasets/embedded/japanese-vowels/JapaneseVowels_TEST.ts"
    );
    let file = data::read_ts(std::path::Path::new(path)).expect("committed data");
    let (time, dims) = (29, file.dims);
    let batch_of = |n: usize| -> (Vec<f32>, Vec<f32>) {
        let (mut frames, mut mask) = (vec![0f32; n * time * dims], vec![0f32; n * time]);
        for (b, s) in file.sequences.iter().cycle().take(n).enumerate() {
            frames[b * time * dims..][..s.frames.len()].copy_from_slice(&s.frames);
            mask[b * time..][..s.len].fill(1.0);
        }
        (frames, mask)
    };
    let tensors = |(frames, mask): &(Vec<f32>, Vec<f32>), n: usize| {
        (
            Tensor::<3>::from_data(TensorData::new(frames.clone(), [n, time, dims]), &device),
            Tensor::<2, Bool>::from_data(
                TensorData::new(mask.iter().map(|&m| m > 0.0).collect(), [n, time]),
                &device,
            ),
        )
    };
    let config = LstmClassifierConfig::new(dims, 9).with_d_hidden(64);
    let float = config.init(&device);
    let net = float.clone().quantized(&QuantMapping::w8a8()).unwrap();
    let calibration = tensors(&batch_of(256), 256);
    let net = quant::qat::calibrate(net, std::iter::repeat_n(calibration, 4), |n, (x, m)| {
        n.forward(x, &m);
    });
    let artifact = net.to_artifact(time, json!({})).unwrap();
    let artifact = engine::Artifact::from_bytes(&artifact.to_bytes(), "lstm").unwrap();
    let engine = engine::Engine::with_isa(&artifact, isa).unwrap();
    let mut row = serde_json::Map::new();
    for batch in [1usize, 64] {
        let host = batch_of(batch);
        let (x, m) = tensors(&host, batch);
        let reps = if batch == 1 { 50 } else { 4 };
        let (f, e) = side_by_side(
            rounds,
            reps,
            || {
                std::hint::black_box(float.forward(x.clone(), &m).into_data());
            },
            || {
                std::hint::black_box(engine.run(batch, &[&host.0, &host.1]).unwrap());
            },
        );
        let batch_label = format!("{batch} × {time} frames");
        record_row(
            &mut row,
            ["lstm 1×64", &batch_label],
            batch,
            (f, e),
            "seq",
            json!({}),
        );
    }
    serde_json::Value::Object(row)
}

fn main() {
    trainer::allocator::keep_freed_memory();
    let threads = number("--threads", 2);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("the first rayon pool");
    let rounds = number("--rounds", 7);
    let which = arg("--model", "all");
    let device = Device::flex();
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../datasets/embedded/fashion-mnist-small"
    );
    let data = read_idx_images(
        format!("{dir}/t10k-images-idx3-ubyte.gz"),
        format!("{dir}/t10k-labels-idx1-ubyte.gz"),
        10,
    )
    .expect("embedded subset");
    let batcher = ImageBatcher::new(28, 28, (0.286, 0.353));
    let images =
        |n: usize| -> Tensor<4> { batcher.batch(data.items[..n].to_vec(), &device).images };

    let isa = Isa::best();
    println!(
        "deploy benchmark: {threads} threads, engine kernels {} (available: {:?})",
        isa.name(),
        Isa::available()
            .iter()
            .map(|i| i.name())
            .collect::<Vec<_>>()
    );
    let mut models_json = serde_json::Map::new();
    let models: Vec<(&str, ModelConfig)> = [
        (
            "lenet",
            ModelConfig::LenetBn {
                channels: [16, 32],
                hidden: 128,
            },
        ),
        (
            "resnet20",
            ModelConfig::Resnet {
                blocks_per_stage: 3,
                channels: [16, 32, 64],
            },
        ),
    ]
    .into_iter()
    .filter(|(name, _)| {
        which == "all"
            || (!["minilm", "lstm"].contains(&which.as_str()) && name.starts_with(which.as_str()))
    })
    .collect();
    println!(
        "\n| model | batch | float (Flex) | engine | engine × faster |\n|---|---:|---:|---:|---:|"
    );
    for (name, config) in models {
        let float = Net::init(&config, 10, &QuantMapping::new(), &device).unwrap();
        let net = Net::init(&config, 10, &QuantMapping::new(), &device)
            .unwrap()
            .load_record(float.clone().into_record())
            .quantized(&QuantMapping::w8a8())
            .unwrap();
        let calibration = images(256);
        let net = quant::qat::calibrate(net, [calibration], |n, x| {
            n.forward(x);
        });
        let artifact = net.to_artifact(28, json!({})).unwrap();
        let artifact = engine::Artifact::from_bytes(&artifact.to_bytes(), name).unwrap();
        let engine = engine::Engine::with_isa(&artifact, isa).unwrap();
        let onnx_dir = arg("--onnx", "");
        if !onnx_dir.is_empty() {
            std::fs::create_dir_all(&onnx_dir).unwrap();
            // `--onnx-weights int8`: symmetric int8 weights (ONNX Runtime's u8×s8 kernels).
            let weights = match arg("--onnx-weights", "uint8").as_str() {
                "int8" => engine::onnx::OnnxWeights::Int8,
                "uint8" => engine::onnx::OnnxWeights::Uint8,
                other => panic!("--onnx-weights {other}: expected uint8 or int8"),
            };
            let onnx = artifact.to_onnx(weights).unwrap();
            std::fs::write(format!("{onnx_dir}/{name}.onnx"), onnx).unwrap();
        }
        let mut row = serde_json::Map::new();
        for batch in [1usize, 64] {
            let x = images(batch);
            let pixels: Vec<f32> = x.clone().into_data().try_into_vec().unwrap();
            if !onnx_dir.is_empty() {
                let bytes: Vec<u8> = pixels.iter().flat_map(|v| v.to_le_bytes()).collect();
                std::fs::write(format!("{onnx_dir}/{name}.batch{batch}.f32"), bytes).unwrap();
            }
            let reps = if batch == 1 { 50 } else { 4 };
            let (f, e) = side_by_side(
                rounds,
                reps,
                || {
                    std::hint::black_box(float.forward(x.clone()).into_data());
                },
                || {
                    std::hint::black_box(engine.run(batch, &[&pixels]).unwrap());
                },
            );
            let label = if batch == 1 { "latency" } else { "throughput" };
            record_row(
                &mut row,
                [name, &batch.to_string()],
                batch,
                (f, e),
                "img",
                json!({ "metric": label }),
            );
        }
        if arg("--profile", "no") == "yes" {
            for batch in [64, 1] {
                let pixels: Vec<f32> = images(batch).into_data().try_into_vec().unwrap();
                engine.run(batch, &[&pixels]).unwrap();
                let mut totals = std::collections::BTreeMap::<String, f64>::new();
                for _ in 0..20 {
                    let (_, times) = engine.profile(batch, &[&pixels]).unwrap();
                    for (k, s) in times {
                        *totals.entry(k).or_default() += s / 20.0;
                    }
                }
                let times: Vec<String> = totals
                    .iter()
                    .map(|(k, s)| format!("{k} {:.3} ms", 1e3 * s))
                    .collect();
                println!(
                    "{name}: engine time by op at batch {batch}: {}",
                    times.join(", ")
                );
            }
        }
        models_json.insert(name.into(), serde_json::Value::Object(row));
    }
    if which == "all" || which == "lstm" {
        models_json.insert("lstm".into(), lstm(rounds, isa));
    }
    if which == "all" || which == "minilm" {
        let checkpoint = arg("--checkpoint", "models/minilm");
        match minilm(&checkpoint, rounds, isa) {
            Some(row) => {
                models_json.insert("minilm".into(), row);
            }
            None => println!(
                "| minilm | — | (no checkpoint at {checkpoint}: `cargo xtask fetch minilm`) | | |"
            ),
        }
    }

    // int8 GEMM at 1024³ against the measured peak of the same instructions on all threads.
    let n = 1024;
    let a: Vec<u8> = (0..n * n).map(|i| (i * 31 % 251) as u8).collect();
    let w: Vec<i8> = (0..n * n)
        .map(|i| ((i * 17 % 255) as i32 - 127) as i8)
        .collect();
    let packed = PackedWeights::pack(&w, n, n);
    let ops = 2.0 * (n * n * n) as f64;
    println!(
        "\n| kernels | GEMM 1024³ | peak ({threads} threads) | share of peak |\n|---|---:|---:|---:|"
    );
    let mut gemm_json = serde_json::Map::new();
    let kernels_to_time = if arg("--gemm", "yes") == "no" {
        Vec::new()
    } else {
        Isa::available()
    };
    for kernels in kernels_to_time {
        let samples = time_per_call(rounds, 3, || {
            gemm(kernels, &a, n, &packed, |_, _, dots| {
                std::hint::black_box(dots);
            });
        });
        let gops = ops / median(&samples) / 1e9;
        let peak = peak_ops_per_second(kernels, 200).map(|p| p * threads as f64 / 1e9);
        let share = peak.map(|p| gops / p);
        println!(
            "| {} | {gops:.0} GOP/s | {} | {} |",
            kernels.name(),
            peak.map_or("—".into(), |p| format!("{p:.0} GOP/s")),
            share.map_or("—".into(), |s| format!("{:.0}%", 100.0 * s))
        );
        gemm_json.insert(
            kernels.name().into(),
            json!({ "gops": gops, "peak_gops": peak, "share_of_peak": share }),
        );
    }
    println!(
        "{}",
        json!({
            "bench": "deploy",
            "threads": threads,
            "kernels": isa.name(),
            "models": models_json,
            "gemm_1024": gemm_json,
        })
    );
}
