//! `crdtdir completions SHELL` and `crdtdir man`: shell completions and man pages,
//! generated from the same definitions as `--help`.

use std::path::PathBuf;

use crate::output::{fail, Failure};

#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  crdtdir completions bash > ~/.local/share/bash-completion/completions/crdtdir
  crdtdir completions zsh > ~/.zfunc/_crdtdir        # with fpath+=~/.zfunc in .zshrc
  crdtdir completions fish > ~/.config/fish/completions/crdtdir.fish")]
pub(crate) struct CompletionsArgs {
    /// The shell.
    shell: clap_complete::Shell,
}

#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  crdtdir man | man -l -
  crdtdir man --dir ~/.local/share/man/man1            # crdtdir.1 and one page per command")]
pub(crate) struct ManArgs {
    /// Write crdtdir.1 and a page per command (crdtdir-append.1, …) into DIR instead of
    /// printing crdtdir.1.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub(crate) fn completions(args: &CompletionsArgs, mut cmd: clap::Command) -> Result<(), Failure> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "crdtdir", &mut out);
    crate::output::write_out(&String::from_utf8_lossy(&out))
}

pub(crate) fn man(args: &ManArgs, cmd: clap::Command) -> Result<(), Failure> {
    match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
            clap_mangen::generate_to(cmd, dir).map_err(|e| fail(format!("{}: {e}", dir.display())))
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .map_err(|e| fail(e.to_string()))?;
            crate::output::write_out(&String::from_utf8_lossy(&out))
        }
    }
}
