//! The `EEA` alias of SPEC §3: what "inside the allowed area" means by default.

use super::country::{Country, CountrySet};

/// The 27 member states of the European Union (Greece is `GR` in ISO 3166,
/// not the EU's own `EL`).
pub const EU_MEMBER_STATES: [Country; 27] =
    codes(*b"ATBEBGHRCYCZDKEEFIFRDEGRHUIEITLVLTLUMTNLPLPTROSKSIESSE");

/// The EFTA states that are party to the EEA agreement.
pub const EEA_EFTA_STATES: [Country; 3] = codes(*b"NOISLI");

/// Parts of the EU that GeoIP databases report under their own ISO code: the
/// outermost regions Guadeloupe, French Guiana, Martinique, Réunion, Mayotte,
/// Saint-Martin, and Åland. Other territories (Svalbard `SJ`, Faroe `FO`,
/// Greenland `GL`, Gibraltar `GI`, New Caledonia `NC`, …) are outside.
pub const EU_REGIONS_WITH_OWN_CODE: [Country; 7] = codes(*b"GPGFMQREYTMFAX");

/// Every country of the `EEA` alias, in the order above (37 codes).
pub fn eea() -> CountrySet {
    let mut set = CountrySet::new();
    for c in EU_MEMBER_STATES
        .iter()
        .chain(EEA_EFTA_STATES.iter())
        .chain(EU_REGIONS_WITH_OWN_CODE.iter())
    {
        set.insert(*c);
    }
    set
}

const fn codes<const B: usize, const N: usize>(bytes: [u8; B]) -> [Country; N] {
    assert!(B == N * 2);
    let mut out = [Country::from_static(b"AA"); N];
    let mut i = 0;
    while i < N {
        out[i] = Country::from_static(&[bytes[2 * i], bytes[2 * i + 1]]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eea_alias_is_exactly_the_spec_list() {
        let listed: Vec<String> = eea().iter().map(|c| c.to_string()).collect();
        let mut expected = vec![
            // EU 27
            "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE",
            "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
            // EEA EFTA
            "NO", "IS", "LI", // EU regions with their own ISO code
            "GP", "GF", "MQ", "RE", "YT", "MF", "AX",
        ];
        expected.sort_unstable();
        assert_eq!(listed, expected);
        assert_eq!(listed.len(), 37);
    }

    #[test]
    fn territories_outside_the_eea_stay_outside() {
        let set = eea();
        for code in ["SJ", "FO", "GL", "GI", "NC", "CH", "GB", "US", "EL", "UK"] {
            let c = Country::from_code(code).unwrap();
            assert!(!set.contains(c), "{code} must not be in the EEA alias");
        }
    }
}
