//! A layer's bias rounded at its accumulator step `s_w · s_x` in the weight's launch: what the
//! kernels that can do it take.

use burn::backend::DType;
use burn_cubecl::tensor::CubeTensor;

use super::super::{STEP_ONE, StepRule};
use super::kernels;
use super::layout::elementwise;
use super::tensors::{empty, f32_input};

/// A layer's bias for the weight's launch to round at its accumulator step `s_w · s_x`
/// ([`super::observe::launch_observe`], [`super::fake_quant::launch_fake_quant_with`]): the bias
/// (`f32`, contiguous), the input quantizer's step state `(low, high)` (`[1]`), the weight's and
/// the input's step rules, and the largest code.
pub(super) struct BiasFold {
    pub(super) bias: CubeTensor,
    pub(super) input: (CubeTensor, CubeTensor),
    pub(super) rules: (StepRule, StepRule),
    pub(super) limit: f32,
}

impl BiasFold {
    /// The fold of `bias` with the input's step state `(low, high)`, the weight's and the input's
    /// step `rules`, and the largest code `limit`, as the kernels read them.
    pub(super) fn new(
        bias: CubeTensor,
        (input_low, input_high): (CubeTensor, CubeTensor),
        rules: (StepRule, StepRule),
        limit: f32,
    ) -> Self {
        Self {
            bias: f32_input(bias, "the bias"),
            input: (
                f32_input(input_low, "the input's step state"),
                f32_input(input_high, "the input's step state"),
            ),
            rules,
            limit,
        }
    }
}

/// The bias arguments of the kernels that can round a layer's bias ([`kernels::observe()`],
/// [`kernels::fake_quant()`]): a [`BiasFold`]'s, or without one stand-ins that are not read
/// (`stand_in`) nor written (`out`).
pub(super) struct BiasArgs {
    pub(super) bias: CubeTensor,
    pub(super) input_low: CubeTensor,
    pub(super) input_high: CubeTensor,
    pub(super) out: CubeTensor,
    pub(super) steps: kernels::BiasStepsLaunch,
    pub(super) with_bias: bool,
    pub(super) kinds: (u32, u32),
}

impl BiasArgs {
    pub(super) fn new(fold: Option<BiasFold>, stand_in: &CubeTensor, out: &CubeTensor) -> Self {
        let one = StepRule {
            kind: STEP_ONE,
            floor: 0.0,
            divisor: 1.0,
        };
        let with_bias = fold.is_some();
        let (bias, (input_low, input_high), (a, b), limit) = match fold {
            Some(fold) => (fold.bias, fold.input, fold.rules, fold.limit),
            None => (
                stand_in.clone(),
                (stand_in.clone(), stand_in.clone()),
                (one, one),
                0.0,
            ),
        };
        Self {
            bias,
            input_low,
            input_high,
            out: out.clone(),
            steps: kernels::BiasStepsLaunch::new(a.floor, a.divisor, b.floor, b.divisor, limit),
            with_bias,
            kinds: (a.kind, b.kind),
        }
    }
}

/// `x` rounded at the step `s_a · s_b` of two quantizers' states (`[a_low, a_high, b_low,
/// b_high]`) by their `rules`, codes clamped at `±limit`, in a launch of its own: an integer bias
/// where the weight's launch cannot round it.
pub(super) fn launch_round_to_step_product(
    x: CubeTensor,
    states: [CubeTensor; 4],
    (a_rule, b_rule): (StepRule, StepRule),
    limit: f32,
) -> CubeTensor {
    let x = f32_input(x, "the rounded tensor");
    let [a_low, a_high, b_low, b_high] = states.map(|t| f32_input(t, "a step's state"));
    let n = x.meta.shape().num_elements();
    let out = empty(&x, [n], DType::F32);
    let (count, dim) = elementwise(&x, n);
    kernels::round_to_step_product::launch(
        &x.client.clone(),
        count,
        dim,
        x.into_tensor_arg(),
        a_low.into_tensor_arg(),
        a_high.into_tensor_arg(),
        b_low.into_tensor_arg(),
        b_high.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        n,
        a_rule.floor,
        a_rule.divisor,
        b_rule.floor,
        b_rule.divisor,
        limit,
        a_rule.kind,
        b_rule.kind,
    );
    out
}
