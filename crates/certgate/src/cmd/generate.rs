//! `certgate generate`: shell completions and man pages, made from the CLI definition itself so
//! they can never disagree with `--help`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::CommandFactory as _;

use crate::cli::{Cli, GenerateCommand};
use crate::exit::{self, fail};

pub fn run(command: GenerateCommand) -> Result<ExitCode> {
    match command {
        GenerateCommand::Completions { shell } => {
            use std::io::Write as _;
            let mut cli = Cli::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cli, "certgate", &mut script);
            // A reader that went away (`| head`) is not an error worth a panic.
            if let Err(e) = std::io::stdout().write_all(&script)
                && e.kind() != std::io::ErrorKind::BrokenPipe
            {
                return Err(fail(exit::CANTCREAT, format!("stdout: {e}")));
            }
        }
        GenerateCommand::Man { out } => {
            std::fs::create_dir_all(&out).map_err(|e| {
                fail(
                    exit::CANTCREAT,
                    format!("{}: cannot create: {e}", out.display()),
                )
            })?;
            let written = man_pages(&Cli::command(), "certgate", "certgate", &out)?;
            println!("wrote {written} man pages to {}", out.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the page of `command` (`name` for the file, `usage` as typed, e.g. `certgate-ca-issue`
/// and `certgate ca issue`) and of each of its subcommands, recursively; returns how many pages
/// it wrote.
fn man_pages(command: &clap::Command, name: &str, usage: &str, dir: &Path) -> Result<usize> {
    let command = command
        .clone()
        .display_name(name.to_owned())
        .bin_name(usage.to_owned());
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone())
        .title(name.to_owned())
        .render(&mut page)
        .map_err(|e| fail(exit::SOFTWARE, format!("rendering {name}.1: {e}")))?;
    std::fs::write(&path, page).map_err(|e| {
        fail(
            exit::CANTCREAT,
            format!("{}: cannot write: {e}", path.display()),
        )
    })?;
    let mut written = 1;
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        let sub_name = sub.get_name();
        written += man_pages(
            sub,
            &format!("{name}-{sub_name}"),
            &format!("{usage} {sub_name}"),
            dir,
        )?;
    }
    Ok(written)
}
