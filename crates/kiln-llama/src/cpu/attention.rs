//! Softmax attention of query heads over the cached keys and values of their key/value head.

/// The query heads of one key/value head (`q`: `group * head_dim`) and their view of the cache:
/// key/value `j` starts at `j * stride + offset`; `len` positions are visible.
pub(super) struct GroupInput<'a> {
    pub(super) q: &'a [f32],
    pub(super) kc: &'a [f32],
    pub(super) vc: &'a [f32],
    pub(super) stride: usize,
    pub(super) offset: usize,
    pub(super) head_dim: usize,
    pub(super) scale: f32,
    pub(super) len: usize,
    /// Row length of the score buffer (one row per query head).
    pub(super) total: usize,
}

/// `q · k` with 16 independent accumulators, so that the compiler emits vector FMAs.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let mut ca = a.chunks_exact(16);
    let mut cb = b.chunks_exact(16);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..16 {
            acc[l] = x[l].mul_add(y[l], acc[l]);
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// Softmax attention of a group of query heads over the visible cached positions into `o`
/// (`group * head_dim`), reading each key and value once for the whole group.
#[inline(always)]
pub(super) fn group_attention(g: &GroupInput<'_>, scores: &mut [f32], o: &mut [f32]) {
    let hd = g.head_dim;
    let heads = g.q.len() / hd;
    for j in 0..g.len {
        let at = j * g.stride + g.offset;
        let k = &g.kc[at..at + hd];
        for h in 0..heads {
            scores[h * g.total + j] = dot(&g.q[h * hd..(h + 1) * hd], k) * g.scale;
        }
    }
    for h in 0..heads {
        let sc = &mut scores[h * g.total..h * g.total + g.len];
        let max = sc.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let mut sum = 0.0;
        for s in sc.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        let inv = 1.0 / sum;
        sc.iter_mut().for_each(|s| *s *= inv);
    }
    o.fill(0.0);
    for j in 0..g.len {
        let at = j * g.stride + g.offset;
        let v = &g.vc[at..at + hd];
        for h in 0..heads {
            let p = scores[h * g.total + j];
            for (o, &v) in o[h * hd..(h + 1) * hd].iter_mut().zip(v) {
                *o = p.mul_add(v, *o);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
pub(super) unsafe fn group_avx512(g: &GroupInput<'_>, scores: &mut [f32], o: &mut [f32]) {
    group_attention(g, scores, o);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn group_avx2(g: &GroupInput<'_>, scores: &mut [f32], o: &mut [f32]) {
    group_attention(g, scores, o);
}

/// [`group_attention`] on the best instruction set of this CPU.
pub(super) fn group(g: &GroupInput<'_>, scores: &mut [f32], o: &mut [f32]) {
    match super::matmul::isa() {
        // SAFETY: AVX-512F and FMA were detected.
        #[cfg(target_arch = "x86_64")]
        super::matmul::Isa::Avx512 => unsafe { group_avx512(g, scores, o) },
        // SAFETY: AVX2 and FMA were detected.
        #[cfg(target_arch = "x86_64")]
        super::matmul::Isa::Avx2 => unsafe { group_avx2(g, scores, o) },
        _ => group_attention(g, scores, o),
    }
}
