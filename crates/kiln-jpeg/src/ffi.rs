//! The C shim's interface (`csrc/shim.c`).

use std::ffi::{c_char, c_int, c_uint, c_ulong, c_ulonglong};

/// Decoded without error.
pub(crate) const OK: c_int = 0;
/// libjpeg raised an error; `message` holds its text.
pub(crate) const ERROR: c_int = 1;
/// The data ended before the last scanline.
pub(crate) const TRUNCATED: c_int = 2;
/// The output buffer does not have the image's size (a bug on the Rust side).
pub(crate) const BAD_BUFFER: c_int = 3;
/// Over the pixel limit, or a component count that has no output color space.
pub(crate) const UNSUPPORTED: c_int = 4;

/// `JMSG_LENGTH_MAX` in jpeglib.h.
pub(crate) const MESSAGE_LEN: usize = 200;

/// `struct kiln_jpeg_info`.
#[repr(C)]
pub(crate) struct Info {
    pub width: c_uint,
    pub height: c_uint,
    pub components: c_int,
    pub color_space: c_int,
    pub progressive: c_int,
    pub arithmetic: c_int,
    pub warnings: c_int,
    pub message: [c_char; MESSAGE_LEN],
}

impl Info {
    pub(crate) fn new() -> Self {
        Self {
            width: 0,
            height: 0,
            components: 0,
            color_space: 0,
            progressive: 0,
            arithmetic: 0,
            warnings: 0,
            message: [0; MESSAGE_LEN],
        }
    }

    /// libjpeg's message, or `fallback` when it left none.
    pub(crate) fn message(&self, fallback: &str) -> String {
        let bytes: Vec<u8> = self
            .message
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        if bytes.is_empty() {
            fallback.to_string()
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }
}

unsafe extern "C" {
    /// See `csrc/shim.c`.
    pub(crate) fn kiln_jpeg_decode(
        data: *const u8,
        len: c_ulong,
        out: *mut u8,
        out_len: usize,
        max_pixels: c_ulonglong,
        info: *mut Info,
    ) -> c_int;
}
