//! TLS termination for `tls_listen` (rustls, ring provider): TLS 1.2 and
//! 1.3, ALPN `h2` and `http/1.1`, a default certificate plus certificates
//! chosen by SNI, and optional client certificates (mTLS) whose verified
//! subject becomes the audit identity when no SigV4 identity is present.
//!
//! The configuration is built with the snapshot, so a reload re-reads the
//! certificates, and a set that does not load (unreadable file, key that
//! does not match its certificate) refuses the whole reload.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

use crate::config::TlsSpec;

/// Why the server TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ServerTlsError {
    /// A certificate or key file could not be read or parsed.
    #[error("cannot load {what} from {path}: {why}")]
    Load {
        /// `certificate`, `private key` or `client CA`.
        what: &'static str,
        /// The file.
        path: String,
        /// What went wrong.
        why: String,
    },
    /// The key does not belong to the certificate.
    #[error("private key {key} does not match certificate {cert}: {why}")]
    Mismatch {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
        /// rustls' words.
        why: String,
    },
    /// rustls refused the configuration.
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}

fn load_err(what: &'static str, path: &Path, why: impl ToString) -> ServerTlsError {
    ServerTlsError::Load {
        what,
        path: path.display().to_string(),
        why: why.to_string(),
    }
}

fn certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, ServerTlsError> {
    let pem = fs::read(path).map_err(|e| load_err(what, path, e))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| load_err(what, path, e))?;
    if certs.is_empty() {
        return Err(load_err(what, path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

fn certified_key(
    cert: &Path,
    key: &Path,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<CertifiedKey>, ServerTlsError> {
    let chain = certs(cert, "certificate")?;
    let pem = fs::read(key).map_err(|e| load_err("private key", key, e))?;
    let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| load_err("private key", key, e))?;
    CertifiedKey::from_der(chain, der, provider)
        .map(Arc::new)
        .map_err(|e| ServerTlsError::Mismatch {
            cert: cert.display().to_string(),
            key: key.display().to_string(),
            why: e.to_string(),
        })
}

/// Builds the server configuration for `spec`.
///
/// # Errors
/// [`ServerTlsError`] naming the file that failed.
pub fn server_config(spec: &TlsSpec) -> Result<Arc<ServerConfig>, ServerTlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let default = certified_key(&spec.cert, &spec.key, &provider)?;
    let mut by_name = Vec::new();
    for (names, cert, key) in &spec.sni {
        let ck = certified_key(cert, key, &provider)?;
        for n in names {
            by_name.push((n.clone(), ck.clone()));
        }
    }
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ServerTlsError::Config(e.to_string()))?;
    let builder = match &spec.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certs(ca, "client CA")? {
                roots.add(c).map_err(|e| load_err("client CA", ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if spec.client_auth_required {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| ServerTlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(SniResolver { default, by_name }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The certificate for the SNI name (exact, or `*.suffix`), else the default.
#[derive(Debug)]
struct SniResolver {
    default: Arc<CertifiedKey>,
    by_name: Vec<(String, Arc<CertifiedKey>)>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = hello.server_name().and_then(|sni| {
            self.by_name.iter().find_map(|(pattern, ck)| {
                let matches = match pattern.strip_prefix("*.") {
                    Some(suffix) => sni.len().checked_sub(suffix.len() + 1).is_some_and(|i| {
                        sni.as_bytes()[i] == b'.' && sni[i + 1..].eq_ignore_ascii_case(suffix)
                    }),
                    None => sni.eq_ignore_ascii_case(pattern),
                };
                matches.then(|| ck.clone())
            })
        });
        Some(chosen.unwrap_or_else(|| self.default.clone()))
    }
}

/// The subject of a (verified) client certificate for the audit trail: its
/// Common Name, else its first subjectAltName (DNS name, e-mail or URI).
pub fn subject_of(cert: &CertificateDer<'_>) -> Option<String> {
    let tbs = der::seq(cert.as_ref()).and_then(der::seq)?;
    let mut fields = der::Items(tbs);
    // [0] version is optional; the serial number follows it.
    if fields.next()?.0 == 0xA0 {
        let _serial = fields.next()?;
    }
    let _signature = fields.next()?;
    let _issuer = fields.next()?;
    let _validity = fields.next()?;
    let subject = fields.next()?;
    if let Some(cn) = common_name(subject.1) {
        return Some(cn);
    }
    let extensions = fields.find(|(tag, _)| *tag == 0xA3)?;
    first_san(der::seq(extensions.1)?)
}

const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_SAN: &[u8] = &[0x55, 0x1D, 0x11];

fn common_name(name: &[u8]) -> Option<String> {
    for (_, set) in der::Items(name) {
        for (_, attr) in der::Items(set) {
            let mut parts = der::Items(attr);
            let (_, oid) = parts.next()?;
            let (_, value) = parts.next()?;
            if oid == OID_CN {
                return printable(value);
            }
        }
    }
    None
}

fn first_san(extensions: &[u8]) -> Option<String> {
    for (_, ext) in der::Items(extensions) {
        let mut parts = der::Items(ext);
        let (_, oid) = parts.next()?;
        if oid != OID_SAN {
            continue;
        }
        // extnID, [critical BOOLEAN], extnValue OCTET STRING
        let value = parts.find(|(tag, _)| *tag == 0x04)?.1;
        for (tag, name) in der::Items(der::seq(value)?) {
            if matches!(tag, 0x81 | 0x82 | 0x86) {
                return printable(name);
            }
        }
    }
    None
}

/// The longest subject read, in characters.
const MAX_SUBJECT: usize = 256;

/// Text fit for a record: UTF-8, no control characters, at most
/// [`MAX_SUBJECT`] chars. A longer one is not read at all (never cut: two
/// certificates whose names share their first 256 characters would be one
/// identity to the registry and to grants).
fn printable(bytes: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(bytes).ok()?;
    (!s.is_empty() && s.chars().count() <= MAX_SUBJECT && !s.chars().any(char::is_control))
        .then(|| s.to_owned())
}

/// One certificate file the server presents or trusts, and when its first
/// certificate (the leaf, or the first CA) stops being valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertExpiry {
    /// `default`, the first SNI name of an `[[server.tls.sni]]` entry, or
    /// `client_ca`: the `name` label of
    /// `residency_tls_certificate_expiry_timestamp_seconds`.
    pub name: String,
    /// The PEM file.
    pub path: std::path::PathBuf,
    /// notAfter in seconds since the Unix epoch; `None` when the file cannot
    /// be read or its first certificate parsed.
    pub not_after: Option<i64>,
}

/// The expiry of every certificate file of `spec`: the default certificate,
/// each SNI certificate, the client CA.
pub fn expiries(spec: &TlsSpec) -> Vec<CertExpiry> {
    let one = |name: &str, path: &Path| CertExpiry {
        name: name.to_owned(),
        path: path.to_owned(),
        not_after: certs(path, "certificate")
            .ok()
            .and_then(|c| c.first().and_then(not_after)),
    };
    let mut out = vec![one("default", &spec.cert)];
    for (names, cert, _) in &spec.sni {
        out.push(one(names.first().map_or("sni", String::as_str), cert));
    }
    if let Some(ca) = &spec.client_ca {
        out.push(one("client_ca", ca));
    }
    out
}

/// The notAfter of a certificate, in seconds since the Unix epoch.
pub fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    let tbs = der::seq(cert.as_ref()).and_then(der::seq)?;
    let mut fields = der::Items(tbs);
    if fields.next()?.0 == 0xA0 {
        let _serial = fields.next()?;
    }
    let _signature = fields.next()?;
    let _issuer = fields.next()?;
    let (tag, validity) = fields.next()?;
    if tag != 0x30 {
        return None;
    }
    let mut times = der::Items(validity);
    let _not_before = times.next()?;
    let (tag, time) = times.next()?;
    asn1_time(tag, time)
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`), as RFC 5280 §4.1.2.5 allows them, to Unix seconds.
fn asn1_time(tag: u8, bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |s: &str| s.parse::<i64>().ok();
    let (year, rest) = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy = num(&digits[..2])?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &digits[2..])
        }
        (0x18, 14) => (num(&digits[..4])?, &digits[4..]),
        _ => return None,
    };
    let [month, day, hour, minute, second] =
        [0, 2, 4, 6, 8].map(|i| num(&rest[i..i + 2]).unwrap_or(-1));
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    let valid = (1..=12).contains(&month)
        && (1..=month_days).contains(&day)
        && (0..=23).contains(&hour)
        && (0..=59).contains(&minute)
        && (0..=60).contains(&second);
    if !valid {
        return None;
    }
    // days-from-civil (H. Hinnant), proleptic Gregorian, UTC.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Just enough DER to walk a certificate: definite lengths, one-byte tags.
mod der {
    /// Splits one TLV off `input`: (tag, value, rest).
    fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, &rest[n..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }

    /// The contents of a SEQUENCE at the start of `input`.
    pub fn seq(input: &[u8]) -> Option<&[u8]> {
        match tlv(input)? {
            (0x30, value, _) => Some(value),
            _ => None,
        }
    }

    /// The TLVs of a constructed value, in order.
    pub struct Items<'a>(pub &'a [u8]);

    impl<'a> Iterator for Items<'a> {
        type Item = (u8, &'a [u8]);
        fn next(&mut self) -> Option<Self::Item> {
            let (tag, value, rest) = tlv(self.0)?;
            self.0 = rest;
            Some((tag, value))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    fn cert(cn: Option<&str>, sans: &[&str]) -> CertificateDer<'static> {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Hospital");
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn subject_is_the_common_name() {
        assert_eq!(
            subject_of(&cert(Some("lab-42.example"), &["x.example"])),
            Some("lab-42.example".into())
        );
    }

    /// A subject is an identity grants and the registry match exactly:
    /// one too long to record is not read, never cut to a prefix another
    /// certificate may share.
    #[test]
    fn an_overlong_subject_is_not_read_never_cut() {
        let at_most = "a".repeat(MAX_SUBJECT);
        assert_eq!(
            subject_of(&cert(Some(&at_most), &[])),
            Some(at_most.clone())
        );
        let longer = format!("{at_most}-evil");
        assert_eq!(subject_of(&cert(Some(&longer), &[])), None);
        let uri = format!("spiffe://chu.example/{}", "x".repeat(MAX_SUBJECT));
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(uri.as_str().try_into().unwrap())];
        let key = KeyPair::generate().unwrap();
        assert_eq!(subject_of(params.self_signed(&key).unwrap().der()), None);
    }

    #[test]
    fn without_cn_the_first_san_is_used() {
        assert_eq!(
            subject_of(&cert(None, &["storage-client.example"])),
            Some("storage-client.example".into())
        );
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.subject_alt_names = vec![SanType::Rfc822Name(
            "dpo@hospital.example".try_into().unwrap(),
        )];
        let key = KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().clone();
        assert_eq!(subject_of(&der), Some("dpo@hospital.example".into()));
    }

    #[test]
    fn not_after_is_the_certificates_expiry() {
        let key = KeyPair::generate().unwrap();
        for (year, month, day, expected) in [
            (2049, 12, 31, 2_524_521_600),
            (2050, 1, 1, 2_524_608_000),
            (2027, 3, 1, 1_803_859_200),
            (2000, 2, 29, 951_782_400),
        ] {
            let mut params = CertificateParams::new(vec!["x.example".to_owned()]).unwrap();
            params.not_after = rcgen::date_time_ymd(year, month, day);
            let der = params.self_signed(&key).unwrap().der().clone();
            assert_eq!(not_after(&der), Some(expected), "{year}-{month}-{day}");
        }
    }

    #[test]
    fn asn1_times_outside_the_grammar_are_refused() {
        assert_eq!(asn1_time(0x17, b"491231000000Z"), Some(2_524_521_600));
        assert_eq!(asn1_time(0x17, b"500101000000Z"), Some(-631_152_000));
        assert_eq!(asn1_time(0x18, b"20500101000000Z"), Some(2_524_608_000));
        assert_eq!(asn1_time(0x18, b"20000229000000Z"), Some(951_782_400));
        assert_eq!(asn1_time(0x17, b"240229000000Z"), Some(1_709_164_800));
        for (tag, bad) in [
            (0x17, &b"491231000000"[..]),
            (0x17, b"4912310000Z"),
            (0x17, b"20491231000000Z"),
            (0x18, b"491231000000Z"),
            (0x18, b"20491301000000Z"),
            (0x18, b"20491200000000Z"),
            (0x18, b"20491231240000Z"),
            (0x18, b"20260230000000Z"),
            (0x18, b"20230229000000Z"),
            (0x18, b"21000229000000Z"),
            (0x18, b"20260431000000Z"),
            (0x18, b"2049123100000+Z"),
            (0x18, b"20491231000000.5Z"),
            (0x04, b"20491231000000Z"),
            (0x18, b"\xff"),
        ] {
            assert_eq!(asn1_time(tag, bad), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        /// Every valid GeneralizedTime, and every UTCTime of 1950-2049,
        /// converts to the same second as the `time` crate computes; any
        /// other byte string gives a value or `None`, never a panic.
        #[test]
        fn asn1_times_convert_to_their_date(
            year in 1950i64..=2200,
            month in 1i64..=12,
            day in 1i64..=28,
            hour in 0i64..=23,
            minute in 0i64..=59,
            second in 0i64..=59,
            junk in proptest::collection::vec(proptest::num::u8::ANY, 0..20),
        ) {
            let rest = format!("{month:02}{day:02}{hour:02}{minute:02}{second:02}Z");
            let t = asn1_time(0x18, format!("{year:04}{rest}").as_bytes()).unwrap();
            // The `time` crate (through rcgen) is the independent reference.
            let midnight = rcgen::date_time_ymd(
                i32::try_from(year).unwrap(),
                u8::try_from(month).unwrap(),
                u8::try_from(day).unwrap(),
            )
            .unix_timestamp();
            proptest::prop_assert_eq!(t, midnight + hour * 3600 + minute * 60 + second);
            if year < 2050 {
                let utc = asn1_time(0x17, format!("{:02}{rest}", year % 100).as_bytes());
                proptest::prop_assert_eq!(utc, Some(t));
            }
            let _ = asn1_time(0x17, &junk);
            let _ = asn1_time(0x18, &junk);
        }
    }

    #[test]
    fn garbage_has_no_expiry() {
        for bytes in [&b""[..], b"\x30", b"\x30\x03\x02\x01"] {
            assert_eq!(not_after(&CertificateDer::from(bytes.to_vec())), None);
        }
    }

    #[test]
    fn garbage_gives_none() {
        for bytes in [
            &b""[..],
            b"\x30",
            b"\x30\x85\xff\xff\xff\xff\xff",
            b"\x30\x03\x02\x01",
        ] {
            assert_eq!(subject_of(&CertificateDer::from(bytes.to_vec())), None);
        }
    }
}
