//! The data the transfer page draws with, compiled in (no request at run
//! time): country outlines (Natural Earth 1:110m, public domain, from the
//! npm package `world-atlas`) and country names in English and French
//! (the npm package `i18n-iso-countries`), both made once by `scripts/world-map` into
//! `geodata/`.

use crate::geo::Country;

const OUTLINES: &str = include_str!("../../geodata/world-110m.tsv");
const NAMES: &str = include_str!("../../geodata/country-names.tsv");

/// The map's SVG `viewBox` width and height, as `scripts/world-map` projects.
pub const VIEW: (u32, u32) = (1000, 408);

/// The language of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// French, the default for the HDS audience.
    #[default]
    Fr,
    /// English.
    En,
}

impl Lang {
    /// The `lang` attribute and the `--lang` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Fr => "fr",
            Self::En => "en",
        }
    }

    /// `fr` or `en`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "fr" => Some(Self::Fr),
            "en" => Some(Self::En),
            _ => None,
        }
    }
}

/// Every outline: ISO code and SVG path data, in code order.
pub fn outlines() -> impl Iterator<Item = (&'static str, &'static str)> {
    OUTLINES
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t'))
}

/// The outline of `code`, if the map draws it (small countries are not
/// drawn at 1:110m).
pub fn outline(code: &str) -> Option<&'static str> {
    outlines().find(|(c, _)| *c == code).map(|(_, d)| d)
}

/// The name of `country` in `lang`; the code itself when unknown.
pub fn name(country: Country, lang: Lang) -> &'static str {
    NAMES
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let mut f = l.split('\t');
            (f.next()? == country.as_str()).then(|| {
                let en = f.next();
                let fr = f.next();
                match lang {
                    Lang::En => en,
                    Lang::Fr => fr.or(en),
                }
            })?
        })
        .unwrap_or_else(|| country.static_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_both_languages() {
        let us = Country::from_code("US").unwrap();
        assert_eq!(name(us, Lang::En), "United States");
        assert_eq!(name(us, Lang::Fr), "États-Unis");
        let ru = Country::from_code("RU").unwrap();
        assert_eq!(name(ru, Lang::Fr), "Russie");
        // A code with no name is shown as itself.
        let zz = Country::from_code("ZZ").unwrap();
        assert_eq!(name(zz, Lang::Fr), "ZZ");
    }

    #[test]
    fn outlines_are_path_data_for_iso_codes() {
        let all: Vec<_> = outlines().collect();
        assert!(all.len() > 150, "{}", all.len());
        for (code, d) in all {
            assert!(Country::from_code(code).is_some(), "{code}");
            assert!(d.starts_with('M') && d.ends_with('z'), "{code}");
            assert!(
                d.bytes().all(|b| b"Mlz -0123456789".contains(&b)),
                "{code}: only moves, lines and numbers"
            );
        }
        assert!(outline("US").is_some() && outline("CH").is_some());
        assert!(outline("SG").is_none());
    }
}
