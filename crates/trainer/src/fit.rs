//! [`fit`]: one training stage (float training or QAT fine-tuning) on burn-train's `Learner`,
//! with metrics, per-epoch checkpoints, resume, early stopping and the TUI or progress lines.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::data::dataloader::DataLoader;
use burn::module::ParamGroup;
use burn::optim::lr_scheduler::LrSchedulerConfig;
use burn::optim::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLrSchedulerConfig;
use burn::optim::{AdamConfig, ModuleOptimizer};
use burn::train::metric::store::{Aggregate, Direction, Split};
use burn::train::metric::{
    CpuMemory, CpuUse, IterationSpeedMetric, LearningRateMetric, LossMetric,
};
use burn::train::renderer::tui::TuiMetricsRendererWrapper;
use burn::train::{Learner, MetricEarlyStoppingStrategy, StoppingCondition, SupervisedTraining};

use crate::checkpoint::VerifiedCheckpointer;
use crate::task::TaskNet;
use crate::{FusedAdamWConfig, ProgressLines, StopWatch, Trainee, TrainerError};

/// How to run one stage.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// The stage's folder (checkpoints, metric logs, `experiment.log`).
    pub dir: PathBuf,
    /// Label on progress lines and in the TUI.
    pub label: String,
    /// Epochs in total (a resumed run continues up to this).
    pub epochs: usize,
    /// Optimizer steps per epoch (sets the length of the cosine schedule).
    pub steps_per_epoch: usize,
    /// Peak learning rate of the weights (cosine-annealed to 0).
    pub lr: f64,
    /// Decoupled weight decay of the weights.
    pub weight_decay: f64,
    /// Learning rate of quantizer parameters, trained without weight decay (QAT only).
    pub quant_lr: Option<f64>,
    /// Early-stopping patience in epochs on the validation loss (0: off).
    pub patience: usize,
    /// The epoch to resume from (its checkpoint must exist), if any.
    pub resume_from: Option<usize>,
    /// Show burn-train's TUI (only on a terminal) instead of progress lines.
    pub tui: bool,
}

/// What a stage produced.
pub struct FitOutcome<N: TaskNet> {
    /// The trained model, in validation mode on the inner (non-autodiff) device.
    pub model: Trainee<N>,
    /// Epochs this launch ran.
    pub epochs_run: usize,
    /// Wall time of this launch, seconds.
    pub seconds: f64,
}

/// The last epoch in `dir` whose checkpoint (model, optimizer and scheduler files) verifies.
pub fn last_checkpoint(dir: &Path) -> Option<usize> {
    crate::checkpoint::last_verified_checkpoint(dir).0
}

/// AdamW for the weights (`FusedAdamW`: Burn's AdamW, one pass per parameter on Flex); with a
/// quantizer learning rate, quantizer parameters (`group`) in an Adam group of their own, without
/// weight decay.
fn optimizer(options: &FitOptions, group: &ParamGroup) -> Result<ModuleOptimizer, TrainerError> {
    let weights = FusedAdamWConfig::new()
        .with_weight_decay(options.weight_decay as f32)
        .build()?;
    let optim = ModuleOptimizer::from(weights);
    match options.quant_lr {
        None => Ok(optim),
        Some(_) => Ok(optim.with_group(group.clone(), AdamConfig::new().build(), None)),
    }
}

/// Runs one stage. `model` must live on an autodiff device; `labels` name the task's labels
/// for its live metrics.
pub fn fit<N: TaskNet>(
    model: Trainee<N>,
    train: Arc<dyn DataLoader<N::Batch>>,
    valid: Arc<dyn DataLoader<N::Batch>>,
    labels: &[String],
    options: &FitOptions,
) -> Result<FitOutcome<N>, TrainerError> {
    let steps = options.epochs * options.steps_per_epoch.max(1);
    let cosine =
        |lr: f64| LrSchedulerConfig::Cosine(CosineAnnealingLrSchedulerConfig::new(lr, steps));
    // Path-derived parameter ids: reproducible checkpoint bytes, and ids that match a checkpoint
    // loaded on resume (so the quantizer group below still finds its parameters).
    let model = crate::checkpoint::with_path_ids(model);
    let quantizer_params = quant::qat::quantizer_params(&model);
    let mut scheduler = ModuleLrSchedulerConfig::new(cosine(options.lr));
    if let Some(quant_lr) = options.quant_lr {
        scheduler = scheduler.with_group(quantizer_params.clone(), cosine(quant_lr));
    }
    let scheduler = scheduler.init().map_err(TrainerError::Training)?;

    let checkpoints = options.dir.join("checkpoint");
    let training = N::metrics(SupervisedTraining::new(&options.dir, train, valid), labels);
    let mut training = training
        .metrics((LossMetric::new(),))
        .metric_train_numeric(LearningRateMetric::new())
        .metric_train_numeric(IterationSpeedMetric::new())
        .metric_train_numeric(CpuMemory::new())
        .metric_train_numeric(CpuUse::new())
        .with_custom_checkpointers(
            VerifiedCheckpointer::new(&checkpoints, "model", true),
            VerifiedCheckpointer::new(&checkpoints, "optim", false),
            VerifiedCheckpointer::new(&checkpoints, "scheduler", false),
        )
        .num_epochs(options.epochs)
        .label(&options.label);
    if options.patience > 0 {
        training = training.early_stopping(MetricEarlyStoppingStrategy::new(
            &LossMetric::new(),
            Aggregate::Mean,
            Direction::Lowest,
            Split::Valid,
            StoppingCondition::NoImprovementSince {
                n_epochs: options.patience,
            },
        ));
    }
    if let Some(epoch) = options.resume_from {
        training = training.checkpoint(epoch);
    }
    let renderer: Box<dyn burn::train::renderer::MetricsRenderer> =
        if options.tui && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            Box::new(TuiMetricsRendererWrapper::new(
                training.interrupter(),
                options.resume_from,
            ))
        } else {
            Box::new(ProgressLines::new(&options.label))
        };
    let (renderer, stopped) = StopWatch::new(renderer, training.interrupter());
    training = training.renderer(Box::new(renderer));

    if crate::interrupt_requested() {
        return Err(TrainerError::Interrupted {
            stage: options.label.clone(),
            epoch: last_checkpoint(&options.dir).unwrap_or(0),
            dir: options.dir.clone(),
        });
    }
    let started = Instant::now();
    let learner = Learner::new(model, optimizer(options, &quantizer_params)?, scheduler);
    let result = crate::while_training(training.interrupter(), || training.launch(learner));
    let seconds = started.elapsed().as_secs_f64();
    if let Some(error) = result.error {
        return Err(TrainerError::Training(error.to_string()));
    }
    let finished = last_checkpoint(&options.dir).unwrap_or(0);
    let stopped =
        result.interrupted.is_some() || stopped.load(std::sync::atomic::Ordering::Relaxed);
    if stopped && finished < options.epochs {
        return Err(TrainerError::Interrupted {
            stage: options.label.clone(),
            epoch: finished,
            dir: options.dir.clone(),
        });
    }
    Ok(FitOutcome {
        model: result.model,
        epochs_run: finished.saturating_sub(options.resume_from.unwrap_or(0)),
        seconds,
    })
}
