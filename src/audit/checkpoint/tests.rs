use super::*;

fn keys(dir: &Path, name: &str) -> (SigningKey, VerifierKey) {
    let (private, public) = keygen(name).unwrap();
    let p = dir.join(name);
    let v = dir.join(format!("{name}.pub"));
    std::fs::write(&p, format!("{private}\n")).unwrap();
    std::fs::write(&v, format!("{public}\n")).unwrap();
    (
        SigningKey::load(&p).unwrap(),
        VerifierKey::load(&v).unwrap(),
    )
}

fn checkpoint(size: u64) -> Checkpoint {
    Checkpoint {
        origin: "paris-1".into(),
        size,
        head: "ab".repeat(32),
        time: "2026-12-06T02:30:00.000Z".into(),
    }
}

/// The note is the c2sp shape: body, blank line, one em-dash signature
/// line whose data is 4 + 64 bytes, the key id first.
#[test]
fn a_note_has_the_signed_note_shape_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let (sk, vk) = keys(dir.path(), "paris-1-audit");
    let note = sk.sign(&checkpoint(7));
    let lines: Vec<&str> = note.split('\n').collect();
    assert_eq!(lines[0], "paris-1");
    assert_eq!(lines[1], "7");
    assert_eq!(B64.decode(lines[2]).unwrap(), [0xab; 32]);
    assert_eq!(lines[3], "time 2026-12-06T02:30:00.000Z");
    assert_eq!(lines[4], "");
    let sig = lines[5].strip_prefix("\u{2014} paris-1-audit ").unwrap();
    let data = B64.decode(sig).unwrap();
    assert_eq!(data.len(), 68);
    assert_eq!(data[..4], vk.id);
    let path = dir.path().join("a.checkpoints");
    std::fs::write(&path, format!("{note}{}", sk.sign(&checkpoint(9)))).unwrap();
    let notes = read_checkpoints(&path, std::slice::from_ref(&vk))
        .unwrap()
        .unwrap();
    assert_eq!(notes.len(), 2);
    assert_eq!(notes[0].checkpoint, checkpoint(7));
    assert_eq!((notes[1].index, notes[1].line), (2, 8));
}

/// Any changed body byte, or another key, fails the note, naming it.
/// With several keys, the one that signed is accepted.
#[test]
fn an_edited_note_or_another_key_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (sk, vk) = keys(dir.path(), "k1");
    let (_, other) = keys(dir.path(), "k2");
    let note = sk.sign(&checkpoint(7));
    let path = dir.path().join("a.checkpoints");
    std::fs::write(&path, &note).unwrap();
    let err = read_checkpoints(&path, std::slice::from_ref(&other))
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("a.checkpoints:1: checkpoint 1: not signed by key k2"),
        "{err}"
    );
    // Several keys: any of them may have signed; the note says which.
    let notes = read_checkpoints(&path, &[other, vk.clone()])
        .unwrap()
        .unwrap();
    assert_eq!(notes[0].key, "k1");
    std::fs::write(&path, note.replacen("\n7\n", "\n8\n", 1)).unwrap();
    let err = read_checkpoints(&path, std::slice::from_ref(&vk))
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("checkpoint 1: the signature by key k1 does not verify"),
        "{err}"
    );
}

/// Sizes must not decrease from one checkpoint to the next.
#[test]
fn a_smaller_size_after_a_larger_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (sk, vk) = keys(dir.path(), "k");
    let path = dir.path().join("a.checkpoints");
    std::fs::write(
        &path,
        format!("{}{}", sk.sign(&checkpoint(9)), sk.sign(&checkpoint(3))),
    )
    .unwrap();
    let err = read_checkpoints(&path, std::slice::from_ref(&vk))
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with(":8: checkpoint 2: covers 3 records, fewer than checkpoint 1 before it (9)"),
        "{err}"
    );
}

/// Keys: a bad name is refused; the public key is not accepted as the
/// private one and the reverse; an edited key id is caught.
#[test]
fn keys_are_checked_when_read() {
    assert!(matches!(keygen("a b"), Err(KeyError::Name(_))));
    assert!(matches!(keygen("a+b"), Err(KeyError::Name(_))));
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = keygen("k").unwrap();
    let p = dir.path().join("k");
    let v = dir.path().join("k.pub");
    std::fs::write(&p, &private).unwrap();
    std::fs::write(&v, &public).unwrap();
    assert!(
        VerifierKey::load(&p)
            .unwrap_err()
            .to_string()
            .contains("this is the private key")
    );
    assert!(
        SigningKey::load(&v)
            .unwrap_err()
            .to_string()
            .contains("not a private key")
    );
    let mut parts: Vec<&str> = public.split('+').collect();
    parts[1] = "00000000";
    std::fs::write(&v, parts.join("+")).unwrap();
    let err = VerifierKey::load(&v).unwrap_err().to_string();
    assert!(
        err.ends_with("the key id does not match the name and key"),
        "{err}"
    );
}

proptest::proptest! {
    /// Whatever byte of a signed note is changed, the file no longer
    /// reads as that checkpoint signed by the key.
    #[test]
    fn no_single_byte_change_keeps_a_valid_checkpoint(at in 0usize..200, byte in 0u8..=255) {
        let dir = tempfile::tempdir().unwrap();
        let (sk, vk) = keys(dir.path(), "k");
        let mut note = sk.sign(&checkpoint(7)).into_bytes();
        let at = at % note.len();
        proptest::prop_assume!(note[at] != byte);
        note[at] = byte;
        let path = dir.path().join("a.checkpoints");
        std::fs::write(&path, &note).unwrap();
        match read_checkpoints(&path, std::slice::from_ref(&vk)) {
            Err(_) => {}
            Ok(notes) => {
                let notes = notes.unwrap();
                // Only bytes outside the signed text may change: the
                // blank lines after the note.
                proptest::prop_assert!(notes.iter().all(|n| n.checkpoint == checkpoint(7)), "{notes:?}");
            }
        }
    }
}

proptest::proptest! {
    /// Whatever lines of a file of signed checkpoints are dropped,
    /// repeated or swapped, every checkpoint the reader accepts is one
    /// that was signed, and their sizes never decrease.
    #[test]
    fn a_reshuffled_checkpoint_file_yields_only_signed_checkpoints(
        sizes in proptest::collection::vec(0u64..50, 1..6),
        edits in proptest::collection::vec((0u8..3, 0usize..64, 0usize..64), 0..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (sk, vk) = keys(dir.path(), "k");
        let mut sizes = sizes;
        sizes.sort_unstable();
        let signed: Vec<Checkpoint> = sizes.iter().map(|&s| checkpoint(s)).collect();
        let text: String = signed.iter().map(|c| sk.sign(c)).collect();
        let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
        for (op, a, b) in edits {
            let (a, b) = (a % lines.len(), b % lines.len());
            match op {
                0 if lines.len() > 1 => {
                    lines.remove(a);
                }
                1 => lines.insert(b, lines[a]),
                _ => lines.swap(a, b),
            }
        }
        let path = dir.path().join("a.checkpoints");
        std::fs::write(&path, lines.concat()).unwrap();
        if let Ok(Some(notes)) = read_checkpoints(&path, std::slice::from_ref(&vk)) {
            for n in &notes {
                proptest::prop_assert!(signed.contains(&n.checkpoint), "{n:?}");
            }
            proptest::prop_assert!(notes.windows(2).all(|w| w[0].checkpoint.size <= w[1].checkpoint.size));
        }
    }
}
