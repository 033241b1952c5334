//! The `residency-proxy` binary: parse, set up logging, dispatch, exit.

use std::process::ExitCode;

use clap::Parser;
use residency_proxy::cli::{Cli, LogFormat, dispatch};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.with_ansi(ansi).init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Pretty => logs.pretty().with_ansi(ansi).init(),
    }
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            // Config problems are already `path:line:col: message` lines.
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
