//! The spellings a storage may act on (SPEC §4): the request path read the
//! ways S3 servers read it, and the request host read as DNS does. Routes
//! are matched on these readings; the request itself is never rewritten
//! (SigV4 signs the bytes the client sent).
//!
//! Path (the target without its query):
//! - every `%XX` is decoded, once, hex in either case; a `%` not followed by
//!   two hex digits makes the target invalid (`400`);
//! - three things are read both ways, because S3 servers differ on them:
//!   whether `%2F` separates segments (Ceph decodes the whole path first;
//!   MinIO keeps it inside a segment), whether repeated slashes collapse
//!   (`//bucket/key`), and whether `.` and `..` segments are removed (RFC
//!   3986 §5.2.4, after decoding, so `%2E%2E` is `..`). A path that uses
//!   none of them has one reading; otherwise every combination is a reading.
//!
//! - a `;` starts path parameters to some servers (servlet containers,
//!   JAX-RS), which drop them from each segment: the path without them is
//!   read too, every way above.
//!
//! Host: ASCII case folded, the port removed, one trailing dot removed (the
//! fully qualified form names the same host), an IPv6 literal in its
//! canonical text (`[0::1]` is `::1`). Anything else than letters, digits,
//! `-`, `_` and dots between non-empty labels, or beyond DNS's lengths
//! (253 characters, 63 per label), is not a host name (`400`).

use std::borrow::Cow;
use std::net::{IpAddr, Ipv6Addr};

/// Why a request target or host cannot be routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unroutable {
    /// A `%` not followed by two hex digits.
    BadPercent,
    /// A `Host` that is not a DNS name or IP literal.
    BadHost,
    /// The readings of the target lead to routes that cannot be reconciled.
    Ambiguous,
}

/// The equivalences a path exercises: each one doubles its readings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spelling {
    /// Some `%XX` is present.
    pub encoded: bool,
    /// `%2F` is present (a separator or not, depending on the server).
    pub encoded_slash: bool,
    /// An empty segment (`//`) once decoded.
    pub empty_segment: bool,
    /// A `.` or `..` segment once decoded.
    pub dot_segment: bool,
}

impl Spelling {
    /// True when the path has exactly one reading: itself.
    pub const fn is_plain(self) -> bool {
        !(self.encoded || self.empty_segment || self.dot_segment)
    }
}

const fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Checks the percent-encoding of `path` and says which equivalences it
/// uses, without allocating.
///
/// # Errors
/// [`Unroutable::BadPercent`] for a `%` not followed by two hex digits.
pub fn inspect(path: &[u8]) -> Result<Spelling, Unroutable> {
    let mut s = Spelling::default();
    // The decoded segment being scanned: its length and whether it is all dots.
    let mut seg_len = 0usize;
    let mut seg_dots = true;
    let mut started = false;
    let mut i = 0;
    let end_segment = |s: &mut Spelling, len: usize, dots: bool, last: bool| {
        if dots && (len == 1 || len == 2) {
            s.dot_segment = true;
        }
        if len == 0 && !last {
            s.empty_segment = true;
        }
    };
    while i < path.len() {
        let (byte, next) = if path[i] == b'%' {
            let (Some(h), Some(l)) = (
                path.get(i + 1).copied().and_then(hex),
                path.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(Unroutable::BadPercent);
            };
            s.encoded = true;
            (h << 4 | l, i + 3)
        } else {
            (path[i], i + 1)
        };
        if byte == b'/' {
            if path[i] == b'%' {
                s.encoded_slash = true;
            }
            if started {
                end_segment(&mut s, seg_len, seg_dots, false);
            }
            started = true;
            seg_len = 0;
            seg_dots = true;
        } else {
            seg_len += 1;
            seg_dots &= byte == b'.';
        }
        i = next;
    }
    if started {
        end_segment(&mut s, seg_len, seg_dots, true);
    }
    Ok(s)
}

/// `path` with the parameters of each segment (from a `;` to the end of
/// the segment, before decoding: `%3B` is data) removed, as servlet
/// containers and JAX-RS matrix parameters read it: `/b;x/k` is `/b/k`,
/// `/..;/b` is `/../b`.
pub fn without_params(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    let mut in_params = false;
    for &b in path {
        match b {
            b'/' => {
                in_params = false;
                out.push(b);
            }
            b';' => in_params = true,
            _ if !in_params => out.push(b),
            _ => {}
        }
    }
    out
}

/// One reading of `path` (already [`inspect`]ed): decoded, with `%2F`
/// kept as the three bytes `%2F` unless `decode_slash`, repeated slashes
/// merged if `collapse`, dot segments removed if `dots`.
pub fn reading(path: &[u8], decode_slash: bool, collapse: bool, dots: bool) -> Vec<u8> {
    let mut decoded = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%'
            && let (Some(h), Some(l)) = (
                path.get(i + 1).copied().and_then(hex),
                path.get(i + 2).copied().and_then(hex),
            )
        {
            let b = h << 4 | l;
            if b == b'/' && !decode_slash {
                decoded.extend_from_slice(b"%2F");
            } else {
                decoded.push(b);
            }
            i += 3;
        } else {
            decoded.push(path[i]);
            i += 1;
        }
    }
    if !(collapse || dots) || decoded.first() != Some(&b'/') {
        return decoded;
    }
    let segments: Vec<&[u8]> = decoded[1..].split(|&b| b == b'/').collect();
    let n = segments.len();
    let mut out: Vec<&[u8]> = Vec::with_capacity(n);
    for (k, seg) in segments.iter().enumerate() {
        let last = k + 1 == n;
        match *seg {
            b"." if dots => {
                if last {
                    out.push(b"");
                }
            }
            b".." if dots => {
                out.pop();
                if last {
                    out.push(b"");
                }
            }
            b"" if collapse && !last => {}
            s => out.push(s),
        }
    }
    let mut p = Vec::with_capacity(decoded.len());
    for seg in out {
        p.push(b'/');
        p.extend_from_slice(seg);
    }
    if p.is_empty() {
        p.push(b'/');
    }
    p
}

/// The host name routes are matched on (see the module docs).
///
/// # Errors
/// [`Unroutable::BadHost`] when `host` is not a name or IP literal.
pub fn host(host: &str) -> Result<Cow<'_, str>, Unroutable> {
    if let Some(rest) = host.strip_prefix('[') {
        let (literal, after) = rest.split_once(']').ok_or(Unroutable::BadHost)?;
        if !port_ok(after) {
            return Err(Unroutable::BadHost);
        }
        let ip: Ipv6Addr = literal.parse().map_err(|_| Unroutable::BadHost)?;
        return Ok(Cow::Owned(ip.to_string()));
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return Err(Unroutable::BadHost),
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        // HTTP/1.0 without Host: no name, matched only by routes for any host.
        return if host.is_empty() {
            Ok(Cow::Borrowed(""))
        } else {
            Err(Unroutable::BadHost)
        };
    }
    // DNS bounds (RFC 1035 §2.3.4) also bound the work of matching.
    let labels_ok = name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !labels_ok {
        return Err(Unroutable::BadHost);
    }
    Ok(if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    })
}

// After `]`: nothing, or `:` and a port of digits (RFC 3986 allows it empty).
fn port_ok(after_host: &str) -> bool {
    match after_host.strip_prefix(':') {
        Some(port) => port.bytes().all(|b| b.is_ascii_digit()),
        None => after_host.is_empty(),
    }
}

/// The canonical text of a `hosts` entry or an `s3_domains` entry written
/// in the config: the same reading as [`host`], `None` if not a host.
pub fn config_host(text: &str) -> Option<String> {
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(ip.to_string());
    }
    if text.contains(':') {
        return None;
    }
    host(text)
        .ok()
        .filter(|h| !h.is_empty())
        .map(Cow::into_owned)
}
