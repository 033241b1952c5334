//! An adversary outside the EEA against the merged hardening of issue 13:
//! variants of each class (client address, route spellings, evidence,
//! embedded IPv4, audit trail edits) that the per-class tests did not try.
//! Each test is an attack that must stay repelled.

use std::time::Duration;

use crate::support::proxy::audit_verify;
use crate::support::{Layout, Origin, Proxy, TestGeo, config, ips, raw_exchange, standard_geo};

const QUIET: Duration = Duration::from_secs(2);

const US_BLOCKED: &str = "blocked; side=client; country=US; reason=country_not_allowed";
const UNTRACEABLE: &str = "blocked; side=client; country=unknown; reason=untraceable_address";

/// A proxy behind the trusted proxy `ips::TRUSTED`, reading `source`.
async fn behind_trusted(source: &str) -> (TestGeo, Origin, Proxy) {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let server = format!(
        "trusted_proxies = [\"{}/32\"]\nclient_ip_source = \"{source}\"",
        ips::TRUSTED
    );
    let proxy = Proxy::start(&config(&geo, &origin, &server, "", ""));
    (geo, origin, proxy)
}

/// `GET /b/k` with the raw header lines `lines` (each without CRLF).
fn get_with(lines: &[&str]) -> String {
    let mut req = String::from("GET /b/k HTTP/1.1\r\nHost: s3.test\r\n");
    for l in lines {
        req.push_str(l);
        req.push_str("\r\n");
    }
    req.push_str("Connection: close\r\n\r\n");
    req
}

/// Sends `lines` from the trusted proxy; asserts the request was refused
/// with the decision `want`.
async fn refused_as(proxy: &Proxy, lines: &[&str], want: &str) {
    let out = raw_exchange(
        ips::TRUSTED,
        proxy.addr(),
        get_with(lines).as_bytes(),
        QUIET,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 451"), "{lines:?}: {out}");
    assert!(out.contains(want), "{lines:?}: want {want}: {out}");
}

// ------------------------------------------------------- client address

#[tokio::test]
async fn forwarded_spellings_of_a_us_client_never_pass() {
    let (_g, origin, proxy) = behind_trusted("forwarded").await;
    for lines in [
        &["Forwarded: FOR=127.0.0.5"][..],
        &["Forwarded: For=127.0.0.5;PROTO=https"],
        &["forwarded: for=127.0.0.2, FOR=127.0.0.5"],
        &["Forwarded: \tfor=127.0.0.5\t"],
        &["Forwarded: for=\"127.0.0.5\""],
        &["Forwarded: for=\"127.0.0.5:_obf\""],
        &["Forwarded: for=\"127.0.0.5:8080\""],
        &["Forwarded: for=\"[::ffff:127.0.0.5]\""],
        &["Forwarded: for=\"[64:ff9b::7f00:5]:1\""],
        &["Forwarded: for=127.0.0.2", "Forwarded: for=127.0.0.5"],
        &[
            "Forwarded: for=127.0.0.2;by=x",
            "X-Forwarded-For: 127.0.0.2",
            "Forwarded: for=127.0.0.5",
        ],
        // The client's own forged trusted hop, right of its address.
        &["Forwarded: for=127.0.0.2, for=127.0.0.5, for=127.0.0.20"],
        // A quoted-pair that does not change the address.
        &["Forwarded: for=\"127.0.0.\\5\""],
    ] {
        refused_as(&proxy, lines, US_BLOCKED).await;
    }
    for lines in [
        // Whitespace around `=`, or inside a token.
        &["Forwarded: for =127.0.0.2"][..],
        &["Forwarded: for= 127.0.0.2"],
        &["Forwarded: for=127.0.0.2 ;for=127.0.0.2"],
        // A quote opened on one line and closed on the next.
        &["Forwarded: for=\"127.0.0.2,", "Forwarded: 127.0.0.5\""],
        &["Forwarded: for=127.0.0.5", "Forwarded: for=\"127.0.0.2"],
        // A comma inside quotes is data, not a separator.
        &["Forwarded: for=\"127.0.0.5, 127.0.0.2\""],
        // The parameter twice in one element.
        &["Forwarded: for=127.0.0.5;for=127.0.0.2"],
        // Unquoted IPv6 and ports.
        &["Forwarded: for=127.0.0.2:80"],
        &["Forwarded: for=[::ffff:127.0.0.2]"],
        // Leading zeros, hex, octal.
        &["Forwarded: for=127.0.0.02"],
        &["Forwarded: for=0x7f.0.0.2"],
        // A trailing hop that names no one.
        &["Forwarded: for=127.0.0.2,"],
        &["Forwarded: for=127.0.0.2, for=unknown"],
        &["Forwarded: for=127.0.0.2, for=_hidden"],
        &["Forwarded: for=127.0.0.2, proto=https"],
        &["Forwarded: for=127.0.0.2", "Forwarded:"],
        // obs-text and controls.
        &["Forwarded: for=127.0.0.2;x=\"\u{e9}\""],
        // Every hop a trusted proxy: no client named.
        &["Forwarded: for=127.0.0.20, for=127.0.0.20"],
        // The trusted proxy in IPv6 wrappings is still the trusted proxy.
        &["Forwarded: for=\"[::ffff:127.0.0.20]\""],
    ] {
        refused_as(&proxy, lines, UNTRACEABLE).await;
    }
    assert_eq!(origin.request_count(), 0);
}

#[tokio::test]
async fn x_forwarded_for_spellings_of_a_us_client_never_pass() {
    let (_g, origin, proxy) = behind_trusted("x-forwarded-for").await;
    for lines in [
        &["X-Forwarded-For: 127.0.0.5"][..],
        &["x-forwarded-for:\t127.0.0.2 ,\t127.0.0.5\t"],
        &["X-Forwarded-For: 127.0.0.2", "X-Forwarded-For: 127.0.0.5"],
        &["X-Forwarded-For: 127.0.0.5:443"],
        &["X-Forwarded-For: [::ffff:127.0.0.5]:443"],
        &["X-Forwarded-For: ::ffff:7f00:5"],
        &["X-Forwarded-For: 64:ff9b::127.0.0.5"],
        &["X-Forwarded-For: 64:FF9B::7F00:5"],
        &["X-Forwarded-For: 64:ff9b:1:7f00:0:500::"],
        // Forwarded is not the configured source here.
        &["Forwarded: for=127.0.0.2", "X-Forwarded-For: 127.0.0.5"],
        &["X-Forwarded-For: 127.0.0.5", "Forwarded: for=127.0.0.2"],
        // The client's forged trusted hops, in every spelling of the trusted proxy.
        &["X-Forwarded-For: 127.0.0.2, 127.0.0.5, ::ffff:127.0.0.20"],
        &["X-Forwarded-For: 127.0.0.2, 127.0.0.5, 64:ff9b::7f00:14"],
        &["X-Forwarded-For: 127.0.0.2, 127.0.0.5, [::ffff:127.0.0.20]:1"],
        &["X-Forwarded-For: 127.0.0.2, 127.0.0.5, 127.0.0.20:80"],
    ] {
        refused_as(&proxy, lines, US_BLOCKED).await;
    }
    for lines in [
        &["X-Forwarded-For: 127.0.0.2,"][..],
        &["X-Forwarded-For: 127.0.0.2", "X-Forwarded-For:"],
        &["X-Forwarded-For: 127.0.0.2, unknown"],
        &["X-Forwarded-For: 127.0.0.2 127.0.0.5"],
        &["X-Forwarded-For: \"127.0.0.2\""],
        &["X-Forwarded-For: 127.0.0.2:80:90"],
        &["X-Forwarded-For: [127.0.0.2]"],
        &["X-Forwarded-For: 127.1"],
        &["X-Forwarded-For: 2130706434"],
        &["X-Forwarded-For: 127.0.0.2;127.0.0.2"],
        &["X-Forwarded-For: 127.0.0.20, ::ffff:127.0.0.20"],
        &["X-Forwarded-For: fe80::1%25eth0"],
    ] {
        refused_as(&proxy, lines, UNTRACEABLE).await;
    }
    assert_eq!(origin.request_count(), 0);
}

#[tokio::test]
async fn a_60k_forwarding_header_is_refused_with_evidence() {
    let (_g, origin, proxy) = behind_trusted("x-forwarded-for").await;
    let long = format!("X-Forwarded-For: {}127.0.0.2", "127.0.0.2, ".repeat(6_000));
    let out = raw_exchange(
        ips::TRUSTED,
        proxy.addr(),
        get_with(&["X-Forwarded-For: 127.0.0.5", &long]).as_bytes(),
        QUIET,
    )
    .await;
    assert!(
        out.starts_with("HTTP/1.1 431"),
        "{}",
        &out[..out.len().min(200)]
    );
    assert_eq!(origin.request_count(), 0);
    let mut records = Vec::new();
    for _ in 0..300 {
        records = proxy.audit_records();
        if !records.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["status"], 431, "{records:?}");
}

// ------------------------------------------------------ route spellings

/// Enforce routes for a host, a bucket prefix and a `buckets` list, and a
/// monitor catch-all that lets a US client through (flagged), with
/// virtual-hosting under `s3.example`.
async fn routes_setup() -> (TestGeo, Origin, Proxy) {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let mut toml = config(
        &geo,
        &origin,
        r#"s3_domains = ["s3.example"]"#,
        "",
        r#"hosts = ["records.s3.test"]"#,
    );
    toml.push_str(&format!(
        r#"
[[route]]
name = "hds"
path_prefix = "/hds-bucket/"
upstreams = ["{0}"]

[[route]]
name = "vault"
buckets = ["vault-bucket"]
upstreams = ["{0}"]

[[route]]
name = "catch-all"
mode = "monitor"
upstreams = ["{0}"]
"#,
        origin.url(),
    ));
    let proxy = Proxy::start(&toml);
    (geo, origin, proxy)
}

/// Sends a raw request from a US client; the protected data must not be
/// reached: a 451 from an enforce route, or a 400.
async fn us_kept_out(proxy: &Proxy, origin: &Origin, raw: &str) {
    let before = origin.request_count();
    let out = raw_exchange(ips::US, proxy.addr(), raw.as_bytes(), QUIET).await;
    let status = out.get(..12).unwrap_or_default();
    assert!(
        status == "HTTP/1.1 451"
            || status == "HTTP/1.1 400"
            || status == "HTTP/1.0 451"
            || status == "HTTP/1.0 400"
            || status == "HTTP/1.1 405",
        "{raw:?}: {out}"
    );
    if status.ends_with("451") {
        assert!(out.contains(US_BLOCKED), "{raw:?}: {out}");
        let records = proxy.audit_records();
        let route = &records.last().unwrap()["route"];
        assert_ne!(route, "catch-all", "{raw:?}: {out}");
    }
    assert_eq!(origin.request_count(), before, "{raw:?}: {out}");
}

fn req(target: &str, host: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

#[tokio::test]
async fn more_spellings_of_a_protected_bucket_or_host_never_reach_the_catch_all() {
    let (_g, origin, proxy) = routes_setup().await;
    for (target, host) in [
        ("/%2e%2e/hds-bucket/k", "storage.test"),
        ("/x/%2e%2E/hds-bucket/k", "storage.test"),
        ("/x/.%2e/hds-bucket/k", "storage.test"),
        ("/hds-bucket%2f..%2fother", "storage.test"),
        ("/hds-bucket%2F..%2Fother", "storage.test"),
        ("/other%2f..%2fhds-bucket/k", "storage.test"),
        ("/HDS-BUCKET/k", "storage.test"),
        ("/Hds-Bucket", "storage.test"),
        ("/%48DS-bucket/k", "storage.test"),
        ("/%68%64%73%2d%62%75%63%6b%65%74/k", "storage.test"),
        ("/VAULT-BUCKET/k", "storage.test"),
        ("/hds-bucket/k;x=1", "storage.test"),
        // Path parameters, which servlet containers and JAX-RS drop.
        ("/hds-bucket;x/k", "storage.test"),
        ("/hds-bucket;/k", "storage.test"),
        ("/public/..;/hds-bucket/k", "storage.test"),
        ("/HDS-BUCKET;jsessionid=1/k", "storage.test"),
        // Ceph tenants: `tenant:bucket`, `:bucket` for no tenant.
        ("/:hds-bucket/k", "storage.test"),
        ("/acme:hds-bucket/k", "storage.test"),
        ("/acme%3Ahds-bucket/k", "storage.test"),
        // The Swift API of a storage serving both (Ceph RGW by default).
        ("/swift/v1/hds-bucket/k", "storage.test"),
        ("/swift/v1/AUTH_acme/hds-bucket/k", "storage.test"),
        ("/v1/AUTH_acme/hds-bucket/k", "storage.test"),
        ("/hds-bucket/%2e%2e/k", "storage.test"),
        ("/hds-bucket/../../hds-bucket/k", "storage.test"),
        ("/./././hds-bucket", "storage.test"),
        ("///hds-bucket///k", "storage.test"),
        ("/%2fhds-bucket/k", "storage.test"),
        ("/hds-bucket", "storage.test"),
        ("/k", "hds-bucket.S3.EXAMPLE"),
        ("/k", "hds-bucket.s3.example."),
        ("/k", "HDS-BUCKET.s3.example:443"),
        ("/k", "hds-bucket.s3.example:0"),
        ("/k", "vault-bucket.s3.example."),
        ("/k", "vault-bucket.elsewhere.test"),
        ("/k", "hds-bucket.elsewhere.test."),
        // S3 reads a Host that is not one of its endpoints as the bucket.
        ("/k", "hds-bucket"),
        ("/k", "HDS-BUCKET.:80"),
        ("/a.pdf", "vault-bucket"),
        ("/hds-bucket/k", "s3.example"),
        ("/hds-bucket/k", "s3.example."),
        ("/b/k", "records.s3.test:0"),
        ("/b/k", "Records.S3.Test"),
        ("/b/k", "records.s3.test.:443"),
        ("/b/k", "records.s3.test.."),
        ("/b/k", "records.s3.test:"),
        ("/b/k", ".records.s3.test"),
        ("/b/k", "records..s3.test"),
        ("/b/k", "records.s3.test%2e"),
        ("/b/k", "records.s3.test\t"),
    ] {
        us_kept_out(&proxy, &origin, &req(target, host)).await;
    }
    // Absolute-form targets: their authority is the host.
    for raw in [
        "GET http://RECORDS.s3.test/b/k HTTP/1.1\r\nHost: records.s3.test\r\nConnection: close\r\n\r\n",
        "GET http://records.s3.test./b/k HTTP/1.1\r\nHost: records.s3.test.\r\nConnection: close\r\n\r\n",
        "GET http://storage.test/hds-bucket/k HTTP/1.1\r\nHost: storage.test\r\nConnection: close\r\n\r\n",
        "GET http://storage.test/%2e%2e/hds-bucket/k HTTP/1.1\r\nHost: storage.test\r\nConnection: close\r\n\r\n",
        "GET http://hds-bucket.s3.example/k HTTP/1.1\r\nHost: hds-bucket.s3.example\r\nConnection: close\r\n\r\n",
        "GET http://u@records.s3.test/b/k HTTP/1.1\r\nHost: records.s3.test\r\nConnection: close\r\n\r\n",
        "GET http://records.s3.test/b/k HTTP/1.1\r\nHost: storage.test\r\nConnection: close\r\n\r\n",
        "GET http://storage.test/b/k HTTP/1.1\r\nHost: records.s3.test\r\nConnection: close\r\n\r\n",
        // Two Host lines: the storage might read either.
        "GET /b/k HTTP/1.1\r\nHost: storage.test\r\nHost: records.s3.test\r\nConnection: close\r\n\r\n",
        "GET /k HTTP/1.1\r\nHost: storage.test\r\nhost: hds-bucket.s3.example\r\nConnection: close\r\n\r\n",
        // HTTP/1.0 with and without Host.
        "GET /hds-bucket/k HTTP/1.0\r\n\r\n",
        "GET /k HTTP/1.0\r\nHost: hds-bucket.s3.example\r\n\r\n",
        "GET http://hds-bucket.s3.example/k HTTP/1.0\r\n\r\n",
        // Methods that carry no path.
        "OPTIONS * HTTP/1.1\r\nHost: hds-bucket.s3.example\r\nConnection: close\r\n\r\n",
        "CONNECT hds-bucket.s3.example:80 HTTP/1.1\r\nHost: hds-bucket.s3.example:80\r\nConnection: close\r\n\r\n",
    ] {
        us_kept_out(&proxy, &origin, raw).await;
    }
    // The set-up is real: the catch-all lets a US client through.
    let out = raw_exchange(
        ips::US,
        proxy.addr(),
        req("/public/k", "storage.test").as_bytes(),
        QUIET,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

// ------------------------------------------------------------ HTTP/2

mod h2 {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::support::client::connect_from;
    use crate::support::tls::{TestCa, client_config};
    use crate::support::{Layout, Origin, Proxy, TestGeo, config, ips, standard_geo};

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// A literal header field without indexing, new name (RFC 7541 §6.2.2);
    /// names and values under 127 bytes.
    fn hpack(name: &str, value: &str) -> Vec<u8> {
        let mut out = vec![0, name.len() as u8];
        out.extend_from_slice(name.as_bytes());
        out.push(value.len() as u8);
        out.extend_from_slice(value.as_bytes());
        out
    }

    /// A TLS proxy trusting `ips::TRUSTED` (Forwarded), with an enforce
    /// host route, an enforce bucket route and a monitor catch-all.
    async fn setup() -> (TestGeo, Origin, TestCa, Proxy) {
        let geo = standard_geo(Layout::IpLocationDb).build();
        let origin = Origin::start(ips::ORIGIN).await;
        let ca = TestCa::new("Proxy CA");
        let (cert, key) = ca.write_leaf("server", &["s3.test"]);
        let server = format!(
            "s3_domains = [\"s3.example\"]\ntrusted_proxies = [\"{}/32\"]\nclient_ip_source = \"forwarded\"\ntls_listen = [\"127.0.0.1:0\"]\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"",
            ips::TRUSTED,
            cert.display(),
            key.display()
        );
        let mut toml = config(&geo, &origin, &server, "", r#"hosts = ["records.s3.test"]"#);
        toml.push_str(&format!(
            "\n[[route]]\nname = \"hds\"\npath_prefix = \"/hds-bucket/\"\nupstreams = [\"{0}\"]\n\
             \n[[route]]\nname = \"catch-all\"\nmode = \"monitor\"\nupstreams = [\"{0}\"]\n",
            origin.url()
        ));
        let proxy = Proxy::start(&toml);
        (geo, origin, ca, proxy)
    }

    /// Sends one request (stream 1) made of `fields` from `source`, and
    /// waits for the proxy to record it. Returns the audit records.
    async fn once(
        proxy: &Proxy,
        ca: &TestCa,
        source: &str,
        fields: &[(&str, &str)],
    ) -> Vec<serde_json::Value> {
        let before = proxy.audit_records().len();
        let tcp = connect_from(source, proxy.tls_addr()).await;
        let name = rustls::pki_types::ServerName::try_from("s3.test").unwrap();
        let tls = tokio_rustls::TlsConnector::from(client_config(ca, None, &[b"h2"]))
            .connect(name, tcp)
            .await
            .unwrap();
        let (mut r, mut w) = tokio::io::split(tls);
        let block: Vec<u8> = fields.iter().flat_map(|(n, v)| hpack(n, v)).collect();
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frame(0x4, 0, 0, &[]));
        bytes.extend(frame(0x1, 0x1 | 0x4, 1, &block));
        w.write_all(&bytes).await.unwrap();
        w.flush().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(n) = r.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        for _ in 0..300 {
            let records = proxy.audit_records();
            if records.len() > before {
                return records;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no audit record for {fields:?}");
    }

    fn request<'a>(authority: &'a str, path: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            (":method", "GET"),
            (":scheme", "https"),
            (":path", path),
            (":authority", authority),
        ]
    }

    #[tokio::test]
    async fn h2_pseudo_header_and_host_tricks_never_reach_the_catch_all() {
        let (_g, origin, ca, proxy) = setup().await;
        let with = |mut base: Vec<(&'static str, &'static str)>,
                    extra: &[(&'static str, &'static str)]| {
            base.extend_from_slice(extra);
            base
        };
        let cases: Vec<Vec<(&str, &str)>> = vec![
            request("hds-bucket.s3.example", "/k"),
            request("HDS-BUCKET.S3.EXAMPLE.", "/k"),
            request("storage.test", "/public/../hds-bucket/k"),
            request("storage.test", "/%2e%2e/hds-bucket/k"),
            // :authority and Host disagree.
            with(
                request("storage.test", "/k"),
                &[("host", "hds-bucket.s3.example")],
            ),
            with(
                request("storage.test", "/b/k"),
                &[("host", "records.s3.test")],
            ),
            // Host only, no :authority.
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/b/k"),
                ("host", "records.s3.test"),
            ],
            // Two Host fields, no :authority.
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/k"),
                ("host", "storage.test"),
                ("host", "hds-bucket.s3.example"),
            ],
            // A :path that is not origin-form.
            request("storage.test", "hds-bucket/k"),
            request("storage.test", "http://hds-bucket.s3.example/k"),
            request("storage.test", "*"),
        ];
        for fields in &cases {
            let records = once(&proxy, &ca, ips::US, fields).await;
            let last = records.last().unwrap();
            assert!(
                last["decision"] != "allowed" && last["decision"] != "flagged",
                "{fields:?}: {last}"
            );
            assert_eq!(origin.request_count(), 0, "{fields:?}: {last}");
        }
    }

    /// Opens stream 1 with `fields` (no END_STREAM), then sends `then`;
    /// waits for one more audit record and returns it.
    async fn aborted(
        proxy: &Proxy,
        ca: &TestCa,
        source: &str,
        fields: &[(&str, &str)],
        then: &[Vec<u8>],
    ) -> serde_json::Value {
        let before = proxy.audit_records().len();
        let tcp = connect_from(source, proxy.tls_addr()).await;
        let name = rustls::pki_types::ServerName::try_from("s3.test").unwrap();
        let tls = tokio_rustls::TlsConnector::from(client_config(ca, None, &[b"h2"]))
            .connect(name, tcp)
            .await
            .unwrap();
        let (mut r, mut w) = tokio::io::split(tls);
        let block: Vec<u8> = fields.iter().flat_map(|(n, v)| hpack(n, v)).collect();
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frame(0x4, 0, 0, &[]));
        bytes.extend(frame(0x1, 0x4, 1, &block));
        w.write_all(&bytes).await.unwrap();
        w.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        for f in then {
            let _ = w.write_all(f).await;
        }
        let _ = w.flush().await;
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Ok(n) = r.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
        });
        for _ in 0..500 {
            let records = proxy.audit_records();
            if records.len() > before {
                reader.abort();
                return records[before].clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no audit record for {fields:?} then {then:?}");
    }

    #[tokio::test]
    async fn h2_uploads_reset_or_overrun_by_the_client_leave_a_record() {
        let (_g, _origin, ca, proxy) = setup().await;
        let put = |len: &'static str| {
            vec![
                (":method", "PUT"),
                (":scheme", "https"),
                (":path", "/public/k"),
                (":authority", "storage.test"),
                ("content-length", len),
            ]
        };
        let rst = frame(0x3, 0, 1, &8u32.to_be_bytes());
        let data = |n: usize, end: bool| frame(0x0, u8::from(end), 1, &vec![b'x'; n]);
        for source in [ips::US, ips::FR] {
            for then in [
                vec![rst.clone()],
                vec![data(5, false), rst.clone()],
                vec![data(20, true)],
                vec![data(5, true)],
            ] {
                let rec = aborted(&proxy, &ca, source, &put("10"), &then).await;
                assert_eq!(rec["client_ip"], source, "{then:?}: {rec}");
                if source == ips::US {
                    assert_eq!(rec["client_country"], "US", "{rec}");
                }
            }
        }
        let metrics = proxy.metrics().await;
        let counted: u64 = metrics
            .lines()
            .filter(|l| l.starts_with("residency_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next())
            .map(|v| v.parse::<f64>().unwrap() as u64)
            .sum();
        assert_eq!(counted as usize, proxy.audit_records().len(), "{metrics}");
    }

    #[tokio::test]
    async fn h2_forwarded_fields_from_a_trusted_proxy_are_one_list() {
        let (_g, origin, ca, proxy) = setup().await;
        let base = request("storage.test", "/public/k");
        for extra in [
            &[
                ("forwarded", "for=127.0.0.2"),
                ("forwarded", "for=127.0.0.5"),
            ][..],
            &[
                ("forwarded", "for=127.0.0.5"),
                ("forwarded", "for=127.0.0.20"),
            ],
            &[
                ("forwarded", "for=\"127.0.0.2,"),
                ("forwarded", "127.0.0.5\""),
            ],
            &[("forwarded", "for=127.0.0.5"), ("forwarded", "")],
            &[
                ("forwarded", "FOR=127.0.0.5"),
                ("x-forwarded-for", "127.0.0.2"),
            ],
        ] {
            let mut fields = base.clone();
            fields.extend_from_slice(extra);
            let records = once(&proxy, &ca, ips::TRUSTED, &fields).await;
            let last = records.last().unwrap();
            // The catch-all only monitors: the client's country is the evidence.
            assert!(
                last["client_country"] == "US" || last["client_country"] == "unknown",
                "{extra:?}: {last}"
            );
        }
        // The set-up is real: an FR client behind the trusted proxy is FR.
        let mut fields = base.clone();
        fields.push(("forwarded", "for=127.0.0.2"));
        let records = once(&proxy, &ca, ips::TRUSTED, &fields).await;
        assert_eq!(records.last().unwrap()["client_country"], "FR");
        assert!(origin.request_count() >= 1);
    }
}

// ------------------------------------------------------------- evidence

/// The sum of every `residency_requests_total` series.
fn all_requests(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("residency_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next())
        .map(|v| v.parse::<f64>().unwrap() as u64)
        .sum()
}

#[tokio::test]
async fn odd_requests_from_a_us_client_each_leave_a_record_and_a_count() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(&config(&geo, &origin, "", "", ""));
    // (raw bytes, how many requests they make)
    let attempts: &[(&str, usize)] = &[
        ("GET /b/k HTTP/1.0\r\n\r\n", 1),
        (
            "GET /b/k HTTP/1.0\r\nHost: s3.test\r\nConnection: keep-alive\r\n\r\n",
            1,
        ),
        (
            "PUT /b/k HTTP/1.1\r\nHost: s3.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
            1,
        ),
        (
            "PUT /b/k HTTP/1.1\r\nHost: s3.test\r\nExpect: 200-ok\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            1,
        ),
        (
            "PUT /b/k HTTP/1.1\r\nHost: s3.test\r\nContent-Length: 5\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello",
            1,
        ),
        (
            "PUT /b/k HTTP/1.1\r\nHost: s3.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
            1,
        ),
        // A valid request, then garbage on the same connection.
        (
            "GET /b/k HTTP/1.1\r\nHost: s3.test\r\n\r\nGARBAGE\r\n\r\n",
            2,
        ),
        // Two pipelined requests, the second malformed.
        (
            "GET /b/k HTTP/1.1\r\nHost: s3.test\r\n\r\nGET /b/k HTTP/1.1\r\nHost : s3.test\r\n\r\n",
            2,
        ),
        (
            "GET /b/k HTTP/1.1\r\nHost: s3.test\r\nX: a\0b\r\nConnection: close\r\n\r\n",
            1,
        ),
        (
            "GET /b/k HTTP/1.1\r\nHost: s3.test\r\nX: a\r\n b\r\nConnection: close\r\n\r\n",
            1,
        ),
        ("GET /b/k HTTP/9.9\r\nHost: s3.test\r\n\r\n", 1),
        ("GET /b/k\r\n\r\n", 1),
        (
            "DELETE /b/k HTTP/1.1\r\nHost: s3.test\r\nUpgrade: h2c\r\nConnection: Upgrade, close\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
            1,
        ),
    ];
    let mut expected = 0;
    for (raw, n) in attempts {
        let out = raw_exchange(ips::US, proxy.addr(), raw.as_bytes(), QUIET).await;
        expected += n;
        assert!(!out.contains(" 200 "), "{raw:?}: {out}");
        let mut records = Vec::new();
        for _ in 0..300 {
            records = proxy.audit_records();
            if records.len() >= expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(records.len(), expected, "{raw:?}: {out}\n{records:#?}");
        let counted = all_requests(&proxy.metrics().await);
        assert_eq!(counted, expected as u64, "{raw:?}: {out}");
        for r in &records[expected - n..] {
            assert_eq!(r["client_ip"], ips::US, "{raw:?}: {r}");
            assert_ne!(r["decision"], "allowed", "{raw:?}: {r}");
        }
    }
    assert_eq!(origin.request_count(), 0);
}

// ---------------------------------------------------------- audit trail

#[tokio::test]
async fn audit_trail_edits_that_keep_every_value_still_fail_verify() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(&config(&geo, &origin, "", "", ""));
    for source in [ips::US, ips::FR, ips::DE] {
        let out = raw_exchange(
            source,
            proxy.addr(),
            req("/b/k", "s3.test").as_bytes(),
            QUIET,
        )
        .await;
        assert!(out.starts_with("HTTP/1.1"), "{out}");
    }
    let mut text = String::new();
    for _ in 0..300 {
        text = std::fs::read_to_string(proxy.audit_path()).unwrap_or_default();
        if text.lines().count() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    let dir = tempfile::tempdir().unwrap();
    let check = |name: &str, body: &str, verifies: bool| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        let out = audit_verify(&[&path]);
        assert_eq!(
            out.status.success(),
            verifies,
            "{name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    check("as-written", &text, true);
    let join = |ls: &[String]| ls.iter().map(|l| format!("{l}\n")).collect::<String>();
    let owned: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    let edit = |i: usize, f: &dyn Fn(&str) -> String| {
        let mut ls = owned.clone();
        ls[i] = f(&ls[i]);
        join(&ls)
    };
    check("crlf", &text.replace('\n', "\r\n"), false);
    check("trailing-space", &edit(1, &|l| format!("{l} ")), false);
    check("leading-space", &edit(1, &|l| format!(" {l}")), false);
    check("bom", &format!("\u{feff}{text}"), false);
    check(
        "blank-line",
        &format!("{}\n{}\n\n{}\n", lines[0], lines[1], lines[2]),
        false,
    );
    check("trailing-blank-line", &format!("{text}\n"), false);
    check("duplicated-last", &format!("{text}{}\n", lines[2]), false);
    check("duplicated-first", &format!("{}\n{text}", lines[0]), false);
    check(
        "swapped",
        &join(&[owned[0].clone(), owned[2].clone(), owned[1].clone()]),
        false,
    );
    check(
        "middle-dropped",
        &join(&[owned[0].clone(), owned[2].clone()]),
        false,
    );
    check(
        "first-dropped",
        &join(&[owned[1].clone(), owned[2].clone()]),
        false,
    );
    check(
        "space-after-colon",
        &edit(0, &|l| l.replacen("\":", "\": ", 1)),
        false,
    );
    check(
        "unicode-escape",
        &edit(1, &|l| l.replacen("\"GET\"", "\"\\u0047ET\"", 1)),
        false,
    );
    check(
        "escaped-slash",
        &edit(1, &|l| l.replacen("/", "\\/", 1)),
        false,
    );
    check(
        "extra-field",
        &edit(1, &|l| l.replacen('{', "{\"x\":1,", 1)),
        false,
    );
    check(
        "duplicate-key",
        &edit(1, &|l| l.replacen('{', "{\"decision\":\"allowed\",", 1)),
        false,
    );
    check(
        "hash-upper-case",
        &edit(2, &|l| {
            let at = l.rfind("\"hash\":\"").unwrap() + 8;
            format!("{}{}", &l[..at], l[at..].to_ascii_uppercase())
        }),
        false,
    );
    let reordered = edit(0, &|l| {
        let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(l).unwrap();
        let mut pairs: Vec<_> = v.into_iter().collect();
        let hash = pairs.iter().position(|(k, _)| k == "hash").unwrap();
        let h = pairs.remove(hash);
        pairs.reverse();
        pairs.push(h);
        let body: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), v))
            .collect();
        format!("{{{}}}", body.join(","))
    });
    assert_ne!(reordered, text);
    check("keys-reordered", &reordered, false);
    // Without a newline after the last record, every byte is still there.
    check("no-final-newline", text.trim_end_matches('\n'), true);
}

// --------------------------------------------------- objects named twice

#[tokio::test]
async fn a_copy_whose_source_is_a_protected_bucket_is_judged_by_its_route() {
    let (_g, origin, proxy) = routes_setup().await;
    for (target, host, source) in [
        ("/public/stolen", "storage.test", "/hds-bucket/patient.pdf"),
        ("/public/stolen", "storage.test", "hds-bucket/patient.pdf"),
        ("/public/stolen", "storage.test", "hds%2Dbucket/patient.pdf"),
        ("/public/stolen", "storage.test", "/HDS-BUCKET/patient.pdf"),
        (
            "/public/stolen",
            "storage.test",
            "public/../hds-bucket/patient.pdf",
        ),
        (
            "/public/stolen",
            "storage.test",
            "hds-bucket/patient.pdf?versionId=1",
        ),
        ("/public/stolen", "storage.test", "vault-bucket/a.pdf"),
        ("/public/stolen", "storage.test", ":hds-bucket/patient.pdf"),
        ("/stolen", "public.s3.example", "hds-bucket/patient.pdf"),
        (
            "/public/stolen?partNumber=1&uploadId=x",
            "storage.test",
            "hds-bucket/patient.pdf",
        ),
    ] {
        let raw = format!(
            "PUT {target} HTTP/1.1\r\nHost: {host}\r\nx-amz-copy-source: {source}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        us_kept_out(&proxy, &origin, &raw).await;
    }
    // Swift's server-side copy, on a storage serving both APIs.
    us_kept_out(
        &proxy,
        &origin,
        "PUT /swift/v1/public/stolen HTTP/1.1\r\nHost: storage.test\r\nX-Copy-From: /hds-bucket/patient.pdf\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    // A Swift dynamic large object whose segments are the protected bucket's.
    us_kept_out(
        &proxy,
        &origin,
        "PUT /swift/v1/public/manifest HTTP/1.1\r\nHost: storage.test\r\nX-Object-Manifest: hds-bucket/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    // A presigned URL may carry the header as a query parameter.
    for target in [
        "/public/stolen?x-amz-copy-source=hds-bucket%2Fpatient.pdf",
        "/public/stolen?X-Amz-Copy-Source=%2Fhds%252Dbucket%2Fpatient.pdf&X-Amz-Expires=60",
        "/public/stolen?a=1&x-amz-copy%2Dsource=hds-bucket/patient.pdf",
    ] {
        us_kept_out(&proxy, &origin, &req(target, "storage.test")).await;
    }
    // Two copy sources: the storage might read either.
    us_kept_out(
        &proxy,
        &origin,
        "PUT /public/stolen HTTP/1.1\r\nHost: storage.test\r\nx-amz-copy-source: public/a\r\nx-amz-copy-source: hds-bucket/patient.pdf\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    // An allowed client's copy out of the protected bucket is served, by
    // the protected bucket's route.
    let out = raw_exchange(
        ips::FR,
        proxy.addr(),
        b"PUT /public/copy HTTP/1.1\r\nHost: storage.test\r\nx-amz-copy-source: hds-bucket/patient.pdf\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        QUIET,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(proxy.audit_records().last().unwrap()["route"], "hds");
    let seen = origin.seen();
    assert_eq!(
        seen.last().unwrap().headers["x-amz-copy-source"],
        "hds-bucket/patient.pdf"
    );
    // A copy within the catch-all's buckets is the catch-all's.
    let out = raw_exchange(
        ips::US,
        proxy.addr(),
        b"PUT /public/copy HTTP/1.1\r\nHost: storage.test\r\nx-amz-copy-source: public/a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        QUIET,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("flagged; side=client"), "{out}");
}

// ------------------------------------------------------ embedded forms

#[tokio::test]
async fn a_trusted_proxy_configured_ipv4_mapped_is_the_ipv4_proxy() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let server = format!(
        "trusted_proxies = [\"::ffff:{}/128\"]\nclient_ip_source = \"x-forwarded-for\"",
        ips::TRUSTED
    );
    let proxy = Proxy::start(&config(&geo, &origin, &server, "", ""));
    refused_as(&proxy, &["X-Forwarded-For: 127.0.0.5"], US_BLOCKED).await;
    refused_as(
        &proxy,
        &["X-Forwarded-For: 127.0.0.5, 64:ff9b::7f00:14"],
        US_BLOCKED,
    )
    .await;
    refused_as(&proxy, &["X-Forwarded-For: ::ffff:127.0.0.20"], UNTRACEABLE).await;
    // A US peer is not trusted, whatever it claims.
    let out = raw_exchange(
        ips::US,
        proxy.addr(),
        get_with(&["X-Forwarded-For: 127.0.0.2"]).as_bytes(),
        QUIET,
    )
    .await;
    assert!(out.contains(US_BLOCKED), "{out}");
    let out = raw_exchange(
        ips::TRUSTED,
        proxy.addr(),
        get_with(&["X-Forwarded-For: 127.0.0.2"]).as_bytes(),
        QUIET,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(origin.request_count(), 1);
}

#[tokio::test]
async fn a_us_storage_in_ipv6_wrappings_from_dns_is_never_dialled() {
    use crate::support::{Client, Dns};
    let geo = standard_geo(Layout::IpLocationDb).build();
    let de = Origin::start(ips::ORIGIN).await;
    let us_addr = std::net::SocketAddr::new(ips::ORIGIN_US.parse().unwrap(), de.addr().port());
    let us = Origin::start_at(us_addr, None).await;
    // 127.0.0.11 (US) as IPv4-mapped, NAT64 and 6to4 AAAA records.
    let dns = Dns::start(&[
        ("storage.test", "::ffff:127.0.0.11"),
        ("storage.test", "64:ff9b::7f00:b"),
        ("storage.test", "2002:7f00:b::1"),
    ]);
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [geoip]\ndatabase = \"{}\"\n[resolver]\nnameservers = [\"{}\"]\n\
         [policy]\nallow_networks = []\n\
         [[route]]\nname = \"s3\"\nupstreams = [\"http://storage.test:{}\"]\nconnect_timeout = \"1s\"\n",
        geo.path().display(),
        dns.addr(),
        de.addr().port()
    );
    let proxy = Proxy::start(&toml);
    let rsp = Client::bound_to(ips::FR)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(
        rsp.header("x-residency-decision"),
        "blocked; side=upstream; country=US; reason=no_allowed_upstream_ip",
        "{}",
        rsp.text()
    );
    assert_eq!(us.connection_count(), 0);
    assert_eq!(de.request_count(), 0);
}

#[tokio::test]
async fn hostile_keys_and_purposes_keep_the_trail_one_record_a_line_and_verifiable() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(&config(&geo, &origin, "", "", ""));
    let targets = [
        "/b/%FF%FE%00",
        "/b/%0A%7B%22decision%22%3A%22allowed%22%7D%0A",
        "/b/%E2%80%A8%E2%80%A9%5C%22",
        "/b/%C0%AE%C0%AE/%ED%A0%80",
    ];
    for (i, t) in targets.iter().enumerate() {
        for source in [ips::US, ips::FR] {
            let raw = format!(
                "GET {t} HTTP/1.1\r\nHost: s3.test\r\nx-access-purpose: a\"}}\\u0000\\n{{\r\nConnection: close\r\n\r\n"
            );
            let out = raw_exchange(source, proxy.addr(), raw.as_bytes(), QUIET).await;
            assert!(out.starts_with("HTTP/1.1"), "{i} {t}: {out}");
        }
    }
    let want = targets.len() * 2;
    let mut text = String::new();
    for _ in 0..300 {
        text = String::from_utf8(std::fs::read(proxy.audit_path()).unwrap_or_default()).unwrap();
        if text.lines().count() >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(text.lines().count(), want, "{text}");
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let allowed = records
        .iter()
        .filter(|r| r["decision"] == "allowed")
        .count();
    assert_eq!(allowed, targets.len(), "{text}");
    assert!(
        records
            .iter()
            .all(|r| r["decision"] != "allowed" || r["client_country"] == "FR"),
        "{text}"
    );
    crate::support::proxy::assert_audit_verifies(&[&proxy.audit_path()]);
}

#[tokio::test]
async fn an_untrusted_clients_x_forwarded_host_never_reaches_the_storage() {
    let (_g, origin, proxy) = behind_trusted("x-forwarded-for").await;
    let out = raw_exchange(
        ips::FR,
        proxy.addr(),
        get_with(&["X-Forwarded-Host: hds-bucket.s3.example"]).as_bytes(),
        QUIET,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let out = raw_exchange(
        ips::TRUSTED,
        proxy.addr(),
        get_with(&[
            "X-Forwarded-For: 127.0.0.2",
            "X-Forwarded-Host: public.example",
        ])
        .as_bytes(),
        QUIET,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let seen = origin.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        !seen[0].headers.contains_key("x-forwarded-host"),
        "{:?}",
        seen[0].headers
    );
    assert_eq!(seen[1].headers["x-forwarded-host"], "public.example");
}
