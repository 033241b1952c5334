//! Address canonicalisation (SPEC §4): done once, before any lookup or CIDR
//! match, so that wrapping an IPv4 address in an IPv6 form never changes its
//! verdict.
//!
//! The fixed forms are always unwrapped: IPv4-mapped (`::ffff:0:0/96`),
//! SIIT IPv4-translated (`::ffff:0:0:0/96`, RFC 6145/7136), IPv4-compatible
//! (`::/96`, except `::` and `::1`) and 6to4 (`2002::/16`). Teredo
//! (`2001::/32`) hides the client and is untraceable. NAT64 prefixes are the
//! operator's (`[geoip] nat64_prefixes`, by default the well-known
//! `64:ff9b::/96` and the local-use `64:ff9b:1::/48`) and each is read by the
//! RFC 6052 §2.2 layout of its length.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::Ipv6Net;

/// An address as the policy judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canonical {
    /// A plain address, or the IPv4 address unwrapped from an IPv6 form.
    Ip(IpAddr),
    /// An address whose real client cannot be told: Teredo (`2001::/32`,
    /// hidden behind a relay and an obfuscated mapped address), or a NAT64
    /// address whose RFC 6052 "u" octet (bits 64..71) is not zero, so its
    /// layout is not the one the prefix announces.
    Untraceable(Ipv6Addr),
}

/// The prefix lengths RFC 6052 §2.2 defines a layout for.
pub const NAT64_LENGTHS: [u8; 6] = [32, 40, 48, 56, 64, 96];

/// One NAT64 prefix: where it is and, by its length, where the IPv4 address
/// sits (RFC 6052 §2.2). Built only through [`Nat64Prefix::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nat64Prefix {
    net: u128,
    len: u8,
}

/// Why a network cannot be a NAT64 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Nat64Error {
    /// RFC 6052 defines no layout for this length.
    #[error(
        "RFC 6052 defines no layout for a /{0} prefix (expected /32, /40, /48, /56, /64 or /96)"
    )]
    Length(u8),
    /// Bits are set after the prefix length.
    #[error("bits are set after the prefix length")]
    HostBits,
}

impl Nat64Prefix {
    /// The well-known prefix `64:ff9b::/96` (RFC 6052 §2.1).
    pub const WELL_KNOWN: Self = Self {
        net: 0x0064_ff9b_u128 << 96,
        len: 96,
    };
    /// The local-use prefix `64:ff9b:1::/48` (RFC 8215), read by the /48 layout.
    pub const LOCAL_USE: Self = Self {
        net: 0x0064_ff9b_0001_u128 << 80,
        len: 48,
    };

    /// A prefix of a length RFC 6052 defines, with no bit set after it.
    ///
    /// # Errors
    /// [`Nat64Error`] saying which rule it breaks.
    pub fn new(net: Ipv6Net) -> Result<Self, Nat64Error> {
        let len = net.prefix_len();
        if !NAT64_LENGTHS.contains(&len) {
            return Err(Nat64Error::Length(len));
        }
        if net.trunc() != net {
            return Err(Nat64Error::HostBits);
        }
        Ok(Self {
            net: u128::from(net.network()),
            len,
        })
    }

    /// The prefix as a network.
    pub fn net(self) -> Ipv6Net {
        // The length is one of NAT64_LENGTHS, all valid for IPv6.
        Ipv6Net::new(Ipv6Addr::from(self.net), self.len).unwrap_or_default()
    }

    #[inline]
    const fn contains(self, a: u128) -> bool {
        (a ^ self.net) >> (128 - self.len as u32) == 0
    }

    /// The IPv4 address at this prefix's layout: its four octets follow the
    /// prefix, skipping octet 8 (bits 64..71, "u"), which must be zero.
    #[inline]
    fn embedded(self, a: Ipv6Addr) -> Canonical {
        let o = a.octets();
        if self.len <= 64 && o[8] != 0 {
            return Canonical::Untraceable(a);
        }
        let mut i = usize::from(self.len / 8);
        let mut v4 = [0u8; 4];
        for b in &mut v4 {
            if i == 8 {
                i += 1;
            }
            *b = o[i];
            i += 1;
        }
        Canonical::Ip(IpAddr::V4(Ipv4Addr::from(v4)))
    }
}

impl std::fmt::Display for Nat64Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.net().fmt(f)
    }
}

/// The configured NAT64 prefixes, longest first so that a more specific
/// prefix inside another (a /96 carved out of `64:ff9b:1::/48`) decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nat64Prefixes(Vec<Nat64Prefix>);

impl Default for Nat64Prefixes {
    /// `64:ff9b::/96` and `64:ff9b:1::/48`.
    fn default() -> Self {
        Self::new([Nat64Prefix::WELL_KNOWN, Nat64Prefix::LOCAL_USE])
    }
}

impl Nat64Prefixes {
    /// The prefixes, in any order.
    pub fn new(prefixes: impl IntoIterator<Item = Nat64Prefix>) -> Self {
        let mut v: Vec<Nat64Prefix> = prefixes.into_iter().collect();
        v.sort_by(|a, b| b.len.cmp(&a.len).then(a.net.cmp(&b.net)));
        v.dedup();
        Self(v)
    }

    /// The prefixes, longest first.
    pub fn iter(&self) -> impl Iterator<Item = Nat64Prefix> + '_ {
        self.0.iter().copied()
    }
}

/// A form [`canonicalize`] always recognises, for validating what the
/// operator writes: NAT64 prefixes must not overlap one, and a network
/// written inside one must be able to match.
#[derive(Debug, Clone, Copy)]
pub struct FixedForm {
    /// What error messages call it.
    pub name: &'static str,
    /// Its first bits.
    pub net: u128,
    /// Its prefix length.
    pub len: u8,
    /// True when a network written inside it still matches: IPv4-mapped
    /// networks are stored as the IPv4 network (`NetworkTable::compile`),
    /// and Teredo addresses are matched as the IPv6 address they are.
    pub networks_inside_match: bool,
}

impl FixedForm {
    /// True when `net`/`len` lies inside this form.
    pub const fn contains(&self, net: u128, len: u8) -> bool {
        len >= self.len && (net ^ self.net) >> (128 - self.len as u32) == 0
    }

    /// True when `net`/`len` and this form share an address.
    pub const fn overlaps(&self, net: u128, len: u8) -> bool {
        let shorter = if len < self.len { len } else { self.len };
        shorter == 0 || (net ^ self.net) >> (128 - shorter as u32) == 0
    }
}

/// The forms of SPEC §4 other than NAT64.
pub const FIXED_FORMS: [FixedForm; 5] = [
    FixedForm {
        name: "the IPv4-mapped form ::ffff:0:0/96",
        net: 0xffff_u128 << 32,
        len: 96,
        networks_inside_match: true,
    },
    FixedForm {
        name: "the SIIT form ::ffff:0:0:0/96",
        net: 0xffff_u128 << 48,
        len: 96,
        networks_inside_match: false,
    },
    FixedForm {
        name: "the IPv4-compatible form ::/96",
        net: 0,
        len: 96,
        networks_inside_match: false,
    },
    FixedForm {
        name: "the 6to4 form 2002::/16",
        net: 0x2002_u128 << 112,
        len: 16,
        networks_inside_match: false,
    },
    FixedForm {
        name: "Teredo 2001::/32",
        net: 0x2001_u128 << 112,
        len: 32,
        networks_inside_match: true,
    },
];

/// Unwraps IPv4 addresses embedded in IPv6 forms (see the module doc);
/// `nat64` are the configured NAT64 prefixes. Allocation-free.
#[inline]
pub fn canonicalize(ip: IpAddr, nat64: &Nat64Prefixes) -> Canonical {
    let v6 = match ip {
        IpAddr::V4(_) => return Canonical::Ip(ip),
        IpAddr::V6(v6) => v6,
    };
    let bits = u128::from(v6);
    let low32 = || Canonical::Ip(IpAddr::V4(Ipv4Addr::from(bits as u32)));
    match v6.segments() {
        // IPv4-mapped ::ffff:a.b.c.d
        [0, 0, 0, 0, 0, 0xffff, _, _] => return low32(),
        // SIIT IPv4-translated ::ffff:0:a.b.c.d
        [0, 0, 0, 0, 0xffff, 0, _, _] => return low32(),
        // IPv4-compatible ::a.b.c.d (deprecated); :: and ::1 are not addresses of that kind
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 || lo > 1 => return low32(),
        // 6to4 2002:AABB:CCDD::/48
        [0x2002, hi, lo, ..] => {
            return Canonical::Ip(IpAddr::V4(Ipv4Addr::from(
                (u32::from(hi) << 16) | u32::from(lo),
            )));
        }
        // Teredo 2001:0000::/32
        [0x2001, 0, ..] => return Canonical::Untraceable(v6),
        _ => {}
    }
    for prefix in &nat64.0 {
        if prefix.contains(bits) {
            return prefix.embedded(v6);
        }
    }
    Canonical::Ip(ip)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn canon(s: &str) -> Canonical {
        canonicalize(s.parse().unwrap(), &Nat64Prefixes::default())
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
            "::ffff:0:8.8.8.8",
            "::8.8.8.8",
            "64:ff9b::8.8.8.8",
            "64:ff9b:1:808:8:800::",
            "64:ff9b:1:808:8:8ab:cdef:1234",
            "2002:808:808::1",
            "2002:0808:0808:1234:5678::9",
        ] {
            assert_eq!(canon(wrapped), v4("8.8.8.8"), "{wrapped}");
        }
    }

    #[test]
    fn the_local_use_prefix_is_read_by_the_48_layout_not_the_last_32_bits() {
        // Issue 13: 127.0.2.1 at the /48 layout; its last 32 bits spell 127.0.1.1.
        assert_eq!(canon("64:ff9b:1:7f00:2:100:7f00:101"), v4("127.0.2.1"));
        assert_eq!(canon("64:ff9b:1::8.8.8.8"), v4("0.0.0.0"));
    }

    #[test]
    fn a_nonzero_u_octet_is_untraceable() {
        let a: Ipv6Addr = "64:ff9b:1:808:108:800::".parse().unwrap();
        assert_eq!(
            canonicalize(IpAddr::V6(a), &Nat64Prefixes::default()),
            Canonical::Untraceable(a)
        );
    }

    #[test]
    fn a_more_specific_prefix_decides() {
        let inner = Nat64Prefix::new("64:ff9b:1:abcd::/96".parse().unwrap()).unwrap();
        let set = Nat64Prefixes::new([Nat64Prefix::LOCAL_USE, inner, Nat64Prefix::WELL_KNOWN]);
        let ip = "64:ff9b:1:abcd::8.8.8.8".parse().unwrap();
        assert_eq!(canonicalize(ip, &set), v4("8.8.8.8"));
        assert_eq!(
            canonicalize(ip, &Nat64Prefixes::default()),
            v4("171.205.0.0")
        );
    }

    #[test]
    fn a_prefix_that_is_not_configured_is_ordinary_ipv6() {
        let none = Nat64Prefixes::new([]);
        let ip: IpAddr = "64:ff9b::8.8.8.8".parse().unwrap();
        assert_eq!(canonicalize(ip, &none), Canonical::Ip(ip));
    }

    #[test]
    fn only_rfc_6052_lengths_without_host_bits_are_prefixes() {
        for len in 0..=128u8 {
            let net = Ipv6Net::new("2001:db8::".parse().unwrap(), len).unwrap();
            assert_eq!(
                Nat64Prefix::new(net).is_ok(),
                NAT64_LENGTHS.contains(&len),
                "/{len}"
            );
        }
        assert_eq!(
            Nat64Prefix::new("2001:db8::1/96".parse().unwrap()),
            Err(Nat64Error::HostBits)
        );
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
            Canonical::Untraceable(_)
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
            canon("::1:ffff:0:1:2"),
            Canonical::Ip("::1:ffff:0:1:2".parse().unwrap())
        );
        // ::ffff:0:1:2 is the SIIT form of 0.1.0.2, no longer ordinary.
        assert_eq!(canon("::ffff:0:1:2"), v4("0.1.0.2"));
    }

    /// RFC 6052 §2.2, Figure 1, written out as a table of bit positions
    /// (independently of `Nat64Prefix::embedded`): for each prefix length, the
    /// IPv4 address is split into (v4 bits, first IPv6 bit) pieces around
    /// the reserved octet 64..71.
    const FIGURE_1: [(u8, &[(u32, u32)]); 6] = [
        (32, &[(32, 32)]),
        (40, &[(24, 40), (8, 72)]),
        (48, &[(16, 48), (16, 72)]),
        (56, &[(8, 56), (24, 72)]),
        (64, &[(32, 72)]),
        (96, &[(32, 96)]),
    ];

    /// Embeds `v4` after `prefix` by FIGURE_1; `suffix` fills every bit the
    /// figure leaves to the suffix (never the u octet).
    fn embed(prefix: u128, len: u8, v4: u32, suffix: u128) -> u128 {
        let pieces = FIGURE_1.iter().find(|(l, _)| *l == len).unwrap().1;
        let mut a = prefix;
        let mut taken = 0u32;
        let mut end = 0u32;
        for &(bits, at) in pieces {
            let piece = u128::from(v4 >> (32 - taken - bits)) & ((1u128 << bits) - 1);
            a |= piece << (128 - at - bits);
            taken += bits;
            end = at + bits;
        }
        // The suffix occupies every bit after the address (RFC 6052: zero,
        // but a translator may not care; the proxy ignores it).
        let suffix_bits = 128 - end;
        if suffix_bits > 0 {
            let u_octet = 0xff_u128 << 56;
            a |= suffix & ((1u128 << suffix_bits) - 1) & !u_octet;
        }
        a
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn embedding_then_canonicalising_gives_back_the_ipv4_address(
            layout in 0usize..6,
            v4 in any::<u32>(),
            suffix in any::<u128>(),
            prefix_bits in any::<u128>(),
        ) {
            let len = FIGURE_1[layout].0;
            // A random prefix of that length that is none of the fixed forms.
            let mut net = prefix_bits & !(u128::MAX >> len);
            let top = (net >> 112) as u16;
            if net >> 96 == 0 || top == 0x2002 || (top == 0x2001 && (net >> 96) as u16 == 0) {
                net |= 0x3fff_u128 << 112;
            }
            let prefix = Nat64Prefix::new(Ipv6Net::new(Ipv6Addr::from(net), len).unwrap()).unwrap();
            let set = Nat64Prefixes::new([prefix]);
            let a = Ipv6Addr::from(embed(net, len, v4, suffix));
            prop_assert_eq!(
                canonicalize(IpAddr::V6(a), &set),
                Canonical::Ip(IpAddr::V4(Ipv4Addr::from(v4))),
                "{} in {}", a, prefix
            );
            // The same address with a non-zero u octet is untraceable.
            if len <= 64 {
                let bad = Ipv6Addr::from(u128::from(a) | 1u128 << 56);
                prop_assert_eq!(canonicalize(IpAddr::V6(bad), &set), Canonical::Untraceable(bad));
            }
        }

        #[test]
        fn the_default_prefixes_unwrap_by_their_own_layouts(v4 in any::<u32>(), suffix in any::<u128>()) {
            let want = Canonical::Ip(IpAddr::V4(Ipv4Addr::from(v4)));
            let set = Nat64Prefixes::default();
            let wk = Ipv6Addr::from(embed(0x0064_ff9b_u128 << 96, 96, v4, suffix));
            let lu = Ipv6Addr::from(embed(0x0064_ff9b_0001_u128 << 80, 48, v4, suffix));
            prop_assert_eq!(canonicalize(IpAddr::V6(wk), &set), want);
            prop_assert_eq!(canonicalize(IpAddr::V6(lu), &set), want);
        }

        #[test]
        fn the_fixed_forms_unwrap(v4 in any::<u32>(), noise in any::<u128>()) {
            let want = Canonical::Ip(IpAddr::V4(Ipv4Addr::from(v4)));
            let a = u128::from(v4);
            let none = Nat64Prefixes::new([]);
            for form in [
                0xffff_u128 << 32 | a,
                0xffff_u128 << 48 | a,
                0x2002_u128 << 112 | a << 80 | (noise & ((1u128 << 80) - 1)),
            ] {
                prop_assert_eq!(canonicalize(IpAddr::V6(Ipv6Addr::from(form)), &none), want);
            }
        }
    }
}
