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

const LLAMA2: &str = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const MISTRAL: &str = "{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- ' [INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token}}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
";

const ZEPHYR: &str = "{% for message in messages %}
{% if message['role'] == 'user' %}
{{ '<|user|>
' + message['content'] + eos_token }}
{% elif message['role'] == 'system' %}
{{ '<|system|>
' + message['content'] + eos_token }}
{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>
'  + message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %}";

impl BuiltinTemplate {
    /// Every built-in template.
    pub const ALL: [BuiltinTemplate; 5] = [
        BuiltinTemplate::Llama2,
        BuiltinTemplate::Llama3,
        BuiltinTemplate::ChatMl,
        BuiltinTemplate::Mistral,
        BuiltinTemplate::Zephyr,
    ];

    /// Looks a template up by name: `llama2`, `llama3`, `chatml`, `mistral`, `zephyr` (case and `-`/`_`
    /// insensitive, so `Llama-3` works too).
    ///
    /// # Errors
    /// [`Error::UnknownBuiltin`] listing the known names.
    pub fn from_name(name: &str) -> Result<Self> {
        let key: String =
            name.chars().filter(|c| !matches!(c, '-' | '_' | ' ')).flat_map(char::to_lowercase).collect();
        Self::ALL.into_iter().find(|t| t.name() == key).ok_or_else(|| Error::UnknownBuiltin {
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
            BuiltinTemplate::Llama2 | BuiltinTemplate::Mistral | BuiltinTemplate::Zephyr => ("<s>", "</s>"),
            BuiltinTemplate::Llama3 => ("<|begin_of_text|>", "<|eot_id|>"),
            BuiltinTemplate::ChatMl => ("<s>", "<|im_end|>"),
        }
    }
}
