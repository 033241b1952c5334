//! The config loader on any text: it reports problems, it never panics.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use residency_proxy::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Config::parse(Path::new("fuzz.toml"), text) {
        // Every message names the file it is about.
        assert!(e.to_string().contains("fuzz.toml"), "{e}");
    }
});
