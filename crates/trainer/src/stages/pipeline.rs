//! `pipeline` (the default command): train → ptq → qat → export → report with curves; and `eval`.

use std::path::Path;

use super::{Context, evaluate_and_save, load_model};
use super::{Unexportable, export, ptq, qat, train};
use crate::TrainerError;
use crate::report::{curves_svg, write_file};
use crate::task::Task;

/// Runs every stage in order, then writes the curves and prints the report.
pub fn pipeline<T: Task>(ctx: &Context<T>) -> Result<(), TrainerError> {
    train(ctx)?;
    ptq(ctx)?;
    qat(ctx)?;
    export(ctx, Unexportable::Skip)?;
    finish(ctx)
}

/// Writes `curves.svg` and prints `report.md`.
pub fn finish<T: Task>(ctx: &Context<T>) -> Result<(), TrainerError> {
    let run_dir = ctx.run_dir();
    let mut stages = vec![("float".to_string(), ctx.stage_dir("float", None))];
    for scheme in ctx.schemes()? {
        stages.push((
            format!("qat {}", scheme.name),
            ctx.stage_dir("qat", Some(&scheme)),
        ));
    }
    let stages: Vec<(String, &Path)> = stages
        .iter()
        .filter(|(_, d)| d.join("train").is_dir())
        .map(|(n, d)| (n.clone(), d.as_path()))
        .collect();
    write_file(&run_dir.join("curves.svg"), &curves_svg(&stages))?;
    let report = ctx.report()?;
    report.save(&run_dir)?;
    println!(
        "\n{}\nWritten: {}/report.md, report.json, curves.svg",
        report.to_markdown(),
        run_dir.display()
    );
    Ok(())
}

/// Evaluates one checkpoint (a stage folder, its `model.bpk`, or an epoch checkpoint), or with
/// none every finished stage of the run, printing the task's reports.
pub fn eval<T: Task>(ctx: &Context<T>, checkpoint: Option<&Path>) -> Result<(), TrainerError> {
    let paths: Vec<std::path::PathBuf> = match checkpoint {
        Some(path) => vec![path.to_path_buf()],
        None => {
            let entries =
                std::fs::read_dir(ctx.run_dir()).map_err(|e| TrainerError::io(ctx.run_dir(), e))?;
            let mut dirs: Vec<_> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.join("model.bpk").is_file())
                .collect();
            dirs.sort();
            if dirs.is_empty() {
                return Err(TrainerError::io(
                    ctx.run_dir(),
                    "no finished stage to evaluate (run `train` first)",
                ));
            }
            dirs
        }
    };
    for path in paths {
        let (net, meta) = load_model(&ctx.task, &path, &ctx.device)?;
        let title = if meta.variant == "float" {
            "float".to_string()
        } else {
            format!("{} {}", meta.variant, meta.scheme)
        };
        let stage_dir = if path.is_dir() {
            path.clone()
        } else {
            path.parent().unwrap_or(Path::new(".")).to_path_buf()
        };
        evaluate_and_save(&ctx.task, &net, &title, &stage_dir, &ctx.device)?;
    }
    Ok(())
}
