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
//!
//! # The chain is parsed whole before any of it is believed
//!
//! All field lines of the header are one list, in order (RFC 9110 §5.3);
//! each line is parsed on its own, so nothing opened in one line (a quote)
//! continues into the next. If any line does not parse, the whole chain is
//! untraceable — whatever the client wrote can only make itself
//! untraceable, never hide the hop its trusted proxy appended.
//!
//! `Forwarded` follows RFC 7239 §4 exactly: elements separated by commas
//! with optional whitespace (SP, HTAB) around them; an element is
//! `[ pair ] *( ";" [ pair ] )`, a pair `token "=" ( token / quoted-string )`
//! with no whitespace around `=`; whitespace around `;` is tolerated (the
//! one leniency: it is unambiguous). A quoted-string may hold quoted-pairs
//! (`"`, `\,`), which are removed before the value is read; commas and
//! semicolons inside quotes are data. obs-text (bytes 0x80-0xFF) and control
//! characters are malformed anywhere, quoted or not. A parameter may appear
//! once per element (names are case-insensitive), at most 16 parameters per
//! element. Every `for` value, wherever it stands, must be a node of
//! RFC 7239 §6: an IPv4 address (no leading zeros), a bracketed IPv6 address
//! (no zone id; the brackets and any port require quotes), `unknown`, or an
//! obfuscated `_name`, optionally followed by `:port` (decimal, 0-65535) or
//! an obfuscated `:_port`; at most 128 bytes.
//!
//! `X-Forwarded-For` has no grammar of its own; it is read as: entries
//! separated by commas, whitespace (SP, HTAB) around them. A line holding a
//! byte outside visible ASCII, SP and HTAB (obs-text, controls) or a `"` or
//! `\` (the header has no quoting; someone else's parser would split it
//! differently) is malformed. An entry is an address: IPv4 (no leading
//! zeros, no hex), IPv6 bare or in brackets, optionally `:port` (IPv4) or
//! `]:port` (IPv6; a bare IPv6 is read whole, never as address and port);
//! `[1.2.3.4]`, zone ids (`fe80::1%eth0`), `unknown` and anything else are
//! not addresses. Entries left of the decisive one are not read further:
//! the client may have written them.
//!
//! Empty elements (`a,,b`, a leading or trailing comma, an empty field line)
//! are allowed by the list syntax but are hops too: a hop that names no
//! client — empty, without `for`, `unknown`, obfuscated, not an address —
//! makes the client untraceable when the walk reaches it.
//!
//! # A trusted proxy that names no client
//!
//! A trusted peer that sends no header, or a chain made of trusted proxies
//! only, or (PROXY protocol) `UNKNOWN`, `LOCAL`, an unspecified or UNIX
//! family, has named no client: the client is then untraceable, unless
//! `[server] trusted_proxy_without_client = "peer"` says such requests are
//! the proxy's own (health checks). See [`client_addr`].

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

/// The client of a request.
///
/// `conn_client` is what the connection says about the client: the peer
/// when it is not a trusted proxy; from a trusted proxy, the source its
/// PROXY protocol header announced, or — when the trusted proxy names no
/// client (PROXY `UNKNOWN`/`LOCAL`/`UNSPEC`/`AF_UNIX`, no forwarding
/// header, a chain of trusted proxies only) — what
/// `trusted_proxy_without_client` says: `Untraceable` by default, or the
/// proxy itself (`"peer"`, for load-balancer health checks). The listener
/// decides it once per connection.
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
        ClientIpSource::XForwardedFor => {
            from_chain(conn_client, headers, &X_FORWARDED_FOR, trusted, xff_line)
        }
        ClientIpSource::Forwarded => {
            from_chain(conn_client, headers, &FORWARDED, trusted, forwarded_line)
        }
    }
}

/// What one hop of a chain says about its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hop {
    /// An address.
    Addr(IpAddr),
    /// No usable address: an empty element, no `for`, `unknown`, an
    /// obfuscated identifier, or an X-Forwarded-For entry that is not an
    /// address.
    Nameless,
}

/// The walk over a chain, fed left to right so that nothing is collected:
/// the answer is the right-most hop that is not a trusted proxy, so only the
/// last such hop and the first hop need remembering.
struct Walk<'a> {
    trusted: &'a NetworkTable,
    first: Option<Hop>,
    last_untrusted: Option<Hop>,
}

impl Walk<'_> {
    fn hop(&mut self, hop: Hop) {
        self.first.get_or_insert(hop);
        match hop {
            Hop::Addr(ip) if is_trusted(ip, self.trusted) => {}
            _ => self.last_untrusted = Some(hop),
        }
    }
}

/// The chain is malformed: nothing in it is believed.
struct Malformed;

/// Parses every `name` field line as one list (RFC 9110 §5.3), each line on
/// its own, then answers with the right-most hop that is not a trusted
/// proxy. Any line that does not parse makes the whole chain untraceable.
fn from_chain(
    conn_client: ClientAddr,
    headers: &HeaderMap,
    name: &HeaderName,
    trusted: &NetworkTable,
    line: fn(&[u8], &mut Walk<'_>) -> Result<(), Malformed>,
) -> ClientAddr {
    let mut walk = Walk {
        trusted,
        first: None,
        last_untrusted: None,
    };
    for field in headers.get_all(name) {
        if line(field.as_bytes(), &mut walk).is_err() {
            return ClientAddr::Untraceable;
        }
    }
    match (walk.last_untrusted, walk.first) {
        (Some(Hop::Addr(ip)), _) => ClientAddr::Ip(ip),
        (Some(Hop::Nameless), _) => ClientAddr::Untraceable,
        // No header: the trusted proxy made the request itself.
        (None, None) => conn_client,
        // Every hop is a trusted proxy: the left-most one made the request,
        // which is believed only where a trusted proxy naming no client is.
        (None, Some(Hop::Addr(ip))) => match conn_client {
            ClientAddr::Ip(_) => ClientAddr::Ip(ip),
            ClientAddr::Untraceable => ClientAddr::Untraceable,
        },
        (None, Some(Hop::Nameless)) => ClientAddr::Untraceable,
    }
}

const fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s
        && is_ows(*first)
    {
        s = rest;
    }
    while let [rest @ .., last] = s
        && is_ows(*last)
    {
        s = rest;
    }
    s
}

/// One `X-Forwarded-For` field line: entries separated by commas, OWS
/// around them. The whole line must be visible ASCII, SP or HTAB, with no
/// `"` or `\` (the header has no quoting: a quote is someone else's grammar,
/// and no address contains one). Every entry is a hop; an empty entry, or
/// one that is not an address, names no client.
fn xff_line(line: &[u8], walk: &mut Walk<'_>) -> Result<(), Malformed> {
    if line
        .iter()
        .any(|&b| !(is_ows(b) || (0x21..=0x7e).contains(&b)) || b == b'"' || b == b'\\')
    {
        return Err(Malformed);
    }
    for entry in line.split(|&b| b == b',') {
        let hop = std::str::from_utf8(trim_ows(entry))
            .ok()
            .and_then(parse_xff_entry)
            .map_or(Hop::Nameless, Hop::Addr);
        walk.hop(hop);
    }
    Ok(())
}

/// An `X-Forwarded-For` entry: `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]`,
/// optionally with `:port` (`1.2.3.4:5678`, `[2001:db8::1]:5678`).
/// Anything else — empty, `unknown`, zone ids, leading zeros, hex octets,
/// `[1.2.3.4]` — is not an address.
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

/// Most parameters in one `Forwarded` element (RFC 7239 registers four);
/// more make the chain malformed, which bounds the duplicate check.
const MAX_PAIRS: usize = 16;

/// Longest `for` value, after removing quoted-pair escapes; longer ones
/// make the chain malformed (`"[` + a full IPv6 address + `]:65535"` is 54).
const MAX_NODE: usize = 128;

/// A cursor over one field line.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ows(&mut self) {
        while self.peek().is_some_and(is_ows) {
            self.i += 1;
        }
    }

    /// `token = 1*tchar`
    fn token(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        self.s.get(start..self.i).filter(|t| !t.is_empty())
    }

    /// `value = token / quoted-string`: the token, or the inside of the
    /// quotes with its quoted-pairs still escaped.
    fn value(&mut self) -> Result<Value<'a>, Malformed> {
        if self.peek() != Some(b'"') {
            return self.token().map(Value::Token).ok_or(Malformed);
        }
        self.i += 1;
        let start = self.i;
        loop {
            let b = self.peek().ok_or(Malformed)?;
            self.i += 1;
            match b {
                b'"' => {
                    let inner = self.s.get(start..self.i - 1).ok_or(Malformed)?;
                    return Ok(Value::Quoted(inner));
                }
                // quoted-pair = "\" ( HTAB / SP / VCHAR ); no obs-text.
                b'\\' => match self.peek() {
                    Some(e) if is_ows(e) || (0x21..=0x7e).contains(&e) => self.i += 1,
                    _ => return Err(Malformed),
                },
                // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E; no obs-text.
                b if is_ows(b) || (0x21..=0x7e).contains(&b) => {}
                _ => return Err(Malformed),
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Value<'a> {
    Token(&'a [u8]),
    Quoted(&'a [u8]),
}

/// `tchar` (RFC 9110 §5.6.2).
const fn is_tchar(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'#'
            | b'$'
            | b'%'
            | b'&'
            | b'\''
            | b'*'
            | b'+'
            | b'-'
            | b'.'
            | b'^'
            | b'_'
            | b'`'
            | b'|'
            | b'~'
    ) || b.is_ascii_alphanumeric()
}

/// One `Forwarded` field line, `#forwarded-element` (RFC 7239 §4):
///
/// ```text
/// forwarded-element = [ forwarded-pair ] *( ";" [ forwarded-pair ] )
/// forwarded-pair    = token "=" value
/// value             = token / quoted-string
/// ```
///
/// with OWS around the commas, and (the one leniency) around `;`. Each
/// parameter at most once per element, names compared case-insensitively;
/// a `for` value must be a node (RFC 7239 §6) wherever it stands. Every
/// element, empty ones included, is a hop.
fn forwarded_line(line: &[u8], walk: &mut Walk<'_>) -> Result<(), Malformed> {
    let mut c = Cursor { s: line, i: 0 };
    loop {
        c.skip_ows();
        walk.hop(forwarded_element(&mut c)?);
        c.skip_ows();
        match c.peek() {
            None => return Ok(()),
            Some(b',') => c.i += 1,
            Some(_) => return Err(Malformed),
        }
    }
}

/// One element, up to (not including) the `,` or the end of the line.
fn forwarded_element(c: &mut Cursor<'_>) -> Result<Hop, Malformed> {
    let mut names: [&[u8]; MAX_PAIRS] = [&[]; MAX_PAIRS];
    let mut count = 0;
    let mut hop = Hop::Nameless;
    loop {
        if let Some(name) = c.token() {
            if c.peek() != Some(b'=') {
                return Err(Malformed);
            }
            c.i += 1;
            let value = c.value()?;
            let seen = names.get(..count).unwrap_or_default();
            if seen.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                return Err(Malformed);
            }
            *names.get_mut(count).ok_or(Malformed)? = name;
            count += 1;
            if name.eq_ignore_ascii_case(b"for") {
                hop = for_value(value)?;
            }
        }
        let before = c.i;
        c.skip_ows();
        if c.peek() == Some(b';') {
            c.i += 1;
            c.skip_ows();
        } else {
            c.i = before;
            return Ok(hop);
        }
    }
}

/// A `for` value: its quoted-pairs removed, then read as a node.
fn for_value(value: Value<'_>) -> Result<Hop, Malformed> {
    let raw = match value {
        Value::Token(t) | Value::Quoted(t) if !t.contains(&b'\\') => {
            return if t.len() > MAX_NODE {
                Err(Malformed)
            } else {
                node(t)
            };
        }
        Value::Token(t) | Value::Quoted(t) => t,
    };
    let mut buf = [0u8; MAX_NODE];
    let mut len = 0;
    let mut escaped = false;
    for &b in raw {
        if b == b'\\' && !escaped {
            escaped = true;
            continue;
        }
        escaped = false;
        *buf.get_mut(len).ok_or(Malformed)? = b;
        len += 1;
    }
    node(buf.get(..len).ok_or(Malformed)?)
}

/// `node = nodename [ ":" node-port ]` (RFC 7239 §6):
///
/// ```text
/// nodename  = IPv4address / "[" IPv6address "]" / "unknown" / obfnode
/// node-port = port / obfport
/// obfnode   = "_" 1*( ALPHA / DIGIT / "." / "_" / "-" )
/// ```
///
/// with `port` a decimal 0-65535 of at most 5 digits. `unknown` and
/// obfuscated names are hops that name no client.
fn node(v: &[u8]) -> Result<Hop, Malformed> {
    let (name, port) = if v.first() == Some(&b'[') {
        let close = v.iter().position(|&b| b == b']').ok_or(Malformed)?;
        let (name, rest) = v.split_at(close + 1);
        match rest {
            [] => (name, None),
            [b':', port @ ..] => (name, Some(port)),
            _ => return Err(Malformed),
        }
    } else {
        match v.iter().position(|&b| b == b':') {
            Some(colon) => (
                v.get(..colon).ok_or(Malformed)?,
                Some(v.get(colon + 1..).ok_or(Malformed)?),
            ),
            None => (v, None),
        }
    };
    if let Some(port) = port {
        let numeric = std::str::from_utf8(port).is_ok_and(is_port);
        if !(numeric || is_obfuscated(port)) {
            return Err(Malformed);
        }
    }
    let text = std::str::from_utf8(name).map_err(|_| Malformed)?;
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        let v6 = inner.parse::<std::net::Ipv6Addr>().map_err(|_| Malformed)?;
        return Ok(Hop::Addr(IpAddr::V6(v6)));
    }
    if text.eq_ignore_ascii_case("unknown") || is_obfuscated(name) {
        return Ok(Hop::Nameless);
    }
    let v4 = text.parse::<std::net::Ipv4Addr>().map_err(|_| Malformed)?;
    Ok(Hop::Addr(IpAddr::V4(v4)))
}

/// `"_" 1*( ALPHA / DIGIT / "." / "_" / "-" )`
fn is_obfuscated(s: &[u8]) -> bool {
    matches!(s, [b'_', rest @ ..] if !rest.is_empty()
        && rest.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')))
}

/// The address the `for` parameter of one `Forwarded` element names, when
/// `element` is exactly one well-formed element (RFC 7239 §4, §6):
/// `for=192.0.2.60`, `for="192.0.2.60:80"`, `for="[2001:db8::1]:4711"`.
/// `None` for a malformed element, a missing `for`, `unknown` or an
/// obfuscated identifier.
pub fn parse_forwarded_element(element: &str) -> Option<IpAddr> {
    let mut c = Cursor {
        s: element.as_bytes(),
        i: 0,
    };
    let hop = forwarded_element(&mut c).ok()?;
    match hop {
        Hop::Addr(ip) if c.i == element.len() => Some(ip),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
