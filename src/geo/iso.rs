//! The codes a config may name: ISO 3166-1 alpha-2, plus the two codes
//! GeoIP databases use outside it (`XK` Kosovo, `EU` for blocks registered to
//! the European Union as a whole, which is not a place and not in `EEA`).

use super::country::{Country, CountrySet};

const OFFICIAL: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ \
BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK \
DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW \
GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB \
LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC \
NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC \
SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ \
UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW XK EU";

/// Every code accepted in `allow_countries` / `deny_countries`.
pub fn known_codes() -> CountrySet {
    let mut set = CountrySet::new();
    for code in OFFICIAL.split_ascii_whitespace() {
        if let Some(c) = Country::from_code(code) {
            set.insert(c);
        }
    }
    set
}

/// A correction for common mistakes (`UK` → `GB`, `EL` → `GR`).
pub fn suggestion(code: &str) -> Option<&'static str> {
    match code.to_ascii_uppercase().as_str() {
        "UK" => Some("GB"),
        "EL" => Some("GR"),
        "EEE" | "EWR" | "EER" => Some("EEA"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_list_has_249_codes_plus_two() {
        assert_eq!(known_codes().len(), 251);
        assert!(!known_codes().contains(Country::from_static(b"UK")));
        assert_eq!(suggestion("uk"), Some("GB"));
    }
}
