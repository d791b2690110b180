//! OpenAI's request and response shapes, and their mapping to and from kiln-core types.
//!
//! Requests are typed (unknown fields are ignored, as OpenAI's own server does with fields it does
//! not know from newer clients); responses are built in one place each so the OpenAPI document in
//! [`crate::openapi`] can mirror them.

use kiln_core::{
    ChatMessage, ContentPart, GenerationOutput, ImageSource, ResponseFormat, Role, SamplingParams,
    StopConditions, TokenLogprob,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{Result, ServeError};

/// `stop`: one string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StopSpec {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl StopSpec {
    fn into_vec(self) -> Vec<String> {
        match self {
            StopSpec::One(s) => vec![s],
            StopSpec::Many(v) => v,
        }
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with the usage.
    #[serde(default)]
    pub include_usage: bool,
}

/// The sampling fields shared by chat and text completions (OpenAI's plus Kiln's `top_k`,
/// `min_p`, `repetition_penalty`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SamplingFields {
    /// Softmax temperature (default 1; 0 is greedy).
    pub temperature: Option<f32>,
    /// Nucleus sampling mass (f64 on the wire, so that a tiny positive value stays positive).
    pub top_p: Option<f64>,
    /// Top-k filter (Kiln extension).
    pub top_k: Option<usize>,
    /// Min-p filter (Kiln extension).
    pub min_p: Option<f32>,
    /// Repetition penalty (Kiln extension; f64 on the wire, as `top_p`).
    pub repetition_penalty: Option<f64>,
    /// Presence penalty.
    pub presence_penalty: Option<f32>,
    /// Frequency penalty.
    pub frequency_penalty: Option<f32>,
    /// Random seed; with it, sampling is reproducible.
    pub seed: Option<u64>,
    /// Stop strings.
    pub stop: Option<StopSpec>,
}

impl SamplingFields {
    /// kiln-core sampling parameters and stop conditions, validated.
    ///
    /// # Errors
    /// [`ServeError::BadRequest`] naming the parameter.
    pub fn to_core(&self) -> Result<(SamplingParams, StopConditions)> {
        let d = SamplingParams::default();
        let sampling = SamplingParams {
            temperature: self.temperature.unwrap_or(d.temperature),
            top_k: self.top_k.unwrap_or(d.top_k),
            top_p: self.top_p.map_or(d.top_p, positive_f32),
            min_p: self.min_p.unwrap_or(d.min_p),
            repetition_penalty: self
                .repetition_penalty
                .map_or(d.repetition_penalty, positive_f32),
            presence_penalty: self.presence_penalty.unwrap_or(d.presence_penalty),
            frequency_penalty: self.frequency_penalty.unwrap_or(d.frequency_penalty),
            seed: self.seed,
        };
        sampling.validate()?;
        // OpenAI's range; kiln-core itself allows any temperature.
        if sampling.temperature > 2.0 {
            return Err(ServeError::bad_request(
                "temperature",
                format!("must be in [0, 2], got {}", sampling.temperature),
            ));
        }
        let stop_strings = self
            .stop
            .clone()
            .map(StopSpec::into_vec)
            .unwrap_or_default();
        if stop_strings.len() > 4 {
            return Err(ServeError::bad_request("stop", "at most 4 stop sequences"));
        }
        if stop_strings.iter().any(String::is_empty) {
            return Err(ServeError::bad_request("stop", "empty stop sequence"));
        }
        Ok((
            sampling,
            StopConditions {
                stop_strings,
                ..StopConditions::default()
            },
        ))
    }
}

/// A positive f64 as the nearest f32 that is still positive and finite (non-positive values and
/// NaN go through unchanged, for the validation to name them).
fn positive_f32(v: f64) -> f32 {
    if v > 0.0 {
        (v as f32).clamp(f32::MIN_POSITIVE, f32::MAX)
    } else {
        v as f32
    }
}

/// A message as OpenAI's chat API sends it.
#[derive(Debug, Clone, Deserialize)]
pub struct MessageIn {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// A string, a list of parts, or null.
    #[serde(default)]
    pub content: Value,
    /// Author name.
    #[serde(default)]
    pub name: Option<String>,
    /// An assistant's tool calls.
    #[serde(default)]
    pub tool_calls: Option<Vec<Value>>,
    /// The call a tool message answers.
    #[serde(default)]
    pub tool_call_id: Option<String>,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    /// A model, `model:adapter`, or a route.
    pub model: String,
    /// The conversation.
    pub messages: Vec<MessageIn>,
    /// Token budget.
    pub max_tokens: Option<usize>,
    /// Token budget (newer name).
    pub max_completion_tokens: Option<usize>,
    /// Choices to generate.
    pub n: Option<usize>,
    /// Stream the answer as server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// Return log-probabilities.
    #[serde(default)]
    pub logprobs: bool,
    /// Alternatives per token (0-20).
    pub top_logprobs: Option<usize>,
    /// Tools the model may call.
    pub tools: Option<Vec<Value>>,
    /// `none`, `auto`, `required` or a named function.
    pub tool_choice: Option<Value>,
    /// The output format (text, json_object, json_schema).
    pub response_format: Option<ResponseFormat>,
    /// Sampling fields.
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

/// `prompt`: one string or a list of one.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PromptSpec {
    /// One prompt.
    One(String),
    /// A list (one prompt per choice set).
    Many(Vec<String>),
    /// Token ids.
    Tokens(Vec<u32>),
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// A model, `model:adapter`, or a route.
    pub model: String,
    /// What to continue.
    pub prompt: PromptSpec,
    /// Token budget (default 16, as OpenAI).
    pub max_tokens: Option<usize>,
    /// Choices to generate.
    pub n: Option<usize>,
    /// Stream the answer.
    #[serde(default)]
    pub stream: bool,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// Alternatives per token (0-5); present: log-probabilities are returned.
    pub logprobs: Option<usize>,
    /// Echo the prompt (not supported; must be false).
    #[serde(default)]
    pub echo: bool,
    /// Sampling fields.
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

/// `input` of the embeddings endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInputSpec {
    /// One text.
    One(String),
    /// Several texts.
    Many(Vec<String>),
    /// Texts and images (Kiln extension for CLIP-like models): strings, and
    /// `{"type": "image_url", "image_url": {"url": ...}}` items.
    Mixed(Vec<Value>),
}

impl EmbeddingInputSpec {
    /// The inputs as kiln-core's [`EmbeddingInput`](kiln_core::EmbeddingInput)s.
    ///
    /// # Errors
    /// [`ServeError::BadRequest`] naming `input[i]` for an item that is neither.
    pub fn into_inputs(self) -> Result<Vec<kiln_core::EmbeddingInput>> {
        use kiln_core::EmbeddingInput;
        Ok(match self {
            EmbeddingInputSpec::One(t) => vec![EmbeddingInput::Text(t)],
            EmbeddingInputSpec::Many(v) => v.into_iter().map(EmbeddingInput::Text).collect(),
            EmbeddingInputSpec::Mixed(v) => v
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(t) => Ok(EmbeddingInput::Text(t)),
                    item => item["image_url"]["url"]
                        .as_str()
                        .or_else(|| item["image_url"].as_str())
                        .map(|url| {
                            EmbeddingInput::Image(ImageSource::Url {
                                url: url.to_owned(),
                            })
                        })
                        .ok_or_else(|| {
                            ServeError::bad_request(
                                format!("input[{i}]"),
                                "must be a string or an image_url item",
                            )
                        }),
                })
                .collect::<Result<_>>()?,
        })
    }
}

/// `POST /v1/embeddings`.
#[derive(Debug, Clone, Deserialize)]
pub struct EmbeddingRequest {
    /// The embedding model.
    pub model: String,
    /// Texts to embed.
    pub input: EmbeddingInputSpec,
    /// `float` (default) or `base64` (little-endian f32).
    pub encoding_format: Option<String>,
}

/// Converts OpenAI messages to kiln-core chat messages. Tool calls of assistant messages are
/// written back as `<tool_call>` JSON, the format the model was told to use.
///
/// # Errors
/// [`ServeError::BadRequest`] naming `messages[i]...`.
pub fn messages_to_core(messages: &[MessageIn]) -> Result<Vec<ChatMessage>> {
    if messages.is_empty() {
        return Err(ServeError::bad_request(
            "messages",
            "at least one message is needed",
        ));
    }
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role.as_str() {
                "system" | "developer" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                "tool" => Role::Tool,
                other => {
                    return Err(ServeError::bad_request(
                        format!("messages[{i}].role"),
                        format!("unknown role `{other}`"),
                    ));
                }
            };
            let mut content = content_to_parts(&m.content)
                .map_err(|msg| ServeError::bad_request(format!("messages[{i}].content"), msg))?;
            for (j, call) in m.tool_calls.iter().flatten().enumerate() {
                let param = || format!("messages[{i}].tool_calls[{j}]");
                let f = check_function(call, true)
                    .map_err(|msg| ServeError::bad_request(param(), msg))?;
                let args: Value = match &f["arguments"] {
                    Value::String(s) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
                    v => v.clone(),
                };
                let text = json!({"name": f["name"], "arguments": args}).to_string();
                content.push(ContentPart::Text {
                    text: format!("<tool_call>{text}</tool_call>"),
                });
            }
            Ok(ChatMessage {
                role,
                content,
                name: m.name.clone().or_else(|| m.tool_call_id.clone()),
            })
        })
        .collect()
}

/// Checks a tool, a tool call or a named `tool_choice`: an object with an optional `"type":
/// "function"` (required unless `type_optional`) and a `function` object with a string `name`
/// (and, for calls, `arguments` as a string or an object). Returns the `function` object.
///
/// # Errors
/// What is wrong, for a 400 naming the field.
pub fn check_function(item: &Value, type_optional: bool) -> std::result::Result<&Value, String> {
    let Value::Object(o) = item else {
        return Err("must be an object".into());
    };
    match o.get("type") {
        Some(Value::String(t)) if t == "function" => {}
        None if type_optional => {}
        None => return Err("`type` must be \"function\"".into()),
        Some(other) => return Err(format!("`type` must be \"function\", not {other}")),
    }
    if let Some(id) = o.get("id")
        && !id.is_string()
    {
        return Err("`id` must be a string".into());
    }
    let f = o.get("function").ok_or("`function` is missing")?;
    let Value::Object(fo) = f else {
        return Err("`function` must be an object".into());
    };
    if !fo.get("name").is_some_and(Value::is_string) {
        return Err("`function.name` must be a string".into());
    }
    if let Some(a) = fo.get("arguments")
        && !(a.is_string() || a.is_object())
    {
        return Err("`function.arguments` must be a JSON string or an object".into());
    }
    for (key, ok) in [
        (
            "description",
            fo.get("description").is_none_or(Value::is_string),
        ),
        (
            "parameters",
            fo.get("parameters").is_none_or(Value::is_object),
        ),
    ] {
        if !ok {
            return Err(format!("`function.{key}` has the wrong type"));
        }
    }
    Ok(f)
}

fn content_to_parts(content: &Value) -> std::result::Result<Vec<ContentPart>, String> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(vec![ContentPart::Text { text: s.clone() }]),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p["type"].as_str() {
                Some("text") => Ok(ContentPart::Text {
                    text: p["text"]
                        .as_str()
                        .ok_or("a text part needs a string `text`")?
                        .to_owned(),
                }),
                Some("image_url") => {
                    let url = p["image_url"]["url"]
                        .as_str()
                        .or_else(|| p["image_url"].as_str())
                        .ok_or("image_url without a url")?;
                    Ok(ContentPart::Image {
                        source: ImageSource::Url {
                            url: url.to_owned(),
                        },
                    })
                }
                _ => Err(format!("unsupported content part {}", p["type"])),
            })
            .collect(),
        _ => Err("must be a string, a list of parts or null".into()),
    }
}

/// The system message that tells a model about `tools` and how to call them.
#[must_use]
pub fn tools_message(tools: &[Value], required: bool) -> ChatMessage {
    let list: Vec<String> = tools
        .iter()
        .map(|t| t.get("function").unwrap_or(t).to_string())
        .collect();
    let must = if required {
        "You must call one of them."
    } else {
        "Call one only when it helps; otherwise answer normally."
    };
    ChatMessage::system(format!(
        "You can call these tools (JSON schemas):\n{}\n{must} To call a tool, answer with \
         <tool_call>{{\"name\": <tool name>, \"arguments\": <JSON object>}}</tool_call> and nothing else.",
        list.join("\n")
    ))
}

/// The OpenAI `tool_calls` of an answer, if it holds any.
#[must_use]
pub fn tool_calls_of(text: &str, request_id: &str) -> Option<Vec<Value>> {
    let calls = kiln_prompt::tool_calls::parse_tool_calls(text);
    (!calls.is_empty()).then(|| {
        calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                json!({
                    "id": format!("call_{request_id}_{i}"),
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments.to_string()},
                })
            })
            .collect()
    })
}

/// The chat `logprobs` object: `{"content": [{"token", "logprob", "bytes", "top_logprobs"}]}`.
#[must_use]
pub fn chat_logprobs(logprobs: &[TokenLogprob]) -> Value {
    let entry = |token: &str, logprob: f32| json!({"token": token, "logprob": logprob, "bytes": token.as_bytes()});
    json!({"content": logprobs.iter().map(|t| {
        let mut e = entry(&t.token, t.logprob);
        e["top_logprobs"] = t.top.iter().map(|(_, tok, lp)| entry(tok, *lp)).collect();
        e
    }).collect::<Vec<_>>()})
}

/// The completions `logprobs` object: `{"tokens", "token_logprobs", "top_logprobs", "text_offset"}`.
#[must_use]
pub fn completion_logprobs(logprobs: &[TokenLogprob]) -> Value {
    let mut offset = 0;
    let mut offsets = Vec::with_capacity(logprobs.len());
    for t in logprobs {
        offsets.push(offset);
        offset += t.token.len();
    }
    json!({
        "tokens": logprobs.iter().map(|t| t.token.clone()).collect::<Vec<_>>(),
        "token_logprobs": logprobs.iter().map(|t| t.logprob).collect::<Vec<_>>(),
        "top_logprobs": logprobs.iter().map(|t| {
            t.top.iter().map(|(_, tok, lp)| (tok.clone(), json!(lp))).collect::<serde_json::Map<_, _>>()
        }).collect::<Vec<_>>(),
        "text_offset": offsets,
    })
}

/// The OpenAI finish reason of an output.
#[must_use]
pub fn finish_reason(out: &GenerationOutput) -> &'static str {
    match out.finish_reason {
        kiln_core::FinishReason::Length => "length",
        _ => "stop",
    }
}

/// `usage` of several outputs of one prompt.
#[must_use]
pub fn usage_json(prompt_tokens: usize, completion_tokens: usize) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

/// Standard base64 of little-endian f32s, as OpenAI's `encoding_format: "base64"`.
#[must_use]
pub fn base64_f32(values: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Seconds since the Unix epoch, for `created`.
#[must_use]
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_reference() {
        // struct.pack('<f', 1.0) = 00 00 80 3f -> "AACAPw=="
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32(&[1.0, -2.0]), "AACAPwAAAMA=");
    }

    #[test]
    fn messages_map_roles_parts_and_tool_calls() {
        let m: Vec<MessageIn> = serde_json::from_value(json!([
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:x"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "2"},
        ]))
        .unwrap();
        let core = messages_to_core(&m).unwrap();
        assert_eq!(core[0].role, Role::System);
        assert!(core[1].has_images());
        assert_eq!(
            core[2].text_content(),
            "<tool_call>{\"name\":\"f\",\"arguments\":{\"a\":1}}</tool_call>"
        );
        assert_eq!(core[3].name.as_deref(), Some("c"));
        let bad: Vec<MessageIn> =
            serde_json::from_value(json!([{"role": "wizard", "content": "x"}])).unwrap();
        let e = messages_to_core(&bad).unwrap_err();
        assert_eq!(e.body()["error"]["param"], "messages[0].role");
    }
}
