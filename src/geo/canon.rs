//! Address canonicalisation (SPEC §4): done once, before any lookup or CIDR
//! match, so that wrapping an IPv4 address in an IPv6 form never changes its
//! verdict.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address as the policy judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canonical {
    /// A plain address, or the IPv4 address unwrapped from an IPv6 form.
    Ip(IpAddr),
    /// A Teredo address (`2001::/32`): the real client is hidden behind a
    /// relay and an obfuscated mapped address, so it cannot be judged.
    Teredo(Ipv6Addr),
}

/// Unwraps IPv4 addresses embedded in IPv6 forms: IPv4-mapped
/// (`::ffff:0:0/96`), IPv4-compatible (`::/96`, except `::` and `::1`), NAT64
/// (`64:ff9b::/96` and the local-use `64:ff9b:1::/48`, RFC 8215, whose IPv4
/// address sits in the last 32 bits), and 6to4 (`2002::/16`, address in bits
/// 16..48). Teredo (`2001::/32`) is reported as such.
#[inline]
pub fn canonicalize(ip: IpAddr) -> Canonical {
    let v6 = match ip {
        IpAddr::V4(_) => return Canonical::Ip(ip),
        IpAddr::V6(v6) => v6,
    };
    let s = v6.segments();
    let low32 = || Ipv4Addr::from(u128::from(v6) as u32);
    match s {
        // IPv4-mapped ::ffff:a.b.c.d
        [0, 0, 0, 0, 0, 0xffff, _, _] => Canonical::Ip(IpAddr::V4(low32())),
        // IPv4-compatible ::a.b.c.d (deprecated); :: and ::1 are not addresses of that kind
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 || lo > 1 => Canonical::Ip(IpAddr::V4(low32())),
        // NAT64 well-known prefix 64:ff9b::/96
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Canonical::Ip(IpAddr::V4(low32())),
        // NAT64 local-use prefix 64:ff9b:1::/48; operators embed at /96 in practice
        [0x64, 0xff9b, 1, ..] => Canonical::Ip(IpAddr::V4(low32())),
        // 6to4 2002:AABB:CCDD::/48
        [0x2002, hi, lo, ..] => Canonical::Ip(IpAddr::V4(Ipv4Addr::from(
            (u32::from(hi) << 16) | u32::from(lo),
        ))),
        // Teredo 2001:0000::/32
        [0x2001, 0, ..] => Canonical::Teredo(v6),
        _ => Canonical::Ip(ip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> Canonical {
        canonicalize(s.parse().unwrap())
    }

    fn v4(s: &str) -> Canonical {
        Canonical::Ip(IpAddr::V4(s.parse().unwrap()))
    }

    #[test]
    fn every_wrapping_of_8_8_8_8_unwraps_to_it() {
        for wrapped in [
            "8.8.8.8",
            "::ffff:8.8.8.8",
            "::ffff:808:808",
            "::8.8.8.8",
            "64:ff9b::8.8.8.8",
            "64:ff9b:1::8.8.8.8",
            "64:ff9b:1:abcd::8.8.8.8",
            "2002:808:808::1",
            "2002:0808:0808:1234:5678::9",
        ] {
            assert_eq!(canon(wrapped), v4("8.8.8.8"), "{wrapped}");
        }
    }

    #[test]
    fn loopback_and_unspecified_v6_are_not_ipv4_compatible() {
        assert_eq!(canon("::1"), Canonical::Ip("::1".parse().unwrap()));
        assert_eq!(canon("::"), Canonical::Ip("::".parse().unwrap()));
        assert_eq!(canon("::2"), v4("0.0.0.2"));
    }

    #[test]
    fn teredo_is_untraceable() {
        assert!(matches!(
            canon("2001:0:4136:e378:8000:63bf:3fff:fdd2"),
            Canonical::Teredo(_)
        ));
        // 2001:db8::/32 and 2001:4860::/32 are ordinary IPv6.
        assert_eq!(
            canon("2001:db8::1"),
            Canonical::Ip("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            canon("2001:4860:4860::8888"),
            Canonical::Ip("2001:4860:4860::8888".parse().unwrap())
        );
    }

    #[test]
    fn ordinary_v6_is_unchanged() {
        assert_eq!(
            canon("2a01:cb00::1"),
            Canonical::Ip("2a01:cb00::1".parse().unwrap())
        );
        assert_eq!(
            canon("::ffff:0:1:2"),
            Canonical::Ip("::ffff:0:1:2".parse().unwrap())
        );
    }
}
