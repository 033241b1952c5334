//! The `residency-proxy` binary: parse, set up logging, dispatch, exit.

use std::process::ExitCode;

use clap::Parser;
use residency_proxy::cli::{Cli, LogFormat, dispatch};
use tracing_subscriber::EnvFilter;

/// jemalloc instead of glibc's malloc: the request path allocates and frees
/// a few dozen small blocks per request (hyper's buffers and headers, the
/// audit record). On the anchor benchmark's placement it took the proxy's
/// CPU per request from 23.5 to 21.7 µs at 64 connections and from 33.2 to
/// 28.6 µs at 1,000, for 2 MiB more peak RSS at 1,000; mimalloc saved as
/// much CPU but added 27 MiB there (README, Performance).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
