//! Loading refuses every damaged artifact with a clear error, and never panics or hangs on any
//! mutation of a valid one (checksum intact or recomputed).

mod common;

use engine::{Artifact, Engine, EngineError, FORMAT_VERSION};
use sha2::{Digest, Sha256};

fn valid() -> (Artifact, Vec<u8>) {
    let artifact = common::cnn(11, 4, 8);
    let bytes = artifact.to_bytes();
    (artifact, bytes)
}

/// Recomputes the trailing SHA-256, as a deliberate forger (or a buggy writer) would.
fn resign(bytes: &mut [u8]) {
    let n = bytes.len() - 32;
    let digest = Sha256::digest(&bytes[..n]);
    bytes[n..].copy_from_slice(&digest);
}

fn message(bytes: &[u8]) -> String {
    Artifact::from_bytes(bytes, "model.qat")
        .unwrap_err()
        .to_string()
}

#[test]
fn round_trip_keeps_every_tensor_and_op() {
    let (artifact, bytes) = valid();
    let back = Artifact::from_bytes(&bytes, "model.qat").unwrap();
    assert_eq!(back, artifact);
    assert_eq!(back.to_bytes(), bytes, "writing is deterministic");
    let dir = std::env::temp_dir().join(format!("engine-artifact-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.qat");
    artifact.write(&path).unwrap();
    assert_eq!(Artifact::read(&path).unwrap(), artifact);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sub_byte_weights_take_their_width_in_the_file() {
    let weight_bytes = |bits| {
        let a = common::cnn(11, bits, 8);
        let stored: usize = a
            .tensors
            .iter()
            .filter(|(name, _)| name.ends_with(".weight"))
            .map(|(_, t)| t.to_bytes().len())
            .sum();
        let codes: usize = a
            .tensors
            .iter()
            .filter(|(name, _)| name.ends_with(".weight"))
            .map(|(_, t)| t.elems())
            .sum();
        (stored, codes, a.to_bytes().len())
    };
    let (w8, codes, file8) = weight_bytes(8);
    let (w4, _, file4) = weight_bytes(4);
    let (w2, _, file2) = weight_bytes(2);
    assert_eq!(w8, codes);
    // Each tensor rounds up to whole bytes on its own.
    assert!(
        w4 >= codes / 2 && w4 <= codes / 2 + 6,
        "{w4} for {codes} codes"
    );
    assert!(
        w2 >= codes / 4 && w2 <= codes / 4 + 6,
        "{w2} for {codes} codes"
    );
    assert!(
        file8 - file4 >= w8 - w4 - 64 && file4 > file2,
        "{file8} {file4} {file2}"
    );
}

#[test]
fn truncated_corrupted_foreign_and_future_files_are_refused_clearly() {
    let (_, bytes) = valid();
    let m = message(&bytes[..bytes.len() - 100]);
    assert!(
        m.contains("model.qat") && m.contains("checksum mismatch"),
        "{m}"
    );
    assert!(
        message(&bytes[..20]).contains("truncated"),
        "{}",
        message(&bytes[..20])
    );
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x10;
    assert!(message(&flipped).contains("checksum mismatch"));
    assert!(message(b"PK\x03\x04 a zip file").contains("not an integer-model artifact"));
    let mut future = bytes.clone();
    future[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let err = Artifact::from_bytes(&future, "model.qat").unwrap_err();
    assert!(
        matches!(err, EngineError::NewerVersion { found, .. } if found == FORMAT_VERSION + 1),
        "{err}"
    );
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn a_graph_that_does_not_match_its_tensors_is_refused_naming_the_op() {
    let (mut artifact, _) = valid();
    let w = artifact.tensors.get_mut("conv2.weight").unwrap();
    w.shape = vec![8, 4, 3, 2]; // claims 4 input channels; conv1 gives 5
    if let engine::TensorData::Codes(c) = &mut w.data {
        c.truncate(8 * 4 * 3 * 2);
    }
    let m = message(&artifact.to_bytes());
    assert!(
        m.contains("Conv2d conv2") && m.contains("does not map"),
        "{m}"
    );

    let (mut artifact, _) = valid();
    artifact.tensors.remove("fc1.weight_scale");
    let m = message(&artifact.to_bytes());
    assert!(
        m.contains("fc1.weight_scale") && m.contains("missing"),
        "{m}"
    );

    let (mut artifact, _) = valid();
    artifact.program.ops.swap(1, 2); // conv2 before conv1
    let m = message(&artifact.to_bytes());
    assert!(m.contains("before it is defined"), "{m}");
}

/// Mutations: flip, set, insert, delete bytes, or cut the file; checksum kept (must fail at the
/// checksum) or recomputed (must fail in the parser or the checks, or load a program that runs).
/// Whatever loads must also run, on every input `inputs` makes for it (ids stay in range).
fn fuzz(bytes: &[u8], inputs: impl Fn(&Artifact) -> Vec<Vec<f32>> + std::panic::RefUnwindSafe) {
    let header_end = 16 + u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let mut loaded_after_json_edits = 0;
    let mut rng = common::Rng::new(99);
    let start = std::time::Instant::now();
    let (mut refused, mut loaded) = (0, 0);
    for round in 0..3000 {
        let mut m = bytes.to_vec();
        let edits = 1 + rng.below(4);
        for _ in 0..edits {
            // Half the edits land in the header, where the structure is.
            let at = if rng.below(2) == 0 {
                rng.below(header_end.min(m.len()))
            } else {
                rng.below(m.len())
            };
            match rng.below(5) {
                0 => m[at] ^= 1 << rng.below(8),
                1 => m[at] = b"0123456789{}[],:\"-e.x"[rng.below(21)],
                2 => m.insert(at, rng.below(256) as u8),
                3 => {
                    m.remove(at.min(m.len() - 1));
                }
                _ => m.truncate(at.max(1)),
            }
        }
        if round % 3 == 1 && m.len() > 48 {
            resign(&mut m);
        }
        if round % 3 == 2 {
            // The same edits inside the decompressed header JSON, recompressed and re-signed:
            // what reaches the parser and the program checks.
            m = engine::artifact::with_header_json(bytes, |mut json| {
                for _ in 0..edits {
                    let at = rng.below(json.len());
                    match rng.below(4) {
                        0 => json[at] ^= 1 << rng.below(7),
                        1 => json[at] = b"0123456789{}[],:\"-e.x"[rng.below(21)],
                        2 => json.insert(at, b"0123456789-"[rng.below(11)]),
                        _ => {
                            json.remove(at);
                        }
                    }
                }
                json
            })
            .expect("a valid artifact");
        }
        let outcome = std::panic::catch_unwind(|| match Artifact::from_bytes(&m, "mutant") {
            Ok(a) => {
                // Whatever loads must run.
                let engine = Engine::new(&a).expect("a loaded artifact prepares");
                let x = inputs(&a);
                let x: Vec<&[f32]> = x.iter().map(|v| v.as_slice()).collect();
                engine.run(1, &x).expect("a loaded artifact runs");
                engine::Interpreter::new(&a)
                    .unwrap()
                    .run(1, &x)
                    .expect("and interprets");
                true
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                false
            }
        });
        match outcome {
            Ok(true) if round % 3 == 2 => {
                loaded += 1;
                loaded_after_json_edits += 1;
            }
            Ok(true) => loaded += 1,
            Ok(false) => refused += 1,
            Err(_) => panic!("mutation {round} panicked"),
        }
    }
    assert!(
        start.elapsed().as_secs() < 60,
        "loading mutants is slow: {:?}",
        start.elapsed()
    );
    assert!(refused > 2000, "refused {refused}, loaded {loaded}");
    eprintln!("refused {refused}, loaded {loaded} ({loaded_after_json_edits} after header edits)");
}

/// Batch-1 inputs for `a`'s declared input shapes: ids 0, mask 1, other values from `fill`.
fn inputs_for(a: &Artifact) -> Vec<Vec<f32>> {
    a.program
        .inputs
        .iter()
        .map(|&i| {
            let v = &a.program.values[i];
            let n: usize = v.shape.iter().product();
            match v.name.as_str() {
                "input_ids" => vec![0.0; n],
                "attention_mask" => vec![1.0; n],
                _ => common::inputs(3, n),
            }
        })
        .collect()
}

#[test]
fn thousands_of_random_mutations_of_a_cnn_never_panic_or_hang() {
    fuzz(&valid().1, inputs_for);
}

#[test]
fn thousands_of_random_mutations_of_a_transformer_never_panic_or_hang() {
    fuzz(&common::transformer(5, 6, 8, 2, 40).to_bytes(), inputs_for);
}
