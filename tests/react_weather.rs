//! The ReAct weather example's agent end to end with SmolLM2-135M-Instruct (greedy).

#[path = "../examples/react_weather.rs"]
mod react_weather;

use kiln::core::Tool;
use kiln::prompt::react::AgentFinish;

#[test]
fn the_weather_agent_calls_the_tool_and_ends_cleanly() {
    let path = kiln::llama::assets::asset(kiln::llama::assets::SMOLLM2_GGUF)
        .unwrap_or_else(|e| panic!("{e}"));
    let model = kiln::llama::LlamaGenerator::load(&path, &kiln::llama::LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let max_steps = 4;
    let run = react_weather::ask(
        &model,
        "What is the weather like in Paris right now?",
        max_steps,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for s in &run.steps {
        eprintln!(
            "output: {:?}\naction: {:?}\nobservation: {:?}",
            s.output, s.action, s.observation
        );
    }
    eprintln!("answer: {:?} ({:?})", run.answer, run.finish);
    // The loop terminates within the step limit, with an answer or at the limit.
    assert!(run.steps.len() <= max_steps);
    assert_eq!(run.answer.is_some(), run.finish == AgentFinish::Answer);
    // The model's first step is parsed into a call of the weather tool, whose table answered it.
    let first = run.steps.first().expect("at least one tool step");
    let call = first.action.as_ref().expect("a tool call was parsed");
    assert_eq!(call.name, "get_weather");
    assert_eq!(
        first.observation,
        react_weather::WeatherTable
            .call(&call.arguments)
            .unwrap_or_else(|e| format!("Error: {e}"))
    );
}
