//! Reload: what sets it off (SIGHUP, a replaced GeoIP database, a replaced
//! TLS certificate or key, a replaced or edited identities or grants
//! file), what it may change, and what it says.
//!
//! Every trigger runs the same [`reload`]: read the config, check that no
//! key read only at start changed ([`StartOnly`]), build a whole new
//! snapshot, reopen the audit file when the trigger or `[audit] path` asks
//! for it, then swap — or change nothing and say why. A key read only at
//! start is never ignored: a file changing one is refused, naming the key
//! and both values, whatever the trigger. The log line of an applied
//! reload names what changed and the policy version before and after; a
//! reload that changes the version writes one policy change record to the
//! audit trail before the new snapshot serves anything. Messages are plain
//! text: problems are listed on one line, separated by `; `.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::audit::{AuditRecord, PolicyChange};
use crate::config::{Config, ConfigError};
use crate::snapshot::{DatabaseBuild, Evidence, Shared, Snapshot, canonical};

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP: also reopens the audit file (log rotation).
    Signal,
    /// `[geoip] watch`: the country or operator database was replaced.
    DatabaseWatch,
    /// `[server.tls] watch`: a certificate, key or client CA was replaced.
    TlsWatch,
    /// `[identities] watch` or `[grants] watch`: the identities or grants
    /// file was replaced or edited.
    AccessWatch,
}

impl Trigger {
    /// As logged (`trigger` field).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Signal => "SIGHUP",
            Self::DatabaseWatch => "database watch",
            Self::TlsWatch => "TLS watch",
            Self::AccessWatch => "identities or grants watch",
        }
    }

    /// Whether the audit file is reopened even at an unchanged path.
    const fn reopens_audit(self) -> bool {
        matches!(self, Self::Signal)
    }
}

/// The keys a reload cannot change, because they are read once at start:
/// sockets are bound, and the audit writer and exporter started (or not).
/// Every other key is applied by a reload, whatever its trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartOnly(Vec<(&'static str, String)>);

impl StartOnly {
    /// The start-only keys of `c`, each with its value as text.
    pub fn of(c: &Config) -> Self {
        let addrs = |a: &[std::net::SocketAddr]| {
            if a.is_empty() {
                "none".to_owned()
            } else {
                a.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or("none".to_owned(), |p| p.display().to_string())
        };
        let secs = |d: Duration| format!("{}s", d.as_secs_f64());
        let a = &c.audit;
        let mut keys = vec![
            ("[server] listen", addrs(&c.server.listen)),
            ("[server] tls_listen", addrs(&c.server.tls_listen)),
            (
                "[admin] listen",
                c.admin_listen.map_or("none".to_owned(), |a| a.to_string()),
            ),
            (
                "[server] max_connections",
                c.server.max_connections.to_string(),
            ),
            ("[audit] enabled", a.enabled.to_string()),
            ("[audit] queue", a.queue.to_string()),
            ("[audit] signing_key", path(&a.signing_key)),
            ("[audit] origin", format!("\"{}\"", a.origin)),
            ("[audit] checkpoint_every", secs(a.checkpoint_every)),
            (
                "[audit] rotate_size",
                a.rotate_size.map_or("0".to_owned(), |n| n.to_string()),
            ),
            (
                "[audit] rotate_every",
                secs(a.rotate_every.unwrap_or_default()),
            ),
        ];
        keys.push((
            "[audit.export]",
            if a.export.is_some() { "on" } else { "off" }.to_owned(),
        ));
        match &a.export {
            None => {}
            Some(e) => keys.extend([
                ("[audit.export] endpoint", e.endpoint.url.clone()),
                ("[audit.export] bucket", e.bucket.clone()),
                ("[audit.export] prefix", format!("\"{}\"", e.prefix)),
                ("[audit.export] region", e.region.clone()),
                ("[audit.export] access_key_id", e.access_key_id.clone()),
                (
                    "[audit.export] secret_access_key_file",
                    e.secret_access_key_file.display().to_string(),
                ),
                (
                    "[audit.export] object_lock_mode and retain",
                    e.object_lock.map_or("none".to_owned(), |(m, d)| {
                        format!("{} {}", m.as_str(), secs(d))
                    }),
                ),
                ("[audit.export] spool_max", e.spool_max.to_string()),
                (
                    "[audit.export] on_error",
                    if e.fail_closed {
                        "fail-closed"
                    } else {
                        "continue"
                    }
                    .to_owned(),
                ),
            ]),
        }
        Self(keys)
    }

    /// One message per start-only key whose value differs in `now`.
    pub fn refused(&self, now: &Self) -> Vec<String> {
        let value = |keys: &[(&'static str, String)], key: &str| {
            keys.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
        };
        let mut names: Vec<&'static str> = self.0.iter().map(|(k, _)| *k).collect();
        for (k, _) in &now.0 {
            if !names.contains(k) {
                names.push(k);
            }
        }
        let mut out = Vec::new();
        for name in names {
            let (was, is) = (value(&self.0, name), value(&now.0, name));
            if was != is {
                let show = |v: Option<String>| v.unwrap_or_else(|| "none".to_owned());
                out.push(format!(
                    "{name} (running with {}, file has {}) cannot change on reload (read only at start); restart to apply",
                    show(was),
                    show(is)
                ));
            }
        }
        out
    }
}

/// Builds a whole new snapshot from the file at `path` and swaps it in only
/// if everything compiled, no start-only key changed, and the audit file
/// could be (re)opened; otherwise changes nothing and logs every problem.
///
/// The audit file is reopened at the new `[audit] path` when a valid file
/// changes it, whatever the trigger, and at the path in force on SIGHUP
/// (log rotation); a reopen that fails refuses the whole reload. A refused
/// SIGHUP reopens the audit file only if it was renamed away (so
/// logrotate's signal is not lost to an unrelated error in the config),
/// and says so in the refusal.
pub async fn reload(
    path: &Path,
    shared: &Shared,
    evidence: &Evidence,
    fixed: &StartOnly,
    trigger: Trigger,
) {
    let (built, mut problems) = prepare(path, evidence, fixed);
    let current = shared.load_full();
    let mut reopened_rotated = false;
    if let Some(sink) = &evidence.audit {
        match &built {
            Some(snap) if problems.is_empty() => {
                let target = &snap.config.audit.path;
                if (trigger.reopens_audit() || *target != current.config.audit.path)
                    && let Err(e) = sink.reopen(target.clone())
                {
                    problems.push(format!(
                        "cannot reopen the audit trail; records keep going to the current file: {}",
                        with_causes(&e)
                    ));
                }
            }
            _ if trigger.reopens_audit() && !sink.is_open_at(&current.config.audit.path) => {
                match sink.reopen(current.config.audit.path.clone()) {
                    Ok(()) => reopened_rotated = true,
                    Err(e) => tracing::error!(
                        error = %with_causes(&e),
                        "audit file not reopened; records keep going to the current file"
                    ),
                }
            }
            _ => {}
        }
    }
    match built {
        Some(snap) if problems.is_empty() => apply(path, shared, &current, snap, trigger).await,
        _ => {
            evidence.metrics.reload(false);
            let audit = if reopened_rotated {
                "; the audit file had been renamed, so it was reopened at the path in force"
            } else {
                ""
            };
            tracing::error!(
                config = %path.display(),
                trigger = trigger.as_str(),
                problems = %problems.join("; "),
                "reload refused; the previous configuration keeps serving{audit}"
            );
        }
    }
}

/// Reads the file and builds its snapshot, collecting every problem: the
/// file's own (each at its place), the start-only keys it changes, and
/// what the snapshot could not load.
fn prepare(path: &Path, evidence: &Evidence, fixed: &StartOnly) -> (Option<Snapshot>, Vec<String>) {
    match Config::load(path) {
        Err(ConfigError::Invalid { path, problems }) => (
            None,
            problems
                .iter()
                .map(|p| format!("{}:{}:{}: {}", path.display(), p.line, p.column, p.message))
                .collect(),
        ),
        Err(e @ ConfigError::Read { .. }) => (None, vec![with_causes(&e)]),
        Ok(config) => {
            let mut problems = fixed.refused(&StartOnly::of(&config));
            // Built even when refused already, to name every problem at
            // once; then against throwaway sinks, so that a refused file's
            // routes leave no metric series behind.
            let detached;
            let sinks = if problems.is_empty() {
                evidence
            } else {
                detached = Evidence::detached();
                &detached
            };
            match Snapshot::build(config, sinks) {
                Ok(snap) => (Some(snap), problems),
                Err(e) => {
                    problems.extend(e.problems());
                    (None, problems)
                }
            }
        }
    }
}

/// Swaps `snap` in after `current`: the policy change record first (when
/// the version changed), then the metrics, the log line, the swap.
async fn apply(path: &Path, shared: &Shared, current: &Snapshot, snap: Snapshot, trigger: Trigger) {
    let before = build_of(current);
    let after = build_of(&snap);
    let (rules_before, rules_after) = (
        canonical(
            &current.config,
            &current.access,
            &before.0,
            before.1.as_ref(),
        ),
        canonical(&snap.config, &snap.access, &after.0, after.1.as_ref()),
    );
    let mut changes = rule_changes(&rules_before, &rules_after);
    let settings = settings_changed(&current.config, &snap.config);
    if snap.policy_version != current.policy_version
        && let Some(sink) = &snap.evidence.audit
    {
        let record = AuditRecord::policy_changed(
            crate::proxy::respond::RequestId::next().to_string(),
            snap.policy_version.clone(),
            PolicyChange {
                previous: current.policy_version.clone(),
                changes: changes.clone(),
                rules: rules_after.lines().map(str::to_owned).collect(),
            },
        );
        if !sink.write(record).await {
            tracing::error!("the policy change record could not be written to the audit trail");
        }
    }
    if changes.is_empty() {
        changes.push("none".to_owned());
    }
    snap.publish();
    // In force before it is announced: whoever acts on the "reloaded" line
    // (an operator, a deployment script, a test) meets the new snapshot.
    let snap = Arc::new(snap);
    shared.store(Arc::clone(&snap));
    tracing::info!(
        config = %path.display(),
        trigger = trigger.as_str(),
        policy_version_before = %current.policy_version,
        policy_version = %snap.policy_version,
        rules_changed = %changes.join("; "),
        settings_changed = %if settings.is_empty() { "none".to_owned() } else { settings.join(", ") },
        "reloaded"
    );
    snap.evidence.metrics.reload(true);
}

/// The database builds a snapshot was made with.
fn build_of(snap: &Snapshot) -> (DatabaseBuild, Option<DatabaseBuild>) {
    (
        DatabaseBuild::of(&snap.geo),
        snap.operators
            .as_ref()
            .map(|o| DatabaseBuild::of(o.database())),
    )
}

/// The lines of two canonical rule texts, keyed by route, that differ:
/// `key: old -> new`, `(none)` for a side without the line.
pub fn rule_changes(before: &str, after: &str) -> Vec<String> {
    let ((old, o), (new, n)) = (keyed(before), keyed(after));
    let find = |list: &[(String, String)], key: &str| {
        list.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    };
    // `route[a]`, `identity[a]`, `grant[a]`: (kind, name) of an entry.
    let route = |key: &str| {
        ["route", "identity", "grant"].into_iter().find_map(|kind| {
            key.strip_prefix(kind)
                .and_then(|k| k.strip_prefix('['))
                .and_then(|k| k.strip_suffix(']'))
                .map(|name| format!("{kind} {name}"))
        })
    };
    let mut out = Vec::new();
    for (key, value) in &new {
        match find(&old, key) {
            Some(v) if v == *value => {}
            None if route(key).is_some() => {
                out.push(format!("{} added", route(key).unwrap_or_default()));
            }
            Some(v) if key.starts_with("identity[") || key.starts_with("grant[") => {
                out.push(format!(
                    "{} changed: {v} -> {value}",
                    route(key).unwrap_or_default()
                ));
            }
            v => out.push(format!(
                "{key}: {} -> {}",
                v.unwrap_or_else(|| "(none)".to_owned()),
                value
            )),
        }
    }
    for (key, value) in &old {
        if find(&new, key).is_some() {
            continue;
        }
        match route(key) {
            Some(name) => out.push(format!("{name} removed")),
            None => out.push(format!("{key}: {value} -> (none)")),
        }
    }
    if o != n && o.iter().all(|r| n.contains(r)) && n.iter().all(|r| o.contains(r)) {
        out.push(format!("route order: {} -> {}", o.join(","), n.join(",")));
    }
    out
}

/// `(key, value)` per canonical line, a route's lines keyed
/// `route[<name>].<key>`; and the route names in order.
fn keyed(text: &str) -> (Vec<(String, String)>, Vec<String>) {
    let mut route = String::new();
    let mut out = Vec::new();
    let mut order = Vec::new();
    for line in text.lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        if key == "route" {
            route = value.to_owned();
            out.push((format!("route[{route}]"), "present".to_owned()));
            order.push(route.clone());
        } else if key == "identity" || key == "grant" {
            // `<id as a JSON string> <fields>`: keyed by the id.
            let mut ids = serde_json::Deserializer::from_str(value).into_iter::<String>();
            let id = ids.next().and_then(Result::ok).unwrap_or_default();
            let rest = value.get(ids.byte_offset()..).unwrap_or("").trim_start();
            out.push((format!("{key}[{id}]"), rest.to_owned()));
        } else if let Some(rest) = key.strip_prefix("route.") {
            out.push((format!("route[{route}].{rest}"), value.to_owned()));
        } else {
            out.push((key.to_owned(), value.to_owned()));
        }
    }
    (out, order)
}

/// The keys outside the rules that a reload applies and that changed.
fn settings_changed(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut key = |name: &str, changed: bool| {
        if changed {
            out.push(name.to_owned());
        }
    };
    let (s, t) = (&old.server, &new.server);
    key(
        "[server] header_read_timeout",
        s.header_read_timeout != t.header_read_timeout,
    );
    key("[server] idle_timeout", s.idle_timeout != t.idle_timeout);
    key(
        "[server] max_header_bytes",
        s.max_header_bytes != t.max_header_bytes,
    );
    key("[server] max_headers", s.max_headers != t.max_headers);
    key(
        "[server] shutdown_grace",
        s.shutdown_grace != t.shutdown_grace,
    );
    key("[server.tls]", s.tls != t.tls);
    key("[resolver]", old.resolver != new.resolver);
    key("[geoip] database", old.geoip_database != new.geoip_database);
    key(
        "[geoip] operator_database",
        old.operator_database != new.operator_database,
    );
    key("[geoip] watch", old.geoip_watch != new.geoip_watch);
    key("[geoip] max_age", old.geoip_max_age != new.geoip_max_age);
    key(
        "[identities] watch",
        old.access.identities.as_ref().map(|i| i.watch)
            != new.access.identities.as_ref().map(|i| i.watch),
    );
    key(
        "[grants] watch",
        old.access.grants.as_ref().map(|g| g.watch) != new.access.grants.as_ref().map(|g| g.watch),
    );
    let (a, b) = (&old.audit, &new.audit);
    key("[audit] path", a.path != b.path);
    key(
        "[audit] purpose_header",
        a.purpose_header != b.purpose_header,
    );
    key(
        "[audit] require_purpose",
        a.require_purpose != b.require_purpose,
    );
    key("[audit] object_key", a.object_key != b.object_key);
    key("[audit] on_error", a.fail_closed != b.fail_closed);
    key(
        "[audit] protocol_error_records or protocol_error_window",
        a.protocol_error_records != b.protocol_error_records
            || a.protocol_error_window != b.protocol_error_window,
    );
    for r in &new.routes {
        if let Some(o) = old.routes.iter().find(|o| o.name == r.name) {
            key(
                &format!("route {} preserve_host, timeouts or tls", r.name),
                o.preserve_host != r.preserve_host
                    || o.connect_timeout != r.connect_timeout
                    || o.response_timeout != r.response_timeout
                    || o.tls_ca != r.tls_ca,
            );
        }
    }
    out
}

/// `error: cause: cause`, on one line.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text.replace('\n', "; ")
}

/// SIGUSR1: reopens the audit file at the path in force (after logrotate
/// renamed it) and nothing else: edits pending in the config file stay
/// pending until SIGHUP.
pub async fn reopen_audit(shared: &Shared, evidence: &Evidence) {
    tracing::info!("SIGUSR1: reopening the audit file; configuration left as it is");
    if let Some(sink) = &evidence.audit
        && let Err(e) = sink.reopen(shared.load().config.audit.path.clone())
    {
        tracing::error!(
            error = %with_causes(&e),
            "audit file not reopened; records keep going to the current file"
        );
    }
}

/// Files watched for a reload, and how often: what `select` names in the
/// config in force, or `None` when nothing is watched.
type Watched = Option<(Duration, Vec<PathBuf>)>;

/// `[geoip] watch = true`: the database file.
pub fn database_files(c: &Config) -> Watched {
    // The country database, then the operator database when configured.
    let mut paths = vec![c.geoip_database.clone()];
    paths.extend(c.operator_database.clone());
    c.geoip_watch.map(|interval| (interval, paths))
}

/// `[server.tls] watch = true`: every certificate, key and client CA file.
pub fn certificate_files(c: &Config) -> Watched {
    let tls = c.server.tls.as_ref()?;
    let mut files = vec![tls.cert.clone(), tls.key.clone()];
    for (_, cert, key) in &tls.sni {
        files.push(cert.clone());
        files.push(key.clone());
    }
    files.extend(tls.client_ca.clone());
    tls.watch.map(|interval| (interval, files))
}

/// `[identities] watch = true` and `[grants] watch = true`: each watched
/// file, polled at the shorter of the two intervals.
pub fn access_files(c: &Config) -> Watched {
    let ids = c.access.identities.as_ref();
    let grants = c.access.grants.as_ref();
    let watched: Vec<(Duration, PathBuf)> = ids
        .and_then(|i| i.watch.map(|w| (w, i.file.clone())))
        .into_iter()
        .chain(grants.and_then(|g| g.watch.map(|w| (w, g.file.clone()))))
        .collect();
    let interval = watched.iter().map(|(w, _)| *w).min()?;
    Some((interval, watched.into_iter().map(|(_, p)| p).collect()))
}

/// Device, inode, size and modification time of each file: what a
/// replacement changes (`None`: missing).
type Stamps = Vec<(PathBuf, Option<(u64, u64, u64, i64, i64)>)>;

fn stamps(paths: Vec<PathBuf>) -> Stamps {
    use std::os::unix::fs::MetadataExt;
    paths
        .into_iter()
        .map(|p| {
            let s = std::fs::metadata(&p)
                .ok()
                .map(|m| (m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()));
            (p, s)
        })
        .collect()
}

/// Starts polling the files `select` names in the config in force, sending
/// `trigger` when they were replaced. Their first stamps are taken now,
/// before the listeners accept, so that a file replaced after that is
/// always seen as replaced.
pub fn spawn_watch(
    shared: &Shared,
    tx: tokio::sync::mpsc::Sender<Trigger>,
    trigger: Trigger,
    select: fn(&Config) -> Watched,
) -> tokio::task::JoinHandle<()> {
    let first = select(&shared.load().config).map(|(_, paths)| stamps(paths));
    tokio::spawn(watch_files(shared.clone(), tx, trigger, select, first))
}

/// Polls the files `select` names and asks for a reload when one was
/// replaced (a new inode, size or modification time — what geoipupdate's
/// write-then-rename, certbot's renewal or a Kubernetes Secret update
/// produce) and then left alone for one interval, so that a certificate
/// and its key renamed one after the other reload once, together. A file
/// missing for a moment is not a change.
async fn watch_files(
    shared: Shared,
    tx: tokio::sync::mpsc::Sender<Trigger>,
    trigger: Trigger,
    select: fn(&Config) -> Watched,
    first: Option<Stamps>,
) {
    let what = match trigger {
        Trigger::TlsWatch => "TLS certificate or key",
        Trigger::AccessWatch => "identities or grants file",
        Trigger::DatabaseWatch | Trigger::Signal => "GeoIP database",
    };
    // What the snapshot in force was built from, and the previous poll.
    let mut applied: Option<Stamps> = first.clone();
    let mut last: Option<Stamps> = first;
    loop {
        let Some((interval, paths)) = select(&shared.load().config) else {
            (applied, last) = (None, None);
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let now = stamps(paths);
        let same_files = |a: &Stamps| a.iter().map(|f| &f.0).eq(now.iter().map(|f| &f.0));
        match &applied {
            Some(a) if same_files(a) => {
                let settled = last.as_ref() == Some(&now);
                if settled && *a != now && now.iter().all(|f| f.1.is_some()) {
                    for ((p, s0), (_, s1)) in a.iter().zip(&now) {
                        if s0 != s1 {
                            tracing::info!(file = %p.display(), "{what} replaced; reloading");
                        }
                    }
                    let _ = tx.send(trigger).await;
                    applied = Some(now.clone());
                }
            }
            // Watching starts, or the config now names other files.
            _ => applied = Some(now.clone()),
        }
        last = Some(now);
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests;
