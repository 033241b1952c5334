//! Parser for the HAProxy PROXY protocol header, version 1 (text) and version 2
//! (binary), as specified in haproxy's `doc/proxy-protocol.txt`
//! (<https://www.haproxy.org/download/3.0/doc/proxy-protocol.txt>).
//!
//! [`parse`] only looks at bytes already read. Left to the caller: reading more
//! when it returns `Ok(None)`, a read timeout, deciding which peers may send a
//! header at all, what [`ProxyHeader::Local`] stands for (no client named:
//! untraceable, or the peer where `trusted_proxy_without_client = "peer"`), and
//! canonicalising IPv4-mapped IPv6 addresses. v2 TLVs are skipped unread, but the address
//! block must still be as long as the spec lays it out for the family (216 bytes for UNIX).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The addresses a PROXY header announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// v1 `PROXY TCP4|TCP6 src dst sport dport`, or v2 PROXY command with an INET/INET6 address block.
    Proxied {
        /// The original client.
        source: SocketAddr,
        /// The address the client connected to.
        destination: SocketAddr,
    },
    /// v1 `PROXY UNKNOWN ...`, v2 LOCAL command, or v2 with an unspecified/UNIX family: no client is named (the caller decides what that means).
    Local,
}

/// Why bytes were rejected as a PROXY header; `role` is `source` or `destination`, `value` the
/// field as received.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyProtocolError {
    /// Neither the v1 `PROXY ` prefix nor the v2 signature.
    #[error("data does not start with a proxy protocol v1 or v2 signature")]
    NotProxyProtocol,
    /// No LF within the first 107 bytes.
    #[error("proxy protocol v1 header longer than 107 bytes")]
    V1TooLong,
    /// The line ends with LF not preceded by CR.
    #[error("proxy protocol v1 header ends with a bare line feed")]
    V1BareLineFeed,
    /// The protocol is not `TCP4`, `TCP6` or `UNKNOWN`.
    #[error("unknown protocol \"{0}\" in proxy protocol v1 header")]
    V1UnknownProtocol(String),
    /// Not exactly 6 fields separated by single spaces; `found` counts `PROXY` itself.
    #[error("proxy protocol v1 header has {found} fields instead of 6")]
    V1FieldCount { found: usize },
    /// An address that does not parse as an IP address.
    #[error("invalid {role} address \"{value}\" in proxy protocol v1 header")]
    V1InvalidAddress { role: &'static str, value: String },
    /// An IPv4 address under `TCP6` or an IPv6 address under `TCP4`.
    #[error("{role} address \"{value}\" does not match {protocol} in proxy protocol v1 header")]
    V1AddressFamily {
        role: &'static str,
        value: String,
        protocol: &'static str,
    },
    /// A port that is not canonical decimal 0-65535.
    #[error("invalid {role} port \"{value}\" in proxy protocol v1 header")]
    V1InvalidPort { role: &'static str, value: String },
    /// Version nibble other than 2.
    #[error("unsupported version {0} in proxy protocol v2 header")]
    V2Version(u8),
    /// Command nibble other than LOCAL (0) or PROXY (1).
    #[error("unsupported command {0} in proxy protocol v2 header")]
    V2Command(u8),
    /// UDP over IPv4 or IPv6, which cannot carry the HTTP connection being read.
    #[error("udp transport (family byte {0:#04x}) in proxy protocol v2 header")]
    V2Udp(u8),
    /// Address family / transport byte not defined by the spec.
    #[error("invalid address family byte {0:#04x} in proxy protocol v2 header")]
    V2Family(u8),
    /// 16 + length exceeds [`MAX_HEADER_LEN`].
    #[error("proxy protocol v2 header of {0} bytes longer than 528 bytes")]
    V2TooLong(usize),
    /// Length field smaller than the address block of the family.
    #[error(
        "proxy protocol v2 address block of {len} bytes shorter than {min} for family {family:#04x}"
    )]
    V2AddressBlockTooShort { family: u8, len: u16, min: u16 },
}

/// Longest header accepted: v1 is at most 107 bytes; v2 is 16 + length, we cap total at 16 + 512.
///
/// The largest address block (UNIX, 216 bytes) fits with room for common TLVs;
/// as TLVs are ignored there is no reason to buffer more of them from a peer.
pub const MAX_HEADER_LEN: usize = V2_FIXED_LEN + 512;

const V1_MAX_LEN: usize = 107;
const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
const V2_FIXED_LEN: usize = 16;

/// Parses a PROXY header at the start of `buf`.
///
/// `Ok(Some((header, consumed)))` when a complete header is at the start; `consumed` is its
/// length in bytes (the caller hands the rest to HTTP).
/// `Ok(None)` when `buf` is a valid prefix of a header but too short to decide: read more and call again.
/// `Err` when `buf` cannot start a valid header (including: does not start with the v1 `PROXY `
/// or the v2 12-byte signature, as soon as that is decidable from the bytes present), or when it
/// is longer than allowed.
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyProtocolError> {
    match buf.first() {
        None => Ok(None),
        Some(b'P') => parse_v1(buf),
        Some(b'\r') => parse_v2(buf),
        Some(_) => Err(ProxyProtocolError::NotProxyProtocol),
    }
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyProtocolError> {
    let Some(rest) = buf.strip_prefix(V1_PREFIX) else {
        return if V1_PREFIX.starts_with(buf) {
            Ok(None)
        } else {
            Err(ProxyProtocolError::NotProxyProtocol)
        };
    };
    let window = buf.get(..V1_MAX_LEN).unwrap_or(buf);
    match window.iter().position(|&b| b == b'\n') {
        Some(lf) => {
            let line = buf
                .get(V1_PREFIX.len()..lf)
                .and_then(|l| l.strip_suffix(b"\r"));
            let line = line.ok_or(ProxyProtocolError::V1BareLineFeed)?;
            Ok(v1_fields(line, true)?.map(|header| (header, lf + 1)))
        }
        None if buf.len() >= V1_MAX_LEN => Err(ProxyProtocolError::V1TooLong),
        // A trailing CR means every field is complete, so they must all be valid already.
        None => match rest.strip_suffix(b"\r") {
            Some(line) => v1_fields(line, true).map(|_| None),
            None => v1_fields(rest, false).map(|_| None),
        },
    }
}

/// Validates the fields after `PROXY `; when not `complete` the last one may be unfinished.
fn v1_fields(rest: &[u8], complete: bool) -> Result<Option<ProxyHeader>, ProxyProtocolError> {
    if let Some(after) = rest.strip_prefix(b"UNKNOWN")
        && (after.is_empty() || after.starts_with(b" "))
    {
        return Ok(complete.then_some(ProxyHeader::Local));
    }
    let fields: Vec<&[u8]> = rest.split(|&b| b == b' ').collect();
    let n = fields.len();
    let (v6, protocol) = match fields.first().copied().unwrap_or_default() {
        b"TCP4" => (false, "TCP4"),
        b"TCP6" => (true, "TCP6"),
        // Every other unfinished prefix of TCP4/TCP6 is one of TCP4.
        p if !complete && n == 1 && (b"TCP4".starts_with(p) || b"UNKNOWN".starts_with(p)) => {
            return Ok(None);
        }
        p => return Err(ProxyProtocolError::V1UnknownProtocol(lossy(p))),
    };
    if n > 5 || (complete && n < 5) {
        return Err(ProxyProtocolError::V1FieldCount { found: n + 1 });
    }
    let (mut ips, mut ports) = (Vec::new(), Vec::new());
    for (i, field) in fields.iter().enumerate().skip(1) {
        let role = if i % 2 == 1 { "source" } else { "destination" };
        match (i <= 2, !complete && i + 1 == n) {
            (true, false) => ips.push(v1_ip(field, v6, protocol, role)?),
            (false, false) => ports.push(v1_port(field, role)?),
            (true, true) if !ip_prefix_ok(field, v6) => return Err(bad_address(role, field)),
            (false, true) if !port_prefix_ok(field) => return Err(bad_port(role, field)),
            _ => {}
        }
    }
    Ok(match (ips.as_slice(), ports.as_slice()) {
        (&[src, dst], &[sport, dport]) => Some(ProxyHeader::Proxied {
            source: SocketAddr::new(src, sport),
            destination: SocketAddr::new(dst, dport),
        }),
        _ => None,
    })
}

fn v1_ip(
    field: &[u8],
    v6: bool,
    protocol: &'static str,
    role: &'static str,
) -> Result<IpAddr, ProxyProtocolError> {
    let text = std::str::from_utf8(field).unwrap_or_default();
    let ip = if v6 {
        text.parse::<Ipv6Addr>().map(IpAddr::V6)
    } else {
        text.parse::<Ipv4Addr>().map(IpAddr::V4)
    };
    ip.map_err(|_| match text.parse::<IpAddr>() {
        Ok(_) => ProxyProtocolError::V1AddressFamily {
            role,
            value: lossy(field),
            protocol,
        },
        Err(_) => bad_address(role, field),
    })
}

fn v1_port(field: &[u8], role: &'static str) -> Result<u16, ProxyProtocolError> {
    let value = (!field.is_empty() && port_prefix_ok(field))
        .then(|| std::str::from_utf8(field).ok()?.parse().ok())
        .flatten();
    value.ok_or_else(|| bad_port(role, field))
}

fn bad_address(role: &'static str, field: &[u8]) -> ProxyProtocolError {
    ProxyProtocolError::V1InvalidAddress {
        role,
        value: lossy(field),
    }
}

fn bad_port(role: &'static str, field: &[u8]) -> ProxyProtocolError {
    ProxyProtocolError::V1InvalidPort {
        role,
        value: lossy(field),
    }
}

/// Whether `field` can still grow into a valid address: a cheap over-approximation for IPv6,
/// exact for IPv4 (dotted quad, no leading zeros); the complete field is parsed strictly.
fn ip_prefix_ok(field: &[u8], v6: bool) -> bool {
    if v6 {
        return field.len() <= 45
            && field
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    }
    let octets: Vec<&[u8]> = field.split(|&b| b == b'.').collect();
    let last = octets.len().saturating_sub(1);
    octets.len() <= 4
        && octets.iter().enumerate().all(|(i, o)| {
            (i == last || !o.is_empty())
                && o.len() <= 3
                && o.iter().all(u8::is_ascii_digit)
                && !(o.len() > 1 && o.starts_with(b"0"))
                && o.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')) <= 255
        })
}

/// Whether `field` is empty or a canonical decimal prefix of a port 0-65535.
fn port_prefix_ok(field: &[u8]) -> bool {
    field.len() <= 5
        && field.iter().all(u8::is_ascii_digit)
        && !(field.len() > 1 && field.starts_with(b"0"))
        && field.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')) <= 65535
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyProtocolError> {
    if !V2_SIGNATURE.starts_with(buf.get(..V2_SIGNATURE.len()).unwrap_or(buf)) {
        return Err(ProxyProtocolError::NotProxyProtocol);
    }
    let Some(&ver_cmd) = buf.get(12) else {
        return Ok(None);
    };
    if ver_cmd >> 4 != 2 {
        return Err(ProxyProtocolError::V2Version(ver_cmd >> 4));
    }
    let local = match ver_cmd & 0x0F {
        0 => true,
        1 => false,
        cmd => return Err(ProxyProtocolError::V2Command(cmd)),
    };
    let Some(&family) = buf.get(13) else {
        return Ok(None);
    };
    // The spec tells receivers to ignore the family of a LOCAL header.
    let min: u16 = match (local, family) {
        (true, _) | (false, 0x00) => 0,
        (false, 0x11) => 12,
        (false, 0x21) => 36,
        (false, 0x31 | 0x32) => 216,
        (false, 0x12 | 0x22) => return Err(ProxyProtocolError::V2Udp(family)),
        (false, _) => return Err(ProxyProtocolError::V2Family(family)),
    };
    let (Some(&hi), Some(&lo)) = (buf.get(14), buf.get(15)) else {
        return Ok(None);
    };
    let len = u16::from_be_bytes([hi, lo]);
    let total = V2_FIXED_LEN + usize::from(len);
    if total > MAX_HEADER_LEN {
        return Err(ProxyProtocolError::V2TooLong(total));
    }
    let too_short = ProxyProtocolError::V2AddressBlockTooShort { family, len, min };
    if len < min {
        return Err(too_short);
    }
    let Some(block) = buf.get(V2_FIXED_LEN..total) else {
        return Ok(None);
    };
    let header = match (local, family) {
        (false, 0x11) => v2_addresses::<4>(block).ok_or(too_short)?,
        (false, 0x21) => v2_addresses::<16>(block).ok_or(too_short)?,
        _ => ProxyHeader::Local,
    };
    Ok(Some((header, total)))
}

/// Reads `src addr, dst addr, src port, dst port` with `N`-byte addresses.
fn v2_addresses<const N: usize>(block: &[u8]) -> Option<ProxyHeader>
where
    IpAddr: From<[u8; N]>,
{
    let ip = |at: usize| {
        Some(IpAddr::from(
            <[u8; N]>::try_from(block.get(at..at + N)?).ok()?,
        ))
    };
    let port = |at: usize| Some(u16::from_be_bytes(block.get(at..at + 2)?.try_into().ok()?));
    let source = SocketAddr::new(ip(0)?, port(2 * N)?);
    let destination = SocketAddr::new(ip(N)?, port(2 * N + 2)?);
    Some(ProxyHeader::Proxied {
        source,
        destination,
    })
}

#[cfg(test)]
mod tests;
