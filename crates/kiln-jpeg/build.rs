//! Compiles the small C shim that drives libjpeg (vendored and built by `mozjpeg-sys`) with
//! `setjmp`/`longjmp` error recovery, so that a corrupt file is an error value and never a panic
//! or an abort.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=csrc/shim.c");
    let include = env::var_os("DEP_JPEG_INCLUDE")
        .expect("mozjpeg-sys exports its include directories as DEP_JPEG_INCLUDE");
    let mut build = cc::Build::new();
    for dir in env::split_paths(&include) {
        build.include(dir);
    }
    build
        .file("csrc/shim.c")
        .warnings(true)
        .flag_if_supported("-Wno-clobbered")
        .compile("kiln_jpeg_shim");
}
