//! `strom completions <shell>`: shell completion scripts generated from the CLI itself.

use std::process::ExitCode;

/// `strom completions <shell>`
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  strom completions bash > ~/.local/share/bash-completion/completions/strom
  strom completions zsh > ~/.zfunc/_strom
  strom completions fish > ~/.config/fish/completions/strom.fish")]
pub struct Args {
    /// The shell to generate completions for.
    shell: clap_complete::Shell,
}

/// Prints the completion script for `command` (the whole `strom` CLI) on stdout.
pub fn run(args: Args, mut command: clap::Command) -> anyhow::Result<ExitCode> {
    let name = command.get_name().to_owned();
    clap_complete::generate(args.shell, &mut command, name, &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
