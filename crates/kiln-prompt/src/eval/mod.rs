//! An evaluation harness: run a prompting [`Strategy`] over a JSONL [`Dataset`] with any
//! [`TextGenerator`] and report accuracy, mean model calls (steps) and mean generated tokens.
//!
//! A dataset is JSONL. One optional line describes the task, the others are cases; cases with
//! `"split": "fewshot"` are the few-shot examples and are not scored:
//!
//! ```text
//! {"task": {"name": "retail-intent", "kind": "classification", "instruction": "Classify ...", "labels": ["order_status", ...]}}
//! {"input": "Where is my parcel?", "answer": "order_status", "split": "fewshot"}
//! {"input": "My package has not arrived yet.", "answer": "order_status"}
//! ```
//!
//! Without a task line the kind is inferred (integer answers: arithmetic, otherwise a
//! classification over the distinct answers). Answers are extracted as follows: classification
//! takes the label named after `The answer is` if any, else the label written first (`_` and spaces
//! match each other); arithmetic takes the first number after `The answer is`, else the last number
//! ([`extract_number`]). ReAct gets a [`Calculator`] tool for arithmetic and a tool listing the labels for
//! classification.
//!
//! Modes: zero-shot, chain-of-thought and self-consistency ask through the chat template (an
//! instruction to follow); few-shot and ReAct continue a raw-text prompt (a pattern to continue;
//! ReAct's prompt starts with one worked example and stops at a blank line).

mod calculator;

use std::path::Path;
use std::time::Instant;

use kiln_core::{SamplingParams, TextGenerator, Tool, Usage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use calculator::Calculator;

use crate::react::ReactAgent;
use crate::techniques::{
    AnswerFormat, ChainOfThought, Example, FewShot, GenerateOptions, SelfConsistency,
    normalize_answer, zero_shot,
};
use crate::{Error, Result};

/// What a dataset asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Choose one label.
    Classification,
    /// A word problem with a numeric answer.
    Arithmetic,
}

/// The task line of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// A name for reports.
    #[serde(default)]
    pub name: String,
    /// The kind of task.
    pub kind: TaskKind,
    /// The instruction given before each input.
    #[serde(default)]
    pub instruction: String,
    /// The labels (classification).
    #[serde(default)]
    pub labels: Vec<String>,
}

/// A scored case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalCase {
    /// The input text.
    pub input: String,
    /// The expected answer.
    pub answer: String,
}

/// A task, its few-shot examples and its cases.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// The task.
    pub task: TaskSpec,
    /// Few-shot examples (not scored).
    pub examples: Vec<Example>,
    /// The scored cases.
    pub cases: Vec<EvalCase>,
}

#[derive(Deserialize)]
struct Line {
    task: Option<TaskSpec>,
    input: Option<String>,
    #[serde(alias = "label", alias = "expected")]
    answer: Option<Value>,
    split: Option<String>,
}

impl Dataset {
    /// Reads a JSONL file.
    ///
    /// # Errors
    /// [`Error::Io`], or [`Error::PromptFile`] naming the line at fault.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses JSONL text; `origin` names it in errors.
    ///
    /// # Errors
    /// [`Error::PromptFile`] naming the line at fault.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let bad = |n: usize, message: String| Error::PromptFile {
            path: format!("{origin}:{n}"),
            message,
        };
        let mut task = None;
        let mut examples = Vec::new();
        let mut cases = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            if raw.trim().is_empty() {
                continue;
            }
            let line: Line = serde_json::from_str(raw).map_err(|e| bad(n, e.to_string()))?;
            if let Some(t) = line.task {
                task = Some(t);
                continue;
            }
            let input = line
                .input
                .ok_or_else(|| bad(n, "a case needs `input`".into()))?;
            let answer = match line.answer {
                Some(Value::String(s)) => s,
                Some(v @ Value::Number(_)) => v.to_string(),
                _ => {
                    return Err(bad(
                        n,
                        "a case needs `answer` (a string or a number)".into(),
                    ));
                }
            };
            if line.split.as_deref() == Some("fewshot") {
                examples.push(Example::new(input, answer));
            } else {
                cases.push(EvalCase { input, answer });
            }
        }
        if cases.is_empty() {
            return Err(bad(0, "no cases".into()));
        }
        let task = task.unwrap_or_else(|| infer_task(&cases, origin));
        if task.kind == TaskKind::Classification && task.labels.is_empty() {
            return Err(bad(0, "a classification task needs `labels`".into()));
        }
        Ok(Self {
            task,
            examples,
            cases,
        })
    }
}

fn infer_task(cases: &[EvalCase], origin: &str) -> TaskSpec {
    let numeric = cases.iter().all(|c| c.answer.trim().parse::<f64>().is_ok());
    let mut labels: Vec<String> = Vec::new();
    if !numeric {
        for c in cases {
            if !labels.contains(&c.answer) {
                labels.push(c.answer.clone());
            }
        }
    }
    TaskSpec {
        name: origin.to_string(),
        kind: if numeric {
            TaskKind::Arithmetic
        } else {
            TaskKind::Classification
        },
        instruction: String::new(),
        labels,
    }
}

/// A prompting strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// The instruction and the input.
    ZeroShot,
    /// The dataset's few-shot examples before the input.
    FewShot,
    /// Chain of thought with answer extraction.
    Cot,
    /// A majority vote over sampled chains of thought.
    SelfConsistency,
    /// A ReAct agent with a task tool.
    React,
}

impl Strategy {
    /// Every strategy, in table order.
    pub const ALL: [Strategy; 5] = [
        Strategy::ZeroShot,
        Strategy::FewShot,
        Strategy::Cot,
        Strategy::SelfConsistency,
        Strategy::React,
    ];

    /// The name used on the command line.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::ZeroShot => "zero-shot",
            Strategy::FewShot => "few-shot",
            Strategy::Cot => "cot",
            Strategy::SelfConsistency => "self-consistency",
            Strategy::React => "react",
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Strategy::ALL
            .into_iter()
            .find(|st| st.as_str() == s || (s == "sc" && *st == Strategy::SelfConsistency))
            .ok_or_else(|| Error::InvalidParameter {
                name: "strategy",
                message: format!(
                    "unknown strategy `{s}` (zero-shot, few-shot, cot, self-consistency, react)"
                ),
            })
    }
}

/// Budgets and sampling of an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    /// Tokens per answer for zero-shot and few-shot.
    pub answer_tokens: usize,
    /// Tokens per chain of thought (CoT, self-consistency) and per ReAct step.
    pub reasoning_tokens: usize,
    /// Chains sampled by self-consistency.
    pub samples: usize,
    /// Temperature of self-consistency's chains.
    pub temperature: f32,
    /// Seed of the first chain.
    pub seed: u64,
    /// ReAct's step limit.
    pub react_steps: usize,
    /// Score only the first `limit` cases.
    pub limit: Option<usize>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            answer_tokens: 24,
            reasoning_tokens: 160,
            samples: 3,
            temperature: 0.7,
            seed: 0,
            react_steps: 3,
            limit: None,
        }
    }
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    /// The input.
    pub input: String,
    /// The expected answer.
    pub expected: String,
    /// The extracted answer.
    pub predicted: Option<String>,
    /// Whether it matches.
    pub correct: bool,
    /// Model calls made.
    pub steps: usize,
    /// Tokens generated.
    pub tokens: usize,
    /// The last model output (for inspection).
    pub output: String,
}

/// The outcome of an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// The task's name.
    pub task: String,
    /// The strategy.
    pub strategy: Strategy,
    /// The model.
    pub model: String,
    /// Cases scored.
    pub cases: usize,
    /// Cases answered correctly.
    pub correct: usize,
    /// `correct / cases`.
    pub accuracy: f64,
    /// Mean model calls per case.
    pub mean_steps: f64,
    /// Mean generated tokens per case.
    pub mean_tokens: f64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Every case.
    pub results: Vec<CaseResult>,
}

/// The labels as written and with `_` as spaces, for matching model text.
fn label_variants(labels: &[String]) -> Vec<(String, usize)> {
    let mut v = Vec::new();
    for (i, l) in labels.iter().enumerate() {
        v.push((l.to_lowercase(), i));
        let spaced = l.replace(['_', '-'], " ").to_lowercase();
        if spaced != l.to_lowercase() {
            v.push((spaced, i));
        }
    }
    v
}

/// The label a text names: the one after `The answer is`, else the first one written.
#[must_use]
pub fn extract_label(text: &str, labels: &[String]) -> Option<String> {
    let first = |t: &str| -> Option<String> {
        let lower = t.to_lowercase();
        label_variants(labels)
            .into_iter()
            .filter_map(|(v, i)| {
                lower
                    .find(&v)
                    .map(|pos| (pos, std::cmp::Reverse(v.len()), i))
            })
            .min()
            .map(|(_, _, i)| labels[i].clone())
    };
    AnswerFormat::AnswerIs
        .extract(text)
        .and_then(|a| first(&a))
        .or_else(|| first(text))
}

static FIRST_NUMBER: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"-?\d[\d,]*(?:\.\d+)?").expect("valid regex"));

/// The number a text answers: the first number after `The answer is`, else the last number.
#[must_use]
pub fn extract_number(text: &str) -> Option<String> {
    AnswerFormat::AnswerIs
        .extract(text)
        .and_then(|a| FIRST_NUMBER.find(&a).map(|m| normalize_answer(m.as_str())))
        .or_else(|| AnswerFormat::LastNumber.extract(text))
}

const INTENT_EXEMPLAR: &str = "Question: Message: I want my money back for this broken toaster.\n\
Thought: I should check which intents exist.\nAction: list_intents\nAction Input: {}\n\
Observation: order_status, return_request, product_question, shipping_info, store_hours, payment, \
complaint, recommendation, account\nThought: The customer wants to return an item.\n\
Final Answer: return_request";

const MATH_EXEMPLAR: &str = "Question: A shop has 3 boxes of 12 pencils and sells 10 pencils. How many \
pencils are left?\nThought: I need to compute 3 * 12 - 10.\nAction: calculator\n\
Action Input: {\"expression\": \"3 * 12 - 10\"}\nObservation: 26\n\
Thought: I now know the final answer.\nFinal Answer: 26";

/// The tool ReAct gets for a classification: it lists the labels.
struct Labels<'a>(&'a [String]);

impl Tool for Labels<'_> {
    fn name(&self) -> &str {
        "list_intents"
    }
    fn description(&self) -> &str {
        "Lists the categories a message can belong to."
    }
    fn parameters(&self) -> Value {
        serde_json::json!({"type": "object", "properties": {}})
    }
    fn call(&self, _args: &Value) -> kiln_core::Result<String> {
        Ok(self.0.join(", "))
    }
}

/// Runs `strategy` over the dataset's cases, calling `on_case` after each.
///
/// # Errors
/// [`Error::InvalidParameter`] for a few-shot run on a dataset without examples or zero samples;
/// the generator's errors.
pub fn evaluate(
    generator: &dyn TextGenerator,
    dataset: &Dataset,
    strategy: Strategy,
    options: &EvalOptions,
    on_case: &mut dyn FnMut(usize, &CaseResult),
) -> Result<EvalReport> {
    if strategy == Strategy::FewShot && dataset.examples.is_empty() {
        return Err(Error::InvalidParameter {
            name: "strategy",
            message: "few-shot needs examples (`\"split\": \"fewshot\"` lines) in the dataset"
                .into(),
        });
    }
    let start = Instant::now();
    let n = options
        .limit
        .map_or(dataset.cases.len(), |l| l.min(dataset.cases.len()));
    let mut results = Vec::with_capacity(n);
    for (i, case) in dataset.cases[..n].iter().enumerate() {
        let r = run_case(generator, dataset, strategy, options, case)?;
        on_case(i, &r);
        results.push(r);
    }
    let cases = results.len();
    let correct = results.iter().filter(|r| r.correct).count();
    let mean = |f: &dyn Fn(&CaseResult) -> usize| {
        results.iter().map(|r| f(r) as f64).sum::<f64>() / cases.max(1) as f64
    };
    Ok(EvalReport {
        task: dataset.task.name.clone(),
        strategy,
        model: generator.model_name().to_string(),
        cases,
        correct,
        accuracy: correct as f64 / cases.max(1) as f64,
        mean_steps: mean(&|r| r.steps),
        mean_tokens: mean(&|r| r.tokens),
        seconds: start.elapsed().as_secs_f64(),
        results,
    })
}

fn run_case(
    generator: &dyn TextGenerator,
    dataset: &Dataset,
    strategy: Strategy,
    options: &EvalOptions,
    case: &EvalCase,
) -> Result<CaseResult> {
    let task = &dataset.task;
    let classify = task.kind == TaskKind::Classification;
    let instruction = if classify {
        format!("{}\nIntents: {}.", task.instruction, task.labels.join(", "))
    } else {
        task.instruction.clone()
    };
    let extract = |text: &str| -> Option<String> {
        if classify {
            extract_label(text, &task.labels)
        } else {
            extract_number(text)
        }
    };
    let (in_prefix, out_prefix) = if classify {
        ("Message:", "Intent:")
    } else {
        ("Question:", "Answer:")
    };
    let question = format!("{instruction}\n\n{in_prefix} {}", case.input);
    let short = GenerateOptions::new().max_tokens(options.answer_tokens);
    let long = GenerateOptions::new().max_tokens(options.reasoning_tokens);
    let cot = ChainOfThought::new().instruction(if classify {
        "Let's think step by step about what the customer wants, then finish with \"The answer is <intent>.\""
    } else {
        "Let's think step by step, then finish with \"The answer is <number>.\""
    });
    let (predicted, steps, usage, output): (Option<String>, usize, Usage, String) = match strategy {
        Strategy::ZeroShot => {
            let c = zero_shot(
                generator,
                &instruction,
                &format!("{in_prefix} {}\n{out_prefix}", case.input),
                &short,
            )?;
            (extract(&c.text), 1, c.usage, c.text)
        }
        Strategy::FewShot => {
            let fs = FewShot::new(instruction.clone(), dataset.examples.clone())
                .prefixes(in_prefix, out_prefix);
            // Few-shot is pattern continuation: the prompt is continued as raw text.
            let c = fs.run(generator, &case.input, &short.clone().text_mode())?;
            (extract(&c.text), 1, c.usage, c.text)
        }
        Strategy::Cot => {
            let a = cot.run(generator, &question, &long)?;
            (
                extract(&a.completion.text),
                1,
                a.completion.usage,
                a.completion.text,
            )
        }
        Strategy::SelfConsistency => {
            let sampling = SamplingParams {
                temperature: options.temperature,
                ..SamplingParams::default()
            };
            let sc = SelfConsistency::new(options.samples)
                .cot(cot)
                .base_seed(options.seed);
            let vote = sc.run(generator, &question, &long.clone().sampling(sampling))?;
            // Vote on the extracted answers (labels mapped to their canonical spelling).
            let mut tally: Vec<(String, usize)> = Vec::new();
            for chain in &vote.chains {
                if let Some(a) = extract(&chain.completion.text) {
                    let key = normalize_answer(&a);
                    match tally.iter_mut().find(|t| normalize_answer(&t.0) == key) {
                        Some(t) => t.1 += 1,
                        None => tally.push((a, 1)),
                    }
                }
            }
            tally.sort_by_key(|t| std::cmp::Reverse(t.1));
            let last = vote
                .chains
                .last()
                .map(|c| c.completion.text.clone())
                .unwrap_or_default();
            (
                tally.first().map(|t| t.0.clone()),
                vote.chains.len(),
                vote.usage,
                last,
            )
        }
        Strategy::React => {
            let labels = Labels(&task.labels);
            let calc = Calculator;
            let tools: Vec<&dyn Tool> = if classify { vec![&labels] } else { vec![&calc] };
            // One worked exemplar shows the format; the prompt is continued as raw text.
            let preamble = format!(
                "Here is an example of how to answer with tools.\n\n{}\n\nNow answer the next question \
                 the same way. You have access to the following tools:",
                if classify {
                    INTENT_EXEMPLAR
                } else {
                    MATH_EXEMPLAR
                }
            );
            let agent = ReactAgent::new(tools)
                .max_steps(options.react_steps)
                .preamble(preamble)
                .options(long.text_mode().stop("\n\n"));
            let run = agent.run(generator, &question)?;
            let steps = run.steps.len() + usize::from(run.answer.is_some());
            let output = run
                .answer
                .clone()
                .or_else(|| run.steps.last().map(|s| s.output.clone()))
                .unwrap_or_default();
            (
                run.answer.as_deref().and_then(extract),
                steps,
                run.usage,
                output,
            )
        }
    };
    let correct = predicted
        .as_deref()
        .is_some_and(|p| normalize_answer(p) == normalize_answer(&case.answer));
    Ok(CaseResult {
        input: case.input.clone(),
        expected: case.answer.clone(),
        predicted,
        correct,
        steps,
        tokens: usage.completion_tokens,
        output,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_found_first_or_after_the_answer() {
        let labels: Vec<String> = ["order_status", "return_request", "store_hours"]
            .map(String::from)
            .into();
        assert_eq!(
            extract_label("store_hours", &labels).as_deref(),
            Some("store_hours")
        );
        assert_eq!(
            extract_label("This is a Return Request.", &labels).as_deref(),
            Some("return_request")
        );
        assert_eq!(
            extract_label("Not order_status... The answer is store hours.", &labels).as_deref(),
            Some("store_hours")
        );
        assert_eq!(extract_label("no idea", &labels), None);
        assert_eq!(
            extract_number("so 23 + 12. The answer is 12 rabbits.").as_deref(),
            Some("12")
        );
        assert_eq!(
            extract_number("There are 1,200.0 of them").as_deref(),
            Some("1200")
        );
    }

    #[test]
    fn datasets_parse_and_infer() {
        let d = Dataset::parse(
            "{\"input\": \"2+2?\", \"answer\": 4, \"split\": \"fewshot\"}\n{\"input\": \"3+3?\", \"answer\": 6}\n",
            "t",
        )
        .expect("parse");
        assert_eq!(d.task.kind, TaskKind::Arithmetic);
        assert_eq!((d.examples.len(), d.cases[0].answer.as_str()), (1, "6"));
        let err = Dataset::parse("{\"input\": \"x\"}\n", "f.jsonl")
            .expect_err("no answer")
            .to_string();
        assert!(err.contains("f.jsonl:1") && err.contains("answer"), "{err}");
        assert!("sc".parse::<Strategy>().is_ok() && "nope".parse::<Strategy>().is_err());
    }
}
