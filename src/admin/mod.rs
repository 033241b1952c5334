//! The admin listener (SPEC §7): `/metrics` (Prometheus text format),
//! `/healthz` (the process answers), `/readyz` (database loaded, config
//! valid — both true for any snapshot — and at least one route, and every
//! route with `required = true`, has an upstream address it may dial:
//! one route whose storage moved abroad does not take every replica out
//! of service while the others route), and `/transfers` (the live cartography of
//! flows outside the EEA, JSON; `?format=html` for the publishable page,
//! `&lang=en` in English). Bind it to loopback or a management
//! network: it tells what the proxy can reach.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::audit::page::{PageContext, Source};
use crate::audit::world::Lang;
use crate::preflight::{preflight, process_ready};
use crate::snapshot::Shared;

/// Serves admin requests on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, shared: Shared) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, shared.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "admin connection ended with an error");
            }
        });
    }
}

/// Binds the admin address.
///
/// # Errors
/// The OS error, naming the address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on admin address {addr}: {e}"),
        )
    })
}

async fn handle(
    req: Request<Incoming>,
    shared: Shared,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n"));
    }
    let rsp = match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/metrics" => {
            let body = shared.load().evidence.metrics.render();
            let mut rsp = Response::new(Full::new(Bytes::from(body)));
            rsp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            rsp
        }
        "/transfers" if page_lang(req.uri().query()).is_some() => {
            let snap = shared.load();
            let lang = page_lang(req.uri().query()).unwrap_or_default();
            html(transfers_page(&snap, lang))
        }
        "/transfers" => {
            let snap = shared.load();
            let body = serde_json::json!({
                "area": "EEA",
                "transfers": snap.evidence.cartography.rows(),
                "attempts_refused": snap.evidence.cartography.attempts(),
                "internal": snap.evidence.cartography.internal(),
                "operated_outside": snap.evidence.operated.rows(),
                "operated_outside_dropped": snap.evidence.operated.dropped(),
            });
            json(StatusCode::OK, &body)
        }
        "/readyz" => {
            let snap = shared.load_full();
            let routes = preflight(&snap).await;
            let ready = process_ready(&routes);
            let body = serde_json::json!({ "ready": ready, "routes": routes });
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json(status, &body)
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz, /readyz or /transfers\n",
        ),
    };
    Ok(rsp)
}

/// `Some(lang)` when the query asks for the page: `format=html`, with
/// `lang=en` or `lang=fr` (the default).
fn page_lang(query: Option<&str>) -> Option<Lang> {
    let pairs = || {
        query
            .unwrap_or("")
            .split('&')
            .filter_map(|p| p.split_once('='))
    };
    pairs().any(|(k, v)| k == "format" && v == "html").then(|| {
        pairs()
            .find(|(k, _)| *k == "lang")
            .and_then(|(_, v)| Lang::parse(v))
            .unwrap_or_default()
    })
}

/// The page of [`crate::audit::page`] from the live cartography.
fn transfers_page(snap: &crate::snapshot::Snapshot, lang: Lang) -> String {
    let ev = &snap.evidence;
    ev.cartography
        .to_cartography(&ev.operated)
        .to_page(&PageContext {
            lang,
            transparency: snap.config.transparency.as_ref(),
            generated: crate::audit::format_time(std::time::SystemTime::now()),
            since: None,
            until: None,
            source: Source::Live {
                policy_version: snap.policy_version.clone(),
            },
        })
}

fn html(body: String) -> Response<Full<Bytes>> {
    let mut rsp = Response::new(Full::new(Bytes::from(body)));
    rsp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // The page's own policy, as a header too (it also covers what comes
    // before the page's <meta> is read).
    rsp.headers_mut().insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(crate::audit::page::CSP),
    );
    rsp
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut rsp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    rsp
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut rsp = Response::new(Full::new(Bytes::from(format!("{body:#}\n"))));
    *rsp.status_mut() = status;
    rsp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    rsp
}
