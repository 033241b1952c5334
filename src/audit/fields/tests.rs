use http::HeaderValue;

use super::*;

const SIG: &str = "fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024";

fn auth(values: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
    }
    h
}

fn from_header(value: &str) -> Option<String> {
    identity(&auth(&[value]), None)
}

fn from_query(query: &str) -> Option<String> {
    identity(&HeaderMap::new(), Some(query))
}

#[test]
fn sigv4_header_in_any_order_with_or_without_spaces() {
    for value in [
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/eu-west-3/s3/aws4_request, SignedHeaders=host;range;x-amz-date, Signature={SIG}"
        ),
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/eu-west-3/s3/aws4_request,SignedHeaders=host,Signature={SIG}"
        ),
        format!(
            "AWS4-HMAC-SHA256 Signature={SIG}, SignedHeaders=host, Credential=AKIAIOSFODNN7EXAMPLE/20260101/eu-west-3/s3/aws4_request"
        ),
        format!(
            "AWS4-HMAC-SHA256   SignedHeaders=host ,\tCredential=AKIAIOSFODNN7EXAMPLE/20260101/eu-west-3/s3/aws4_request ,Signature={SIG}"
        ),
        // SigV4a: no region in the scope.
        format!(
            "AWS4-ECDSA-P256-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/s3/aws4_request, SignedHeaders=host, Signature={SIG}"
        ),
    ] {
        assert_eq!(
            from_header(&value).as_deref(),
            Some("AKIAIOSFODNN7EXAMPLE"),
            "{value}"
        );
    }
}

#[test]
fn sigv2_header() {
    assert_eq!(
        from_header("AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=").as_deref(),
        Some("AKIAIOSFODNN7EXAMPLE")
    );
    assert_eq!(
        from_header("AWS   minio-user_1.x:c2lnbmF0dXJl").as_deref(),
        Some("minio-user_1.x")
    );
}

#[test]
fn malformed_authorization_gives_no_identity() {
    for value in [
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256 ",
        "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=abc",
        // no scope after the id
        "AWS4-HMAC-SHA256 Credential=AKID, Signature=abc",
        "AWS4-HMAC-SHA256 Credential=AKID/, Signature=abc",
        // empty id
        "AWS4-HMAC-SHA256 Credential=/20260101/eu-west-3/s3/aws4_request",
        // parameter names are case-sensitive, like the storage's parser
        "AWS4-HMAC-SHA256 credential=AKID/20260101/eu-west-3/s3/aws4_request",
        // no space after the scheme: it is not this scheme
        "AWS4-HMAC-SHA256Credential=AKID/20260101/eu-west-3/s3/aws4_request",
        "aws4-hmac-sha256 Credential=AKID/20260101/eu-west-3/s3/aws4_request",
        // two credentials: which one would the storage use?
        "AWS4-HMAC-SHA256 Credential=EVIL/20260101/x/s3/aws4_request, Credential=AKID/20260101/x/s3/aws4_request",
        // characters outside the id alphabet
        "AWS4-HMAC-SHA256 Credential=AK ID/20260101/x/s3/aws4_request",
        "AWS4-HMAC-SHA256 Credential=AK\"ID/20260101/x/s3/aws4_request",
        "AWS4-HMAC-SHA256 Credential=<script>/20260101/x/s3/aws4_request",
        "AWS4-HMAC-SHA256 Credential=AK%49D/20260101/x/s3/aws4_request",
        "AWS AKID",
        "AWS :signature",
        "AWS AKID:",
        "AWS AK ID:signature",
        "AWS",
        "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig",
        "Basic QUtJRDpzZWNyZXQ=",
        "",
    ] {
        assert_eq!(from_header(value), None, "{value:?}");
    }
}

#[test]
fn key_id_length_is_bounded() {
    let id128 = "A".repeat(128);
    let id129 = "A".repeat(129);
    assert_eq!(
        from_header(&format!("AWS {id128}:sig")).as_deref(),
        Some(id128.as_str())
    );
    assert_eq!(from_header(&format!("AWS {id129}:sig")), None);
    assert_eq!(from_header("AWS A:sig").as_deref(), Some("A"));
}

#[test]
fn the_signature_never_comes_back() {
    let v =
        format!("AWS4-HMAC-SHA256 Credential={SIG}/20260101/x/s3/aws4_request, Signature={SIG}");
    // An id that looks like a signature is still only the id.
    assert_eq!(from_header(&v).as_deref(), Some(SIG));
    let v = "AWS4-HMAC-SHA256 Signature=Credential=AKID/x, Credential=REAL/d/r/s3/aws4_request";
    assert_eq!(from_header(v).as_deref(), Some("REAL"));
}

#[test]
fn non_ascii_or_repeated_authorization_headers_give_no_identity() {
    let mut h = HeaderMap::new();
    h.insert(
        AUTHORIZATION,
        HeaderValue::from_bytes(b"AWS AK\xe9ID:sig").unwrap(),
    );
    assert_eq!(identity(&h, None), None);
    let two = auth(&["AWS AKID:sig", "AWS OTHER:sig"]);
    assert_eq!(identity(&two, None), None);
    let same = auth(&["AWS AKID:sig", "AWS AKID:sig"]);
    assert_eq!(identity(&same, None), None);
    // A foreign scheme alongside is not an AWS claim.
    let mixed = auth(&["Bearer x", "AWS AKID:sig"]);
    assert_eq!(identity(&mixed, None).as_deref(), Some("AKID"));
}

#[test]
fn presigned_sigv4_query() {
    let q = format!(
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20260101%2Feu-west-3%2Fs3%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature={SIG}"
    );
    assert_eq!(from_query(&q).as_deref(), Some("AKIAIOSFODNN7EXAMPLE"));
    assert_eq!(
        from_query("X-Amz-Credential=AKID%2f20260101%2fx%2fs3%2faws4_request").as_deref(),
        Some("AKID")
    );
    assert_eq!(
        from_query("X-Amz-Credential=AKID/20260101/x/s3/aws4_request").as_deref(),
        Some("AKID")
    );
    assert_eq!(
        from_query("X-Amz-Credential=%41KID%2F20260101%2Fx%2Fs3%2Faws4_request").as_deref(),
        Some("AKID")
    );
}

#[test]
fn presigned_sigv2_query() {
    assert_eq!(
        from_query("AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Expires=1767225600&Signature=abc%2B%3D")
            .as_deref(),
        Some("AKIAIOSFODNN7EXAMPLE")
    );
}

#[test]
fn malformed_or_ambiguous_queries_give_no_identity() {
    for q in [
        "",
        "&&&",
        "X-Amz-Credential",
        "X-Amz-Credential=",
        "X-Amz-Credential=AKID",
        "X-Amz-Credential=AKID%2",
        "X-Amz-Credential=AKID%zz%2F2026",
        "X-Amz-Credential=AKID%252F20260101",
        "X-Amz-Credential=AK%00ID%2F20260101",
        "X-Amz-Credential=AK%C3%A9ID%2F20260101",
        "X-Amz-Credential=AK%FFID%2F20260101",
        "X-Amz-Credential=AK+ID%2F20260101",
        "x-amz-credential=AKID%2F20260101",
        "X-Amz-Credential%3DAKID%2F20260101",
        "X-Amz-Credential=A%2F1&X-Amz-Credential=B%2F1",
        "X-Amz-Credential=A%2F1&AWSAccessKeyId=A",
        "AWSAccessKeyId=",
        "AWSAccessKeyId=AK/ID",
        "AWSAccessKeyId=A&AWSAccessKeyId=A",
        "foo=X-Amz-Credential=AKID%2F20260101",
    ] {
        assert_eq!(from_query(q), None, "{q:?}");
    }
}

#[test]
fn a_header_and_a_presigned_query_together_give_no_identity() {
    let h = auth(&["AWS AKID:sig"]);
    assert_eq!(identity(&h, Some("AWSAccessKeyId=OTHER")), None);
    assert_eq!(identity(&h, Some("X-Amz-Credential=AKID%2F20260101")), None);
    // Unrelated query parameters do not count.
    assert_eq!(
        identity(&h, Some("versionId=3&X-Amz-Credentials=1")).as_deref(),
        Some("AKID")
    );
    // A malformed header claim is still a claim: no fallback to the query.
    let malformed = auth(&["AWS4-HMAC-SHA256 Signature=x"]);
    assert_eq!(identity(&malformed, Some("AWSAccessKeyId=AKID")), None);
}

#[test]
fn no_credential_gives_no_identity() {
    assert_eq!(identity(&HeaderMap::new(), None), None);
    assert_eq!(from_query("versionId=1&partNumber=2"), None);
}

#[test]
fn percent_decoding() {
    assert_eq!(percent_decode("a%2Fb%2fc").as_deref(), Some("a/b/c"));
    assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
    assert_eq!(percent_decode("%").as_deref(), None);
    assert_eq!(percent_decode("%4").as_deref(), None);
    assert_eq!(percent_decode("%g0").as_deref(), None);
    assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
    assert_eq!(percent_decode("%C3").as_deref(), None);
    assert_eq!(percent_decode("a+b").as_deref(), Some("a+b"));
}

#[test]
fn object_key_full_is_the_path_as_received() {
    let full = |p| object_key(p, ObjectKeyMode::Full);
    assert_eq!(
        full("/bucket/key/with/slashes").as_deref(),
        Some("bucket/key/with/slashes")
    );
    assert_eq!(
        full("/bucket/a%20b/%E9t%C3%A9").as_deref(),
        Some("bucket/a%20b/%E9t%C3%A9")
    );
    assert_eq!(full("/bucket").as_deref(), Some("bucket"));
    assert_eq!(full("/bucket/").as_deref(), Some("bucket/"));
    assert_eq!(full("//double").as_deref(), Some("/double"));
    assert_eq!(full("/b/../../etc").as_deref(), Some("b/../../etc"));
    assert_eq!(full("*").as_deref(), Some("*"));
    assert_eq!(full("/"), None);
    assert_eq!(full(""), None);
}

#[test]
fn object_key_sha256_hashes_the_full_value() {
    // printf 'bucket/key/with/slashes' | sha256sum
    assert_eq!(
        object_key("/bucket/key/with/slashes", ObjectKeyMode::Sha256).as_deref(),
        Some("ef8f0cc6f4cd9506edb803928b12afd2f52895e8993916ae92095dfca3e75dfc")
    );
    assert_eq!(object_key("/", ObjectKeyMode::Sha256), None);
    assert_eq!(object_key("", ObjectKeyMode::Sha256), None);
}

#[test]
fn object_key_none_records_nothing() {
    assert_eq!(object_key("/bucket/key", ObjectKeyMode::None), None);
}

#[test]
fn object_key_mode_config_values() {
    for (text, mode) in [
        ("\"full\"", ObjectKeyMode::Full),
        ("\"sha256\"", ObjectKeyMode::Sha256),
        ("\"none\"", ObjectKeyMode::None),
    ] {
        let parsed: ObjectKeyMode = serde_json::from_str(text).unwrap();
        assert_eq!(parsed, mode);
        assert_eq!(format!("\"{}\"", mode.as_str()), text);
    }
    assert!(serde_json::from_str::<ObjectKeyMode>("\"Full\"").is_err());
    assert_eq!(ObjectKeyMode::default(), ObjectKeyMode::Full);
}

#[test]
fn credentials_a_storage_may_read_are_unreadable_not_absent() {
    for value in [
        // Glued or lower case: MinIO reads the scheme as a prefix.
        "AWS4-HMAC-SHA256Credential=AKID/20260101/x/s3/aws4_request, SignedHeaders=host, Signature=a",
        "aws4-hmac-sha256 Credential=AKID/20260101/x/s3/aws4_request",
        "AWS4-HMAC-SHA512 Credential=AKID/20260101/x/s3/aws4_request",
        "AWS4-HMAC-SHA256 Credential=AKID, Signature=abc",
        // A longer scope: a storage whose ids may hold `/` reads `AKID/x`.
        "AWS4-HMAC-SHA256 Credential=AKID/x/20260101/x/s3/aws4_request",
        "AWS4-HMAC-SHA256 Credential=AKID/20260101/s3/aws4_request",
        "AWS4-HMAC-SHA256 Credential=AKID/20260101//s3/aws4_request",
        "AWS4-ECDSA-P256-SHA256 Credential=AKID/20260101/x/s3/aws4_request",
        "AWS AKID",
    ] {
        assert_eq!(
            credential(&auth(&[value]), None),
            Credential::Unreadable,
            "{value:?}"
        );
    }
    for query in [
        "X-Amz-%43redential=AKID%2F20260101%2Fx%2Fs3%2Faws4_request",
        "x-amz-credential=AKID%2F20260101%2Fx%2Fs3%2Faws4_request",
        "AWSAccessKey%49d=AKID",
        "X-Amz-Credential=AKID%2F20260101",
        "X-Amz-Credential=AKID%2Fx%2F20260101%2Fx%2Fs3%2Faws4_request",
    ] {
        assert_eq!(
            credential(&HeaderMap::new(), Some(query)),
            Credential::Unreadable,
            "{query:?}"
        );
    }
    // Two spellings of one parameter: the storage may take either.
    let q = "X-Amz-%43redential=EVIL%2F20260101%2Fx%2Fs3%2Faws4_request&X-Amz-Credential=AKID%2F20260101%2Fx%2Fs3%2Faws4_request";
    assert_eq!(
        credential(&HeaderMap::new(), Some(q)),
        Credential::Unreadable
    );
    assert_eq!(credential(&HeaderMap::new(), None), Credential::None);
    // An S3 POST Object form carries its credential in the body.
    for ct in [
        "multipart/form-data; boundary=x",
        " Multipart/Form-Data;boundary=y",
    ] {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_str(ct).unwrap(),
        );
        assert_eq!(credential(&h, None), Credential::Unreadable, "{ct}");
        h.insert(AUTHORIZATION, HeaderValue::from_static("AWS AKID:sig"));
        assert_eq!(credential(&h, None), Credential::Unreadable, "{ct}");
    }
    assert_eq!(
        credential(&auth(&["Bearer x"]), Some("versionId=1")),
        Credential::None
    );
}

/// Storages as they read a credential, to check the proxy against: the
/// header first if any `Authorization` starts with `AWS` (MinIO: scheme as
/// a prefix, the id everything before the scope), else the query with
/// names and values decoded (Go's `ParseQuery`, serde_urlencoded), the
/// first value of the name, compared exactly or in any case.
mod storage {
    fn decode(s: &str) -> Option<String> {
        let s = s.replace('+', " ");
        super::percent_decode(&s).map(|c| c.into_owned())
    }

    fn v4_id(credential: &str, scope: usize) -> Option<String> {
        let parts: Vec<&str> = credential.split('/').collect();
        (parts.len() > scope).then(|| parts[..parts.len() - scope].join("/"))
    }

    pub fn read(headers: &[String], query: &str, any_case: bool) -> Option<String> {
        if let Some(h) = headers.iter().find(|h| h.trim().starts_with("AWS")) {
            let h = h.trim();
            for (scheme, scope) in [("AWS4-HMAC-SHA256", 4), ("AWS4-ECDSA-P256-SHA256", 3)] {
                if let Some(rest) = h.strip_prefix(scheme) {
                    let cred = rest
                        .split(',')
                        .find_map(|p| p.trim().strip_prefix("Credential="))?;
                    return v4_id(cred, scope);
                }
            }
            let rest = h.strip_prefix("AWS ")?;
            return rest.trim().split_once(':').map(|(id, _)| id.to_owned());
        }
        let pairs: Vec<(String, String)> = query
            .split('&')
            .filter_map(|p| {
                let (n, v) = p.split_once('=').unwrap_or((p, ""));
                Some((decode(n)?, decode(v)?))
            })
            .collect();
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == name || (any_case && n.eq_ignore_ascii_case(name)))
                .map(|(_, v)| v.clone())
        };
        get("X-Amz-Credential")
            .and_then(|c| v4_id(&c, 4))
            .or_else(|| get("AWSAccessKeyId"))
    }
}

mod prop {
    use proptest::prelude::*;

    use super::*;

    /// `s` with some characters percent-encoded and some case flipped.
    fn spelled(s: &'static str) -> impl Strategy<Value = String> {
        proptest::collection::vec(0..24u8, s.len()).prop_map(move |how| {
            s.chars()
                .zip(how)
                .map(|(c, h)| match h {
                    0 => format!("%{:02X}", c as u32),
                    1 => format!("%{:02x}", c as u32),
                    2 if c.is_ascii_alphabetic() => {
                        if c.is_ascii_uppercase() {
                            c.to_ascii_lowercase().to_string()
                        } else {
                            c.to_ascii_uppercase().to_string()
                        }
                    }
                    _ => c.to_string(),
                })
                .collect()
        })
    }

    fn scope() -> impl Strategy<Value = String> {
        (
            prop_oneof![Just("GRANTED"), Just("OTHER"), Just("GRANTED/OTHER")],
            1..7usize,
        )
            .prop_map(|(id, n)| {
                let scope = ["20261206", "eu-west-3", "s3", "aws4_request", "x", "y"];
                format!("{id}/{}", scope[..n].join("/"))
            })
    }

    fn header() -> impl Strategy<Value = String> {
        (
            prop_oneof![
                Just("AWS4-HMAC-SHA256 "),
                Just("AWS4-HMAC-SHA256"),
                Just("aws4-hmac-sha256 "),
                Just("AWS4-ECDSA-P256-SHA256 "),
                Just("AWS "),
                Just("Bearer "),
            ],
            scope(),
            any::<bool>(),
        )
            .prop_map(|(scheme, cred, v2)| {
                if v2 || scheme == "AWS " {
                    let id = cred.split('/').next().unwrap_or_default().to_owned();
                    format!("{scheme}{id}:sig")
                } else {
                    format!("{scheme}Credential={cred}, SignedHeaders=host, Signature=ab")
                }
            })
    }

    fn param() -> impl Strategy<Value = String> {
        (
            prop_oneof![
                spelled("X-Amz-Credential"),
                spelled("AWSAccessKeyId"),
                Just("X-Amz-Credential".to_owned()),
                Just("versionId".to_owned()),
            ],
            scope(),
            any::<bool>(),
        )
            .prop_map(|(name, cred, encode)| {
                let value = if name.eq_ignore_ascii_case("AWSAccessKeyId") {
                    cred.split('/').next().unwrap_or_default().to_owned()
                } else if encode {
                    cred.replace('/', "%2F")
                } else {
                    cred
                };
                format!("{name}={value}")
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Whenever the proxy reads one key id, no storage reading of the
        /// same request acts as another: a grant or registry entry for
        /// one id never lets a request through as another.
        #[test]
        fn the_id_read_is_the_id_every_storage_reads(
            headers in proptest::collection::vec(header(), 0..3),
            params in proptest::collection::vec(param(), 0..4),
        ) {
            let query = params.join("&");
            let map = auth(&headers.iter().map(String::as_str).collect::<Vec<_>>());
            if let Credential::One(id) = credential(&map, Some(&query)) {
                for any_case in [false, true] {
                    if let Some(read) = storage::read(&headers, &query, any_case) {
                        prop_assert_eq!(&read, &id, "{:?} {}", headers, query);
                    }
                }
            }
        }
    }
}
