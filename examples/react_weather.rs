//! A ReAct agent with a weather-lookup tool backed by a local table.
//!
//! `cargo run --release --features prompt --example react_weather -- [MODEL] [QUESTION]`
//!
//! The agent alternates Thought / Action / Action Input; Kiln runs the tool and appends the
//! Observation until the model writes a Final Answer or the step limit is reached. The same agent
//! runs end to end in `tests/react_weather.rs`.

use anyhow::{Context, Result};
use kiln::core::{TextGenerator, Tool};
use kiln::prompt::react::{AgentRun, ReactAgent};
use kiln::prompt::techniques::GenerateOptions;
use serde_json::{Value, json};

/// Current weather from a fixed local table.
pub struct WeatherTable;

/// The table: city, temperature in °C, sky.
pub const WEATHER: &[(&str, i32, &str)] = &[
    ("paris", 18, "clear"),
    ("london", 12, "light rain"),
    ("oslo", -3, "snow"),
    ("tokyo", 22, "cloudy"),
    ("cairo", 31, "sunny"),
];

impl Tool for WeatherTable {
    fn name(&self) -> &str {
        "get_weather"
    }
    fn description(&self) -> &str {
        "Returns the current weather in a city."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
    }
    fn call(&self, args: &Value) -> kiln::core::Result<String> {
        let city = args.get("city").and_then(Value::as_str).ok_or(
            kiln::core::Error::InvalidParameter {
                name: "city",
                message: "give {\"city\": \"...\"}".into(),
            },
        )?;
        let key = city.trim().to_lowercase();
        WEATHER
            .iter()
            .find(|(c, _, _)| key.contains(c))
            .map(|(c, t, sky)| format!("{c}: {t} °C, {sky}"))
            .ok_or_else(|| kiln::core::Error::InvalidParameter {
                name: "city",
                message: format!("no weather data for `{city}`"),
            })
    }
}

/// The instructions' first part: a worked example of the format.
pub const EXEMPLAR: &str = "Here is an example of how to answer with tools.\n\n\
Question: Is it snowing in Oslo?\n\
Thought: I need the current weather in Oslo.\n\
Action: get_weather\n\
Action Input: {\"city\": \"Oslo\"}\n\
Observation: oslo: -3 °C, snow\n\
Thought: I now know the final answer.\n\
Final Answer: Yes, it is snowing in Oslo (-3 °C).\n\n\
Now answer the next question the same way. You have access to the following tools:";

/// Runs the agent on a question (greedy, at most `max_steps` tool steps).
///
/// # Errors
/// The model's errors.
pub fn ask(
    model: &dyn TextGenerator,
    question: &str,
    max_steps: usize,
) -> kiln::prompt::Result<AgentRun> {
    let weather = WeatherTable;
    // One worked exemplar (as in the ReAct paper) shows a small model the format; the prompt is
    // continued as raw text from its final `Thought:`.
    ReactAgent::new(vec![&weather])
        .max_steps(max_steps)
        .preamble(EXEMPLAR)
        .options(
            GenerateOptions::new()
                .text_mode()
                .max_tokens(96)
                .stop("\n\n"),
        )
        .run(model, question)
}

#[allow(dead_code)] // The test includes this file for `ask` and `WeatherTable` only.
fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let path = match args.next() {
        Some(p) => p.into(),
        None => kiln::llama::assets::asset(kiln::llama::assets::SMOLLM2_GGUF)?,
    };
    let question = args
        .next()
        .unwrap_or_else(|| "What is the weather like in Paris right now?".into());
    let model = kiln::llama::LlamaGenerator::load(&path, &kiln::llama::LoadOptions::default())
        .with_context(|| format!("loading {}", path.display()))?;
    println!("Question: {question}\n");
    let run = ask(&model, &question, 4)?;
    for (i, step) in run.steps.iter().enumerate() {
        println!("--- step {} ---\n{}", i + 1, step.output.trim());
        match &step.action {
            Some(call) => println!("[parsed call: {}({})]", call.name, call.arguments),
            None => println!("[no valid call parsed]"),
        }
        println!("Observation: {}\n", step.observation);
    }
    match &run.answer {
        Some(a) => println!("Final Answer: {a}"),
        None => println!("No final answer within the step limit ({:?}).", run.finish),
    }
    println!("[{} tokens generated]", run.usage.completion_tokens);
    Ok(())
}
