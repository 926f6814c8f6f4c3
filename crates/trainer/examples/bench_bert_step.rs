//! Benchmark: one BERT fine-tuning step (forward, backward, AdamW; the trainer's own `TrainStep`)
//! of MiniLM-L6 with a sentence head at batch 32 × 64 tokens, float vs QAT W8A8 vs QAT W4A8.
//!
//! Run through `cargo xtask bench bert-step [--checkpoint DIR] [--backend B] [--batch N] [--seq L]
//! [--rounds R] [--steps K] [--float-embeddings] [--random-weights] [--no-memory] [--distill]` (default checkpoint
//! `models/minilm`: `cargo xtask fetch minilm`; `--float-embeddings` times the schemes with the
//! embedding tables left float, to see what quantizing the 30,522-row word table costs;
//! `--random-weights` needs only the folder's `config.json` and times a model of its shape with
//! random weights, for a machine that cannot be sent the 90 MB checkpoint, such as the GPU
//! machine; `--no-memory` skips the memory children, whose resident memory says nothing of a
//! GPU's and whose start-up would cost a lent GPU's minutes; `--distill` adds QAT W4A8 with the
//! float model as teacher, `qat_w4a8_kd`, timed only).
//! Step times come from alternating rounds in one process (machine noise hits all variants
//! alike), compared by their medians; peak resident memory from one child process per variant
//! (the kernel's high-water mark is per process), which also prints its live-heap peaks before
//! and during the steps (a counting allocator around mimalloc). Prints a table and, as its last
//! line, one JSON object. On a GPU backend it also counts each variant's kernel launches in one
//! step (`QUANT_FUSED=off`: with the composite ops instead of the fused kernels;
//! `QAT_LAUNCHES_BY_KERNEL=1`: by kernel).

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

/// mimalloc, counting live heap bytes and their high-water mark: the resident high-water mark
/// also holds whatever setup (loading, calibration) once used, so the children report both.
struct CountingAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// Counts `grown` bytes allocated and `shrunk` freed.
fn count(grown: usize, shrunk: usize) {
    let now = LIVE.fetch_add(grown, Relaxed).wrapping_add(grown);
    PEAK.fetch_max(now, Relaxed);
    LIVE.fetch_sub(shrunk, Relaxed);
}

// SAFETY: every call is forwarded to mimalloc unchanged; only counters are updated.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 0);
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 0);
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(0, layout.size());
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size, layout.size());
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

/// The live-heap high-water mark since the last reset, MiB.
fn peak_heap_mb() -> f64 {
    PEAK.load(Relaxed) as f64 / (1024.0 * 1024.0)
}

/// Starts a new live-heap high-water mark from what is live now.
fn reset_peak_heap() {
    PEAK.store(LIVE.load(Relaxed), Relaxed);
}

use std::alloc::{GlobalAlloc, Layout};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

#[path = "common/bench_args.rs"]
mod bench_args;
#[path = "common/bert_step.rs"]
mod bert_step;
#[path = "common/launch_table.rs"]
mod launch_table;
#[path = "common/optimizer.rs"]
mod optimizer;

use bench_args::{arg, median, name_thread, number};
use bert_step::{Source, VARIANTS, Variant, batch, float_model, model, step};
use trainer::select_device;

/// Peak resident memory of this process, MiB (`VmHWM`).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    trainer::allocator::keep_freed_memory();
    // On a pool thread, as the trainer runs (see `trainer::on_compute_pool`).
    trainer::on_compute_pool(bench);
}

fn bench() {
    let backend = arg("--backend", "flex");
    let checkpoint_dir = arg(
        "--checkpoint",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/minilm"),
    );
    let shape = [number("--batch", 32), number("--seq", 64)];
    let (rounds, steps) = (number("--rounds", 5), number("--steps", 3));
    let device = select_device(&backend).unwrap_or_else(|e| panic!("{e}"));
    let autodiff = device.clone().autodiff();
    let random_weights = std::env::args().any(|a| a == "--random-weights");
    let float_embeddings = std::env::args().any(|a| a == "--float-embeddings");
    autodiff.seed(7);
    let source = Source::open(&checkpoint_dir, random_weights);
    let batch = batch(source.config.vocab_size, shape, &autodiff);

    // Child mode: one variant, a few steps, then its peak memory.
    if let Some(name) = std::env::args().skip_while(|a| a != "--memory-of").nth(1) {
        // A variant's name, or any preset (`w8`, `w4a4`, …) to see where memory goes.
        let scheme = match VARIANTS.iter().find(|v| v.0 == name) {
            Some((_, scheme)) => scheme.map(String::from),
            None => Some(name.clone()),
        };
        let name: &'static str = name.leak();
        let model = model(
            &source,
            scheme.as_deref(),
            float_embeddings,
            &batch,
            &autodiff,
        );
        eprintln!(
            "{name}: before the first step {:.0} MiB resident, heap peak {:.0} MiB, live {:.0} MiB",
            peak_rss_mb(),
            peak_heap_mb(),
            LIVE.load(Relaxed) as f64 / (1024.0 * 1024.0)
        );
        reset_peak_heap();
        let mut v = Variant::new(name, model);
        for _ in 0..steps.max(2) {
            step(&mut v, &batch);
        }
        device.sync().ok();
        eprintln!(
            "{}: heap peak in the steps {:.0} MiB",
            v.name,
            peak_heap_mb()
        );
        println!("{} {:.1}", v.name, peak_rss_mb());
        return;
    }

    let mut variants: Vec<Variant> = VARIANTS
        .iter()
        .map(|(name, scheme)| {
            let model = model(&source, *scheme, float_embeddings, &batch, &autodiff);
            Variant::new(name, model)
        })
        .collect();
    if std::env::args().any(|a| a == "--distill") {
        // QAT W4A8 with the float model as teacher (what `qat.distillation` adds to a step).
        let student = model(&source, Some("w4a8"), float_embeddings, &batch, &autodiff);
        let teacher = float_model(&source, &autodiff);
        let distillation = quant::qat::Distillation::new(0.5, 2.0).unwrap();
        variants.push(Variant::new(
            "qat_w4a8_kd",
            student.with_teacher(teacher, distillation),
        ));
    }
    for v in variants.iter_mut() {
        step(v, &batch); // warm-up: allocations, autotune
    }
    device.sync().ok();
    for round in 0..rounds {
        for v in variants.iter_mut() {
            let start = Instant::now();
            name_thread(&format!("T{}", v.name));
            for _ in 0..steps {
                step(v, &batch);
            }
            device.sync().ok();
            name_thread("idle");
            v.samples_ms
                .push(start.elapsed().as_secs_f64() * 1e3 / steps as f64);
        }
        eprintln!("round {}/{rounds} done", round + 1);
    }
    // Launches of one more step per variant (GPU backends only), forward + backward and the
    // optimizer's update apart.
    let launches: Vec<_> = variants
        .iter_mut()
        .filter_map(|v| {
            launch_table::counted_step(
                &device,
                v.name,
                &mut v.model,
                &mut v.optim,
                bert_step::LEARNING_RATE,
                batch.clone(),
            )
        })
        .collect();
    // Free the models before the memory children run.
    for v in variants.iter_mut() {
        v.model = None;
    }

    let exe = std::env::current_exe().expect("own path");
    let measure_memory = !std::env::args().any(|a| a == "--no-memory");
    let peak: Vec<f64> = VARIANTS
        .iter()
        .filter(|_| measure_memory)
        .map(|(name, _)| {
            let out = Command::new(&exe)
                .args([
                    "--memory-of",
                    name,
                    "--checkpoint",
                    &checkpoint_dir,
                    "--backend",
                    &backend,
                ])
                .args([
                    "--batch",
                    &shape[0].to_string(),
                    "--seq",
                    &shape[1].to_string(),
                ])
                .args(random_weights.then_some("--random-weights"))
                .args(optimizer::burn_adamw().then_some("--burn-adamw"))
                .output()
                .expect("the bench can run itself");
            // The child's live-heap peaks (resident memory also keeps what setup once used).
            for line in String::from_utf8_lossy(&out.stderr).lines() {
                if line.contains("heap peak") {
                    eprintln!("{line}");
                }
            }
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN)
        })
        .collect();

    let float_ms = median(&variants[0].samples_ms);
    println!(
        "BERT ({} layer(s), hidden {}, vocabulary {}, {} weights) fine-tuning step, batch {} × {} tokens, backend {backend}, {rounds} rounds × {steps} steps (median)",
        source.config.num_hidden_layers,
        source.config.hidden_size,
        source.config.vocab_size,
        if random_weights {
            "random"
        } else {
            "pretrained"
        },
        shape[0],
        shape[1]
    );
    println!(
        "{:<10} {:>10} {:>8} {:>14}",
        "variant", "ms/step", "× float", "peak RSS MiB"
    );
    let mut json = format!(
        "{{\"bench\":\"bert-step\",\"backend\":\"{backend}\",\"layers\":{},\"vocab\":{},\"random_weights\":{random_weights},\"batch\":{},\"seq\":{}",
        source.config.num_hidden_layers, source.config.vocab_size, shape[0], shape[1]
    );
    for (k, v) in variants.iter().enumerate() {
        let ms = median(&v.samples_ms);
        let peak_mb = peak.get(k).map_or("-".to_string(), |mb| format!("{mb:.0}"));
        println!(
            "{:<10} {:>10.1} {:>8.2} {:>14}",
            v.name,
            ms,
            ms / float_ms,
            peak_mb
        );
        json.push_str(&format!(",\"{}_ms\":{ms:.1}", v.name));
    }
    for v in &variants[1..] {
        let ratio = median(&v.samples_ms) / float_ms;
        json.push_str(&format!(
            ",\"{}_ratio\":{ratio:.3}",
            v.name.trim_start_matches("qat_")
        ));
    }
    if let [float_mb, w8a8_mb, w4a8_mb] = peak[..] {
        json.push_str(&format!(
            ",\"float_peak_rss_mb\":{float_mb:.0},\"qat_peak_rss_mb\":{:.0},\"qat_w8a8_peak_rss_mb\":{w8a8_mb:.0},\"qat_w4a8_peak_rss_mb\":{w4a8_mb:.0}",
            w8a8_mb.max(w4a8_mb)
        ));
    }
    json.push_str(&launch_table::report(&launches));
    json.push_str(&format!(",\"fused_kernels\":{}}}", quant::fused_enabled()));
    println!("{json}");
}
