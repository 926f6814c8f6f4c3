//! Counting GPU kernel launches: a cost figure that, unlike a time, does not depend on the machine.
//!
//! On a GPU every kernel launch costs microseconds of fixed overhead, so the launches a QAT step
//! adds over its float step say what quantization costs there as much as the arithmetic does.
//! [`LaunchCounter`] listens to CubeCL's launch hook (every Cube runtime: wgpu, CUDA, …) while it
//! lives; launches are counted when issued, which under burn-fusion is when a fused chain is
//! flushed, so bracket the work with [`burn::tensor::Device::sync`] on both sides.
//! `QAT_LAUNCH_SEQUENCE=1` also prints each counted launch to stderr (`launch: <kernel>`), in
//! order, each count starting with `launch: --- counting starts`.

use std::collections::BTreeMap;
#[cfg(feature = "cube")]
use std::sync::{Arc, Mutex};

use burn::tensor::Device;
#[cfg(feature = "cube")]
use cubecl::logging::{LaunchObservation, LaunchObserver};

/// The launches seen while a [`LaunchCounter`] lived.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LaunchCount {
    /// Every launch.
    pub total: usize,
    /// Launches of this crate's kernels (fake quantization, observers, the integer bias).
    pub ours: usize,
    /// Launches by kernel name (as CubeCL names the kernel; fused chains share a name).
    pub by_kernel: BTreeMap<String, usize>,
}

impl LaunchCount {
    /// Launches of kernels whose name contains `pattern`.
    pub fn matching(&self, pattern: &str) -> usize {
        self.by_kernel
            .iter()
            .filter(|(name, _)| name.contains(pattern))
            .map(|(_, n)| n)
            .sum()
    }
}

/// The launches of two stretches of work together (a step's forward + backward and its optimizer
/// update, counted apart).
impl std::ops::Add for LaunchCount {
    type Output = LaunchCount;

    fn add(mut self, other: LaunchCount) -> LaunchCount {
        self.total += other.total;
        self.ours += other.ours;
        for (kernel, n) in other.by_kernel {
            *self.by_kernel.entry(kernel).or_default() += n;
        }
        self
    }
}

/// Runs `step` and, on a CubeCL device (wgpu, CUDA, …), returns the kernel launches it issued,
/// with the device synced before and after so that burn-fusion's deferred launches are counted
/// where they belong. `None` on other devices (Flex runs no kernels to count).
pub fn count_step(device: &Device, step: impl FnOnce()) -> Option<LaunchCount> {
    #[cfg(feature = "cube")]
    if matches!(
        device.clone().without_autodiff().as_dispatch(),
        burn::backend::DispatchDevice::Cube(_)
    ) {
        device.sync().ok();
        let counter = LaunchCounter::start();
        step();
        device.sync().ok();
        return Some(counter.finish());
    }
    let _ = device;
    step();
    None
}

/// Whether `QAT_LAUNCH_SEQUENCE` asks for every counted launch on stderr, in order: diffing a
/// float step's sequence against a QAT step's shows where the added launches come from.
#[cfg(feature = "cube")]
fn print_sequence() -> bool {
    static PRINT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PRINT.get_or_init(|| std::env::var_os("QAT_LAUNCH_SEQUENCE").is_some())
}

#[cfg(feature = "cube")]
#[derive(Default)]
struct Tally(Mutex<BTreeMap<&'static str, usize>>);

#[cfg(feature = "cube")]
impl LaunchObserver for Tally {
    fn launched(&self, kernel: &'static str) {
        if print_sequence() {
            eprintln!("launch: {}", short_name(kernel));
        }
        *self
            .0
            .lock()
            .expect("launch tally poisoned")
            .entry(kernel)
            .or_default() += 1;
    }
}

/// Counts every CubeCL kernel launch the process issues, on any thread, from [`Self::start`] to
/// [`Self::finish`]. Process-wide: run nothing else on a GPU meanwhile (tests that count launches
/// live in a test binary of their own).
#[cfg(feature = "cube")]
pub struct LaunchCounter {
    tally: Arc<Tally>,
    observation: LaunchObservation,
}

#[cfg(feature = "cube")]
impl LaunchCounter {
    /// Starts counting.
    pub fn start() -> Self {
        if print_sequence() {
            eprintln!("launch: --- counting starts");
        }
        let tally = Arc::new(Tally::default());
        let observation = LaunchObservation::new(tally.clone());
        Self { tally, observation }
    }

    /// Stops counting and returns what was launched.
    pub fn finish(self) -> LaunchCount {
        drop(self.observation);
        let counts = self.tally.0.lock().expect("launch tally poisoned");
        launch_count(&counts)
    }
}

/// The module of this crate's CubeCL kernels: their launches are [`LaunchCount::ours`].
#[cfg(feature = "cube")]
const OUR_KERNELS: &str = "quant::math::fused::cube::kernels::";

#[cfg(feature = "cube")]
/// The count of a tally by full kernel name, keyed by short name: instances of one generic kernel
/// share a short name, so their launches add up.
fn launch_count(counts: &BTreeMap<&'static str, usize>) -> LaunchCount {
    let mut by_kernel = BTreeMap::new();
    for (name, n) in counts {
        *by_kernel.entry(short_name(name)).or_default() += *n;
    }
    LaunchCount {
        total: counts.values().sum(),
        ours: counts
            .iter()
            .filter(|(name, _)| name.starts_with(OUR_KERNELS))
            .map(|(_, n)| n)
            .sum(),
        by_kernel,
    }
}

#[cfg(feature = "cube")]
/// A kernel's type name without its module path or generic arguments' paths
/// (`quant::math::fused::cube::kernels::reduce::Reduce` → `reduce::Reduce`).
fn short_name(name: &str) -> String {
    let head = name.split('<').next().unwrap_or(name);
    let parts: Vec<&str> = head.rsplit("::").take(2).collect();
    parts.into_iter().rev().collect::<Vec<_>>().join("::")
}

#[cfg(test)]
mod sum_tests {
    use super::*;

    #[test]
    fn two_counts_add_up_kernel_by_kernel() {
        let count = |total, ours, kernels: &[(&str, usize)]| LaunchCount {
            total,
            ours,
            by_kernel: kernels.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
        };
        let sum =
            count(5, 2, &[("a", 3), ("ours", 2)]) + count(4, 1, &[("a", 1), ("b", 2), ("ours", 1)]);
        assert_eq!(sum, count(9, 3, &[("a", 4), ("b", 2), ("ours", 3)]));
    }
}

#[cfg(all(test, feature = "cube"))]
mod tests {
    use super::*;

    #[test]
    fn short_names_keep_the_kernel_and_its_module() {
        assert_eq!(
            short_name("quant::math::fused::cube::kernels::reduce::Reduce"),
            "reduce::Reduce"
        );
        assert_eq!(short_name("Plain"), "Plain");
        assert_eq!(short_name("a::b::K<f32, x::Y>"), "b::K");
    }

    #[test]
    fn instances_of_one_generic_kernel_add_up() {
        let ours = "quant::math::fused::cube::kernels::observe::Observe";
        let counts = BTreeMap::from([
            ("a::b::K<f32>", 2),
            ("a::b::K<u32>", 3),
            ("a::c::L", 1),
            (ours, 4),
        ]);
        let count = launch_count(&counts);
        assert_eq!(count.total, 10);
        assert_eq!(count.ours, 4);
        assert_eq!(
            count.by_kernel,
            BTreeMap::from([
                ("b::K".to_string(), 5),
                ("c::L".to_string(), 1),
                ("observe::Observe".to_string(), 4)
            ])
        );
        assert_eq!(count.by_kernel.values().sum::<usize>(), count.total);
    }
}
