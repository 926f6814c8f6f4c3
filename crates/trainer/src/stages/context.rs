//! [`Context`]: what every command shares (config, device, data) and the rules for a stage's
//! folder: resume it, start it over, or refuse to overwrite it.

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use crate::report::{Deployment, ResultRow, RunReport, StageTiming, write_file};
use crate::task::{Evaluation, Part, Task};
use crate::{RunConfig, Scheme, TrainerError};

/// What to do with a stage folder that already has outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Refuse (the default): never overwrite results silently.
    Refuse,
    /// Continue from the last checkpoint, or reuse a finished stage.
    Resume,
    /// Delete the stage's outputs and start over.
    Fresh,
}

/// The state of a stage folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageStart {
    /// Nothing there (or started over): train from scratch.
    Scratch,
    /// Resume from this epoch's checkpoint.
    FromEpoch(usize),
    /// Already finished: reuse `model.bpk`.
    Finished,
}

/// Config, device and task (with its data) of a run, shared by its commands.
pub struct Context<T: Task> {
    /// The resolved config.
    pub config: RunConfig,
    /// Backend name, for reports.
    pub backend: String,
    /// The (non-autodiff) device.
    pub device: Device,
    /// The task, with its data loaded.
    pub task: T,
    /// Policy for existing stage outputs.
    pub existing: Existing,
    /// Show the TUI on a terminal.
    pub tui: bool,
}

/// `config` as a run executes it: a deterministic run loads data on one thread (several loader
/// threads hand over batches in whatever order they finish).
pub fn effective(config: RunConfig) -> RunConfig {
    let mut config = config;
    if config.deterministic && config.data.num_workers > 1 {
        config.data.num_workers = 1;
    }
    config
}

impl<T: Task> Context<T> {
    /// Loads the task's data with `load` and writes the resolved config to
    /// `runs/<name>/config.toml`.
    pub fn new(
        config: RunConfig,
        backend: &str,
        device: Device,
        (existing, tui): (Existing, bool),
        load: impl FnOnce(&RunConfig) -> Result<T, TrainerError>,
    ) -> Result<Self, TrainerError> {
        device.seed(config.seed);
        write_file(&config.run_dir().join("config.toml"), &config.to_toml())?;
        let config = effective(config);
        let task = load(&config)?;
        Ok(Context {
            config,
            backend: backend.into(),
            device,
            task,
            existing,
            tui,
        })
    }

    /// The run folder.
    pub fn run_dir(&self) -> PathBuf {
        self.config.run_dir()
    }

    /// A stage's folder: `float`, `ptq-<scheme>` or `qat-<scheme>`.
    pub fn stage_dir(&self, variant: &str, scheme: Option<&Scheme>) -> PathBuf {
        match scheme {
            None => self.run_dir().join(variant),
            Some(s) => self.run_dir().join(format!("{variant}-{}", s.slug())),
        }
    }

    /// The resolved schemes of the config, with the QAT quant delay applied.
    pub fn schemes(&self) -> Result<Vec<Scheme>, TrainerError> {
        self.config
            .schemes
            .iter()
            .map(|s| Scheme::resolve(s))
            .collect()
    }

    /// Optimizer steps per training epoch.
    pub fn steps_per_epoch(&self) -> usize {
        self.task
            .len(Part::Train)
            .div_ceil(self.config.data.batch_size)
    }

    /// The run's report, with earlier commands' rows.
    pub fn report(&self) -> Result<RunReport, TrainerError> {
        RunReport::load_or_new(
            &self.run_dir(),
            self.task.kind().name(),
            &self.config.model_name(),
            &self.backend,
            &self.config.data.name,
            (self.config.seed, self.config.deterministic),
        )
    }

    /// Adds (or replaces) a stage's test scores and deployed size in the run's report.
    pub fn record_result(
        &self,
        variant: &str,
        scheme: &str,
        scores: &Evaluation,
        size_bytes: usize,
    ) -> Result<(), TrainerError> {
        let mut report = self.report()?;
        report.upsert(ResultRow {
            variant: variant.into(),
            scheme: scheme.into(),
            metric: scores.metric.into(),
            value: scores.value,
            size_bytes,
            metrics: scores.metrics.clone(),
            deployment: None,
        });
        report.save(&self.run_dir())
    }

    /// Adds (or replaces) an exported model's row: the engine's test scores, the artifact's
    /// size, parity with the fake-quant model.
    pub fn record_deployment(
        &self,
        scheme: &str,
        scores: &Evaluation,
        deployment: Deployment,
    ) -> Result<(), TrainerError> {
        let mut report = self.report()?;
        report.upsert(ResultRow {
            variant: "int".into(),
            scheme: scheme.into(),
            metric: scores.metric.into(),
            value: scores.value,
            size_bytes: deployment.artifact_bytes,
            metrics: scores.metrics.clone(),
            deployment: Some(deployment),
        });
        report.save(&self.run_dir())
    }

    /// Adds (or replaces) a training stage's epoch wall time in the run's report.
    pub fn record_timing(
        &self,
        variant: &str,
        scheme: &str,
        epochs: usize,
        seconds: f64,
    ) -> Result<(), TrainerError> {
        if epochs == 0 {
            return Ok(());
        }
        let mut report = self.report()?;
        report.upsert_timing(StageTiming {
            variant: variant.into(),
            scheme: scheme.into(),
            epochs,
            seconds_per_epoch: seconds / epochs as f64,
        });
        report.save(&self.run_dir())
    }

    /// Decides how a stage starts, applying the policy for existing outputs.
    pub fn prepare_stage(&self, dir: &Path, trained: bool) -> Result<StageStart, TrainerError> {
        let finished = dir.join("model.bpk").is_file() && dir.join("model.json").is_file();
        let checkpoint = if trained {
            let (epoch, skipped) = crate::checkpoint::last_verified_checkpoint(dir);
            if self.existing == Existing::Resume {
                for line in skipped {
                    eprintln!("warning: {}: {line}", dir.display());
                }
            }
            epoch
        } else {
            None
        };
        let has_outputs = finished || checkpoint.is_some();
        match self.existing {
            _ if !has_outputs => Ok(StageStart::Scratch),
            Existing::Fresh => {
                std::fs::remove_dir_all(dir).map_err(|e| TrainerError::io(dir, e))?;
                Ok(StageStart::Scratch)
            }
            Existing::Resume if finished => Ok(StageStart::Finished),
            Existing::Resume => Ok(checkpoint.map_or(StageStart::Scratch, StageStart::FromEpoch)),
            Existing::Refuse => Err(TrainerError::Io {
                path: dir.to_path_buf(),
                message: "has outputs of an earlier run; pass --resume to continue (or reuse) it, or --fresh to start over"
                    .into(),
            }),
        }
    }
}
