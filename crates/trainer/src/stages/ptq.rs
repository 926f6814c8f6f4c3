//! `ptq`: calibrate observers on training batches, quantize, evaluate (no training).

use burn::tensor::Device;

use super::{Context, ModelMeta, evaluate_and_save, load_model, save_model};
use crate::{Net, Scheme, TrainerError, eval_loader};

/// The float model of the run with `scheme`'s quantizers, calibrated on `ctx.config.ptq`'s
/// number of training batches (observers see float activations; fake quantization off), then
/// frozen. This is both the PTQ model and the starting point of QAT.
pub fn calibrated_model(
    ctx: &Context,
    scheme: &Scheme,
    device: &Device,
) -> Result<Net, TrainerError> {
    let float_dir = ctx.stage_dir("float", None);
    let (float, _) = load_model(&float_dir, device).map_err(|e| match e {
        TrainerError::Checkpoint { path, message } => TrainerError::Checkpoint {
            path,
            message: format!(
                "{message} (run `train` first: PTQ and QAT start from the float model)"
            ),
        },
        other => other,
    })?;
    let net = float.quantized(&scheme.mapping)?;
    let loader =
        eval_loader(&ctx.config.data, &ctx.splits, ctx.splits.train.clone()).to_device(device);
    let batches = loader
        .iter()
        .flatten()
        .take(ctx.config.ptq.calibration_batches);
    Ok(quant::qat::calibrate(net, batches, |net, batch| {
        net.forward(batch.images);
    }))
}

/// Post-training quantizes the float model with every scheme into `runs/<name>/ptq-<scheme>/`.
pub fn ptq(ctx: &Context) -> Result<(), TrainerError> {
    for scheme in ctx.schemes()? {
        let dir = ctx.stage_dir("ptq", Some(&scheme));
        ctx.prepare_stage(&dir, false)?;
        println!(
            "[ptq {}] calibrating on {} batches",
            scheme.name, ctx.config.ptq.calibration_batches
        );
        let net = calibrated_model(ctx, &scheme, &ctx.device)?;
        let meta = ModelMeta {
            variant: "ptq".into(),
            scheme: scheme.name.clone(),
            model: ctx.config.model.clone(),
            num_classes: ctx.splits.classes.len(),
            mapping: scheme.mapping.clone(),
        };
        save_model(&dir, net.clone(), &meta)?;
        let title = format!("ptq {}", scheme.name);
        let (scores, size) = evaluate_and_save(
            &net,
            &title,
            &dir,
            &ctx.splits,
            &ctx.config.data,
            &ctx.device,
        )?;
        ctx.record_result("ptq", &scheme.name, scores.accuracy, size)?;
    }
    Ok(())
}
