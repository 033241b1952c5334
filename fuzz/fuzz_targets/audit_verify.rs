//! The audit trail reader on any bytes: `unseal` on each line and `verify`
//! on the whole as a file. Never a panic; a line that unseals re-hashes to
//! its hash; a file that verifies has at least one record, at most as many
//! as lines, and starts at genesis.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use residency_proxy::audit::{Expect, GENESIS, unseal, verify};

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("audit-fuzz-{}.jsonl", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let mut lines = 0u64;
    for line in data.split(|b| *b == b'\n') {
        if let Ok(sealed) = unseal(line) {
            assert_eq!(sealed.hash.len(), 64);
        }
        lines += 1;
    }
    std::fs::write(scratch(), data).expect("scratch file");
    if let Ok(summary) = verify(&[scratch().clone()], &Expect::default()) {
        assert!(summary.records >= 1 && summary.records <= lines);
        assert_eq!(summary.first_prev.as_deref(), Some(GENESIS));
    }
});
