//! Segments of the trail (SPEC §10): rotation by size and age, and the
//! checkpoints the writer signs around them.
//!
//! The writer appends to its path (`audit.jsonl`); a rotation closes that
//! file — a last checkpoint signed into its checkpoint file when signing is
//! on — renames it, with its checkpoint file, to the next *closed segment*
//! name, and starts the path anew, empty, continuing the chain (its first
//! checkpoint, of size 0, carries the last hash of the segment before).
//!
//! Closed segments are named `<stem>-<seq>-<UTC time>.<ext>` beside the
//! path: for `audit/audit.jsonl`, `audit/audit-00000001-20261206T023000Z.jsonl`
//! and `audit/audit-00000001-20261206T023000Z.jsonl.checkpoints`. `seq` is
//! one more than the highest in the directory, 8 digits, so the names sort
//! in chain order; the current file comes after every closed one. [`trail_files`]
//! lists a directory's segments in that order.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::checkpoint::{Signer, checkpoint_path};

/// When the writer rotates and signs (`[audit] rotate_size`,
/// `rotate_every`, `checkpoint_every`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Rotate once the file holds this many bytes.
    pub size: Option<u64>,
    /// Rotate once the file has been written for this long.
    pub every: Option<Duration>,
    /// Sign a checkpoint this often (with a signer).
    pub checkpoint_every: Duration,
}

/// The writer's segment keeping: the policy, the signer, and when the
/// next timed event is due.
pub struct Keeper {
    policy: Policy,
    signer: Option<Signer>,
    opened: Instant,
    last_checkpoint: Instant,
}

impl Default for Keeper {
    /// No rotation, no signing.
    fn default() -> Self {
        Self::new(Policy::default(), None)
    }
}

impl Keeper {
    /// Keeps segments by `policy`, signing with `signer` if any.
    pub fn new(policy: Policy, signer: Option<Signer>) -> Self {
        let now = Instant::now();
        Self {
            policy,
            signer,
            opened: now,
            last_checkpoint: now,
        }
    }

    /// The keeping `[audit]` asks for: the signing key read now, the
    /// origin defaulting to the host name.
    ///
    /// # Errors
    /// The signing key cannot be read (the error names the file).
    pub fn of(spec: &crate::config::AuditSpec) -> Result<Self, super::checkpoint::KeyError> {
        let signer = match &spec.signing_key {
            Some(path) => {
                let key = super::checkpoint::SigningKey::load(path)?;
                let origin = if spec.origin.is_empty() {
                    super::checkpoint::host_name()
                } else {
                    spec.origin.clone()
                };
                tracing::info!(origin, key = key.name(), every = ?spec.checkpoint_every, "audit checkpoints signed");
                Some(Signer::new(key, origin))
            }
            None => None,
        };
        Ok(Self::new(
            Policy {
                size: spec.rotate_size,
                every: spec.rotate_every,
                checkpoint_every: spec.checkpoint_every,
            },
            signer,
        ))
    }

    /// Whether a timer is needed (signing or age rotation).
    pub fn timed(&self) -> bool {
        self.signer.is_some() || self.policy.every.is_some()
    }

    /// The trail file is now `trail`, open as `file` (at start, after a
    /// reopen or a rotation).
    pub fn attach(&mut self, trail: &Path, file: &File, fresh: bool) {
        if fresh {
            self.opened = Instant::now();
        }
        if let Some(s) = self.signer.as_mut()
            && let Err(e) = s.attach(trail, file)
        {
            tracing::error!(path = %checkpoint_path(trail).display(), error = %e, "cannot open the audit checkpoint file");
        }
    }

    /// `n` records were written; the file is now `len` bytes. Returns
    /// whether it is due for rotation by size.
    pub fn recorded(&mut self, n: u64, len: u64) -> bool {
        if let Some(s) = self.signer.as_mut() {
            s.recorded(n);
        }
        self.policy.size.is_some_and(|max| len >= max)
    }

    /// Signs a checkpoint of the file, whose last hash is `head`, after
    /// syncing `trail` (the file) to disk; errors are logged (records keep being written: the next checkpoint covers
    /// them).
    pub fn checkpoint(&mut self, head: &str, trail: Option<&File>) {
        self.last_checkpoint = Instant::now();
        if let Some(s) = self.signer.as_mut()
            && let Err(e) = trail
                .map_or(Ok(()), File::sync_data)
                .and_then(|()| s.checkpoint(head))
        {
            tracing::error!(path = %s.path().display(), error = %e, "cannot write an audit checkpoint");
        }
    }

    /// The file is empty when its age is due: it is kept, and its age
    /// counted from now.
    pub fn restart_age(&mut self) {
        self.opened = Instant::now();
    }

    /// What is due at `now`: (rotation by age, checkpoint), and the time
    /// of the next event.
    pub fn due(&self, now: Instant) -> (bool, bool, Instant) {
        let rotate_at = self.policy.every.map(|d| self.opened + d);
        let checkpoint_at = self
            .signer
            .as_ref()
            .map(|_| self.last_checkpoint + self.policy.checkpoint_every);
        let rotate = rotate_at.is_some_and(|t| t <= now);
        let checkpoint = checkpoint_at.is_some_and(|t| t <= now);
        let next = [rotate_at, checkpoint_at]
            .into_iter()
            .flatten()
            .map(|t| t.max(now))
            .min()
            .unwrap_or(now + Duration::from_secs(3600));
        (rotate, checkpoint, next)
    }
}

/// Closes the current file `path` (open as `file`): syncs it, renames it
/// and its checkpoint file to the next segment name, and opens `path` anew,
/// empty. Returns the new file.
///
/// # Errors
/// The directory cannot be listed, the file renamed, or the new one
/// opened (after a rename, the writer's next write opens it).
pub fn rotate(path: &Path, file: Option<&File>) -> std::io::Result<File> {
    if let Some(f) = file {
        f.sync_all()?;
    }
    let segment = segment_name(path)?;
    std::fs::rename(path, &segment)?;
    let ckpt = checkpoint_path(path);
    if ckpt.exists() {
        std::fs::rename(&ckpt, checkpoint_path(&segment))?;
    }
    tracing::info!(path = %path.display(), segment = %segment.display(), "audit file rotated");
    super::writer::open(path)
}

/// Runs `tick` whenever it says (it returns when to come back), until
/// `stop`'s sender is dropped.
pub fn timer(stop: &std::sync::mpsc::Receiver<()>, mut tick: impl FnMut() -> Instant) {
    use std::sync::mpsc::RecvTimeoutError;
    loop {
        let next = tick();
        let wait = next.saturating_duration_since(Instant::now());
        match stop.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// The name the current file `path` takes when it is closed: the next
/// sequence number in its directory, and the UTC time.
///
/// # Errors
/// The directory cannot be listed.
pub fn segment_name(path: &Path) -> std::io::Result<PathBuf> {
    let (dir, stem, ext) = parts(path);
    let mut seq = 0u64;
    for entry in std::fs::read_dir(dir_or_dot(&dir))? {
        let name = entry?.file_name();
        if let Some(n) = name.to_str().and_then(|n| segment_seq(n, &stem, &ext)) {
            seq = seq.max(n);
        }
    }
    let time = super::format_time(SystemTime::now());
    // 2026-12-06T02:30:00.123Z -> 20261206T023000Z
    let compact: String = time
        .chars()
        .take(19)
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect();
    Ok(dir.join(format!("{stem}-{:08}-{compact}Z{ext}", seq + 1)))
}

fn dir_or_dot(dir: &Path) -> &Path {
    if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }
}

/// (directory, stem, extension with its dot or empty) of `path`.
fn parts(path: &Path) -> (PathBuf, String, String) {
    let dir = path.parent().map(Path::to_owned).unwrap_or_default();
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (dir, stem, ext)
}

/// The sequence number of `name` if it is a closed segment of
/// `<stem><ext>`: `<stem>-<8 digits>-<15 chars>Z<ext>`.
pub(crate) fn segment_seq(name: &str, stem: &str, ext: &str) -> Option<u64> {
    let rest = name
        .strip_prefix(stem)?
        .strip_prefix('-')?
        .strip_suffix(ext)?;
    let (seq, time) = rest.split_once('-')?;
    if seq.len() != 8 || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if time.len() != 16 || !time.ends_with('Z') {
        return None;
    }
    seq.parse().ok()
}

/// Chains by name, each with its files in chain order.
pub type Chains = Vec<(String, Vec<PathBuf>)>;

/// One chain's files in a directory.
#[derive(Default)]
struct Group {
    /// Closed segments, with their sequence numbers.
    closed: Vec<(u64, PathBuf)>,
    /// The current file.
    current: Option<PathBuf>,
}

/// The trail files of directory `dir`, each chain in order: for every
/// current file `<stem><ext>` (a `.jsonl` file that is not a closed
/// segment), its closed segments by sequence number, then itself if it
/// exists. Closed segments whose current file is gone are grouped by
/// their stem as well. Returns one list per stem, sorted by stem.
///
/// # Errors
/// The directory cannot be listed.
pub fn trail_files(dir: &Path) -> std::io::Result<Chains> {
    use std::collections::BTreeMap;
    let mut chains: BTreeMap<String, Group> = BTreeMap::new();
    let mut names: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        if let Some(name) = entry.file_name().to_str()
            && name.ends_with(".jsonl")
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    for name in &names {
        let stem = name.trim_end_matches(".jsonl");
        // A closed segment: `<stem>-<seq>-<time>.jsonl`.
        let closed = stem.rsplitn(3, '-').collect::<Vec<_>>();
        if let [_, _, base] = closed.as_slice()
            && let Some(seq) = segment_seq(name, base, ".jsonl")
        {
            chains
                .entry((*base).to_owned())
                .or_default()
                .closed
                .push((seq, dir.join(name)));
            continue;
        }
        chains.entry(stem.to_owned()).or_default().current = Some(dir.join(name));
    }
    Ok(chains
        .into_iter()
        .map(|(stem, mut group)| {
            group.closed.sort();
            let mut files: Vec<PathBuf> = group.closed.into_iter().map(|(_, p)| p).collect();
            files.extend(group.current);
            (stem, files)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::checkpoint::{SigningKey, VerifierKey, keygen, read_checkpoints};
    use crate::audit::writer::AuditSink;
    use crate::metrics::Metrics;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// A reopen at a file whose checkpoint file cannot be opened signs no
    /// checkpoint of it at all — never into the previous file's
    /// checkpoints, which still end with that file's closing one.
    #[test]
    fn a_checkpoint_file_that_cannot_be_opened_takes_no_other_files_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.jsonl");
        let b = dir.path().join("b.jsonl");
        std::fs::create_dir(checkpoint_path(&b)).unwrap();
        let (private, public) = keygen("k").unwrap();
        std::fs::write(dir.path().join("k"), private).unwrap();
        std::fs::write(dir.path().join("k.pub"), public).unwrap();
        let key = SigningKey::load(&dir.path().join("k")).unwrap();
        let vk = VerifierKey::load(&dir.path().join("k.pub")).unwrap();
        let policy = Policy {
            checkpoint_every: Duration::from_secs(3600),
            ..Policy::default()
        };
        let keeper = Keeper::new(policy, Some(Signer::new(key, "o".into())));
        let (sink, writer) =
            AuditSink::start_keeping(&a, 8, std::sync::Arc::new(Metrics::new()), keeper).unwrap();
        assert!(block_on(sink.write(crate::audit::record::example(1))));
        sink.reopen(b.clone()).unwrap();
        assert!(block_on(sink.write(crate::audit::record::example(2))));
        assert!(block_on(sink.write(crate::audit::record::example(3))));
        writer.join();
        let notes = read_checkpoints(&checkpoint_path(&a), &[vk])
            .unwrap()
            .unwrap();
        let sizes: Vec<u64> = notes.iter().map(|n| n.checkpoint.size).collect();
        assert_eq!(sizes, [1]);
        assert_eq!(std::fs::read_to_string(&b).unwrap().lines().count(), 2);
    }

    /// Closed segment names sort in chain order and are recognised; the
    /// current file comes last in its chain; other stems form their own.
    #[test]
    fn segments_are_named_in_chain_order_and_listed_per_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let first = segment_name(&path).unwrap();
        std::fs::write(&first, "").unwrap();
        let second = segment_name(&path).unwrap();
        let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name(&first).starts_with("audit-00000001-"), "{first:?}");
        assert!(name(&second).starts_with("audit-00000002-"), "{second:?}");
        assert_eq!(
            name(&first).len(),
            "audit-00000001-20261206T023000Z.jsonl".len()
        );
        assert!(first < second);
        std::fs::write(&second, "").unwrap();
        std::fs::write(&path, "").unwrap();
        std::fs::write(dir.path().join("lyon-2.jsonl"), "").unwrap();
        std::fs::write(dir.path().join("audit.jsonl.checkpoints"), "").unwrap();
        let chains = trail_files(dir.path()).unwrap();
        assert_eq!(
            chains,
            [
                ("audit".to_owned(), vec![first, second, path]),
                ("lyon-2".to_owned(), vec![dir.path().join("lyon-2.jsonl")]),
            ]
        );
    }
}
