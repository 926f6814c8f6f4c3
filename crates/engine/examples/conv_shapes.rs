//! One convolution at a time, through the engine, at the shapes of the CNNs' layers at batch 64
//! (ResNet-20's stem, its three stages and a stride-2 layer with its 1 × 1 shortcut, LeNet-BN's
//! two layers): the time of the `Conv2d` op alone (`Engine::profile`), best of 20 runs, and its
//! multiply-adds per second. `cargo run -p engine --example conv_shapes [NAME]` (only layers
//! whose name contains `NAME`); `QAT_ENGINE_ISA` picks the kernel family.
use engine::{ActQuant, Engine, LayerWeights, ProgramBuilder};

/// `[c, h, w]` in, channels out, window, stride, padding `[top, left, bottom, right]`.
type Shape = ([usize; 3], usize, [usize; 2], [usize; 2], [usize; 4]);

const SHAPES: [(&str, Shape); 8] = [
    (
        "resnet stem",
        ([1, 28, 28], 16, [3, 3], [1, 1], [1, 1, 1, 1]),
    ),
    (
        "resnet stage 1",
        ([16, 28, 28], 16, [3, 3], [1, 1], [1, 1, 1, 1]),
    ),
    (
        "resnet 1→2 (s2)",
        ([16, 28, 28], 32, [3, 3], [2, 2], [1, 1, 1, 1]),
    ),
    (
        "resnet shortcut",
        ([16, 28, 28], 32, [1, 1], [2, 2], [0, 0, 0, 0]),
    ),
    (
        "resnet stage 2",
        ([32, 14, 14], 32, [3, 3], [1, 1], [1, 1, 1, 1]),
    ),
    (
        "resnet stage 3",
        ([64, 7, 7], 64, [3, 3], [1, 1], [1, 1, 1, 1]),
    ),
    (
        "lenet conv1",
        ([1, 28, 28], 16, [5, 5], [1, 1], [2, 2, 2, 2]),
    ),
    (
        "lenet conv2",
        ([16, 14, 14], 32, [5, 5], [1, 1], [2, 2, 2, 2]),
    ),
];

fn main() {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build_global()
        .unwrap();
    let batch = 64;
    println!("| layer | batch | Conv2d | GOP/s |\n|---|---:|---:|---:|");
    let only = std::env::args().nth(1).unwrap_or_default();
    for (name, (input, out, kernel, stride, padding)) in SHAPES {
        if !name.contains(&only) {
            continue;
        }
        let [c, h, w] = input;
        let mut b = ProgramBuilder::new();
        let x = b.input("image", &input);
        let grid = |zero_point| ActQuant {
            scale: 0.05,
            zero_point,
            qmin: 0,
            qmax: 255,
        };
        let x = b.quantize("q", x, grid(7));
        let len = out * c * kernel[0] * kernel[1];
        let weights = LayerWeights {
            codes: (0..len)
                .map(|i| ((i * 37 % 255) as i32 - 127) as i8)
                .collect(),
            shape: vec![out, c, kernel[0], kernel[1]],
            bits: 8,
            scales: vec![0.004; out],
            bias: Some(vec![0.1; out]),
        };
        let y = b
            .conv2d("conv", x, weights, stride, padding, true, Some(grid(0)))
            .unwrap();
        b.output(y);
        let artifact = b.finish(serde_json::json!({})).unwrap();
        let engine = Engine::new(&artifact).unwrap();
        let image: Vec<f32> = (0..batch * c * h * w)
            .map(|i| (i * 13 % 101) as f32 * 0.1)
            .collect();
        let best = (0..20)
            .map(|_| {
                let (_, times) = engine.profile(batch, &[&image]).unwrap();
                times.iter().find(|(op, _)| op == "Conv2d").unwrap().1
            })
            .fold(f64::MAX, f64::min);
        let [oh, ow] = [
            (h + padding[0] + padding[2] - kernel[0]) / stride[0] + 1,
            (w + padding[1] + padding[3] - kernel[1]) / stride[1] + 1,
        ];
        let macs = (batch * oh * ow * out * len / out) as f64;
        println!(
            "| {name} | {batch} | {:.3} ms | {:.0} |",
            best * 1e3,
            2.0 * macs / best / 1e9
        );
    }
}
