//! Fuzz target `preprocessor_config`: see `kiln_fuzz::preprocessor_config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kiln_fuzz::preprocessor_config(data);
});
