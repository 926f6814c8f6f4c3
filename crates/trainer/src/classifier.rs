//! [`Classifier`]: a [`Net`] with a loss, as burn-train's `Learner` trains it, and the QAT
//! schedule hooked into the optimizer step.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::optim::ModuleOptimizer;
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::tensor::{Int, Tensor};
use burn::train::{ClassificationOutput, InferenceStep, TrainOutput, TrainStep};
use data::ImageBatch;

use quant::qat::QatSchedule;

use crate::Net;

/// The network under training, and (for QAT) its schedule.
#[derive(Module, Debug)]
pub struct Classifier {
    /// The network.
    pub net: Net,
    /// QAT milestones, applied after each optimizer step (none for float training).
    #[module(skip)]
    pub schedule: Option<QatSchedule>,
}

impl Classifier {
    /// Wraps `net` for training, with an optional QAT schedule.
    pub fn new(net: Net, schedule: Option<QatSchedule>) -> Self {
        Classifier { net, schedule }
    }

    /// Logits, cross-entropy loss and targets of a batch.
    pub fn forward_classification(
        &self,
        images: Tensor<4>,
        targets: Tensor<1, Int>,
    ) -> ClassificationOutput {
        let logits = self.net.forward(images);
        let loss = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits.clone(), targets.clone());
        ClassificationOutput::new(loss, logits, targets)
    }
}

impl TrainStep for Classifier {
    type Input = ImageBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: ImageBatch) -> TrainOutput<ClassificationOutput> {
        let item = self.forward_classification(batch.images, batch.targets);
        TrainOutput::new(self, item.loss.backward(), item)
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

impl InferenceStep for Classifier {
    type Input = ImageBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: ImageBatch) -> ClassificationOutput {
        self.forward_classification(batch.images, batch.targets)
    }
}
