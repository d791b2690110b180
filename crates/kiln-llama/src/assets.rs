//! Where `scripts/fetch-assets.sh` caches the real assets Kiln's tests, benches and demos use:
//! `$KILN_CACHE/assets`, with `KILN_CACHE` defaulting to `~/.cache/kiln`.

use std::path::PathBuf;

use crate::{Error, Result};

/// The file name of the SmolLM2-135M-Instruct GGUF among the assets.
pub const SMOLLM2_GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The cache root: `$KILN_CACHE`, else `$HOME/.cache/kiln`.
#[must_use]
pub fn cache_dir() -> PathBuf {
    std::env::var_os("KILN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/kiln")
        })
}

/// The path of asset `rel` (for example [`SMOLLM2_GGUF`] or `vocab/ggml-vocab-llama-spm.gguf`).
///
/// # Errors
/// [`Error::Io`] saying to run `scripts/fetch-assets.sh` when the file is not there.
pub fn asset(rel: &str) -> Result<PathBuf> {
    let path = cache_dir().join("assets").join(rel);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::Io {
            path: path.display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "missing asset: run scripts/fetch-assets.sh (it caches assets in $KILN_CACHE/assets)",
            ),
        })
    }
}
