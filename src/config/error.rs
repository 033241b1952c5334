//! Config errors that say where: `path:line:col: message`, all at once.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a config file, located by byte span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

/// Why a config was refused: every problem found, in file order.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read config file")]
    Read {
        /// The config path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Parsing or validation found problems.
    #[error("{}", Listed { path, problems })]
    Invalid {
        /// The config path.
        path: PathBuf,
        /// Each problem with its position.
        problems: Vec<Problem>,
    },
}

struct Listed<'a> {
    path: &'a Path,
    problems: &'a [Problem],
}

impl fmt::Display for Listed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(
                f,
                "{}:{}:{}: {}",
                self.path.display(),
                p.line,
                p.column,
                p.message
            )?;
        }
        Ok(())
    }
}

/// Collects problems while validating one file.
pub struct Problems<'a> {
    source: &'a str,
    list: Vec<(usize, Problem)>,
}

impl<'a> Problems<'a> {
    /// Starts an empty list for `source`.
    pub fn new(source: &'a str) -> Self {
        Self {
            source,
            list: Vec::new(),
        }
    }

    /// Records `message` at the start of `span`, once: a value checked
    /// twice (a global list that several policies are compiled from) is
    /// still one problem.
    pub fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = line_col(self.source, span.start);
        let problem = Problem {
            line,
            column,
            message: shown(message.into()),
        };
        if !self
            .list
            .iter()
            .any(|(at, seen)| *at == span.start && *seen == problem)
        {
            self.list.push((span.start, problem));
        }
    }

    /// Finishes: `Ok` when nothing was wrong.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] with the problems sorted by position.
    pub fn finish(mut self, path: &Path) -> Result<(), ConfigError> {
        if self.list.is_empty() {
            return Ok(());
        }
        self.list.sort_by_key(|(offset, _)| *offset);
        Err(ConfigError::Invalid {
            path: path.to_owned(),
            problems: self.list.into_iter().map(|(_, p)| p).collect(),
        })
    }
}

/// A control character (Cc), a format character (Cf: direction marks and
/// overrides, zero-width spaces and joiners, the soft hyphen, the byte
/// order mark, tags…) or a line or paragraph separator (Zl, Zp): a
/// character that breaks a value across lines, makes it read otherwise
/// than written, or makes two values that read alike compare unequal (a
/// grant's owner written `Jane\u{200b} Doe` is not its approver `Jane
/// Doe`). The one definition for config values ([`super::access::plain`],
/// `[transparency]`) and for the values a problem quotes ([`shown`]).
/// Written out (Unicode 16's Cf, Zl and Zp), as no crate of the build
/// holds the general categories.
pub(crate) fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{ad}'
                | '\u{600}'..='\u{605}'
                | '\u{61c}'
                | '\u{6dd}'
                | '\u{70f}'
                | '\u{890}'..='\u{891}'
                | '\u{8e2}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{110bd}'
                | '\u{110cd}'
                | '\u{13430}'..='\u{1343f}'
                | '\u{1bca0}'..='\u{1bca3}'
                | '\u{1d173}'..='\u{1d17a}'
                | '\u{e0001}'
                | '\u{e0020}'..='\u{e007f}'
        )
}

/// `message` with each [`hidden`] character written `\u{…}`: a value a
/// problem quotes (an id, a key, a country code) cannot break its line into
/// one that reads as another problem or an `ok`, nor make it read otherwise
/// than written.
pub(crate) fn shown(message: String) -> String {
    if !message.chars().any(hidden) {
        return message;
    }
    let mut out = String::with_capacity(message.len() + 8);
    for c in message.chars() {
        if hidden(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The most a config, identities or grants file may hold.
pub const MAX_FILE: u64 = 16 << 20;

/// Reads a config-like file: a regular file (a FIFO or a device such as
/// `/dev/zero` would hang or fill memory), of at most [`MAX_FILE`] bytes,
/// in UTF-8 (a stray byte is reported at its line and column).
///
/// # Errors
/// [`ConfigError::Read`] for a file that cannot be opened, is not a
/// regular file or is too large; [`ConfigError::Invalid`] for bytes that
/// are not UTF-8.
pub fn read_file(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read as _;
    let fail = |source: std::io::Error| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    // Looked at before opening: opening a FIFO waits for a writer.
    if !std::fs::metadata(path).map_err(fail)?.is_file() {
        return Err(fail(std::io::Error::other("not a regular file")));
    }
    let file = std::fs::File::open(path).map_err(fail)?;
    if !file.metadata().map_err(fail)?.is_file() {
        return Err(fail(std::io::Error::other("not a regular file")));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(fail)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(fail(std::io::Error::other(format!(
            "larger than {MAX_FILE} bytes"
        ))));
    }
    String::from_utf8(bytes).map_err(|e| {
        let good = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let before = std::str::from_utf8(&bytes[..good]).unwrap_or_default();
        let (line, column) = line_col(before, good);
        ConfigError::Invalid {
            path: path.to_owned(),
            problems: vec![Problem {
                line,
                column,
                message: format!("byte 0x{:02x} is not UTF-8", bytes[good]),
            }],
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let src = "a = 1\nbb = 2\n  cé = 3\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        assert_eq!(line_col(src, 8), (2, 3));
        let off = src.find("= 3").unwrap();
        assert_eq!(line_col(src, off), (3, 6));
    }

    #[test]
    fn problems_print_sorted_one_per_line() {
        let src = "x\ny\n";
        let mut p = Problems::new(src);
        p.at(2..3, "second");
        p.at(0..1, "first");
        let err = p.finish(Path::new("c.toml")).unwrap_err();
        assert_eq!(err.to_string(), "c.toml:1:1: first\nc.toml:2:1: second");
    }

    #[test]
    fn the_same_problem_at_the_same_place_is_reported_once() {
        let mut p = Problems::new("x\n");
        p.at(0..1, "bad");
        p.at(0..1, "bad");
        p.at(0..1, "other");
        let err = p.finish(Path::new("c.toml")).unwrap_err();
        assert_eq!(err.to_string(), "c.toml:1:1: bad\nc.toml:1:1: other");
    }
}
