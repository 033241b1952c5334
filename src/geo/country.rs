//! `Country`: a two-letter ISO 3166-1 alpha-2 code, `Copy`, compared as bytes.
//!
//! Also the fixed-size set of countries used by the policy (`CountrySet`), a
//! bitset over the 26×26 possible codes, so membership is one shift and mask.

use std::fmt;

/// An ISO 3166-1 alpha-2 country code, upper case (`FR`, `US`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Country([u8; 2]);

impl Country {
    /// Parses a code from a database or config value. Accepts exactly two
    /// ASCII letters, in either case; returns `None` for anything else.
    #[inline]
    pub fn from_code(code: &str) -> Option<Self> {
        match code.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some(Self([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => None,
        }
    }

    /// Builds a code from a literal; for constants. Panics at compile time on
    /// anything but two upper-case ASCII letters.
    pub const fn from_static(code: &[u8; 2]) -> Self {
        assert!(code[0].is_ascii_uppercase() && code[1].is_ascii_uppercase());
        Self(*code)
    }

    /// The code as text, e.g. `"FR"`.
    pub fn as_str(&self) -> &str {
        // Both bytes are ASCII letters by construction.
        std::str::from_utf8(&self.0).expect("country codes are ASCII letters")
    }

    /// Position in the 26×26 code space, 0..676 (676 is free for "unknown").
    #[inline]
    pub const fn index(self) -> usize {
        (self.0[0] - b'A') as usize * 26 + (self.0[1] - b'A') as usize
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Country({})", self.as_str())
    }
}

/// The label used for an address the database has no country for.
pub const UNKNOWN_LABEL: &str = "unknown";

/// Number of slots for "a country or unknown": 676 codes plus one.
pub const COUNTRY_SLOTS: usize = 26 * 26 + 1;

/// The slot of a country or unknown, for fixed-size per-country tables.
#[inline]
pub const fn slot(country: Option<Country>) -> usize {
    match country {
        Some(c) => c.index(),
        None => COUNTRY_SLOTS - 1,
    }
}

/// The country of a slot (`None` for the unknown slot).
pub fn from_slot(slot: usize) -> Option<Country> {
    (slot < COUNTRY_SLOTS - 1)
        .then(|| Country([b'A' + (slot / 26) as u8, b'A' + (slot % 26) as u8]))
}

/// A country or `unknown`, as written in headers, metric labels and audit.
pub fn label(country: Option<Country>) -> &'static str {
    match country {
        Some(c) => c.static_str(),
        None => UNKNOWN_LABEL,
    }
}

impl Country {
    /// The code as a `&'static str`, from a table of all 676 codes, so labels
    /// can be handed out without allocating.
    pub fn static_str(self) -> &'static str {
        let i = self.index() * 2;
        std::str::from_utf8(&ALL_CODES[i..i + 2]).expect("table holds ASCII letters")
    }
}

static ALL_CODES: [u8; 26 * 26 * 2] = {
    let mut t = [0u8; 26 * 26 * 2];
    let mut i = 0;
    while i < 26 * 26 {
        t[i * 2] = b'A' + (i / 26) as u8;
        t[i * 2 + 1] = b'A' + (i % 26) as u8;
        i += 1;
    }
    t
};

/// A set of countries: a bitset over the 676 possible codes.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct CountrySet([u64; 11]);

impl CountrySet {
    /// The empty set.
    pub const fn new() -> Self {
        Self([0; 11])
    }

    /// Adds a country.
    pub const fn insert(&mut self, c: Country) {
        let i = c.index();
        self.0[i / 64] |= 1 << (i % 64);
    }

    /// Membership test: no branches beyond the bounds check.
    #[inline]
    pub const fn contains(&self, c: Country) -> bool {
        let i = c.index();
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    /// Adds every member of `other`.
    pub fn extend(&mut self, other: &CountrySet) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a |= *b;
        }
    }

    /// Members in code order.
    pub fn iter(&self) -> impl Iterator<Item = Country> + '_ {
        (0..26 * 26).filter_map(move |i| {
            let c = Country([b'A' + (i / 26) as u8, b'A' + (i % 26) as u8]);
            self.contains(c).then_some(c)
        })
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// True when no country is in the set.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
}

impl fmt::Debug for CountrySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_two_letters_in_any_case() {
        assert_eq!(Country::from_code("fr"), Some(Country::from_static(b"FR")));
        assert_eq!(
            Country::from_code("FR").map(|c| c.to_string()),
            Some("FR".into())
        );
        assert_eq!(Country::from_code("F"), None);
        assert_eq!(Country::from_code("FRA"), None);
        assert_eq!(Country::from_code("F1"), None);
        assert_eq!(Country::from_code("É"), None);
    }

    #[test]
    fn static_str_matches_code() {
        for code in ["AA", "ZZ", "FR", "US", "AX"] {
            let c = Country::from_code(code).unwrap();
            assert_eq!(c.static_str(), code);
        }
        assert_eq!(label(None), "unknown");
    }

    #[test]
    fn set_membership_and_iteration() {
        let mut s = CountrySet::new();
        for code in ["ZZ", "AA", "FR"] {
            s.insert(Country::from_code(code).unwrap());
        }
        assert!(s.contains(Country::from_static(b"FR")));
        assert!(!s.contains(Country::from_static(b"US")));
        let listed: Vec<String> = s.iter().map(|c| c.to_string()).collect();
        assert_eq!(listed, ["AA", "FR", "ZZ"]);
        assert_eq!(s.len(), 3);
    }
}
