//! `audit verify`: checks the hash chain across files, in the order given,
//! and names the first bad record by file and 1-based line.
//!
//! Files are streamed line by line through a `BufRead` with a bounded line
//! length ([`super::chain::MAX_LINE`]), so memory does not grow with the
//! files. [`records`] is the same walk as an iterator of verified records,
//! for readers (such as `transfers`) that must not use unverified data.
//!
//! A trail starts at genesis: the first record's `prev` must be
//! [`GENESIS`], or the hash given in [`Expect::from`] (the last hash of the
//! segment before, as its verification printed it), so that records
//! deleted from the head of the trail are caught. Files with no record at
//! all fail: an empty trail proves nothing. [`Expect::last`] is the hash the
//! last record must have, kept elsewhere by the operator, which catches
//! records removed from the end. A file that ends without a final newline is
//! accepted if its last line verifies (the writer then cannot resume it, see
//! [`super::Chain::resume`]).

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::chain::{GENESIS, MAX_LINE, Problem, unseal};
use super::record::AuditRecord;

/// Where the verified chain must start and end (`--from`,
/// `--expect-last`). Hashes are 64 lower-case hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expect {
    /// `prev` of the first record; `None` means [`GENESIS`].
    pub from: Option<String>,
    /// `hash` the last record must have; `None` accepts any.
    pub last: Option<String>,
}

/// What a successful verification saw.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    /// Records verified, all files together.
    pub records: u64,
    /// Files read.
    pub files: usize,
    /// `prev` of the first record: where the verified chain starts
    /// ([`GENESIS`] or [`Expect::from`]). `None` until a record verified.
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
    /// The files hold no record: an empty trail proves nothing (its
    /// records may all have been removed).
    #[error(
        "no audit record in {}: an empty trail proves nothing",
        PathList(paths)
    )]
    Empty {
        /// The files read.
        paths: Vec<PathBuf>,
    },
    /// The last record's hash is not the one expected: records were
    /// removed from the end (or added after the expected hash was kept).
    #[error(
        "{}:{line}: the trail ends with hash {found}, not {expected} (--expect-last): records removed from the end, or added after it",
        path.display()
    )]
    LastMismatch {
        /// The file holding the last record.
        path: PathBuf,
        /// 1-based line of the last record in that file.
        line: u64,
        /// The last record's hash.
        found: String,
        /// The hash given.
        expected: String,
    },
}

/// Paths separated by `, `.
struct PathList<'a>(&'a [PathBuf]);

impl fmt::Display for PathList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", p.display())?;
        }
        Ok(())
    }
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

/// Verifies every line of every file in `paths`, in order, as one chain
/// that starts and ends as `expect` says.
///
/// # Errors
/// [`Failure::Read`] if a file cannot be read; [`Failure::Record`] for the
/// first line that does not verify (a first record that does not start
/// where expected included); [`Failure::Empty`] if there is no record;
/// [`Failure::LastMismatch`] if the last hash is not [`Expect::last`].
pub fn verify(paths: &[PathBuf], expect: &Expect) -> Result<Summary, Failure> {
    let mut walk = records(paths, expect);
    for record in walk.by_ref() {
        record?;
    }
    Ok(walk.summary().clone())
}

/// The records of `paths`, each yielded once it has verified; the first
/// failure is yielded as an error and ends the iteration. The checks of the
/// whole trail ([`Failure::Empty`], [`Failure::LastMismatch`]) come as a
/// last error after the last record: a reader must not use what it read
/// before it has seen the iteration end without an error.
pub fn records<'a>(paths: &'a [PathBuf], expect: &'a Expect) -> VerifiedRecords<'a> {
    VerifiedRecords {
        paths,
        expect,
        next_file: 0,
        reader: None,
        line: 0,
        last_at: None,
        buf: Vec::new(),
        summary: Summary::default(),
        done: false,
        watcher: super::progress::watcher(),
        unreported: (0, 0),
    }
}

/// Iterator returned by [`records`].
#[derive(Debug)]
pub struct VerifiedRecords<'a> {
    paths: &'a [PathBuf],
    expect: &'a Expect,
    next_file: usize,
    reader: Option<BufReader<File>>,
    line: u64,
    /// File index and line of the last record verified.
    last_at: Option<(usize, u64)>,
    buf: Vec<u8>,
    summary: Summary,
    done: bool,
    /// Told how far reading has got (see [`super::progress`]).
    watcher: Option<&'static dyn super::progress::Watcher>,
    /// Bytes read and records verified since the watcher was last told.
    unreported: (u64, u64),
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
                Ok(0) => self.reader = None,
                Ok(n) => {
                    self.line += 1;
                    self.unreported.0 += n as u64;
                    return Some(self.check());
                }
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
        let (expected, problem) = match (&self.summary.last_hash, &self.expect.from) {
            (Some(last), _) => (last.as_str(), Problem::PrevMismatch),
            (None, Some(from)) => (from.as_str(), Problem::FromMismatch),
            (None, None) => (GENESIS, Problem::NotGenesis),
        };
        if sealed.record.prev != expected {
            return Err(self.failure(problem, Some(sealed.record.request_id)));
        }
        if self.summary.last_hash.is_none() {
            self.summary.first_prev = Some(sealed.record.prev.clone());
        }
        self.summary.records += 1;
        self.summary.last_hash = Some(sealed.hash);
        self.last_at = Some((self.next_file - 1, self.line));
        Ok(sealed.record)
    }

    /// The checks of the whole trail, once every file has been read.
    fn finish(&self) -> Option<Failure> {
        let Some((file, line)) = self.last_at else {
            return Some(Failure::Empty {
                paths: self.paths.to_vec(),
            });
        };
        let found = self.summary.last_hash.as_deref().unwrap_or_default();
        match &self.expect.last {
            Some(expected) if expected != found => Some(Failure::LastMismatch {
                path: self.paths[file].clone(),
                line,
                found: found.to_owned(),
                expected: expected.clone(),
            }),
            _ => None,
        }
    }
}

impl Iterator for VerifiedRecords<'_> {
    type Item = Result<AuditRecord, Failure>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = match self.step() {
            Some(item) => Some(item),
            None => self.finish().map(Err),
        };
        self.done = !matches!(item, Some(Ok(_)));
        if let Some(watcher) = self.watcher {
            if matches!(item, Some(Ok(_))) {
                self.unreported.1 += 1;
            }
            if self.done || self.unreported.1 >= super::progress::EVERY {
                let (bytes, records) = std::mem::take(&mut self.unreported);
                watcher.advance(bytes, records);
            }
            if self.done {
                watcher.ended(item.is_some());
            }
        }
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

/// Reads one line into `buf`, without its `\n`; returns the bytes read
/// (`\n` included), 0 at the end of the file. Reads at most `MAX_LINE + 1`
/// bytes, so an overlong line comes back cut (and fails to unseal as too
/// long) instead of filling memory.
fn read_line(reader: &mut BufReader<File>, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.clear();
    let limit = MAX_LINE as u64 + 1;
    let n = reader.by_ref().take(limit).read_until(b'\n', buf)?;
    if buf.last() == Some(&b'\n') {
        buf.pop();
    }
    Ok(n)
}

#[cfg(test)]
mod tests;
