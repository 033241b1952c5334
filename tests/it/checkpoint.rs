//! Evidence that survives its host (SPEC §10): the running proxy signs
//! checkpoints of its trail and rotates it; `audit verify --key` checks
//! them as an auditor runs it, on trails rewritten or cut afterwards; a
//! directory of several replicas' chains is verified chain by chain.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use residency_proxy::audit::{Chain, unseal};

use crate::audit::record;
use crate::support::proxy::BIN;
use crate::support::{Client, Layout, Origin, Proxy, config, ips, standard_geo};

const SIG: &str = "\u{2014} test-key ";

/// Makes a key pair in `dir` with `audit keygen`; returns the public key.
fn keygen(dir: &Path) -> PathBuf {
    let private = dir.join("test-key");
    let out = run(dir, &["audit", "keygen", "--name", "test-key", "test-key"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let public = dir.join("test-key.pub");
    assert_eq!(
        text(&out.stdout),
        std::fs::read_to_string(&public).unwrap(),
        "keygen prints the public key"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&private).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the private key is readable by its owner only"
    );
    public
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "off")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A proxy config whose trail is `<trail dir>/<origin>.jsonl`, signed with
/// the key `<keys>/test-key`.
fn signed(
    geo: &crate::support::TestGeo,
    up: &Origin,
    trail: &Path,
    keys: &Path,
    name: &str,
    extra: &str,
) -> String {
    format!(
        "{}\n[audit]\npath = \"{}\"\nsigning_key = \"{}\"\norigin = \"{name}\"\n{extra}\n",
        config(geo, up, "", "", ""),
        trail.join(format!("{name}.jsonl")).display(),
        keys.join("test-key").display(),
    )
}

async fn get(proxy: &Proxy, n: usize) {
    for _ in 0..n {
        Client::bound_to(ips::FR)
            .get(proxy.addr(), "/b/k", &[])
            .await;
    }
}

/// SIGTERM, and the exit.
fn stop(proxy: &mut Proxy) {
    proxy.signal("TERM");
    assert_eq!(proxy.wait_exit(Duration::from_secs(20)), Some(0));
}

fn ckpt(trail: &Path) -> PathBuf {
    let mut p = trail.as_os_str().to_owned();
    p.push(".checkpoints");
    PathBuf::from(p)
}

/// Checkpoints in the checkpoint file of `trail`.
fn notes(trail: &Path) -> usize {
    std::fs::read_to_string(ckpt(trail))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(SIG))
        .count()
}

/// The size of the last checkpoint of `trail`.
fn last_size(trail: &Path) -> u64 {
    let text = std::fs::read_to_string(ckpt(trail)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let sig = lines.iter().rposition(|l| l.starts_with(SIG)).unwrap();
    // origin, size, head, time, blank, signature
    lines[sig - 4].parse().unwrap()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// Polls `ok` every 20 ms for up to 20 s.
async fn wait_until(what: &str, ok: impl Fn() -> bool) {
    for _ in 0..1000 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A trail of `n` records signed by a proxy named paris-1 that stopped
/// cleanly: (trail directory, keys directory, trail file).
async fn signed_trail(n: usize) -> (tempfile::TempDir, tempfile::TempDir, PathBuf) {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let up = Origin::start(ips::ORIGIN).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    keygen(keys.path());
    let mut proxy = Proxy::start(&signed(
        &geo,
        &up,
        dir.path(),
        keys.path(),
        "paris-1",
        "checkpoint_every = \"1h\"",
    ));
    get(&proxy, n).await;
    stop(&mut proxy);
    let trail = dir.path().join("paris-1.jsonl");
    (dir, keys, trail)
}

/// Runs `audit verify --key` in `dir` on `args`.
fn verify_key(dir: &Path, keys: &Path, args: &[&str]) -> Output {
    let key = keys.join("test-key.pub");
    let key = key.to_str().unwrap();
    run(dir, &[&["audit", "verify", "--key", key], args].concat())
}

/// At shutdown the writer signs a last checkpoint covering every record:
/// with an interval of an hour, it is the only one.
#[tokio::test]
async fn a_stopped_proxy_leaves_a_checkpoint_of_its_last_record() {
    let (dir, keys, trail) = signed_trail(2).await;
    assert_eq!(lines(&trail).len(), 2);
    assert_eq!(notes(&trail), 1);
    assert_eq!(last_size(&trail), 2);
    let out = verify_key(dir.path(), keys.path(), &["paris-1.jsonl"]);
    assert_eq!(text(&out.stderr), "");
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("ok: 2 records in 1 file, from genesis to "),
        "{stdout}"
    );
    assert!(
        stdout.ends_with(
            "; 1 signed checkpoint (origin paris-1, key test-key), the last covers 2 of the 2 records of paris-1.jsonl\n"
        ),
        "{stdout}"
    );
}

/// Checkpoints come every `checkpoint_every` while the proxy runs, each
/// verifying; the last (at shutdown) covers every record.
#[tokio::test]
async fn checkpoints_are_signed_at_the_interval() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let up = Origin::start(ips::ORIGIN).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    keygen(keys.path());
    let mut proxy = Proxy::start(&signed(
        &geo,
        &up,
        dir.path(),
        keys.path(),
        "paris-1",
        "checkpoint_every = \"100ms\"",
    ));
    let trail = dir.path().join("paris-1.jsonl");
    get(&proxy, 1).await;
    wait_until("3 checkpoints", || notes(&trail) >= 3).await;
    get(&proxy, 1).await;
    let before = notes(&trail);
    wait_until("2 more checkpoints", || notes(&trail) >= before + 2).await;
    stop(&mut proxy);
    assert_eq!(last_size(&trail), 2);
    // Owner-only, like the trail it vouches for.
    let ckpt = dir.path().join("paris-1.jsonl.checkpoints");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&ckpt).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "{}", ckpt.display());
    let out = verify_key(dir.path(), keys.path(), &["paris-1.jsonl"]);
    assert_eq!(text(&out.stderr), "");
    assert!(
        text(&out.stdout).ends_with(", the last covers 2 of the 2 records of paris-1.jsonl\n"),
        "{}",
        text(&out.stdout)
    );
}

/// Whoever can write the files but has not the key rewrites a record and
/// recomputes every hash after it: the chain alone verifies, the signed
/// checkpoint does not. Re-making the checkpoint without the key, or
/// deleting it, fails too.
#[tokio::test]
async fn a_rewrite_with_recomputed_hashes_passes_without_the_key_and_fails_with_it() {
    let (dir, keys, trail) = signed_trail(3).await;
    let original = lines(&trail);
    let mut chain = Chain::new();
    let rewritten: Vec<String> = original
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut r = unseal(l.as_bytes()).unwrap().record;
            if i == 1 {
                r.identity = "someone-else".into();
            }
            chain.seal(&mut r)
        })
        .collect();
    assert_ne!(rewritten[2], original[2]);
    write_lines(&trail, &rewritten);

    let without = run(dir.path(), &["audit", "verify", "paris-1.jsonl"]);
    assert_eq!(text(&without.stderr), "");
    assert!(text(&without.stdout).starts_with("ok: 3 records in 1 file"));
    assert_eq!(without.status.code(), Some(0));

    let with = verify_key(dir.path(), keys.path(), &["paris-1.jsonl"]);
    assert_eq!(text(&with.stdout), "");
    let stderr = text(&with.stderr);
    assert!(
        stderr.starts_with(
            "paris-1.jsonl:3: the trail does not match checkpoint 1 (paris-1.jsonl.checkpoints:1, 3 records, head "
        ),
        "{stderr}"
    );
    assert!(
        stderr.ends_with("): records were rewritten at or before line 3\n"),
        "{stderr}"
    );
    assert_eq!(with.status.code(), Some(1));

    // The forger puts the new head into the checkpoint: the signature no
    // longer verifies.
    let head = unseal(rewritten[2].as_bytes()).unwrap().hash;
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&head[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut note = lines(&ckpt(&trail));
    use base64::Engine;
    note[2] = base64::engine::general_purpose::STANDARD.encode(bytes);
    write_lines(&ckpt(&trail), &note);
    let out = verify_key(dir.path(), keys.path(), &["paris-1.jsonl"]);
    assert_eq!(
        text(&out.stderr),
        "paris-1.jsonl.checkpoints:1: checkpoint 1: the signature by key test-key does not verify\n"
    );
    assert_eq!(out.status.code(), Some(1));

    // Or deletes the checkpoints.
    std::fs::remove_file(ckpt(&trail)).unwrap();
    let out = verify_key(dir.path(), keys.path(), &["paris-1.jsonl"]);
    assert_eq!(
        text(&out.stderr),
        "paris-1.jsonl: no signed checkpoint (expected in paris-1.jsonl.checkpoints): with --key every file needs its checkpoints\n"
    );
    assert_eq!(out.status.code(), Some(1));
}

/// Records after the last checkpoint (a crash before the next one) can be
/// cut without trace — the summary says how many it covers — but a cut
/// before the last checkpoint fails, naming the file, its last record and
/// the checkpoint.
#[tokio::test]
async fn a_cut_after_the_last_checkpoint_passes_and_before_it_fails() {
    let (dir, keys, trail) = signed_trail(3).await;
    let mut chain = Chain::resume(&trail).unwrap();
    let mut all = lines(&trail);
    all.extend((10..12).map(|n| chain.seal(&mut record(n))));
    write_lines(&trail, &all);
    let out = verify_key(dir.path(), keys.path(), &["paris-1.jsonl"]);
    assert!(
        text(&out.stdout).ends_with("the last covers 3 of the 5 records of paris-1.jsonl\n"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    write_lines(&trail, &all[..4]);
    let out = verify_key(dir.path(), keys.path(), &["paris-1.jsonl"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).ends_with("the last covers 3 of the 4 records of paris-1.jsonl\n"));

    write_lines(&trail, &all[..2]);
    let out = verify_key(dir.path(), keys.path(), &["paris-1.jsonl"]);
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(
            "paris-1.jsonl:2: the file ends after 2 records, but checkpoint 1 (paris-1.jsonl.checkpoints:1, signed "
        ),
        "{stderr}"
    );
    assert!(
        stderr.ends_with(") covers 3: records were removed from the end\n"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(1));
    // Without the key, nothing shows it.
    let out = run(dir.path(), &["audit", "verify", "paris-1.jsonl"]);
    assert_eq!(out.status.code(), Some(0));
}

/// The closed segments of `dir`'s chain `name`, in name order.
fn segments(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let f = p.file_name().unwrap().to_str().unwrap();
            f.starts_with(&format!("{name}-")) && f.ends_with(".jsonl")
        })
        .collect();
    v.sort();
    v
}

/// Each closed segment ends with a checkpoint of its last record.
fn assert_segments_end_with_checkpoints(segs: &[PathBuf]) {
    for s in segs {
        assert_eq!(last_size(s), lines(s).len() as u64, "{}", s.display());
    }
}

/// `rotate_size`: once a write takes the file to the size, it is closed
/// into a segment (named in chain order, with its checkpoints) and the
/// path starts anew; the directory verifies as one chain.
#[tokio::test]
async fn rotation_by_size_closes_segments_that_verify_in_order() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let up = Origin::start(ips::ORIGIN).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    keygen(keys.path());
    let mut proxy = Proxy::start(&signed(
        &geo,
        &up,
        dir.path(),
        keys.path(),
        "paris-1",
        "checkpoint_every = \"1h\"\nrotate_size = 1",
    ));
    for n in 1..=3 {
        get(&proxy, 1).await;
        wait_until("a segment", || segments(dir.path(), "paris-1").len() >= n).await;
    }
    stop(&mut proxy);
    let segs = segments(dir.path(), "paris-1");
    assert_eq!(segs.len(), 3);
    let names: Vec<String> = segs
        .iter()
        .map(|s| s.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for (i, n) in names.iter().enumerate() {
        assert!(n.starts_with(&format!("paris-1-0000000{}-", i + 1)), "{n}");
    }
    assert_segments_end_with_checkpoints(&segs);
    let out = verify_key(dir.path(), keys.path(), &["."]);
    assert_eq!(text(&out.stderr), "");
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("paris-1: ok: 3 records in 4 files, from genesis to "),
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(0));
    // A segment taken out of the middle breaks the chain.
    std::fs::remove_file(&segs[1]).unwrap();
    let out = verify_key(dir.path(), keys.path(), &["."]);
    assert!(
        text(&out.stderr).starts_with(&format!("paris-1: ./{}:1: prev does not match", names[2])),
        "{}",
        text(&out.stderr)
    );
}

/// `rotate_every`: a file written for that long is closed into a segment;
/// an empty one is kept.
#[tokio::test]
async fn rotation_by_age_closes_segments_that_verify_in_order() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let up = Origin::start(ips::ORIGIN).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    keygen(keys.path());
    let mut proxy = Proxy::start(&signed(
        &geo,
        &up,
        dir.path(),
        keys.path(),
        "paris-1",
        "checkpoint_every = \"1h\"\nrotate_every = \"200ms\"",
    ));
    get(&proxy, 1).await;
    wait_until("a segment", || segments(dir.path(), "paris-1").len() == 1).await;
    get(&proxy, 1).await;
    wait_until("a second segment", || {
        segments(dir.path(), "paris-1").len() == 2
    })
    .await;
    stop(&mut proxy);
    let segs = segments(dir.path(), "paris-1");
    assert_eq!(segs.len(), 2, "an empty file is not rotated");
    assert_eq!(lines(&segs[0]).len(), 1);
    assert_eq!(lines(&segs[1]).len(), 1);
    assert_segments_end_with_checkpoints(&segs);
    let out = verify_key(dir.path(), keys.path(), &["."]);
    assert_eq!(text(&out.stderr), "");
    assert!(
        text(&out.stdout).starts_with("paris-1: ok: 2 records in 3 files, from genesis to "),
        "{}",
        text(&out.stdout)
    );
}

/// Three replicas write their chains into one directory (as a collector
/// gathers them): `audit verify DIR` verifies each on its own and reports
/// it by name; one replica's broken chain fails alone; `transfers` reads
/// the directory the same way.
#[tokio::test]
async fn three_replicas_chains_in_a_directory_are_verified_one_by_one() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let up = Origin::start(ips::ORIGIN).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    keygen(keys.path());
    for (name, n) in [("lyon-1", 1), ("paris-1", 2), ("paris-2", 3)] {
        let mut proxy = Proxy::start(&signed(
            &geo,
            &up,
            dir.path(),
            keys.path(),
            name,
            "checkpoint_every = \"1h\"\nrotate_size = 1",
        ));
        for i in 1..=n {
            get(&proxy, 1).await;
            wait_until("a segment", || segments(dir.path(), name).len() >= i).await;
        }
        stop(&mut proxy);
    }
    let out = verify_key(dir.path(), keys.path(), &["."]);
    assert_eq!(text(&out.stderr), "");
    let stdout = text(&out.stdout);
    let got: Vec<&str> = stdout
        .lines()
        .map(|l| l.split(", from").next().unwrap())
        .collect();
    assert_eq!(
        got,
        [
            "lyon-1: ok: 1 record in 2 files",
            "paris-1: ok: 2 records in 3 files",
            "paris-2: ok: 3 records in 4 files",
        ]
    );
    for (line, name) in stdout.lines().zip(["lyon-1", "paris-1", "paris-2"]) {
        assert!(
            line.contains(&format!("(origin {name}, key test-key)")),
            "{line}"
        );
    }
    let out = run(
        dir.path(),
        &["transfers", "--audit", ".", "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // paris-2's second segment loses its record: only paris-2 fails.
    let seg = &segments(dir.path(), "paris-2")[1];
    std::fs::write(seg, "").unwrap();
    let out = verify_key(dir.path(), keys.path(), &["."]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout).lines().count(),
        2,
        "{}",
        text(&out.stdout)
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("paris-2: ./paris-2-00000003-"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1);
    let out = run(dir.path(), &["transfers", "--audit", "."]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("paris-2: ./paris-2-00000003-"),
        "{}",
        text(&out.stderr)
    );
}

/// Signing and rotation are read at start: a reload changing them is
/// refused whole, naming the keys, and the proxy signs on as before.
#[tokio::test]
async fn a_reload_changing_signing_or_rotation_is_refused_naming_the_keys() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let up = Origin::start(ips::ORIGIN).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    keygen(keys.path());
    let mut proxy = Proxy::start(&signed(
        &geo,
        &up,
        dir.path(),
        keys.path(),
        "paris-1",
        "checkpoint_every = \"1h\"",
    ));
    let original = std::fs::read_to_string(proxy.config_path()).unwrap();
    std::fs::write(
        proxy.config_path(),
        format!("{original}rotate_size = 100\n"),
    )
    .unwrap();
    proxy.signal("HUP");
    proxy.wait_for_log("reload refused", 1).await;
    assert!(
        proxy.logs().contains(
            "[audit] rotate_size (running with 0, file has 100) cannot change on reload (read only at start); restart to apply"
        ),
        "{}",
        proxy.logs()
    );
    get(&proxy, 1).await;
    stop(&mut proxy);
    let out = verify_key(dir.path(), keys.path(), &["paris-1.jsonl"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// logrotate style: the trail and its checkpoint file renamed together,
/// then SIGHUP. The closing checkpoint follows the renamed checkpoint file;
/// the new file starts its own, linked by a checkpoint of size 0; both
/// verify in order with the key.
#[tokio::test]
async fn sighup_after_renaming_both_files_keeps_each_files_checkpoints() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let up = Origin::start(ips::ORIGIN).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    keygen(keys.path());
    let mut proxy = Proxy::start(&signed(
        &geo,
        &up,
        dir.path(),
        keys.path(),
        "paris-1",
        "checkpoint_every = \"1h\"",
    ));
    let trail = dir.path().join("paris-1.jsonl");
    get(&proxy, 2).await;
    wait_until("2 records", || {
        std::fs::read_to_string(&trail)
            .unwrap_or_default()
            .lines()
            .count()
            == 2
    })
    .await;
    let old = dir.path().join("paris-1-old.jsonl");
    std::fs::rename(&trail, &old).unwrap();
    std::fs::rename(ckpt(&trail), ckpt(&old)).unwrap();
    proxy.signal("HUP");
    proxy.wait_for_log("audit file reopened", 1).await;
    get(&proxy, 1).await;
    stop(&mut proxy);
    assert_eq!(last_size(&old), 2);
    assert_eq!(last_size(&trail), 1);
    let out = verify_key(
        dir.path(),
        keys.path(),
        &["paris-1-old.jsonl", "paris-1.jsonl"],
    );
    assert_eq!(text(&out.stderr), "");
    assert!(
        text(&out.stdout).starts_with("ok: 3 records in 2 files, from genesis to "),
        "{}",
        text(&out.stdout)
    );
}

/// `check` reads the signing key as `run` does: a missing key fails,
/// naming the file; a good one is shown with the origin and rotation.
#[tokio::test]
async fn check_reads_the_signing_key_and_shows_the_keeping() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let up = Origin::start(ips::ORIGIN).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let toml = signed(
        &geo,
        &up,
        dir.path(),
        keys.path(),
        "paris-1",
        "rotate_size = 1000\nrotate_every = \"1h\"",
    );
    let config = dir.path().join("proxy.toml");
    std::fs::write(&config, &toml).unwrap();
    let config = config.to_str().unwrap();
    let out = run(dir.path(), &["check", "--config", config]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!(
            "cannot read key file {}",
            keys.path().join("test-key").display()
        )),
        "{}",
        text(&out.stderr)
    );
    keygen(keys.path());
    let out = run(dir.path(), &["check", "--config", config]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "audit checkpoints: origin paris-1, key test-key ({}), every 60s, into {}\naudit rotation: at 1000 bytes or every 3600s\n",
            keys.path().join("test-key").display(),
            dir.path().join("paris-1.jsonl.checkpoints").display()
        )),
        "{stdout}"
    );
}
