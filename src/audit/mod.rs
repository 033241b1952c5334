//! The audit trail (SPEC §6): one JSON Lines record per request, chained by
//! SHA-256 so that a deleted, edited or reordered record is detectable.
//!
//! - [`record`]: the [`AuditRecord`] fields, in their on-disk order, and
//!   [`format_time`];
//! - [`chain`]: [`Chain::seal`] turns a record into a line; the line format,
//!   documented there precisely enough to re-implement verification;
//! - [`verify`](mod@verify): `audit verify`, streaming files line by line;
//! - [`fields`]: what the request path extracts for a record (identity,
//!   object key);
//! - [`transfers`]: the cartography of flows outside the EEA, from records,
//!   rendered as Markdown, JSON or one HTML page ([`Cartography::to_html`]);
//! - [`checkpoint`]: signed checkpoints of the trail (c2sp.org signed
//!   notes), the keys, and their verification;
//! - [`rotate`]: rotation by size and age, segment names, and the
//!   directory listing of several chains;
//! - closed segments are uploaded to S3 by [`crate::export`], outside this
//!   module: it judges the store like an upstream, with the snapshot;
//! - [`writer`]: appends sealed records with group commit from the request
//!   path; the file and the [`Chain`] belong to whichever request leads a
//!   batch.

pub mod chain;
pub mod checkpoint;
pub mod fields;
pub mod operated;
pub mod page;
pub mod progress;
pub mod record;
mod report;
pub mod rotate;
pub mod sides;
pub mod transfers;
pub mod verify;
pub mod world;
pub mod writer;

use std::path::PathBuf;

pub use chain::{Chain, GENESIS, Problem, Rejected, Sealed, unseal};
pub use fields::{Credential, ObjectKeyMode, UNREADABLE, credential, identity, object_key};
pub use record::{AuditRecord, POLICY, POLICY_CHANGED, PolicyChange, format_time};
pub use transfers::{Cartography, Transfer, aggregate};
pub use verify::{Expect, Failure, Summary, VerifiedRecords, records, verify};

/// Why an audit file could not be used to continue a chain.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The file exists but could not be opened or read.
    #[error("cannot read audit file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The file does not end with a newline: its last write was cut short.
    #[error(
        "audit file {} ends with an unfinished line (a write was cut short); see `residency-proxy audit verify`",
        path.display()
    )]
    UnfinishedLine {
        /// The file.
        path: PathBuf,
    },
    /// The last line is not a sealed record whose hash verifies.
    #[error("the last line of audit file {} is not a sealed record: {problem}", path.display())]
    LastRecord {
        /// The file.
        path: PathBuf,
        /// What is wrong with the line.
        problem: Problem,
    },
}
