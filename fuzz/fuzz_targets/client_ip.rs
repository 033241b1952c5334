//! The X-Forwarded-For and Forwarded parsers, and `client_addr` on header
//! maps built from the input: never a panic; whatever parses is an address
//! that prints and parses back; an untrusted peer is always the client; an
//! address believed from a trusted proxy is spelled in the input; a quote
//! left open in any field line is never believed; and whatever the field
//! lines say, the hop a trusted proxy appends (nginx:
//! `$http_forwarded, for=$remote_addr`) is the answer or the chain is
//! untraceable.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use http::header::{FORWARDED, HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use residency_proxy::config::ClientIpSource;
use residency_proxy::policy::NetworkTable;
use residency_proxy::proxy::client_ip::{
    ClientAddr, X_FORWARDED_FOR, client_addr, parse_forwarded_element, parse_xff_entry,
};

/// True when some run of address characters in `lines` (backslashes
/// removed: quoted-pairs) spells `ip`, with or without a `:port`.
fn spelled(ip: IpAddr, lines: &[&[u8]]) -> bool {
    lines.iter().any(|line| {
        let text: String = String::from_utf8_lossy(line)
            .chars()
            .filter(|c| *c != '\\')
            .collect();
        text.split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':'))
            .any(|run| {
                run.parse::<IpAddr>().ok() == Some(ip)
                    || run
                        .rsplit_once(':')
                        .is_some_and(|(host, _)| host.parse::<IpAddr>().ok() == Some(ip))
            })
    })
}

/// True when a quoted-string opened in `line` is not closed in it.
fn open_quote(line: &[u8]) -> bool {
    let (mut open, mut escaped) = (false, false);
    for &b in line {
        match b {
            _ if escaped => escaped = false,
            b'\\' if open => escaped = true,
            b'"' => open = !open,
            _ => {}
        }
    }
    open
}

fn map_of(name: &HeaderName, lines: &[&[u8]]) -> Option<HeaderMap> {
    let mut headers = HeaderMap::new();
    for line in lines {
        headers.append(name.clone(), HeaderValue::from_bytes(line).ok()?);
    }
    Some(headers)
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(ip) = parse_xff_entry(&text) {
        assert_eq!(parse_xff_entry(&ip.to_string()), Some(ip), "{text:?}");
    }
    if let Some(ip) = parse_forwarded_element(&text) {
        let canonical = match ip {
            IpAddr::V4(a) => format!("for={a}"),
            IpAddr::V6(a) => format!("for=\"[{a}]\""),
        };
        assert_eq!(parse_forwarded_element(&canonical), Some(ip), "{text:?}");
    }
    // Header lines split on NUL, alternating between the two headers.
    let mut headers = HeaderMap::new();
    for (i, line) in data.split(|b| *b == 0).enumerate() {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            let name = if i % 2 == 0 {
                &X_FORWARDED_FOR
            } else {
                &FORWARDED
            };
            headers.append(name.clone(), v);
        }
    }
    let nets: [ipnet::IpNet; 1] = ["10.0.0.0/8".parse().expect("net")];
    let trusted = NetworkTable::compile(&nets);
    let untrusted = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)), 1);
    let proxy = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 1);
    for source in [ClientIpSource::XForwardedFor, ClientIpSource::Forwarded] {
        let c = client_addr(
            untrusted,
            ClientAddr::Ip(untrusted.ip()),
            &headers,
            source,
            &trusted,
        );
        assert_eq!(c, ClientAddr::Ip(untrusted.ip()));
        // From a trusted proxy: an address outside the trusted networks, or
        // untraceable, or the proxy itself when it sent no header.
        match client_addr(
            proxy,
            ClientAddr::Ip(proxy.ip()),
            &headers,
            source,
            &trusted,
        ) {
            ClientAddr::Ip(ip) if ip == proxy.ip() => {}
            ClientAddr::Ip(_) | ClientAddr::Untraceable => {}
        }
    }
    // The whole input as the field lines of one header, split on NUL.
    let lines: Vec<&[u8]> = data.split(|b| *b == 0).collect();
    for (source, name) in [
        (ClientIpSource::XForwardedFor, &X_FORWARDED_FOR),
        (ClientIpSource::Forwarded, &FORWARDED),
    ] {
        let Some(map) = map_of(name, &lines) else {
            continue;
        };
        let got = client_addr(proxy, ClientAddr::Untraceable, &map, source, &trusted);
        if let ClientAddr::Ip(ip) = got {
            assert!(spelled(ip, &lines), "{source:?} {lines:?} -> {ip}");
        }
        let quoted = match source {
            ClientIpSource::Forwarded => lines.iter().any(|l| open_quote(l)),
            _ => lines.iter().any(|l| l.contains(&b'"')),
        };
        if quoted {
            assert_eq!(got, ClientAddr::Untraceable, "{source:?} {lines:?}");
        }
        // The hop a trusted proxy appends, to the last line or as its own.
        let hop: &[u8] = match source {
            ClientIpSource::Forwarded => b"for=9.9.9.9",
            _ => b"9.9.9.9",
        };
        let mut same_line = lines.clone();
        let mut last = same_line.pop().unwrap_or_default().to_vec();
        last.extend_from_slice(b", ");
        last.extend_from_slice(hop);
        same_line.push(&last);
        let mut own_line = lines.clone();
        own_line.push(hop);
        for appended in [same_line, own_line] {
            let Some(map) = map_of(name, &appended) else {
                continue;
            };
            let got = client_addr(proxy, ClientAddr::Untraceable, &map, source, &trusted);
            assert!(
                got == ClientAddr::Untraceable
                    || got == ClientAddr::Ip(IpAddr::V4(Ipv4Addr::new(9, 9, 9, 9))),
                "{source:?} {appended:?} -> {got:?}"
            );
        }
    }
});
