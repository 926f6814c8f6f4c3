//! Float vs PTQ vs QAT accuracy of an MLP on the UCI digits (shipped with the repository).
//!
//! `cargo run --release -p quant --example digits_qat -- [w8a8|w4a8|w4a4|w2a8 …]`
#[path = "digits/mlp.rs"]
mod mlp;

use burn::tensor::Device;
use quant::QuantMapping;

fn main() {
    let schemes: Vec<String> = std::env::args().skip(1).collect();
    let schemes = if schemes.is_empty() {
        vec!["w4a8".to_string()]
    } else {
        schemes
    };
    let device = Device::flex();
    println!("| scheme | float | PTQ | QAT | QAT - float |");
    println!("|---|---|---|---|---|");
    for scheme in schemes {
        let mapping = match QuantMapping::preset(&scheme) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
        };
        let r = mlp::float_ptq_qat(&mapping, &device, 30, 10);
        println!(
            "| {scheme} | {:.2}% | {:.2}% | {:.2}% | {:+.2} pts |",
            100.0 * r.float,
            100.0 * r.ptq,
            100.0 * r.qat,
            100.0 * (r.qat - r.float)
        );
    }
}
