use std::path::Path;

use super::*;

#[test]
fn path_within_refuses_every_spelling_that_leaves_the_prefix() {
    assert!(path_within("/radiology/a/b.dcm", "/radiology/"));
    assert!(path_within("/radiology/a%20b", "/radiology/"));
    for bad in [
        "/other/x",
        "/radiology/../other/x",
        "/radiology/./x",
        "/radiology/..",
        "/radiology//x",
        "/radiology/..%2Fother",
        "/radiology/%2e%2e/other",
        "/radiology/%2E%2E/other",
        "/radiology/a%5cb",
        "/radiology/a%252e",
        "/radiology/a\\..\\b",
        "/radiology/a;x=1",
        "/radiology/a%",
        "/radiology/a%2",
        "/radiology/a%00",
    ] {
        assert!(!path_within(bad, "/radiology/"), "{bad}");
    }
}

const ROUTES: &str = "[[route]]\nname = \"s3\"\nupstreams = [\"http://127.0.0.1:9\"]\n\
    [[route]]\nname = \"other\"\npath_prefix = \"/other/\"\nupstreams = [\"http://127.0.0.1:9\"]\n";

fn routes() -> Vec<RouteSpec> {
    crate::config::Config::parse(Path::new("c.toml"), ROUTES)
        .unwrap()
        .routes
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn signed_grants(
    dir: &Path,
    key: &keys::SigningKey,
    body: &str,
) -> (AccessSpec, std::path::PathBuf) {
    let path = write(dir, "grants.toml", body);
    let spec = AccessSpec {
        identities: None,
        grants: Some(GrantsSpec {
            file: path.clone(),
            approvers: vec![spec::Approver {
                name: "dpo".into(),
                public_key: keys::parse_public(&key.public()).unwrap(),
                owner: Some("J. Bernard".into()),
            }],
            min_approvals: 1,
            max_duration: std::time::Duration::from_secs(14 * 86_400),
            watch: None,
        }),
    };
    (spec, path)
}

const GRANT: &str = "[[grant]]\nid = \"CHG-1\"\nidentity = \"lab.example\"\nowner = \"Jane Doe\"\n\
    purpose = \"support\"\nfrom_countries = [\"US\"]\nmethods = [\"GET\"]\npath_prefix = \"/radiology/\"\n\
    not_before = 2026-12-07T08:00:00Z\nnot_after = 2026-12-07T18:00:00Z\n";

fn sign_text(key: &keys::SigningKey, body: &str) -> String {
    let entry = files::grants(Path::new("g.toml"), body, Some(&["s3", "other"])).unwrap();
    let sig = key.sign(&entry[0].signed.canonical());
    format!("{body}approvals = [{{ approver = \"dpo\", signature = \"{sig}\" }}]\n")
}

fn facts(now: i64) -> Facts<'static> {
    Facts {
        identity: "AKIAX",
        mtls_subject: Some("lab.example"),
        route: 0,
        method: "GET",
        path: "/radiology/a",
        host: "10.0.0.5:9000",
        copy_source: None,
        readings: &[],
        country: Country::from_code("US"),
        policy: Outcome::CountryNotAllowed,
        now,
    }
}

const NOON: i64 = 1_796_644_800; // 2026-12-07T12:00:00Z

#[test]
fn a_valid_grant_admits_only_its_identity_scope_countries_and_window() {
    assert_eq!(canonical::rfc3339(NOON), "2026-12-07T12:00:00Z");
    let dir = tempfile::tempdir().unwrap();
    let (private, _) = keys::keygen().unwrap();
    let key = keys::SigningKey::parse(&private).unwrap();
    let (spec, _) = signed_grants(dir.path(), &key, &sign_text(&key, GRANT));
    let access = load(&spec, &routes(), &[], &Metrics::new()).unwrap();
    assert_eq!(access.reports[0].status(NOON), "valid");
    assert_eq!(access.judge(&facts(NOON)), Judged::Granted(0));
    let mut f = facts(NOON);
    f.policy = Outcome::Passes;
    assert_eq!(
        access.judge(&f),
        Judged::Pass,
        "not refused: nothing to grant"
    );
    let edits: [fn(&mut Facts<'static>); 8] = [
        |f| f.mtls_subject = None,
        |f| f.mtls_subject = Some("other.example"),
        |f| f.method = "PUT",
        |f| f.path = "/radiology/../secret",
        |f| f.country = Country::from_code("CN"),
        |f| f.country = None,
        |f| f.now = NOON - 5 * 3600,
        |f| f.now = NOON + 6 * 3600,
    ];
    for edit in edits {
        let mut f = facts(NOON);
        edit(&mut f);
        assert_eq!(access.judge(&f), Judged::Pass, "{f:?}");
    }
}

#[test]
fn a_tampered_unsigned_self_approved_or_long_grant_opens_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (private, _) = keys::keygen().unwrap();
    let key = keys::SigningKey::parse(&private).unwrap();
    let cases = [
        (
            GRANT.to_owned(),
            "INVALID: unsigned: it carries no approval",
        ),
        (
            sign_text(&key, GRANT).replace("support", "supporT"),
            "INVALID: bad signature by \"dpo\": it does not verify over this grant's canonical bytes (edited after signing, or signed with another key); too few approvals: 0 valid of 1 required (distinct approvers)",
        ),
        (
            sign_text(&key, &GRANT.replace("Jane Doe", "J. Bernard")),
            "INVALID: self-approval: \"dpo\" is the grantee; too few approvals: 0 valid of 1 required (distinct approvers)",
        ),
        (
            sign_text(&key, &GRANT.replace("2026-12-07T18", "2026-12-27T08")),
            "INVALID: too long: lasts 20d, more than max_duration 14d",
        ),
    ];
    for (body, want) in cases {
        let (spec, _) = signed_grants(dir.path(), &key, &body);
        let access = load(&spec, &routes(), &[], &Metrics::new()).unwrap();
        assert_eq!(access.judge(&facts(NOON)), Judged::Pass);
        assert_eq!(access.reports[0].status(NOON), want);
    }
}

#[test]
fn the_example_files_parse_and_the_example_grant_is_unsigned() {
    let ids = files::identities(
        Path::new("identities.example.toml"),
        include_str!("../../config/identities.example.toml"),
        Some(&["s3"]),
    )
    .unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[1].proof, Proof::Mtls);
    let grants = files::grants(
        Path::new("grants.example.toml"),
        include_str!("../../config/grants.example.toml"),
        Some(&["s3"]),
    )
    .unwrap();
    assert_eq!(grants.len(), 1);
    let spec = GrantsSpec {
        file: "g".into(),
        approvers: vec![],
        min_approvals: 1,
        max_duration: std::time::Duration::from_secs(14 * 86_400),
        watch: None,
    };
    assert_eq!(
        grant::problems(&grants[0], &spec, None),
        [grant::Invalid::Unsigned]
    );
}

#[test]
fn bad_files_are_refused_with_every_problem_at_its_line_and_column() {
    let text = "[[identity]]\nid = \"A\"\nowner = \"o\"\nrole = \"r\"\nroutes = [\"nope\"]\n\
        granted = 2026-01-10\nreviewed = 2026-01-10T00:00:00Z\nreviewer = \"x\"\n\n\
        [[identity]]\nid = \"A\"\nowner = \"o\"\nrole = \"r\"\ngranted = 2026-01-10\n\
        reviewed = 2026-01-10\nreviewer = \"x\"\n";
    let err = files::identities(Path::new("i.toml"), text, Some(&["s3"])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "i.toml:5:11: unknown route \"nope\" (the config's routes: s3)\n\
         i.toml:7:12: expected a date such as 2026-01-10, found 2026-01-10T00:00:00Z\n\
         i.toml:11:6: duplicate identity \"A\""
    );
    let err = files::identities(
        Path::new("i.toml"),
        "[[identity]]\nid = \"A\"\nowner = 1\n",
        None,
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("i.toml:3:9: "), "{err}");
    let grant = "[[grant]]\nid = \"a b\"\nidentity = \"x\"\nowner = \"o\"\npurpose = \"p\"\n\
        from_countries = [\"EEA\"]\nmethods = [\"get\"]\npath_prefix = \"radiology\"\n\
        not_before = 2026-12-07T08:00:00Z\nnot_after = 2026-12-07T08:00:00\n\
        approvals = [{ approver = \"dpo\", signature = \"AAAA\" }]\n";
    let err = files::grants(Path::new("g.toml"), grant, None).unwrap_err();
    let lines: Vec<String> = err.to_string().lines().map(str::to_owned).collect();
    let at: Vec<&str> = lines
        .iter()
        .map(|l| l.splitn(4, ':').take(3).last().unwrap_or(""))
        .collect();
    assert_eq!(lines.len(), 6, "{err}");
    assert_eq!(at, ["6", "19", "12", "15", "13", "46"], "{err}");
}

mod prop {
    use proptest::prelude::*;

    use super::path_within;

    fn decode(path: &str) -> Vec<u8> {
        let b = path.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%'
                && let Some(v) = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
            out.push(b[i]);
            i += 1;
        }
        out
    }

    fn segment() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                Just("a".to_owned()),
                Just(".".to_owned()),
                Just("..".to_owned()),
                Just("%2e".to_owned()),
                Just("%2E".to_owned()),
                Just("%2f".to_owned()),
                Just("%5C".to_owned()),
                Just("%25".to_owned()),
                Just("%20".to_owned()),
                Just("\\".to_owned()),
                Just(";".to_owned()),
                Just("radiology".to_owned()),
            ],
            0..4,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        /// Whatever a path admitted under a prefix is made of, the storage
        /// reads it (decoding once or twice, resolving dot segments) under
        /// that prefix.
        #[test]
        fn an_admitted_path_stays_under_the_prefix_however_it_is_read(
            segments in prop::collection::vec(segment(), 1..6)
        ) {
            let path = format!("/{}", segments.join("/"));
            if path_within(&path, "/radiology/") {
                for decoded in [decode(&path), decode(&String::from_utf8_lossy(&decode(&path)))] {
                    prop_assert!(decoded.starts_with(b"/radiology/"), "{path}");
                    for seg in decoded.split(|&c| c == b'/' || c == b'\\') {
                        prop_assert!(seg != b"." && seg != b"..", "{path}");
                    }
                }
            }
        }
    }
}

#[test]
fn approvals_count_once_per_known_distinct_approver() {
    let (k1, p1) = keys::keygen().unwrap();
    let (k2, p2) = keys::keygen().unwrap();
    let (k1, k2) = (
        keys::SigningKey::parse(&k1).unwrap(),
        keys::SigningKey::parse(&k2).unwrap(),
    );
    let entry = &files::grants(Path::new("g"), GRANT, None).unwrap()[0];
    let message = entry.signed.canonical();
    let approval = |name: &str, key: &keys::SigningKey| files::Approval {
        approver: name.into(),
        signature: key.sign(&message),
    };
    let approver = |name: &str, public: &str| spec::Approver {
        name: name.into(),
        public_key: keys::parse_public(public).unwrap(),
        owner: None,
    };
    let spec = GrantsSpec {
        file: "g".into(),
        approvers: vec![approver("dpo", &p1), approver("ciso", &p2)],
        min_approvals: 2,
        max_duration: std::time::Duration::from_secs(86_400),
        watch: None,
    };
    let with = |approvals: Vec<files::Approval>| {
        let mut g = entry.clone();
        g.approvals = approvals;
        grant::problems(&g, &spec, None)
    };
    assert_eq!(with(vec![approval("dpo", &k1), approval("ciso", &k2)]), []);
    assert_eq!(
        with(vec![approval("dpo", &k1), approval("dpo", &k1)]),
        [
            grant::Invalid::RepeatedApprover("dpo".into()),
            grant::Invalid::TooFewApprovals { have: 1, need: 2 }
        ]
    );
    assert_eq!(
        with(vec![approval("dpo", &k1), approval("cfo", &k2)]),
        [
            grant::Invalid::UnknownApprover("cfo".into()),
            grant::Invalid::TooFewApprovals { have: 1, need: 2 }
        ]
    );
    // ciso's name with dpo's signature: not ciso's approval.
    assert_eq!(
        with(vec![approval("dpo", &k1), approval("ciso", &k1)]),
        [
            grant::Invalid::BadSignature("ciso".into()),
            grant::Invalid::TooFewApprovals { have: 1, need: 2 }
        ]
    );
    // The registry's owner of the grantee holding an approver key.
    let mut spec2 = spec.clone();
    spec2.approvers[1].owner = Some("Dr A. Martin".into());
    let mut g = entry.clone();
    g.approvals = vec![approval("dpo", &k1), approval("ciso", &k2)];
    assert_eq!(
        grant::problems(&g, &spec2, Some("dr a. martin")),
        [
            grant::Invalid::SelfApproval("ciso".into()),
            grant::Invalid::TooFewApprovals { have: 1, need: 2 }
        ]
    );
}

#[test]
fn bad_access_sections_of_the_main_config_are_located() {
    let text = format!(
        "{ROUTES}[identities]\nfile = \"\"\non_overdue = \"warn\"\nreview_every = \"0d\"\n\
         [grants]\nfile = \"g.toml\"\nmin_approvals = 0\n\
         approvers = [{{ name = \"dpo\", public_key = \"ed25519:AAAA\" }}]\nmax_duration = \"1y\"\n"
    );
    let err = crate::config::Config::parse(Path::new("c.toml"), &text).unwrap_err();
    let lines: Vec<String> = err
        .to_string()
        .lines()
        .map(|l| l.split(": ").next().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        lines,
        [
            "c.toml:9:8",
            "c.toml:10:14",
            "c.toml:11:16",
            "c.toml:14:17",
            "c.toml:15:43",
            "c.toml:16:16"
        ],
        "{err}"
    );
}

/// The commented `[identities]` and `[grants]` keys of the shipped config,
/// uncommented, give the defaults of their optional keys.
#[test]
fn the_shipped_access_keys_document_the_defaults() {
    let shipped = include_str!("../../config/residency-proxy.toml");
    let after = |header: &str| {
        let section = shipped.split_once(&format!("# {header}\n")).unwrap().1;
        section
            .lines()
            .take_while(|l| !l.starts_with("# [") && !l.starts_with("# Export"))
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| {
                l.split_once(" = ")
                    .is_some_and(|(k, _)| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            })
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    };
    let (ids, grants) = (after("[identities]"), after("[grants]"));
    assert_eq!(ids.lines().count(), 6, "{ids}");
    assert_eq!(grants.lines().count(), 6, "{grants}");
    let key = keys::keygen().unwrap().1;
    let grants = grants.replace("ed25519:<base64 of 32 bytes>", &key);
    let parse = |text: String| {
        crate::config::Config::parse(Path::new("c.toml"), &format!("{ROUTES}{text}"))
            .unwrap()
            .access
    };
    let documented = parse(format!("[identities]\n{ids}[grants]\n{grants}"));
    let minimal = parse(format!(
        "[identities]\nfile = \"config/identities.toml\"\n[grants]\nfile = \"config/grants.toml\"\n\
         approvers = [{{ name = \"dpo\", public_key = \"{key}\", owner = \"J. Bernard <dpo@chu.example>\" }}]\n"
    ));
    assert_eq!(documented, minimal);
}

/// A grant's path prefix holds however the storage reads the bucket: a
/// virtual-hosted request (`<bucket>.<s3 domain>`) is read as
/// `/<bucket><path>`, and a host starting with a bucket a route names is
/// read both ways.
#[test]
fn a_path_prefix_holds_for_virtual_hosted_requests_too() {
    let dir = tempfile::tempdir().unwrap();
    let (private, _) = keys::keygen().unwrap();
    let key = keys::SigningKey::parse(&private).unwrap();
    let (spec, _) = signed_grants(dir.path(), &key, &sign_text(&key, GRANT));
    let routes = crate::config::Config::parse(
        Path::new("c.toml"),
        &ROUTES.replace(
            "path_prefix = \"/other/\"",
            "buckets = [\"secret\", \"radiology\"]",
        ),
    )
    .unwrap()
    .routes;
    let access = load(&spec, &routes, &["s3.example".to_owned()], &Metrics::new()).unwrap();
    let judge = |host: &'static str, path: &'static str| {
        let mut f = facts(NOON);
        f.host = host;
        f.path = path;
        access.judge(&f)
    };
    assert_eq!(judge("s3.example", "/radiology/a"), Judged::Granted(0));
    assert_eq!(
        judge("S3.example.:9000", "/radiology/a"),
        Judged::Granted(0)
    );
    assert_eq!(judge("10.0.0.5:9000", "/radiology/a"), Judged::Granted(0));
    assert_eq!(judge("[::1]:9000", "/radiology/a"), Judged::Granted(0));
    assert_eq!(judge("storage", "/radiology/a"), Judged::Granted(0));
    assert_eq!(judge("radiology.s3.example", "/a"), Judged::Granted(0));
    assert_eq!(judge("RADIOLOGY.S3.EXAMPLE.:443", "/a"), Judged::Granted(0));
    for (host, path) in [
        ("secret.s3.example", "/radiology/a"),
        ("other.s3.example:9000", "/radiology/a"),
        ("secret.storage.example", "/radiology/a"),
        ("radiology.s3.example", "/../secret/a"),
        ("s3.example.evil.example", "/a"),
        // The client's Host reaches the storage, which may serve a domain
        // the config does not declare: `unnamed` is a bucket no route names.
        ("storage.example", "/radiology/a"),
        ("unnamed.storage.example", "/radiology/a"),
        ("unnamed.10.0.0.5", "/radiology/a"),
        ("[::ffff:10.0.0.5]x", "/radiology/a"),
    ] {
        assert_eq!(judge(host, path), Judged::Pass, "{host} {path}");
    }
    // A route that sends the upstream's own Host: read path-style only.
    let routes: Vec<RouteSpec> = routes
        .into_iter()
        .map(|mut r| {
            r.preserve_host = false;
            r
        })
        .collect();
    let access = load(&spec, &routes, &["s3.example".to_owned()], &Metrics::new()).unwrap();
    let mut f = facts(NOON);
    f.host = "unnamed.storage.example";
    assert_eq!(access.judge(&f), Judged::Granted(0));
}

/// A copy reads its source: a grant scoped to a prefix or a route admits
/// a copy only when the source is within that scope too.
#[test]
fn a_grant_admits_a_copy_only_from_within_its_scope() {
    let dir = tempfile::tempdir().unwrap();
    let (private, _) = keys::keygen().unwrap();
    let key = keys::SigningKey::parse(&private).unwrap();
    let prefixed = GRANT.replace("[\"GET\"]", "[\"GET\", \"PUT\"]");
    let routed = prefixed.replace("path_prefix = \"/radiology/\"\n", "routes = [\"s3\"]\n");
    type Sources<'a> = &'a [(Option<usize>, &'a str)];
    let cases: [(&str, Sources<'_>, Sources<'_>); 2] = [
        (
            &prefixed,
            &[(Some(0), "/radiology/a"), (Some(0), "/radiology/a%20b")],
            &[
                (Some(0), "/secret/a"),
                (Some(0), "/radiology/../secret/a"),
                (Some(0), "/radiology/%2e%2e/secret/a"),
                (Some(0), "/radiology/..%2Fsecret"),
                (Some(0), "/Radiology/a"),
            ],
        ),
        (
            &routed,
            &[(Some(0), "/secret/a")],
            &[(Some(1), "/other/a"), (None, "/nowhere/a")],
        ),
    ];
    for (body, within, outside) in cases {
        let (spec, _) = signed_grants(dir.path(), &key, &sign_text(&key, body));
        let access = load(&spec, &routes(), &[], &Metrics::new()).unwrap();
        let mut f = facts(NOON);
        f.method = "PUT";
        for &source in within {
            f.copy_source = Some(source);
            assert_eq!(access.judge(&f), Judged::Granted(0), "{body} {source:?}");
        }
        for &source in outside {
            f.copy_source = Some(source);
            assert_eq!(access.judge(&f), Judged::Pass, "{body} {source:?}");
        }
    }
}

/// A copy reads its source: an identity listed for some routes is refused
/// a copy whose source another route serves.
#[test]
fn the_registry_refuses_a_copy_from_a_route_the_identity_is_not_listed_for() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "identities.toml",
        "[[identity]]\nid = \"AKIAOTHER\"\nowner = \"B. Petit\"\nrole = \"billing\"\n\
         routes = [\"other\"]\ngranted = 2026-01-10\nreviewed = 2026-11-10\nreviewer = \"DPO\"\n",
    );
    let spec = AccessSpec {
        identities: Some(spec::IdentitiesSpec {
            file,
            require_known: true,
            review_every: std::time::Duration::from_secs(365 * 86_400),
            on_overdue: OnOverdue::Flag,
            watch: None,
        }),
        grants: None,
    };
    let access = load(&spec, &routes(), &[], &Metrics::new()).unwrap();
    let mut f = facts(NOON);
    f.identity = "AKIAOTHER";
    f.policy = Outcome::Passes;
    f.route = 1;
    assert_eq!(access.judge(&f), Judged::Pass);
    f.copy_source = Some((Some(1), "/other/b"));
    assert_eq!(access.judge(&f), Judged::Pass);
    for source in [Some(0), None] {
        f.copy_source = Some((source, "/secret/a"));
        assert_eq!(
            access.judge(&f),
            Judged::Refused(AccessRefusal::RouteNotGranted),
            "{source:?}"
        );
    }
}

/// Four eyes are two people: two approver keys held by one person count
/// once, and a self-approval is recognised however the person is written.
#[test]
fn two_keys_of_one_person_count_once_and_self_approval_sees_through_spelling() {
    let (k1, p1) = keys::keygen().unwrap();
    let (k2, p2) = keys::keygen().unwrap();
    let (k1, k2) = (
        keys::SigningKey::parse(&k1).unwrap(),
        keys::SigningKey::parse(&k2).unwrap(),
    );
    let mut entry = files::grants(Path::new("g"), GRANT, None).unwrap()[0].clone();
    entry.signed.owner = "Jane Doe <jane@vendor.example>".into();
    let message = entry.signed.canonical();
    let approver = |name: &str, public: &str, owner: Option<&str>| spec::Approver {
        name: name.into(),
        public_key: keys::parse_public(public).unwrap(),
        owner: owner.map(Into::into),
    };
    let problems = |a1: spec::Approver, a2: spec::Approver| {
        let mut g = entry.clone();
        g.approvals = vec![
            files::Approval {
                approver: a1.name.clone(),
                signature: k1.sign(&message),
            },
            files::Approval {
                approver: a2.name.clone(),
                signature: k2.sign(&message),
            },
        ];
        let spec = GrantsSpec {
            file: "g".into(),
            approvers: vec![a1, a2],
            min_approvals: 2,
            max_duration: std::time::Duration::from_secs(86_400),
            watch: None,
        };
        grant::problems(&g, &spec, None)
    };
    let too_few = grant::Invalid::TooFewApprovals { have: 1, need: 2 };
    for (o1, o2) in [
        ("J. Bernard", "J. Bernard"),
        ("J. Bernard", "  j.  BERNARD "),
        (
            "J. Bernard <dpo@chu.example>",
            "Jean Bernard <DPO@chu.example>",
        ),
        ("Élise Roux", "ÉLISE ROUX"),
    ] {
        assert_eq!(
            problems(
                approver("dpo-laptop", &p1, Some(o1)),
                approver("dpo-token", &p2, Some(o2))
            ),
            std::slice::from_ref(&too_few),
            "{o1} / {o2}"
        );
    }
    // An approver without owner is the person its name says.
    assert_eq!(
        problems(
            approver("dpo", &p1, None),
            approver("ciso", &p2, Some("DPO"))
        ),
        std::slice::from_ref(&too_few)
    );
    assert_eq!(
        problems(
            approver("dpo", &p1, Some("J. Bernard")),
            approver("ciso", &p2, Some("M. Leroy"))
        ),
        []
    );
    for grantee in ["JANE  doe", "Someone <JANE@vendor.example>", "jane doe"] {
        assert_eq!(
            problems(
                approver("dpo", &p1, Some("J. Bernard")),
                approver("ciso", &p2, Some(grantee))
            ),
            [grant::Invalid::SelfApproval("ciso".into()), too_few.clone()],
            "{grantee}"
        );
    }
}

fn listed(id: &str) -> files::Identity {
    let text = format!(
        "[[identity]]\nid = \"{id}\"\nowner = \"B. Petit\"\nrole = \"billing\"\n\
         granted = 2026-01-10\nreviewed = 2026-11-10\nreviewer = \"DPO\"\n"
    );
    files::identities(Path::new("i.toml"), &text, None).unwrap()[0].clone()
}

/// Anyone can claim a key id: a request blocked, refused, or refused by
/// the storage for its credential is counted but is no use, so claims
/// keep no unused identity off the removal list; a policy change record
/// is no request at all.
#[test]
fn the_review_counts_as_use_only_what_the_storage_accepted() {
    use crate::audit::record::example;
    let rec = |n: u64, id: &str, decision: &str, status: u16| {
        let mut r = example(n);
        r.identity = id.into();
        r.decision = decision.into();
        r.status = status;
        r
    };
    let mut policy = rec(9, "anonymous", crate::audit::POLICY, 0);
    policy.reason = Some(crate::audit::POLICY_CHANGED.into());
    let records = vec![
        rec(1, "AKIAOLD", "blocked", 451),
        rec(2, "AKIAOLD", "allowed", 403),
        rec(3, "AKIAOLD", "allowed", 401),
        rec(4, "AKIAOLD", "allowed", 400),
        rec(5, "AKIAOLD", "refused", 403),
        rec(6, "AKIAOLD", "allowed", 502),
        rec(7, "AKIAUSED", "allowed", 404),
        rec(8, "AKIAUSED", "flagged", 200),
        policy,
    ];
    let now = NOON + 30 * 86_400;
    let r = review::review(
        &[listed("AKIAOLD"), listed("AKIAUSED")],
        365 * 86_400,
        records.into_iter(),
        now,
    );
    assert_eq!(r.records, 8, "the policy change record is not a request");
    assert!(r.unlisted.is_empty(), "{:?}", r.unlisted);
    let (old, used) = (&r.identities[0], &r.identities[1]);
    assert_eq!(old.usage.requests, 6);
    assert_eq!(old.usage.not_admitted, 6);
    assert_eq!(old.usage.first_use, None);
    assert!(old.unused, "claims alone are no use");
    assert_eq!(used.usage.requests, 2);
    assert_eq!(used.usage.not_admitted, 0);
    assert_eq!(
        used.usage.first_use.as_deref(),
        Some("2026-11-28T15:20:07.123Z")
    );
    assert!(!used.unused);
}

/// Whatever the trail or the registry holds (an mTLS subject is free
/// text; a crafted trail, any time), the review's HTML and Markdown show
/// it as text: no tag, no image, no link.
#[test]
fn hostile_values_stay_text_in_the_review() {
    use crate::audit::record::example;
    let hostile = "<img src=//evil.example/x>![x](https://evil.example/y.png)[l](javascript:1)|\n";
    let mut r = example(1);
    r.identity = hostile.into();
    r.decision = "allowed".into();
    r.status = 200;
    r.time = "\"><script>alert(1)</script>".into();
    r.client_country = "<b>".into();
    let mut listed_hostile = listed("AKIAX");
    listed_hostile.owner = hostile.into();
    let mut r2 = r.clone();
    r2.identity = "AKIAX".into();
    let review = review::review(
        &[listed_hostile],
        365 * 86_400,
        vec![r, r2].into_iter(),
        NOON,
    );
    let html = review.to_html();
    for bad in ["<img", "<script", "<b>"] {
        assert!(!html.contains(bad), "{bad}: {html}");
    }
    let md = review.to_markdown();
    for bad in ["<img", "<script", "<b>", "![", "](", "[l]"] {
        let unescaped = md.match_indices(bad).any(|(i, _)| !md[..i].ends_with('\\'));
        assert!(!unescaped, "{bad}: {md}");
    }
    assert!(
        md.contains("\\<img src=//evil.example/x\\>\\!\\[x\\]"),
        "{md}"
    );
}

/// The storage may act on any reading of the path: each reading's route
/// must be within the identity's and the grant's routes.
#[test]
fn every_reading_of_the_path_must_be_within_the_routes() {
    let dir = tempfile::tempdir().unwrap();
    let (private, _) = keys::keygen().unwrap();
    let key = keys::SigningKey::parse(&private).unwrap();
    let routed = GRANT.replace("path_prefix = \"/radiology/\"\n", "routes = [\"other\"]\n");
    let (spec, _) = signed_grants(dir.path(), &key, &sign_text(&key, &routed));
    let access = load(&spec, &routes(), &[], &Metrics::new()).unwrap();
    let mut f = facts(NOON);
    f.route = 1;
    f.readings = &[Some(1)];
    assert_eq!(access.judge(&f), Judged::Granted(0));
    for readings in [&[Some(1), Some(0)][..], &[Some(1), None], &[None]] {
        f.readings = readings;
        assert_eq!(access.judge(&f), Judged::Pass, "{readings:?}");
    }
}

/// HTTP methods are case-sensitive tokens: `get` is not `GET`, so a grant
/// for `GET` does not admit it (and no storage serves it as a read).
#[test]
fn a_method_in_another_case_is_another_method() {
    let dir = tempfile::tempdir().unwrap();
    let (private, _) = keys::keygen().unwrap();
    let key = keys::SigningKey::parse(&private).unwrap();
    let (spec, _) = signed_grants(dir.path(), &key, &sign_text(&key, GRANT));
    let access = load(&spec, &routes(), &[], &Metrics::new()).unwrap();
    let mut f = facts(NOON);
    assert_eq!(access.judge(&f), Judged::Granted(0));
    for method in ["get", "Get", "GET ", "HEAD"] {
        f.method = method;
        assert_eq!(access.judge(&f), Judged::Pass, "{method}");
    }
    // The window is [not_before, not_after): the last second is out.
    let mut f = facts(NOON);
    f.now = 1_796_666_400; // 2026-12-07T18:00:00Z, the grant's not_after
    assert_eq!(access.judge(&f), Judged::Pass);
    f.now -= 1;
    assert_eq!(access.judge(&f), Judged::Granted(0));
    f.now = 1_796_630_400; // 08:00:00Z, its not_before
    assert_eq!(access.judge(&f), Judged::Granted(0));
    f.now -= 1;
    assert_eq!(access.judge(&f), Judged::Pass);
}

/// A path prefix scopes objects: the bucket itself (a listing of every
/// key, or its configuration: `?replication`, `?policy`, `?acl`) is
/// outside any prefix, however the request is spelled or addressed.
#[test]
fn a_prefix_grant_admits_objects_never_the_bucket_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (private, _) = keys::keygen().unwrap();
    let key = keys::SigningKey::parse(&private).unwrap();
    for prefix in ["/radiology/", "/radiology"] {
        let body = GRANT.replace("\"/radiology/\"", &format!("\"{prefix}\""));
        let (spec, _) = signed_grants(dir.path(), &key, &sign_text(&key, &body));
        let access = load(
            &spec,
            &routes(),
            &["s3.example".to_owned()],
            &Metrics::new(),
        )
        .unwrap();
        let judge = |host: &'static str, path: &'static str| {
            let mut f = facts(NOON);
            f.host = host;
            f.path = path;
            access.judge(&f)
        };
        assert_eq!(judge("10.0.0.5", "/radiology/a"), Judged::Granted(0));
        assert_eq!(judge("radiology.s3.example", "/a"), Judged::Granted(0));
        for (host, path) in [
            ("10.0.0.5", "/radiology/"),
            ("10.0.0.5", "/radiology"),
            ("s3.example", "/radiology/"),
            ("radiology.s3.example", "/"),
            ("radiology.s3.example", ""),
        ] {
            assert_eq!(judge(host, path), Judged::Pass, "{prefix}: {host} {path}");
        }
    }
}

/// `check` and `grants check` warn about what a grant's scope admits
/// beyond what its author may expect: whole buckets without a prefix, a
/// string prefix without a trailing `/`, and hosts read virtual-hosted
/// without `[server] s3_domains`; a tight grant gets no warning.
#[test]
fn a_grants_scope_is_warned_about_where_it_admits_more_than_it_seems() {
    let tight = canonical::Signed {
        id: "CHG-1".into(),
        identity: "lab.example".into(),
        proof: Proof::Mtls,
        owner: "Jane Doe".into(),
        purpose: "support".into(),
        from_countries: vec!["US".into()],
        routes: vec![],
        methods: vec!["GET".into()],
        path_prefix: "/radiology/".into(),
        not_before: 0,
        not_after: 3600,
    };
    assert!(scope_warnings(&tight, true).is_empty());
    let no_domains = scope_warnings(&tight, false);
    assert_eq!(no_domains.len(), 1, "{no_domains:?}");
    assert!(no_domains[0].contains("s3_domains"), "{no_domains:?}");
    let string_prefix = canonical::Signed {
        path_prefix: "/radiology".into(),
        ..tight.clone()
    };
    let w = scope_warnings(&string_prefix, true);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("\"/radiology2/\""), "{w:?}");
    let whole = canonical::Signed {
        path_prefix: String::new(),
        methods: vec![],
        ..tight
    };
    let w = scope_warnings(&whole, false);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("whole buckets") && w[0].contains("(all)"),
        "{w:?}"
    );
}

#[test]
fn a_value_quoted_in_a_problem_cannot_forge_another_line() {
    // A proof whose text holds a line break and a forged problem: the
    // refusal stays one line per problem, the break written `\u{a}`.
    let text = "[[identity]]\nid = \"a\"\nowner = \"o\"\nrole = \"r\"\n\
        proof = \"x\\nids.toml:1:1: ok\\u202e\"\ngranted = 2026-01-01\n\
        reviewed = 2026-01-01\nreviewer = \"r\"\n";
    let e = files::identities(Path::new("ids.toml"), text, None)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "ids.toml:5:9: unknown proof \"x\\u{a}ids.toml:1:1: ok\\u{202e}\" (expected \"sigv4\" or \"mtls\")"
    );
    // So in a quoted key toml reports as unknown (its line break a space).
    let e = files::identities(Path::new("ids.toml"), "\"a\\nb\\u2066\" = 1\n", None)
        .unwrap_err()
        .to_string();
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("\"a b\\u{2066}\""), "{e}");
}

#[test]
fn a_signature_with_a_control_character_is_refused() {
    let (k, _) = keys::keygen().unwrap();
    let key = keys::SigningKey::parse(&k).unwrap();
    let signed = sign_text(&key, GRANT);
    assert!(files::grants(Path::new("g.toml"), &signed, None).is_ok());
    // Trimmed away before, so accepted with it.
    for hidden in ["\\t", "\\n", "\\u0085", "\\u202e"] {
        let text = signed.replace("\" }]", &format!("{hidden}\" }}]"));
        let e = files::grants(Path::new("g.toml"), &text, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("signature must be the base64 of a 64-byte Ed25519 signature"),
            "{hidden}: {e}"
        );
    }
}
