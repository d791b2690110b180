//! Chat templates for models that ship none, copied from the models' own tokenizer_config.json.

use crate::{Error, Result};

/// A built-in chat template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BuiltinTemplate {
    /// Llama-2-chat: `<s>[INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST] ... </s>`.
    Llama2,
    /// Llama-3-Instruct: `<|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>`.
    Llama3,
    /// ChatML: `<|im_start|>role\n...<|im_end|>\n`.
    ChatMl,
    /// Mistral-7B-Instruct-v0.1: `<s> [INST] ... [/INST] ...</s>` (an optional system message is
    /// prepended to the first user turn).
    Mistral,
    /// HuggingFaceH4/zephyr-7b-beta: `<|role|>\n...</s>\n`.
    Zephyr,
}

const LLAMA2: &str = include_str!("builtin/llama2.jinja");

const LLAMA3: &str = include_str!("builtin/llama3.jinja");

const CHATML: &str = include_str!("builtin/chatml.jinja");

const MISTRAL: &str = include_str!("builtin/mistral.jinja");

const ZEPHYR: &str = include_str!("builtin/zephyr.jinja");

impl BuiltinTemplate {
    /// Every built-in template.
    pub const ALL: [BuiltinTemplate; 5] = [
        BuiltinTemplate::Llama2,
        BuiltinTemplate::Llama3,
        BuiltinTemplate::ChatMl,
        BuiltinTemplate::Mistral,
        BuiltinTemplate::Zephyr,
    ];

    /// Looks a template up by name: `llama2`, `llama3`, `chatml`, `mistral`, `zephyr` (case and
    /// `-`/`_` insensitive, so `Llama-3` works too).
    ///
    /// # Errors
    /// [`Error::UnknownBuiltin`] listing the known names.
    pub fn from_name(name: &str) -> Result<Self> {
        let key: String = name
            .chars()
            .filter(|c| !matches!(c, '-' | '_' | ' '))
            .flat_map(char::to_lowercase)
            .collect();
        Self::ALL
            .into_iter()
            .find(|t| t.name() == key)
            .ok_or_else(|| Error::UnknownBuiltin {
                name: name.to_string(),
                known: Self::ALL.map(Self::name).join(", "),
            })
    }

    /// The template's name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            BuiltinTemplate::Llama2 => "llama2",
            BuiltinTemplate::Llama3 => "llama3",
            BuiltinTemplate::ChatMl => "chatml",
            BuiltinTemplate::Mistral => "mistral",
            BuiltinTemplate::Zephyr => "zephyr",
        }
    }

    /// The Jinja source.
    #[must_use]
    pub fn source(self) -> &'static str {
        match self {
            BuiltinTemplate::Llama2 => LLAMA2,
            BuiltinTemplate::Llama3 => LLAMA3,
            BuiltinTemplate::ChatMl => CHATML,
            BuiltinTemplate::Mistral => MISTRAL,
            BuiltinTemplate::Zephyr => ZEPHYR,
        }
    }

    /// The BOS and EOS token texts of the models the template comes from.
    #[must_use]
    pub fn special_tokens(self) -> (&'static str, &'static str) {
        match self {
            BuiltinTemplate::Llama2 | BuiltinTemplate::Mistral | BuiltinTemplate::Zephyr => {
                ("<s>", "</s>")
            }
            BuiltinTemplate::Llama3 => ("<|begin_of_text|>", "<|eot_id|>"),
            BuiltinTemplate::ChatMl => ("<s>", "<|im_end|>"),
        }
    }
}
