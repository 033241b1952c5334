//! What the request path extracts from a request for its audit record: the
//! identity (an S3 access key id) and the object key. Pure functions of the
//! request head.
//!
//! The identity is what the client *claims*: the proxy holds no secret keys
//! and does not check signatures (the storage does, and answers 403 to a
//! forged one, which the record's `status` shows). Only the access key id is
//! ever returned; signatures, dates and scopes are never copied anywhere.

use http::HeaderMap;
use http::header::AUTHORIZATION;
use sha2::{Digest, Sha256};

use super::chain::hex;
pub use crate::config::ObjectKeyMode;

/// The longest access key id accepted (AWS documents 16..=128 characters;
/// other S3 implementations use shorter ones, so the floor is 1).
const MAX_KEY_ID: usize = 128;

/// What credential a request carries, as far as the proxy can tell which
/// access key id the storage will act as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// No credential at all: the request is anonymous to the storage.
    None,
    /// Exactly one well-formed claim: the storage reads the same id.
    One(String),
    /// Credential material the proxy cannot read as exactly one claim the
    /// storage would read alike (malformed, several, or spelled so that a
    /// storage decoding it may read it where the proxy does not): the
    /// storage may act as any key id, so it is neither anonymous nor the
    /// mTLS subject.
    Unreadable,
}

/// The identity recorded (and judged by governed access) for
/// [`Credential::Unreadable`]: it cannot be a key id (it holds spaces and
/// parentheses), and governed access never lists or grants it.
pub const UNREADABLE: &str = "(unreadable credential)";

/// The access key id the request claims, from (in SigV4 or SigV2 form) the
/// `Authorization` header or a presigned URL's query (`query` is the URI's
/// query string, without `?`).
///
/// - `Authorization: AWS4-HMAC-SHA256 Credential=AKID/date/region/s3/aws4_request, SignedHeaders=…, Signature=…`
///   (parts in any order, spaces after commas optional; `AWS4-ECDSA-P256-SHA256`, SigV4a, alike
///   with its scope `AKID/date/s3/aws4_request`);
/// - `Authorization: AWS AKID:signature` (SigV2);
/// - query `X-Amz-Credential=AKID%2Fdate%2Fregion%2Fs3%2Faws4_request` (presigned SigV4; the
///   value is percent-decoded, the parameter name is matched exactly);
/// - query `AWSAccessKeyId=AKID` (presigned SigV2).
///
/// `None` when the request claims no credential, when the claim is
/// malformed, when it makes more than one claim (two headers, a header and a
/// presigned query, a repeated parameter: which one the storage believes is
/// not ours to guess), or when the id is not 1..=128 ASCII letters, digits,
/// `-`, `_` or `.`. The caller then records the mTLS subject or `anonymous`
/// when there is no credential at all, [`UNREADABLE`] otherwise (see
/// [`credential`]).
pub fn identity(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    match credential(headers, query) {
        Credential::One(id) => Some(id),
        Credential::None | Credential::Unreadable => None,
    }
}

/// The request's [`Credential`]. Anything a storage may read as a
/// credential counts as a claim, well-formed or not: a
/// `multipart/form-data` body (an S3 POST Object form), an `Authorization`
/// value whose scheme starts with `AWS` in any case (however glued to its
/// parameters), a query parameter whose name, `%XX` decoded, is
/// `X-Amz-Credential` or `AWSAccessKeyId` in any case. Only one claim,
/// spelled exactly as documented on [`identity`] and whose scope has
/// exactly the length its algorithm defines (so that a storage taking the
/// id as everything before the scope reads the same id), is read.
pub fn credential(headers: &HeaderMap, query: Option<&str>) -> Credential {
    let mut claims = Claims::default();
    // A browser-based upload (S3 POST Object) carries its credential in
    // the form, in the body the proxy does not read: some credential the
    // storage may act as, never anonymous nor the mTLS subject.
    if headers.get_all(http::header::CONTENT_TYPE).iter().any(|v| {
        v.as_bytes()
            .trim_ascii_start()
            .get(..19)
            .is_some_and(|t| t.eq_ignore_ascii_case(b"multipart/form-data"))
    }) {
        claims.add(None);
    }
    for value in headers.get_all(AUTHORIZATION) {
        match value.to_str() {
            Ok(text) => {
                if let Some(claim) = authorization_claim(text) {
                    claims.add(claim);
                }
            }
            // Not visible ASCII: cannot even tell the scheme, so distrust it.
            Err(_) => claims.add(None),
        }
    }
    for pair in query.unwrap_or("").split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "X-Amz-Credential" => {
                let decoded = percent_decode(value);
                claims.add(
                    decoded
                        .as_deref()
                        .and_then(|c| sigv4_scope_key_id(c, SIGV4_SCOPE)),
                );
            }
            "AWSAccessKeyId" => {
                let decoded = percent_decode(value);
                claims.add(decoded.as_deref().and_then(valid_key_id));
            }
            // Another spelling a decoding storage may read as one of them.
            _ if names_credential(name) => claims.add(None),
            _ => {}
        }
    }
    claims.only()
}

/// Whether a query parameter name, `%XX` decoded, is a credential
/// parameter's name in any case (a storage's query parser decodes names).
/// Allocates nothing: every parameter name of every request comes here.
fn names_credential(name: &str) -> bool {
    ["X-Amz-Credential", "AWSAccessKeyId"]
        .iter()
        .any(|want| decodes_to(name.as_bytes(), want.as_bytes()))
}

/// Whether `s`, its `%XX` decoded, is `want` (ASCII case aside).
fn decodes_to(s: &[u8], want: &[u8]) -> bool {
    let mut i = 0;
    let mut k = 0;
    while let Some(&b) = s.get(i) {
        let byte = match (b, s.get(i + 1..i + 3)) {
            (b'%', Some(&[h, l])) => match (hex_value(h), hex_value(l)) {
                (Some(h), Some(l)) => {
                    i += 3;
                    (h << 4) | l
                }
                _ => return false,
            },
            (b'%', _) => return false,
            _ => {
                i += 1;
                b
            }
        };
        if !want.get(k).is_some_and(|w| w.eq_ignore_ascii_case(&byte)) {
            return false;
        }
        k += 1;
    }
    k == want.len()
}

/// The credential claims of one request: `Some(id)` for a well-formed one,
/// `None` for a malformed one.
#[derive(Default)]
struct Claims {
    first: Option<Option<String>>,
    several: bool,
}

impl Claims {
    fn add(&mut self, claim: Option<&str>) {
        if self.first.is_some() {
            self.several = true;
        } else {
            self.first = Some(claim.map(str::to_owned));
        }
    }

    fn only(self) -> Credential {
        match self.first {
            None => Credential::None,
            Some(Some(id)) if !self.several => Credential::One(id),
            Some(_) => Credential::Unreadable,
        }
    }
}

/// Components of a SigV4 scope after the key id: date, region, service,
/// `aws4_request`.
const SIGV4_SCOPE: usize = 4;
/// SigV4a's: date, service, `aws4_request` (no region).
const SIGV4A_SCOPE: usize = 3;

/// The claim of an `Authorization` value: `None` if it is not an AWS scheme
/// (not a claim at all), `Some(None)` if it is one but malformed (a scheme
/// that starts with `AWS` in any case but is not one of those read, glued
/// to its parameters or not, included: a storage may still read it).
fn authorization_claim(value: &str) -> Option<Option<&str>> {
    let value = value.trim_matches(is_space);
    let (scheme, params) = value.split_once(is_space).unwrap_or((value, ""));
    match scheme {
        "AWS4-HMAC-SHA256" => Some(sigv4_header_key_id(params, SIGV4_SCOPE)),
        "AWS4-ECDSA-P256-SHA256" => Some(sigv4_header_key_id(params, SIGV4A_SCOPE)),
        "AWS" => Some(sigv2_key_id(params.trim_matches(is_space))),
        _ if scheme
            .get(..3)
            .is_some_and(|s| s.eq_ignore_ascii_case("AWS")) =>
        {
            Some(None)
        }
        _ => None,
    }
}

fn is_space(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// `Credential=AKID/scope…, SignedHeaders=…, Signature=…`, in any order;
/// the scope has `scope` components.
fn sigv4_header_key_id(params: &str, scope: usize) -> Option<&str> {
    let mut credential = None;
    for part in params.split(',') {
        if let Some(value) = part.trim_matches(is_space).strip_prefix("Credential=") {
            if credential.is_some() {
                return None;
            }
            credential = Some(value);
        }
    }
    sigv4_scope_key_id(credential?, scope)
}

/// The key id of a SigV4 credential `AKID/date/region/service/aws4_request`
/// whose scope (after the id) has exactly `scope` non-empty components: a
/// bare id is not a SigV4 credential, and with more components a storage
/// that takes the id as everything before the scope (ids may hold `/`)
/// would read another id than the first component.
fn sigv4_scope_key_id(credential: &str, scope: usize) -> Option<&str> {
    let (key_id, rest) = credential.split_once('/')?;
    if rest.split('/').count() != scope || rest.split('/').any(str::is_empty) {
        return None;
    }
    valid_key_id(key_id)
}

/// `AKID:signature` (SigV2). The signature must be present, and is dropped.
fn sigv2_key_id(params: &str) -> Option<&str> {
    let (key_id, signature) = params.split_once(':')?;
    if signature.is_empty() {
        return None;
    }
    valid_key_id(key_id)
}

fn valid_key_id(id: &str) -> Option<&str> {
    let ok = (1..=MAX_KEY_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    ok.then_some(id)
}

/// Decodes `%XX` escapes (either case); `None` if an escape is malformed or
/// the result is not UTF-8. `+` is left as is (it is never part of an id).
fn percent_decode(value: &str) -> Option<std::borrow::Cow<'_, str>> {
    if !value.contains('%') {
        return Some(value.into());
    }
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = hex_value(bytes.next()?)?;
            let lo = hex_value(bytes.next()?)?;
            out.push((hi << 4) | lo);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok().map(Into::into)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The object key of a path-style request path (`/bucket/key/with/slashes`,
/// without the query) as the audit records it under `mode`.
///
/// `Full` gives `bucket/key/with/slashes`: the path without its leading
/// `/`, byte for byte as received (percent escapes are kept, so two
/// spellings of one key stay distinguishable in the evidence). `/` and the
/// empty path have no key: `None`. A bucket alone (`/bucket`) is recorded
/// as `bucket`.
pub fn object_key(path: &str, mode: ObjectKeyMode) -> Option<String> {
    let key = path.strip_prefix('/').unwrap_or(path);
    if key.is_empty() {
        return None;
    }
    match mode {
        ObjectKeyMode::Full => Some(key.to_owned()),
        ObjectKeyMode::Sha256 => Some(hex(&Sha256::digest(key.as_bytes()))),
        ObjectKeyMode::None => None,
    }
}

#[cfg(test)]
mod tests;
