//! The hash chain: how a record becomes a sealed line, and back.
//!
//! # Line format
//!
//! An audit file is UTF-8 JSON Lines: one sealed record per line, each line
//! ended by `\n` (0x0A). A sealed line is built from an [`AuditRecord`]:
//!
//! 1. `prev` is set to the `hash` of the previous record of the chain, or
//!    [`GENESIS`] (64 `0`s) for the first record of a new chain: a trail
//!    starts at genesis. The chain continues across files: the first record
//!    of a rotated file has the last `hash` of the file before it. A writer
//!    that opens a file which already holds records continues *that file's*
//!    chain from its last line (at start, and when a reload points `[audit]
//!    path` at an existing file); a new, empty file continues the chain the
//!    writer was on (a new trail at genesis, or the next file after a
//!    rotation).
//! 2. The record is serialised as compact JSON, keys in the order of
//!    [`AuditRecord`]'s fields (`time` first, `prev` last), no whitespace
//!    between tokens, `null` for absent values: these are the bytes `B`,
//!    which end with `}`.
//! 3. `hash` = lower-case hex of SHA-256(`B`), 64 characters.
//! 4. The line is `B` without its final `}`, then `,"hash":"`, the 64 hex
//!    characters, and `"}`.
//!
//! ```text
//! {"time":"2026-11-28T15:20:13.123Z","request_id":"17C0E2A49B3D5F01","route":"s3","method":"GET","object_key":"bucket/key","client_ip":"203.0.113.9","client_country":"US","identity":"AKIAEXAMPLE","purpose":null,"upstream_ip":null,"upstream_country":null,"decision":"blocked","side":"client","reason":"country_not_allowed","status":451,"bytes_up":0,"bytes_down":0,"duration_ms":0,"policy_version":"3f2a9c1e","prev":"0000000000000000000000000000000000000000000000000000000000000000","hash":"25e7f78a15a6fe1d9eee7b973a67dd4f563185b26bd858befd7fd001ffe1dd8f"}
//! ```
//!
//! # Verifying a line (an auditor can do this with any SHA-256 tool)
//!
//! The line, without its `\n`, must end with `,"hash":"H"}` where `H` is 64
//! lower-case hex characters (these last 75 bytes are the only place the
//! hash is written). Strip those 75 bytes, append `}`, and SHA-256 the
//! resulting UTF-8 bytes exactly as they are in the file: the lower-case hex
//! digest must equal `H`, and the record's `prev` must equal the `H` of the
//! line before it (in the same file or at the end of the previous file).
//! Never re-serialise the JSON before hashing: the hash covers the bytes.
//!
//! # What the chain proves, and what it does not
//!
//! Editing a record breaks its hash; deleting, inserting or reordering
//! records breaks the next record's `prev`; deleting the *first* records
//! leaves a first `prev` that is not [`GENESIS`], which `audit verify`
//! refuses unless told where the segment starts (`--from HASH`, the last
//! hash of the segment before, as its verification printed it). Removing
//! records from the *end* of the last file, or a whole chain rewritten from
//! a chosen point, is not detectable from the files alone: keep the last
//! `hash` somewhere the writer of the files cannot change (the `audit
//! verify` summary prints it in full), and compare it later with `audit
//! verify --expect-last HASH`.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::{Map, Value};

use super::AuditError;
use super::record::AuditRecord;

/// `prev` of the first record of a new chain: 64 `0`s.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The longest line a reader accepts, newline excluded (1 MiB). Real
/// records are a few hundred bytes; the bound keeps a hostile file from
/// making a reader buffer it whole.
pub const MAX_LINE: usize = 1 << 20;

const HASH_KEY: &str = ",\"hash\":\"";
/// `,"hash":"` + 64 hex + `"}`.
const SEAL_LEN: usize = HASH_KEY.len() + 64 + 2;

/// The running end of a chain: the hash the next record's `prev` will hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    last: String,
}

impl Default for Chain {
    fn default() -> Self {
        Self::new()
    }
}

impl Chain {
    /// A new chain: the first record sealed gets `prev` = [`GENESIS`].
    pub fn new() -> Self {
        Self {
            last: GENESIS.to_owned(),
        }
    }

    /// Continues the chain of the existing audit file at `path` from the
    /// hash of its last line. Reads backwards from the end, so the cost does
    /// not grow with the file. A missing or empty file starts a new chain.
    ///
    /// # Errors
    /// [`AuditError::Read`] if the file exists but cannot be read,
    /// [`AuditError::UnfinishedLine`] if it does not end with a newline (a
    /// write was cut short: appending would glue a record to the fragment),
    /// [`AuditError::LastRecord`] if its last line is not a sealed record
    /// whose hash verifies.
    pub fn resume(path: &Path) -> Result<Self, AuditError> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::new()),
            Err(source) => {
                return Err(AuditError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Ok(Self::resume_file(&mut file, path)?.unwrap_or_default())
    }

    /// The chain of the open audit `file` (named `path` in errors),
    /// continued from the hash of its last line; `None` if the file is
    /// empty (the caller decides which chain a new file continues).
    ///
    /// # Errors
    /// As [`Chain::resume`].
    pub fn resume_file(file: &mut File, path: &Path) -> Result<Option<Self>, AuditError> {
        let read_error = |source| AuditError::Read {
            path: path.to_owned(),
            source,
        };
        let len = file.metadata().map_err(read_error)?.len();
        if len == 0 {
            return Ok(None);
        }
        let line = last_line(file, len).map_err(read_error)?.ok_or_else(|| {
            AuditError::UnfinishedLine {
                path: path.to_owned(),
            }
        })?;
        match unseal(&line) {
            Ok(sealed) => Ok(Some(Self { last: sealed.hash })),
            Err(rejected) => Err(AuditError::LastRecord {
                path: path.to_owned(),
                problem: rejected.problem,
            }),
        }
    }

    /// The hash the next sealed record's `prev` will hold.
    pub fn last(&self) -> &str {
        &self.last
    }

    /// Seals `record` into the chain: sets its `prev`, and returns the line
    /// to write (without the `\n`), whose hash becomes [`Chain::last`].
    pub fn seal(&mut self, record: &mut AuditRecord) -> String {
        let mut line = Vec::new();
        self.seal_into(record, &mut line);
        String::from_utf8(line).expect("serde_json writes UTF-8")
    }

    /// [`Chain::seal`], appending the line (without the `\n`) to `out`: the
    /// audit writer serialises a whole batch into one reused buffer, with no
    /// string per record.
    pub fn seal_into(&mut self, record: &mut AuditRecord, out: &mut Vec<u8>) {
        record.prev.clone_from(&self.last);
        let start = out.len();
        super::record::json::write(out, record);
        let hash = hex(sha256(&out[start..]).as_ref());
        let closing = out.pop();
        debug_assert_eq!(closing, Some(b'}'), "a JSON object ends with }}");
        out.reserve(SEAL_LEN);
        out.extend_from_slice(HASH_KEY.as_bytes());
        out.extend_from_slice(hash.as_bytes());
        out.extend_from_slice(b"\"}");
        self.last = hash;
    }
}

/// SHA-256 of `bytes`, by ring (assembly, SHA extensions where the CPU has
/// them: several times faster per record than the portable `sha2`).
fn sha256(bytes: &[u8]) -> ring::digest::Digest {
    ring::digest::digest(&ring::digest::SHA256, bytes)
}

/// The bytes of the last line of `file` (of length `len` > 0), newline
/// excluded, or `None` if the file does not end with a newline. Lines longer
/// than [`MAX_LINE`] come back cut to their last `MAX_LINE + 1` bytes, which
/// never unseal.
fn last_line(file: &mut File, len: u64) -> io::Result<Option<Vec<u8>>> {
    const STEP: u64 = 8192;
    let end = len - 1; // the final newline, if there is one
    let mut byte = [0u8; 1];
    file.seek(SeekFrom::Start(end))?;
    file.read_exact(&mut byte)?;
    if byte[0] != b'\n' {
        return Ok(None);
    }
    let floor = end.saturating_sub(MAX_LINE as u64 + 1);
    let mut start = end;
    let mut buf = vec![0u8; STEP as usize];
    while start > floor {
        let from = start.saturating_sub(STEP).max(floor);
        let chunk = &mut buf[..usize::try_from(start - from).expect("at most STEP")];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            start = from + i as u64 + 1;
            break;
        }
        start = from;
    }
    let mut line = vec![0u8; usize::try_from(end - start).expect("at most MAX_LINE + 1")];
    file.seek(SeekFrom::Start(start))?;
    file.read_exact(&mut line)?;
    Ok(Some(line))
}

/// A line whose hash verified, opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The record, `prev` included.
    pub record: AuditRecord,
    /// The line's `hash`: what the next record's `prev` must be.
    pub hash: String,
}

/// What is wrong with one line of an audit file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Not UTF-8 JSON object text: cut short by a crash, or not a record.
    #[error("not a complete record (truncated or not JSON)")]
    Incomplete,
    /// Longer than [`MAX_LINE`].
    #[error("line longer than 1 MiB (not a record)")]
    TooLong,
    /// A JSON object without a string `hash` field.
    #[error("missing hash")]
    MissingHash,
    /// The hash does not match the bytes, or is not where the format puts it.
    #[error("hash mismatch (record edited)")]
    HashMismatch,
    /// The hash matches, but the fields are not those of an audit record.
    #[error("not an audit record (a field is missing or has the wrong type)")]
    NotARecord,
    /// `prev` is not the hash of the record before it.
    #[error("prev does not match the previous record (record deleted, inserted or reordered)")]
    PrevMismatch,
    /// The first record's `prev` is not [`GENESIS`], and no other start
    /// was given: the records before it are missing.
    #[error(
        "the trail does not start at genesis (prev is not 64 zeros): the records before this one are missing \
         (if this file continues an earlier one, give that file first, or --from its last hash)"
    )]
    NotGenesis,
    /// The first record's `prev` is not the hash given as the start.
    #[error(
        "prev does not match --from (the records before this one are missing, or --from names another point)"
    )]
    FromMismatch,
}

/// A line that did not unseal: why, and its `request_id` if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// What is wrong.
    pub problem: Problem,
    /// The line's `request_id`, when the line is JSON and has one.
    pub request_id: Option<String>,
}

/// Opens one sealed line (without its `\n`) and checks its hash against its
/// bytes. Does not check `prev`: that needs the line before (see
/// [`super::verify()`]).
///
/// # Errors
/// The [`Problem`] found first, in the order: not JSON, no hash, hash wrong
/// or misplaced, fields not those of a record (including a `prev` that is
/// not 64 lower-case hex characters).
pub fn unseal(line: &[u8]) -> Result<Sealed, Rejected> {
    let reject = |problem, request_id| Rejected {
        problem,
        request_id,
    };
    if line.len() > MAX_LINE {
        return Err(reject(Problem::TooLong, None));
    }
    let Ok(text) = std::str::from_utf8(line) else {
        return Err(reject(Problem::Incomplete, None));
    };
    let Ok(object) = serde_json::from_str::<Map<String, Value>>(text) else {
        return Err(reject(Problem::Incomplete, None));
    };
    let request_id = match object.get("request_id") {
        Some(Value::String(id)) => Some(id.clone()),
        _ => None,
    };
    let Some(Value::String(hash)) = object.get("hash") else {
        return Err(reject(Problem::MissingHash, request_id));
    };
    // The hash must be the last member, written exactly as `seal` writes it:
    // anything else is a line that was rewritten after sealing.
    let body_len = text.len().saturating_sub(SEAL_LEN);
    let well_placed = is_hash(hash)
        && text.get(body_len..).is_some_and(|seal| {
            seal.strip_prefix(HASH_KEY)
                .and_then(|s| s.strip_suffix("\"}"))
                == Some(hash.as_str())
        });
    if !well_placed {
        return Err(reject(Problem::HashMismatch, request_id));
    }
    let mut hashed = String::with_capacity(body_len + 1);
    hashed.push_str(&text[..body_len]);
    hashed.push('}');
    if hex(sha256(hashed.as_bytes()).as_ref()) != *hash {
        return Err(reject(Problem::HashMismatch, request_id));
    }
    match serde_json::from_str::<AuditRecord>(&hashed) {
        Ok(record) if is_hash(&record.prev) => Ok(Sealed {
            record,
            hash: hash.clone(),
        }),
        _ => Err(reject(Problem::NotARecord, request_id)),
    }
}

/// True for exactly 64 lower-case hex characters.
fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

#[cfg(test)]
mod tests;
