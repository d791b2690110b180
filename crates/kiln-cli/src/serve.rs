//! `kiln serve`: the OpenAI-compatible server of kiln-serve over Llama models.
//!
//! Without `--config`, one model is served on 127.0.0.1:8080 with authentication off (a warning
//! says so). With `--config FILE`, every `[[models]]` entry's `path` is loaded (`kind = "llama"`
//! for text generation, `kind = "clip"` for text and image embeddings) and the file's keys,
//! roles, limits and policies apply (docs/SERVING.md).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use kiln_llama::LlamaGenerator;
use kiln_serve::config::ModelKind;
use kiln_serve::{AdapterManager, ModelHandle, ServeConfig};

/// Arguments of `kiln serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// A Hugging Face model directory or a .gguf file to serve without a config file.
    #[arg(long, short)]
    model: Option<PathBuf>,
    /// The name clients put in `"model"` (default: the file or directory name).
    #[arg(long)]
    name: Option<String>,
    /// A TOML configuration: models, keys, roles, limits, policies, prices (docs/SERVING.md).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Interface to listen on (default 127.0.0.1, or the config's).
    #[arg(long)]
    host: Option<String>,
    /// TCP port (default 8080, or the config's).
    #[arg(long)]
    port: Option<u16>,
    /// Device: cpu, wgpu, vulkan, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Engine: auto, burn, or cpu.
    #[arg(long, default_value = "auto")]
    engine: String,
    /// CPU engine arithmetic on block-quantized weights: exact (f32 activations, transformers'
    /// numbers) or int8 (llama.cpp's arithmetic: 8-bit activations for decode steps and an f16 KV
    /// cache; faster, less exact).
    #[arg(long, default_value = "exact")]
    activations: kiln_llama::Activations,
    /// Print the sha256 digest of this API key (for the config's `keys[].sha256`) and exit.
    #[arg(long, value_name = "KEY")]
    hash_key: Option<String>,
}

/// Loads and unloads adapters of a served [`LlamaGenerator`] by name.
struct LlamaAdapters(Arc<LlamaGenerator>);

impl AdapterManager for LlamaAdapters {
    fn load_adapter(&self, name: &str, dir: &Path) -> kiln_core::Result<()> {
        self.0
            .load_adapter(name, dir)
            .map_err(|e| kiln_core::Error::InvalidParameter {
                name: "name",
                message: e.to_string(),
            })
    }

    fn unload_adapter(&self, name: &str) -> kiln_core::Result<bool> {
        Ok(self.0.remove_adapter(name))
    }

    fn adapters(&self) -> Vec<String> {
        self.0.adapter_names()
    }
}

/// Runs the server until Ctrl-C or SIGTERM.
pub fn serve(args: &ServeArgs) -> Result<()> {
    if let Some(key) = &args.hash_key {
        println!("{}", kiln_serve::auth::hash_key(key));
        return Ok(());
    }
    kiln_serve::init_logging();
    let mut config = match (&args.config, &args.model) {
        (Some(_), Some(_)) => bail!("give --config or --model, not both"),
        (None, None) => bail!("give --model PATH (one model, no auth) or --config FILE"),
        (Some(file), None) => ServeConfig::from_file(file)
            .with_context(|| format!("reading the config {}", file.display()))?,
        (None, Some(path)) => {
            let name = match &args.name {
                Some(n) => n.clone(),
                None => path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .map(|n| n.trim_end_matches(".gguf").to_owned())
                    .context("the model path has no file name; give --name")?,
            };
            let mut c = ServeConfig::single_model(name);
            c.models[0].path = Some(path.clone());
            c.validate()?;
            c
        }
    };
    if let Some(h) = &args.host {
        config.server.host.clone_from(h);
    }
    if let Some(p) = args.port {
        config.server.port = p;
    }
    let options = kiln_llama::LoadOptions {
        device: args.device.parse().context("selecting the device")?,
        engine: args.engine.parse()?,
        nf4: false,
        activations: args.activations,
    };
    let mut handles = BTreeMap::new();
    for (i, m) in config.models.iter().enumerate() {
        let Some(path) = &m.path else {
            bail!(
                "config `models[{i}].path`: `kiln serve` needs the path of `{}`",
                m.name
            );
        };
        // Not eprintln!: a closed stderr must not stop the server.
        let _ = writeln!(
            std::io::stderr(),
            "loading {} from {}",
            m.name,
            path.display()
        );
        let handle = match m.kind {
            ModelKind::Llama => {
                let model = Arc::new(
                    LlamaGenerator::load(path, &options)
                        .with_context(|| format!("loading model {}", path.display()))?,
                );
                // Continuous batching: concurrent requests decode together, one pass over the
                // weights per step.
                ModelHandle::generator(model.clone())
                    .with_batch(model.clone())
                    .with_tokenizer(Arc::new(model.tokenizer().clone()))
                    .with_adapters(Arc::new(LlamaAdapters(model.clone())))
            }
            ModelKind::Clip => {
                let device = args
                    .device
                    .parse::<kiln_backend::DeviceSpec>()
                    .context("selecting the device")?
                    .device()?;
                let clip = kiln_clip::Clip::open(path, &device)
                    .with_context(|| format!("loading CLIP from {}", path.display()))?;
                ModelHandle::embedder(Arc::new(clip))
            }
            ModelKind::Llava => {
                let device = args
                    .device
                    .parse::<kiln_backend::DeviceSpec>()
                    .context("selecting the device")?
                    .device()?;
                let llava = Arc::new(
                    kiln_llava::LlavaGenerator::open(path, &device)
                        .with_context(|| format!("loading LLaVA from {}", path.display()))?,
                );
                ModelHandle::generator(llava)
            }
        };
        handles.insert(m.name.clone(), handle);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // SIGHUP (or POST /v1/admin/reload) reads the config file again, with the same overrides.
    let source = args.config.clone().map(|file| {
        let (host, port) = (args.host.clone(), args.port);
        move || {
            let mut c = ServeConfig::from_file(&file)?;
            if let Some(h) = &host {
                c.server.host.clone_from(h);
            }
            if let Some(p) = port {
                c.server.port = p;
            }
            Ok(c)
        }
    });
    match source {
        Some(source) => runtime.block_on(kiln_serve::serve_reloading(config, handles, source))?,
        None => runtime.block_on(kiln_serve::serve(config, handles))?,
    }
    Ok(())
}
