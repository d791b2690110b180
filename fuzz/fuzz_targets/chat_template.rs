//! Fuzz target `chat_template`: see `kiln_fuzz::chat_template`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kiln_fuzz::chat_template(data);
});
