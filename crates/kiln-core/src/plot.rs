//! A small loss-curve plot drawn straight into a PNG (axes, a light grid, training loss in blue
//! and evaluation loss in red), so training needs no plotting stack or fonts. Every trainer in Kiln
//! (LoRA, CLIP) writes its `loss.png` through [`loss_png`].

use image::{ImageBuffer, Rgb, RgbImage};

const W: u32 = 640;
const H: u32 = 360;
const M: i64 = 30;

/// One point of a loss curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossPoint {
    /// Optimizer step (1-based).
    pub step: usize,
    /// Training loss at this step.
    pub loss: f64,
    /// Evaluation loss, when evaluated at this step.
    pub eval_loss: Option<f64>,
}

/// PNG bytes of the loss curve (640x360).
#[must_use]
pub fn loss_png(log: &[LossPoint]) -> Vec<u8> {
    let mut img: RgbImage = ImageBuffer::from_pixel(W, H, Rgb([255, 255, 255]));
    let values: Vec<f64> = log
        .iter()
        .flat_map(|e| std::iter::once(e.loss).chain(e.eval_loss))
        .filter(|v| v.is_finite())
        .collect();
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (0.0, 1.0)
    };
    let n = log.last().map_or(1, |e| e.step).max(1) as f64;
    let px = |step: usize| M + ((step as f64 / n) * (f64::from(W) - 2.0 * M as f64)) as i64;
    let py = |v: f64| {
        i64::from(H) - M - (((v - lo) / (hi - lo)) * (f64::from(H) - 2.0 * M as f64)) as i64
    };
    for k in 0..=4 {
        let y = M + k * (i64::from(H) - 2 * M) / 4;
        line(
            &mut img,
            (M, y),
            (i64::from(W) - M, y),
            Rgb([225, 225, 225]),
        );
    }
    line(&mut img, (M, M), (M, i64::from(H) - M), Rgb([0, 0, 0]));
    line(
        &mut img,
        (M, i64::from(H) - M),
        (i64::from(W) - M, i64::from(H) - M),
        Rgb([0, 0, 0]),
    );
    let mut prev: Option<(i64, i64)> = None;
    for e in log {
        let p = (px(e.step), py(e.loss));
        if let Some(q) = prev {
            line(&mut img, q, p, Rgb([31, 119, 180]));
        }
        prev = Some(p);
    }
    let mut prev: Option<(i64, i64)> = None;
    for e in log {
        if let Some(v) = e.eval_loss {
            let p = (px(e.step), py(v));
            if let Some(q) = prev {
                line(&mut img, q, p, Rgb([214, 39, 40]));
            }
            for dx in -2..=2 {
                for dy in -2..=2 {
                    put(&mut img, p.0 + dx, p.1 + dy, Rgb([214, 39, 40]));
                }
            }
            prev = Some(p);
        }
    }
    let mut bytes = Vec::new();
    let _ = img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    );
    bytes
}

/// Writes `loss.csv` (`step,loss`) and `loss.png` of per-step losses into `dir` (created if
/// needed), each file atomically.
///
/// # Errors
/// The I/O error of creating the directory or writing a file.
pub fn write_loss_files(dir: &std::path::Path, losses: &[f32]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut csv = String::from("step,loss\n");
    for (i, l) in losses.iter().enumerate() {
        csv.push_str(&format!("{},{l:.6}\n", i + 1));
    }
    let points: Vec<LossPoint> = losses
        .iter()
        .enumerate()
        .map(|(i, &l)| LossPoint {
            step: i + 1,
            loss: f64::from(l),
            eval_loss: None,
        })
        .collect();
    crate::fs::write_atomic(&dir.join("loss.csv"), csv.as_bytes())?;
    crate::fs::write_atomic(&dir.join("loss.png"), &loss_png(&points))
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && x < i64::from(W) && y < i64::from(H) {
        img.put_pixel(x as u32, y as u32, c);
    }
}

/// Bresenham's line.
fn line(img: &mut RgbImage, (mut x0, mut y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb<u8>) {
    let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
    let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
    let mut err = dx + dy;
    loop {
        put(img, x0, y0, c);
        if x0 == x1 && y0 == y1 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x0 += sx;
        }
        if e2 <= dx {
            err += dx;
            y0 += sy;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png() {
        let log: Vec<LossPoint> = (1..=20)
            .map(|s| LossPoint {
                step: s,
                loss: 3.0 / s as f64,
                eval_loss: (s % 5 == 0).then_some(3.5 / s as f64),
            })
            .collect();
        let png = loss_png(&log);
        assert_eq!(&png[1..4], b"PNG");
        assert!(!loss_png(&[]).is_empty());
    }
}
