//! The X-Forwarded-For and Forwarded parsers, and `client_addr` on header
//! maps built from the input: never a panic; whatever parses is an address
//! that prints and parses back; an untrusted peer is always the client.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use http::header::{FORWARDED, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use residency_proxy::config::ClientIpSource;
use residency_proxy::policy::NetworkTable;
use residency_proxy::proxy::client_ip::{
    ClientAddr, X_FORWARDED_FOR, client_addr, parse_forwarded_element, parse_xff_entry,
};

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
});
