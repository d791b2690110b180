//! Fuzz target `adapter_config`: see `kiln_fuzz::adapter_config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kiln_fuzz::adapter_config(data);
});
