//! Hugging Face chat templates (Jinja), rendered as transformers' `apply_chat_template` renders
//! them.
//!
//! The environment mirrors transformers' `_compile_jinja_template`: `trim_blocks` and
//! `lstrip_blocks`, loop controls (`break`, `continue`), Python's string/dict/list methods
//! (minijinja-contrib pycompat), `raise_exception`, `strftime_now`, `namespace`, `dict`, and a
//! `tojson` filter that is Python's `json.dumps(x, ensure_ascii=False, indent=...)`. The template
//! sees `messages`, `tools` and `documents` (`none` when not given, as in transformers),
//! `add_generation_prompt`, `bos_token` / `eos_token` when given, and any extra variables.

mod builtin;
mod json;

use std::collections::BTreeMap;

use chrono::format::{Item, StrftimeItems};
use kiln_core::{ChatMessage, ContentPart};
use minijinja::{Environment, ErrorKind};
use serde_json::{Map, Value};

pub use builtin::BuiltinTemplate;

use crate::{Error, Result};

/// The name under which a chat template is compiled (shown in errors).
const NAME: &str = "chat_template";

/// A compiled Hugging Face chat template.
///
/// ```
/// use kiln_prompt::{ChatTemplate, RenderInput};
/// use kiln_core::ChatMessage;
///
/// let t = ChatTemplate::new(
///     "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}\
///      {% if add_generation_prompt %}<|assistant|>{% endif %}",
/// )?;
/// let input = RenderInput::from_chat(&[ChatMessage::user("Hi")]).add_generation_prompt(true);
/// assert_eq!(t.render(&input)?, "<|user|>Hi\n<|assistant|>");
/// # Ok::<(), kiln_prompt::Error>(())
/// ```
/// The most template instructions one render may run: far above what a chat template needs for
/// a long conversation with tools, and it stops a template that loops for ever (a chat template
/// is outside input: it comes from the model file).
pub const RENDER_FUEL: u64 = 20_000_000;

/// The most bytes one render may write.
pub const MAX_RENDER_BYTES: usize = 64 << 20;

#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
}

impl ChatTemplate {
    /// Compiles a chat template.
    ///
    /// # Errors
    /// [`Error::Template`] with the line of the syntax error.
    pub fn new(source: impl Into<String>) -> Result<Self> {
        let source = source.into();
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_fuel(Some(RENDER_FUEL));
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", json::tojson_filter);
        env.add_template_owned(NAME, source.clone())
            .map_err(|e| Error::from_jinja(NAME, &e))?;
        Ok(Self { env, source })
    }

    /// A built-in template by name (`llama2`, `llama3`, `chatml`, `mistral`, `zephyr`).
    ///
    /// # Errors
    /// [`Error::UnknownBuiltin`] for another name.
    pub fn builtin(name: &str) -> Result<Self> {
        Self::new(BuiltinTemplate::from_name(name)?.source())
    }

    /// The template source.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders a conversation.
    ///
    /// # Errors
    /// [`Error::Template`] naming the line when rendering fails (for example a `raise_exception`
    /// call in the template, which is how templates refuse roles they do not support).
    pub fn render(&self, input: &RenderInput) -> Result<String> {
        let tmpl = self
            .env
            .get_template(NAME)
            .map_err(|e| Error::from_jinja(NAME, &e))?;
        let mut ctx = Map::new();
        // Extra variables first, so the reserved names below win.
        for (k, v) in &input.extra {
            ctx.insert(k.clone(), v.clone());
        }
        ctx.insert(
            "messages".into(),
            Value::Array(input.messages.iter().map(alias_reasoning).collect()),
        );
        ctx.insert(
            "tools".into(),
            input.tools.clone().map_or(Value::Null, Value::Array),
        );
        ctx.insert(
            "documents".into(),
            input.documents.clone().map_or(Value::Null, Value::Array),
        );
        ctx.insert(
            "add_generation_prompt".into(),
            Value::Bool(input.add_generation_prompt),
        );
        if let Some(bos) = &input.bos_token {
            ctx.insert("bos_token".into(), Value::String(bos.clone()));
        }
        if let Some(eos) = &input.eos_token {
            ctx.insert("eos_token".into(), Value::String(eos.clone()));
        }
        let mut out = LimitedWriter(Vec::new());
        tmpl.render_captured_to(minijinja::Value::from_serialize(&ctx), &mut out)
            .map_err(|e| Error::from_jinja(NAME, &e))?;
        String::from_utf8(out.0).map_err(|_| Error::Template {
            name: NAME.into(),
            line: None,
            message: "the output is not UTF-8".into(),
        })
    }

    /// Renders kiln-core chat messages: a shortcut for [`RenderInput::from_chat`] and
    /// [`Self::render`].
    ///
    /// # Errors
    /// As [`Self::render`].
    pub fn render_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        bos_token: Option<&str>,
        eos_token: Option<&str>,
    ) -> Result<String> {
        let mut input =
            RenderInput::from_chat(messages).add_generation_prompt(add_generation_prompt);
        input.bos_token = bos_token.map(str::to_string);
        input.eos_token = eos_token.map(str::to_string);
        self.render(&input)
    }
}

/// transformers fills `reasoning_content` and `thinking` from whichever of `reasoning_content`,
/// `thinking`, `reasoning` a message has (`{"thinking": r, **message, "reasoning_content": r}`).
fn alias_reasoning(message: &Value) -> Value {
    let Value::Object(m) = message else {
        return message.clone();
    };
    let reasoning = ["reasoning_content", "thinking", "reasoning"]
        .iter()
        .find_map(|k| m.get(*k).filter(|v| !v.is_null()));
    let Some(r) = reasoning else {
        return message.clone();
    };
    let mut out = Map::new();
    out.insert("thinking".into(), r.clone());
    for (k, v) in m {
        out.insert(k.clone(), v.clone());
    }
    out.insert("reasoning_content".into(), r.clone());
    Value::Object(out)
}

/// A buffer that refuses to grow past [`MAX_RENDER_BYTES`].
struct LimitedWriter(Vec<u8>);

impl std::io::Write for LimitedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_RENDER_BYTES {
            return Err(std::io::Error::other(format!(
                "the rendered prompt would exceed {MAX_RENDER_BYTES} bytes"
            )));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything a chat template is rendered with. Build it with [`RenderInput::new`] or
/// [`RenderInput::from_chat`] and the builder methods.
///
/// Messages are JSON objects as transformers takes them: `role`, `content` (a string, or a list of
/// `{"type": "text", "text": ...}` / `{"type": "image"}` parts), and optionally `tool_calls` on an
/// assistant message (`[{"type": "function", "function": {"name": ..., "arguments": {...}}}]`),
/// `tool_call_id` / `name` on a `tool` message, `reasoning_content`.
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use]
pub struct RenderInput {
    /// The conversation.
    pub messages: Vec<Value>,
    /// Tools as JSON schemas (`{"type": "function", "function": {"name", "description",
    /// "parameters"}}`).
    pub tools: Option<Vec<Value>>,
    /// Documents for retrieval-augmented templates (`{"title": ..., "text": ...}`).
    pub documents: Option<Vec<Value>>,
    /// Whether to append the header of the assistant's next turn.
    pub add_generation_prompt: bool,
    /// The tokenizer's BOS token text (left undefined in the template when `None`).
    pub bos_token: Option<String>,
    /// The tokenizer's EOS token text (left undefined in the template when `None`).
    pub eos_token: Option<String>,
    /// More variables (for example `enable_thinking`, `date_string`); the names above take
    /// precedence.
    pub extra: BTreeMap<String, Value>,
}

impl RenderInput {
    /// An input from JSON messages.
    pub fn new(messages: Vec<Value>) -> Self {
        Self {
            messages,
            ..Self::default()
        }
    }

    /// An input from kiln-core messages. A message with only text parts gets a string `content`;
    /// one with images gets a list of parts (`{"type": "text", "text": ...}` and `{"type":
    /// "image"}`), as multimodal templates expect. `name` is kept.
    pub fn from_chat(messages: &[ChatMessage]) -> Self {
        Self::new(messages.iter().map(message_to_value).collect())
    }

    /// Sets `tools`.
    pub fn tools(mut self, tools: Vec<Value>) -> Self {
        self.tools = Some(tools);
        self
    }

    /// Sets `documents`.
    pub fn documents(mut self, documents: Vec<Value>) -> Self {
        self.documents = Some(documents);
        self
    }

    /// Sets `add_generation_prompt`.
    pub fn add_generation_prompt(mut self, yes: bool) -> Self {
        self.add_generation_prompt = yes;
        self
    }

    /// Sets `bos_token`.
    pub fn bos_token(mut self, token: impl Into<String>) -> Self {
        self.bos_token = Some(token.into());
        self
    }

    /// Sets `eos_token`.
    pub fn eos_token(mut self, token: impl Into<String>) -> Self {
        self.eos_token = Some(token.into());
        self
    }

    /// Adds a variable.
    pub fn var(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra.insert(name.into(), value.into());
        self
    }
}

/// The JSON form of a kiln-core message that chat templates read.
#[must_use]
pub fn message_to_value(m: &ChatMessage) -> Value {
    let content = if m.has_images() {
        Value::Array(
            m.content
                .iter()
                .map(|p| match p {
                    ContentPart::Text { text } => serde_json::json!({"type": "text", "text": text}),
                    ContentPart::Image { .. } => serde_json::json!({"type": "image"}),
                })
                .collect(),
        )
    } else {
        Value::String(m.text_content())
    };
    let mut v = Map::new();
    v.insert("role".into(), Value::String(m.role.as_str().into()));
    v.insert("content".into(), content);
    if let Some(name) = &m.name {
        v.insert("name".into(), Value::String(name.clone()));
    }
    Value::Object(v)
}

fn raise_exception(message: String) -> std::result::Result<String, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// transformers' `strftime_now`: the local time formatted with a C `strftime` pattern.
fn strftime_now(fmt: String) -> std::result::Result<String, minijinja::Error> {
    let items: Vec<Item<'_>> = StrftimeItems::new(&fmt).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("bad strftime format {fmt:?}"),
        ));
    }
    Ok(chrono::Local::now()
        .format_with_items(items.into_iter())
        .to_string())
}

#[cfg(test)]
mod tests;
