//! Writes a copy of a MaxMind DB with extra networks mapped to countries,
//! e.g. loopback addresses for benchmarks and demonstrations:
//!
//! ```text
//! cargo run --release --example geo-overlay -- IN.mmdb OUT.mmdb 127.0.0.1/32=FR 127.0.0.2/32=US
//! ```
//!
//! Every network of the input is copied with its country (read as the proxy
//! reads it), in the ip-location-db layout (`country_code`), so the result
//! is realistic in size and depth. IPv4 stays under `::/96` only, as in the
//! shipped database (no IPv4 alias subtrees).

use std::net::IpAddr;
use std::process::ExitCode;

use ipnet::IpNet;
use mmdb_writer::{Ipv4Aliasing, Writer};

#[derive(serde::Serialize)]
struct Record<'a> {
    country_code: &'a str,
}

#[derive(serde::Deserialize)]
struct Iso<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(serde::Deserialize)]
struct Source<'a> {
    #[serde(borrow, default)]
    country: Option<Iso<'a>>,
    #[serde(borrow, default)]
    registered_country: Option<Iso<'a>>,
    #[serde(borrow, default)]
    country_code: Option<&'a str>,
}

/// Copies every network of `input` into a new writer.
fn copy(input: &str) -> Result<Writer, String> {
    let reader = maxminddb::Reader::open_readfile(input).map_err(|e| e.to_string())?;
    let mut writer = Writer::builder(reader.metadata().database_type.clone())
        .ipv4_aliasing(Ipv4Aliasing::Disabled)
        .build();
    for item in reader
        .networks(Default::default())
        .map_err(|e| e.to_string())?
    {
        let item = item.map_err(|e| e.to_string())?;
        let Some(rec) = item.decode::<Source<'_>>().map_err(|e| e.to_string())? else {
            continue;
        };
        let code = rec
            .country
            .and_then(|c| c.iso_code)
            .or_else(|| rec.registered_country.and_then(|c| c.iso_code))
            .or(rec.country_code);
        let (Some(code), Ok(net)) = (code, item.network()) else {
            continue;
        };
        let net = match IpNet::new(net.ip(), net.prefix()) {
            Ok(n) => n,
            Err(e) => return Err(e.to_string()),
        };
        // IPv4 networks come back as ::a.b.c.d/96+n from an IPv6 tree.
        let net = match net {
            IpNet::V6(v6) if v6.prefix_len() >= 96 && u128::from(v6.network()) >> 32 == 0 => {
                let v4 = std::net::Ipv4Addr::from(u128::from(v6.network()) as u32);
                IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).map_err(|e| e.to_string())?
            }
            other => other,
        };
        writer
            .insert(net, &Record { country_code: code })
            .map_err(|e| format!("{net}: {e}"))?;
    }
    Ok(writer)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, overlays @ ..] = args.as_slice() else {
        eprintln!("usage: geo-overlay IN.mmdb OUT.mmdb NET=CC...");
        return ExitCode::FAILURE;
    };
    let mut writer = match copy(input) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("cannot load {input}: {e}");
            return ExitCode::FAILURE;
        }
    };
    for overlay in overlays {
        let Some((net, cc)) = overlay.split_once('=') else {
            eprintln!("bad overlay {overlay:?} (expected NET=CC)");
            return ExitCode::FAILURE;
        };
        let Ok(net) = net.parse::<IpNet>() else {
            eprintln!("bad network {net:?}");
            return ExitCode::FAILURE;
        };
        if let Err(e) = writer.insert(net, &Record { country_code: cc }) {
            eprintln!("cannot insert {overlay}: {e}");
            return ExitCode::FAILURE;
        }
    }
    match writer.to_bytes().map(|b| std::fs::write(output, b)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("cannot write {output}: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("cannot encode: {e}");
            ExitCode::FAILURE
        }
    }
}
