//! ReAct agents: the model alternates `Thought`, `Action` and `Action Input`; the agent runs the
//! tool and appends its `Observation`, until the model writes a `Final Answer`.
//!
//! - Generation stops at `Observation:`, so the model cannot invent tool results.
//! - Parsing is forgiving: any case, extra spaces, markdown bold (`**Action:**`), an `Action Input`
//!   that is JSON, JSON inside a code fence, or plain text (given to a tool with one parameter as
//!   that parameter), and `Action: tool(input)`.
//! - Nothing the model writes ends the run with an error: an unknown tool, a missing `Action
//!   Input`, output with neither an action nor a final answer, and tool errors are fed back as
//!   observations so the model can recover.
//! - At the step limit the run ends with [`AgentFinish::StepLimit`] and no answer; the trace is
//!   kept (for evaluation), and [`AgentRun::into_answer`] turns it into [`Error::StepLimit`].

use std::fmt::Write as _;
use std::sync::LazyLock;

use kiln_core::{TextGenerator, Tool, Usage};
use regex::Regex;
use serde_json::Value;

use crate::techniques::{GenerateOptions, add_usage, complete};
pub use crate::tool_calls::ToolCall;
use crate::{Error, Result};

/// The stop string that keeps the model from writing observations itself.
pub const OBSERVATION_STOP: &str = "Observation:";

static FINAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?im)^[\s*_#>-]*final[ \t]*answer[\s*_]*:[\s*_]*").expect("valid regex")
});
static ACTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?im)^[\s*_#>-]*action[ \t]*\d*[\s*_]*:[ \t*_]*(.*)$").expect("valid regex")
});
static ACTION_INPUT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?im)^[\s*_#>-]*action[ \t]*input[ \t]*\d*[\s*_]*:[ \t*_]*").expect("valid regex")
});
static THOUGHT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)^[\s*_#>-]*thought[\s*_]*:[\s*_]*").expect("valid regex"));
static SECTION_END: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?im)^[\s*_#>-]*(?:observation|thought|final[ \t]*answer)[\s*_]*:")
        .expect("valid regex")
});

/// One step of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The model's output for this step (up to the `Observation:` stop).
    pub output: String,
    /// The thought before the action.
    pub thought: String,
    /// The tool call, when the output held a valid one.
    pub action: Option<ToolCall>,
    /// What was fed back: the tool's result, its error, or a format correction.
    pub observation: String,
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgentFinish {
    /// The model gave a final answer.
    Answer,
    /// The step limit was reached first.
    StepLimit,
}

/// The result of [`ReactAgent::run`].
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRun {
    /// The final answer (`None` at the step limit).
    pub answer: Option<String>,
    /// Every tool step, in order (the final-answer generation is not a step).
    pub steps: Vec<Step>,
    /// Why the run ended.
    pub finish: AgentFinish,
    /// Token counts over all generations.
    pub usage: Usage,
}

impl AgentRun {
    /// The answer.
    ///
    /// # Errors
    /// [`Error::StepLimit`] when the run ended without one.
    pub fn into_answer(self) -> Result<String> {
        self.answer.ok_or(Error::StepLimit {
            steps: self.steps.len(),
        })
    }
}

/// What one model output asks for.
#[derive(Debug, Clone, PartialEq)]
enum Parsed {
    Final(String),
    Action {
        thought: String,
        name: String,
        input: String,
    },
    Malformed(String),
}

fn parse(output: &str) -> Parsed {
    let final_at = FINAL.find(output);
    let action = ACTION
        .captures_iter(output)
        .find(|c| !ACTION_INPUT.is_match(&c[0]));
    let action_start = action.as_ref().and_then(|c| c.get(0)).map(|m| m.start());
    if let Some(f) = final_at
        && action_start.is_none_or(|a| f.start() < a)
    {
        return Parsed::Final(output[f.end()..].trim().to_string());
    }
    let Some(action) = action else {
        return Parsed::Malformed(
            "Invalid format: write `Action:` and `Action Input:` to use a tool, or `Final Answer:` to answer.".into(),
        );
    };
    let whole = action.get(0).map_or(0..0, |m| m.range());
    let thought = THOUGHT
        .replace(output[..whole.start].trim(), "")
        .trim()
        .to_string();
    let mut name = action[1]
        .trim()
        .trim_matches(|c: char| matches!(c, '`' | '"' | '\'' | '*' | '[' | ']'))
        .to_string();
    let rest = &output[whole.end..];
    let input = if let Some(m) = ACTION_INPUT.find(rest) {
        let body = &rest[m.end()..];
        let end = SECTION_END.find(body).map_or(body.len(), |e| e.start());
        body[..end].to_string()
    } else if let Some((n, args)) = name.split_once('(') {
        // `Action: get_weather(Paris)` or `Action: get_weather({"city": "Paris"})`.
        let args = args
            .trim_end()
            .strip_suffix(')')
            .unwrap_or(args)
            .to_string();
        name = n.trim().to_string();
        args
    } else {
        return Parsed::Malformed(format!(
            "Invalid format: `Action: {name}` must be followed by an `Action Input:` line."
        ));
    };
    Parsed::Action {
        thought,
        name,
        input: strip_fence(&input),
    }
}

/// Removes a surrounding markdown code fence (```json ... ```) and whitespace.
fn strip_fence(s: &str) -> String {
    let t = s.trim();
    if let Some(body) = t.strip_prefix("```") {
        let body = body.split_once('\n').map_or(
            "",
            |(lang, rest)| if lang.contains('{') { body } else { rest },
        );
        return body
            .trim_end()
            .strip_suffix("```")
            .unwrap_or(body)
            .trim()
            .to_string();
    }
    t.trim_matches('`').trim().to_string()
}

/// Arguments from the action input: JSON if it parses (or a JSON object inside it does), else the
/// text, wrapped as `{param: text}` when the tool's schema has exactly one property.
fn arguments(input: &str, tool: &dyn Tool) -> Value {
    if let Ok(v) = serde_json::from_str::<Value>(input) {
        if v.is_object() {
            return v;
        }
        if let Some(s) = v.as_str() {
            return wrap_single(s, tool);
        }
        return v;
    }
    if let (Some(a), Some(b)) = (input.find('{'), input.rfind('}'))
        && a < b
        && let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(&input[a..=b])
    {
        return v;
    }
    let text = input.trim().trim_matches(|c| c == '"' || c == '\'');
    wrap_single(text, tool)
}

fn wrap_single(text: &str, tool: &dyn Tool) -> Value {
    let params = tool.parameters();
    match params.get("properties").and_then(Value::as_object) {
        Some(props) if props.len() == 1 => {
            let key = props.keys().next().cloned().unwrap_or_default();
            let mut m = serde_json::Map::new();
            m.insert(key, Value::String(text.to_string()));
            Value::Object(m)
        }
        _ => Value::String(text.to_string()),
    }
}

/// A ReAct agent over a set of tools.
///
/// See the module documentation for the protocol. Each step sends the instructions, the question
/// and the scratchpad so far (as one user message in chat mode, or as raw text), and generation
/// stops at [`OBSERVATION_STOP`].
#[must_use]
pub struct ReactAgent<'a> {
    tools: Vec<&'a dyn Tool>,
    max_steps: usize,
    options: GenerateOptions,
    preamble: String,
}

impl std::fmt::Debug for ReactAgent<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReactAgent")
            .field(
                "tools",
                &self.tools.iter().map(|t| t.name()).collect::<Vec<_>>(),
            )
            .field("max_steps", &self.max_steps)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<'a> ReactAgent<'a> {
    /// An agent with these tools, at most 8 steps, greedy chat generation of up to 256 tokens.
    pub fn new(tools: Vec<&'a dyn Tool>) -> Self {
        Self {
            tools,
            max_steps: 8,
            options: GenerateOptions::default(),
            preamble: "Answer the following question as best you can. You have access to the following tools:"
                .into(),
        }
    }
    /// Sets the step limit (tool calls, malformed outputs included).
    pub fn max_steps(mut self, steps: usize) -> Self {
        self.max_steps = steps;
        self
    }
    /// Sets how the model is asked.
    pub fn options(mut self, options: GenerateOptions) -> Self {
        self.options = options;
        self
    }
    /// Replaces the first line of the instructions.
    pub fn preamble(mut self, preamble: impl Into<String>) -> Self {
        self.preamble = preamble.into();
        self
    }

    /// The prompt before any step: instructions, tools, format and the question, ending in
    /// `Thought:`.
    #[must_use]
    pub fn prompt(&self, question: &str) -> String {
        let mut p = format!("{}\n\n", self.preamble);
        for t in &self.tools {
            let _ = writeln!(
                p,
                "{}: {} Arguments (JSON schema): {}",
                t.name(),
                t.description(),
                t.parameters()
            );
        }
        let names = self
            .tools
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(
            p,
            "\nUse the following format:\n\n\
             Question: the input question you must answer\n\
             Thought: you should always think about what to do\n\
             Action: the action to take, one of [{names}]\n\
             Action Input: the input to the action, as a JSON object\n\
             Observation: the result of the action\n\
             ... (this Thought/Action/Action Input/Observation can repeat N times)\n\
             Thought: I now know the final answer\n\
             Final Answer: the final answer to the original input question\n\n\
             Begin!\n\nQuestion: {question}\nThought:"
        );
        p
    }

    /// Runs the loop.
    ///
    /// # Errors
    /// Only the generator's errors; everything the model writes is handled inside the loop.
    pub fn run(&self, generator: &dyn TextGenerator, question: &str) -> Result<AgentRun> {
        let mut scratchpad = String::new();
        let mut steps = Vec::new();
        let mut usage = Usage::default();
        let base = self.prompt(question);
        let stop = [OBSERVATION_STOP.to_string()];
        while steps.len() < self.max_steps {
            let completion = complete(
                generator,
                format!("{base}{scratchpad}"),
                &self.options,
                &stop,
            )?;
            add_usage(&mut usage, completion.usage);
            let output = completion.text;
            let (thought, action, observation) = match parse(&output) {
                Parsed::Final(answer) => {
                    return Ok(AgentRun {
                        answer: Some(answer),
                        steps,
                        finish: AgentFinish::Answer,
                        usage,
                    });
                }
                Parsed::Malformed(correction) => (String::new(), None, correction),
                Parsed::Action {
                    thought,
                    name,
                    input,
                } => {
                    match self
                        .tools
                        .iter()
                        .find(|t| t.name().eq_ignore_ascii_case(&name))
                    {
                        None => {
                            let names = self
                                .tools
                                .iter()
                                .map(|t| t.name())
                                .collect::<Vec<_>>()
                                .join(", ");
                            (
                                thought,
                                None,
                                format!("Unknown tool `{name}`. Available tools: {names}."),
                            )
                        }
                        Some(tool) => {
                            let args = arguments(&input, *tool);
                            let observation = match tool.call(&args) {
                                Ok(out) => out,
                                Err(e) => format!("Error: {e}"),
                            };
                            (
                                thought,
                                Some(ToolCall {
                                    name: tool.name().to_string(),
                                    arguments: args,
                                }),
                                observation,
                            )
                        }
                    }
                }
            };
            // The model's text is kept as it wrote it, so the next step continues its own format.
            let shown = THOUGHT.replace(&output, "");
            let _ = write!(
                scratchpad,
                " {}\nObservation: {observation}\nThought:",
                shown.trim()
            );
            steps.push(Step {
                output,
                thought,
                action,
                observation,
            });
        }
        Ok(AgentRun {
            answer: None,
            steps,
            finish: AgentFinish::StepLimit,
            usage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(output: &str) -> (String, String) {
        match parse(output) {
            Parsed::Action { name, input, .. } => (name, input),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_the_common_variants() {
        assert_eq!(
            action(
                "I should look it up.\nAction: get_weather\nAction Input: {\"city\": \"Paris\"}"
            ),
            ("get_weather".into(), "{\"city\": \"Paris\"}".into())
        );
        assert_eq!(
            action(
                "Thought: x\n**Action:** `get_weather`\n**Action Input:**\n```json\n{\"city\": \"Oslo\"}\n```\n"
            ),
            ("get_weather".into(), "{\"city\": \"Oslo\"}".into())
        );
        assert_eq!(
            action("  ACTION :  Search \n action input: capital of France\nthought: hmm"),
            ("Search".into(), "capital of France".into())
        );
        assert_eq!(
            action("Action: get_weather(Paris)"),
            ("get_weather".into(), "Paris".into())
        );
        assert_eq!(
            parse("Thought: done.\nFinal Answer: 18 °C\n"),
            Parsed::Final("18 °C".into())
        );
        assert_eq!(parse("final answer:   42"), Parsed::Final("42".into()));
        assert!(matches!(
            parse("I am not sure what to do."),
            Parsed::Malformed(_)
        ));
        assert!(
            matches!(parse("Action: get_weather\nwith Paris"), Parsed::Malformed(m) if m.contains("Action Input"))
        );
        // An action written before a final answer is taken first.
        assert!(matches!(
            parse("Action: a\nAction Input: x\nFinal Answer: y"),
            Parsed::Action { .. }
        ));
    }

    #[test]
    fn strips_fences() {
        assert_eq!(strip_fence("```\n{\"a\": 1}\n```"), "{\"a\": 1}");
        assert_eq!(strip_fence("```json\n{\"a\": 1}```"), "{\"a\": 1}");
        assert_eq!(strip_fence("`Paris`"), "Paris");
    }
}
