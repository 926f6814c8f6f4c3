//! `cargo xtask golden`: regenerates every `gen_*.py` golden-value script under `crates/*/tests/golden`.

use std::process::Command;

use anyhow::{Context, Result};

pub fn run() -> Result<()> {
    let crates = crate::root().join("crates");
    for entry in std::fs::read_dir(&crates).context("reading crates/")? {
        let golden = entry?.path().join("tests/golden");
        let Ok(scripts) = std::fs::read_dir(&golden) else {
            continue;
        };
        for script in scripts {
            let script = script?.path();
            let name = script
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.starts_with("gen_") && name.ends_with(".py") {
                let mut cmd = Command::new("python3");
                cmd.arg(&script);
                crate::run_command(cmd)?;
            }
        }
    }
    Ok(())
}
