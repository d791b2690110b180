//! Softmax attention of query heads over the cached keys and values of their key/value head.

use half::f16;

/// An element of the key/value cache: f32, or f16 (half the memory traffic; llama.cpp's default).
pub(super) trait KvElem: Copy {
    /// The value as f32.
    fn get(self) -> f32;

    /// Sixteen consecutive elements at `p`, widened to f32.
    ///
    /// # Safety
    /// Sixteen elements are readable at `p`; the CPU supports AVX-512F and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512;
}

impl KvElem for f32 {
    #[inline(always)]
    fn get(self) -> f32 {
        self
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512 {
        // SAFETY: the caller's guarantee.
        unsafe { std::arch::x86_64::_mm512_loadu_ps(p) }
    }
}

impl KvElem for f16 {
    #[inline(always)]
    fn get(self) -> f32 {
        self.to_f32()
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        // SAFETY: the caller's guarantee (32 readable bytes; F16C).
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
    }
}

/// The query heads of one key/value head (`q`: `group * head_dim`) and their view of the cache:
/// key/value `j` starts at `j * stride + offset`; `len` positions are visible.
pub(super) struct GroupInput<'a, E: KvElem = f32> {
    pub(super) q: &'a [f32],
    pub(super) kc: &'a [E],
    pub(super) vc: &'a [E],
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
fn dot<E: KvElem>(a: &[f32], b: &[E]) -> f32 {
    let mut acc = [0f32; 16];
    let mut ca = a.chunks_exact(16);
    let mut cb = b.chunks_exact(16);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..16 {
            acc[l] = x[l].mul_add(y[l].get(), acc[l]);
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y.get())
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// Softmax attention of a group of query heads over the visible cached positions into `o`
/// (`group * head_dim`), reading each key and value once for the whole group.
#[inline(always)]
pub(super) fn group_attention<E: KvElem>(g: &GroupInput<'_, E>, scores: &mut [f32], o: &mut [f32]) {
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
                *o = p.mul_add(v.get(), *o);
            }
        }
    }
}

/// [`group_attention`] with AVX-512 for head sizes that are multiples of 16 up to 128: scores of
/// eight positions at a time (their horizontal sums done together), a vectorised `exp` in the
/// softmax, and each head's output accumulated in registers. Others take the portable loops.
///
/// # Safety
/// The CPU must support AVX-512F/BW/VL, FMA and F16C (`Isa::Avx512`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(super) unsafe fn group_avx512<E: KvElem>(
    g: &GroupInput<'_, E>,
    scores: &mut [f32],
    o: &mut [f32],
) {
    let hd = g.head_dim;
    if !hd.is_multiple_of(16) || hd > 128 {
        group_attention(g, scores, o);
        return;
    }
    // SAFETY: the caller's CPU guarantee; `hd / 16` is the const parameter.
    unsafe {
        match hd / 16 {
            1 => group_avx512_n::<1, E>(g, scores, o),
            2 => group_avx512_n::<2, E>(g, scores, o),
            3 => group_avx512_n::<3, E>(g, scores, o),
            4 => group_avx512_n::<4, E>(g, scores, o),
            5 => group_avx512_n::<5, E>(g, scores, o),
            6 => group_avx512_n::<6, E>(g, scores, o),
            7 => group_avx512_n::<7, E>(g, scores, o),
            _ => group_avx512_n::<8, E>(g, scores, o),
        }
    }
}

/// [`group_avx512`] for head size `16 · VECS`.
///
/// # Safety
/// The CPU must support AVX-512F/BW/VL, FMA and F16C (`Isa::Avx512`); `g.head_dim == 16 · VECS`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn group_avx512_n<const VECS: usize, E: KvElem>(
    g: &GroupInput<'_, E>,
    scores: &mut [f32],
    o: &mut [f32],
) {
    use std::arch::x86_64::*;
    let hd = g.head_dim;
    assert_eq!(hd, 16 * VECS);
    let heads = g.q.len() / hd;
    assert!(g.len >= 1 && (g.len - 1) * g.stride + g.offset + hd <= g.kc.len().min(g.vc.len()));
    assert!(scores.len() >= (heads - 1) * g.total + g.len && o.len() >= heads * hd);
    // SAFETY (all loads and stores below): position `j < len` of the head's keys and values is
    // `j · stride + offset .. + hd`, inside `kc` and `vc` (asserted); `q`, `scores` and `o` are
    // indexed inside their asserted lengths.
    unsafe {
        let kp = g.kc.as_ptr().add(g.offset);
        let vp = g.vc.as_ptr().add(g.offset);
        for h in 0..heads {
            let qp = g.q.as_ptr().add(h * hd);
            let sc = scores.as_mut_ptr().add(h * g.total);
            let mut q = [_mm512_setzero_ps(); VECS];
            for (v, qv) in q.iter_mut().enumerate() {
                *qv = _mm512_loadu_ps(qp.add(16 * v));
            }
            let dot = |j: usize| {
                let k = kp.add(j * g.stride);
                let mut acc = _mm512_mul_ps(q[0], E::load16(k));
                for (v, qv) in q.iter().enumerate().skip(1) {
                    acc = _mm512_fmadd_ps(*qv, E::load16(k.add(16 * v)), acc);
                }
                acc
            };
            // The first head brings the group's keys and values into the cache (they are cold:
            // the weights of the whole model pass through it between two steps): keys eight
            // positions ahead of the dot products, and the values of the positions just read, so
            // that the value pass below finds them. The other heads of the group hit the cache.
            let line = 64 / std::mem::size_of::<E>();
            let fetch = |j: usize| {
                if h == 0 && j < g.len {
                    for e in (0..hd).step_by(line) {
                        _mm_prefetch::<_MM_HINT_T0>(kp.add(j * g.stride + e).cast());
                    }
                }
            };
            let fetch_v = |j: usize| {
                if h == 0 {
                    for e in (0..hd).step_by(line) {
                        _mm_prefetch::<_MM_HINT_T0>(vp.add(j * g.stride + e).cast());
                    }
                }
            };
            (0..8).for_each(fetch);
            let mut j = 0;
            while j + 8 <= g.len {
                for a in j..j + 8 {
                    fetch(a + 8);
                    fetch_v(a);
                }
                let sums = hsum8([
                    dot(j),
                    dot(j + 1),
                    dot(j + 2),
                    dot(j + 3),
                    dot(j + 4),
                    dot(j + 5),
                    dot(j + 6),
                    dot(j + 7),
                ]);
                _mm256_storeu_ps(sc.add(j), _mm256_mul_ps(sums, _mm256_set1_ps(g.scale)));
                j += 8;
            }
            for j in j..g.len {
                fetch_v(j);
                *sc.add(j) = _mm512_reduce_add_ps(dot(j)) * g.scale;
            }
            // Softmax over the row.
            let row = std::slice::from_raw_parts_mut(sc, g.len);
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let mut sum = _mm512_setzero_ps();
            let mut chunks = row.chunks_exact_mut(16);
            for c in &mut chunks {
                let e = exp16(_mm512_sub_ps(
                    _mm512_loadu_ps(c.as_ptr()),
                    _mm512_set1_ps(max),
                ));
                _mm512_storeu_ps(c.as_mut_ptr(), e);
                sum = _mm512_add_ps(sum, e);
            }
            let rest = chunks.into_remainder();
            let mask: __mmask16 = (1u32 << rest.len()).wrapping_sub(1) as __mmask16;
            if !rest.is_empty() {
                let x = _mm512_maskz_loadu_ps(mask, rest.as_ptr());
                let e = exp16(_mm512_sub_ps(x, _mm512_set1_ps(max)));
                let e = _mm512_maskz_mov_ps(mask, e);
                _mm512_mask_storeu_ps(rest.as_mut_ptr(), mask, e);
                sum = _mm512_add_ps(sum, e);
            }
            let inv = 1.0 / _mm512_reduce_add_ps(sum);
            // Output: Σ p_j v_j in registers.
            let mut acc = [_mm512_setzero_ps(); VECS];
            for j in 0..g.len {
                let p = _mm512_set1_ps(*sc.add(j) * inv);
                let v = vp.add(j * g.stride);
                for (k, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(p, E::load16(v.add(16 * k)), *a);
                }
            }
            for (k, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(o.as_mut_ptr().add(h * hd + 16 * k), *a);
            }
        }
    }
}

/// The horizontal sums of eight vectors.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
fn hsum8(v: [std::arch::x86_64::__m512; 8]) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    // Halves added: eight 256-bit vectors, then the 8x8 transpose-and-add of two `vhaddps` rounds.
    let h = |z: __m512| {
        _mm256_add_ps(
            _mm512_castps512_ps256(z),
            _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(z))),
        )
    };
    let abcd = _mm256_hadd_ps(
        _mm256_hadd_ps(h(v[0]), h(v[1])),
        _mm256_hadd_ps(h(v[2]), h(v[3])),
    );
    let efgh = _mm256_hadd_ps(
        _mm256_hadd_ps(h(v[4]), h(v[5])),
        _mm256_hadd_ps(h(v[6]), h(v[7])),
    );
    _mm256_add_ps(
        _mm256_permute2f128_ps::<0x20>(abcd, efgh),
        _mm256_permute2f128_ps::<0x31>(abcd, efgh),
    )
}

/// `g = silu(g) · u = g / (1 + exp(-g)) · u`, elementwise; with AVX-512 through [`exp16`].
pub(super) fn swiglu_rows(g: &mut [f32], u: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::matmul::isa() == super::matmul::Isa::Avx512 {
        // SAFETY: `Isa::Avx512` means every feature the kernel enables was detected.
        unsafe { swiglu_avx512(g, u) };
        return;
    }
    g.iter_mut()
        .zip(u)
        .for_each(|(g, u)| *g = *g / (1.0 + (-*g).exp()) * u);
}

/// [`swiglu_rows`] sixteen lanes at a time.
///
/// # Safety
/// The CPU must support AVX-512F/BW/VL, FMA and F16C (`Isa::Avx512`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn swiglu_avx512(g: &mut [f32], u: &[f32]) {
    use std::arch::x86_64::*;
    let n = g.len().min(u.len());
    let one = _mm512_set1_ps(1.0);
    let mut i = 0;
    while i < n {
        let mask: __mmask16 = if n - i >= 16 {
            0xFFFF
        } else {
            ((1u32 << (n - i)) - 1) as __mmask16
        };
        // SAFETY: lanes `i..i + 16` under `mask` are inside both slices.
        unsafe {
            let gv = _mm512_maskz_loadu_ps(mask, g.as_ptr().add(i));
            let uv = _mm512_maskz_loadu_ps(mask, u.as_ptr().add(i));
            let e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), gv));
            let y = _mm512_mul_ps(_mm512_div_ps(gv, _mm512_add_ps(one, e)), uv);
            _mm512_mask_storeu_ps(g.as_mut_ptr().add(i), mask, y);
        }
        i += 16;
    }
}

/// `exp` of 16 lanes (Cephes' single-precision polynomial: relative error about 1e-7 in the
/// range a softmax uses; inputs below -87 give 0 or a subnormal, as `f32::exp` does).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
fn exp16(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let x = _mm512_max_ps(
        _mm512_min_ps(x, _mm512_set1_ps(88.72)),
        _mm512_set1_ps(-103.97),
    );
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm512_set1_ps(1.987_569_2e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let p = _mm512_fmadd_ps(
        p,
        _mm512_mul_ps(r, r),
        _mm512_add_ps(r, _mm512_set1_ps(1.0)),
    );
    _mm512_scalef_ps(p, n)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn group_avx2<E: KvElem>(
    g: &GroupInput<'_, E>,
    scores: &mut [f32],
    o: &mut [f32],
) {
    group_attention(g, scores, o);
}

/// [`group_attention`] on the best instruction set of this CPU.
pub(super) fn group<E: KvElem>(g: &GroupInput<'_, E>, scores: &mut [f32], o: &mut [f32]) {
    match super::matmul::isa() {
        // SAFETY: `Isa::Avx512`: every feature the kernel enables was detected.
        #[cfg(target_arch = "x86_64")]
        super::matmul::Isa::Avx512 => unsafe { group_avx512(g, scores, o) },
        // SAFETY: AVX2 and FMA were detected.
        #[cfg(target_arch = "x86_64")]
        super::matmul::Isa::Avx2 => unsafe { group_avx2(g, scores, o) },
        _ => group_attention(g, scores, o),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state as f32 / u32::MAX as f32 - 0.5) * 4.0
            })
            .collect()
    }

    /// The view of `heads` query heads of the last key/value head of `nkv` over `len` positions.
    fn input<'a, E: KvElem>(
        q: &'a [f32],
        kc: &'a [E],
        vc: &'a [E],
        (hd, nkv, len, total): (usize, usize, usize, usize),
    ) -> GroupInput<'a, E> {
        GroupInput {
            q,
            kc,
            vc,
            stride: nkv * hd,
            offset: (nkv - 1) * hd,
            head_dim: hd,
            scale: 1.0 / (hd as f32).sqrt(),
            len,
            total,
        }
    }

    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "{what} [{i}]: {a} vs {b}"
            );
        }
    }

    #[test]
    fn every_instruction_set_matches_the_portable_loops() {
        // Head sizes the AVX-512 path takes (64, 128, 16) and one it leaves to the loops (72);
        // lengths below, at and off multiples of 8 and 16.
        for (hd, heads, nkv) in [(64, 1, 3), (64, 3, 3), (128, 2, 2), (16, 1, 1), (72, 1, 2)] {
            for len in [1, 7, 8, 9, 16, 17, 40, 257] {
                let kc = random(len * nkv * hd, 1);
                let vc = random(len * nkv * hd, 2);
                let q = random(heads * hd, 3);
                let g = input(&q, &kc, &vc, (hd, nkv, len, len + 3));
                let mut want = vec![0f32; heads * hd];
                group_attention(&g, &mut vec![0f32; heads * (len + 3)], &mut want);
                let mut got = vec![f32::NAN; heads * hd];
                group(&g, &mut vec![0f32; heads * (len + 3)], &mut got);
                assert_close(&got, &want, &format!("hd {hd} heads {heads} len {len}"));
            }
        }
    }

    #[test]
    fn f16_cache_matches_the_portable_loops_on_the_same_values() {
        for (hd, heads, nkv) in [(64, 3, 3), (128, 1, 2), (16, 2, 1), (72, 1, 2)] {
            for len in [1, 8, 9, 40, 257] {
                let half = |v: Vec<f32>| v.into_iter().map(f16::from_f32).collect::<Vec<_>>();
                let kc = half(random(len * nkv * hd, 6));
                let vc = half(random(len * nkv * hd, 7));
                let q = random(heads * hd, 8);
                let g = input(&q, &kc, &vc, (hd, nkv, len, len));
                // The same cache widened to f32: the f16 path must read exactly these values.
                let widen = |c: &[f16]| c.iter().map(|v| v.to_f32()).collect::<Vec<_>>();
                let (kw, vw) = (widen(&kc), widen(&vc));
                let mut want = vec![0f32; heads * hd];
                let wide = input(&q, &kw, &vw, (hd, nkv, len, len));
                group_attention(&wide, &mut vec![0f32; heads * len], &mut want);
                for fast in [false, true] {
                    let mut got = vec![f32::NAN; heads * hd];
                    let mut scores = vec![0f32; heads * len];
                    if fast {
                        group(&g, &mut scores, &mut got);
                    } else {
                        group_attention(&g, &mut scores, &mut got);
                    }
                    let what = format!("hd {hd} heads {heads} len {len} fast {fast}");
                    assert_close(&got, &want, &what);
                }
            }
        }
    }

    #[test]
    fn swiglu_matches_the_formula() {
        let g0 = random(37, 4).iter().map(|v| v * 10.0).collect::<Vec<_>>();
        let u = random(37, 5);
        let mut g = g0.clone();
        swiglu_rows(&mut g, &u);
        for i in 0..37 {
            let want = g0[i] / (1.0 + (-g0[i]).exp()) * u[i];
            assert!(
                (g[i] - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "[{i}] {} vs {want}",
                g[i]
            );
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_exp_is_close_to_exp() {
        if crate::cpu::matmul::isa() != crate::cpu::matmul::Isa::Avx512 {
            return;
        }
        let xs: Vec<f32> = (0..4096).map(|i| -90.0 + i as f32 * 0.0225).collect();
        for c in xs.chunks_exact(16) {
            let mut out = [0f32; 16];
            // SAFETY: `Isa::Avx512` (every feature `exp16` enables); `c` and `out` hold 16 floats.
            unsafe {
                use std::arch::x86_64::*;
                _mm512_storeu_ps(out.as_mut_ptr(), exp16(_mm512_loadu_ps(c.as_ptr())));
            }
            for (x, e) in c.iter().zip(out) {
                let want = x.exp();
                assert!(
                    (e - want).abs() <= 4e-7 * want + 1e-38,
                    "exp({x}) = {e}, want {want}"
                );
            }
        }
    }
}
