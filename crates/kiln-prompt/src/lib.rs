//! # kiln-prompt
//!
//! Burn-free prompt engineering on Kiln's shared traits:
//!
//! - [`ChatTemplate`]: Hugging Face `chat_template` Jinja rendered byte for byte as transformers'
//!   `apply_chat_template` renders it (tools, tool calls, documents, `tojson`, `raise_exception`,
//!   `strftime_now`), and [`BuiltinTemplate`]s for models that ship none.
//! - [`PromptTemplate`] with typed variables and a versioned [`PromptRegistry`] loaded from a directory.
//! - Techniques over any [`kiln_core::TextGenerator`]: [`techniques::zero_shot`],
//!   [`techniques::FewShot`] (fixed examples or chosen by embedding similarity),
//!   [`techniques::chain_of_thought`] with answer extraction and [`techniques::self_consistency`].
//! - [`react::ReactAgent`]: the Thought / Action / Observation loop over [`kiln_core::Tool`]s.
//!
//! ```
//! use kiln_core::ChatMessage;
//! use kiln_prompt::{ChatTemplate, RenderInput};
//!
//! let template = ChatTemplate::builtin("chatml")?;
//! let input = RenderInput::from_chat(&[
//!     ChatMessage::system("You are terse."),
//!     ChatMessage::user("Capital of France?"),
//! ])?
//! .add_generation_prompt(true);
//! assert_eq!(
//!     template.render(&input)?,
//!     "<|im_start|>system\nYou are terse.<|im_end|>\n\
//!      <|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\n"
//! );
//! # Ok::<(), kiln_prompt::Error>(())
//! ```

mod error;
mod template;

pub use error::{Error, Result};
pub use template::{BuiltinTemplate, ChatTemplate, RenderInput, message_to_value};
