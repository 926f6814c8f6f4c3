//! [`run`]: the command line, executed.

use crate::stages::{Context, Existing, eval, finish, pipeline, ptq, qat, train};
use crate::{Cli, Command, RunConfig, TrainerError, select_device};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<(), TrainerError> {
    let config = RunConfig::load(cli.config.as_deref(), &cli.set)?;
    let device = select_device(&cli.backend)?;
    let existing = match (cli.resume, cli.fresh) {
        (true, _) => Existing::Resume,
        (_, true) => Existing::Fresh,
        _ => Existing::Refuse,
    };
    let ctx = Context::new(config, &cli.backend, device, existing, !cli.no_tui)?;
    let (config, splits) = (&ctx.config, &ctx.splits);
    println!(
        "run `{}` -> {}: {} on {} ({} train / {} valid / {} test images), backend {}, schemes {}",
        config.name,
        ctx.run_dir().display(),
        config.model_name(),
        config.data.name,
        splits.train.items.len(),
        splits.valid.items.len(),
        splits.test.items.len(),
        cli.backend,
        config.schemes.join(", ")
    );
    match cli.command.unwrap_or(Command::Pipeline) {
        Command::Train => train(&ctx).and_then(|_| finish(&ctx)),
        Command::Ptq => ptq(&ctx).and_then(|_| finish(&ctx)),
        Command::Qat => qat(&ctx).and_then(|_| finish(&ctx)),
        Command::Eval { checkpoint } => eval(&ctx, checkpoint.as_deref()),
        Command::Pipeline => pipeline(&ctx),
    }?;
    ctx.device.sync().ok();
    Ok(())
}
