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

/// Properties over random addresses and header values.
mod properties {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
            any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        ]
    }

    /// Header text as an attacker writes it: addresses, separators, quotes,
    /// brackets, parameters, and junk.
    fn header_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            any_ip().prop_map(|ip| ip.to_string()),
            any_ip().prop_map(|ip| format!("for={ip}")),
            any_ip().prop_map(|ip| format!("for=\"[{ip}]:443\"")),
            Just(",".to_owned()),
            Just(", ".to_owned()),
            Just(";".to_owned()),
            Just("\"".to_owned()),
            Just("[".to_owned()),
            Just("]".to_owned()),
            Just(":80".to_owned()),
            Just("unknown".to_owned()),
            Just("%eth0".to_owned()),
            "[ -~]{0,12}",
        ];
        prop::collection::vec(piece, 0..8).prop_map(|v| v.concat())
    }

    fn map_of(fields: &[(bool, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (xff, v) in fields {
            let name = if *xff { &X_FORWARDED_FOR } else { &FORWARDED };
            if let Ok(v) = HeaderValue::from_str(v) {
                h.append(name.clone(), v);
            }
        }
        h
    }

    const SOURCES: [ClientIpSource; 4] = [
        ClientIpSource::Peer,
        ClientIpSource::XForwardedFor,
        ClientIpSource::Forwarded,
        ClientIpSource::ProxyProtocol,
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn an_untrusted_peer_is_the_client_whatever_its_headers_say_in_any_order(
            peer_ip in any::<u32>().prop_map(Ipv4Addr::from).prop_filter("untrusted", |a| a.octets()[0] != 10),
            fields in prop::collection::vec((any::<bool>(), header_text()), 0..6),
            rotate in 0usize..6,
        ) {
            let t = trusted(&["10.0.0.0/8"]);
            let p = SocketAddr::new(IpAddr::V4(peer_ip), 40000);
            let mut shuffled = fields.clone();
            if !shuffled.is_empty() {
                let n = rotate % shuffled.len();
                shuffled.rotate_left(n);
                shuffled.reverse();
            }
            for source in SOURCES {
                let conn = ClientAddr::Ip(p.ip());
                let a = client_addr(p, conn, &map_of(&fields), source, &t);
                let b = client_addr(p, conn, &map_of(&shuffled), source, &t);
                prop_assert_eq!(a, ClientAddr::Ip(p.ip()));
                prop_assert_eq!(b, ClientAddr::Ip(p.ip()));
            }
        }

        #[test]
        fn a_trusted_chain_names_the_rightmost_untrusted_hop(
            client in any::<u32>().prop_map(Ipv4Addr::from).prop_filter("untrusted", |a| a.octets()[0] != 10),
            forged in prop::collection::vec(any_ip(), 0..5),
            hops in prop::collection::vec(any::<u32>().prop_map(|a| Ipv4Addr::from(0x0a00_0000 | (a & 0x00ff_ffff))), 0..5),
        ) {
            // Whatever the client wrote to the left of its own address, the
            // trusted hops appended after it decide nothing.
            let mut chain: Vec<String> = forged.iter().map(ToString::to_string).collect();
            chain.push(client.to_string());
            chain.extend(hops.iter().map(ToString::to_string));
            let line = chain.join(", ");
            prop_assert_eq!(xff("10.0.0.1", &[&line]), ClientAddr::Ip(IpAddr::V4(client)));
        }

        #[test]
        fn every_address_spelling_std_prints_parses_back(ip in any_ip(), port in any::<u16>()) {
            prop_assert_eq!(parse_xff_entry(&ip.to_string()), Some(ip));
            let with_port = match ip {
                IpAddr::V4(a) => format!("{a}:{port}"),
                IpAddr::V6(a) => format!("[{a}]:{port}"),
            };
            prop_assert_eq!(parse_xff_entry(&with_port), Some(ip));
            let quoted = match ip {
                IpAddr::V4(a) => format!("for={a}"),
                IpAddr::V6(a) => format!("for=\"[{a}]\""),
            };
            prop_assert_eq!(parse_forwarded_element(&quoted), Some(ip));
        }

        #[test]
        fn a_parsed_entry_is_an_address_the_text_spells_exactly(text in header_text()) {
            // Whatever is accepted is a plain spelling of the address: no
            // zone, no leading zeros, no hex octets, at most a port around it.
            if let Some(ip) = parse_xff_entry(&text) {
                let bare = text
                    .strip_prefix('[')
                    .and_then(|r| r.split_once(']'))
                    .map_or_else(
                        || match ip {
                            IpAddr::V4(_) => text.split(':').next().unwrap_or_default().to_owned(),
                            IpAddr::V6(_) => text.clone(),
                        },
                        |(inner, _)| inner.to_owned(),
                    );
                prop_assert_eq!(bare.parse::<IpAddr>().ok(), Some(ip), "{:?}", text);
            }
        }

        #[test]
        fn leading_zeros_and_zone_ids_are_never_accepted(a in any::<[u8; 4]>(), which in 0usize..4, zone in "[a-z0-9]{1,6}") {
            let mut octets: Vec<String> = a.iter().map(ToString::to_string).collect();
            octets[which] = format!("0{}", octets[which]);
            prop_assert_eq!(parse_xff_entry(&octets.join(".")), None);
            let v6 = Ipv6Addr::from(u128::from(u32::from_be_bytes(a)) | 0xfe80 << 112);
            prop_assert_eq!(parse_xff_entry(&format!("{v6}%{zone}")), None);
            prop_assert_eq!(parse_xff_entry(&format!("[{v6}%{zone}]:80")), None);
        }
    }
}
