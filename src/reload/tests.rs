use super::rule_changes;

#[test]
fn rule_changes_name_each_changed_line_by_route() {
    let before =
        "residency-policy 1\npolicy.mode enforce\nroute a\nroute.hosts x\nroute b\nroute.hosts y\n";
    let after =
        "residency-policy 1\npolicy.mode monitor\nroute b\nroute.hosts z\nroute c\nroute.hosts y\n";
    assert_eq!(
        rule_changes(before, after),
        [
            "policy.mode: enforce -> monitor",
            "route[b].hosts: y -> z",
            "route c added",
            "route[c].hosts: (none) -> y",
            "route a removed",
            "route[a].hosts: x -> (none)",
        ]
    );
    let swapped =
        "residency-policy 1\npolicy.mode enforce\nroute b\nroute.hosts y\nroute a\nroute.hosts x\n";
    assert_eq!(rule_changes(before, swapped), ["route order: a,b -> b,a"]);
    assert!(rule_changes(before, before).is_empty());
}

const ROUTE: &str = "[[route]]\nname = \"s3\"\nupstreams = [\"http://127.0.0.1:9000\"]\n";

fn start_only(text: &str) -> super::StartOnly {
    let config = crate::config::Config::parse(std::path::Path::new("c.toml"), text).unwrap();
    super::StartOnly::of(&config)
}

/// Every key read only at start, changed at once: one plain message per
/// key, naming it with both values (no Rust `Debug` output).
#[test]
fn each_start_only_key_is_refused_on_its_own_in_plain_text() {
    let before = start_only(&format!("[server]\nlisten = [\"127.0.0.1:8080\"]\n{ROUTE}"));
    let after = start_only(&format!(
        "[server]\nlisten = [\"127.0.0.1:8080\", \"[::1]:8080\"]\ntls_listen = [\"127.0.0.1:8443\"]\n\
         max_connections = 10\n[server.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n\
         [admin]\nlisten = \"127.0.0.1:9999\"\n{ROUTE}\
         [audit]\nenabled = false\nqueue = 8\nsigning_key = \"k\"\norigin = \"paris-1\"\n\
         checkpoint_every = \"2m\"\nrotate_size = 100\nrotate_every = \"1h\"\n\
         [audit.export]\nendpoint = \"https://s3.example.org\"\nbucket = \"b\"\nregion = \"r\"\n\
         access_key_id = \"k\"\nsecret_access_key_file = \"s\"\n"
    ));
    let refused = before.refused(&after);
    let keys: Vec<&str> = refused
        .iter()
        .map(|m| m.split(" (running with").next().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "[server] listen",
            "[server] tls_listen",
            "[admin] listen",
            "[server] max_connections",
            "[audit] enabled",
            "[audit] queue",
            "[audit] signing_key",
            "[audit] origin",
            "[audit] checkpoint_every",
            "[audit] rotate_size",
            "[audit] rotate_every",
            "[audit.export]",
            "[audit.export] endpoint",
            "[audit.export] bucket",
            "[audit.export] prefix",
            "[audit.export] region",
            "[audit.export] access_key_id",
            "[audit.export] secret_access_key_file",
            "[audit.export] object_lock_mode and retain",
            "[audit.export] spool_max",
            "[audit.export] on_error",
        ]
    );
    assert_eq!(
        refused[0],
        "[server] listen (running with 127.0.0.1:8080, file has 127.0.0.1:8080, [::1]:8080) \
         cannot change on reload (read only at start); restart to apply"
    );
    assert_eq!(
        refused[8],
        "[audit] checkpoint_every (running with 60s, file has 120s) \
         cannot change on reload (read only at start); restart to apply"
    );
    assert_eq!(
        refused[11],
        "[audit.export] (running with off, file has on) \
         cannot change on reload (read only at start); restart to apply"
    );
    assert_eq!(
        refused[12],
        "[audit.export] endpoint (running with none, file has https://s3.example.org) \
         cannot change on reload (read only at start); restart to apply"
    );
    for m in &refused {
        assert!(
            !m.contains("Some(") && !m.contains('{') && !m.contains("\\n"),
            "{m}"
        );
    }
    assert!(before.refused(&before).is_empty());
}

/// Registry entries and grants are keyed by their id (a JSON string that
/// may hold spaces): one line says which was added, removed or changed.
#[test]
fn rule_changes_name_each_grant_and_identity_by_id() {
    let before = "residency-policy 1\nroute a\nroute.hosts x\n\
        identity \"AKIA1\" proof=sigv4 routes=all overdue=2027-01-10T00:00:00Z\n\
        identity \"CN=Jane Doe,O=V\" proof=mtls routes=all overdue=2027-01-10T00:00:00Z\n\
        grant \"CHG 1\" identity=\"AKIA1\" window=a/b\n";
    let after = "residency-policy 1\nroute a\nroute.hosts x\n\
        identity \"CN=Jane Doe,O=V\" proof=mtls routes=[\"a\"] overdue=2027-01-10T00:00:00Z\n\
        grant \"CHG 1\" identity=\"AKIA1\" window=a/b\n\
        grant \"CHG 2\" identity=\"AKIA2\" window=a/b\n";
    assert_eq!(
        rule_changes(before, after),
        [
            "identity CN=Jane Doe,O=V changed: proof=mtls routes=all overdue=2027-01-10T00:00:00Z \
             -> proof=mtls routes=[\"a\"] overdue=2027-01-10T00:00:00Z",
            "grant CHG 2 added",
            "identity AKIA1 removed",
        ]
    );
}
