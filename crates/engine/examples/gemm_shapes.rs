//! GEMM throughput at the shapes of a MiniLM layer (batch 32 × 128 tokens) and of the CNNs'
//! convolutions at batch 64 (ResNet-20's three stages, LeNet-BN's two layers), raw and with a
//! requantizing epilogue: `cargo run -p engine --example gemm_shapes`.
use std::time::Instant;

use engine::gemm::{Isa, PackedWeights, gemm};

fn main() {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build_global()
        .unwrap();
    let isa = Isa::best();
    for (m, n, k) in [
        (4096, 384, 384),
        (4096, 1536, 384),
        (4096, 384, 1536),
        (1024, 1024, 1024),
        (128, 384, 384),
        (128, 1536, 384),
        (128, 384, 1536),
        (64 * 784, 16, 144),
        (64 * 196, 32, 288),
        (64 * 49, 64, 576),
        (64 * 784, 16, 28),
        (64 * 196, 32, 400),
    ] {
        let a: Vec<u8> = (0..m * k).map(|i| (i * 31 % 251) as u8).collect();
        let w: Vec<i8> = (0..n * k)
            .map(|i| ((i * 17 % 255) as i32 - 127) as i8)
            .collect();
        let packed = PackedWeights::pack(&w, n, k);
        let ops = 2.0 * (m * n * k) as f64;
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            gemm(isa, &a, m, &packed, |_, _, d| {
                std::hint::black_box(d);
            });
            best = best.min(t.elapsed().as_secs_f64());
        }
        let mut out = vec![0u8; m * n];
        let mut fout = vec![0f32; m * n];
        let (offset, scale) = (vec![3i32; n], vec![0.001f32; n]);
        let (mut best_q, mut best_f) = (f64::MAX, f64::MAX);
        for _ in 0..5 {
            let ptr = engine::gemm::SharedMut(out.as_mut_ptr());
            let t = Instant::now();
            gemm(isa, &a, m, &packed, |row, col0, dots| {
                // SAFETY: one writer per (row, col0..).
                let o = unsafe {
                    std::slice::from_raw_parts_mut(ptr.get().add(row * n + col0), dots.len())
                };
                let cols = col0..col0 + dots.len();
                for (((o, &d), &b), &s) in o
                    .iter_mut()
                    .zip(dots)
                    .zip(&offset[cols.clone()])
                    .zip(&scale[cols])
                {
                    *o = engine::requant::code((d + b) as f32, s, -128.0, 127.0, 128) as u8;
                }
            });
            best_q = best_q.min(t.elapsed().as_secs_f64());
            let ptr = engine::gemm::SharedMut(fout.as_mut_ptr());
            let t = Instant::now();
            gemm(isa, &a, m, &packed, |row, col0, dots| {
                // SAFETY: one writer per (row, col0..).
                let o = unsafe {
                    std::slice::from_raw_parts_mut(ptr.get().add(row * n + col0), dots.len())
                };
                let cols = col0..col0 + dots.len();
                for (((o, &d), &b), &s) in o
                    .iter_mut()
                    .zip(dots)
                    .zip(&offset[cols.clone()])
                    .zip(&scale[cols])
                {
                    *o = (d + b) as f32 * s;
                }
            });
            best_f = best_f.min(t.elapsed().as_secs_f64());
        }
        println!(
            "{m}×{n}×{k}: {:.1} ms raw, {:.1} ms requantized, {:.1} ms float out; {:.0} GOP/s raw",
            best * 1e3,
            best_q * 1e3,
            best_f * 1e3,
            ops / best / 1e9
        );
    }
}
