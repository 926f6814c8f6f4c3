//! [`Trainee`]: a task's network as burn-train's `Learner` trains it: the task's forward pass
//! and loss as `TrainStep` / `InferenceStep`, and the QAT schedule hooked into the optimizer step.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::optim::ModuleOptimizer;
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::train::{InferenceStep, TrainOutput, TrainStep};
use quant::qat::QatSchedule;

use crate::task::TaskNet;

/// The network under training, and (for QAT) its schedule. Checkpoints hold its record: the
/// network's parameters under `net.*`.
#[derive(Module, Debug)]
pub struct Trainee<N: TaskNet> {
    /// The network.
    pub net: N,
    /// QAT milestones, applied after each optimizer step (none for float training).
    #[module(skip)]
    pub schedule: Option<QatSchedule>,
}

impl<N: TaskNet> Trainee<N> {
    /// Wraps `net` for training, with an optional QAT schedule.
    pub fn new(net: N, schedule: Option<QatSchedule>) -> Self {
        Trainee { net, schedule }
    }
}

impl<N: TaskNet> TrainStep for Trainee<N> {
    type Input = N::Batch;
    type Output = N::Output;

    fn step(&self, batch: N::Batch) -> TrainOutput<N::Output> {
        let output = self.net.step(batch);
        let grads = N::loss(&output).backward();
        TrainOutput::new(self, grads, output)
    }

    fn optimize(
        self,
        optim: &mut ModuleOptimizer,
        lr: ModuleLearningRate,
        grads: GradientsParams,
    ) -> Self {
        let model = optim.step(lr, self, grads);
        match model.schedule.clone() {
            Some(schedule) => schedule.apply(model),
            None => model,
        }
    }
}

impl<N: TaskNet> InferenceStep for Trainee<N> {
    type Input = N::Batch;
    type Output = N::Output;

    fn step(&self, batch: N::Batch) -> N::Output {
        self.net.step(batch)
    }
}
