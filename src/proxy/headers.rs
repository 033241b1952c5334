//! Header rewriting between client and upstream: hop-by-hop fields are
//! dropped (RFC 9110 §7.6.1), `x-residency-*` fields are never passed in
//! either direction (they are the proxy's own), body framing is kept as the
//! client sent it, and the forwarding headers are extended.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use http::header::{
    CONNECTION, FORWARDED, HOST, HeaderName, HeaderValue, TE, TRANSFER_ENCODING, UPGRADE,
};

use super::client_ip::X_FORWARDED_FOR;

const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const RESIDENCY_PREFIX: &str = "x-residency-";

/// Fields that only concern one connection (`TE` aside, handled apart).
const HOP_BY_HOP: [HeaderName; 7] = [
    CONNECTION,
    PROXY_CONNECTION,
    KEEP_ALIVE,
    TRANSFER_ENCODING,
    UPGRADE,
    http::header::PROXY_AUTHORIZATION,
    http::header::PROXY_AUTHENTICATE,
];

/// Removes the hop-by-hop fields, those named in `Connection`, and the
/// proxy's own `x-residency-*` fields. `Transfer-Encoding` is removed here
/// and re-added by the caller when the body is chunked, so only `chunked`
/// ever reaches the other side. `TE: trailers` is kept: it only announces
/// that trailers are understood, which the proxy passes through.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of these: one pass over the names instead
    // of a lookup per field.
    if !headers
        .keys()
        .any(|k| HOP_BY_HOP.contains(k) || k == TE || k.as_str().starts_with(RESIDENCY_PREFIX))
    {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if name != TE {
            headers.remove(&name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    let te_trailers = headers
        .get(TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if !te_trailers {
        headers.remove(TE);
    }
    let own: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with(RESIDENCY_PREFIX))
        .cloned()
        .collect();
    for name in own {
        headers.remove(name);
    }
}

/// True when the message body is chunked (hyper has already refused any
/// `Transfer-Encoding` whose final coding is not `chunked`).
pub fn is_chunked(headers: &HeaderMap) -> bool {
    headers.contains_key(TRANSFER_ENCODING)
}

/// Marks a forwarded message as chunked, as the client or upstream sent it.
pub fn set_chunked(headers: &mut HeaderMap) {
    headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
}

/// Sets `Host` to the upstream authority when the client's is not kept.
pub fn set_host(headers: &mut HeaderMap, authority: &str) {
    if let Ok(v) = HeaderValue::from_str(authority) {
        headers.insert(HOST, v);
    }
}

/// `X-Forwarded-Host`: a host a storage may read instead of `Host`.
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Extends `X-Forwarded-For` and `Forwarded` with the peer. From a trusted
/// peer the existing chain is kept and the peer appended; from anyone else
/// the client-supplied values are dropped, so the upstream never receives a
/// chain the proxy could not vouch for — nor an `X-Forwarded-Host` that
/// would name another bucket than the `Host` the route was chosen on.
pub fn add_forwarding(headers: &mut HeaderMap, peer: SocketAddr, peer_trusted: bool) {
    if !peer_trusted {
        headers.remove(&X_FORWARDED_FOR);
        headers.remove(FORWARDED);
        headers.remove(X_FORWARDED_HOST);
    }
    let ip = peer.ip();
    // Several X-Forwarded-For lines are folded into one list, in order;
    // one line is extended unless blank. Built in one buffer: no string
    // per line.
    let mut xff = String::with_capacity(64);
    let valid = || {
        headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
    };
    if valid().nth(1).is_some() {
        for line in valid() {
            xff.push_str(line);
            xff.push_str(", ");
        }
    } else if let Some(prev) = headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok())
        && !prev.trim().is_empty()
    {
        xff.push_str(prev);
        xff.push_str(", ");
    }
    push_ip(&mut xff, ip);
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(&X_FORWARDED_FOR, v);
    }
    xff.clear();
    let node = &mut xff;
    match ip {
        IpAddr::V4(_) => {
            node.push_str("for=");
            push_ip(node, ip);
        }
        IpAddr::V6(_) => {
            node.push_str("for=\"[");
            push_ip(node, ip);
            node.push_str("]\"");
        }
    }
    node.push_str(";proto=http");
    if let Ok(v) = HeaderValue::from_str(node) {
        headers.append(FORWARDED, v);
    }
}

/// Appends `ip` as `Display` writes it; an IPv4 address digit by digit:
/// several are written per request (forwarding fields, audit record), and
/// the formatting machinery costs more than a thousand instructions each.
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// `ip` as text ([`push_ip`]).
pub fn ip_text(ip: IpAddr) -> String {
    let mut s = String::with_capacity(15);
    push_ip(&mut s, ip);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_and_own_headers_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, x-custom-hop"),
            ("x-custom-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("te", "gzip"),
            ("x-residency-decision", "allowed"),
            ("X-Residency-Anything", "x"),
            ("authorization", "AWS4-HMAC-SHA256 Credential=..."),
            ("x-amz-date", "20260101T000000Z"),
            ("content-length", "5"),
        ]);
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["authorization", "content-length", "x-amz-date"]);
    }

    #[test]
    fn te_trailers_is_kept() {
        let mut h = map(&[("te", "trailers")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.get(TE).unwrap(), "trailers");
    }

    #[test]
    fn forwarding_appends_from_trusted_and_replaces_from_untrusted() {
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let mut h = map(&[
            ("x-forwarded-for", "81.0.0.1"),
            ("forwarded", "for=81.0.0.1"),
        ]);
        add_forwarding(&mut h, peer, true);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "81.0.0.1, 10.0.0.1");
        let fwd: Vec<_> = h.get_all(FORWARDED).iter().collect();
        assert_eq!(fwd, ["for=81.0.0.1", "for=10.0.0.1;proto=http"]);

        let peer: SocketAddr = "[2001:db8::5]:5000".parse().unwrap();
        let mut h = map(&[
            ("x-forwarded-for", "81.0.0.1"),
            ("forwarded", "for=81.0.0.1"),
        ]);
        add_forwarding(&mut h, peer, false);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "2001:db8::5");
        assert_eq!(
            h.get(FORWARDED).unwrap(),
            "for=\"[2001:db8::5]\";proto=http"
        );
    }

    #[test]
    fn several_xff_lines_fold_into_one() {
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let mut h = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
        ]);
        add_forwarding(&mut h, peer, true);
        let all: Vec<_> = h.get_all("x-forwarded-for").iter().collect();
        assert_eq!(all, ["1.1.1.1, 2.2.2.2, 10.0.0.1"]);
    }

    #[test]
    fn ip_text_of_boundary_octets() {
        for ip in ["0.0.0.0", "255.255.255.255", "10.0.100.9", "1.20.199.250"] {
            let parsed: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(parsed), ip);
        }
    }

    proptest::proptest! {
        #[test]
        fn ip_text_is_what_display_writes(bits: u32, v6: u128) {
            let v4 = IpAddr::from(std::net::Ipv4Addr::from(bits));
            proptest::prop_assert_eq!(ip_text(v4), v4.to_string());
            let v6 = IpAddr::from(std::net::Ipv6Addr::from(v6));
            proptest::prop_assert_eq!(ip_text(v6), v6.to_string());
        }
    }
}
