//! A LoRA adapter in memory: per targeted module, the factors `A` `[r, in]` and `B` `[out, r]` and
//! the scaling, read from and written to PEFT's `adapter_config.json` +
//! `adapter_model.safetensors`.
//!
//! PEFT's key names: `base_model.model.<module>.lora_A.weight` and `...lora_B.weight`, where
//! `<module>` is the base model's module key (`model.layers.0.self_attn.q_proj`).

use std::collections::BTreeMap;
use std::path::Path;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr_lite::{normal, uniform};
use safetensors::{Dtype, SafeTensors};

use crate::config::{InitLoraWeights, LoraConfig};
use crate::io::{read_f32, write_atomic};
use crate::{Error, Result};

/// The config file name PEFT uses.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// The weights file name PEFT uses.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
const PREFIX: &str = "base_model.model.";
/// The safetensors metadata entry in which [`LoraAdapter::save`] keeps a copy of the config it
/// writes next to the weights (see [`LoraAdapter::save`] for why).
pub const CONFIG_METADATA: &str = "kiln.adapter_config";

/// A factor's data and shape as read.
type Factor = (Vec<f32>, Vec<usize>);

/// The config a save interrupted between its two renames wrote into the weights' metadata: the
/// weights carry [`CONFIG_METADATA`], the config file is not newer than them and says something
/// else. `None` for a consistent directory (or one not written by Kiln).
fn interrupted_save(dir: &Path) -> Option<String> {
    let weights = dir.join(WEIGHTS_FILE);
    let config = dir.join(CONFIG_FILE);
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let weights_time = modified(&weights)?;
    if modified(&config).is_some_and(|t| t > weights_time) {
        return None;
    }
    let saved = safetensors_metadata(&weights)?.remove(CONFIG_METADATA)?;
    let on_disk = std::fs::read_to_string(&config).ok();
    let same = on_disk.as_deref().is_some_and(|text| {
        serde_json::from_str::<serde_json::Value>(text).ok()
            == serde_json::from_str::<serde_json::Value>(&saved).ok()
    });
    (!same).then_some(saved)
}

/// The `__metadata__` of a safetensors file, reading only its header.
fn safetensors_metadata(path: &Path) -> Option<std::collections::HashMap<String, String>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).ok()?;
    let len = usize::try_from(u64::from_le_bytes(len)).ok()?;
    if len > 100 << 20 {
        return None;
    }
    let mut header = vec![0u8; len];
    f.read_exact(&mut header).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&header).ok()?;
    serde_json::from_value(value.get("__metadata__")?.clone()).ok()
}

/// A linear module of a base model that an adapter may target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinearModule {
    /// The module key (`model.layers.0.self_attn.q_proj`).
    pub key: String,
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
    /// Whether this is the output projection (`lm_head`), which `all-linear` skips.
    pub is_output: bool,
}

/// The two factors of one adapted module.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraWeights {
    /// `A`, `[r, in]` row-major.
    pub a: Vec<f32>,
    /// `B`, `[out, r]` row-major.
    pub b: Vec<f32>,
    /// The rank.
    pub r: usize,
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
    /// `alpha / r` or `alpha / sqrt(r)`.
    pub scaling: f32,
}

impl LoraWeights {
    /// `ΔW = scaling · B A`, `[out, in]` row-major: what merging adds to the base weight.
    #[must_use]
    pub fn delta(&self) -> Vec<f32> {
        let (r, n_in, n_out) = (self.r, self.in_features, self.out_features);
        let mut d = vec![0f32; n_out * n_in];
        for (o, row) in d.chunks_exact_mut(n_in).enumerate() {
            for k in 0..r {
                let bk = self.b[o * r + k] * self.scaling;
                if bk != 0.0 {
                    let a = &self.a[k * n_in..(k + 1) * n_in];
                    row.iter_mut().zip(a).for_each(|(d, a)| *d += bk * a);
                }
            }
        }
        d
    }

    /// Adds `factor · scaling · (x Aᵀ) Bᵀ` to `y` for `t` rows of `x` (`[t, in]`) and `y`
    /// (`[t, out]`); `tmp` is a reusable buffer.
    pub fn add_to(&self, x: &[f32], t: usize, y: &mut [f32], factor: f32, tmp: &mut Vec<f32>) {
        let (r, n_in, n_out) = (self.r, self.in_features, self.out_features);
        tmp.clear();
        tmp.resize(t * r, 0.0);
        let s = factor * self.scaling;
        for i in 0..t {
            let xi = &x[i * n_in..(i + 1) * n_in];
            for k in 0..r {
                let a = &self.a[k * n_in..(k + 1) * n_in];
                tmp[i * r + k] = s * xi.iter().zip(a).map(|(x, a)| x * a).sum::<f32>();
            }
        }
        for i in 0..t {
            let h = &tmp[i * r..(i + 1) * r];
            let yi = &mut y[i * n_out..(i + 1) * n_out];
            for (o, yo) in yi.iter_mut().enumerate() {
                let b = &self.b[o * r..(o + 1) * r];
                *yo += h.iter().zip(b).map(|(h, b)| h * b).sum::<f32>();
            }
        }
    }
}

/// A LoRA adapter: its config and the factors of every module it adapts.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraAdapter {
    /// A name for messages and for choosing the adapter per call.
    pub name: String,
    /// The PEFT config.
    pub config: LoraConfig,
    /// Factors by module key.
    pub modules: BTreeMap<String, LoraWeights>,
}

impl LoraAdapter {
    /// The length of every factor, in module order, `A` then `B` (the sizes an optimizer state
    /// over this adapter needs).
    #[must_use]
    pub fn factor_sizes(&self) -> Vec<usize> {
        self.modules
            .values()
            .flat_map(|w| [w.a.len(), w.b.len()])
            .collect()
    }

    /// Every factor, mutable, in the order of [`Self::factor_sizes`].
    pub fn factors_mut(&mut self) -> Vec<&mut [f32]> {
        self.modules
            .values_mut()
            .flat_map(|w| [w.a.as_mut_slice(), w.b.as_mut_slice()])
            .collect()
    }

    /// Fresh factors for every module of `modules` the config targets, initialised as PEFT does:
    /// `A` Kaiming-uniform (bound `1/sqrt(in)`) or gaussian (`std = 1/r`), `B` zero; with
    /// `init_lora_weights = false`, `B` is random too (an adapter that changes the output, for
    /// tests).
    ///
    /// # Errors
    /// [`Error::Config`] when the config targets none of the modules.
    pub fn init(
        name: &str,
        config: LoraConfig,
        modules: &[LinearModule],
        seed: u64,
    ) -> Result<Self> {
        config.validate("<config>")?;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut out = BTreeMap::new();
        for m in modules {
            let Some(p) = config.module(&m.key, m.is_output)? else {
                continue;
            };
            let (r, n_in, n_out) = (p.r, m.in_features, m.out_features);
            let a = match &config.init_lora_weights {
                InitLoraWeights::Method(_) => normal(&mut rng, r * n_in, 1.0 / r as f32),
                InitLoraWeights::Bool(_) => {
                    let bound = 1.0 / (n_in as f32).sqrt();
                    uniform(&mut rng, r * n_in, bound)
                }
            };
            let b = if config.init_lora_weights == InitLoraWeights::Bool(false) {
                uniform(&mut rng, n_out * r, 1.0 / (r as f32).sqrt())
            } else {
                vec![0.0; n_out * r]
            };
            out.insert(
                m.key.clone(),
                LoraWeights {
                    a,
                    b,
                    r,
                    in_features: n_in,
                    out_features: n_out,
                    scaling: p.scaling as f32,
                },
            );
        }
        if out.is_empty() {
            let names: Vec<&str> = modules.iter().map(|m| m.key.as_str()).take(8).collect();
            return Err(Error::Config {
                path: "<config>".into(),
                message: format!(
                    "`target_modules` {:?} matches no linear module of the model (modules look like {names:?})",
                    config.target_modules
                ),
            });
        }
        Ok(Self {
            name: name.into(),
            config,
            modules: out,
        })
    }

    /// Loads a PEFT adapter directory (`adapter_config.json` + `adapter_model.safetensors`).
    ///
    /// # Errors
    /// Missing or malformed files, unsupported options, tensors with unexpected names, shapes or
    /// ranks that contradict the config; each error names the file and the tensor.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let weights = dir.join(WEIGHTS_FILE);
        let config = match interrupted_save(dir) {
            Some(saved) => LoraConfig::from_json(&saved, &weights.display().to_string())?,
            None => LoraConfig::from_file(&dir.join(CONFIG_FILE))?,
        };
        if !weights.exists() && dir.join("adapter_model.bin").exists() {
            return Err(Error::Unsupported {
                path: dir.join("adapter_model.bin").display().to_string(),
                field: "adapter_model.bin".into(),
                message: "pickled PyTorch weights are not read (they can run code); \
                          save the adapter with safe_serialization=True"
                    .into(),
            });
        }
        let bytes = std::fs::read(&weights).map_err(|e| Error::io(&weights, e))?;
        let name = dir
            .file_name()
            .map_or_else(|| "adapter".into(), |n| n.to_string_lossy().into_owned());
        Self::from_parts(&name, config, &bytes, &weights.display().to_string())
    }

    /// Builds an adapter from its config and the bytes of its safetensors file.
    ///
    /// # Errors
    /// As [`LoraAdapter::load`].
    pub fn from_parts(name: &str, config: LoraConfig, bytes: &[u8], origin: &str) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Safetensors {
            path: origin.into(),
            message: e.to_string(),
        })?;
        let tensor_err = |name: &str, message: String| Error::Tensor {
            path: origin.into(),
            name: name.into(),
            message,
        };
        let mut parts: BTreeMap<String, [Option<Factor>; 2]> = BTreeMap::new();
        for (tname, view) in st.tensors() {
            let rest = tname.strip_prefix(PREFIX).unwrap_or(&tname);
            let (module, which) = split_key(rest).ok_or_else(|| {
                let why = if rest.contains("lora_embedding") || rest.contains("lora_magnitude") {
                    "embedding LoRA and DoRA tensors are not supported"
                } else {
                    "not a LoRA factor (expected `<module>.lora_A.weight` or `.lora_B.weight`)"
                };
                tensor_err(&tname, why.into())
            })?;
            if !matches!(view.dtype(), Dtype::F32 | Dtype::F16 | Dtype::BF16) {
                return Err(tensor_err(
                    &tname,
                    format!("dtype {:?} is not a float type", view.dtype()),
                ));
            }
            if view.shape().len() != 2 {
                return Err(tensor_err(
                    &tname,
                    format!("shape {:?} is not 2-D", view.shape()),
                ));
            }
            let data = read_f32(&view).map_err(|m| tensor_err(&tname, m))?;
            parts.entry(module.to_string()).or_default()[which] =
                Some((data, view.shape().to_vec()));
        }
        let mut modules = BTreeMap::new();
        for (module, [a, b]) in parts {
            let key = |s: &str| format!("{PREFIX}{module}.{s}.weight");
            let (a, sa) = a.ok_or_else(|| tensor_err(&key("lora_A"), "missing".into()))?;
            let (b, sb) = b.ok_or_else(|| tensor_err(&key("lora_B"), "missing".into()))?;
            let (r, n_in, n_out) = (sa[0], sa[1], sb[0]);
            if sb[1] != r {
                return Err(tensor_err(
                    &key("lora_B"),
                    format!("shape {sb:?} does not match lora_A's rank {r} (A is {sa:?})"),
                ));
            }
            let p = config.params(&module)?;
            if p.r != r {
                return Err(tensor_err(
                    &key("lora_A"),
                    format!(
                        "rank {r} but the config gives this module rank {} (r / rank_pattern)",
                        p.r
                    ),
                ));
            }
            modules.insert(
                module,
                LoraWeights {
                    a,
                    b,
                    r,
                    in_features: n_in,
                    out_features: n_out,
                    scaling: p.scaling as f32,
                },
            );
        }
        if modules.is_empty() {
            return Err(Error::Safetensors {
                path: origin.into(),
                message: "holds no LoRA tensors".into(),
            });
        }
        Ok(Self {
            name: name.into(),
            config,
            modules,
        })
    }

    /// Writes the adapter as PEFT does. Each file goes to a temporary name first and is renamed,
    /// so a crash never leaves a half-written file; the weights are replaced before the config,
    /// and carry a copy of the config in their metadata ([`CONFIG_METADATA`]). A crash between
    /// the two renames leaves the new weights beside the old config: [`LoraAdapter::load`]
    /// recognises that (the config file is older than the weights and differs from their copy)
    /// and loads the new adapter whole, and the next save repairs the file. A config edited by
    /// hand after a save is newer than the weights and is used as it is.
    ///
    /// # Errors
    /// I/O errors naming the file.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let config_json = self.config.to_json()?;
        for file in [WEIGHTS_FILE, CONFIG_FILE] {
            kiln_core::fs::remove_stale_temporaries(&dir.join(file));
        }
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (module, w) in &self.modules {
            let bytes = |v: &[f32]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
            tensors.push((
                format!("{PREFIX}{module}.lora_A.weight"),
                vec![w.r, w.in_features],
                bytes(&w.a),
            ));
            tensors.push((
                format!("{PREFIX}{module}.lora_B.weight"),
                vec![w.out_features, w.r],
                bytes(&w.b),
            ));
        }
        let data = crate::io::serialize_f32_with(
            &tensors,
            "adapter",
            &[(CONFIG_METADATA, config_json.clone())],
        )?;
        write_atomic(&dir.join(WEIGHTS_FILE), &data)?;
        write_atomic(&dir.join(CONFIG_FILE), config_json.as_bytes())?;
        Ok(())
    }

    /// Checks every adapted module exists in `modules` with the same shape.
    ///
    /// # Errors
    /// [`Error::Mismatch`] naming the module.
    pub fn check_against(&self, modules: &[LinearModule]) -> Result<()> {
        for (key, w) in &self.modules {
            let m = modules
                .iter()
                .find(|m| &m.key == key)
                .ok_or_else(|| Error::Mismatch {
                    adapter: self.name.clone(),
                    module: key.clone(),
                    message: "the model has no linear module of that name".into(),
                })?;
            if (m.in_features, m.out_features) != (w.in_features, w.out_features) {
                return Err(Error::Mismatch {
                    adapter: self.name.clone(),
                    module: key.clone(),
                    message: format!(
                        "adapter is {}x{} (out x in), the model's module is {}x{}",
                        w.out_features, w.in_features, m.out_features, m.in_features
                    ),
                });
            }
        }
        Ok(())
    }

    /// Number of trainable parameters.
    #[must_use]
    pub fn num_parameters(&self) -> usize {
        self.modules.values().map(|w| w.a.len() + w.b.len()).sum()
    }
}

/// Splits `<module>.lora_A.weight` (or `.lora_A.<adapter>.weight`) into the module and 0 (A) or
/// 1 (B).
fn split_key(rest: &str) -> Option<(&str, usize)> {
    let body = rest.strip_suffix(".weight")?;
    for (tag, which) in [(".lora_A", 0), (".lora_B", 1)] {
        if let Some(i) = body.rfind(tag) {
            let after = &body[i + tag.len()..];
            if after.is_empty() || (after.starts_with('.') && !after[1..].contains('.')) {
                return Some((&body[..i], which));
            }
        }
    }
    None
}

/// Tiny samplers on top of `rand` (uniform and Box-Muller normal), so no extra dependency.
mod rand_distr_lite {
    use rand::Rng;

    pub fn uniform(rng: &mut impl Rng, n: usize, bound: f32) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-bound..bound)).collect()
    }

    pub fn normal(rng: &mut impl Rng, n: usize, std: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let u1: f32 = rng.random_range(f32::EPSILON..1.0);
                let u2: f32 = rng.random();
                std * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modules() -> Vec<LinearModule> {
        let mut v = Vec::new();
        for l in 0..2 {
            for (p, i, o) in [("self_attn.q_proj", 8, 8), ("self_attn.v_proj", 8, 4)] {
                v.push(LinearModule {
                    key: format!("model.layers.{l}.{p}"),
                    in_features: i,
                    out_features: o,
                    is_output: false,
                });
            }
        }
        v
    }

    #[test]
    fn init_save_load_round_trip() {
        let config = LoraConfig {
            r: 2,
            lora_alpha: 4.0,
            init_lora_weights: InitLoraWeights::Bool(false),
            ..LoraConfig::default()
        };
        let a = LoraAdapter::init("t", config, &modules(), 7).unwrap();
        assert_eq!(a.modules.len(), 4);
        let dir = tempfile::tempdir().unwrap();
        a.save(dir.path()).unwrap();
        let b = LoraAdapter::load(dir.path()).unwrap();
        assert_eq!(a.modules, b.modules);
        assert_eq!(
            (a.config.r, a.config.lora_alpha),
            (b.config.r, b.config.lora_alpha)
        );
        assert_eq!(
            b.config.extra.get("use_dora"),
            Some(&serde_json::Value::Bool(false))
        );
        b.check_against(&modules()).unwrap();
        assert!(b.check_against(&modules()[..1]).is_err());
    }

    #[test]
    fn a_save_cut_between_its_two_renames_loads_the_new_adapter_whole() {
        let adapter = |r: usize, alpha: f64, seed: u64| {
            let config = LoraConfig {
                r,
                lora_alpha: alpha,
                init_lora_weights: InitLoraWeights::Bool(false),
                ..LoraConfig::default()
            };
            LoraAdapter::init("t", config, &modules(), seed).unwrap()
        };
        let (old, new) = (adapter(2, 4.0, 1), adapter(4, 16.0, 2));
        let dir = tempfile::tempdir().unwrap();
        old.save(dir.path()).unwrap();
        let old_config = std::fs::read(dir.path().join(CONFIG_FILE)).unwrap();
        // The torn state: the new weights renamed into place, the old config still there (and
        // older than the weights).
        let staging = tempfile::tempdir().unwrap();
        new.save(staging.path()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::copy(
            staging.path().join(WEIGHTS_FILE),
            dir.path().join(WEIGHTS_FILE),
        )
        .unwrap();
        assert_eq!(
            std::fs::read(dir.path().join(CONFIG_FILE)).unwrap(),
            old_config
        );
        let loaded = LoraAdapter::load(dir.path()).unwrap();
        assert_eq!(loaded.modules, new.modules);
        assert_eq!((loaded.config.r, loaded.config.lora_alpha), (4, 16.0));
        // A config edited by hand after the save is newer than the weights: it is used as is.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let edited = new.config.to_json().unwrap().replace("16.0", "8.0");
        assert!(edited.contains("8.0"));
        std::fs::write(dir.path().join(CONFIG_FILE), edited).unwrap();
        let loaded = LoraAdapter::load(dir.path()).unwrap();
        assert_eq!(loaded.config.lora_alpha, 8.0);
        // The weights Kiln wrote carry the copy of their config that made this possible.
        assert!(
            safetensors_metadata(&dir.path().join(WEIGHTS_FILE))
                .is_some_and(|m| m.contains_key(CONFIG_METADATA))
        );
    }

    #[test]
    fn delta_equals_add_to() {
        let config = LoraConfig {
            r: 2,
            init_lora_weights: InitLoraWeights::Bool(false),
            ..LoraConfig::default()
        };
        let a = LoraAdapter::init("t", config, &modules(), 1).unwrap();
        let w = &a.modules["model.layers.0.self_attn.v_proj"];
        let x: Vec<f32> = (0..16).map(|i| i as f32 * 0.1 - 0.5).collect();
        let mut y = vec![0f32; 8];
        w.add_to(&x, 2, &mut y, 1.0, &mut Vec::new());
        let d = w.delta();
        for i in 0..2 {
            for o in 0..4 {
                let e: f32 = (0..8).map(|k| d[o * 8 + k] * x[i * 8 + k]).sum();
                assert!((e - y[i * 4 + o]).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn federated_average_is_the_weighted_mean() {
        let config = LoraConfig {
            r: 2,
            init_lora_weights: InitLoraWeights::Bool(false),
            ..LoraConfig::default()
        };
        let a = LoraAdapter::init("a", config.clone(), &modules(), 1).unwrap();
        let b = LoraAdapter::init("b", config, &modules(), 2).unwrap();
        let m = crate::average(&[a.clone(), b.clone()], &[3.0, 1.0]).unwrap();
        let key = "model.layers.1.self_attn.q_proj";
        let want = 0.75 * a.modules[key].a[3] + 0.25 * b.modules[key].a[3];
        assert!((m.modules[key].a[3] - want).abs() < 1e-6);
        assert!(crate::average(&[a.clone(), b.clone()], &[1.0]).is_err());
        let mut c = b;
        c.modules.remove(key);
        assert!(crate::average(&[a, c], &[1.0, 1.0]).is_err());
    }

    #[test]
    fn bad_tensors_are_named() {
        let tensors = vec![(
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight".to_string(),
            vec![2, 8],
            vec![0u8; 64],
        )];
        let bytes = crate::io::serialize_f32_with(&tensors, "t", &[]).unwrap();
        let e = LoraAdapter::from_parts("t", LoraConfig::default(), &bytes, "w.safetensors")
            .unwrap_err()
            .to_string();
        assert!(e.contains("lora_B") && e.contains("missing"), "{e}");
        let e = LoraAdapter::from_parts("t", LoraConfig::default(), b"garbage", "w.safetensors")
            .unwrap_err()
            .to_string();
        assert!(e.contains("w.safetensors"), "{e}");
    }
}
