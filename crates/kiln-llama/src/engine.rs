//! The two ways Kiln computes a Llama forward pass, behind one small interface for generation and
//! scoring: burn (any device: flex on CPU, wgpu, CUDA) or Kiln's own CPU kernels on the stored
//! (quantized) weights.

use kiln_backend::{Device, DeviceSpec};

use crate::cpu::{Activations, BatchWork, CpuCache, CpuLlama};
use crate::load::WeightSource;
use crate::lora::AdapterMix;
use crate::{Error, KvCache, Llama, LlamaConfig, Result};

/// Which implementation runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineKind {
    /// The CPU kernels on the CPU, burn elsewhere.
    #[default]
    Auto,
    /// burn on the chosen device (weights dequantized to f32).
    Burn,
    /// Kiln's CPU kernels (weights kept in their stored format).
    Cpu,
}

impl std::str::FromStr for EngineKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(EngineKind::Auto),
            "burn" => Ok(EngineKind::Burn),
            "cpu" | "kernels" => Ok(EngineKind::Cpu),
            other => Err(Error::Invalid(format!(
                "unknown engine `{other}` (auto, burn, cpu)"
            ))),
        }
    }
}

/// Where and how to load a model.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The device.
    pub device: DeviceSpec,
    /// The engine.
    pub engine: EngineKind,
    /// Quantize the decoder projections of an f32/f16/bf16 checkpoint to NF4 at load, exactly
    /// as bitsandbytes does (QLoRA's base). GGUF files keep their own block formats.
    pub nf4: bool,
    /// The CPU engine's arithmetic on block-quantized weights (exact by default; see
    /// [`Activations`]). Ignored by the burn engine.
    pub activations: Activations,
}

/// A loaded network.
#[derive(Debug, Clone)]
pub(crate) enum Engine {
    Burn(Box<Llama>),
    Cpu(Box<CpuLlama>),
}

/// The cache matching an [`Engine`].
#[derive(Debug, Clone)]
pub(crate) enum EngineCache {
    Burn(KvCache),
    Cpu(Box<CpuCache>),
}

impl EngineCache {
    /// A copy of the cached keys and values, for another sequence with the same prefix.
    pub(crate) fn snapshot(&self) -> EngineCache {
        match self {
            EngineCache::Burn(c) => EngineCache::Burn(c.clone()),
            EngineCache::Cpu(c) => EngineCache::Cpu(Box::new(c.snapshot())),
        }
    }

    /// Positions cached.
    pub(crate) fn len(&self) -> usize {
        match self {
            EngineCache::Burn(c) => c.len(),
            EngineCache::Cpu(c) => c.len(),
        }
    }

    /// Keeps the first `len` positions.
    pub(crate) fn truncate(&mut self, len: usize) {
        match self {
            EngineCache::Burn(c) => c.truncate(len),
            EngineCache::Cpu(c) => c.truncate(len),
        }
    }
}

/// The KV cache of one sequence for whichever engine runs the model (see
/// [`crate::LlamaGenerator::new_cache`]).
#[derive(Debug, Clone)]
pub struct ModelCache(pub(crate) EngineCache);

impl ModelCache {
    /// Positions cached so far.
    #[must_use]
    pub fn len(&self) -> usize {
        match &self.0 {
            EngineCache::Burn(c) => c.len(),
            EngineCache::Cpu(c) => c.len(),
        }
    }

    /// Whether nothing is cached.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps only the first `len` positions.
    pub fn truncate(&mut self, len: usize) {
        match &mut self.0 {
            EngineCache::Burn(c) => c.truncate(len),
            EngineCache::Cpu(c) => c.truncate(len),
        }
    }
}

/// What to build.
pub(crate) enum Target<'a> {
    Burn(&'a Device),
    /// burn, with the decoder projections frozen in their block format (QLoRA's base).
    BurnFrozen(&'a Device),
    Cpu,
}

impl Target<'_> {
    pub(crate) fn build(&self, config: LlamaConfig, source: &dyn WeightSource) -> Result<Engine> {
        Ok(match self {
            Target::Burn(device) => Engine::Burn(Box::new(Llama::load(config, source, device)?)),
            Target::BurnFrozen(device) => {
                Engine::Burn(Box::new(Llama::load_frozen(config, source, device)?))
            }
            Target::Cpu => Engine::Cpu(Box::new(CpuLlama::load(config, source)?)),
        })
    }
}

impl Engine {
    pub(crate) fn config(&self) -> &LlamaConfig {
        match self {
            Engine::Burn(m) => &m.config,
            Engine::Cpu(m) => &m.config,
        }
    }

    /// The burn device, when burn runs the model.
    pub(crate) fn burn_device(&self) -> Option<&Device> {
        match self {
            Engine::Burn(m) => Some(m.device()),
            Engine::Cpu(_) => None,
        }
    }

    pub(crate) fn new_cache(&self) -> EngineCache {
        match self {
            Engine::Burn(m) => EngineCache::Burn(m.new_cache()),
            Engine::Cpu(m) => EngineCache::Cpu(Box::new(m.new_cache())),
        }
    }

    /// Logits of the last new position, `[vocab]`.
    pub(crate) fn last_logits(
        &self,
        ids: &[u32],
        cache: &mut EngineCache,
        mix: &AdapterMix,
    ) -> Result<Vec<f32>> {
        match (self, cache) {
            (Engine::Burn(m), EngineCache::Burn(c)) => {
                read(m.forward_last_with(m.ids_tensor(ids, 1), c, mix)?)
            }
            (Engine::Cpu(m), EngineCache::Cpu(c)) => m.forward_with(ids, c, false, mix),
            _ => Err(Error::Invalid("cache of another engine".into())),
        }
    }

    /// Logits of every position of `ids` from an empty cache, `[ids.len() * vocab]`.
    /// One decode step for several sequences: token `ids[i]` after `caches[i]` with `mixes[i]`;
    /// the logits `[ids.len() * vocab]`, kept in `work`. The CPU engine runs them as one batch
    /// (weights read once); burn runs them one by one.
    pub(crate) fn step_logits<'w>(
        &self,
        ids: &[u32],
        caches: &mut [&mut EngineCache],
        mixes: &[&AdapterMix],
        work: &'w mut BatchWork,
    ) -> Result<&'w mut [f32]> {
        match self {
            Engine::Cpu(m) => {
                let mut cpu = caches
                    .iter_mut()
                    .map(|c| match &mut **c {
                        EngineCache::Cpu(b) => Ok(b.as_mut()),
                        EngineCache::Burn(_) => {
                            Err(Error::Invalid("cache of another engine".into()))
                        }
                    })
                    .collect::<Result<Vec<&mut CpuCache>>>()?;
                m.decode_batch(ids, &mut cpu, mixes, work)
            }
            Engine::Burn(_) => {
                let mut flat = std::mem::take(work.logits_mut());
                flat.clear();
                for ((&id, c), mix) in ids.iter().zip(caches.iter_mut()).zip(mixes) {
                    flat.extend(self.last_logits(&[id], c, mix)?);
                }
                *work.logits_mut() = flat;
                Ok(work.logits_mut())
            }
        }
    }

    pub(crate) fn all_logits(&self, ids: &[u32], mix: &AdapterMix) -> Result<Vec<f32>> {
        match self {
            Engine::Burn(m) => {
                let mut c = m.new_cache();
                read(m.forward_with(m.ids_tensor(ids, 1), &mut c, mix)?)
            }
            Engine::Cpu(m) => m.forward_with(ids, &mut m.cache_with_capacity(ids.len()), true, mix),
        }
    }
}

fn read<const D: usize>(t: burn::tensor::Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Invalid(format!("reading logits: {e:?}")))
}
