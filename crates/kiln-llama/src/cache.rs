//! The key/value cache, kept outside the model and passed to every forward call.

use burn::tensor::Tensor;

/// Keys and values of every layer for the tokens seen so far.
///
/// One cache holds one batch of sequences that advance together. Create it with
/// [`KvCache::new`], pass it to [`crate::Llama::forward`], and [`KvCache::reset`] it to start over.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    len: usize,
    max_len: usize,
}

impl KvCache {
    /// An empty cache for `num_layers` layers and at most `max_len` positions.
    #[must_use]
    pub fn new(num_layers: usize, max_len: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            len: 0,
            max_len,
        }
    }

    /// Positions cached so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most positions this cache accepts.
    #[must_use]
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Forgets every position.
    pub fn reset(&mut self) {
        self.layers.iter_mut().for_each(|l| *l = None);
        self.len = 0;
    }

    /// Keeps only the first `len` positions (for example a shared prompt prefix).
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        for layer in self.layers.iter_mut() {
            if let Some((k, v)) = layer.take()
                && len > 0
            {
                let [b, h, _, d] = k.dims();
                *layer = Some((
                    k.slice([0..b, 0..h, 0..len, 0..d]),
                    v.slice([0..b, 0..h, 0..len, 0..d]),
                ));
            }
        }
        self.len = len;
    }

    /// Appends this step's keys and values `[batch, kv_heads, new, head_dim]` to layer `layer` and
    /// returns the whole cached keys and values.
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: Tensor<4>,
        v: Tensor<4>,
    ) -> (Tensor<4>, Tensor<4>) {
        let (k, v) = match self.layers[layer].take() {
            None => (k, v),
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
        };
        self.layers[layer] = Some((k.clone(), v.clone()));
        (k, v)
    }

    /// Records that `n` positions were added to every layer.
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }
}
