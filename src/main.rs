//! The `residency-proxy` binary: parse, set up logging, dispatch, exit.

use std::process::ExitCode;

use clap::Parser;
use residency_proxy::cli::{Cli, dispatch};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            // Config problems are already `path:line:col: message` lines.
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
