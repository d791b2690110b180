//! The native tool-calling loop with a scripted model, rendered through Qwen3's real chat template.

mod common;

use std::path::Path;

use common::Scripted;
use kiln_core::Tool;
use kiln_prompt::ChatTemplate;
use kiln_prompt::react::AgentFinish;
use kiln_prompt::tool_agent::ToolAgent;
use serde_json::{Value, json};

struct Weather;

impl Tool for Weather {
    fn name(&self) -> &str {
        "get_weather"
    }
    fn description(&self) -> &str {
        "Current weather in a city."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
    }
    fn call(&self, args: &Value) -> kiln_core::Result<String> {
        match args.get("city").and_then(Value::as_str) {
            Some("Paris") => Ok("18 °C, clear".into()),
            Some(other) => Err(kiln_core::Error::InvalidParameter {
                name: "city",
                message: format!("no data for {other}"),
            }),
            None => Err(kiln_core::Error::InvalidParameter {
                name: "city",
                message: "a string is required".into(),
            }),
        }
    }
}

fn qwen3() -> ChatTemplate {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/chat_templates/qwen3.json");
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
    ChatTemplate::new(fixture["template"].as_str().expect("template")).expect("compile")
}

const PARIS: &str =
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";

#[test]
fn correct_call_then_answer() {
    let template = qwen3();
    let weather = Weather;
    let model = Scripted::new([PARIS, "It is 18 °C and clear in Paris."]);
    let run = ToolAgent::new(&template, vec![&weather])
        .eos_token("<|im_end|>")
        .run(&model, "What's the weather in Paris?")
        .expect("run");
    assert_eq!(run.finish, AgentFinish::Answer);
    assert_eq!(
        run.answer.as_deref(),
        Some("It is 18 °C and clear in Paris.")
    );
    assert_eq!(run.steps.len(), 1);
    assert_eq!(run.steps[0].calls[0].arguments, json!({"city": "Paris"}));
    assert_eq!(run.steps[0].results, ["18 °C, clear"]);
    let prompts = model.prompts();
    // The tool is rendered into the template, and the result goes back as a tool response.
    assert!(
        prompts[0].contains("\"name\": \"get_weather\""),
        "{}",
        prompts[0]
    );
    assert!(prompts[0].ends_with("<|im_start|>assistant\n"));
    assert!(
        prompts[1].contains("<tool_response>\n18 °C, clear\n</tool_response>"),
        "{}",
        prompts[1]
    );
    assert_eq!(
        run.messages.len(),
        4,
        "user, assistant call, tool result, answer"
    );
}

#[test]
fn malformed_call_is_recovered() {
    let template = qwen3();
    let weather = Weather;
    let broken = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"\n</tool_call>";
    let model = Scripted::new([broken, PARIS, "18 °C."]);
    let run = ToolAgent::new(&template, vec![&weather])
        .run(&model, "Weather in Paris?")
        .expect("run");
    assert_eq!(run.finish, AgentFinish::Answer);
    assert_eq!(run.steps.len(), 2);
    assert!(run.steps[0].calls.is_empty());
    assert!(run.steps[0].results[0].contains("could not be parsed"));
    assert!(model.prompts()[1].contains("could not be parsed"));
    assert_eq!(run.steps[1].results, ["18 °C, clear"]);
}

#[test]
fn tool_errors_and_unknown_tools_are_fed_back() {
    let template = qwen3();
    let weather = Weather;
    let atlantis = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Atlantis\"}}\n</tool_call>";
    let unknown =
        "<tool_call>\n{\"name\": \"search\", \"arguments\": {\"q\": \"x\"}}\n</tool_call>";
    let model = Scripted::new([atlantis, unknown, "I could not find it."]);
    let run = ToolAgent::new(&template, vec![&weather])
        .run(&model, "Weather in Atlantis?")
        .expect("run");
    assert_eq!(run.finish, AgentFinish::Answer);
    assert!(
        run.steps[0].results[0].contains("no data for Atlantis"),
        "{:?}",
        run.steps[0]
    );
    assert!(run.steps[1].results[0].contains("unknown tool `search`"));
    let prompts = model.prompts();
    assert!(prompts[1].contains("no data for Atlantis"));
    assert!(prompts[2].contains("Available tools: get_weather"));
}

#[test]
fn the_step_limit_ends_the_run() {
    let template = qwen3();
    let weather = Weather;
    let model = Scripted::new([PARIS; 5]);
    let run = ToolAgent::new(&template, vec![&weather])
        .max_steps(3)
        .run(&model, "Weather in Paris?")
        .expect("run");
    assert_eq!(run.finish, AgentFinish::StepLimit);
    assert_eq!(run.answer, None);
    assert_eq!(run.steps.len(), 3);
    assert_eq!(model.calls(), 3);
}
