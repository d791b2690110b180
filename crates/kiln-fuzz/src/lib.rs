//! The bodies of Kiln's fuzz targets: one function per parser of outside input, each taking the
//! fuzzer's bytes. `fuzz/` (a cargo-fuzz crate outside the workspace) calls them from libFuzzer;
//! `tests/replay.rs` runs every saved input (seeds and the regression inputs of fixed crashes)
//! through them in the normal test suite.
//!
//! A target must never panic, abort, hang or allocate without bound, whatever the input: every
//! rejection is an `Err` that the target drops. When an input is accepted, the target goes on to
//! use what was parsed the way Kiln does (reading every tensor, tokenizing, rendering,
//! preprocessing), so that a parser that accepts too much is caught by what comes after it.

use std::io::Write;

use serde_json::{Value, json};

/// Element count above which a target does not read a tensor's data (keeps one input fast; the
/// reader's bounds checks still run on every tensor).
const MAX_ELEMENTS: usize = 1 << 16;

/// A target: takes the fuzzer's bytes, returns whether the parser accepted them.
pub type Target = fn(&[u8]) -> bool;

/// The targets, by name: the names of `fuzz/fuzz_targets/*.rs` and of the folders under
/// `fuzz/seeds/` and `fuzz/regressions/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("gguf", gguf),
    ("safetensors", safetensors),
    ("model_config", model_config),
    ("preprocessor_config", preprocessor_config),
    ("adapter_config", adapter_config),
    ("chat_template", chat_template),
    ("clip_image", clip_image),
    ("http_body", http_body),
    ("serve_config", serve_config),
];

/// The target called `name`.
#[must_use]
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Writes `data` to a fresh temporary file (the loaders read files: GGUF and safetensors are
/// memory-mapped).
fn temp_file(data: &[u8], suffix: &str) -> Option<tempfile::NamedTempFile> {
    let mut f = tempfile::Builder::new()
        .prefix("kiln-fuzz-")
        .suffix(suffix)
        .tempfile()
        .ok()?;
    f.write_all(data).ok()?;
    f.flush().ok()?;
    Some(f)
}

/// A GGUF file: the header, metadata and tensor table; then every tensor's bytes, the
/// dequantization of the small ones, the Llama config and the tokenizer built from the metadata.
pub fn gguf(data: &[u8]) -> bool {
    use kiln_llama::gguf::{GgufFile, tokenizer_from_gguf};
    let Some(f) = temp_file(data, ".gguf") else {
        return false;
    };
    let Ok(file) = GgufFile::open(f.path()) else {
        return false;
    };
    for t in file.tensors() {
        let _ = t.n_bytes();
        let _ = file.tensor_bytes(&t.name);
        if t.n_elements() <= MAX_ELEMENTS {
            let _ = file.dequantize(&t.name);
        }
    }
    for key in file.metadata().keys() {
        let _ = file.get_str(key);
        let _ = file.get_u64(key);
        let _ = file.get_f32(key);
        let _ = file.get_array(key);
    }
    if let Ok(config) = kiln_llama::load::config_from_gguf(&file) {
        // Reading weights by their Hugging Face names, as loading the model does (the GGUF
        // reader's Q/K row permutation included), when they are small.
        use kiln_llama::load::WeightSource;
        let weights = kiln_llama::load::GgufWeights::new(&file, &config);
        let (h, kv) = (
            config.hidden_size,
            config.num_key_value_heads * config.head_dim,
        );
        for (name, rows, cols) in [
            ("model.norm.weight", 1, h),
            (
                "model.layers.0.self_attn.q_proj.weight",
                config.num_attention_heads * config.head_dim,
                h,
            ),
            ("model.layers.0.self_attn.k_proj.weight", kv, h),
            ("model.layers.0.input_layernorm.weight", 1, h),
        ] {
            if rows.checked_mul(cols).is_some_and(|n| n <= MAX_ELEMENTS) {
                let _ = weights.matrix(name, rows, cols);
                let _ = weights.tensor(name, &[rows * cols]);
            }
        }
    }
    if let Ok((tokenizer, info)) = tokenizer_from_gguf(&file) {
        let _ = info.eog_token_ids();
        if let Ok(enc) = tokenizer.encode("Hello, world! <|im_start|> 123 ünïcödé", true) {
            let _ = tokenizer.decode(enc.get_ids(), false);
        }
    }
    true
}

/// A safetensors file: the header (JSON with dtypes, shapes and offsets), then every tensor's
/// shape and, for small ones, its values as f32.
pub fn safetensors(data: &[u8]) -> bool {
    let Some(f) = temp_file(data, ".safetensors") else {
        return false;
    };
    let Ok(files) = kiln_backend::safetensors::SafetensorsFiles::open_file(f.path()) else {
        return false;
    };
    for name in files.names() {
        let Ok(shape) = files.shape(name) else {
            continue;
        };
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if n.is_some_and(|n| n <= MAX_ELEMENTS) {
            let _ = files.f32(name, &shape);
            let _ = files.raw(name, &shape);
        }
        // A wrong expected shape must be an error, never a panic.
        let _ = files.f32(name, &[1, 2, 3]);
    }
    true
}

/// A model's `config.json`, read as a Llama and as a CLIP config.
pub fn model_config(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let llama = serde_json::from_str::<Value>(text)
        .ok()
        .is_some_and(|v| kiln_llama::LlamaConfig::from_hf_value(v, "config.json").is_ok());
    let clip = kiln_clip::ClipConfig::from_json(text, "config.json").is_ok();
    llama || clip
}

/// A CLIP `preprocessor_config.json` (every field has a default); an accepted one is used on a
/// small image.
pub fn preprocessor_config(data: &[u8]) -> bool {
    let Ok(cfg) = serde_json::from_slice::<kiln_clip::PreprocessConfig>(data) else {
        return false;
    };
    if cfg.validate().is_err() {
        return false;
    }
    let pixels: Vec<u8> = (0..7 * 5 * 3).map(|i| (i * 37 % 256) as u8).collect();
    kiln_clip::RgbImage::new(7, 5, pixels)
        .is_ok_and(|img| kiln_clip::preprocess(&img, &cfg).is_ok())
}

/// A PEFT `adapter_config.json`; an accepted config is matched against Llama module names, as
/// loading an adapter does.
pub fn adapter_config(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(config) = kiln_lora::LoraConfig::from_json(text, "adapter_config.json") else {
        return false;
    };
    for layer in [0, 1, 7, 31] {
        for m in ["self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"] {
            let key = format!("model.layers.{layer}.{m}");
            let _ = config.module(&key, false);
            let _ = config.params(&key);
        }
    }
    let _ = config.module("lm_head", true);
    let _ = config.to_json();
    true
}

/// A chat template (from a GGUF's `tokenizer.chat_template` or a tokenizer_config.json): compiled,
/// then rendered over a conversation with a system prompt, tools and a tool call.
pub fn chat_template(data: &[u8]) -> bool {
    let Ok(source) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(template) = kiln_prompt::ChatTemplate::new(source) else {
        return false;
    };
    // With tools and a tool call (templates may refuse these; any answer but a panic is fine).
    let messages = vec![
        json!({"role": "system", "content": "You are helpful."}),
        json!({"role": "user", "content": "What is the weather in Paris?"}),
        json!({"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "weather", "arguments": {"city": "Paris"}}}]}),
        json!({"role": "tool", "content": "18 C"}),
        json!({"role": "user", "content": [{"type": "text", "text": "Thanks"}]}),
    ];
    let tools = vec![json!({"type": "function", "function": {"name": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})];
    let input = kiln_prompt::RenderInput::new(messages)
        .tools(tools)
        .add_generation_prompt(true)
        .bos_token("<s>")
        .eos_token("</s>");
    let _ = template.render(&input);
    // A plain conversation every chat template renders.
    let plain = vec![
        json!({"role": "system", "content": "You are helpful."}),
        json!({"role": "user", "content": "Hello"}),
        json!({"role": "assistant", "content": "Hi! How can I help?"}),
        json!({"role": "user", "content": "Tell me a joke."}),
    ];
    let input = kiln_prompt::RenderInput::new(plain)
        .add_generation_prompt(true)
        .bos_token("<s>")
        .eos_token("</s>");
    template.render(&input).is_ok()
}

/// An encoded image (PNG, JPEG) as a request sends it to a CLIP model: decoded, converted to
/// RGB, then resized, cropped and normalized as CLIP's processor does.
pub fn clip_image(data: &[u8]) -> bool {
    let Ok(img) = kiln_clip::preprocess::decode_image(data, "image") else {
        return false;
    };
    kiln_clip::preprocess(&img, &kiln_clip::PreprocessConfig::default()).is_ok()
}

/// The JSON body of a chat, completions or embeddings request (the first byte picks which), read
/// and converted as the server does before any model runs.
pub fn http_body(data: &[u8]) -> bool {
    use kiln_serve::openai::{
        ChatRequest, CompletionRequest, EmbeddingRequest, check_function, messages_to_core,
    };
    let Some((&which, body)) = data.split_first() else {
        return false;
    };
    match which % 3 {
        0 => {
            let Ok(req) = serde_json::from_slice::<ChatRequest>(body) else {
                return false;
            };
            let mut ok = req.sampling.to_core().is_ok() && messages_to_core(&req.messages).is_ok();
            for t in req.tools.iter().flatten() {
                ok &= check_function(t, false).is_ok();
            }
            if let Some(kiln_core::ResponseFormat::JsonSchema { json_schema }) =
                &req.response_format
            {
                // The server compiles the schema into a grammar before generating.
                match kiln_prompt::structured::JsonConstraint::from_schema(&json_schema.schema) {
                    Ok(c) => {
                        let _ = c.accepts("{\"a\": 1}");
                        let _ = c.accepts_prefix("[1, \"x\"");
                    }
                    Err(_) => ok = false,
                }
            }
            ok
        }
        1 => serde_json::from_slice::<CompletionRequest>(body)
            .is_ok_and(|req| req.sampling.to_core().is_ok()),
        _ => serde_json::from_slice::<EmbeddingRequest>(body)
            .is_ok_and(|req| req.input.into_inputs().is_ok()),
    }
}

/// A `kiln serve` configuration file (TOML): parsed and validated.
pub fn serve_config(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    kiln_serve::ServeConfig::from_toml(text, std::path::Path::new("/nonexistent")).is_ok()
}
