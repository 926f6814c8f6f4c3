//! Quantization-aware distillation: the float model teaches its own fake-quantized copy.
//!
//! QAT from labels alone asks the quantized network to relearn what the float one already knows;
//! matching the float network's softened outputs (Hinton et al. 2015) gives every item a full
//! target distribution instead of one class, which is what QAT of low-bit students leans on
//! (Mishra & Marr 2018, "Apprentice"; Polino et al. 2018; TensorRT Model Optimizer's QAD).
//! [`Distillation::loss`] mixes the task's own loss with the soft-target term; any training loop
//! calls it with its student's and teacher's logits.

use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;
use serde::{Deserialize, Serialize};

use crate::QuantError;

/// How much the float teacher's outputs count in the QAT loss, and how soft they are.
///
/// The loss is `(1 − weight) · task_loss + weight · temperature² · KL(teacher ‖ student)`, both
/// distributions softened by `temperature`; the `temperature²` keeps the soft term's gradients the
/// same size whatever the temperature (Hinton et al. 2015, §2).
///
/// In a custom training step, the teacher is the float model run without autodiff (`valid()`:
/// inference mode, no graph), the student the QAT model:
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use quant::qat::Distillation;
///
/// let device = Device::flex().autodiff();
/// // The QAT model's logits for a batch of two, and the float teacher's for the same batch.
/// let student = Tensor::<2>::from_floats([[2.0, 0.5, -1.0], [0.0, 1.0, 0.5]], &device).require_grad();
/// let teacher = Tensor::<2>::from_floats([[1.5, 1.0, -2.0], [0.2, 2.0, 0.1]], &device.clone().inner());
/// let task_loss = Tensor::<1>::from_floats([0.9], &device); // the labels' cross-entropy
///
/// let distillation = Distillation::new(0.5, 2.0)?;
/// let loss = distillation.loss(task_loss, student.clone(), teacher, None);
/// let grads = loss.backward();
/// assert!(student.grad(&grads).is_some());
/// # Ok::<(), quant::QuantError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Distillation {
    /// Share of the soft-target term in the loss, in `(0, 1]` (1: the teacher alone, no labels).
    pub weight: f64,
    /// Softmax temperature of both teacher and student logits, positive (1: the plain softmax).
    #[serde(default = "default_temperature")]
    pub temperature: f64,
}

fn default_temperature() -> f64 {
    1.0
}

impl Distillation {
    /// A validated distillation setting (see [`Distillation::validate`]).
    pub fn new(weight: f64, temperature: f64) -> Result<Self, QuantError> {
        let d = Distillation {
            weight,
            temperature,
        };
        d.validate()?;
        Ok(d)
    }

    /// Checks that `weight` is in `(0, 1]` and `temperature` positive and finite, naming the field
    /// that is not.
    pub fn validate(&self) -> Result<(), QuantError> {
        if !(self.weight > 0.0 && self.weight <= 1.0) {
            return Err(QuantError::field(
                "weight",
                format!(
                    "{} is not in (0, 1] (the share of the teacher's term in the loss)",
                    self.weight
                ),
            ));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(QuantError::field(
                "temperature",
                format!("{} is not a positive number", self.temperature),
            ));
        }
        Ok(())
    }

    /// The distillation loss: `task_loss` mixed with [`soft_target_loss`] of `student` against
    /// `teacher` (`[items, classes]` logits; `counted`, if given, `[items]` weights, 1 for the
    /// items the task scores and 0 for the rest, such as padding tokens).
    pub fn loss(
        &self,
        task_loss: Tensor<1>,
        student: Tensor<2>,
        teacher: Tensor<2>,
        counted: Option<Tensor<1>>,
    ) -> Tensor<1> {
        let soft = soft_target_loss(student, teacher, counted, self.temperature);
        if self.weight >= 1.0 {
            return soft;
        }
        task_loss.mul_scalar(1.0 - self.weight) + soft.mul_scalar(self.weight)
    }
}

/// `temperature² · KL(softmax(teacher / T) ‖ softmax(student / T))`, averaged over the counted
/// items: PyTorch's `kl_div(log_softmax(s / T), log_softmax(t / T), reduction="batchmean",
/// log_target=True) · T²`. The teacher is a constant (no gradient flows into it). Returns `[1]`.
pub fn soft_target_loss(
    student: Tensor<2>,
    teacher: Tensor<2>,
    counted: Option<Tensor<1>>,
    temperature: f64,
) -> Tensor<1> {
    let [items, _] = student.dims();
    let inverse = 1.0 / temperature;
    let log_student = log_softmax(student.mul_scalar(inverse), 1);
    let log_teacher = log_softmax(teacher.mul_scalar(inverse), 1).detach();
    let per_item = (log_teacher.clone().exp() * (log_teacher - log_student))
        .sum_dim(1)
        .reshape([items]);
    let mean = match counted {
        Some(weights) => {
            let total = weights.clone().sum().clamp_min(1.0);
            (per_item * weights).sum().div(total)
        }
        None => per_item.mean(),
    };
    mean.mul_scalar(temperature * temperature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn scalar(t: Tensor<1>) -> f32 {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()[0]
    }

    fn logits(values: &[f32], rows: usize, device: &Device) -> Tensor<2> {
        Tensor::from_data(
            TensorData::new(values.to_vec(), [rows, values.len() / rows]),
            device,
        )
    }

    #[test]
    fn identical_logits_cost_nothing_and_the_loss_is_nonnegative() {
        let device = Device::flex();
        let a = logits(&[1.0, -2.0, 0.5, 3.0, 0.0, -1.0], 2, &device);
        let same = scalar(soft_target_loss(a.clone(), a.clone(), None, 2.0));
        assert!(same.abs() < 1e-6, "{same}");
        let b = logits(&[0.0, 1.0, 0.5, -3.0, 2.0, 1.0], 2, &device);
        assert!(scalar(soft_target_loss(b, a, None, 2.0)) > 0.1);
    }

    #[test]
    fn the_student_gradient_is_temperature_times_the_probability_gap() {
        // d/ds [T² · KL(p_t ‖ softmax(s / T))] = T · (softmax(s / T) − p_t), divided by the items.
        let device = Device::flex().autodiff();
        let (t, rows) = (2.0f32, 2);
        let s_values = [1.0f32, -2.0, 0.5, 3.0, 0.0, -1.0];
        let t_values = [0.0f32, 1.0, 0.5, -3.0, 2.0, 1.0];
        let student = logits(&s_values, rows, &device).require_grad();
        let teacher = logits(&t_values, rows, &device);
        let grads = soft_target_loss(student.clone(), teacher, None, t as f64).backward();
        let got = student
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let softmax = |row: &[f32]| {
            let e: Vec<f32> = row.iter().map(|v| (v / t).exp()).collect();
            let sum: f32 = e.iter().sum();
            e.into_iter().map(|v| v / sum).collect::<Vec<_>>()
        };
        for r in 0..rows {
            let (ps, pt) = (
                softmax(&s_values[r * 3..r * 3 + 3]),
                softmax(&t_values[r * 3..r * 3 + 3]),
            );
            for c in 0..3 {
                let want = t * (ps[c] - pt[c]) / rows as f32;
                assert!((got[r * 3 + c] - want).abs() < 1e-6, "{r},{c}: {got:?}");
            }
        }
    }

    #[test]
    fn uncounted_items_neither_cost_nor_learn() {
        let device = Device::flex().autodiff();
        let student = logits(&[1.0, -2.0, 0.5, 3.0, 0.0, -1.0], 2, &device).require_grad();
        let teacher = logits(&[0.0, 1.0, 0.5, -3.0, 2.0, 1.0], 2, &device);
        let counted = Tensor::<1>::from_floats([1.0, 0.0], &device);
        let loss = soft_target_loss(student.clone(), teacher.clone(), Some(counted), 1.0);
        let only_first = soft_target_loss(
            student.clone().slice([0..1, 0..3]),
            teacher.slice([0..1, 0..3]),
            None,
            1.0,
        );
        let (a, b) = (scalar(loss.clone()), scalar(only_first));
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        let grad = student.grad(&loss.backward()).unwrap().into_data();
        assert_eq!(&grad.try_to_vec::<f32>().unwrap()[3..], &[0.0, 0.0, 0.0]);
    }

    #[test]
    fn the_mix_weighs_task_and_teacher() {
        let device = Device::flex();
        let student = logits(&[1.0, -2.0, 0.5], 1, &device);
        let teacher = logits(&[0.0, 1.0, 0.5], 1, &device);
        let task = Tensor::<1>::from_floats([0.7], &device);
        let soft = scalar(soft_target_loss(
            student.clone(),
            teacher.clone(),
            None,
            3.0,
        ));
        let mixed = scalar(Distillation::new(0.25, 3.0).unwrap().loss(
            task.clone(),
            student.clone(),
            teacher.clone(),
            None,
        ));
        assert!((mixed - (0.75 * 0.7 + 0.25 * soft)).abs() < 1e-6);
        let alone = scalar(
            Distillation::new(1.0, 3.0)
                .unwrap()
                .loss(task, student, teacher, None),
        );
        assert!((alone - soft).abs() < 1e-6);
    }

    #[test]
    fn bad_settings_name_their_field() {
        for (weight, temperature, field) in [
            (0.0, 1.0, "weight"),
            (1.5, 1.0, "weight"),
            (f64::NAN, 1.0, "weight"),
            (0.5, 0.0, "temperature"),
            (0.5, f64::INFINITY, "temperature"),
        ] {
            let err = Distillation::new(weight, temperature)
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{weight}, {temperature}: {err}");
        }
    }
}
