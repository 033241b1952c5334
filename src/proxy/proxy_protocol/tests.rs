#![allow(clippy::unwrap_used)]

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
