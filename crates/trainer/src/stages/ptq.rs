//! `ptq`: calibrate observers on training batches, quantize, evaluate (no training).

use std::path::Path;

use burn::tensor::Device;
use quant::qat::{AdaRoundReport, BiasCorrectionReport};

use super::{Context, evaluate_and_save, load_model, meta, save_model};
use crate::report::write_file;
use crate::task::{Part, Task, TaskNet};
use crate::{Scheme, TrainerError};

/// `float` (the run's float model, see [`float_model`]) with `scheme`'s quantizers, calibrated on
/// `ctx.config.ptq`'s number of training batches (observers see float activations; fake
/// quantization off), then frozen; its weights' rounding learned on the same batches when
/// `ptq.adaround` is set, and then bias-corrected when `ptq.bias_correction` is on. This is both
/// the PTQ model and the starting point of QAT; the caller loads the float model once (an
/// analysis calibrates many variants of it, distilled QAT also keeps it as the teacher).
pub fn calibrated<T: Task>(
    ctx: &Context<T>,
    float: T::Net,
    scheme: &Scheme,
    device: &Device,
) -> Result<T::Net, TrainerError> {
    Ok(calibrated_with_report(ctx, float, scheme, device, |_, _, _| {})?.0)
}

/// What the passes after calibration did, when they ran.
#[derive(Debug, Default)]
pub struct AfterCalibration {
    /// The learned rounding's report (`ptq.adaround`).
    pub adaround: Option<AdaRoundReport>,
    /// The bias correction's report (`ptq.bias_correction`).
    pub bias_correction: Option<BiasCorrectionReport>,
}

/// [`calibrated`], with the reports of the passes after calibration (none where the scheme
/// quantizes nothing), calling `progress(pass, done, layers)` as each pass goes (`pass`:
/// `"adaround"` or `"bias correction"`).
pub fn calibrated_with_report<T: Task>(
    ctx: &Context<T>,
    float: T::Net,
    scheme: &Scheme,
    device: &Device,
    mut progress: impl FnMut(&str, usize, usize),
) -> Result<(T::Net, AfterCalibration), TrainerError> {
    let net = float.clone().quantized(&scheme.mapping)?;
    let loader = ctx.task.loader(Part::Train, None).to_device(device);
    let batches: Vec<_> = loader
        .iter()
        .flatten()
        .take(ctx.config.ptq.calibration_batches)
        .collect();
    let forward = |net: &T::Net, batch| net.calibration_step(batch);
    let mut net = quant::qat::calibrate(net, batches.iter().cloned(), forward);
    let mut after = AfterCalibration::default();
    if scheme.mapping.is_float() {
        return Ok((net, after));
    }
    if let Some(config) = &ctx.config.ptq.adaround {
        let (rounded, report) = quant::qat::adaround_with_progress(
            &float,
            net,
            &batches,
            forward,
            config,
            |done, layers| progress("adaround", done, layers),
        )?;
        net = rounded;
        after.adaround = Some(report);
    }
    if ctx.config.ptq.bias_correction {
        let (corrected, report) = quant::qat::correct_bias_with_progress(
            &float,
            net,
            &batches,
            forward,
            |done, layers| progress("bias correction", done, layers),
        )?;
        net = corrected;
        after.bias_correction = Some(report);
    }
    Ok((net, after))
}

/// The run's float model on `device`; a missing one is an error saying to run `train` first,
/// since `what` starts from it (`PTQ and QAT start`).
pub fn float_model<T: Task>(
    ctx: &Context<T>,
    device: &Device,
    what: &str,
) -> Result<T::Net, TrainerError> {
    let dir = ctx.stage_dir("float", None);
    let (float, _) = load_model(&ctx.task, &dir, device).map_err(|e| match e {
        TrainerError::Checkpoint { path, message } => TrainerError::Checkpoint {
            path,
            message: format!("{message} (run `train` first: {what} from the float model)"),
        },
        other => other,
    })?;
    Ok(float)
}

/// Post-training quantizes the float model with every scheme into `runs/<name>/ptq-<scheme>/`.
pub fn ptq<T: Task>(ctx: &Context<T>) -> Result<(), TrainerError> {
    for scheme in ctx.schemes()? {
        let dir = ctx.stage_dir("ptq", Some(&scheme));
        ctx.prepare_stage(&dir, false)?;
        println!(
            "[ptq {}] calibrating on {} batches",
            scheme.name, ctx.config.ptq.calibration_batches
        );
        let float = float_model(ctx, &ctx.device, "PTQ and QAT start")?;
        let mut shown = (String::new(), 0);
        let progress = |pass: &str, done: usize, layers: usize| {
            // A line at every quarter: a BERT's passes take a pass over the batches per layer.
            if pass != shown.0 {
                shown = (pass.to_string(), 0);
            }
            if done * 4 / layers > shown.1 || done == layers {
                shown.1 = done * 4 / layers;
                println!("[ptq {}] {pass}: {done}/{layers} layers", scheme.name);
            }
        };
        let started = std::time::Instant::now();
        let (net, after) = calibrated_with_report(ctx, float, &scheme, &ctx.device, progress)?;
        if let Some(report) = &after.adaround {
            write_adaround(&dir, &scheme.name, report)?;
        }
        if let Some(report) = &after.bias_correction {
            write_bias_correction(&dir, &scheme.name, report, started.elapsed())?;
        } else {
            println!(
                "[ptq {}] calibrated in {:.1} s",
                scheme.name,
                started.elapsed().as_secs_f64()
            );
        }
        let four_bit = scheme
            .mapping
            .weight
            .as_ref()
            .is_some_and(|w| w.spec.bits <= 4);
        if four_bit && after.adaround.is_none() && after.bias_correction.is_none() {
            println!(
                "[ptq {}] 4-bit weights: `--set ptq.adaround={{}}` learns each weight's rounding \
                 and `--set ptq.bias_correction=true` puts each layer's output mean back after \
                 calibration (README: AdaRound, Bias correction after PTQ)",
                scheme.name
            );
        }
        save_model(
            &dir,
            net.clone(),
            &meta(ctx, "ptq", &scheme.name, &scheme.mapping),
        )?;
        let title = format!("ptq {}", scheme.name);
        let (scores, size) = evaluate_and_save(&ctx.task, &net, &title, &dir, &ctx.device)?;
        ctx.record_result("ptq", &scheme.name, &scores, size)?;
    }
    Ok(())
}

/// Writes AdaRound's per-layer table (`adaround.md`) and its JSON (`adaround.json`) into the
/// PTQ stage folder, and prints the total output error it removed.
fn write_adaround(dir: &Path, scheme: &str, report: &AdaRoundReport) -> Result<(), TrainerError> {
    let nearest: f64 = report.layers.iter().map(|l| l.error_nearest).sum();
    let learned: f64 = report.layers.iter().map(|l| l.error_learned).sum();
    let flipped: f64 = report
        .layers
        .iter()
        .map(|l| l.flipped * l.weights as f64)
        .sum::<f64>()
        / report
            .layers
            .iter()
            .map(|l| l.weights)
            .sum::<usize>()
            .max(1) as f64;
    println!(
        "[ptq {scheme}] adaround ({} layers, {} steps each): {:.1}% of the weights rounded the \
         other way; the layers' output error against the float model, summed, {nearest:.4e} -> \
         {learned:.4e}; table in {}",
        report.layers.len(),
        report.iterations,
        100.0 * flipped,
        dir.join("adaround.md").display(),
    );
    write_file(&dir.join("adaround.md"), &report.to_markdown())?;
    let json = serde_json::to_string_pretty(report).expect("a report serializes");
    write_file(&dir.join("adaround.json"), &json)
}

/// Writes the bias correction's per-layer table (`bias_correction.md`) and its JSON
/// (`bias_correction.json`) into the PTQ stage folder, and prints the largest shift before and
/// after and what calibrating and correcting `took`.
fn write_bias_correction(
    dir: &Path,
    scheme: &str,
    report: &BiasCorrectionReport,
    took: std::time::Duration,
) -> Result<(), TrainerError> {
    if let (Some(before), Some(after)) = (report.worst_before(), report.worst_after()) {
        println!(
            "[ptq {scheme}] bias correction ({} layers, {:.1} s with calibration): largest mean \
             shift {:.1} dB below the signal ({}) before, {:.1} dB ({}) after; table in {}",
            report.layers.len(),
            took.as_secs_f64(),
            before.shift_db_before,
            before.bias,
            after.shift_db_after,
            after.bias,
            dir.join("bias_correction.md").display(),
        );
    }
    write_file(&dir.join("bias_correction.md"), &report.to_markdown())?;
    let json = serde_json::to_string_pretty(report).expect("a report serializes");
    write_file(&dir.join("bias_correction.json"), &json)
}
