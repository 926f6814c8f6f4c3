//! [`run`]: the command line, executed: the config picks the task, the task's stages run.

use burn::tensor::Device;

use crate::stages::{
    Context, Existing, Unexportable, eval, export, finish, infer, pipeline, ptq, qat, sensitivity,
    train,
};
use crate::task::{ImageTask, SentenceTask, SequenceTask, Task, TokenTask};
use crate::{Cli, Command, RunConfig, TaskKind, TrainerError, select_device};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<(), TrainerError> {
    if let Some(Command::Infer {
        artifact,
        input,
        output,
    }) = &cli.command
    {
        return infer(artifact, input, output.as_deref());
    }
    let config = RunConfig::load(cli.config.as_deref(), &cli.set)?;
    let device = select_device(&cli.backend)?;
    let existing = match (cli.resume, cli.fresh) {
        (true, _) => Existing::Resume,
        (_, true) => Existing::Fresh,
        _ => Existing::Refuse,
    };
    let policy = (existing, !cli.no_tui);
    match config.task {
        TaskKind::ImageClassification => {
            let load = |c: &RunConfig| ImageTask::load(&c.data, &c.model);
            run_task(
                Context::new(config, &cli.backend, device, policy, load)?,
                cli.command,
            )
        }
        TaskKind::SentenceClassification => run_task(
            Context::new(config, &cli.backend, device, policy, SentenceTask::load)?,
            cli.command,
        ),
        TaskKind::TokenClassification => run_task(
            Context::new(config, &cli.backend, device, policy, TokenTask::load)?,
            cli.command,
        ),
        TaskKind::SequenceClassification => run_task(
            Context::new(config, &cli.backend, device, policy, SequenceTask::load)?,
            cli.command,
        ),
    }
}

/// Runs `command` (default: the pipeline) of one task.
fn run_task<T: Task>(ctx: Context<T>, command: Option<Command>) -> Result<(), TrainerError> {
    let config = &ctx.config;
    println!(
        "run `{}` -> {}: {} {} on {} ({}), backend {}, schemes {}",
        config.name,
        ctx.run_dir().display(),
        ctx.task.kind().name(),
        config.model_name(),
        config.data.name,
        ctx.task.describe(),
        ctx.backend,
        config.schemes.join(", ")
    );
    match command.unwrap_or(Command::Pipeline) {
        Command::Train => train(&ctx).and_then(|_| finish(&ctx)),
        Command::Ptq => ptq(&ctx).and_then(|_| finish(&ctx)),
        Command::Qat => qat(&ctx).and_then(|_| finish(&ctx)),
        Command::Eval { checkpoint } => eval(&ctx, checkpoint.as_deref()),
        Command::Export => export(&ctx, Unexportable::Fail).and_then(|_| finish(&ctx)),
        Command::Infer { .. } => unreachable!("handled before a run context is built"),
        Command::Sensitivity(options) => sensitivity(&ctx, &options),
        Command::Pipeline => pipeline(&ctx),
    }?;
    let device: &Device = &ctx.device;
    device.sync().ok();
    Ok(())
}
