//! Federated averaging of adapters trained at separate sites.

use crate::{Error, LoraAdapter, Result};

/// Federated averaging (FedAvg) of adapters trained at separate sites from the same
/// initialisation: every factor is the weighted mean of the sites' factors (weights normalised
/// to sum to 1, e.g. proportional to each site's number of examples). The adapters must share
/// the config's rank and alpha settings and the set of modules.
///
/// # Errors
/// [`Error::Invalid`] for no adapters, bad weights, or adapters that do not line up.
pub fn average(adapters: &[LoraAdapter], weights: &[f64]) -> Result<LoraAdapter> {
    let first = adapters
        .first()
        .ok_or_else(|| Error::Invalid("averaging needs at least one adapter".into()))?;
    if weights.len() != adapters.len() || weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
        return Err(Error::Invalid(
            "one finite, non-negative weight per adapter is needed".into(),
        ));
    }
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return Err(Error::Invalid("the weights sum to zero".into()));
    }
    let mut out = first.clone();
    out.name = "average".into();
    for (key, w) in &mut out.modules {
        w.a.iter_mut().for_each(|v| *v = 0.0);
        w.b.iter_mut().for_each(|v| *v = 0.0);
        for (a, &k) in adapters.iter().zip(weights) {
            let o = a.modules.get(key).ok_or_else(|| Error::Mismatch {
                adapter: a.name.clone(),
                module: key.clone(),
                message: "missing in this adapter".into(),
            })?;
            if (o.r, o.in_features, o.out_features) != (w.r, w.in_features, w.out_features)
                || o.scaling != w.scaling
            {
                return Err(Error::Mismatch {
                    adapter: a.name.clone(),
                    module: key.clone(),
                    message: "rank, shape or scaling differs from the first adapter".into(),
                });
            }
            let f = (k / total) as f32;
            w.a.iter_mut().zip(&o.a).for_each(|(x, y)| *x += f * y);
            w.b.iter_mut().zip(&o.b).for_each(|(x, y)| *x += f * y);
        }
    }
    if let Some(a) = adapters
        .iter()
        .find(|a| a.modules.len() != out.modules.len())
    {
        return Err(Error::Mismatch {
            adapter: a.name.clone(),
            module: "*".into(),
            message: "adapts a different set of modules".into(),
        });
    }
    Ok(out)
}
