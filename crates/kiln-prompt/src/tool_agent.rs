//! A native tool-calling agent: tools are rendered into the model's chat template (`tools`), the
//! JSON tool calls the model writes are parsed back ([`parse_tool_calls`]), the tools run, and their
//! results go back as `tool` messages, until the model answers without a call or the step limit.
//!
//! Like [`crate::react::ReactAgent`], nothing the model writes ends the run with an error: a call
//! that does not parse, an unknown tool and a tool error are fed back so the model can recover.

use kiln_core::{GenerationRequest, Prompt, SamplingParams, TextGenerator, Tool, Usage};
use serde_json::{Value, json};

use crate::react::AgentFinish;
use crate::techniques::add_usage;
use crate::tool_calls::{ToolCall, assistant_tool_calls, parse_tool_calls, tool_result};
use crate::{ChatTemplate, RenderInput, Result};

/// Markers that show the model tried to call a tool, even when the call does not parse.
const CALL_MARKERS: &[&str] = &[
    "<tool_call>",
    "[TOOL_CALLS]",
    "<|python_tag|>",
    "\"arguments\"",
];

/// One model turn that called tools (or tried to).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolStep {
    /// What the model wrote.
    pub output: String,
    /// The calls parsed from it (empty when the call was malformed).
    pub calls: Vec<ToolCall>,
    /// What was fed back for each call (its result or its error), or the format correction.
    pub results: Vec<String>,
}

/// The result of [`ToolAgent::run`].
#[derive(Debug, Clone, PartialEq)]
pub struct ToolAgentRun {
    /// The final answer (`None` at the step limit).
    pub answer: Option<String>,
    /// Every turn that called tools.
    pub steps: Vec<ToolStep>,
    /// The whole conversation, as the chat template took it.
    pub messages: Vec<Value>,
    /// Why the run ended.
    pub finish: AgentFinish,
    /// Token counts over all generations.
    pub usage: Usage,
}

/// An agent that uses the chat template's native tool calling.
#[must_use]
pub struct ToolAgent<'a> {
    template: &'a ChatTemplate,
    tools: Vec<&'a dyn Tool>,
    max_steps: usize,
    max_tokens: usize,
    sampling: SamplingParams,
    system: Option<String>,
    eos_token: Option<String>,
}

impl std::fmt::Debug for ToolAgent<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolAgent")
            .field(
                "tools",
                &self.tools.iter().map(|t| t.name()).collect::<Vec<_>>(),
            )
            .field("max_steps", &self.max_steps)
            .finish_non_exhaustive()
    }
}

impl<'a> ToolAgent<'a> {
    /// An agent rendering through `template` (the model's chat template, which must use `tools`),
    /// at most 8 tool turns, greedy, 256 tokens per turn.
    ///
    /// The prompt is sent as raw text; `bos_token` is left undefined in the template because the
    /// tokenizer adds BOS itself when encoding it.
    pub fn new(template: &'a ChatTemplate, tools: Vec<&'a dyn Tool>) -> Self {
        Self {
            template,
            tools,
            max_steps: 8,
            max_tokens: 256,
            sampling: SamplingParams::greedy(),
            system: None,
            eos_token: None,
        }
    }
    /// Sets the limit of tool turns (malformed calls included).
    pub fn max_steps(mut self, steps: usize) -> Self {
        self.max_steps = steps;
        self
    }
    /// Sets the token budget per turn.
    pub fn max_tokens(mut self, max_tokens: usize) -> Self {
        self.max_tokens = max_tokens;
        self
    }
    /// Sets the sampling parameters.
    pub fn sampling(mut self, sampling: SamplingParams) -> Self {
        self.sampling = sampling;
        self
    }
    /// Sets a system message.
    pub fn system(mut self, system: impl Into<String>) -> Self {
        self.system = Some(system.into());
        self
    }
    /// Sets the EOS token text templates may write after each turn.
    pub fn eos_token(mut self, eos: impl Into<String>) -> Self {
        self.eos_token = Some(eos.into());
        self
    }

    /// The prompt for a conversation so far.
    ///
    /// # Errors
    /// The template's error.
    pub fn render(&self, messages: &[Value]) -> Result<String> {
        let mut input = RenderInput::new(messages.to_vec())
            .tools(self.tools.iter().map(|t| t.schema()).collect())
            .add_generation_prompt(true);
        if let Some(eos) = &self.eos_token {
            input = input.eos_token(eos.clone());
        }
        self.template.render(&input)
    }

    fn call(&self, call: &ToolCall) -> String {
        match self.tools.iter().find(|t| t.name() == call.name) {
            None => {
                let names: Vec<&str> = self.tools.iter().map(|t| t.name()).collect();
                format!(
                    "Error: unknown tool `{}`. Available tools: {}.",
                    call.name,
                    names.join(", ")
                )
            }
            Some(tool) => tool
                .call(&call.arguments)
                .unwrap_or_else(|e| format!("Error: {e}")),
        }
    }

    /// Runs the loop on a question.
    ///
    /// # Errors
    /// The template's or the generator's errors only.
    pub fn run(&self, generator: &dyn TextGenerator, question: &str) -> Result<ToolAgentRun> {
        let mut messages = Vec::new();
        if let Some(system) = &self.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        messages.push(json!({"role": "user", "content": question}));
        let mut steps = Vec::new();
        let mut usage = Usage::default();
        while steps.len() < self.max_steps {
            let request = GenerationRequest::new(Prompt::Text(self.render(&messages)?))
                .with_sampling(self.sampling.clone())
                .with_max_tokens(self.max_tokens);
            let out = generator.generate(&request)?;
            add_usage(&mut usage, out.usage);
            let output = out.text.trim().to_string();
            let calls = parse_tool_calls(&output);
            if calls.is_empty() {
                let attempted = CALL_MARKERS.iter().any(|m| output.contains(m))
                    || output.starts_with('{')
                    || output.starts_with("```");
                if !attempted {
                    messages.push(json!({"role": "assistant", "content": output}));
                    return Ok(ToolAgentRun {
                        answer: Some(output),
                        steps,
                        messages,
                        finish: AgentFinish::Answer,
                        usage,
                    });
                }
                let correction = "Error: the tool call could not be parsed. Call a tool with a JSON \
                    object {\"name\": <tool name>, \"arguments\": {...}} inside <tool_call></tool_call> \
                    tags, or answer without a tool call."
                    .to_string();
                messages.push(json!({"role": "assistant", "content": output}));
                messages.push(tool_result("error", &correction));
                steps.push(ToolStep {
                    output,
                    calls,
                    results: vec![correction],
                });
                continue;
            }
            messages.push(assistant_tool_calls(&calls));
            let results: Vec<String> = calls.iter().map(|c| self.call(c)).collect();
            for (call, result) in calls.iter().zip(&results) {
                messages.push(tool_result(&call.name, result));
            }
            steps.push(ToolStep {
                output,
                calls,
                results,
            });
        }
        Ok(ToolAgentRun {
            answer: None,
            steps,
            messages,
            finish: AgentFinish::StepLimit,
            usage,
        })
    }
}
