//! Chain-of-thought prompting with answer extraction, and self-consistency (a majority vote over
//! sampled chains).

use std::sync::LazyLock;

use kiln_core::{TextGenerator, Usage};
use regex::Regex;

use super::{Completion, GenerateOptions, add_usage, complete};
use crate::{Error, Result};

static ANSWER_IS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:final\s+)?answer\s*(?:is|:|=)\s*:?\s*([^\n]+)").expect("valid regex")
});
static BOXED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\\boxed\{([^{}]*)\}").expect("valid regex"));
static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+").expect("valid regex"));

/// How the final answer is found in a chain of thought.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnswerFormat {
    /// `The answer is X` / `Answer: X` (the last one), else `\boxed{X}`, else the last number.
    Auto,
    /// Only `The answer is X` / `Final answer: X` / `Answer: X` (the last one).
    AnswerIs,
    /// The last number in the text (commas removed, `12.0` written `12`).
    LastNumber,
    /// The first capture group (or the whole match) of the last match of a regex.
    Regex(Regex),
    /// The choice (case-insensitive) that occurs last in the text.
    Choice(Vec<String>),
}

impl AnswerFormat {
    /// Finds the answer in `text`.
    #[must_use]
    pub fn extract(&self, text: &str) -> Option<String> {
        match self {
            AnswerFormat::Auto => answer_is(text)
                .or_else(|| BOXED.captures_iter(text).last().map(|c| clean(&c[1])))
                .or_else(|| last_number(text)),
            AnswerFormat::AnswerIs => answer_is(text),
            AnswerFormat::LastNumber => last_number(text),
            AnswerFormat::Regex(re) => re.captures_iter(text).last().and_then(|c| {
                c.get(1)
                    .or_else(|| c.get(0))
                    .map(|m| clean(m.as_str()))
                    .filter(|s| !s.is_empty())
            }),
            AnswerFormat::Choice(choices) => {
                let lower = text.to_lowercase();
                choices
                    .iter()
                    .filter_map(|c| lower.rfind(&c.to_lowercase()).map(|pos| (pos, c)))
                    .max_by_key(|(pos, c)| (*pos, c.len()))
                    .map(|(_, c)| c.clone())
            }
        }
    }
}

fn answer_is(text: &str) -> Option<String> {
    ANSWER_IS
        .captures_iter(text)
        .last()
        .map(|c| clean(&c[1]))
        .filter(|s| !s.is_empty())
}

fn last_number(text: &str) -> Option<String> {
    NUMBER
        .find_iter(text)
        .last()
        .map(|m| normalize_number(m.as_str()))
}

/// Strips markdown emphasis, `$`, quotes and a trailing period; a lone number is normalized.
fn clean(s: &str) -> String {
    let s = s
        .trim()
        .trim_start_matches(['*', '`', '"', '\'', '$', ' '])
        .trim_end_matches(['*', '`', '"', '\'', '$', ' ', '.']);
    let s = BOXED
        .captures(s)
        .map_or(s.to_string(), |c| c[1].to_string());
    if NUMBER.find(&s).is_some_and(|m| m.as_str() == s) {
        normalize_number(&s)
    } else {
        s
    }
}

fn normalize_number(s: &str) -> String {
    let s = s.replace(',', "");
    match s.split_once('.') {
        Some((int, frac)) if frac.chars().all(|c| c == '0') => {
            if int.is_empty() || int == "-" {
                "0".into()
            } else {
                int.to_string()
            }
        }
        _ => s,
    }
}

/// The form answers are compared in by [`SelfConsistency`]: trimmed, lowercase, numbers normalized
/// (`1,000.0` → `1000`), a trailing period removed.
#[must_use]
pub fn normalize_answer(answer: &str) -> String {
    clean(answer).to_lowercase()
}

/// A chain-of-thought prompt: the question, then an instruction to reason step by step and finish
/// with `The answer is X.`
///
/// ```
/// use kiln_prompt::techniques::{AnswerFormat, ChainOfThought};
/// let cot = ChainOfThought::new();
/// assert!(cot.prompt("2 + 3?").starts_with("2 + 3?\n\nLet's think step by step."));
/// assert_eq!(AnswerFormat::Auto.extract("2 + 3 = 5. The answer is 5.").as_deref(), Some("5"));
/// assert_eq!(AnswerFormat::LastNumber.extract("it costs 1,200.00 dollars").as_deref(), Some("1200"));
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ChainOfThought {
    instruction: String,
    format: AnswerFormat,
}

impl Default for ChainOfThought {
    fn default() -> Self {
        Self {
            instruction:
                "Let's think step by step. End with a line of the form \"The answer is X.\"".into(),
            format: AnswerFormat::Auto,
        }
    }
}

/// A chain of thought and the answer found in it.
#[derive(Debug, Clone, PartialEq)]
pub struct CotAnswer {
    /// The extracted answer, if one was found.
    pub answer: Option<String>,
    /// The prompt and the full reasoning.
    pub completion: Completion,
}

impl ChainOfThought {
    /// The default instruction and [`AnswerFormat::Auto`].
    pub fn new() -> Self {
        Self::default()
    }
    /// Replaces the instruction placed after the question.
    pub fn instruction(mut self, instruction: impl Into<String>) -> Self {
        self.instruction = instruction.into();
        self
    }
    /// Sets how answers are extracted.
    pub fn format(mut self, format: AnswerFormat) -> Self {
        self.format = format;
        self
    }
    /// The prompt for a question.
    #[must_use]
    pub fn prompt(&self, question: &str) -> String {
        format!("{question}\n\n{}", self.instruction)
    }

    /// Reasons once and extracts the answer.
    ///
    /// # Errors
    /// The generator's error (a missing answer is `answer: None`, not an error).
    pub fn run(
        &self,
        generator: &dyn TextGenerator,
        question: &str,
        options: &GenerateOptions,
    ) -> Result<CotAnswer> {
        let completion = complete(generator, self.prompt(question), options, &[])?;
        Ok(CotAnswer {
            answer: self.format.extract(&completion.text),
            completion,
        })
    }
}

/// The outcome of [`SelfConsistency::run`].
#[derive(Debug, Clone, PartialEq)]
pub struct Vote {
    /// The majority answer (as first written by a chain), `None` if no chain gave one.
    pub answer: Option<String>,
    /// Each normalized answer with its vote count, most votes first (ties in order of first
    /// appearance).
    pub counts: Vec<(String, usize)>,
    /// Every chain, in sampling order.
    pub chains: Vec<CotAnswer>,
    /// Token counts over all chains.
    pub usage: Usage,
}

/// Self-consistency: sample `n` chains of thought with different seeds and take the majority
/// answer.
#[derive(Debug, Clone)]
#[must_use]
pub struct SelfConsistency {
    /// The chain-of-thought prompt and answer format.
    pub cot: ChainOfThought,
    /// How many chains to sample.
    pub samples: usize,
    /// The seed of the first chain; chain `i` uses `base_seed + i`.
    pub base_seed: u64,
}

impl SelfConsistency {
    /// `samples` chains with the default chain-of-thought prompt, seeds from 0.
    pub fn new(samples: usize) -> Self {
        Self {
            cot: ChainOfThought::new(),
            samples,
            base_seed: 0,
        }
    }
    /// Sets the chain-of-thought prompt.
    pub fn cot(mut self, cot: ChainOfThought) -> Self {
        self.cot = cot;
        self
    }
    /// Sets the first seed.
    pub fn base_seed(mut self, seed: u64) -> Self {
        self.base_seed = seed;
        self
    }

    /// Samples the chains and votes.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for `samples == 0` or greedy sampling (every chain would be the
    /// same); the generator's error.
    pub fn run(
        &self,
        generator: &dyn TextGenerator,
        question: &str,
        options: &GenerateOptions,
    ) -> Result<Vote> {
        if self.samples == 0 {
            return Err(Error::InvalidParameter {
                name: "samples",
                message: "must be at least 1".into(),
            });
        }
        if options.sampling.is_greedy() {
            return Err(Error::InvalidParameter {
                name: "temperature",
                message: "self-consistency samples chains; set a temperature > 0".into(),
            });
        }
        let mut chains = Vec::with_capacity(self.samples);
        let mut usage = Usage::default();
        for i in 0..self.samples {
            let mut opts = options.clone();
            opts.sampling.seed = Some(self.base_seed.wrapping_add(i as u64));
            let chain = self.cot.run(generator, question, &opts)?;
            add_usage(&mut usage, chain.completion.usage);
            chains.push(chain);
        }
        // (normalized, first spelling, count), in order of first appearance.
        let mut tally: Vec<(String, String, usize)> = Vec::new();
        for answer in chains.iter().filter_map(|c| c.answer.as_deref()) {
            let key = normalize_answer(answer);
            match tally.iter_mut().find(|t| t.0 == key) {
                Some(t) => t.2 += 1,
                None => tally.push((key, answer.to_string(), 1)),
            }
        }
        // A stable sort keeps first appearance among equal counts.
        tally.sort_by_key(|t| std::cmp::Reverse(t.2));
        let answer = tally.first().map(|t| t.1.clone());
        let counts = tally.into_iter().map(|(k, _, n)| (k, n)).collect();
        Ok(Vote {
            answer,
            counts,
            chains,
            usage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extraction_formats() {
        let auto = AnswerFormat::Auto;
        assert_eq!(
            auto.extract("so 23 chickens. The answer is **23 chickens**.")
                .as_deref(),
            Some("23 chickens")
        );
        assert_eq!(
            auto.extract("Answer: 12\nThe answer is 14.").as_deref(),
            Some("14")
        );
        assert_eq!(
            auto.extract("Final answer: $1,000.00").as_deref(),
            Some("1000")
        );
        assert_eq!(auto.extract("thus \\boxed{42}").as_deref(), Some("42"));
        assert_eq!(
            auto.extract("35 heads and 94 legs give 12 rabbits")
                .as_deref(),
            Some("12")
        );
        assert_eq!(auto.extract("no idea"), None);
        assert_eq!(AnswerFormat::AnswerIs.extract("it is 5"), None);
        assert_eq!(
            AnswerFormat::LastNumber
                .extract("-3.50 then -.5")
                .as_deref(),
            Some("-.5")
        );
        let choice = AnswerFormat::Choice(vec!["refund".into(), "shipping".into()]);
        assert_eq!(
            choice
                .extract("Not a Refund; it is about SHIPPING")
                .as_deref(),
            Some("shipping")
        );
        let re = AnswerFormat::Regex(Regex::new(r"label=(\w+)").expect("regex"));
        assert_eq!(re.extract("label=a label=b").as_deref(), Some("b"));
        assert_eq!(normalize_answer(" 1,000.0. "), "1000");
        assert_eq!(normalize_answer("Paris."), "paris");
    }
}
