//! Decodes JPEG files to raw RGB the way Pillow's `convert("RGB")` does, for side-by-side checks
//! (tools/check_jpeg_parity.py).
//!
//! Usage: `jpeg_to_rgb IN.jpg OUT.rgb [IN.jpg OUT.rgb ...]`; each OUT gets `width height\n` and
//! then the samples. A file kiln-jpeg refuses gets `error MESSAGE\n` instead.

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || !args.len().is_multiple_of(2) {
        bail!("usage: jpeg_to_rgb IN.jpg OUT.rgb [IN.jpg OUT.rgb ...]");
    }
    for pair in args.chunks_exact(2) {
        let data = std::fs::read(&pair[0]).with_context(|| format!("reading {}", pair[0]))?;
        let out = match kiln_jpeg::decode(&data) {
            Ok(jpeg) => {
                let mut out = format!("{} {}\n", jpeg.width(), jpeg.height()).into_bytes();
                out.extend(jpeg.to_rgb());
                out
            }
            Err(e) => format!("error {e}\n").into_bytes(),
        };
        std::fs::write(&pair[1], out).with_context(|| format!("writing {}", pair[1]))?;
    }
    Ok(())
}
