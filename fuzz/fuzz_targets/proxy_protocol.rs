//! The PROXY protocol v1/v2 parser on any bytes: never a panic; a header is
//! never longer than the input nor than MAX_HEADER_LEN, and parsing exactly
//! the consumed bytes gives the same header ("need more" is only said of a
//! short input).
#![no_main]

use libfuzzer_sys::fuzz_target;
use residency_proxy::proxy::proxy_protocol::{MAX_HEADER_LEN, parse};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(Some((header, used))) => {
            assert!(used <= data.len() && used <= MAX_HEADER_LEN);
            assert_eq!(parse(&data[..used]), Ok(Some((header, used))));
        }
        Ok(None) => assert!(data.len() < MAX_HEADER_LEN),
        Err(_) => {}
    }
});
