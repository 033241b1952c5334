//! Export of closed segments to S3 (SPEC §10, `[audit.export]`).
//!
//! **The spool is the trail's own directory.** Every closed segment
//! (`<stem>-<seq>-<time>.jsonl`, see [`crate::audit::rotate`]) and its checkpoint
//! file is a file to upload; the *acknowledgement log* `<path>.exported`
//! beside the trail (`audit/audit.jsonl.exported`) lists, one per line, the
//! names the store answered 200 for, appended and synced after each
//! answer. A file not in the log is pending: the spool survives a restart,
//! and a file whose answer was lost is simply uploaded again. Nothing is
//! ever deleted: retention of the local files is the operator's (see
//! docs/operations.md); the spool's depth is the bytes of pending files.
//!
//! **Keys are idempotent**: `<prefix><origin>/<file name>`, so a retry
//! overwrites the same object (a new version when the bucket is versioned,
//! as Object Lock requires).
//!
//! **The store is an upstream like any other**: its name is resolved by the
//! snapshot's resolver, every address judged by the global `[policy]` as
//! the upstream side, and only an address that passed is dialled. A store
//! with no address in the area is never dialled; `check` and `run` refuse
//! it at start ([`preflight`]).
//!
//! Requests are signed with SigV4 by `rusty-s3` (a presigned `PUT` whose
//! signed headers include the Object Lock ones), sent over hyper's HTTP/1.1
//! client. Failures are retried with exponential backoff (1 s doubling to
//! 60 s). When pending bytes exceed `spool_max`, `on_error = "fail-closed"`
//! makes the sink unhealthy (requests are refused with 503 as for a failing
//! trail) until the spool drains; `continue` only logs and counts.

use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use tokio::net::TcpStream;

use crate::audit::checkpoint::host_name;
use crate::audit::rotate::segment_seq;
use crate::audit::writer::AuditSink;
use crate::config::{ExportSpec, UpstreamHost};
use crate::snapshot::{Shared, Snapshot};
use crate::upstream::{Chain, Upstream};

/// How long a dial or a whole upload may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// How often the directory is scanned when all is well.
const POLL: Duration = Duration::from_secs(1);
/// The longest wait between failed attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The acknowledgement log of the trail at `path`.
pub fn ack_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".exported");
    PathBuf::from(s)
}

/// Why the export store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The secret file cannot be read.
    #[error("cannot read [audit.export] secret_access_key_file {}: {source}", path.display())]
    Secret {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The endpoint cannot be resolved.
    #[error("[audit.export] endpoint {url}: {why}")]
    Resolve {
        /// The endpoint.
        url: String,
        /// What failed.
        why: String,
    },
    /// No resolved address passes the policy.
    #[error(
        "[audit.export] endpoint {url} has no address the policy allows (the evidence must stay in the area): {rejected}"
    )]
    Outside {
        /// The endpoint.
        url: String,
        /// Each rejected address and its country.
        rejected: String,
    },
    /// The endpoint is not a URL rusty-s3 accepts.
    #[error("[audit.export] endpoint {url}: {why}")]
    Endpoint {
        /// The endpoint.
        url: String,
        /// What is wrong.
        why: String,
    },
}

/// Reads the secret key file (trailing newline removed).
///
/// # Errors
/// [`ExportError::Secret`].
pub fn credentials(spec: &ExportSpec) -> Result<Credentials, ExportError> {
    let secret = std::fs::read_to_string(&spec.secret_access_key_file).map_err(|source| {
        ExportError::Secret {
            path: spec.secret_access_key_file.clone(),
            source,
        }
    })?;
    Ok(Credentials::new(
        spec.access_key_id.clone(),
        secret.trim_end_matches(['\n', '\r']).to_owned(),
    ))
}

/// Resolves the endpoint and judges every address with the global policy:
/// the addresses that may be dialled, at least one.
///
/// # Errors
/// [`ExportError::Resolve`], or [`ExportError::Outside`] when no address
/// passes (each rejected one named with its country).
pub async fn preflight(spec: &ExportSpec, snap: &Snapshot) -> Result<Vec<SocketAddr>, ExportError> {
    let url = spec.endpoint.url.clone();
    let upstream =
        Upstream::new(spec.endpoint.clone(), TIMEOUT, None).map_err(|e| ExportError::Resolve {
            url: url.clone(),
            why: Chain(&e).to_string(),
        })?;
    let addrs = upstream
        .resolve(&snap.resolver)
        .await
        .map_err(|e| ExportError::Resolve {
            url: url.clone(),
            why: Chain(&e).to_string(),
        })?;
    let judged = Upstream::judge(
        &addrs,
        &snap.config.policy.policy,
        &snap.geo,
        snap.operators.as_ref(),
    );
    if judged.allowed.is_empty() {
        let rejected: Vec<String> = judged
            .rejected
            .iter()
            .map(|(a, v)| format!("{a} ({})", crate::geo::label(v.country)))
            .collect();
        return Err(ExportError::Outside {
            url,
            rejected: rejected.join(", "),
        });
    }
    for (a, v) in &judged.rejected {
        tracing::warn!(addr = %a, country = crate::geo::label(v.country), endpoint = %url, "audit export address refused by the policy; never dialled");
    }
    Ok(judged.allowed.into_iter().map(|(a, _)| a).collect())
}

/// The files of the trail at `path` waiting for the store, in chain order
/// (a segment before its checkpoint file), with their sizes.
///
/// # Errors
/// The directory cannot be listed.
pub fn pending(path: &Path, acked: &HashSet<String>) -> std::io::Result<Vec<(String, u64)>> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let segment = name.strip_suffix(".checkpoints").unwrap_or(&name);
        if segment_seq(segment, &stem, &ext).is_none() || acked.contains(&name) {
            continue;
        }
        out.push((name, entry.metadata()?.len()));
    }
    out.sort();
    Ok(out)
}

/// Reads the acknowledgement log (absent: nothing acknowledged).
fn read_acks(path: &Path) -> HashSet<String> {
    match std::fs::read_to_string(ack_path(path)) {
        Ok(text) => text.lines().map(str::to_owned).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashSet::new(),
        Err(e) => {
            tracing::error!(path = %ack_path(path).display(), error = %e, "cannot read the audit export log: every closed segment will be uploaded again");
            HashSet::new()
        }
    }
}

/// Appends `name` to the acknowledgement log and syncs it.
fn ack(path: &Path, name: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o600)
        .open(ack_path(path))?;
    // A line cut short by a crash is ended first, so that it never merges
    // with this one (its file is then uploaded again: same key).
    let len = f.metadata()?.len();
    let mut last = [b'\n'];
    if len > 0 {
        use std::os::unix::fs::FileExt;
        f.read_exact_at(&mut last, len - 1)?;
    }
    let line = if last[0] == b'\n' {
        format!("{name}\n")
    } else {
        format!("\n{name}\n")
    };
    f.write_all(line.as_bytes())?;
    f.sync_data()
}

/// Runs the exporter until the runtime ends: scans, uploads, backs off.
pub async fn run(shared: Shared, sink: Option<AuditSink>) {
    let snap = shared.load_full();
    let Some(spec) = snap.config.audit.export.clone() else {
        return;
    };
    let mut path = snap.config.audit.path.clone();
    let origin = if snap.config.audit.origin.is_empty() {
        host_name()
    } else {
        snap.config.audit.origin.clone()
    };
    let creds = match credentials(&spec) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "audit export stopped");
            return;
        }
    };
    drop(snap);
    let mut acked = read_acks(&path);
    let mut backoff = POLL;
    let mut full = false;
    loop {
        let snap = shared.load_full();
        if snap.config.audit.path != path {
            // `[audit] path` changed by a reload: the spool is the new
            // directory.
            path.clone_from(&snap.config.audit.path);
            acked = read_acks(&path);
        }
        let metrics = snap.evidence.metrics.clone();
        let files = pending(&path, &acked).unwrap_or_else(|e| {
            tracing::error!(path = %path.display(), error = %e, "cannot list the audit directory for export");
            Vec::new()
        });
        let mut depth: u64 = files.iter().map(|(_, n)| n).sum();
        let spool = spec.spool_max;
        let set_depth = |depth: u64, full: &mut bool| {
            metrics
                .export_spool_bytes
                .set(i64::try_from(depth).unwrap_or(i64::MAX));
            let over = depth > spool;
            if over != *full {
                *full = over;
                if over {
                    tracing::error!(
                        bytes = depth,
                        spool_max = spool,
                        "audit export spool is full"
                    );
                } else {
                    tracing::warn!(bytes = depth, "audit export spool below spool_max again");
                }
                if let Some(s) = &sink {
                    s.set_spool_full(over && spec.fail_closed);
                }
            }
        };
        set_depth(depth, &mut full);
        let mut failed = false;
        for (name, size) in files {
            let result = upload(&spec, &creds, &snap, &origin, &path, &name).await;
            match result {
                Ok(()) => {
                    if let Err(e) = ack(&path, &name) {
                        tracing::error!(path = %ack_path(&path).display(), error = %e, "cannot record an audit export acknowledgement");
                    }
                    acked.insert(name.clone());
                    metrics.export_uploads.inc();
                    depth = depth.saturating_sub(size);
                    set_depth(depth, &mut full);
                    tracing::info!(file = name, "audit file exported");
                }
                Err(e) => {
                    metrics.export_failures.inc();
                    tracing::warn!(file = name, error = %e, retry_in = ?backoff, "audit export failed");
                    failed = true;
                    break;
                }
            }
        }
        drop(snap);
        if failed {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        } else {
            backoff = POLL;
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Uploads file `name` of the trail's directory; `Ok` once the store
/// answered 200.
async fn upload(
    spec: &ExportSpec,
    creds: &Credentials,
    snap: &Snapshot,
    origin: &str,
    path: &Path,
    name: &str,
) -> Result<(), String> {
    let file = path.with_file_name(name);
    let body = std::fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let endpoint = url::Url::parse(&spec.endpoint.url).map_err(|e| e.to_string())?;
    let bucket = Bucket::new(
        endpoint,
        UrlStyle::Path,
        spec.bucket.clone(),
        spec.region.clone(),
    )
    .map_err(|e| format!("[audit.export] bucket: {e}"))?;
    let key = object_key(&spec.prefix, origin, name);
    let mut action = bucket.put_object(Some(creds), &key);
    let mut extra: Vec<(&'static str, String)> = Vec::new();
    if let Some((mode, retain)) = spec.object_lock {
        let until = crate::audit::format_time(SystemTime::now() + retain);
        use base64::Engine as _;
        use sha2::Digest as _;
        let sum = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&body));
        extra.push(("x-amz-object-lock-mode", mode.as_str().to_owned()));
        extra.push(("x-amz-object-lock-retain-until-date", until));
        extra.push(("x-amz-sdk-checksum-algorithm", "SHA256".to_owned()));
        extra.push(("x-amz-checksum-sha256", sum));
    }
    for (k, v) in &extra {
        action.headers_mut().insert(*k, v.clone());
    }
    let url = action.sign(Duration::from_secs(300));
    let (status, answer) = request(spec, snap, http::Method::PUT, &url, &extra, body).await?;
    if status == http::StatusCode::OK {
        Ok(())
    } else {
        Err(format!("the store answered {status}: {}", snippet(&answer)))
    }
}

fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(300).collect()
}

/// Sends one request to the signed `url` through a judged address of the
/// endpoint (the first that answers): the status and the body.
async fn request(
    spec: &ExportSpec,
    snap: &Snapshot,
    method: http::Method,
    url: &url::Url,
    extra: &[(&'static str, String)],
    body: Vec<u8>,
) -> Result<(http::StatusCode, Bytes), String> {
    let addrs = preflight(spec, snap).await.map_err(|e| e.to_string())?;
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => return Err("signed URL has no host".to_owned()),
    };
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let body = Bytes::from(body);
    let mut last = String::from("no address");
    for addr in addrs {
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(&target)
            .header(http::header::HOST, &host)
            .header(http::header::CONTENT_LENGTH, body.len());
        for (k, v) in extra {
            req = req.header(*k, v);
        }
        let req = req
            .body(Full::new(body.clone()))
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(TIMEOUT, send(spec, addr, req)).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(e)) => last = e,
            Err(_) => last = format!("{addr}: timed out after {TIMEOUT:?}"),
        }
    }
    Err(last)
}

/// The object key of file `name`: `<prefix><origin>/<name>`.
pub fn object_key(prefix: &str, origin: &str, name: &str) -> String {
    format!("{prefix}{origin}/{name}")
}

/// Dials exactly `addr` (TLS for `https://`), sends `req`: the answer.
async fn send(
    spec: &ExportSpec,
    addr: SocketAddr,
    req: http::Request<Full<Bytes>>,
) -> Result<(http::StatusCode, Bytes), String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    if spec.endpoint.https {
        let config = crate::upstream::client_config(None).map_err(|e| e.to_string())?;
        let name = match &spec.endpoint.host {
            UpstreamHost::Name(n) => rustls::pki_types::ServerName::try_from(n.clone())
                .map_err(|e| format!("{}: {e}", spec.endpoint.url))?,
            UpstreamHost::Ip(ip) => rustls::pki_types::ServerName::IpAddress((*ip).into()),
        };
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
        exchange(addr, tls, req).await
    } else {
        exchange(addr, tcp, req).await
    }
}

async fn exchange<T>(
    addr: SocketAddr,
    io: T,
    req: http::Request<Full<Bytes>>,
) -> Result<(http::StatusCode, Bytes), String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("handshake with {addr}: {e}"))?;
    let task = tokio::spawn(conn);
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .map_err(|e| format!("{addr}: reading the answer: {e}"))?;
    task.abort();
    Ok((status, body))
}

/// Downloads every object under `source` (`s3://bucket/prefix`) through
/// the export endpoint of `spec` into `dir`, as `dir/<origin>/<name>` for
/// each key `<prefix><origin>/<name>` (other keys are skipped); returns
/// the origins, sorted.
///
/// # Errors
/// A source that is not `s3://bucket[/prefix]`, a refused endpoint, a
/// failed request or answer, a file that cannot be written.
pub async fn download(
    spec: &ExportSpec,
    snap: &Snapshot,
    source: &str,
    dir: &Path,
) -> Result<Vec<String>, String> {
    let rest = source
        .strip_prefix("s3://")
        .ok_or_else(|| format!("{source}: not an s3://bucket/prefix source"))?;
    let (bucket_name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket_name.is_empty() {
        return Err(format!("{source}: no bucket"));
    }
    let endpoint = url::Url::parse(&spec.endpoint.url).map_err(|e| e.to_string())?;
    let bucket = Bucket::new(
        endpoint,
        UrlStyle::Path,
        bucket_name.to_owned(),
        spec.region.clone(),
    )
    .map_err(|e| format!("{source}: {e}"))?;
    let creds = credentials(spec).map_err(|e| e.to_string())?;
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut list = bucket.list_objects_v2(Some(&creds));
        list.with_prefix(prefix);
        if let Some(t) = &token {
            list.with_continuation_token(t.clone());
        }
        let url = list.sign(Duration::from_secs(300));
        let (status, body) = request(spec, snap, http::Method::GET, &url, &[], Vec::new()).await?;
        if status != http::StatusCode::OK {
            return Err(format!(
                "listing {source}: the store answered {status}: {}",
                snippet(&body)
            ));
        }
        let text = String::from_utf8_lossy(&body);
        let page = rusty_s3::actions::ListObjectsV2::parse_response(&text)
            .map_err(|e| format!("listing {source}: {e}"))?;
        keys.extend(page.contents.into_iter().map(|c| c.key));
        match page.next_continuation_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    let mut origins = std::collections::BTreeSet::new();
    for key in keys {
        let Some((origin, name)) = key.strip_prefix(prefix).and_then(|r| r.split_once('/')) else {
            continue;
        };
        if !safe_component(origin) || !safe_component(name) {
            continue;
        }
        let url = bucket
            .get_object(Some(&creds), &key)
            .sign(Duration::from_secs(300));
        let (status, body) = request(spec, snap, http::Method::GET, &url, &[], Vec::new()).await?;
        if status != http::StatusCode::OK {
            return Err(format!(
                "s3://{bucket_name}/{key}: the store answered {status}: {}",
                snippet(&body)
            ));
        }
        let to = dir.join(origin);
        std::fs::create_dir_all(&to).map_err(|e| format!("{}: {e}", to.display()))?;
        std::fs::write(to.join(name), &body)
            .map_err(|e| format!("{}: {e}", to.join(name).display()))?;
        origins.insert(origin.to_owned());
    }
    Ok(origins.into_iter().collect())
}

/// A file or directory name that stays where it is put: not empty, no
/// `/`, not `.` or `..`, no control characters.
fn safe_component(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spool is the closed segments and their checkpoint files not in
    /// the acknowledgement log, in name order; the current file, its
    /// checkpoints, the log itself and other stems are not part of it. An
    /// acknowledgement after a line cut short by a crash is still read.
    #[test]
    fn pending_lists_closed_files_not_acknowledged_in_chain_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let files = [
            ("audit-00000002-20261206T023100Z.jsonl", 3),
            ("audit-00000001-20261206T023000Z.jsonl.checkpoints", 5),
            ("audit-00000001-20261206T023000Z.jsonl", 7),
            ("audit-00000002-20261206T023100Z.jsonl.checkpoints", 11),
            ("audit.jsonl", 13),
            ("audit.jsonl.checkpoints", 17),
            ("audit.jsonl.exported", 19),
            ("other-00000001-20261206T023000Z.jsonl", 23),
            ("audit-1-20261206T023000Z.jsonl", 29),
        ];
        for (name, size) in files {
            std::fs::write(dir.path().join(name), vec![b'x'; size]).unwrap();
        }
        let acked = HashSet::from(["audit-00000001-20261206T023000Z.jsonl".to_owned()]);
        assert_eq!(
            pending(&path, &acked).unwrap(),
            [
                (
                    "audit-00000001-20261206T023000Z.jsonl.checkpoints".to_owned(),
                    5
                ),
                ("audit-00000002-20261206T023100Z.jsonl".to_owned(), 3),
                (
                    "audit-00000002-20261206T023100Z.jsonl.checkpoints".to_owned(),
                    11
                ),
            ]
        );
        ack(&path, "audit-00000002-20261206T023100Z.jsonl").unwrap();
        let acked = read_acks(&path);
        assert!(acked.contains("audit-00000002-20261206T023100Z.jsonl"));
        let names: Vec<String> = pending(&path, &acked)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            [
                "audit-00000001-20261206T023000Z.jsonl",
                "audit-00000001-20261206T023000Z.jsonl.checkpoints",
                "audit-00000002-20261206T023100Z.jsonl.checkpoints",
            ]
        );
    }

    /// A key read from the bucket never names a file outside the scratch
    /// directory it is downloaded into.
    #[test]
    fn keys_from_the_bucket_cannot_leave_the_scratch_directory() {
        for bad in ["", ".", "..", "a/b", "/", "a\nb", "\0"] {
            assert!(!safe_component(bad), "{bad:?}");
        }
        for good in [
            "paris-1",
            "audit-00000001-20261206T023000Z.jsonl",
            "..a",
            "a..",
        ] {
            assert!(safe_component(good), "{good:?}");
        }
        assert_eq!(object_key("audit/", "paris-1", "f"), "audit/paris-1/f");
    }
}
