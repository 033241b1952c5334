//! Large deterministic bodies, generated and hashed in chunks so neither the
//! tests nor the proxy ever hold a whole body.

use std::sync::OnceLock;

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// Size of one generated chunk.
pub const CHUNK: usize = 1 << 20;

fn block() -> &'static [u8] {
    static BLOCK: OnceLock<Vec<u8>> = OnceLock::new();
    BLOCK.get_or_init(|| {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut v = Vec::with_capacity(CHUNK);
        while v.len() < CHUNK {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.extend_from_slice(&x.to_le_bytes());
        }
        v
    })
}

/// Chunk `i` of a pattern body: the random block with `i` in its first 8
/// bytes, so reordered or repeated chunks change the hash.
pub fn chunk(i: u64, len: usize) -> Bytes {
    let mut c = block()[..len].to_vec();
    let n = len.min(8);
    c[..n].copy_from_slice(&i.to_le_bytes()[..n]);
    Bytes::from(c)
}

/// The chunks of a pattern body of `total` bytes.
pub fn chunks(total: u64) -> impl Iterator<Item = Bytes> {
    let n = total.div_ceil(CHUNK as u64);
    (0..n).map(move |i| {
        let len = (total - i * CHUNK as u64).min(CHUNK as u64) as usize;
        chunk(i, len)
    })
}

/// SHA-256 (hex) of the pattern body of `total` bytes.
pub fn sha256_of_pattern(total: u64) -> String {
    let mut h = Sha256::new();
    for c in chunks(total) {
        h.update(&c);
    }
    hex(&h.finalize())
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
