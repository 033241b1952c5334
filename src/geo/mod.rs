//! Geolocation: the `.mmdb` reader and what the policy needs from it (a
//! country per address), the `EEA` list, and the canonicalisation of
//! IPv6-wrapped IPv4 addresses.
//!
//! The database is read whole into memory, never memory-mapped: a file
//! truncated or rewritten in place while mapped kills the process with
//! SIGBUS at the next lookup. In memory, a change to the file can only
//! matter at the next reload, which validates the new file whole.
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

pub use canon::{
    Canonical, FIXED_FORMS, FixedForm, NAT64_LENGTHS, Nat64Error, Nat64Prefix, Nat64Prefixes,
    canonicalize,
};
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

/// The largest database file read: 1 GiB (GeoIP2 City is about 70 MB).
pub const MAX_DATABASE_BYTES: u64 = 1 << 30;

/// An open country database.
pub struct GeoDb {
    reader: maxminddb::Reader<Vec<u8>>,
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
    /// Reads the file at `path` into memory and checks its metadata, its
    /// whole search tree and every record it points to.
    ///
    /// # Errors
    /// [`GeoError::Open`] if it cannot be read as a MaxMind DB,
    /// [`GeoError::Corrupt`] if its structure does not verify.
    pub fn open(path: &Path) -> Result<Self, GeoError> {
        Self::open_at_most(path, MAX_DATABASE_BYTES)
    }

    fn open_at_most(path: &Path, max: u64) -> Result<Self, GeoError> {
        use std::io::Read;
        let open = |source| GeoError::Open {
            path: path.to_owned(),
            source,
        };
        // Bounded: a path to /dev/zero, a FIFO or a runaway file must not
        // eat the memory of the process.
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(max + 1).read_to_end(&mut bytes))
            .map_err(|e| open(maxminddb::MaxMindDbError::Io(e)))?;
        if bytes.len() as u64 > max {
            return Err(open(maxminddb::MaxMindDbError::invalid_database(format!(
                "the file is larger than {max} bytes"
            ))));
        }
        let reader = maxminddb::Reader::from_source(bytes).map_err(open)?;
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
        if let Err(source) = walk(&reader) {
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

/// Walks the whole search tree and decodes every record it points to, as
/// lookups will: a database that passes answers every address with a
/// country or a clean "none", never an error. `Reader::verify` would do more
/// but refuses databases whose optional description is empty (the shipped
/// one). A tree with no data, or a zeroed one (which loops back to its root
/// and answers "no country" for every address: with unknown_country =
/// "allow", everyone would pass), is refused too.
fn walk(reader: &maxminddb::Reader<Vec<u8>>) -> Result<(), maxminddb::MaxMindDbError> {
    // A tree of N nodes has at most N + 1 leaves; more means a cycle.
    let limit = u64::from(reader.metadata().node_count) * 2 + 2;
    let mut seen = 0u64;
    // Records are shared (one per country in a country database): each
    // distinct one is decoded once.
    let mut decoded = std::collections::HashSet::new();
    for network in reader.networks(maxminddb::WithinOptions::default())? {
        let network = network?;
        if network.offset().is_none_or(|o| decoded.insert(o)) {
            network.decode::<CountryRecord<'_>>()?;
        }
        seen += 1;
        if seen > limit {
            return Err(maxminddb::MaxMindDbError::invalid_database(
                "the search tree has a cycle",
            ));
        }
    }
    if seen == 0 {
        return Err(maxminddb::MaxMindDbError::invalid_database(
            "no network in the database has data",
        ));
    }
    Ok(())
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

    #[test]
    fn a_database_truncated_in_place_is_refused_and_the_open_one_is_unaffected() {
        let shipped =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("geodata/geo-whois-asn-country.mmdb");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("geo.mmdb");
        std::fs::copy(&shipped, &path).unwrap();
        let db = GeoDb::open(&path).unwrap();
        let us = "8.8.8.8".parse().unwrap();
        assert_eq!(db.country(us), Country::from_code("US"));
        for len in [4096, 3_000_000] {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(len)
                .unwrap();
            // Memory-mapped, this lookup died of SIGBUS.
            assert_eq!(db.country(us), Country::from_code("US"));
            let err = GeoDb::open(&path).unwrap_err();
            assert!(matches!(err, GeoError::Open { .. }), "{len}: {err:?}");
        }
    }

    #[test]
    fn a_database_path_to_an_endless_file_is_refused_without_reading_it_all() {
        let err = GeoDb::open_at_most(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert!(
            format!("{:?}", err).contains("larger than 1048576 bytes"),
            "{err:?}"
        );
    }

    #[test]
    fn a_database_with_a_scrambled_search_tree_is_refused() {
        // Bytes flipped in the middle of the tree: the probes may not pass
        // there, the whole walk does.
        let shipped =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("geodata/geo-whois-asn-country.mmdb");
        let mut bytes = std::fs::read(&shipped).unwrap();
        let node_bytes = {
            let db = GeoDb::open(&shipped).unwrap();
            db.node_count() as usize * 6
        };
        for b in &mut bytes[node_bytes / 2..node_bytes / 2 + 4096] {
            *b = 0xff;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scrambled.mmdb");
        std::fs::write(&path, &bytes).unwrap();
        let err = GeoDb::open(&path).unwrap_err();
        assert!(matches!(err, GeoError::Corrupt { .. }), "{err:?}");
    }
}
