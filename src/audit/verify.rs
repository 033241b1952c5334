//! `audit verify`: checks the hash chain across files, in the order given,
//! and names the first bad record by file and 1-based line.
//!
//! Files are streamed line by line through a `BufRead` with a bounded line
//! length ([`super::chain::MAX_LINE`]), so memory does not grow with the
//! files. [`records`] is the same walk as an iterator of verified records,
//! for readers (such as `transfers`) that must not use unverified data.
//!
//! The first record's `prev` is accepted as the starting point and reported
//! in the [`Summary`]: it is [`super::GENESIS`] for a chain that starts in
//! these files, and the last hash of an earlier file otherwise. A file that
//! ends without a final newline is accepted if its last line verifies (the
//! writer then cannot resume it, see [`super::Chain::resume`]).

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::chain::{MAX_LINE, Problem, unseal};
use super::record::AuditRecord;

/// What a successful verification saw.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    /// Records verified, all files together.
    pub records: u64,
    /// Files read.
    pub files: usize,
    /// `prev` of the first record: where the verified chain starts. `None`
    /// when the files hold no record.
    pub first_prev: Option<String>,
    /// `hash` of the last record: what to compare with a hash kept
    /// elsewhere, to detect records removed from the end.
    pub last_hash: Option<String>,
}

/// Why verification stopped.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A file could not be opened or read.
    #[error("cannot read audit file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// A line is not a sealed record, or breaks the chain. Displays as
    /// `PATH:LINE: what (request_id ID)`.
    #[error("{}:{line}: {problem}{}", path.display(), RequestIdNote(request_id.as_deref()))]
    Record {
        /// The file.
        path: PathBuf,
        /// 1-based line number in that file.
        line: u64,
        /// The line's `request_id`, when it could be read.
        request_id: Option<String>,
        /// What is wrong.
        problem: Problem,
    },
}

/// ` (request_id ID)`, with the id cut to 64 characters and escaped: it
/// comes from a file someone may have forged, and goes to a terminal.
struct RequestIdNote<'a>(Option<&'a str>);

impl fmt::Display for RequestIdNote<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(id) if !id.is_empty() => {
                f.write_str(" (request_id ")?;
                for c in id.chars().take(64) {
                    write!(f, "{}", c.escape_default())?;
                }
                f.write_str(")")
            }
            _ => Ok(()),
        }
    }
}

/// Verifies every line of every file in `paths`, in order, as one chain.
///
/// # Errors
/// [`Failure::Read`] if a file cannot be read; [`Failure::Record`] for the
/// first line that does not verify.
pub fn verify(paths: &[PathBuf]) -> Result<Summary, Failure> {
    let mut walk = records(paths);
    for record in walk.by_ref() {
        record?;
    }
    Ok(walk.summary().clone())
}

/// The records of `paths`, each yielded once it has verified; the first
/// failure is yielded as an error and ends the iteration.
pub fn records(paths: &[PathBuf]) -> VerifiedRecords<'_> {
    VerifiedRecords {
        paths,
        next_file: 0,
        reader: None,
        line: 0,
        buf: Vec::new(),
        summary: Summary::default(),
        done: false,
    }
}

/// Iterator returned by [`records`].
#[derive(Debug)]
pub struct VerifiedRecords<'a> {
    paths: &'a [PathBuf],
    next_file: usize,
    reader: Option<BufReader<File>>,
    line: u64,
    buf: Vec<u8>,
    summary: Summary,
    done: bool,
}

impl VerifiedRecords<'_> {
    /// What has verified so far; the whole [`Summary`] once the iterator
    /// has ended without an error.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    fn step(&mut self) -> Option<Result<AuditRecord, Failure>> {
        loop {
            if self.reader.is_none() {
                let path = self.paths.get(self.next_file)?;
                self.next_file += 1;
                match File::open(path) {
                    Ok(file) => self.reader = Some(BufReader::new(file)),
                    Err(source) => return Some(Err(read_failure(path, source))),
                }
                self.line = 0;
                self.summary.files += 1;
            }
            let reader = self.reader.as_mut().expect("opened above");
            match read_line(reader, &mut self.buf) {
                Ok(true) => {
                    self.line += 1;
                    return Some(self.check());
                }
                Ok(false) => self.reader = None,
                Err(source) => return Some(Err(read_failure(self.path(), source))),
            }
        }
    }

    /// The file being read.
    fn path(&self) -> &Path {
        &self.paths[self.next_file - 1]
    }

    fn failure(&self, problem: Problem, request_id: Option<String>) -> Failure {
        Failure::Record {
            path: self.path().to_owned(),
            line: self.line,
            request_id,
            problem,
        }
    }

    /// Checks the line in `buf` and links it to the chain.
    fn check(&mut self) -> Result<AuditRecord, Failure> {
        let sealed = unseal(&self.buf).map_err(|r| self.failure(r.problem, r.request_id))?;
        match &self.summary.last_hash {
            None => self.summary.first_prev = Some(sealed.record.prev.clone()),
            Some(last) if *last != sealed.record.prev => {
                let id = Some(sealed.record.request_id);
                return Err(self.failure(Problem::PrevMismatch, id));
            }
            Some(_) => {}
        }
        self.summary.records += 1;
        self.summary.last_hash = Some(sealed.hash);
        Ok(sealed.record)
    }
}

impl Iterator for VerifiedRecords<'_> {
    type Item = Result<AuditRecord, Failure>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.step();
        self.done = !matches!(item, Some(Ok(_)));
        item
    }
}

impl std::iter::FusedIterator for VerifiedRecords<'_> {}

fn read_failure(path: &Path, source: io::Error) -> Failure {
    Failure::Read {
        path: path.to_owned(),
        source,
    }
}

/// Reads one line into `buf`, without its `\n`; `false` at the end of the
/// file. Reads at most `MAX_LINE + 1` bytes, so an overlong line comes back
/// cut (and fails to unseal as too long) instead of filling memory.
fn read_line(reader: &mut BufReader<File>, buf: &mut Vec<u8>) -> io::Result<bool> {
    buf.clear();
    let limit = MAX_LINE as u64 + 1;
    if reader.by_ref().take(limit).read_until(b'\n', buf)? == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    }
    Ok(true)
}

#[cfg(test)]
mod tests;
