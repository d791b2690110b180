//! A kiln-serve server over a scripted model (no weights, no burn), for checking wire
//! compatibility with OpenAI's clients: `cargo run -p kiln-serve --example scripted_server -- 8099`.
//!
//! Models: `echo` (answers "You said: <last user message>", word by word, with log-probabilities)
//! and `embed` (3-dimensional embeddings). Keys: `sk-test` (everything but admin), `sk-noembed`
//! (no embeddings), `sk-limited` (one request per minute), `sk-admin` (admin: loads and unloads
//! the adapters of `echo`, which are the sub-directories of a temporary folder: `demo` is there).

use std::collections::BTreeMap;
use std::sync::Arc;

use kiln_core::{
    CancelToken, ChatMessage, Embedder, Embedding, EmbeddingInput, FinishReason, GenerationOutput,
    GenerationRequest, Prompt, StreamEvent, TextGenerator, Timings, TokenLogprob, Usage,
};
use kiln_serve::{ModelHandle, ServeConfig};

struct Echo;

impl TextGenerator for Echo {
    fn model_name(&self) -> &str {
        "echo"
    }
    fn context_length(&self) -> usize {
        4096
    }
    fn apply_chat_template(&self, m: &[ChatMessage], _: bool) -> kiln_core::Result<String> {
        Ok(m.iter()
            .map(|m| format!("{}: {}\n", m.role.as_str(), m.text_content()))
            .collect())
    }
    fn generate_stream(
        &self,
        request: &GenerationRequest,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(StreamEvent<'_>),
    ) -> kiln_core::Result<GenerationOutput> {
        request.sampling.validate()?;
        let last = match &request.prompt {
            Prompt::Chat(m) => m.last().map(ChatMessage::text_content).unwrap_or_default(),
            Prompt::Text(t) => t.clone(),
            Prompt::Tokens(ids) => format!("{} tokens", ids.len()),
        };
        let reply = format!("You said: {last}");
        let words: Vec<String> = reply
            .split(' ')
            .enumerate()
            .map(|(i, w)| {
                if i == 0 {
                    w.to_owned()
                } else {
                    format!(" {w}")
                }
            })
            .take(request.max_tokens)
            .collect();
        let mut text = String::new();
        let mut logprobs = Vec::new();
        let mut finish = if words.len() == request.max_tokens {
            FinishReason::Length
        } else {
            FinishReason::Stop
        };
        for (i, w) in words.iter().enumerate() {
            if cancel.is_cancelled() {
                finish = FinishReason::Cancelled;
                break;
            }
            let lp = request.logprobs.map(|k| TokenLogprob {
                id: i as u32,
                token: w.clone(),
                logprob: -0.25,
                top: (0..k)
                    .map(|j| (j as u32, format!("alt{j}"), -2.0))
                    .collect(),
            });
            on_event(StreamEvent::Token {
                id: i as u32,
                text: w,
                logprob: lp.as_ref(),
            });
            logprobs.extend(lp);
            text.push_str(w);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let prompt_tokens = last.split_whitespace().count() + 3;
        Ok(GenerationOutput {
            token_ids: (0..logprobs.len().max(words.len()) as u32).collect(),
            prompt_ids: vec![0; prompt_tokens],
            finish_reason: finish,
            usage: Usage {
                prompt_tokens,
                completion_tokens: words.len(),
                total_tokens: prompt_tokens + words.len(),
            },
            timings: Timings::default(),
            logprobs: request.logprobs.map(|_| logprobs),
            text,
        })
    }
}

/// Adapters that are only names (the server has checked that the directory exists).
#[derive(Default)]
struct NamedAdapters(std::sync::Mutex<std::collections::BTreeSet<String>>);

impl NamedAdapters {
    fn names(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<String>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl kiln_serve::AdapterManager for NamedAdapters {
    fn load_adapter(&self, name: &str, _dir: &std::path::Path) -> kiln_core::Result<()> {
        self.names().insert(name.to_owned());
        Ok(())
    }
    fn unload_adapter(&self, name: &str) -> kiln_core::Result<bool> {
        Ok(self.names().remove(name))
    }
    fn adapters(&self) -> Vec<String> {
        self.names().iter().cloned().collect()
    }
}

struct Lengths;

impl Embedder for Lengths {
    fn name(&self) -> &str {
        "embed"
    }
    fn dimension(&self) -> usize {
        3
    }
    fn embed(&self, inputs: &[EmbeddingInput]) -> kiln_core::Result<Vec<Embedding>> {
        inputs
            .iter()
            .map(|i| match i {
                EmbeddingInput::Text(t) => Ok(vec![t.len() as f32, 0.5, -1.0]),
                EmbeddingInput::Image(_) => Err(kiln_core::Error::Unsupported("images".into())),
            })
            .collect()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    kiln_serve::init_logging();
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(8099);
    let hash = kiln_serve::auth::hash_key;
    let adapters =
        std::env::temp_dir().join(format!("kiln-scripted-adapters-{}", std::process::id()));
    std::fs::create_dir_all(adapters.join("demo"))?;
    let toml = format!(
        r#"
[server]
port = {port}

[[models]]
name = "echo"
adapters_dir = "{adapters}"

[[models]]
name = "embed"

[roles.user]
models = ["*"]
endpoints = ["*"]

[roles.chat_only]
models = ["echo"]
endpoints = ["chat", "completions", "models"]

[[keys]]
name = "test"
sha256 = "{}"
role = "user"

[[keys]]
name = "noembed"
sha256 = "{}"
role = "chat_only"

[roles.admin]
models = ["*"]
endpoints = ["*"]
admin = true

[[keys]]
name = "admin"
sha256 = "{}"
role = "admin"

[[keys]]
name = "limited"
sha256 = "{}"
role = "user"
requests_per_minute = 1
"#,
        hash("sk-test"),
        hash("sk-noembed"),
        hash("sk-admin"),
        hash("sk-limited"),
        adapters = adapters.display()
    );
    let config = ServeConfig::from_toml(&toml, std::path::Path::new("."))?;
    let mut models = BTreeMap::new();
    let mut echo = ModelHandle::generator(Arc::new(Echo));
    echo.adapters = Some(Arc::new(NamedAdapters::default()));
    models.insert("echo".to_owned(), echo);
    models.insert("embed".to_owned(), ModelHandle::embedder(Arc::new(Lengths)));
    Ok(kiln_serve::serve(config, models).await?)
}
