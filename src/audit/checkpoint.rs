//! Signed checkpoints (SPEC §10): what the hash chain cannot show alone.
//!
//! The chain of [`super::chain`] shows an edit, but whoever can write the
//! file can rewrite it from any point on and recompute every hash. With
//! `[audit] signing_key`, the writer signs, every `checkpoint_every`, at
//! rotation and at shutdown, a *checkpoint* of the file it writes: "the
//! first N records of this file end with hash H". A rewrite by someone
//! without the private key no longer matches a signed checkpoint.
//!
//! # Format (c2sp.org `tlog-checkpoint` in a c2sp.org `signed-note`)
//!
//! A checkpoint note is UTF-8 text:
//!
//! ```text
//! paris-1                                        origin (the replica's name)
//! 1234                                           size: records in the file
//! Xq0mJ0mNR0kP2v2xN4wQe1m0bB9tH1f3dU3GmX8iV6s=   base64 of the 32-byte head hash
//! time 2026-12-06T02:30:00.000Z                  extension line: UTC time
//!                                                blank line
//! — paris-1-audit AbCdEf…                         signature line
//! ```
//!
//! The *head* is the `hash` of record N of the file (the line numbered N),
//! as raw 32 bytes; for N = 0 it is the `prev` of the file's first record
//! (the last hash of the segment before, or genesis), which links a new
//! segment to the one it continues. The size counts records *of this file*:
//! each segment file has its own checkpoints. The signature line is an em
//! dash (U+2014), a space, the key name, a space, and base64 of the 4-byte
//! key id followed by the 64-byte Ed25519 signature of the text above the
//! blank line (its final newline included). The key id is the first 4
//! bytes of SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key).
//!
//! Checkpoints go to `<trail>.checkpoints` beside the trail (for
//! `audit.jsonl`, `audit.jsonl.checkpoints`), one note after the other,
//! each followed by one blank line.
//!
//! # Keys
//!
//! `audit keygen` writes the keys in the Go `sumdb/note` text encoding:
//! the private key `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 ‖ seed)>`
//! (32-byte seed), the public (verifier) key
//! `<name>+<hex key id>+<base64(0x01 ‖ public key)>`. Signing and
//! verification are ring's Ed25519.
//!
//! # What verification with the key proves
//!
//! Every checkpoint in the file must carry a valid signature by the key,
//! sizes never decrease, and record N of the file must have the signed
//! head; a file with fewer records than its last checkpoint was cut. Not
//! covered: records written after the last checkpoint (at most
//! `checkpoint_every` of traffic, none after a clean shutdown, which writes
//! a final checkpoint) can be removed or rewritten without trace, together
//! with any later checkpoints removed from the checkpoint file: keep copies
//! of the checkpoints off the host, and whoever holds the private key can
//! forge everything.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha256};

use super::chain::{MAX_LINE, unseal};

/// Signature type byte of Ed25519 in signed notes.
const ED25519_TYPE: u8 = 0x01;
/// The start of a signature line: em dash, space.
const SIG_PREFIX: &str = "\u{2014} ";
/// Most signature lines a note may carry (as Go's `note.Open`).
const MAX_SIGNATURES: usize = 100;
/// Most lines of a note's text (a checkpoint has 4).
const MAX_BODY_LINES: usize = 64;
/// Longest checkpoint file line a reader accepts.
const MAX_NOTE_LINE: u64 = 4096;

/// The checkpoint file of the trail file `trail`: `<trail>.checkpoints`.
pub fn checkpoint_path(trail: &Path) -> PathBuf {
    let mut name = trail.as_os_str().to_owned();
    name.push(".checkpoints");
    PathBuf::from(name)
}

/// Why a key could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read.
    #[error("cannot read key file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// The key file does not hold a key of the expected kind.
    #[error("key file {}: {what}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A key name that signed notes cannot carry.
    #[error("key name {0:?} is not valid: it must be non-empty, without spaces or '+'")]
    Name(String),
    /// The system could not provide random bytes.
    #[error("cannot generate a key: no randomness from the system")]
    Random,
}

pub use crate::config::valid_note_name as valid_name;

fn key_id(name: &str, public: &[u8]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519_TYPE]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn hex4(id: [u8; 4]) -> String {
    format!("{:08x}", u32::from_be_bytes(id))
}

/// Makes a key pair named `name`; returns the private and the public key
/// texts (each without a final newline).
///
/// # Errors
/// [`KeyError::Name`] for a name a note cannot carry,
/// [`KeyError::Random`] if the system gives no randomness.
pub fn keygen(name: &str) -> Result<(String, String), KeyError> {
    use ring::rand::SecureRandom;
    if !valid_name(name) {
        return Err(KeyError::Name(name.to_owned()));
    }
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| KeyError::Random)?;
    let pair = Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|_| KeyError::Random)?;
    let public = pair.public_key().as_ref();
    let id = hex4(key_id(name, public));
    let mut private_data = vec![ED25519_TYPE];
    private_data.extend_from_slice(&seed);
    let mut public_data = vec![ED25519_TYPE];
    public_data.extend_from_slice(public);
    Ok((
        format!("PRIVATE+KEY+{name}+{id}+{}", B64.encode(private_data)),
        format!("{name}+{id}+{}", B64.encode(public_data)),
    ))
}

/// `name+hexid+base64(0x01 ‖ 32 bytes)`, checked: the name, the type
/// byte, the length, and the id against the name and key.
fn parse_key_text(text: &str, path: &Path, public: bool) -> Result<(String, [u8; 32]), KeyError> {
    let format = |what: &str| KeyError::Format {
        path: path.to_owned(),
        what: what.to_owned(),
    };
    let mut parts = text.trim().splitn(3, '+');
    let (Some(name), Some(id), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format("expected NAME+KEYID+KEYDATA"));
    };
    if !valid_name(name) {
        return Err(format("the key name is not valid"));
    }
    let data = B64
        .decode(data)
        .map_err(|_| format("the key data is not base64"))?;
    let Some((&ED25519_TYPE, key)) = data.split_first() else {
        return Err(format("not an Ed25519 key"));
    };
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| format("an Ed25519 key is 32 bytes"))?;
    let public_key = if public {
        key.to_vec()
    } else {
        let pair = Ed25519KeyPair::from_seed_unchecked(&key)
            .map_err(|_| format("not an Ed25519 private key"))?;
        pair.public_key().as_ref().to_vec()
    };
    if id != hex4(key_id(name, &public_key)) {
        return Err(format("the key id does not match the name and key"));
    }
    Ok((name.to_owned(), key))
}

fn read_key_file(path: &Path) -> Result<String, KeyError> {
    let mut text = String::new();
    File::open(path)
        .and_then(|f| f.take(4096).read_to_string(&mut text))
        .map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
    Ok(text)
}

/// The private key the writer signs checkpoints with.
pub struct SigningKey {
    name: String,
    id: [u8; 4],
    pair: Ed25519KeyPair,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads the private key file made by `audit keygen`.
    ///
    /// # Errors
    /// [`KeyError`] naming the file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = read_key_file(path)?;
        if let Ok(meta) = std::fs::metadata(path) {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    "the audit signing key is readable by others than its owner: whoever reads it can sign a forged trail (chmod 600)"
                );
            }
        }
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| KeyError::Format {
                path: path.to_owned(),
                what: "not a private key (expected PRIVATE+KEY+NAME+KEYID+KEYDATA, as `audit keygen` writes)".to_owned(),
            })?;
        let (name, seed) = parse_key_text(rest, path, false)?;
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|_| KeyError::Format {
            path: path.to_owned(),
            what: "not an Ed25519 private key".to_owned(),
        })?;
        let id = key_id(&name, pair.public_key().as_ref());
        Ok(Self { name, id, pair })
    }

    /// The key's name, as signature lines carry it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The signed note of `checkpoint`, followed by a blank line.
    pub fn sign(&self, checkpoint: &Checkpoint) -> String {
        let body = checkpoint.body();
        let sig = self.pair.sign(body.as_bytes());
        let mut data = self.id.to_vec();
        data.extend_from_slice(sig.as_ref());
        format!("{body}\n{SIG_PREFIX}{} {}\n\n", self.name, B64.encode(data))
    }
}

/// A public key that checks checkpoint signatures (`audit verify --key`).
#[derive(Debug, Clone)]
pub struct VerifierKey {
    name: String,
    id: [u8; 4],
    public: [u8; 32],
}

impl VerifierKey {
    /// Reads the public key file made by `audit keygen` (`NAME.pub`).
    ///
    /// # Errors
    /// [`KeyError`] naming the file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = read_key_file(path)?;
        if text.trim().starts_with("PRIVATE+KEY+") {
            return Err(KeyError::Format {
                path: path.to_owned(),
                what: "this is the private key; give the public key (the .pub file)".to_owned(),
            });
        }
        let (name, public) = parse_key_text(&text, path, true)?;
        Ok(Self {
            id: key_id(&name, &public),
            name,
            public,
        })
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The key among `keys` whose signature of `body` is among `signatures`
/// (the lines after the blank line). Lines of other keys are ignored; the
/// first line of a given key decides: if it does not verify, the note is
/// rejected.
fn signed_by<'k>(
    keys: &'k [VerifierKey],
    body: &str,
    signatures: &[String],
) -> Result<&'k VerifierKey, String> {
    for line in signatures {
        let Some((name, data)) = line
            .strip_prefix(SIG_PREFIX)
            .and_then(|rest| rest.split_once(' '))
        else {
            return Err("malformed signature line".to_owned());
        };
        let Some(key) = keys.iter().find(|k| k.name == name) else {
            continue;
        };
        let Ok(data) = B64.decode(data) else {
            return Err("signature line is not base64".to_owned());
        };
        if data.len() != 4 + 64 || data[..4] != key.id {
            continue;
        }
        return UnparsedPublicKey::new(&ED25519, &key.public)
            .verify(body.as_bytes(), &data[4..])
            .map(|()| key)
            .map_err(|_| format!("the signature by key {} does not verify", key.name));
    }
    let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
    Err(format!("not signed by key {}", names.join(" or ")))
}

/// The state of one trail file at a moment: its first `size` records end
/// with `head`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The writer's name (`[audit] origin`).
    pub origin: String,
    /// Records of the file covered.
    pub size: u64,
    /// Hash of record `size` of the file (64 hex), or the first record's
    /// `prev` when `size` is 0.
    pub head: String,
    /// UTC time of signing, as records carry it.
    pub time: String,
}

impl Checkpoint {
    /// The note text the signature covers, final newline included.
    fn body(&self) -> String {
        let mut head = [0u8; 32];
        for (i, b) in head.iter_mut().enumerate() {
            *b = self
                .head
                .get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .unwrap_or(0);
        }
        format!(
            "{}\n{}\n{}\ntime {}\n",
            self.origin,
            self.size,
            B64.encode(head),
            self.time
        )
    }

    /// Reads a note body; `None` if it is not a checkpoint.
    fn parse(body: &str) -> Option<Self> {
        let mut lines = body.lines();
        let origin = lines.next().filter(|o| valid_name(o))?;
        let size = lines.next().filter(|s| {
            !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_digit())
                && (s.len() == 1 || !s.starts_with('0'))
        })?;
        let size = size.parse().ok()?;
        let head = B64.decode(lines.next()?).ok()?;
        if head.len() != 32 {
            return None;
        }
        let head = head.iter().map(|b| format!("{b:02x}")).collect();
        let time = lines
            .find_map(|l| l.strip_prefix("time "))
            .unwrap_or_default()
            .to_owned();
        Some(Self {
            origin: origin.to_owned(),
            size,
            head,
            time,
        })
    }
}

/// A checkpoint read from a checkpoint file, where it was.
#[derive(Debug, Clone)]
pub struct Noted {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// 1-based number of the note in the file.
    pub index: usize,
    /// 1-based line of its first line.
    pub line: u64,
    /// The name of the key whose signature verified.
    pub key: String,
}

/// Why the checkpoints of a trail file do not hold.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointFailure {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// The trail file has no checkpoint file, or one without checkpoints.
    #[error(
        "{}: no signed checkpoint (expected in {}): with --key every file needs its checkpoints",
        trail.display(),
        checkpoints.display()
    )]
    Missing {
        /// The trail file.
        trail: PathBuf,
        /// Its checkpoint file.
        checkpoints: PathBuf,
    },
    /// A note that is not a checkpoint signed by the key.
    #[error("{}:{line}: checkpoint {index}: {problem}", checkpoints.display())]
    Note {
        /// The checkpoint file.
        checkpoints: PathBuf,
        /// 1-based line of the note.
        line: u64,
        /// 1-based number of the note.
        index: usize,
        /// What is wrong.
        problem: String,
    },
    /// Record `size` of the file does not have the signed head.
    #[error(
        "{}:{line}: the trail does not match checkpoint {} ({}:{}, {} records, head {}, signed {}): records were rewritten at or before line {line}",
        trail.display(),
        at.index,
        at.checkpoints.display(),
        at.line,
        at.size,
        at.head,
        at.time
    )]
    Mismatch {
        /// The trail file.
        trail: PathBuf,
        /// 1-based line of the record that should have the head (1 for
        /// a checkpoint of size 0: its `prev`).
        line: u64,
        /// The checkpoint.
        at: Box<At>,
    },
    /// The file holds fewer records than a checkpoint signed.
    #[error(
        "{}:{records}: the file ends after {records} records, but checkpoint {} ({}:{}, signed {}) covers {}: records were removed from the end",
        trail.display(),
        at.index,
        at.checkpoints.display(),
        at.line,
        at.time,
        at.size
    )]
    Truncated {
        /// The trail file.
        trail: PathBuf,
        /// Records it holds.
        records: u64,
        /// The checkpoint.
        at: Box<At>,
    },
}

/// A checkpoint, named for a failure.
#[derive(Debug)]
pub struct At {
    /// The checkpoint file.
    pub checkpoints: PathBuf,
    /// 1-based line where the checkpoint starts.
    pub line: u64,
    /// 1-based number of the checkpoint.
    pub index: usize,
    /// Records it covers.
    pub size: u64,
    /// Its head.
    pub head: String,
    /// Its time.
    pub time: String,
}

/// What the checkpoints of one trail file showed.
#[derive(Debug, Clone)]
pub struct FileCheckpoints {
    /// Checkpoints verified.
    pub count: usize,
    /// The origin they name (that of the last one).
    pub origin: String,
    /// The key that signed the last one.
    pub key: String,
    /// Size of the last checkpoint.
    pub last_size: u64,
    /// Records in the file.
    pub records: u64,
    /// The hash the file ends with: its last record's, or `start` if it
    /// holds none.
    pub end: Option<String>,
}

/// Reads the checkpoint file `path`, checking every note's signature by
/// one of `keys` and that sizes never decrease. `Ok(None)` if the file does not
/// exist.
///
/// # Errors
/// [`CheckpointFailure::Read`] or [`CheckpointFailure::Note`].
pub fn read_checkpoints(
    path: &Path,
    keys: &[VerifierKey],
) -> Result<Option<Vec<Noted>>, CheckpointFailure> {
    let read = |source| CheckpointFailure::Read {
        path: path.to_owned(),
        source,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read(e)),
    };
    let mut reader = BufReader::new(file);
    let mut notes: Vec<Noted> = Vec::new();
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    // The note being read: its first line, body, and signature lines.
    let mut start = 0u64;
    let mut body = String::new();
    let mut sigs: Vec<String> = Vec::new();
    let mut in_sigs = false;
    let mut body_lines = 0;
    loop {
        buf.clear();
        let n = reader
            .by_ref()
            .take(MAX_NOTE_LINE)
            .read_until(b'\n', &mut buf)
            .map_err(read)?;
        let end = n == 0;
        if !end {
            line_no += 1;
        }
        let at = if start == 0 { line_no } else { start };
        let note_error = move |problem: &str, index: usize| CheckpointFailure::Note {
            checkpoints: path.to_owned(),
            line: at,
            index,
            problem: problem.to_owned(),
        };
        if !end && buf.last() != Some(&b'\n') {
            return Err(note_error("line too long or unfinished", notes.len() + 1));
        }
        let line = std::str::from_utf8(&buf)
            .map_err(|_| note_error("not UTF-8", notes.len() + 1))?
            .trim_end_matches('\n');
        if in_sigs && (end || !line.starts_with(SIG_PREFIX)) {
            // The note is complete.
            let index = notes.len() + 1;
            let key = signed_by(keys, &body, &sigs).map_err(|p| note_error(&p, index))?;
            let checkpoint =
                Checkpoint::parse(&body).ok_or_else(|| note_error("not a checkpoint", index))?;
            if let Some(prev) = notes.last()
                && checkpoint.size < prev.checkpoint.size
            {
                return Err(note_error(
                    &format!(
                        "covers {} records, fewer than checkpoint {} before it ({})",
                        checkpoint.size, prev.index, prev.checkpoint.size
                    ),
                    index,
                ));
            }
            notes.push(Noted {
                checkpoint,
                index,
                line: start,
                key: key.name.clone(),
            });
            body.clear();
            sigs.clear();
            in_sigs = false;
            start = 0;
        }
        if end {
            if !body.is_empty() {
                return Err(note_error("a note without signature", notes.len() + 1));
            }
            return Ok(Some(notes));
        }
        if in_sigs {
            if sigs.len() == MAX_SIGNATURES {
                return Err(note_error("more than 100 signature lines", notes.len() + 1));
            }
            sigs.push(line.to_owned());
        } else if line.is_empty() {
            if !body.is_empty() {
                in_sigs = true;
            }
        } else {
            if body.is_empty() {
                start = line_no;
                body_lines = 0;
            }
            body_lines += 1;
            if body_lines > MAX_BODY_LINES {
                return Err(CheckpointFailure::Note {
                    checkpoints: path.to_owned(),
                    line: start,
                    index: notes.len() + 1,
                    problem: format!("more than {MAX_BODY_LINES} lines before the signatures"),
                });
            }
            body.push_str(line);
            body.push('\n');
        }
    }
}

/// Checks the trail file `trail` against its signed checkpoints: every
/// checkpoint verifies with one of `keys`, and the file holds at least as many
/// records as each covers, record `size` having the signed head. The file
/// is assumed to have passed the chain verification. `start` is the hash
/// the chain had before the file (the previous file's last hash), which a
/// checkpoint of size 0 of a file without records must name.
///
/// # Errors
/// [`CheckpointFailure`] naming the file, record and checkpoint.
pub fn check_file(
    trail: &Path,
    keys: &[VerifierKey],
    start: Option<&str>,
) -> Result<FileCheckpoints, CheckpointFailure> {
    let ckpt = checkpoint_path(trail);
    let notes = read_checkpoints(&ckpt, keys)?.unwrap_or_default();
    let Some(last) = notes.last() else {
        return Err(CheckpointFailure::Missing {
            trail: trail.to_owned(),
            checkpoints: ckpt,
        });
    };
    let read = |source| CheckpointFailure::Read {
        path: trail.to_owned(),
        source,
    };
    let at = |n: &Noted| {
        Box::new(At {
            checkpoints: ckpt.clone(),
            line: n.line,
            index: n.index,
            size: n.checkpoint.size,
            head: n.checkpoint.head.clone(),
            time: n.checkpoint.time.clone(),
        })
    };
    let mismatch = |n: &Noted, line: u64| CheckpointFailure::Mismatch {
        trail: trail.to_owned(),
        line,
        at: at(n),
    };
    let mut reader = BufReader::new(File::open(trail).map_err(read)?);
    let mut next = notes.iter().peekable();
    let mut records = 0u64;
    let mut end = start.map(str::to_owned);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .by_ref()
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(read)?;
        if n == 0 {
            break;
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        let Ok(sealed) = unseal(&buf) else {
            // The chain verification names such a line.
            return Err(CheckpointFailure::Read {
                path: trail.to_owned(),
                source: io::Error::new(io::ErrorKind::InvalidData, "not a sealed record"),
            });
        };
        if records == 0 {
            while let Some(n) = next.next_if(|n| n.checkpoint.size == 0) {
                if n.checkpoint.head != sealed.record.prev {
                    return Err(mismatch(n, 1));
                }
            }
        }
        records += 1;
        while let Some(n) = next.next_if(|n| n.checkpoint.size == records) {
            if n.checkpoint.head != sealed.hash {
                return Err(mismatch(n, records));
            }
        }
        end = Some(sealed.hash);
    }
    if records == 0
        && let Some(start) = start
        && let Some(n) = notes.iter().find(|n| n.checkpoint.head != start)
    {
        return Err(mismatch(n, 0));
    }
    if let Some(n) = notes.iter().find(|n| n.checkpoint.size > records) {
        return Err(CheckpointFailure::Truncated {
            trail: trail.to_owned(),
            records,
            at: at(n),
        });
    }
    Ok(FileCheckpoints {
        count: notes.len(),
        origin: last.checkpoint.origin.clone(),
        key: last.key.clone(),
        last_size: last.checkpoint.size,
        records,
        end,
    })
}

/// The writer's side: signs checkpoints of the file it writes into that
/// file's checkpoint file. The handle follows the file if it is renamed.
pub struct Signer {
    key: SigningKey,
    origin: String,
    path: PathBuf,
    file: Option<File>,
    /// Records in the trail file.
    count: u64,
}

impl Signer {
    /// A signer for `origin` with `key`; [`Signer::attach`] gives it a file.
    pub fn new(key: SigningKey, origin: String) -> Self {
        Self {
            key,
            origin,
            path: PathBuf::new(),
            file: None,
            count: 0,
        }
    }

    /// From now on the trail file is `trail`, open as `file`: its records
    /// are counted, and its checkpoint file opened. On failure no
    /// checkpoint is written until the next attach succeeds.
    ///
    /// # Errors
    /// The file could not be read, or the checkpoint file opened.
    pub fn attach(&mut self, trail: &Path, file: &File) -> io::Result<()> {
        // Until this succeeds, no checkpoint is written: one of this file
        // must never go to another file's checkpoints.
        self.file = None;
        self.count = count_lines(file)?;
        let path = checkpoint_path(trail);
        // 0600 like the trail: only the proxy writes it (issue 20).
        let ckpt = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        self.file = Some(ckpt);
        self.path = path;
        Ok(())
    }

    /// `n` more records were written to the trail file.
    pub fn recorded(&mut self, n: u64) {
        self.count += n;
    }

    /// Signs and appends a checkpoint of the trail file, whose last hash is
    /// `head` (the chain's), and syncs it.
    ///
    /// # Errors
    /// The checkpoint file could not be written.
    pub fn checkpoint(&mut self, head: &str) -> io::Result<()> {
        let note = self.key.sign(&Checkpoint {
            origin: self.origin.clone(),
            size: self.count,
            head: head.to_owned(),
            time: super::format_time(std::time::SystemTime::now()),
        });
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("no checkpoint file open"));
        };
        file.write_all(note.as_bytes())?;
        file.sync_data()
    }

    /// The checkpoint file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Lines (`\n`) in `file`, read from its start without moving the handle.
fn count_lines(file: &File) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = 0u64;
    let mut lines = 0u64;
    loop {
        let n = file.read_at(&mut buf, at)?;
        if n == 0 {
            return Ok(lines);
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        at += n as u64;
    }
}

/// This machine's host name, the default origin; `residency-proxy` if it
/// cannot be read or is not a valid name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| valid_name(h))
        .unwrap_or_else(|| "residency-proxy".to_owned())
}

#[cfg(test)]
mod tests;
