//! [`classifier_outputs!`]: the [`super::TaskNet`] methods every classifier shares — one class
//! per item (image, sentence, sequence), its step output burn-train's `ClassificationOutput`,
//! every item scored, accuracy as the live metric.

/// Expands, inside an `impl TaskNet for … { type Output = ClassificationOutput; … }`, to the
/// `loss`, `with_loss`, `scored_logits` and `metrics` of a classifier.
macro_rules! classifier_outputs {
    () => {
        fn loss(output: &burn::train::ClassificationOutput) -> burn::tensor::Tensor<1> {
            output.loss.clone()
        }

        fn with_loss(
            output: burn::train::ClassificationOutput,
            loss: burn::tensor::Tensor<1>,
        ) -> burn::train::ClassificationOutput {
            burn::train::ClassificationOutput { loss, ..output }
        }

        fn scored_logits(
            output: &burn::train::ClassificationOutput,
        ) -> (burn::tensor::Tensor<2>, Option<burn::tensor::Tensor<1>>) {
            (output.output.clone(), None)
        }

        fn metrics(
            training: burn::train::SupervisedTraining<crate::Trainee<Self>>,
            _labels: &[String],
        ) -> burn::train::SupervisedTraining<crate::Trainee<Self>> {
            training.metrics((burn::train::metric::AccuracyMetric::new(),))
        }
    };
}

pub(crate) use classifier_outputs;
