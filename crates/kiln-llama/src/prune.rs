//! Pruning of a Llama-family GGUF file: magnitude (unstructured) and structured (attention heads,
//! MLP channels), written as a new GGUF file that every loader of the format reads.
//!
//! - **Structured, heads**: in every layer, the `heads_removed_per_group` least important query
//!   heads of each key/value group are dropped (rows of `attn_q`, columns of `attn_output`); the
//!   grouping stays uniform (e.g. 9 heads over 3 key/value heads, group 3, become 6 heads, group
//!   2). Importance: the squared norm of the head's rows of `attn_q` times that of its columns of
//!   `attn_output`.
//! - **Structured, channels**: every MLP keeps its `mlp_channels_kept` most important channels
//!   (rows of `ffn_gate` and `ffn_up`, columns of `ffn_down`); importance: the product of the
//!   norms of the channel's `ffn_gate` and `ffn_up` rows and its `ffn_down` column.
//! - **Magnitude**: in every decoder projection the `magnitude_sparsity` fraction of weights with
//!   the smallest absolute value is set to zero.
//!
//! With [`PruneConfig::calibration`] tokens, the structured importance scores use the model's own
//! activations on them instead of the `attn_q` / `ffn_gate` / `ffn_up` weight norms.
//!
//! Rows are copied as stored (block formats are row-wise, so that is exact), and columns too when
//! the removed ranges are whole blocks (attention heads of 64 or 128 dimensions are); other edits
//! dequantize the matrix and quantize it again in its own format, which adds that format's rounding
//! once more. Dense kernels do not skip zeros, so magnitude pruning changes quality but neither
//! size nor speed; structured pruning shrinks both.

use std::path::Path;

use crate::gguf::{GgmlType, GgufFile, GgufValue, GgufWriter, quantize};
use crate::{Error, Result};

/// What to prune.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PruneConfig {
    /// Query heads removed from each key/value group of every layer.
    pub heads_removed_per_group: usize,
    /// MLP channels kept in every layer (`None`: all).
    pub mlp_channels_kept: Option<usize>,
    /// Fraction of each decoder projection's weights set to zero (0 to 1).
    pub magnitude_sparsity: f32,
    /// Calibration token ids: when given, structured importance is activation-aware (the mean
    /// size of each head's attention output and each channel's `silu(gate) * up` over these
    /// tokens, times the norm of the weights that read it), as Wanda-style criteria are; weight
    /// norms alone miss the channels and heads that carry large activations.
    pub calibration: Vec<u32>,
}

/// What [`prune_gguf`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneReport {
    /// Query heads per layer, before and after.
    pub heads: (usize, usize),
    /// MLP channels per layer, before and after.
    pub mlp_channels: (usize, usize),
    /// Weights set to zero by magnitude pruning.
    pub zeroed: usize,
    /// File size before and after, in bytes.
    pub bytes: (u64, u64),
}

/// A matrix in a GGUF file: its type and `[rows, cols]`.
struct Matrix {
    ty: GgmlType,
    rows: usize,
    cols: usize,
}

fn invalid(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{}: {msg}", path.display()))
}

fn matrix(file: &GgufFile, name: &str) -> Result<Matrix> {
    let info = file.tensor_info(name).ok_or_else(|| Error::MissingTensor {
        path: file.path().display().to_string(),
        name: name.to_string(),
    })?;
    let shape = info.shape();
    let &[rows, cols] = shape.as_slice() else {
        return Err(invalid(
            file.path(),
            format!("`{name}` has shape {shape:?}, not a matrix"),
        ));
    };
    Ok(Matrix {
        ty: info.ggml_type,
        rows,
        cols,
    })
}

/// Bytes of one stored row.
fn row_bytes(file: &GgufFile, name: &str, m: &Matrix) -> Result<usize> {
    m.ty.bytes_for(m.cols).ok_or_else(|| {
        invalid(
            file.path(),
            format!("`{name}`: rows of {} {}", m.cols, m.ty),
        )
    })
}

/// Keeps rows `keep` of a stored matrix, byte for byte.
fn keep_rows(
    file: &GgufFile,
    name: &str,
    keep: &[usize],
) -> Result<(Vec<usize>, GgmlType, Vec<u8>)> {
    let m = matrix(file, name)?;
    let rb = row_bytes(file, name, &m)?;
    let bytes = file.tensor_bytes(name)?;
    let mut out = Vec::with_capacity(keep.len() * rb);
    for &r in keep {
        out.extend_from_slice(&bytes[r * rb..(r + 1) * rb]);
    }
    Ok((vec![keep.len(), m.cols], m.ty, out))
}

/// Keeps the columns of `keep_ranges` (`[start, end)` in column units): whole stored blocks when
/// every range is block-aligned, else dequantized, selected and quantized again.
fn keep_columns(
    file: &GgufFile,
    name: &str,
    keep_ranges: &[(usize, usize)],
) -> Result<(Vec<usize>, GgmlType, Vec<u8>)> {
    let m = matrix(file, name)?;
    let bs = m.ty.block_size();
    let cols: usize = keep_ranges.iter().map(|(a, b)| b - a).sum();
    let aligned = keep_ranges
        .iter()
        .all(|&(a, b)| a.is_multiple_of(bs) && b.is_multiple_of(bs));
    if aligned {
        let rb = row_bytes(file, name, &m)?;
        let block_bytes = m.ty.type_size();
        let bytes = file.tensor_bytes(name)?;
        let mut out = Vec::new();
        for r in 0..m.rows {
            let row = &bytes[r * rb..(r + 1) * rb];
            for &(a, b) in keep_ranges {
                out.extend_from_slice(&row[a / bs * block_bytes..b / bs * block_bytes]);
            }
        }
        return Ok((vec![m.rows, cols], m.ty, out));
    }
    let values = file.dequantize(name)?;
    let mut out = Vec::with_capacity(m.rows * cols);
    for r in 0..m.rows {
        let row = &values[r * m.cols..(r + 1) * m.cols];
        for &(a, b) in keep_ranges {
            out.extend_from_slice(&row[a..b]);
        }
    }
    let bytes = quantize(m.ty, &out).map_err(|e| invalid(file.path(), format!("`{name}`: {e}")))?;
    Ok((vec![m.rows, cols], m.ty, bytes))
}

/// Contiguous `[start, end)` ranges of the sorted indices `keep`, each index standing for `width`
/// columns.
fn ranges(keep: &[usize], width: usize) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &k in keep {
        match out.last_mut() {
            Some(last) if last.1 == k * width => last.1 += width,
            _ => out.push((k * width, (k + 1) * width)),
        }
    }
    out
}

/// Squared L2 norms of row blocks (`by_rows`) or column blocks of a dequantized matrix, `width`
/// rows or columns per unit.
fn norms(values: &[f32], rows: usize, cols: usize, width: usize, by_rows: bool) -> Vec<f64> {
    let units = if by_rows { rows / width } else { cols / width };
    let mut out = vec![0f64; units];
    for r in 0..rows {
        for c in 0..cols {
            let u = if by_rows { r / width } else { c / width };
            out[u] += f64::from(values[r * cols + c]).powi(2);
        }
    }
    out
}

/// The indices of the `k` largest scores, in increasing index order.
fn top_k(scores: &[f64], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx.sort_unstable();
    idx
}

/// Zeroes the `sparsity` fraction of smallest-magnitude values; returns how many.
fn magnitude_prune(values: &mut [f32], sparsity: f32) -> usize {
    let n = ((values.len() as f64) * f64::from(sparsity)).floor() as usize;
    if n == 0 {
        return 0;
    }
    let mut mags: Vec<f32> = values.iter().map(|v| v.abs()).collect();
    let (_, &mut threshold, _) = mags.select_nth_unstable_by(n - 1, f32::total_cmp);
    let mut zeroed = 0;
    for v in values.iter_mut() {
        if zeroed < n && v.abs() <= threshold {
            *v = 0.0;
            zeroed += 1;
        }
    }
    zeroed
}

/// Per layer: the summed L2 norm of each head's attention output and the summed absolute value of
/// each MLP channel's activation over the calibration tokens.
struct ActivationStats {
    heads: Vec<Vec<f64>>,
    channels: Vec<Vec<f64>>,
}

/// Runs the model (CPU engine) over `ids` in windows of at most 512 tokens and collects
/// [`ActivationStats`].
fn activation_stats(input: &Path, ids: &[u32], head_dim: usize) -> Result<ActivationStats> {
    let model = crate::LlamaGenerator::load(
        input,
        &crate::LoadOptions {
            engine: crate::EngineKind::Cpu,
            ..crate::LoadOptions::default()
        },
    )?;
    let cpu = model
        .cpu_model()
        .ok_or_else(|| invalid(input, "calibration needs the CPU engine"))?;
    let c = &cpu.config;
    let mut stats = ActivationStats {
        heads: vec![vec![0.0; c.num_attention_heads]; c.num_hidden_layers],
        channels: vec![vec![0.0; c.intermediate_size]; c.num_hidden_layers],
    };
    for window in ids.chunks(512) {
        let mut cache = cpu.new_cache();
        cpu.forward_probed(window, &mut cache, &mut |p| match p {
            crate::cpu::Probe::Attention { layer, heads } => {
                let acc = &mut stats.heads[layer];
                let count = acc.len();
                for (i, h) in heads.chunks_exact(head_dim).enumerate() {
                    let n: f64 = h.iter().map(|&v| f64::from(v).powi(2)).sum();
                    acc[i % count] += n.sqrt();
                }
            }
            crate::cpu::Probe::Mlp { layer, hidden } => {
                let acc = &mut stats.channels[layer];
                let count = acc.len();
                for (i, &v) in hidden.iter().enumerate() {
                    acc[i % count] += f64::from(v).abs();
                }
            }
        })?;
    }
    Ok(stats)
}

fn u64_key(file: &GgufFile, key: &str) -> Result<usize> {
    usize::try_from(file.get_u64(key)?)
        .map_err(|_| invalid(file.path(), format!("`{key}` too large")))
}

/// Prunes the Llama GGUF file `input` as `config` says and writes the result to `output`
/// (atomically: a temporary file renamed into place).
///
/// # Errors
/// [`Error::Invalid`] for a file that is not a Llama GGUF, a configuration that would remove every
/// head or channel, or a sparsity outside `[0, 1)`; I/O and format errors of reading and writing.
pub fn prune_gguf(input: &Path, output: &Path, config: &PruneConfig) -> Result<PruneReport> {
    let file = GgufFile::open(input)?;
    let arch = file.architecture()?.to_string();
    if arch != "llama" {
        return Err(invalid(
            input,
            format!("architecture `{arch}` is not llama"),
        ));
    }
    if !(0.0..1.0).contains(&config.magnitude_sparsity) {
        return Err(invalid(
            input,
            format!(
                "magnitude sparsity {} is outside [0, 1)",
                config.magnitude_sparsity
            ),
        ));
    }
    let key = |k: &str| format!("{arch}.{k}");
    let n_layer = u64_key(&file, &key("block_count"))?;
    let n_embd = u64_key(&file, &key("embedding_length"))?;
    let n_head = u64_key(&file, &key("attention.head_count"))?;
    let n_kv = file
        .opt_u64(&key("attention.head_count_kv"))?
        .map_or(n_head, |v| v as usize);
    let n_ff = u64_key(&file, &key("feed_forward_length"))?;
    let head_dim = file
        .opt_u64(&key("attention.key_length"))?
        .map_or(n_embd / n_head.max(1), |v| v as usize);
    let group = n_head / n_kv.max(1);
    if config.heads_removed_per_group >= group {
        return Err(invalid(
            input,
            format!(
                "removing {} heads per group would leave none (groups of {group})",
                config.heads_removed_per_group
            ),
        ));
    }
    let kept_group = group - config.heads_removed_per_group;
    let ff_kept = config.mlp_channels_kept.unwrap_or(n_ff);
    if ff_kept == 0 || ff_kept > n_ff {
        return Err(invalid(
            input,
            format!("{ff_kept} MLP channels kept of {n_ff}"),
        ));
    }

    let structured = config.heads_removed_per_group > 0 || ff_kept < n_ff;
    let stats = if structured && !config.calibration.is_empty() {
        Some(activation_stats(input, &config.calibration, head_dim)?)
    } else {
        None
    };
    let mut w = GgufWriter::new();
    for (k, v) in file.metadata() {
        let v = if *k == key("attention.head_count") {
            GgufValue::U32((kept_group * n_kv) as u32)
        } else if *k == key("feed_forward_length") {
            GgufValue::U32(ff_kept as u32)
        } else {
            v.clone()
        };
        w.metadata(k.clone(), v);
    }
    let mut zeroed = 0usize;
    for info in file.tensors() {
        let name = info.name.as_str();
        let layer = name
            .strip_prefix("blk.")
            .and_then(|r| r.split('.').next())
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|&l| l < n_layer);
        let (shape, ty, bytes) = match (layer, name.rsplit('.').nth(1)) {
            (Some(l), Some("attn_q")) if config.heads_removed_per_group > 0 => {
                let keep = kept_heads(&file, l, n_kv, group, kept_group, head_dim, stats.as_ref())?;
                let rows: Vec<usize> = keep
                    .iter()
                    .flat_map(|&h| h * head_dim..(h + 1) * head_dim)
                    .collect();
                keep_rows(&file, name, &rows)?
            }
            (Some(l), Some("attn_output")) if config.heads_removed_per_group > 0 => {
                let keep = kept_heads(&file, l, n_kv, group, kept_group, head_dim, stats.as_ref())?;
                keep_columns(&file, name, &ranges(&keep, head_dim))?
            }
            (Some(l), Some("ffn_gate" | "ffn_up")) if ff_kept < n_ff => {
                let keep = kept_channels(&file, l, ff_kept, stats.as_ref())?;
                keep_rows(&file, name, &keep)?
            }
            (Some(l), Some("ffn_down")) if ff_kept < n_ff => {
                let keep = kept_channels(&file, l, ff_kept, stats.as_ref())?;
                keep_columns(&file, name, &ranges(&keep, 1))?
            }
            _ => (
                info.shape(),
                info.ggml_type,
                file.tensor_bytes(name)?.to_vec(),
            ),
        };
        let is_projection = layer.is_some() && shape.len() == 2;
        if is_projection && config.magnitude_sparsity > 0.0 {
            let mut values = vec![0f32; shape.iter().product()];
            crate::gguf::dequantize_into(ty, &bytes, &mut values)
                .map_err(|e| invalid(input, format!("`{name}`: {e}")))?;
            zeroed += magnitude_prune(&mut values, config.magnitude_sparsity);
            w.tensor_f32(name, &shape, &values, ty)?;
        } else {
            w.tensor_raw(name, &shape, ty, bytes)?;
        }
    }
    w.write(output)?;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    Ok(PruneReport {
        heads: (n_head, kept_group * n_kv),
        mlp_channels: (n_ff, ff_kept),
        zeroed,
        bytes: (size(input), size(output)),
    })
}

/// The query heads layer `l` keeps: per key/value group, the `kept` heads with the largest
/// `|q rows|² · |o columns|²`, or with calibration `(Σ |head output|)² · |o columns|²`, in order.
fn kept_heads(
    file: &GgufFile,
    l: usize,
    n_kv: usize,
    group: usize,
    kept: usize,
    head_dim: usize,
    stats: Option<&ActivationStats>,
) -> Result<Vec<usize>> {
    let q_name = format!("blk.{l}.attn_q.weight");
    let o_name = format!("blk.{l}.attn_output.weight");
    let o = matrix(file, &o_name)?;
    let on = norms(&file.dequantize(&o_name)?, o.rows, o.cols, head_dim, false);
    let qn = match stats {
        Some(s) => s.heads[l].iter().map(|v| v * v).collect(),
        None => {
            let q = matrix(file, &q_name)?;
            norms(&file.dequantize(&q_name)?, q.rows, q.cols, head_dim, true)
        }
    };
    let mut keep = Vec::new();
    for g in 0..n_kv {
        let scores: Vec<f64> = (0..group)
            .map(|i| qn[g * group + i] * on[g * group + i])
            .collect();
        keep.extend(top_k(&scores, kept).into_iter().map(|i| g * group + i));
    }
    Ok(keep)
}

/// The MLP channels layer `l` keeps: the `kept` largest `|gate row| · |up row| · |down column|`,
/// or with calibration `Σ |silu(gate) · up| · |down column|`, in order.
fn kept_channels(
    file: &GgufFile,
    l: usize,
    kept: usize,
    stats: Option<&ActivationStats>,
) -> Result<Vec<usize>> {
    let mut scores: Option<Vec<f64>> = stats.map(|s| s.channels[l].iter().map(|v| v * v).collect());
    let weights: &[(&str, bool)] = if stats.is_some() {
        &[("ffn_down", false)]
    } else {
        &[("ffn_gate", true), ("ffn_up", true), ("ffn_down", false)]
    };
    for &(name, by_rows) in weights {
        let name = format!("blk.{l}.{name}.weight");
        let m = matrix(file, &name)?;
        let n = norms(&file.dequantize(&name)?, m.rows, m.cols, 1, by_rows);
        scores = Some(match scores {
            None => n,
            Some(s) => s.iter().zip(&n).map(|(a, b)| a * b).collect(),
        });
    }
    Ok(top_k(&scores.unwrap_or_default(), kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_neighbours() {
        assert_eq!(ranges(&[0, 1, 3], 64), vec![(0, 128), (192, 256)]);
        assert_eq!(ranges(&[2, 5, 6, 7], 1), vec![(2, 3), (5, 8)]);
    }

    #[test]
    fn top_k_keeps_index_order() {
        assert_eq!(top_k(&[1.0, 5.0, 3.0, 4.0], 2), vec![1, 3]);
    }

    #[test]
    fn magnitude_prune_zeroes_the_smallest() {
        let mut v = vec![0.5, -0.1, 0.3, -0.9, 0.05, 0.2];
        assert_eq!(magnitude_prune(&mut v, 0.5), 3);
        assert_eq!(v, vec![0.5, 0.0, 0.3, -0.9, 0.0, 0.0]);
    }
}
