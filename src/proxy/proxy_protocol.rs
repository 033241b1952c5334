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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ProxyHeader::Local;
    use ProxyProtocolError as E;

    fn proxied(source: &str, destination: &str) -> ProxyHeader {
        let (source, destination) = (source.parse().unwrap(), destination.parse().unwrap());
        ProxyHeader::Proxied {
            source,
            destination,
        }
    }

    fn v2(ver_cmd: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let len = u16::try_from(block.len()).unwrap().to_be_bytes();
        [V2_SIGNATURE, &[ver_cmd, family], &len, block].concat()
    }

    /// An INET6 address block for `src`:12345 -> `dst`:443.
    fn inet6(src: &str, dst: &str) -> Vec<u8> {
        let (src, dst): (Ipv6Addr, Ipv6Addr) = (src.parse().unwrap(), dst.parse().unwrap());
        [&src.octets()[..], &dst.octets(), &[0x30, 0x39, 0x01, 0xBB]].concat()
    }

    // 192.0.2.1:12345 -> 198.51.100.2:443
    const INET4: [u8; 12] = [192, 0, 2, 1, 198, 51, 100, 2, 0x30, 0x39, 0x01, 0xBB];
    const TLV: [u8; 6] = [0x04, 0x00, 0x03, 1, 2, 3]; // PP2_TYPE_NOOP

    fn addr(role: &'static str, value: &str) -> E {
        E::V1InvalidAddress {
            role,
            value: value.into(),
        }
    }

    fn port(role: &'static str, value: &str) -> E {
        E::V1InvalidPort {
            role,
            value: value.into(),
        }
    }

    fn family(role: &'static str, value: &str, protocol: &'static str) -> E {
        E::V1AddressFamily {
            role,
            value: value.into(),
            protocol,
        }
    }

    fn proto(value: &str) -> E {
        E::V1UnknownProtocol(value.into())
    }

    #[test]
    fn v1_complete_headers() {
        let mapped = "PROXY TCP6 ::ffff:192.0.2.1 ::ffff:198.51.100.2 1 2\r\n";
        #[rustfmt::skip]
        let cases = [
            ("PROXY TCP4 192.0.2.1 198.51.100.2 12345 443\r\n", proxied("192.0.2.1:12345", "198.51.100.2:443")),
            ("PROXY TCP6 2001:db8::1 2001:db8::2 0 65535\r\n", proxied("[2001:db8::1]:0", "[2001:db8::2]:65535")),
            (mapped, proxied("[::ffff:192.0.2.1]:1", "[::ffff:198.51.100.2]:2")),
            ("PROXY UNKNOWN\r\n", Local),
            ("PROXY UNKNOWN ffff::1 ffff::2 65535 65535\r\n", Local),
            ("PROXY UNKNOWN \u{e9} \r \r\n", Local),
        ];
        for (input, expected) in cases {
            let with_body = format!("{input}GET / HTTP/1.1\r\n\r\n");
            let got = parse(with_body.as_bytes());
            assert_eq!(got, Ok(Some((expected, input.len()))), "{input:?}");
        }
        // IPv4-mapped addresses stay IPv6: canonicalising them is the caller's job.
        let got = parse(mapped.as_bytes());
        assert!(matches!(
            got,
            Ok(Some((
                ProxyHeader::Proxied {
                    source: SocketAddr::V6(_),
                    ..
                },
                _
            )))
        ));
        assert_eq!(parse(b"PROXY UNKNOWN \xff\r\n"), Ok(Some((Local, 17))));
    }

    #[test]
    fn v1_length_limit() {
        let line = format!("PROXY UNKNOWN {}\r\n", "x".repeat(91)).into_bytes();
        assert_eq!(line.len(), 107);
        assert_eq!(parse(&line), Ok(Some((Local, 107))));
        let long = [&line[..20], b"x", &line[20..]].concat();
        assert_eq!(parse(&long), Err(E::V1TooLong));
        assert_eq!(parse(&long[..107]), Err(E::V1TooLong));
        assert_eq!(parse(&long[..106]), Ok(None));
        let message = E::V1TooLong.to_string();
        assert_eq!(message, "proxy protocol v1 header longer than 107 bytes");
    }

    #[test]
    fn v1_malformed() {
        #[rustfmt::skip]
        let cases = [
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", E::V1BareLineFeed),
            ("PROXY UNKNOWN\n", E::V1BareLineFeed),
            ("PROXY \n", E::V1BareLineFeed),
            ("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", addr("source", "1.2.3")),
            ("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", addr("source", "01.2.3.4")),
            ("PROXY TCP4 1.2.3.4 5.6.7.256 1 2\r\n", addr("destination", "5.6.7.256")),
            ("PROXY TCP6 ::1 ::g 1 2\r\n", addr("destination", "::g")),
            ("PROXY TCP6 [::1] ::2 1 2\r\n", addr("source", "[::1]")),
            ("PROXY TCP4 1.2.3.4 ::1 1 2\r\n", family("destination", "::1", "TCP4")),
            ("PROXY TCP6 1.2.3.4 ::1 1 2\r\n", family("source", "1.2.3.4", "TCP6")),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", port("source", "+1")),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", port("source", "01")),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", port("destination", "65536")),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n", port("destination", "-2")),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", port("destination", "2\r")),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", E::V1FieldCount { found: 5 }),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", E::V1FieldCount { found: 7 }),
            ("PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n", E::V1FieldCount { found: 7 }),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", E::V1FieldCount { found: 7 }),
            ("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", proto("TCP5")),
            ("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", proto("tcp4")),
            ("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", proto("")),
            ("PROXY UNKNOWNX\r\n", proto("UNKNOWNX")),
            ("PROXY \r\n", proto("")),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input.as_bytes()), Err(expected), "{input:?}");
        }
        let not_utf8 = parse(b"PROXY TCP4 1.2.3.\xff 5.6.7.8 1 2\r\n");
        assert_eq!(not_utf8, Err(addr("source", "1.2.3.\u{fffd}")));
        assert!(
            "01.2.3.4".parse::<Ipv4Addr>().is_err(),
            "std must reject leading zeros"
        );
        let message = addr("source", "1.2.3").to_string();
        assert_eq!(
            message,
            "invalid source address \"1.2.3\" in proxy protocol v1 header"
        );
    }

    #[test]
    fn not_a_proxy_header() {
        #[rustfmt::skip]
        let cases: [&[u8]; 7] = [b"GET / HTTP/1.1\r\n", b"G", b"PROXX", b"PROXY\r\n", b"proxy ", b"\x16\x03\x01", b"\r\nGET"];
        for input in cases {
            assert_eq!(parse(input), Err(E::NotProxyProtocol), "{input:?}");
        }
    }

    #[test]
    fn v1_partial() {
        #[rustfmt::skip]
        let pending = [
            "", "P", "PRO", "PROXY", "PROXY ", "PROXY T", "PROXY TCP4", "PROXY TCP4 ", "PROXY TCP4 1.2",
            "PROXY TCP4 1.2.3.4", "PROXY TCP4 1.2.3.4 ", "PROXY TCP6 2001:db8::", "PROXY TCP6 ::1 ::2 0",
            "PROXY TCP4 1.2.3.4 5.6.7.8 1 65535", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", "PROXY U",
            "PROXY UNKNOWN", "PROXY UNKNOWN\r", "PROXY UNKNOWN whatever",
        ];
        for input in pending {
            assert_eq!(parse(input.as_bytes()), Ok(None), "{input:?}");
        }
        #[rustfmt::skip]
        let cases = [
            ("PROXY X", proto("X")),
            ("PROXY TCP4 1.2.3.4x", addr("source", "1.2.3.4x")),
            ("PROXY TCP4 256", addr("source", "256")),
            ("PROXY TCP4 01", addr("source", "01")),
            ("PROXY TCP4 1..", addr("source", "1..")),
            ("PROXY TCP4 1.2.3.4.", addr("source", "1.2.3.4.")),
            ("PROXY TCP4 1.2.3 ", addr("source", "1.2.3")),
            ("PROXY TCP6 1.2.3.4 ", family("source", "1.2.3.4", "TCP6")),
            ("PROXY TCP6 ::1 ::x", addr("destination", "::x")),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 01", port("source", "01")),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536", port("destination", "65536")),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", port("destination", "2\rX")),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 ", E::V1FieldCount { found: 7 }),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1\r", E::V1FieldCount { found: 5 }),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input.as_bytes()), Err(expected), "{input:?}");
        }
        // 45 characters is the longest IPv6 text form, e.g. "ffff:...:255.255.255.255".
        let long6 = "1".repeat(46);
        let got = parse(format!("PROXY TCP6 {long6}").as_bytes());
        assert_eq!(got, Err(addr("source", &long6)));
    }

    #[test]
    fn v2_complete_headers() {
        let tcp4 = proxied("192.0.2.1:12345", "198.51.100.2:443");
        #[rustfmt::skip]
        let cases = [
            (v2(0x21, 0x11, &INET4), tcp4),
            (v2(0x21, 0x11, &[&INET4[..], &TLV].concat()), tcp4),
            (v2(0x21, 0x11, &[7; 512]), proxied("7.7.7.7:1799", "7.7.7.7:1799")),
            (v2(0x21, 0x21, &inet6("2001:db8::1", "2001:db8::2")), proxied("[2001:db8::1]:12345", "[2001:db8::2]:443")),
            (v2(0x21, 0x21, &[inet6("::ffff:192.0.2.1", "::1"), TLV.to_vec()].concat()), proxied("[::ffff:192.0.2.1]:12345", "[::1]:443")),
            (v2(0x21, 0x00, &[]), Local),
            (v2(0x21, 0x00, &TLV), Local),
            (v2(0x21, 0x31, &[0; 216]), Local),
            (v2(0x21, 0x32, &[0; 216]), Local),
            (v2(0x20, 0x11, &INET4), Local),
            (v2(0x20, 0x00, &[]), Local),
            (v2(0x20, 0x12, &[1, 2, 3]), Local),
            (v2(0x20, 0xFF, &[]), Local),
        ];
        for (header, expected) in cases {
            let with_body = [&header[..], b"GET / HTTP/1.1\r\n\r\n"].concat();
            let got = parse(&with_body);
            assert_eq!(got, Ok(Some((expected, header.len()))), "{header:?}");
        }
        assert_eq!(MAX_HEADER_LEN, 528);
        let signature = [
            0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
        ];
        assert_eq!(V2_SIGNATURE, signature);
    }

    #[test]
    fn v2_malformed() {
        let short = |family, len, min| E::V2AddressBlockTooShort { family, len, min };
        #[rustfmt::skip]
        let cases = [
            (v2(0x11, 0x11, &INET4), E::V2Version(1)),
            (v2(0x31, 0x11, &INET4), E::V2Version(3)),
            (v2(0x01, 0x11, &INET4), E::V2Version(0)),
            (v2(0x22, 0x11, &INET4), E::V2Command(2)),
            (v2(0x2F, 0x11, &INET4), E::V2Command(15)),
            (v2(0x21, 0x12, &INET4), E::V2Udp(0x12)),
            (v2(0x21, 0x22, &[0; 36]), E::V2Udp(0x22)),
            (v2(0x21, 0x01, &INET4), E::V2Family(0x01)),
            (v2(0x21, 0x10, &INET4), E::V2Family(0x10)),
            (v2(0x21, 0x13, &INET4), E::V2Family(0x13)),
            (v2(0x21, 0x41, &INET4), E::V2Family(0x41)),
            (v2(0x21, 0x11, &[0; 11]), short(0x11, 11, 12)),
            (v2(0x21, 0x21, &[0; 35]), short(0x21, 35, 36)),
            (v2(0x21, 0x21, &INET4), short(0x21, 12, 36)),
            (v2(0x21, 0x31, &[0; 215]), short(0x31, 215, 216)),
            (v2(0x21, 0x11, &[0; 513]), E::V2TooLong(529)),
        ];
        for (header, expected) in cases {
            assert_eq!(parse(&header), Err(expected), "{header:?}");
            // Decidable from the fixed 16 bytes, without waiting for the address block.
            assert_eq!(parse(&header[..16]), parse(&header), "{header:?}");
        }
        let max = [V2_SIGNATURE, &[0x21, 0x11, 0xFF, 0xFF]].concat();
        assert_eq!(parse(&max), Err(E::V2TooLong(65551)));
        assert_eq!(parse(&max[..13]), Ok(None));
        assert_eq!(
            parse(&[V2_SIGNATURE, &[0x11]].concat()),
            Err(E::V2Version(1))
        );
        assert_eq!(
            parse(&[V2_SIGNATURE, &[0x21, 0x12]].concat()),
            Err(E::V2Udp(0x12))
        );
        for i in 1..V2_SIGNATURE.len() {
            let mut bad = V2_SIGNATURE[..=i].to_vec();
            bad[i] ^= 0x20;
            assert_eq!(parse(&bad), Err(E::NotProxyProtocol), "byte {i}");
        }
    }

    #[test]
    fn every_prefix_is_pending_and_trailing_bytes_are_left() {
        let headers = [
            b"PROXY TCP4 192.0.2.1 198.51.100.2 12345 443\r\n".to_vec(),
            b"PROXY TCP6 2001:db8::1 ::ffff:192.0.2.1 0 65535\r\n".to_vec(),
            b"PROXY UNKNOWN\r\n".to_vec(),
            format!("PROXY UNKNOWN {}\r\n", "x".repeat(91)).into_bytes(),
            v2(0x21, 0x11, &INET4),
            v2(
                0x21,
                0x21,
                &[inet6("2001:db8::1", "::1"), TLV.to_vec()].concat(),
            ),
            v2(0x20, 0x00, &[]),
            v2(0x21, 0x31, &[0; 216]),
        ];
        for header in &headers {
            let (expected, consumed) = parse(header).unwrap().unwrap();
            assert_eq!(consumed, header.len());
            for k in 0..header.len() {
                assert_eq!(parse(&header[..k]), Ok(None), "{header:?} cut at {k}");
            }
            for next in &headers {
                let got = parse(&[&header[..], next].concat());
                assert_eq!(got, Ok(Some((expected, header.len()))));
            }
        }
    }

    #[test]
    fn never_panics_on_mutated_input() {
        let tcp6 = v2(0x21, 0x21, &inet6("::1", "::2"));
        let mut state = 0x2545_f491_4f6c_dd1d_u64; // xorshift64
        for seed in [tcp6, b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec()] {
            for _ in 0..20_000 {
                let mut input = seed.clone();
                for _ in 0..3 {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let at = usize::try_from(state % 29).unwrap();
                    input[at] = state.to_be_bytes()[0];
                    input.truncate(input.len() - usize::from(state & 0x100 != 0));
                }
                if let Ok(Some((_, consumed))) = parse(&input) {
                    assert!(consumed <= input.len());
                }
            }
        }
    }
}
