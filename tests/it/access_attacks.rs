//! Governed access attacked as a client outside the area or an insider
//! would (SECURITY.md, "Governed access: attacked, held / fixed"): each
//! test is one way in that must stay shut, on the real binary.

use http::Request;
use http_body_util::Empty;

use crate::access::{REGISTRY, Setup, US_BLOCKED, grant, registry, sigv4};
use crate::support::{Client, Layout, Origin, Proxy, config, ips, standard_geo};

type NoBody = Empty<bytes::Bytes>;

/// A `PUT` from `from` claiming `key`, with `headers`.
async fn put(
    proxy: &Proxy,
    from: &str,
    path: &str,
    key: &str,
    headers: &[(&str, &str)],
) -> crate::support::client::Reply {
    let mut req = Request::put(path)
        .header("host", proxy.addr().to_string())
        .header("authorization", sigv4(key));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    Client::bound_to(from)
        .send(proxy.addr(), req.body(NoBody::new()).unwrap())
        .await
}

/// A copy reads its source: a grant for `PUT` under `/radiology/` does not
/// let a US client copy an object from outside the prefix into it (to read
/// it there), by header, by presigned query or by a Swift header, however
/// the source is spelled.
#[tokio::test]
async fn a_grant_scoped_to_a_prefix_does_not_admit_a_copy_from_outside_it() {
    let setup = Setup::new(
        &grant(
            "CHG-1",
            "AKIAVENDOR",
            -3600,
            3600,
            "proof = \"sigv4\"\nmethods = [\"GET\", \"PUT\"]\npath_prefix = \"/radiology/\"",
        ),
        &["CHG-1"],
    );
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(&(config(&geo, &origin, "", "", "") + &setup.sections(None)));

    // Within the prefix, the copy is granted.
    let rsp = put(
        &proxy,
        ips::US,
        "/radiology/copy",
        "AKIAVENDOR",
        &[("x-amz-copy-source", "/radiology/scan.dcm?versionId=3")],
    )
    .await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    assert_eq!(origin.request_count(), 1);

    for (path, headers) in [
        ("/radiology/copy", vec![("x-amz-copy-source", "secret/x")]),
        ("/radiology/copy", vec![("x-amz-copy-source", "/secret/x")]),
        (
            "/radiology/copy",
            vec![("x-amz-copy-source", "radiology/../secret/x")],
        ),
        (
            "/radiology/copy",
            vec![("x-amz-copy-source", "radiology/%2e%2e/secret/x")],
        ),
        (
            "/radiology/copy",
            vec![("x-amz-copy-source", "Radiology/scan.dcm")],
        ),
        (
            "/radiology/copy?partNumber=1&uploadId=u",
            vec![("x-amz-copy-source", "secret/x")],
        ),
        ("/radiology/copy?x-amz-copy-source=secret%2Fx", vec![]),
        ("/radiology/copy?X-Amz-Copy-Source=%2Fsecret%2Fx", vec![]),
        ("/radiology/copy", vec![("x-copy-from", "secret/x")]),
        ("/radiology/copy", vec![("x-object-manifest", "secret/")]),
    ] {
        let rsp = put(&proxy, ips::US, path, "AKIAVENDOR", &headers).await;
        assert_eq!(rsp.status, 451, "{path} {headers:?}: {}", rsp.text());
        assert_eq!(rsp.header("x-residency-decision"), US_BLOCKED);
    }
    assert_eq!(origin.request_count(), 1, "no copy from outside reached it");
}

/// A copy reads its source: an identity listed for the `billing` route
/// only cannot copy an object of another route (same storage, same rules,
/// so the routing lets the copy through) into its own.
#[tokio::test]
async fn an_identity_listed_for_one_route_cannot_copy_from_another() {
    let setup = Setup::new("", &[]);
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let toml = config(&geo, &origin, "", "", "")
        + &format!(
            "\n[[route]]\nname = \"billing\"\npath_prefix = \"/billing/\"\nupstreams = [\"{}\"]\n",
            origin.url()
        )
        + &setup.sections(Some(&registry(10, "require_known = true")));
    assert!(REGISTRY.contains("routes = [\"billing\"]"));
    let proxy = Proxy::start(&toml);

    let own = put(
        &proxy,
        ips::FR,
        "/billing/copy",
        "AKIAOTHERROUTE",
        &[("x-amz-copy-source", "billing/invoice")],
    )
    .await;
    assert_eq!(own.status, 200, "{}", own.text());
    for source in ["b/record.dcm", "/radiology/scan.dcm"] {
        let rsp = put(
            &proxy,
            ips::FR,
            "/billing/copy",
            "AKIAOTHERROUTE",
            &[("x-amz-copy-source", source)],
        )
        .await;
        assert_eq!(rsp.status, 403, "{source}: {}", rsp.text());
        assert_eq!(
            rsp.header("x-residency-decision"),
            "refused; reason=route_not_granted"
        );
    }
    assert_eq!(origin.request_count(), 1);
}

/// The proxy must read the key id the storage acts as: a presigned query
/// naming two credentials (one with an encoded parameter name, which a
/// storage decoding names reads, first), a credential whose scope is longer
/// than SigV4's (a storage whose ids hold `/` reads another id), or a
/// header scheme glued to its parameters is unreadable, never the granted
/// or listed id, never anonymous.
#[tokio::test]
async fn a_credential_the_storage_may_read_otherwise_opens_no_grant_nor_registry_entry() {
    let scope = "%2F20261206%2Feu-west-3%2Fs3%2Faws4_request";
    let twice = |listed: &str| {
        format!(
            "/radiology/scan.dcm?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-%43redential=AKIASTRANGER{scope}\
             &X-Amz-Credential={listed}{scope}&X-Amz-Signature=ab"
        )
    };
    let nested = |listed: &str| {
        format!(
            "/radiology/scan.dcm?X-Amz-Credential={listed}%2FSTRANGER{scope}&X-Amz-Signature=ab"
        )
    };

    // A sigv4 grant, from the US.
    let setup = Setup::new(
        &grant("CHG-1", "AKIAVENDOR", -3600, 3600, "proof = \"sigv4\""),
        &["CHG-1"],
    );
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(&(config(&geo, &origin, "", "", "") + &setup.sections(None)));
    let plain =
        format!("/radiology/scan.dcm?X-Amz-Credential=AKIAVENDOR{scope}&X-Amz-Signature=ab");
    let rsp = Client::bound_to(ips::US)
        .get(proxy.addr(), &plain, &[])
        .await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    for path in [twice("AKIAVENDOR"), nested("AKIAVENDOR")] {
        let rsp = Client::bound_to(ips::US)
            .get(proxy.addr(), &path, &[])
            .await;
        assert_eq!(rsp.status, 451, "{path}");
        assert_eq!(rsp.header("x-residency-decision"), US_BLOCKED);
    }
    assert_eq!(origin.request_count(), 1);
    let records = proxy.audit_records();
    assert_eq!(records[1]["identity"], "(unreadable credential)");

    // The registry, from France.
    let setup = Setup::new("", &[]);
    let proxy = Proxy::start(
        &(config(&geo, &origin, "", "", "")
            + "\n[[route]]\nname = \"billing\"\npath_prefix = \"/billing/\"\nupstreams = [\"http://127.0.0.1:9\"]\n"
            + &setup.sections(Some(&registry(10, "require_known = true")))),
    );
    let glued = "AWS4-HMAC-SHA256Credential=AKIASTRANGER/20261206/eu-west-3/s3/aws4_request, SignedHeaders=host, Signature=ab";
    for (path, headers) in [
        (twice("AKIACHU01"), vec![]),
        (nested("AKIACHU01"), vec![]),
        ("/b/k".to_owned(), vec![("authorization", glued)]),
    ] {
        let rsp = Client::bound_to(ips::FR)
            .get(proxy.addr(), &path, &headers)
            .await;
        assert_eq!(rsp.status, 403, "{path} {headers:?}");
        assert_eq!(
            rsp.header("x-residency-decision"),
            "refused; reason=unknown_identity"
        );
    }
    assert_eq!(origin.request_count(), 1);
    for r in proxy.audit_records() {
        assert_eq!(r["identity"], "(unreadable credential)", "{r}");
    }
}

/// A proxy on `s3.test` with grant CHG-1: AKIAVENDOR by sigv4, `methods`,
/// under `/radiology/`; the setup, database and origin to keep alive.
async fn radiology_grant(methods: &str) -> ((Setup, crate::support::TestGeo, Origin), Proxy) {
    let setup = Setup::new(
        &grant(
            "CHG-1",
            "AKIAVENDOR",
            -3600,
            3600,
            &format!("proof = \"sigv4\"\nmethods = [{methods}]\npath_prefix = \"/radiology/\""),
        ),
        &["CHG-1"],
    );
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(
        &(config(&geo, &origin, "s3_domains = [\"s3.test\"]", "", "") + &setup.sections(None)),
    );
    ((setup, geo, origin), proxy)
}

/// The client's `Host` reaches the storage (`preserve_host`, the default):
/// a storage serving virtual-hosted buckets under a domain the config does
/// not declare reads `secret.storage.test` as bucket `secret`, so a grant
/// under `/radiology/` does not admit a dotted host that is not a declared
/// `s3_domains` name; an IP literal or a declared domain is read
/// path-style, and `<bucket>.<declared domain>` virtual-hosted.
#[tokio::test]
async fn a_prefix_grant_does_not_admit_a_host_the_storage_may_read_as_another_bucket() {
    let ((_setup, _geo, origin), proxy) = radiology_grant("\"GET\"").await;
    let auth = sigv4("AKIAVENDOR");
    let get = |host: &'static str, path: &'static str| {
        let req = Request::get(path)
            .header("host", host)
            .header("authorization", auth.as_str())
            .body(NoBody::new())
            .unwrap();
        let addr = proxy.addr();
        async move { Client::bound_to(ips::US).send(addr, req).await }
    };
    for (host, path) in [
        ("s3.test", "/radiology/scan.dcm"),
        ("radiology.s3.test", "/scan.dcm"),
        ("127.0.0.1", "/radiology/scan.dcm"),
    ] {
        let rsp = get(host, path).await;
        assert_eq!(rsp.status, 200, "{host} {path}: {}", rsp.text());
    }
    for (host, path) in [
        ("secret.storage.test", "/radiology/scan.dcm"),
        ("storage.test", "/radiology/scan.dcm"),
        ("secret.s3.test", "/radiology/scan.dcm"),
    ] {
        let rsp = get(host, path).await;
        assert_eq!(rsp.status, 451, "{host} {path}");
        assert_eq!(rsp.header("x-residency-decision"), US_BLOCKED);
    }
    assert_eq!(origin.request_count(), 3);
}

/// The published map runs no script and requests nothing: besides escaping
/// every value, the live page is served with a content security policy
/// that forbids both, and carries it in its head wherever it is copied.
#[tokio::test]
async fn the_live_transfer_page_is_served_under_a_policy_forbidding_scripts_and_requests() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(&config(&geo, &origin, "", "", ""));
    let rsp = Client::bound_to("127.0.0.1")
        .get(proxy.admin_addr(), "/transfers?format=html&lang=en", &[])
        .await;
    assert_eq!(rsp.status, 200);
    let csp = rsp.header("content-security-policy");
    assert_eq!(csp, residency_proxy::audit::page::CSP);
    assert!(csp.starts_with("default-src 'none';"), "{csp}");
    assert!(rsp.text().contains(residency_proxy::audit::page::CSP_META));
}

/// A path a storage may read otherwise (dot segments, encoded dots,
/// empty segments) can lead to several routes; routing reconciles them
/// into one when they judge alike (same storage, same rules), but the
/// storage may act on any: an identity listed for `billing` only, or a
/// grant for the `billing` route, does not reach another route's objects
/// through `/billing/../b/…`.
#[tokio::test]
async fn every_route_a_reading_leads_to_must_be_listed_and_granted() {
    let setup = Setup::new(
        &grant(
            "CHG-1",
            "AKIAVENDOR",
            -3600,
            3600,
            "proof = \"sigv4\"\nroutes = [\"billing\"]",
        ),
        &["CHG-1"],
    );
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let toml = config(&geo, &origin, "", "", "")
        + &format!(
            "\n[[route]]\nname = \"billing\"\npath_prefix = \"/billing/\"\nupstreams = [\"{}\"]\n",
            origin.url()
        )
        + &setup.sections(Some(&registry(10, "require_known = true")));
    let proxy = Proxy::start(&toml);
    let get = |from: &'static str, path: &'static str, key: &'static str| {
        let auth = sigv4(key);
        let addr = proxy.addr();
        async move {
            Client::bound_to(from)
                .get(addr, path, &[("authorization", auth.as_str())])
                .await
        }
    };
    assert_eq!(
        get(ips::FR, "/billing/invoice", "AKIAOTHERROUTE")
            .await
            .status,
        200
    );
    let escapes = [
        "/billing/../b/record.dcm",
        "/billing/%2e%2e/b/record.dcm",
        "/billing/..%2Fb/record.dcm",
    ];
    for path in escapes {
        let rsp = get(ips::FR, path, "AKIAOTHERROUTE").await;
        assert_eq!(rsp.status, 403, "{path}: {}", rsp.text());
        assert_eq!(
            rsp.header("x-residency-decision"),
            "refused; reason=route_not_granted",
            "{path}"
        );
    }
    assert_eq!(origin.request_count(), 1);

    // The grant, without a registry, from the US.
    let toml = config(&geo, &origin, "", "", "")
        + &format!(
            "\n[[route]]\nname = \"billing\"\npath_prefix = \"/billing/\"\nupstreams = [\"{}\"]\n",
            origin.url()
        )
        + &setup.sections(None);
    let proxy = Proxy::start(&toml);
    let get = |path: &'static str| {
        let auth = sigv4("AKIAVENDOR");
        let addr = proxy.addr();
        async move {
            Client::bound_to(ips::US)
                .get(addr, path, &[("authorization", auth.as_str())])
                .await
        }
    };
    let rsp = get("/billing/invoice").await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    for path in escapes {
        let rsp = get(path).await;
        assert_eq!(rsp.status, 451, "{path}: {}", rsp.text());
        assert_eq!(rsp.header("x-residency-decision"), US_BLOCKED);
    }
    assert_eq!(origin.request_count(), 2);
}

/// A path prefix scopes objects: a US grantee under `/radiology/` cannot
/// list the whole bucket nor read or change its configuration (a `PUT
/// ?replication` would have the storage copy everything outside the area
/// itself), path-style or virtual-hosted.
#[tokio::test]
async fn a_prefix_grant_never_admits_a_request_on_the_bucket_itself() {
    let ((_setup, _geo, origin), proxy) = radiology_grant("\"GET\", \"PUT\"").await;
    let send = |method: &'static str, host: &'static str, path: &'static str| {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", host)
            .header("authorization", sigv4("AKIAVENDOR"))
            .body(NoBody::new())
            .unwrap();
        let addr = proxy.addr();
        async move { Client::bound_to(ips::US).send(addr, req).await }
    };
    let rsp = send("GET", "s3.test", "/radiology/scan.dcm").await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    for (method, host, path) in [
        ("GET", "s3.test", "/radiology/?list-type=2"),
        ("GET", "s3.test", "/radiology/"),
        ("PUT", "s3.test", "/radiology/?replication"),
        ("PUT", "s3.test", "/radiology/?policy"),
        ("GET", "radiology.s3.test", "/?list-type=2"),
        ("PUT", "radiology.s3.test", "/?replication"),
    ] {
        let rsp = send(method, host, path).await;
        assert_eq!(rsp.status, 451, "{method} {host} {path}");
        assert_eq!(rsp.header("x-residency-decision"), US_BLOCKED);
    }
    assert_eq!(origin.request_count(), 1);
}

/// An identities file that is a FIFO, a device, too large or not UTF-8:
/// refused at once with the file named (and the line and column of a
/// stray byte), never a hang or a read without end.
#[test]
fn an_identities_file_that_is_no_text_file_is_refused_at_once() {
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.toml");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, b"# ok\n[[identity]]\nid = \"A\xffB\"\n").unwrap();
    let huge = dir.path().join("huge.toml");
    let f = std::fs::File::create(&huge).unwrap();
    f.set_len(17 << 20).unwrap();
    let review = |file: &std::path::Path| {
        let mut child = Command::new(crate::support::proxy::BIN)
            .args(["access-review", "--audit", "/dev/null", "--identities"])
            .arg(file)
            .env("RUST_LOG", "off")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > std::time::Duration::from_secs(20) {
                child.kill().unwrap();
                panic!("{} hangs", file.display());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success(), "{}", file.display());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = review(&fifo);
    assert!(err.contains("not a regular file"), "{err}");
    let err = review(std::path::Path::new("/dev/zero"));
    assert!(err.contains("not a regular file"), "{err}");
    let err = review(&huge);
    assert!(err.contains("larger than"), "{err}");
    let err = review(&bad);
    assert!(err.contains("bad.toml:3:8"), "{err}");
    assert!(err.contains("0xff is not UTF-8"), "{err}");
}

/// Each governed-access refusal leaves exactly one audit record and one
/// count, whether the client reads the 403 or closes mid-body.
#[tokio::test]
async fn each_access_refusal_is_one_record_and_one_count_even_if_the_client_leaves() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_origin, proxy, _s, _g) = crate::access::registry_proxy(10, "require_known = true").await;
    let mut expected = 0;
    for (key, reason) in [
        ("AKIASTRANGER", "unknown_identity"),
        ("AKIAOTHERROUTE", "route_not_granted"),
    ] {
        // Read to the end.
        let rsp = crate::access::get(&proxy, ips::FR, "/b/k", Some(key)).await;
        assert_eq!(rsp.status, 403);
        // Headers and part of a body, then gone (with and without
        // waiting for the answer to start).
        for wait in [false, true] {
            let mut s = crate::support::client::connect_from(ips::FR, proxy.addr()).await;
            let head = format!(
                "PUT /b/k HTTP/1.1\r\nHost: s3\r\nAuthorization: {}\r\n\
                 Content-Length: 100000\r\n\r\n",
                sigv4(key)
            );
            s.write_all(head.as_bytes()).await.unwrap();
            s.write_all(&[b'x'; 1000]).await.unwrap();
            if wait {
                let mut b = [0u8; 12];
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(5), s.read_exact(&mut b))
                        .await;
            }
            drop(s);
        }
        expected += 3;
        let by_reason = format!(r#"residency_refused_requests_total{{reason="{reason}"}}"#);
        let mut metrics = String::new();
        for _ in 0..100 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let records = proxy.audit_records();
            metrics = Client::bound_to("127.0.0.1")
                .get(proxy.admin_addr(), "/metrics", &[])
                .await
                .text();
            if records.len() >= expected
                && metrics
                    .lines()
                    .any(|l| l.strip_prefix(&by_reason) == Some(" 3"))
            {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let records = proxy.audit_records().into_iter().skip(expected - 3);
        let reasons: Vec<_> = records.map(|r| r["reason"].clone()).collect();
        assert_eq!(reasons, vec![serde_json::json!(reason); 3], "{reason}");
        let count: Vec<_> = metrics
            .lines()
            .filter_map(|l| l.strip_prefix(&by_reason))
            .collect();
        assert_eq!(count, [" 3"], "{reason}: {metrics}");
    }
}

/// Over HTTP/2 (TLS, ALPN `h2`), many streams on ONE connection: each
/// identity refusal is its own 403 with its reason, exactly one audit
/// record and one count, and the connection keeps serving.
#[tokio::test]
async fn identity_refusals_over_one_h2_connection_are_one_record_and_one_count_each() {
    use crate::support::proxy::{assert_audit_verifies, records_in};
    use crate::support::tls::{TestCa, client_config};
    let setup = Setup::new("", &[]);
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let ca = TestCa::new("Proxy CA");
    let toml = ca.with_tls_listener(&config(&geo, &origin, "", "", ""), &["s3.test"])
        + "\n[[route]]\nname = \"billing\"\npath_prefix = \"/billing/\"\nupstreams = [\"http://127.0.0.1:9\"]\n"
        + &setup.sections(Some(&registry(10, "require_known = true")));
    let proxy = Proxy::start(&toml);
    let series = |reason: &str| format!(r#"residency_refused_requests_total{{reason="{reason}"}}"#);
    let count = |metrics: &str, reason: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series(reason)))
            .map_or(0, |v| v.trim().parse().unwrap())
    };
    let refused_on_s3 = r#"residency_requests_total{decision="refused",route="s3"}"#;
    let before = proxy.metrics().await;

    let tcp = crate::support::client::connect_from(ips::FR, proxy.tls_addr()).await;
    let name = rustls::pki_types::ServerName::try_from("s3.test").unwrap();
    let tls = tokio_rustls::TlsConnector::from(client_config(&ca, None, &[b"h2"]))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    // Unlisted (claimed or anonymous) and listed for another route only;
    // several of each, in flight together on the one connection.
    let cases: Vec<(Option<&str>, &str)> = [
        (Some("AKIASTRANGER"), "unknown_identity"),
        (None, "unknown_identity"),
        (Some("AKIAOTHERROUTE"), "route_not_granted"),
    ]
    .into_iter()
    .cycle()
    .take(9)
    .collect();
    let mut streams = Vec::new();
    for (n, (key, _)) in cases.iter().enumerate() {
        let mut sender = sender.clone();
        let mut req = Request::get(format!("https://s3.test/b/k{n}"));
        if let Some(key) = key {
            req = req.header("authorization", sigv4(key));
        }
        let req = req.body(NoBody::new()).unwrap();
        streams.push(tokio::spawn(async move {
            let rsp = sender.send_request(req).await.unwrap();
            assert_eq!(rsp.version(), http::Version::HTTP_2);
            assert_eq!(rsp.status(), 403);
            let decision = rsp.headers()["x-residency-decision"]
                .to_str()
                .unwrap()
                .to_owned();
            let body = http_body_util::BodyExt::collect(rsp.into_body())
                .await
                .unwrap()
                .to_bytes();
            (decision, String::from_utf8_lossy(&body).into_owned())
        }));
    }
    for ((key, reason), stream) in cases.iter().zip(streams) {
        let (decision, body) = stream.await.unwrap();
        assert_eq!(decision, format!("refused; reason={reason}"), "{key:?}");
        assert!(
            body.contains("<Code>AccessDenied</Code>"),
            "{key:?}: {body}"
        );
    }
    // The same connection still serves a listed identity on its route.
    let mut last = sender.clone();
    let rsp = last
        .send_request(
            Request::get("https://s3.test/b/known")
                .header("authorization", sigv4("AKIACHU01"))
                .body(NoBody::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    drop((sender, last, rsp));
    conn.abort();
    assert_eq!(origin.request_count(), 1);

    // The allowed request's record is the last one: wait for it, and for
    // a request on another connection after the h2 one closed, so that a
    // record written late (a duplicate, a connection error) is seen.
    let after_close = crate::access::get(&proxy, ips::FR, "/b/sentinel", Some("AKIACHU01")).await;
    assert_eq!(after_close.status, 200);
    let mut records = Vec::new();
    for _ in 0..500 {
        records = records_in(&proxy.audit_path());
        if records.iter().any(|r| r["object_key"] == "b/sentinel") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let refused: Vec<_> = records
        .iter()
        .filter(|r| r["decision"] == "refused")
        .collect();
    assert_eq!(refused.len(), cases.len(), "{records:#?}");
    for (n, (key, reason)) in cases.iter().enumerate() {
        let path = format!("b/k{n}");
        let mine: Vec<_> = refused.iter().filter(|r| r["object_key"] == path).collect();
        assert_eq!(mine.len(), 1, "{path}: {records:#?}");
        assert_eq!(mine[0]["reason"], *reason, "{path}");
        assert_eq!(mine[0]["status"], 403, "{path}");
        assert_eq!(mine[0]["identity"], key.unwrap_or("anonymous"), "{path}");
        assert_eq!(mine[0]["client_ip"], ips::FR, "{path}");
    }
    assert_eq!(records.len(), cases.len() + 2, "{records:#?}");
    assert_audit_verifies(&[&proxy.audit_path()]);

    let after = proxy.metrics().await;
    for (reason, n) in [("unknown_identity", 6), ("route_not_granted", 3)] {
        assert_eq!(
            count(&after, reason),
            count(&before, reason) + n,
            "{reason}"
        );
    }
    let total = |m: &str| {
        m.lines()
            .find_map(|l| l.strip_prefix(refused_on_s3))
            .map_or(0, |v| v.trim().parse::<u64>().unwrap())
    };
    assert_eq!(total(&after), total(&before) + 9);
}
