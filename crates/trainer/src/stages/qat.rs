//! `qat`: fine-tune the float model with fake quantization, following the config's schedule.

use burn::module::Module;

use super::{
    Context, StageStart, calibrated, evaluate_and_save, float_model, load_model, meta, save_model,
};
use crate::task::{Part, Task};
use crate::{FitOptions, Trainee, TrainerError, fit};

/// QAT fine-tunes the float model with every scheme into `runs/<name>/qat-<scheme>/`.
///
/// The model starts as PTQ leaves it (observers calibrated), so the first steps already see the
/// integer grid; observers and batch norm freeze at the configured epochs; quantizer parameters
/// train in their own optimizer group without weight decay. With `qat.distillation` the float
/// model is also the teacher: the loss mixes its softened outputs with the labels.
pub fn qat<T: Task>(ctx: &Context<T>) -> Result<(), TrainerError> {
    let config = &ctx.config;
    for scheme in ctx.schemes()? {
        let dir = ctx.stage_dir("qat", Some(&scheme));
        let start = ctx.prepare_stage(&dir, true)?;
        let title = format!("qat {}", scheme.name);
        let net = if start == StageStart::Finished {
            println!(
                "[{title}] finished earlier: reusing {}",
                dir.join("model.bpk").display()
            );
            load_model(&ctx.task, &dir, &ctx.device)?.0
        } else {
            let autodiff = ctx.device.clone().autodiff();
            let labels = ctx.task.labels().len();
            let mut net = ctx
                .task
                .build(&config.model, labels, &scheme.mapping, &autodiff)?;
            let start_epoch = match start {
                StageStart::FromEpoch(epoch) => epoch,
                _ => 0,
            };
            let q = &config.qat;
            // The float model, loaded once: the PTQ start of a fresh stage, and the teacher of a
            // distilled one (fresh or resumed).
            let float = if start_epoch == 0 || q.distillation.is_some() {
                Some(float_model(ctx, &ctx.device, "PTQ and QAT start")?)
            } else {
                None
            };
            if let (0, Some(float)) = (start_epoch, &float) {
                let passes: Vec<&str> = [
                    (config.ptq.adaround.is_some(), "learned rounding (AdaRound)"),
                    (config.ptq.bias_correction, "bias correction"),
                ]
                .into_iter()
                .filter_map(|(on, pass)| on.then_some(pass))
                .collect();
                if !passes.is_empty() {
                    println!(
                        "[qat {}] starting from the PTQ model with {} (a calibration pass per \
                         layer each)",
                        scheme.name,
                        passes.join(" and ")
                    );
                }
                let calibrated = calibrated(ctx, float.clone(), &scheme, &ctx.device)?;
                net = net.load_record(calibrated.into_record());
            }
            let schedule = q
                .schedule(ctx.steps_per_epoch())
                .starting_at(start_epoch * ctx.steps_per_epoch());
            schedule
                .validate(q.epochs)
                .map_err(|e| TrainerError::Config {
                    origin: "config".into(),
                    message: format!("`qat.{}`", e.to_string().trim_start_matches("invalid `")),
                })?;
            // Switches are not saved in checkpoints: set them as the schedule has them now
            // (the start of the stage, or the epoch a resumed run continues from).
            net = schedule.restore(net);
            let options = FitOptions {
                dir: dir.clone(),
                label: title.clone(),
                epochs: q.epochs,
                steps_per_epoch: ctx.steps_per_epoch(),
                lr: q.lr,
                weight_decay: q.weight_decay,
                quant_lr: Some(q.quant_lr),
                patience: q.early_stopping_patience,
                resume_from: (start_epoch > 0).then_some(start_epoch),
                tui: ctx.tui,
            };
            let mut trainee = Trainee::new(net, Some(schedule));
            if let (Some(distillation), Some(teacher)) = (q.distillation, float) {
                println!(
                    "[{title}] distilling from the float model: loss = {:.2} · task + {:.2} · \
                     soft targets at temperature {}",
                    1.0 - distillation.weight,
                    distillation.weight,
                    distillation.temperature
                );
                trainee = trainee.with_teacher(teacher, distillation);
            }
            let outcome = fit(
                trainee,
                ctx.task.loader(Part::Train, Some(config.seed)),
                ctx.task.loader(Part::Valid, None),
                ctx.task.labels(),
                &options,
            )?;
            let net = quant::control::set_observers(outcome.model.net, false);
            save_model(
                &dir,
                net.clone(),
                &meta(ctx, "qat", &scheme.name, &scheme.mapping),
            )?;
            ctx.record_timing("qat", &scheme.name, outcome.epochs_run, outcome.seconds)?;
            net
        };
        let (scores, size) = evaluate_and_save(&ctx.task, &net, &title, &dir, &ctx.device)?;
        ctx.record_result("qat", &scheme.name, &scores, size)?;
    }
    Ok(())
}
