//! `infer`: predictions of an exported integer model for a file of raw inputs. Needs only the
//! artifact: its metadata names the task, the labels and how to prepare inputs.

use std::path::Path;

use crate::report::write_file;
use crate::task::{ImageTask, Prediction, SentenceTask, SequenceTask, Task, TokenTask};
use crate::{TaskKind, TrainerError};

/// Runs the artifact at `artifact` on `input`, prints the predictions, and writes them as JSON
/// to `output` when given.
pub fn infer(artifact: &Path, input: &Path, output: Option<&Path>) -> Result<(), TrainerError> {
    let model = engine::Artifact::read(artifact)?;
    let engine = engine::Engine::new(&model)?;
    let task = model.meta["task"].as_str().unwrap_or_default();
    let predictions = match task {
        t if t == TaskKind::ImageClassification.name() => ImageTask::infer(&model, &engine, input)?,
        t if t == TaskKind::SentenceClassification.name() => {
            SentenceTask::infer(&model, &engine, input)?
        }
        t if t == TaskKind::TokenClassification.name() => TokenTask::infer(&model, &engine, input)?,
        t if t == TaskKind::SequenceClassification.name() => {
            SequenceTask::infer(&model, &engine, input)?
        }
        other => {
            return Err(TrainerError::Config {
                origin: artifact.display().to_string(),
                message: format!("metadata names task `{other}`, which this trainer does not know"),
            });
        }
    };
    print_predictions(&predictions);
    eprintln!(
        "{} predictions by the integer engine ({} kernels) from {}",
        predictions.len(),
        engine.isa().name(),
        artifact.display()
    );
    if let Some(path) = output {
        write_file(
            path,
            &serde_json::to_string_pretty(&predictions).expect("serializes"),
        )?;
    }
    Ok(())
}

fn print_predictions(predictions: &[Prediction]) {
    println!("| input | prediction | confidence |\n|---|---|---:|");
    for p in predictions {
        println!(
            "| {} | {} | {:.1}% |",
            p.input,
            p.label,
            100.0 * p.confidence
        );
    }
}
