//! Feeds arbitrary text to the flow parser and, when it parses, to the
//! checker and compiler: neither may panic, whatever support staff type.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = recoverbot::flow::check_text("fuzz.toml", text);
    }
});
