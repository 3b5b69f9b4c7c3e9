//! The `certgate` binary: CLI parsing, config wiring and command dispatch.

#![forbid(unsafe_code)]

mod ca_store;
mod cli;
mod cmd;
mod config;
mod exit;
mod files;

use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help and version to stdout with success; usage errors get EX_USAGE.
            let code = if e.use_stderr() { exit::USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_logging();
    let result = match cli.command {
        Command::Quickstart(args) => cmd::quickstart::run(&args),
        Command::Check(args) => cmd::check::run(&args),
        Command::Ca(args) => cmd::ca::run(args),
        Command::Inspect(args) => cmd::inspect::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(exit::code_for(&err))
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("CERTGATE_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
