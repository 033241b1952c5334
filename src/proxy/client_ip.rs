//! Establishing the client address (SPEC §4).
//!
//! The socket peer is the client unless it is a trusted proxy. Then the
//! configured source is read and walked from the right: each hop appends the
//! address it saw, so the right-most entry that is not itself a trusted proxy
//! is the last address no trusted party can vouch past — everything left of
//! it may have been written by the client. An untrusted peer's headers are
//! ignored, and a malformed value is never believed: the client is then
//! untraceable (and fails the policy), rather than the trusted proxy's own,
//! usually internal and allowed, address.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use http::header::{FORWARDED, HeaderName};

use crate::config::ClientIpSource;
use crate::geo::{Canonical, canonicalize};
use crate::policy::NetworkTable;

/// The `X-Forwarded-For` header name.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Who the client is, as far as the proxy can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAddr {
    /// A usable address.
    Ip(IpAddr),
    /// A trusted proxy sent a value that cannot be believed.
    Untraceable,
}

/// True when `ip` (canonicalised) is in the trusted proxies.
pub fn is_trusted(ip: IpAddr, trusted: &NetworkTable) -> bool {
    match canonicalize(ip, trusted.nat64()) {
        Canonical::Ip(ip) => trusted.contains(ip),
        Canonical::Untraceable(v6) => trusted.contains(IpAddr::V6(v6)),
    }
}

/// The client of a request. `conn_client` is the peer, or the address a
/// trusted peer announced in a PROXY protocol header.
pub fn client_addr(
    peer: SocketAddr,
    conn_client: ClientAddr,
    headers: &HeaderMap,
    source: ClientIpSource,
    trusted: &NetworkTable,
) -> ClientAddr {
    match source {
        ClientIpSource::Peer => ClientAddr::Ip(peer.ip()),
        ClientIpSource::ProxyProtocol => conn_client,
        _ if !is_trusted(peer.ip(), trusted) => ClientAddr::Ip(peer.ip()),
        ClientIpSource::XForwardedFor => from_chain(
            peer.ip(),
            headers,
            &X_FORWARDED_FOR,
            trusted,
            parse_xff_entry,
        ),
        ClientIpSource::Forwarded => from_chain(
            peer.ip(),
            headers,
            &FORWARDED,
            trusted,
            parse_forwarded_element,
        ),
    }
}

/// Walks the comma-separated entries of every `name` field, right to left.
fn from_chain(
    peer: IpAddr,
    headers: &HeaderMap,
    name: &HeaderName,
    trusted: &NetworkTable,
    parse: fn(&str) -> Option<IpAddr>,
) -> ClientAddr {
    let mut fields = headers.get_all(name).iter().rev().peekable();
    if fields.peek().is_none() {
        // The trusted proxy made the request itself (a health check).
        return ClientAddr::Ip(peer);
    }
    let mut leftmost = None;
    for field in fields {
        let Ok(text) = field.to_str() else {
            return ClientAddr::Untraceable;
        };
        for entry in split_outside_quotes(text).rev() {
            let Some(ip) = parse(entry.trim_matches([' ', '\t'])) else {
                return ClientAddr::Untraceable;
            };
            if !is_trusted(ip, trusted) {
                return ClientAddr::Ip(ip);
            }
            leftmost = Some(ip);
        }
    }
    // Every hop is a trusted proxy: the left-most one originated the request.
    leftmost.map_or(ClientAddr::Untraceable, ClientAddr::Ip)
}

/// Splits on commas that are not inside a quoted string (RFC 7239 values may
/// quote; X-Forwarded-For never does, and a quote there makes it malformed).
fn split_outside_quotes(text: &str) -> impl DoubleEndedIterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, b) in text.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter()
}

/// An `X-Forwarded-For` entry: `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]`,
/// optionally with `:port` (`1.2.3.4:5678`, `[2001:db8::1]:5678`).
/// Anything else — empty, `unknown`, zone ids, leading zeros, hex octets — is
/// malformed.
pub fn parse_xff_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = entry.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return inner.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (host, port) = entry.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_port(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 5
        && s.bytes().all(|b| b.is_ascii_digit())
        && s.parse::<u16>().is_ok()
}

/// The `for=` parameter of one `Forwarded` element (RFC 7239 §4, §6):
/// `for=192.0.2.60`, `for="192.0.2.60:80"`, `for="[2001:db8::1]:4711"`.
/// `unknown`, obfuscated identifiers (`_hidden`), a missing `for`, or a
/// repeated `for` are not an address and make the header malformed.
pub fn parse_forwarded_element(element: &str) -> Option<IpAddr> {
    let mut found = None;
    for pair in element.split(';') {
        let (name, value) = pair.trim_matches([' ', '\t']).split_once('=')?;
        if !name.eq_ignore_ascii_case("for") {
            continue;
        }
        if found.is_some() {
            return None;
        }
        let value = match value.strip_prefix('"') {
            Some(rest) => rest.strip_suffix('"')?,
            None => value,
        };
        if value.contains(['"', '\\']) {
            return None;
        }
        // An IPv6 address must be bracketed (and therefore quoted) here.
        if value.parse::<std::net::Ipv6Addr>().is_ok() {
            return None;
        }
        found = Some(parse_xff_entry(value)?);
    }
    found
}

#[cfg(test)]
mod tests;
