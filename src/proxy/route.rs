//! Route choice (SPEC §4): routes whose `hosts` match the request's host (an
//! empty list matches any), then the longest matching `path_prefix`, ties in
//! file order.

use crate::config::RouteSpec;

/// The host part of a `Host` value, without port, for matching.
pub fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// The index of the route for `host` and `path`, if any.
pub fn choose<'a, I>(routes: I, host: &str, path: &str) -> Option<usize>
where
    I: IntoIterator<Item = &'a RouteSpec>,
{
    let host = host_without_port(host);
    let mut best: Option<(usize, usize)> = None;
    for (i, r) in routes.into_iter().enumerate() {
        let host_ok = r.hosts.is_empty() || r.hosts.iter().any(|p| p.matches(host));
        if !host_ok || !path.as_bytes().starts_with(r.path_prefix.as_bytes()) {
            continue;
        }
        let len = r.path_prefix.len();
        if best.is_none_or(|(_, l)| len > l) {
            best = Some((i, len));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn routes() -> Vec<RouteSpec> {
        let toml = r#"
            [[route]]
            name = "any"
            upstreams = ["http://127.0.0.1:1"]
            [[route]]
            name = "logs"
            path_prefix = "/logs/"
            upstreams = ["http://127.0.0.1:2"]
            [[route]]
            name = "logs-again"
            path_prefix = "/logs/"
            upstreams = ["http://127.0.0.1:3"]
            [[route]]
            name = "vhost"
            hosts = ["*.s3.example.org", "s3.example.org"]
            path_prefix = "/"
            upstreams = ["http://127.0.0.1:4"]
            [[route]]
            name = "other-host-only"
            hosts = ["other.example"]
            path_prefix = "/private/"
            upstreams = ["http://127.0.0.1:5"]
        "#;
        Config::parse(Path::new("t.toml"), toml).unwrap().routes
    }

    fn name(host: &str, path: &str) -> Option<String> {
        let r = routes();
        choose(&r, host, path).map(|i| r[i].name.clone())
    }

    #[test]
    fn longest_prefix_wins_and_ties_go_to_file_order() {
        assert_eq!(name("x", "/logs/a"), Some("logs".into()));
        assert_eq!(name("x", "/logsx"), Some("any".into()));
        assert_eq!(name("x", "/bucket/key"), Some("any".into()));
    }

    #[test]
    fn host_patterns_match_without_port_and_case() {
        assert_eq!(
            name("s3.example.org:9000", "/b"),
            Some("any".into()),
            "same prefix length: file order"
        );
        assert_eq!(
            name("Other.Example:80", "/private/x"),
            Some("other-host-only".into())
        );
        assert_eq!(name("other.example.evil", "/private/x"), Some("any".into()));
    }

    #[test]
    fn no_route_when_nothing_matches() {
        let r = routes();
        let only_host: Vec<RouteSpec> = r
            .into_iter()
            .filter(|r| r.name == "other-host-only")
            .collect();
        assert_eq!(choose(&only_host, "other.example", "/public"), None);
        assert_eq!(choose(&only_host, "nope", "/private/x"), None);
    }

    #[test]
    fn host_port_is_stripped() {
        assert_eq!(host_without_port("a.b:9000"), "a.b");
        assert_eq!(host_without_port("[::1]:9000"), "::1");
        assert_eq!(host_without_port("a.b"), "a.b");
    }
}
