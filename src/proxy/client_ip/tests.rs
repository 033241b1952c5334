use super::*;
use http::HeaderValue;
use ipnet::IpNet;

fn trusted(nets: &[&str]) -> NetworkTable {
    let nets: Vec<IpNet> = nets.iter().map(|n| n.parse().unwrap()).collect();
    NetworkTable::compile(&nets)
}

fn headers(name: &str, values: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn peer(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), 40000)
}

fn ip(s: &str) -> ClientAddr {
    ClientAddr::Ip(s.parse().unwrap())
}

fn xff(peer_ip: &str, values: &[&str]) -> ClientAddr {
    let t = trusted(&["10.0.0.0/8", "192.168.0.0/16"]);
    client_addr(
        peer(peer_ip),
        ip(peer_ip),
        &headers("x-forwarded-for", values),
        ClientIpSource::XForwardedFor,
        &t,
    )
}

fn fwd(peer_ip: &str, values: &[&str]) -> ClientAddr {
    let t = trusted(&["10.0.0.0/8"]);
    client_addr(
        peer(peer_ip),
        ip(peer_ip),
        &headers("forwarded", values),
        ClientIpSource::Forwarded,
        &t,
    )
}

#[test]
fn untrusted_peer_headers_are_ignored() {
    assert_eq!(xff("8.8.8.8", &["81.0.0.1"]), ip("8.8.8.8"));
    assert_eq!(fwd("8.8.8.8", &["for=81.0.0.1"]), ip("8.8.8.8"));
    assert_eq!(xff("8.8.8.8", &["garbage"]), ip("8.8.8.8"));
}

#[test]
fn peer_source_ignores_headers_even_from_trusted_proxies() {
    let t = trusted(&["10.0.0.0/8"]);
    let h = headers("x-forwarded-for", &["81.0.0.1"]);
    assert_eq!(
        client_addr(
            peer("10.0.0.1"),
            ip("10.0.0.1"),
            &h,
            ClientIpSource::Peer,
            &t
        ),
        ip("10.0.0.1")
    );
}

#[test]
fn rightmost_untrusted_entry_wins() {
    // The client forged 81.0.0.1; the trusted proxy appended what it saw.
    assert_eq!(xff("10.0.0.1", &["81.0.0.1, 8.8.8.8"]), ip("8.8.8.8"));
    assert_eq!(
        xff("10.0.0.1", &["81.0.0.1, 8.8.8.8, 192.168.1.5"]),
        ip("8.8.8.8")
    );
    // Several header lines form one list, in order.
    assert_eq!(
        xff("10.0.0.1", &["81.0.0.1", "8.8.8.8", "10.9.9.9"]),
        ip("8.8.8.8")
    );
}

#[test]
fn all_trusted_chain_gives_leftmost_and_missing_header_gives_peer() {
    assert_eq!(xff("10.0.0.1", &["10.1.1.1, 192.168.0.7"]), ip("10.1.1.1"));
    assert_eq!(xff("10.0.0.1", &[]), ip("10.0.0.1"));
}

#[test]
fn malformed_values_are_never_believed() {
    for bad in [
        "",
        " ",
        "unknown",
        "8.8.8",
        "08.8.8.8",
        "0x08.8.8.8",
        "8.8.8.8.8",
        "fe80::1%eth0",
        "[::1",
        "1.2.3.4:99999",
        "1.2.3.4:",
        "\"8.8.8.8\"",
        "8.8.8.8 9.9.9.9",
    ] {
        assert_eq!(xff("10.0.0.1", &[bad]), ClientAddr::Untraceable, "{bad:?}");
        // Even when a valid entry stands to its left.
        let line = format!("81.0.0.1, {bad}");
        assert_eq!(
            xff("10.0.0.1", &[&line]),
            ClientAddr::Untraceable,
            "{line:?}"
        );
    }
    // Garbage left of the decisive entry is never reached.
    assert_eq!(xff("10.0.0.1", &["garbage, 8.8.8.8"]), ip("8.8.8.8"));
}

#[test]
fn xff_accepts_ports_and_brackets() {
    assert_eq!(
        parse_xff_entry("1.2.3.4:80"),
        Some("1.2.3.4".parse().unwrap())
    );
    assert_eq!(
        parse_xff_entry("[2001:db8::1]:443"),
        Some("2001:db8::1".parse().unwrap())
    );
    assert_eq!(
        parse_xff_entry("[2001:db8::1]"),
        Some("2001:db8::1".parse().unwrap())
    );
    assert_eq!(
        parse_xff_entry("2001:db8::1"),
        Some("2001:db8::1".parse().unwrap())
    );
    assert_eq!(parse_xff_entry("[1.2.3.4]"), None);
}

#[test]
fn trusted_check_sees_through_ipv6_wrapping() {
    // A trusted proxy listed as 10.0.0.0/8 connecting over a mapped address.
    assert_eq!(xff("::ffff:10.0.0.1", &["8.8.8.8"]), ip("8.8.8.8"));
    // A wrapped trusted address in the chain is skipped like the plain one.
    assert_eq!(
        xff("10.0.0.1", &["8.8.8.8, ::ffff:10.2.2.2"]),
        ip("8.8.8.8")
    );
}

#[test]
fn forwarded_rfc7239_forms() {
    assert_eq!(
        fwd("10.0.0.1", &["for=192.0.2.60;proto=http;by=203.0.113.43"]),
        ip("192.0.2.60")
    );
    assert_eq!(
        fwd("10.0.0.1", &["For=\"[2001:db8:cafe::17]:4711\""]),
        ip("2001:db8:cafe::17")
    );
    assert_eq!(
        fwd("10.0.0.1", &["for=192.0.2.43, for=198.51.100.17"]),
        ip("198.51.100.17")
    );
    assert_eq!(
        fwd("10.0.0.1", &["for=192.0.2.43, for=10.3.3.3"]),
        ip("192.0.2.43")
    );
    assert_eq!(
        fwd("10.0.0.1", &["for=\"192.0.2.43:80\""]),
        ip("192.0.2.43")
    );
}

#[test]
fn forwarded_malformed_is_untraceable() {
    for bad in [
        "for=unknown",
        "for=_hidden",
        "proto=http",
        "for=2001:db8::1",
        "for=\"[2001:db8::1]",
        "for=1.2.3.4;for=5.6.7.8",
        "for",
        "for=\"1.2.3.4\\\"\"",
        "for=1.2.3.4, ",
    ] {
        assert_eq!(fwd("10.0.0.1", &[bad]), ClientAddr::Untraceable, "{bad:?}");
    }
}

#[test]
fn quoted_commas_do_not_split_elements() {
    // A comma inside a quoted value belongs to that value (and makes it malformed).
    assert_eq!(
        fwd("10.0.0.1", &["for=\"1.2.3.4,5.6.7.8\""]),
        ClientAddr::Untraceable
    );
}

#[test]
fn proxy_protocol_source_uses_the_connection_client() {
    let t = trusted(&["10.0.0.0/8"]);
    let h = headers("x-forwarded-for", &["81.0.0.1"]);
    assert_eq!(
        client_addr(
            peer("10.0.0.1"),
            ip("8.8.8.8"),
            &h,
            ClientIpSource::ProxyProtocol,
            &t
        ),
        ip("8.8.8.8")
    );
}
