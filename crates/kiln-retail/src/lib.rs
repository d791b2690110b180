//! # kiln-retail
//!
//! Kiln's case study: a retail customer-service assistant for a fictional apparel store, "Kiln
//! Outfitters", built from Kiln's pieces and served as an OpenAI-compatible model
//! (`retail-assistant`) by kiln-serve. It compiles no tensor library: the language model and the
//! CLIP embedder come in as kiln-core trait objects (the `kiln retail` command loads SmolLM2 and a
//! CLIP checkpoint).
//!
//! The flow of one turn ([`RetailAssistant::respond`]):
//!
//! 1. **Input type**: a photo goes to photo search; text goes on. Personal data (e-mails, phones,
//!    card numbers, ...) is masked first, so it never reaches the model, the tools or the logs.
//! 2. **Guard** ([`guard`]): prompt injection, requests for other customers' data and staff
//!    impersonation are refused.
//! 3. **Intent** ([`intent`]): the language model picks one label under a JSON-schema constraint,
//!    from a few-shot prompt (kiln-prompt) or through a fine-tuned LoRA/QLoRA adapter.
//! 4. **Consult**: BM25 over the knowledge base ([`search`]); the reply quotes the best paragraph
//!    and cites the article (`[KB-012]`).
//! 5. **Order**: a ReAct step: the model writes the tool call (only the order tools and the order
//!    numbers in the message are allowed), the tool bound to the signed-in customer runs
//!    ([`tools`]), and the reply is built from its observation. Another customer's order is "not
//!    found".
//! 6. **Recommend** ([`catalog`]): filters read from the message (category, colour, price) and BM25
//!    over the catalogue; for photos, CLIP embeddings against the category captions and the
//!    product photos.
//! 7. **Reply and log**: the turn is logged (masked) in the SQLite store ([`store`]); ratings come
//!    back through `POST /v1/retail/feedback` from the web chat ([`generator::routes`]).
//!
//! [`eval`] runs the scripted conversations of `data/eval/conversations.jsonl` and reports intent
//! accuracy, resolution, tool-call and refusal correctness, leaks and latency.

#![warn(missing_docs)]

pub mod assistant;
pub mod catalog;
pub mod data;
mod error;
pub mod eval;
pub mod generator;
pub mod guard;
pub mod intent;
pub mod reply;
pub mod search;
pub mod store;
pub mod tools;

pub use assistant::{ANONYMOUS, ImageSearch, RetailAssistant, RetailConfig, ToolCallRecord, Turn};
pub use data::StoreData;
pub use error::{Result, RetailError};
pub use generator::{CHAT_PAGE, MODEL_NAME, routes};
pub use intent::{Intent, IntentClassifier, IntentMode, LabelledText};
pub use store::Store;

/// The directory of the store data shipped with this crate (`crates/kiln-retail/data`).
#[must_use]
pub fn default_data_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}
