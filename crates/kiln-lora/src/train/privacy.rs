//! Differential privacy for DP-SGD training: the RDP accountant of the Poisson-subsampled
//! Gaussian mechanism exactly as Opacus computes it (`opacus.accountants.analysis.rdp`,
//! `opacus.accountants.RDPAccountant`, `opacus.accountants.utils.get_noise_multiplier`), and the
//! per-example clipping and Gaussian noise of the DP-SGD step on host gradient vectors.
//!
//! The accountant follows Opacus operation by operation (same log-space sums, same loop bounds,
//! same order of floating-point operations), so results agree with Opacus to about 1e-9
//! relative; the remaining differences come from `scipy.special.binom` / `log_ndtr`, which are
//! reimplemented here with accurate (but not bit-identical) algorithms. See
//! `tests/dp_accounting.rs` for the fixture comparison.

use crate::{Error, Result};
use std::f64::consts::{FRAC_1_SQRT_2, LN_2, PI, SQRT_2};

/// Opacus' `MAX_SIGMA`: [`noise_for_epsilon`] gives up beyond this noise multiplier.
pub const MAX_SIGMA: f64 = 1e6;

/// Opacus' default `epsilon_tolerance` of `get_noise_multiplier`.
pub const EPSILON_TOLERANCE: f64 = 0.01;

/// Opacus' `RDPAccountant.DEFAULT_ALPHAS`:
/// `[1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))` (151 orders).
pub fn default_orders() -> Vec<f64> {
    (1..100)
        .map(|x| 1.0 + f64::from(x) / 10.0)
        .chain((12..64).map(f64::from))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Log-space arithmetic (Opacus `_log_add`, `_log_sub`).
// ---------------------------------------------------------------------------------------------

fn log_add(logx: f64, logy: f64) -> f64 {
    let (a, b) = if logx <= logy {
        (logx, logy)
    } else {
        (logy, logx)
    };
    if a == f64::NEG_INFINITY {
        return b;
    }
    (a - b).exp().ln_1p() + b
}

fn log_sub(logx: f64, logy: f64) -> Result<f64> {
    if logx < logy {
        return Err(Error::Invalid(
            "RDP: the result of a log-space subtraction must be non-negative".into(),
        ));
    }
    if logy == f64::NEG_INFINITY {
        return Ok(logx);
    }
    if logx == logy {
        return Ok(f64::NEG_INFINITY);
    }
    let d = (logx - logy).exp_m1();
    if d.is_infinite() {
        // Python's math.expm1 raises OverflowError here; Opacus then returns logx.
        return Ok(logx);
    }
    Ok(d.ln() + logy)
}

// ---------------------------------------------------------------------------------------------
// Special functions (scipy.special.binom, scipy.special.log_ndtr).
// ---------------------------------------------------------------------------------------------

/// `scipy.special.binom(n, k)` for integer `k >= 0` and `n > 0`.
///
/// For `k < 20` (after the symmetry reduction for integer `n`) this is scipy's multiplication
/// formula operation by operation, hence bit-identical. Beyond, scipy goes through cephes'
/// `beta`; here integer `n` uses the exact binomial (correctly rounded) and fractional `n` the
/// running product, both accurate to a few ulp like scipy's.
fn binom(n: f64, k: u64) -> f64 {
    let mut kx = k as f64;
    let nx = n.floor();
    if nx == n && kx > nx / 2.0 && nx > 0.0 {
        kx = nx - kx;
    }
    if (0.0..20.0).contains(&kx) {
        let mut num = 1.0f64;
        let mut den = 1.0f64;
        let kk = kx as u64;
        for i in 1..=kk {
            num *= (i as f64 + n) - kx;
            den *= i as f64;
            if num.abs() > 1e50 {
                num /= den;
                den = 1.0;
            }
        }
        return num / den;
    }
    if nx == n && n <= 120.0 && kx >= 0.0 {
        // Exact in u128: binom(120, 60) < 1e35.
        let (nn, kk) = (n as u128, kx as u128);
        let mut c: u128 = 1;
        for i in 0..kk {
            c = c * (nn - i) / (i + 1);
        }
        return c as f64;
    }
    if nx == n && kx < 0.0 {
        return 0.0;
    }
    let mut c = 1.0f64;
    for i in 1..=k {
        c *= (n - i as f64 + 1.0) / i as f64;
    }
    c
}

/// `erfcx(x) = exp(x^2) erfc(x)` for `x > 0.7`.
fn erfcx(x: f64) -> f64 {
    if x < 26.0 {
        // exp(x^2) with x^2 split into its rounded value and the rounding error.
        let p = x * x;
        let e = x.mul_add(x, -p);
        libm::erfc(x) * p.exp() * (1.0 + e)
    } else {
        // Asymptotic series; for x >= 26 the 12 terms are far below an ulp.
        let inv = 1.0 / (2.0 * x * x);
        let mut term = 1.0f64;
        let mut sum = 1.0f64;
        for n in 1..12 {
            term *= -f64::from(2 * n - 1) * inv;
            sum += term;
        }
        sum / (x * PI.sqrt())
    }
}

/// `scipy.special.log_ndtr(a)`: log of the standard normal CDF, in scipy's two branches.
fn log_ndtr(a: f64) -> f64 {
    let t = a * FRAC_1_SQRT_2;
    if a < -1.0 {
        (erfcx(-t) / 2.0).ln() - t * t
    } else {
        (-libm::erfc(t) / 2.0).ln_1p()
    }
}

/// Opacus `_log_erfc`: `log(2) + log_ndtr(-x * sqrt(2))`.
fn log_erfc(x: f64) -> f64 {
    LN_2 + log_ndtr(-x * SQRT_2)
}

// ---------------------------------------------------------------------------------------------
// RDP of the sampled Gaussian mechanism.
// ---------------------------------------------------------------------------------------------

/// Opacus `_compute_log_a_for_int_alpha`.
fn log_a_int(q: f64, sigma: f64, alpha: u64) -> f64 {
    let mut log_a = f64::NEG_INFINITY;
    let (lq, l1q) = (q.ln(), (1.0 - q).ln());
    let two_s2 = 2.0 * (sigma * sigma);
    for i in 0..=alpha {
        let log_coef_i = binom(alpha as f64, i).ln() + i as f64 * lq + (alpha - i) as f64 * l1q;
        let s = log_coef_i + (i * i - i) as f64 / two_s2;
        log_a = log_add(log_a, s);
    }
    log_a
}

/// Opacus `_compute_log_a_for_frac_alpha`.
fn log_a_frac(q: f64, sigma: f64, alpha: f64) -> Result<f64> {
    const MAX_TERMS: u64 = 10_000_000;
    let (mut log_a0, mut log_a1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let s2 = sigma * sigma;
    let z0 = s2 * (1.0 / q - 1.0).ln() + 0.5;
    let (lq, l1q, lhalf) = (q.ln(), (1.0 - q).ln(), 0.5f64.ln());
    let denom = 2.0f64.sqrt() * sigma;
    for i in 0..MAX_TERMS {
        let fi = i as f64;
        let coef = binom(alpha, i);
        if coef == 0.0 || !coef.is_finite() {
            return Err(Error::Invalid(format!(
                "RDP: binomial coefficient ({alpha} choose {i}) is {coef}"
            )));
        }
        let log_coef = coef.abs().ln();
        let j = alpha - fi;

        let log_t0 = log_coef + fi * lq + j * l1q;
        let log_t1 = log_coef + j * lq + fi * l1q;

        let log_e0 = lhalf + log_erfc((fi - z0) / denom);
        let log_e1 = lhalf + log_erfc((z0 - j) / denom);

        let log_s0 = log_t0 + (fi * fi - fi) / (2.0 * s2) + log_e0;
        let log_s1 = log_t1 + (j * j - j) / (2.0 * s2) + log_e1;

        if coef > 0.0 {
            log_a0 = log_add(log_a0, log_s0);
            log_a1 = log_add(log_a1, log_s1);
        } else {
            log_a0 = log_sub(log_a0, log_s0)?;
            log_a1 = log_sub(log_a1, log_s1)?;
        }
        // Python's max(a, b) < -30.
        let m = if log_s1 > log_s0 { log_s1 } else { log_s0 };
        if m < -30.0 {
            return Ok(log_add(log_a0, log_a1));
        }
    }
    Err(Error::Invalid(format!(
        "RDP: the series for order {alpha} (q = {q}, sigma = {sigma}) did not converge"
    )))
}

/// Opacus `_compute_rdp`: RDP of one step at order `alpha` (may be `inf`).
fn rdp_one(q: f64, sigma: f64, alpha: f64) -> Result<f64> {
    if q == 0.0 {
        return Ok(0.0);
    }
    if sigma == 0.0 {
        return Ok(f64::INFINITY);
    }
    if q == 1.0 {
        return Ok(alpha / (2.0 * (sigma * sigma)));
    }
    if alpha.is_infinite() {
        return Ok(f64::INFINITY);
    }
    let log_a = if alpha.fract() == 0.0 {
        log_a_int(q, sigma, alpha as u64)
    } else {
        log_a_frac(q, sigma, alpha)?
    };
    Ok(log_a / (alpha - 1.0))
}

fn check_mechanism(q: f64, sigma: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&q) {
        return Err(Error::Invalid(format!(
            "DP: sample rate must lie in [0, 1], got {q}"
        )));
    }
    if !(sigma >= 0.0 && sigma.is_finite()) {
        return Err(Error::Invalid(format!(
            "DP: noise multiplier must be finite and >= 0, got {sigma}"
        )));
    }
    Ok(())
}

fn check_orders(orders: &[f64]) -> Result<()> {
    if orders.is_empty() {
        return Err(Error::Invalid("RDP: no orders given".into()));
    }
    if let Some(a) = orders.iter().find(|a| a.is_nan() || **a <= 1.0) {
        return Err(Error::Invalid(format!("RDP: orders must be > 1, got {a}")));
    }
    if let Some(a) = orders
        .iter()
        .find(|a| a.is_finite() && a.fract() == 0.0 && **a > 1e6)
    {
        return Err(Error::Invalid(format!(
            "RDP: integer order {a} is too large (at most 1e6)"
        )));
    }
    Ok(())
}

/// Opacus `compute_rdp(q=q, noise_multiplier=sigma, steps=steps, orders=orders)`: the RDP of
/// `steps` compositions of the sampled Gaussian mechanism with sampling rate `q` and noise
/// multiplier `sigma`, one value per order (`inf` where there is no privacy).
///
/// Edge cases as Opacus: `q == 0` gives 0, `sigma == 0` gives `inf`, `q == 1` gives
/// `steps * alpha / (2 sigma^2)`. Errors on `q` outside `[0, 1]`, a negative or non-finite
/// `sigma`, or an order `<= 1`.
pub fn compute_rdp(q: f64, sigma: f64, steps: usize, orders: &[f64]) -> Result<Vec<f64>> {
    check_mechanism(q, sigma)?;
    check_orders(orders)?;
    orders
        .iter()
        .map(|&a| Ok(rdp_one(q, sigma, a)? * steps as f64))
        .collect()
}

/// Opacus `get_privacy_spent(orders=orders, rdp=rdp, delta=delta)`: converts RDP to
/// `(epsilon, delta)`-DP with the conversion of Balle et al. 2020 (Theorem 21),
/// `eps = rdp - (ln delta + ln alpha) / (alpha - 1) + ln((alpha - 1) / alpha)`, minimised over
/// the orders (NaNs ignored). Returns `(epsilon, best order)`; `(inf, NaN)` when every value is
/// NaN, as Opacus.
pub fn privacy_spent(orders: &[f64], rdp: &[f64], delta: f64) -> Result<(f64, f64)> {
    if orders.len() != rdp.len() {
        return Err(Error::Invalid(format!(
            "DP: {} orders but {} RDP values",
            orders.len(),
            rdp.len()
        )));
    }
    if !(delta > 0.0 && delta < 1.0) {
        return Err(Error::Invalid(format!(
            "DP: delta must lie in (0, 1), got {delta}"
        )));
    }
    check_orders(orders)?;
    let ld = delta.ln();
    let mut best: Option<(f64, f64)> = None;
    for (&a, &r) in orders.iter().zip(rdp) {
        let eps = r - (ld + a.ln()) / (a - 1.0) + ((a - 1.0) / a).ln();
        if eps.is_nan() {
            continue;
        }
        match best {
            Some((e, _)) if e <= eps => {}
            _ => best = Some((eps, a)),
        }
    }
    Ok(best.unwrap_or((f64::INFINITY, f64::NAN)))
}

/// Opacus' `RDPAccountant`: the history of DP-SGD steps and the privacy spent so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RdpAccountant {
    history: Vec<(f64, f64, usize)>,
}

impl RdpAccountant {
    /// An accountant with no steps.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one step with `noise_multiplier` and `sample_rate`; consecutive identical steps
    /// are merged into one history entry, as Opacus does.
    pub fn step(&mut self, noise_multiplier: f64, sample_rate: f64) -> Result<()> {
        check_mechanism(sample_rate, noise_multiplier)?;
        match self.history.last_mut() {
            Some((s, q, n)) if *s == noise_multiplier && *q == sample_rate => *n += 1,
            _ => self.history.push((noise_multiplier, sample_rate, 1)),
        }
        Ok(())
    }

    /// Records `steps` steps at once (one history entry, merged with the last if identical).
    pub fn steps(&mut self, noise_multiplier: f64, sample_rate: f64, steps: usize) -> Result<()> {
        check_mechanism(sample_rate, noise_multiplier)?;
        match self.history.last_mut() {
            Some((s, q, n)) if *s == noise_multiplier && *q == sample_rate => *n += steps,
            _ => self.history.push((noise_multiplier, sample_rate, steps)),
        }
        Ok(())
    }

    /// The history: `(noise multiplier, sample rate, steps)` entries in order.
    pub fn history(&self) -> &[(f64, f64, usize)] {
        &self.history
    }

    /// Total number of steps recorded.
    pub fn total_steps(&self) -> usize {
        self.history.iter().map(|h| h.2).sum()
    }

    /// `(epsilon, best order)` spent so far at `delta`, over [`default_orders`]
    /// (Opacus `get_privacy_spent(delta=delta)`); `(0, 0)` with an empty history.
    pub fn epsilon(&self, delta: f64) -> Result<(f64, f64)> {
        self.epsilon_with_orders(delta, &default_orders())
    }

    /// As [`RdpAccountant::epsilon`] with explicit RDP orders.
    pub fn epsilon_with_orders(&self, delta: f64, orders: &[f64]) -> Result<(f64, f64)> {
        if self.history.is_empty() {
            return Ok((0.0, 0.0));
        }
        let mut rdp = vec![0.0f64; orders.len()];
        for &(sigma, q, steps) in &self.history {
            for (acc, r) in rdp.iter_mut().zip(compute_rdp(q, sigma, steps, orders)?) {
                *acc += r;
            }
        }
        privacy_spent(orders, &rdp, delta)
    }
}

/// Opacus `get_noise_multiplier(target_epsilon, target_delta, sample_rate, steps=steps)` with
/// the RDP accountant and `epsilon_tolerance = 0.01`: the noise multiplier (found by doubling
/// from 10, then bisection) that keeps `steps` steps at `sample_rate` within
/// `(target_eps, delta)`. Errors when the budget needs more than [`MAX_SIGMA`].
pub fn noise_for_epsilon(
    target_eps: f64,
    delta: f64,
    sample_rate: f64,
    steps: usize,
) -> Result<f64> {
    if !(target_eps > 0.0 && target_eps.is_finite()) {
        return Err(Error::Invalid(format!(
            "DP: target epsilon must be finite and > 0, got {target_eps}"
        )));
    }
    check_mechanism(sample_rate, 1.0)?;
    let orders = default_orders();
    let eps_for = |sigma: f64| -> Result<f64> {
        let rdp = compute_rdp(sample_rate, sigma, steps, &orders)?;
        Ok(privacy_spent(&orders, &rdp, delta)?.0)
    };
    let mut eps_high = f64::INFINITY;
    let (mut sigma_low, mut sigma_high) = (0.0f64, 10.0f64);
    while eps_high > target_eps {
        sigma_high *= 2.0;
        eps_high = eps_for(sigma_high)?;
        if sigma_high > MAX_SIGMA {
            return Err(Error::Invalid(format!(
                "DP: the privacy budget (epsilon {target_eps}, delta {delta}) is too low"
            )));
        }
    }
    while target_eps - eps_high > EPSILON_TOLERANCE {
        let sigma = (sigma_low + sigma_high) / 2.0;
        let eps = eps_for(sigma)?;
        if eps < target_eps {
            sigma_high = sigma;
            eps_high = eps;
        } else {
            sigma_low = sigma;
        }
    }
    Ok(sigma_high)
}

// ---------------------------------------------------------------------------------------------
// The DP-SGD step on host gradients.
// ---------------------------------------------------------------------------------------------

/// Clips one example's gradient (one `Vec` per parameter tensor) to global L2 norm at most
/// `max_norm`, scaling by `min(1, max_norm / (norm + 1e-6))` exactly as Opacus. Returns the
/// norm before clipping (accumulated in f64). Errors on a negative or non-finite `max_norm`.
pub fn clip_per_example(grads: &mut [Vec<f32>], max_norm: f64) -> Result<f64> {
    if !(max_norm >= 0.0 && max_norm.is_finite()) {
        return Err(Error::Invalid(format!(
            "DP: max_norm must be finite and >= 0, got {max_norm}"
        )));
    }
    let sq: f64 = grads
        .iter()
        .flatten()
        .map(|&g| f64::from(g) * f64::from(g))
        .sum();
    let norm = sq.sqrt();
    let factor = (max_norm / (norm + 1e-6)).min(1.0);
    if factor < 1.0 {
        let f = factor as f32;
        grads.iter_mut().flatten().for_each(|g| *g *= f);
    }
    Ok(norm)
}

/// Adds `N(0, (noise_multiplier * max_norm)^2)` to every coordinate of the summed clipped
/// gradients (Box-Muller on `rng`'s uniform draws, so a seeded `rng` gives reproducible noise).
/// Errors on a negative or non-finite `noise_multiplier` or `max_norm`.
pub fn add_noise<R: rand::Rng + ?Sized>(
    sum: &mut [Vec<f32>],
    noise_multiplier: f64,
    max_norm: f64,
    rng: &mut R,
) -> Result<()> {
    let std = noise_multiplier * max_norm;
    if !(noise_multiplier >= 0.0 && max_norm >= 0.0 && std.is_finite()) {
        return Err(Error::Invalid(format!(
            "DP: noise multiplier ({noise_multiplier}) and max_norm ({max_norm}) must be finite and >= 0"
        )));
    }
    if std == 0.0 {
        return Ok(());
    }
    let mut spare: Option<f64> = None;
    for g in sum.iter_mut().flatten() {
        let z = match spare.take() {
            Some(z) => z,
            None => {
                // u1 in (0, 1] so ln(u1) is finite.
                let u1 = 1.0 - rng.random::<f64>();
                let u2: f64 = rng.random();
                let r = (-2.0 * u1.ln()).sqrt();
                let (s, c) = (2.0 * PI * u2).sin_cos();
                spare = Some(r * s);
                r * c
            }
        };
        *g += (std * z) as f32;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn clipping_bounds_the_norm() {
        let mut g = vec![vec![3.0f32, 0.0], vec![4.0f32]];
        let n = clip_per_example(&mut g, 1.0).unwrap();
        assert!((n - 5.0).abs() < 1e-12);
        let after: f64 = g
            .iter()
            .flatten()
            .map(|&x| f64::from(x).powi(2))
            .sum::<f64>();
        assert!(after.sqrt() <= 1.0 + 1e-6, "{}", after.sqrt());
        assert!((after.sqrt() - 5.0 / (5.0 + 1e-6)).abs() < 1e-6);
        // Already inside the ball: untouched.
        let mut h = vec![vec![0.3f32, 0.4]];
        let n = clip_per_example(&mut h, 1.0).unwrap();
        assert!((n - 0.5).abs() < 1e-7);
        assert_eq!(h, vec![vec![0.3f32, 0.4]]);
        assert!(clip_per_example(&mut h, -1.0).is_err());
    }

    #[test]
    fn noise_has_the_requested_std() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let n = 200_000usize;
        let mut s = vec![vec![0.0f32; n / 2], vec![0.0f32; n / 2]];
        add_noise(&mut s, 1.5, 2.0, &mut rng).unwrap();
        let xs: Vec<f64> = s.iter().flatten().map(|&x| f64::from(x)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        // std 3: mean's std 3/sqrt(n) ~ 0.0067, std's relative std 1/sqrt(2n) ~ 0.0016.
        assert!(mean.abs() < 5.0 * 3.0 / (n as f64).sqrt(), "mean {mean}");
        assert!(
            (var.sqrt() / 3.0 - 1.0).abs() < 5.0 / (2.0 * n as f64).sqrt(),
            "std {}",
            var.sqrt()
        );
        // Reproducible with the same seed; zero noise leaves the sum alone.
        let mut rng2 = rand::rngs::StdRng::seed_from_u64(7);
        let mut t = vec![vec![0.0f32; n / 2], vec![0.0f32; n / 2]];
        add_noise(&mut t, 1.5, 2.0, &mut rng2).unwrap();
        assert_eq!(s, t);
        let mut u = vec![vec![1.0f32]];
        add_noise(&mut u, 0.0, 2.0, &mut rng2).unwrap();
        assert_eq!(u, vec![vec![1.0f32]]);
        assert!(add_noise(&mut u, -1.0, 2.0, &mut rng2).is_err());
    }

    #[test]
    fn edge_cases_match_opacus() {
        let orders = [1.5, 2.0, 32.0];
        assert_eq!(compute_rdp(0.0, 1.0, 10, &orders).unwrap(), vec![0.0; 3]);
        assert!(
            compute_rdp(0.1, 0.0, 10, &orders)
                .unwrap()
                .iter()
                .all(|r| r.is_infinite())
        );
        let r = compute_rdp(1.0, 2.0, 3, &orders).unwrap();
        for (a, r) in orders.iter().zip(r) {
            assert_eq!(r, 3.0 * a / 8.0);
        }
        assert!(compute_rdp(1.5, 1.0, 1, &orders).is_err());
        assert!(compute_rdp(0.5, 1.0, 1, &[1.0]).is_err());
        assert!(privacy_spent(&orders, &[1.0], 1e-5).is_err());
        assert_eq!(RdpAccountant::new().epsilon(1e-5).unwrap(), (0.0, 0.0));
    }

    #[test]
    fn accountant_merges_steps() {
        let mut acc = RdpAccountant::new();
        acc.step(1.0, 0.01).unwrap();
        acc.step(1.0, 0.01).unwrap();
        acc.step(1.1, 0.01).unwrap();
        acc.step(1.0, 0.01).unwrap();
        assert_eq!(
            acc.history(),
            &[(1.0, 0.01, 2), (1.1, 0.01, 1), (1.0, 0.01, 1)]
        );
        assert_eq!(acc.total_steps(), 4);
    }

    #[test]
    fn default_orders_are_opacus() {
        let o = default_orders();
        assert_eq!(o.len(), 151);
        assert_eq!(o[0], 1.1);
        assert_eq!(o[98], 10.9);
        assert_eq!(o[99], 12.0);
        assert_eq!(o[150], 63.0);
    }
}
