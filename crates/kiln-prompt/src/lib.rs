//! # kiln-prompt
//!
//! Burn-free prompt engineering on Kiln's shared traits (it depends on kiln-core, never on a tensor
//! library):
//!
//! - [`ChatTemplate`]: Hugging Face `chat_template` Jinja rendered byte for byte as transformers'
//!   `apply_chat_template` renders it (tools, tool calls, documents, `tojson`, `raise_exception`,
//!   `strftime_now`), and [`BuiltinTemplate`]s for models that ship none.
//! - [`PromptTemplate`] with typed variables, and a versioned [`PromptRegistry`] loaded from a
//!   directory and selected by task type.
//! - [`techniques`] over any [`kiln_core::TextGenerator`]: [`techniques::zero_shot`],
//!   [`techniques::FewShot`] (fixed examples, or chosen by embedding similarity),
//!   [`techniques::ChainOfThought`] with answer extraction and [`techniques::SelfConsistency`].
//! - [`react::ReactAgent`]: the Thought / Action / Observation loop over [`kiln_core::Tool`]s.
//! - [`structured`]: JSON and JSON-schema constrained decoding through kiln-core's
//!   [`kiln_core::LogitsProcessor`] hook.
//! - [`eval`]: run a strategy over a JSONL dataset and report accuracy, steps and tokens.
//! - [`tool_agent::ToolAgent`]: native tool calling through the chat template's `tools`.
//! - [`tool_calls`]: native tool calling, the tool-call and tool-result messages chat templates
//!   take and [`tool_calls::parse_tool_calls`] for the JSON calls models write back.
//!
//! ```
//! use kiln_core::ChatMessage;
//! use kiln_prompt::{ChatTemplate, RenderInput};
//!
//! let template = ChatTemplate::builtin("chatml")?;
//! let input = RenderInput::from_chat(&[
//!     ChatMessage::system("You are terse."),
//!     ChatMessage::user("Capital of France?"),
//! ])
//! .add_generation_prompt(true);
//! assert_eq!(
//!     template.render(&input)?,
//!     "<|im_start|>system\nYou are terse.<|im_end|>\n\
//!      <|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\n"
//! );
//! # Ok::<(), kiln_prompt::Error>(())
//! ```

mod error;
pub mod eval;
mod prompt;
pub mod react;
mod registry;
pub mod structured;
pub mod techniques;
mod template;
pub mod tool_agent;
pub mod tool_calls;

pub use error::{Error, Result};
pub use prompt::{PromptTemplate, Syntax, VarType, Variable};
pub use registry::{PromptRegistry, RegisteredPrompt};
pub use template::{BuiltinTemplate, ChatTemplate, RenderInput, message_to_value};
