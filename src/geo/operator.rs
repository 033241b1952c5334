//! The operator database (`[geoip] operator_database`): for an address, the
//! country of the network that announces it (the registrant of its
//! autonomous system) and, where the database has them, the AS number and
//! organisation.
//!
//! It is opened and validated by the same code as the country database
//! ([`GeoDb::open`]: refused whole when it does not open, its probes fail or
//! its tree holds no data), and swapped with it on reload. Two record
//! layouts are read:
//!
//! - ip-location-db (`iptoasn-country`, shipped in `geodata/`):
//!   `country_code`;
//! - MaxMind GeoLite2-ASN / GeoIP2-ISP: `autonomous_system_number`,
//!   `autonomous_system_organization` (GeoLite2-ASN has no country: the
//!   operator country is then unknown and never "foreign");
//!
//! and, for a database that has it, `registered_country.iso_code` when
//! `country_code` is absent. `country.iso_code` is deliberately not read: it
//! is where the address is, which the country database already says.

use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

use super::{Country, GeoDb, GeoError};

/// Who operates an address, as far as the operator database knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Operator {
    /// The country of the announcing network's registrant.
    pub country: Option<Country>,
    /// The autonomous system number, when the database has one.
    pub asn: Option<u32>,
}

#[derive(Deserialize)]
struct RegisteredCountry<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

/// The fields read on the hot path; every other field is skipped.
#[derive(Deserialize)]
struct OperatorRecord<'a> {
    #[serde(borrow, default)]
    country_code: Option<&'a str>,
    #[serde(borrow, default)]
    registered_country: Option<RegisteredCountry<'a>>,
    #[serde(default)]
    autonomous_system_number: Option<u32>,
}

/// The organisation, for `lookup` and `upstreams` only.
#[derive(Deserialize)]
struct OrganizationRecord<'a> {
    #[serde(borrow, default)]
    autonomous_system_organization: Option<&'a str>,
}

/// An open operator database.
#[derive(Debug)]
pub struct OperatorDb {
    db: GeoDb,
}

impl OperatorDb {
    /// Opens and validates the file at `path` like the country database.
    ///
    /// # Errors
    /// [`GeoError`] naming the file, as for [`GeoDb::open`].
    pub fn open(path: &Path) -> Result<Self, GeoError> {
        Ok(Self {
            db: GeoDb::open(path)?,
        })
    }

    /// The operator of `ip` (already canonicalised by the caller). Never
    /// allocates; a record that does not decode counts as unknown.
    #[inline]
    pub fn operator(&self, ip: IpAddr) -> Operator {
        let Some(record) = self.db.record::<OperatorRecord<'_>>(ip) else {
            return Operator::default();
        };
        let country = record
            .country_code
            .or_else(|| record.registered_country.and_then(|c| c.iso_code))
            .and_then(Country::from_code);
        Operator {
            country,
            asn: record.autonomous_system_number,
        }
    }

    /// The AS organisation of `ip`, when the database has one. Allocates:
    /// for the command line, not for requests.
    pub fn organization(&self, ip: IpAddr) -> Option<String> {
        self.db
            .record::<OrganizationRecord<'_>>(ip)?
            .autonomous_system_organization
            .map(str::to_owned)
    }

    /// The underlying database, for its path and metadata.
    pub const fn database(&self) -> &GeoDb {
        &self.db
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> OperatorDb {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        OperatorDb::open(&root.join("geodata/iptoasn-country.mmdb")).unwrap()
    }

    #[test]
    fn the_shipped_operator_database_separates_location_from_operator() {
        let db = shipped();
        let us = Country::from_code("US");
        let fr = Country::from_code("FR");
        for ip in ["15.188.0.1", "35.180.0.1", "20.19.0.1", "34.155.0.1"] {
            assert_eq!(db.operator(ip.parse().unwrap()).country, us, "{ip}");
        }
        for ip in ["51.15.0.1", "90.0.0.1"] {
            assert_eq!(db.operator(ip.parse().unwrap()).country, fr, "{ip}");
        }
        // The shipped layout has no AS number.
        assert_eq!(db.operator("15.188.0.1".parse().unwrap()).asn, None);
    }

    #[test]
    fn a_truncated_operator_database_is_refused() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(root.join("geodata/iptoasn-country.mmdb")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cut = dir.path().join("cut.mmdb");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        assert!(OperatorDb::open(&cut).is_err());
    }
}
