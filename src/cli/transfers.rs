//! `residency-proxy transfers --audit PATH...` (being written).

use std::path::PathBuf;
use std::process::ExitCode;

use super::ReportFormat;

pub fn transfers(_audit: &[PathBuf], _format: ReportFormat) -> anyhow::Result<ExitCode> {
    anyhow::bail!("transfers is not implemented yet")
}
