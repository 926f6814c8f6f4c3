//! `train`: the float model, from its starting point (random, or a pretrained checkpoint).

use quant::QuantMapping;

use super::{Context, ModelMeta, StageStart, evaluate_and_save, load_model, save_model};
use crate::task::{Part, Task};
use crate::{FitOptions, Trainee, TrainerError, fit};

/// The meta of a model of this run.
pub(crate) fn meta<T: Task>(
    ctx: &Context<T>,
    variant: &str,
    scheme: &str,
    mapping: &QuantMapping,
) -> ModelMeta {
    ModelMeta {
        variant: variant.into(),
        scheme: scheme.into(),
        model: ctx.config.model.clone(),
        num_classes: ctx.task.labels().len(),
        mapping: mapping.clone(),
    }
}

/// Trains the float model into `runs/<name>/float/` and reports its test scores.
pub fn train<T: Task>(ctx: &Context<T>) -> Result<(), TrainerError> {
    let dir = ctx.stage_dir("float", None);
    let start = ctx.prepare_stage(&dir, true)?;
    let config = &ctx.config;
    let net = if start == StageStart::Finished {
        println!(
            "[float] finished earlier: reusing {}",
            dir.join("model.bpk").display()
        );
        load_model(&ctx.task, &dir, &ctx.device)?.0
    } else {
        let autodiff = ctx.device.clone().autodiff();
        let net = ctx.task.initial(&autodiff)?;
        let resume_from = match start {
            StageStart::FromEpoch(epoch) => Some(epoch),
            _ => None,
        };
        let options = FitOptions {
            dir: dir.clone(),
            label: "float".into(),
            epochs: config.train.epochs,
            steps_per_epoch: ctx.steps_per_epoch(),
            lr: config.train.lr,
            weight_decay: config.train.weight_decay,
            quant_lr: None,
            patience: config.train.early_stopping_patience,
            resume_from,
            tui: ctx.tui,
        };
        let outcome = fit(
            Trainee::new(net, None),
            ctx.task.loader(Part::Train, Some(config.seed)),
            ctx.task.loader(Part::Valid, None),
            ctx.task.labels(),
            &options,
        )?;
        let net = outcome.model.net;
        save_model(
            &dir,
            net.clone(),
            &meta(ctx, "float", "float", &QuantMapping::new()),
        )?;
        ctx.record_timing("float", "float", outcome.epochs_run, outcome.seconds)?;
        net
    };
    let (scores, size) = evaluate_and_save(&ctx.task, &net, "float", &dir, &ctx.device)?;
    ctx.record_result("float", "float", &scores, size)
}
