//! The ReAct loop with a scripted model and local tools.

mod common;

use common::Scripted;
use kiln_core::Tool;
use kiln_prompt::Error;
use kiln_prompt::react::{AgentFinish, OBSERVATION_STOP, ReactAgent};
use serde_json::{Value, json};

/// Weather from a local table.
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
        let city =
            args.get("city")
                .and_then(Value::as_str)
                .ok_or(kiln_core::Error::InvalidParameter {
                    name: "city",
                    message: "a string is required".into(),
                })?;
        match city.to_lowercase().as_str() {
            "paris" => Ok("18 °C, clear".into()),
            "oslo" => Ok("-3 °C, snow".into()),
            _ => Err(kiln_core::Error::InvalidParameter {
                name: "city",
                message: format!("no data for {city}"),
            }),
        }
    }
}

/// Adds two numbers.
struct Add;

impl Tool for Add {
    fn name(&self) -> &str {
        "add"
    }
    fn description(&self) -> &str {
        "Add two numbers."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}})
    }
    fn call(&self, args: &Value) -> kiln_core::Result<String> {
        let n = |k: &str| args.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
        Ok((n("a") + n("b")).to_string())
    }
}

#[test]
fn calls_tools_and_answers() {
    let model = Scripted::new([
        // The model tries to hallucinate an observation; the stop string cuts it off.
        " I need the weather in Paris.\nAction: get_weather\nAction Input: {\"city\": \"Paris\"}\nObservation: 30 °C",
        "Now Oslo.\n**Action:** get_weather\n**Action Input:**\n```json\n{\"city\": \"Oslo\"}\n```\n",
        "And the difference.\naction: ADD\naction input: {\"a\": 18, \"b\": 3}",
        "I now know the final answer.\nFinal Answer: Paris is 21 degrees warmer than Oslo.",
    ]);
    let (weather, add) = (Weather, Add);
    let agent = ReactAgent::new(vec![&weather, &add]);
    let run = agent
        .run(&model, "How much warmer is Paris than Oslo?")
        .expect("run");
    assert_eq!(run.finish, AgentFinish::Answer);
    assert_eq!(
        run.answer.as_deref(),
        Some("Paris is 21 degrees warmer than Oslo.")
    );
    let calls: Vec<_> = run
        .steps
        .iter()
        .map(|s| s.action.clone().expect("action"))
        .collect();
    assert_eq!(
        (calls[0].name.as_str(), &calls[0].arguments),
        ("get_weather", &json!({"city": "Paris"}))
    );
    assert_eq!(calls[1].arguments, json!({"city": "Oslo"}));
    assert_eq!(
        (calls[2].name.as_str(), &calls[2].arguments),
        ("add", &json!({"a": 18, "b": 3}))
    );
    assert_eq!(run.steps[0].thought, "I need the weather in Paris.");
    assert_eq!(run.steps[0].observation, "18 °C, clear");
    assert_eq!(run.steps[2].observation, "21");

    let prompts = model.prompts();
    assert_eq!(prompts.len(), 4);
    assert!(
        prompts[0].contains("get_weather: Current weather in a city. Arguments (JSON schema): {")
    );
    assert!(prompts[0].contains("Action: the action to take, one of [get_weather, add]"));
    assert!(prompts[0].ends_with("Question: How much warmer is Paris than Oslo?\nThought:"));
    // Each step's prompt holds the real observations, never the hallucinated one.
    assert!(prompts[1].ends_with(
        "Thought: I need the weather in Paris.\nAction: get_weather\nAction Input: {\"city\": \"Paris\"}\n\
         Observation: 18 °C, clear\nThought:"
    ));
    assert!(!prompts[3].contains("30 °C"));
    assert!(prompts[3].contains("Observation: -3 °C, snow\nThought:"));
    assert!(prompts[3].contains("Observation: 21\nThought:"));
    for r in model.requests.lock().expect("lock").iter() {
        assert!(r.stop.stop_strings.iter().any(|s| s == OBSERVATION_STOP));
    }
}

#[test]
fn recovers_from_malformed_actions_and_tool_errors() {
    let model = Scripted::new([
        "Let me think about the weather.", // neither action nor answer
        "Action: weather_lookup\nAction Input: Paris", // unknown tool
        "Action: get_weather",             // no input
        "Action: get_weather\nAction Input: Atlantis", // tool error (plain input)
        "Action: get_weather\nAction Input: \"paris\"", // plain input, quoted
        "Final Answer: It is 18 °C and clear in Paris.",
    ]);
    let weather = Weather;
    let run = ReactAgent::new(vec![&weather])
        .run(&model, "Weather in Paris?")
        .expect("run");
    assert_eq!(
        run.answer.as_deref(),
        Some("It is 18 °C and clear in Paris.")
    );
    assert_eq!(run.steps.len(), 5);
    let obs: Vec<&str> = run.steps.iter().map(|s| s.observation.as_str()).collect();
    assert!(obs[0].starts_with("Invalid format"), "{}", obs[0]);
    assert_eq!(
        obs[1],
        "Unknown tool `weather_lookup`. Available tools: get_weather."
    );
    assert!(obs[2].contains("Action Input"), "{}", obs[2]);
    assert_eq!(
        obs[3],
        "Error: invalid parameter `city`: no data for Atlantis"
    );
    assert_eq!(obs[4], "18 °C, clear");
    // Plain text was given to the tool's single parameter.
    assert_eq!(
        run.steps[3].action.as_ref().expect("call").arguments,
        json!({"city": "Atlantis"})
    );
    assert_eq!(
        run.steps[4].action.as_ref().expect("call").arguments,
        json!({"city": "paris"})
    );
    // The corrections reached the model.
    let last = model.prompts().pop().expect("prompt");
    assert!(last.contains("Observation: Unknown tool `weather_lookup`"));
    assert!(
        last.contains(
            "Observation: Error: invalid parameter `city`: no data for Atlantis\nThought:"
        )
    );
}

#[test]
fn stops_at_the_step_limit() {
    let model = Scripted::new(vec!["Action: add\nAction Input: {\"a\": 1, \"b\": 1}"; 3]);
    let add = Add;
    let run = ReactAgent::new(vec![&add])
        .max_steps(3)
        .run(&model, "Loop forever")
        .expect("run");
    assert_eq!(run.finish, AgentFinish::StepLimit);
    assert_eq!(run.answer, None);
    assert_eq!(run.steps.len(), 3);
    assert_eq!(model.calls(), 3);
    assert!(matches!(
        run.into_answer(),
        Err(Error::StepLimit { steps: 3 })
    ));
}
