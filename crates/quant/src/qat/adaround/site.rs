//! Where the layers meet [`super::adaround`]: each layer with a weight quantizer offers its
//! weight here on its way to being fake-quantized, and while a layer's rounding is learned it
//! gets back that weight rounded by the rounding being learned.
//!
//! Outside an AdaRound pass this costs the layers one thread-local read ([`active`]).

use std::cell::RefCell;

use burn::module::ParamId;
use burn::tensor::Tensor;

use super::rounding::{WeightGrid, rectified_sigmoid};
use crate::{ParamLayout, Quantizer};

/// A layer's weight as AdaRound sees it: the layer (known by its bias, as the layer outputs
/// are), the parameter that holds the weight, and the per-output-channel factor between that
/// parameter and the weight the quantizer rounds (a `ConvBn2d`'s `γ/σ`; none elsewhere).
#[derive(Debug, Clone)]
pub(crate) struct Site {
    /// The layer's bias parameter (a `ConvBn2d`'s BN shift).
    pub(crate) layer: ParamId,
    /// The weight parameter.
    pub(crate) weight: ParamId,
    /// `quantized weight = parameter · fold[c]` along the parameter's first axis.
    pub(crate) fold: Option<Tensor<1>>,
}

/// A layer found by a discovery pass: its site, its weight's grid, layout and shape.
#[derive(Debug, Clone)]
pub(crate) struct FoundLayer {
    pub(crate) site: Site,
    pub(crate) grid: WeightGrid,
    pub(crate) layout: ParamLayout,
    /// The weight's shape.
    pub(crate) shape: Vec<usize>,
}

/// What the hook does now.
enum Hook {
    /// Record every layer that offers its weight, in forward order.
    Discover(Vec<FoundLayer>),
    /// Round one layer's weight by the rounding being learned.
    Round(Box<Rounding>),
}

/// The layer whose rounding is being learned, and its rounding variables.
struct Rounding {
    layer: ParamId,
    grid: WeightGrid,
    layout: ParamLayout,
    /// `V`, an autodiff tensor: the weight is rounded up by `h(V)`.
    v: Tensor<4>,
}

thread_local! {
    static HOOK: RefCell<Option<Hook>> = const { RefCell::new(None) };
}

/// Whether an AdaRound pass is running on this thread (layers build their [`Site`] only then).
pub(crate) fn active() -> bool {
    HOOK.with(|h| h.borrow().is_some())
}

/// The weight `weight` (what `quant` would fake-quantize) of the layer at `site`, rounded by the
/// rounding being learned, when that is this layer's; `None` otherwise (the layer quantizes as
/// usual). In a discovery pass it records the layer.
pub(crate) fn rounded_weight<const D: usize>(
    site: Site,
    quant: &Quantizer,
    weight: &Tensor<D>,
) -> Option<Tensor<D>> {
    HOOK.with(|h| {
        let mut hook = h.borrow_mut();
        match hook.as_mut()? {
            Hook::Discover(found) => {
                if !found.iter().any(|f| f.site.layer == site.layer) {
                    found.push(found_layer(site, quant, weight));
                }
                None
            }
            Hook::Round(r) if r.layer == site.layer => {
                let soft = r.grid.weight(rectified_sigmoid(r.v.clone()));
                Some(r.layout.from_view(soft, weight.shape()))
            }
            Hook::Round(_) => None,
        }
    })
}

/// The grid `quant` puts `weight` on now (its frozen qparams), as a view of its layout.
fn found_layer<const D: usize>(site: Site, quant: &Quantizer, weight: &Tensor<D>) -> FoundLayer {
    let weight = weight.clone().detach();
    let shape = weight.dims().to_vec();
    let layout = quant.layout(&shape);
    let qparams = quant.qparams();
    let spec = &quant.config.spec;
    let grid = WeightGrid::new(
        layout.to_view(weight),
        layout.broadcast(qparams.scale),
        layout.broadcast(qparams.zero_point),
        (spec.qmin(), spec.qmax()),
    );
    FoundLayer {
        site,
        grid,
        layout,
        shape,
    }
}

/// Runs `f` with the hook set to `hook`, clearing it afterwards (even if `f` panics).
fn with_hook<R>(hook: Hook, f: impl FnOnce() -> R) -> (R, Option<Hook>) {
    HOOK.with(|h| {
        let mut h = h.borrow_mut();
        assert!(h.is_none(), "AdaRound passes do not nest");
        *h = Some(hook);
    });
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            HOOK.with(|h| h.borrow_mut().take());
        }
    }
    let reset = Reset;
    let out = f();
    let hook = HOOK.with(|h| h.borrow_mut().take());
    drop(reset);
    (out, hook)
}

/// Runs `f` (a forward pass) recording every layer that offers its weight, in forward order.
pub(crate) fn discover(f: impl FnOnce()) -> Vec<FoundLayer> {
    match with_hook(Hook::Discover(Vec::new()), f).1 {
        Some(Hook::Discover(found)) => found,
        _ => Vec::new(),
    }
}

/// Runs `f` (a forward pass) with `layer`'s weight rounded by `h(v)`.
pub(crate) fn rounding<R>(layer: &FoundLayer, v: Tensor<4>, f: impl FnOnce() -> R) -> R {
    let hook = Hook::Round(Box::new(Rounding {
        layer: layer.site.layer,
        grid: layer.grid.clone(),
        layout: layer.layout.clone(),
        v,
    }));
    with_hook(hook, f).0
}
