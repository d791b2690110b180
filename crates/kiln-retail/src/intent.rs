//! Intent recognition: the language model picks one label under a JSON-schema constraint (it can
//! only write one of the labels), either from a few-shot prompt built with kiln-prompt or, with a
//! fine-tuned adapter, from a short zero-shot chat prompt the adapter was trained on.

use kiln_core::{
    AdapterChoice, ChatMessage, GenerationRequest, Prompt, ResponseFormat, SamplingParams,
    TextGenerator, Usage,
};
use kiln_prompt::techniques::{Example, FewShot};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::Result;
use crate::search::{Bm25, terms};

/// What the customer wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// A question the knowledge base answers.
    PolicyQuestion,
    /// The status of one of their orders.
    OrderStatus,
    /// Where a parcel is.
    TrackShipment,
    /// Sending something back.
    ReturnRequest,
    /// Looking for products by words.
    ProductSearch,
    /// Looking for products like a photo (chosen by input type, not by the model).
    ImageSearch,
    /// Hello, thanks, goodbye.
    Greeting,
    /// Anything else.
    Other,
}

impl Intent {
    /// The intents the model chooses among (every one but [`Intent::ImageSearch`]).
    pub const TEXT: [Intent; 7] = [
        Intent::PolicyQuestion,
        Intent::OrderStatus,
        Intent::TrackShipment,
        Intent::ReturnRequest,
        Intent::ProductSearch,
        Intent::Greeting,
        Intent::Other,
    ];

    /// The label.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::PolicyQuestion => "policy_question",
            Intent::OrderStatus => "order_status",
            Intent::TrackShipment => "track_shipment",
            Intent::ReturnRequest => "return_request",
            Intent::ProductSearch => "product_search",
            Intent::ImageSearch => "image_search",
            Intent::Greeting => "greeting",
            Intent::Other => "other",
        }
    }

    /// The intent of a label.
    #[must_use]
    pub fn from_label(label: &str) -> Option<Self> {
        Self::TEXT
            .into_iter()
            .chain([Intent::ImageSearch])
            .find(|i| i.as_str() == label)
    }

    /// Whether the intent is about an order (the order tools handle it).
    #[must_use]
    pub fn is_order(self) -> bool {
        matches!(
            self,
            Intent::OrderStatus | Intent::TrackShipment | Intent::ReturnRequest
        )
    }
}

/// The instruction shared by both prompts.
pub const INSTRUCTION: &str = "Classify the customer's message for a clothing store's assistant. \
Labels: policy_question (store policies: returns, refunds, shipping, payment, sizes, care, account), \
order_status (status of an order), track_shipment (where a parcel is, tracking), return_request \
(send an order back), product_search (looking for products), greeting (hello, thanks, bye), \
other (anything else).";

/// How intents are recognised.
#[derive(Debug, Clone, PartialEq)]
pub enum IntentMode {
    /// The base model with labelled examples in the prompt.
    FewShot,
    /// A LoRA adapter registered with the generator under this name, with the zero-shot chat
    /// prompt of [`adapter_messages`].
    Adapter(String),
}

/// A labelled message, as in `data/train/intents.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelledText {
    /// The message.
    pub text: String,
    /// Its intent label.
    pub intent: String,
}

/// Worked examples with a BM25 index, from which a few-shot prompt takes those most similar to the
/// message.
#[derive(Debug, Clone)]
pub struct ExampleIndex {
    examples: Vec<Example>,
    index: Bm25,
    /// One example per group (the first of each), shown when the message shares no word with any.
    fallback: Vec<usize>,
}

impl ExampleIndex {
    /// Indexes `(input, output, group)` triples; the group (a label, a tool) picks the fallback.
    #[must_use]
    pub fn new(items: Vec<(String, String, String)>) -> Self {
        let mut groups: Vec<&str> = Vec::new();
        let mut fallback = Vec::new();
        for (i, (_, _, g)) in items.iter().enumerate() {
            if !groups.contains(&g.as_str()) {
                groups.push(g);
                fallback.push(i);
            }
        }
        let docs: Vec<Vec<String>> = items.iter().map(|(t, _, _)| terms(t)).collect();
        Self {
            index: Bm25::new(&docs),
            examples: items
                .iter()
                .map(|(t, o, _)| Example::new(one_line(t), o.clone()))
                .collect(),
            fallback,
        }
    }

    /// Up to `k` examples for `text`, the most similar last; fallbacks first when fewer than `k`
    /// share a word with it.
    #[must_use]
    pub fn select(&self, text: &str, k: usize) -> Vec<&Example> {
        let scores = self.index.scores(&terms(text));
        let mut ranked: Vec<(usize, f64)> = scores
            .into_iter()
            .enumerate()
            .filter(|(_, s)| *s > 0.0)
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(k);
        let mut chosen: Vec<usize> = ranked.iter().rev().map(|(i, _)| *i).collect();
        if chosen.len() < k {
            let missing: Vec<usize> = self
                .fallback
                .iter()
                .copied()
                .filter(|i| !chosen.contains(i))
                .take(k - chosen.len())
                .collect();
            chosen.splice(0..0, missing);
        }
        chosen.iter().map(|&i| &self.examples[i]).collect()
    }
}

/// The intent recogniser.
#[derive(Debug, Clone)]
pub struct IntentClassifier {
    examples: ExampleIndex,
    shots: usize,
    mode: IntentMode,
}

/// The chat prompt of the adapter mode (and of its training data).
#[must_use]
pub fn adapter_messages(text: &str) -> Vec<ChatMessage> {
    vec![ChatMessage::system(INSTRUCTION), ChatMessage::user(text)]
}

/// What the model writes for a label under the constraint (a JSON string).
#[must_use]
pub fn label_output(intent: &str) -> String {
    format!("\"{intent}\"")
}

impl IntentClassifier {
    /// A classifier whose few-shot prompt holds the `shots` labelled `examples` most similar to
    /// the message (BM25), the most similar last; a message that shares no word with any example
    /// gets one example per label.
    #[must_use]
    pub fn new(examples: &[LabelledText], shots: usize, mode: IntentMode) -> Self {
        let items = examples
            .iter()
            .map(|e| (e.text.clone(), label_output(&e.intent), e.intent.clone()))
            .collect();
        Self {
            examples: ExampleIndex::new(items),
            shots,
            mode,
        }
    }

    /// The examples shown for `text`, in prompt order.
    #[must_use]
    pub fn examples_for(&self, text: &str) -> Vec<&Example> {
        self.examples.select(text, self.shots)
    }

    /// The mode.
    #[must_use]
    pub fn mode(&self) -> &IntentMode {
        &self.mode
    }

    /// The request the model answers for `text`.
    #[must_use]
    pub fn request(&self, text: &str) -> GenerationRequest {
        let labels: Vec<&str> = Intent::TEXT.iter().map(|i| i.as_str()).collect();
        // Both modes ask in the chat form the instruct model was tuned on, and its answer opens
        // the assistant turn, constrained to exactly one label. Few-shot: the examples are earlier
        // turns of the conversation.
        let (prompt, adapters) = match &self.mode {
            IntentMode::FewShot => {
                let few_shot = FewShot::new(INSTRUCTION, Vec::new());
                let messages = few_shot.messages(&one_line(text), &self.examples_for(text));
                (Prompt::Chat(messages), Vec::new())
            }
            IntentMode::Adapter(name) => (
                Prompt::Chat(adapter_messages(text)),
                vec![AdapterChoice {
                    name: name.clone(),
                    weight: 1.0,
                }],
            ),
        };
        let mut request = GenerationRequest::new(prompt)
            .with_sampling(SamplingParams::greedy())
            .with_max_tokens(12)
            .with_response_format(ResponseFormat::json_schema(
                json!({"type": "string", "enum": labels}),
            ));
        request.adapters = adapters;
        request
    }

    /// Recognises the intent of `text`.
    ///
    /// # Errors
    /// The generator's error.
    pub fn classify(&self, generator: &dyn TextGenerator, text: &str) -> Result<(Intent, Usage)> {
        let out = generator.generate(&self.request(text))?;
        Ok((parse_label(&out.text).unwrap_or(Intent::Other), out.usage))
    }
}

/// The intent a model wrote: the label, quoted or not, possibly followed by more text.
#[must_use]
pub fn parse_label(output: &str) -> Option<Intent> {
    let word: String = output
        .trim()
        .trim_start_matches('"')
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    Intent::from_label(&word)
}

/// Collapses whitespace so that a message cannot forge a new `Message:` line of the prompt.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_and_prompt_interleaves() {
        for i in Intent::TEXT {
            assert_eq!(Intent::from_label(i.as_str()), Some(i));
        }
        let examples: Vec<LabelledText> = Intent::TEXT
            .iter()
            .flat_map(|i| {
                (0..3).map(move |k| LabelledText {
                    text: format!("{} {k}", i.as_str()),
                    intent: i.as_str().into(),
                })
            })
            .collect();
        let c = IntentClassifier::new(&examples, 4, IntentMode::FewShot);
        let Prompt::Chat(m) = c.request("where is\nMessage: my parcel").prompt else {
            panic!("chat prompt expected")
        };
        assert_eq!(m[0].text_content(), INSTRUCTION);
        // No shared word: one example per label, up to the number of shots, as earlier turns.
        assert_eq!(m.len(), 1 + 2 * 4 + 1);
        assert_eq!(m[1].text_content(), "policy_question 0");
        assert_eq!(m[2].text_content(), "\"policy_question\"");
        assert_eq!(m[9].text_content(), "where is Message: my parcel");
        // Shared words: the most similar example last.
        let shown = c.examples_for("greeting please, greeting 2");
        assert_eq!(shown.len(), 4);
        assert_eq!(shown[3].input, "greeting 2");
        assert_eq!(
            parse_label(" \"order_status\"\n"),
            Some(Intent::OrderStatus)
        );
        assert_eq!(parse_label("greeting, because"), Some(Intent::Greeting));
        assert_eq!(parse_label("\"order\""), None);
        let a = IntentClassifier::new(&examples, 2, IntentMode::Adapter("intent".into()));
        assert_eq!(a.request("hi").adapters[0].name, "intent");
    }
}
