//! The databases themselves: generated ones are real MaxMind DB files that
//! `mmdblookup` (libmaxminddb) reads, and the shipped one answers as the
//! README promises.

use std::path::Path;
use std::process::Command;

use residency_proxy::geo::{Country, GeoDb};

use crate::support::{Layout, ips, standard_geo};

fn mmdblookup(db: &Path, ip: &str, path: &[&str]) -> String {
    let out = Command::new("mmdblookup")
        .arg("--file")
        .arg(db)
        .args(["--ip", ip])
        .args(path)
        .output()
        .expect("mmdblookup is installed by .ci/run (Debian package mmdb-bin)");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn generated_databases_are_readable_by_mmdblookup() {
    let geo = standard_geo(Layout::MaxMind).build();
    let out = mmdblookup(geo.path(), ips::US, &["country", "iso_code"]);
    assert!(out.contains("\"US\""), "{out}");
    let geo = standard_geo(Layout::IpLocationDb).build();
    let out = mmdblookup(geo.path(), ips::FR, &["country_code"]);
    assert!(out.contains("\"FR\""), "{out}");
    let out = mmdblookup(geo.path(), ips::UNMAPPED, &[]);
    assert!(out.contains("Could not find an entry"), "{out}");
}

#[test]
fn writer_aliases_are_where_the_task_says() {
    // With aliasing, the writer places IPv4 under ::/96 and aliases ::ffff:0:0/96.
    let geo = standard_geo(Layout::IpLocationDb).with_aliasing().build();
    let out = mmdblookup(geo.path(), "::ffff:127.0.0.5", &["country_code"]);
    assert!(out.contains("\"US\""), "{out}");
    let out = mmdblookup(geo.path(), "::127.0.0.5", &["country_code"]);
    assert!(out.contains("\"US\""), "{out}");
    // Without aliasing the mapped form finds nothing in the file itself.
    let geo = standard_geo(Layout::IpLocationDb).build();
    let out = mmdblookup(geo.path(), "::ffff:127.0.0.5", &["country_code"]);
    assert!(!out.contains("\"US\""), "{out}");
}

#[test]
fn shipped_database_knows_google_dns_and_french_operators() {
    let db = GeoDb::open(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/geodata/geo-whois-asn-country.mmdb"
    )))
    .unwrap();
    let cc = |ip: &str| {
        db.country(ip.parse().unwrap())
            .map(|c: Country| c.to_string())
    };
    assert_eq!(cc("8.8.8.8").as_deref(), Some("US"));
    assert_eq!(cc("2001:4860:4860::8888").as_deref(), Some("US"));
    for fr in ["90.0.0.1", "82.64.0.1", "51.38.0.1", "2a01:cb00::1"] {
        assert_eq!(cc(fr).as_deref(), Some("FR"), "{fr}");
    }
    assert_eq!(cc("127.0.0.1"), None);
    // The shipped file has IPv4 only under ::/96; the proxy unwraps the rest.
    assert_eq!(cc("::ffff:8.8.8.8"), None);
    assert!(db.build_epoch() > 1_700_000_000);
}
