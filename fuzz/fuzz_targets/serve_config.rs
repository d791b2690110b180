//! Fuzz target `serve_config`: see `kiln_fuzz::serve_config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kiln_fuzz::serve_config(data);
});
