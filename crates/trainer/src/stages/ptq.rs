//! `ptq`: calibrate observers on training batches, quantize, evaluate (no training).

use burn::tensor::Device;

use super::{Context, evaluate_and_save, load_model, meta, save_model};
use crate::task::{Part, Task, TaskNet};
use crate::{Scheme, TrainerError};

/// The float model of the run with `scheme`'s quantizers, calibrated on `ctx.config.ptq`'s
/// number of training batches (observers see float activations; fake quantization off), then
/// frozen. This is both the PTQ model and the starting point of QAT.
pub fn calibrated_model<T: Task>(
    ctx: &Context<T>,
    scheme: &Scheme,
    device: &Device,
) -> Result<T::Net, TrainerError> {
    let float = float_model(ctx, device, "PTQ and QAT start")?;
    calibrated(ctx, float, scheme, device)
}

/// [`calibrated_model`] of a float model already loaded (an analysis that calibrates many
/// variants of one model loads it once).
pub fn calibrated<T: Task>(
    ctx: &Context<T>,
    float: T::Net,
    scheme: &Scheme,
    device: &Device,
) -> Result<T::Net, TrainerError> {
    let net = float.quantized(&scheme.mapping)?;
    let loader = ctx.task.loader(Part::Train, None).to_device(device);
    let batches = loader
        .iter()
        .flatten()
        .take(ctx.config.ptq.calibration_batches);
    Ok(quant::qat::calibrate(net, batches, |net, batch| {
        net.step(batch);
    }))
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
        let net = calibrated_model(ctx, &scheme, &ctx.device)?;
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
