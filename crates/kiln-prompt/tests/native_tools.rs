//! Native tool calling through a real chat template: render tools, tool calls and results exactly
//! as transformers does, and parse the calls back from the rendered text.

use std::path::Path;

use kiln_core::Tool;
use kiln_prompt::tool_calls::{ToolCall, assistant_tool_calls, parse_tool_calls, tool_result};
use kiln_prompt::{ChatTemplate, RenderInput};
use serde_json::{Value, json};

struct Weather;

impl Tool for Weather {
    fn name(&self) -> &str {
        "get_weather"
    }
    fn description(&self) -> &str {
        "Get the current weather in a city."
    }
    fn parameters(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        })
    }
    fn call(&self, _args: &Value) -> kiln_core::Result<String> {
        Ok("{\"temp_c\": 18, \"sky\": \"clear\"}".into())
    }
}

#[test]
fn qwen3_tool_round_trip_matches_transformers() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/chat_templates/qwen3.json");
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
    let case = fixture["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["name"] == "tools_and_calls" && c["add_generation_prompt"] == true)
        .expect("case");
    let template =
        ChatTemplate::new(fixture["template"].as_str().expect("template")).expect("compile");

    // The same conversation, built from a kiln Tool and the helpers.
    let weather = Weather;
    let call = ToolCall::new("get_weather", json!({"city": "Paris", "unit": "celsius"}));
    let result = weather.call(&call.arguments).expect("tool");
    let messages = vec![
        json!({"role": "user", "content": "What's the weather in Paris?"}),
        assistant_tool_calls(std::slice::from_ref(&call)),
        tool_result("get_weather", &result),
        json!({"role": "assistant", "content": "It is 18 °C and clear in Paris."}),
        json!({"role": "user", "content": "Thanks!"}),
    ];
    let input = RenderInput::new(messages)
        .tools(vec![weather.schema()])
        .add_generation_prompt(true)
        .eos_token(fixture["eos_token"].as_str().expect("eos"));
    let rendered = template.render(&input).expect("render");
    assert_eq!(rendered, case["rendered"].as_str().expect("rendered"));

    // What the model would have written for that turn parses back to the call.
    // (The system prompt also mentions <tool_call></tool_call>; the assistant's call is the last one.)
    let start = rendered.rfind("<tool_call>").expect("call in prompt");
    let end = rendered.rfind("</tool_call>").expect("end") + "</tool_call>".len();
    assert_eq!(parse_tool_calls(&rendered[start..end]), [call]);
}
