//! Geolocation: the memory-mapped `.mmdb` reader and what the policy needs
//! from it (a country per address), the `EEA` list, and the canonicalisation
//! of IPv6-wrapped IPv4 addresses.
//!
//! The reader accepts both record layouts of SPEC §3: MaxMind GeoIP2/GeoLite2
//! (`country.iso_code`, else `registered_country.iso_code`) and ip-location-db
//! (`country_code`). Lookups borrow from the map and never allocate.

mod canon;
mod country;
mod eea;
mod iso;
mod operator;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use canon::{Canonical, canonicalize};
pub use country::{COUNTRY_SLOTS, Country, CountrySet, UNKNOWN_LABEL, from_slot, label, slot};
pub use eea::{EEA_EFTA_STATES, EU_MEMBER_STATES, EU_REGIONS_WITH_OWN_CODE, eea};
pub use iso::{known_codes, suggestion};
pub use operator::{Operator, OperatorDb};

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The file is missing, unreadable or not a MaxMind DB.
    #[error("cannot open GeoIP database {path}")]
    Open {
        /// The configured path.
        path: PathBuf,
        /// What the reader said.
        #[source]
        source: maxminddb::MaxMindDbError,
    },
    /// The file opened but its search tree or data section is inconsistent.
    #[error("GeoIP database {path} is corrupt")]
    Corrupt {
        /// The configured path.
        path: PathBuf,
        /// What the verifier said.
        #[source]
        source: maxminddb::MaxMindDbError,
    },
}

const PROBES: [IpAddr; 4] = [
    IpAddr::V4(std::net::Ipv4Addr::new(8, 8, 8, 8)),
    IpAddr::V4(std::net::Ipv4Addr::new(90, 0, 0, 1)),
    IpAddr::V4(std::net::Ipv4Addr::new(255, 255, 255, 255)),
    IpAddr::V6(std::net::Ipv6Addr::new(0x2a01, 0xcb00, 0, 0, 0, 0, 0, 1)),
];

/// An open country database.
pub struct GeoDb {
    reader: maxminddb::Reader<maxminddb::Mmap>,
    path: PathBuf,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct IsoCode<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

/// The fields read from a record; every other field is skipped.
#[derive(Deserialize)]
struct CountryRecord<'a> {
    #[serde(borrow, default)]
    country: Option<IsoCode<'a>>,
    #[serde(borrow, default)]
    registered_country: Option<IsoCode<'a>>,
    #[serde(borrow, default)]
    country_code: Option<&'a str>,
}

impl GeoDb {
    /// Maps the file at `path` and checks its metadata and search tree.
    ///
    /// # Errors
    /// [`GeoError::Open`] if it cannot be read as a MaxMind DB,
    /// [`GeoError::Corrupt`] if its structure does not verify.
    pub fn open(path: &Path) -> Result<Self, GeoError> {
        #[expect(
            unsafe_code,
            reason = "memory-mapping is the reader's documented fast path"
        )]
        // SAFETY: the map is read-only and lives as long as the reader. The
        // file must not be truncated or rewritten in place while mapped;
        // database updates are made by write-then-rename (geoipupdate, npm
        // refresh, our docs), which leaves this mapping on the old inode.
        let reader =
            unsafe { maxminddb::Reader::open_mmap(path) }.map_err(|source| GeoError::Open {
                path: path.to_owned(),
                source,
            })?;
        // A full `verify()` also rejects databases whose optional metadata is
        // empty (the shipped one has no description), so probe instead: a
        // truncated or scrambled tree fails on these lookups.
        for probe in PROBES {
            if let Err(source) = reader
                .lookup(probe)
                .and_then(|r| r.decode::<CountryRecord<'_>>())
            {
                return Err(GeoError::Corrupt {
                    path: path.to_owned(),
                    source,
                });
            }
        }
        // A tree with no data, or a zeroed one (which loops back to its
        // root), passes the probes above yet answers "no country" for every
        // address: with unknown_country = "allow", everyone would pass. The
        // first network with data is found at once in a sound tree; in a
        // zeroed one the walk fails at the address bit length.
        let first = reader
            .networks(maxminddb::WithinOptions::default())
            .and_then(|mut n| n.next().transpose());
        let source = match first {
            Ok(Some(_)) => None,
            Ok(None) => Some(maxminddb::MaxMindDbError::invalid_database(
                "no network in the database has data",
            )),
            Err(e) => Some(e),
        };
        if let Some(source) = source {
            return Err(GeoError::Corrupt {
                path: path.to_owned(),
                source,
            });
        }
        Ok(Self {
            reader,
            path: path.to_owned(),
        })
    }

    /// The country of `ip`, or `None` if the database has no (valid) country
    /// for it. Never allocates; a decoding error counts as no country.
    #[inline]
    pub fn country(&self, ip: IpAddr) -> Option<Country> {
        let found = self.reader.lookup(ip).ok()?;
        let record: CountryRecord<'_> = found.decode().ok()??;
        let code = record
            .country
            .and_then(|c| c.iso_code)
            .or_else(|| record.registered_country.and_then(|c| c.iso_code))
            .or(record.country_code)?;
        Country::from_code(code)
    }

    /// The path the database was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `build_epoch` from the database metadata, in seconds since the Unix epoch.
    pub fn build_epoch(&self) -> u64 {
        self.reader.metadata().build_epoch
    }

    /// `database_type` from the metadata, e.g. `GeoLite2-Country`.
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// Number of nodes in the search tree, a cheap size indicator for `check`.
    pub fn node_count(&self) -> u32 {
        self.reader.metadata().node_count
    }

    /// The record of `ip` decoded as `T`, borrowing from the database;
    /// `None` when there is none or it does not decode. For the operator
    /// database, which reads other fields of the same kind of file.
    #[inline]
    pub(crate) fn record<'de, T: Deserialize<'de>>(&'de self, ip: IpAddr) -> Option<T> {
        self.reader.lookup(ip).ok()?.decode().ok()?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_whose_search_tree_is_zeroed_is_refused() {
        // Zeroed, every lookup loops back to the root and finds nothing:
        // the probes pass, and every address would be "unknown".
        let shipped =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("geodata/geo-whois-asn-country.mmdb");
        let mut bytes = std::fs::read(&shipped).unwrap();
        let third = bytes.len() / 3;
        bytes[..third].fill(0);
        let dir = tempfile::tempdir().unwrap();
        let zeroed = dir.path().join("zeroed.mmdb");
        std::fs::write(&zeroed, &bytes).unwrap();
        let err = GeoDb::open(&zeroed).unwrap_err();
        assert!(matches!(err, GeoError::Corrupt { .. }), "{err:?}");
        assert!(GeoDb::open(&shipped).is_ok());
    }
}
