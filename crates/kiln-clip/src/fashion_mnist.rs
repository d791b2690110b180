//! Fashion-MNIST (Xiao et al. 2017): 70,000 28x28 grayscale images of ten kinds of clothing, read
//! from the original IDX files (`train-images-idx3-ubyte.gz`, ...; Debian package
//! `dataset-fashion-mnist` installs them under `/usr/share/datasets/fashion-mnist`).

use std::io::Read;
use std::path::Path;

use crate::preprocess::RgbImage;
use crate::{ClipError, Result};

/// The class names, by label.
pub const CLASSES: [&str; 10] = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
];

/// Which half of the dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// 60,000 training images.
    Train,
    /// 10,000 test images.
    Test,
}

/// One labelled image.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The image (gray replicated into RGB).
    pub image: RgbImage,
    /// Its label, an index into [`CLASSES`].
    pub label: usize,
}

fn read_gz(path: &Path) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|e| ClipError::io(path, e))?;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut out)
        .map_err(|e| ClipError::io(path, e))?;
    Ok(out)
}

fn be32(b: &[u8], at: usize) -> usize {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

fn bad(path: &Path, message: impl Into<String>) -> ClipError {
    ClipError::Config {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Parses an IDX3 image file: `(count, rows, cols, pixels)`.
///
/// # Errors
/// [`ClipError::Config`] naming the file for a wrong magic number or a truncated file.
pub fn parse_images(bytes: &[u8], path: &Path) -> Result<(usize, usize, usize, Vec<u8>)> {
    if bytes.len() < 16 || be32(bytes, 0) != 0x0803 {
        return Err(bad(path, "not an IDX3 image file (magic 0x00000803)"));
    }
    let (n, r, c) = (be32(bytes, 4), be32(bytes, 8), be32(bytes, 12));
    let need = n
        .checked_mul(r)
        .and_then(|v| v.checked_mul(c))
        .ok_or_else(|| bad(path, "dimensions overflow"))?;
    if bytes.len() - 16 != need {
        return Err(bad(
            path,
            format!(
                "{n} images of {r}x{c} need {need} bytes, the file has {}",
                bytes.len() - 16
            ),
        ));
    }
    Ok((n, r, c, bytes[16..].to_vec()))
}

/// Parses an IDX1 label file.
///
/// # Errors
/// [`ClipError::Config`] naming the file for a wrong magic number, a truncated file or a label
/// outside `0..10`.
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<usize>> {
    if bytes.len() < 8 || be32(bytes, 0) != 0x0801 {
        return Err(bad(path, "not an IDX1 label file (magic 0x00000801)"));
    }
    let n = be32(bytes, 4);
    if bytes.len() - 8 != n {
        return Err(bad(
            path,
            format!("{n} labels, but {} bytes", bytes.len() - 8),
        ));
    }
    bytes[8..]
        .iter()
        .map(|&l| {
            if usize::from(l) < CLASSES.len() {
                Ok(usize::from(l))
            } else {
                Err(bad(path, format!("label {l} is not a Fashion-MNIST class")))
            }
        })
        .collect()
}

/// Loads a split from `dir` (the folder holding the four `.gz` files).
///
/// # Errors
/// A missing or malformed file, named in the error; image and label counts that differ.
pub fn load(dir: impl AsRef<Path>, split: Split) -> Result<Vec<Sample>> {
    let dir = dir.as_ref();
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let ipath = dir.join(format!("{prefix}-images-idx3-ubyte.gz"));
    let lpath = dir.join(format!("{prefix}-labels-idx1-ubyte.gz"));
    let (n, r, c, pixels) = parse_images(&read_gz(&ipath)?, &ipath)?;
    let labels = parse_labels(&read_gz(&lpath)?, &lpath)?;
    if labels.len() != n {
        return Err(bad(
            &lpath,
            format!("{} labels for {n} images", labels.len()),
        ));
    }
    pixels
        .chunks_exact(r * c)
        .zip(labels)
        .map(|(gray, label)| {
            let rgb = gray.iter().flat_map(|&v| [v, v, v]).collect();
            Ok(Sample {
                image: RgbImage::new(c, r, rgb)?,
                label,
            })
        })
        .collect()
}

/// Zero-shot accuracy of `clip` on `samples`: each image is assigned the class whose prompt
/// (`template` with `{}` replaced by the class name) scores highest.
///
/// Returns `(accuracy, per-class accuracy)`.
///
/// # Errors
/// A template without `{}` or an embedding failure.
pub fn zero_shot_accuracy(
    clip: &crate::Clip,
    samples: &[Sample],
    template: &str,
) -> Result<(f64, [f64; 10])> {
    let prompts = crate::clip::label_prompts(&CLASSES, template)?;
    let texts = clip.embed_texts(&prompts)?;
    let mut correct = [0usize; 10];
    let mut total = [0usize; 10];
    for chunk in samples.chunks(256) {
        let images: Vec<RgbImage> = chunk.iter().map(|s| s.image.clone()).collect();
        let sims = clip.similarity(&clip.embed_images(&images)?, &texts)?;
        for (s, row) in chunk.iter().zip(sims) {
            let best = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i);
            total[s.label] += 1;
            if best == s.label {
                correct[s.label] += 1;
            }
        }
    }
    let per_class = std::array::from_fn(|i| correct[i] as f64 / total[i].max(1) as f64);
    let acc = correct.iter().sum::<usize>() as f64 / samples.len().max(1) as f64;
    Ok((acc, per_class))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let p = Path::new("x.gz");
        let mut img = vec![0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2];
        img.extend([1, 2, 3, 4]);
        let (n, r, c, px) = parse_images(&img, p).unwrap();
        assert_eq!((n, r, c, px), (1, 2, 2, vec![1, 2, 3, 4]));
        assert!(
            parse_images(&img[..18], p)
                .unwrap_err()
                .to_string()
                .contains("x.gz")
        );
        assert!(parse_labels(&[0, 0, 8, 1, 0, 0, 0, 1, 10], p).is_err());
        assert_eq!(
            parse_labels(&[0, 0, 8, 1, 0, 0, 0, 1, 9], p).unwrap(),
            vec![9]
        );
    }
}
