//! Fuzz target `http_body`: see `kiln_fuzz::http_body`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kiln_fuzz::http_body(data);
});
