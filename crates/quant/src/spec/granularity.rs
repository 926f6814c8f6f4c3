//! How many quantization parameters a tensor gets: one, one per channel, or one per group.
//!
//! | granularity | scale shape for a Linear weight `[in, out]` |
//! |---|---|
//! | `PerTensor` | `[1]` |
//! | `PerChannel { axis: None }` (output channels) | `[out]` |
//! | `PerGroup { axis: None, group_size: g }` (groups along the input axis) | `[in / g, out]` flattened |
//! | `PerToken` (activations only) | one scale per row, computed from each batch |
//!
//! **Axes of weights count from the front, axes of activations from the back.** A weight has a
//! fixed rank and layout (`[in, out]`, `[out, in, kh, kw]`), so its axes are absolute. An
//! activation's leading axes vary (`[batch, d]`, `[batch, seq, d]`), so an activation's
//! `axis: 0` is its *last* axis (the features of a Linear's input), `axis: 2` the channels of an
//! NCHW image; `axis: None` picks the channel axis of the layer that produces or consumes it.

use serde::{Deserialize, Serialize};

/// Granularity of the quantization parameters of one tensor.
///
/// `axis: None` means "the layer's natural axis": the output-channel axis for per-channel
/// (Linear `[in, out]` → 1, Conv2d `[out, in, kh, kw]` → 0, Embedding `[n, d]` → 0; activations:
/// the channel axis of the layer, counted from the back) and the reduction (input) axis for
/// per-group (Linear → 0, Conv2d → 1, Embedding → 1). See the module docs for activation axes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Granularity {
    /// One scale (and zero point) for the whole tensor.
    #[default]
    PerTensor,
    /// One scale per index along `axis` (PyTorch's `per_channel_affine`, `ch_axis`).
    PerChannel {
        /// The channel axis; `None` picks the layer's output-channel axis.
        #[serde(default)]
        axis: Option<usize>,
    },
    /// One scale per `group_size` consecutive elements along `axis`, separately for every index
    /// of the other axes (torchao's `PerGroup`).
    PerGroup {
        /// The grouped axis; `None` picks the layer's input (reduction) axis.
        #[serde(default)]
        axis: Option<usize>,
        /// Number of consecutive elements sharing one scale; must divide the axis length.
        group_size: usize,
    },
    /// Dynamic per-token (per-row) quantization of an activation: one scale (and zero point) per
    /// index of every axis but the last, computed from the tensor itself on every forward pass and
    /// never stored (torchao's `PerToken`, the usual choice for transformer activations). Needs a
    /// fixed (observed) scale; there is no running state to learn.
    PerToken,
}

/// Which axes of a weight tensor are its output channels and its inputs, by layer kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerKind {
    /// `burn::nn::Linear`: weight `[d_in, d_out]`.
    Linear,
    /// `burn::nn::conv::Conv2d`: weight `[out, in / groups, kh, kw]`.
    Conv2d,
    /// `burn::nn::Embedding`: weight `[n_embedding, d_model]`; a "channel" is one embedding row.
    Embedding,
    /// An activation with its channels on the last axis (`[..., features]`: Linear inputs and
    /// outputs, embeddings); activation axes count from the back.
    Activation,
    /// An activation in NCHW layout (`[batch, channels, h, w]`: convolution inputs and outputs),
    /// channels on the third axis from the back.
    ActivationNchw,
}

impl LayerKind {
    /// The output-channel axis used when a per-channel granularity leaves `axis` unset.
    /// For activations the axis counts from the back.
    pub fn channel_axis(self) -> usize {
        match self {
            LayerKind::Linear => 1,
            LayerKind::Conv2d | LayerKind::Embedding => 0,
            LayerKind::Activation => 0,
            LayerKind::ActivationNchw => 2,
        }
    }

    /// Whether this kind describes an activation (axes counted from the back).
    pub fn is_activation(self) -> bool {
        matches!(self, LayerKind::Activation | LayerKind::ActivationNchw)
    }

    /// The input (reduction) axis used when a per-group granularity leaves `axis` unset.
    pub fn group_axis(self) -> usize {
        match self {
            LayerKind::Linear => 0,
            LayerKind::Conv2d | LayerKind::Embedding => 1,
            LayerKind::Activation | LayerKind::ActivationNchw => 0,
        }
    }

    /// Recognises Burn's stock layers from the container type a `ModuleVisitor` reports
    /// (`"Struct:Linear"`), and this crate's drop-in layers.
    ///
    /// Burn's visitors report a module by its type name only, so the rule is by name: a struct
    /// named `Linear`/`QuantLinear` owns a `[d_in, d_out]` weight, `Conv2d`/`QuantConv2d` a
    /// `[out, in, kh, kw]` one, `Embedding`/`QuantEmbedding` an `[n, d]` table. A user layer with
    /// one of these names and another weight layout should set the axis explicitly in its rule.
    pub fn from_container(container_type: &str) -> Option<Self> {
        let name = container_type.rsplit(':').next()?;
        match name {
            "Linear" | "QuantLinear" => Some(LayerKind::Linear),
            "Conv2d" | "QuantConv2d" => Some(LayerKind::Conv2d),
            "Embedding" | "QuantEmbedding" => Some(LayerKind::Embedding),
            _ => None,
        }
    }
}

impl Granularity {
    /// Replaces `axis: None` by the natural axis of `kind`, returning a granularity with a concrete axis.
    pub fn resolve(&self, kind: LayerKind) -> Granularity {
        match self {
            Granularity::PerTensor => Granularity::PerTensor,
            Granularity::PerChannel { axis } => Granularity::PerChannel {
                axis: Some(axis.unwrap_or(kind.channel_axis())),
            },
            Granularity::PerGroup { axis, group_size } => Granularity::PerGroup {
                axis: Some(axis.unwrap_or(kind.group_axis())),
                group_size: *group_size,
            },
            Granularity::PerToken => Granularity::PerToken,
        }
    }
}
