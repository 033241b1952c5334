//! `residency-proxy upstreams` (being written).

use std::path::Path;
use std::process::ExitCode;

pub fn upstreams(_path: &Path, _json: bool) -> anyhow::Result<ExitCode> {
    anyhow::bail!("upstreams is not implemented yet")
}
