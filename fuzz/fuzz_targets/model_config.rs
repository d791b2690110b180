//! Fuzz target `model_config`: see `kiln_fuzz::model_config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kiln_fuzz::model_config(data);
});
