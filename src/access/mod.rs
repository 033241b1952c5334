//! Governed access (SPEC §9, HDS activity 5): the identity registry and the
//! signed, time-boxed grants that are the only way a client refused by
//! country gets in (enforce mode).
//!
//! - [`spec`]: `[identities]` and `[grants]` of the main config;
//! - [`files`]: the identities and grants files, `file:line:col` errors;
//! - [`canonical`]: the bytes approvers sign;
//! - [`keys`]: Ed25519 keys (ring), their text forms;
//! - [`grant`]: whether a grant is valid.
//!
//! [`load`] compiles both files into an [`Access`] held by the snapshot, so a
//! reload with an invalid file is refused whole and the old state keeps
//! serving. [`Access::judge`] is the hot-path call: one hash lookup for the
//! identity, a scan of the valid grants only when the client was refused by
//! country; no lock, no allocation. It never touches the upstream side:
//! a grant admits a client, never an upstream address.

pub mod canonical;
pub mod files;
pub mod grant;
pub mod keys;
pub mod review;
pub mod sign;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus::IntCounter;

pub use crate::config::access::{
    self as spec, AccessSpec, GrantsSpec, IdentitiesSpec, OnOverdue, RawGrants, RawIdentities,
    plain,
};
pub use crate::refusal::AccessRefusal;

use crate::config::{ConfigError, RouteSpec};
use crate::geo::{Country, CountrySet};
use crate::metrics::Metrics;

/// How a grant's identity must be proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// The verified mTLS client certificate subject (proven to the proxy).
    Mtls,
    /// The SigV4 access key id (a claim only the storage checks).
    Sigv4,
}

impl Proof {
    /// The wire value (grants file, canonical bytes, reports).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Mtls => "mtls",
            Self::Sigv4 => "sigv4",
        }
    }
}

/// What [`Access::judge`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    /// Nothing to add: the policy's verdict stands.
    Pass,
    /// Refused by the registry.
    Refused(AccessRefusal),
    /// Refused by country, admitted by the valid grant at this index.
    Granted(usize),
}

/// The policy's decision on the client, as far as access cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed or flagged: the request goes on unless the registry refuses.
    Passes,
    /// Blocked with `country_not_allowed`: only a grant can admit it.
    CountryNotAllowed,
    /// Blocked for another reason: nothing here changes that.
    Blocked,
}

/// The facts of one request that access is judged on.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The identity the audit record names (key id, else mTLS subject, else
    /// `anonymous`).
    pub identity: &'a str,
    /// The verified mTLS client certificate subject, if any.
    pub mtls_subject: Option<&'a str>,
    /// The chosen route's index in the snapshot.
    pub route: usize,
    /// The request method.
    pub method: &'a str,
    /// The request path as sent.
    pub path: &'a str,
    /// The request's host (`Host` or `:authority`), as sent.
    pub host: &'a str,
    /// The object a copy reads (`x-amz-copy-source` and alike), if any:
    /// its route (`None`: no route reads it) and its path-style path as
    /// sent. A copy reads it, so it must be within every scope the request
    /// is judged on: the identity's routes, the grant's routes and prefix.
    pub copy_source: Option<(Option<usize>, &'a str)>,
    /// Every route a reading of the request leads to (the path as sent and
    /// as a storage may normalise it; the copy source's likewise), `None`
    /// for a reading no route serves: the routing reconciles them into
    /// `route`, but the storage may act on any, so each must be within the
    /// identity's and the grant's routes.
    pub readings: &'a [Option<usize>],
    /// The client's country.
    pub country: Option<Country>,
    /// What the policy decided for the client.
    pub policy: Outcome,
    /// Now, seconds since the epoch.
    pub now: i64,
}

impl Facts<'_> {
    /// Every route the request touches: its own, and its copy source's.
    fn routes(&self) -> impl Iterator<Item = Option<usize>> {
        std::iter::once(Some(self.route))
            .chain(self.copy_source.map(|(r, _)| r))
            .chain(self.readings.iter().copied())
    }
}

#[derive(Debug)]
struct Entry {
    proof: Proof,
    routes: Option<Box<[bool]>>,
    overdue_at: i64,
    flagged: AtomicBool,
}

#[derive(Debug)]
struct Registry {
    require_known: bool,
    on_overdue: OnOverdue,
    index: HashMap<String, usize>,
    entries: Vec<Entry>,
    overdue: IntCounter,
}

/// A valid grant, compiled.
#[derive(Debug)]
pub struct ActiveGrant {
    /// Its id.
    pub id: String,
    identity: String,
    proof: Proof,
    countries: CountrySet,
    routes: Option<Box<[bool]>>,
    methods: Vec<String>,
    path_prefix: String,
    not_before: i64,
    not_after: i64,
    counters: Box<[IntCounter]>,
    activated: AtomicBool,
    expired: AtomicBool,
}

/// One grant of the file and what `check` says of it.
#[derive(Debug, Clone)]
pub struct GrantReport {
    /// The grant as written.
    pub entry: files::GrantEntry,
    /// Why it is invalid; empty when valid.
    pub problems: Vec<grant::Invalid>,
}

impl GrantReport {
    /// `valid`, `expired on …`, `not yet valid (starts …)`, or every
    /// reason it opens nothing, at `now`.
    pub fn status(&self, now: i64) -> String {
        let s = &self.entry.signed;
        let mut why: Vec<String> = self.problems.iter().map(ToString::to_string).collect();
        if now >= s.not_after {
            why.push(format!("expired on {}", canonical::rfc3339(s.not_after)));
        } else if now < s.not_before {
            why.push(format!(
                "not yet valid: starts {}",
                canonical::rfc3339(s.not_before)
            ));
        }
        if why.is_empty() {
            "valid".to_owned()
        } else {
            format!("INVALID: {}", why.join("; "))
        }
    }
}

/// The compiled registry and grants of one snapshot.
#[derive(Debug, Default)]
pub struct Access {
    registry: Option<Registry>,
    grants: Vec<ActiveGrant>,
    /// The registry as read, for `check` and reports.
    pub identities: Vec<files::Identity>,
    /// Every grant of the file with its problems, for `check` and logs.
    pub reports: Vec<GrantReport>,
    /// `[identities] review_every`, seconds.
    pub review_every: i64,
    /// `[server] s3_domains`: `<bucket>.<domain>` is virtual-hosted.
    s3_domains: Vec<String>,
    /// Every bucket the routes name: a host starting with one may be
    /// read as virtual-hosted by the storage.
    buckets: Vec<String>,
    /// Per route, whether it forwards the client's `Host` (then the
    /// storage may read any dotted name as `<bucket>.<its domain>`).
    preserve_host: Vec<bool>,
}

/// Reads and compiles the files `spec` names.
///
/// # Errors
/// [`ConfigError`] naming the file, line and column of every problem: the
/// whole state is refused.
pub fn load(
    spec: &AccessSpec,
    routes: &[RouteSpec],
    s3_domains: &[String],
    metrics: &Metrics,
) -> Result<Access, ConfigError> {
    let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
    let route_set = |list: Option<&[String]>| {
        list.map(|l| {
            names
                .iter()
                .map(|n| l.iter().any(|x| x == n))
                .collect::<Box<[bool]>>()
        })
    };
    let mut access = Access {
        s3_domains: s3_domains.to_vec(),
        buckets: routes.iter().flat_map(|r| r.buckets.clone()).collect(),
        preserve_host: routes.iter().map(|r| r.preserve_host).collect(),
        ..Access::default()
    };
    if let Some(ids) = &spec.identities {
        let text = files::read(&ids.file)?;
        access.identities = files::identities(&ids.file, &text, Some(&names))?;
        access.review_every = i64::try_from(ids.review_every.as_secs()).unwrap_or(i64::MAX);
        let entries = access
            .identities
            .iter()
            .map(|i| Entry {
                proof: i.proof,
                routes: route_set(i.routes.as_deref()),
                overdue_at: i.reviewed.saturating_add(access.review_every),
                flagged: AtomicBool::new(false),
            })
            .collect();
        access.registry = Some(Registry {
            require_known: ids.require_known,
            on_overdue: ids.on_overdue,
            index: access
                .identities
                .iter()
                .enumerate()
                .map(|(n, i)| (i.id.clone(), n))
                .collect(),
            entries,
            overdue: metrics.identity_overdue.clone(),
        });
    }
    if let Some(gs) = &spec.grants {
        let text = files::read(&gs.file)?;
        for entry in files::grants(&gs.file, &text, Some(&names))? {
            let owner = access
                .identities
                .iter()
                .find(|i| i.id == entry.signed.identity)
                .map(|i| i.owner.as_str());
            let problems = grant::problems(&entry, gs, owner);
            if problems.is_empty() {
                let s = &entry.signed;
                let mut countries = CountrySet::new();
                for c in s
                    .from_countries
                    .iter()
                    .filter_map(|c| Country::from_code(c))
                {
                    countries.insert(c);
                }
                access.grants.push(ActiveGrant {
                    id: s.id.clone(),
                    identity: s.identity.clone(),
                    proof: s.proof,
                    countries,
                    routes: route_set((!s.routes.is_empty()).then_some(&s.routes[..])),
                    methods: s.methods.clone(),
                    path_prefix: s.path_prefix.clone(),
                    not_before: s.not_before,
                    not_after: s.not_after,
                    counters: names
                        .iter()
                        .map(|r| {
                            metrics
                                .grant_requests
                                .with_label_values(&[r, s.id.as_str()])
                        })
                        .collect(),
                    activated: AtomicBool::new(false),
                    expired: AtomicBool::new(false),
                });
            }
            access.reports.push(GrantReport { entry, problems });
        }
    }
    Ok(access)
}

/// Unix seconds now: the clock grants and reviews are judged by.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Access {
    /// Logs every invalid grant (at start and after each reload): an
    /// invalid grant opens nothing, never silently.
    pub fn log_invalid(&self, now: i64) {
        for r in &self.reports {
            let s = &r.entry.signed;
            let status = r.status(now);
            if status != "valid" {
                tracing::warn!(grant = %s.id, identity = %s.identity, %status, "grant opens nothing");
            }
            if s.proof == Proof::Sigv4 {
                tracing::warn!(grant = %s.id, identity = %s.identity, "grant proven by sigv4: the key id is a claim only the storage checks");
            }
        }
    }

    /// What each grant's scope admits that its author may not expect,
    /// one warning per line, for `check` and `grants check`.
    pub fn scope_warnings(&self) -> Vec<String> {
        self.reports
            .iter()
            .flat_map(|r| scope_warnings(&r.entry.signed, !self.s3_domains.is_empty()))
            .collect()
    }

    /// Whether a registry or a grant is configured: without either,
    /// [`Access::judge`] always passes.
    pub fn is_active(&self) -> bool {
        self.registry.is_some() || !self.grants.is_empty()
    }

    /// The valid grant at `i` (from [`Judged::Granted`]).
    pub fn grant(&self, i: usize) -> Option<&ActiveGrant> {
        self.grants.get(i)
    }

    /// Judges one request's access. Lock-free and allocation-free (the
    /// once-only activation, expiry and overdue logs aside).
    pub fn judge(&self, f: &Facts<'_>) -> Judged {
        // The policy's block stands first: the registry refuses only what
        // would otherwise go on (passed, or admitted by a grant), so a
        // client outside the area is recorded as blocked for its country.
        if f.policy == Outcome::Blocked {
            return Judged::Pass;
        }
        let registry = self.registry(f);
        if f.policy == Outcome::CountryNotAllowed {
            if registry.is_some() {
                return Judged::Pass;
            }
            for (i, g) in self.grants.iter().enumerate() {
                if g.admits(f)
                    && (g.path_prefix.is_empty()
                        || (self.path_admitted(f, &g.path_prefix)
                            && f.copy_source
                                .is_none_or(|(_, source)| path_within(source, &g.path_prefix))))
                {
                    if let Some(c) = g.counters.get(f.route) {
                        c.inc();
                    }
                    return Judged::Granted(i);
                }
            }
            return Judged::Pass;
        }
        registry.map_or(Judged::Pass, Judged::Refused)
    }

    /// Whether every way the storage may read the request's bucket and
    /// key stays under `prefix`: a host `<bucket>.<domain>` for a domain of
    /// `s3_domains` is read virtual-hosted (`/<bucket><path>`); a host that
    /// starts with a bucket some route names may be read either way, so
    /// both readings must stay under it; any other host, path-style.
    fn path_admitted(&self, f: &Facts<'_>, prefix: &str) -> bool {
        // A prefix scopes objects: a request naming no object (the bucket
        // itself: a listing of every key, or its configuration, such as
        // `?replication` or `?policy`) is outside it, however it is read.
        let name = host_name(f.host);
        for d in &self.s3_domains {
            if let Some(bucket) = name
                .len()
                .checked_sub(d.len() + 1)
                .filter(|&n| n > 0)
                .and_then(|n| name.get(n..).zip(name.get(..n)))
                .filter(|(end, _)| {
                    end.len() > 1 && end[1..].eq_ignore_ascii_case(d) && end.starts_with('.')
                })
                .map(|(_, bucket)| bucket)
            {
                return f.path.len() > 1 && vhost_within(bucket, f.path, prefix);
            }
        }
        // The client's Host reaches the storage: a dotted name that is not
        // a declared domain may be `<bucket>.<a domain the storage serves>`
        // for a bucket no route names, so no prefix can be said to hold.
        // Only a declared domain itself, an IP literal or a single label is
        // read path-style only.
        let forwarded = self.preserve_host.get(f.route).copied().unwrap_or(true);
        if forwarded
            && name.contains('.')
            && !is_ip_literal(name)
            && !self.s3_domains.iter().any(|d| d.eq_ignore_ascii_case(name))
        {
            return false;
        }
        let known = name
            .match_indices('.')
            .map(|(i, _)| &name[..i])
            .chain(std::iter::once(name))
            .find(|b| self.buckets.iter().any(|k| k.eq_ignore_ascii_case(b)));
        names_object(f.path)
            && path_within(f.path, prefix)
            && known.is_none_or(|b| vhost_within(b, f.path, prefix))
    }

    /// The registry's refusal, if any: one hash lookup.
    fn registry(&self, f: &Facts<'_>) -> Option<AccessRefusal> {
        let reg = self.registry.as_ref()?;
        let entry = reg
            .index
            .get(f.identity)
            // A credential the proxy cannot read is never a listed one.
            .filter(|_| f.identity != crate::audit::UNREADABLE)
            .and_then(|&i| reg.entries.get(i))
            // An entry proven by mTLS is this identity only when the
            // verified certificate says so.
            .filter(|e| e.proof == Proof::Sigv4 || f.mtls_subject == Some(f.identity));
        let Some(e) = entry else {
            return reg.require_known.then_some(AccessRefusal::UnknownIdentity);
        };
        if let Some(routes) = &e.routes
            && !f
                .routes()
                .all(|r| r.and_then(|r| routes.get(r)).copied() == Some(true))
        {
            return Some(AccessRefusal::RouteNotGranted);
        }
        if f.now >= e.overdue_at {
            reg.overdue.inc();
            if !e.flagged.swap(true, Ordering::Relaxed) {
                tracing::warn!(identity = f.identity, "identity review overdue");
            }
            if reg.on_overdue == OnOverdue::Refuse {
                return Some(AccessRefusal::ReviewOverdue);
            }
        }
        None
    }
}

impl ActiveGrant {
    /// Whether this grant admits the request: its identity proven as it
    /// says, its countries, routes, methods, path prefix and window.
    fn admits(&self, f: &Facts<'_>) -> bool {
        let who = match self.proof {
            Proof::Mtls => f.mtls_subject,
            Proof::Sigv4 => Some(f.identity).filter(|&i| i != crate::audit::UNREADABLE),
        };
        if who != Some(self.identity.as_str())
            || !f.country.is_some_and(|c| self.countries.contains(c))
            || self.routes.as_ref().is_some_and(|routes| {
                !f.routes()
                    .all(|r| r.and_then(|r| routes.get(r)).copied() == Some(true))
            })
            || (!self.methods.is_empty() && !self.methods.iter().any(|m| m == f.method))
        {
            return false;
        }
        if f.now < self.not_before {
            return false;
        }
        if f.now >= self.not_after {
            if !self.expired.swap(true, Ordering::Relaxed) {
                tracing::info!(grant = %self.id, "grant expired");
            }
            return false;
        }
        if !self.activated.swap(true, Ordering::Relaxed) {
            tracing::info!(grant = %self.id, identity = %self.identity, "grant active");
        }
        true
    }
}

/// The host without port and trailing dot.
fn host_name(host: &str) -> &str {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    };
    name.strip_suffix('.').unwrap_or(name)
}

/// Whether a path-style path names an object: `/bucket/key`, the key not
/// empty (`/bucket` and `/bucket/` name the bucket).
fn names_object(path: &str) -> bool {
    path.strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .is_some_and(|(bucket, key)| !bucket.is_empty() && !key.is_empty())
}

/// Whether a host name is an IPv4 literal or a bracketed IPv6 one (with
/// its port, if any: `[::1]:9000`).
fn is_ip_literal(name: &str) -> bool {
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name
            .strip_prefix('[')
            .and_then(|n| n.split_once(']'))
            .is_some_and(|(ip, port)| {
                ip.parse::<std::net::Ipv6Addr>().is_ok()
                    && (port.is_empty()
                        || port
                            .strip_prefix(':')
                            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit())))
            })
}

/// Whether `/<bucket><path>` is under `prefix` (see [`path_within`]).
fn vhost_within(bucket: &str, path: &str, prefix: &str) -> bool {
    let Some(rest) = prefix.strip_prefix('/').and_then(|p| {
        p.get(..bucket.len())
            .filter(|b| b.eq_ignore_ascii_case(bucket))
            .map(|_| &p[bucket.len()..])
    }) else {
        return false;
    };
    // The prefix names this bucket whole (`/b` or `/b/...`), then the path.
    match rest {
        "" => path_within(path, "/"),
        r if r.starts_with('/') => path_within(path, r),
        _ => false,
    }
}

/// Whether `path` (as sent) is under `prefix` with nothing in it that the
/// storage could read as leaving it: no encoded `/`, `.`, `\` or `%`, no NUL,
/// no `\`, `;`, empty, `.` or `..` segment. Anything else is judged as if
/// the grant did not exist.
pub fn path_within(path: &str, prefix: &str) -> bool {
    if !path.starts_with(prefix) {
        return false;
    }
    let b = path.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'\\' | b';' | 0 => return false,
            b'%' => {
                let hex = b.get(i + 1..i + 3).unwrap_or(b"");
                if [b"2f", b"2e", b"5c", b"25", b"00", b"3b"]
                    .iter()
                    .any(|bad| hex.eq_ignore_ascii_case(*bad))
                    || hex.len() < 2
                {
                    return false;
                }
            }
            _ => {}
        }
    }
    !path.contains("//") && !path.split('/').any(|seg| seg == "." || seg == "..")
}

/// What the scope of grant `s` admits that its author may not expect:
/// without a path prefix, requests on the bucket itself (a listing; with
/// `PUT`, its configuration: a `?replication` could have the storage copy
/// the bucket out of the area); a prefix not ending in `/` is a string
/// prefix (`/radiology` also matches `/radiology2/`); and without
/// `[server] s3_domains`, a prefix admits a virtual-hosted request only by
/// an IP literal or a single-label host.
pub fn scope_warnings(s: &canonical::Signed, s3_domains_declared: bool) -> Vec<String> {
    let mut out = Vec::new();
    if s.path_prefix.is_empty() {
        out.push(format!(
            "grant {} has no path_prefix: it admits requests on whole buckets for its methods ({}): listings and, with PUT, a bucket's configuration (e.g. ?replication)",
            s.id,
            if s.methods.is_empty() {
                "all".to_owned()
            } else {
                s.methods.join(",")
            }
        ));
        return out;
    }
    if !s.path_prefix.ends_with('/') {
        out.push(format!(
            "grant {}: path_prefix {:?} does not end with '/': it is a string prefix and also matches {:?}",
            s.id,
            s.path_prefix,
            format!("{}2/", s.path_prefix)
        ));
    }
    if !s3_domains_declared {
        out.push(format!(
            "grant {}: [server] s3_domains is empty, so its path_prefix admits a virtual-hosted request only by an IP literal or a single-label host; declare the storage's domains",
            s.id
        ));
    }
    out
}

#[cfg(test)]
mod tests;

// Grammar-based property tests of the identities and grants files, their
// config sections and `[transparency]`. Here, not in `config`, because they
// load the files through `access`, which uses `config`.
#[cfg(test)]
mod tests_grammar;
