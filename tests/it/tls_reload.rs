//! HTTPS termination (HTTP/1.1 and h2 by ALPN, SNI), mTLS, reloads that
//! succeed or are refused whole under load, a watched database, and
//! shutdown draining a slow upload.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper_util::rt::TokioIo;

use crate::support::client::connect_from;
use crate::support::data;
use crate::support::tls::{TestCa, client_config, https_get};
use crate::support::{Client, Layout, Origin, Proxy, TestGeo, config, ips, standard_geo};

/// A config serving HTTPS with a certificate for `s3.test` (and optional
/// extra `[server.tls]` lines, e.g. mTLS).
fn tls_config(geo: &TestGeo, origin: &Origin, ca: &TestCa, tls_extra: &str) -> String {
    let (cert, key) = ca.write_leaf("server", &["s3.test", "localhost"]);
    let toml = config(geo, origin, "", "", "");
    toml.replace(
        "[admin]",
        &format!(
            "tls_listen = [\"127.0.0.1:0\"]\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n{tls_extra}\n\n[admin]",
            cert.display(),
            key.display()
        ),
    )
}

#[tokio::test]
async fn https_serves_http1_and_h2_by_alpn() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let ca = TestCa::new("Proxy CA");
    let proxy = Proxy::start(&tls_config(&geo, &origin, &ca, ""));
    let h1 = client_config(&ca, None, &[b"http/1.1"]);
    let (version, rsp) = https_get(ips::FR, proxy.tls_addr(), "s3.test", h1, "/b/k")
        .await
        .unwrap();
    assert_eq!(version, http::Version::HTTP_11);
    assert_eq!(rsp.status, 200);
    let h2 = client_config(&ca, None, &[b"h2", b"http/1.1"]);
    let (version, rsp) = https_get(ips::FR, proxy.tls_addr(), "s3.test", h2.clone(), "/b/k2")
        .await
        .unwrap();
    assert_eq!(version, http::Version::HTTP_2);
    assert_eq!(rsp.status, 200);
    // The upstream got HTTP/1.1 with the client's authority as Host.
    let seen = origin.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[1].headers["host"],
        format!("s3.test:{}", proxy.tls_addr().port())
    );
    // Blocked over h2 too, with the same header and XML.
    let (_, rsp) = https_get(ips::US, proxy.tls_addr(), "s3.test", h2, "/b/k3")
        .await
        .unwrap();
    assert_eq!(rsp.status, 451);
    assert_eq!(
        rsp.header("x-residency-decision"),
        "blocked; side=client; country=US; reason=country_not_allowed"
    );
    assert!(rsp.text().contains("<Code>AccessDenied</Code>"));
    // A large download over h2 streams intact.
    let h2 = client_config(&ca, None, &[b"h2"]);
    let (_, rsp) = https_get(
        ips::FR,
        proxy.tls_addr(),
        "s3.test",
        h2,
        "/download/3000000?chunked",
    )
    .await
    .unwrap();
    assert_eq!(rsp.body.len(), 3_000_000);
    assert_eq!(
        data::hex(&<sha2::Sha256 as sha2::Digest>::digest(&rsp.body)),
        data::sha256_of_pattern(3_000_000)
    );
}

#[tokio::test]
async fn sni_chooses_the_certificate() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let ca = TestCa::new("Proxy CA");
    let (other_cert, other_key) = ca.write_leaf("other", &["other.test"]);
    let extra = format!(
        "[[server.tls.sni]]\nnames = [\"other.test\"]\ncert = \"{}\"\nkey = \"{}\"",
        other_cert.display(),
        other_key.display()
    );
    let proxy = Proxy::start(&tls_config(&geo, &origin, &ca, &extra));
    let cfg = client_config(&ca, None, &[b"http/1.1"]);
    // Each name gets a certificate valid for it (verification would fail otherwise).
    assert_eq!(
        https_get(ips::FR, proxy.tls_addr(), "other.test", cfg.clone(), "/b/k")
            .await
            .unwrap()
            .1
            .status,
        200
    );
    assert_eq!(
        https_get(ips::FR, proxy.tls_addr(), "s3.test", cfg.clone(), "/b/k")
            .await
            .unwrap()
            .1
            .status,
        200
    );
    // Unknown names get the default certificate, which is not valid for them.
    assert!(
        https_get(ips::FR, proxy.tls_addr(), "unknown.test", cfg, "/b/k")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn mtls_accepts_good_certificates_and_refuses_the_rest() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let ca = TestCa::new("Proxy CA");
    let clients = TestCa::new("Hospital clients CA");
    let extra = format!("client_ca = \"{}\"", clients.pem_path().display());
    let proxy = Proxy::start(&tls_config(&geo, &origin, &ca, &extra));
    let good = clients.client_cert("lab-analyzer-7");
    let cfg = client_config(&ca, Some(&good), &[b"http/1.1"]);
    let (_, rsp) = https_get(ips::FR, proxy.tls_addr(), "s3.test", cfg, "/b/k")
        .await
        .unwrap();
    assert_eq!(rsp.status, 200);
    // Without a certificate, or with one from another CA: refused.
    let none = client_config(&ca, None, &[b"http/1.1"]);
    assert!(
        https_get(ips::FR, proxy.tls_addr(), "s3.test", none, "/b/k")
            .await
            .is_err()
    );
    let stranger = TestCa::new("Elsewhere CA").client_cert("intruder");
    let bad = client_config(&ca, Some(&stranger), &[b"http/1.1"]);
    assert!(
        https_get(ips::FR, proxy.tls_addr(), "s3.test", bad, "/b/k")
            .await
            .is_err()
    );
    assert_eq!(origin.request_count(), 1);
    // The subject is the audit identity (no SigV4 here); refusals are counted.
    let records = proxy.audit_records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["identity"], "lab-analyzer-7");
    // The server counts a refusal once its side of the handshake has
    // failed, which may be just after the client saw the alert.
    let mut m = String::new();
    for _ in 0..100 {
        m = proxy.metrics().await;
        let failures = m
            .lines()
            .find_map(|l| l.strip_prefix("residency_tls_handshake_failures_total "))
            .unwrap();
        if failures.trim().parse::<f64>().unwrap() >= 2.0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("two refused handshakes are counted: {m}");
}

#[tokio::test]
async fn optional_client_auth_lets_anonymous_clients_in() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let ca = TestCa::new("Proxy CA");
    let clients = TestCa::new("Clients CA");
    let extra = format!(
        "client_ca = \"{}\"\nclient_auth = \"optional\"",
        clients.pem_path().display()
    );
    let proxy = Proxy::start(&tls_config(&geo, &origin, &ca, &extra));
    let none = client_config(&ca, None, &[b"http/1.1"]);
    assert_eq!(
        https_get(ips::FR, proxy.tls_addr(), "s3.test", none, "/b/k")
            .await
            .unwrap()
            .1
            .status,
        200
    );
    assert_eq!(proxy.audit_records()[0]["identity"], "anonymous");
}

#[tokio::test]
async fn bad_reloads_are_refused_whole_and_the_old_state_serves() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let ca = TestCa::new("Proxy CA");
    let good = tls_config(&geo, &origin, &ca, "");
    let proxy = Proxy::start(&good);
    let cfg = client_config(&ca, None, &[b"http/1.1"]);
    let check = || async {
        let (_, rsp) = https_get(ips::FR, proxy.tls_addr(), "s3.test", cfg.clone(), "/b/k")
            .await
            .unwrap();
        assert_eq!(rsp.status, 200);
        assert_eq!(
            Client::bound_to(ips::US)
                .get(proxy.addr(), "/b/k", &[])
                .await
                .status,
            451
        );
    };
    check().await;

    // A corrupt database.
    let corrupt = geo.path().with_file_name("corrupt.mmdb");
    std::fs::write(&corrupt, b"not a maxmind database at all").unwrap();
    let (other_cert, _) = ca.write_leaf("mismatch-cert", &["s3.test"]);
    let (_, other_key) = ca.write_leaf("mismatch-key", &["s3.test"]);
    let cert_line = good
        .lines()
        .find(|l| l.starts_with("cert = "))
        .unwrap()
        .to_owned();
    let key_line = good
        .lines()
        .find(|l| l.starts_with("key = "))
        .unwrap()
        .to_owned();
    let broken = [
        ("syntax", good.replace("[policy]", "[policy\n")),
        (
            "unknown key",
            good.replace("[policy]", "[policy]\nalow_countries = [\"US\"]"),
        ),
        (
            "corrupt database",
            good.replace(
                &geo.path().display().to_string(),
                &corrupt.display().to_string(),
            ),
        ),
        (
            "mismatched key",
            good.replace(&cert_line, &format!("cert = \"{}\"", other_cert.display()))
                .replace(&key_line, &format!("key = \"{}\"", other_key.display())),
        ),
        (
            "listen change",
            good.replace(
                "listen = [\"127.0.0.1:0\"]",
                "listen = [\"127.0.0.1:0\", \"127.0.0.2:0\"]",
            ),
        ),
    ];
    for (n, (what, text)) in broken.iter().enumerate() {
        std::fs::write(proxy.config_path(), text).unwrap();
        proxy.signal("HUP");
        proxy.wait_for_log("reload refused", n + 1).await;
        check().await;
        let _ = what;
    }
    let logs = proxy.logs();
    assert!(logs.contains("does not match certificate"), "{logs}");
    assert!(logs.contains("cannot change on reload"), "{logs}");
    let m = proxy.metrics().await;
    assert!(
        m.contains("residency_config_reloads_total{result=\"failure\"} 5"),
        "{m}"
    );
}

#[tokio::test]
async fn two_thousand_requests_over_twenty_reloads_never_fail() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let good = config(&geo, &origin, "", "", "");
    let proxy = Proxy::start(&good);
    let addr = proxy.addr();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut loops = Vec::new();
    for ip in [ips::FR, ips::DE, ips::US, ips::NO] {
        let stop = stop.clone();
        loops.push(tokio::spawn(async move {
            let (mut ok, mut wrong) = (0u32, 0u32);
            // Keep-alive connections, renewed every 50 requests: both the
            // connections that live across reloads and new ones are tested.
            let mut sender = None;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || ok + wrong < 500 {
                if (ok + wrong) % 50 == 0 {
                    sender = None;
                }
                if sender.is_none() {
                    let stream = connect_from(ip, addr).await;
                    let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .unwrap();
                    tokio::spawn(conn);
                    sender = Some(s);
                }
                let s = sender.as_mut().unwrap();
                let req = http::Request::get("/b/k")
                    .header("host", "s3.test")
                    .body(http_body_util::Empty::<Bytes>::new())
                    .unwrap();
                let status = match s.send_request(req).await {
                    Ok(rsp) => {
                        let status = rsp.status().as_u16();
                        let _ = http_body_util::BodyExt::collect(rsp.into_body()).await;
                        status
                    }
                    Err(_) => {
                        sender = None;
                        0
                    }
                };
                let expected = if ip == ips::US { 451 } else { 200 };
                if status == expected {
                    ok += 1
                } else {
                    wrong += 1
                }
            }
            (ok, wrong)
        }));
    }
    for i in 0..20 {
        let text = if i % 2 == 0 {
            // Valid: a harmless change (another allowed country).
            good.replace(
                "allow_networks = []",
                &format!(
                    "allow_networks = []\nallow_countries = [\"EEA\", \"{}\"]",
                    ["CH", "GB"][i % 4 / 2]
                ),
            )
        } else {
            good.replace("[[route]]", "[[route]]\nbogus = 1")
        };
        std::fs::write(proxy.config_path(), text).unwrap();
        proxy.signal("HUP");
        let done = if i % 2 == 0 {
            "reloaded"
        } else {
            "reload refused"
        };
        proxy.wait_for_log(done, i / 2 + 1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut wrong) = (0, 0);
    for l in loops {
        let (o, w) = l.await.unwrap();
        ok += o;
        wrong += w;
    }
    assert_eq!(wrong, 0, "{wrong} requests got an unexpected status");
    assert!(ok >= 2000, "only {ok} requests");
    eprintln!("{ok} requests over 20 reloads, none failed");
}

#[tokio::test]
async fn watched_database_is_picked_up_when_replaced_by_rename() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let toml = config(&geo, &origin, "", "", "");
    let toml = toml.replace(
        &format!("database = \"{}\"", geo.path().display()),
        &format!(
            "database = \"{}\"\nwatch = true\nwatch_interval = \"200ms\"",
            geo.path().display()
        ),
    );
    let proxy = Proxy::start(&toml);
    assert_eq!(
        Client::bound_to(ips::US)
            .get(proxy.addr(), "/b/k", &[])
            .await
            .status,
        451
    );
    // A new database in which 127.0.0.5 is in Germany, written then renamed.
    standard_geo(Layout::IpLocationDb)
        .map(ips::US, "DE")
        .write_to(geo.path());
    proxy.wait_for_log("GeoIP database replaced", 1).await;
    proxy.wait_for_log("reloaded", 1).await;
    assert_eq!(
        Client::bound_to(ips::US)
            .get(proxy.addr(), "/b/k", &[])
            .await
            .status,
        200
    );
}

/// A body that sends `total` pattern bytes in 1 MiB chunks, pausing between
/// chunks so the upload is still running when the test signals the proxy.
struct SlowBody {
    next: u64,
    total: u64,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Body for SlowBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(s) = self.sleep.as_mut() {
            std::task::ready!(s.as_mut().poll(cx));
            self.sleep = None;
        }
        let sent = self.next * data::CHUNK as u64;
        if sent >= self.total {
            return Poll::Ready(None);
        }
        let len = (self.total - sent).min(data::CHUNK as u64) as usize;
        let c = data::chunk(self.next, len);
        self.next += 1;
        self.sleep = Some(Box::pin(tokio::time::sleep(Duration::from_millis(40))));
        Poll::Ready(Some(Ok(Frame::data(c))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.total)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_slow_64_mib_upload_lets_it_finish_then_exits_zero() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let mut proxy = Proxy::start(&config(&geo, &origin, "shutdown_grace = \"30s\"", "", ""));
    let total = 64u64 << 20;
    let stream = connect_from(ips::FR, proxy.addr()).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::put("/bucket/slow")
        .header("host", "s3.test")
        .body(SlowBody {
            next: 0,
            total,
            sleep: None,
        })
        .unwrap();
    let upload = tokio::spawn(async move {
        let rsp = sender.send_request(req).await.unwrap();
        let status = rsp.status();
        let body = http_body_util::BodyExt::collect(rsp.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        !upload.is_finished(),
        "the upload must still be running when SIGTERM arrives"
    );
    proxy.signal("TERM");
    proxy.wait_for_log("shutting down", 1).await;
    let (status, body) = upload.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        body,
        format!("len={total} sha256={}", data::sha256_of_pattern(total))
    );
    assert_eq!(proxy.wait_exit(Duration::from_secs(20)), Some(0));
}
