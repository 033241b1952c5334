use std::time::Duration;

use super::*;

/// The connect budget covers every step of making a connection: a TCP
/// connect and a TLS handshake that each take most of it run out of it
/// together (each had the whole budget before: up to twice the value).
#[tokio::test(start_paused = true)]
async fn one_connect_budget_covers_tcp_and_tls_together() {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let budget = Duration::from_secs(2);
    let start = tokio::time::Instant::now();
    let steps = async {
        tokio::time::sleep(budget * 3 / 4).await; // the TCP connect
        tokio::time::sleep(budget * 3 / 4).await; // the TLS handshake
        Ok(())
    };
    let r = within(budget, addr, steps).await;
    assert!(
        matches!(r, Err(UpstreamError::Timeout { budget: b, .. }) if b == budget),
        "{r:?}"
    );
    assert_eq!(start.elapsed(), budget);
}

#[test]
fn a_chain_shows_every_source() {
    let e = UpstreamError::Connect {
        addr: "127.0.0.1:9".parse().unwrap(),
        source: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"),
    };
    assert_eq!(
        Chain(&e).to_string(),
        "connect to 127.0.0.1:9 failed: refused"
    );
}
