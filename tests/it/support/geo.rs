//! Test GeoIP databases, generated with `mmdb-writer` in either layout.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use mmdb_writer::{Ipv4Aliasing, Writer};

/// Which record shape to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// MaxMind GeoIP2/GeoLite2: `country.iso_code`.
    MaxMind,
    /// MaxMind with only `registered_country.iso_code` (anonymous proxies etc.).
    RegisteredOnly,
    /// ip-location-db: `country_code`.
    IpLocationDb,
}

/// A database under construction, then on disk.
pub struct TestGeo {
    layout: Layout,
    entries: Vec<(IpNet, String)>,
    aliasing: bool,
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl TestGeo {
    /// An empty database. IPv4 aliasing is off by default (like the shipped
    /// database), so unwrapping IPv6 forms is the proxy's own work.
    pub fn new(layout: Layout) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.mmdb");
        Self {
            layout,
            entries: Vec::new(),
            aliasing: false,
            _dir: dir,
            path,
        }
    }

    /// Maps an address or network to a country code.
    pub fn map(mut self, net: &str, country: &str) -> Self {
        let net: IpNet = net
            .parse()
            .or_else(|_| net.parse::<IpAddr>().map(IpNet::from))
            .unwrap();
        self.entries.push((net, country.to_owned()));
        self
    }

    /// Installs the writer's IPv4 alias subtrees (::ffff:0:0/96, 2002::/16).
    pub fn with_aliasing(mut self) -> Self {
        self.aliasing = true;
        self
    }

    /// Writes the database file and returns self.
    pub fn build(self) -> Self {
        self.write_to(&self.path.clone());
        self
    }

    /// Writes the database to `path` (for replacement tests).
    pub fn write_to(&self, path: &Path) {
        let aliasing = if self.aliasing {
            Ipv4Aliasing::Enabled
        } else {
            Ipv4Aliasing::Disabled
        };
        let mut w = Writer::builder("Test-Country")
            .ipv4_aliasing(aliasing)
            .build();
        for (net, code) in &self.entries {
            let iso = BTreeMap::from([("iso_code".to_owned(), code.clone())]);
            let names = BTreeMap::from([("en".to_owned(), format!("Country {code}"))]);
            match self.layout {
                Layout::MaxMind => {
                    #[derive(serde::Serialize)]
                    struct Rec {
                        continent: BTreeMap<String, String>,
                        country: BTreeMap<String, String>,
                        registered_country: BTreeMap<String, String>,
                        names: BTreeMap<String, String>,
                    }
                    let rec = Rec {
                        continent: BTreeMap::from([("code".to_owned(), "EU".to_owned())]),
                        country: iso.clone(),
                        // A different registered country proves country wins.
                        registered_country: BTreeMap::from([(
                            "iso_code".to_owned(),
                            "ZZ".to_owned(),
                        )]),
                        names,
                    };
                    w.insert(*net, &rec).unwrap();
                }
                Layout::RegisteredOnly => {
                    #[derive(serde::Serialize)]
                    struct Rec {
                        registered_country: BTreeMap<String, String>,
                    }
                    w.insert(
                        *net,
                        &Rec {
                            registered_country: iso,
                        },
                    )
                    .unwrap();
                }
                Layout::IpLocationDb => {
                    #[derive(serde::Serialize)]
                    struct Rec {
                        country_code: String,
                    }
                    w.insert(
                        *net,
                        &Rec {
                            country_code: code.clone(),
                        },
                    )
                    .unwrap();
                }
            }
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, w.to_bytes().unwrap()).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// An operator database (SPEC §11) in the union of both layouts:
/// `country_code` (ip-location-db) with, when given, the GeoLite2-ASN
/// fields `autonomous_system_number` and `autonomous_system_organization`.
pub struct TestOperators {
    entries: Vec<(IpNet, String, Option<u32>)>,
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl TestOperators {
    /// An empty database.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("operators.mmdb");
        Self {
            entries: Vec::new(),
            _dir: dir,
            path,
        }
    }

    /// Maps an address or network to an operator country and AS number.
    pub fn map(mut self, net: &str, country: &str, asn: Option<u32>) -> Self {
        let net: IpNet = net
            .parse()
            .or_else(|_| net.parse::<IpAddr>().map(IpNet::from))
            .unwrap();
        self.entries.push((net, country.to_owned(), asn));
        self
    }

    /// Writes the database file and returns self.
    pub fn build(self) -> Self {
        #[derive(serde::Serialize)]
        struct Rec {
            country_code: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            autonomous_system_number: Option<u32>,
            #[serde(skip_serializing_if = "Option::is_none")]
            autonomous_system_organization: Option<String>,
        }
        let mut w = Writer::builder("Test-Operator")
            .ipv4_aliasing(Ipv4Aliasing::Disabled)
            .build();
        for (net, code, asn) in &self.entries {
            let rec = Rec {
                country_code: code.clone(),
                autonomous_system_number: *asn,
                autonomous_system_organization: asn.map(|n| format!("Test Network {n}")),
            };
            w.insert(*net, &rec).unwrap();
        }
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, w.to_bytes().unwrap()).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
