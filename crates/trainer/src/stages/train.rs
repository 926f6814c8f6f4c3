//! `train`: the float model, from scratch.

use quant::QuantMapping;

use super::{Context, ModelMeta, StageStart, evaluate_and_save, load_model, save_model};
use crate::{Classifier, FitOptions, Net, TrainerError, eval_loader, fit, train_loader};

/// Trains the float model into `runs/<name>/float/` and reports its test accuracy.
pub fn train(ctx: &Context) -> Result<(), TrainerError> {
    let dir = ctx.stage_dir("float", None);
    let start = ctx.prepare_stage(&dir, true)?;
    let config = &ctx.config;
    let net = if start == StageStart::Finished {
        println!(
            "[float] finished earlier: reusing {}",
            dir.join("model.bpk").display()
        );
        load_model(&dir, &ctx.device)?.0
    } else {
        let autodiff = ctx.device.clone().autodiff();
        let classes = ctx.splits.classes.len();
        let net = Net::init(&config.model, classes, &QuantMapping::new(), &autodiff)?;
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
            Classifier::new(net, None),
            train_loader(&config.data, &ctx.splits, config.seed),
            eval_loader(&config.data, &ctx.splits, ctx.splits.valid.clone()),
            &options,
        )?;
        let net = outcome.model.net;
        let meta = ModelMeta {
            variant: "float".into(),
            scheme: "float".into(),
            model: config.model.clone(),
            num_classes: ctx.splits.classes.len(),
            mapping: QuantMapping::new(),
        };
        save_model(&dir, net.clone(), &meta)?;
        ctx.record_timing("float", "float", outcome.epochs_run, outcome.seconds)?;
        net
    };
    let (scores, size) =
        evaluate_and_save(&net, "float", &dir, &ctx.splits, &config.data, &ctx.device)?;
    ctx.record_result("float", "float", scores.accuracy, size)
}
