//! Raw → typed: every value is checked, every problem is reported with its
//! position, and nothing is half-accepted.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use toml::Spanned;

use super::error::{ConfigError, Problem, Problems, line_col};
use super::raw::{
    RawClientAuth, RawConfig, RawMode, RawObjectKey, RawOnError, RawPolicy, RawRoute, RawUnknown,
    Text,
};
use super::{
    AuditSpec, Config, HostPattern, PolicySpec, ResolverSpec, RouteSpec, ServerSpec, TlsSpec,
    UpstreamHost, UpstreamUrl,
};
use crate::geo::{
    Country, CountrySet, FIXED_FORMS, Nat64Prefix, Nat64Prefixes, eea, known_codes, suggestion,
};
use crate::normalise::config_host;
use crate::policy::{Mode, NetworkTable, OperatorAction, OperatorActions, Policy};

pub(super) fn validate(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
        ConfigError::Invalid {
            path: path.to_owned(),
            problems: vec![Problem {
                line,
                column,
                message: clean_toml_message(e.message()),
            }],
        }
    })?;
    let mut p = Problems::new(text);
    let nat64 = nat64_prefixes(&raw.geoip.nat64_prefixes, &mut p);
    networks_not_unwrapped(&raw, &nat64, &mut p);
    let mut server = server(&raw, &mut p);
    server.trusted_proxies = server.trusted_proxies.with_nat64(nat64.clone());
    let geoip_database = PathBuf::from(raw.geoip.database.get_ref());
    // Checked even when watch = false, so turning it on later cannot
    // reveal a value `check` accepted.
    let watch_interval = duration(&raw.geoip.watch_interval, &mut p, false);
    let geoip_watch = raw.geoip.watch.then_some(watch_interval);
    let geoip_max_age = long_duration(&raw.geoip.max_age, &mut p);
    if raw.geoip.database.get_ref().is_empty() {
        p.at(raw.geoip.database.span(), "geoip database path is empty");
    }
    let operator_database = raw.geoip.operator_database.as_ref().map(|t| {
        if t.get_ref().is_empty() {
            p.at(t.span(), "geoip operator_database path is empty");
        }
        PathBuf::from(t.get_ref())
    });
    let global = Lists::from_raw(&raw.policy);
    let global_actions = raw
        .policy
        .on_foreign_operator
        .as_ref()
        .map_or_else(OperatorActions::default, |v| {
            operator_actions(v, OperatorActions::default(), &mut p)
        });
    let mut policy = compile_policy(
        &global,
        mode(raw.policy.mode),
        raw.policy.unknown_country,
        global_actions,
        &mut p,
    );
    policy.policy.nat64 = nat64.clone();
    if raw.routes.is_empty() {
        p.at(0..0, "no [[route]] is defined: every request would get 404 (add at least one route with upstreams)");
    }
    let mut routes = Vec::new();
    for route in &raw.routes {
        let r = compile_route(route, &raw.policy, &global, global_actions, &mut p);
        if routes.iter().any(|o: &RouteSpec| o.name == r.name) {
            p.at(
                route.get_ref().name.span(),
                format!("duplicate route name \"{}\"", r.name),
            );
        }
        routes.push(r);
    }
    for r in &mut routes {
        r.policy.policy.nat64 = nat64.clone();
    }
    let admin_listen = admin(&raw, &mut p);
    let resolver = resolver(&raw, &mut p);
    let audit = audit(&raw, &mut p);
    let access = super::access::validate(raw.identities.as_ref(), raw.grants.as_ref(), &mut p);
    let transparency = super::transparency::transparency(raw.transparency.as_ref(), &mut p);
    p.finish(path)?;
    Ok(Config {
        path: path.to_owned(),
        server,
        admin_listen,
        resolver,
        audit,
        geoip_database,
        geoip_watch,
        geoip_max_age,
        nat64_prefixes: nat64,
        policy,
        routes,
        operator_database,
        access,
        transparency,
    })
}

/// toml's messages span several lines and quote with backticks; ours are one
/// line with double quotes, like the rest of the errors.
fn clean_toml_message(msg: &str) -> String {
    super::error::shown(msg.trim().replace('`', "\"").replace('\n', " "))
}

fn server(raw: &RawConfig, p: &mut Problems<'_>) -> ServerSpec {
    let s = &raw.server;
    let mut listen = Vec::new();
    for addr in &s.listen {
        match addr.get_ref().parse::<SocketAddr>() {
            Ok(a) => listen.push(a),
            Err(_) => p.at(
                addr.span(),
                format!("invalid listen address \"{}\" (expected IP:port, e.g. \"0.0.0.0:8080\" or \"[::]:8080\")", addr.get_ref()),
            ),
        }
    }
    if s.listen.is_empty() && s.tls_listen.is_empty() {
        p.at(
            0..0,
            "server.listen and server.tls_listen are empty: the proxy would serve nothing",
        );
    }
    let mut tls_listen = Vec::new();
    for addr in &s.tls_listen {
        match addr.get_ref().parse::<SocketAddr>() {
            Ok(a) => tls_listen.push(a),
            Err(_) => p.at(
                addr.span(),
                format!(
                    "invalid tls_listen address \"{}\" (expected IP:port, e.g. \"0.0.0.0:8443\")",
                    addr.get_ref()
                ),
            ),
        }
    }
    let tls_watch = s
        .tls
        .as_ref()
        .and_then(|t| t.watch.then(|| duration(&t.watch_interval, p, false)));
    let tls = s.tls.as_ref().map(|t| TlsSpec {
        cert: PathBuf::from(t.cert.get_ref()),
        key: PathBuf::from(t.key.get_ref()),
        client_ca: t.client_ca.as_ref().map(|c| PathBuf::from(c.get_ref())),
        client_auth_required: t.client_auth == RawClientAuth::Required,
        sni: t
            .sni
            .iter()
            .map(|c| {
                let names = c
                    .names
                    .iter()
                    .map(|n| n.get_ref().to_ascii_lowercase())
                    .collect();
                (
                    names,
                    PathBuf::from(c.cert.get_ref()),
                    PathBuf::from(c.key.get_ref()),
                )
            })
            .collect(),
        watch: tls_watch,
    });
    match (&tls, s.tls_listen.first()) {
        (None, Some(first)) => p.at(
            first.span(),
            "tls_listen needs [server.tls] with cert and key",
        ),
        (Some(_), None) => p.at(
            0..0,
            "[server.tls] is set but server.tls_listen is empty: add an HTTPS address",
        ),
        _ => {}
    }
    let trusted: Vec<IpNet> = s
        .trusted_proxies
        .iter()
        .filter_map(|n| cidr(n, p))
        .collect();
    ServerSpec {
        listen,
        tls_listen,
        tls,
        trusted_proxies: NetworkTable::compile(&trusted),
        trusted_proxies_text: s
            .trusted_proxies
            .iter()
            .map(|t| t.get_ref().clone())
            .collect(),
        client_ip_source: s.client_ip_source,
        trusted_proxy_without_client: s.trusted_proxy_without_client,
        header_read_timeout: duration(&s.header_read_timeout, p, false),
        idle_timeout: duration(&s.idle_timeout, p, false),
        max_header_bytes: bounded(&s.max_header_bytes, 1024, 1 << 20, "max_header_bytes", p),
        max_headers: bounded(&s.max_headers, 8, 1000, "max_headers", p),
        max_connections: bounded(&s.max_connections, 1, 1_000_000, "max_connections", p),
        shutdown_grace: duration(&s.shutdown_grace, p, true),
        s3_domains: s3_domains(&s.s3_domains, p),
    }
}

fn audit(raw: &RawConfig, p: &mut Problems<'_>) -> AuditSpec {
    let a = &raw.audit;
    if a.path.get_ref().is_empty() {
        p.at(
            a.path.span(),
            "audit path is empty (the trail is required; give a file path)",
        );
    }
    let header = a.purpose_header.get_ref();
    let purpose_header = http::HeaderName::from_bytes(header.as_bytes()).unwrap_or_else(|_| {
        p.at(
            a.purpose_header.span(),
            format!("invalid header name \"{header}\""),
        );
        http::HeaderName::from_static("x-access-purpose")
    });
    AuditSpec {
        enabled: a.enabled,
        path: PathBuf::from(a.path.get_ref()),
        purpose_header,
        require_purpose: a.require_purpose,
        object_key: match a.object_key {
            RawObjectKey::Full => super::ObjectKeyMode::Full,
            RawObjectKey::Sha256 => super::ObjectKeyMode::Sha256,
            RawObjectKey::None => super::ObjectKeyMode::None,
        },
        fail_closed: a.on_error == RawOnError::FailClosed,
        queue: bounded(&a.queue, 1, 1 << 20, "queue", p),
        protocol_error_records: bounded(
            &a.protocol_error_records,
            0,
            1 << 20,
            "protocol_error_records",
            p,
        ) as u64,
        protocol_error_window: duration(&a.protocol_error_window, p, false),
        signing_key: (!a.signing_key.get_ref().is_empty())
            .then(|| PathBuf::from(a.signing_key.get_ref())),
        origin: audit_origin(a, p),
        checkpoint_every: duration(&a.checkpoint_every, p, false),
        rotate_size: Some(bounded(&a.rotate_size, 0, 1 << 40, "rotate_size", p) as u64)
            .filter(|&n| n > 0),
        rotate_every: Some(duration(&a.rotate_every, p, true)).filter(|d| !d.is_zero()),
        export: a.export.as_ref().and_then(|e| export(e, p)),
    }
}

/// `[audit.export]`.
fn export(e: &super::raw::RawExport, p: &mut Problems<'_>) -> Option<super::ExportSpec> {
    let endpoint = upstream(&e.endpoint, p);
    for (t, what) in [
        (&e.bucket, "bucket"),
        (&e.region, "region"),
        (&e.access_key_id, "access_key_id"),
        (&e.secret_access_key_file, "secret_access_key_file"),
    ] {
        if t.get_ref().is_empty() {
            p.at(t.span(), format!("[audit.export] {what} is empty"));
        }
    }
    let prefix = e.prefix.get_ref();
    if prefix.starts_with('/') || prefix.contains("..") || prefix.chars().any(char::is_control) {
        p.at(
            e.prefix.span(),
            format!("[audit.export] prefix \"{prefix}\" must not start with '/' nor hold \"..\" or control characters"),
        );
    }
    let mode = match e.object_lock_mode.get_ref().as_str() {
        "" => None,
        "COMPLIANCE" => Some(super::ObjectLockMode::Compliance),
        "GOVERNANCE" => Some(super::ObjectLockMode::Governance),
        other => {
            p.at(
                e.object_lock_mode.span(),
                format!(
                    "object_lock_mode \"{other}\" is not \"COMPLIANCE\", \"GOVERNANCE\" or \"\""
                ),
            );
            None
        }
    };
    let retain = (!e.retain.get_ref().is_empty()).then(|| long_duration(&e.retain, p));
    let object_lock = match (mode, retain) {
        (Some(m), Some(r)) if !r.is_zero() => Some((m, r)),
        (Some(_), _) => {
            let at = if e.retain.get_ref().is_empty() {
                e.object_lock_mode.span()
            } else {
                e.retain.span()
            };
            p.at(
                at,
                "object_lock_mode needs a retain duration greater than zero (e.g. \"1095d\")",
            );
            None
        }
        (None, Some(_)) => {
            p.at(e.retain.span(), "retain is set without object_lock_mode");
            None
        }
        (None, None) => None,
    };
    let spool_max = bounded(&e.spool_max, 1, 1 << 50, "spool_max", p) as u64;
    Some(super::ExportSpec {
        endpoint: endpoint?,
        bucket: e.bucket.get_ref().clone(),
        prefix: prefix.clone(),
        region: e.region.get_ref().clone(),
        access_key_id: e.access_key_id.get_ref().clone(),
        secret_access_key_file: PathBuf::from(e.secret_access_key_file.get_ref()),
        object_lock,
        spool_max,
        fail_closed: e.on_error == RawOnError::FailClosed,
    })
}

/// `[audit] origin`: empty (the host name) or a name a signed note can
/// carry.
fn audit_origin(a: &super::raw::RawAudit, p: &mut Problems<'_>) -> String {
    let origin = a.origin.get_ref();
    if !origin.is_empty() && !super::valid_note_name(origin) {
        p.at(
            a.origin.span(),
            format!(
                "audit origin \"{origin}\" is not valid (no spaces, control characters or '+')"
            ),
        );
    }
    origin.clone()
}

fn admin(raw: &RawConfig, p: &mut Problems<'_>) -> Option<SocketAddr> {
    let t = &raw.admin.listen;
    if t.get_ref().is_empty() {
        return None;
    }
    match t.get_ref().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            p.at(
                t.span(),
                format!("invalid admin listen address \"{}\" (expected IP:port such as \"127.0.0.1:9090\", or \"\" to disable)", t.get_ref()),
            );
            None
        }
    }
}

fn resolver(raw: &RawConfig, p: &mut Problems<'_>) -> ResolverSpec {
    let r = &raw.resolver;
    let mut nameservers = Vec::new();
    for t in &r.nameservers {
        let s = t.get_ref();
        let parsed = s
            .parse::<SocketAddr>()
            .ok()
            .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)));
        match parsed {
            Some(a) => nameservers.push(a),
            None => p.at(
                t.span(),
                format!("invalid nameserver \"{s}\" (expected IP or IP:port, e.g. \"192.0.2.53\" or \"127.0.0.1:5353\")"),
            ),
        }
    }
    let min_ttl = duration(&r.min_ttl, p, true);
    let max_ttl = duration(&r.max_ttl, p, false);
    if min_ttl > max_ttl {
        p.at(
            r.min_ttl.span(),
            format!(
                "min_ttl \"{}\" is longer than max_ttl \"{}\"",
                r.min_ttl.get_ref(),
                r.max_ttl.get_ref()
            ),
        );
    }
    ResolverSpec {
        nameservers,
        min_ttl,
        max_ttl,
        timeout: duration(&r.timeout, p, false),
    }
}

fn bounded(v: &Spanned<u64>, min: u64, max: u64, name: &str, p: &mut Problems<'_>) -> usize {
    let n = *v.get_ref();
    if !(min..=max).contains(&n) {
        p.at(
            v.span(),
            format!("{name} = {n} is out of range (expected {min} to {max})"),
        );
    }
    usize::try_from(n.clamp(min, max)).unwrap_or(usize::MAX)
}

fn duration(t: &Text, p: &mut Problems<'_>, zero_ok: bool) -> Duration {
    match super::duration::parse(t.get_ref()) {
        Ok(d) if d.is_zero() && !zero_ok => {
            p.at(
                t.span(),
                format!("duration \"{}\" must be greater than zero", t.get_ref()),
            );
            Duration::from_secs(1)
        }
        Ok(d) => d,
        Err(msg) => {
            p.at(t.span(), msg);
            Duration::from_secs(1)
        }
    }
}

/// An age compared with dates, never added to an `Instant`: up to
/// [`super::duration::LONG_MAX`].
fn long_duration(t: &Text, p: &mut Problems<'_>) -> Duration {
    super::duration::parse_age(t.get_ref()).unwrap_or_else(|msg| {
        p.at(t.span(), msg);
        Duration::from_secs(1)
    })
}

fn cidr(t: &Text, p: &mut Problems<'_>) -> Option<IpNet> {
    let s = t.get_ref();
    // A bare address is a /32 or /128.
    let parsed = s
        .parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from));
    if parsed.is_none() {
        p.at(
            t.span(),
            format!(
                "invalid network \"{s}\" (expected CIDR such as \"10.0.0.0/8\" or \"fd00::/8\")"
            ),
        );
    }
    parsed
}

/// The list-valued policy keys, global or overridden by a route.
struct Lists<'a> {
    allow_countries: &'a [Text],
    deny_countries: &'a [Text],
    allow_networks: &'a [Text],
    deny_networks: &'a [Text],
    operator_countries: &'a [Text],
}

impl<'a> Lists<'a> {
    fn from_raw(raw: &'a RawPolicy) -> Self {
        Self {
            allow_countries: &raw.allow_countries,
            deny_countries: &raw.deny_countries,
            allow_networks: &raw.allow_networks,
            deny_networks: &raw.deny_networks,
            operator_countries: &raw.operator_countries,
        }
    }
}

const fn mode(m: RawMode) -> Mode {
    match m {
        RawMode::Enforce => Mode::Enforce,
        RawMode::Monitor => Mode::Monitor,
    }
}

fn compile_policy(
    lists: &Lists<'_>,
    mode: Mode,
    unknown: RawUnknown,
    on_foreign_operator: OperatorActions,
    p: &mut Problems<'_>,
) -> PolicySpec {
    let allow = countries(lists.allow_countries, p);
    let operator_countries = countries(lists.operator_countries, p);
    let deny = countries(lists.deny_countries, p);
    let allow_nets: Vec<IpNet> = lists
        .allow_networks
        .iter()
        .filter_map(|t| cidr(t, p))
        .collect();
    let deny_nets: Vec<IpNet> = lists
        .deny_networks
        .iter()
        .filter_map(|t| cidr(t, p))
        .collect();
    PolicySpec {
        allow_countries: allow.iter().map(|c| c.to_string()).collect(),
        deny_countries: deny.iter().map(|c| c.to_string()).collect(),
        allow_networks: lists
            .allow_networks
            .iter()
            .map(|t| t.get_ref().clone())
            .collect(),
        deny_networks: lists
            .deny_networks
            .iter()
            .map(|t| t.get_ref().clone())
            .collect(),
        policy: Policy {
            mode,
            allow_countries: allow,
            deny_countries: deny,
            unknown_allowed: unknown == RawUnknown::Allow,
            allow_networks: NetworkTable::compile(&allow_nets),
            deny_networks: NetworkTable::compile(&deny_nets),
            // Replaced by `[geoip] nat64_prefixes` once every policy is compiled.
            nat64: Nat64Prefixes::default(),
            operator_countries,
            on_foreign_operator,
        },
    }
}

/// `on_foreign_operator`: one action for both sides, or a table naming
/// `client` and/or `upstream`; a side the table leaves out keeps `base`.
fn operator_actions(
    v: &Spanned<toml::Value>,
    base: OperatorActions,
    p: &mut Problems<'_>,
) -> OperatorActions {
    const EXPECTED: &str = "expected \"ignore\", \"flag\" or \"block\"";
    let action = |value: &toml::Value, p: &mut Problems<'_>| -> Option<OperatorAction> {
        match value.as_str() {
            Some("ignore") => Some(OperatorAction::Ignore),
            Some("flag") => Some(OperatorAction::Flag),
            Some("block") => Some(OperatorAction::Block),
            Some(other) => {
                p.at(
                    v.span(),
                    format!("invalid on_foreign_operator \"{other}\" ({EXPECTED})"),
                );
                None
            }
            None => {
                p.at(v.span(), format!("invalid on_foreign_operator ({EXPECTED}, or a table with client and upstream)"));
                None
            }
        }
    };
    match v.get_ref() {
        toml::Value::Table(t) => {
            let mut out = base;
            for (key, value) in t {
                let slot = match key.as_str() {
                    "client" => &mut out.client,
                    "upstream" => &mut out.upstream,
                    other => {
                        p.at(
                            v.span(),
                            format!("unknown side \"{other}\" in on_foreign_operator (expected client or upstream)"),
                        );
                        continue;
                    }
                };
                if let Some(a) = action(value, p) {
                    *slot = a;
                }
            }
            out
        }
        value => action(value, p).map_or(base, |a| OperatorActions {
            client: a,
            upstream: a,
        }),
    }
}

fn countries(list: &[Text], p: &mut Problems<'_>) -> CountrySet {
    let known = known_codes();
    let mut set = CountrySet::new();
    for t in list {
        let code = t.get_ref();
        if code.eq_ignore_ascii_case("EEA") {
            set.extend(&eea());
            continue;
        }
        match Country::from_code(code) {
            Some(c) if known.contains(c) => set.insert(c),
            _ => {
                let hint = suggestion(code)
                    .map_or_else(String::new, |s| format!(" (did you mean \"{s}\"?)"));
                let expected = if hint.is_empty() {
                    " (expected an ISO 3166-1 alpha-2 code such as \"FR\", or \"EEA\")"
                } else {
                    ""
                };
                p.at(
                    t.span(),
                    format!("unknown country code \"{code}\"{hint}{expected}"),
                );
            }
        }
    }
    set
}

fn compile_route(
    spanned: &Spanned<RawRoute>,
    global: &RawPolicy,
    global_lists: &Lists<'_>,
    global_actions: OperatorActions,
    p: &mut Problems<'_>,
) -> RouteSpec {
    let r = spanned.get_ref();
    let name = r.name.get_ref().clone();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        p.at(
            r.name.span(),
            format!("invalid route name \"{name}\" (expected letters, digits, '-', '_' or '.'; it becomes a metric label)"),
        );
    }
    let hosts = r.hosts.iter().filter_map(|h| host_pattern(h, p)).collect();
    let prefix = r.path_prefix.get_ref().clone();
    if let Some(why) = prefix_problem(&prefix) {
        p.at(
            r.path_prefix.span(),
            format!("path_prefix \"{prefix}\" {why}"),
        );
    }
    let buckets = r.buckets.iter().filter_map(|b| bucket(b, p)).collect();
    if r.upstreams.is_empty() {
        p.at(spanned.span(), format!("route \"{name}\" has no upstreams"));
    }
    let upstreams = r.upstreams.iter().filter_map(|u| upstream(u, p)).collect();
    let lists = Lists {
        allow_countries: r
            .allow_countries
            .as_deref()
            .unwrap_or(global_lists.allow_countries),
        deny_countries: r
            .deny_countries
            .as_deref()
            .unwrap_or(global_lists.deny_countries),
        allow_networks: r
            .allow_networks
            .as_deref()
            .unwrap_or(global_lists.allow_networks),
        deny_networks: r
            .deny_networks
            .as_deref()
            .unwrap_or(global_lists.deny_networks),
        operator_countries: r
            .operator_countries
            .as_deref()
            .unwrap_or(global_lists.operator_countries),
    };
    let actions = r
        .on_foreign_operator
        .as_ref()
        .map_or(global_actions, |v| operator_actions(v, global_actions, p));
    // Inherited global lists are checked again here: `Problems` reports a
    // problem at one place once, however many policies compile it.
    let policy = compile_policy(
        &lists,
        mode(r.mode.unwrap_or(global.mode)),
        r.unknown_country.unwrap_or(global.unknown_country),
        actions,
        p,
    );
    RouteSpec {
        name,
        hosts,
        path_prefix: prefix,
        upstreams,
        preserve_host: r.preserve_host,
        connect_timeout: duration(&r.connect_timeout, p, false),
        response_timeout: duration(&r.response_timeout, p, false),
        tls_ca: r
            .tls
            .as_ref()
            .and_then(|t| t.ca.as_ref())
            .map(|c| PathBuf::from(c.get_ref())),
        policy,
        buckets,
        required: r.required,
    }
}

fn host_pattern(t: &Text, p: &mut Problems<'_>) -> Option<HostPattern> {
    let text = t.get_ref();
    let (wild, name) = match text.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, text.as_str()),
    };
    // Written hosts are read as requests' hosts are: case, trailing dot and
    // IP literal spelling do not matter.
    let canon = config_host(name).filter(|c| !wild || c.parse::<IpAddr>().is_err());
    let Some(name) = canon else {
        p.at(
            t.span(),
            format!("invalid host pattern \"{text}\" (expected a name such as \"s3.example.org\" or \"*.s3.example.org\", or an IP literal, without port)"),
        );
        return None;
    };
    Some(if wild {
        HostPattern::Suffix(format!(".{name}"))
    } else {
        HostPattern::Exact(name)
    })
}

fn upstream(t: &Text, p: &mut Problems<'_>) -> Option<UpstreamUrl> {
    let url = t.get_ref();
    let bad = |p: &mut Problems<'_>, why: &str| {
        p.at(
            t.span(),
            format!("invalid upstream \"{url}\": {why} (expected \"http://host:port\" or \"https://host:port\")"),
        );
    };
    let Ok(uri) = url.parse::<http::Uri>() else {
        bad(p, "not a URL");
        return None;
    };
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            bad(p, "scheme must be http or https");
            return None;
        }
    };
    let Some(auth) = uri.authority() else {
        bad(p, "no host");
        return None;
    };
    if auth.as_str().contains('@') {
        bad(p, "credentials in the URL are not allowed");
        return None;
    }
    if uri.path_and_query().is_some_and(|pq| pq.as_str() != "/") {
        bad(p, "a path is not allowed; requests keep their own path");
        return None;
    }
    let host_text = auth.host();
    let literal = host_text.trim_start_matches('[').trim_end_matches(']');
    let host = match literal.parse::<IpAddr>() {
        Ok(ip) => UpstreamHost::Ip(ip),
        Err(_) if !host_text.is_empty() => UpstreamHost::Name(host_text.to_ascii_lowercase()),
        Err(_) => {
            bad(p, "no host");
            return None;
        }
    };
    let port = auth.port_u16().unwrap_or(if https { 443 } else { 80 });
    Some(UpstreamUrl {
        url: url.clone(),
        https,
        host,
        port,
        authority: auth.as_str().to_owned(),
    })
}

/// Why a `path_prefix` can never match as written: requests are matched
/// decoded and normalised (`proxy::route`), so the prefix must be too.
fn prefix_problem(prefix: &str) -> Option<&'static str> {
    let segments: Vec<&str> = prefix.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    if !prefix.starts_with('/') {
        Some("must start with \"/\"")
    } else if prefix.contains('%') {
        Some("is matched against the decoded path: write the characters themselves, not %-escapes")
    } else if prefix.contains(['?', '#']) {
        Some("is matched against the path only: a query or fragment never matches")
    } else if segments
        .iter()
        .enumerate()
        .any(|(i, s)| s.is_empty() && i != last)
    {
        Some(
            "has an empty segment (\"//\"): requests are also read with repeated slashes merged, write it once",
        )
    } else if segments.iter().any(|s| *s == "." || *s == "..") {
        Some(
            "has a \".\" or \"..\" segment: requests are also read with dot segments removed, write the path they lead to",
        )
    } else {
        None
    }
}

/// A `buckets` entry: an S3 bucket name (lower case: an upper-case
/// spelling is another bucket to S3).
fn bucket(t: &Text, p: &mut Problems<'_>) -> Option<String> {
    let b = t.get_ref();
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let valid = (3..=63).contains(&b.len())
        && b.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && edge_ok(b.chars().next())
        && edge_ok(b.chars().last())
        && !b.contains("..")
        && b.parse::<std::net::Ipv4Addr>().is_err();
    if !valid {
        p.at(
            t.span(),
            format!("invalid bucket \"{b}\" (S3 bucket names are 3 to 63 lower-case letters, digits, '.' and '-', starting and ending with a letter or digit)"),
        );
        return None;
    }
    Some(b.clone())
}

/// `[server] s3_domains`: domain names, canonical.
fn s3_domains(list: &[Text], p: &mut Problems<'_>) -> Vec<String> {
    list.iter()
        .filter_map(|t| {
            let d = config_host(t.get_ref()).filter(|d| d.parse::<IpAddr>().is_err());
            if d.is_none() {
                p.at(
                    t.span(),
                    format!("invalid s3_domains entry \"{}\" (expected a domain such as \"s3.example.org\", without \"*.\" or port)", t.get_ref()),
                );
            }
            d
        })
        .collect()
}

/// `[geoip] nat64_prefixes`: IPv6 networks of a length RFC 6052 defines a
/// layout for, clear of the forms that are always unwrapped.
fn nat64_prefixes(list: &[Text], p: &mut Problems<'_>) -> Nat64Prefixes {
    let mut prefixes = Vec::new();
    for t in list {
        let s = t.get_ref();
        let Ok(net) = s.parse::<ipnet::Ipv6Net>() else {
            p.at(
                t.span(),
                format!("invalid NAT64 prefix \"{s}\" (expected an IPv6 network such as \"64:ff9b::/96\")"),
            );
            continue;
        };
        let prefix = match Nat64Prefix::new(net) {
            Ok(prefix) => prefix,
            Err(e) => {
                p.at(t.span(), format!("invalid NAT64 prefix \"{s}\": {e}"));
                continue;
            }
        };
        let (bits, len) = (u128::from(net.network()), net.prefix_len());
        if let Some(form) = FIXED_FORMS.iter().find(|f| f.overlaps(bits, len)) {
            p.at(
                t.span(),
                format!(
                    "invalid NAT64 prefix \"{s}\": it overlaps {}, which has its own meaning",
                    form.name
                ),
            );
            continue;
        }
        prefixes.push(prefix);
    }
    Nat64Prefixes::new(prefixes)
}

/// A network written inside a form whose addresses are judged as the IPv4
/// address they embed would never match anything: refused, with the fix.
/// IPv4-mapped networks are the exception: `NetworkTable` stores them as the
/// IPv4 network they describe. `::` and `::1` are not IPv4-compatible.
fn networks_not_unwrapped(raw: &RawConfig, nat64: &Nat64Prefixes, p: &mut Problems<'_>) {
    fn own(l: &Option<Vec<Text>>) -> &[Text] {
        l.as_deref().unwrap_or_default()
    }
    let lists = [
        &raw.server.trusted_proxies[..],
        &raw.policy.allow_networks,
        &raw.policy.deny_networks,
    ]
    .into_iter()
    .chain(raw.routes.iter().flat_map(|r| {
        let r = r.get_ref();
        [own(&r.allow_networks), own(&r.deny_networks)]
    }));
    for t in lists.flatten() {
        let Ok(ipnet::IpNet::V6(net)) = t
            .get_ref()
            .parse::<ipnet::IpNet>()
            .or_else(|_| t.get_ref().parse::<IpAddr>().map(ipnet::IpNet::from))
        else {
            continue;
        };
        let (bits, len) = (u128::from(net.network()), net.prefix_len());
        // ::/127 holds only :: and ::1, which are not IPv4-compatible.
        let not_compatible = len >= 127 && bits <= 1;
        let fixed = FIXED_FORMS
            .iter()
            .find(|f| !f.networks_inside_match && f.contains(bits, len) && !not_compatible)
            .map(|f| f.name.to_owned());
        let translated = nat64
            .iter()
            .find(|n| n.net().contains(&net))
            .map(|n| format!("the NAT64 prefix {n}"));
        if let Some(form) = fixed.or(translated) {
            p.at(
                t.span(),
                format!(
                    "network \"{}\" lies inside {form}, whose addresses are judged as the IPv4 address they embed: it would never match (write the IPv4 network instead)",
                    t.get_ref()
                ),
            );
        }
    }
}
