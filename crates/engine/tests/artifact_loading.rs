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
fn int4_weights_take_half_a_byte() {
    let w8 = common::cnn(11, 8, 8).to_bytes().len();
    let w4 = common::cnn(11, 4, 8).to_bytes().len();
    let w2 = common::cnn(11, 2, 8).to_bytes().len();
    // conv1 27·5 + conv2 5·3·2·8 + shortcut 5·8 + fc1 17·n + fc2 3·17 + fc_pool 8·4 codes.
    assert!(w8 > w4 && w4 > w2, "{w8} {w4} {w2}");
    let codes = (w8 - w4) * 2; // what halving the width saved, doubled: the code count
    let n = 8 * 3 * 3; // max-pooled [8, 3, 3]
    let expected = 27 * 5 + 5 * 3 * 2 * 8 + 5 * 8 + 17 * n + 3 * 17 + 8 * 4;
    assert!(
        codes.abs_diff(expected) <= 12,
        "int4 saves {codes} codes' halves, expected {expected}"
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
#[test]
fn thousands_of_random_mutations_never_panic_or_hang() {
    let (artifact, bytes) = valid();
    let input_len = 3 * 13 * 11;
    let x = common::inputs(3, input_len);
    let header_end = 16 + u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let mut rng = common::Rng::new(99);
    let start = std::time::Instant::now();
    let (mut refused, mut loaded) = (0, 0);
    for round in 0..3000 {
        let mut m = bytes.clone();
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
        if round % 2 == 1 && m.len() > 48 {
            resign(&mut m);
        }
        let outcome = std::panic::catch_unwind(|| match Artifact::from_bytes(&m, "mutant") {
            Ok(a) => {
                // Whatever loads must run.
                let engine = Engine::new(&a).expect("a loaded artifact prepares");
                let len: usize = a
                    .program
                    .inputs
                    .iter()
                    .map(|&i| a.program.values[i].shape.iter().product::<usize>())
                    .sum();
                if len == input_len && a.program.inputs.len() == 1 {
                    engine.run(1, &[&x]).expect("a loaded artifact runs");
                }
                true
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                false
            }
        });
        match outcome {
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
    assert!(refused > 2500, "refused {refused}, loaded {loaded}");
    let _ = artifact;
}
