//! [`Trainee`]: a task's network as burn-train's `Learner` trains it: the task's forward pass
//! and loss as `TrainStep` / `InferenceStep`, the QAT schedule hooked into the optimizer step, and
//! the float teacher of QAT distillation.

use std::sync::{Arc, Mutex};

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::optim::ModuleOptimizer;
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::tensor::Tensor;
use burn::train::{InferenceStep, TrainOutput, TrainStep};
use quant::qat::{Distillation, QatSchedule};

use crate::task::TaskNet;

/// The network under training, (for QAT) its schedule, and an optional teacher. Checkpoints hold
/// its record: the network's parameters under `net.*` (the teacher is rebuilt, not saved).
#[derive(Module, Debug)]
pub struct Trainee<N: TaskNet> {
    /// The network.
    pub net: N,
    /// QAT milestones, applied after each optimizer step (none for float training).
    #[module(skip)]
    pub schedule: Option<QatSchedule>,
    /// The frozen float network whose outputs the training loss also matches (QAT distillation).
    #[module(skip)]
    pub teacher: Option<Teacher<N::Batch>>,
}

/// A frozen network's soft targets for a batch, and how much they count in the loss.
#[derive(Clone)]
pub struct Teacher<B> {
    /// The teacher's logits for a batch, as the student's [`TaskNet::scored_logits`] lays them
    /// out, computed without autodiff (the teacher runs in inference).
    soft_targets: Arc<dyn Fn(B) -> Tensor<2> + Send + Sync>,
    /// The loss's mix of task loss and soft targets.
    pub distillation: Distillation,
}

impl<B> std::fmt::Debug for Teacher<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Teacher")
            .field("distillation", &self.distillation)
            .finish_non_exhaustive()
    }
}

impl<N: TaskNet> Trainee<N> {
    /// Wraps `net` for training, with an optional QAT schedule.
    pub fn new(net: N, schedule: Option<QatSchedule>) -> Self {
        Trainee {
            net,
            schedule,
            teacher: None,
        }
    }

    /// The same trainee learning also from `teacher`'s outputs (the teacher moved off autodiff
    /// and frozen).
    pub fn with_teacher(self, teacher: N, distillation: Distillation) -> Self {
        // A module need not be `Sync`; the closure must be, to sit in a module's field.
        let teacher = Mutex::new(teacher.valid());
        let soft_targets = move |batch: N::Batch| {
            let teacher = teacher
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            N::scored_logits(&teacher.step(N::without_autodiff(batch))).0
        };
        Trainee {
            teacher: Some(Teacher {
                soft_targets: Arc::new(soft_targets),
                distillation,
            }),
            ..self
        }
    }

    /// The training loss of a batch: the task's loss, mixed with the teacher's soft targets when
    /// there is a teacher. The output's loss is that mix, so the dashboard shows what is trained.
    pub fn train_output(&self, batch: N::Batch) -> N::Output {
        let Some(teacher) = &self.teacher else {
            return self.net.step(batch);
        };
        let soft_targets = (teacher.soft_targets)(batch.clone()).autodiff();
        let output = self.net.step(batch);
        let (student, counted) = N::scored_logits(&output);
        let loss = teacher
            .distillation
            .loss(N::loss(&output), student, soft_targets, counted);
        N::with_loss(output, loss)
    }
}

impl<N: TaskNet> TrainStep for Trainee<N> {
    type Input = N::Batch;
    type Output = N::Output;

    fn step(&self, batch: N::Batch) -> TrainOutput<N::Output> {
        let output = self.train_output(batch);
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

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
    use data::ImageBatch;
    use quant::QuantMapping;
    use quant::qat::{Distillation, soft_target_loss};

    use super::*;
    use crate::task::classification_output;
    use crate::{ModelConfig, Net};

    fn scalar(t: Tensor<1>) -> f32 {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()[0]
    }

    /// A small float LeNet-BN (a quantized student's observers would move between the two
    /// forward passes the test compares).
    fn lenet(device: &Device) -> Net {
        let config = ModelConfig::LenetBn {
            channels: [4, 8],
            hidden: 16,
        };
        Net::init(&config, 10, &QuantMapping::new(), device).unwrap()
    }

    /// The teacher runs in inference (its BN on running statistics, whatever the student's
    /// mode), its logits are constants, and the step's loss is the configured mix.
    #[test]
    fn a_teacher_mixes_its_soft_targets_into_the_loss_and_gets_no_gradient() {
        let device = Device::flex().autodiff();
        let images = Tensor::<4>::random([8, 1, 28, 28], Distribution::Normal(0.0, 1.0), &device);
        let targets =
            Tensor::<1, Int>::from_data(TensorData::from([0, 1, 2, 3, 4, 5, 6, 7]), &device);
        let batch = ImageBatch {
            images: images.clone(),
            targets: targets.clone(),
        };
        let (student, teacher) = (lenet(&device), lenet(&device));
        let distillation = Distillation::new(0.75, 2.0).unwrap();
        let trainee =
            Trainee::new(student.clone(), None).with_teacher(teacher.clone(), distillation);
        let loss = Net::loss(&trainee.train_output(batch));

        let logits = student.forward(images.clone());
        let task = classification_output(logits.clone(), targets).loss;
        let soft_targets = teacher.valid().forward(images.without_autodiff());
        let expected = task.mul_scalar(0.25)
            + soft_target_loss(logits, soft_targets.autodiff(), None, 2.0).mul_scalar(0.75);
        let (got, want) = (scalar(loss.clone()), scalar(expected));
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");

        let grads = loss.backward();
        let mut teacher_grads = 0;
        teacher.visit(&mut CountGrads {
            grads: &grads,
            found: &mut teacher_grads,
        });
        assert_eq!(teacher_grads, 0, "the teacher's weights got gradients");
        let mut student_grads = 0;
        trainee.net.visit(&mut CountGrads {
            grads: &grads,
            found: &mut student_grads,
        });
        assert!(student_grads > 0);
    }

    struct CountGrads<'a> {
        grads: &'a burn::tensor::Gradients,
        found: &'a mut usize,
    }

    impl burn::module::ModuleVisitor for CountGrads<'_> {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            if param.val().grad(self.grads).is_some() {
                *self.found += 1;
            }
        }
    }
}
