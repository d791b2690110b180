//! Native tool calling: the messages chat templates take for tool calls and results, and parsing
//! the JSON tool calls models write back.
//!
//! [`parse_tool_calls`] reads the common formats:
//! - Hermes / Qwen: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (any number);
//! - Mistral: `[TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...]`;
//! - Llama 3.1+: `{"name": ..., "parameters": {...}}`, optionally after `<|python_tag|>`, several
//!   separated by `;`;
//! - DeepSeek V3: `<｜tool▁call▁begin｜>function<｜tool▁sep｜>name` and a JSON code fence;
//! - OpenAI style objects (`{"type": "function", "function": {"name", "arguments": "<json
//!   text>"}}`) and JSON in a markdown code fence.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value, json};

static TAGGED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?s)<tool_call>\s*(.*?)\s*(?:</tool_call>|$)").expect("valid regex")
});
static DEEPSEEK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?s)<｜tool▁call▁begin｜>\s*\w*\s*<｜tool▁sep｜>\s*([^\n<]+?)\s*\n(.*?)<｜tool▁call▁end｜>")
        .expect("valid regex")
});
static FENCE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s)```[a-zA-Z]*\s*\n?(.*?)```").expect("valid regex"));

/// A tool call: the tool's name and its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The tool's name.
    pub name: String,
    /// The arguments (a JSON object for well-formed calls).
    pub arguments: Value,
}

impl ToolCall {
    /// A call.
    #[must_use]
    pub fn new(name: impl Into<String>, arguments: Value) -> Self {
        Self {
            name: name.into(),
            arguments,
        }
    }

    /// The entry of an assistant message's `tool_calls`, as transformers' chat templates read it:
    /// `{"type": "function", "function": {"name": ..., "arguments": {...}}}`.
    #[must_use]
    pub fn to_value(&self) -> Value {
        json!({"type": "function", "function": {"name": self.name, "arguments": self.arguments}})
    }
}

/// An assistant message holding tool calls (content empty), for [`crate::RenderInput`] messages.
#[must_use]
pub fn assistant_tool_calls(calls: &[ToolCall]) -> Value {
    json!({"role": "assistant", "content": "", "tool_calls": calls.iter().map(ToolCall::to_value).collect::<Vec<_>>()})
}

/// A `tool` message with a tool's result.
#[must_use]
pub fn tool_result(name: &str, content: &str) -> Value {
    json!({"role": "tool", "name": name, "content": content})
}

/// Finds the tool calls in a model's output (see the module documentation for the formats). Text
/// that holds no recognizable call gives an empty list.
///
/// ```
/// use kiln_prompt::tool_calls::{ToolCall, parse_tool_calls};
/// use serde_json::json;
///
/// let out = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
/// assert_eq!(parse_tool_calls(out), [ToolCall::new("get_weather", json!({"city": "Paris"}))]);
/// assert!(parse_tool_calls("It is sunny.").is_empty());
/// ```
#[must_use]
pub fn parse_tool_calls(text: &str) -> Vec<ToolCall> {
    if text.contains("<tool_call>") {
        return TAGGED
            .captures_iter(text)
            .flat_map(|c| from_json_text(&c[1]))
            .collect();
    }
    if text.contains("<｜tool▁call▁begin｜>") {
        return DEEPSEEK
            .captures_iter(text)
            .map(|c| {
                let body = FENCE
                    .captures(&c[2])
                    .map_or(c[2].to_string(), |f| f[1].to_string());
                let arguments = serde_json::from_str(body.trim())
                    .unwrap_or(Value::String(body.trim().to_string()));
                ToolCall::new(c[1].trim(), arguments)
            })
            .collect();
    }
    let mut body = text.trim();
    for prefix in ["[TOOL_CALLS]", "<|python_tag|>", "functools"] {
        if let Some(rest) = body.strip_prefix(prefix) {
            body = rest.trim();
        }
    }
    let calls = from_json_text(body);
    if !calls.is_empty() {
        return calls;
    }
    FENCE
        .captures_iter(text)
        .flat_map(|c| from_json_text(&c[1]))
        .collect()
}

/// Calls from JSON text: objects or arrays of objects, one after the other, optionally separated by
/// `;` or `,` (Llama 3.1 writes several calls as `{...}; {...}`). Anything else gives no calls.
fn from_json_text(s: &str) -> Vec<ToolCall> {
    let mut rest = s;
    let mut values = Vec::new();
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ';' || c == ',');
        if rest.is_empty() {
            break;
        }
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        match stream.next() {
            Some(Ok(v)) => {
                values.push(v);
                rest = &rest[stream.byte_offset()..];
            }
            _ => return Vec::new(),
        }
    }
    values
        .iter()
        .flat_map(|v| match v {
            Value::Array(items) => items.iter().collect::<Vec<_>>(),
            other => vec![other],
        })
        .filter_map(from_object)
        .collect()
}

fn from_object(v: &Value) -> Option<ToolCall> {
    let obj = v.as_object()?;
    let inner: &Map<String, Value> = obj
        .get("function")
        .and_then(Value::as_object)
        .unwrap_or(obj);
    let name = inner.get("name")?.as_str()?.to_string();
    let arguments = match inner.get("arguments").or_else(|| inner.get("parameters")) {
        // OpenAI sends arguments as JSON text.
        Some(Value::String(s)) => {
            serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
        }
        Some(v) => v.clone(),
        None => Value::Object(Map::new()),
    };
    Some(ToolCall { name, arguments })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: Value) -> ToolCall {
        ToolCall::new(name, args)
    }

    #[test]
    fn parses_the_common_formats() {
        let paris = json!({"city": "Paris"});
        let hermes = "Sure.\n<tool_call>\n{\"name\": \"w\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n\
                      <tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>";
        assert_eq!(
            parse_tool_calls(hermes),
            [
                call("w", paris.clone()),
                call("add", json!({"a": 1, "b": 2}))
            ]
        );
        // A call cut off by the token budget before its closing tag still parses when its JSON is whole.
        assert_eq!(
            parse_tool_calls("<tool_call>{\"name\": \"w\", \"arguments\": {}}"),
            [call("w", json!({}))]
        );
        let mistral = "[TOOL_CALLS] [{\"name\": \"w\", \"arguments\": {\"city\": \"Paris\"}}]";
        assert_eq!(parse_tool_calls(mistral), [call("w", paris.clone())]);
        let llama = "<|python_tag|>{\"name\": \"w\", \"parameters\": {\"city\": \"Paris\"}}";
        assert_eq!(parse_tool_calls(llama), [call("w", paris.clone())]);
        let two = "{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"parameters\": {}}";
        assert_eq!(
            parse_tool_calls(two),
            [call("a", json!({})), call("b", json!({}))]
        );
        let openai = "{\"type\": \"function\", \"function\": {\"name\": \"w\", \"arguments\": \"{\\\"city\\\": \\\"Paris\\\"}\"}}";
        assert_eq!(parse_tool_calls(openai), [call("w", paris.clone())]);
        let deepseek = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>w\n```json\n{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
        assert_eq!(parse_tool_calls(deepseek), [call("w", paris.clone())]);
        let fenced = "I will call it:\n```json\n{\"name\": \"w\", \"arguments\": {\"city\": \"Paris\"}}\n```";
        assert_eq!(parse_tool_calls(fenced), [call("w", paris)]);
        assert!(parse_tool_calls("The weather is {nice}.").is_empty());
        assert!(
            parse_tool_calls("{\"city\": \"Paris\"}").is_empty(),
            "an object without a name is no call"
        );
    }
}
