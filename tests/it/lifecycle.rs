//! The process: several listen addresses, SIGHUP reload (good and bad
//! configs), and SIGTERM draining an in-flight upload before exiting 0.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::client::connect_from;
use crate::support::{Client, Layout, Origin, Proxy, config, ips, standard_geo};

#[tokio::test]
async fn every_listen_address_serves() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let toml = config(&geo, &origin, "", "", "").replace(
        "listen = [\"127.0.0.1:0\"]",
        "listen = [\"127.0.0.1:0\", \"127.0.0.1:0\"]",
    );
    let proxy = Proxy::start(&toml);
    assert_eq!(proxy.addrs().len(), 2);
    assert_ne!(proxy.addrs()[0], proxy.addrs()[1]);
    for addr in proxy.addrs() {
        assert_eq!(
            Client::bound_to(ips::FR)
                .get(*addr, "/b/k", &[])
                .await
                .status,
            200
        );
    }
    assert_eq!(origin.request_count(), 2);
}

#[tokio::test]
async fn sighup_reloads_a_valid_config_and_refuses_a_broken_one() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let toml = config(&geo, &origin, "", "", "");
    let mut proxy = Proxy::start(&toml);
    let us = Client::bound_to(ips::US);
    assert_eq!(us.get(proxy.addr(), "/b/k", &[]).await.status, 451);

    proxy.write_config(&toml.replace(
        "allow_networks = []",
        "allow_networks = []\nallow_countries = [\"EEA\", \"US\"]",
    ));
    proxy.signal("HUP");
    proxy.wait_for_log("reloaded", 1).await;
    assert_eq!(us.get(proxy.addr(), "/b/k", &[]).await.status, 200);

    std::fs::write(proxy.config_path(), "[policy]\nmode = \"nonsense\"\n").unwrap();
    proxy.signal("HUP");
    proxy.wait_for_log("reload refused", 1).await;
    assert!(proxy.logs().contains("unknown variant"), "{}", proxy.logs());
    assert_eq!(
        us.get(proxy.addr(), "/b/k", &[]).await.status,
        200,
        "the previous config keeps serving"
    );
    assert!(proxy.is_running());
    assert_eq!(origin.request_count(), 2);
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_upload_finish_then_exits_zero() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let mut proxy = Proxy::start(&config(&geo, &origin, "shutdown_grace = \"20s\"", "", ""));
    let mut s = connect_from(ips::FR, proxy.addr()).await;
    s.write_all(b"PUT /b/slow HTTP/1.1\r\nHost: s3.test\r\nContent-Length: 10\r\n\r\nhello")
        .await
        .unwrap();
    // The upload is in flight once the proxy has dialled the origin (a
    // fixed sleep raced a busy machine: the connection could still be in
    // the listener's backlog when the drain closed it).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while origin.connection_count() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the proxy never dialled the origin"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.signal("TERM");
    proxy.wait_for_log("shutting down", 1).await;
    // New connections are no longer accepted…
    let refused = tokio::net::TcpStream::connect(proxy.addr()).await;
    assert!(
        refused.is_err(),
        "the listener must be closed during the drain"
    );
    // …but the upload in flight completes.
    s.write_all(b"world").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.ends_with(
            "len=10 sha256=936a185caaa266bb9cbe981e9e05cb78cd732b0b3280eb944412bb6f8f8f07af"
        ),
        "{out}"
    );
    assert_eq!(proxy.wait_exit(Duration::from_secs(10)), Some(0));
}

/// One worker thread per CPU the process may use, beside the main thread
/// (signals, reloads, admin): the architecture the README describes.
#[tokio::test]
async fn one_worker_thread_per_cpu() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(&config(&geo, &origin, "", "", ""));
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let threads = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", proxy.pid()))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
            .map(|n| n.trim().to_owned())
            .filter(|n| n.starts_with("worker-"))
            .collect();
        names.sort();
        names
    };
    let expected: Vec<String> = (1..=cpus).map(|i| format!("worker-{i}")).collect();
    // "listening on" is logged (and Proxy::start returns) once every
    // worker accepts.
    assert_eq!(threads(), expected);
    // Concurrent connections are all served.
    let mut gets = tokio::task::JoinSet::new();
    for _ in 0..4 * cpus {
        let addr = proxy.addr();
        gets.spawn(async move {
            Client::bound_to(ips::FR)
                .get(addr, "/b/k", &[])
                .await
                .status
        });
    }
    while let Some(status) = gets.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    assert_eq!(origin.request_count(), 4 * cpus);
}

/// Each request takes the snapshot current when it arrives, even on a
/// keep-alive connection accepted before a reload: `trusted_proxies` added
/// by a reload decides the next request on that same connection. (Before,
/// the connection kept the trust, and the snapshot, it was accepted under:
/// the forwarded chain was still dropped after the reload.)
#[tokio::test]
async fn a_kept_alive_connection_follows_a_reload_of_trusted_proxies() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let toml = config(&geo, &origin, "client_ip_source = \"peer\"", "", "");
    let proxy = Proxy::start(&toml);
    let mut s = connect_from(ips::FR, proxy.addr()).await;
    let request = b"GET /b/k HTTP/1.1\r\nHost: s3.test\r\nX-Forwarded-For: 198.51.100.7\r\n\r\n";
    s.write_all(request).await.unwrap();
    let first = crate::support::client::read_response(&mut s).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");

    proxy.write_config(&toml.replace(
        "client_ip_source = \"peer\"",
        &format!(
            "client_ip_source = \"peer\"\ntrusted_proxies = [\"{}/32\"]",
            ips::FR
        ),
    ));
    proxy.signal("HUP");
    proxy.wait_for_log("reloaded", 1).await;
    s.write_all(request).await.unwrap();
    let second = crate::support::client::read_response(&mut s).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");

    let seen = origin.seen();
    assert_eq!(seen.len(), 2);
    let xff = |i: usize| {
        seen[i].headers["x-forwarded-for"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(xff(0), ips::FR, "untrusted peer: its chain is dropped");
    assert_eq!(
        xff(1),
        format!("198.51.100.7, {}", ips::FR),
        "trusted since the reload: its chain is kept, on the same connection"
    );
}
