//! Route choice (SPEC §4), on what the storage will act on rather than on
//! how the client spelled it: routes whose `hosts` match the request's host
//! (an empty list matches any), then the most specific match of
//! `path_prefix` and `buckets`, ties in file order.
//!
//! The request is read the ways a storage may read it ([`normalise`]): the
//! host as DNS does, the path decoded and, where S3 servers differ (`%2F`,
//! `//`, dot segments), both ways; the bucket path-style (`/bucket/key`) or
//! virtual-hosted (`bucket.<s3 domain>`), with or without a Ceph tenant
//! (`/tenant:bucket/key`), or as a Swift container of a storage serving
//! both APIs (`/swift/v1/bucket/key`). Every reading is matched as the
//! S3 path-style path `/bucket/key`. When the readings lead to different
//! routes, the route that is at least as strict as every other one (same
//! upstreams and rules, enforce over monitor) wins; if there is none, the
//! request is refused (`400`): a spelling never reaches a laxer route.
//! Nothing here changes the bytes forwarded.
//!
//! A copy (CopyObject, UploadPartCopy) reads the object its
//! `x-amz-copy-source` names (`[/]bucket/key[?versionId=...]`, path-style
//! whatever the request's addressing; a header, or a query parameter of a
//! presigned URL; Swift's copy, manifest and symlink headers alike,
//! [`copy_sources`]): that object's readings are readings
//! of the request too ([`with_copy_source`]), so copying a protected object
//! into a laxer route's bucket, to read it there, meets the protected
//! route. A copy source that names no bucket the proxy can read (an access
//! point ARN), or more than one copy source, is refused (`400`).

use crate::normalise;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

pub use normalise::{Unroutable, config_host};

use crate::config::{PolicySpec, RouteSpec};
use crate::policy::Mode;

/// The index of the route for a request to `host` (the `Host` value, port
/// included) with target path `path` (without the query); `Ok(None)` when
/// no route matches. `s3_domains` are the storage's virtual-hosting
/// domains (`[server] s3_domains`), canonical.
///
/// # Errors
/// [`Unroutable`] when the host or path is invalid, or its readings lead to
/// routes none of which is the strictest.
pub fn choose<'a, I>(
    routes: I,
    s3_domains: &[String],
    host: &str,
    path: &str,
) -> Result<Option<usize>, Unroutable>
where
    I: Iterator<Item = &'a RouteSpec> + Clone,
{
    choose_as(
        routes,
        s3_domains,
        host,
        path,
        false,
        &mut Readings::default(),
    )
}

/// [`choose`], noting in `seen` every route a reading of the request leads
/// to (see [`readings`]): the route phase keeps them for governed access,
/// so the path is read once per request.
///
/// # Errors
/// As [`choose`].
pub fn choose_seen<'a, I>(
    routes: I,
    s3_domains: &[String],
    host: &str,
    path: &str,
    seen: &mut Readings,
) -> Result<Option<usize>, Unroutable>
where
    I: Iterator<Item = &'a RouteSpec> + Clone,
{
    choose_as(routes, s3_domains, host, path, false, seen)
}

/// [`choose`], with `path_style` forcing path-style addressing (a copy
/// source names its bucket in its path whatever the request's host), each
/// reading also noted in `seen`.
fn choose_as<'a, I>(
    routes: I,
    s3_domains: &[String],
    host: &str,
    path: &str,
    path_style: bool,
    seen: &mut Readings,
) -> Result<Option<usize>, Unroutable>
where
    I: Iterator<Item = &'a RouteSpec> + Clone,
{
    // The first reading, then the others: nothing is allocated for a
    // request read one way (the common case).
    let mut first: Option<Option<usize>> = None;
    let mut found: Vec<Option<usize>> = Vec::new();
    readings(
        routes.clone(),
        s3_domains,
        host,
        path,
        path_style,
        &mut |r| {
            seen.note(r);
            match first {
                None => first = Some(r),
                Some(f) if f == r => {}
                Some(f) => {
                    if found.is_empty() {
                        found.push(f);
                    }
                    if !found.contains(&r) {
                        found.push(r);
                    }
                }
            }
        },
    )?;
    if found.is_empty() {
        return Ok(first.flatten());
    }
    reconcile(routes, &found)
}

/// Every route a reading of the request leads to (`None`: a reading no
/// route serves), each passed to `note`, possibly more than once: the path
/// as sent, and every way a storage may read it otherwise (see the module
/// documentation). [`choose`] reconciles them into one route; governed
/// access requires each of them to be listed and granted, since the
/// storage may act on any.
///
/// # Errors
/// [`Unroutable`] when the host or path is invalid.
pub fn readings<'a, I>(
    routes: I,
    s3_domains: &[String],
    host: &str,
    path: &str,
    path_style: bool,
    note: &mut dyn FnMut(Option<usize>),
) -> Result<(), Unroutable>
where
    I: Iterator<Item = &'a RouteSpec> + Clone,
{
    let host = normalise::host(host)?;
    let spelling = normalise::inspect(path.as_bytes())?;
    let addressing = if path_style {
        Addressing::Path
    } else {
        Addressing::of(&host, s3_domains)
    };
    let has_candidates = matches!(addressing, Addressing::Path)
        && host_buckets(routes.clone(), &host).next().is_some();
    let upper_bucket = matches!(addressing, Addressing::Path)
        && upper_case_bucket(routes.clone(), path.as_bytes()).is_some();
    let params = path.contains(';');
    let tenant = matches!(addressing, Addressing::Path)
        && first_segment(path.as_bytes()).is_some_and(|s| s.contains(&b':'));
    let swift =
        matches!(addressing, Addressing::Path) && swift_container(path.as_bytes()).is_some();
    if spelling.is_plain() && !has_candidates && !upper_bucket && !params && !tenant && !swift {
        // The common case: one reading, the path as sent; no allocation.
        if let Addressing::Path = addressing {
            note(best(routes, &host, path.as_bytes()));
            return Ok(());
        }
    }
    // A `;` starts path parameters to servers that strip them from each
    // segment (servlet containers, JAX-RS matrix parameters): the path
    // without them is read too.
    let stripped = params.then(|| normalise::without_params(path.as_bytes()));
    // A server that decodes `%2F` into a separator before it strips the
    // parameters reads `/;%2Fb/k` as `/b/k`: that reading too.
    let stripped_after_slash = (params && spelling.encoded_slash)
        .then(|| normalise::without_params(&slash_decoded(path.as_bytes())));
    let mut bases: Vec<(&[u8], normalise::Spelling)> = vec![(path.as_bytes(), spelling)];
    for p in [&stripped, &stripped_after_slash].into_iter().flatten() {
        bases.push((p, normalise::inspect(p)?));
    }
    let mut paths: Vec<Cow<'_, [u8]>> = Vec::new();
    let both = |f: bool| if f { &[false, true][..] } else { &[true][..] };
    for &(base, spelling) in &bases {
        for &slash in both(spelling.encoded_slash) {
            for &collapse in both(spelling.empty_segment) {
                for &dots in both(spelling.dot_segment) {
                    paths.push(if spelling.is_plain() {
                        Cow::Borrowed(base)
                    } else {
                        Cow::Owned(normalise::reading(base, slash, collapse, dots))
                    });
                }
            }
        }
    }
    for p in &paths {
        match addressing {
            Addressing::Virtual(bucket) => note(best(routes.clone(), &host, &vhosted(bucket, p))),
            Addressing::Path => {
                note(best(routes.clone(), &host, p));
                if let Some(lower) = upper_case_bucket(routes.clone(), p) {
                    note(best(routes.clone(), &host, &lower));
                }
                for bare in [without_tenant(p), swift_container(p)]
                    .into_iter()
                    .flatten()
                {
                    note(best(routes.clone(), &host, &bare));
                    if let Some(lower) = upper_case_bucket(routes.clone(), &bare) {
                        note(best(routes.clone(), &host, &lower));
                    }
                }
                for bucket in host_buckets(routes.clone(), &host) {
                    note(best(routes.clone(), &host, &vhosted(bucket, p)));
                }
            }
        }
    }
    Ok(())
}

/// The request header naming the object a copy reads.
pub const COPY_SOURCE: &str = "x-amz-copy-source";

/// The Swift API's headers naming objects a write makes readable through
/// its own path (`container/object`, or `container/prefix`): a copy's
/// source, a dynamic large object's segments, a symlink's target. A
/// storage serving both APIs reads them on the same buckets.
pub const SWIFT_SOURCES: [&str; 3] = ["x-copy-from", "x-object-manifest", "x-symlink-target"];

/// The copy sources a request names: its `x-amz-copy-source` and Swift
/// [`SWIFT_SOURCES`] fields, then
/// its query parameters of that name (a presigned URL may carry `x-amz-*`
/// headers as parameters), name and value percent-decoded once. Nothing is
/// allocated for a request that names none.
pub fn copy_sources<'r>(headers: &'r http::HeaderMap, query: Option<&str>) -> Vec<Cow<'r, [u8]>> {
    let mut sources: Vec<Cow<'r, [u8]>> = headers
        .get_all(COPY_SOURCE)
        .iter()
        .chain(
            SWIFT_SOURCES
                .iter()
                .flat_map(|h| headers.get_all(*h).iter()),
        )
        .map(|v| Cow::Borrowed(v.as_bytes()))
        .collect();
    for param in query.unwrap_or_default().split('&') {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        if decodes_to(name.as_bytes(), COPY_SOURCE.as_bytes()) {
            // A value that is not percent-encoding names nothing readable.
            sources.push(Cow::Owned(
                decode_once(value.as_bytes()).unwrap_or_default(),
            ));
        }
    }
    sources
}

/// Whether `s`, its `%XX` decoded, is `want` (ASCII case aside), without
/// allocating: query parameter names are compared on every request.
fn decodes_to(s: &[u8], want: &[u8]) -> bool {
    let mut i = 0;
    let mut k = 0;
    while let Some(&b) = s.get(i) {
        let byte = if b == b'%' {
            let Some(v) = hex_byte(s.get(i + 1..i + 3)) else {
                return false;
            };
            i += 3;
            v
        } else {
            i += 1;
            b
        };
        if !want.get(k).is_some_and(|w| w.eq_ignore_ascii_case(&byte)) {
            return false;
        }
        k += 1;
    }
    k == want.len()
}

/// The byte two hex digits (either case) spell.
fn hex_byte(digits: Option<&[u8]>) -> Option<u8> {
    let digit = |b: u8| char::from(b).to_digit(16);
    match digits? {
        [h, l] => u8::try_from(digit(*h)? << 4 | digit(*l)?).ok(),
        _ => None,
    }
}

/// `s` with every `%XX` decoded; `None` for a `%` without two hex digits.
fn decode_once(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if b == b'%' {
            out.push(hex_byte(s.get(i + 1..i + 3))?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

/// The route for a request that `chosen` routes, once its copy sources
/// (the values of `x-amz-copy-source`, usually none) are read as well: the
/// route at least as strict as the request's and the source's.
///
/// # Errors
/// [`Unroutable::Ambiguous`] for more than one copy source, one that is not
/// a path-style `bucket/key` (an ARN, not ASCII), or routes that cannot be
/// reconciled; the errors of [`choose`] for the source's path.
pub fn with_copy_source<'a, 'v, I>(
    routes: I,
    s3_domains: &[String],
    host: &str,
    sources: impl Iterator<Item = &'v [u8]>,
    chosen: Option<usize>,
) -> Result<Option<usize>, Unroutable>
where
    I: Iterator<Item = &'a RouteSpec> + Clone,
{
    let Some(chosen) = chosen else {
        return Ok(None);
    };
    let source = copy_source(
        routes.clone(),
        s3_domains,
        host,
        sources,
        &mut Readings::default(),
    )?;
    with_source_read(routes, chosen, source.map(|(read, _)| read))
}

/// The request's route `chosen` reconciled with `read`, the route its copy
/// source's path leads to (`None`: no copy source), as
/// [`with_copy_source`] does.
///
/// # Errors
/// [`Unroutable::Ambiguous`] for routes that cannot be reconciled.
pub fn with_source_read<'a, I>(
    routes: I,
    chosen: usize,
    read: Option<Option<usize>>,
) -> Result<Option<usize>, Unroutable>
where
    I: Iterator<Item = &'a RouteSpec> + Clone,
{
    match read {
        None => Ok(Some(chosen)),
        Some(Some(r)) if r == chosen => Ok(Some(chosen)),
        Some(read) => reconcile(routes, &[Some(chosen), read]),
    }
}

/// How the request names its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Addressing<'h> {
    /// Path-style, `/bucket/key` (the host may still name a bucket the
    /// config knows, without a declared domain: then both are readings).
    Path,
    /// Virtual-hosted under a declared domain: `bucket.<domain>`.
    Virtual(&'h str),
}

impl<'h> Addressing<'h> {
    /// The longest declared domain the host is strictly under decides.
    fn of(host: &'h str, s3_domains: &[String]) -> Self {
        s3_domains
            .iter()
            .filter(|d| host.len() > d.len() + 1)
            .filter_map(|d| {
                let bucket = host.strip_suffix(d.as_str())?.strip_suffix('.')?;
                Some((d.len(), bucket))
            })
            .max_by_key(|(len, _)| *len)
            .map_or(Self::Path, |(_, bucket)| Self::Virtual(bucket))
    }
}

/// The path-style path of a virtual-hosted request: `/bucket` + path.
fn vhosted(bucket: &str, path: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(bucket.len() + path.len() + 1);
    p.push(b'/');
    p.extend_from_slice(bucket.as_bytes());
    if path.first() != Some(&b'/') {
        p.push(b'/');
    }
    p.extend_from_slice(path);
    p
}

/// The buckets the config knows: every `buckets` entry and the first
/// segment of every `path_prefix` that has one (`/hds-bucket/...`).
fn is_known_bucket<'a>(mut routes: impl Iterator<Item = &'a RouteSpec>, name: &[u8]) -> bool {
    routes.any(|r| {
        r.buckets.iter().any(|b| b.as_bytes() == name)
            || prefix_bucket(&r.path_prefix) == Some(name)
    })
}

/// The first segment of a `path_prefix`, when a `/` ends it.
fn prefix_bucket(prefix: &str) -> Option<&[u8]> {
    let rest = prefix.as_bytes().strip_prefix(b"/")?;
    let end = rest.iter().position(|&b| b == b'/')?;
    (end > 0).then(|| &rest[..end])
}

/// The host's leading labels that are a bucket the config knows
/// (`hds-bucket.storage.example` names `hds-bucket` to a storage that
/// serves virtual-hosted buckets under a domain nobody declared), and the
/// whole host when it is one: S3 reads a Host that is none of its
/// endpoints as a bucket name (its CNAME virtual hosting), so `Host:
/// hds-bucket` names `hds-bucket`.
fn host_buckets<'a, 'h, I>(routes: I, host: &'h str) -> impl Iterator<Item = &'h str>
where
    I: Iterator<Item = &'a RouteSpec> + Clone,
{
    host.match_indices('.')
        .map(move |(i, _)| &host[..i])
        .chain(std::iter::once(host))
        .filter(move |b| is_known_bucket(routes.clone(), b.as_bytes()))
}

/// `path` with its first segment in lower case, when that segment has
/// upper case and its lower case is a bucket the config knows. S3 bucket
/// names are lower case: an upper-case spelling is another (invalid or
/// legacy) bucket to S3, but read both ways in case a storage folds it.
fn upper_case_bucket<'a>(
    routes: impl Iterator<Item = &'a RouteSpec>,
    path: &[u8],
) -> Option<Vec<u8>> {
    let first = first_segment(path)?;
    if !first.iter().any(u8::is_ascii_uppercase) {
        return None;
    }
    let lower = first.to_ascii_lowercase();
    if !is_known_bucket(routes, &lower) {
        return None;
    }
    let mut p = path.to_vec();
    p[1..=first.len()].copy_from_slice(&lower);
    Some(p)
}

/// `path` with the tenant of its bucket removed, when its first segment
/// is `tenant:bucket`: Ceph RGW reads `/acme:hds-bucket/k` as the bucket
/// `hds-bucket` of the tenant `acme`, and `/:hds-bucket/k` as the bucket
/// `hds-bucket` without a tenant (S3 bucket names hold no `:`).
fn without_tenant(path: &[u8]) -> Option<Vec<u8>> {
    let first = first_segment(path)?;
    let colon = first.iter().position(|&b| b == b':')?;
    let mut p = Vec::with_capacity(path.len());
    p.push(b'/');
    p.extend_from_slice(path.get(colon + 2..)?);
    Some(p)
}

/// The S3 path-style path of a Swift API path, which reads the same
/// buckets (containers) on storages serving both, Ceph RGW by default:
/// `/swift/v1/[AUTH_account/]container/object` (RGW's prefix) or
/// `/v1/AUTH_account/container/object` (Swift's own form).
fn swift_container(path: &[u8]) -> Option<Vec<u8>> {
    let rest = path.strip_prefix(b"/")?;
    let rest = if let Some(r) = rest.strip_prefix(b"swift/v1/") {
        r
    } else {
        rest.strip_prefix(b"v1/")
            .filter(|r| r.starts_with(b"AUTH_"))?
    };
    let rest = if rest.starts_with(b"AUTH_") {
        let end = rest.iter().position(|&b| b == b'/')?;
        rest.get(end + 1..)?
    } else {
        rest
    };
    let mut p = Vec::with_capacity(rest.len() + 1);
    p.push(b'/');
    p.extend_from_slice(rest);
    first_segment(&p).is_some().then_some(p)
}

/// The bucket of a path-style path: its first segment, if not empty.
fn first_segment(path: &[u8]) -> Option<&[u8]> {
    let rest = path.strip_prefix(b"/")?;
    let seg = rest.split(|&b| b == b'/').next()?;
    (!seg.is_empty()).then_some(seg)
}

/// How specifically `route` matches the path-style `path`: the length of
/// its `path_prefix` (a prefix ending in `/` also matches the path without
/// that slash: `/hds-bucket/` matches the bucket `/hds-bucket`), or of
/// `/bucket/` for a `buckets` route, whichever is longer.
fn specificity(route: &RouteSpec, path: &[u8]) -> Option<usize> {
    let pre = route.path_prefix.as_bytes();
    let prefix_ok = path.starts_with(pre)
        || (pre.len() > 1 && pre.ends_with(b"/") && path == &pre[..pre.len() - 1]);
    if !prefix_ok {
        return None;
    }
    let mut len = pre.len();
    if !route.buckets.is_empty() {
        let bucket = first_segment(path)?;
        if !route.buckets.iter().any(|b| b.as_bytes() == bucket) {
            return None;
        }
        len = len.max(bucket.len() + 2);
    }
    Some(len)
}

/// The route for one reading.
fn best<'a>(routes: impl Iterator<Item = &'a RouteSpec>, host: &str, path: &[u8]) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, r) in routes.enumerate() {
        let host_ok = r.hosts.is_empty() || r.hosts.iter().any(|p| p.matches(host));
        if !host_ok {
            continue;
        }
        let Some(len) = specificity(r, path) else {
            continue;
        };
        if best.is_none_or(|(_, l)| len > l) {
            best = Some((i, len));
        }
    }
    best.map(|(i, _)| i)
}

/// One route for all readings, or the one at least as strict as all others.
fn reconcile<'a, I>(routes: I, found: &[Option<usize>]) -> Result<Option<usize>, Unroutable>
where
    I: Iterator<Item = &'a RouteSpec> + Clone,
{
    match found {
        [] => return Ok(None),
        [one] => return Ok(*one),
        _ => {}
    }
    // A reading with no route would be refused: nothing is as strict.
    let Some(indices) = found.iter().copied().collect::<Option<Vec<usize>>>() else {
        return Err(Unroutable::Ambiguous);
    };
    let route = |i: usize| routes.clone().nth(i);
    indices
        .iter()
        .copied()
        .find(|&a| {
            indices.iter().all(|&b| match (route(a), route(b)) {
                (Some(ra), Some(rb)) => at_least_as_strict(ra, rb),
                _ => false,
            })
        })
        .map(Some)
        .ok_or(Unroutable::Ambiguous)
}

/// `a` refuses whatever `b` refuses and sends the same bytes to the same
/// storage: same upstreams, same Host handling, same rules, and enforce
/// unless `b` only monitors.
fn at_least_as_strict(a: &RouteSpec, b: &RouteSpec) -> bool {
    a.upstreams == b.upstreams
        && a.preserve_host == b.preserve_host
        && same_rules(&a.policy, &b.policy)
        && (a.policy.policy.mode == Mode::Enforce || b.policy.policy.mode == Mode::Monitor)
}

/// Whether two policies judge every client alike (their mode aside).
pub fn same_rules(a: &PolicySpec, b: &PolicySpec) -> bool {
    a.allow_countries == b.allow_countries
        && a.deny_countries == b.deny_countries
        && a.allow_networks == b.allow_networks
        && a.deny_networks == b.deny_networks
        && a.policy.unknown_allowed == b.policy.unknown_allowed
}

/// `path` with each `%2F` (either case) turned into `/` and every other
/// byte as sent.
fn slash_decoded(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%'
            && path.get(i + 1) == Some(&b'2')
            && path
                .get(i + 2)
                .is_some_and(|b| b.eq_ignore_ascii_case(&b'f'))
        {
            out.push(b'/');
            i += 3;
        } else {
            out.push(path[i]);
            i += 1;
        }
    }
    out
}

/// The one copy source a request names (see [`copy_sources`]), read as the
/// storage reads it: its route and its path-style path (`/bucket/key`, as
/// sent, without its `?versionId=`). `None` when it names none. Governed
/// access judges this path and route as it judges the request's own: a
/// copy reads the source.
///
/// # Errors
/// [`Unroutable::Ambiguous`] for more than one copy source, or one that is
/// not a path-style `bucket/key` (an ARN, not UTF-8); the errors of
/// [`choose`] for the source's path.
pub fn copy_source<'a, 'v, I>(
    routes: I,
    s3_domains: &[String],
    host: &str,
    mut sources: impl Iterator<Item = &'v [u8]>,
    seen: &mut Readings,
) -> Result<Option<(Option<usize>, String)>, Unroutable>
where
    I: Iterator<Item = &'a RouteSpec> + Clone,
{
    let Some(source) = sources.next() else {
        return Ok(None);
    };
    if sources.next().is_some() {
        return Err(Unroutable::Ambiguous);
    }
    let source = std::str::from_utf8(source).map_err(|_| Unroutable::Ambiguous)?;
    // The version (or any query) is not part of the object's name.
    let source = source.split_once('?').map_or(source, |(s, _)| s);
    let source = source.strip_prefix('/').unwrap_or(source);
    if source.is_empty() || source.starts_with('/') || source.starts_with("arn:") {
        return Err(Unroutable::Ambiguous);
    }
    let path = format!("/{source}");
    let read = choose_as(routes, s3_domains, host, &path, true, seen)?;
    Ok(Some((read, path)))
}

/// The distinct routes a request's readings lead to (see [`readings`]),
/// on the stack: a
/// request read more ways than fit counts as read by no route (which no
/// route restriction admits).
pub struct Readings {
    routes: [Option<usize>; Self::MAX],
    len: usize,
}

impl Readings {
    const MAX: usize = 16;

    /// Notes that a reading leads to `r`.
    pub fn note(&mut self, r: Option<usize>) {
        if self.routes[..self.len].contains(&r) {
            return;
        }
        if self.len == Self::MAX {
            self.routes[Self::MAX - 1] = None;
        } else {
            self.routes[self.len] = r;
            self.len += 1;
        }
    }

    /// The distinct routes noted.
    pub fn as_slice(&self) -> &[Option<usize>] {
        &self.routes[..self.len]
    }
}

impl Default for Readings {
    fn default() -> Self {
        Self {
            routes: [None; Self::MAX],
            len: 0,
        }
    }
}
