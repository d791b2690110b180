//! Few-shot prompting with fixed examples or examples chosen per query by embedding similarity.

use kiln_core::{
    ChatMessage, Embedder, Embedding, EmbeddingInput, TextGenerator, cosine_similarity,
};
use serde::{Deserialize, Serialize};

use super::{Completion, GenerateOptions, complete};
use crate::{Error, Result};

/// A worked example: an input and the output the model should imitate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// The example input.
    pub input: String,
    /// The expected output.
    pub output: String,
}

impl Example {
    /// An example.
    #[must_use]
    pub fn new(input: impl Into<String>, output: impl Into<String>) -> Self {
        Self {
            input: input.into(),
            output: output.into(),
        }
    }
}

/// A few-shot prompt:
///
/// ```text
/// {instruction}
///
/// Input: {example input}
/// Output: {example output}
///
/// Input: {query}
/// Output:
/// ```
///
/// Generation stops at a new `Input:` line, so the model does not invent more examples.
///
/// ```
/// use kiln_prompt::techniques::{Example, FewShot};
/// let fs = FewShot::new("Translate English to French.", vec![Example::new("cheese", "fromage")]);
/// let examples: Vec<_> = fs.examples().iter().collect();
/// assert_eq!(
///     fs.prompt("bread", &examples),
///     "Translate English to French.\n\nInput: cheese\nOutput: fromage\n\nInput: bread\nOutput:"
/// );
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct FewShot {
    instruction: String,
    examples: Vec<Example>,
    input_prefix: String,
    output_prefix: String,
    embeddings: Option<Vec<Embedding>>,
}

impl FewShot {
    /// A few-shot prompt with `Input:` / `Output:` prefixes.
    pub fn new(instruction: impl Into<String>, examples: Vec<Example>) -> Self {
        Self {
            instruction: instruction.into(),
            examples,
            input_prefix: "Input:".into(),
            output_prefix: "Output:".into(),
            embeddings: None,
        }
    }

    /// Sets the prefixes (for example `"English:"` and `"French:"`).
    pub fn prefixes(mut self, input: impl Into<String>, output: impl Into<String>) -> Self {
        self.input_prefix = input.into();
        self.output_prefix = output.into();
        self
    }

    /// The examples.
    #[must_use]
    pub fn examples(&self) -> &[Example] {
        &self.examples
    }

    /// Embeds every example input once, for [`Self::select`] and [`Self::run_similar`].
    ///
    /// # Errors
    /// The embedder's error, or [`Error::InvalidParameter`] when it returns the wrong number of
    /// vectors.
    pub fn index(mut self, embedder: &dyn Embedder) -> Result<Self> {
        let inputs: Vec<EmbeddingInput> = self
            .examples
            .iter()
            .map(|e| EmbeddingInput::Text(e.input.clone()))
            .collect();
        let vectors = embedder.embed(&inputs)?;
        if vectors.len() != inputs.len() {
            return Err(Error::InvalidParameter {
                name: "embedder",
                message: format!(
                    "returned {} vectors for {} examples",
                    vectors.len(),
                    inputs.len()
                ),
            });
        }
        self.embeddings = Some(vectors);
        Ok(self)
    }

    /// The `k` examples most similar to `query` (cosine similarity of the embeddings), most similar
    /// first; ties keep the examples' order.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] when [`Self::index`] was not called, or the embedder's error.
    pub fn select(&self, embedder: &dyn Embedder, query: &str, k: usize) -> Result<Vec<&Example>> {
        let Some(embeddings) = &self.embeddings else {
            return Err(Error::InvalidParameter {
                name: "embedder",
                message: "call FewShot::index before selecting examples by similarity".into(),
            });
        };
        let q = embedder.embed(&[EmbeddingInput::Text(query.to_string())])?;
        let q = q.first().ok_or_else(|| Error::InvalidParameter {
            name: "embedder",
            message: "returned no vector for the query".into(),
        })?;
        let mut scored: Vec<(f32, usize)> = embeddings
            .iter()
            .enumerate()
            .map(|(i, e)| (cosine_similarity(q, e), i))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        Ok(scored
            .into_iter()
            .take(k)
            .map(|(_, i)| &self.examples[i])
            .collect())
    }

    /// The prompt for `query` with the given examples.
    #[must_use]
    pub fn prompt(&self, query: &str, examples: &[&Example]) -> String {
        let mut out = String::new();
        if !self.instruction.is_empty() {
            out.push_str(&self.instruction);
            out.push_str("\n\n");
        }
        for e in examples {
            out.push_str(&format!(
                "{} {}\n{} {}\n\n",
                self.input_prefix, e.input, self.output_prefix, e.output
            ));
        }
        out.push_str(&format!(
            "{} {query}\n{}",
            self.input_prefix, self.output_prefix
        ));
        out
    }

    /// The prompt for `query` as a conversation: the instruction as the system message, each
    /// example as a user turn answered by an assistant turn, then the query. Instruction-tuned
    /// models follow this form better than a single block of text, and a constrained answer (a
    /// JSON schema) starts cleanly at the opening of the assistant's turn.
    #[must_use]
    pub fn messages(&self, query: &str, examples: &[&Example]) -> Vec<ChatMessage> {
        let mut out = Vec::with_capacity(2 * examples.len() + 2);
        if !self.instruction.is_empty() {
            out.push(ChatMessage::system(self.instruction.clone()));
        }
        for e in examples {
            out.push(ChatMessage::user(e.input.clone()));
            out.push(ChatMessage::assistant(e.output.clone()));
        }
        out.push(ChatMessage::user(query));
        out
    }

    fn stop(&self) -> Vec<String> {
        vec![format!("\n{}", self.input_prefix)]
    }

    /// Runs with every example.
    ///
    /// # Errors
    /// The generator's error.
    pub fn run(
        &self,
        generator: &dyn TextGenerator,
        query: &str,
        options: &GenerateOptions,
    ) -> Result<Completion> {
        let examples: Vec<&Example> = self.examples.iter().collect();
        complete(
            generator,
            self.prompt(query, &examples),
            options,
            &self.stop(),
        )
    }

    /// Runs with the `k` examples most similar to the query.
    ///
    /// # Errors
    /// As [`Self::select`], or the generator's error.
    pub fn run_similar(
        &self,
        generator: &dyn TextGenerator,
        embedder: &dyn Embedder,
        query: &str,
        k: usize,
        options: &GenerateOptions,
    ) -> Result<Completion> {
        let examples = self.select(embedder, query, k)?;
        complete(
            generator,
            self.prompt(query, &examples),
            options,
            &self.stop(),
        )
    }
}

#[cfg(test)]
mod chat_form_tests {
    use super::*;
    use kiln_core::Role;

    #[test]
    fn messages_put_examples_in_turns() {
        let f = FewShot::new(
            "Label it.",
            vec![
                Example::new("hi", "greeting"),
                Example::new("where?", "track"),
            ],
        );
        let examples: Vec<&Example> = f.examples().iter().collect();
        let m = f.messages("hello", &examples);
        let roles: Vec<Role> = m.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                Role::System,
                Role::User,
                Role::Assistant,
                Role::User,
                Role::Assistant,
                Role::User
            ]
        );
        assert_eq!(m[2].text_content(), "greeting");
        assert_eq!(m[5].text_content(), "hello");
        assert_eq!(FewShot::new("", vec![]).messages("q", &[]).len(), 1);
    }
}
