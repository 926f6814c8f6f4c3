//! Whole-model switches: freeze observers, turn fake quantization on or off, freeze BN statistics.
//!
//! Quantizers keep their switches in `Param<Flag>`s, which Burn's `ModuleMapper` reaches in any
//! model, so these work on user models without knowing their types. They are what a QAT schedule
//! calls at its milestones (PyTorch: `disable_observer`, `enable_fake_quant`, `freeze_bn_stats`).

use burn::module::{Flag, Module, ModuleMapper, Param};

/// Sets every `Param<Flag>` whose field name is `name` to `value`, returning how many it set.
pub fn set_flags<M: Module>(model: M, name: &str, value: bool) -> (M, usize) {
    let mut setter = FlagSetter {
        name,
        value,
        current: Vec::new(),
        count: 0,
    };
    let model = model.map(&mut setter);
    (model, setter.count)
}

/// Enables or disables every quantizer's observer (`observer_enabled`).
pub fn set_observers<M: Module>(model: M, enabled: bool) -> M {
    set_flags(model, "observer_enabled", enabled).0
}

/// Enables or disables fake quantization in every quantizer (`bypass` is its negation).
/// Observers keep running while fake quantization is off, which is how PTQ calibrates.
pub fn set_fake_quant<M: Module>(model: M, enabled: bool) -> M {
    set_flags(model, "bypass", !enabled).0
}

/// Freezes (or unfreezes) batch-norm statistics in every [`crate::ConvBn2d`].
pub fn set_bn_frozen<M: Module>(model: M, frozen: bool) -> M {
    set_flags(model, "bn_frozen", frozen).0
}

struct FlagSetter<'a> {
    name: &'a str,
    value: bool,
    current: Vec<String>,
    count: usize,
}

impl ModuleMapper for FlagSetter<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.current.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.current.pop();
    }

    fn map_flag(&mut self, flag: Param<Flag>) -> Param<Flag> {
        if self.current.last().map(String::as_str) == Some(self.name) {
            self.count += 1;
            flag.with_value(self.value)
        } else {
            flag
        }
    }
}
