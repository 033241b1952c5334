//! The SigV4/SigV2 credential parser on any Authorization headers and query:
//! never a panic, and an identity is only ever a plain access key id.
#![no_main]

use http::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use residency_proxy::audit::identity;

fuzz_target!(|data: &[u8]| {
    // Before the first NUL: the query; then one Authorization line per part.
    let mut parts = data.split(|b| *b == 0);
    let query = parts.next().map(String::from_utf8_lossy);
    let mut headers = HeaderMap::new();
    for line in parts {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            headers.append(AUTHORIZATION, v);
        }
    }
    if let Some(id) = identity(&headers, query.as_deref()) {
        assert!((1..=128).contains(&id.len()), "{id:?}");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')),
            "{id:?}"
        );
    }
});
