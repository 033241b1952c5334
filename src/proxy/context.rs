//! What a request is handled with, besides the snapshot: what its
//! connection knows about the client ([`ConnInfo`]), and the one way a
//! failing verdict is logged. Used by the service and by the forwarding
//! side, which do not import each other.

use std::net::SocketAddr;

use super::client_ip::ClientAddr;
use super::respond::RequestId;
use crate::geo::label;
use crate::policy::{Decision, Reason, Side, Verdict};

/// What the connection knows about its client.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The socket peer.
    pub peer: SocketAddr,
    /// The untrusted peer; from a trusted peer, the address it announced
    /// with PROXY protocol, or what a trusted proxy naming no client stands
    /// for (`trusted_proxy_without_client`; see `client_ip::client_addr`).
    pub client: ClientAddr,
    /// Whether the peer is a trusted proxy.
    pub peer_trusted: bool,
    /// The verified mTLS client certificate subject, if any.
    pub mtls_subject: Option<String>,
}

/// Logs a failing verdict once: `info` when blocked, `warn` when flagged,
/// as fields.
pub fn log_verdict(
    decision: Decision,
    side: Side,
    route: &str,
    v: &Verdict,
    reason: Reason,
    id: RequestId,
    conn: &ConnInfo,
) {
    let country = label(v.country);
    let ip = v.ip.map(|ip| ip.to_string());
    let peer = conn.peer.ip();
    match decision {
        Decision::Blocked => tracing::info!(
            decision = decision.as_str(), side = side.as_str(), route, country, reason = reason.as_str(),
            request_id = %id, ip = ip.as_deref().unwrap_or("untraceable"), %peer, "request blocked"
        ),
        _ => tracing::warn!(
            decision = decision.as_str(), side = side.as_str(), route, country, reason = reason.as_str(),
            request_id = %id, ip = ip.as_deref().unwrap_or("untraceable"), %peer, "request flagged"
        ),
    }
}
