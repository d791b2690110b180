//! Fuzz target `clip_image`: see `kiln_fuzz::clip_image`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kiln_fuzz::clip_image(data);
});
