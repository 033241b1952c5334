//! Governed access (SPEC §9), end to end on the real binary: the identity
//! registry, signed grants (made and signed with `grants keygen` / `grants
//! sign`), `grants check`, `access-review`, and reload.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use residency_proxy::access::canonical::{date, rfc3339};

use crate::support::proxy::BIN;
use crate::support::tls::{TestCa, client_config, https_get};
use crate::support::{Client, Layout, Origin, Proxy, config, ips, standard_geo};

pub(crate) const US_BLOCKED: &str = "blocked; side=client; country=US; reason=country_not_allowed";

pub(crate) fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

pub(crate) fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .unwrap()
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// SigV4 `Authorization` claiming `key`.
pub(crate) fn sigv4(key: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={key}/20261206/eu-west-3/s3/aws4_request, SignedHeaders=host, Signature=0123abcd"
    )
}

/// An approver key made by `grants keygen`: (private key path, public text).
pub(crate) fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(format!("{name}.key"));
    let out = run(&["grants", "keygen", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let public = text(&out.stdout).trim().to_owned();
    assert!(public.starts_with("ed25519:"), "{public}");
    assert_eq!(
        std::fs::read_to_string(format!("{}.pub", path.display())).unwrap(),
        format!("{public}\n")
    );
    (path, public)
}

pub(crate) fn sign(key: &Path, approver: &str, file: &Path, id: &str) {
    let out = run(&[
        "grants",
        "sign",
        "--key",
        key.to_str().unwrap(),
        "--approver",
        approver,
        file.to_str().unwrap(),
        id,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// A `[[grant]]` block for `identity`, from `start` to `end` (seconds from
/// now), with `extra` lines.
pub(crate) fn grant(id: &str, identity: &str, start: i64, end: i64, extra: &str) -> String {
    let t = now();
    format!(
        "[[grant]]\nid = \"{id}\"\nidentity = \"{identity}\"\nowner = \"Jane Doe <jane@vendor.example>\"\n\
         purpose = \"support case 4711\"\nfrom_countries = [\"US\"]\n{extra}\n\
         not_before = {}\nnot_after = {}\n\n",
        rfc3339(t + start),
        rfc3339(t + end)
    )
}

pub(crate) struct Setup {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) key: PathBuf,
    pub(crate) public: String,
    pub(crate) grants: PathBuf,
}

impl Setup {
    /// A key for approver "dpo" and a grants file with `grants`, each
    /// grant whose id is in `signed` signed by "dpo".
    pub(crate) fn new(grants: &str, signed: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (key, public) = keygen(dir.path(), "dpo");
        let file = dir.path().join("grants.toml");
        std::fs::write(&file, grants).unwrap();
        for id in signed {
            sign(&key, "dpo", &file, id);
        }
        Self {
            dir,
            key,
            public,
            grants: file,
        }
    }

    /// `[grants]` (and `identities`, if given) for the config.
    pub(crate) fn sections(&self, identities: Option<&str>) -> String {
        let mut s = format!(
            "\n[grants]\nfile = \"{}\"\napprovers = [{{ name = \"dpo\", public_key = \"{}\", owner = \"J. Bernard <dpo@chu.example>\" }}]\nmax_duration = \"14d\"\n",
            self.grants.display(),
            self.public
        );
        if let Some(ids) = identities {
            let file = self.dir.path().join("identities.toml");
            let (body, options) = ids.split_once("\n---\n").unwrap_or((ids, ""));
            std::fs::write(&file, body).unwrap();
            s.push_str(&format!(
                "\n[identities]\nfile = \"{}\"\n{options}\n",
                file.display()
            ));
        }
        s
    }
}

pub(crate) async fn get(
    proxy: &Proxy,
    from: &str,
    path: &str,
    key: Option<&str>,
) -> crate::support::client::Reply {
    let auth = key.map(sigv4);
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    Client::bound_to(from)
        .get(proxy.addr(), path, &headers)
        .await
}

fn metric(m: &str, name: &str) -> String {
    m.lines()
        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
        .unwrap_or_default()
}

#[tokio::test]
async fn a_valid_sigv4_grant_admits_only_its_identity_method_path_country_and_window() {
    let grants = [
        grant(
            "CHG-1",
            "AKIAVENDOR",
            -3600,
            3600,
            "proof = \"sigv4\"\nmethods = [\"GET\", \"HEAD\"]\npath_prefix = \"/radiology/\"",
        ),
        grant("CHG-SOON", "AKIASOON", 3600, 7200, "proof = \"sigv4\""),
        grant("CHG-PAST", "AKIAPAST", -7200, -3600, "proof = \"sigv4\""),
    ]
    .concat();
    let setup = Setup::new(&grants, &["CHG-1", "CHG-SOON", "CHG-PAST"]);
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let toml = config(&geo, &origin, "", "", "") + &setup.sections(None);
    let proxy = Proxy::start(&toml);

    // Without a grant, a US client is refused by country.
    let rsp = get(&proxy, ips::US, "/radiology/scan.dcm", None).await;
    assert_eq!(rsp.status, 451);
    assert_eq!(rsp.header("x-residency-decision"), US_BLOCKED);
    assert_eq!(origin.request_count(), 0);

    let rsp = get(&proxy, ips::US, "/radiology/scan.dcm", Some("AKIAVENDOR")).await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    assert_eq!(
        rsp.header("x-residency-decision"),
        "allowed; side=client; country=US; grant=CHG-1"
    );
    assert_eq!(origin.request_count(), 1);

    // Outside the grant's identity, method, path, country or window: as if
    // it did not exist.
    let put = Client::bound_to(ips::US)
        .send(
            proxy.addr(),
            http::Request::put("/radiology/scan.dcm")
                .header("host", "s3.test")
                .header("authorization", sigv4("AKIAVENDOR"))
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await;
    assert_eq!(put.status, 451, "another method");
    for (from, path, key, what) in [
        (
            ips::US,
            "/radiology/scan.dcm",
            Some("AKIAOTHER"),
            "another identity",
        ),
        (ips::US, "/radiology/scan.dcm", None, "no identity"),
        (
            ips::US,
            "/cardiology/scan.dcm",
            Some("AKIAVENDOR"),
            "another path",
        ),
        (
            ips::US,
            "/radiology/../cardiology/x",
            Some("AKIAVENDOR"),
            "a path leaving the prefix",
        ),
        (
            ips::US,
            "/radiology/..%2Fcardiology/x",
            Some("AKIAVENDOR"),
            "an encoded slash",
        ),
        (
            ips::CN,
            "/radiology/scan.dcm",
            Some("AKIAVENDOR"),
            "another country",
        ),
        (
            ips::US,
            "/radiology/scan.dcm",
            Some("AKIASOON"),
            "before the window",
        ),
        (
            ips::US,
            "/radiology/scan.dcm",
            Some("AKIAPAST"),
            "after the window",
        ),
    ] {
        let rsp = get(&proxy, from, path, key).await;
        assert_eq!(rsp.status, 451, "{what}");
        assert!(
            rsp.header("x-residency-decision")
                .starts_with("blocked; side=client;"),
            "{what}"
        );
    }
    assert_eq!(origin.request_count(), 1);

    let records = proxy.audit_records();
    let granted: Vec<_> = records.iter().filter(|r| r["grant"].is_string()).collect();
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0]["grant"], "CHG-1");
    assert_eq!(granted[0]["decision"], "allowed");
    assert_eq!(granted[0]["identity"], "AKIAVENDOR");
    assert_eq!(granted[0]["client_country"], "US");
    let m = proxy.metrics().await;
    assert_eq!(
        metric(
            &m,
            "residency_grant_requests_total{grant=\"CHG-1\",route=\"s3\"}"
        ),
        "1"
    );
    proxy.wait_for_log("grant active", 1).await;
    proxy.wait_for_log("grant expired", 1).await;
    // The sigv4 grant is warned about at start: its key id is a claim.
    proxy.wait_for_log("grant proven by sigv4", 3).await;
}

#[tokio::test]
async fn a_grant_expires_without_a_reload() {
    let setup = Setup::new(
        &grant("CHG-SHORT", "AKIASHORT", -60, 2, "proof = \"sigv4\""),
        &["CHG-SHORT"],
    );
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(&(config(&geo, &origin, "", "", "") + &setup.sections(None)));
    let first = get(&proxy, ips::US, "/b/k", Some("AKIASHORT")).await;
    let mut status = first.status.as_u16();
    // Admitted until its end (unless the start was slow), refused after.
    for _ in 0..100 {
        if status == 451 {
            break;
        }
        assert_eq!(status, 200);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        status = get(&proxy, ips::US, "/b/k", Some("AKIASHORT"))
            .await
            .status
            .as_u16();
    }
    assert_eq!(status, 451, "the grant ended");
    assert!(!proxy.logs().contains("reloaded"));
}

#[tokio::test]
async fn an_mtls_grant_needs_the_grantees_verified_certificate() {
    let setup = Setup::new(
        &grant("CHG-M", "vendor-jane", -3600, 3600, "proof = \"mtls\""),
        &["CHG-M"],
    );
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let ca = TestCa::new("Proxy CA");
    let clients = TestCa::new("Vendor clients CA");
    let (cert, key) = ca.write_leaf("server", &["s3.test", "localhost"]);
    let toml = config(&geo, &origin, "", "", "").replace(
        "[admin]",
        &format!(
            "tls_listen = [\"127.0.0.1:0\"]\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\nclient_auth = \"optional\"\n\n[admin]",
            cert.display(),
            key.display(),
            clients.pem_path().display()
        ),
    ) + &setup.sections(None);
    let proxy = Proxy::start(&toml);
    // The right name as a SigV4 key id, without the certificate: nothing.
    let rsp = get(&proxy, ips::US, "/b/k", Some("vendor-jane")).await;
    assert_eq!(rsp.status, 451);
    let none = client_config(&ca, None, &[b"http/1.1"]);
    let (_, rsp) = https_get(ips::US, proxy.tls_addr(), "s3.test", none, "/b/k")
        .await
        .unwrap();
    assert_eq!(rsp.status, 451);
    // Another certificate of the same CA: nothing.
    let other = clients.client_cert("vendor-john");
    let cfg = client_config(&ca, Some(&other), &[b"http/1.1"]);
    let (_, rsp) = https_get(ips::US, proxy.tls_addr(), "s3.test", cfg, "/b/k")
        .await
        .unwrap();
    assert_eq!(rsp.status, 451);
    assert_eq!(origin.request_count(), 0);
    // The grantee's certificate: admitted.
    let jane = clients.client_cert("vendor-jane");
    let cfg = client_config(&ca, Some(&jane), &[b"http/1.1"]);
    let (_, rsp) = https_get(ips::US, proxy.tls_addr(), "s3.test", cfg, "/b/k")
        .await
        .unwrap();
    assert_eq!(rsp.status, 200);
    assert_eq!(
        rsp.header("x-residency-decision"),
        "allowed; side=client; country=US; grant=CHG-M"
    );
    assert_eq!(origin.request_count(), 1);
}

#[tokio::test]
async fn invalid_grants_open_nothing_and_grants_check_names_why() {
    let grants = [
        grant("SELF", "AKIASELF", -3600, 3600, "proof = \"sigv4\"").replace(
            "Jane Doe <jane@vendor.example>",
            "J. Bernard <dpo@chu.example>",
        ),
        grant("UNSIGNED", "AKIAUNSIGNED", -3600, 3600, "proof = \"sigv4\""),
        grant("TAMPERED", "AKIATAMPER", -3600, 3600, "proof = \"sigv4\""),
        grant("EXPIRED", "AKIAEXPIRED", -7200, -3600, "proof = \"sigv4\""),
        grant("LONG", "AKIALONG", -3600, 15 * 86_400, "proof = \"sigv4\""),
        grant("GOOD", "AKIAGOOD", -3600, 3600, "proof = \"sigv4\""),
    ]
    .concat();
    let setup = Setup::new(&grants, &["SELF", "TAMPERED", "EXPIRED", "LONG", "GOOD"]);
    // One byte of the purpose changed after signing.
    let signed = std::fs::read_to_string(&setup.grants).unwrap();
    let at = signed.find("id = \"TAMPERED\"").unwrap();
    let purpose = at + signed[at..].find("support case 4711").unwrap();
    let mut bytes = signed.into_bytes();
    bytes[purpose] = b'S';
    std::fs::write(&setup.grants, bytes).unwrap();

    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let toml = config(&geo, &origin, "", "", "") + &setup.sections(None);
    let proxy = Proxy::start(&toml);
    for key in [
        "AKIASELF",
        "AKIAUNSIGNED",
        "AKIATAMPER",
        "AKIAEXPIRED",
        "AKIALONG",
    ] {
        let rsp = get(&proxy, ips::US, "/b/k", Some(key)).await;
        assert_eq!(rsp.status, 451, "{key}");
        assert_eq!(rsp.header("x-residency-decision"), US_BLOCKED, "{key}");
    }
    assert_eq!(
        get(&proxy, ips::US, "/b/k", Some("AKIAGOOD")).await.status,
        200
    );
    assert_eq!(origin.request_count(), 1);
    proxy.wait_for_log("grant opens nothing", 5).await;

    let out = run(&[
        "grants",
        "check",
        "--config",
        proxy.config_path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let line_of = |id: &str| {
        *lines
            .iter()
            .find(|l| l.starts_with(&format!("grant {id} ")))
            .unwrap_or_else(|| panic!("{id}: {stdout}"))
    };
    assert!(line_of("SELF").ends_with("INVALID: self-approval: \"dpo\" is the grantee; too few approvals: 0 valid of 1 required (distinct approvers)"), "{stdout}");
    assert!(
        line_of("UNSIGNED").ends_with("INVALID: unsigned: it carries no approval"),
        "{stdout}"
    );
    assert!(line_of("TAMPERED").ends_with("INVALID: bad signature by \"dpo\": it does not verify over this grant's canonical bytes (edited after signing, or signed with another key); too few approvals: 0 valid of 1 required (distinct approvers)"), "{stdout}");
    assert!(
        line_of("EXPIRED").contains("INVALID: expired on "),
        "{stdout}"
    );
    assert!(
        line_of("LONG").contains("INVALID: too long: lasts "),
        "{stdout}"
    );
    assert!(
        line_of("LONG").contains("more than max_duration 14d"),
        "{stdout}"
    );
    assert!(
        line_of("GOOD").ends_with(", identity AKIAGOOD, proof sigv4): valid"),
        "{stdout}"
    );
    assert!(
        stdout.contains("WARNING: grant GOOD is proven by sigv4"),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_grant_never_lets_the_proxy_dial_an_upstream_outside_the_area() {
    let setup = Setup::new(
        &grant("CHG-1", "AKIAVENDOR", -3600, 3600, "proof = \"sigv4\""),
        &["CHG-1"],
    );
    let geo = standard_geo(Layout::IpLocationDb).build();
    let us_origin = Origin::start(ips::ORIGIN_US).await;
    let proxy = Proxy::start(&(config(&geo, &us_origin, "", "", "") + &setup.sections(None)));
    let rsp = get(&proxy, ips::US, "/b/k", Some("AKIAVENDOR")).await;
    assert_ne!(rsp.status, 200);
    assert!(
        rsp.header("x-residency-decision").contains("side=upstream"),
        "{:?}",
        rsp.headers
    );
    assert_eq!(us_origin.request_count(), 0);
    assert_eq!(us_origin.connection_count(), 0);
}

pub(crate) const REGISTRY: &str = "[[identity]]\nid = \"AKIACHU01\"\nowner = \"Dr A. Martin <a.martin@chu.example>\"\n\
    role = \"radiology archive, read-write\"\ngranted = 2020-01-10\nreviewed = REVIEWED\nreviewer = \"DPO, J. Bernard\"\n\n\
    [[identity]]\nid = \"AKIAOTHERROUTE\"\nowner = \"B. Petit\"\nrole = \"billing\"\nroutes = [\"billing\"]\n\
    granted = 2020-01-10\nreviewed = REVIEWED\nreviewer = \"DPO, J. Bernard\"\n";

pub(crate) fn registry(reviewed_days_ago: i64, options: &str) -> String {
    format!(
        "{}\n---\n{options}",
        REGISTRY.replace("REVIEWED", &date(now() - reviewed_days_ago * 86_400))
    )
}

pub(crate) async fn registry_proxy(
    reviewed_days_ago: i64,
    options: &str,
) -> (Origin, Proxy, Setup, crate::support::TestGeo) {
    let setup = Setup::new("", &[]);
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let toml = config(&geo, &origin, "", "", "")
        + "\n[[route]]\nname = \"billing\"\npath_prefix = \"/billing/\"\nupstreams = [\"http://127.0.0.1:9\"]\n"
        + &setup.sections(Some(&registry(reviewed_days_ago, options)));
    let proxy = Proxy::start(&toml);
    (origin, proxy, setup, geo)
}

#[tokio::test]
async fn require_known_refuses_unlisted_and_anonymous_identities_and_unlisted_routes() {
    let (origin, proxy, _s, _g) = registry_proxy(10, "require_known = true").await;
    assert_eq!(
        get(&proxy, ips::FR, "/b/k", Some("AKIACHU01")).await.status,
        200
    );
    for (key, reason) in [
        (Some("AKIASTRANGER"), "unknown_identity"),
        (None, "unknown_identity"),
        (Some("AKIAOTHERROUTE"), "route_not_granted"),
    ] {
        let rsp = get(&proxy, ips::FR, "/b/k", key).await;
        assert_eq!(rsp.status, 403, "{key:?}");
        assert_eq!(
            rsp.header("x-residency-decision"),
            format!("refused; reason={reason}")
        );
        assert!(
            rsp.text().contains("<Code>AccessDenied</Code>"),
            "{}",
            rsp.text()
        );
    }
    assert_eq!(origin.request_count(), 1);
    // From outside the area the country block stands, whoever claims what.
    let rsp = get(&proxy, ips::US, "/b/k", Some("AKIASTRANGER")).await;
    assert_eq!(rsp.status, 451);
    assert_eq!(rsp.header("x-residency-decision"), US_BLOCKED);
    let records = proxy.audit_records();
    assert_eq!(records[1]["decision"], "refused");
    assert_eq!(records[1]["reason"], "unknown_identity");
    assert_eq!(records[2]["identity"], "anonymous");
    assert_eq!(records[3]["reason"], "route_not_granted");
}

#[tokio::test]
async fn an_overdue_entry_is_flagged_or_refused_per_config() {
    let (origin, proxy, _s, _g) =
        registry_proxy(400, "review_every = \"365d\"\non_overdue = \"flag\"").await;
    assert_eq!(
        get(&proxy, ips::FR, "/b/k", Some("AKIACHU01")).await.status,
        200
    );
    assert_eq!(
        get(&proxy, ips::FR, "/b/k", Some("AKIACHU01")).await.status,
        200
    );
    proxy.wait_for_log("identity review overdue", 1).await;
    assert_eq!(
        proxy.logs().matches("identity review overdue").count(),
        1,
        "logged once"
    );
    let m = proxy.metrics().await;
    assert_eq!(metric(&m, "residency_identity_overdue_requests_total"), "2");
    assert_eq!(origin.request_count(), 2);
    let out = run(&["check", "--config", proxy.config_path().to_str().unwrap()]);
    assert!(
        text(&out.stdout).contains("identity AKIACHU01 (Dr A. Martin <a.martin@chu.example>, radiology archive, read-write; proof sigv4, a claim the storage checks): reviewed "),
        "{}",
        text(&out.stdout)
    );
    assert!(text(&out.stdout).contains("REVIEW OVERDUE"));

    let (origin, proxy, _s, _g) = registry_proxy(400, "on_overdue = \"refuse\"").await;
    let rsp = get(&proxy, ips::FR, "/b/k", Some("AKIACHU01")).await;
    assert_eq!(rsp.status, 403);
    assert_eq!(
        rsp.header("x-residency-decision"),
        "refused; reason=review_overdue"
    );
    assert_eq!(origin.request_count(), 0);
    // Reviewed in time: served.
    let (_origin, proxy, _s, _g) = registry_proxy(10, "on_overdue = \"refuse\"").await;
    assert_eq!(
        get(&proxy, ips::FR, "/b/k", Some("AKIACHU01")).await.status,
        200
    );
}

#[tokio::test]
async fn access_review_counts_the_trail_and_refuses_a_tampered_one() {
    let grants = grant("CHG-1", "AKIACHU01", -3600, 3600, "proof = \"sigv4\"");
    let setup = Setup::new(&grants, &["CHG-1"]);
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let toml = config(&geo, &origin, "", "", "")
        + "\n[[route]]\nname = \"billing\"\npath_prefix = \"/billing/\"\nupstreams = [\"http://127.0.0.1:9\"]\n"
        + &setup.sections(Some(&registry(10, "")));
    let proxy = Proxy::start(&toml);
    for _ in 0..3 {
        assert_eq!(
            get(&proxy, ips::FR, "/b/k", Some("AKIACHU01")).await.status,
            200
        );
    }
    assert_eq!(
        get(&proxy, ips::US, "/b/k", Some("AKIACHU01")).await.status,
        200
    );
    assert_eq!(
        get(&proxy, ips::CN, "/b/k", Some("AKIACHU01")).await.status,
        451
    );
    assert_eq!(
        get(&proxy, ips::DE, "/b/k", Some("AKIASTRANGER"))
            .await
            .status,
        200
    );
    let audit = proxy.audit_path();
    let ids = setup.dir.path().join("identities.toml");
    let out = run(&[
        "access-review",
        "--identities",
        ids.to_str().unwrap(),
        "--audit",
        audit.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(text(&out.stderr), "");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["records"], 6);
    let chu = &v["identities"][0];
    assert_eq!(chu["id"], "AKIACHU01");
    assert_eq!(chu["overdue"], false);
    assert_eq!(chu["unused"], false);
    assert_eq!(chu["proof"], "sigv4");
    assert_eq!(chu["usage"]["requests"], 5);
    assert_eq!(
        chu["usage"]["by_route_decision_country"],
        serde_json::json!({"s3 allowed FR": 3, "s3 allowed US": 1, "s3 blocked CN": 1})
    );
    assert_eq!(chu["usage"]["grants"], serde_json::json!({"CHG-1": 1}));
    let other = &v["identities"][1];
    assert_eq!(other["unused"], true);
    assert_eq!(other["usage"]["requests"], 0);
    assert_eq!(v["unlisted"]["AKIASTRANGER"]["requests"], 1);
    let md = run(&[
        "access-review",
        "--identities",
        ids.to_str().unwrap(),
        "--audit",
        audit.to_str().unwrap(),
    ]);
    assert!(
        text(&md.stdout).contains("| s3 | allowed | FR | 3 |"),
        "{}",
        text(&md.stdout)
    );

    // One record edited: no report, exit 1.
    let trail = std::fs::read_to_string(&audit).unwrap();
    let tampered = setup.dir.path().join("tampered.jsonl");
    std::fs::write(&tampered, trail.replacen("\"US\"", "\"FR\"", 1)).unwrap();
    let out = run(&[
        "access-review",
        "--identities",
        ids.to_str().unwrap(),
        "--audit",
        tampered.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert!(!text(&out.stderr).is_empty());
}

#[tokio::test]
async fn an_invalid_grants_file_is_refused_at_start_and_at_reload_the_old_grants_serve() {
    let setup = Setup::new(
        &grant("CHG-1", "AKIAVENDOR", -3600, 3600, "proof = \"sigv4\""),
        &["CHG-1"],
    );
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(&(config(&geo, &origin, "", "", "") + &setup.sections(None)));
    assert_eq!(
        get(&proxy, ips::US, "/b/k", Some("AKIAVENDOR"))
            .await
            .status,
        200
    );

    let good = std::fs::read_to_string(&setup.grants).unwrap();
    let cases = [
        (
            "[[grant]]\nid = \"X\"\nidentiy = \"a\"\n",
            "1:1",
            "unknown field",
        ),
        (
            &*good.replacen(
                "not_before = ",
                "not_before = 2026-13-01T00:00:00Z\nx = ",
                1,
            ),
            "",
            "",
        ),
        (&*format!("{good}\n{good}"), "", "duplicate grant \"CHG-1\""),
        (
            &*good.replacen("signature = \"", "signature = \"!!", 1),
            "",
            "signature must be the base64",
        ),
        (
            &*good.replacen("from_countries = [\"US\"]", "from_countries = [\"UK\"]", 1),
            "",
            "unknown country code \"UK\"",
        ),
    ];
    for (n, (bad, _, needle)) in cases.iter().enumerate() {
        std::fs::write(&setup.grants, bad).unwrap();
        let out = run(&["check", "--config", proxy.config_path().to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{bad}");
        let err = text(&out.stderr);
        assert!(
            err.starts_with(&format!("{}:", setup.grants.display())),
            "{err}"
        );
        assert!(err.contains(needle), "{err}");
        proxy.signal("HUP");
        proxy.wait_for_log("reload refused", n + 1).await;
        let rsp = get(&proxy, ips::US, "/b/k", Some("AKIAVENDOR")).await;
        assert_eq!(rsp.status, 200, "the old grants serve after {bad}");
    }
    assert!(!proxy.logs().contains("reloaded"));
    // A valid file with a new signed grant is applied by the next reload.
    std::fs::write(
        &setup.grants,
        format!(
            "{good}{}",
            grant("CHG-2", "AKIANEW", -3600, 3600, "proof = \"sigv4\"")
        ),
    )
    .unwrap();
    sign(&setup.key, "dpo", &setup.grants, "CHG-2");
    proxy.signal("HUP");
    proxy.wait_for_log("reloaded", 1).await;
    for key in ["AKIAVENDOR", "AKIANEW"] {
        assert_eq!(get(&proxy, ips::US, "/b/k", Some(key)).await.status, 200);
    }
    // Only the grants file changed, and the trail marks it: the policy
    // version covers the grants.
    let marks: Vec<serde_json::Value> = crate::support::proxy::records_in(&proxy.audit_path())
        .into_iter()
        .filter(|r| r["reason"] == "policy_changed")
        .collect();
    assert_eq!(marks.len(), 1, "{marks:#?}");
    assert_eq!(
        marks[0]["policy_change"]["changes"],
        serde_json::json!(["grant CHG-2 added"])
    );
    assert!(
        proxy.logs().contains("rules_changed=grant CHG-2 added"),
        "{}",
        proxy.logs()
    );
}

#[test]
fn grants_cli_refuses_to_overwrite_a_key_or_sign_an_unknown_grant() {
    let setup = Setup::new(&grant("CHG-1", "AKIAX", -60, 60, ""), &["CHG-1"]);
    let out = run(&["grants", "keygen", setup.key.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with(&format!("cannot write key file {}", setup.key.display())),
        "{}",
        text(&out.stderr)
    );
    let args = |id: &'static str| {
        run(&[
            "grants",
            "sign",
            "--key",
            setup.key.to_str().unwrap(),
            "--approver",
            "dpo",
            setup.grants.to_str().unwrap(),
            id,
        ])
    };
    let out = args("CHG-2");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!("{}: no grant with id \"CHG-2\"\n", setup.grants.display())
    );
    let out = args("CHG-1");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "grant \"CHG-1\" already carries an approval by \"dpo\" (remove it first to sign again)\n"
    );
    // The public key file cannot sign.
    let out = run(&[
        "grants",
        "sign",
        "--key",
        &format!("{}.pub", setup.key.display()),
        "--approver",
        "dpo",
        setup.grants.to_str().unwrap(),
        "CHG-1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not a grant signing key"),
        "{}",
        text(&out.stderr)
    );
}

/// Replaces `path` at once (write beside, sign, rename), as a deployment
/// does, so the watch never sees a half-written or unsigned file.
fn replace_grants(setup: &Setup, body: &str, signed: &[&str]) {
    let next = setup.dir.path().join("grants.next.toml");
    std::fs::write(&next, body).unwrap();
    for id in signed {
        sign(&setup.key, "dpo", &next, id);
    }
    std::fs::rename(&next, &setup.grants).unwrap();
}

/// `[grants] watch` (SPEC §9: "a watch on their files"): a grant added and
/// signed becomes active without SIGHUP, and the trail marks the policy
/// change.
#[tokio::test]
async fn a_new_grant_becomes_active_without_sighup_with_a_grants_watch() {
    let first = grant("CHG-1", "AKIAVENDOR", -3600, 3600, "proof = \"sigv4\"");
    let setup = Setup::new(&first, &["CHG-1"]);
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(
        &(config(&geo, &origin, "", "", "")
            + &setup.sections(None)
            + "watch = true\nwatch_interval = \"100ms\"\n"),
    );
    let rsp = get(&proxy, ips::US, "/b/k", Some("AKIANEW")).await;
    assert_eq!(rsp.status, 451);
    assert_eq!(rsp.header("x-residency-decision"), US_BLOCKED);

    let good = std::fs::read_to_string(&setup.grants).unwrap();
    let second = grant("CHG-2", "AKIANEW", -3600, 3600, "proof = \"sigv4\"");
    replace_grants(&setup, &format!("{good}{second}"), &["CHG-2"]);
    proxy.wait_for_log("reloaded", 1).await;
    let line = proxy
        .logs()
        .lines()
        .find(|l| l.contains("reloaded"))
        .unwrap()
        .to_owned();
    assert!(
        line.contains("identities or grants watch"),
        "the watch reloaded: {line}"
    );
    assert!(line.contains("grant CHG-2 added"), "{line}");
    let rsp = get(&proxy, ips::US, "/b/k", Some("AKIANEW")).await;
    assert_eq!(rsp.status, 200);
    assert_eq!(
        rsp.header("x-residency-decision"),
        "allowed; side=client; country=US; grant=CHG-2"
    );
    assert!(
        proxy
            .logs()
            .contains("identities or grants file replaced; reloading")
    );
    let marks = crate::support::proxy::records_in(&proxy.audit_path())
        .into_iter()
        .filter(|r| r["reason"] == "policy_changed")
        .count();
    assert_eq!(marks, 1);
}

/// A corrupted grants file seen by the watch is refused whole: the old
/// grants keep serving, the refusal is logged with the file's place, and
/// a valid file replacing it is applied by the watch.
#[tokio::test]
async fn a_corrupted_grants_file_seen_by_the_watch_keeps_the_old_grants() {
    let setup = Setup::new(
        &grant("CHG-1", "AKIAVENDOR", -3600, 3600, "proof = \"sigv4\""),
        &["CHG-1"],
    );
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(
        &(config(&geo, &origin, "", "", "")
            + &setup.sections(None)
            + "watch = true\nwatch_interval = \"100ms\"\n"),
    );
    assert_eq!(
        get(&proxy, ips::US, "/b/k", Some("AKIAVENDOR"))
            .await
            .status,
        200
    );
    let good = std::fs::read_to_string(&setup.grants).unwrap();
    // Edited in place (not renamed): a new grant with a bad date.
    std::fs::write(
        &setup.grants,
        format!(
            "{good}{}",
            grant("CHG-2", "AKIAVENDOR2", -3600, 3600, "proof = \"sigv4\"")
        )
        .replacen(
            "not_before = ",
            "not_before = 2026-13-01T00:00:00Z\nx = ",
            2,
        ),
    )
    .unwrap();
    proxy.wait_for_log("reload refused", 1).await;
    let line = proxy
        .logs()
        .lines()
        .find(|l| l.contains("reload refused"))
        .unwrap()
        .to_owned();
    assert!(line.contains("identities or grants watch"), "{line}");
    assert!(
        line.contains(&format!("{}:", setup.grants.display())),
        "names the file: {line}"
    );
    let rsp = get(&proxy, ips::US, "/b/k", Some("AKIAVENDOR")).await;
    assert_eq!(rsp.status, 200, "the old grants serve");
    assert_eq!(
        rsp.header("x-residency-decision"),
        "allowed; side=client; country=US; grant=CHG-1"
    );
    assert!(!proxy.logs().contains("reloaded"));
    // Put right: the watch applies it.
    replace_grants(
        &setup,
        &format!(
            "{good}{}",
            grant("CHG-2", "AKIAVENDOR2", -3600, 3600, "proof = \"sigv4\"")
        ),
        &["CHG-2"],
    );
    proxy.wait_for_log("reloaded", 1).await;
    assert_eq!(
        get(&proxy, ips::US, "/b/k", Some("AKIAVENDOR2"))
            .await
            .status,
        200
    );
}

/// `[identities] watch`: an identity added to the registry is known
/// without SIGHUP (`require_known` stops refusing it).
#[tokio::test]
async fn an_identity_added_is_known_without_sighup_with_an_identities_watch() {
    let (_origin, proxy, setup, _geo) = registry_proxy(
        10,
        "require_known = true\nwatch = true\nwatch_interval = \"100ms\"",
    )
    .await;
    let rsp = get(&proxy, ips::FR, "/b/k", Some("AKIANEWCOMER")).await;
    assert_eq!(rsp.status, 403);
    let file = setup.dir.path().join("identities.toml");
    let registry = std::fs::read_to_string(&file).unwrap();
    let next = setup.dir.path().join("identities.next.toml");
    std::fs::write(
        &next,
        format!(
            "{registry}\n[[identity]]\nid = \"AKIANEWCOMER\"\nowner = \"Dr C. Petit\"\n\
             role = \"archive\"\ngranted = {d}\nreviewed = {d}\nreviewer = \"DPO\"\n",
            d = date(now())
        ),
    )
    .unwrap();
    std::fs::rename(&next, &file).unwrap();
    proxy.wait_for_log("reloaded", 1).await;
    assert!(proxy.logs().contains("identity AKIANEWCOMER added"));
    assert_eq!(
        get(&proxy, ips::FR, "/b/k", Some("AKIANEWCOMER"))
            .await
            .status,
        200
    );
}
