//! Network tables: CIDR lists compiled to sorted, merged address ranges and
//! searched by binary search (no allocation, no hashing).

use std::net::IpAddr;

use ipnet::IpNet;

use crate::geo::Nat64Prefixes;

/// A set of networks. IPv4 and IPv6 ranges are kept apart, each sorted by
/// start and merged so ranges never overlap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkTable {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
    /// How addresses are canonicalised before they are matched against this
    /// table by [`crate::proxy::client_ip::is_trusted`] (trusted proxies);
    /// a policy's own tables are matched after `Policy::judge` did it.
    nat64: Nat64Prefixes,
}

impl NetworkTable {
    /// Compiles a list of networks. IPv4-mapped IPv6 networks
    /// (`::ffff:a.b.c.d/96+n`) are stored as the IPv4 network they describe,
    /// because the addresses they are matched against are canonicalised the
    /// same way.
    pub fn compile<'a>(nets: impl IntoIterator<Item = &'a IpNet>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in nets {
            match net.trunc() {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => {
                    let start = u128::from(n.network());
                    let end = u128::from(n.broadcast());
                    if n.prefix_len() >= 96 && start >> 32 == 0xffff {
                        v4.push((start as u32, end as u32));
                    } else {
                        v6.push((start, end));
                    }
                }
            }
        }
        Self {
            v4: merge(v4),
            v6: merge(v6),
            nat64: Nat64Prefixes::default(),
        }
    }

    /// The same table, canonicalising with `nat64` (`[geoip] nat64_prefixes`).
    #[must_use]
    pub fn with_nat64(mut self, nat64: Nat64Prefixes) -> Self {
        self.nat64 = nat64;
        self
    }

    /// The NAT64 prefixes addresses are canonicalised with.
    pub const fn nat64(&self) -> &Nat64Prefixes {
        &self.nat64
    }

    /// True when `ip` falls in one of the networks.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => find(&self.v4, u32::from(a)),
            IpAddr::V6(a) => find(&self.v6, u128::from(a)),
        }
    }

    /// True when the table holds no network.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// The merged ranges, IPv4 then IPv6, each sorted: `first-last` with
    /// both addresses in their canonical text. Two tables that match the
    /// same addresses give the same ranges, however their networks were
    /// written (used by the policy version).
    pub fn ranges(&self) -> impl Iterator<Item = String> + '_ {
        let v4 = self.v4.iter().map(|&(a, b)| {
            format!(
                "{}-{}",
                std::net::Ipv4Addr::from(a),
                std::net::Ipv4Addr::from(b)
            )
        });
        let v6 = self.v6.iter().map(|&(a, b)| {
            format!(
                "{}-{}",
                std::net::Ipv6Addr::from(a),
                std::net::Ipv6Addr::from(b)
            )
        });
        v4.chain(v6)
    }
}

fn merge<T: Ord + Copy + num_succ::Succ>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if last.1.succ().is_none_or(|next| start <= next) => {
                last.1 = last.1.max(end);
            }
            _ => out.push((start, end)),
        }
    }
    out
}

#[inline]
fn find<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    // Index of the first range starting after x; the candidate is the one before.
    let i = ranges.partition_point(|r| r.0 <= x);
    i > 0 && ranges[i - 1].1 >= x
}

mod num_succ {
    pub trait Succ: Sized {
        fn succ(self) -> Option<Self>;
    }
    impl Succ for u32 {
        fn succ(self) -> Option<Self> {
            self.checked_add(1)
        }
    }
    impl Succ for u128 {
        fn succ(self) -> Option<Self> {
            self.checked_add(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(nets: &[&str]) -> NetworkTable {
        let nets: Vec<IpNet> = nets.iter().map(|n| n.parse().unwrap()).collect();
        NetworkTable::compile(&nets)
    }

    fn has(t: &NetworkTable, ip: &str) -> bool {
        t.contains(ip.parse().unwrap())
    }

    #[test]
    fn matches_inside_and_not_outside() {
        let t = table(&["10.0.0.0/8", "192.168.1.0/24", "fd00::/8"]);
        assert!(has(&t, "10.0.0.0"));
        assert!(has(&t, "10.255.255.255"));
        assert!(!has(&t, "11.0.0.0"));
        assert!(!has(&t, "9.255.255.255"));
        assert!(has(&t, "192.168.1.77"));
        assert!(!has(&t, "192.168.2.1"));
        assert!(has(&t, "fd12::1"));
        assert!(!has(&t, "fe80::1"));
        assert!(
            !has(&t, "::ffff:10.0.0.1"),
            "tables match canonical addresses only"
        );
    }

    #[test]
    fn overlapping_and_adjacent_ranges_merge() {
        let t = table(&["10.0.0.0/24", "10.0.1.0/24", "10.0.0.128/25", "0.0.0.0/0"]);
        assert_eq!(t.v4, vec![(0, u32::MAX)]);
        let t = table(&["10.0.0.0/24", "10.0.1.0/24", "10.0.3.0/24"]);
        assert_eq!(t.v4.len(), 2);
        assert!(!has(&t, "10.0.2.5"));
    }

    #[test]
    fn host_bits_are_ignored_and_mapped_nets_become_v4() {
        let t = table(&["10.1.2.3/8", "::ffff:8.8.8.0/120"]);
        assert!(has(&t, "10.200.0.1"));
        assert!(has(&t, "8.8.8.8"));
        assert!(t.v6.is_empty());
    }

    #[test]
    fn empty_table_matches_nothing() {
        let t = table(&[]);
        assert!(t.is_empty());
        assert!(!has(&t, "0.0.0.0"));
        assert!(!has(&t, "::"));
    }
}
