//! `residency-proxy audit verify PATH...` (being written).

use std::path::PathBuf;
use std::process::ExitCode;

pub fn verify(_paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    anyhow::bail!("audit verify is not implemented yet")
}
