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

/// A trusted proxy naming no client, with `conn` as the listener decides it.
fn fwd_conn(conn: ClientAddr, values: &[&str]) -> ClientAddr {
    let t = trusted(&["10.0.0.0/8"]);
    client_addr(
        peer("10.0.0.1"),
        conn,
        &headers("forwarded", values),
        ClientIpSource::Forwarded,
        &t,
    )
}

#[test]
fn a_trusted_proxy_naming_no_client_is_untraceable_unless_opted_in() {
    let t = trusted(&["10.0.0.0/8"]);
    for source in [ClientIpSource::XForwardedFor, ClientIpSource::Forwarded] {
        // No header at all: a health check, or a proxy that forgot.
        let none = HeaderMap::new();
        let nameless = ClientAddr::Untraceable;
        assert_eq!(
            client_addr(peer("10.0.0.1"), nameless, &none, source, &t),
            ClientAddr::Untraceable
        );
        assert_eq!(
            client_addr(peer("10.0.0.1"), ip("10.0.0.1"), &none, source, &t),
            ip("10.0.0.1")
        );
        // The PROXY protocol source answers with the connection's verdict.
        assert_eq!(
            client_addr(
                peer("10.0.0.1"),
                nameless,
                &none,
                ClientIpSource::ProxyProtocol,
                &t
            ),
            ClientAddr::Untraceable
        );
    }
    // A chain of trusted proxies only: the innermost made the request.
    assert_eq!(
        fwd_conn(ClientAddr::Untraceable, &["for=10.1.1.1, for=10.2.2.2"]),
        ClientAddr::Untraceable
    );
    assert_eq!(
        fwd_conn(ip("10.0.0.1"), &["for=10.1.1.1, for=10.2.2.2"]),
        ip("10.1.1.1")
    );
    // A named client is the client whatever the option says.
    assert_eq!(
        fwd_conn(ClientAddr::Untraceable, &["for=8.8.8.8, for=10.2.2.2"]),
        ip("8.8.8.8")
    );
}

/// The attack of issue 13: the client opens a quote that would swallow what
/// its trusted proxy appends. Each row is what the client sends; the proxy
/// (nginx: `$http_forwarded, for=$remote_addr`) appends its hop, either to
/// the same field line or as a field line of its own.
#[test]
fn a_client_cannot_hide_the_hop_its_proxy_appended() {
    let us = "8.8.8.8";
    for client in [
        "for=127.0.0.2;x=\"",
        "for=127.0.0.2;proto=\"",
        "for=127.0.0.2;by=\"",
        "for=127.0.0.2;host=\"",
        "for=\"127.0.0.2",
        "for=\"127.0.0.2\\\"",
        "for=127.0.0.2;x=\"\\\"",
        "for=127.0.0.2;x=\"a\\\\\\\"",
        "x=\", for=127.0.0.2",
        "for=127.0.0.2;x=\";",
        "for=127.0.0.2;x=\"\\",
        "for=127.0.0.2;x=\"a,b;c=d",
        "\"",
        "for=127.0.0.2, \"",
    ] {
        let appended = format!("{client}, for={us}");
        assert_eq!(
            fwd("10.0.0.1", &[&appended]),
            ClientAddr::Untraceable,
            "{appended:?}"
        );
        // Two field lines: the quote never continues into the next line.
        assert_eq!(
            fwd("10.0.0.1", &[client, &format!("for={us}")]),
            ClientAddr::Untraceable,
            "{client:?} / for={us}"
        );
    }
    // Well-formed client values cannot hide it either.
    for client in [
        "for=127.0.0.2;x=\"\\\",for=1.1.1.1\"",
        "for=127.0.0.2;x=\"a,b;c=d\"",
        "for=127.0.0.2;x=\"\\\\\"",
        "for=127.0.0.2;proto=https",
        "for=127.0.0.2,",
    ] {
        let appended = format!("{client}, for={us}");
        assert_eq!(fwd("10.0.0.1", &[&appended]), ip(us), "{appended:?}");
        assert_eq!(
            fwd("10.0.0.1", &[client, &format!("for={us}")]),
            ip(us),
            "{client:?}"
        );
    }
}

#[test]
fn forwarded_grammar_table() {
    let good = [
        // (chain lines, right-most untrusted)
        (
            &["for=192.0.2.60;proto=http;by=203.0.113.43"][..],
            "192.0.2.60",
        ),
        (&["for=192.0.2.60 ; proto=http\t;\tby=x"], "192.0.2.60"),
        (&["FOR=192.0.2.60"], "192.0.2.60"),
        (&["for=\"192.0.2.60\""], "192.0.2.60"),
        (&["for=\"\\1\\9\\2.0.2.60\""], "192.0.2.60"),
        (&["for=\"[2001:db8::1]\""], "2001:db8::1"),
        (&["for=\"[2001:DB8::1]:65535\""], "2001:db8::1"),
        (&["for=\"[2001:db8::1]:_x.y-z\""], "2001:db8::1"),
        (&["for=\"192.0.2.60:_port\""], "192.0.2.60"),
        (&["for=\"192.0.2.60:0\""], "192.0.2.60"),
        (&[";for=192.0.2.60;;"], "192.0.2.60"),
        (&["x=\"a,b\";for=192.0.2.60;y=\"c;d\\\"e\""], "192.0.2.60"),
        (&["for=192.0.2.43,for=192.0.2.60"], "192.0.2.60"),
        (&["for=192.0.2.43 ,\tfor=192.0.2.60"], "192.0.2.60"),
        (
            &["for=192.0.2.43", "for=192.0.2.60, for=10.9.9.9"],
            "192.0.2.60",
        ),
        (&["for=192.0.2.60", "for=10.9.9.9"], "192.0.2.60"),
        // Left of the decisive hop: anything well formed, empty included.
        (
            &[", for=unknown, for=_x, proto=h, , for=192.0.2.60"],
            "192.0.2.60",
        ),
        (&["", "for=192.0.2.60"], "192.0.2.60"),
        // A mapped trusted address is skipped like the plain one.
        (&["for=192.0.2.60, for=\"[::ffff:10.1.2.3]\""], "192.0.2.60"),
    ];
    for (lines, want) in good {
        assert_eq!(fwd("10.0.0.1", lines), ip(want), "{lines:?}");
    }
    let untraceable: &[&[&str]] = &[
        // The hop reached names no client.
        &["for=unknown"],
        &["for=UNKNOWN:80"],
        &["for=\"unknown:_p\""],
        &["for=_hidden"],
        &["for=192.0.2.60, for=_hidden"],
        &["proto=http"],
        &["for=192.0.2.60, proto=http"],
        &["for=192.0.2.60, "],
        &["for=192.0.2.60,,"],
        &["for=192.0.2.60", ""],
        &["for=192.0.2.60", " "],
        &["for=192.0.2.60;;, ;"],
        // Not the grammar, anywhere in the chain.
        &["for=2001:db8::1"],
        &["for=[2001:db8::1]"],
        &["for=192.0.2.60:80"],
        &["for=\"[2001:db8::1]"],
        &["for=\"[2001:db8::1]\"x"],
        &["for=\"[2001:db8::1]]\""],
        &["for=\"[2001:db8::1]80\""],
        &["for=\"[192.0.2.60]\""],
        &["for=\"[fe80::1%eth0]\""],
        &["for=\"2001:db8::1\""],
        &["for=\"192.0.2.60:99999\""],
        &["for=\"192.0.2.60:\""],
        &["for=\"192.0.2.60:080000\""],
        &["for=\"192.0.2.60:_\""],
        &["for=\"192.0.2.60 \""],
        &["for=\"\""],
        &["for=08.8.8.8"],
        &["for=0x8.8.8.8"],
        &["for=8.8.8"],
        &["for=_"],
        &["for=_a/b"],
        &["for=1.2.3.4;for=5.6.7.8"],
        &["For=1.2.3.4;fOR=5.6.7.8"],
        &["for=1.2.3.4;by=a;BY=b"],
        &["for"],
        &["for="],
        &["=1.2.3.4"],
        &["for =1.2.3.4"],
        &["for= 1.2.3.4"],
        &["for=1.2.3.4 proto=http"],
        &["for=1.2.3.4;proto"],
        &["for==1.2.3.4"],
        &["for=\"1.2.3.4\\\"\""],
        &["for=\"1.2.3.4,5.6.7.8\""],
        &["for=\"1.2.3.4;5.6.7.8\""],
        &["for=1.2.3.4\""],
        &["for=1.2.3.4, x=\"a"],
        &["x=\"a", "for=1.2.3.4"],
        &["for=1.2.3.4", "x=\"a"],
        &["for=1.2.3.4\\"],
        &["for=\"1.2.3.4\t\""],
        &["for=1.2.3.4;a=1;b=2;c=3;d=4;e=5;f=6;g=7;h=8;i=9;j=10;k=11;l=12;m=13;n=14;o=15;p=16"],
    ];
    for lines in untraceable {
        assert_eq!(fwd("10.0.0.1", lines), ClientAddr::Untraceable, "{lines:?}");
    }
    // obs-text and control bytes, quoted or not, anywhere in the chain.
    for bad in [
        &b"for=1.2.3.4;x=\"\xe9\", for=8.8.8.8"[..],
        b"x=\xe9, for=8.8.8.8",
        b"for=1.2.3.4;x=\"\\\xe9\", for=8.8.8.8",
        b"for=\"8.8.8.8\x7f\"",
    ] {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(bad) {
            h.append(FORWARDED, v);
            let t = trusted(&["10.0.0.0/8"]);
            let got = client_addr(
                peer("10.0.0.1"),
                ip("10.0.0.1"),
                &h,
                ClientIpSource::Forwarded,
                &t,
            );
            assert_eq!(got, ClientAddr::Untraceable, "{bad:?}");
        }
    }
    // The longest node is 128 bytes, however spelled.
    let long = format!("for=_{}", "a".repeat(127));
    assert_eq!(fwd("10.0.0.1", &[&long]), ClientAddr::Untraceable);
    let longer = format!("for=8.8.8.8, for=_{}", "a".repeat(128));
    assert_eq!(fwd("10.0.0.1", &[&longer]), ClientAddr::Untraceable);
    let escaped = format!("for=8.8.8.8, for=\"_{}\"", "\\a".repeat(128));
    assert_eq!(fwd("10.0.0.1", &[&escaped]), ClientAddr::Untraceable);
    let fits = format!("for=8.8.8.8, for=\"_{}\", for=9.9.9.9", "\\a".repeat(127));
    assert_eq!(fwd("10.0.0.1", &[&fits]), ip("9.9.9.9"));
}

#[test]
fn x_forwarded_for_table() {
    let good = [
        (&["81.0.0.1, 8.8.8.8"][..], "8.8.8.8"),
        (&["81.0.0.1,8.8.8.8"], "8.8.8.8"),
        (&["81.0.0.1\t,\t8.8.8.8\t"], "8.8.8.8"),
        (&["81.0.0.1", "8.8.8.8"], "8.8.8.8"),
        (&["8.8.8.8:443"], "8.8.8.8"),
        (&["[2001:db8::1]:443"], "2001:db8::1"),
        (&["[2001:db8::1]"], "2001:db8::1"),
        (&["2001:db8::1:443"], "2001:db8::1:443"),
        (&["::ffff:8.8.8.8"], "::ffff:8.8.8.8"),
        // Left of the decisive entry: anything visible, empty included.
        (&[",garbage,,unknown, _x, 8.8.8.8"], "8.8.8.8"),
        (&["", "8.8.8.8"], "8.8.8.8"),
        (&["8.8.8.8, 10.1.1.1", "192.168.3.3"], "8.8.8.8"),
    ];
    for (lines, want) in good {
        assert_eq!(xff("10.0.0.1", lines), ip(want), "{lines:?}");
    }
    let untraceable: &[&[&str]] = &[
        &["8.8.8.8,"],
        &["8.8.8.8, "],
        &["8.8.8.8,,10.1.1.1"],
        &["8.8.8.8", ""],
        &["8.8.8.8", "\t"],
        &["unknown"],
        &["8.8.8.8, unknown"],
        &["8.8.8.8, _hidden"],
        &["[8.8.8.8]"],
        &["8.8.8.8:99999"],
        &["8.8.8.8:"],
        &["[2001:db8::1]:"],
        &["[2001:db8::1]x"],
        &["fe80::1%eth0"],
        &["[fe80::1%25eth0]"],
        &["8.8.8.8 9.9.9.9"],
        &["8.8.8.8\t9.9.9.9"],
        &["for=8.8.8.8"],
        // A quote or backslash anywhere: someone else's grammar.
        &["\"8.8.8.8\""],
        &["81.0.0.1\", 8.8.8.8"],
        &["\"81.0.0.1, 8.8.8.8"],
        &["81.0.0.1\\, 8.8.8.8"],
        &["\"", "8.8.8.8"],
    ];
    for lines in untraceable {
        assert_eq!(xff("10.0.0.1", lines), ClientAddr::Untraceable, "{lines:?}");
    }
    for bad in [&b"\xe9, 8.8.8.8"[..], b"8.8.8.8\xa0", b"8.8.8.8\x7f"] {
        if let Ok(v) = HeaderValue::from_bytes(bad) {
            let mut h = HeaderMap::new();
            h.append(X_FORWARDED_FOR.clone(), v);
            let t = trusted(&["10.0.0.0/8"]);
            let got = client_addr(
                peer("10.0.0.1"),
                ip("10.0.0.1"),
                &h,
                ClientIpSource::XForwardedFor,
                &t,
            );
            assert_eq!(got, ClientAddr::Untraceable, "{bad:?}");
        }
    }
}

/// An independent reading of the rules in the module doc, written another
/// way: a lexer into owned tokens, then slice patterns over the token list,
/// then a walk from the right over a collected list of hops.
mod model {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Hop {
        Addr(IpAddr),
        Nameless,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Lex {
        Word(String),
        Quoted(String),
        Eq,
        Semi,
        Comma,
        Space,
    }

    const TCHAR_PUNCT: &str = "!#$%&'*+-.^_`|~";

    fn visible(b: u8) -> bool {
        (b'!'..=b'~').contains(&b)
    }

    fn lex(line: &[u8]) -> Option<Vec<Lex>> {
        let mut out: Vec<Lex> = Vec::new();
        let mut bytes = line.iter().copied();
        while let Some(b) = bytes.next() {
            let tok = match b {
                b' ' | b'\t' => Lex::Space,
                b'=' => Lex::Eq,
                b';' => Lex::Semi,
                b',' => Lex::Comma,
                b'"' => {
                    let mut s = String::new();
                    loop {
                        let c = bytes.next()?;
                        let c = match c {
                            b'"' => break,
                            b'\\' => bytes.next()?,
                            c => c,
                        };
                        if !(c == b' ' || c == b'\t' || visible(c)) {
                            return None;
                        }
                        s.push(char::from(c));
                    }
                    Lex::Quoted(s)
                }
                c if c.is_ascii_alphanumeric() || TCHAR_PUNCT.contains(char::from(c)) => {
                    if let Some(Lex::Word(w)) = out.last_mut() {
                        w.push(char::from(c));
                        continue;
                    }
                    Lex::Word(char::from(c).to_string())
                }
                _ => return None,
            };
            out.push(tok);
        }
        Some(out)
    }

    fn trim(mut t: &[Lex]) -> &[Lex] {
        while let [Lex::Space, rest @ ..] = t {
            t = rest;
        }
        while let [rest @ .., Lex::Space] = t {
            t = rest;
        }
        t
    }

    fn obfuscated(s: &str) -> bool {
        s.len() >= 2
            && s.starts_with('_')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    }

    fn port(p: &str) -> bool {
        let numeric = !p.is_empty()
            && p.len() <= 5
            && p.chars().all(|c| c.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| n <= 65535);
        numeric || obfuscated(p)
    }

    fn node(v: &str) -> Option<Hop> {
        if v.len() > 128 {
            return None;
        }
        if let Some(rest) = v.strip_prefix('[') {
            let (inner, after) = rest.split_once(']')?;
            if !after.is_empty() && !port(after.strip_prefix(':')?) {
                return None;
            }
            return inner
                .parse::<Ipv6Addr>()
                .ok()
                .map(|a| Hop::Addr(IpAddr::V6(a)));
        }
        let name = match v.split_once(':') {
            Some((name, p)) if port(p) => name,
            Some(_) => return None,
            None => v,
        };
        if name.eq_ignore_ascii_case("unknown") || obfuscated(name) {
            return Some(Hop::Nameless);
        }
        name.parse::<Ipv4Addr>()
            .ok()
            .map(|a| Hop::Addr(IpAddr::V4(a)))
    }

    pub fn forwarded(lines: &[Vec<u8>]) -> Option<Vec<Hop>> {
        let mut hops = Vec::new();
        for line in lines {
            let tokens = lex(line)?;
            for element in tokens.split(|t| *t == Lex::Comma) {
                let mut names: Vec<String> = Vec::new();
                let mut hop = Hop::Nameless;
                for pair in element.split(|t| *t == Lex::Semi) {
                    match trim(pair) {
                        [] => {}
                        [
                            Lex::Word(name),
                            Lex::Eq,
                            Lex::Word(value) | Lex::Quoted(value),
                        ] => {
                            let name = name.to_ascii_lowercase();
                            if names.contains(&name) {
                                return None;
                            }
                            if name == "for" {
                                hop = node(value)?;
                            }
                            names.push(name);
                        }
                        _ => return None,
                    }
                }
                if names.len() > 16 {
                    return None;
                }
                hops.push(hop);
            }
        }
        Some(hops)
    }

    fn xff_entry(e: &str) -> Hop {
        let numeric_port = |p: &str| {
            (1..=5).contains(&p.len())
                && p.chars().all(|c| c.is_ascii_digit())
                && p.parse::<u32>().is_ok_and(|n| n <= 65535)
        };
        let addr = if let Some(rest) = e.strip_prefix('[') {
            rest.split_once(']')
                .filter(|(_, after)| {
                    after.is_empty() || after.strip_prefix(':').is_some_and(numeric_port)
                })
                .and_then(|(inner, _)| inner.parse::<Ipv6Addr>().ok())
                .map(IpAddr::V6)
        } else if let Ok(ip) = e.parse::<IpAddr>() {
            Some(ip)
        } else {
            e.rsplit_once(':')
                .filter(|(_, p)| numeric_port(p))
                .and_then(|(h, _)| h.parse::<Ipv4Addr>().ok())
                .map(IpAddr::V4)
        };
        addr.map_or(Hop::Nameless, Hop::Addr)
    }

    pub fn xff(lines: &[Vec<u8>]) -> Option<Vec<Hop>> {
        let mut hops = Vec::new();
        for line in lines {
            let text = std::str::from_utf8(line).ok()?;
            if text
                .chars()
                .any(|c| !(c == ' ' || c == '\t' || c.is_ascii_graphic()) || c == '"' || c == '\\')
            {
                return None;
            }
            hops.extend(
                text.split(',')
                    .map(|e| xff_entry(e.trim_matches(|c| c == ' ' || c == '\t'))),
            );
        }
        Some(hops)
    }

    /// The test's trusted networks: 10.0.0.0/8, also as `::ffff:10.x`.
    pub fn is_trusted(ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => a.octets()[0] == 10,
            IpAddr::V6(a) => a.to_ipv4_mapped().is_some_and(|a| a.octets()[0] == 10),
        }
    }

    /// The walk from the right over the parsed hops.
    pub fn decide(hops: Option<Vec<Hop>>, conn: ClientAddr) -> ClientAddr {
        let Some(hops) = hops else {
            return ClientAddr::Untraceable;
        };
        for hop in hops.iter().rev() {
            match hop {
                Hop::Addr(ip) if is_trusted(*ip) => {}
                Hop::Addr(ip) => return ClientAddr::Ip(*ip),
                Hop::Nameless => return ClientAddr::Untraceable,
            }
        }
        match (hops.first(), conn) {
            (None, conn) => conn,
            (Some(Hop::Addr(ip)), ClientAddr::Ip(_)) => ClientAddr::Ip(*ip),
            _ => ClientAddr::Untraceable,
        }
    }
}

/// Chains generated from the grammar, and mutations of them, against the
/// model.
mod grammar {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::model::{self, Hop};
    use super::*;

    /// Untrusted and trusted IPv4, documentation IPv6, mapped trusted IPv6.
    fn address() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
            any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (a & 0xff_ffff)))),
            any::<u64>()
                .prop_map(|a| IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(a)))),
            any::<u32>().prop_map(|a| IpAddr::V6(
                Ipv4Addr::from(0x0a00_0000 | (a & 0xff_ffff)).to_ipv6_mapped()
            )),
        ]
    }

    fn obfuscated() -> impl Strategy<Value = String> {
        "_[A-Za-z0-9._-]{1,8}"
    }

    /// A node as text, whether it needs quotes, and the hop it names.
    fn node() -> impl Strategy<Value = (String, bool, Hop)> {
        let name = prop_oneof![
            4 => address().prop_map(|ip| match ip {
                IpAddr::V4(a) => (a.to_string(), false, Hop::Addr(ip)),
                IpAddr::V6(a) => (format!("[{a}]"), true, Hop::Addr(ip)),
            }),
            1 => prop::sample::select(vec!["unknown", "UNKNOWN", "Unknown"])
                .prop_map(|u| (u.to_owned(), false, Hop::Nameless)),
            1 => obfuscated().prop_map(|o| (o, false, Hop::Nameless)),
        ];
        let port = prop_oneof![
            2 => Just(None),
            1 => any::<u16>().prop_map(|p| Some(p.to_string())),
            1 => obfuscated().prop_map(Some),
        ];
        (name, port).prop_map(|((n, q, hop), port)| match port {
            None => (n, q, hop),
            Some(p) => (format!("{n}:{p}"), true, hop),
        })
    }

    /// A quoted-string holding `text`, with `"` and `\` escaped and any
    /// other character escaped where `escape` says.
    fn quote(text: &str, escape: &[bool]) -> String {
        let mut s = String::from("\"");
        for (i, c) in text.chars().enumerate() {
            if c == '"' || c == '\\' || escape.get(i).copied().unwrap_or(false) {
                s.push('\\');
            }
            s.push(c);
        }
        s.push('"');
        s
    }

    /// A `for=` pair and its hop.
    fn for_pair() -> impl Strategy<Value = (String, Hop)> {
        (
            prop::sample::select(vec!["for", "For", "FOR"]),
            node(),
            any::<bool>(),
            prop::collection::vec(prop::bool::weighted(0.2), 0..64),
        )
            .prop_map(|(name, (text, needs, hop), quoted, escape)| {
                let value = if needs || quoted {
                    quote(&text, &escape)
                } else {
                    text
                };
                (format!("{name}={value}"), hop)
            })
    }

    /// Other parameters: names distinct from each other and from `for`.
    fn extras() -> impl Strategy<Value = Vec<String>> {
        let value = prop_oneof![
            "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,8}",
            (
                "[ -~\t]{0,12}",
                prop::collection::vec(prop::bool::weighted(0.2), 0..12)
            )
                .prop_map(|(t, e)| quote(&t, &e)),
        ];
        prop::sample::subsequence(vec!["by", "Proto", "host", "x", "ext-1", "_y"], 0..4)
            .prop_flat_map(move |names| {
                let n = names.len();
                (Just(names), prop::collection::vec(value.clone(), n))
            })
            .prop_map(|(names, values)| {
                names
                    .iter()
                    .zip(values)
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect()
            })
    }

    fn ows() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["", "", " ", "\t", " \t "])
    }

    /// One element: its pairs in any order, `;` with whitespace around it
    /// and empty pairs, and the hop it names.
    fn element() -> impl Strategy<Value = (String, Hop)> {
        (
            prop::option::weighted(0.85, for_pair()),
            extras(),
            any::<prop::sample::Index>(),
            prop::collection::vec(
                (ows(), prop::sample::select(vec![";", ";", ";;"]), ows()),
                8,
            ),
            prop::bool::weighted(0.1),
        )
            .prop_map(|(f, mut pairs, at, seps, lead)| {
                let hop = match f {
                    Some((pair, hop)) => {
                        let i = at.index(pairs.len() + 1);
                        pairs.insert(i, pair);
                        hop
                    }
                    None => Hop::Nameless,
                };
                let mut s = String::new();
                if lead {
                    s.push(';');
                }
                for (i, p) in pairs.iter().enumerate() {
                    if i > 0 {
                        let (a, semi, b) = seps[i % seps.len()];
                        s.push_str(a);
                        s.push_str(semi);
                        s.push_str(b);
                    }
                    s.push_str(p);
                }
                (s, hop)
            })
    }

    /// Field lines from elements, split at element boundaries.
    fn lines_of(elements: &[(String, Hop)], cuts: &[bool], seps: &[(&str, &str)]) -> Vec<Vec<u8>> {
        let mut lines = vec![String::new()];
        for (i, (e, _)) in elements.iter().enumerate() {
            if i > 0 {
                if cuts.get(i).copied().unwrap_or(false) {
                    lines.push(String::new());
                } else {
                    let (a, b) = seps.get(i).copied().unwrap_or(("", ""));
                    if let Some(l) = lines.last_mut() {
                        l.push_str(a);
                        l.push(',');
                        l.push_str(b);
                    }
                }
            }
            if let Some(l) = lines.last_mut() {
                l.push_str(e);
            }
        }
        lines.into_iter().map(String::into_bytes).collect()
    }

    fn chain(
        elem: impl Strategy<Value = (String, Hop)>,
    ) -> impl Strategy<Value = (Vec<Vec<u8>>, Vec<Hop>)> {
        (
            prop::collection::vec(elem, 1..6),
            prop::collection::vec(any::<bool>(), 6),
            prop::collection::vec((ows(), ows()), 6),
        )
            .prop_map(|(elements, cuts, seps)| {
                let lines = lines_of(&elements, &cuts, &seps);
                (lines, elements.into_iter().map(|(_, h)| h).collect())
            })
    }

    /// An X-Forwarded-For entry and its hop.
    fn xff_entry() -> impl Strategy<Value = (String, Hop)> {
        prop_oneof![
            4 => (address(), prop::option::of(any::<u16>()), any::<bool>()).prop_map(|(ip, port, brackets)| {
                let text = match (ip, port) {
                    (IpAddr::V4(a), None) => a.to_string(),
                    (IpAddr::V4(a), Some(p)) => format!("{a}:{p}"),
                    (IpAddr::V6(a), None) if !brackets => a.to_string(),
                    (IpAddr::V6(a), None) => format!("[{a}]"),
                    (IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
                };
                (text, Hop::Addr(ip))
            }),
            1 => prop::sample::select(vec!["unknown", "", "_hidden", "[1.2.3.4]", "fe80::1%eth0", "1.2.3.4:"])
                .prop_map(|t| (t.to_owned(), Hop::Nameless)),
        ]
    }

    fn headers_of(name: &HeaderName, lines: &[Vec<u8>]) -> Option<HeaderMap> {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(name.clone(), HeaderValue::from_bytes(l).ok()?);
        }
        Some(h)
    }

    fn judge(source: ClientIpSource, lines: &[Vec<u8>], conn: ClientAddr) -> Option<ClientAddr> {
        let name = if source == ClientIpSource::Forwarded {
            &FORWARDED
        } else {
            &X_FORWARDED_FOR
        };
        let h = headers_of(name, lines)?;
        let t = trusted(&["10.0.0.0/8"]);
        Some(client_addr(peer("10.0.0.1"), conn, &h, source, &t))
    }

    fn model_of(source: ClientIpSource, lines: &[Vec<u8>]) -> Option<Vec<Hop>> {
        if source == ClientIpSource::Forwarded {
            model::forwarded(lines)
        } else {
            model::xff(lines)
        }
    }

    /// What an attacker inserts or removes.
    #[derive(Debug, Clone)]
    enum Mutation {
        Insert(u8),
        Delete,
    }

    fn mutation() -> impl Strategy<Value = (Mutation, prop::sample::Index, prop::sample::Index)> {
        (
            prop_oneof![
                3 => prop::sample::select(b"\",;\\= \t[]:_".to_vec()).prop_map(Mutation::Insert),
                1 => Just(Mutation::Delete),
            ],
            any::<prop::sample::Index>(),
            any::<prop::sample::Index>(),
        )
    }

    fn mutate(
        lines: &mut [Vec<u8>],
        (m, line, at): &(Mutation, prop::sample::Index, prop::sample::Index),
    ) {
        let Some(l) = lines.get_mut(line.index(lines.len().max(1))) else {
            return;
        };
        match m {
            Mutation::Insert(b) => l.insert(at.index(l.len() + 1), *b),
            Mutation::Delete if !l.is_empty() => {
                l.remove(at.index(l.len()));
            }
            Mutation::Delete => {}
        }
    }

    fn conn() -> impl Strategy<Value = ClientAddr> {
        prop_oneof![
            Just(ClientAddr::Untraceable),
            Just(ClientAddr::Ip("10.0.0.1".parse().unwrap()))
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn a_valid_forwarded_chain_names_the_rightmost_untrusted_hop(
            (lines, hops) in chain(prop_oneof![9 => element(), 1 => ows().prop_map(|w| (w.to_owned(), Hop::Nameless))]),
            conn in conn(),
        ) {
            let texts: Vec<String> = lines.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect();
            prop_assert_eq!(model::forwarded(&lines), Some(hops.clone()), "{:?}", texts);
            let want = model::decide(Some(hops), conn);
            prop_assert_eq!(judge(ClientIpSource::Forwarded, &lines, conn), Some(want), "{:?}", texts);
        }

        #[test]
        fn a_valid_x_forwarded_for_chain_names_the_rightmost_untrusted_hop(
            (lines, hops) in chain(xff_entry()),
            conn in conn(),
        ) {
            let texts: Vec<String> = lines.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect();
            prop_assert_eq!(model::xff(&lines), Some(hops.clone()), "{:?}", texts);
            let want = model::decide(Some(hops), conn);
            prop_assert_eq!(judge(ClientIpSource::XForwardedFor, &lines, conn), Some(want), "{:?}", texts);
        }

        #[test]
        fn a_mutated_chain_is_judged_as_the_model_judges_it_or_untraceable(
            (mut lines, _) in chain(element()),
            (mut xlines, _) in chain(xff_entry()),
            mutations in prop::collection::vec(mutation(), 1..4),
            conn in conn(),
        ) {
            for m in &mutations {
                mutate(&mut lines, m);
                mutate(&mut xlines, m);
            }
            for (source, lines) in [(ClientIpSource::Forwarded, &lines), (ClientIpSource::XForwardedFor, &xlines)] {
                let texts: Vec<String> = lines.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect();
                let Some(got) = judge(source, lines, conn) else { continue };
                let model = model_of(source, lines);
                let parsed = model.is_some();
                let want = model::decide(model, conn);
                prop_assert_eq!(got, want, "{:?} {:?}", source, texts);
                if !parsed {
                    prop_assert_eq!(got, ClientAddr::Untraceable);
                }
            }
        }

        #[test]
        fn whatever_a_client_writes_the_hop_its_proxy_appended_decides(
            client in prop_oneof![
                chain(element()).prop_map(|(l, _)| l),
                chain(element()).prop_flat_map(|(l, _)| (Just(l), mutation())).prop_map(|(mut l, m)| { mutate(&mut l, &m); l }),
                prop::collection::vec("[ -~\t]{0,24}".prop_map(String::into_bytes), 1..3),
            ],
            appended in any::<u32>().prop_map(Ipv4Addr::from).prop_filter("untrusted", |a| a.octets()[0] != 10),
            same_line in any::<bool>(),
        ) {
            // nginx: `$http_forwarded, for=$remote_addr`, or its own line.
            for source in [ClientIpSource::Forwarded, ClientIpSource::XForwardedFor] {
                let hop = if source == ClientIpSource::Forwarded { format!("for={appended}") } else { appended.to_string() };
                let mut lines = client.clone();
                match lines.last_mut() {
                    Some(last) if same_line => last.extend_from_slice(format!(", {hop}").as_bytes()),
                    _ => lines.push(hop.into_bytes()),
                }
                let Some(got) = judge(source, &lines, ClientAddr::Untraceable) else { continue };
                let ok = got == ClientAddr::Ip(IpAddr::V4(appended)) || got == ClientAddr::Untraceable;
                prop_assert!(ok, "{:?} {:?} -> {:?}", source, lines.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect::<Vec<_>>(), got);
                // An unbalanced quote anywhere is never believed.
                let quotes = lines.iter().any(|l| {
                    let mut open = false;
                    let mut esc = false;
                    for &b in l {
                        match b {
                            _ if esc => esc = false,
                            b'\\' if open => esc = true,
                            b'"' => open = !open,
                            _ => {}
                        }
                    }
                    open
                });
                if quotes {
                    prop_assert_eq!(got, ClientAddr::Untraceable);
                }
            }
        }
    }
}
